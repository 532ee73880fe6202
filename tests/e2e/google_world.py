"""An end-to-end world with Google as the calendar: Nexudus emulator → bridge → Google emulator.

Like :class:`tests.e2e.world.World` (whose provider-side helpers it keeps), but the room's
calendar is a resource calendar in the Google Calendar emulator, reached through a service
account key file whose ``token_uri`` is the emulator's. What the calendar shows is judged
from the emulator's own expansion of every event (what a Google user sees), not from the
bridge's reading of it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bridge.calendars.google import GoogleCalendar, RequestBudget, build_google_calendar
from bridge.config import GoogleConfig
from bridge.emulators.google import GoogleCalendarEmulator
from bridge.emulators.nexudus import NexudusEmulator
from tests.e2e.world import PASSWORD, USER, World, hour_floor

ADMIN = "rooms-admin@example.com"
ROOM_CALENDAR = "c_188callisto@resource.calendar.google.com"
SERVICE_ACCOUNT = "roombridge@acme-rooms.iam.gserviceaccount.com"


class GoogleWorld(World):
    """One room: Nexudus resource ⇄ Google resource calendar, with the bridge between."""

    def __init__(
        self,
        workdir: Path,
        *,
        state_url: str | None = None,
        buffers: str = "separate",
        max_deletions: int = 50,
        quota_per_minute: int | None = 600,
    ) -> None:
        self.workdir = workdir
        self.now = hour_floor(datetime.now(UTC))
        self.emulator = NexudusEmulator(now=self.now, seed=7)
        self.emulator.add_user(USER, PASSWORD)
        self.business = self.emulator.add_business("Acme London", time_zone="GMT Standard Time")
        self.resource = self.emulator.add_resource("Callisto", business_id=self.business)
        self.google = GoogleCalendarEmulator(seed=11, quota_per_minute=quota_per_minute)
        self.google.add_user(ADMIN)
        self.room_calendar = self.google.add_room(ROOM_CALENDAR, "Callisto", managers=[ADMIN])
        self.state_url = state_url or f"sqlite:///{workdir / 'state.db'}"
        self.buffers = buffers
        self.max_deletions = max_deletions
        self.config_path = workdir / "bridge.toml"
        self.key_file = workdir / "service-account.json"
        self.base_url = ""

    @contextmanager
    def running(self) -> Iterator[GoogleWorld]:  # type: ignore[override]
        """Serve both emulators for the duration of the block."""
        with self.emulator.serve() as served, self.google.serve():
            self.base_url = served.base_url
            key = self.google.create_service_account(
                SERVICE_ACCOUNT, subjects=[ADMIN], key_bits=1024
            )
            self.key_file.write_text(json.dumps(key))
            self.write_config()
            yield self

    def write_config(self) -> None:
        """The bridge.toml of this world (the key file is relative to it)."""
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

[calendars.workspace]
kind = "google"
service_account_file = "{self.key_file.name}"
subject = "{ADMIN}"
api_endpoint = "{self.google.base_url}/calendar/v3/"

[[rooms]]
id = "callisto"
name = "Callisto"
provider = "hq"
resource = "{self.resource}"
calendar = "workspace"
calendar_id = "{self.room_calendar}"
buffers = "{self.buffers}"
"""
        )

    # ----- calendar side ------------------------------------------------------------------

    def google_config(self) -> GoogleConfig:
        """The calendar entry of the config, as the bridge reads it."""
        return GoogleConfig(
            name="workspace",
            service_account_file=self.key_file,
            subject=ADMIN,
            api_endpoint=f"{self.google.base_url}/calendar/v3/",
        )

    def calendar(self) -> GoogleCalendar:  # type: ignore[override]
        """A fresh backend on the room calendar (as another process would have)."""
        return build_google_calendar(
            self.google_config(), self.room_calendar, budget=RequestBudget(100_000)
        )

    def objects(self) -> list[tuple[str, str, bytes]]:
        """(href, uid, ics) of every event series in the room calendar, via the backend."""
        with self.calendar() as calendar:
            listing = calendar.read_changes(None)
        return [(o.href, o.uid, o.ics) for o in listing.changed]

    def bridge_events(self) -> list[dict[str, Any]]:
        """Live masters and singles the bridge wrote (tagged with a bridge UID)."""
        return [
            event
            for event in self.google.events(self.room_calendar)
            if not event.get("recurringEventId") and _uid(event).startswith("roombridge-")
        ]

    def calendar_instants(
        self, *, include_buffers: bool = False
    ) -> list[tuple[datetime, datetime]]:
        """(start, end) of every live instance Google shows over the sync window (UTC)."""
        low, high = self.now - timedelta(days=30), self.now + timedelta(days=365)
        found = []
        for item in self.google.expanded(self.room_calendar, until=high):
            uid = _uid(item)
            if not uid.startswith("roombridge-") or item.get("status") == "cancelled":
                continue
            if not include_buffers and uid.endswith(("-setup", "-cleanup")):
                continue
            start = datetime.fromisoformat(item["start"]["dateTime"]).astimezone(UTC)
            end = datetime.fromisoformat(item["end"]["dateTime"]).astimezone(UTC)
            if end > low and start < high:
                found.append((start, end))
        return found

    def assert_converged(self) -> None:
        """The calendar shows exactly the provider's bookings: once each, nothing stray."""
        super().assert_converged()
        uids = Counter(_uid(event) for event in self.bridge_events())
        assert all(count == 1 for count in uids.values()), uids

    def google_statuses(self) -> Counter[int | None]:
        """HTTP statuses the Google emulator answered (None: a dropped reply)."""
        return Counter(request.status for request in self.google.requests)


def _uid(event: dict[str, Any]) -> str:
    """The bridge UID an event carries (empty for foreign events)."""
    private = event.get("extendedProperties", {}).get("private", {})
    return str(private.get("roombridgeUid", ""))
