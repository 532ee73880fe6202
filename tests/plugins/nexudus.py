"""Pytest fixtures: a running Nexudus emulator and a client bound to it.

``nexudus`` gives a served emulator with one admin user, a London business and two rooms;
``nexudus_client`` a client logged in as that user, with pacing off and a manual clock whose
``sleep`` records every wait instead of waiting (retries cost no time).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bridge.emulators.nexudus import NexudusEmulator
from bridge.emulators.server import RunningServer, SwappableApp, serve_in_thread
from bridge.providers.http import PacingPolicy, RetryPolicy
from bridge.providers.nexudus import NexudusClient

NEXUDUS_USER = "admin@example.com"
NEXUDUS_PASSWORD = "Tr0ub4dor-and-3-horses"
#: The emulator's frozen "now": a Monday, three weeks before London's spring DST change.
NEXUDUS_NOW = datetime(2025, 3, 10, 8, 0, tzinfo=UTC)


@dataclass
class ManualClock:
    """A fake clock for the client: monotonic seconds that move only when told or slept."""

    start: datetime = NEXUDUS_NOW
    seconds: float = 1_000.0
    sleeps: list[float] = field(default_factory=list)

    def monotonic(self) -> float:
        """The current monotonic reading."""
        return self.seconds

    def now(self) -> datetime:
        """Wall time that moves with the monotonic reading."""
        return self.start + timedelta(seconds=self.seconds - 1_000.0)

    def sleep(self, seconds: float) -> None:
        """Record a wait and let that much time pass, instantly."""
        self.sleeps.append(seconds)
        self.seconds += seconds

    def advance(self, seconds: float) -> None:
        """Let time pass without a sleep."""
        self.seconds += seconds


@dataclass
class NexudusWorld:
    """A served emulator and the ids seeded into it."""

    emulator: NexudusEmulator
    base_url: str
    business_id: int
    room_id: int
    other_room_id: int


@pytest.fixture(scope="session")
def nexudus_server() -> Iterator[tuple[SwappableApp, RunningServer]]:
    """One loopback server for the session; each test mounts its own fresh emulator on it."""
    mount = SwappableApp()
    with serve_in_thread(mount) as server:
        yield mount, server


@pytest.fixture
def nexudus(nexudus_server: tuple[SwappableApp, RunningServer]) -> Iterator[NexudusWorld]:
    """A fresh served emulator: one admin, a London business, two rooms."""
    mount, server = nexudus_server
    emulator = NexudusEmulator(now=NEXUDUS_NOW, seed=1)
    emulator.add_user(NEXUDUS_USER, NEXUDUS_PASSWORD)
    business = emulator.add_business("Acme Coworking London", time_zone="GMT Standard Time")
    room = emulator.add_resource("Callisto Meeting Room", business_id=business)
    other = emulator.add_resource("Europa Meeting Room", business_id=business)
    mount.current = emulator.app
    try:
        yield NexudusWorld(emulator, server.base_url, business, room, other)
    finally:
        mount.current = None


@pytest.fixture
def nexudus_clock() -> ManualClock:
    """The client's manual clock; ``sleeps`` lists every wait the client asked for."""
    return ManualClock()


@pytest.fixture
def make_nexudus_client(
    nexudus: NexudusWorld, nexudus_clock: ManualClock
) -> Iterator[Callable[..., NexudusClient]]:
    """A factory of clients bound to the emulator; keyword arguments override the defaults."""
    clients: list[NexudusClient] = []

    def make(**overrides: Any) -> NexudusClient:
        options: dict[str, Any] = {
            "base_url": nexudus.base_url,
            "pacing": PacingPolicy(),
            "retry": RetryPolicy(max_attempts=5, base_delay=0.5, max_delay=8.0),
            "clock": nexudus_clock,
            "sleep": nexudus_clock.sleep,
            "rng": random.Random(7),
            "timeout": 5.0,
        }
        options.update(overrides)
        username = options.pop("username", NEXUDUS_USER)
        password = options.pop("password", NEXUDUS_PASSWORD)
        client = NexudusClient(username, password, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def nexudus_client(make_nexudus_client: Callable[..., NexudusClient]) -> NexudusClient:
    """A bearer-token client of the emulator with pacing off and a manual clock."""
    return make_nexudus_client()
