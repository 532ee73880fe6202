"""iCalendar objects ⇄ Google Calendar Event resources, for the Google backend.

The sync engine speaks iCalendar; Google speaks Event JSON. :func:`series_write` turns one
calendar object (one UID: a master VEVENT and its RECURRENCE-ID overrides) into the writes
Google needs, and :func:`render_series` turns a Google series (a master and its instance
exceptions) back into a calendar object. What the bridge writes must read back with the same
``mappings.ical.content_hash`` (so its own writes never come back as changes), while an edit
made in Google must change the hash.

How each part travels:

- ``DTSTART``/``DTEND``/``RECURRENCE-ID`` ⇄ ``start``/``end``/``originalStartTime``: a TZID
  time is a ``dateTime`` with its offset plus that ``timeZone``; a UTC time has the zone
  ``UTC``; a DATE is a ``date``. Read back, ``UTC`` gives a ``Z`` time; a recurring master's
  DTSTART is the wall-clock time of its zone; every other time is the wall-clock time unless
  that names another instant (the second pass through a DST fold), then UTC — the rule
  ``mappings.ical`` writes by.
- ``SUMMARY``/``DESCRIPTION``/``LOCATION``, ``STATUS``, ``TRANSP``, ``CLASS`` ⇄ ``summary``/
  ``description``/``location``, ``status``, ``transparency``, ``visibility``.
- ``RRULE``/``RDATE``/``EXDATE``/``EXRULE`` lines ⇄ ``recurrence``, verbatim.
- Every other property (``X-ROOMBRIDGE-*``, ``ORGANIZER``, ``ATTENDEE``, alarms...) travels as
  its content lines in ``extendedProperties.private`` (``roombridgeIcs``, ``roombridgeIcs1``...,
  each value at most 1,024 bytes, which Google keeps untruncated). People are not written as
  Google attendees: that would invite them.
- The room's answer to a booking request (an organizer's meeting the bridge did not write) is
  tagged with ``roombridgeProvider``/``roombridgeKeys``, read back as ``X-ROOMBRIDGE-PROVIDER``
  and ``X-ROOMBRIDGE-KEY`` lines.
- ``UID`` → ``extendedProperties.private.roombridgeUid`` (Google takes either a chosen event id
  or an iCalUID, not both; the id is what makes creation idempotent).
- ``DTSTAMP``, ``SEQUENCE``, ``LAST-MODIFIED`` and ``CREATED`` are not written (they do not
  count in the content hash); DTSTAMP is read back from ``updated``.

Overrides: a live override becomes an instance exception (a full ``PUT`` of the instance). A
cancelled override cancels the instance; Google guarantees only ``id``, ``recurringEventId``
and ``originalStartTime`` of a cancelled instance, so the override's own lines are kept on the
master (``roombridgeRecords``), as are overrides of an instance an EXDATE removes (there is no
instance to hold them). An override whose RECURRENCE-ID the rule does not produce gets an
RDATE to stand on; ``roombridgeAnchors`` names those so they are not read back. Reading, an
exception identical to its natural instance is no override: that is how one is removed.

Exactness holds for objects carrying ``STATUS`` and ``TRANSP`` on every VEVENT and
``VERSION``/``CALSCALE`` on the calendar, as every object the bridge writes does; parameters
on SUMMARY/DESCRIPTION/LOCATION are not kept.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from icalendar import Calendar, Event, Timezone, vCalAddress, vText

from mappings.errors import MappingError
from mappings.expansion import compile_rule

Json = dict[str, Any]

#: Prefix of the event ids the bridge chooses: base32hex letters only (``[a-v0-9]``).
EVENT_ID_PREFIX = "rb"

PRIVATE_UID = "roombridgeUid"
PRIVATE_ICS = "roombridgeIcs"
PRIVATE_RECORDS = "roombridgeRecords"
PRIVATE_ANCHORS = "roombridgeAnchors"
PRIVATE_TIMES = "roombridgeTimes"
#: The room's tags on a copy of an organizer's meeting it accepted (booking requests).
PRIVATE_PROVIDER = "roombridgeProvider"
PRIVATE_KEYS = "roombridgeKeys"

#: Google truncates longer extended property values; counted in bytes to be safe either way.
MAX_VALUE_BYTES = 1024
#: Google's limits for all extended properties of one event.
MAX_PROPERTIES = 300
MAX_PROPERTY_BYTES = 32 * 1024

PRODID = "-//roombridge//google calendar backend//EN"
FIXED_DTSTAMP = "19700101T000000Z"

NATIVE_PROPERTIES = frozenset(
    {
        "UID",
        "DTSTART",
        "DTEND",
        "DURATION",
        "RECURRENCE-ID",
        "SUMMARY",
        "DESCRIPTION",
        "LOCATION",
        "STATUS",
        "TRANSP",
        "CLASS",
    }
)
RECURRENCE_PROPERTIES = frozenset({"RRULE", "RDATE", "EXDATE", "EXRULE"})
VOLATILE_PROPERTIES = frozenset({"DTSTAMP", "SEQUENCE", "LAST-MODIFIED", "CREATED"})

_VISIBILITY_BY_CLASS = {"PUBLIC": "public", "PRIVATE": "private", "CONFIDENTIAL": "confidential"}
_CLASS_BY_VISIBILITY = {value: name for name, value in _VISIBILITY_BY_CLASS.items()}
_GOOGLE_STATUSES = frozenset({"confirmed", "tentative", "cancelled"})
_PARTSTAT = {
    "accepted": "ACCEPTED",
    "declined": "DECLINED",
    "tentative": "TENTATIVE",
    "needsAction": "NEEDS-ACTION",
}
_FOLDED = re.compile(r"\r?\n[ \t]")
_NAME = re.compile(r"[A-Za-z0-9-]+")
_UTC_VALUE = "%Y%m%dT%H%M%SZ"


class EventTranslationError(ValueError):
    """A calendar object Google cannot hold exactly (the message says why)."""


@dataclass(frozen=True, slots=True)
class InstanceChange:
    """What one instance of a recurring event must become: an exception, or cancelled."""

    original_start: datetime
    body: Json | None

    @property
    def cancelled(self) -> bool:
        """Whether the instance is to be cancelled."""
        return self.body is None


@dataclass(frozen=True, slots=True)
class SeriesWrite:
    """The Google writes for one calendar object: the master body and its instance changes."""

    event_id: str
    uid: str
    master: Json
    instances: tuple[InstanceChange, ...]

    @property
    def recurring(self) -> bool:
        """Whether the master carries a recurrence (and so can have instances)."""
        return bool(self.master.get("recurrence"))


# ----- identities ------------------------------------------------------------------------------


def event_id_for_uid(uid: str) -> str:
    """The deterministic Google event id of a calendar object: base32hex of a SHA-256 of its UID."""
    digest = hashlib.sha256(uid.encode("utf-8")).digest()
    return EVENT_ID_PREFIX + base64.b32hexencode(digest).decode().rstrip("=").lower()


def series_uid(master: Mapping[str, Any]) -> str:
    """The calendar UID of a Google event: the bridge's tag, else its iCalUID, else its id."""
    tagged = private_properties(master).get(PRIVATE_UID)
    if tagged:
        return tagged
    return str(master.get("iCalUID") or master.get("id") or "")


