"""iCalendar mapping: canonical bookings ⇄ VEVENTs, CalDAV identities and echo hashes.

A booking becomes one calendar object (one UID: the master VEVENT plus its RECURRENCE-ID
overrides, as CalDAV requires) and, with ``separate`` buffers, one object per buffer side that
recurs exactly like the booking. Everything the inverse needs to rebuild the booking exactly is
carried in ``X-ROOMBRIDGE-*`` properties; events from any other client are mapped on a best
effort basis (UID as key, Windows TZIDs, floating and all-day times, DURATION).

Pure: no I/O and no clock reads. The only state is a memo of generated VTIMEZONE components.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any, TypeVar, cast
from urllib.parse import quote, unquote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from icalendar import Calendar, Component, Event, Timezone, vCalAddress, vDuration, vRecur, vText

from bridge.model import (
    Booking,
    BookingKey,
    BookingStatus,
    BufferMode,
    Buffers,
    Override,
    Person,
    Privacy,
    Recurrence,
)
from mappings.errors import (
    InvalidValue,
    MalformedInput,
    MappingError,
    MissingField,
    UnknownTimezone,
    UnsupportedRecurrence,
)
from mappings.expansion import join_rule, rule_instants, rule_parts

PRODID = "-//roombridge//calendar sync bridge//EN"

#: The encoding of every text value written (iCalendar is UTF-8).
DEFAULT_ENCODING = "utf-8"

#: DTSTAMP when neither the caller nor the booking supplies a time: output must not read clocks.
FIXED_DTSTAMP = datetime(1970, 1, 1, tzinfo=UTC)

#: Octets of a content line before it is folded (RFC 5545 3.1).
MAX_LINE_OCTETS = 75

#: Longest UID written verbatim; longer identities are hashed so hrefs stay short.
MAX_UID_LENGTH = 120

UID_PREFIX = "roombridge"
SETUP_SUFFIX = "-setup"
CLEANUP_SUFFIX = "-cleanup"

BUSY_SUMMARY = "Busy"
SETUP_SUMMARY = "Setup"
CLEANUP_SUMMARY = "Cleanup"

X_PROVIDER = "X-ROOMBRIDGE-PROVIDER"
X_KEY = "X-ROOMBRIDGE-KEY"
X_RESOURCE = "X-ROOMBRIDGE-RESOURCE"
X_TIMEZONE = "X-ROOMBRIDGE-TIMEZONE"
X_ROLE = "X-ROOMBRIDGE-ROLE"
X_PRIVACY = "X-ROOMBRIDGE-PRIVACY"
X_BUFFER_MODE = "X-ROOMBRIDGE-BUFFER-MODE"
X_SETUP = "X-ROOMBRIDGE-SETUP"
X_CLEANUP = "X-ROOMBRIDGE-CLEANUP"
X_VERSION = "X-ROOMBRIDGE-VERSION"
X_EXTRA = "X-ROOMBRIDGE-EXTRA"
X_EXPLICIT = "X-ROOMBRIDGE-EXPLICIT"
X_RRULE = "X-ROOMBRIDGE-RRULE"
X_UPDATED = "X-ROOMBRIDGE-UPDATED"
X_PHONE_PARAM = "X-ROOMBRIDGE-PHONE"
X_NAME_PARAM = "X-ROOMBRIDGE-NAME"
FULLWIDTH_BACKSLASH = "\uff3c"

#: Properties a server, a client or a re-render may change without changing the meaning.
VOLATILE_PROPERTIES = frozenset(
    {"DTSTAMP", "SEQUENCE", "LAST-MODIFIED", "CREATED", "PRODID", X_VERSION, X_UPDATED}
)
#: Prefixes of properties CalDAV servers add on their own.
SERVER_PROPERTY_PREFIXES = ("X-RADICALE-", "X-XANDIKOS-")

#: How far an endless rule is written out when a buffer moved across midnight leaves no rule
#: that expresses it (monthly and yearly rules only).
MATERIALISED_HORIZON = timedelta(days=5 * 366)

_WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
#: Rule parts that pick days other than by weekday, or times within a day.
_DAY_PARTS = frozenset({"BYMONTHDAY", "BYYEARDAY", "BYWEEKNO", "BYMONTH", "BYSETPOS"})
_TIME_PARTS = frozenset({"BYHOUR", "BYMINUTE", "BYSECOND"})

#: ATTENDEE/ORGANIZER value for a person known by name or phone only.
NO_ADDRESS = "urn:x-roombridge:no-address"

_STATUS_TO_ICAL = {
    BookingStatus.CONFIRMED: "CONFIRMED",
    BookingStatus.TENTATIVE: "TENTATIVE",
    BookingStatus.CANCELLED: "CANCELLED",
}
_ICAL_TO_STATUS = {value: status for status, value in _STATUS_TO_ICAL.items()}

#: Characters RFC 5545 TEXT cannot carry (CONTROL minus HTAB and the escaped line break).
_FORBIDDEN_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f]")
_UID_KEY_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-")
_UID_PROVIDER_SAFE = _UID_KEY_SAFE - {"-"}
_PHONE_SAFE = "+-()."
#: A whole VTIMEZONE component; BEGIN/END lines are never folded, and TEXT cannot hold a line
#: break, so a line starting with them is the real thing.
_VTIMEZONE_BLOCK = re.compile(
    r"^BEGIN:VTIMEZONE\r?\n.*?^END:VTIMEZONE\r?\n", re.MULTILINE | re.DOTALL | re.IGNORECASE
)
_TEXT_ESCAPE = re.compile(r"\\([\\;,nN])")
_E = TypeVar("_E", bound=StrEnum)
_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Etc/Universal", "Universal", "Etc/Zulu", "Zulu"})


class Role(StrEnum):
    """What a calendar object stands for: the booking itself or one of its buffers."""

    BOOKING = "booking"
    SETUP = "setup"
    CLEANUP = "cleanup"


@dataclass(frozen=True, slots=True)
class CalendarObject:
    """One CalDAV calendar object resource: a UID, its full VCALENDAR text and content hash.

    ``content_hash`` equals :func:`content_hash` of ``ics``; it is computed from the
    components before they are serialised, which spares the sync engine re-parsing every
    object it renders.
    """

    uid: str
    ics: bytes
    content_hash: str = ""

    @property
    def href_name(self) -> str:
        """The resource name (``<uid>.ics``) the object is stored under."""
        return object_href_name(self.uid)


# --- identities -------------------------------------------------------------------------------


def event_uid(key: BookingKey) -> str:
    """The deterministic, href-safe UID of the calendar object for a booking.

    Each part is escaped injectively (``_xx`` per unsafe byte, ``_`` included); the provider
    part never contains ``-``, and a key never ends in a buffer suffix, so distinct bookings and
    their buffer objects can never share a UID. Identities longer than ``MAX_UID_LENGTH``
    become a hash (the ``_h`` marker cannot come out of the escaping).
    """
    provider = _escape_uid_part(key.provider, _UID_PROVIDER_SAFE)
    escaped_key = _escape_uid_part(key.key, _UID_KEY_SAFE)
    for suffix in (SETUP_SUFFIX, CLEANUP_SUFFIX):
        if escaped_key.endswith(suffix):
            escaped_key = escaped_key[: -len(suffix)] + "_2d" + suffix[1:]
    uid = f"{UID_PREFIX}-{provider}-{escaped_key}"
    if len(uid) <= MAX_UID_LENGTH:
        return uid
    digest = hashlib.sha256(f"{key.provider}\x00{key.key}".encode()).hexdigest()[:40]
    return f"{UID_PREFIX}-{provider[:32]}-_h{digest}"


def _escape_uid_part(text: str, safe: frozenset[str]) -> str:
    """``text`` with every character outside ``safe`` written as ``_xx`` UTF-8 bytes."""
    return "".join(
        char if char in safe else "".join(f"_{byte:02x}" for byte in char.encode()) for char in text
    )


def buffer_uid(uid: str, role: Role) -> str:
    """The UID of a booking's setup or cleanup object."""
    return uid + (SETUP_SUFFIX if role is Role.SETUP else CLEANUP_SUFFIX)


