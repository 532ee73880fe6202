"""Keeping a room's cached feed chunks in step with its provider snapshot in the state store.

A chunk is keyed by (room, booking key, booking content version, privacy, buffer mode): the
content version is a hash of the stored booking document, so a refresh re-renders exactly
the bookings that changed (or all of them when the room's feed settings changed), drops the
chunks of bookings that left the snapshot and leaves the rest alone. A re-render whose text
comes out the same keeps its DTSTAMP and SEQUENCE; a changed one gets the refresh time and
the next SEQUENCE, which is how subscribed clients notice edits.

Refreshing runs after a sync pass (see :func:`refresh_room_feed`) and lazily when a feed is
requested and the store's provider revision is ahead of the one the chunks reflect.
One booking that cannot be rendered is recorded as an item error (operation ``feed``) and
left out; the rest of the room's feed is unaffected.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from bridge.config import Config, RoomConfig
from bridge.errors import BridgeError
from bridge.feeds.render import RenderedBooking, render_booking, render_bookings, stamped
from bridge.model import Booking, BufferMode, Privacy
from bridge.state.codec import loads_booking
from bridge.state.store import FeedChunk, StateStore
from mappings.errors import MappingError

log = logging.getLogger("roombridge.feeds")

_Render = Callable[[list[Booking]], list[RenderedBooking | None]]

#: The item-error operation under which unrenderable bookings are recorded.
FEED_OPERATION = "feed"
#: Bookings serialised per pass of the mapping (bounds the memory of a cold render).
RENDER_BATCH = 1_000
#: Clients are never asked to refresh more often than this.
MIN_REFRESH = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class FeedSettings:
    """What shapes one room's feed: its name, privacy, buffer mode, window and refresh."""

    room_id: str
    name: str
    privacy: Privacy
    buffers: BufferMode
    past_days: int
    future_days: int
    refresh: timedelta

    @property
    def render_key(self) -> str:
        """The settings a chunk depends on, as stored with the room's chunks."""
        return f"{self.privacy.value}/{self.buffers.value}"

    @classmethod
    def of(cls, config: Config, room: RoomConfig) -> FeedSettings:
        """A configured room's feed settings (refresh: the sync interval, at least 5 min)."""
        return cls(
            room_id=room.id,
            name=room.name,
            privacy=room.feed_privacy,
            buffers=room.buffers,
            past_days=config.sync.past_days,
            future_days=config.sync.future_days,
            refresh=max(config.sync.interval, MIN_REFRESH),
        )


@dataclass(slots=True)
class RefreshReport:
    """What one refresh of a room's chunks did."""

    room_id: str
    revision: int
    rendered: int = 0
    restamped: int = 0
    removed: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    #: The chunks written, and the recurring bookings decoded on the way (for the window).
    chunks: list[FeedChunk] = field(default_factory=list)
    series: dict[str, Booking] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        """Whether any chunk's published text changed."""
        return bool(self.restamped or self.removed)


def fingerprint(document: str) -> str:
    """The content version of a stored booking document."""
    return hashlib.sha256(document.encode("utf-8")).hexdigest()


def refresh_room_feed(store: StateStore, settings: FeedSettings, now: datetime) -> RefreshReport:
    """Re-render the chunks of bookings that changed since the last refresh; drop stale ones.

    The provider revision is read before the snapshot, so a change that lands in between
    leaves the chunks marked as older than they are (and refreshed once more), never newer.
    """
    room_id = settings.room_id
    revision = store.provider_revision(room_id)
    documents = store.provider_booking_documents(room_id)
    cached = {chunk.booking_key: chunk for chunk in store.feed_chunks(room_id, with_text=False)}
    report = RefreshReport(room_id, revision)
    stale: dict[str, str] = {}
    for key, document in documents.items():
        version = fingerprint(document)
        previous = cached.get(key)
        if previous is None or not _is_current(previous, version, settings):
            stale[key] = version
    keys = sorted(stale)
    bookings = _decoded(keys, documents, settings, report)
    report.series = {key: booking for key, booking in bookings.items() if booking.is_recurring}
    rendered = _rendered(bookings, settings, report)
    chunks: list[FeedChunk] = []
    for key in keys:
        previous = cached.get(key)
        chunk = _stored_chunk(key, stale[key], rendered.get(key), previous, settings, now)
        chunks.append(chunk)
        report.rendered += 1
        if previous is None or chunk.chunk_hash != previous.chunk_hash:
            report.restamped += 1
    gone = sorted(cached.keys() - documents.keys())
    report.removed = len(gone)
    report.chunks = chunks
    with store.transaction():
        store.put_feed_chunks(chunks)
        store.delete_feed_chunks(room_id, gone)
        store.mark_feed_rendered(room_id, revision, settings.render_key, now)
        _settle_errors(store, room_id, chunks, report, now)
    return report


