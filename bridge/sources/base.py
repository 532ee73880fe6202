"""What the sync engine asks of a booking provider: a room's bookings, incrementally.

A source joins a provider client (I/O) and its mapping (pure): it reads what changed since a
cursor and returns canonical bookings. The engine keeps the last known bookings in the state
store, so a source only reports changes; ``full`` reads report everything and let the engine
treat every missing key as gone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from bridge.model import Booking, Room, Window


@dataclass(frozen=True, slots=True)
class SourceRead:
    """The outcome of reading one room from a provider."""

    bookings: list[Booking] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    cursor: str | None = None
    full: bool = False
    requests: int = 0


class BookingSource(Protocol):
    """A provider, as the sync engine uses it."""

    def resource_timezone(self, resource: str) -> str:
        """The IANA zone the provider gives a resource (for rooms configured without one)."""
        ...

    def read(
        self, room: Room, cursor: str | None, window: Window, *, full: bool, now: datetime
    ) -> SourceRead:
        """Bookings of the room changed since ``cursor`` (everything when ``full``)."""
        ...
