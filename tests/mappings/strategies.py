"""Reusable Hypothesis strategies and a test-side Nexudus series materialiser.

The materialiser does what Nexudus does on ``POST /api/spaces/bookings`` with
``RepeatBooking``: it writes one booking record per occurrence, all sharing a
``RepeatSeriesUniqueId``. It uses plain calendar arithmetic (no dateutil), so it is an
independent oracle for the RRULE the mappings derive from the repeat fields. It follows the
interpretation documented in ``mappings/recurrence.py``: the first booking always exists, then
the cycle's dates up to RepeatUntil (a local date, inclusive), at the first booking's local
wall-clock time.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

from bridge.model import Window

ZONES = ("Europe/London", "America/New_York", "Australia/Sydney")

#: DST changes of 2025 per zone: where generated series start, so most cross one.
DST_CHANGES = {
    "Europe/London": (date(2025, 3, 30), date(2025, 10, 26)),
    "America/New_York": (date(2025, 3, 9), date(2025, 11, 2)),
    "Australia/Sydney": (date(2025, 4, 6), date(2025, 10, 5)),
}

WEEKDAY_FLAGS = (
    "RepeatOnMondays",
    "RepeatOnTuesdays",
    "RepeatOnWednesdays",
    "RepeatOnThursdays",
    "RepeatOnFridays",
    "RepeatOnSaturdays",
    "RepeatOnSundays",
)

#: The week ordinal of each "Nth weekday of the month" cycle (-1 = last).
MONTH_ORDINALS = {5: 1, 6: 2, 7: 3, 9: 4, 8: -1}

#: Body fields Nexudus stores unchanged on every record it materialises.
STORED_AS_SENT = ("FloorPlanDeskId", "ExtraServiceId")

#: How far RepeatUntil may lie after the first booking, per cycle, in days.
_UNTIL_SPAN = {1: 45, 2: 160, 3: 500, 4: 1500, 5: 500, 6: 500, 7: 500, 8: 500, 9: 500}


def utc_text(instant: datetime) -> str:
    """Nexudus's UTC ``Z`` form."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def local_text(instant: datetime, zone: ZoneInfo) -> str:
    """Nexudus's ``*Local`` form: wall-clock time without an offset."""
    return instant.astimezone(zone).strftime("%Y-%m-%dT%H:%M:%S")


# --- the materialiser -------------------------------------------------------------------------


def _month_shift(day: date, months: int) -> tuple[int, int]:
    """(year, month) ``months`` after ``day``'s month."""
    index = day.year * 12 + day.month - 1 + months
    return index // 12, index % 12 + 1


def nth_weekday(year: int, month: int, weekday: int, ordinal: int) -> date | None:
    """The ``ordinal``-th (or last, -1) ``weekday`` of a month; None if the month lacks it."""
    days = [
        date(year, month, d)
        for d in range(1, calendar.monthrange(year, month)[1] + 1)
        if date(year, month, d).weekday() == weekday
    ]
    if ordinal == -1:
        return days[-1]
    return days[ordinal - 1] if ordinal <= len(days) else None


def series_dates(
    first: date, repeats: int, every: int, until: date, weekdays: frozenset[int]
) -> list[date]:
    """The local dates of a Nexudus series: the first booking plus its cycle up to ``until``."""
    dates = {first}
    dates.update(
        d for d in _cycle_dates(first, repeats, every, until, weekdays) if first <= d <= until
    )
    return sorted(dates)


