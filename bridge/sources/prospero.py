"""Prospero bookings of a room, read in full every time.

Prospero's list endpoint has no filter at all (§3.3): one request returns every Booking of the
organisation, with their Events when ``returnEvents`` is set. So every read is full
(``SourceRead.full`` is always true, no cursor is kept) and is kept cheap: one request per
read, shared by every room of the provider for :data:`LISTING_REUSE` (a pass over many rooms
lists once), and only the room's live bookings are mapped.

Which bookings are a room's:

* the provider's ``booking_module`` selects the Bookings (``bookingModuleId``); bookings of
  other modules are never mapped, so a malformed one there cannot break this room;
* a room's ``resource`` is a Prospero **space id**: a Booking is the room's when its Event's
  ``spaceIds`` name that space (the linked Event once approved, the form's ``event`` answers
  while pending). A room whose ``resource`` is the booking module's id itself takes every
  booking of the module (a module that books one space needs no space ids). ``spaceIds`` is
  an assumption (the stored docs do not show the Event schema);
* only PENDING (tentative) and APPROVED (confirmed) bookings are live; DENIED and CANCELED
  ones are left out, so a full read makes them disappear from the calendar;
* bookings whose times miss the sync window are left out too (the listing holds the whole
  history of the organisation).

A live booking of the room that cannot be mapped fails the room's read with an error naming
it, rather than being left out: on a full read, leaving it out would delete it from the
calendar.

The room's time zone, when the room does not name one, is the organisation's ``timezone``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bridge.config import ProsperoConfig
from bridge.model import Booking, Room, Window
from bridge.providers.http import Clock, SystemClock
from bridge.providers.prospero import ProsperoClient
from bridge.sources.base import SourceRead
from mappings import prospero as prospero_mapping
from mappings.errors import UnknownTimezone
from mappings.expansion import expand
from mappings.timezones import resolve_zone

#: How long one listing serves the reads of the provider's rooms.
LISTING_REUSE = timedelta(seconds=15)

#: The states that show on a calendar: pending (tentative) and approved (confirmed).
LIVE_STATES = frozenset(
    {prospero_mapping.BookingState.PENDING, prospero_mapping.BookingState.APPROVED}
)

JsonObject = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class _Listing:
    """One list response and when (client monotonic seconds) it was read."""

    body: JsonObject
    read_at: float


class ProsperoSource:
    """A Prospero organisation's booking module as a booking source for the sync engine."""

    def __init__(
        self,
        client: ProsperoClient,
        *,
        name: str,
        booking_module: str,
        listing_reuse: timedelta = LISTING_REUSE,
        clock: Clock | None = None,
    ) -> None:
        self.client = client
        self.name = name
        self.booking_module = booking_module
        self._reuse = listing_reuse.total_seconds()
        self._clock = clock or SystemClock()
        self._listing: _Listing | None = None

    def __repr__(self) -> str:
        return (
            f"ProsperoSource(name={self.name!r}, booking_module={self.booking_module!r}, "
            f"client={self.client!r})"
        )

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()

    def resource_timezone(self, resource: str) -> str:
        """The organisation's IANA zone (Prospero keeps one zone apart from its UTC times)."""
        name = self.client.organization_timezone()
        try:
            return resolve_zone(name, field="timezone")
        except UnknownTimezone as exc:
            raise UnknownTimezone(
                f"space {resource}: time zone {name!r} is unknown; set `timezone` on the room",
                field="timezone",
            ) from exc

    def read(
        self, room: Room, cursor: str | None, window: Window, *, full: bool, now: datetime
    ) -> SourceRead:
        """The room's live bookings meeting the window: always a full read."""
        before = self.client.request_count
        listing = self._current_listing(fresh=full)
        bookings = room_bookings(
            listing,
            booking_module=self.booking_module,
            room=room,
            provider=self.name,
            window=window,
        )
        return SourceRead(
            bookings, [], None, full=True, requests=self.client.request_count - before
        )

    def listing(self, *, fresh: bool = False) -> JsonObject:
        """The organisation's list response (``returnEvents``), reused while recent."""
        return self._current_listing(fresh=fresh)

    def forget_listing(self) -> None:
        """Drop the reused listing: the bookings changed (the writer submitted or cancelled)."""
        self._listing = None

    def _current_listing(self, *, fresh: bool) -> JsonObject:
        """The list response, reused while recent unless a ``fresh`` one is asked for."""
        listing, now = self._listing, self._clock.monotonic()
        if fresh or listing is None or now - listing.read_at >= self._reuse:
            listing = _Listing(self.client.list_bookings(return_events=True), now)
            self._listing = listing
        return listing.body


def room_bookings(
    listing: JsonObject, *, booking_module: str, room: Room, provider: str, window: Window
) -> list[Booking]:
    """The canonical live bookings of ``room`` in a list response that meet ``window``."""
    raw_bookings = listing.get("bookings")
    if not isinstance(raw_bookings, Mapping):
        return []
    events = _events_by_id(listing.get("associatedEvents"))
    chosen = {
        key: raw
        for key, raw in raw_bookings.items()
        if isinstance(raw, Mapping)
        and raw.get("bookingModuleId") == booking_module
        and _is_live(raw)
        and (room.resource == booking_module or room.resource in _spaces(raw, events))
    }
    if not chosen:
        return []
    mapped = prospero_mapping.from_json(
        {"bookings": chosen, "associatedEvents": list(events.values())},
        provider=provider,
        timezone=room.timezone,
    )
    return [
        booking.evolve(resource=room.resource)
        for booking in mapped
        if any(occurrence.status.is_live for occurrence in expand(booking, window))
    ]


def _is_live(raw: JsonObject) -> bool:
    """Whether a Booking shows on calendars.

    An unreadable status counts as live, so the mapping reports it instead of the booking
    silently vanishing.
    """
    value = raw.get("bookingStatus")
    try:
        if isinstance(value, str):
            return prospero_mapping.BookingState[value.strip().upper()] in LIVE_STATES
        if isinstance(value, int) and not isinstance(value, bool):
            return prospero_mapping.BookingState(value) in LIVE_STATES
    except (KeyError, ValueError):
        pass
    return True


def _events_by_id(events: object) -> dict[str, JsonObject]:
    """The associated Events by id (anything malformed is left to the mapping to report)."""
    if not isinstance(events, list):
        return {}
    return {
        event["id"]: event
        for event in events
        if isinstance(event, Mapping) and isinstance(event.get("id"), str)
    }


def _spaces(raw: JsonObject, events: Mapping[str, JsonObject]) -> frozenset[str]:
    """The spaces a Booking occupies: its linked Event's, else its form answers'."""
    event_id = raw.get("eventId")
    source = events.get(event_id) if isinstance(event_id, str) else None
    if source is None:
        answers = raw.get("event")
        source = answers if isinstance(answers, Mapping) else {}
    spaces = source.get("spaceIds")
    if not isinstance(spaces, list):
        return frozenset()
    return frozenset(space for space in spaces if isinstance(space, str))


def build_prospero_source(config: ProsperoConfig, name: str) -> ProsperoSource:
    """The source of one ``kind = "prospero"`` provider configuration."""
    client = ProsperoClient(
        config.username, config.password.reveal(), base_url=config.base_url, name=name
    )
    return ProsperoSource(client, name=name, booking_module=config.booking_module)
