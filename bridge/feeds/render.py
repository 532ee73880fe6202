"""Feed text: one booking's cached chunk, and a whole feed as a concatenation of chunks.

A chunk is the VEVENT text of one booking (its master, its overrides and, with ``separate``
buffers, its setup/cleanup series), rendered once by :mod:`mappings.ical` under the room's
privacy and buffer mode and then made fit for publishing:

- no ``X-ROOMBRIDGE-*`` round-trip property is written (one that appears is dropped; so is
  ``CLASS`` in a busy feed):
  a subscriber sees times, status and what the privacy level allows, nothing else;
- the UID becomes an opaque hash of the room and the calendar UID, so a feed does not show
  provider booking keys and never shares a UID with the room's CalDAV calendar;
- cancelled occurrences of a series become EXDATEs (clients disagree on cancelled
  overrides, none on EXDATE), and a cancelled booking renders to nothing;
- a set of dates without a rule (RDATEs only) lists its first date among its RDATEs too:
  RFC 5545 counts DTSTART once either way, and the ``ical`` library (Home Assistant)
  drops DTSTART from an RDATE-only set;
- a one-off event (or an override) whose wall time is ambiguous (the hour repeated when
  clocks go back) or skipped is written in UTC: RFC 5545 means the first of the two, but
  vobject reads the second, which would show a different end than every other reader;
- DTSTAMP and SEQUENCE are left as a placeholder, filled in by :func:`stamped` with when the
  chunk's content last changed and how often it did, so clients see every edit.

Lines are unfolded, edited and folded again at 75 octets (never inside a UTF-8 sequence); all
values come escaped from icalendar, so a title holding CRLF, ``;``, ``,`` or ``END:VEVENT``
stays inside its own property. A feed is header + VTIMEZONEs + chunks + footer: no
per-event serialisation at serving time.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from icalendar import Timezone

from bridge.model import Booking, BookingStatus, BufferMode, Privacy, Window
from mappings.expansion import expand
from mappings.ical import PRODID, Role, bookings_to_calendar, buffer_uid, event_uid

CRLF = "\r\n"
#: Stands for the DTSTAMP and SEQUENCE lines in a cached template (no rendered text has NULs).
STAMP_MARK = "\x00STAMP\x00"
#: Octets of one content line before it is folded (RFC 5545 3.1).
LINE_OCTETS = 75
#: VTIMEZONEs cover at least up to this year, as in the room calendars.
MIN_ZONE_LAST_YEAR = 2038
FEED_FOOTER = "END:VCALENDAR" + CRLF

#: Content lines a feed leaves out: the round-trip properties, and SEQUENCE (set per chunk).
_DROPPED = ("X-ROOMBRIDGE-", "SEQUENCE:", "SEQUENCE;")
#: A busy feed does not even say that a booking is private.
_DROPPED_BUSY = (*_DROPPED, "CLASS:", "CLASS;")
#: Date-time properties that may name a zone (only their parameters are searched for TZID).
_ZONED = ("DTSTART;", "DTEND;", "RDATE;", "EXDATE;", "RECURRENCE-ID;")
_UNFOLD = re.compile("\r\n[ \t]")
_BOUNDS = ("DTSTART;", "DTEND;")
_LOCAL_TIME = re.compile(r"\d{8}T\d{6}")
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class RenderedBooking:
    """A booking's feed text before stamping, and what assembling a feed needs to know.

    ``first_start``/``last_end`` bound the time the booking blocks, shown buffers included
    (``last_end`` is None for a rule, whose end is left to :func:`shows_in_window`).
    """

    template: str
    content_hash: str
    tzids: tuple[str, ...]
    first_start: datetime
    last_end: datetime | None
    recurring: bool
    first_year: int
    last_year: int


# --- one booking -----------------------------------------------------------------------------


def feed_booking(booking: Booking) -> Booking | None:
    """The booking as a feed shows it: None when cancelled, cancelled occurrences as EXDATEs."""
    if not booking.status.is_live:
        return None
    recurrence = booking.recurrence
    if recurrence is None:
        return booking
    if recurrence.rrule is None and booking.start not in recurrence.rdates:
        recurrence = replace(recurrence, rdates=(booking.start, *recurrence.rdates))
        booking = booking.evolve(recurrence=recurrence)
    cancelled = [o for o in recurrence.overrides if o.status is BookingStatus.CANCELLED]
    if not cancelled:
        return booking
    kept = tuple(o for o in recurrence.overrides if o.status is not BookingStatus.CANCELLED)
    exdates = {instant.astimezone(UTC): instant for instant in recurrence.exdates}
    for override in cancelled:
        exdates.setdefault(override.recurrence_id.astimezone(UTC), override.recurrence_id)
    ordered = tuple(exdates[instant] for instant in sorted(exdates))
    return booking.evolve(recurrence=replace(recurrence, overrides=kept, exdates=ordered))


def minimised(booking: Booking, privacy: Privacy) -> Booking:
    """The booking without what the privacy level keeps out of a feed, nor provider extras.

    The mapping already writes only what the level allows; removing the rest before it
    even sees the booking keeps that true whatever the mapping does. A busy feed does not
    even say when the booking was last edited (no LAST-MODIFIED): clients see edits through
    DTSTAMP and SEQUENCE.
    """
    title = privacy is not Privacy.BUSY
    full = privacy is Privacy.FULL
    recurrence = booking.recurrence
    if recurrence is not None and not full:
        overrides = tuple(
            replace(o, title=o.title if title else None, description=None, version=None)
            for o in recurrence.overrides
        )
        recurrence = replace(recurrence, overrides=overrides)
    return booking.evolve(
        title=booking.title if title else "",
        description=booking.description if full else "",
        organizer=booking.organizer if full else None,
        attendees=booking.attendees if full else (),
        recurrence=recurrence,
        version=None,
        updated=booking.updated if title else None,
        extra=(),
    )


def render_booking(
    booking: Booking, *, room_id: str, privacy: Privacy, buffers: BufferMode
) -> RenderedBooking | None:
    """The feed chunk template of a booking, or None when the feed shows nothing of it.

    Raises the mapping's errors (for example an unknown time zone) for the caller to record.
    """
    return render_bookings([booking], room_id=room_id, privacy=privacy, buffers=buffers)[0]


def render_bookings(
    bookings: Sequence[Booking], *, room_id: str, privacy: Privacy, buffers: BufferMode
) -> list[RenderedBooking | None]:
    """:func:`render_booking` of each booking, through one pass of the mapping for them all.

    Serialising many bookings into one VCALENDAR and cutting it apart by UID costs what one
    big calendar costs, not one calendar wrapper per booking. One bad booking fails the
    whole call: the caller retries one by one to isolate it.
    """
    shown = [feed_booking(booking) for booking in bookings]
    live = [minimised(booking, privacy) for booking in shown if booking is not None]
    if not live:
        return [None for _ in bookings]
    ics = bookings_to_calendar(live, privacy=privacy, buffers=buffers, round_trip=False)
    events = _published_events(ics, room_id, privacy)
    return [None if booking is None else _rendered(booking, events, buffers) for booking in shown]


def _rendered(
    booking: Booking, events: dict[str, _PublishedEvents], buffers: BufferMode
) -> RenderedBooking:
    """One booking's chunk template, from the published events of its UIDs."""
    uid = event_uid(booking.booking_key)
    lines: list[str] = []
    zones: dict[str, None] = {}
    for series_uid in (uid, buffer_uid(uid, Role.SETUP), buffer_uid(uid, Role.CLEANUP)):
        published = events.get(series_uid)
        if published is not None:
            lines.extend(published.lines)
            zones.update(published.zones)
    template = CRLF.join(lines) + CRLF
    first_start, last_end = blocked_span(booking, buffers)
    first_year, last_year = _years_spanned(booking)
    return RenderedBooking(
        template=template,
        content_hash=hashlib.sha256(template.encode()).hexdigest(),
        tzids=tuple(zones),
        first_start=first_start,
        last_end=last_end,
        recurring=booking.is_recurring,
        first_year=first_year,
        last_year=last_year,
    )


