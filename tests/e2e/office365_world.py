"""An end-to-end world with Microsoft 365 as the calendar: Nexudus → bridge → Graph emulator.

The identity endpoint runs over TLS (msal insists); the config names its CA as ``ca_bundle``.
The truth about the calendar is read from the Graph emulator's own state, not through the
bridge's backend: every live Nexudus booking must be in the room mailbox exactly once, with
its occurrences at the provider's instants, and nothing else from the bridge.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bridge.calendars.graph_events import MEMBER_PROPERTY, UID_PROPERTY, parse_member_value
from bridge.cli import main
from bridge.emulators.graph import Event, GraphEmulator, property_key
from bridge.emulators.identity import IdentityEmulator
from bridge.emulators.nexudus import NexudusEmulator
from bridge.emulators.server import RunningServer, SwappableApp
from bridge.providers.http import PacingPolicy
from bridge.providers.nexudus import NexudusClient
from tests.e2e.world import PASSWORD, ROOT, USER, SyncOutcome, _utc, hour_floor
from tests.plugins.graph import GRAPH_CLIENT_ID, GRAPH_SECRET, GRAPH_TENANT, ROOM

UID_KEY = property_key(UID_PROPERTY)
MEMBER_KEY = property_key(MEMBER_PROPERTY)
BUFFER_SUFFIXES = ("-setup", "-cleanup")


def event_uid(event: Event) -> str | None:
    """The bridge UID an emulator event carries (None for anyone else's)."""
    stored = event.properties.get(UID_KEY or "")
    return stored[1] if stored else None


def is_member(event: Event) -> bool:
    """Whether the event is one member of a separate layout."""
    return (MEMBER_KEY or "") in event.properties


class Office365World:
    """One room: Nexudus resource ⇄ Microsoft 365 room mailbox, with the bridge between."""

    def __init__(
        self,
        graph_server: tuple[SwappableApp, RunningServer],
        identity: IdentityEmulator,
        ca_file: Path,
        workdir: Path,
        *,
        buffers: str = "separate",
        state_url: str | None = None,
        latency: float = 0.0,
    ) -> None:
        self.mount, server = graph_server
        self.identity = identity
        self.ca_file = ca_file
        self.workdir = workdir
        self.now = hour_floor(datetime.now(UTC))
        self.nexudus = NexudusEmulator(now=self.now, seed=7)
        self.nexudus.add_user(USER, PASSWORD)
        self.business = self.nexudus.add_business("Acme London", time_zone="GMT Standard Time")
        self.resource = self.nexudus.add_resource("Callisto", business_id=self.business)
        self.graph = GraphEmulator(tokens=identity.tokens, seed=5, latency=latency)
        self.graph.add_room(ROOM, "Callisto Meeting Room")
        self.graph_url = f"{server.base_url}/v1.0"
        self.buffers = buffers
        self.state_url = state_url or f"sqlite:///{workdir / 'state.db'}"
        self.config_path = workdir / "bridge.toml"
        self.base_url = ""

    @contextmanager
    def running(self) -> Iterator[Office365World]:
        """Serve both emulators for the duration of the block."""
        self.mount.current = self.graph
        try:
            with self.nexudus.serve() as served:
                self.base_url = served.base_url
                self.write_config()
                yield self
        finally:
            self.mount.current = None

    def write_config(self) -> None:
        """The bridge.toml (secrets come from the environment)."""
        self.config_path.write_text(
            f"""
[state]
url = "{self.state_url}"

[sync]
past_days = 30
future_days = 365
max_deletions = 50

[providers.hq]
kind = "nexudus"
base_url = "{self.base_url}"
username = "{USER}"
password = "${{E2E_NEXUDUS_PASSWORD}}"

[calendars.m365]
kind = "office365"
tenant_id = "{GRAPH_TENANT}"
client_id = "{GRAPH_CLIENT_ID}"
client_secret = "${{E2E_M365_SECRET}}"
authority = "{self.identity.authority(GRAPH_TENANT)}"
graph_url = "{self.graph_url}"
ca_bundle = "{self.ca_file}"

[[rooms]]
id = "callisto"
name = "Callisto"
provider = "hq"
resource = "{self.resource}"
calendar = "m365"
calendar_id = "{ROOM}"
buffers = "{self.buffers}"
"""
        )

    # ----- provider side ------------------------------------------------------------------

    def client(self) -> NexudusClient:
        """A real Nexudus API client (no pacing)."""
        return NexudusClient(
            USER,
            PASSWORD,
            base_url=self.base_url,
            pacing=PacingPolicy(min_interval=0, requests_per_minute=0, writes_per_minute=0),
        )

    def book(self, start: datetime, hours: float = 1, **fields: Any) -> int:
        """Seed one booking as the Nexudus UI would."""
        return self.nexudus.seed_booking(
            self.resource, start, start + timedelta(hours=hours), **fields
        )

    def book_series(self, start: datetime, days: int, hours: float = 1) -> int:
        """A weekly series through the real API."""
        with self.client() as client:
            return client.create_booking(
                {
                    "ResourceId": self.resource,
                    "FromTime": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "ToTime": (start + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "RepeatBooking": True,
                    "Repeats": 2,
                    "RepeatEvery": 1,
                    "RepeatUntil": (start + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S"),
                }
            )

    def series_members(self) -> list[dict[str, Any]]:
        """The member records of repeat series, in time order."""
        return sorted(
            (r for r in self.nexudus.bookings() if r.get("RepeatSeriesUniqueId")),
            key=lambda r: r["FromTime"],
        )

    def tick(self, minutes: int = 5) -> None:
        """Let provider time pass."""
        self.nexudus.clock.advance(timedelta(minutes=minutes))

    def provider_instants(self) -> Counter[tuple[datetime, datetime]]:
        """(start, end) in UTC of every live booking of the room."""
        return Counter(
            (_utc(r["FromTime"]), _utc(r["ToTime"]))
            for r in self.nexudus.bookings()
            if r["ResourceId"] == self.resource
        )

    def provider_booking_count(self) -> int:
        """Distinct bookings (a repeat series counts once)."""
        return len(
            {
                r.get("RepeatSeriesUniqueId") or f"single-{r['Id']}"
                for r in self.nexudus.bookings()
                if r["ResourceId"] == self.resource
            }
        )

    # ----- bridge -------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """The environment a sync runs with."""
        return {**os.environ, "E2E_NEXUDUS_PASSWORD": PASSWORD, "E2E_M365_SECRET": GRAPH_SECRET}

    def sync(self, *args: str) -> SyncOutcome:
        """Run ``roombridge sync --json`` in this process."""
        os.environ["E2E_NEXUDUS_PASSWORD"] = PASSWORD
        os.environ["E2E_M365_SECRET"] = GRAPH_SECRET
        out = io.StringIO()
        with redirect_stdout(out):
            code = main(["sync", "--config", str(self.config_path), "--json", *args])
        return SyncOutcome(code, json.loads(out.getvalue()))

    def sync_process(self, *args: str) -> subprocess.Popen[bytes]:
        """Start ``roombridge sync`` as a separate process (to be killed, or waited for)."""
        command = [sys.executable, "-m", "bridge.cli", "sync", "--config", str(self.config_path)]
        return subprocess.Popen(
            [*command, *args],
            cwd=ROOT,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    # ----- calendar side (the emulator's truth) --------------------------------------------

    def bridge_events(self) -> dict[str, list[Event]]:
        """The room's events written by the bridge, by UID."""
        found: dict[str, list[Event]] = {}
        for event in self.graph.events(ROOM):
            uid = event_uid(event)
            if uid is not None:
                found.setdefault(uid, []).append(event)
        return found

    def calendar_instants(self) -> Counter[tuple[datetime, datetime]]:
        """(start, end) of every live occurrence of the bridge's booking events in the window."""
        start, end = self.now - timedelta(days=30), self.now + timedelta(days=365)
        spans: Counter[tuple[datetime, datetime]] = Counter()
        for uid, events in self.bridge_events().items():
            if uid.endswith(BUFFER_SUFFIXES):
                continue
            for event in events:
                if event.is_series:
                    for original in event.live_instances(start, end):
                        span = event.occurrence_span(original)
                        spans[(span[0].astimezone(UTC), span[1].astimezone(UTC))] += 1
                elif event.overlaps(start, end):
                    spans[(event.start.astimezone(UTC), event.end.astimezone(UTC))] += 1
        return spans

    def assert_no_duplicates(self) -> None:
        """Each UID is one event, or one complete set of members, never more."""
        for uid, events in self.bridge_events().items():
            members = [e for e in events if is_member(e)]
            if not members:
                assert len(events) == 1, f"{uid}: {len(events)} events"
                continue
            assert len(members) == len(events), f"{uid}: members mixed with an event"
            counts = {
                parsed[2]
                for e in members
                if (parsed := parse_member_value(e.properties[MEMBER_KEY or ""][1]))
            }
            assert counts == {len(members)}, f"{uid}: {len(members)} members, written {counts}"

    def assert_converged(self) -> None:
        """The mailbox shows exactly the provider's bookings: once each, nothing stray."""
        self.assert_no_duplicates()
        booking_uids = [u for u in self.bridge_events() if not u.endswith(BUFFER_SUFFIXES)]
        assert len(booking_uids) == self.provider_booking_count(), (
            f"{len(booking_uids)} booking objects for {self.provider_booking_count()} bookings"
        )
        assert self.calendar_instants() == self.provider_instants()
