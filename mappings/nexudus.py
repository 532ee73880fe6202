"""Nexudus bookings (admin API records, members-portal items) ⇄ canonical bookings.

Reading (providers.md §2.4, §2.6, §2.7, §2.11):

- Admin records (``GET /api/spaces/bookings``, webhooks, the ``Records`` envelope) and the
  portal get-one envelope ``{"Value": {...}, "Resource": {...}}`` carry ``FromTime``/``ToTime``
  as UTC instants. When the room's zone is given, ``FromTimeLocal``/``ToTimeLocal`` must agree
  with them in that zone; a mismatch is an error (a wrong zone would shift every booking).
- Portal ``fullCalendarBookings`` items with ``ignoreTimezone: true`` carry the room's LOCAL
  wall-clock time written with a ``Z``: the ``Z`` is ignored and the time read in the room's
  zone. Without ``ignoreTimezone`` the value is a UTC instant.
- Title: admin records have no title field, so the title is the booker's name
  (``CoworkerFullName``), else the room name (``ResourceName``), else "Booking" — what a room
  calendar usually shows. The booker is also the organizer. ``Notes`` is the description.
  ``InternalNotes`` is staff-only and is never read into any field.
- Status: ``Tentative`` → tentative, else confirmed (a deleted Nexudus booking has no row).
  ``version`` is ``UpdatedOn``; for a series, the latest member's ``UpdatedOn`` plus the
  member count, because deleting a member changes no remaining member's ``UpdatedOn``.
- A repeat series (records sharing ``RepeatSeriesUniqueId``) is one booking keyed by that id.
  Its members are the truth: the repeat fields (see :mod:`mappings.recurrence` for their
  reading) only propose a rule, which :func:`mappings.recurrence.fit_series` keeps when it
  explains the members with fewer exceptions than a rule derived from the members themselves.
- Without a ``timezone`` the zone is UTC: recurrences are then exact UTC instants.

Writing: create bodies carry ``FromTime``/``ToTime`` as UTC ``Z`` strings. ``RepeatUntil`` is
written as the local wall-clock start of the last occurrence (``YYYY-MM-DDTHH:MM:SS``), which
reads back to the same inclusive local date. Nexudus has no title field, so a title that is
not the booker's name is not sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bridge.model import Booking, BookingStatus, Occurrence, Person, Window
from mappings.errors import (
    InvalidValue,
    MalformedInput,
    MappingError,
    MissingField,
    UnknownTimezone,
    UnsupportedRecurrence,
)
from mappings.expansion import expand
from mappings.recurrence import (
    Member,
    NexudusRepeat,
    RepeatCycle,
    fit_series,
    repeat_rules,
    rrule_to_repeat,
)

KIND = "nexudus"

#: The title when a booking names neither its booker nor its room.
DEFAULT_TITLE = "Booking"

#: ``RepeatOn*`` flags, indexed like ``date.weekday()`` (0 = Monday).
WEEKDAY_FLAGS = (
    "RepeatOnMondays",
    "RepeatOnTuesdays",
    "RepeatOnWednesdays",
    "RepeatOnThursdays",
    "RepeatOnFridays",
    "RepeatOnSaturdays",
    "RepeatOnSundays",
)

#: ``WhichBookingsToUpdate`` values that update (5-8 delete or revert charges).
UPDATE_ACTIONS = frozenset({1, 2, 3, 4})

#: Extra fields kept for rebuilding a create body, as (booking field, extra name).
_ID_EXTRAS = ("CoworkerId", "FloorPlanDeskId", "ExtraServiceId")


@dataclass(frozen=True, slots=True)
class _Record:
    """One Nexudus booking record, read and checked, before series are grouped."""

    name: str | None
    key: str | None
    series: str | None
    resource: str
    start: datetime
    end: datetime
    status: BookingStatus
    title: str
    description: str
    organizer: Person | None
    attendees: tuple[Person, ...]
    private: bool
    version: str | None
    updated: datetime | None
    repeat: NexudusRepeat | None
    extra: tuple[tuple[str, str], ...]

    @property
    def member(self) -> Member:
        """The record as one member of a series."""
        return Member(self.start, self.end, self.status, self.title, self.description)


@dataclass(frozen=True, slots=True)
class _Fields:
    """One JSON object's fields, read with errors that name the booking and the field."""

    data: Mapping[str, object]
    booking: str | None

    def present(self, name: str) -> object:
        """A field that must be there and not null."""
        value = self.data.get(name)
        if value is None or value == "":
            raise MissingField(f"{name} is required", booking=self.booking, field=name)
        return value

    def text(self, name: str) -> str | None:
        """An optional string field ("" and null read as None)."""
        value = self.data.get(name)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise self.invalid(name, "a string", value)
        return value

    def integer(self, name: str, *, required: bool = False) -> int | None:
        """An optional integer field; digit strings are accepted as portal records use them."""
        value = self.present(name) if required else self.data.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        raise self.invalid(name, "an integer", value)

    def flag(self, name: str) -> bool:
        """An optional boolean field (null reads as false)."""
        value = self.data.get(name)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise self.invalid(name, "true or false", value)
        return value

    def moment(self, name: str, *, required: bool = False) -> datetime | None:
        """An ISO 8601 date-time field as written (naive when it has no offset)."""
        value = self.present(name) if required else self.data.get(name)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise self.invalid(name, "an ISO 8601 date-time", value)
        try:
            return datetime.fromisoformat(value)
        except ValueError as exc:
            raise self.invalid(name, "an ISO 8601 date-time", value) from exc

    def instant(self, name: str, *, required: bool = False) -> datetime | None:
        """A UTC date-time field as an aware instant (no suffix also means UTC)."""
        moment = self.moment(name, required=required)
        if moment is None:
            return None
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

    def wall_clock(self, name: str, zone: ZoneInfo, *, required: bool = False) -> datetime | None:
        """A local wall-clock field (any ``Z`` or offset ignored) placed in ``zone``."""
        moment = self.moment(name, required=required)
        if moment is None:
            return None
        return moment.replace(tzinfo=None).replace(tzinfo=zone, fold=0).astimezone(UTC)

    def local_date(self, name: str) -> date | None:
        """The calendar date written at the start of a date or date-time field."""
        value = self.text(name)
        if value is None:
            return None
        try:
            return date.fromisoformat(value[:10])
        except ValueError as exc:
            raise self.invalid(name, "a date (YYYY-MM-DD...)", value) from exc

    def invalid(self, name: str, expected: str, value: object) -> InvalidValue:
        """The error for a field holding something other than ``expected``."""
        shown = type(value).__name__ if not isinstance(value, str | int | float) else repr(value)
        return InvalidValue(
            f"{name} must be {expected}, not {shown}", booking=self.booking, field=name
        )