def object_href_name(uid: str) -> str:
    """The CalDAV resource name for a UID: ``<uid>.ics``, percent-escaped, hashed when long."""
    name = quote(uid, safe="")
    if len(name) > MAX_UID_LENGTH + 40:
        name = hashlib.sha256(uid.encode()).hexdigest()
    return f"{name}.ics"


# --- booking → iCalendar ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Series:
    """One VEVENT series to write: the booking or one buffer side, already shifted in time."""

    uid: str
    role: Role
    start: datetime
    end: datetime
    recurrence: Recurrence | None


@dataclass(frozen=True, slots=True)
class _Rendering:
    """The choices that shape every event written for one booking."""

    booking: Booking
    zone: ZoneInfo
    privacy: Privacy
    buffers: BufferMode
    dtstamp: datetime
    round_trip: bool = True


def booking_to_objects(
    booking: Booking,
    *,
    privacy: Privacy = Privacy.FULL,
    buffers: BufferMode = BufferMode.SEPARATE,
    dtstamp: datetime | None = None,
) -> list[CalendarObject]:
    """The calendar objects of a booking: its own, then setup and cleanup ones when separate."""
    rendering = _rendering(booking, privacy, buffers, dtstamp)
    objects = []
    for series in _series_of(rendering):
        events = _series_events(series, rendering)
        zones = _timezone_blocks(events, _years_spanned(booking))
        ics = _calendar_bytes(zones, events, name=None)
        objects.append(CalendarObject(series.uid, ics, _events_hash(events)))
    return objects


def _events_hash(events: Sequence[Event]) -> str:
    """:func:`content_hash` of a VCALENDAR holding ``events``, without serialising and parsing."""
    calendar = Calendar()
    calendar.add("VERSION", "2.0")
    calendar.add("CALSCALE", "GREGORIAN")
    for event in events:
        calendar.add_component(event)
    return hashlib.sha256(_normal_form(calendar).encode()).hexdigest()


def bookings_to_calendar(
    bookings: Iterable[Booking],
    *,
    privacy: Privacy,
    buffers: BufferMode,
    name: str | None = None,
    dtstamp: datetime | None = None,
    round_trip: bool = True,
) -> bytes:
    """One VCALENDAR with every booking's events and each VTIMEZONE once (feeds, ``convert``).

    ``round_trip=False`` leaves out the ``X-ROOMBRIDGE-*`` properties: the calendar can then
    not be read back into bookings, and costs about a third fewer lines (feeds drop them).
    """
    events: list[Event] = []
    first_year, last_year = 9999, 1
    for booking in bookings:
        rendering = _rendering(booking, privacy, buffers, dtstamp, round_trip)
        for series in _series_of(rendering):
            events.extend(_series_events(series, rendering))
        low, high = _years_spanned(booking)
        first_year, last_year = min(first_year, low), max(last_year, high)
    zones = _timezone_blocks(events, (first_year, last_year)) if events else []
    return _calendar_bytes(zones, events, name=name)


def _rendering(
    booking: Booking,
    privacy: Privacy,
    buffers: BufferMode,
    dtstamp: datetime | None,
    round_trip: bool = True,
) -> _Rendering:
    """The rendering choices for one booking, validating its zone."""
    stamp = dtstamp or booking.updated or FIXED_DTSTAMP
    if stamp.tzinfo is None:
        raise InvalidValue("DTSTAMP must be aware", booking=str(booking.booking_key))
    return _Rendering(
        booking=booking,
        zone=_booking_zone(booking),
        privacy=_effective_privacy(booking, privacy),
        buffers=buffers,
        dtstamp=stamp.astimezone(UTC),
        round_trip=round_trip,
    )


def _booking_zone(booking: Booking) -> ZoneInfo:
    """The room zone of a booking, or UnknownTimezone naming it."""
    zone = _loadable_zone(booking.timezone)
    if zone is None:
        raise UnknownTimezone(
            f"unknown time zone {booking.timezone!r}",
            booking=str(booking.booking_key),
            field="timezone",
        )
    return zone


def _effective_privacy(booking: Booking, privacy: Privacy) -> Privacy:
    """Private bookings show no title unless the calendar shows everything."""
    if booking.private and privacy is Privacy.TITLES:
        return Privacy.BUSY
    return privacy


def _series_of(rendering: _Rendering) -> list[_Series]:
    """The series to write for a booking under its buffer mode."""
    booking, zone = rendering.booking, rendering.zone
    uid = event_uid(booking.booking_key)
    before, after = booking.buffers.before, booking.buffers.after
    if rendering.buffers is BufferMode.MERGED and booking.buffers:

        def widened(start: datetime, end: datetime) -> tuple[datetime, datetime]:
            return start - before, end + after

        return [_moved(booking, uid, Role.BOOKING, zone, widened, -before)]
    series = [_Series(uid, Role.BOOKING, booking.start, booking.end, booking.recurrence)]
    if rendering.buffers is not BufferMode.SEPARATE:
        return series

    def setup(start: datetime, end: datetime) -> tuple[datetime, datetime]:
        return start - before, start

    def cleanup(start: datetime, end: datetime) -> tuple[datetime, datetime]:
        return end, end + after

    if before:
        series.append(
            _moved(booking, buffer_uid(uid, Role.SETUP), Role.SETUP, zone, setup, -before)
        )
    if after:
        cleanup_uid = buffer_uid(uid, Role.CLEANUP)
        series.append(_moved(booking, cleanup_uid, Role.CLEANUP, zone, cleanup, booking.duration))
    return series


_Span = Callable[[datetime, datetime], tuple[datetime, datetime]]


def _moved(
    booking: Booking, uid: str, role: Role, zone: ZoneInfo, span: _Span, shift: timedelta
) -> _Series:
    """A booking's series re-timed for a role, on the room's wall clock.

    ``span`` maps each occurrence's (start, end) to the written one; ``shift`` is how far the
    rule's instants (and so RECURRENCE-IDs, RDATEs, EXDATEs and UNTIL) move.
    """

    def local_span(start: datetime, end: datetime) -> tuple[datetime, datetime]:
        return span(start.astimezone(zone), end.astimezone(zone))

    start, end = local_span(booking.start, booking.end)
    recurrence = booking.recurrence
    if recurrence is not None:
        recurrence = _shifted_recurrence(recurrence, shift, zone, local_span, booking.start)
    return _Series(uid, role, start, end, recurrence)


