"""Writing bookings to a provider on behalf of calendar requests: the ``BookingWriter`` side.

A writer creates, moves and cancels the provider bookings behind a calendar request. Every
create carries a marker of the event's UID in a provider field (Nexudus ``SystemId``), so a
pass interrupted between the provider create and the calendar tag finds the booking it already
made (:meth:`BookingWriter.find`) and adopts it instead of booking the room twice.

A provider refusal (the slot is taken, outside opening hours, too long, nobody to bill)
raises :class:`Refused` with the provider's reason; a multi-part create that is refused half
way cancels the parts already made, so nothing is left half-created.

Nexudus bills every booking to a customer: the organizer, else the first attendee, whose
email is a coworker's (the room itself is never asked about), else the room's
``default_customer``; with none of these the request is refused. Lookups are cached for the
writer's life, which is one pass of one room.

A recurring request Nexudus cannot hold as one repeat series becomes single bookings inside
the pass's window (:class:`WindowedWriter`); later passes :meth:`~WindowedWriter.extend` it as
the window moves, skipping occurrences already booked under the request's marker, so an
interrupted extension never books one twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from bridge.errors import BridgeError
from bridge.model import Booking, Person, Room, Window
from bridge.providers.errors import (
    ProviderConflict,
    ProviderError,
    ProviderNotFound,
    ProviderValidationError,
)
from bridge.providers.nexudus import NexudusClient, parse_nexudus_time
from bridge.sources.base import BookingSource
from mappings import nexudus as nexudus_mapping

#: Nexudus ``WhichBookingsToUpdate``: this booking only / every booking of the series.
THIS_BOOKING = 1
WHOLE_SERIES = 3

#: Longest marker Nexudus text fields take without complaint.
MAX_MARKER = 200


class Refused(BridgeError):
    """The provider refused the booking; ``reason`` is its message, safe to show the organizer.

    A refused change that had to replace the bookings (cancel, then create) puts the old ones
    back; ``kept`` then holds their keys now, which differ from the keys the change was given.
    """

    def __init__(self, reason: str, *, kept: Sequence[str] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kept = tuple(kept) if kept is not None else None


def extension_part(since: datetime, window: Window) -> Window | None:
    """The part of ``window`` from ``since`` on, where a windowed series is extended."""
    return Window(since, window.end) if since < window.end else None


def request_marker(uid: str) -> str:
    """The provider-side marker of a calendar request (its event UID)."""
    return f"roombridge:{uid}"[:MAX_MARKER]


class BookingWriter(Protocol):
    """A provider, as the intake executor writes to it."""

    name: str

    def find(self, room: Room, marker: str, window: Window) -> list[str]:
        """Keys of the live bookings carrying ``marker`` (bookings made by an earlier pass)."""
        ...

    def create(self, room: Room, booking: Booking, marker: str, window: Window) -> list[str]:
        """Create the booking; its keys. Raises :class:`Refused` (nothing left created)."""
        ...

    def change(
        self, room: Room, keys: Sequence[str], booking: Booking, marker: str, window: Window
    ) -> list[str]:
        """Move/retitle the bookings to ``booking``; their keys now. Raises :class:`Refused`."""
        ...

    def cancel(self, room: Room, keys: Sequence[str]) -> None:
        """Cancel the bookings (already gone is fine)."""
        ...

    def cancel_occurrences(
        self, room: Room, keys: Sequence[str], starts: Sequence[datetime]
    ) -> None:
        """Cancel the occurrences starting at ``starts`` (original starts) of the bookings."""
        ...


@runtime_checkable
class WindowedWriter(Protocol):
    """A writer that may make a recurring booking only inside a window, to be extended later."""

    def horizon(self, booking: Booking, window: Window) -> datetime | None:
        """Up to when ``create`` in ``window`` covers the booking: None when wholly."""
        ...

    def extend(
        self, room: Room, booking: Booking, marker: str, since: datetime, window: Window
    ) -> list[str]:
        """Book the occurrences starting in [since, window end) not yet booked; all their keys.

        Raises :class:`Refused` with nothing of this call left created.
        """
        ...


class NexudusWriter:
    """Bookings through the Nexudus admin API: repeat series when expressible, else singles."""

    def __init__(self, client: NexudusClient, *, name: str, customer: str | None = None):
        self.client = client
        self.name = name
        self.customer = customer
        self._coworkers: dict[str, int | None] = {}

    def __repr__(self) -> str:
        return f"NexudusWriter(name={self.name!r})"

    def find(self, room: Room, marker: str, window: Window) -> list[str]:
        """Keys of bookings whose ``SystemId`` is the marker."""
        keys = {
            _key_of(record)
            for record in self.client.list_bookings(room.resource, window=window)
            if record.get("SystemId") == marker
        }
        return sorted(keys)

    def create(self, room: Room, booking: Booking, marker: str, window: Window) -> list[str]:
        """One body per series or occurrence; a refusal cancels what this call created."""
        customer = self.customer_for(room, booking)
        bodies = nexudus_mapping.booking_to_create_bodies(
            booking.evolve(resource=room.resource), window
        )
        return self._create_all(room, bodies, marker, customer)

    def horizon(self, booking: Booking, window: Window) -> datetime | None:
        """The window's end for a series made of single bookings; else None (made whole)."""
        if booking.is_recurring and nexudus_mapping.expressible_repeat(booking) is None:
            return window.end
        return None

    def extend(
        self, room: Room, booking: Booking, marker: str, since: datetime, window: Window
    ) -> list[str]:
        """Single bookings for the occurrences from ``since`` that carry no record yet."""
        part = extension_part(since, window)
        if part is None:
            return []
        existing = [
            record
            for record in self.client.list_bookings(room.resource, window=part)
            if record.get("SystemId") == marker and (_start_of(record) or since) >= since
        ]
        booked = {_start_of(record) for record in existing}
        bodies = [
            body
            for body in nexudus_mapping.occurrence_create_bodies(
                booking.evolve(resource=room.resource), part, since
            )
            if _start_of(body) not in booked
        ]
        customer = self.customer_for(room, booking) if bodies else None
        made = self._create_all(room, bodies, marker, customer)
        return sorted({*(_key_of(record) for record in existing), *made})

    def customer_for(self, room: Room, booking: Booking) -> int | str:
        """Who is billed: a coworker by email (organizer first), else the default customer."""
        for email in _billing_emails(room, booking):
            coworker = self._coworker_of(email)
            if coworker is not None:
                return coworker
        if self.customer is not None:
            return int(self.customer) if self.customer.isdigit() else self.customer
        raise Refused(_no_customer(booking.organizer))

    def _coworker_of(self, email: str) -> int | None:
        """The Id of the coworker with this email (the lowest if several), cached."""
        if email not in self._coworkers:
            ids = sorted(
                int(record["Id"])
                for record in self.client.coworkers_by_email(email)
                if isinstance(record.get("Id"), int)
            )
            self._coworkers[email] = ids[0] if ids else None
        return self._coworkers[email]

    def _create_all(
        self,
        room: Room,
        bodies: Sequence[Mapping[str, Any]],
        marker: str,
        customer: int | str | None,
    ) -> list[str]:
        """Create every body; a refusal (or any failure) cancels what this call created."""
        created: list[str] = []
        for body in bodies:
            try:
                booking_id = self.client.create_booking(self._marked(body, marker, customer))
            except (ProviderConflict, ProviderValidationError) as exc:
                self.cancel(room, created)
                raise Refused(refusal_reason(exc)) from exc
            except BaseException:
                self.cancel(room, created)
                raise
            created.append(self._key_after_create(booking_id))
        return created

    def change(
        self, room: Room, keys: Sequence[str], booking: Booking, marker: str, window: Window
    ) -> list[str]:
        """Update in place when one record or series holds the booking; else replace it."""
        booking = booking.evolve(resource=room.resource)
        target = self._records_of(keys[0]) if len(keys) == 1 else []
        in_place = target and (
            (not booking.is_recurring and len(target) == 1 and not _series(target[0]))
            or (booking.is_recurring and _series(target[0])
                and nexudus_mapping.expressible_repeat(booking) is not None)
        )
        if in_place:
            record = target[0]
            which = WHOLE_SERIES if _series(record) else THIS_BOOKING
            body = nexudus_mapping.booking_to_update_body(booking, int(record["Id"]), which)
            try:
                self.client.update_booking(self._marked({**record, **body}, marker), which=which)
            except (ProviderConflict, ProviderValidationError) as exc:
                raise Refused(refusal_reason(exc)) from exc
            return list(keys)
        # Nexudus cannot reshape a series in place: the old bookings give way to the new ones
        # (whoever is billed is settled first, so a refusal there cancels nothing), and come
        # back when Nexudus refuses the new ones, so a refused edit never loses the room.
        customer = self.customer_for(room, booking)
        old = [record for key in keys for record in self._records_of(key)]
        self.cancel(room, keys)
        bodies = nexudus_mapping.booking_to_create_bodies(booking, window)
        try:
            return self._create_all(room, bodies, marker, customer)
        except Refused as exc:
            raise Refused(exc.reason, kept=self._put_back(room, old, marker, window)) from exc

    def _put_back(
        self, room: Room, records: Sequence[Mapping[str, Any]], marker: str, window: Window
    ) -> list[str]:
        """Create again the bookings ``records`` held (a series as a series); their keys."""
        previous = nexudus_mapping.records_to_bookings(
            records, provider=self.name, timezone=room.timezone
        )
        kept: list[str] = []
        for booking in previous:
            bodies = nexudus_mapping.booking_to_create_bodies(
                booking.evolve(resource=room.resource), window
            )
            customer = next((r.get("CoworkerId") for r in records if r.get("CoworkerId")), None)
            kept.extend(self._create_all(room, bodies, marker, customer))
        return kept

    def cancel(self, room: Room, keys: Sequence[str]) -> None:
        """Delete every record of the bookings."""
        for key in keys:
            for record in self._records_of(key):
                self.client.delete_booking(int(record["Id"]))

    def cancel_occurrences(
        self, room: Room, keys: Sequence[str], starts: Sequence[datetime]
    ) -> None:
        """Delete the records that start at one of ``starts``."""
        wanted = {start.astimezone(UTC) for start in starts}
        for key in keys:
            for record in self._records_of(key):
                start = parse_nexudus_time(record.get("FromTime"))
                if start is not None and start.astimezone(UTC) in wanted:
                    self.client.delete_booking(int(record["Id"]))

    @staticmethod
    def _marked(
        body: Mapping[str, Any], marker: str, customer: int | str | None = None
    ) -> dict[str, Any]:
        """A body carrying the request marker (and the customer billed, unless it names one)."""
        marked = {**body, "SystemId": marker}
        if customer is not None and not marked.get("CoworkerId"):
            marked["CoworkerId"] = customer
        return marked

    def _key_after_create(self, booking_id: int) -> str:
        """The booking key of a new record: its series id, or its own Id."""
        record = self.client.get_booking(booking_id)
        return _key_of(record)

    def _records_of(self, key: str) -> list[dict[str, Any]]:
        """The live records of a booking key (a series' members, or one record)."""
        if key.isdigit():
            try:
                return [dict(self.client.get_booking(int(key)))]
            except ProviderNotFound:
                return []
        return [dict(record) for record in self.client.list_series(key)]


