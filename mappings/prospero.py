"""Prospero Bookings (with their Events) ⇄ canonical bookings.

A Prospero Booking is an approval workflow: ``bookingStatus`` 0 PENDING (→ tentative, it still
blocks the room), 1 APPROVED (→ confirmed), 2 DENIED and 3 CANCELED (→ cancelled, not live).
Approving creates a linked Event; that Event's times are the calendar times, so when the
linked Event is known (``associatedEvents`` of a list response joined by ``eventId``, or the
``event`` of a ``{booking, event}`` response) it wins over the booking's own ``event`` form
answers: an admin may have moved it. All Prospero datetimes are UTC and must end in ``Z``
(Prospero rejects anything else, so such input is refused rather than guessed at).

Multi-event bookings (``events``) become **one** canonical booking keyed by the booking id:
the earliest event is DTSTART/DTEND, every other event an RDATE, and an event whose duration
or title differs from the first gets an override. We chose this over one booking per event
(``<bookingId>:<eventId>``) because the identity then stays stable when an admin changes one
event's length: calendars see an update of one occurrence, not a delete and a re-create.

The Booking's resource is its ``bookingModuleId`` (a module books one space); the room's zone
is the ``timezone`` parameter, else ``UTC`` (Prospero keeps zones apart from the times).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bridge.model import Booking, BookingStatus, Override, Person, Recurrence
from mappings.errors import (
    InvalidValue,
    MalformedInput,
    MissingField,
    UnknownTimezone,
    UnsupportedRecurrence,
)

KIND = "prospero"

#: Zone used when the caller names none: the UTC instants are kept exactly.
FALLBACK_ZONE = "UTC"

#: Id fields of a Booking kept for the way back (submit body).
EXTRA_ID_FIELDS = ("orgId", "portalId", "customerId", "contactId")

JsonObject = Mapping[str, object]


class BookingState(IntEnum):
    """Prospero's ``bookingStatus`` enum."""

    PENDING = 0
    APPROVED = 1
    DENIED = 2
    CANCELED = 3


class EventProcedure(IntEnum):
    """What cancelling a Booking does to its Event (``eventProcedure``)."""

    CANCEL = 0
    DELETE = 1


STATUS_OF_STATE = {
    BookingState.PENDING: BookingStatus.TENTATIVE,
    BookingState.APPROVED: BookingStatus.CONFIRMED,
    BookingState.DENIED: BookingStatus.CANCELLED,
    BookingState.CANCELED: BookingStatus.CANCELLED,
}

STATE_OF_STATUS = {
    BookingStatus.TENTATIVE: BookingState.PENDING,
    BookingStatus.CONFIRMED: BookingState.APPROVED,
    BookingStatus.CANCELLED: BookingState.CANCELED,
}


# --------------------------------------------------------------------------- reading


def from_json(data: object, *, provider: str = KIND, timezone: str | None = None) -> list[Booking]:
    """Canonical bookings from one Booking, a ``{booking, event}`` response or a list response."""
    zone_name = _zone_name(timezone)
    if not isinstance(data, Mapping):
        raise MalformedInput("expected a Prospero Booking object or a list response")
    listed = data.get("bookings")
    if listed is not None:
        return _listed_bookings(listed, data.get("associatedEvents"), provider, zone_name)
    wrapped = data.get("booking")
    if isinstance(wrapped, Mapping):
        event = data.get("event")
        if isinstance(event, Mapping) and "events" not in wrapped:
            # The response's Event is the real calendar object; it replaces the form answers.
            wrapped = {**wrapped, "event": event}
        return [_booking(wrapped, None, {}, provider, zone_name)]
    return [_booking(data, None, {}, provider, zone_name)]


def _zone_name(value: str | None) -> str:
    """The room's IANA zone, checked."""
    name = value or FALLBACK_ZONE
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise UnknownTimezone(f"unknown time zone {name!r}", field="timezone") from exc
    return name


