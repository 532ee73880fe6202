"""An end-to-end world: a served Nexudus emulator, a real CalDAV collection, a config, a store.

Tests drive the provider through the emulator (as an admin in the Nexudus UI, or through the
real API with a client), run ``roombridge sync`` (in-process, or as a subprocess that can be
SIGKILLed), and compare the calendar with the provider: every live booking's occurrences must
appear exactly once, with nothing else from the bridge.
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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import icalendar
import recurring_ical_events

from bridge.calendars.caldav import CalDAVCalendar
from bridge.cli import main
from bridge.emulators.nexudus import NexudusEmulator
from bridge.providers.http import PacingPolicy
from bridge.providers.nexudus import NexudusClient
from tests.plugins.caldav_servers import CalDAVServer

USER = "admin@example.com"
PASSWORD = "e2e-Secret-Pa55word"
ROOT = Path(__file__).resolve().parents[2]


def weekly_series_body(resource: int, start: datetime, until: datetime) -> dict[str, object]:
    """A Nexudus create body: one hour weekly from ``start``, repeating until ``until``."""
    return {
        "ResourceId": resource,
        "FromTime": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "ToTime": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "RepeatBooking": True,
        "Repeats": 2,
        "RepeatEvery": 1,
        "RepeatUntil": until.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def hour_floor(instant: datetime) -> datetime:
    """The instant truncated to the hour."""
    return instant.replace(minute=0, second=0, microsecond=0)


@dataclass
class SyncOutcome:
    """What one ``roombridge sync --json`` run printed and returned."""

    code: int
    document: dict[str, Any]

    @property
    def room(self) -> dict[str, Any]:
        """The single room's entry."""
        rooms: list[dict[str, Any]] = self.document["rooms"]
        return rooms[0]


