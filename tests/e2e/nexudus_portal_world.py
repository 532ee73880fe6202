"""An end-to-end world for the members portal: a served portal emulator, a real CalDAV
collection, a config with ``api = "portal"``, a store.

Tests change the provider through the emulator (as an admin or another member would), run
``roombridge sync`` (in-process, or as a subprocess that can be SIGKILLed), and compare the
calendar with the provider: every booking and room-occupying event of the room in the window
must appear exactly once, with nothing else from the bridge.
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

import icalendar
import recurring_ical_events

from bridge.calendars.caldav import CalDAVCalendar
from bridge.cli import main
from bridge.emulators.nexudus_portal import NexudusPortalEmulator
from tests.e2e.world import SyncOutcome, hour_floor
from tests.plugins.caldav_servers import CalDAVServer

MEMBER = "member@example.com"
PASSWORD = "e2e-Portal-Pa55word"
OTHER = "colleague@example.com"
ZONE = "Europe/London"
ROOT = Path(__file__).resolve().parents[2]
PAST_DAYS, FUTURE_DAYS = 30, 365


class PortalCalDavWorld:
    """One room: a Nexudus portal resource ⇄ a CalDAV collection, with the bridge between."""

    def __init__(
        self,
        server: CalDAVServer,
        workdir: Path,
        *,
        state_url: str | None = None,
        max_deletions: int = 50,
        room_timezone: str | None = ZONE,
    ) -> None:
        self.server = server
        self.workdir = workdir
        self.now = hour_floor(datetime.now(UTC))
        self.emulator = NexudusPortalEmulator(now=self.now, timezone=ZONE, seed=7)
        self.emulator.add_member(MEMBER, PASSWORD, full_name="Ada Member")
        self.emulator.add_member(OTHER, "colleague-pass", full_name="Otto Colleague")
        self.resource = self.emulator.add_resource("Callisto", group="Small", allocation=8)
        self.other_resource = self.emulator.add_resource("Europa", group="Small")
        self.collection = server.new_collection("Callisto")
        self.state_url = state_url or f"sqlite:///{workdir / 'state.db'}"
        self.max_deletions = max_deletions
        self.room_timezone = room_timezone
        self.password = PASSWORD
        self.config_path = workdir / "bridge.toml"
        self.base_url = ""

    @contextmanager
    def running(self) -> Iterator[PortalCalDavWorld]:
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
        zone = f'timezone = "{self.room_timezone}"\n' if self.room_timezone else ""
        self.config_path.write_text(
            f"""
[state]
url = "{self.state_url}"

[sync]
past_days = {PAST_DAYS}
future_days = {FUTURE_DAYS}
max_deletions = {self.max_deletions}

[providers.space]
kind = "nexudus"
api = "portal"
base_url = "{self.base_url}"
username = "{MEMBER}"
password = "${{E2E_PORTAL_PASSWORD}}"

[calendars.dav]
kind = "caldav"
url = "{self.server.base_url}"
{auth}
[[rooms]]
id = "callisto"
name = "Callisto"
{zone}provider = "space"
resource = "{self.resource}"
calendar = "dav"
calendar_id = "{self.collection}"
"""
        )

    # ----- provider side ------------------------------------------------------------------

    def book(self, start: datetime, hours: float = 1, **fields: Any) -> int:
        """Seed one booking of the room (by the colleague unless ``member`` is given)."""
        fields.setdefault("member", OTHER)
        return self.emulator.seed_booking(
            self.resource, start, start + timedelta(hours=hours), **fields
        )

    def event(self, title: str, start: datetime, hours: float = 2, **fields: Any) -> int:
        """Seed a community event in the room."""
        fields.setdefault("resource_id", self.resource)
        return self.emulator.add_event(title, start, start + timedelta(hours=hours), **fields)

    def provider_instants(self) -> Counter[tuple[datetime, datetime]]:
        """(start, end) of every booking and event occupying the room in the window, in UTC."""
        start, end = self.window()
        spans = [
            (b.start, b.end) for b in self.emulator.bookings() if b.resource_id == self.resource
        ]
        spans += [
            (e.start, e.end)
            for e in self.emulator.events()
            if e.resource_id == self.resource and e.end > e.start
        ]
        return Counter(span for span in spans if span[0] < end and span[1] > start)

    def window(self) -> tuple[datetime, datetime]:
        """The sync window of a pass run now (the bridge reads the real clock)."""
        now = datetime.now(UTC)
        return now - timedelta(days=PAST_DAYS), now + timedelta(days=FUTURE_DAYS)

    # ----- bridge -------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """The environment a sync runs with."""
        return {**os.environ, "E2E_PORTAL_PASSWORD": self.password}

    def sync(self, *args: str) -> SyncOutcome:
        """Run ``roombridge sync --json`` in this process."""
        os.environ["E2E_PORTAL_PASSWORD"] = self.password
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

    def events_by_summary(self) -> dict[str, icalendar.Event]:
        """The bridge's VEVENTs by SUMMARY."""
        found: dict[str, icalendar.Event] = {}
        for _href, uid, ics in self.objects():
            if uid.startswith("roombridge-"):
                for event in icalendar.Calendar.from_ical(ics).walk("VEVENT"):
                    found[str(event["SUMMARY"])] = event
        return found

    def calendar_instants(self) -> list[tuple[datetime, datetime]]:
        """(start, end) of every bridge occurrence in the collection over the window (UTC)."""
        start, end = self.window()
        found: list[tuple[datetime, datetime]] = []
        for _href, uid, ics in self.objects():
            if not uid.startswith("roombridge-") or uid.endswith(("-setup", "-cleanup")):
                continue
            calendar = icalendar.Calendar.from_ical(ics)
            for event in recurring_ical_events.of(calendar).between(start, end):
                if str(event.get("STATUS", "CONFIRMED")).upper() == "CANCELLED":
                    continue
                found.append((_utc(event["DTSTART"].dt), _utc(event["DTEND"].dt)))
        return found

    def assert_converged(self) -> None:
        """The calendar shows exactly the provider's bookings and events: once each."""
        uids = Counter(uid for _href, uid, _ics in self.objects() if uid.startswith("roombridge-"))
        duplicates = [uid for uid, count in uids.items() if count > 1]
        assert not duplicates, f"duplicate UIDs on the calendar: {duplicates}"
        expected = self.provider_instants()
        assert sum(uids.values()) == sum(expected.values()), (
            f"{sum(uids.values())} bridge objects for {sum(expected.values())} provider items"
        )
        assert Counter(self.calendar_instants()) == expected


def _utc(value: Any) -> datetime:
    """A datetime as an aware UTC datetime."""
    assert isinstance(value, datetime), value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
