"""Prometheus metrics of the feed server, and of the sync passes recorded in the state store.

Feed requests, renders and their durations are counted in the serving process. Syncs run in
other processes (``roombridge sync``, the scheduler), so their counts, outcomes, durations and
pending errors are read from the store at scrape time. Each app has its own registry, so
several apps (tests, benchmarks) can live in one process.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bridge.errors import StateError
from bridge.state.store import StateStore

#: Label value for requests that name no configured room, or a wrong token (never the path).
UNKNOWN_ROOM = "unknown"

_DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class SyncCollector(Collector):
    """Sync passes and pending item errors per room, read from the state store per scrape."""

    def __init__(self, store: StateStore, room_ids: Sequence[str]) -> None:
        self._store = store
        self._room_ids = tuple(room_ids)

    def collect(self) -> Iterator[Metric]:
        """The current figures (``roombridge_state_up`` 0 when the store cannot be read)."""
        up = GaugeMetricFamily("roombridge_state_up", "Whether the state store answered")
        try:
            families = list(self._families())
        except StateError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self) -> Iterator[Metric]:
        """One family per figure, each with a sample per room."""
        runs = CounterMetricFamily(
            "roombridge_sync_runs", "Sync passes by outcome", labels=["room", "outcome"]
        )
        last_ok = GaugeMetricFamily(
            "roombridge_sync_last_ok", "Whether the last finished pass succeeded", labels=["room"]
        )
        last_duration = GaugeMetricFamily(
            "roombridge_sync_last_duration_seconds", "Duration of the last pass", labels=["room"]
        )
        last_finished = GaugeMetricFamily(
            "roombridge_sync_last_finished_timestamp_seconds",
            "When the last pass finished (Unix time)",
            labels=["room"],
        )
        last_errors = GaugeMetricFamily(
            "roombridge_sync_last_errors", "Errors reported by the last pass", labels=["room"]
        )
        pending = GaugeMetricFamily(
            "roombridge_sync_pending_errors", "Items failing and retried", labels=["room"]
        )
        for room in self._room_ids:
            for outcome, number in self._store.run_counts(room).items():
                runs.add_metric([room, outcome], number)
            pending.add_metric([room], len(self._store.errors(room)))
            last = self._store.last_run(room, finished=True)
            if last is None or last.finished_at is None:
                continue
            last_ok.add_metric([room], 1 if last.ok else 0)
            seconds = (last.finished_at - last.started_at).total_seconds()
            last_duration.add_metric([room], seconds)
            last_finished.add_metric([room], last.finished_at.timestamp())
            last_errors.add_metric([room], len(last.errors))
        yield from (runs, last_ok, last_duration, last_finished, last_errors, pending)


class FeedMetrics:
    """The server's registry: feed requests, chunk renders, durations, and the sync figures."""

    def __init__(self, store: StateStore, room_ids: Sequence[str]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "roombridge_feed_requests",
            "Feed requests by room and HTTP status",
            ["room", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "roombridge_feed_request_duration_seconds",
            "Time to answer a feed request",
            ["status"],
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.chunks_rendered = Counter(
            "roombridge_feed_chunks_rendered",
            "Booking chunks rendered into the cache",
            ["room"],
            registry=self.registry,
        )
        self.render_errors = Counter(
            "roombridge_feed_render_errors",
            "Bookings that could not be rendered into a feed",
            ["room"],
            registry=self.registry,
        )
        self.refresh_seconds = Histogram(
            "roombridge_feed_refresh_duration_seconds",
            "Time to bring a room's cached chunks up to date",
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.assemble_seconds = Histogram(
            "roombridge_feed_assemble_duration_seconds",
            "Time to concatenate a room's feed from its cached chunks",
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(SyncCollector(store, room_ids))

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)