def instant_key(instant: datetime) -> str:
    """An instant as the UTC text used to key instances (``YYYYMMDDTHHMMSSZ``)."""
    return instant.astimezone(UTC).strftime(_UTC_VALUE)


# ----- iCalendar → Google -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Vevent:
    """One VEVENT: its parsed form and its own content lines, unfolded."""

    event: Event
    lines: tuple[str, ...]

    def lines_except(self, names: frozenset[str]) -> list[str]:
        """Its top-level lines whose property name is not in ``names`` (nested ones all kept)."""
        return [
            line for line, top in _with_depth(self.lines) if not top or _name(line) not in names
        ]


def series_write(ics: bytes) -> SeriesWrite:
    """The Google writes that make a calendar holding ``ics`` (raises EventTranslationError)."""
    vevents = _vevents(ics)
    uids = {str(v.event.get("UID", "")) for v in vevents}
    if len(uids) != 1 or not next(iter(uids)):
        raise EventTranslationError("a calendar object must hold events of exactly one UID")
    uid = uids.pop()
    masters = [v for v in vevents if v.event.get("RECURRENCE-ID") is None]
    if len(masters) != 1:
        raise EventTranslationError("a calendar object must hold exactly one master event")
    master = masters[0]
    overrides = [v for v in vevents if v.event.get("RECURRENCE-ID") is not None]
    body = _native_body(master)
    if body.get("status") == "cancelled":
        raise EventTranslationError(
            "a cancelled master event cannot be written (Google deletes it)"
        )
    recurrence = _recurrence_lines(master)
    shape = _RecurrenceShape.of(master.event)
    records: dict[str, list[str]] = {}
    anchors: list[datetime] = []
    changes: list[InstanceChange] = []
    for override in overrides:
        rid = _instant_of(override.event.get("RECURRENCE-ID"), "RECURRENCE-ID")
        key = instant_key(rid)
        if shape.excludes(rid):
            records[key] = override.lines_except(frozenset({"UID", "DTSTAMP"}))
            continue
        if not shape.produces(rid):
            anchors.append(rid)
        instance = _native_body(override)
        if instance.get("status") == "cancelled":
            records[key] = override.lines_except(frozenset({"UID", "DTSTAMP"}))
            changes.append(InstanceChange(rid.astimezone(UTC), None))
            continue
        instance["originalStartTime"] = _original_start(rid, body["start"])
        private_instance = _event_properties(uid, override)
        private_instance.update(_kept_times(override, instance, wall_clock_start=False))
        instance["extendedProperties"] = {"private": private_instance}
        changes.append(InstanceChange(rid.astimezone(UTC), instance))
    if anchors:
        recurrence.append("RDATE:" + ",".join(sorted(instant_key(a) for a in anchors)))
    if recurrence:
        body["recurrence"] = recurrence
    private = _event_properties(uid, master)
    recurring = any(_name(line) in ("RRULE", "RDATE") for line in _recurrence_lines(master))
    private.update(_kept_times(master, body, wall_clock_start=recurring))
    if records:
        private.update(_chunked(PRIVATE_RECORDS, json.dumps(records, sort_keys=True)))
    if anchors:
        private.update(_chunked(PRIVATE_ANCHORS, json.dumps(sorted(map(instant_key, anchors)))))
    _check_property_limits(private)
    body["extendedProperties"] = {"private": private}
    event_id = event_id_for_uid(uid)
    for change in changes:
        if change.body is not None:
            change.body["recurringEventId"] = event_id
    changes.sort(key=lambda change: change.original_start)
    return SeriesWrite(event_id, uid, body, tuple(changes))


