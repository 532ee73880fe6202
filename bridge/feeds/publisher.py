"""A room's feed for a request: token check, fresh chunks, window, ETag and Last-Modified.

The feed URL is ``<server.public_url>/feeds/<room>/<token>.ics``; the token (128 random
bits) lives in the state store and ``roombridge feeds --rotate`` replaces it. A request
costs two small store reads when nothing changed: the token, and the room's feed state
(provider revision against the revision the chunks reflect). The assembled document is kept
in memory per room until the revision or the day-aligned window moves on.

ETag: a hash over the header (name, refresh), the VTIMEZONEs, and the hashes of the chunks
inside the window, i.e. over exactly what decides the bytes. Last-Modified: when the store
first saw that ETag, so it moves forward whenever the bytes change (an edit, a removal, a
booking entering or leaving the window), and every worker of a shared store agrees on it.
"""

from __future__ import annotations

import gzip
import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from time import perf_counter

from bridge.config import Config
from bridge.feeds.metrics import FeedMetrics
from bridge.feeds.refresh import FeedSettings, refresh_room_feed
from bridge.feeds.render import (
    concatenate,
    feed_header,
    feed_window,
    shows_in_window,
    span_meets_window,
    vtimezone,
    zone_range,
)
from bridge.model import Booking, Window
from bridge.state.store import FeedChunk, StateStore

FEED_PATH = "/feeds/{room}/{token}.ics"
#: gzip level for feeds: iCalendar compresses ~10x already at level 6, higher costs more CPU.
GZIP_LEVEL = 6


def feed_url(public_url: str, room_id: str, token: str) -> str:
    """The subscription URL of a room's feed."""
    path = FEED_PATH.format(room=room_id, token=token)
    return public_url.rstrip("/") + path


def utc_now() -> datetime:
    """The wall clock in UTC (the publisher's default clock)."""
    return datetime.now(UTC)


class FeedDocument:
    """A room's assembled feed: the bytes, their ETag and Last-Modified; gzip made once."""

    __slots__ = ("_gzip", "_lock", "body", "etag", "key", "last_modified", "room_id")

    def __init__(
        self, room_id: str, key: FeedKey, body: bytes, etag: str, last_modified: datetime
    ) -> None:
        self.room_id = room_id
        self.key = key
        self.body = body
        self.etag = etag
        self.last_modified = last_modified
        self._gzip: bytes | None = None
        self._lock = threading.Lock()

    def gzipped(self) -> bytes:
        """The body gzip-compressed (computed on first use, then kept)."""
        with self._lock:
            if self._gzip is None:
                self._gzip = gzip.compress(self.body, compresslevel=GZIP_LEVEL, mtime=0)
            return self._gzip


@dataclass(frozen=True, slots=True)
class FeedKey:
    """What a cached document was assembled from."""

    revision: int
    render_key: str
    window: Window