def _shifted_recurrence(
    recurrence: Recurrence, shift: timedelta, zone: ZoneInfo, span: _Span, first: datetime
) -> Recurrence:
    """A recurrence whose instants moved by ``shift`` and whose overrides follow ``span``.

    When no rule can express the moved instants (see ``_shifted_rule``), they are written out
    as RDATEs instead.
    """

    def moved(instant: datetime) -> datetime:
        return instant.astimezone(zone) + shift

    overrides = []
    for override in recurrence.overrides:
        start, end = span(override.start, override.end)
        overrides.append(
            replace(override, recurrence_id=moved(override.recurrence_id), start=start, end=end)
        )
    rule = recurrence.rrule
    rdates = [moved(instant) for instant in recurrence.rdates]
    if rule:
        shifted = _shifted_rule(rule, shift, zone, first)
        if shifted is None:
            rdates.extend(moved(i) for i in _materialised(rule, first, zone) if i != first)
        rule = shifted
    return Recurrence(
        rrule=rule,
        rdates=tuple(sorted(set(rdates))),
        exdates=tuple(moved(instant) for instant in recurrence.exdates),
        overrides=tuple(overrides),
    )


def _shifted_rule(rule: str, shift: timedelta, zone: ZoneInfo, first: datetime) -> str | None:
    """The rule producing every instant moved by ``shift`` on the wall clock, or None.

    Moving DTSTART moves the instants as long as they stay on their day. A move across
    midnight must also move the days the rule picks: DAILY and WEEKLY rules rotate their
    weekdays (and WKST, so weeks still group the same days); other day-selecting rules, and
    rules picking hours or minutes, have no moved equivalent (None).
    """
    parts = rule_parts(rule)
    if not shift:
        return rule
    if _TIME_PARTS & parts.keys():
        return None
    local = first.astimezone(zone)
    days = ((local + shift).date() - local.date()).days
    if days and not _rotate_days(parts, days):
        return None
    if "UNTIL" in parts:
        until = _until_instant(parts["UNTIL"], zone)
        parts["UNTIL"] = _utc_text((until.astimezone(zone) + shift).astimezone(UTC))
    return join_rule(parts)


def _rotate_days(parts: dict[str, str], days: int) -> bool:
    """Move a DAILY/WEEKLY rule's weekdays by ``days`` in place; False if it cannot be done."""
    if parts["FREQ"] not in ("DAILY", "WEEKLY") or _DAY_PARTS & parts.keys():
        return False
    if "BYDAY" not in parts:
        return True
    codes = parts["BYDAY"].split(",")
    if any(code not in _WEEKDAYS for code in codes):
        return False  # ordinals such as 1MO
    parts["BYDAY"] = ",".join(_rotated_weekday(code, days) for code in codes)
    if parts["FREQ"] == "WEEKLY" and parts.get("INTERVAL", "1") != "1":
        # Only every-other-week rules group days into weeks; MO is the default week start.
        week_start = _rotated_weekday(parts.pop("WKST", "MO"), days)
        if week_start != "MO":
            parts["WKST"] = week_start
    return True


def _rotated_weekday(code: str, days: int) -> str:
    """The weekday ``days`` after ``code``."""
    return _WEEKDAYS[(_WEEKDAYS.index(code) + days) % 7]


def _materialised(rule: str, first: datetime, zone: ZoneInfo) -> list[datetime]:
    """A rule's instants: all of them when it ends, else those within the horizon."""
    parts = rule_parts(rule)
    bounded = "COUNT" in parts or "UNTIL" in parts
    horizon = datetime.max.replace(tzinfo=UTC) if bounded else first + MATERIALISED_HORIZON
    return list(rule_instants(rule, first, zone, horizon))


def _until_instant(value: str, zone: ZoneInfo) -> datetime:
    """The instant an UNTIL value means (a DATE includes its whole day; local times the zone)."""
    try:
        if value.endswith("Z"):
            return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        if "T" in value:
            return datetime.strptime(value, "%Y%m%dT%H%M%S").replace(tzinfo=zone)
        day = datetime.strptime(value, "%Y%m%d")
        return datetime.combine(day.date(), time(23, 59, 59), tzinfo=zone)
    except ValueError as exc:
        raise InvalidValue(f"malformed UNTIL {value!r}", field="RRULE") from exc


def _utc_text(instant: datetime) -> str:
    """An instant in iCalendar UTC form."""
    return instant.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _series_events(series: _Series, rendering: _Rendering) -> list[Event]:
    """The master VEVENT of a series and one VEVENT per override."""
    master = _master_event(series, rendering)
    events = [master]
    if series.recurrence is not None:
        events.extend(
            _override_event(series, override, rendering) for override in series.recurrence.overrides
        )
    return events


def _master_event(series: _Series, rendering: _Rendering) -> Event:
    """The master VEVENT: times, recurrence, content and the round-trip properties."""
    booking, zone = rendering.booking, rendering.zone
    event = _event_frame(series.uid, rendering.dtstamp)
    recurring = series.recurrence is not None and bool(
        series.recurrence.rrule or series.recurrence.rdates
    )
    event.add(
        "DTSTART", series.start.astimezone(zone) if recurring else _written(series.start, zone)
    )
    event.add("DTEND", _written(series.end, zone))
    event.add("STATUS", _STATUS_TO_ICAL[booking.status])
    _add_content(event, series.role, rendering, booking.title, booking.description)
    if series.recurrence is not None:
        _add_recurrence(event, series.recurrence, zone)
    if booking.updated is not None:
        event.add("LAST-MODIFIED", booking.updated.astimezone(UTC))
    if not rendering.round_trip:
        return event
    _add_round_trip(event, series.role, rendering)
    original = booking.recurrence.rrule if booking.recurrence else None
    if (
        series.role is Role.BOOKING
        and original
        and series.recurrence
        and not series.recurrence.rrule
    ):
        # Merged buffers moved the series across midnight and no rule expresses that.
        _add_text(event, X_RRULE, original)
    return event


def _override_event(series: _Series, override: Override, rendering: _Rendering) -> Event:
    """A RECURRENCE-ID VEVENT: a complete component, since clients do not inherit fields."""
    booking, zone = rendering.booking, rendering.zone
    event = _event_frame(series.uid, rendering.dtstamp)
    event.add("RECURRENCE-ID", _written(override.recurrence_id, zone))
    event.add("DTSTART", _written(override.start, zone))
    event.add("DTEND", _written(override.end, zone))
    status = override.status or booking.status
    if booking.status is BookingStatus.CANCELLED:
        status = BookingStatus.CANCELLED
    event.add("STATUS", _STATUS_TO_ICAL[status])
    title = booking.title if override.title is None else override.title
    description = booking.description if override.description is None else override.description
    _add_content(event, series.role, rendering, title, description)
    if series.role is not Role.BOOKING or not rendering.round_trip:
        return event
    explicit = _explicit_fields(override, rendering.privacy)
    if explicit:
        _add_text(event, X_EXPLICIT, " ".join(explicit))
    if override.version is not None:
        _add_text(event, X_VERSION, override.version)
    return event


def _explicit_fields(override: Override, privacy: Privacy) -> list[str]:
    """The override fields set on purpose (not inherited) that this privacy level writes.

    The status is recorded with its value: a cancelled series writes every instance as
    cancelled, whatever the override says.
    """
    fields = [f"status={override.status.value}"] if override.status is not None else []
    if privacy is not Privacy.BUSY and override.title is not None:
        fields.append("title")
    if privacy is Privacy.FULL and override.description is not None:
        fields.append("description")
    return fields