def _vevents(ics: bytes) -> list[_Vevent]:
    """The top-level VEVENTs of a calendar, parsed and as raw lines, in document order."""
    try:
        text = ics.decode("utf-8")
        calendar = Calendar.from_ical(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise EventTranslationError(f"not an iCalendar object: {exc}") from exc
    parsed = [c for c in calendar.subcomponents if c.name == "VEVENT"]
    raw = list(_raw_vevents(text))
    if len(parsed) != len(raw) or not parsed:
        raise EventTranslationError("the calendar holds no VEVENT, or VEVENTs that cannot be read")
    return [
        _Vevent(cast(Event, event), tuple(lines)) for event, lines in zip(parsed, raw, strict=True)
    ]


def _raw_vevents(text: str) -> Iterator[list[str]]:
    """The unfolded content lines inside each top-level ``BEGIN:VEVENT``…``END:VEVENT``."""
    depth = 0
    current: list[str] | None = None
    for line in _FOLDED.sub("", text).splitlines():
        if not line:
            continue
        upper = line.upper()
        if upper.startswith("BEGIN:"):
            depth += 1
            if depth == 2 and upper == "BEGIN:VEVENT":
                current = []
                continue
        elif upper.startswith("END:"):
            depth -= 1
            if depth == 1 and current is not None and upper == "END:VEVENT":
                yield current
                current = None
                continue
        if current is not None:
            current.append(line)


def _with_depth(lines: Iterable[str]) -> Iterator[tuple[str, bool]]:
    """Each line of a VEVENT with whether it is a property of the VEVENT itself."""
    depth = 0
    for line in lines:
        upper = line.upper()
        if upper.startswith("BEGIN:"):
            depth += 1
            yield line, False
        elif upper.startswith("END:"):
            depth -= 1
            yield line, False
        else:
            yield line, depth == 0


def _name(line: str) -> str:
    """The property name of a content line, upper-cased."""
    match = _NAME.match(line)
    return match.group(0).upper() if match else ""


def _native_body(vevent: _Vevent) -> Json:
    """The Event fields Google holds natively for one VEVENT."""
    event = vevent.event
    start_prop = event.get("DTSTART")
    if start_prop is None:
        raise EventTranslationError("an event has no DTSTART")
    start = _event_datetime(start_prop, "DTSTART")
    body: Json = {"start": start, "end": _end_of(event, start_prop)}
    status = str(event.get("STATUS", "CONFIRMED")).lower()
    if status not in _GOOGLE_STATUSES:
        raise EventTranslationError(f"STATUS {status.upper()} has no Google equivalent")
    body["status"] = status
    transparency = str(event.get("TRANSP", "OPAQUE")).upper()
    body["transparency"] = "transparent" if transparency == "TRANSPARENT" else "opaque"
    klass = event.get("CLASS")
    body["visibility"] = (
        _VISIBILITY_BY_CLASS.get(str(klass).upper(), "default") if klass else "default"
    )
    for name, field in (
        ("SUMMARY", "summary"),
        ("DESCRIPTION", "description"),
        ("LOCATION", "location"),
    ):
        value = event.get(name)
        if value is not None and str(value):
            body[field] = str(value)
    return body


def _end_of(event: Event, start_prop: Any) -> Json:
    """The ``end`` of an event: its DTEND, else DTSTART plus DURATION (or one day / nothing)."""
    end_prop = event.get("DTEND")
    if end_prop is not None:
        return _event_datetime(end_prop, "DTEND")
    start = start_prop.dt
    duration = event.get("DURATION")
    length = duration.dt if duration is not None else None
    if not isinstance(start, datetime):
        days = length.days if isinstance(length, timedelta) and length.days > 0 else 1
        return {"date": (start + timedelta(days=days)).isoformat()}
    end = start + (length if isinstance(length, timedelta) else timedelta(0))
    tzid = start_prop.params.get("TZID")
    if tzid:
        return {"dateTime": end.isoformat(), "timeZone": _zone_name(str(tzid), "DTSTART")}
    return {"dateTime": end.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "timeZone": "UTC"}


def _event_datetime(prop: Any, name: str) -> Json:
    """An EventDateTime for a DTSTART/DTEND/RECURRENCE-ID value."""
    value = prop.dt
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise EventTranslationError(f"{name} is a floating time, which Google cannot hold")
        tzid = prop.params.get("TZID")
        if tzid:
            return {"dateTime": value.isoformat(), "timeZone": _zone_name(str(tzid), name)}
        return {"dateTime": value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "timeZone": "UTC"}
    if isinstance(value, date):
        return {"date": value.isoformat()}
    raise EventTranslationError(f"{name} is not a date or date-time")


def _zone_name(tzid: str, name: str) -> str:
    """A TZID Google accepts: an IANA zone name."""
    try:
        ZoneInfo(tzid)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise EventTranslationError(f"{name} has TZID {tzid!r}, not an IANA zone") from exc
    return tzid


def _instant_of(prop: Any, name: str) -> datetime:
    """The instant a date-time property names (a DATE is its UTC midnight)."""
    value = prop.dt
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise EventTranslationError(f"{name} is a floating time, which Google cannot hold")
        return value
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def _original_start(rid: datetime, master_start: Mapping[str, Any]) -> Json:
    """The ``originalStartTime`` of an instance, in the master's zone."""
    if "date" in master_start:
        return {"date": rid.astimezone(UTC).date().isoformat()}
    zone_name = str(master_start.get("timeZone") or "UTC")
    if zone_name == "UTC":
        return {"dateTime": rid.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "timeZone": "UTC"}
    return {"dateTime": rid.astimezone(ZoneInfo(zone_name)).isoformat(), "timeZone": zone_name}


def _recurrence_lines(master: _Vevent) -> list[str]:
    """The master's RRULE/RDATE/EXDATE/EXRULE lines, verbatim, in their order."""
    return [
        line
        for line, top in _with_depth(master.lines)
        if top and _name(line) in RECURRENCE_PROPERTIES
    ]


def _kept_times(
    vevent: _Vevent, body: Mapping[str, Any], *, wall_clock_start: bool
) -> dict[str, str]:
    """Date-time lines that reading back would write differently, kept in their own words.

    A wall-clock time in a DST gap (``01:30`` on a spring-forward night) names the same
    instant as the valid time read back (``02:30``), but not the same text, and the content
    hash compares text.
    """
    rendered = {"DTSTART": _moment_line("DTSTART", body["start"], wall_clock=wall_clock_start)}
    rendered["DTEND"] = _moment_line("DTEND", body["end"], wall_clock=False)
    if "originalStartTime" in body:
        rendered["RECURRENCE-ID"] = _moment_line(
            "RECURRENCE-ID", body["originalStartTime"], wall_clock=False
        )
    kept: dict[str, str] = {}
    for line, top in _with_depth(vevent.lines):
        name = _name(line)
        if top and name in rendered and line != rendered[name] and name not in kept:
            kept[name] = line
    return {PRIVATE_TIMES: json.dumps(kept, sort_keys=True)} if kept else {}


def _event_properties(uid: str, vevent: _Vevent) -> dict[str, str]:
    """The private extended properties of one event: its UID and its other lines."""
    carried = vevent.lines_except(NATIVE_PROPERTIES | RECURRENCE_PROPERTIES | VOLATILE_PROPERTIES)
    return {PRIVATE_UID: uid, **_chunked(PRIVATE_ICS, "\r\n".join(carried))}


def _chunked(prefix: str, text: str) -> dict[str, str]:
    """``text`` split over ``prefix``, ``prefix1``, ``prefix2``... at most 1,024 bytes each."""
    chunks: dict[str, str] = {}
    piece: list[str] = []
    size = 0
    for char in text:
        width = len(char.encode("utf-8"))
        if size + width > MAX_VALUE_BYTES:
            chunks[prefix + (str(len(chunks)) if chunks else "")] = "".join(piece)
            piece, size = [], 0
        piece.append(char)
        size += width
    if piece:
        chunks[prefix + (str(len(chunks)) if chunks else "")] = "".join(piece)
    return chunks


def _unchunked(properties: Mapping[str, str], prefix: str) -> str:
    """The text :func:`_chunked` spread over the properties."""
    pieces: list[str] = []
    while (name := prefix + (str(len(pieces)) if pieces else "")) in properties:
        pieces.append(properties[name])
    return "".join(pieces)


def _check_property_limits(properties: Mapping[str, str]) -> None:
    """Refuse what Google would not keep: too many or too large extended properties."""
    total = sum(len(k.encode()) + len(v.encode()) for k, v in properties.items())
    if len(properties) > MAX_PROPERTIES or total > MAX_PROPERTY_BYTES:
        raise EventTranslationError(
            f"the event needs {len(properties)} extended properties of {total} bytes; Google "
            f"keeps at most {MAX_PROPERTIES} and {MAX_PROPERTY_BYTES} bytes"
        )


@dataclass(frozen=True, slots=True)
class _RecurrenceShape:
    """Which instants a master VEVENT's recurrence produces and which it excludes."""

    start: datetime | date
    zone: ZoneInfo
    rule: str | None
    rdates: frozenset[datetime]
    exdates: frozenset[datetime]

    @classmethod
    def of(cls, event: Event) -> _RecurrenceShape:
        """The shape of a master VEVENT."""
        start = event.get("DTSTART").dt
        zone = start.tzinfo if isinstance(start, datetime) else UTC
        rules = event.get("RRULE")
        if isinstance(rules, list):
            raise EventTranslationError("more than one RRULE is not supported")
        rule = rules.to_ical().decode() if rules is not None else None
        return cls(
            start=start,
            zone=zone if isinstance(zone, ZoneInfo) else ZoneInfo("UTC"),
            rule=rule,
            rdates=frozenset(_date_list_instants(event.get("RDATE"))),
            exdates=frozenset(_date_list_instants(event.get("EXDATE"))),
        )

    def excludes(self, instant: datetime) -> bool:
        """Whether an EXDATE removes ``instant``."""
        return instant.astimezone(UTC) in self.exdates

    def produces(self, instant: datetime) -> bool:
        """Whether DTSTART, the RRULE or an RDATE gives ``instant``."""
        utc = instant.astimezone(UTC)
        if utc in self.rdates:
            return True
        if not isinstance(self.start, datetime):
            return self.rule is not None and self._rule_gives(utc)
        if utc == self.start.astimezone(UTC):
            return True
        return self.rule is not None and self._rule_gives(utc)

    def _rule_gives(self, utc: datetime) -> bool:
        """Whether the RRULE has an instance at ``utc``."""
        assert self.rule is not None
        start = self.start
        if not isinstance(start, datetime):
            start = datetime(start.year, start.month, start.day, tzinfo=self.zone)
        try:
            compiled = compile_rule(self.rule, start, self.zone)
        except (MappingError, ValueError) as exc:
            raise EventTranslationError(f"unusable RRULE: {exc}") from exc
        local = utc.astimezone(self.zone)
        naive = local.replace(tzinfo=None)
        return naive in compiled and naive.replace(tzinfo=self.zone).astimezone(UTC) == utc


def _date_list_instants(value: Any) -> Iterator[datetime]:
    """The instants of an RDATE/EXDATE property (or list of them); periods give their start."""
    for prop in value if isinstance(value, list) else [value] if value is not None else []:
        for item in prop.dts:
            moment = item.dt
            if isinstance(moment, tuple):
                moment = moment[0]
            if isinstance(moment, datetime):
                if moment.tzinfo is not None:
                    yield moment.astimezone(UTC)
            elif isinstance(moment, date):
                yield datetime(moment.year, moment.month, moment.day, tzinfo=UTC)


# ----- Google → iCalendar -----------------------------------------------------------------------


def private_properties(event: Mapping[str, Any]) -> dict[str, str]:
    """The string values of ``extendedProperties.private``."""
    extended = event.get("extendedProperties")
    private = extended.get("private") if isinstance(extended, Mapping) else None
    if not isinstance(private, Mapping):
        return {}
    return {str(k): v for k, v in private.items() if isinstance(v, str)}


def render_series(master: Mapping[str, Any], exceptions: Iterable[Mapping[str, Any]]) -> bytes:
    """A VCALENDAR for a Google event and its instance exceptions (see the module docs)."""
    uid = series_uid(master)
    blocks = ["\r\n".join(_event_block(master, uid))]
    private = private_properties(master)
    records = _records(private)
    excluded = _excluded_keys(master)
    rendered: set[str] = set()
    for exception in sorted(exceptions, key=_original_key):
        key = _original_key(exception)
        if not key or key in rendered:
            continue
        lines = exception_lines(exception, master)
        if exception.get("status") == "cancelled":
            record = records.get(key)
            if record is not None and _is_cancelled_record(record):
                lines = record
        elif lines == natural_lines(master, key):
            continue
        rendered.add(key)
        blocks.append("\r\n".join(_wrapped(uid, lines, exception)))
    for key, record in sorted(records.items()):
        if key in excluded and key not in rendered:
            blocks.append("\r\n".join(_wrapped(uid, record, master)))
    zones = sorted({zone for block in blocks for zone in _tzids(block)})
    years = _years(blocks)
    header = ["BEGIN:VCALENDAR", "VERSION:2.0", f"PRODID:{PRODID}", "CALSCALE:GREGORIAN"]
    parts = [*header, *(_vtimezone(zone, *years) for zone in zones), *blocks, "END:VCALENDAR"]
    return ("\r\n".join(parts) + "\r\n").encode("utf-8")


def exception_lines(exception: Mapping[str, Any], master: Mapping[str, Any]) -> list[str]:
    """The content lines (no UID, no DTSTAMP) an instance exception reads back as."""
    lines = _native_lines(exception, wall_clock_start=False)
    original = exception.get("originalStartTime")
    if isinstance(original, Mapping):
        zone = original if original.get("timeZone") else master.get("start", {})
        recurrence_id = _moment_line(
            "RECURRENCE-ID", {**original, **_zone_of(zone)}, wall_clock=False
        )
        lines.insert(0, _as_kept(recurrence_id, _times_kept(exception)))
    if exception.get("status") == "cancelled" and not exception.get("start"):
        lines += _minimal_cancelled(exception, master)
    return lines + _people_lines(exception, tagged=PRIVATE_UID in private_properties(master))


def natural_lines(master: Mapping[str, Any], key: str) -> list[str]:
    """The lines of the unmodified instance of ``master`` at the instant keyed ``key``."""
    return exception_lines(natural_instance(master, _key_instant(key)), master)


def natural_instance(master: Mapping[str, Any], original_start: datetime) -> Json:
    """The body of the instance of ``master`` at ``original_start`` as the rule makes it."""
    body: Json = {
        name: master[name]
        for name in (
            "summary",
            "description",
            "location",
            "status",
            "transparency",
            "visibility",
            "extendedProperties",
            "attendees",
        )
        if name in master
    }
    start, end = master.get("start", {}), master.get("end", {})
    body["originalStartTime"] = _original_start(original_start, start)
    if "date" in start:
        days = date.fromisoformat(end["date"]) - date.fromisoformat(start["date"])
        first = original_start.astimezone(UTC).date()
        body["start"] = {"date": first.isoformat()}
        body["end"] = {"date": (first + days).isoformat()}
        return body
    length = _instant(end) - _instant(start)
    body["start"] = _original_start(original_start, start)
    body["end"] = _original_start(original_start + length, end)
    return body


def _event_block(event: Mapping[str, Any], uid: str) -> list[str]:
    """The BEGIN…END lines of a master (or single) event."""
    recurrence = _readable_recurrence(event)
    lines = _native_lines(
        event, wall_clock_start=any(_name(line) in ("RRULE", "RDATE") for line in recurrence)
    )
    lines += recurrence
    lines += _people_lines(event, tagged=PRIVATE_UID in private_properties(event))
    return _wrapped(uid, lines, event)


def _wrapped(uid: str, lines: Sequence[str], event: Mapping[str, Any]) -> list[str]:
    """Lines framed as a VEVENT with UID and DTSTAMP, folded."""
    stamp = _dtstamp(event)
    framed = ["BEGIN:VEVENT", _text_line("UID", uid), f"DTSTAMP:{stamp}", *lines, "END:VEVENT"]
    return [_fold(line) for line in framed]


def _native_lines(event: Mapping[str, Any], *, wall_clock_start: bool) -> list[str]:
    """DTSTART/DTEND, status, transparency, class, texts and the carried lines of an event."""
    lines: list[str] = []
    start, end = event.get("start"), event.get("end")
    kept = _times_kept(event)
    if isinstance(start, Mapping) and start:
        lines.append(_as_kept(_moment_line("DTSTART", start, wall_clock=wall_clock_start), kept))
    if isinstance(end, Mapping) and end:
        lines.append(_as_kept(_moment_line("DTEND", end, wall_clock=False), kept))
    lines.append(f"STATUS:{str(event.get('status') or 'confirmed').upper()}")
    transparency = str(event.get("transparency") or "opaque")
    lines.append("TRANSP:TRANSPARENT" if transparency == "transparent" else "TRANSP:OPAQUE")
    klass = _CLASS_BY_VISIBILITY.get(str(event.get("visibility") or "default"))
    if klass:
        lines.append(f"CLASS:{klass}")
    for field, name in (
        ("summary", "SUMMARY"),
        ("description", "DESCRIPTION"),
        ("location", "LOCATION"),
    ):
        value = event.get(field)
        if isinstance(value, str) and value:
            lines.append(_text_line(name, value))
    private = private_properties(event)
    carried = _unchunked(private, PRIVATE_ICS)
    if carried:
        lines += carried.split("\r\n")
    if private.get(PRIVATE_PROVIDER) and private.get(PRIVATE_KEYS):
        lines.append(_text_line("X-ROOMBRIDGE-PROVIDER", private[PRIVATE_PROVIDER]))
        lines.append(_text_line("X-ROOMBRIDGE-KEY", private[PRIVATE_KEYS]))
    return lines


def _times_kept(event: Mapping[str, Any]) -> dict[str, str]:
    """The date-time lines an event keeps in their own words (see :func:`_kept_times`)."""
    text = private_properties(event).get(PRIVATE_TIMES)
    try:
        kept = json.loads(text) if text else {}
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in kept.items()} if isinstance(kept, dict) else {}


