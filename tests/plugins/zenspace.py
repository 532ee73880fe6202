"""Pytest fixtures: a served ZenSpace emulator on a simulated clock, and clients bound to it.

``zenspace`` gives a fresh emulator (one API key, one pod in Los Angeles) mounted on a
session-wide server; its clock is a :class:`SimulatedClock` the scheduler can share, so device
changes are stamped with simulated time. ``make_zenspace_client`` builds clients with pacing
off and retries that do not really sleep.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from bridge.emulators.server import RunningServer, SwappableApp, serve_in_thread
from bridge.emulators.zenspace import ZenSpaceEmulator
from bridge.jobs.scheduler import SimulatedClock
from bridge.providers.http import PacingPolicy, RetryPolicy
from bridge.providers.zenspace import ZenSpaceClient

ZENSPACE_KEY = "zs-live-7Qk2p9-test-key"
#: A Monday morning (UTC) before the US and EU DST changes.
ZENSPACE_NOW = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
POD_ZONE = "America/Los_Angeles"


@dataclass
class ZenSpaceWorld:
    """A served emulator, its pod and the simulated clock it stamps changes with."""

    emulator: ZenSpaceEmulator
    base_url: str
    pod: str
    clock: SimulatedClock
    sleeps: list[float] = field(default_factory=list)


@pytest.fixture(scope="session")
def zenspace_server() -> Iterator[tuple[SwappableApp, RunningServer]]:
    """One loopback server for the session; each test mounts its own emulator on it."""
    mount = SwappableApp()
    with serve_in_thread(mount) as server:
        yield mount, server


@pytest.fixture
def zenspace(zenspace_server: tuple[SwappableApp, RunningServer]) -> Iterator[ZenSpaceWorld]:
    """A fresh served emulator with one API key and one pod."""
    mount, server = zenspace_server
    clock = SimulatedClock(ZENSPACE_NOW)
    emulator = ZenSpaceEmulator(clock=clock.now, api_keys=(ZENSPACE_KEY,))
    pod = emulator.add_pod(timezone=POD_ZONE, name="Pod One")
    mount.current = emulator.app
    try:
        yield ZenSpaceWorld(emulator, server.base_url, pod, clock)
    finally:
        mount.current = None


@pytest.fixture
def make_zenspace_client(zenspace: ZenSpaceWorld) -> Iterator[Callable[..., ZenSpaceClient]]:
    """A factory of clients bound to the emulator; keyword arguments override the defaults."""
    clients: list[ZenSpaceClient] = []

    def make(**overrides: Any) -> ZenSpaceClient:
        options: dict[str, Any] = {
            "base_url": zenspace.base_url,
            "pacing": PacingPolicy(),
            "retry": RetryPolicy(max_attempts=3, base_delay=0.5, max_delay=4.0),
            "sleep": zenspace.sleeps.append,
            "rng": random.Random(3),
            "timeout": 3.0,
        }
        options.update(overrides)
        client = ZenSpaceClient(options.pop("api_key", ZENSPACE_KEY), **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def zenspace_client(make_zenspace_client: Callable[..., ZenSpaceClient]) -> ZenSpaceClient:
    """A client of the emulator with pacing off and instant retries."""
    return make_zenspace_client()