# --- reading ----------------------------------------------------------------------------------


def from_json(data: object, *, provider: str = KIND, timezone: str | None = None) -> list[Booking]:
    """Bookings from parsed JSON.

    Accepts one admin record, portal item or get-one envelope, a ``Records`` envelope, or an
    array of records (series grouped by ``RepeatSeriesUniqueId``; the rest are singles).
    """
    return records_to_bookings(_records_of(data), provider=provider, timezone=timezone)


def _records_of(data: object) -> list[Mapping[str, object]]:
    """The booking objects one JSON document holds."""
    if isinstance(data, dict) and isinstance(data.get("Records"), list):
        data = data["Records"]
    if isinstance(data, dict):
        return [data]
    if isinstance(data, list):
        return list(data)
    raise MalformedInput(f"expected a JSON object or array, not {type(data).__name__}")


def records_to_bookings(
    records: Iterable[object], *, provider: str = KIND, timezone: str | None = None
) -> list[Booking]:
    """Bookings from records: each repeat series becomes one booking, in first-seen order."""
    zone = _zone(timezone)
    groups: dict[tuple[str, int], list[_Record]] = {}
    for index, data in enumerate(records):
        if not isinstance(data, Mapping):
            raise MalformedInput(f"record {index} is {type(data).__name__}, not an object")
        record = _read(data, zone, check_local=timezone is not None)
        group = (record.series, 0) if record.series else ("", index)
        groups.setdefault(group, []).append(record)
    return [
        _series_booking(group, provider, zone)
        if group[0].series
        else _single_booking(group[0], provider, zone)
        for group in groups.values()
    ]