def _event_frame(uid: str, dtstamp: datetime) -> Event:
    """A VEVENT with the properties every event carries."""
    event = Event()
    event.add("UID", uid)
    event.add("DTSTAMP", dtstamp)
    event.add("TRANSP", "OPAQUE")
    return event


def _written(instant: datetime, zone: ZoneInfo) -> datetime:
    """An instant as written: room-local when a TZID time names it exactly, else UTC.

    The second of two repeated wall-clock times (DST fall-back) cannot be written with a
    TZID, because readers take the first; UTC keeps it exact.
    """
    local = instant.astimezone(zone)
    if local.replace(fold=0).astimezone(UTC) == instant.astimezone(UTC):
        return local
    return instant.astimezone(UTC)


def _add_content(
    event: Event, role: Role, rendering: _Rendering, title: str, description: str
) -> None:
    """SUMMARY, DESCRIPTION, people and CLASS as the privacy level allows."""
    booking, privacy = rendering.booking, rendering.privacy
    if role is not Role.BOOKING:
        name = SETUP_SUMMARY if role is Role.SETUP else CLEANUP_SUMMARY
        event.add("SUMMARY", BUSY_SUMMARY if privacy is Privacy.BUSY else name)
        return
    if booking.private:
        event.add("CLASS", "PRIVATE")
    if privacy is Privacy.BUSY:
        event.add("SUMMARY", BUSY_SUMMARY)
        return
    if title:
        event.add("SUMMARY", _text_value(title))
    if privacy is not Privacy.FULL:
        return
    if description:
        event.add("DESCRIPTION", _text_value(description))
    if booking.organizer is not None:
        event.add("ORGANIZER", _address(booking.organizer))
    for attendee in booking.attendees:
        event.add("ATTENDEE", _address(attendee))


class _ExactText(vText):
    r"""TEXT escaped exactly per RFC 5545 §3.3.11.

    icalendar's own escaping first turns a literal ``\N`` into a line break, so a title
    holding a backslash before an ``N`` would not come back as written.
    """

    def to_ical(self) -> bytes:
        escaped = (
            str(self)
            .replace("\\", "\\\\")
            .replace(";", "\\;")
            .replace(",", "\\,")
            .replace("\n", "\\n")
        )
        return escaped.encode(DEFAULT_ENCODING)


def _text_value(text: str) -> _ExactText:
    """A TEXT value of cleaned, exactly escaped text."""
    return _ExactText(_clean_text(text))


def _clean_text(text: str) -> str:
    """Text iCalendar can carry: line breaks as LF, no other control characters."""
    return _FORBIDDEN_CONTROLS.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def _address(person: Person) -> vCalAddress:
    """An ORGANIZER/ATTENDEE value; the address is percent-escaped so it cannot break a line."""
    if person.email:
        value = "mailto:" + quote(person.email, safe="@!$&'*+=?^_`{|}~.-")
    elif person.phone:
        value = "tel:" + quote(person.phone, safe=_PHONE_SAFE)
    else:
        value = NO_ADDRESS
    address = vCalAddress(value)
    if person.name:
        name = _clean_text(person.name)
        # icalendar misreads a backslash in a parameter as an escape (CN shows a look-alike)
        # and trims edge whitespace (so CN is written trimmed: what is written is what is
        # read, and hashed); then the exact name also travels percent-escaped.
        shown = name.replace("\\", FULLWIDTH_BACKSLASH).strip()
        if shown:
            address.params["CN"] = shown
        if "\\" in name or "\t" in name or name != name.strip():
            address.params[X_NAME_PARAM] = quote(name, safe="")
    if person.phone and person.email:
        # Percent-escaped: parameter values lose edge spaces and cannot hold every character.
        address.params[X_PHONE_PARAM] = quote(person.phone, safe=_PHONE_SAFE)
    return address


def _add_recurrence(event: Event, recurrence: Recurrence, zone: ZoneInfo) -> None:
    """RRULE (parts in their given order), then RDATE and EXDATE grouped by zone."""
    if recurrence.rrule:
        event.add("RRULE", _rule_value(recurrence.rrule))
    for name, instants in (("RDATE", recurrence.rdates), ("EXDATE", recurrence.exdates)):
        written = [_written(instant, zone) for instant in instants]
        local = [instant for instant in written if instant.tzinfo is zone]
        utc = [instant for instant in written if instant.tzinfo is not zone]
        for group in (local, utc):
            if group:
                event.add(name, group)


def _rule_value(rule: str) -> vRecur:
    """An RRULE value that writes back the rule's own text (FREQ first)."""
    try:
        return _RuleInOrder(vRecur.from_ical(join_rule(rule_parts(rule))))
    except (ValueError, TypeError) as exc:
        raise InvalidValue(f"invalid RRULE {rule!r}", field="RRULE") from exc


class _RuleInOrder(vRecur):
    """An RRULE value written with its parts in their own order, so it reads back verbatim."""

    def sorted_items(self) -> list[tuple[str, Any]]:
        """The parts in insertion order."""
        return list(self.items())


def _add_round_trip(event: Event, role: Role, rendering: _Rendering) -> None:
    """The X-ROOMBRIDGE-* properties from which the inverse rebuilds the booking.

    Defaults are left out (every line costs serialisation time in large feeds): no role means
    the booking itself, no privacy means full, no buffer mode means not merged, no setup or
    cleanup means none.
    """
    booking = rendering.booking
    _add_text(event, X_PROVIDER, booking.provider)
    _add_text(event, X_KEY, booking.key)
    if role is not Role.BOOKING:
        _add_text(event, X_ROLE, role.value)
        return
    _add_text(event, X_RESOURCE, booking.resource)
    _add_text(event, X_TIMEZONE, booking.timezone)
    if rendering.privacy is not Privacy.FULL:
        _add_text(event, X_PRIVACY, rendering.privacy.value)
    if rendering.buffers is BufferMode.MERGED:
        _add_text(event, X_BUFFER_MODE, rendering.buffers.value)
    if booking.buffers.before:
        event.add(X_SETUP, vDuration(booking.buffers.before))
    if booking.buffers.after:
        event.add(X_CLEANUP, vDuration(booking.buffers.after))
    if booking.version is not None:
        _add_text(event, X_VERSION, booking.version)
    if booking.updated is not None and booking.updated.microsecond:
        # LAST-MODIFIED has whole seconds; providers stamp milliseconds.
        _add_text(event, X_UPDATED, booking.updated.astimezone(UTC).isoformat())
    if rendering.privacy is Privacy.FULL and booking.extra:
        _add_text(event, X_EXTRA, json.dumps([list(pair) for pair in booking.extra]))


def _add_text(event: Event, name: str, value: str) -> None:
    """An X- property holding escaped TEXT (icalendar writes unknown properties raw)."""
    event.add(name, _text_value(value), parameters={"VALUE": "TEXT"})


def _years_spanned(booking: Booking) -> tuple[int, int]:
    """First and last calendar year a booking's written times can fall in."""
    moments = [booking.start, booking.end]
    recurrence = booking.recurrence
    if recurrence is not None:
        moments.extend(recurrence.rdates)
        moments.extend(recurrence.exdates)
        for override in recurrence.overrides:
            moments.extend((override.recurrence_id, override.start, override.end))
    years = [moment.year for moment in moments]
    # One spare year each side covers buffers and zone offsets across New Year.
    return max(min(years) - 1, 1970), max(years) + 1