@dataclass(slots=True)
class _PublishedEvents:
    """The edited VEVENT lines of one calendar UID, and the TZIDs they name."""

    lines: list[str]
    zones: dict[str, None]


def _published_events(ics: bytes, room_id: str, privacy: Privacy) -> dict[str, _PublishedEvents]:
    """The VEVENTs of a calendar edited for a feed, grouped by their calendar UID."""
    groups: dict[str, _PublishedEvents] = {}
    event: list[str] = []
    zones: dict[str, None] = {}
    uid = ""
    inside = False
    dropped = _DROPPED_BUSY if privacy is Privacy.BUSY else _DROPPED
    for line in _UNFOLD.sub("", ics.decode("utf-8")).split(CRLF):
        if not inside:
            if line == "BEGIN:VEVENT":
                inside, event, zones, uid = True, [line], {}, ""
            continue
        if line.startswith(dropped):
            continue
        if line == "END:VEVENT":
            inside = False
            event.append(line)
            event = _unambiguous(event)
            group = groups.setdefault(uid, _PublishedEvents([], {}))
            group.lines.extend(event)
            group.zones.update(zones)
            continue
        if line.startswith("DTSTAMP:"):
            line = STAMP_MARK
        elif line.startswith("UID:"):
            uid = line[4:]
            line = "UID:" + feed_uid(room_id, uid)
        elif line.startswith(_ZONED) and ";TZID=" in line.partition(":")[0]:
            zones[_tzid_of(line)] = None
        event.append(line if len(line) <= LINE_OCTETS and line.isascii() else fold_line(line))
    return groups