def _series(record: Mapping[str, Any]) -> str | None:
    """The record's repeat series id, if any."""
    value = record.get("RepeatSeriesUniqueId")
    return str(value) if value else None


def _key_of(record: Mapping[str, Any]) -> str:
    """The booking key the source gives a record."""
    return _series(record) or str(record.get("Id"))


def _start_of(record: Mapping[str, Any]) -> datetime | None:
    """A record's or body's FromTime, in UTC."""
    start = parse_nexudus_time(record.get("FromTime"))
    return None if start is None else start.astimezone(UTC)


def _billing_emails(room: Room, booking: Booking) -> list[str]:
    """The organizer's then each attendee's email, once each, never the room's own address."""
    room_addresses = {(room.calendar_id or "").strip().lower().removeprefix("mailto:")}
    emails: list[str] = []
    people: list[Person | None] = [booking.organizer, *booking.attendees]
    for person in people:
        email = (person.email or "").strip().lower() if person is not None else ""
        if email and "@" in email and email not in room_addresses and email not in emails:
            emails.append(email)
    return emails


def _no_customer(organizer: Person | None) -> str:
    """Why nobody can be billed; it names the organizer only (their own event)."""
    who = organizer.email if organizer is not None and organizer.email else "the organizer"
    return (
        f"no Nexudus customer for {who} or the event's attendees, "
        "and the room has no default customer"
    )


