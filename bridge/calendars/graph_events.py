"""iCalendar objects ⇄ Microsoft Graph events, for the Microsoft 365 backend (pure: no I/O).

The sync engine speaks iCalendar objects (one UID: a master VEVENT plus its RECURRENCE-ID
overrides, as ``mappings.ical.booking_to_objects`` writes them). Graph speaks events. This
module decides how one object is laid out in a room mailbox and how to read it back:

- **single** — no recurrence: one ``singleInstance`` event;
- **series** — a recurrence Graph can hold (``mappings.graph.unrepresentable_reason`` says
  none is missing): a ``seriesMaster`` with the ``patternedRecurrence`` of the RRULE, each
  override PATCHed onto its occurrence (which becomes an ``exception``) and each EXDATE (or
  cancelled override) a deleted occurrence;
- **separate** — anything else (RDATEs, rules Graph has no pattern for, an override crossing a
  neighbour, a zone Graph would read with other offsets): one ``singleInstance`` *member* per
  live occurrence within a span of time (the backend's delta window). The members are one
  calendar object to the engine, whose href is ``group:<uid>``.

Every event the bridge writes carries single-value extended properties: the object's UID, the
booking key (``mappings.graph.KEY_PROPERTY_ID``, as the Graph mapping reads it) and, on the
single event, series master or first member, the **exact iCalendar text written**
(zlib-compressed, base64). Reading back, the backend compares what Graph holds now with the
layout that text calls for (start and end instants, subject, body text, showAs, sensitivity,
the recurrence, every occurrence in the span, every member). When they agree, the stored text
is returned verbatim, so the content hash equals the one recorded at write time and the
engine sees an echo. When anything visible differs (a third-party edit), the object is
rendered from what Graph holds instead (``derived_ics``): a different hash, so the engine
reverts the edit. Events the bridge did not write are rendered the same way, under their
``iCalUId``; the room's tags on a booking request it accepted (``ANSWER_PROPERTY``) read back
as ``X-ROOMBRIDGE-PROVIDER``/``X-ROOMBRIDGE-KEY``.

A ``transactionId`` derived from the UID makes creates idempotent; members add their start.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from icalendar import Calendar, Event, vRecur, vText

from bridge.model import Booking, BookingKey, BookingStatus, Override, Recurrence, Window
from mappings.errors import MappingError
from mappings.expansion import compile_rule, expand, rule_instants
from mappings.graph import (
    KEY_PROPERTY_ID,
    PROPERTY_SET,
    graph_zone_name,
    key_property_value,
    patterned_to_rrule,
    rrule_to_patterned,
    unrepresentable_reason,
)
from mappings.timezones import resolve_zone

JsonObject = Mapping[str, Any]

#: The object's iCalendar UID (what ``find_by_uid`` filters on).
UID_PROPERTY = f"String {PROPERTY_SET} Name RoombridgeUid"
#: The iCalendar text the bridge wrote (compressed), with the span members were written for.
ICS_PROPERTY = f"String {PROPERTY_SET} Name RoombridgeIcs"
#: On members of a separate layout: ``"<uid> <index> <count>"``.
MEMBER_PROPERTY = f"String {PROPERTY_SET} Name RoombridgeMember"
KEY_PROPERTY = KEY_PROPERTY_ID
#: On the room's copy of a meeting it accepted as a booking request: ``{"provider", "keys"}``.
ANSWER_PROPERTY = f"String {PROPERTY_SET} Name RoombridgeAnswer"

#: Every property the backend reads back with ``$expand``.
READ_PROPERTIES = (UID_PROPERTY, ICS_PROPERTY, MEMBER_PROPERTY, ANSWER_PROPERTY)

TRANSACTION_PREFIX = "rb1-"
GROUP_PREFIX = "group:"
STORED_PREFIX = "z1:"

#: How far a series' rule is checked when Graph would read its zone under another name.
ZONE_CHECK_SPAN = timedelta(days=800)

_MEMBER_TRANSACTION = re.compile(r"rb1-([0-9a-f]{32})-m\d{8}T\d{6}Z(?:-\d+)?")
_OBJECT_TRANSACTION = re.compile(r"rb1-([0-9a-f]{32})-e")


class GraphLayoutError(ValueError):
    """An iCalendar object the backend cannot lay out in Graph (unreadable, no times, ...)."""


class Layout(StrEnum):
    """How one calendar object is held in a mailbox."""

    SINGLE = "single"
    SERIES = "series"
    SEPARATE = "separate"


@dataclass(frozen=True, slots=True)
class Shape:
    """What Graph shows of one event or occurrence: the fields a third party can change."""

    start: datetime
    end: datetime
    subject: str
    body: str
    show_as: str
    sensitivity: str

    def normalised(self) -> Shape:
        """UTC whole seconds and trimmed text with LF line ends: how Graph compares."""
        return Shape(
            start=_utc_second(self.start),
            end=_utc_second(self.end),
            subject=normalised_text(self.subject),
            body=normalised_text(self.body),
            show_as=self.show_as,
            sensitivity=self.sensitivity,
        )


@dataclass(frozen=True, slots=True)
class Plan:
    """The layout of one iCalendar object in Graph."""

    uid: str
    ics: bytes
    zone: str
    layout: Layout
    master: Shape
    booking: Booking
    rule: str | None = None
    recurrence: dict[str, dict[str, object]] | None = None
    exceptions: dict[datetime, Shape] = field(default_factory=dict)
    cancelled: frozenset[datetime] = frozenset()
    reason: str | None = None
    key: BookingKey | None = None

    def exception_range(self) -> tuple[datetime, datetime] | None:
        """The span of instants the exceptions and cancellations touch (None if none)."""
        moments = [*self.exceptions, *self.cancelled]
        for shape in self.exceptions.values():
            moments.extend((shape.start, shape.end))
        if not moments:
            return None
        return min(moments), max(moments)


@dataclass(frozen=True, slots=True)
class StoredObject:
    """The extended-property payload: the iCalendar text written, and the members' span."""

    ics: bytes
    span: Window | None = None
    count: int = 1