def _unambiguous(event: list[str]) -> list[str]:
    """A non-recurring VEVENT with any ambiguous or skipped local DTSTART/DTEND put in UTC."""
    if any(line.startswith(("RRULE", "RDATE")) for line in event):
        return event
    return [_in_utc_if_ambiguous(line) if line.startswith(_BOUNDS) else line for line in event]


def _in_utc_if_ambiguous(line: str) -> str:
    """``DTSTART;TZID=Z:local`` as ``DTSTART:utcZ`` when the local time is not unique."""
    name, _, value = line.partition(":")
    if ";TZID=" not in name or not _LOCAL_TIME.fullmatch(value):
        return line
    tzid = _tzid_of(line)
    if value[:8] not in _days_with_a_change(tzid, int(value[:4])):
        return line
    zone = ZoneInfo(tzid)
    local = datetime.strptime(value, "%Y%m%dT%H%M%S").replace(tzinfo=zone)
    if local.utcoffset() == local.replace(fold=1).utcoffset():
        return line
    # fold=0: the first of a repeated hour, and the offset before a skipped one (RFC 5545).
    instant = local.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{name.split(';', 1)[0]}:{instant}"


@lru_cache(maxsize=256)
def _days_with_a_change(tzid: str, year: int) -> frozenset[str]:
    """``YYYYMMDD`` of the days around each UTC-offset change of a zone in a year (cached)."""
    try:
        zone = ZoneInfo(tzid)
    except (ZoneInfoNotFoundError, ValueError):
        return frozenset()
    days: set[str] = set()
    day = datetime(year, 1, 1, 12, tzinfo=zone) - timedelta(days=1)
    offset = day.utcoffset()
    while day.year <= year:
        following = day + timedelta(days=1)
        if following.utcoffset() != offset:
            days.update(f"{moment:%Y%m%d}" for moment in (day, following))
            offset = following.utcoffset()
        day = following
    return frozenset(days)


def _tzid_of(line: str) -> str:
    """The TZID parameter of a date-time line (IANA names hold no ``:``, ``;`` or quote)."""
    value = line.split(";TZID=", 1)[1]
    end = min((i for i in (value.find(":"), value.find(";")) if i >= 0), default=len(value))
    return value[:end].strip('"')


def feed_uid(room_id: str, uid: str) -> str:
    """The UID a feed publishes for a calendar UID: stable, opaque, distinct per room."""
    digest = hashlib.sha256(f"{room_id}\x00{uid}".encode()).hexdigest()[:32]
    return f"{digest}@roombridge"


def stamped(template: str, rendered_at: datetime, sequence: int) -> str:
    """A chunk template with its DTSTAMP (when its content last changed) and SEQUENCE."""
    stamp = rendered_at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return template.replace(STAMP_MARK, f"DTSTAMP:{stamp}{CRLF}SEQUENCE:{sequence}")


def fold_line(line: str) -> str:
    """A content line folded at 75 octets, continuation lines starting with a space."""
    data = line.encode("utf-8")
    if len(data) <= LINE_OCTETS:
        return line
    pieces: list[bytes] = []
    start, limit = 0, LINE_OCTETS
    while len(data) - start > limit:
        cut = start + limit
        while data[cut] & 0xC0 == 0x80:  # a UTF-8 continuation byte: cut before its sequence
            cut -= 1
        pieces.append(data[start:cut])
        start, limit = cut, LINE_OCTETS - 1
    pieces.append(data[start:])
    return (CRLF + " ").join(piece.decode("utf-8") for piece in pieces)


# --- where a booking is in time --------------------------------------------------------------


def _shown_buffers(booking: Booking, buffers: BufferMode) -> tuple[timedelta, timedelta]:
    """Setup and cleanup time the feed shows around each occurrence."""
    if buffers is BufferMode.HIDDEN:
        return timedelta(0), timedelta(0)
    return booking.buffers.before, booking.buffers.after