def record_to_booking(
    record: object, *, provider: str = KIND, timezone: str | None = None
) -> Booking:
    """One record's booking (a lone series member keeps its series key)."""
    return records_to_bookings([record], provider=provider, timezone=timezone)[0]


def _zone(name: str | None) -> ZoneInfo:
    """The room's zone (UTC when unknown)."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise UnknownTimezone(f"unknown time zone {name!r}", field="timezone") from exc


def _read(data: Mapping[str, object], zone: ZoneInfo, *, check_local: bool) -> _Record:
    """One record of any shape (admin, portal item, get-one envelope)."""
    if "Value" in data:
        value = data["Value"]
        resource = data.get("Resource")
        room = resource.get("Name") if isinstance(resource, Mapping) else None
        if not isinstance(value, Mapping):
            raise MalformedInput("the get-one envelope holds no booking", field="Value")
        return _read_admin(value, zone, check_local, room if isinstance(room, str) else None)
    if "resourceId" in data or "start" in data:
        return _read_portal(data, zone)
    return _read_admin(data, zone, check_local, None)


def _name_of(data: Mapping[str, object], *names: str) -> str | None:
    """How errors name a record: its first id field that is set."""
    for name in names:
        value = data.get(name)
        if value is not None and value != "":
            return str(value)
    return None


def _read_admin(
    data: Mapping[str, object], zone: ZoneInfo, check_local: bool, room: str | None
) -> _Record:
    """An admin API booking record (also the get-one ``Value``)."""
    fields = _Fields(data, _name_of(data, "Id", "UniqueId"))
    record_id = fields.integer("Id")
    unique_id = fields.text("UniqueId")
    resource = fields.integer("ResourceId", required=True)
    start, end = _times(fields, "FromTime", "ToTime", None)
    if check_local:
        _check_local(fields, "FromTimeLocal", start, zone)
        _check_local(fields, "ToTimeLocal", end, zone)
    booker = fields.text("CoworkerFullName")
    room = fields.text("ResourceName") or room
    extra = {
        "CoworkerId": fields.integer("CoworkerId"),
        "FloorPlanDeskId": fields.integer("FloorPlanDeskId"),
        "ExtraServiceId": fields.integer("ExtraServiceId") or None,
        "ResourceName": room,
        "UniqueId": unique_id,
    }
    return _Record(
        name=fields.booking,
        key=str(record_id) if record_id is not None else unique_id,
        series=fields.text("RepeatSeriesUniqueId"),
        resource=str(resource),
        start=start,
        end=end,
        status=BookingStatus.TENTATIVE if fields.flag("Tentative") else BookingStatus.CONFIRMED,
        title=booker or room or DEFAULT_TITLE,
        description=fields.text("Notes") or "",
        organizer=_person(booker, fields.text("CoworkerEmail")),
        attendees=_visitors(fields),
        private=False,
        version=fields.text("UpdatedOn"),
        updated=fields.instant("UpdatedOn"),
        repeat=_repeat(fields, zone),
        extra=_extra(extra),
    )


def _read_portal(data: Mapping[str, object], zone: ZoneInfo) -> _Record:
    """A members-portal ``fullCalendarBookings`` item."""
    fields = _Fields(data, _name_of(data, "id"))
    record_id = fields.integer("id")
    resource = fields.integer("resourceId", required=True)
    start, end = _times(fields, "start", "end", zone if fields.flag("ignoreTimezone") else None)
    booker = fields.text("coworkerFullName")
    room = fields.text("resourceName")
    extra = {"CoworkerId": fields.integer("coworkerId"), "ResourceName": room}
    return _Record(
        name=fields.booking,
        key=None if record_id is None else str(record_id),
        series=None,
        resource=str(resource),
        start=start,
        end=end,
        # Not in the seed, but live portals send it for bookings awaiting approval.
        status=BookingStatus.TENTATIVE if fields.flag("tentative") else BookingStatus.CONFIRMED,
        title=booker or room or fields.text("title") or DEFAULT_TITLE,
        description=fields.text("notes") or "",
        organizer=_person(booker, fields.text("coworkerEmail")),
        attendees=(),
        private=fields.flag("private"),
        version=None,
        updated=None,
        repeat=None,
        extra=_extra(extra),
    )


def _times(
    fields: _Fields, start_name: str, end_name: str, wall_zone: ZoneInfo | None
) -> tuple[datetime, datetime]:
    """Start and end instants, read as UTC or (``wall_zone`` given) as local wall clock."""
    if wall_zone is None:
        start = fields.instant(start_name, required=True)
        end = fields.instant(end_name, required=True)
    else:
        start = fields.wall_clock(start_name, wall_zone, required=True)
        end = fields.wall_clock(end_name, wall_zone, required=True)
    assert start is not None and end is not None  # required=True never answers None
    if end <= start:
        raise InvalidValue(
            f"{end_name} must be after {start_name}", booking=fields.booking, field=end_name
        )
    return start, end


def _check_local(fields: _Fields, name: str, instant: datetime, zone: ZoneInfo) -> None:
    """Refuse a ``*Local`` field that disagrees with its UTC twin in the room's zone."""
    written = fields.moment(name)
    if written is None:
        return
    expected = instant.astimezone(zone).replace(tzinfo=None)
    if written.replace(tzinfo=None) != expected:
        raise InvalidValue(
            f"{name} {written:%Y-%m-%dT%H:%M} is not {expected:%Y-%m-%dT%H:%M}, the UTC time "
            f"in {zone.key}; is the room's time zone right?",
            booking=fields.booking,
            field=name,
        )


