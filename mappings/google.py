"""Google Calendar v3 Event resources ⇄ canonical bookings.

Reading (``from_json``) takes one Event resource, a JSON array of them, or an ``events.list``
page. A recurring event is its master plus its exceptions: items carrying ``recurringEventId``
and ``originalStartTime`` attach to their master as overrides, and cancelled ones become
EXDATEs (Google's "this instance no longer occurs"). In a list, deleted-event stubs (status
``cancelled`` and no ``start``: all an incremental sync says about a deletion) are skipped; the
caller learns deletions from their ids. An exception whose master is not in the input is an
error: the caller must fetch the master.

Writing (``to_json`` + ``instance_bodies``) produces the bodies the Google backend inserts:
a client-chosen ``id`` derived from the booking key (idempotent creation, DESIGN rule 1),
``start``/``end`` with the room's IANA zone, the ``recurrence`` lines, and private extended
properties (``roombridge*``) that restore the booking's provider, key, resource, buffers,
version and extra fields on the way back. Overrides become separate instance bodies; cancelled
overrides and EXDATEs both become EXDATE lines.

Google holds no phone numbers and no attendee without an email, so those do not survive a
round trip; ``updated`` and ``etag`` are read-only (``version`` reads the etag when present,
else the tag). Bookings whose start and end are local midnights are written as all-day events
(``{"date": ...}``), and all-day events are read as midnight-to-midnight in the event's zone.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bridge.model import (
    Booking,
    BookingKey,
    BookingStatus,
    Buffers,
    Override,
    Person,
    Recurrence,
)
from mappings.errors import (
    InvalidValue,
    MalformedInput,
    MappingError,
    MissingField,
    UnsupportedRecurrence,
)
from mappings.expansion import compile_rule, join_rule, rule_parts
from mappings.timezones import resolve_zone

KIND = "google"

#: Zone used when neither the event, the caller nor the page names one: instants stay exact.
FALLBACK_ZONE = "UTC"

#: Private extended property names (Google drops keys longer than 44 characters).
TAG_PROVIDER = "roombridgeProvider"
TAG_KEY = "roombridgeKey"
TAG_RESOURCE = "roombridgeResource"
TAG_TIMEZONE = "roombridgeTimezone"
TAG_BUFFER_BEFORE = "roombridgeBufferBefore"
TAG_BUFFER_AFTER = "roombridgeBufferAfter"
TAG_VERSION = "roombridgeVersion"
TAG_EXTRA = "roombridgeExtra"

#: Google silently truncates longer extended property values, so longer ones are split.
MAX_TAG_VALUE = 1024

#: Prefix of the event ids the bridge chooses; base32hex letters only (``[a-v0-9]``).
EVENT_ID_PREFIX = "rb"

JsonObject = Mapping[str, object]

_STATUS_BY_NAME = {status.value: status for status in BookingStatus}
_PRIVATE_VISIBILITIES = frozenset({"private", "confidential"})


# --------------------------------------------------------------------------- identities


def event_id_for(key: BookingKey) -> str:
    """The deterministic Google event id of a booking: base32hex of a SHA-256 of its key."""
    digest = hashlib.sha256(f"{key.provider}\x00{key.key}".encode()).digest()
    return EVENT_ID_PREFIX + base64.b32hexencode(digest).decode().rstrip("=").lower()


def instance_id(event_id: str, recurrence_id: datetime, *, all_day: bool = False) -> str:
    """Google's ``<id>_<YYYYMMDDTHHMMSSZ>`` (all-day: ``<id>_<YYYYMMDD>``) instance id."""
    if recurrence_id.tzinfo is None:
        raise ValueError("recurrence_id must be aware")
    if all_day:
        return f"{event_id}_{recurrence_id:%Y%m%d}"
    return f"{event_id}_{recurrence_id.astimezone(UTC):%Y%m%dT%H%M%SZ}"


# --------------------------------------------------------------------------- reading


def from_json(data: object, *, provider: str = KIND, timezone: str | None = None) -> list[Booking]:
    """Canonical bookings from one Event resource, a list of them, or an ``events.list`` page."""
    if isinstance(data, str | bytes):
        data = _parsed(data)
    if isinstance(data, Mapping) and isinstance(data.get("items"), list):
        page_zone = data.get("timeZone")
        default = timezone or (page_zone if isinstance(page_zone, str) else None)
        return _bookings_of(_objects(data["items"]), provider, default, skip_stubs=True)
    if isinstance(data, Mapping):
        return _bookings_of([data], provider, timezone, skip_stubs=False)
    if isinstance(data, list):
        return _bookings_of(_objects(data), provider, timezone, skip_stubs=True)
    raise MalformedInput("expected a Google Event resource, a list of them or an events page")


