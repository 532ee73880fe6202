"""Booking ⇄ JSON for the state store, an exact round trip of every field.

Instants are written as ISO 8601 with their UTC offset, followed by the IANA zone in brackets
when they carry one (RFC 9557 style: ``2024-10-27T01:30:00+00:00[Europe/London]``). Reading
one back gives the same wall time, zone and ``fold`` (so the second 01:30 of a DST fall-back
stays the second), hence the same instant. A value with only a fixed offset comes back with
that fixed offset. Should a tzdata update have moved the zone's offset for a stored wall time,
the stored instant wins.

Durations (buffers) are JSON numbers of seconds: integers when whole, else floats, which
are exact to the microsecond for anything under 30 years. ``extra`` is a list of pairs,
keeping its order.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bridge.errors import StateError
from bridge.model import (
    Booking,
    BookingStatus,
    Buffers,
    Override,
    Person,
    Recurrence,
)

JsonObject = dict[str, Any]


class BookingDecodeError(StateError):
    """A stored booking document that cannot be read back."""


def dumps_booking(booking: Booking) -> str:
    """The booking as a compact, key-sorted JSON text."""
    return json.dumps(booking_to_json(booking), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)


def loads_booking(text: str) -> Booking:
    """The booking stored by :func:`dumps_booking`."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BookingDecodeError(f"stored booking is not JSON: {exc}") from None
    return booking_from_json(document)


def booking_to_json(booking: Booking) -> JsonObject:
    """The booking as a JSON-ready dict."""
    return {
        "provider": booking.provider,
        "key": booking.key,
        "resource": booking.resource,
        "start": encode_datetime(booking.start),
        "end": encode_datetime(booking.end),
        "timezone": booking.timezone,
        "status": booking.status.value,
        "title": booking.title,
        "description": booking.description,
        "organizer": _person_to_json(booking.organizer) if booking.organizer else None,
        "attendees": [_person_to_json(person) for person in booking.attendees],
        "private": booking.private,
        "buffers": {
            "before": encode_duration(booking.buffers.before),
            "after": encode_duration(booking.buffers.after),
        },
        "recurrence": _recurrence_to_json(booking.recurrence) if booking.recurrence else None,
        "version": booking.version,
        "updated": encode_datetime(booking.updated) if booking.updated else None,
        "extra": [[name, value] for name, value in booking.extra],
    }


def booking_from_json(document: JsonObject) -> Booking:
    """The booking a :func:`booking_to_json` dict describes (BookingDecodeError if broken)."""
    try:
        return _booking(document)
    except BookingDecodeError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        where = f"{document.get('provider')}/{document.get('key')}" if isinstance(
            document, dict
        ) else "?"
        raise BookingDecodeError(
            f"stored booking {where} is not valid: {type(exc).__name__}: {exc}"
        ) from None


def _booking(document: JsonObject) -> Booking:
    """The decoding itself; any malformed part raises KeyError/TypeError/ValueError."""
    organizer = document["organizer"]
    recurrence = document["recurrence"]
    updated = document["updated"]
    return Booking(
        provider=_string(document["provider"]),
        key=_string(document["key"]),
        resource=_string(document["resource"]),
        start=decode_datetime(document["start"]),
        end=decode_datetime(document["end"]),
        timezone=_string(document["timezone"]),
        status=BookingStatus(document["status"]),
        title=_string(document["title"]),
        description=_string(document["description"]),
        organizer=_person_from_json(organizer) if organizer is not None else None,
        attendees=tuple(_person_from_json(item) for item in document["attendees"]),
        private=_boolean(document["private"]),
        buffers=Buffers(
            decode_duration(document["buffers"]["before"]),
            decode_duration(document["buffers"]["after"]),
        ),
        recurrence=_recurrence_from_json(recurrence) if recurrence is not None else None,
        version=_optional_string(document["version"]),
        updated=decode_datetime(updated) if updated is not None else None,
        extra=tuple((_string(name), _string(value)) for name, value in document["extra"]),
    )


