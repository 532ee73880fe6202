"""Writing bookings to a provider on behalf of calendar requests: the ``BookingWriter`` side.

A writer creates, moves and cancels the provider bookings behind a calendar request. Every
create carries a marker of the event's UID in a provider field (Nexudus ``SystemId``), so a
pass interrupted between the provider create and the calendar tag finds the booking it already
made (:meth:`BookingWriter.find`) and adopts it instead of booking the room twice.

A provider refusal (the slot is taken, outside opening hours, too long) raises
:class:`Refused` with the provider's reason; a multi-part create that is refused half way
cancels the parts already made, so nothing is left half-created.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from bridge.errors import BridgeError
from bridge.model import Booking, Room, Window
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
    """The provider refused the booking; ``reason`` is its message, safe to show the organizer."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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


class NexudusWriter:
    """Bookings through the Nexudus admin API: repeat series when expressible, else singles."""

    def __init__(self, client: NexudusClient, *, name: str, customer: str | None = None):
        self.client = client
        self.name = name
        self.customer = customer

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
        bodies = nexudus_mapping.booking_to_create_bodies(
            booking.evolve(resource=room.resource), window
        )
        created: list[str] = []
        for body in bodies:
            try:
                booking_id = self.client.create_booking(self._marked(body, marker))
            except (ProviderConflict, ProviderValidationError) as exc:
                self.cancel(room, created)
                raise Refused(_refusal(exc)) from exc
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
                raise Refused(_refusal(exc)) from exc
            return list(keys)
        # Nexudus cannot reshape a series in place: the old bookings give way to the new ones.
        self.cancel(room, keys)
        return self.create(room, booking, marker, window)

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

    def _marked(self, body: Mapping[str, Any], marker: str) -> dict[str, Any]:
        """A body carrying the request marker (and the default customer when configured)."""
        marked = {**body, "SystemId": marker}
        if self.customer is not None and not marked.get("CoworkerId"):
            marked["CoworkerId"] = int(self.customer) if self.customer.isdigit() else self.customer
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


def _refusal(exc: ProviderError) -> str:
    """The provider's own words for a refusal (field messages first)."""
    messages = [error.message for error in exc.errors if error.message]
    return "; ".join(dict.fromkeys(messages)) or exc.message or "the provider refused the booking"


def build_writer(source: BookingSource, *, customer: str | None = None) -> BookingWriter | None:
    """The writer over a source's client, for providers that take bookings from calendars."""
    from bridge.sources.nexudus import NexudusSource
    from bridge.sources.officernd import OfficeRndSource
    from bridge.sources.officernd_writer import OfficeRndWriter
    from bridge.sources.prospero import ProsperoSource
    from bridge.sources.prospero_writer import ProsperoWriter

    if isinstance(source, NexudusSource):
        return NexudusWriter(source.client, name=source.name, customer=customer)
    if isinstance(source, OfficeRndSource):
        return OfficeRndWriter(source.client, name=source.name, customer=customer)
    if isinstance(source, ProsperoSource):
        return ProsperoWriter(source, name=source.name, customer=customer)
    return None
