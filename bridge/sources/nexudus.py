"""Nexudus bookings of a room, read incrementally through the admin API.

A repeat series is one booking whose members are materialised rows; any change to one member
(or its cancellation) re-reads the whole series by ``RepeatSeriesUniqueId``, because the
recurrence is derived from all members together. The cursor is a small JSON document:

* ``updated``: the newest ``UpdatedOn`` seen (the client re-reads a safety margin before it);
* ``cancelled``: the newest ``CancelledOn`` seen in cancelled-booking snapshots;
* ``full_at``: when the last full read happened; a full read is repeated daily so bookings
  that enter the window's far edge without being edited are picked up;
* ``seen``: the versions (``Id``, ``UpdatedOn``, content digest) of the bookings, and of the
  cancelled-booking snapshots (with ``CancelledOn``), already read near each watermark.

The client re-reads a safety margin before each watermark (Nexudus filters to the minute), so
the rows last seen come back on every pass until something newer moves the watermark. Those
rows carry nothing new: they are dropped by their version (the digest of the whole row too,
so an edit stamped within the same second as the row last read still counts). A quiet pass
therefore costs the two list pages and never re-reads a series whose members did not change.
Nexudus paces *every* call (1 per 100 ms and 120/min; writes also 60/min, reference §2.12),
so each needless series read would cost real seconds.
"""

from __future__ import annotations

import hashlib
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
#: How far before a watermark seen versions are remembered: the client's re-read margin
#: (two minutes) plus the minute the filter floors to, plus slack.
SEEN_HORIZON = timedelta(minutes=5)

#: A row's version: its Id, its UpdatedOn (or CancelledOn) as Nexudus wrote it, a digest.
Version = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class NexudusCursor:
    """Where the last read of a room stopped."""

    updated: datetime | None
    cancelled: datetime | None
    full_at: datetime
    seen: frozenset[Version] = frozenset()
    seen_cancelled: frozenset[Version] = frozenset()

    def dumps(self) -> str:
        """The cursor as stored in the state store."""
        return json.dumps(
            {
                "updated": self.updated.isoformat() if self.updated else None,
                "cancelled": self.cancelled.isoformat() if self.cancelled else None,
                "full_at": self.full_at.isoformat(),
                "seen": sorted(self.seen),
                "seen_cancelled": sorted(self.seen_cancelled),
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
                _versions(data.get("seen", [])),
                _versions(data.get("seen_cancelled", [])),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


def _versions(items: Iterable[Any]) -> frozenset[Version]:
    """Stored ``[Id, stamp, digest]`` triples (a malformed one makes the cursor unreadable)."""
    return frozenset((str(key), str(stamp), str(digest)) for key, stamp, digest in items)


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
        # Series members outside the window come back in incremental listings too.
        seen = _recent_versions([*records, *members], "UpdatedOn", newest)
        cursor = NexudusCursor(newest, newest, now, seen)
        return SourceRead(bookings, [], cursor.dumps(), full=True)

    def _incremental_read(self, room: Room, previous: NexudusCursor, zone: str) -> SourceRead:
        """Bookings changed or cancelled since the cursor (rows already seen are dropped)."""
        listed = list(self.client.list_bookings(room.resource, updated_since=previous.updated))
        since = previous.cancelled or previous.updated
        snapshots = list(self.client.list_cancelled(room.resource, since=since))
        changed = _unseen(listed, "UpdatedOn", previous.seen)
        cancelled = _unseen(snapshots, "CancelledOn", previous.seen_cancelled)
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
        updated = _newest(changed, "UpdatedOn", previous.updated)
        cancelled_at = _newest(cancelled, "CancelledOn", previous.cancelled or previous.updated)
        cursor = NexudusCursor(
            updated,
            cancelled_at,
            previous.full_at,
            _recent_versions(listed, "UpdatedOn", updated, previous.seen),
            _recent_versions(snapshots, "CancelledOn", cancelled_at, previous.seen_cancelled),
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


def _version(record: Mapping[str, Any], field: str) -> Version:
    """A row's version: its Id, the raw value of its change stamp and a digest of the row."""
    canonical = json.dumps(record, sort_keys=True, default=str).encode()
    digest = hashlib.blake2b(canonical, digest_size=8).hexdigest()
    return (str(record.get("Id")), str(record.get(field)), digest)


def _unseen(
    records: Iterable[Mapping[str, Any]], field: str, seen: frozenset[Version]
) -> list[Mapping[str, Any]]:
    """The rows whose version was not read before."""
    return [r for r in records if _version(r, field) not in seen]


def _recent_versions(
    records: Iterable[Mapping[str, Any]],
    field: str,
    watermark: datetime | None,
    earlier: frozenset[Version] = frozenset(),
) -> frozenset[Version]:
    """Versions (new and remembered) stamped close enough to ``watermark`` to be listed again."""
    if watermark is None:
        return frozenset()
    horizon = watermark - SEEN_HORIZON
    versions = {*earlier, *(_version(r, field) for r in records)}
    return frozenset(
        version
        for version in versions
        if (when := parse_nexudus_time(version[1])) is not None and when >= horizon
    )


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