def _is_current(chunk: FeedChunk, version: str, settings: FeedSettings) -> bool:
    """Whether a cached chunk was rendered from this booking version under these settings."""
    return (
        chunk.fingerprint == version
        and chunk.privacy == settings.privacy.value
        and chunk.buffers == settings.buffers.value
    )


def _decoded(
    keys: list[str], documents: dict[str, str], settings: FeedSettings, report: RefreshReport
) -> dict[str, Booking]:
    """The stored bookings of ``keys`` (those that cannot be read are noted as failed)."""
    bookings: dict[str, Booking] = {}
    for key in keys:
        try:
            bookings[key] = loads_booking(documents[key])
        except BridgeError as exc:
            _failed(report, settings, key, exc)
    return bookings


def _rendered(
    bookings: dict[str, Booking], settings: FeedSettings, report: RefreshReport
) -> dict[str, RenderedBooking | None]:
    """The templates of the bookings, rendered in batches (absent: failed, noted)."""
    keys = list(bookings)
    batches = [keys[i : i + RENDER_BATCH] for i in range(0, len(keys), RENDER_BATCH)]
    render = partial(render_bookings, **_choices(settings))
    outcomes = [_attempt(render, [bookings[key] for key in batch]) for batch in batches]
    rendered: dict[str, RenderedBooking | None] = {}
    for batch, outcome in zip(batches, outcomes, strict=True):
        if outcome is not None:
            rendered.update(zip(batch, outcome, strict=True))
            continue
        # One bad booking failed the batch: find it by rendering one by one.
        for key in batch:
            try:
                rendered[key] = render_booking(bookings[key], **_choices(settings))
            except (MappingError, BridgeError, ValueError) as exc:
                _failed(report, settings, key, exc)
    return rendered


def _attempt(render: _Render, batch: list[Booking]) -> list[RenderedBooking | None] | None:
    """A batch rendered, or None when one of its bookings cannot be."""
    try:
        return render(batch)
    except (MappingError, BridgeError, ValueError):
        return None


def _choices(settings: FeedSettings) -> dict[str, Any]:
    """The rendering keywords of a room."""
    return {
        "room_id": settings.room_id,
        "privacy": settings.privacy,
        "buffers": settings.buffers,
    }


def _failed(report: RefreshReport, settings: FeedSettings, key: str, exc: Exception) -> None:
    """Note a booking that cannot be rendered (its key and the mapping's reason only)."""
    # Keyed by the booking, never by its content: the message names no title or person.
    log.warning("room %s: booking %s left out of the feed: %s", settings.room_id, key, exc)
    report.failed[key] = str(exc)


def _stored_chunk(
    key: str,
    version: str,
    rendered: RenderedBooking | None,
    previous: FeedChunk | None,
    settings: FeedSettings,
    now: datetime,
) -> FeedChunk:
    """The chunk row: same text keeps its stamp and sequence, new text gets the next ones."""
    content_hash = rendered.content_hash if rendered is not None else ""
    if previous is not None and previous.content_hash == content_hash:
        sequence, rendered_at = previous.sequence, previous.rendered_at
    elif previous is not None:
        sequence, rendered_at = previous.sequence + 1, now
    else:
        sequence, rendered_at = 0, now
    text = stamped(rendered.template, rendered_at, sequence) if rendered is not None else ""
    return FeedChunk(
        room_id=settings.room_id,
        booking_key=key,
        fingerprint=version,
        privacy=settings.privacy.value,
        buffers=settings.buffers.value,
        sequence=sequence,
        rendered_at=rendered_at,
        content_hash=content_hash,
        chunk_hash=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        first_start=rendered.first_start if rendered is not None else None,
        last_end=rendered.last_end if rendered is not None else None,
        recurring=rendered.recurring if rendered is not None else False,
        tzids=rendered.tzids if rendered is not None else (),
        first_year=rendered.first_year if rendered is not None else 0,
        last_year=rendered.last_year if rendered is not None else 0,
        chunk=text,
    )


def _settle_errors(
    store: StateStore,
    room_id: str,
    chunks: list[FeedChunk],
    report: RefreshReport,
    now: datetime,
) -> None:
    """Record the bookings that failed to render; clear those that render again."""
    failed = report.failed
    pending = {e.item for e in store.errors(room_id) if e.operation == FEED_OPERATION}
    for chunk in chunks:
        key = chunk.booking_key
        if key in failed:
            store.record_error(room_id, key, FEED_OPERATION, failed[key], now)
        elif key in pending:
            store.clear_error(room_id, key, FEED_OPERATION)