def _parsed(text: str | bytes) -> object:
    """JSON text decoded."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise MalformedInput(f"not JSON: {exc}") from exc


def _objects(items: Sequence[object]) -> list[JsonObject]:
    """The items of a list, each required to be a JSON object."""
    objects: list[JsonObject] = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise MalformedInput(f"item {index} is not an Event resource", field=f"[{index}]")
        objects.append(item)
    return objects


def _bookings_of(
    events: list[JsonObject], provider: str, zone_name: str | None, *, skip_stubs: bool
) -> list[Booking]:
    """Masters with their exceptions attached, in input order."""
    exceptions: dict[str, list[JsonObject]] = {}
    masters: list[JsonObject] = []
    for event in events:
        parent = event.get("recurringEventId")
        if parent is not None:
            exceptions.setdefault(_required_text(event, "recurringEventId"), []).append(event)
        elif not (skip_stubs and _is_deleted_stub(event)):
            masters.append(event)
    bookings = [
        _booking(master, exceptions.pop(str(master.get("id")), []), provider, zone_name)
        for master in masters
    ]
    for parent, orphans in exceptions.items():
        raise MissingField(
            f"instance of recurring event {parent!r} whose master is not in the input",
            booking=_label(orphans[0]),
            field="recurringEventId",
        )
    return bookings


def _is_deleted_stub(event: JsonObject) -> bool:
    """Whether the item only says "this event was deleted"."""
    return event.get("status") == "cancelled" and "start" not in event


def _booking(
    event: JsonObject, exceptions: list[JsonObject], provider: str, default_zone: str | None
) -> Booking:
    """One booking from a master (or single) event and its exceptions."""
    label = _label(event)
    try:
        return _booking_unlabelled(event, exceptions, provider, default_zone)
    except MappingError as exc:
        if exc.booking is not None:
            raise
        raise type(exc)(exc.reason, booking=label, field=exc.field) from exc


def _booking_unlabelled(
    event: JsonObject, exceptions: list[JsonObject], provider: str, default_zone: str | None
) -> Booking:
    """The body of ``_booking``; errors are labelled with the event by the caller."""
    tags = _private_tags(event)
    zone_name = _event_zone(event, tags, default_zone)
    zone = ZoneInfo(zone_name)
    start = _event_time(event, "start", zone)
    end = _event_time(event, "end", zone)
    if end <= start:
        raise InvalidValue("end is not after start", field="end")
    status = _status(event)
    title = _optional_text(event, "summary") or ""
    description = _optional_text(event, "description") or ""
    recurrence = _recurrence(event, exceptions, start, zone, status, title, description)
    return Booking(
        provider=tags.get(TAG_PROVIDER) or provider,
        key=tags.get(TAG_KEY) or _required_text(event, "id"),
        resource=tags.get(TAG_RESOURCE) or _resource_attendee(event) or "",
        start=start,
        end=end,
        timezone=zone_name,
        status=status,
        title=title,
        description=description,
        organizer=_organizer(event),
        attendees=_attendees(event),
        private=_optional_text(event, "visibility") in _PRIVATE_VISIBILITIES,
        buffers=_buffers(tags),
        recurrence=recurrence,
        version=_optional_text(event, "etag") or tags.get(TAG_VERSION),
        updated=_updated(event),
        extra=_extra(tags),
    )


def _label(event: JsonObject) -> str | None:
    """What errors call the event: its id."""
    ident = event.get("id")
    return ident if isinstance(ident, str) and ident else None


def _event_zone(event: JsonObject, tags: Mapping[str, str], default_zone: str | None) -> str:
    """The IANA zone the event's times and recurrence live in."""
    start = event.get("start")
    named = start.get("timeZone") if isinstance(start, Mapping) else None
    if isinstance(named, str) and named:
        return resolve_zone(named, field="start.timeZone")
    if TAG_TIMEZONE in tags:
        return resolve_zone(tags[TAG_TIMEZONE], field=f"extendedProperties.private.{TAG_TIMEZONE}")
    return resolve_zone(default_zone or FALLBACK_ZONE, field="timeZone")


