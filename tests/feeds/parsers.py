"""The four iCalendar readers a feed must satisfy, each giving the occurrences it sees.

- icalendar + recurring-ical-events (what most Python tooling uses),
- ``ical`` (allenporter; Home Assistant's calendar), its own RRULE timeline,
- vobject (its rruleset expansion; RECURRENCE-ID overrides applied here, since vobject
  leaves that to its caller).

Each returns a multiset of (start, end) UTC pairs of the non-cancelled occurrences that
overlap [start, end), and so can be compared with the bookings' own expansion.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import icalendar
import recurring_ical_events
import vobject
from ical.calendar_stream import IcsCalendarStream

Instants = Counter[tuple[datetime, datetime]]


def utc(value: Any) -> datetime:
    assert isinstance(value, datetime), value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def overlaps(pair: tuple[datetime, datetime], start: datetime, end: datetime) -> bool:
    return pair[0] < end and pair[1] > start


def with_icalendar(body: bytes, start: datetime, end: datetime) -> Instants:
    calendar = icalendar.Calendar.from_ical(body)
    found: Instants = Counter()
    for event in recurring_ical_events.of(calendar).between(start, end):
        if str(event.get("STATUS", "CONFIRMED")).upper() == "CANCELLED":
            continue
        found[(utc(event["DTSTART"].dt), utc(event["DTEND"].dt))] += 1
    return found


def with_ical(body: bytes, start: datetime, end: datetime) -> Instants:
    calendar = IcsCalendarStream.calendar_from_ics(body.decode("utf-8"))
    found: Instants = Counter()
    for event in calendar.timeline_tz(UTC).overlapping(start, end):
        if event.status is not None and event.status.value == "CANCELLED":
            continue
        pair = (utc(event.dtstart), utc(event.dtend))
        if overlaps(pair, start, end):
            found[pair] += 1
    return found


def with_vobject(body: bytes, start: datetime, end: datetime) -> Instants:
    calendar = vobject.readOne(body.decode("utf-8"))
    masters: dict[str, Any] = {}
    overrides: dict[str, list[Any]] = {}
    for event in calendar.vevent_list:
        uid = event.uid.value
        if hasattr(event, "recurrence_id"):
            overrides.setdefault(uid, []).append(event)
        else:
            masters[uid] = event
    found: Instants = Counter()
    for uid, master in masters.items():
        moved = {utc(o.recurrence_id.value): o for o in overrides.get(uid, [])}
        duration: timedelta = master.dtend.value - master.dtstart.value
        if master.rruleset is not None:
            # The rule's instants up to the end (overrides may move one into the range).
            instants = [utc(_wall_clock(i)) for i in master.getrruleset(addRDate=True).between(
                master.dtstart.value - timedelta(days=1), end + timedelta(days=400), inc=True)]
        else:
            instants = [utc(master.dtstart.value)]
        # vobject's own EXDATE subtraction compares against the mis-offset instants.
        excluded = {utc(value) for line in master.contents.get("exdate", [])
                    for value in line.value}
        for instant in instants:
            if instant in moved or instant in excluded:
                continue
            pair = (instant, instant + duration)
            if overlaps(pair, start, end) and _live(master):
                found[pair] += 1
        for override in moved.values():
            pair = (utc(override.dtstart.value), utc(override.dtend.value))
            if overlaps(pair, start, end) and _live(override):
                found[pair] += 1
    return found


def _wall_clock(instant: datetime) -> datetime:
    """An instant vobject computed with a pytz zone, re-localised on its wall clock.

    vobject hands dateutil a pytz zone, whose offset is fixed at DTSTART's; the wall-clock
    times are right, their offsets across a DST change are not until localised again.
    """
    localize = getattr(instant.tzinfo, "localize", None)
    if localize is None:
        return instant
    result: datetime = localize(instant.replace(tzinfo=None))
    return result


def _live(event: Any) -> bool:
    status = getattr(event, "status", None)
    return status is None or str(status.value).upper() != "CANCELLED"


READERS = {"icalendar": with_icalendar, "ical": with_ical, "vobject": with_vobject}