def _timezone_blocks(events: Sequence[Event], years: tuple[int, int]) -> list[bytes]:
    """VTIMEZONE text for every TZID the events use, each once."""
    tzids: dict[str, None] = {}
    for event in events:
        for value in event.values():
            for item in value if isinstance(value, list) else [value]:
                tzid = getattr(item, "params", {}).get("TZID")
                if tzid:
                    tzids[str(tzid)] = None
    return [_vtimezone(tzid, years[0], max(years[1], 2038)) for tzid in tzids]


@lru_cache(maxsize=256)
def _vtimezone(tzid: str, first_year: int, last_year: int) -> bytes:
    """A VTIMEZONE for ``tzid`` covering the given years (generation is slow: memoised)."""
    component = Timezone.from_tzid(
        tzid, first_date=date(first_year, 1, 1), last_date=date(last_year, 12, 31)
    )
    return cast(bytes, component.to_ical())


def _calendar_bytes(zones: Sequence[bytes], events: Sequence[Event], *, name: str | None) -> bytes:
    """A VCALENDAR: header properties, VTIMEZONEs, then the events."""
    calendar = Calendar()
    calendar.add("PRODID", PRODID)
    calendar.add("VERSION", "2.0")
    calendar.add("CALSCALE", "GREGORIAN")
    if name is not None:
        calendar.add("X-WR-CALNAME", _text_value(name))
    header = _component_text(calendar)
    end = "END:VCALENDAR\r\n"
    events_text = "".join(_component_text(event) for event in events)
    return b"".join([header[: -len(end)].encode(), *zones, events_text.encode(), end.encode()])


def _component_text(component: Component) -> str:
    """A component's content lines (values escaped by icalendar), folded and CRLF-ended."""
    lines: Any = component.content_lines()
    return "".join(_folded(line) + "\r\n" for line in lines if line)


def _folded(line: str) -> str:
    """A content line folded at 75 octets, never inside a UTF-8 sequence or an escape.

    icalendar folds character by character, which dominates rendering large calendars; most
    lines are short ASCII and need no work at all.
    """
    if len(line) <= MAX_LINE_OCTETS and line.isascii():
        return line
    data = line.encode()
    if len(data) <= MAX_LINE_OCTETS:
        return line
    pieces = []
    start, limit = 0, MAX_LINE_OCTETS
    while len(data) - start > limit:
        cut = start + limit
        while data[cut] & 0xC0 == 0x80:  # a UTF-8 continuation byte: back up to its lead
            cut -= 1
        if data[cut - 1] in b"\\^" and cut - 1 > start:
            cut -= 1  # keep "\," or "^n" on one line: some clients cannot unfold inside
        pieces.append(data[start:cut])
        start, limit = cut, MAX_LINE_OCTETS - 1  # continuation lines begin with a space
    pieces.append(data[start:])
    return b"\r\n ".join(pieces).decode()


# --- iCalendar → booking ---------------------------------------------------------------------


@dataclass(slots=True)
class _Group:
    """The VEVENTs sharing one UID: a master and its overrides."""

    uid: str
    master: Event | None = None
    overrides: list[Event] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Reading:
    """How the events of one UID are read."""

    name: str
    zone_name: str
    zone: ZoneInfo
    ours: bool
    privacy: Privacy
    merged: Buffers


def calendar_to_bookings(
    data: bytes | str, *, provider: str = "ics", timezone: str | None = None
) -> list[Booking]:
    """The bookings in iCalendar data (one or more VCALENDARs): the inverse of the writers.

    Objects this module wrote come back exactly (under full privacy); events from other clients
    become bookings keyed by UID under ``provider``. ``timezone`` is the room's zone for floating
    times, all-day events and unresolvable TZIDs. Setup/cleanup objects fold into their booking's
    buffers and are not bookings of their own.
    """
    fallback = _fallback_zone(timezone)
    groups = _groups(_parse(data))
    buffer_groups = {uid: group for uid, group in groups.items() if _buffer_role(group, groups)}
    bookings = []
    for uid, group in groups.items():
        if uid in buffer_groups:
            continue
        booking = _group_booking(group, provider, fallback)
        bookings.append(_with_separate_buffers(booking, uid, groups, buffer_groups))
    return bookings


def _fallback_zone(timezone: str | None) -> str | None:
    """The caller's room zone, validated."""
    if timezone is None:
        return None
    resolved = _resolve_tzid(timezone)
    if resolved is None:
        raise UnknownTimezone(f"unknown time zone {timezone!r}", field="timezone")
    return resolved


def _parse(data: bytes | str) -> list[Component]:
    """Every VCALENDAR in the data, or MalformedInput."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise MalformedInput(f"iCalendar data is not UTF-8: {exc}") from exc
    if "BEGIN:VCALENDAR" not in text.upper():
        raise MalformedInput("not iCalendar data: no BEGIN:VCALENDAR")
    try:
        calendars = Calendar.from_ical(text, multiple=True)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise MalformedInput(f"unreadable iCalendar data: {exc}") from exc
    return list(calendars)


def _groups(calendars: Sequence[Component]) -> dict[str, _Group]:
    """VEVENTs grouped by UID, in order of first appearance."""
    groups: dict[str, _Group] = {}
    for calendar in calendars:
        for event in cast(list[Event], calendar.walk("VEVENT")):
            uid = str(event.get("UID", "")).strip()
            if not uid:
                raise MissingField("VEVENT without UID", field="UID")
            group = groups.setdefault(uid, _Group(uid))
            if "RECURRENCE-ID" in event:
                group.overrides.append(event)
            elif group.master is None:
                group.master = event
            else:
                raise InvalidValue("two VEVENTs share a UID without RECURRENCE-ID", booking=uid)
    return groups


def _buffer_role(group: _Group, groups: dict[str, _Group]) -> Role | None:
    """Setup/cleanup when a group is one of our buffer objects.

    Known by its recorded role, or (should a server drop X- properties) by its UID suffix next
    to one of our bookings.
    """
    event = group.master or group.overrides[0]
    if X_ROLE in event:
        role = _text(event[X_ROLE])
        return Role(role) if role in (Role.SETUP, Role.CLEANUP) else None
    for role, suffix in ((Role.SETUP, SETUP_SUFFIX), (Role.CLEANUP, CLEANUP_SUFFIX)):
        base = groups.get(group.uid[: -len(suffix)]) if group.uid.endswith(suffix) else None
        if base is not None and base.master is not None and X_KEY in base.master:
            return role
    return None


def _group_booking(group: _Group, provider: str, fallback: str | None) -> Booking:
    """The booking one UID describes."""
    master = group.master
    if master is None:
        # An instance without its series (a single invitation): a booking of its own.
        master, overrides = group.overrides[0], []
        if len(group.overrides) > 1:
            raise InvalidValue("overrides without a master event", booking=group.uid)
    else:
        overrides = group.overrides
    ours = X_KEY in master
    name = group.uid
    if ours:
        name = (
            f"{_text(master[X_PROVIDER])}/{_text(master[X_KEY])}" if X_PROVIDER in master else name
        )
    try:
        reading = _reading(master, name, fallback, ours)
        return _booking(
            master, overrides, reading, provider, group.uid, orphan=master is not group.master
        )
    except MappingError as exc:
        if exc.booking is None:
            raise type(exc)(exc.reason, booking=name, field=exc.field) from exc
        raise


def _reading(master: Event, name: str, fallback: str | None, ours: bool) -> _Reading:
    """The zone, privacy and merged-buffer shift used to read one UID's events."""
    zone_name = _event_zone(master, fallback, name, ours)
    zone = _loadable_zone(zone_name)
    if zone is None:
        raise UnknownTimezone(f"unknown time zone {zone_name!r}", booking=name, field="timezone")
    privacy = Privacy.FULL
    merged = Buffers()
    if ours:
        privacy = _enum_text(master, X_PRIVACY, Privacy, Privacy.FULL)
        mode = _enum_text(master, X_BUFFER_MODE, BufferMode, BufferMode.HIDDEN)
        if mode is BufferMode.MERGED:
            merged = _recorded_buffers(master)
    return _Reading(name, zone_name, zone, ours, privacy, merged)