def _event_time(event: JsonObject, name: str, zone: ZoneInfo) -> datetime:
    """An EventDateTime (``start``, ``end``, ``originalStartTime``) as an aware instant."""
    value = event.get(name)
    if value is None:
        raise MissingField(f"{name} is missing", field=name)
    if not isinstance(value, Mapping):
        raise InvalidValue(f"{name} is not an EventDateTime object", field=name)
    named = value.get("timeZone")
    if isinstance(named, str) and named:
        zone = ZoneInfo(resolve_zone(named, field=f"{name}.timeZone"))
    if value.get("dateTime") is not None:
        return _instant(_required_text(value, "dateTime", f"{name}.dateTime"), zone, name)
    if value.get("date") is not None:
        day = _day(_required_text(value, "date", f"{name}.date"), f"{name}.date")
        return datetime.combine(day, time(0), zone)
    raise MissingField(f"{name} has neither dateTime nor date", field=f"{name}.dateTime")


def _instant(text: str, zone: ZoneInfo, field: str) -> datetime:
    """An RFC 3339 date-time; one without an offset is a wall-clock time in ``zone``."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidValue(f"{text!r} is not an RFC 3339 date-time", field=field) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(zone)


def _day(text: str, field: str) -> date:
    """A ``YYYY-MM-DD`` date."""
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise InvalidValue(f"{text!r} is not a date", field=field) from exc


def _status(event: JsonObject) -> BookingStatus:
    """The event's status (``confirmed`` when absent)."""
    name = _optional_text(event, "status") or BookingStatus.CONFIRMED.value
    status = _STATUS_BY_NAME.get(name)
    if status is None:
        raise InvalidValue(f"unknown status {name!r}", field="status")
    return status


def _private_tags(event: JsonObject) -> dict[str, str]:
    """The ``extendedProperties.private`` string values."""
    properties = event.get("extendedProperties")
    private = properties.get("private") if isinstance(properties, Mapping) else None
    if not isinstance(private, Mapping):
        return {}
    return {name: value for name, value in private.items() if isinstance(value, str)}


def _buffers(tags: Mapping[str, str]) -> Buffers:
    """Setup/cleanup buffers from the tags (whole seconds)."""
    return Buffers(
        before=_seconds(tags.get(TAG_BUFFER_BEFORE), TAG_BUFFER_BEFORE),
        after=_seconds(tags.get(TAG_BUFFER_AFTER), TAG_BUFFER_AFTER),
    )


def _seconds(value: str | None, name: str) -> timedelta:
    """A non-negative whole number of seconds from a tag."""
    if value is None:
        return timedelta(0)
    if not value.isdigit():
        raise InvalidValue(f"{value!r} is not a number of seconds", field=_tag_field(name))
    return timedelta(seconds=int(value))


def _extra(tags: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The booking's extra fields, from the (possibly split) JSON tag."""
    chunks: list[str] = []
    while (name := TAG_EXTRA + (str(len(chunks)) if chunks else "")) in tags:
        chunks.append(tags[name])
    if not chunks:
        return ()
    try:
        pairs = json.loads("".join(chunks))
    except ValueError as exc:
        raise InvalidValue(
            f"extra fields are not JSON: {exc}", field=_tag_field(TAG_EXTRA)
        ) from exc
    if not isinstance(pairs, list) or not all(
        isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, str) for v in pair)
        for pair in pairs
    ):
        raise InvalidValue("extra fields are not name/value pairs", field=_tag_field(TAG_EXTRA))
    return tuple(sorted((name, value) for name, value in pairs))


def _tag_field(name: str) -> str:
    """The field path of a private tag, for errors."""
    return f"extendedProperties.private.{name}"


def _updated(event: JsonObject) -> datetime | None:
    """The read-only ``updated`` instant."""
    text = _optional_text(event, "updated")
    return _instant(text, ZoneInfo("UTC"), "updated") if text else None


def _organizer(event: JsonObject) -> Person | None:
    """The organizer, when Google names one."""
    organizer = event.get("organizer")
    if not isinstance(organizer, Mapping):
        return None
    person = _person(organizer, "organizer")
    return person if person.email or person.name else None


