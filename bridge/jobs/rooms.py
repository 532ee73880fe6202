"""The jobs of ``roombridge run``: per room, a periodic sync and the device arming.

Each job is a plain function of the runtime (state store, sources, calendars) and ``now``, so
the multi-worker PostgreSQL mode can hand the same functions to a distributed task queue. The
in-process wiring (:func:`schedule_rooms`) runs a room's sync every ``sync.interval`` and its
device job whenever the next device action is due — to the second — and right after each sync,
because a sync may have moved, added or cancelled an occurrence.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from bridge.config import RoomConfig, ZenSpaceConfig
from bridge.devices.executor import ArmingResult, arm_room, build_zenspace_client
from bridge.errors import BridgeError, ConfigError
from bridge.jobs.scheduler import JobFunction, Scheduler
from bridge.model import Window
from bridge.providers.zenspace import ZenSpaceClient
from bridge.runtime import Runtime
from bridge.sync.engine import PassOptions, RoomResult

log = logging.getLogger(__name__)

#: Shortest gap between two runs of a device job (a due action never spins the loop).
MIN_DEVICE_GAP = timedelta(seconds=1)


def sync_job_name(room_id: str) -> str:
    """The scheduler name of a room's sync job."""
    return f"sync:{room_id}"


def device_job_name(room_id: str) -> str:
    """The scheduler name of a room's device job."""
    return f"devices:{room_id}"


def run_room_sync(runtime: Runtime, room: RoomConfig, now: datetime) -> RoomResult:
    """One sync pass of one room (a failed pass raises, so the scheduler backs off)."""
    sync = runtime.config.sync
    options = PassOptions(
        window=Window.around(now, sync.past_days, sync.future_days),
        max_deletions=sync.max_deletions,
    )
    result = runtime.sync_room(room, options)
    log.info(
        "room %s: sync %s (created %d, updated %d, deleted %d)",
        room.id, "ok" if result.ok else "FAILED", result.created, result.updated, result.deleted,
    )
    if not result.ok:
        raise BridgeError(f"room {room.id}: sync failed: {'; '.join(result.errors)}")
    return result


def run_room_devices(
    runtime: Runtime, client: ZenSpaceClient, room: RoomConfig, now: datetime
) -> ArmingResult:
    """Plan the room's pod and send the device actions that are due."""
    result = arm_room(runtime.store, client, runtime.room(room), now)
    if result.done or result.skipped or result.failed:
        log.info(
            "room %s: devices: %d done, %d skipped, %d to retry",
            room.id, len(result.done), len(result.skipped), len(result.failed),
        )
    return result


class DeviceClients:
    """One ZenSpace client per configured provider, built on first use and closed together."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._clients: dict[str, ZenSpaceClient] = {}

    def client(self, provider_name: str) -> ZenSpaceClient:
        """The client of a ``kind = "zenspace"`` provider."""
        if provider_name not in self._clients:
            provider = self._runtime.config.providers[provider_name]
            if not isinstance(provider, ZenSpaceConfig):
                raise ConfigError(f"providers.{provider_name} is not a zenspace provider")
            self._clients[provider_name] = build_zenspace_client(provider)
        return self._clients[provider_name]

    def close(self) -> None:
        """Close every client."""
        for client in self._clients.values():
            client.close()
        self._clients.clear()


def schedule_rooms(
    scheduler: Scheduler,
    runtime: Runtime,
    clients: Callable[[str], ZenSpaceClient],
    *,
    rooms: list[RoomConfig] | None = None,
    with_sync: bool = True,
) -> None:
    """Add every room's sync job (unless not ``with_sync``), and device jobs where configured."""
    interval = runtime.config.sync.interval
    for room in rooms if rooms is not None else runtime.config.rooms:
        devices = device_job_name(room.id) if room.devices else None
        if with_sync:
            sync = _sync_job(scheduler, runtime, room, interval, devices)
            scheduler.add(sync_job_name(room.id), sync)
        if room.devices:
            scheduler.add(
                device_job_name(room.id),
                _device_job(runtime, clients, room, interval),
            )


def _sync_job(
    scheduler: Scheduler,
    runtime: Runtime,
    room: RoomConfig,
    interval: timedelta,
    devices: str | None,
) -> JobFunction:
    """The room's sync, every interval; wakes the room's device job after each pass."""

    def job(now: datetime) -> datetime:
        try:
            run_room_sync(runtime, room, now)
        finally:
            # Even a failed pass may have merged provider changes into the snapshot.
            if devices is not None:
                scheduler.wake(devices, now)
        return now + interval

    return job


def _device_job(
    runtime: Runtime,
    clients: Callable[[str], ZenSpaceClient],
    room: RoomConfig,
    interval: timedelta,
) -> JobFunction:
    """The room's device arming; runs again when the next action is due."""
    assert room.devices is not None
    provider = room.devices

    def job(now: datetime) -> datetime:
        result = run_room_devices(runtime, clients(provider), room, now)
        # The horizon moves with time: plan again at least every interval.
        following = now + interval
        if result.next_due is not None:
            following = min(following, max(result.next_due, now + MIN_DEVICE_GAP))
        return following

    return job