def encode_datetime(value: datetime) -> str:
    """An aware instant as ISO 8601 with offset, plus ``[Zone/Name]`` for an IANA zone."""
    offset = value.utcoffset()
    if offset is None:
        raise ValueError(f"naive datetime {value.isoformat()} cannot be encoded")
    if isinstance(value.tzinfo, ZoneInfo) and value.tzinfo.key:
        return f"{value.isoformat()}[{value.tzinfo.key}]"
    # Any other tzinfo (dateutil, pytz) is kept as the fixed offset it has at this instant.
    return value.astimezone(timezone(offset)).isoformat()


def decode_datetime(text: str) -> datetime:
    """The instant written by :func:`encode_datetime`, with its zone and fold."""
    stamp, bracket, zone_part = _string(text).partition("[")
    parsed = datetime.fromisoformat(stamp)
    if parsed.utcoffset() is None:
        raise ValueError(f"{text!r} has no UTC offset")
    if not bracket:
        return parsed
    try:
        zone = ZoneInfo(zone_part.removesuffix("]"))
    except ZoneInfoNotFoundError:
        raise ValueError(f"{text!r} names an unknown time zone") from None
    wall = parsed.replace(tzinfo=None)
    for fold in (0, 1):
        candidate = wall.replace(tzinfo=zone, fold=fold)
        if candidate.utcoffset() == parsed.utcoffset():
            return candidate
    return parsed.astimezone(zone)


def encode_duration(value: timedelta) -> int | float:
    """A duration as a number of seconds (an integer when whole)."""
    if value.microseconds == 0:
        return value.days * 86_400 + value.seconds
    return value.total_seconds()


def decode_duration(value: object) -> timedelta:
    """The duration written by :func:`encode_duration`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"duration must be a number of seconds, got {value!r}")
    return timedelta(seconds=value)


def _person_to_json(person: Person) -> JsonObject:
    """A person as a dict (every field, None included)."""
    return {"email": person.email, "name": person.name, "phone": person.phone}


def _person_from_json(document: JsonObject) -> Person:
    """The person a :func:`_person_to_json` dict describes."""
    return Person(
        email=_optional_string(document["email"]),
        name=_optional_string(document["name"]),
        phone=_optional_string(document["phone"]),
    )


def _recurrence_to_json(recurrence: Recurrence) -> JsonObject:
    """A recurrence as a dict."""
    return {
        "rrule": recurrence.rrule,
        "rdates": [encode_datetime(value) for value in recurrence.rdates],
        "exdates": [encode_datetime(value) for value in recurrence.exdates],
        "overrides": [_override_to_json(override) for override in recurrence.overrides],
    }


def _recurrence_from_json(document: JsonObject) -> Recurrence:
    """The recurrence a :func:`_recurrence_to_json` dict describes."""
    return Recurrence(
        rrule=_optional_string(document["rrule"]),
        rdates=tuple(decode_datetime(value) for value in document["rdates"]),
        exdates=tuple(decode_datetime(value) for value in document["exdates"]),
        overrides=tuple(_override_from_json(item) for item in document["overrides"]),
    )


def _override_to_json(override: Override) -> JsonObject:
    """One overridden occurrence as a dict."""
    return {
        "recurrence_id": encode_datetime(override.recurrence_id),
        "start": encode_datetime(override.start),
        "end": encode_datetime(override.end),
        "status": override.status.value if override.status else None,
        "title": override.title,
        "description": override.description,
        "version": override.version,
    }


def _override_from_json(document: JsonObject) -> Override:
    """The override an :func:`_override_to_json` dict describes."""
    status = document["status"]
    return Override(
        recurrence_id=decode_datetime(document["recurrence_id"]),
        start=decode_datetime(document["start"]),
        end=decode_datetime(document["end"]),
        status=BookingStatus(status) if status is not None else None,
        title=_optional_string(document["title"]),
        description=_optional_string(document["description"]),
        version=_optional_string(document["version"]),
    )


def _string(value: object) -> str:
    """``value`` if it is a string (TypeError otherwise)."""
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _optional_string(value: object) -> str | None:
    """``value`` if it is a string or None."""
    return None if value is None else _string(value)


def _boolean(value: object) -> bool:
    """``value`` if it is a boolean."""
    if not isinstance(value, bool):
        raise TypeError(f"expected a boolean, got {value!r}")
    return value