def _cycle_dates(
    first: date, repeats: int, every: int, until: date, weekdays: frozenset[int]
) -> Iterator[date]:
    """Dates the cycle produces from ``first``'s period on, until past ``until``."""
    step = 0
    while True:
        if repeats == 1:
            candidates = [first + timedelta(days=step)]
        elif repeats == 2:
            monday = first - timedelta(days=first.weekday()) + timedelta(weeks=step)
            days = weekdays or frozenset({first.weekday()})
            candidates = [monday + timedelta(days=d) for d in sorted(days)]
        elif repeats == 4:
            candidates = [_maybe_date(first.year + step, first.month, first.day)]
        else:
            year, month = _month_shift(first, step)
            if repeats == 3:
                candidates = [_maybe_date(year, month, first.day)]
            else:
                candidates = [nth_weekday(year, month, first.weekday(), MONTH_ORDINALS[repeats])]
        found = [d for d in candidates if d is not None]
        if _period_start(first, repeats, step) > until:
            return
        yield from found
        step += every


def _period_start(first: date, repeats: int, step: int) -> date:
    """The first day of the ``step``-th period of the cycle."""
    if repeats == 1:
        return first + timedelta(days=step)
    if repeats == 2:
        return first - timedelta(days=first.weekday()) + timedelta(weeks=step)
    if repeats == 4:
        return date(first.year + step, 1, 1)
    year, month = _month_shift(first, step)
    return date(year, month, 1)


def _maybe_date(year: int, month: int, day: int) -> date | None:
    """The date, or None when the month has no such day."""
    try:
        return date(year, month, day)
    except ValueError:
        return None


@dataclass
class Directory:
    """What Nexudus looks up by id when it materialises a body: booker and room names."""

    coworkers: dict[int, str] = field(default_factory=lambda: {7: "Ada Lovelace"})
    rooms: dict[int, str] = field(default_factory=lambda: {287977693: "Callisto Meeting Room"})
    next_id: int = 1_040_000_000

    def new_id(self) -> int:
        """A fresh record id."""
        self.next_id += 1
        return self.next_id


def admin_record(
    *,
    record_id: int,
    start: datetime,
    end: datetime,
    zone: ZoneInfo,
    resource_id: int = 287977693,
    coworker_id: int | None = 7,
    directory: Directory | None = None,
    notes: str | None = None,
    tentative: bool = False,
    series: str | None = None,
    repeat: Mapping[str, object] | None = None,
    visitors: Sequence[Mapping[str, object]] = (),
) -> dict[str, object]:
    """A full admin API booking record as ``GET /api/spaces/bookings/{id}`` returns it."""
    directory = directory or Directory()
    record: dict[str, object] = {
        "Id": record_id,
        "UniqueId": f"00000000-0000-4000-8000-{record_id:012d}",
        "ResourceId": resource_id,
        "ResourceName": directory.rooms.get(resource_id),
        "CoworkerId": coworker_id,
        "CoworkerFullName": directory.coworkers.get(coworker_id) if coworker_id else None,
        "FromTime": utc_text(start),
        "ToTime": utc_text(end),
        "FromTimeLocal": local_text(start, zone),
        "ToTimeLocal": local_text(end, zone),
        "Notes": notes,
        "InternalNotes": "INTERNAL: do not show (card declined twice)",
        "Tentative": tentative,
        "Online": False,
        "UpdatedOn": "2025-01-02T03:04:05Z",
        "CreatedOn": "2025-01-02T03:04:05Z",
        "RepeatSeriesUniqueId": series,
        "RepeatBooking": False,
        "Repeats": 0,
        "RepeatEvery": None,
        "RepeatUntil": None,
        "WhichBookingsToUpdate": 0,
        "BookingVisitors": [dict(v) for v in visitors],
        **{flag: False for flag in WEEKDAY_FLAGS},
    }
    record.update(repeat or {})
    return record


def repeat_fields(body: Mapping[str, object]) -> dict[str, object]:
    """The create-only repeat fields of a body, as a materialised record echoes them."""
    names = ("RepeatBooking", "Repeats", "RepeatEvery", "RepeatUntil", *WEEKDAY_FLAGS)
    return {name: body.get(name) for name in names if name in body}


