"""Assembles the configured parts: the state store, provider sources, calendar backends, rooms.

The commands and the scheduler ask a :class:`Runtime` for what they need; it builds each part
once, from the validated configuration, and closes them all at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Self

from bridge.calendars.base import CalendarBackend
from bridge.calendars.caldav import CalDAVCalendar
from bridge.config import (
    CalDavConfig,
    Config,
    GoogleConfig,
    NexudusConfig,
    Office365Config,
    OfficeRndConfig,
    ProsperoConfig,
    RoomConfig,
)
from bridge.errors import ConfigError
from bridge.feeds.refresh import FeedSettings, refresh_room_feed
from bridge.model import Room, Window
from bridge.providers.nexudus import NexudusClient
from bridge.sources.base import BookingSource
from bridge.sources.nexudus import NexudusSource
from bridge.sources.nexudus_portal import build_nexudus_portal_source
from bridge.sources.officernd import build_officernd_source
from bridge.sources.writers import build_writer
from bridge.state.store import StateStore
from bridge.sync.engine import PassOptions, RoomResult, RoomSync

#: The store cursor remembering a room's provider-given time zone.
ZONE_CURSOR = "timezone"


def utc_now() -> datetime:
    """The wall clock, in UTC (the one clock read of a pass, injected everywhere else)."""
    return datetime.now(UTC)


class Runtime:
    """Configured parts, built lazily and closed together."""

    def __init__(self, config: Config, *, clock: Callable[[], datetime] = utc_now) -> None:
        self.config = config
        self.clock = clock
        self._store: StateStore | None = None
        self._sources: dict[str, BookingSource] = {}
        self._calendars: dict[str, CalendarBackend] = {}
        self._closers: list[Callable[[], None]] = []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every client and the store."""
        for closer in reversed(self._closers):
            closer()
        self._closers.clear()

    @property
    def store(self) -> StateStore:
        """The state store, opened (and migrated) on first use."""
        if self._store is None:
            self._store = StateStore.open(self.config.state.url)
            self._closers.append(self._store.close)
        return self._store

    def window(self) -> Window:
        """The sync window around now."""
        sync = self.config.sync
        return Window.around(self.clock(), sync.past_days, sync.future_days)

    def source(self, provider_name: str) -> BookingSource:
        """The booking source of a configured provider."""
        if provider_name not in self._sources:
            self._sources[provider_name] = self._build_source(provider_name)
        return self._sources[provider_name]

    def _build_source(self, name: str) -> BookingSource:
        """A source for one provider configuration."""
        provider = self.config.providers[name]
        if isinstance(provider, NexudusConfig):
            if provider.api == "portal":
                portal = build_nexudus_portal_source(provider, name)
                self._closers.append(portal.close)
                return portal
            if provider.api != "admin":
                raise ConfigError(f"providers.{name}: api = {provider.api!r} is not supported yet")
            client = NexudusClient(
                provider.username,
                provider.password.reveal(),
                base_url=provider.base_url,
                auth="basic" if provider.auth == "basic" else "bearer",
                client_id=provider.client_id,
                name=name,
            )
            self._closers.append(client.close)
            return NexudusSource(client, name=name)
        elif isinstance(provider, OfficeRndConfig):
            source = build_officernd_source(provider, name)
            self._closers.append(source.close)
            return source
        elif isinstance(provider, ProsperoConfig):
            from bridge.sources.prospero import build_prospero_source

            prospero = build_prospero_source(provider, name)
            self._closers.append(prospero.close)
            return prospero
        raise ConfigError(f"providers.{name}: kind {provider.kind!r} cannot be synced yet")

    def calendar(self, room: RoomConfig) -> CalendarBackend | None:
        """The calendar backend of a room's collection, or None for a feed-only room."""
        if room.calendar is None or room.calendar_id is None:
            return None
        key = f"{room.calendar}\x00{room.calendar_id}"
        if key not in self._calendars:
            self._calendars[key] = self._build_calendar(room.calendar, room.calendar_id)
        return self._calendars[key]

    def _build_calendar(self, name: str, calendar_id: str) -> CalendarBackend:
        """A backend for one calendar configuration and room collection."""
        calendar = self.config.calendars[name]
        if isinstance(calendar, CalDavConfig):
            backend = CalDAVCalendar(
                calendar.url,
                calendar_id,
                username=calendar.username,
                password=calendar.password.reveal() if calendar.password else None,
            )
            self._closers.append(backend.close)
            return backend
        elif isinstance(calendar, Office365Config):
            from bridge.calendars.office365 import build_office365_calendar

            graph = build_office365_calendar(calendar, calendar_id, window=self.window)
            self._closers.append(graph.close)
            return graph
        elif isinstance(calendar, GoogleConfig):
            from bridge.calendars.google import build_google_calendar

            google = build_google_calendar(calendar, calendar_id)
            self._closers.append(google.close)
            return google
        raise ConfigError(f"calendars.{name}: kind {calendar.kind!r} cannot be synced yet")

    def room(self, room: RoomConfig, *, ask_provider: bool = False) -> Room:
        """The model room; a zone the file leaves out is the provider's, remembered in the store.

        Remembering it spares three provider requests per pass; ``--full`` and ``check`` ask
        again (``ask_provider``), so a changed business zone is picked up.
        """
        if room.timezone:
            return room.to_room()
        zone = None if ask_provider else self.store.get_cursor(room.id, ZONE_CURSOR)
        if zone is None:
            zone = self.source(room.provider).resource_timezone(room.resource)
            self.store.set_cursor(room.id, ZONE_CURSOR, zone, self.clock())
        return room.to_room(zone)

    def sync_room(self, room: RoomConfig, options: PassOptions) -> RoomResult:
        """One sync pass of one room."""
        engine = RoomSync(
            self.room(room, ask_provider=options.full),
            self.source(room.provider),
            self.calendar(room),
            self.store,
            clock=self.clock,
            writer=build_writer(self.source(room.provider), customer=room.default_customer),
        )
        result = engine.run(options)
        if not options.dry_run:
            # Feeds are rendered here, once per change, so serving them is a concatenation.
            refresh_room_feed(self.store, FeedSettings.of(self.config, room), self.clock())
        return result

    def describe(self) -> dict[str, Any]:
        """What is configured, without secrets (for check/status output)."""
        return {
            "config": str(self.config.path),
            "state": repr(self.config.state),
            "rooms": [room.id for room in self.config.rooms],
        }