def refusal_reason(exc: ProviderError) -> str:
    """The provider's own words for a refusal (field messages first)."""
    messages = [error.message for error in exc.errors if error.message]
    return "; ".join(dict.fromkeys(messages)) or exc.message or "the provider refused the booking"


def build_writer(source: BookingSource, *, customer: str | None = None) -> BookingWriter | None:
    """The writer over a source's client, for providers that take bookings from calendars."""
    from bridge.sources.nexudus import NexudusSource
    from bridge.sources.nexudus_portal import NexudusPortalSource
    from bridge.sources.officernd import OfficeRndSource
    from bridge.sources.officernd_writer import OfficeRndWriter
    from bridge.sources.prospero import ProsperoSource
    from bridge.sources.prospero_writer import ProsperoWriter

    if isinstance(source, NexudusSource):
        return NexudusWriter(source.client, name=source.name, customer=customer)
    if isinstance(source, NexudusPortalSource):
        from bridge.sources.nexudus_portal_writer import NexudusPortalWriter

        # The portal always books as its member: there is no customer to choose.
        return NexudusPortalWriter(source.client, name=source.name)
    if isinstance(source, OfficeRndSource):
        return OfficeRndWriter(source.client, name=source.name, customer=customer)
    if isinstance(source, ProsperoSource):
        return ProsperoWriter(source, name=source.name, customer=customer)
    return None