def _repeat(fields: _Fields, zone: ZoneInfo) -> NexudusRepeat | None:
    """The record's repeat fields, when it belongs to a repeat series."""
    repeats = fields.integer("Repeats") or 0
    if not 0 <= repeats <= 9:
        raise InvalidValue(
            f"Repeats must be 0..9, not {repeats}", booking=fields.booking, field="Repeats"
        )
    every = fields.integer("RepeatEvery") or 1
    if every < 1:
        raise InvalidValue(
            f"RepeatEvery must be ≥ 1, not {every}", booking=fields.booking, field="RepeatEvery"
        )
    until = fields.local_date("RepeatUntil")
    repeating = fields.flag("RepeatBooking") or fields.text("RepeatSeriesUniqueId") is not None
    if repeats == 0 or not repeating:
        return None
    return NexudusRepeat(
        repeats=repeats,
        every=every,
        until=None if until is None else datetime.combine(until, time(), zone),
        weekdays=frozenset(day for day, flag in enumerate(WEEKDAY_FLAGS) if fields.flag(flag)),
    )


def _person(name: str | None, email: str | None) -> Person | None:
    """A person, or None when nothing is known about them."""
    return Person(email=email, name=name) if name or email else None


def _visitors(fields: _Fields) -> tuple[Person, ...]:
    """``BookingVisitors`` as attendees (entries naming nobody are skipped)."""
    visitors = fields.data.get("BookingVisitors")
    if visitors is None:
        return ()
    if not isinstance(visitors, list):
        raise fields.invalid("BookingVisitors", "an array", visitors)
    people: list[Person] = []
    for visitor in visitors:
        if not isinstance(visitor, Mapping):
            raise fields.invalid("BookingVisitors", "an array of objects", visitor)
        entry = _Fields(visitor, fields.booking)
        person = _person(entry.text("VisitorFullName"), entry.text("VisitorEmail"))
        if person is not None:
            people.append(person)
    return tuple(people)


def _extra(values: Mapping[str, object]) -> tuple[tuple[str, str], ...]:
    """The set values as sorted (name, text) pairs."""
    return tuple(sorted((name, str(value)) for name, value in values.items() if value is not None))