def _as_kept(line: str, kept: Mapping[str, str]) -> str:
    """The kept wording of a date-time line, while it still names the same moment."""
    original = kept.get(_name(line))
    if original is not None and _line_moment(original) == _line_moment(line):
        return original
    return line


def _line_moment(line: str) -> datetime | date | None:
    """The moment a DTSTART/DTEND/RECURRENCE-ID line names (None when unreadable)."""
    head, _, value = line.partition(":")
    params = dict(part.split("=", 1) for part in head.split(";")[1:] if "=" in part)
    value = value.strip()
    try:
        if len(value) == 8:
            return date(int(value[:4]), int(value[4:6]), int(value[6:]))
        if value.endswith("Z"):
            return datetime.strptime(value, _UTC_VALUE).replace(tzinfo=UTC)
        zone = ZoneInfo(params.get("TZID", "UTC").strip('"'))
        return datetime.strptime(value, "%Y%m%dT%H%M%S").replace(tzinfo=zone).astimezone(UTC)
    except (ValueError, ZoneInfoNotFoundError):
        return None


def _minimal_cancelled(exception: Mapping[str, Any], master: Mapping[str, Any]) -> list[str]:
    """DTSTART/DTEND of a cancelled instance Google described by its original start only."""
    natural = natural_instance(master, _instant_or_day(exception["originalStartTime"]))
    return [
        _moment_line("DTSTART", natural["start"], wall_clock=False),
        _moment_line("DTEND", natural["end"], wall_clock=False),
    ]