def _event_zone(master: Event, fallback: str | None, name: str, ours: bool) -> str:
    """The booking's zone: recorded, else DTSTART's TZID, else the room's zone, else UTC."""
    if ours and X_TIMEZONE in master:
        return _text(master[X_TIMEZONE])
    start = master.get("DTSTART")
    if start is None:
        raise MissingField("VEVENT without DTSTART", booking=name, field="DTSTART")
    tzid = start.params.get("TZID")
    if tzid:
        resolved = _resolve_tzid(str(tzid))
        if resolved is not None:
            return resolved
        if fallback is None:
            raise UnknownTimezone(f"unknown TZID {tzid!r}", booking=name, field="DTSTART")
        return fallback
    value = start.dt
    recurring = "RRULE" in master or "RDATE" in master
    if isinstance(value, datetime) and value.tzinfo is not None and recurring:
        # A rule anchored in UTC recurs on the UTC clock; any other zone would move it.
        return "UTC"
    return fallback or "UTC"


def _booking(
    master: Event,
    overrides: Sequence[Event],
    reading: _Reading,
    provider: str,
    uid: str,
    *,
    orphan: bool,
) -> Booking:
    """Build the booking from a master event, its overrides and the reading choices."""
    start, end = _event_span(master, reading.zone, field_prefix="")
    recurrence = None if orphan else _recurrence(master, overrides, reading, start, end)
    start, end = _wall_add(start, reading.merged.before), _wall_add(end, -reading.merged.after)
    ours = reading.ours
    full = reading.privacy is Privacy.FULL
    try:
        return Booking(
            provider=_text(master[X_PROVIDER]) if ours and X_PROVIDER in master else provider,
            key=_text(master[X_KEY]) if ours else uid,
            resource=_text(master[X_RESOURCE]) if ours and X_RESOURCE in master else "",
            start=start,
            end=end,
            timezone=reading.zone_name,
            status=_status(master) or BookingStatus.CONFIRMED,
            title=_optional_text(master, "SUMMARY") if reading.privacy is not Privacy.BUSY else "",
            description=_optional_text(master, "DESCRIPTION") if full else "",
            organizer=_organizer(master) if full else None,
            attendees=_attendees(master) if full else (),
            private=str(master.get("CLASS", "")).upper() in ("PRIVATE", "CONFIDENTIAL"),
            buffers=_recorded_buffers(master) if ours else Buffers(),
            recurrence=recurrence,
            version=_text(master[X_VERSION]) if ours and X_VERSION in master else None,
            updated=_recorded_updated(master) if ours else _updated(master),
            extra=_extra(master) if ours and full else (),
        )
    except ValueError as exc:
        raise InvalidValue(str(exc), booking=reading.name, field="DTEND") from exc


def _event_span(event: Event, zone: ZoneInfo, field_prefix: str) -> tuple[datetime, datetime]:
    """DTSTART and the end (DTEND, DTSTART+DURATION, or a day for all-day events)."""
    start_prop = event.get("DTSTART")
    if start_prop is None:
        raise MissingField("VEVENT without DTSTART", field=f"{field_prefix}DTSTART")
    start = _instant(start_prop, zone)
    if "DTEND" in event:
        end = _instant(event["DTEND"], zone)
    elif "DURATION" in event:
        duration = _property(event, "DURATION").dt
        if not isinstance(duration, timedelta):
            raise InvalidValue("DURATION is not a duration", field=f"{field_prefix}DURATION")
        end = start + duration
    elif not isinstance(start_prop.dt, datetime):
        end = start + timedelta(days=1)
    else:
        raise MissingField("VEVENT with neither DTEND nor DURATION", field=f"{field_prefix}DTEND")
    if end <= start:
        raise InvalidValue("the event ends before it starts", field=f"{field_prefix}DTEND")
    return start, end


def _wall_add(moment: datetime, delta: timedelta) -> datetime:
    """``moment`` moved on the wall clock; unmoved it keeps its fold (arithmetic drops it)."""
    return moment + delta if delta else moment


def _instant(prop: Any, zone: ZoneInfo) -> datetime:
    """An aware instant from a date/date-time value (TZID resolved, else read in ``zone``)."""
    return _moment(prop.dt, prop.params.get("TZID"), zone)


def _moment(value: object, tzid: object, zone: ZoneInfo) -> datetime:
    """An aware instant for a parsed date, date-time, or its TZID."""
    if isinstance(value, datetime):
        if tzid:
            named = _loadable_zone(_resolve_tzid(str(tzid)) or "") or zone
            return value.replace(tzinfo=named, fold=0).astimezone(zone)
        if value.tzinfo is None:
            return value.replace(tzinfo=zone)
        return value.astimezone(zone)
    if isinstance(value, date):
        return datetime.combine(value, time(0), tzinfo=zone)
    raise InvalidValue(f"not a date or date-time: {value!r}")


def _recurrence(
    master: Event,
    overrides: Sequence[Event],
    reading: _Reading,
    start: datetime,
    end: datetime,
) -> Recurrence | None:
    """RRULE, RDATE, EXDATE and overrides, merged-buffer shifts undone."""
    if "EXRULE" in master:
        raise UnsupportedRecurrence("EXRULE is not supported", field="EXRULE")
    undo = reading.merged.before
    rule = _rule(master, reading.zone, undo, start)
    rdates: list[datetime] = []
    period_overrides: list[Override] = []
    for value, tzid in _date_values(master, "RDATE"):
        if isinstance(value, tuple):
            period_overrides.append(_period_override(value, tzid, reading.zone))
        else:
            rdates.append(_wall_add(_moment(value, tzid, reading.zone), undo))
    exdates = [
        _wall_add(_moment(value, tzid, reading.zone), undo)
        for value, tzid in _date_values(master, "EXDATE")
    ]
    if rule is None and reading.ours and X_RRULE in master:
        rule, rdates = _unwritten_rule(
            _text(master[X_RRULE]), rdates, _wall_add(start, undo), reading
        )
    parsed = [_override(event, master, reading, end - start) for event in overrides]
    if not (rule or rdates or exdates or parsed or period_overrides):
        return None
    return Recurrence(
        rrule=rule,
        rdates=tuple(sorted(set(rdates))),
        exdates=tuple(sorted(set(exdates))),
        overrides=tuple(sorted([*parsed, *period_overrides], key=lambda o: o.recurrence_id)),
    )


