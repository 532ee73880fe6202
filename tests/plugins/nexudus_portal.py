"""Pytest fixtures: a served Nexudus members-portal emulator and a client bound to it.

``nexudus_portal`` gives a fresh emulator (one London space, two members, three rooms) mounted
on a session-wide loopback server; ``make_portal_client`` builds clients logged in as the
first member, with pacing off and a manual clock whose ``sleep`` records every wait.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from bridge.emulators.nexudus_portal import NexudusPortalEmulator
from bridge.emulators.server import RunningServer, SwappableApp, serve_in_thread
from bridge.providers.http import PacingPolicy, RetryPolicy
from bridge.providers.nexudus_portal import NexudusPortalClient
from tests.plugins.nexudus import NEXUDUS_NOW, ManualClock

PORTAL_MEMBER = "member@example.com"
PORTAL_PASSWORD = "Portal-Pa55-horse-battery"
OTHER_MEMBER = "other@example.com"
OTHER_PASSWORD = "Other-Pa55-staple"
PORTAL_ZONE = "Europe/London"


@dataclass
class PortalWorld:
    """A served portal emulator and the ids seeded into it."""

    emulator: NexudusPortalEmulator
    base_url: str
    member_id: int
    other_member_id: int
    room_id: int
    other_room_id: int
    big_room_id: int


@pytest.fixture(scope="session")
def portal_server() -> Iterator[tuple[SwappableApp, RunningServer]]:
    """One loopback server for the session; each test mounts its own fresh emulator on it."""
    mount = SwappableApp()
    with serve_in_thread(mount) as server:
        yield mount, server


@pytest.fixture
def nexudus_portal(portal_server: tuple[SwappableApp, RunningServer]) -> Iterator[PortalWorld]:
    """A fresh served portal: two members and three rooms of a London space."""
    mount, server = portal_server
    emulator = NexudusPortalEmulator(now=NEXUDUS_NOW, timezone=PORTAL_ZONE, seed=1)
    member = emulator.add_member(PORTAL_MEMBER, PORTAL_PASSWORD, full_name="Ada Member")
    other = emulator.add_member(OTHER_MEMBER, OTHER_PASSWORD, full_name="Otto Other")
    room = emulator.add_resource("Callisto Meeting Room", group="Small", allocation=8)
    other_room = emulator.add_resource("Europa Meeting Room", group="Small", allocation=4)
    big = emulator.add_resource(
        "Amalthea Meeting Room", group="Large", allocation=45, amenities=("Projector",)
    )
    mount.current = emulator.app
    try:
        yield PortalWorld(emulator, server.base_url, member, other, room, other_room, big)
    finally:
        mount.current = None


@pytest.fixture
def portal_clock() -> ManualClock:
    """The client's manual clock; ``sleeps`` lists every wait the client asked for."""
    return ManualClock()


@pytest.fixture
def make_portal_client(
    nexudus_portal: PortalWorld, portal_clock: ManualClock
) -> Iterator[Callable[..., NexudusPortalClient]]:
    """A factory of portal clients; keyword arguments override the defaults."""
    clients: list[NexudusPortalClient] = []

    def make(**overrides: Any) -> NexudusPortalClient:
        options: dict[str, Any] = {
            "base_url": nexudus_portal.base_url,
            "pacing": PacingPolicy(),
            "retry": RetryPolicy(max_attempts=5, base_delay=0.5, max_delay=8.0),
            "clock": portal_clock,
            "sleep": portal_clock.sleep,
            "rng": random.Random(7),
            "timeout": 5.0,
        }
        options.update(overrides)
        email = options.pop("email", PORTAL_MEMBER)
        password = options.pop("password", PORTAL_PASSWORD)
        client = NexudusPortalClient(email, password, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def portal_client(make_portal_client: Callable[..., NexudusPortalClient]) -> NexudusPortalClient:
    """A client of the portal emulator, logged in as the first member."""
    return make_portal_client()