def _people_lines(event: Mapping[str, Any], *, tagged: bool) -> list[str]:
    """ORGANIZER (only for events the bridge did not write) and ATTENDEE lines from Google."""
    lines: list[str] = []
    organizer = event.get("organizer")
    if not tagged and isinstance(organizer, Mapping) and organizer.get("email"):
        lines.append(_address_line("ORGANIZER", organizer, {}))
    attendees = event.get("attendees")
    for attendee in attendees if isinstance(attendees, list) else []:
        if not isinstance(attendee, Mapping) or not attendee.get("email"):
            continue
        params = {"PARTSTAT": _PARTSTAT.get(str(attendee.get("responseStatus")), "NEEDS-ACTION")}
        if attendee.get("resource"):
            params["CUTYPE"] = "RESOURCE"
        if attendee.get("optional"):
            params["ROLE"] = "OPT-PARTICIPANT"
        lines.append(_address_line("ATTENDEE", attendee, params))
    return lines


def _address_line(name: str, person: Mapping[str, Any], params: Mapping[str, str]) -> str:
    """An ORGANIZER/ATTENDEE content line."""
    event = Event()
    address = vCalAddress("mailto:" + str(person["email"]))
    if person.get("displayName"):
        address.params["CN"] = str(person["displayName"])
    for key, value in params.items():
        address.params[key] = value
    event.add(name, address)
    return _only_line(event)


