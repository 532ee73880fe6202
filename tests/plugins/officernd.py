"""Pytest fixtures: a served OfficeRnD emulator and clients bound to it.

``officernd`` gives a fresh emulator (mounted on one session-wide server) with one API
application, a London location and two rooms; its clock follows ``officernd_clock``, the
client's manual clock, so a client's (instant) sleeps move provider time too: token expiry and
the token endpoint's rate window behave as they would in real time. ``make_officernd_client``
builds clients with pacing off (token pacing on: it is the behaviour under test) and retries
that cost no time.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from bridge.emulators.officernd import OfficeRndEmulator
from bridge.emulators.server import RunningServer, SwappableApp, serve_in_thread
from bridge.providers.http import PacingPolicy, RetryPolicy
from bridge.providers.officernd import TOKEN_PACING, OfficeRndClient
from tests.plugins.nexudus import ManualClock

OFFICERND_ORG = "acme"
OFFICERND_CLIENT_ID = "roombridge-test"
OFFICERND_SECRET = "orNd-Cl13nt-s3cret-value"
#: The emulator's "now": a Monday, three weeks before London's spring DST change.
OFFICERND_NOW = datetime(2025, 3, 10, 8, 0, tzinfo=UTC)


@dataclass
class OfficeRndWorld:
    """A served emulator and the ids seeded into it."""

    emulator: OfficeRndEmulator
    base_url: str
    location: str
    room: str
    other_room: str

    @property
    def token_url(self) -> str:
        """Where the emulator hands out tokens."""
        return f"{self.base_url}/oauth/token"


@pytest.fixture(scope="session")
def officernd_server() -> Iterator[tuple[SwappableApp, RunningServer]]:
    """One loopback server for the session; each test mounts its own fresh emulator on it."""
    mount = SwappableApp()
    with serve_in_thread(mount) as server:
        yield mount, server


@pytest.fixture
def officernd_clock() -> ManualClock:
    """The shared manual clock; ``sleeps`` lists every wait the client asked for."""
    return ManualClock(start=OFFICERND_NOW)


@pytest.fixture
def officernd(
    officernd_server: tuple[SwappableApp, RunningServer], officernd_clock: ManualClock
) -> Iterator[OfficeRndWorld]:
    """A fresh served emulator: one application, a London location, two rooms."""
    mount, server = officernd_server
    emulator = OfficeRndEmulator(org=OFFICERND_ORG, clock=officernd_clock.now, seed=1)
    emulator.add_application(OFFICERND_CLIENT_ID, OFFICERND_SECRET)
    location = emulator.add_location("Acme London", timezone="Europe/London")
    room = emulator.add_resource("Callisto", location=location)
    other = emulator.add_resource("Europa", location=location)
    mount.current = emulator.app
    try:
        yield OfficeRndWorld(emulator, server.base_url, location, room, other)
    finally:
        mount.current = None


@pytest.fixture
def make_officernd_client(
    officernd: OfficeRndWorld, officernd_clock: ManualClock
) -> Iterator[Callable[..., OfficeRndClient]]:
    """A factory of clients bound to the emulator; keyword arguments override the defaults."""
    clients: list[OfficeRndClient] = []

    def make(**overrides: Any) -> OfficeRndClient:
        options: dict[str, Any] = {
            "org": OFFICERND_ORG,
            "base_url": officernd.base_url,
            "token_url": officernd.token_url,
            "pacing": PacingPolicy(),
            "token_pacing": TOKEN_PACING,
            "retry": RetryPolicy(max_attempts=5, base_delay=0.5, max_delay=8.0),
            "clock": officernd_clock,
            "sleep": officernd_clock.sleep,
            "rng": random.Random(7),
            "timeout": 5.0,
        }
        options.update(overrides)
        client_id = options.pop("client_id", OFFICERND_CLIENT_ID)
        secret = options.pop("client_secret", OFFICERND_SECRET)
        client = OfficeRndClient(client_id, secret, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def officernd_client(make_officernd_client: Callable[..., OfficeRndClient]) -> OfficeRndClient:
    """A client of the emulator with API pacing off and a manual clock."""
    return make_officernd_client()