class FeedPublisher:
    """Builds and caches the feeds of the configured rooms from the state store."""

    def __init__(
        self,
        config: Config,
        store: StateStore,
        *,
        clock: Callable[[], datetime] = utc_now,
        metrics: FeedMetrics | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.settings = {room.id: FeedSettings.of(config, room) for room in config.rooms}
        self._documents: dict[str, FeedDocument] = {}
        self._locks = {room_id: threading.Lock() for room_id in self.settings}
        # Per room: the chunks with their text, checked against the store's hashes before use.
        self._chunks: dict[str, dict[str, FeedChunk]] = {}
        # Per room: recurring bookings decoded by a refresh, with their content version.
        self._series: dict[str, dict[str, tuple[str, Booking]]] = {}
        # (room, booking key, content version, window start) -> shows in that window
        self._in_window: dict[tuple[str, str, str, datetime], bool] = {}

    def authorised(self, room_id: str, token: str) -> bool:
        """Whether ``token`` opens the room's feed (constant-time; unknown rooms never do)."""
        # The store is asked for unknown rooms as well, so both refusals cost the same.
        matches = self.store.check_feed_token(room_id, token)
        return matches and room_id in self.settings

    def document(self, room_id: str) -> FeedDocument:
        """The room's current feed, refreshing stale chunks first (KeyError: unknown room)."""
        settings = self.settings[room_id]
        now = self.clock()
        window = feed_window(now, settings.past_days, settings.future_days)
        state = self.store.feed_state(room_id)
        current = (
            state.rendered_revision == state.provider_revision
            and state.settings == settings.render_key
        )
        cached = self._documents.get(room_id)
        key = FeedKey(state.provider_revision, settings.render_key, window)
        if current and cached is not None and cached.key == key:
            return cached
        with self._locks[room_id]:
            return self._rebuilt(settings, window, now)

    def _rebuilt(self, settings: FeedSettings, window: Window, now: datetime) -> FeedDocument:
        """Refresh the chunks when behind, then assemble (unless another thread just did)."""
        room_id = settings.room_id
        state = self.store.feed_state(room_id)
        revision = state.provider_revision
        if state.rendered_revision != revision or state.settings != settings.render_key:
            revision = self._refresh(settings, now)
        key = FeedKey(revision, settings.render_key, window)
        cached = self._documents.get(room_id)
        if cached is not None and cached.key == key:
            return cached
        started = perf_counter()
        document = self._assemble(settings, key, now)
        if self.metrics is not None:
            self.metrics.assemble_seconds.observe(perf_counter() - started)
        self._documents[room_id] = document
        return document

    def _refresh(self, settings: FeedSettings, now: datetime) -> int:
        """Bring the room's chunks up to date; the provider revision they now reflect."""
        started = perf_counter()
        report = refresh_room_feed(self.store, settings, now)
        room_id = settings.room_id
        self._chunks.setdefault(room_id, {}).update((c.booking_key, c) for c in report.chunks)
        series = self._series.setdefault(room_id, {})
        for chunk in report.chunks:
            booking = report.series.get(chunk.booking_key)
            if booking is not None:
                series[chunk.booking_key] = (chunk.fingerprint, booking)
        if self.metrics is not None:
            self.metrics.refresh_seconds.observe(perf_counter() - started)
            self.metrics.chunks_rendered.labels(settings.room_id).inc(report.rendered)
            self.metrics.render_errors.labels(settings.room_id).inc(len(report.failed))
        return report.revision

    def _assemble(self, settings: FeedSettings, key: FeedKey, now: datetime) -> FeedDocument:
        """Concatenate the chunks inside the window with the VTIMEZONEs they need."""
        room_id = settings.room_id
        included = [
            chunk
            for chunk in self._current_chunks(room_id)
            if self._shows(chunk, settings, key.window)
        ]
        tzids = list(dict.fromkeys(tzid for chunk in included for tzid in chunk.tzids))
        with_zones = [chunk for chunk in included if chunk.tzids]
        first, last = zone_range(
            (c.first_year for c in with_zones), (c.last_year for c in with_zones)
        )
        header = feed_header(settings.name, settings.refresh)
        zones = [vtimezone(tzid, first, last) for tzid in tzids]
        body = concatenate(header, zones, [chunk.chunk for chunk in included])
        digest = hashlib.sha256(header.encode("utf-8"))
        for tzid in tzids:
            digest.update(f"\x00zone {tzid} {first} {last}".encode())
        for chunk in included:
            digest.update(f"\x00{chunk.chunk_hash}".encode())
        etag = digest.hexdigest()[:40]
        last_modified = self.store.record_feed_version(room_id, etag, now)
        return FeedDocument(room_id, key, body, etag, last_modified)

    def _current_chunks(self, room_id: str) -> list[FeedChunk]:
        """The room's chunks as stored now: kept texts where the hash agrees, else fetched."""
        kept = self._chunks.get(room_id, {})
        listing = self.store.feed_chunks(room_id, with_text=False)
        stale = [
            c.booking_key
            for c in listing
            if c.booking_key not in kept or kept[c.booking_key].chunk_hash != c.chunk_hash
        ]
        fetched = {c.booking_key: c for c in self.store.feed_chunks(room_id, booking_keys=stale)}
        current = {
            c.booking_key: fetched.get(c.booking_key) or kept[c.booking_key] for c in listing
        }
        self._chunks[room_id] = current
        return list(current.values())

    def _shows(self, chunk: FeedChunk, settings: FeedSettings, window: Window) -> bool:
        """Whether a chunk belongs in the feed of this window."""
        if not chunk.chunk or chunk.first_start is None:
            return False
        if not span_meets_window(chunk.first_start, chunk.last_end, window):
            return False
        if not chunk.recurring:
            return True
        memo = (chunk.room_id, chunk.booking_key, chunk.fingerprint, window.start)
        found = self._in_window.get(memo)
        if found is None:
            found = self._series_shows(chunk, settings, window)
            if len(self._in_window) > 100_000:
                self._in_window.clear()
            self._in_window[memo] = found
        return found

    def _series_shows(self, chunk: FeedChunk, settings: FeedSettings, window: Window) -> bool:
        """Whether a series has a live occurrence in the window (rules can leave gaps)."""
        decoded = self._series.get(chunk.room_id, {}).get(chunk.booking_key)
        if decoded is not None and decoded[0] == chunk.fingerprint:
            return shows_in_window(decoded[1], settings.buffers, window)
        stored = self.store.get_provider_booking(chunk.room_id, chunk.booking_key)
        if stored is None:
            return False
        return shows_in_window(stored.booking, settings.buffers, window)