def _attendees(event: JsonObject) -> tuple[Person, ...]:
    """The human attendees (resource attendees are the room itself)."""
    attendees = event.get("attendees")
    if attendees is None:
        return ()
    if not isinstance(attendees, list):
        raise InvalidValue("attendees is not a list", field="attendees")
    return tuple(
        _person(item, f"attendees[{index}]")
        for index, item in enumerate(attendees)
        if isinstance(item, Mapping) and item.get("resource") is not True
    )


def _resource_attendee(event: JsonObject) -> str | None:
    """The email of the first resource (room) attendee."""
    attendees = event.get("attendees")
    for item in attendees if isinstance(attendees, list) else ():
        if isinstance(item, Mapping) and item.get("resource") is True:
            email = item.get("email")
            if isinstance(email, str) and email:
                return email
    return None


def _person(item: JsonObject, field: str) -> Person:
    """An organizer or attendee."""
    return Person(
        email=_optional_text(item, "email", f"{field}.email"),
        name=_optional_text(item, "displayName", f"{field}.displayName"),
    )


# --------------------------------------------------------------------------- recurrence in


def _recurrence(
    event: JsonObject,
    exceptions: list[JsonObject],
    start: datetime,
    zone: ZoneInfo,
    status: BookingStatus,
    title: str,
    description: str,
) -> Recurrence | None:
    """The master's recurrence lines plus its exceptions as overrides and EXDATEs."""
    lines = event.get("recurrence")
    if lines is None and not exceptions:
        return None
    if lines is not None and not (
        isinstance(lines, list) and all(isinstance(line, str) for line in lines)
    ):
        raise InvalidValue("recurrence is not a list of strings", field="recurrence")
    rrule, rdates, exdates = _recurrence_lines(lines or [], start, zone)
    overrides: list[Override] = []
    for item in exceptions:
        recurrence_id, override = _exception(item, zone, status, title, description)
        if override is None:
            exdates.append(recurrence_id)
        else:
            overrides.append(override)
    recurrence = Recurrence(
        rrule=rrule,
        rdates=tuple(sorted(set(rdates))),
        exdates=tuple(sorted(set(exdates))),
        overrides=tuple(sorted(overrides, key=lambda o: o.recurrence_id)),
    )
    return None if recurrence == Recurrence() else recurrence


def _recurrence_lines(
    lines: list[str], start: datetime, zone: ZoneInfo
) -> tuple[str | None, list[datetime], list[datetime]]:
    """RRULE (UNTIL normalised to UTC), RDATEs and EXDATEs of the ``recurrence`` array."""
    rrule: str | None = None
    rdates: list[datetime] = []
    exdates: list[datetime] = []
    for line in lines:
        name = line.split(":", 1)[0].split(";", 1)[0].strip().upper()
        if name == "RRULE":
            if rrule is not None:
                raise UnsupportedRecurrence("more than one RRULE", field="recurrence")
            rrule = _utc_until(line.split(":", 1)[1].strip(), start, zone)
        elif name in ("RDATE", "EXDATE"):
            # In the series' zone: comparing instants across zones is unreliable in DST folds.
            values = [value.astimezone(zone) for value in _date_values(line, start, zone)]
            (rdates if name == "RDATE" else exdates).extend(values)
        elif name == "EXRULE":
            raise UnsupportedRecurrence("EXRULE is not supported", field="recurrence")
        else:
            raise InvalidValue(f"unexpected recurrence line {line!r}", field="recurrence")
    return rrule, rdates, exdates


def _utc_until(rule: str, start: datetime, zone: ZoneInfo) -> str:
    """The rule with a local or DATE ``UNTIL`` rewritten as a UTC instant (the model's form)."""
    parts = rule_parts(rule)
    until = parts.get("UNTIL")
    if until is None or until.endswith("Z"):
        compile_rule(rule, start, zone)  # refuses malformed and unbounded rules early
        return rule
    try:
        if "T" in until:
            local = datetime.strptime(until, "%Y%m%dT%H%M%S")
        else:  # a DATE UNTIL includes that whole day
            local = datetime.combine(datetime.strptime(until, "%Y%m%d"), time(23, 59, 59))
    except ValueError as exc:
        raise InvalidValue(f"malformed UNTIL {until!r}", field="recurrence") from exc
    parts["UNTIL"] = f"{local.replace(tzinfo=zone).astimezone(UTC):%Y%m%dT%H%M%SZ}"
    normalised = join_rule(parts)
    compile_rule(normalised, start, zone)
    return normalised


