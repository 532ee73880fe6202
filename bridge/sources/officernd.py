"""OfficeRnD bookings of a room, read incrementally through the v2 API.

``/bookings`` lists one row per recurring series; its instances come only from
``/bookings/occurrences``. Whenever a series is read (it changed, or the read is full), its
occurrences over the sync window are read too and mapped with ``covered=window``: cancelled
instances become EXDATEs, moved ones overrides (``mappings.officernd``).

What an incremental read can and cannot see:

* edits and cancellations bump ``modifiedAt`` (a cancel keeps the record, marked
  ``isCancelled``), so ``modifiedAt[$gte]`` finds them;
* a ``DELETE`` leaves no trace in any listing: deletions are found by a full read, which
  happens on ``--full`` and at least every :data:`FULL_READ_EVERY` (then every booking the
  read does not return is gone);
* whether cancelling or moving a single occurrence bumps its series' ``modifiedAt`` is not
  documented. This source assumes it does; if it does not, such a change shows up at the next
  full read. The same holds for a booking moved to another resource, and for series instants
  that enter the window's far edge (their occurrences were read for an older window).

A booking that cannot be mapped fails the room's read with an error naming it, rather than
being left out: on a full read, leaving it out would delete it from the calendar.

The cursor is a small JSON document: ``modified``, the newest ``modifiedAt`` seen (the client
re-reads a safety margin before it), and ``full_at``, when the last full read happened.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge.config import OfficeRndConfig
from bridge.model import Booking, Room, Window
from bridge.providers.officernd import OfficeRndClient, parse_instant
from bridge.sources.base import SourceRead
from mappings import officernd as officernd_mapping
from mappings.errors import UnknownTimezone
from mappings.timezones import resolve_zone

#: How often an incremental room is read in full anyway (deletions, moved occurrences).
FULL_READ_EVERY = timedelta(hours=24)

JsonObject = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class OfficeRndCursor:
    """Where the last read of a room stopped."""

    modified: datetime | None
    full_at: datetime

    def dumps(self) -> str:
        """The cursor as stored in the state store."""
        return json.dumps(
            {
                "modified": self.modified.isoformat() if self.modified else None,
                "full_at": self.full_at.isoformat(),
            }
        )

    @classmethod
    def loads(cls, text: str | None) -> OfficeRndCursor | None:
        """A stored cursor, or None when absent or unreadable (then a full read follows)."""
        if not text:
            return None
        try:
            data = json.loads(text)
            modified = data.get("modified")
            return cls(
                datetime.fromisoformat(modified) if isinstance(modified, str) else None,
                datetime.fromisoformat(data["full_at"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


class OfficeRndSource:
    """An OfficeRnD organisation as a booking source for the sync engine."""

    def __init__(self, client: OfficeRndClient, *, name: str) -> None:
        self.client = client
        self.name = name

    def __repr__(self) -> str:
        return f"OfficeRndSource(name={self.name!r}, client={self.client!r})"

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()

    def resource_timezone(self, resource: str) -> str:
        """The resource's IANA zone, as OfficeRnD gives it."""
        name = self.client.resource_timezone(resource)
        try:
            return resolve_zone(name, field="timezone")
        except UnknownTimezone as exc:
            raise UnknownTimezone(
                f"resource {resource}: time zone {name!r} is unknown; set `timezone` on the room",
                field="timezone",
            ) from exc

    def read(
        self, room: Room, cursor: str | None, window: Window, *, full: bool, now: datetime
    ) -> SourceRead:
        """The room's bookings changed since ``cursor``; everything when full or due."""
        previous = OfficeRndCursor.loads(cursor)
        before = self.client.request_count
        if full or previous is None or _full_read_due(previous, now):
            read = self._full_read(room, window, now)
        else:
            read = self._incremental_read(room, previous, window)
        return SourceRead(
            read.bookings,
            read.removed,
            read.cursor,
            full=read.full,
            requests=self.client.request_count - before,
        )

    def _full_read(self, room: Room, window: Window, now: datetime) -> SourceRead:
        """Every booking of the room whose series meets the window."""
        objects = _latest_by_id(self.client.list_bookings(room.resource, window=window))
        cursor = OfficeRndCursor(_newest(objects), now)
        return SourceRead(self._bookings(objects, room, window), [], cursor.dumps(), full=True)

    def _incremental_read(
        self, room: Room, previous: OfficeRndCursor, window: Window
    ) -> SourceRead:
        """Bookings changed (or cancelled) since the cursor."""
        changed = self.client.list_bookings(room.resource, modified_since=previous.modified)
        objects = _latest_by_id(changed)
        cursor = OfficeRndCursor(_newest(objects, previous.modified), previous.full_at)
        return SourceRead(self._bookings(objects, room, window), [], cursor.dumps(), full=False)

    def _bookings(self, objects: list[JsonObject], room: Room, window: Window) -> list[Booking]:
        """Canonical bookings, each live series completed with its occurrences in the window."""
        return [
            officernd_mapping.booking_from_object(
                self._with_occurrences(obj, window),
                provider=self.name,
                timezone=room.timezone,
                covered=window,
            )
            for obj in objects
        ]

    def _with_occurrences(self, obj: JsonObject, window: Window) -> JsonObject:
        """A live series object with its ``occurrences`` over the window; others as they are."""
        if not _is_series(obj) or _is_cancelled(obj):
            return obj
        booking_id = str(obj.get("_id"))
        listed = list(self.client.list_occurrences(window, booking=booking_id))
        return {**obj, "occurrences": [o for o in listed if o.get("bookingId") == booking_id]}


