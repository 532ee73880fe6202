"""Pytest fixtures: a fake identity platform over TLS and a fresh Graph emulator per test.

``graph_tls`` (session) makes a throwaway CA and server certificate; ``graph_identity``
(session) serves the identity endpoint with it over https and registers one app;
``graph_server`` (session) serves a swappable app over plain HTTP on loopback. ``graph`` mounts
a fresh :class:`GraphEmulator` (one room mailbox, one user) for each test and gives the
:class:`Office365Config` that points at both; ``office365`` is a backend on the room mailbox
whose sync window is fixed around ``GRAPH_NOW`` and whose retries do not really sleep.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from bridge.calendars.office365 import Office365Account, Office365Calendar
from bridge.config import Office365Config, Secret
from bridge.emulators.graph import GraphEmulator
from bridge.emulators.identity import IdentityEmulator, TlsAddress, TlsFiles, make_test_certificates
from bridge.emulators.server import RunningServer, SwappableApp, serve_in_thread
from bridge.model import Window

GRAPH_TENANT = "5f1c2a9e-7d3b-4c1e-9a0b-2f6e8d4c1b7a"
GRAPH_CLIENT_ID = "0b7e3c52-94aa-4e5f-8c1d-6a2f9e0d3b41"
GRAPH_SECRET = "m365~Very-Secret.Client_Value"
ROOM = "callisto@contoso.example"
USER = "ada@contoso.example"
#: The frozen "now" of Graph tests: a Monday three weeks before London's spring DST change.
GRAPH_NOW = datetime(2025, 3, 10, 8, 0, tzinfo=UTC)


@dataclass
class GraphWorld:
    """A fresh emulator on the shared servers, and a config pointing at it."""

    emulator: GraphEmulator
    identity: IdentityEmulator
    graph_url: str
    tls: TlsFiles
    room: str = ROOM
    user: str = USER
    sleeps: list[float] = field(default_factory=list)

    def config(self, **changes: object) -> Office365Config:
        """The ``[calendars.m365]`` entry for this world."""
        values: dict[str, object] = {
            "name": "m365",
            "tenant_id": GRAPH_TENANT,
            "client_id": GRAPH_CLIENT_ID,
            "client_secret": Secret(GRAPH_SECRET),
            "authority": self.identity.authority(GRAPH_TENANT),
            "graph_url": self.graph_url,
            "ca_bundle": self.tls.ca_certificate,
        }
        values.update(changes)
        return Office365Config(**values)  # type: ignore[arg-type]

    def window(self) -> Window:
        """The sync window of these tests."""
        return Window.around(GRAPH_NOW, 30, 365)


@pytest.fixture(scope="session")
def graph_tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A throwaway CA and a server certificate for 127.0.0.1."""
    return make_test_certificates(tmp_path_factory.mktemp("graph-tls"))


@pytest.fixture(scope="session")
def graph_identity(graph_tls: TlsFiles) -> Iterator[tuple[IdentityEmulator, TlsAddress]]:
    """The identity endpoint over TLS, with the test app registered."""
    identity = IdentityEmulator()
    identity.register(GRAPH_TENANT, GRAPH_CLIENT_ID, GRAPH_SECRET)
    with identity.serve(graph_tls) as address:
        yield identity, address


@pytest.fixture(scope="session")
def graph_server() -> Iterator[tuple[SwappableApp, RunningServer]]:
    """One loopback server for the session; each test mounts a fresh Graph emulator."""
    mount = SwappableApp()
    with serve_in_thread(mount) as server:
        yield mount, server


@pytest.fixture
def graph(
    graph_server: tuple[SwappableApp, RunningServer],
    graph_identity: tuple[IdentityEmulator, TlsAddress],
    graph_tls: TlsFiles,
) -> Iterator[GraphWorld]:
    """A fresh emulator: one room mailbox (listed in /places) and one user mailbox."""
    mount, server = graph_server
    identity, _address = graph_identity
    identity.lifetime = 3599
    emulator = GraphEmulator(tokens=identity.tokens, seed=11, now=GRAPH_NOW)
    emulator.add_room(ROOM, "Callisto Meeting Room", capacity=10, building="HQ")
    emulator.add_mailbox(USER, "Ada Lovelace")
    mount.current = emulator
    try:
        yield GraphWorld(emulator, identity, f"{server.base_url}/v1.0", graph_tls)
    finally:
        mount.current = None


@pytest.fixture
def make_office365(graph: GraphWorld) -> Iterator[Callable[..., Office365Calendar]]:
    """A factory of backends on the world's room (each with its own account unless shared)."""
    made: list[Office365Calendar] = []

    def make(
        mailbox: str = ROOM, *, account: Office365Account | None = None, **config: object
    ) -> Office365Calendar:
        owner = account or Office365Account(graph.config(**config))
        # Retries are recorded, not waited for.
        backend = owner.calendar(mailbox, window=graph.window, sleep=graph.sleeps.append)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


@pytest.fixture
def office365(make_office365: Callable[..., Office365Calendar]) -> Office365Calendar:
    """A backend on the room mailbox."""
    return make_office365()