def _text_line(name: str, value: str) -> str:
    """A TEXT property line, escaped as iCalendar requires."""
    return f"{name}:{vText(value).to_ical().decode()}"


def _only_line(event: Event) -> str:
    """The single property line of a one-property VEVENT, unfolded."""
    text = _FOLDED.sub("", cast(bytes, event.to_ical()).decode())
    return next(line for line in text.splitlines() if not line.startswith(("BEGIN:", "END:")))


def _moment_line(name: str, value: Mapping[str, Any], *, wall_clock: bool) -> str:
    """A DTSTART/DTEND/RECURRENCE-ID line for an EventDateTime (see the module docs)."""
    if value.get("date"):
        return f"{name};VALUE=DATE:{str(value['date']).replace('-', '')}"
    instant = _instant(value)
    zone_name = str(value.get("timeZone") or "UTC")
    if zone_name == "UTC":
        return f"{name}:{instant.astimezone(UTC).strftime(_UTC_VALUE)}"
    local = instant.astimezone(ZoneInfo(zone_name))
    if wall_clock or local.replace(fold=0).astimezone(UTC) == instant.astimezone(UTC):
        return f"{name};TZID={zone_name}:{local.strftime('%Y%m%dT%H%M%S')}"
    return f"{name}:{instant.astimezone(UTC).strftime(_UTC_VALUE)}"


