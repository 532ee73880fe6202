"""Pytest fixtures: a served Google Calendar emulator and backends bound to it.

``google`` gives a fresh emulator (mounted on one session-wide loopback server) with a Workspace
admin, a room calendar the admin manages, and a service account allowed to act for the admin
(its RSA key made for the test, its ``token_uri`` pointing at the emulator, written as a key
file). ``make_google_calendar`` builds :class:`GoogleCalendar` backends through the real
builder; their waits are recorded instead of slept.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bridge.calendars.google import (
    GoogleCalendar,
    RequestBudget,
    RetryPolicy,
    build_google_calendar,
)
from bridge.config import GoogleConfig
from bridge.emulators.google import GoogleCalendarEmulator
from bridge.emulators.server import RunningServer, SwappableApp, serve_in_thread

GOOGLE_ADMIN = "rooms-admin@example.com"
GOOGLE_ROOM = "c_callisto@resource.calendar.google.com"
GOOGLE_OTHER_ROOM = "c_europa@resource.calendar.google.com"
SERVICE_ACCOUNT = "roombridge@roombridge-tests.iam.gserviceaccount.com"


@dataclass
class Sleeps:
    """A ``sleep`` that records the waits and returns at once."""

    waits: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@dataclass
class GoogleWorld:
    """A served emulator, its room calendars and the service account key file."""

    emulator: GoogleCalendarEmulator
    base_url: str
    key_file: Path
    room: str = GOOGLE_ROOM
    other_room: str = GOOGLE_OTHER_ROOM
    admin: str = GOOGLE_ADMIN

    @property
    def api_endpoint(self) -> str:
        """The ``api_endpoint`` a config names for this emulator."""
        return f"{self.base_url}/calendar/v3/"

    def config(self, *, subject: str = GOOGLE_ADMIN, key_file: Path | None = None) -> GoogleConfig:
        """A validated-looking ``[calendars.workspace]`` entry for this emulator."""
        return GoogleConfig(
            name="workspace",
            service_account_file=key_file or self.key_file,
            subject=subject,
            api_endpoint=self.api_endpoint,
        )


@pytest.fixture(scope="session")
def google_server() -> Iterator[tuple[SwappableApp, RunningServer]]:
    """One loopback server for the session; each test mounts its own fresh emulator."""
    mount = SwappableApp()
    with serve_in_thread(mount) as server:
        yield mount, server


def new_google_world(base_url: str, workdir: Path, **options: Any) -> GoogleWorld:
    """A fresh emulator: admin, two rooms it manages, a service account with delegation."""
    emulator = GoogleCalendarEmulator(**options)
    emulator.base_url = base_url
    emulator.add_user(GOOGLE_ADMIN)
    emulator.add_room(GOOGLE_ROOM, "Callisto", managers=[GOOGLE_ADMIN])
    emulator.add_room(GOOGLE_OTHER_ROOM, "Europa", managers=[GOOGLE_ADMIN])
    key = emulator.create_service_account(SERVICE_ACCOUNT, subjects=[GOOGLE_ADMIN], key_bits=1024)
    key_file = workdir / "service-account.json"
    key_file.write_text(json.dumps(key))
    return GoogleWorld(emulator, base_url, key_file)


@pytest.fixture
def google(
    google_server: tuple[SwappableApp, RunningServer], tmp_path: Path
) -> Iterator[GoogleWorld]:
    """A fresh emulator mounted on the session server (quota on, as Google's)."""
    mount, server = google_server
    world = new_google_world(server.base_url, tmp_path)
    mount.current = world.emulator.app
    try:
        yield world
    finally:
        mount.current = None


@pytest.fixture
def google_sleeps() -> Sleeps:
    """The waits the backends asked for (backoff, budget)."""
    return Sleeps()


@pytest.fixture
def make_google_calendar(
    google: GoogleWorld, google_sleeps: Sleeps
) -> Iterator[Callable[..., GoogleCalendar]]:
    """A factory of backends on a room calendar; keyword arguments go to the builder."""
    made: list[GoogleCalendar] = []

    def make(calendar_id: str | None = None, **overrides: Any) -> GoogleCalendar:
        options: dict[str, Any] = {
            "budget": RequestBudget(100_000),
            "retry": RetryPolicy(attempts=5),
            "sleep": google_sleeps,
            "timeout": 5.0,
        }
        options.update(overrides)
        config = options.pop("config", None) or google.config()
        backend = build_google_calendar(config, calendar_id or google.room, **options)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


@pytest.fixture
def google_calendar(make_google_calendar: Callable[..., GoogleCalendar]) -> GoogleCalendar:
    """A backend on the room calendar, acting as the admin."""
    return make_google_calendar()
