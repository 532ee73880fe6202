"""Nexudus bookings of a room, read through the members-portal API (``api = "portal"``).

The portal has no "changed since" filter and no deletion feed, so every read lists the whole
window and is a full read: a booking the listing no longer returns is gone. Each list item is
one booking (the portal exposes no repeat-series id, so a series shows as separate singles).

Community events (``fullCalendarEvents``) whose ``resourceId`` is the room's resource occupy
the room: each becomes a confirmed booking keyed ``event-<id>`` and titled with the event's
title. Events with no room (``resourceId: 0``) or no duration occupy nothing and are skipped.

The portal writes LOCAL wall-clock times, so the room's ``timezone`` must be configured; a
room without one is a configuration error naming the fix. Range parameters are whole local
dates widened by :data:`RANGE_MARGIN` on both sides (the portal returns only items lying wholly
inside the range), then items are kept when they overlap the window.

A booking that cannot be mapped fails the room's read with an error naming it, rather than
being left out: leaving it out of a full read would delete it from the calendar.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bridge.config import NexudusConfig
from bridge.errors import ConfigError
from bridge.model import Booking, BookingStatus, Room, Window
from bridge.providers.nexudus_portal import NexudusPortalClient
from bridge.sources.base import SourceRead
from mappings import nexudus as nexudus_mapping

#: How far beyond the window each list call reaches, so items crossing its edges are seen.
RANGE_MARGIN = timedelta(days=7)
#: Key prefix of bookings made from community events (their ids are another sequence).
EVENT_PREFIX = "event-"

JsonObject = Mapping[str, Any]


class NexudusPortalSource:
    """A Nexudus members portal as a booking source for the sync engine."""

    def __init__(self, client: NexudusPortalClient, *, name: str) -> None:
        self.client = client
        self.name = name

    def __repr__(self) -> str:
        return f"NexudusPortalSource(name={self.name!r}, client={self.client!r})"

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()

    def resource_timezone(self, resource: str) -> str:
        """Never known: the portal gives local times and no zone, so the room must name one."""
        raise ConfigError(
            f"providers.{self.name}: the Nexudus members portal gives local times without a "
            f"time zone; set `timezone` on the room of resource {resource} "
            '(e.g. timezone = "Europe/London")'
        )

    def read(
        self, room: Room, cursor: str | None, window: Window, *, full: bool, now: datetime
    ) -> SourceRead:
        """Every booking and room-occupying event of the room in the window (always full)."""
        zone = ZoneInfo(room.timezone)
        first, last = local_range(window, zone)
        before = self.client.request_count
        items = self.client.list_bookings(room.resource, first, last)
        events = [
            event
            for event in self.client.list_events(first, last)
            if str(event.get("resourceId")) == room.resource
        ]
        bookings = [self._booking(item, room.timezone) for item in items]
        bookings += [b for b in (self._event(e, room.timezone) for e in events) if b is not None]
        inside = [b for b in bookings if window.overlaps(b.start, b.end)]
        return SourceRead(
            inside,
            [],
            json.dumps({"full_at": now.isoformat()}),
            full=True,
            requests=self.client.request_count - before,
        )

    def _booking(self, item: JsonObject, zone: str) -> Booking:
        """One ``fullCalendarBookings`` item as a booking."""
        return nexudus_mapping.record_to_booking(item, provider=self.name, timezone=zone)

    def _event(self, item: JsonObject, zone: str) -> Booking | None:
        """One room-occupying community event as a booking; None when it has no duration."""
        if item.get("start") == item.get("end"):
            return None
        # The item is mapped like a booking item (same time convention), then given the
        # event's identity and title: it has no booker, and its id is not a booking id.
        booking = nexudus_mapping.record_to_booking(
            {**item, "coworkerFullName": None, "coworkerEmail": None},
            provider=self.name,
            timezone=zone,
        )
        title = item.get("title")
        return booking.evolve(
            key=f"{EVENT_PREFIX}{item.get('id')}",
            title=title if isinstance(title, str) and title else booking.title,
            status=BookingStatus.CONFIRMED,
            private=False,
            extra=(("Event", "true"),),
        )


def local_range(window: Window, zone: ZoneInfo) -> tuple[date, date]:
    """The local dates a list call covers: the window in ``zone``, widened by the margin."""
    first = (window.start - RANGE_MARGIN).astimezone(zone).date()
    last = (window.end + RANGE_MARGIN).astimezone(zone).date()
    return first, last


def build_nexudus_portal_source(config: NexudusConfig, name: str) -> NexudusPortalSource:
    """The source of one ``kind = "nexudus"``, ``api = "portal"`` provider configuration.

    The portal always takes HTTP Basic auth with the member's email (``username``) and
    password; ``base_url`` is the space's portal host, ``https://{space}.spaces.nexudus.com``.
    """
    client = NexudusPortalClient(
        config.username,
        config.password.reveal(),
        base_url=config.base_url,
        name=name,
    )
    return NexudusPortalSource(client, name=name)