def materialise(
    body: Mapping[str, object], zone: ZoneInfo, directory: Directory
) -> list[dict[str, object]]:
    """The records Nexudus would store for one create body (one per series member)."""
    start = datetime.fromisoformat(str(body["FromTime"]))
    end = datetime.fromisoformat(str(body["ToTime"]))
    coworker = body.get("CoworkerId")
    notes = body.get("Notes")
    visitors = body.get("BookingVisitors")

    def record(member_start: datetime, series: str | None) -> dict[str, object]:
        stored = admin_record(
            record_id=directory.new_id(),
            start=member_start,
            end=member_start + (end - start),
            zone=zone,
            resource_id=int(str(body["ResourceId"])),
            coworker_id=coworker if isinstance(coworker, int) else None,
            directory=directory,
            notes=notes if isinstance(notes, str) else None,
            tentative=body.get("Tentative") is True,
            series=series,
            repeat=repeat_fields(body) if series else None,
            visitors=visitors if isinstance(visitors, list) else (),
        )
        stored.update({name: body[name] for name in STORED_AS_SENT if name in body})
        return stored

    if not body.get("RepeatBooking"):
        return [record(start, None)]
    local = start.astimezone(zone)
    dates = series_dates(
        local.date(),
        int(str(body["Repeats"])),
        int(str(body.get("RepeatEvery") or 1)),
        date.fromisoformat(str(body["RepeatUntil"])[:10]),
        frozenset(d for d, flag in enumerate(WEEKDAY_FLAGS) if body.get(flag)),
    )
    series = f"5e41e5-{directory.new_id()}"
    return [record(datetime.combine(day, local.time(), zone), series) for day in dates]


# --- strategies -------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneratedSeries:
    """A Nexudus series as its records, and what its members are (UTC, sorted)."""

    zone: str
    repeats: int
    records: list[dict[str, object]]
    members: list[tuple[datetime, datetime]]
    tentative: frozenset[datetime]

    @property
    def window(self) -> Window:
        """A window holding every member with a day to spare."""
        return Window(
            self.members[0][0] - timedelta(days=1),
            max(end for _, end in self.members) + timedelta(days=1),
        )


zones = st.sampled_from(ZONES)


@st.composite
def first_starts(draw: st.DrawFn, zone: str) -> datetime:
    """A naive local first start in daytime (no DST gap), usually weeks before a DST change."""
    change = draw(st.sampled_from(DST_CHANGES[zone]))
    day = draw(
        st.one_of(
            st.builds(lambda n: change - timedelta(days=n), st.integers(0, 60)),
            st.dates(date(2024, 1, 1), date(2027, 12, 31)),
        )
    )
    moment = time(draw(st.integers(7, 20)), draw(st.sampled_from([0, 15, 30, 45])))
    return datetime.combine(day, moment)


