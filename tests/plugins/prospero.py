"""Pytest fixtures: a served Prospero emulator and clients bound to it.

``prospero`` gives a fresh emulator (mounted on one session-wide server) with one admin user,
a booking module and two spaces; its clock follows ``prospero_clock``, the client's manual
clock, so a client's (instant) sleeps and waits move provider time too and cookie expiry
behaves as it would in real time. ``make_prospero_client`` builds clients with pacing off and
retries that cost no time.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from bridge.emulators.prospero import BASE_PATH, ProsperoEmulator
from bridge.emulators.server import RunningServer, SwappableApp, serve_in_thread
from bridge.providers.http import PacingPolicy, RetryPolicy
from bridge.providers.prospero import ProsperoClient
from tests.plugins.nexudus import ManualClock

PROSPERO_USER = "stage-manager@example.org"
PROSPERO_PASSWORD = "Pr0sp3r0-Tempest-pa55"
#: The emulator's "now": a Monday, three weeks before London's spring DST change.
PROSPERO_NOW = datetime(2025, 3, 10, 8, 0, tzinfo=UTC)


@dataclass
class ProsperoWorld:
    """A served emulator and the ids seeded into it."""

    emulator: ProsperoEmulator
    base_url: str
    module: str
    hall: str
    studio: str


@pytest.fixture(scope="session")
def prospero_server() -> Iterator[tuple[SwappableApp, RunningServer]]:
    """One loopback server for the session; each test mounts its own fresh emulator on it."""
    mount = SwappableApp()
    with serve_in_thread(mount) as server:
        yield mount, server


@pytest.fixture
def prospero_clock() -> ManualClock:
    """The shared manual clock; ``sleeps`` lists every wait the client asked for."""
    return ManualClock(start=PROSPERO_NOW)


@pytest.fixture
def prospero(
    prospero_server: tuple[SwappableApp, RunningServer], prospero_clock: ManualClock
) -> Iterator[ProsperoWorld]:
    """A fresh served emulator: one admin, a booking module, a hall and a studio."""
    mount, server = prospero_server
    emulator = ProsperoEmulator(clock=prospero_clock.now)
    emulator.add_user(PROSPERO_USER, PROSPERO_PASSWORD)
    module = emulator.add_module("Venue hire")
    hall = emulator.add_space("Main hall")
    studio = emulator.add_space("Studio")
    mount.current = emulator.app
    try:
        yield ProsperoWorld(emulator, server.base_url + BASE_PATH, module, hall, studio)
    finally:
        mount.current = None


@pytest.fixture
def make_prospero_client(
    prospero: ProsperoWorld, prospero_clock: ManualClock
) -> Iterator[Callable[..., ProsperoClient]]:
    """A factory of clients bound to the emulator; keyword arguments override the defaults."""
    clients: list[ProsperoClient] = []

    def make(**overrides: Any) -> ProsperoClient:
        options: dict[str, Any] = {
            "base_url": prospero.base_url,
            "pacing": PacingPolicy(),
            "retry": RetryPolicy(max_attempts=5, base_delay=0.5, max_delay=8.0),
            "clock": prospero_clock,
            "sleep": prospero_clock.sleep,
            "rng": random.Random(7),
            "timeout": 5.0,
        }
        options.update(overrides)
        username = options.pop("username", PROSPERO_USER)
        password = options.pop("password", PROSPERO_PASSWORD)
        client = ProsperoClient(username, password, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def prospero_client(make_prospero_client: Callable[..., ProsperoClient]) -> ProsperoClient:
    """A client of the emulator with pacing off and a manual clock."""
    return make_prospero_client()