def _date_values(line: str, start: datetime, zone: ZoneInfo) -> list[datetime]:
    """The instants of an RDATE/EXDATE line (TZID, UTC, floating or DATE values)."""
    head, sep, body = line.partition(":")
    if not sep or not body.strip():
        raise InvalidValue(f"malformed recurrence line {line!r}", field="recurrence")
    params = _line_parameters(head)
    if params.get("VALUE") == "PERIOD":
        raise UnsupportedRecurrence("RDATE periods are not supported", field="recurrence")
    if "TZID" in params:
        zone = ZoneInfo(resolve_zone(params["TZID"], field="recurrence"))
    local_start = start.astimezone(zone).time()
    return [_date_value(value.strip(), zone, local_start) for value in body.split(",")]


def _line_parameters(head: str) -> dict[str, str]:
    """``NAME;P1=V1;P2=V2`` parameters, names upper-cased."""
    params: dict[str, str] = {}
    for chunk in head.split(";")[1:]:
        name, _, value = chunk.partition("=")
        params[name.strip().upper()] = value.strip().strip('"')
    return params


def _date_value(value: str, zone: ZoneInfo, local_start: time) -> datetime:
    """One RDATE/EXDATE value; a DATE means that day at the series' local start time."""
    try:
        if value.endswith("Z"):
            return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        if "T" in value:
            return datetime.strptime(value, "%Y%m%dT%H%M%S").replace(tzinfo=zone)
        day = datetime.strptime(value, "%Y%m%d").date()
    except ValueError as exc:
        raise InvalidValue(f"malformed date {value!r}", field="recurrence") from exc
    return datetime.combine(day, local_start, zone)


def _exception(
    item: JsonObject,
    zone: ZoneInfo,
    status: BookingStatus,
    title: str,
    description: str,
) -> tuple[datetime, Override | None]:
    """An exception's original instant and its override (None: the instance is cancelled).

    Fields equal to the master's are left to inherit.
    """
    label = _label(item)
    try:
        recurrence_id = _event_time(item, "originalStartTime", zone)
        own_status = _status(item)
        if own_status is BookingStatus.CANCELLED:
            return recurrence_id, None
        start = _event_time(item, "start", zone)
        end = _event_time(item, "end", zone)
        if end <= start:
            raise InvalidValue("end is not after start", field="end")
        summary = _optional_text(item, "summary") or ""
        details = _optional_text(item, "description") or ""
    except MappingError as exc:
        raise type(exc)(exc.reason, booking=label, field=exc.field) from exc
    return recurrence_id, Override(
        recurrence_id=recurrence_id,
        start=start,
        end=end,
        status=None if own_status is status else own_status,
        title=None if summary == title else summary,
        description=None if details == description else details,
        version=_optional_text(item, "etag"),
    )


# --------------------------------------------------------------------------- writing


def to_json(booking: Booking) -> dict[str, object]:
    """The Event body the Google backend inserts for a booking (its master, if recurring)."""
    zone = booking.zone
    all_day = _is_all_day(booking.start, booking.end, zone)
    body: dict[str, object] = {
        "id": event_id_for(booking.booking_key),
        "summary": booking.title,
        "description": booking.description,
        "start": _event_datetime(booking.start, booking.timezone, all_day),
        "end": _event_datetime(booking.end, booking.timezone, all_day),
        "status": booking.status.value,
        # A tentative booking still holds the room, so every event blocks time.
        "transparency": "opaque",
        "visibility": "private" if booking.private else "default",
        "extendedProperties": {"private": _tags(booking)},
    }
    if booking.recurrence is not None and booking.is_recurring:
        body["recurrence"] = recurrence_lines(booking)
    if booking.organizer is not None:
        body["organizer"] = _person_json(booking.organizer)
    attendees = [_person_json(person) for person in booking.attendees if person.email]
    if attendees:
        body["attendees"] = attendees
    return body


def instance_bodies(booking: Booking) -> list[dict[str, object]]:
    """One body per live override: the instance exceptions to write after the master."""
    recurrence = booking.recurrence
    if recurrence is None or not booking.is_recurring or not booking.status.is_live:
        return []
    master_id = event_id_for(booking.booking_key)
    excluded = {instant.astimezone(UTC) for instant in recurrence.exdates}
    return [
        _instance_body(booking, override, master_id)
        for override in recurrence.overrides
        if (override.status is None or override.status.is_live)
        and override.recurrence_id.astimezone(UTC) not in excluded
    ]