def _zone_of(value: Mapping[str, Any]) -> dict[str, str]:
    """The ``timeZone`` entry of an EventDateTime, when it has one."""
    zone = value.get("timeZone") if isinstance(value, Mapping) else None
    return {"timeZone": str(zone)} if zone else {}


def _instant(value: Mapping[str, Any]) -> datetime:
    """The instant of an EventDateTime with a ``dateTime``."""
    text = str(value.get("dateTime") or "")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise EventTranslationError(f"{text!r} is not an RFC 3339 date-time") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(str(value.get("timeZone") or "UTC")))
    return moment


def _instant_or_day(value: Mapping[str, Any]) -> datetime:
    """The instant of an EventDateTime; a ``date`` is its UTC midnight."""
    if value.get("date"):
        day = date.fromisoformat(str(value["date"]))
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    return _instant(value)


def _original_key(exception: Mapping[str, Any]) -> str:
    """The instance key of an exception (its original start)."""
    original = exception.get("originalStartTime")
    if not isinstance(original, Mapping):
        return ""
    return instant_key(_instant_or_day(original))


def _key_instant(key: str) -> datetime:
    """The instant of an instance key."""
    return datetime.strptime(key, _UTC_VALUE).replace(tzinfo=UTC)


def _dtstamp(event: Mapping[str, Any]) -> str:
    """DTSTAMP from Google's ``updated`` (a fixed stamp when it has none)."""
    updated = event.get("updated")
    if isinstance(updated, str) and updated:
        try:
            return datetime.fromisoformat(updated).astimezone(UTC).strftime(_UTC_VALUE)
        except ValueError:
            pass
    return FIXED_DTSTAMP


def _records(private: Mapping[str, str]) -> dict[str, list[str]]:
    """Override lines the master keeps (cancelled and excluded instances), by instance key."""
    text = _unchunked(private, PRIVATE_RECORDS)
    if not text:
        return {}
    try:
        records = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(records, dict):
        return {}
    return {
        str(key): [str(line) for line in lines]
        for key, lines in records.items()
        if isinstance(lines, list)
    }