def _listed_bookings(
    listed: object, associated: object, provider: str, zone_name: str
) -> list[Booking]:
    """The bookings of a list response, each joined with its Event(s)."""
    if not isinstance(listed, Mapping):
        raise MalformedInput("bookings must map booking ids to Bookings", field="bookings")
    if associated is None:
        associated = []
    if not isinstance(associated, list):
        raise MalformedInput("associatedEvents must be a list", field="associatedEvents")
    linked = _events_by_id(associated)
    bookings = []
    for map_key, raw in listed.items():
        if not isinstance(raw, Mapping):
            raise MalformedInput(
                "expected a Booking object", booking=str(map_key), field="bookings"
            )
        bookings.append(_booking(raw, str(map_key), linked, provider, zone_name))
    return bookings


def _events_by_id(events: list[object]) -> dict[str, JsonObject]:
    """Linked Events by their ``id``."""
    found: dict[str, JsonObject] = {}
    for index, event in enumerate(events):
        if not isinstance(event, Mapping):
            raise MalformedInput("expected an Event object", field=f"associatedEvents[{index}]")
        ident = event.get("id")
        if isinstance(ident, str) and ident:
            found[ident] = event
    return found


def _booking(
    raw: JsonObject,
    map_key: str | None,
    linked: Mapping[str, JsonObject],
    provider: str,
    zone_name: str,
) -> Booking:
    """One canonical booking from one Prospero Booking and the Events it links to."""
    key = _booking_id(raw, map_key)
    zone = ZoneInfo(zone_name)
    events = [_event(source, field, key) for source, field in _event_sources(raw, linked, key)]
    events.sort(key=lambda event: event.start)
    first = events[0]
    return Booking(
        provider=provider,
        key=key,
        resource=_required_text(raw, "bookingModuleId", key),
        start=first.start.astimezone(zone),
        end=first.end.astimezone(zone),
        timezone=zone_name,
        status=STATUS_OF_STATE[_state(raw.get("bookingStatus"), key)],
        title=first.title,
        description=first.description,
        organizer=_contact(raw.get("contact")),
        recurrence=_recurrence(events, zone, key),
        version=_optional_text(raw, "lastUpdated", key),
        updated=_optional_instant(raw, "lastUpdated", key),
        extra=_extra(raw, key, event_id=first.event_id if len(events) == 1 else None),
    )


def _booking_id(raw: JsonObject, map_key: str | None) -> str:
    """The Booking's ``id``, which must agree with its key in a list response."""
    ident = raw.get("id", map_key)
    if ident is None:
        raise MissingField("Booking has no id", field="id")
    if not isinstance(ident, str) or not ident:
        raise InvalidValue("id must be a non-empty string", field="id")
    if map_key is not None and ident != map_key:
        raise InvalidValue(
            f"listed under {map_key!r} but its id is {ident!r}", booking=map_key, field="id"
        )
    return ident


def _state(value: object, key: str) -> BookingState:
    """``bookingStatus`` as its enum, from the number or the name."""
    if value is None:
        raise MissingField("bookingStatus is missing", booking=key, field="bookingStatus")
    try:
        if isinstance(value, str):
            return BookingState[value.strip().upper()]
        if isinstance(value, int) and not isinstance(value, bool):
            return BookingState(value)
    except (KeyError, ValueError):
        pass
    raise InvalidValue(f"unknown bookingStatus {value!r}", booking=key, field="bookingStatus")


def _event_sources(
    raw: JsonObject, linked: Mapping[str, JsonObject], key: str
) -> list[tuple[JsonObject, str]]:
    """Each event's data with the field name to blame: the linked Event when known."""
    many = raw.get("events")
    if many is not None:
        if not isinstance(many, list) or not many:
            raise InvalidValue("events must be a non-empty list", booking=key, field="events")
        sources = []
        for index, item in enumerate(many):
            if not isinstance(item, Mapping):
                raise InvalidValue(
                    "expected an event object", booking=key, field=f"events[{index}]"
                )
            sources.append(_linked_or_own(item, linked, f"events[{index}]"))
        return sources
    own = raw.get("event")
    event_id = raw.get("eventId")
    if isinstance(event_id, str) and event_id in linked:
        return [(linked[event_id], "event")]
    if isinstance(own, Mapping):
        return [_linked_or_own(own, linked, "event")]
    raise MissingField("Booking has no event times", booking=key, field="event")