@st.composite
def repeat_settings(draw: st.DrawFn, zone: str) -> tuple[datetime, dict[str, object]]:
    """A first local start and the repeat fields of a create body (all nine cycles)."""
    first = draw(first_starts(zone))
    repeats = draw(st.integers(1, 9))
    every = draw(st.integers(1, 3))
    if repeats in MONTH_ORDINALS and draw(st.integers(0, 9)) > 0:
        # Mostly start on the day the cycle names, as the Nexudus form would.
        found = nth_weekday(first.year, first.month, first.weekday(), MONTH_ORDINALS[repeats])
        first = datetime.combine(found or first.date(), first.time())
    weekdays = draw(st.frozensets(st.integers(0, 6), max_size=3))
    if repeats == 2:
        weekdays |= {first.weekday()}
    span = _UNTIL_SPAN[repeats] * every
    # Hypothesis favours small numbers; most series should still have many members.
    days = draw(st.one_of(st.integers(span // 4, span), st.integers(0, span)))
    until = first.date() + timedelta(days=days)
    fields: dict[str, object] = {
        "RepeatBooking": True,
        "Repeats": repeats,
        "RepeatEvery": every,
        "RepeatUntil": f"{until.isoformat()}T00:00:00Z",
        **{flag: day in weekdays for day, flag in enumerate(WEEKDAY_FLAGS)},
    }
    return first, fields


@st.composite
def nexudus_series(draw: st.DrawFn, *, edited: bool = True) -> GeneratedSeries:
    """A materialised series, then (``edited``) members deleted, moved, resized, made tentative,
    and repeat fields kept on all, some, none or wrong ones."""
    zone_name = draw(zones)
    zone = ZoneInfo(zone_name)
    first, fields = draw(repeat_settings(zone_name))
    duration = timedelta(minutes=15 * draw(st.integers(1, 16)))
    start = first.replace(tzinfo=zone)
    body = {
        "ResourceId": 287977693,
        "CoworkerId": 7,
        "FromTime": utc_text(start),
        "ToTime": utc_text(start + duration),
        "Notes": "Weekly planning",
        **fields,
    }
    records = materialise(body, zone, Directory())
    if edited:
        records = draw(_edits(records, zone))
    members = sorted(
        (datetime.fromisoformat(str(r["FromTime"])), datetime.fromisoformat(str(r["ToTime"])))
        for r in records
    )
    tentative = frozenset(
        datetime.fromisoformat(str(r["FromTime"])) for r in records if r["Tentative"]
    )
    return GeneratedSeries(zone_name, int(str(fields["Repeats"])), records, members, tentative)


@st.composite
def _edits(
    draw: st.DrawFn, records: list[dict[str, object]], zone: ZoneInfo
) -> list[dict[str, object]]:
    """Members deleted, moved or resized, statuses and repeat fields changed."""
    # Per member: 0-1 deleted, 2 moved and resized, 3-9 left alone.
    fates = draw(st.lists(st.integers(0, 9), min_size=len(records), max_size=len(records)))
    if all(fate <= 1 for fate in fates):
        fates[0] = 9
    taken = {str(r["FromTime"]) for r, fate in zip(records, fates, strict=True) if fate > 1}
    edited = []
    for record, fate in zip(records, fates, strict=True):
        if fate <= 1:
            continue
        record = dict(record)
        if fate == 2:
            _move(record, draw, zone, taken)
        edited.append(record)
    statuses = draw(st.sampled_from(["confirmed", "tentative", "mixed"]))
    for record in edited:
        mixed = statuses == "mixed" and draw(st.booleans())
        record["Tentative"] = statuses == "tentative" or mixed
        if draw(st.integers(0, 14)) == 0:
            record["Notes"] = "Moved to the big room this time"
    _vary_repeat_fields(edited, draw(st.sampled_from(["all", "first", "none", "wrong"])))
    return edited


def _move(record: dict[str, object], draw: st.DrawFn, zone: ZoneInfo, taken: set[str]) -> None:
    """Shift a member by up to two days and give it a new length, unless that collides."""
    start = datetime.fromisoformat(str(record["FromTime"]))
    new_start = start + timedelta(minutes=15 * draw(st.integers(-192, 192)))
    new_end = new_start + timedelta(minutes=15 * draw(st.integers(1, 16)))
    if utc_text(new_start) in taken:
        return
    taken.discard(str(record["FromTime"]))
    taken.add(utc_text(new_start))
    record.update(
        FromTime=utc_text(new_start),
        ToTime=utc_text(new_end),
        FromTimeLocal=local_text(new_start, zone),
        ToTimeLocal=local_text(new_end, zone),
    )


def _vary_repeat_fields(records: list[dict[str, object]], how: str) -> None:
    """Keep the repeat fields on every member, only the first, none, or make them wrong."""
    for index, record in enumerate(records):
        if how == "none" or (how == "first" and index > 0):
            record.update(RepeatBooking=False, Repeats=0, RepeatEvery=None, RepeatUntil=None)
        elif how == "wrong":
            record["Repeats"] = int(str(record["Repeats"])) % 9 + 1