def _is_cancelled_record(lines: Sequence[str]) -> bool:
    """Whether kept override lines say the instance is cancelled."""
    return any(_name(line) == "STATUS" and line.upper().endswith(":CANCELLED") for line in lines)


def _anchor_keys(private: Mapping[str, str]) -> set[str]:
    """Instance keys of the RDATEs the bridge added only for exceptions to stand on."""
    text = _unchunked(private, PRIVATE_ANCHORS)
    try:
        anchors = json.loads(text) if text else []
    except ValueError:
        return set()
    return {str(anchor) for anchor in anchors} if isinstance(anchors, list) else set()


def _readable_recurrence(event: Mapping[str, Any]) -> list[str]:
    """The event's recurrence lines without the bridge's anchor RDATEs."""
    lines = event.get("recurrence")
    if not isinstance(lines, list):
        return []
    anchors = _anchor_keys(private_properties(event))
    kept: list[str] = []
    for line in (str(item) for item in lines):
        if anchors and _name(line) == "RDATE":
            rest = _without_instants(line, anchors)
            if rest is not None:
                kept.append(rest)
        else:
            kept.append(line)
    return kept


def _without_instants(line: str, drop: set[str]) -> str | None:
    """An RDATE/EXDATE line without the values naming instants in ``drop`` (None if empty)."""
    head, _, values = line.partition(":")
    params = dict(part.split("=", 1) for part in head.split(";")[1:] if "=" in part)
    zone_name = params.get("TZID", "").strip('"')
    kept = [value for value in values.split(",") if _value_key(value, zone_name) not in drop]
    if not kept:
        return None
    return head + ":" + ",".join(kept) if len(kept) != len(values.split(",")) else line


def _value_key(value: str, zone_name: str) -> str | None:
    """The instance key of one RDATE/EXDATE value (None for values that are not date-times)."""
    try:
        if value.endswith("Z"):
            return instant_key(datetime.strptime(value, _UTC_VALUE).replace(tzinfo=UTC))
        if "T" in value and zone_name:
            local = datetime.strptime(value, "%Y%m%dT%H%M%S").replace(tzinfo=ZoneInfo(zone_name))
            return instant_key(local)
    except (ValueError, ZoneInfoNotFoundError):
        return None
    return None


def _excluded_keys(event: Mapping[str, Any]) -> set[str]:
    """Instance keys of the EXDATE values of an event's recurrence."""
    keys: set[str] = set()
    lines = event.get("recurrence")
    for line in (str(item) for item in lines) if isinstance(lines, list) else ():
        if _name(line) != "EXDATE":
            continue
        head, _, values = line.partition(":")
        params = dict(part.split("=", 1) for part in head.split(";")[1:] if "=" in part)
        zone_name = params.get("TZID", "").strip('"')
        if not zone_name:
            start = event.get("start")
            zone_name = str(start.get("timeZone") or "") if isinstance(start, Mapping) else ""
        for value in values.split(","):
            key = _value_key(value, zone_name if not value.endswith("Z") else "")
            if key:
                keys.add(key)
    return keys


def _fold(line: str) -> str:
    """A content line folded at 75 octets without splitting a UTF-8 character."""
    if len(line.encode("utf-8")) <= 75:
        return line
    pieces: list[str] = []
    current: list[str] = []
    size, limit = 0, 75
    for char in line:
        width = len(char.encode("utf-8"))
        if size + width > limit:
            pieces.append("".join(current))
            current, size, limit = [], 0, 74
        current.append(char)
        size += width
    pieces.append("".join(current))
    return "\r\n ".join(pieces)


def _tzids(block: str) -> Iterator[str]:
    """The TZID parameter values used in a VEVENT block."""
    for match in re.finditer(r";TZID=([^:;]+)[:;]", _FOLDED.sub("", block)):
        yield match.group(1).strip('"')


def _years(blocks: Sequence[str]) -> tuple[int, int]:
    """The years a set of VEVENT blocks spans, one spare on each side (for VTIMEZONEs)."""
    moment = re.compile(r"^(?:DTSTART|DTEND|RECURRENCE-ID)[;:][^\r\n]*:(\d{4})\d{4}", re.M)
    years = [int(match.group(1)) for block in blocks for match in moment.finditer(block)]
    if not years:
        return 2020, 2038
    return max(min(years) - 1, 1970), max(max(years) + 1, 2038)


@lru_cache(maxsize=256)
def _vtimezone(tzid: str, first_year: int, last_year: int) -> str:
    """A VTIMEZONE for ``tzid`` over the years (generation is slow: memoised)."""
    try:
        component = Timezone.from_tzid(
            tzid, first_date=date(first_year, 1, 1), last_date=date(last_year, 12, 31)
        )
    except (ValueError, ZoneInfoNotFoundError):
        return f"BEGIN:VTIMEZONE\r\nTZID:{tzid}\r\nEND:VTIMEZONE"
    return cast(bytes, component.to_ical()).decode().rstrip("\r\n")