class World:
    """One room: Nexudus resource ⇄ CalDAV collection, with the bridge between."""

    def __init__(
        self,
        server: CalDAVServer,
        workdir: Path,
        *,
        state_url: str | None = None,
        buffers: str = "separate",
        max_deletions: int = 50,
    ) -> None:
        self.server = server
        self.workdir = workdir
        self.now = hour_floor(datetime.now(UTC))
        self.emulator = NexudusEmulator(now=self.now, seed=7)
        self.emulator.add_user(USER, PASSWORD)
        self.business = self.emulator.add_business("Acme London", time_zone="GMT Standard Time")
        self.resource = self.emulator.add_resource("Callisto", business_id=self.business)
        self.collection = server.new_collection("Callisto")
        self.state_url = state_url or f"sqlite:///{workdir / 'state.db'}"
        self.buffers = buffers
        self.max_deletions = max_deletions
        self.config_path = workdir / "bridge.toml"
        self.base_url = ""

    @contextmanager
    def running(self) -> Iterator[World]:
        """Serve the emulator for the duration of the block."""
        with self.emulator.serve() as served:
            self.base_url = served.base_url
            self.write_config()
            yield self

    def write_config(self) -> None:
        """The bridge.toml of this world (the password comes from the environment)."""
        auth = ""
        if self.server.username:
            auth = f'username = "{self.server.username}"\npassword = "{self.server.password}"\n'
        self.config_path.write_text(
            f"""
[state]
url = "{self.state_url}"

[sync]
past_days = 30
future_days = 365
max_deletions = {self.max_deletions}

[providers.hq]
kind = "nexudus"
base_url = "{self.base_url}"
username = "{USER}"
password = "${{E2E_NEXUDUS_PASSWORD}}"

[calendars.dav]
kind = "caldav"
url = "{self.server.base_url}"
{auth}
[[rooms]]
id = "callisto"
name = "Callisto"
provider = "hq"
resource = "{self.resource}"
calendar = "dav"
calendar_id = "{self.collection}"
buffers = "{self.buffers}"
"""
        )

    # ----- provider side ------------------------------------------------------------------

    def client(self) -> NexudusClient:
        """A real API client, as an admin tool would use (no pacing, for speed)."""
        return NexudusClient(
            USER,
            PASSWORD,
            base_url=self.base_url,
            pacing=PacingPolicy(min_interval=0, requests_per_minute=0, writes_per_minute=0),
        )

    def book(self, start: datetime, hours: float = 1, **fields: Any) -> int:
        """Seed one booking as the Nexudus UI would."""
        end = start + timedelta(hours=hours)
        return self.emulator.seed_booking(self.resource, start, end, **fields)

    def tick(self, minutes: int = 5) -> None:
        """Let provider time pass (so UpdatedOn moves forward)."""
        self.emulator.clock.advance(timedelta(minutes=minutes))

    def provider_instants(self) -> Counter[tuple[datetime, datetime]]:
        """(start, end) of every live booking of the room, in UTC, with multiplicity."""
        return Counter(
            (_utc(record["FromTime"]), _utc(record["ToTime"]))
            for record in self.emulator.bookings()
            if record["ResourceId"] == self.resource
        )

    def provider_booking_count(self) -> int:
        """Distinct bookings: each repeat series counts once."""
        keys = {
            record.get("RepeatSeriesUniqueId") or f"single-{record['Id']}"
            for record in self.emulator.bookings()
            if record["ResourceId"] == self.resource
        }
        return len(keys)

    # ----- bridge -------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """The environment a sync runs with."""
        return {**os.environ, "E2E_NEXUDUS_PASSWORD": PASSWORD}

    def sync(self, *args: str) -> SyncOutcome:
        """Run ``roombridge sync --json`` in this process."""
        return sync_in_process(self.config_path, {"E2E_NEXUDUS_PASSWORD": PASSWORD}, *args)

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

    # ----- calendar side ------------------------------------------------------------------

    def calendar(self) -> CalDAVCalendar:
        """A fresh adapter on the room's collection (as a third-party client would be)."""
        return CalDAVCalendar(
            self.server.base_url,
            self.collection,
            username=self.server.username,
            password=self.server.password,
        )

    def objects(self) -> list[tuple[str, str, bytes]]:
        """(href, uid, ics) of every object in the collection."""
        with self.calendar() as calendar:
            listing = calendar.read_changes(None)
        return [(o.href, o.uid, o.ics) for o in listing.changed]

    def calendar_instants(
        self, *, include_buffers: bool = False
    ) -> list[tuple[datetime, datetime]]:
        """(start, end) of every occurrence in the collection over the sync window (UTC)."""
        start, end = self.now - timedelta(days=30), self.now + timedelta(days=365)
        found: list[tuple[datetime, datetime]] = []
        for _href, uid, ics in self.objects():
            if not uid.startswith("roombridge-"):
                continue  # a foreign event, not the bridge's
            if not include_buffers and uid.endswith(("-setup", "-cleanup")):
                continue
            calendar = icalendar.Calendar.from_ical(ics)
            for event in recurring_ical_events.of(calendar).between(start, end):
                if str(event.get("STATUS", "CONFIRMED")).upper() == "CANCELLED":
                    continue
                found.append((_utc(event["DTSTART"].dt), _utc(event["DTEND"].dt)))
        return found

    def assert_converged(self) -> None:
        """The calendar shows exactly the provider's bookings: once each, nothing stray."""
        objects = [o for o in self.objects() if o[1].startswith("roombridge-")]
        uids = Counter(uid for _href, uid, _ics in objects)
        duplicates = [uid for uid, count in uids.items() if count > 1]
        assert not duplicates, f"duplicate UIDs on the calendar: {duplicates}"
        booking_objects = [uid for uid in uids if not uid.endswith(("-setup", "-cleanup"))]
        assert len(booking_objects) == self.provider_booking_count(), (
            f"{len(booking_objects)} booking objects for {self.provider_booking_count()} bookings"
        )
        # Multisets: two provider bookings may share a slot (admins can double-book).
        assert Counter(self.calendar_instants()) == self.provider_instants()


def sync_in_process(config: Path, environment: dict[str, str], *args: str) -> SyncOutcome:
    """Run ``roombridge sync --json`` in this process with ``environment`` set."""
    os.environ.update(environment)
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["sync", "--config", str(config), "--json", *args])
    return SyncOutcome(code, json.loads(out.getvalue()))


def _utc(value: Any) -> datetime:
    """A Nexudus time string or a datetime, as an aware UTC datetime."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert isinstance(value, datetime), value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