def blocked_span(booking: Booking, buffers: BufferMode) -> tuple[datetime, datetime | None]:
    """Earliest start and latest end the booking blocks (end None: an RRULE decides)."""
    before, after = _shown_buffers(booking, buffers)
    starts = [booking.start]
    ends = [booking.end]
    recurrence = booking.recurrence
    if recurrence is not None:
        starts.extend(recurrence.rdates)
        ends.extend(instant + booking.duration for instant in recurrence.rdates)
        starts.extend(o.start for o in recurrence.overrides)
        ends.extend(o.end for o in recurrence.overrides)
    first = min(instant.astimezone(UTC) for instant in starts) - before
    if recurrence is not None and recurrence.rrule:
        return first, None
    return first, max(instant.astimezone(UTC) for instant in ends) + after


def shows_in_window(booking: Booking, buffers: BufferMode, window: Window) -> bool:
    """Whether any live occurrence of the booking, with its shown buffers, meets the window."""
    shown = feed_booking(booking)
    if shown is None:
        return False
    before, after = _shown_buffers(shown, buffers)
    widened = Window(window.start - after, window.end + before)
    return any(o.status.is_live for o in expand(shown, widened))


def span_meets_window(first_start: datetime, last_end: datetime | None, window: Window) -> bool:
    """Whether a blocked span (open-ended when ``last_end`` is None) meets the window."""
    return first_start < window.end and (last_end is None or last_end > window.start)


def feed_window(now: datetime, past_days: int, future_days: int) -> Window:
    """The feed's window: whole UTC days, so a feed (and its ETag) changes at most daily."""
    today = datetime.combine(now.astimezone(UTC).date(), time(0), tzinfo=UTC)
    return Window(today - timedelta(days=past_days), today + timedelta(days=future_days + 1))


def _years_spanned(booking: Booking) -> tuple[int, int]:
    """First and last year the booking's written times fall in, with a spare year each side."""
    moments = [booking.start, booking.end]
    recurrence = booking.recurrence
    if recurrence is not None:
        moments.extend(recurrence.rdates)
        moments.extend(recurrence.exdates)
        for override in recurrence.overrides:
            moments.extend((override.recurrence_id, override.start, override.end))
    years = [moment.year for moment in moments]
    return max(min(years) - 1, 1970), max(years) + 1


# --- a whole feed ----------------------------------------------------------------------------


def feed_header(name: str, refresh: timedelta) -> str:
    """The VCALENDAR properties: calendar name, and how often clients should refresh."""
    interval = ical_duration(refresh)
    escaped = escape_text(name)
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{PRODID}",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        f"NAME:{escaped}",
        f"X-WR-CALNAME:{escaped}",
        f"REFRESH-INTERVAL;VALUE=DURATION:{interval}",
        f"X-PUBLISHED-TTL:{interval}",
    ]
    return CRLF.join(fold_line(line) for line in lines) + CRLF


def ical_duration(length: timedelta) -> str:
    """A positive duration in iCalendar form, e.g. ``PT5M`` or ``P1DT2H``."""
    seconds = max(int(length.total_seconds()), 0)
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, seconds = divmod(rest, 60)
    parts = ((hours, "H"), (minutes, "M"), (seconds, "S"))
    clock = "".join(f"{number}{unit}" for number, unit in parts if number)
    text = "P" + (f"{days}D" if days else "") + (f"T{clock}" if clock else "")
    return text if text != "P" else "PT0S"


def escape_text(text: str) -> str:
    """A TEXT value (RFC 5545 3.3.11): backslash, ``;``, ``,`` and line breaks escaped."""
    clean = _CONTROLS.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    return clean.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def zone_range(first_years: Iterable[int], last_years: Iterable[int]) -> tuple[int, int]:
    """The years the feed's VTIMEZONEs must cover."""
    first = min(first_years, default=MIN_ZONE_LAST_YEAR)
    last = max(max(last_years, default=MIN_ZONE_LAST_YEAR), MIN_ZONE_LAST_YEAR)
    return first, last


@lru_cache(maxsize=256)
def vtimezone(tzid: str, first_year: int, last_year: int) -> str:
    """The VTIMEZONE of a zone over the given years (generating one is slow: memoised)."""
    component: Any = Timezone.from_tzid(
        tzid, first_date=date(first_year, 1, 1), last_date=date(last_year, 12, 31)
    )
    return cast(bytes, component.to_ical()).decode("utf-8")


def concatenate(header: str, zones: Sequence[str], chunks: Sequence[str]) -> bytes:
    """The feed's bytes: header, VTIMEZONEs, chunks, footer."""
    return "".join([header, *zones, *chunks, FEED_FOOTER]).encode("utf-8")