def build_officernd_source(config: OfficeRndConfig, name: str) -> OfficeRndSource:
    """The source of one ``kind = "officernd"`` provider configuration."""
    client = OfficeRndClient(
        config.client_id,
        config.client_secret.reveal(),
        org=config.org,
        base_url=config.base_url,
        token_url=config.token_url,
        name=name,
    )
    return OfficeRndSource(client, name=name)


def _full_read_due(previous: OfficeRndCursor, now: datetime) -> bool:
    """Whether an incremental read must be a full one this time.

    With no ``modifiedAt`` seen yet there is no provider time to read from, and reading an
    empty room in full costs the same single request.
    """
    return previous.modified is None or now - previous.full_at >= FULL_READ_EVERY


def _is_series(obj: JsonObject) -> bool:
    """Whether the object carries a recurrence rule."""
    recurrence = obj.get("recurrence")
    return isinstance(recurrence, Mapping) and bool(recurrence.get("rrule"))


def _is_cancelled(obj: JsonObject) -> bool:
    """Whether the whole booking is cancelled (v2 ``isCancelled`` or v1 ``canceled``)."""
    return obj.get("isCancelled") is True or obj.get("canceled") is True


def _latest_by_id(objects: Iterable[JsonObject]) -> list[JsonObject]:
    """One object per ``_id`` (the newest ``modifiedAt`` wins), in listing order."""
    latest: dict[object, JsonObject] = {}
    for obj in objects:
        key = obj.get("_id")
        seen = latest.get(key)
        if seen is None or _modified(obj) >= _modified(seen):
            latest[key] = obj
    return list(latest.values())


def _modified(obj: JsonObject) -> datetime:
    """An object's ``modifiedAt`` (the epoch when absent), for ordering."""
    return parse_instant(obj.get("modifiedAt")) or datetime.fromtimestamp(0, UTC)


def _newest(objects: Iterable[JsonObject], floor: datetime | None = None) -> datetime | None:
    """The newest ``modifiedAt`` across objects, never older than ``floor``."""
    newest = floor
    for obj in objects:
        value = parse_instant(obj.get("modifiedAt"))
        if value is not None and (newest is None or value > newest):
            newest = value
    return newest