def _linked_or_own(
    item: JsonObject, linked: Mapping[str, JsonObject], field: str
) -> tuple[JsonObject, str]:
    """The linked Event an event item names (``eventId``/``id``), else the item itself."""
    for name in ("eventId", "id"):
        ident = item.get(name)
        if isinstance(ident, str) and ident in linked:
            return linked[ident], field
    return item, field


@dataclass(frozen=True, slots=True)
class EventTimes:
    """What the bridge reads from one Prospero Event."""

    start: datetime
    end: datetime
    title: str
    description: str
    event_id: str | None


def _event(source: JsonObject, field: str, key: str) -> EventTimes:
    """One event's times and title, validated (UTC ``Z`` only, end after start)."""
    start = _utc_instant(source.get("start"), key, f"{field}.start")
    end = _utc_instant(source.get("end"), key, f"{field}.end")
    if end <= start:
        raise InvalidValue("end is not after start", booking=key, field=f"{field}.end")
    ident = source.get("eventId", source.get("id"))
    return EventTimes(
        start=start,
        end=end,
        title=_optional_text(source, "title", key, field) or "",
        description=_optional_text(source, "description", key, field) or "",
        event_id=ident if isinstance(ident, str) and ident else None,
    )


def _utc_instant(value: object, key: str, field: str) -> datetime:
    """A Prospero datetime: ISO 8601 in UTC, written with a trailing ``Z``."""
    if value is None:
        raise MissingField("date-time is missing", booking=key, field=field)
    if not isinstance(value, str):
        raise InvalidValue("expected an ISO 8601 UTC string", booking=key, field=field)
    if not value.endswith("Z"):
        raise InvalidValue(
            f"{value!r} is not UTC; Prospero takes only ...Z times", booking=key, field=field
        )
    try:
        return datetime.fromisoformat(value).astimezone(UTC)
    except ValueError as exc:
        raise InvalidValue(f"malformed date-time {value!r}", booking=key, field=field) from exc


def _optional_text(source: JsonObject, name: str, key: str, prefix: str = "") -> str | None:
    """A string field that may be absent or null."""
    value = source.get(name)
    if value is None or isinstance(value, str):
        return value
    field = f"{prefix}.{name}" if prefix else name
    raise InvalidValue("expected a string", booking=key, field=field)


def _required_text(source: JsonObject, name: str, key: str) -> str:
    """A non-empty string field."""
    value = _optional_text(source, name, key)
    if not value:
        raise MissingField(f"{name} is missing", booking=key, field=name)
    return value


def _optional_instant(source: JsonObject, name: str, key: str) -> datetime | None:
    """A timestamp field that may be absent."""
    value = source.get(name)
    return None if value is None else _utc_instant(value, key, name)


def _contact(value: object) -> Person | None:
    """The booker from the contact form answers, when they hold a name, email or phone."""
    if not isinstance(value, Mapping):
        return None

    def text(name: str) -> str | None:
        item = value.get(name)
        return item.strip() or None if isinstance(item, str) else None

    full_name = " ".join(part for part in (text("firstName"), text("lastName")) if part)
    person = Person(
        email=text("email"), name=text("name") or full_name or None, phone=text("phone")
    )
    return person if person.email or person.name or person.phone else None


def _recurrence(events: list[EventTimes], zone: ZoneInfo, key: str) -> Recurrence | None:
    """RDATEs (and overrides) for the events after the first; ``None`` for a single event."""
    first, rest = events[0], events[1:]
    if not rest:
        return None
    # Expanders keep an RDATE's length on the room's wall clock (RFC 5545), so an event that
    # spans a DST change differently from the first one needs an override.
    length = first.end.astimezone(zone) - first.start.astimezone(zone)
    starts = [event.start for event in events]
    if len(set(starts)) != len(starts):
        raise InvalidValue("two events start at the same time", booking=key, field="events")
    overrides = tuple(
        Override(
            recurrence_id=event.start.astimezone(zone),
            start=event.start.astimezone(zone),
            end=event.end.astimezone(zone),
            title=event.title if event.title != first.title else None,
            description=event.description if event.description != first.description else None,
        )
        for event in rest
        if event.end != event.start.astimezone(zone) + length
        or event.title != first.title
        or event.description != first.description
    )
    return Recurrence(
        rdates=tuple(event.start.astimezone(zone) for event in rest), overrides=overrides
    )


