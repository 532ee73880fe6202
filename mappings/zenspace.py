"""ZenSpace pod bookings: occurrences ⇄ ``POST /booking_operation`` bodies (surface A).

One call creates, updates (same ``id``) or cancels (``is_active: false``) a pod booking. The
caller chooses ``id``, so it is derived from the booking so that retries and updates hit the
same pod booking: a UUIDv5 under :data:`ZENSPACE_NAMESPACE` of the name
``"<provider>/<booking key>@<occurrence start as UTC ISO 8601, Z>"``. The occurrence start
used is the rule instant (``recurrence_id``) when there is one, so moving one occurrence of a
series updates its pod booking instead of creating a second one.

Times are written on the pod's wall clock with its numeric offset
(``2024-12-08T03:16:00-08:00``), as in every published example; the start is widened by the
setup buffer so the pod is armed for the setup time. ``external_id`` is the booking's
``provider/key`` identity. ``unlock_key`` is a door code: it must be digits, and it never
appears in an error message.

Reading a body back (``from_json``): the key is ``external_id`` (minus a leading
``"<provider>/"`` of the same provider) or else ``id``; the zone is the ``timezone``
parameter, else ``UTC`` because a bare offset names no zone (the instants stay exact).
``is_active: false`` is a cancelled booking. The title is not a ZenSpace field.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from uuid import UUID, uuid5
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bridge.model import Booking, BookingKey, BookingStatus, Occurrence, Person
from mappings.errors import (
    InvalidValue,
    MalformedInput,
    MissingField,
    UnknownTimezone,
    UnsupportedRecurrence,
)

KIND = "zenspace"

#: ``uuid5(NAMESPACE_URL, "https://github.com/roombridge/roombridge#zenspace-booking")``;
#: fixed forever: changing it would orphan every pod booking already made.
ZENSPACE_NAMESPACE = UUID("f03f5aa7-1021-5a9f-8300-d4aee46378bd")

#: Zone of a body read back without a caller-given zone: an offset alone names no zone.
FALLBACK_ZONE = "UTC"

JsonObject = Mapping[str, object]


# --------------------------------------------------------------------------- identity


def _utc_iso(moment: datetime) -> str:
    """An aware instant as UTC ISO 8601 with ``Z``."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def occurrence_booking_id(key: BookingKey, occurrence_start: datetime) -> str:
    """The pod booking ``id`` of one occurrence: UUIDv5 of booking key and occurrence start."""
    if occurrence_start.tzinfo is None:
        raise InvalidValue(
            "occurrence start must be timezone-aware", booking=str(key), field="start"
        )
    return str(uuid5(ZENSPACE_NAMESPACE, f"{key}@{_utc_iso(occurrence_start)}"))


# --------------------------------------------------------------------------- writing


def _zone(name: str, booking: str | None, field: str) -> ZoneInfo:
    """An IANA zone by name, or :class:`UnknownTimezone` naming the field."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise UnknownTimezone(f"unknown time zone {name!r}", booking=booking, field=field) from exc


def _pod_time(moment: datetime, zone: ZoneInfo) -> str:
    """An instant on the pod's wall clock with its numeric offset."""
    return moment.astimezone(zone).isoformat(timespec="seconds")


def _check_unlock_key(value: object, booking: str | None) -> str:
    """A door code: a non-empty string of ASCII digits (never echoed in errors)."""
    if not isinstance(value, str) or not (value.isascii() and value.isdigit()):
        raise InvalidValue(
            "unlock_key must be a string of digits", booking=booking, field="unlock_key"
        )
    return value


def _person_fields(person: Person | None) -> tuple[str, str, str]:
    """Email, name and phone of a person, empty where unknown."""
    if person is None:
        return "", "", ""
    return person.email or "", person.name or "", person.phone or ""


def occurrence_to_operation(
    occurrence: Occurrence,
    booking: Booking,
    *,
    meeting_space_id: str,
    unlock_key: str,
    pod_zone: str,
    is_active: bool = True,
) -> dict[str, object]:
    """The ``/booking_operation`` body that books (or, inactive, cancels) one occurrence.

    A cancelled occurrence is always written inactive.
    """
    body = _operation(occurrence, booking, meeting_space_id, pod_zone, is_active)
    body["unlock_key"] = _check_unlock_key(unlock_key, booking.key)
    return body


def _operation(
    occurrence: Occurrence,
    booking: Booking,
    meeting_space_id: str,
    pod_zone: str,
    is_active: bool,
) -> dict[str, object]:
    """Everything of an operation body except the door code."""
    if not meeting_space_id:
        raise MissingField(
            "meeting_space_id is required", booking=booking.key, field="meeting_space_id"
        )
    zone = _zone(pod_zone, booking.key, "pod_zone")
    email, name, phone = _person_fields(booking.organizer)
    return {
        "id": occurrence_booking_id(
            occurrence.booking, occurrence.recurrence_id or occurrence.start
        ),
        "external_id": str(occurrence.booking),
        "meeting_space_id": meeting_space_id,
        # Real elapsed setup time: aware arithmetic in one zone would use the wall clock.
        "start_datetime": _pod_time(
            occurrence.start.astimezone(UTC) - occurrence.buffers.before, zone
        ),
        "end_datetime": _pod_time(occurrence.end, zone),
        "is_active": is_active and occurrence.status.is_live,
        "attendees": [
            dict(zip(("email", "name", "phone"), _person_fields(person), strict=True))
            for person in booking.attendees
        ],
        "created_by_email": email,
        "created_by_name": name,
        "created_by_phone_no": phone,
    }