def _instance_body(booking: Booking, override: Override, master_id: str) -> dict[str, object]:
    """The full body of one instance exception."""
    zone = booking.zone
    rid_all_day = _is_all_day(booking.start, booking.end, zone)
    all_day = _is_all_day(override.start, override.end, zone)
    status = override.status or booking.status
    return {
        "id": instance_id(master_id, override.recurrence_id.astimezone(zone), all_day=rid_all_day),
        "recurringEventId": master_id,
        "originalStartTime": _event_datetime(override.recurrence_id, booking.timezone, rid_all_day),
        "summary": booking.title if override.title is None else override.title,
        "description": (
            booking.description if override.description is None else override.description
        ),
        "start": _event_datetime(override.start, booking.timezone, all_day),
        "end": _event_datetime(override.end, booking.timezone, all_day),
        "status": status.value,
        "transparency": "opaque",
        "visibility": "private" if booking.private else "default",
        "extendedProperties": {"private": _tags(booking)},
    }


def recurrence_lines(booking: Booking) -> list[str]:
    """The ``recurrence`` array: RRULE, then RDATE and EXDATE lines in the room's zone."""
    recurrence = booking.recurrence
    if recurrence is None:
        return []
    zone = booking.zone
    all_day = _is_all_day(booking.start, booking.end, zone)
    lines: list[str] = []
    if recurrence.rrule:
        lines.append("RRULE:" + _rule_for_google(recurrence.rrule, zone, all_day))
    excluded = {instant.astimezone(UTC) for instant in recurrence.exdates}
    cancelled = [
        o.recurrence_id
        for o in recurrence.overrides
        if o.status is BookingStatus.CANCELLED and o.recurrence_id.astimezone(UTC) not in excluded
    ]
    rdates = [*recurrence.rdates, *_orphan_override_ids(booking)]
    lines += _date_lines("RDATE", rdates, booking.timezone, all_day)
    lines += _date_lines("EXDATE", [*recurrence.exdates, *cancelled], booking.timezone, all_day)
    return lines