def _extra(raw: JsonObject, key: str, *, event_id: str | None) -> tuple[tuple[str, str], ...]:
    """Booking ids with no canonical home, kept for the submit body."""
    pairs = {name: _optional_text(raw, name, key) for name in EXTRA_ID_FIELDS}
    pairs["eventId"] = _optional_text(raw, "eventId", key) or event_id
    return tuple(sorted((name, value) for name, value in pairs.items() if value))


# --------------------------------------------------------------------------- writing


def _utc_text(moment: datetime) -> str:
    """An instant the way Prospero takes it: ``YYYY-MM-DDThh:mm:ssZ``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _event_bodies(booking: Booking) -> list[dict[str, object]]:
    """One ``{title, start, end}`` per live event of the booking, earliest first."""
    recurrence = booking.recurrence
    if recurrence is not None and recurrence.rrule:
        raise UnsupportedRecurrence(
            "Prospero has no recurrence rules; expand the occurrences into events",
            booking=booking.key,
            field="recurrence",
        )
    first = (booking.start, booking.end, booking.title, booking.description)
    slots = {booking.start.astimezone(UTC): first}
    if recurrence is not None:
        for rdate in recurrence.rdates:
            slots[rdate.astimezone(UTC)] = (
                rdate,
                rdate.astimezone(booking.zone) + booking.duration,
                booking.title,
                booking.description,
            )
        for override in recurrence.overrides:
            if override.status is BookingStatus.CANCELLED:
                slots.pop(override.recurrence_id.astimezone(UTC), None)
                continue
            slots[override.recurrence_id.astimezone(UTC)] = (
                override.start,
                override.end,
                booking.title if override.title is None else override.title,
                booking.description if override.description is None else override.description,
            )
        for exdate in recurrence.exdates:
            slots.pop(exdate.astimezone(UTC), None)
    if not slots:
        raise InvalidValue("every occurrence is excluded", booking=booking.key, field="recurrence")
    bodies = []
    for start, end, title, description in sorted(slots.values(), key=lambda slot: slot[0]):
        body: dict[str, object] = {"title": title, "start": _utc_text(start), "end": _utc_text(end)}
        if description:
            body["description"] = description
        bodies.append(body)
    return bodies


def to_json(booking: Booking) -> dict[str, object]:
    """An admin create / submit body: ``submission``, ids from ``extra``, and the event(s)."""
    body: dict[str, object] = {
        "submission": False,
        "bookingStatus": int(STATE_OF_STATUS[booking.status]),
        "bookingModuleId": booking.resource,
    }
    for name in (*EXTRA_ID_FIELDS, "eventId"):
        value = booking.extra_value(name)
        if value:
            body[name] = value
    organizer = booking.organizer
    if organizer is not None:
        contact = {"email": organizer.email, "name": organizer.name, "phone": organizer.phone}
        body["contact"] = {name: value for name, value in contact.items() if value}
    events = _event_bodies(booking)
    if len(events) == 1:
        body["event"] = events[0]
    else:
        body.pop("eventId", None)
        body["events"] = events
    return body


def cancel_body(
    procedure: EventProcedure | str = EventProcedure.CANCEL,
    notification: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """The Cancel Booking body: what happens to the Event, and the notification object.

    The notification object's shape is undocumented, so it is passed through as given.
    """
    if isinstance(procedure, str):
        try:
            procedure = EventProcedure[procedure.strip().upper()]
        except KeyError as exc:
            raise InvalidValue(
                f"unknown event procedure {procedure!r}", field="eventProcedure"
            ) from exc
    return {"eventProcedure": int(procedure), "notification": dict(notification or {})}
