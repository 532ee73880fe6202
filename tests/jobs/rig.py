"""A pod room on simulated time: config, runtime, scheduler, emulator; restartable."""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path

from bridge.config import load_config
from bridge.jobs.rooms import device_job_name, schedule_rooms
from bridge.jobs.scheduler import Scheduler
from bridge.model import Booking
from bridge.providers.zenspace import ZenSpaceClient
from bridge.runtime import Runtime
from bridge.state.store import DeviceActionKind, DeviceActionRecord
from tests.plugins.zenspace import ZENSPACE_KEY, ZenSpaceWorld

ROOM = "pod-one"


class PodRig:
    """The bridge's device side for one room, driven by the world's simulated clock."""

    def __init__(
        self, world: ZenSpaceWorld, client: ZenSpaceClient, workdir: Path, *,
        privacy: str = "busy", share_code: bool = False,
    ) -> None:
        self.world = world
        self.client = client
        self.config_path = workdir / "bridge.toml"
        self.config_path.write_text(
            f"""
[state]
url = "sqlite:///{workdir / 'state.db'}"

[sync]
interval = "5m"

[providers.hq]
kind = "nexudus"
base_url = "http://127.0.0.1:9"
username = "admin@example.com"
password = "unused-password"

[providers.pods]
kind = "zenspace"
base_url = "{world.base_url}"
api_key = "{ZENSPACE_KEY}"

[[rooms]]
id = "{ROOM}"
name = "Pod One"
timezone = "Europe/London"
provider = "hq"
resource = "1"
feed_privacy = "{privacy}"
devices = "pods"
device_space = "{world.pod}"
device_lead = "10m"
device_code_to_organizer = {str(share_code).lower()}
"""
        )
        self.start()

    def start(self) -> None:
        """A fresh process: runtime, store and scheduler (the bridge (re)started)."""
        self.runtime = Runtime(load_config(self.config_path), clock=self.world.clock.now)
        self.scheduler = Scheduler(self.world.clock)
        schedule_rooms(self.scheduler, self.runtime, lambda _name: self.client, with_sync=False)

    def restart(self) -> None:
        """Stop and start again (the store keeps what was recorded)."""
        self.runtime.close()
        self.start()

    def close(self) -> None:
        """Close the runtime."""
        self.runtime.close()

    def book(self, booking: Booking) -> None:
        """Put a booking into the room's provider snapshot, as a sync pass would."""
        self.runtime.store.put_provider_booking(ROOM, booking, self.world.clock.now())
        # As after a sync pass: the device job plans again at once.
        self.scheduler.wake(device_job_name(ROOM))

    def run_until(self, moment: datetime) -> None:
        """Let the scheduler run jobs until the simulated clock reaches ``moment``."""
        self.scheduler.run(threading.Event(), until=moment)

    def records(self) -> dict[DeviceActionKind, list[DeviceActionRecord]]:
        """The recorded device actions by kind."""
        grouped: dict[DeviceActionKind, list[DeviceActionRecord]] = {}
        for record in self.runtime.store.device_actions(ROOM):
            grouped.setdefault(record.action.kind, []).append(record)
        return grouped
