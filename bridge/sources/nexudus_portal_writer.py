"""Bookings made from calendar requests through the Nexudus members portal (``api = "portal"``).

The portal books as the logged-in member (who is therefore the one billed), has no repeat
series and no update call the bridge can rely on, so:

- every occurrence is one booking, asked about first with the portal's own availability call
  (``search``: ``IsAvailable`` and its ``ErrorCode``/``Message``), then made with
  ``newBookingJson``; a refusal of either cancels what the same call made and becomes
  :class:`~bridge.sources.writers.Refused` with the portal's words;
- a recurring request is booked inside the pass's window and extended by later passes
  (:class:`~bridge.sources.writers.WindowedWriter`);
- an occurrence the portal calls ``NO_PAST_BOOKINGS`` is over: it is skipped, not refused;
- a change re-books: the old bookings are deleted, the new ones made, and when those are
  refused the old ones are made again (a slot taken in between is reported, not hidden);
- the request's marker rides on the last line of ``Notes`` (the portal has no external-id
  field), which is how an interrupted pass finds what it made.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from bridge.model import Booking, BookingStatus, Room, Window
from bridge.providers.errors import ProviderConflict, ProviderNotFound, ProviderValidationError
from bridge.providers.nexudus import parse_nexudus_time
from bridge.providers.nexudus_portal import NexudusPortalClient
from bridge.sources.nexudus_portal import local_range
from bridge.sources.writers import Refused, extension_part, refusal_reason
from mappings.expansion import expand

#: The portal's code for a slot that has already begun: nothing left to book.
PAST = "NO_PAST_BOOKINGS"


@dataclass(frozen=True, slots=True)
class Slot:
    """One booking the portal is asked for."""

    start: datetime
    end: datetime
    tentative: bool
    notes: str


class NexudusPortalWriter:
    """Calendar requests booked as the portal member, one booking per occurrence."""

    def __init__(self, client: NexudusPortalClient, *, name: str) -> None:
        self.client = client
        self.name = name

    def __repr__(self) -> str:
        return f"NexudusPortalWriter(name={self.name!r})"

    def find(self, room: Room, marker: str, window: Window) -> list[str]:
        """Ids of the room's bookings whose notes end with the marker."""
        return sorted(str(item["id"]) for item in self._marked_items(room, marker, window))

    def create(self, room: Room, booking: Booking, marker: str, window: Window) -> list[str]:
        """Each occurrence in the window, checked and booked; all or nothing."""
        return self._book_some(room, _slots(booking, window, marker, None))

    def horizon(self, booking: Booking, window: Window) -> datetime | None:
        """A series is only ever booked up to the window's end."""
        return window.end if booking.is_recurring else None

    def extend(
        self, room: Room, booking: Booking, marker: str, since: datetime, window: Window
    ) -> list[str]:
        """Book the occurrences from ``since`` that have no marked booking yet."""
        part = extension_part(since, window)
        if part is None:
            return []
        existing = {
            _start_of(item, room): str(item["id"])
            for item in self._marked_items(room, marker, part)
        }
        wanted = [
            slot for slot in _slots(booking, part, marker, since) if slot.start not in existing
        ]
        made = self._book(room, wanted)
        kept = [key for start, key in existing.items() if start is not None and start >= since]
        return sorted({*kept, *made})

    def change(
        self, room: Room, keys: Sequence[str], booking: Booking, marker: str, window: Window
    ) -> list[str]:
        """Re-book: delete the old bookings, make the new ones, or put the old ones back."""
        old = [self._slot_of(key, marker) for key in keys]
        self.cancel(room, keys)
        try:
            return self._book_some(room, _slots(booking, window, marker, None))
        except Refused as exc:
            kept = self._book(room, [slot for slot in old if slot is not None])
            raise Refused(exc.reason, kept=kept) from exc

    def cancel(self, room: Room, keys: Sequence[str]) -> None:
        """Delete the bookings (one already gone is fine)."""
        for key in keys:
            try:
                self.client.delete_booking(int(key))
            except ProviderNotFound:
                continue

    def cancel_occurrences(
        self, room: Room, keys: Sequence[str], starts: Sequence[datetime]
    ) -> None:
        """Delete the bookings that start at one of ``starts``."""
        wanted = {start.astimezone(UTC) for start in starts}
        doomed = [
            key for key in keys
            if (slot := self._slot_of(key, "")) is not None and slot.start in wanted
        ]
        self.cancel(room, doomed)

    # ----- internals ---------------------------------------------------------------------------

    def _book_some(self, room: Room, slots: Sequence[Slot]) -> list[str]:
        """Like :meth:`_book`, but a request whose every slot is over is refused."""
        past: list[str] = []
        made = self._book(room, slots, past)
        if slots and not made:
            raise Refused(past[0] if past else "nothing left to book")
        return made

    def _book(self, room: Room, slots: Sequence[Slot], past: list[str] | None = None) -> list[str]:
        """Ask about and book each slot (``past`` collects why some were over); all or none."""
        zone = ZoneInfo(room.timezone)
        made: list[str] = []
        try:
            for slot in slots:
                answer = self.client.availability(room.resource, slot.start, slot.end, zone)
                if answer.error_code == PAST:
                    if past is not None:
                        past.append(answer.message or "the time has passed")
                    continue
                if not answer.available:
                    raise Refused(answer.message or answer.error_code or "the room is not free")
                try:
                    booking_id = self.client.create_booking(
                        room.resource, slot.start, slot.end, zone,
                        tentative=slot.tentative, notes=slot.notes,
                    )
                except (ProviderConflict, ProviderValidationError) as exc:
                    raise Refused(refusal_reason(exc)) from exc
                made.append(str(booking_id))
        except BaseException:
            self.cancel(room, made)
            raise
        return made

    def _marked_items(self, room: Room, marker: str, window: Window) -> list[dict[str, Any]]:
        """The room's list items around the window whose notes carry the marker."""
        first, last = local_range(window, ZoneInfo(room.timezone))
        return [
            item
            for item in self.client.list_bookings(room.resource, first, last)
            if _carries(item.get("notes"), marker)
        ]

    def _slot_of(self, key: str, marker: str) -> Slot | None:
        """A live booking as the slot that would make it again; None when it is gone."""
        try:
            value = self.client.get_booking(int(key)).get("Value")
        except ProviderNotFound:
            return None
        if not isinstance(value, Mapping):
            return None
        start = parse_nexudus_time(value.get("FromTime"))
        end = parse_nexudus_time(value.get("ToTime"))
        if start is None or end is None:
            return None
        notes = value.get("Notes")
        return Slot(start.astimezone(UTC), end.astimezone(UTC), value.get("Tentative") is True,
                    notes if isinstance(notes, str) else marker)


def _slots(booking: Booking, window: Window, marker: str, since: datetime | None) -> list[Slot]:
    """The live occurrences in the window (from ``since``), as marked slots."""
    notes = f"{booking.description}\n{marker}" if booking.description else marker
    return [
        Slot(o.start.astimezone(UTC), o.end.astimezone(UTC),
             o.status is BookingStatus.TENTATIVE, notes)
        for o in expand(booking, window)
        if o.status.is_live and (since is None or o.start.astimezone(UTC) >= since)
    ]


def _carries(notes: object, marker: str) -> bool:
    """Whether a booking's notes end with the marker line."""
    return isinstance(notes, str) and notes.rstrip().splitlines()[-1:] == [marker]


def _start_of(item: Mapping[str, Any], room: Room) -> datetime | None:
    """A list item's start (local wall clock written with a ``Z``), in UTC."""
    start = parse_nexudus_time(item.get("start"))
    if start is None:
        return None
    local = start.replace(tzinfo=None).replace(tzinfo=ZoneInfo(room.timezone))
    return local.astimezone(UTC)