def _single_booking(record: _Record, provider: str, zone: ZoneInfo) -> Booking:
    """A booking that is not part of a repeat series."""
    if record.key is None:
        raise MissingField("Id is required", booking=record.name, field="Id")
    return Booking(
        provider=provider,
        key=record.key,
        resource=record.resource,
        start=record.start.astimezone(zone),
        end=record.end.astimezone(zone),
        timezone=zone.key,
        status=record.status,
        title=record.title,
        description=record.description,
        organizer=record.organizer,
        attendees=record.attendees,
        private=record.private,
        version=record.version,
        updated=record.updated,
        extra=record.extra,
    )


def _series_booking(members: Sequence[_Record], provider: str, zone: ZoneInfo) -> Booking:
    """One booking for all members of a repeat series."""
    series = members[0].series
    assert series is not None  # grouping puts only series members here
    resources = sorted({member.resource for member in members})
    if len(resources) > 1:
        raise InvalidValue(
            f"series members book different resources: {', '.join(resources)}",
            booking=series,
            field="ResourceId",
        )
    first = min(members, key=lambda member: member.start)
    latest = max(members, key=lambda member: (member.updated or first.start, member.version or ""))
    with _naming(series):
        repeat = _agreed_repeat(members)
        starts = [member.start for member in members]
        rules = repeat_rules(repeat, starts, zone) if repeat else []
        shape = fit_series([member.member for member in members], zone, rules)
    return Booking(
        provider=provider,
        key=series,
        resource=resources[0],
        start=shape.start,
        end=shape.end,
        timezone=zone.key,
        status=shape.status,
        title=shape.title,
        description=shape.description,
        organizer=first.organizer,
        attendees=first.attendees,
        private=first.private,
        recurrence=shape.recurrence,
        version=None if latest.version is None else f"{latest.version}/{len(members)}",
        updated=latest.updated,
        extra=tuple(pair for pair in first.extra if pair[0] != "UniqueId"),
    )


def _agreed_repeat(members: Sequence[_Record]) -> NexudusRepeat | None:
    """The repeat fields the members carry, when those that carry them agree."""
    repeats = {member.repeat for member in members if member.repeat is not None}
    return repeats.pop() if len(repeats) == 1 else None


@contextmanager
def _naming(booking: str) -> Iterator[None]:
    """Name ``booking`` in mapping errors raised without a booking name."""
    try:
        yield
    except MappingError as exc:
        if exc.booking is not None:
            raise
        raise type(exc)(exc.reason, booking=booking, field=exc.field) from exc


# --- writing ----------------------------------------------------------------------------------


def to_json(booking: Booking, *, window: Window | None = None) -> object:
    """The admin create body for a booking: one object, or a list when it takes several."""
    bodies = booking_to_create_bodies(booking, window)
    return bodies[0] if len(bodies) == 1 else bodies


def booking_to_create_bodies(
    booking: Booking, window: Window | None = None
) -> list[dict[str, object]]:
    """``POST /api/spaces/bookings`` bodies creating the booking's live occurrences.

    A single booking, or a series Nexudus can express (a rule ``rrule_to_repeat`` accepts and
    no RDATE, EXDATE or override), is one body; any other recurrence is one body per live
    occurrence inside ``window``, which is then required. A cancelled booking needs none.
    """
    if not booking.status.is_live:
        return []
    with _naming(booking.key):
        if not booking.is_recurring:
            return [_body(booking, booking.start, booking.end, booking.status, booking.description)]
        repeat = expressible_repeat(booking)
        if repeat is not None:
            body = _body(booking, booking.start, booking.end, booking.status, booking.description)
            return [{**body, **_repeat_fields(repeat, booking.zone)}]
        if window is None:
            raise UnsupportedRecurrence(
                "Nexudus cannot hold this recurrence as one repeat series; a window is needed "
                "to create its occurrences one by one",
                field="RRULE",
            )
        return occurrence_create_bodies(booking, window)


def occurrence_create_bodies(
    booking: Booking, window: Window, since: datetime | None = None
) -> list[dict[str, object]]:
    """One create body per live occurrence of the booking in ``window``, as single bookings.

    With ``since``, occurrences starting before it are left out: they belong to the part of a
    series an earlier, narrower window already covered (the window's end is that ``since``).
    """
    with _naming(booking.key):
        return [
            _occurrence_body(booking, occurrence)
            for occurrence in expand(booking, window)
            if occurrence.status.is_live
            and (since is None or occurrence.start.astimezone(UTC) >= since.astimezone(UTC))
        ]