def to_json(
    booking: Booking,
    *,
    unlock_key: str | None = None,
    meeting_space_id: str | None = None,
    pod_zone: str | None = None,
) -> dict[str, object]:
    """The operation body of a non-recurring booking (pod = ``booking.resource`` by default).

    Without ``unlock_key`` the body carries none (ZenSpace's requirement is undocumented);
    without ``pod_zone`` the times are written in the booking's zone.
    """
    if booking.is_recurring:
        raise UnsupportedRecurrence(
            "a pod booking is one occurrence; use occurrence_to_operation per occurrence",
            booking=booking.key,
            field="recurrence",
        )
    occurrence = Occurrence(
        booking.booking_key, booking.start, booking.end, booking.status, None, booking.buffers
    )
    body = _operation(
        occurrence,
        booking,
        meeting_space_id or booking.resource,
        pod_zone or booking.timezone,
        True,
    )
    if unlock_key is not None:
        body["unlock_key"] = _check_unlock_key(unlock_key, booking.key)
    return body


# --------------------------------------------------------------------------- reading


def from_json(data: object, *, provider: str = KIND, timezone: str | None = None) -> list[Booking]:
    """The one booking a ``/booking_operation`` body describes."""
    if not isinstance(data, Mapping):
        raise MalformedInput("expected a booking_operation object")
    key = _key(data, provider)
    zone_name = timezone or FALLBACK_ZONE
    zone = _zone(zone_name, key, "timezone")
    start = _offset_instant(data, "start_datetime", key)
    end = _offset_instant(data, "end_datetime", key)
    if end <= start:
        raise InvalidValue(
            "end_datetime is not after start_datetime", booking=key, field="end_datetime"
        )
    if data.get("unlock_key") is not None:
        _check_unlock_key(data["unlock_key"], key)
    return [
        Booking(
            provider=provider,
            key=key,
            resource=_text(data, "meeting_space_id", key, required=True),
            start=start.astimezone(zone),
            end=end.astimezone(zone),
            timezone=zone_name,
            status=_status(data.get("is_active"), key),
            organizer=_person(
                _text(data, "created_by_email", key),
                _text(data, "created_by_name", key),
                _text(data, "created_by_phone_no", key),
            ),
            attendees=_attendees(data.get("attendees"), key),
        )
    ]


def _key(data: JsonObject, provider: str) -> str:
    """The booking key: ``external_id`` (without this provider's prefix), else ``id``."""
    external = data.get("external_id")
    ident = data.get("id")
    for name, value in (("external_id", external), ("id", ident)):
        if value is not None and not isinstance(value, str):
            raise InvalidValue(f"{name} must be a string", field=name)
    chosen = external or ident
    if not isinstance(chosen, str) or not chosen:
        raise MissingField("neither external_id nor id is present", field="id")
    prefix = f"{provider}/"
    return chosen[len(prefix) :] if chosen.startswith(prefix) and chosen != prefix else chosen


def _text(
    data: JsonObject, name: str, key: str, *, required: bool = False, prefix: str = ""
) -> str:
    """A string field (empty when absent unless required)."""
    value = data.get(name)
    if value is None or value == "":
        if required:
            raise MissingField(f"{name} is required", booking=key, field=f"{prefix}{name}")
        return ""
    if not isinstance(value, str):
        raise InvalidValue("expected a string", booking=key, field=f"{prefix}{name}")
    return value


def _offset_instant(data: JsonObject, name: str, key: str) -> datetime:
    """An ISO 8601 date-time that must carry its UTC offset."""
    value = data.get(name)
    if value is None:
        raise MissingField(f"{name} is required", booking=key, field=name)
    if not isinstance(value, str):
        raise InvalidValue("expected an ISO 8601 string", booking=key, field=name)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidValue(f"malformed date-time {value!r}", booking=key, field=name) from exc
    if moment.tzinfo is None:
        raise InvalidValue(f"{value!r} has no UTC offset", booking=key, field=name)
    return moment


def _status(value: object, key: str) -> BookingStatus:
    """``is_active`` (absent means active) as a booking status."""
    if value is None:
        return BookingStatus.CONFIRMED
    if not isinstance(value, bool):
        raise InvalidValue("is_active must be true or false", booking=key, field="is_active")
    return BookingStatus.CONFIRMED if value else BookingStatus.CANCELLED


def _person(email: str, name: str, phone: str) -> Person | None:
    """A person from possibly empty fields; ``None`` when all are empty."""
    if not (email or name or phone):
        return None
    return Person(email=email or None, name=name or None, phone=phone or None)


def _attendees(value: object, key: str) -> tuple[Person, ...]:
    """The ``attendees`` array of ``{email, name, phone}`` objects."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidValue("attendees must be a list", booking=key, field="attendees")
    people = []
    for index, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise InvalidValue("expected an object", booking=key, field=f"attendees[{index}]")
        prefix = f"attendees[{index}]."
        fields = [_text(item, name, key, prefix=prefix) for name in ("email", "name", "phone")]
        person = _person(*fields)
        if person is not None:
            people.append(person)
    return tuple(people)