def _unwritten_rule(
    rule: str, rdates: list[datetime], first: datetime, reading: _Reading
) -> tuple[str, list[datetime]]:
    """The recorded rule of a series written out as RDATEs, and the RDATEs it did not make."""
    made = {instant.astimezone(UTC) for instant in _materialised(rule, first, reading.zone)}
    return rule, [rdate for rdate in rdates if rdate.astimezone(UTC) not in made]


def _rule(master: Event, zone: ZoneInfo, undo: timedelta, first: datetime) -> str | None:
    """The RRULE text (parts in written order, UNTIL as UTC), merged-buffer move undone."""
    value = master.get("RRULE")
    if value is None:
        return None
    if isinstance(value, list):
        if len(value) > 1:
            raise UnsupportedRecurrence("more than one RRULE", field="RRULE")
        value = value[0]
    ordered: Any = _RuleInOrder(value)
    text = cast(bytes, ordered.to_ical()).decode()
    parts = rule_parts(text)
    if "UNTIL" in parts:
        parts["UNTIL"] = _utc_text(_until_instant(parts["UNTIL"], zone))
    rule = join_rule(parts)
    return _shifted_rule(rule, undo, zone, first) or rule


def _date_values(event: Event, name: str) -> list[tuple[object, object]]:
    """(value, TZID) for every date in every RDATE/EXDATE line."""
    lines = event.get(name)
    if lines is None:
        return []
    values = []
    for line in lines if isinstance(lines, list) else [lines]:
        tzid = line.params.get("TZID")
        for item in line.dts:
            values.append((item.dt, item.params.get("TZID") or tzid))
    return values


def _period_override(value: tuple[Any, Any], tzid: object, zone: ZoneInfo) -> Override:
    """An RDATE period: an occurrence with its own length, as an override."""
    start = _moment(value[0], tzid, zone)
    second = value[1]
    end = start + second if isinstance(second, timedelta) else _moment(second, tzid, zone)
    return Override(recurrence_id=start, start=start, end=end)


def _override(event: Event, master: Event, reading: _Reading, duration: timedelta) -> Override:
    """One RECURRENCE-ID event as an override of the master."""
    rid_prop = event["RECURRENCE-ID"]
    if str(rid_prop.params.get("RANGE", "")).upper() == "THISANDFUTURE":
        raise UnsupportedRecurrence("RANGE=THISANDFUTURE overrides", field="RECURRENCE-ID")
    rid = _instant(rid_prop, reading.zone)
    if "DTSTART" in event:
        start, end = _event_span(event, reading.zone, field_prefix="RECURRENCE-ID ")
        if "DTEND" not in event and "DURATION" not in event:
            end = start + duration
    else:
        start, end = rid, rid + duration
    shift = reading.merged
    status, title, description = _override_fields(event, master, reading)
    return Override(
        recurrence_id=_wall_add(rid, shift.before),
        start=_wall_add(start, shift.before),
        end=_wall_add(end, -shift.after),
        status=status,
        title=title,
        description=description,
        version=_text(event[X_VERSION]) if reading.ours and X_VERSION in event else None,
    )


def _override_fields(
    event: Event, master: Event, reading: _Reading
) -> tuple[BookingStatus | None, str | None, str | None]:
    """Status, title and description an override sets itself (None where it inherits)."""
    status = _status(event)
    title = _optional_text(event, "SUMMARY")
    description = _optional_text(event, "DESCRIPTION")
    if reading.ours:
        explicit = dict(
            token.partition("=")[::2]
            for token in (_text(event[X_EXPLICIT]).split() if X_EXPLICIT in event else [])
        )
        return (
            _recorded_status(explicit.get("status")),
            title if "title" in explicit else None,
            description if "description" in explicit else None,
        )
    # Another client's override sets what it carries and differs in; the rest is inherited.
    return (
        status if status not in (None, _status(master) or BookingStatus.CONFIRMED) else None,
        title if "SUMMARY" in event and title != _optional_text(master, "SUMMARY") else None,
        description
        if "DESCRIPTION" in event and description != _optional_text(master, "DESCRIPTION")
        else None,
    )


def _recorded_status(value: str | None) -> BookingStatus | None:
    """An override status recorded in X-ROOMBRIDGE-EXPLICIT."""
    if not value:
        return None
    try:
        return BookingStatus(value)
    except ValueError as exc:
        raise InvalidValue(f"unknown status {value!r}", field=X_EXPLICIT) from exc


def _status(event: Event) -> BookingStatus | None:
    """The STATUS of an event (anything but tentative/cancelled counts as confirmed)."""
    if "STATUS" not in event:
        return None
    return _ICAL_TO_STATUS.get(str(event["STATUS"]).upper(), BookingStatus.CONFIRMED)


def _property(event: Event, name: str) -> Any:
    """A parsed property, typed loosely: icalendar's value classes share no common interface."""
    return event[name]


def _optional_text(event: Event, name: str) -> str:
    """A text property, or an empty string."""
    return _text(event[name]) if name in event else ""


def _text(value: Any) -> str:
    """The text of a property, unescaped even when the parser kept it raw (unknown X- names)."""
    if isinstance(value, list):
        value = value[0]
    if isinstance(value, vText):
        return str(value)
    return _TEXT_ESCAPE.sub(_unescaped, str(value))


def _unescaped(match: re.Match[str]) -> str:
    """One TEXT escape sequence undone."""
    char = match.group(1)
    return "\n" if char in "nN" else char


def _enum_text(event: Event, name: str, kind: type[_E], default: _E) -> _E:
    """An enum-valued X- property, or the default when absent or unknown."""
    if name not in event:
        return default
    try:
        return kind(_text(event[name]))
    except ValueError:
        return default


def _recorded_buffers(event: Event) -> Buffers:
    """Buffers from X-ROOMBRIDGE-SETUP/CLEANUP."""
    return Buffers(_recorded_duration(event, X_SETUP), _recorded_duration(event, X_CLEANUP))


def _recorded_duration(event: Event, name: str) -> timedelta:
    """A recorded buffer length, zero when absent."""
    if name not in event:
        return timedelta(0)
    try:
        parse: Any = vDuration.from_ical
        value = parse(_text(event[name]))
    except ValueError as exc:
        raise InvalidValue(f"malformed duration {name}", field=name) from exc
    if not isinstance(value, timedelta) or value < timedelta(0):
        raise InvalidValue(f"{name} must be a positive duration", field=name)
    return value


def _organizer(event: Event) -> Person | None:
    """The ORGANIZER as a person."""
    return _person(event["ORGANIZER"]) if "ORGANIZER" in event else None


def _attendees(event: Event) -> tuple[Person, ...]:
    """The ATTENDEEs that are people (rooms and resources left out)."""
    values = event.get("ATTENDEE", [])
    people = []
    for value in values if isinstance(values, list) else [values]:
        if str(value.params.get("CUTYPE", "")).upper() in ("ROOM", "RESOURCE"):
            continue
        person = _person(value)
        if person is not None:
            people.append(person)
    return tuple(people)