def _rule_for_google(rule: str, zone: ZoneInfo, all_day: bool) -> str:
    """The rule as Google stores it; an all-day series takes a DATE ``UNTIL`` (RFC 5545)."""
    text = rule[6:] if rule.upper().startswith("RRULE:") else rule
    parts = rule_parts(text)
    until = parts.get("UNTIL", "")
    if not (all_day and until.endswith("Z")):
        return text
    instant = datetime.strptime(until, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    parts["UNTIL"] = f"{instant.astimezone(zone):%Y%m%d}"
    return join_rule(parts)


def _orphan_override_ids(booking: Booking) -> list[datetime]:
    """Recurrence ids of live overrides the rule does not produce.

    Google can only modify an instance that exists, so such an override's original instant is
    added as an RDATE for the exception to stand on.
    """
    recurrence = booking.recurrence
    if recurrence is None:
        return []
    zone = booking.zone
    known = {
        instant.astimezone(UTC)
        for instant in (booking.start, *recurrence.rdates, *recurrence.exdates)
    }
    rule = compile_rule(recurrence.rrule, booking.start, zone) if recurrence.rrule else None
    orphans: list[datetime] = []
    for override in recurrence.overrides:
        rid = override.recurrence_id
        if override.status is BookingStatus.CANCELLED or rid.astimezone(UTC) in known:
            continue
        local = rid.astimezone(zone)
        produced = rule is not None and local.replace(tzinfo=None) in rule
        if not (produced and _is_wall_time(local, zone)):
            orphans.append(rid)
    return orphans


def _date_lines(
    name: str, instants: Iterable[datetime], zone_name: str, all_day: bool
) -> list[str]:
    """RDATE/EXDATE lines: DATE values for all-day series, TZID wall times, else UTC."""
    zone = ZoneInfo(zone_name)
    dates: set[str] = set()
    local: set[str] = set()
    utc: set[str] = set()
    for instant in instants:
        wall = instant.astimezone(zone)
        if all_day and wall.time() == time(0) and _is_wall_time(wall, zone):
            dates.add(f"{wall:%Y%m%d}")
        elif _is_utc(zone_name) or not _is_wall_time(wall, zone):
            utc.add(f"{instant.astimezone(UTC):%Y%m%dT%H%M%SZ}")
        else:
            local.add(f"{wall:%Y%m%dT%H%M%S}")
    lines: list[str] = []
    if dates:
        lines.append(f"{name};VALUE=DATE:{','.join(sorted(dates))}")
    if local:
        lines.append(f"{name};TZID={zone_name}:{','.join(sorted(local))}")
    if utc:
        lines.append(f"{name}:{','.join(sorted(utc))}")
    return lines


def _is_utc(zone_name: str) -> bool:
    """Whether the zone is UTC itself (its instants are written with ``Z``)."""
    return zone_name in ("UTC", "Etc/UTC", "Etc/GMT", "GMT", "Etc/Zulu", "Zulu")


def _is_wall_time(local: datetime, zone: ZoneInfo) -> bool:
    """Whether the wall-clock time names exactly this instant (not in a DST fold or gap)."""
    naive = local.replace(tzinfo=None)
    # Offsets, not datetimes, are compared: same-zone datetime equality ignores ``fold``.
    earlier = naive.replace(tzinfo=zone, fold=0).utcoffset()
    later = naive.replace(tzinfo=zone, fold=1).utcoffset()
    return earlier == later == local.utcoffset()


def _is_all_day(start: datetime, end: datetime, zone: ZoneInfo) -> bool:
    """Whether an occurrence spans whole local days (written as a Google all-day event)."""
    local_start, local_end = start.astimezone(zone), end.astimezone(zone)
    return (
        local_start.time() == time(0)
        and local_end.time() == time(0)
        and _is_wall_time(local_start, zone)
        and _is_wall_time(local_end, zone)
        and local_end.date() > local_start.date()
    )


def _event_datetime(instant: datetime, zone_name: str, all_day: bool) -> dict[str, str]:
    """An EventDateTime: the date for all-day events, else the offset time plus the zone."""
    local = instant.astimezone(ZoneInfo(zone_name))
    if all_day:
        return {"date": local.date().isoformat()}
    return {"dateTime": local.isoformat(), "timeZone": zone_name}


def _tags(booking: Booking) -> dict[str, str]:
    """The private extended properties that restore the booking on the way back."""
    tags = {
        TAG_PROVIDER: booking.provider,
        TAG_KEY: booking.key,
        TAG_RESOURCE: booking.resource,
        TAG_TIMEZONE: booking.timezone,
        TAG_BUFFER_BEFORE: str(_whole_seconds(booking.buffers.before, TAG_BUFFER_BEFORE)),
        TAG_BUFFER_AFTER: str(_whole_seconds(booking.buffers.after, TAG_BUFFER_AFTER)),
    }
    if booking.version is not None:
        tags[TAG_VERSION] = booking.version
    if booking.extra:
        text = json.dumps([list(pair) for pair in booking.extra], ensure_ascii=False)
        for index in range(0, len(text), MAX_TAG_VALUE):
            chunk = index // MAX_TAG_VALUE
            tags[TAG_EXTRA + (str(chunk) if chunk else "")] = text[index : index + MAX_TAG_VALUE]
    for name, value in tags.items():
        if len(value) > MAX_TAG_VALUE:
            raise InvalidValue(
                f"{len(value)} characters: Google keeps {MAX_TAG_VALUE}",
                booking=str(booking.booking_key),
                field=_tag_field(name),
            )
    return tags


def _whole_seconds(span: timedelta, name: str) -> int:
    """A buffer as whole non-negative seconds."""
    seconds = span.total_seconds()
    if seconds < 0 or seconds != int(seconds):
        raise InvalidValue(f"buffer {span} is not whole non-negative seconds", field=name)
    return int(seconds)


def _person_json(person: Person) -> dict[str, str]:
    """An organizer/attendee object (Google has no phone numbers)."""
    body: dict[str, str] = {}
    if person.email:
        body["email"] = person.email
    if person.name:
        body["displayName"] = person.name
    return body


# --------------------------------------------------------------------------- JSON fields


def _optional_text(obj: JsonObject, name: str, field: str | None = None) -> str | None:
    """A string field, or None when absent or null."""
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidValue(f"{name} is not a string", field=field or name)
    return value


def _required_text(obj: JsonObject, name: str, field: str | None = None) -> str:
    """A non-empty string field."""
    value = _optional_text(obj, name, field)
    if not value:
        raise MissingField(f"{name} is missing", field=field or name)
    return value