# ----- identities ------------------------------------------------------------------------------


def uid_digest(uid: str) -> str:
    """A short stable digest of a UID (what transaction ids carry)."""
    return hashlib.sha256(uid.encode("utf-8")).hexdigest()[:32]


def transaction_id(uid: str) -> str:
    """The ``transactionId`` of the single event or series master of an object."""
    return f"{TRANSACTION_PREFIX}{uid_digest(uid)}-e"


def member_transaction_id(uid: str, start: datetime, repeat: int = 0) -> str:
    """The ``transactionId`` of the member starting at ``start``.

    ``repeat`` counts the members before it that start at the same instant (two moved
    occurrences may land on one time): without it Graph would take the second create for a
    retry of the first and keep only one of them.
    """
    instant = f"{start.astimezone(UTC):%Y%m%dT%H%M%SZ}"
    return f"{TRANSACTION_PREFIX}{uid_digest(uid)}-m{instant}" + (f"-{repeat}" if repeat else "")


def member_digest(transaction: str | None) -> str | None:
    """The UID digest of a member's ``transactionId`` (None for anything else)."""
    match = _MEMBER_TRANSACTION.fullmatch(transaction or "")
    return match[1] if match else None


def is_bridge_transaction(transaction: str | None) -> bool:
    """Whether a ``transactionId`` is one the backend writes."""
    text = transaction or ""
    return bool(_MEMBER_TRANSACTION.fullmatch(text) or _OBJECT_TRANSACTION.fullmatch(text))


def group_href(uid: str) -> str:
    """The engine-facing href of a separate layout."""
    return GROUP_PREFIX + uid


def group_uid(href: str) -> str | None:
    """The UID of a ``group:`` href (None for an event id)."""
    return href[len(GROUP_PREFIX) :] if href.startswith(GROUP_PREFIX) else None


def member_value(uid: str, index: int, count: int) -> str:
    """The member property value."""
    return f"{uid} {index} {count}"