def _person(value: Any) -> Person | None:
    """A person from a cal-address: mailto:/tel: address, CN and recorded phone."""
    address = str(value)
    email = phone = None
    if address[:7].lower() == "mailto:":
        email = unquote(address[7:]) or None
    elif address[:4].lower() == "tel:":
        phone = unquote(address[4:]) or None
    params = value.params
    name = str(params["CN"]) if params.get("CN") else None
    if params.get(X_NAME_PARAM):
        name = unquote(str(params[X_NAME_PARAM]))
    if params.get(X_PHONE_PARAM):
        phone = unquote(str(params[X_PHONE_PARAM]))
    if email is None and phone is None and name is None:
        return None
    return Person(email=email, name=name, phone=phone)


def _updated(event: Event) -> datetime | None:
    """LAST-MODIFIED as an aware instant."""
    value = event.get("LAST-MODIFIED")
    if value is None or not isinstance(value.dt, datetime):
        return None
    moment: datetime = value.dt
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _recorded_updated(event: Event) -> datetime | None:
    """The exact update time recorded beside LAST-MODIFIED, else LAST-MODIFIED."""
    if X_UPDATED not in event:
        return _updated(event)
    try:
        return datetime.fromisoformat(_text(event[X_UPDATED]))
    except ValueError as exc:
        raise InvalidValue("malformed update time", field=X_UPDATED) from exc


def _extra(event: Event) -> tuple[tuple[str, str], ...]:
    """Provider extras recorded as a JSON list of name/value pairs."""
    if X_EXTRA not in event:
        return ()
    try:
        pairs = json.loads(_text(event[X_EXTRA]))
        return tuple((str(name), str(value)) for name, value in pairs)
    except (ValueError, TypeError) as exc:
        raise InvalidValue("malformed extra fields", field=X_EXTRA) from exc


def _with_separate_buffers(
    booking: Booking, uid: str, groups: dict[str, _Group], buffer_groups: dict[str, _Group]
) -> Booking:
    """A booking whose buffers are read from its setup/cleanup objects when they are present."""
    before, after = booking.buffers.before, booking.buffers.after
    setup = buffer_groups.get(buffer_uid(uid, Role.SETUP))
    cleanup = buffer_groups.get(buffer_uid(uid, Role.CLEANUP))
    master = groups[uid].master
    if master is None or (setup is None and cleanup is None):
        return booking
    zone = booking.zone
    start, end = _event_span(master, zone, field_prefix="")
    if setup is not None and setup.master is not None:
        before = start - _event_span(setup.master, zone, field_prefix="setup ")[0]
    if cleanup is not None and cleanup.master is not None:
        after = _event_span(cleanup.master, zone, field_prefix="cleanup ")[1] - end
    if before < timedelta(0) or after < timedelta(0):
        raise InvalidValue("a buffer event overlaps its booking", booking=str(booking.booking_key))
    return booking.evolve(buffers=Buffers(before, after))


# --- time zones ------------------------------------------------------------------------------


def _loadable_zone(name: str) -> ZoneInfo | None:
    """The zone for an IANA name, or None."""
    if not name or name in ("localtime", "posixrules"):
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _resolve_tzid(tzid: str) -> str | None:
    """An IANA name for a TZID: IANA as is, Windows names, or vendor-prefixed IANA paths."""
    name = tzid.strip().strip('"')
    if name.upper() in ("Z", "GMT", "UTC") or name in _UTC_NAMES:
        return "UTC"
    if _loadable_zone(name) is not None:
        return name
    windows = _windows_to_iana(name)
    if windows is not None and _loadable_zone(windows) is not None:
        return windows
    # Mozilla, Citadel and libical prefix IANA names with a vendor path.
    segments = [segment for segment in name.split("/") if segment]
    for count in (3, 2, 1):
        candidate = "/".join(segments[-count:])
        if len(segments) > count and _loadable_zone(candidate) is not None:
            return candidate
    return None


def _windows_to_iana(name: str) -> str | None:
    """A Windows zone id's IANA name: the project's table when present, else icalendar's."""
    try:
        zones = importlib.import_module("mappings.timezones")
    except ModuleNotFoundError as exc:
        if exc.name != "mappings.timezones":
            raise
        zones = None
    lookup = getattr(zones, "windows_to_iana", None)
    if lookup is not None:
        found = lookup(name)
        if isinstance(found, str):
            return found
    from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

    olson = WINDOWS_TO_OLSON.get(name)
    return olson if isinstance(olson, str) else None


# --- echo suppression ------------------------------------------------------------------------


def content_hash(ics: bytes | str) -> str:
    """A sha256 hex digest of what an object means, blind to how it was serialised.

    Ignores DTSTAMP, SEQUENCE, LAST-MODIFIED, CREATED, PRODID, X-ROOMBRIDGE-VERSION and
    server-added properties; property and component order; folding and line ends; the bodies
    of VTIMEZONEs; the grouping of RDATE/EXDATE values onto lines.
    """
    text = ics.decode("utf-8", errors="replace") if isinstance(ics, bytes) else ics
    # Time zone bodies do not count, and parsing them is most of the work: cut them out first.
    forms = sorted(_normal_form(calendar) for calendar in _parse(_VTIMEZONE_BLOCK.sub("", text)))
    return hashlib.sha256("".join(forms).encode()).hexdigest()


def _normal_form(component: Component) -> str:
    """A canonical text of a component: sorted property lines, then sorted subcomponents."""
    lines: list[str] = []
    for name, value in component.property_items(recursive=False, sorted=False):
        if name in ("BEGIN", "END") or _is_volatile(name):
            continue
        lines.extend(_normal_lines(name, value))
    children = sorted(
        _normal_form(child) for child in component.subcomponents if child.name != "VTIMEZONE"
    )
    return "\n".join(
        [f"BEGIN:{component.name}", *sorted(lines), *children, f"END:{component.name}\n"]
    )


def _is_volatile(name: str) -> bool:
    """Whether a property is left out of the content hash."""
    return name in VOLATILE_PROPERTIES or name.startswith(SERVER_PROPERTY_PREFIXES)


def _normal_lines(name: str, value: Any) -> list[str]:
    """Canonical lines for one property; RDATE/EXDATE give one line per date."""
    params = _normal_params(getattr(value, "params", {}))
    if name in ("RDATE", "EXDATE") and hasattr(value, "dts"):
        return [f"{name}{params}:{_ical_text(item)}" for item in value.dts]
    if name in ("RRULE", "EXRULE"):
        # Rule parts in a fixed order: parsers and writers order them differently.
        parts = _ical_text(value).split(";")
        return [f"{name}{params}:" + ";".join(sorted(parts, key=lambda p: (p[:5] != "FREQ=", p)))]
    return [f"{name}{params}:{_ical_text(value)}"]


def _normal_params(params: Any) -> str:
    """Sorted parameters (VALUE left out: the value's own form shows its type)."""
    pairs = sorted(
        (str(key).upper(), str(value)) for key, value in params.items() if key.upper() != "VALUE"
    )
    return "".join(f";{key}={value}" for key, value in pairs)


def _ical_text(value: Any) -> str:
    """A property value in iCalendar form."""
    if isinstance(value, vText):
        # Built and parsed text must read alike: both go through the exact escaping.
        return _ExactText(str(value)).to_ical().decode()
    encoded = value.to_ical() if hasattr(value, "to_ical") else str(value)
    return encoded.decode() if isinstance(encoded, bytes) else str(encoded)
