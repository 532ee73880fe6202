"""Nexudus bookings of a room, read incrementally through the admin API.

A repeat series is one booking whose members are materialised rows; any change to one member
(or its cancellation) re-reads the whole series by ``RepeatSeriesUniqueId``, because the
recurrence is derived from all members together. The cursor is a small JSON document:

* ``updated``: the newest ``UpdatedOn`` seen (the client re-reads a safety margin before it);
* ``cancelled``: the newest ``CancelledOn`` seen in cancelled-booking snapshots;
* ``full_at``: when the last full read happened; a full read is repeated daily so bookings
  that enter the window's far edge without being edited are picked up.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bridge.model import Booking, Room, Window
from bridge.providers.nexudus import NexudusClient, parse_nexudus_time
from bridge.sources.base import SourceRead
from mappings import nexudus as nexudus_mapping
from mappings.errors import UnknownTimezone
from mappings.timezones import resolve_zone

#: How often an incremental room is read in full anyway.
FULL_READ_EVERY = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class NexudusCursor:
    """Where the last read of a room stopped."""

    updated: datetime | None
    cancelled: datetime | None
    full_at: datetime

    def dumps(self) -> str:
        """The cursor as stored in the state store."""
        return json.dumps(
            {
                "updated": self.updated.isoformat() if self.updated else None,
                "cancelled": self.cancelled.isoformat() if self.cancelled else None,
                "full_at": self.full_at.isoformat(),
            }
        )

    @classmethod
    def loads(cls, text: str | None) -> NexudusCursor | None:
        """A stored cursor, or None when absent or unreadable (then a full read follows)."""
        if not text:
            return None
        try:
            data = json.loads(text)
            return cls(
                _optional_time(data.get("updated")),
                _optional_time(data.get("cancelled")),
                datetime.fromisoformat(data["full_at"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


def _optional_time(value: object) -> datetime | None:
    """An ISO time from the cursor, if any."""
    return datetime.fromisoformat(value) if isinstance(value, str) else None


class NexudusSource:
    """A Nexudus account as a booking source for the sync engine."""

    def __init__(self, client: NexudusClient, *, name: str) -> None:
        self.client = client
        self.name = name
        self._zones: dict[str, str] = {}

    def resource_timezone(self, resource: str) -> str:
        """The resource's business zone (Nexudus gives a Windows name) as an IANA name."""
        if resource not in self._zones:
            windows_name = self.client.resource_timezone(resource)
            try:
                self._zones[resource] = resolve_zone(windows_name, field="SimpleTimeZone")
            except UnknownTimezone as exc:
                raise UnknownTimezone(
                    f"resource {resource}: business time zone {windows_name!r} is unknown; "
                    "set `timezone` on the room",
                    field="timezone",
                ) from exc
        return self._zones[resource]

    def read(
        self, room: Room, cursor: str | None, window: Window, *, full: bool, now: datetime
    ) -> SourceRead:
        """The room's bookings changed since ``cursor``; everything when full or due."""
        previous = NexudusCursor.loads(cursor)
        zone = room.timezone
        if full or previous is None or now - previous.full_at >= FULL_READ_EVERY:
            return self._full_read(room, window, zone, now)
        return self._incremental_read(room, previous, zone)

    def _full_read(self, room: Room, window: Window, zone: str, now: datetime) -> SourceRead:
        """Every booking of the room in the window, series completed from all their members."""
        records = list(self.client.list_bookings(room.resource, window=window))
        series = {_series_of(r) for r in records} - {None}
        members = [
            member
            for sid in sorted(s for s in series if s)
            for member in self.client.list_series(sid)
        ]
        singles = [r for r in records if not _series_of(r)]
        bookings = self._bookings(_latest_by_id([*singles, *members]), zone)
        newest = _newest(records, "UpdatedOn")
        cursor = NexudusCursor(newest, newest, now)
        return SourceRead(bookings, [], cursor.dumps(), full=True)

    def _incremental_read(self, room: Room, previous: NexudusCursor, zone: str) -> SourceRead:
        """Bookings changed or cancelled since the cursor."""
        changed = list(self.client.list_bookings(room.resource, updated_since=previous.updated))
        since = previous.cancelled or previous.updated
        cancelled = list(self.client.list_cancelled(room.resource, since=since))
        touched_series = {_series_of(r) for r in [*changed, *cancelled]} - {None}
        removed = {_cancelled_key(c) for c in cancelled if not _series_of(c)}
        singles = [r for r in changed if not _series_of(r)]
        removed -= {str(r.get("Id")) for r in singles}
        bookings = self._bookings(_latest_by_id(singles), zone)
        for series_id in sorted(s for s in touched_series if s):
            members = list(self.client.list_series(series_id))
            if members:
                bookings.extend(self._bookings(_latest_by_id(members), zone))
            else:
                removed.add(series_id)
        cursor = NexudusCursor(
            _newest(changed, "UpdatedOn", previous.updated),
            _newest(cancelled, "CancelledOn", previous.cancelled or previous.updated),
            previous.full_at,
        )
        return SourceRead(bookings, sorted(removed), cursor.dumps(), full=False)

    def _bookings(self, records: list[Mapping[str, Any]], zone: str) -> list[Booking]:
        """Canonical bookings of records (series grouped)."""
        if not records:
            return []
        return nexudus_mapping.records_to_bookings(records, provider=self.name, timezone=zone)


def _series_of(record: Mapping[str, Any]) -> str | None:
    """The record's repeat series id, if it belongs to one."""
    value = record.get("RepeatSeriesUniqueId")
    return str(value) if value else None


def _cancelled_key(snapshot: Mapping[str, Any]) -> str:
    """The booking key a cancelled-booking snapshot stands for."""
    original = snapshot.get("OriginalBookingId") or snapshot.get("BookingId") or snapshot.get("Id")
    return str(original)


def _latest_by_id(records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """One record per Id (the listing may repeat a row updated while it ran), newest kept."""
    latest: dict[object, Mapping[str, Any]] = {}
    for record in records:
        key = record.get("Id")
        seen = latest.get(key)
        if seen is None or _updated(record) >= _updated(seen):
            latest[key] = record
    return list(latest.values())


def _updated(record: Mapping[str, Any]) -> datetime:
    """A record's UpdatedOn (the epoch when absent), for ordering."""
    return parse_nexudus_time(record.get("UpdatedOn")) or datetime.fromtimestamp(0).astimezone()


def _newest(
    records: Iterable[Mapping[str, Any]], field: str, floor: datetime | None = None
) -> datetime | None:
    """The newest value of a time field across records, never older than ``floor``."""
    newest = floor
    for record in records:
        value = parse_nexudus_time(record.get(field))
        if value is not None and (newest is None or value > newest):
            newest = value
    return newest