def parse_member_value(value: str | None) -> tuple[str, int, int] | None:
    """(uid, index, count) of a member property value."""
    parts = (value or "").rsplit(" ", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    return parts[0], int(parts[1]), int(parts[2])


def composite_etag(pairs: Iterable[tuple[str, str | None]]) -> str:
    """One etag for several events: changes whenever any member's id or etag does."""
    text = "\n".join(sorted(f"{ident} {etag or ''}" for ident, etag in pairs))
    return f'W/"grp-{hashlib.sha256(text.encode()).hexdigest()[:32]}"'


# ----- the stored payload ------------------------------------------------------------------------


def encode_stored(stored: StoredObject) -> str:
    """The ICS property value."""
    document: dict[str, object] = {"ics": stored.ics.decode("utf-8"), "count": stored.count}
    if stored.span is not None:
        document["span"] = [stored.span.start.isoformat(), stored.span.end.isoformat()]
    packed = zlib.compress(json.dumps(document, separators=(",", ":")).encode(), 9)
    return STORED_PREFIX + base64.b64encode(packed).decode("ascii")


def decode_stored(value: str | None) -> StoredObject | None:
    """The stored payload, or None when absent or unreadable (then the event is re-derived)."""
    if not value or not value.startswith(STORED_PREFIX):
        return None
    try:
        document = json.loads(zlib.decompress(base64.b64decode(value[len(STORED_PREFIX) :])))
        span = None
        if document.get("span"):
            start, end = document["span"]
            span = Window(datetime.fromisoformat(start), datetime.fromisoformat(end))
        return StoredObject(document["ics"].encode("utf-8"), span, int(document.get("count", 1)))
    except (ValueError, TypeError, KeyError, zlib.error):
        return None


def answer_value(provider: str, keys: Sequence[str]) -> str:
    """The ``ANSWER_PROPERTY`` value tagging an accepted request with its booking keys."""
    return json.dumps({"provider": provider, "keys": list(keys)}, separators=(",", ":"))


def parse_answer(value: str | None) -> tuple[str, tuple[str, ...]] | None:
    """(provider, keys) of an ``ANSWER_PROPERTY`` value; None when absent or unreadable."""
    try:
        document = json.loads(value) if value else None
    except ValueError:
        return None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        return None
    return str(document.get("provider", "")), tuple(str(k) for k in document["keys"])


def extended_property(event: JsonObject, property_id: str) -> str | None:
    """An expanded single-value extended property of an event (ids compare case-insensitively)."""
    for item in event.get("singleValueExtendedProperties") or ():
        if isinstance(item, Mapping) and str(item.get("id", "")).lower() == property_id.lower():
            value = item.get("value")
            return value if isinstance(value, str) else None
    return None


# ----- iCalendar → plan ---------------------------------------------------------------------


@lru_cache(maxsize=4096)
def plan_object(uid: str, ics: bytes) -> Plan:
    """How the object ``ics`` (UID ``uid``) is laid out in Graph (GraphLayoutError if it cannot).

    Memoised: reads verify the same stored texts again and again, and plans are immutable.
    """
    master, overrides = _events_of(ics)
    zone = _object_zone(master)
    start, end = _span(master, zone)
    recurrence = _recurrence(master, overrides, zone)
    booking = _booking_of(uid, master, start, end, zone, recurrence)
    shape = _shape_of_vevent(master, start, end)
    key = _booking_key(master)
    if recurrence is None or not booking.is_recurring:
        return Plan(uid, ics, zone, Layout.SINGLE, shape, booking, key=key)
    reason = unrepresentable_reason(booking) or _zone_problem(booking)
    if reason is not None:
        return Plan(uid, ics, zone, Layout.SEPARATE, shape, booking, reason=reason, key=key)
    assert recurrence.rrule is not None
    exceptions, cancelled = _instance_changes(overrides, recurrence, zone)
    return Plan(
        uid,
        ics,
        zone,
        Layout.SERIES,
        shape,
        booking,
        rule=recurrence.rrule,
        recurrence=rrule_to_patterned(recurrence.rrule, start, zone),
        exceptions=exceptions,
        cancelled=cancelled,
        key=key,
    )


_VTIMEZONE = re.compile(r"BEGIN:VTIMEZONE\r?\n(.*?)END:VTIMEZONE\r?\n", re.DOTALL)
_TZID_LINE = re.compile(r"^TZID:(.*?)\r?$", re.MULTILINE)


def _without_known_zones(text: str) -> str:
    """The text without VTIMEZONEs of IANA zones: TZIDs resolve without them, much faster."""

    def drop(block: re.Match[str]) -> str:
        tzid = _TZID_LINE.search(block[1])
        try:
            ZoneInfo(tzid[1].strip()) if tzid else None
        except (ZoneInfoNotFoundError, ValueError):
            return block[0]
        return "" if tzid else block[0]

    return _VTIMEZONE.sub(drop, text)


def _events_of(ics: bytes) -> tuple[Event, list[Event]]:
    try:
        calendar = Calendar.from_ical(_without_known_zones(ics.decode("utf-8")))
    except (ValueError, KeyError, IndexError, TypeError, UnicodeDecodeError) as exc:
        raise GraphLayoutError(f"unreadable iCalendar object: {exc}") from exc
    master: Event | None = None
    overrides: list[Event] = []
    for event in cast(list[Event], calendar.walk("VEVENT")):
        if "RECURRENCE-ID" in event:
            overrides.append(event)
        elif master is None:
            master = event
        else:
            raise GraphLayoutError("two VEVENTs without RECURRENCE-ID in one object")
    if master is None:
        raise GraphLayoutError("the object has no master VEVENT")
    return master, overrides


def _object_zone(master: Event) -> str:
    """The object's zone: DTSTART's TZID, else the recorded room zone, else UTC."""
    start = _value(master, "DTSTART")
    if start is None:
        raise GraphLayoutError("VEVENT without DTSTART")
    tzid = start.params.get("TZID")
    for candidate in (tzid, _text(_value(master, "X-ROOMBRIDGE-TIMEZONE"))):
        if candidate:
            try:
                name = resolve_zone(str(candidate))
                ZoneInfo(name)
                return name
            except (MappingError, ZoneInfoNotFoundError, ValueError):
                continue
    return "UTC"


def _instant(value: object, zone: str) -> datetime:
    """An aware instant from a parsed DATE or DATE-TIME (floating times read in ``zone``)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.replace(tzinfo=ZoneInfo(zone))
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=ZoneInfo(zone))
    raise GraphLayoutError(f"not a date or date-time: {value!r}")


def _span(event: Event, zone: str) -> tuple[datetime, datetime]:
    start_prop = _value(event, "DTSTART")
    if start_prop is None:
        raise GraphLayoutError("VEVENT without DTSTART")
    start = _instant(start_prop.dt, zone)
    if "DTEND" in event:
        end = _instant(_value(event, "DTEND").dt, zone)
    elif "DURATION" in event:
        end = start + _value(event, "DURATION").dt
    elif isinstance(start_prop.dt, datetime):
        end = start
    else:
        end = start + timedelta(days=1)
    if end <= start:
        raise GraphLayoutError("the event does not end after it starts")
    return start, end


def _dates(event: Event, name: str, zone: str) -> list[datetime]:
    value = _value(event, name)
    if value is None:
        return []
    lists = value if isinstance(value, list) else [value]
    found = []
    for item in lists:
        for entry in getattr(item, "dts", []):
            if isinstance(entry.dt, tuple):
                found.append(_instant(entry.dt[0], zone))
            else:
                found.append(_instant(entry.dt, zone))
    return found


def _recurrence(master: Event, overrides: Sequence[Event], zone: str) -> Recurrence | None:
    rule = None
    if "RRULE" in master:
        value = _value(master, "RRULE")
        rules = value if isinstance(value, list) else [value]
        if len(rules) > 1:
            raise GraphLayoutError("several RRULEs in one VEVENT")
        written = rules[0].to_ical()
        rule = written.decode() if isinstance(written, bytes) else str(written)
    rdates = _dates(master, "RDATE", zone)
    exdates = _dates(master, "EXDATE", zone)
    parsed = []
    for event in overrides:
        start, end = _span(event, zone)
        parsed.append(
            Override(
                recurrence_id=_instant(_value(event, "RECURRENCE-ID").dt, zone),
                start=start,
                end=end,
                status=_status(event),
            )
        )
    if not (rule or rdates or exdates or parsed):
        return None
    return Recurrence(
        rrule=rule,
        rdates=tuple(sorted(set(rdates))),
        exdates=tuple(sorted(set(exdates))),
        overrides=tuple(sorted(parsed, key=lambda o: o.recurrence_id)),
    )


def _status(event: Event) -> BookingStatus | None:
    text = str(event.get("STATUS", "")).upper()
    return {
        "CANCELLED": BookingStatus.CANCELLED,
        "TENTATIVE": BookingStatus.TENTATIVE,
        "CONFIRMED": BookingStatus.CONFIRMED,
    }.get(text)


def _booking_of(
    uid: str,
    master: Event,
    start: datetime,
    end: datetime,
    zone: str,
    recurrence: Recurrence | None,
) -> Booking:
    """A stand-in booking, so the Graph mapping's representability rules and expansion apply."""
    try:
        return Booking(
            provider="calendar",
            key=uid,
            resource="",
            start=start.astimezone(ZoneInfo(zone)),
            end=end.astimezone(ZoneInfo(zone)),
            timezone=zone,
            status=_status(master) or BookingStatus.CONFIRMED,
            recurrence=recurrence,
        )
    except ValueError as exc:
        raise GraphLayoutError(str(exc)) from exc


def _booking_key(master: Event) -> BookingKey | None:
    provider = _text(_value(master, "X-ROOMBRIDGE-PROVIDER"))
    key = _text(_value(master, "X-ROOMBRIDGE-KEY"))
    return BookingKey(provider, key) if provider and key else None


def _zone_problem(booking: Booking) -> str | None:
    """Why Graph would put the series' occurrences elsewhere: it knows the zone by another name."""
    written = graph_zone_name(booking.timezone)
    try:
        graph_zone = ZoneInfo(resolve_zone(written))
    except (MappingError, ZoneInfoNotFoundError):
        return f"Graph does not know the zone {booking.timezone}"
    zone = booking.zone
    if graph_zone.key == zone.key:
        return None
    recurrence = booking.recurrence
    assert recurrence is not None and recurrence.rrule is not None
    horizon = booking.start + ZONE_CHECK_SPAN
    for instant in rule_instants(recurrence.rrule, booking.start, zone, horizon):
        if instant.astimezone(zone).replace(tzinfo=None) != instant.astimezone(graph_zone).replace(
            tzinfo=None
        ):
            return f"Graph reads {booking.timezone} as {written}, with other offsets"
    return None


def _instance_changes(
    overrides: Sequence[Event], recurrence: Recurrence, zone: str
) -> tuple[dict[datetime, Shape], frozenset[datetime]]:
    """Exceptions (by original start, UTC) and cancelled occurrences of a series."""
    cancelled = {_utc_second(instant) for instant in recurrence.exdates}
    exceptions: dict[datetime, Shape] = {}
    for event in overrides:
        rid = _utc_second(_instant(_value(event, "RECURRENCE-ID").dt, zone))
        if rid in cancelled:
            continue
        if _status(event) is BookingStatus.CANCELLED:
            cancelled.add(rid)
            continue
        start, end = _span(event, zone)
        exceptions[rid] = _shape_of_vevent(event, start, end)
    return exceptions, frozenset(cancelled)


def _value(component: Event, name: str) -> Any:
    """A property of a VEVENT (icalendar's value classes differ per property)."""
    return component.get(name)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        value = value[0] if value else ""
    return str(value)


def _shape_of_vevent(event: Event, start: datetime, end: datetime) -> Shape:
    status = _status(event)
    if str(event.get("TRANSP", "")).upper() == "TRANSPARENT" or status is BookingStatus.CANCELLED:
        show_as = "free"
    elif status is BookingStatus.TENTATIVE:
        show_as = "tentative"
    else:
        show_as = "busy"
    klass = str(event.get("CLASS", "")).upper()
    sensitivity = {"PRIVATE": "private", "CONFIDENTIAL": "confidential"}.get(klass, "normal")
    return Shape(
        start=start,
        end=end,
        subject=_text(_value(event, "SUMMARY")),
        body=_text(_value(event, "DESCRIPTION")),
        show_as=show_as,
        sensitivity=sensitivity,
    )


# ----- plan → Graph bodies ------------------------------------------------------------------


def date_time_zone(instant: datetime, iana: str) -> dict[str, str]:
    """A ``dateTimeTimeZone`` Graph reads back as exactly ``instant``.

    The wall time in the zone Graph will use for the zone's written name, or UTC where that
    wall time is ambiguous (a DST fold) or does not exist.
    """
    written = graph_zone_name(iana)
    try:
        graph_zone = ZoneInfo(resolve_zone(written))
    except (MappingError, ZoneInfoNotFoundError):
        graph_zone, written = ZoneInfo("UTC"), "UTC"
    local = instant.astimezone(graph_zone)
    naive = local.replace(tzinfo=None)
    exact = naive.replace(tzinfo=graph_zone, fold=0).astimezone(UTC) == instant.astimezone(UTC)
    if exact and written != "UTC":
        return {"dateTime": naive.isoformat(timespec="seconds"), "timeZone": written}
    utc = instant.astimezone(UTC).replace(tzinfo=None)
    return {"dateTime": utc.isoformat(timespec="seconds"), "timeZone": "UTC"}


def _shape_fields(shape: Shape, zone: str) -> dict[str, object]:
    return {
        "subject": shape.subject,
        "body": {"contentType": "text", "content": shape.body},
        "start": date_time_zone(shape.start, zone),
        "end": date_time_zone(shape.end, zone),
        "showAs": shape.show_as,
        "sensitivity": shape.sensitivity,
    }


def _properties(plan: Plan, extra: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    properties = [{"id": UID_PROPERTY, "value": plan.uid}]
    if plan.key is not None:
        properties.append({"id": KEY_PROPERTY, "value": key_property_value(plan.key)})
    properties.extend({"id": pid, "value": value} for pid, value in extra)
    return properties


def event_body(plan: Plan) -> dict[str, object]:
    """The POST body of a single event or series master."""
    body = _shape_fields(plan.master, plan.zone)
    body.update(
        {
            "isReminderOn": False,
            "transactionId": transaction_id(plan.uid),
            "singleValueExtendedProperties": _properties(
                plan, [(ICS_PROPERTY, encode_stored(StoredObject(plan.ics)))]
            ),
        }
    )
    if plan.layout is Layout.SERIES:
        body["recurrence"] = plan.recurrence
    return body


def patch_body(plan: Plan) -> dict[str, object]:
    """The PATCH body that makes an existing single event hold ``plan``."""
    body = _shape_fields(plan.master, plan.zone)
    body["singleValueExtendedProperties"] = _properties(
        plan, [(ICS_PROPERTY, encode_stored(StoredObject(plan.ics)))]
    )
    return body


def exception_body(plan: Plan, shape: Shape) -> dict[str, object]:
    """The PATCH body that turns an occurrence into an exception."""
    return _shape_fields(shape, plan.zone)


def members(plan: Plan, span: Window) -> list[Shape]:
    """The live occurrences of a separate layout overlapping ``span``, in order."""
    overrides = _override_shapes(plan)
    shapes = []
    for occurrence in expand(plan.booking, span):
        if not occurrence.status.is_live:
            continue
        rid = _utc_second(occurrence.recurrence_id) if occurrence.recurrence_id else None
        base = overrides.get(rid) if rid is not None else None
        base = base or plan.master
        shapes.append(
            Shape(
                occurrence.start,
                occurrence.end,
                base.subject,
                base.body,
                base.show_as,
                base.sensitivity,
            )
        )
    return shapes


def _override_shapes(plan: Plan) -> dict[datetime, Shape]:
    _master, overrides = _events_of(plan.ics)
    shapes = {}
    for event in overrides:
        start, end = _span(event, plan.zone)
        shapes[_utc_second(_instant(_value(event, "RECURRENCE-ID").dt, plan.zone))] = (
            _shape_of_vevent(event, start, end)
        )
    return shapes


def member_body(
    plan: Plan, shape: Shape, index: int, count: int, span: Window, *, repeat: int = 0
) -> dict[str, object]:
    """The POST body of one member; the first carries the iCalendar text.

    ``repeat``: how many earlier members start at the same instant (see
    :func:`member_transaction_id`).
    """
    body = _shape_fields(shape, plan.zone)
    extra = [(MEMBER_PROPERTY, member_value(plan.uid, index, count))]
    if index == 0:
        extra.append((ICS_PROPERTY, encode_stored(StoredObject(plan.ics, span, count))))
    body.update(
        {
            "isReminderOn": False,
            "transactionId": member_transaction_id(plan.uid, shape.start, repeat),
            "singleValueExtendedProperties": _properties(plan, extra),
        }
    )
    return body


# ----- Graph → comparison ------------------------------------------------------------------------


def normalised_text(text: str) -> str:
    """Text as compared: LF line ends, no edge whitespace."""
    return text.replace("\r\n", "\n").replace("\r", "\n").strip()


def _utc_second(instant: datetime) -> datetime:
    return instant.astimezone(UTC).replace(microsecond=0)


def graph_instant(value: object) -> datetime:
    """A ``dateTimeTimeZone`` from Graph as an aware instant."""
    if not isinstance(value, Mapping):
        raise GraphLayoutError("not a dateTimeTimeZone")
    text, zone_name = str(value.get("dateTime", "")), str(value.get("timeZone") or "UTC")
    try:
        zone = ZoneInfo(resolve_zone(zone_name))
        naive = datetime.fromisoformat(_seven_digits_to_six(text))
    except (MappingError, ZoneInfoNotFoundError, ValueError) as exc:
        raise GraphLayoutError(f"unreadable time {value!r}") from exc
    if naive.tzinfo is not None:
        return naive
    return naive.replace(tzinfo=zone, fold=0)


def _seven_digits_to_six(text: str) -> str:
    head, dot, fraction = text.partition(".")
    return f"{head}.{fraction[:6]}" if dot else head


def offset_instant(text: object) -> datetime:
    """A DateTimeOffset (``originalStart``) as an aware instant."""
    try:
        parsed = datetime.fromisoformat(_seven_digits_to_six(str(text).replace("Z", "+00:00")))
    except ValueError as exc:
        raise GraphLayoutError(f"unreadable instant {text!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def body_text(event: JsonObject) -> str:
    """An event's body as plain text (HTML reduced to text, should Graph send HTML)."""
    body = event.get("body")
    if not isinstance(body, Mapping):
        return ""
    content = str(body.get("content") or "")
    if str(body.get("contentType", "text")).lower() == "html":
        import html

        without_head = re.sub(r"(?is)<head.*?</head>", "", content)
        with_breaks = re.sub(r"(?i)<br\s*/?>", "\n", without_head)
        return html.unescape(re.sub(r"<[^>]+>", "", with_breaks))
    return content


def shape_of(event: JsonObject) -> Shape:
    """What Graph shows of an event or occurrence."""
    return Shape(
        start=graph_instant(event.get("start")),
        end=graph_instant(event.get("end")),
        subject=str(event.get("subject") or ""),
        body=body_text(event),
        show_as=str(event.get("showAs") or "busy"),
        sensitivity=str(event.get("sensitivity") or "normal"),
    ).normalised()


def event_zone(event: JsonObject) -> str:
    """The IANA zone an event was created in (``originalStartTimeZone``), else UTC."""
    for name in (
        event.get("originalStartTimeZone"),
        (event.get("recurrence") or {}).get("range", {}).get("recurrenceTimeZone"),
    ):
        if isinstance(name, str) and name:
            try:
                return resolve_zone(name)
            except MappingError:
                continue
    return "UTC"


def graph_rule(event: JsonObject) -> str | None:
    """The RRULE a series master's patternedRecurrence means (None when it has none)."""
    recurrence = event.get("recurrence")
    if not isinstance(recurrence, Mapping):
        return None
    try:
        return patterned_to_rrule(
            recurrence.get("pattern") or {}, recurrence.get("range") or {}, event_zone(event)
        )
    except MappingError:
        return None


def instance_window(plan: Plan, span: Window) -> Window:
    """The window to list a series' instances in, so every one starting in ``span`` is found.

    Exceptions may have moved an occurrence far from its original start; the window reaches
    that far beyond the span on both sides.
    """
    reach = plan.master.end - plan.master.start + timedelta(days=1)
    for original, shape in plan.exceptions.items():
        reach = max(reach, abs(shape.start - original) + (shape.end - shape.start))
    return Window(span.start - reach, span.end + reach)


def expected_instances(plan: Plan, span: Window) -> dict[datetime, Shape]:
    """The occurrences (by original start) a series must show for originals in ``span``."""
    listed = instance_window(plan, span)
    found: dict[datetime, Shape] = {}
    for occurrence in expand(plan.booking, listed):
        original = _utc_second(occurrence.recurrence_id or occurrence.start)
        if original in plan.cancelled or not span.start <= original < span.end:
            continue
        shape = plan.exceptions.get(original)
        if shape is None:
            shape = Shape(
                occurrence.start,
                occurrence.end,
                plan.master.subject,
                plan.master.body,
                plan.master.show_as,
                plan.master.sensitivity,
            )
        found[original] = shape.normalised()
    return found


def actual_instances(instances: Iterable[JsonObject], span: Window) -> dict[datetime, Shape]:
    """The listed instances (by original start) whose original start falls in ``span``."""
    found: dict[datetime, Shape] = {}
    for instance in instances:
        original = _utc_second(
            offset_instant(instance["originalStart"])
            if instance.get("originalStart")
            else graph_instant(instance.get("start"))
        )
        if span.start <= original < span.end:
            found[original] = shape_of(instance)
    return found


def matches_event(
    plan: Plan, event: JsonObject, instances: Sequence[JsonObject] | None, span: Window
) -> bool:
    """Whether a single event or series (with its listed instances) still holds ``plan``."""
    kind = event.get("type")
    if plan.layout is Layout.SINGLE:
        return kind == "singleInstance" and shape_of(event) == plan.master.normalised()
    if plan.layout is not Layout.SERIES or kind != "seriesMaster" or instances is None:
        return False
    if shape_of(event) != plan.master.normalised():
        return False
    assert plan.rule is not None and plan.recurrence is not None
    expected_rule = patterned_to_rrule(
        plan.recurrence["pattern"], plan.recurrence["range"], plan.zone
    )
    if graph_rule(event) != expected_rule:
        return False
    return actual_instances(instances, span) == expected_instances(plan, span)


def matches_members(
    plan: Plan, stored: StoredObject, found: Sequence[JsonObject], window: Window
) -> bool:
    """Whether a separate layout's members still hold ``plan`` and cover ``window``."""
    span = stored.span
    if plan.layout is not Layout.SEPARATE or span is None:
        return False
    if span.start > window.start or span.end < window.end:
        return False  # written for an older window: occurrences may be missing now
    if any(event.get("type") != "singleInstance" for event in found):
        return False
    wanted = Counter(shape.normalised() for shape in members(plan, span))
    return Counter(shape_of(event) for event in found) == wanted and len(found) == stored.count


# ----- Graph → iCalendar (what a third party left) ------------------------------------------------


FIXED_STAMP = datetime(1970, 1, 1, tzinfo=UTC)


def derived_ics(
    uid: str,
    event: JsonObject,
    instances: Sequence[JsonObject] | None,
    span: Window,
    *,
    foreign: bool,
) -> bytes:
    """A VCALENDAR for what Graph holds of one event (and its occurrences within ``span``)."""
    zone = event_zone(event)
    calendar = _calendar()
    master = _vevent(uid, event, zone, foreign=foreign)
    answer = parse_answer(extended_property(event, ANSWER_PROPERTY)) if foreign else None
    if answer is not None:
        master.add("X-ROOMBRIDGE-PROVIDER", vText(answer[0]))
        master.add("X-ROOMBRIDGE-KEY", vText(",".join(answer[1])))
    rule = graph_rule(event)
    if rule:
        master.add("RRULE", vRecur.from_ical(rule))
        start = graph_instant(event.get("start"))
        listed = {
            _utc_second(offset_instant(i["originalStart"])): i
            for i in instances or ()
            if i.get("originalStart")
        }
        missing = _missing_occurrences(rule, start, zone, listed, span)
        if missing:
            master.add("EXDATE", [m.astimezone(ZoneInfo(zone)) for m in missing])
        calendar.add_component(master)
        for original, instance in sorted(listed.items()):
            if instance.get("type") != "exception":
                continue
            override = _vevent(uid, instance, zone, foreign=foreign)
            override.add("RECURRENCE-ID", original.astimezone(ZoneInfo(zone)))
            calendar.add_component(override)
    else:
        calendar.add_component(master)
    return bytes(calendar.to_ical())


def derived_members_ics(uid: str, found: Sequence[JsonObject]) -> bytes:
    """A VCALENDAR for a separate layout as Graph holds it: the first member, the rest as RDATEs."""
    calendar = _calendar()
    ordered = sorted(found, key=lambda e: (graph_instant(e.get("start")), str(e.get("id"))))
    if not ordered:
        return bytes(calendar.to_ical())
    first = ordered[0]
    zone = event_zone(first)
    master = _vevent(uid, first, zone, foreign=False)
    others = [graph_instant(e.get("start")).astimezone(ZoneInfo(zone)) for e in ordered[1:]]
    if others:
        master.add("RDATE", others)
    calendar.add_component(master)
    for other in ordered[1:]:
        override = _vevent(uid, other, zone, foreign=False)
        override.add("RECURRENCE-ID", graph_instant(other.get("start")).astimezone(ZoneInfo(zone)))
        calendar.add_component(override)
    return bytes(calendar.to_ical())


def unreadable_ics(uid: str, reason: str) -> bytes:
    """A stand-in VCALENDAR for an event whose Graph data cannot be read (says why)."""
    calendar = _calendar()
    vevent = Event()
    vevent.add("UID", uid)
    vevent.add("DTSTAMP", FIXED_STAMP)
    vevent.add("X-ROOMBRIDGE-GRAPH-ERROR", vText(reason[:300]))
    calendar.add_component(vevent)
    return bytes(calendar.to_ical())


def _calendar() -> Calendar:
    calendar = Calendar()
    calendar.add("PRODID", "-//roombridge//microsoft graph//EN")
    calendar.add("VERSION", "2.0")
    return calendar


def _vevent(uid: str, event: JsonObject, zone: str, *, foreign: bool) -> Event:
    tz = ZoneInfo(zone)
    vevent = Event()
    vevent.add("UID", uid)
    stamp = event.get("lastModifiedDateTime")
    vevent.add("DTSTAMP", offset_instant(stamp) if stamp else FIXED_STAMP)
    vevent.add("DTSTART", graph_instant(event.get("start")).astimezone(tz))
    vevent.add("DTEND", graph_instant(event.get("end")).astimezone(tz))
    subject = str(event.get("subject") or "")
    if subject:
        vevent.add("SUMMARY", vText(subject))
    description = normalised_text(body_text(event))
    if description:
        vevent.add("DESCRIPTION", vText(description))
    show_as = str(event.get("showAs") or "busy")
    if event.get("isCancelled"):
        vevent.add("STATUS", "CANCELLED")
    elif show_as == "tentative":
        vevent.add("STATUS", "TENTATIVE")
    else:
        vevent.add("STATUS", "CONFIRMED")
    vevent.add("TRANSP", "TRANSPARENT" if show_as == "free" else "OPAQUE")
    sensitivity = str(event.get("sensitivity") or "normal")
    if sensitivity in ("private", "confidential"):
        vevent.add("CLASS", sensitivity.upper())
    if foreign:
        _add_people(vevent, event)
    return vevent


def _add_people(vevent: Event, event: JsonObject) -> None:
    from icalendar import vCalAddress

    organizer = (event.get("organizer") or {}).get("emailAddress") or {}
    if organizer.get("address"):
        address = vCalAddress(f"mailto:{organizer['address']}")
        if organizer.get("name"):
            address.params["CN"] = str(organizer["name"])
        vevent.add("ORGANIZER", address)
    for attendee in event.get("attendees") or ():
        email = (attendee.get("emailAddress") or {}) if isinstance(attendee, Mapping) else {}
        if not email.get("address"):
            continue
        address = vCalAddress(f"mailto:{email['address']}")
        if email.get("name"):
            address.params["CN"] = str(email["name"])
        if attendee.get("type") == "resource":
            address.params["CUTYPE"] = "RESOURCE"
        response = str((attendee.get("status") or {}).get("response") or "none")
        address.params["PARTSTAT"] = {
            "accepted": "ACCEPTED",
            "declined": "DECLINED",
            "tentativelyAccepted": "TENTATIVE",
        }.get(response, "NEEDS-ACTION")
        vevent.add("ATTENDEE", address)


def _missing_occurrences(
    rule: str,
    start: datetime,
    zone: str,
    listed: Mapping[datetime, JsonObject],
    span: Window,
) -> list[datetime]:
    """Rule occurrences whose original start is in ``span`` but that Graph no longer lists."""
    tz = ZoneInfo(zone)
    try:
        compiled = compile_rule(rule, start, tz)
    except MappingError:
        return []
    missing = []
    for count, local in enumerate(compiled, start=1):
        instant = local.replace(tzinfo=tz, fold=0).astimezone(UTC)
        if instant >= span.end or count > 100_000:
            break
        if instant >= span.start and instant not in listed:
            missing.append(instant)
    return missing