def expressible_repeat(booking: Booking) -> NexudusRepeat | None:
    """The repeat fields that recreate the booking's recurrence exactly, if there are any."""
    recurrence = booking.recurrence
    if recurrence is None or recurrence.rrule is None:
        return None
    if recurrence.rdates or recurrence.exdates or recurrence.overrides:
        return None
    return rrule_to_repeat(recurrence.rrule, booking.start, booking.zone)


def booking_to_update_body(booking: Booking, record_id: int, which: int) -> dict[str, object]:
    """A ``PUT /api/spaces/bookings`` body moving record ``record_id`` to the booking's times.

    ``which`` is ``WhichBookingsToUpdate`` (1 this, 2 this and future, 3 all, 4 not charged).
    The body holds the fields the bridge owns; Nexudus clears fields a PUT leaves out, so the
    client lays it over the full record it has just read (providers.md §2.3).
    """
    if which not in UPDATE_ACTIONS:
        raise InvalidValue(
            f"WhichBookingsToUpdate must be one of 1-4 for an update, not {which}",
            booking=booking.key,
            field="WhichBookingsToUpdate",
        )
    with _naming(booking.key):
        repeat = expressible_repeat(booking) if booking.is_recurring else None
        body = _body(booking, booking.start, booking.end, booking.status, booking.description)
    return {
        "Id": record_id,
        **body,
        "Repeats": 0 if repeat is None else repeat.repeats,
        "WhichBookingsToUpdate": which,
    }


def _occurrence_body(booking: Booking, occurrence: Occurrence) -> dict[str, object]:
    """The create body of one occurrence, with its override's description if it has one."""
    overrides = booking.recurrence.overrides if booking.recurrence else ()
    rid = occurrence.recurrence_id
    described = {
        o.recurrence_id.astimezone(UTC): o.description
        for o in overrides
        if o.description is not None
    }
    description = booking.description
    if rid is not None:
        description = described.get(rid.astimezone(UTC), description)
    return _body(booking, occurrence.start, occurrence.end, occurrence.status, description)


def _body(
    booking: Booking, start: datetime, end: datetime, status: BookingStatus, description: str
) -> dict[str, object]:
    """The fields every create or update body carries."""
    body: dict[str, object] = {
        "ResourceId": _resource_id(booking),
        "FromTime": _utc_text(start),
        "ToTime": _utc_text(end),
        "Notes": description or None,
        "Tentative": status is BookingStatus.TENTATIVE,
    }
    for name in _ID_EXTRAS:
        value = booking.extra_value(name)
        if value is not None:
            body[name] = int(value) if value.isdigit() else value
    if booking.attendees:
        body["BookingVisitors"] = [
            {"VisitorFullName": person.name, "VisitorEmail": person.email}
            for person in booking.attendees
        ]
    return body


def _repeat_fields(repeat: NexudusRepeat, zone: ZoneInfo) -> dict[str, object]:
    """The create-only repeat fields of a series body."""
    weekly = repeat.cycle is RepeatCycle.WEEKLY
    until = None if repeat.until is None else repeat.until.astimezone(zone)
    return {
        "RepeatBooking": True,
        "Repeats": repeat.repeats,
        "RepeatEvery": repeat.every,
        "RepeatUntil": None if until is None else until.strftime("%Y-%m-%dT%H:%M:%S"),
        **{flag: weekly and day in repeat.weekdays for day, flag in enumerate(WEEKDAY_FLAGS)},
    }


def _resource_id(booking: Booking) -> int:
    """The booking's resource as the integer Nexudus wants."""
    if not booking.resource.isdigit():
        raise InvalidValue(
            f"ResourceId must be an integer, not {booking.resource!r}",
            booking=booking.key,
            field="ResourceId",
        )
    return int(booking.resource)


def _utc_text(instant: datetime) -> str:
    """An instant as Nexudus's UTC ``Z`` string."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
