"""The sandbox behind ``roombridge demo``: emulated providers, a real CalDAV server, the bridge.

Everything runs on loopback: the Nexudus and OfficeRnD emulators (in threads, seeded with a
realistic week-to-months of bookings relative to now), an embedded Radicale (a subprocess with
its storage in the demo folder), one sync pass over every room, and the feed server. Nothing
leaves the machine; stopping the demo stops all of it.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bridge.config import load_config
from bridge.emulators.nexudus import NexudusEmulator
from bridge.emulators.officernd import OfficeRndEmulator
from bridge.emulators.server import BackgroundServer
from bridge.errors import BridgeError
from bridge.feeds.publisher import feed_url
from bridge.runtime import Runtime
from bridge.sync.engine import PassOptions, RoomResult

NEXUDUS_USER = "demo-admin@example.com"
ORND_CLIENT = "demo-client"
MKCALENDAR = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:set><D:prop>'
    "<D:displayname>{name}</D:displayname></D:prop></D:set></C:mkcalendar>"
)


class DemoError(BridgeError):
    """The sandbox could not start (a port taken, Radicale not starting, ...)."""


@dataclass
class DemoRoom:
    """One sandbox room: its id, name, provider and collection."""

    id: str
    name: str
    provider: str
    resource: str
    collection: str
    buffers: str = "separate"


@dataclass
class Sandbox:
    """What a running demo offers: URLs to open and the sync results."""

    folder: Path
    config_path: Path
    server_url: str
    caldav_url: str
    rooms: list[DemoRoom] = field(default_factory=list)
    feeds: dict[str, str] = field(default_factory=dict)
    results: list[RoomResult] = field(default_factory=list)

    def summary(self) -> str:
        """The text printed for the person who started the demo."""
        lines = [
            "roombridge demo is running (Ctrl-C stops everything).",
            "",
            f"  status page     {self.server_url}/",
            f"  health          {self.server_url}/healthz",
            f"  metrics         {self.server_url}/metrics",
            f"  CalDAV server   {self.caldav_url}/  (no login; add a collection below to any"
            " CalDAV client)",
            "",
        ]
        for room in self.rooms:
            result = next((r for r in self.results if r.id == room.id), None)
            outcome = f"{result.created} events written" if result and result.ok else "sync FAILED"
            if result is not None and not result.ok:
                outcome += ": " + "; ".join(result.errors)[:300]
            lines += [
                f"  {room.name} ({room.provider}, buffers {room.buffers}): {outcome}",
                f"    feed      {self.feeds.get(room.id, '-')}",
                f"    calendar  {self.caldav_url}{room.collection}",
            ]
        lines += [
            "",
            f"  config          {self.config_path}",
            f"  try             roombridge sync --config {self.config_path}",
            f"                  roombridge status --config {self.config_path}",
        ]
        return "\n".join(lines)


def free_port(preferred: int) -> int:
    """``preferred`` when it is free on loopback, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            chosen: int = probe.getsockname()[1]
            return chosen
    raise DemoError("no free loopback port")


def seed_nexudus(emulator: NexudusEmulator, now: datetime) -> dict[str, int]:
    """A London business with two rooms and a realistic mix of bookings."""
    business = emulator.add_business("Acme Coworking London", time_zone="GMT Standard Time")
    callisto = emulator.add_resource("Callisto Meeting Room", business_id=business)
    europa = emulator.add_resource("Europa Board Room", business_id=business)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)

    def at(days: int, hour: int, minute: int = 0) -> datetime:
        return day + timedelta(days=days, hours=hour, minutes=minute)

    emulator.seed_booking(
        callisto, at(1, 9), at(1, 10), CoworkerFullName="Ada Lovelace", Notes="Design review"
    )
    emulator.seed_booking(
        callisto,
        at(2, 14),
        at(2, 15, 30),
        CoworkerFullName="Grace Hopper",
        Tentative=True,
        Notes="Tentative: waiting for approval",
    )
    emulator.seed_booking(
        europa, at(3, 10), at(3, 12), CoworkerFullName="Alan Turing", Notes="Board meeting"
    )
    weekly = secrets.token_hex(8)
    for week in range(12):
        emulator.seed_booking(
            callisto,
            at(7 * week + 1, 8),
            at(7 * week + 1, 8, 30),
            CoworkerFullName="Platform team",
            RepeatSeriesUniqueId=f"weekly-{weekly}",
            Repeats=2,
            RepeatEvery=1,
            Notes="Weekly stand-up",
        )
    monthly = secrets.token_hex(8)
    for month in range(6):
        emulator.seed_booking(
            europa,
            at(30 * month + 5, 15),
            at(30 * month + 5, 17),
            CoworkerFullName="Finance",
            RepeatSeriesUniqueId=f"monthly-{monthly}",
            Notes="Monthly review",
        )
    return {"callisto": callisto, "europa": europa}


def seed_officernd(emulator: OfficeRndEmulator, now: datetime) -> str:
    """A focus pod whose bookings carry setup/cleanup service slots, and a weekly series."""
    location = emulator.add_location("Acme Coworking London", timezone="Europe/London")
    resource = emulator.add_resource("Io Focus Pod", location=location)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    for index, (days, hour, before, after) in enumerate(
        [(1, 11, 15, 10), (2, 16, 10, 10), (4, 9, 30, 15)]
    ):
        start = day + timedelta(days=days, hours=hour)
        emulator.seed_booking(
            resource,
            start,
            start + timedelta(hours=1),
            title=f"Focus session {index + 1}",
            description="Deep work",
            before=before,
            after=after,
        )
    start = day + timedelta(days=1, hours=13)
    emulator.seed_booking(
        resource,
        start,
        start + timedelta(minutes=45),
        rrule=f"FREQ=WEEKLY;UNTIL={(start + timedelta(weeks=8)):%Y%m%dT%H%M%SZ}",
        title="Weekly 1:1",
        before=5,
        after=5,
    )
    return resource


@contextmanager
def radicale(folder: Path, port: int) -> Iterator[str]:
    """An embedded Radicale without authentication, storing in ``folder``."""
    config = folder / "radicale.conf"
    config.write_text(
        "[server]\n"
        f"hosts = 127.0.0.1:{port}\n"
        "[auth]\ntype = none\n"
        f"[storage]\nfilesystem_folder = {folder / 'collections'}\n"
        "[logging]\nlevel = warning\n"
    )
    log = (folder / "radicale.log").open("wb")
    # A session of its own: a terminal's Ctrl-C reaches the demo only, which then stops
    # Radicale itself (else Radicale dies first and a Ctrl-C during start-up reads as a crash).
    process = subprocess.Popen(
        [sys.executable, "-m", "radicale", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise DemoError(f"Radicale did not start; see {folder / 'radicale.log'}")
            try:
                httpx.get(url + "/", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise DemoError("Radicale did not answer within 30 s") from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def make_collection(caldav_url: str, path: str, name: str) -> None:
    """Create a calendar collection unless it exists."""
    response = httpx.request(
        "MKCALENDAR",
        caldav_url + path,
        content=MKCALENDAR.format(name=name),
        headers={"Content-Type": "application/xml; charset=utf-8"},
        timeout=10,
    )
    if response.status_code == 409:
        # Radicale wants the parent (the "user" collection) first.
        parent = path.rstrip("/").rsplit("/", 1)[0] + "/"
        httpx.request("MKCOL", caldav_url + parent, timeout=10)
        response = httpx.request(
            "MKCALENDAR",
            caldav_url + path,
            content=MKCALENDAR.format(name=name),
            headers={"Content-Type": "application/xml; charset=utf-8"},
            timeout=10,
        )
    if response.status_code not in (201, 405):
        raise DemoError(f"cannot create {path} on Radicale: HTTP {response.status_code}")


def write_config(
    folder: Path,
    *,
    server_port: int,
    nexudus_url: str,
    orn: dict[str, str],
    caldav_url: str,
    rooms: list[DemoRoom],
    password: str,
) -> Path:
    """The sandbox's bridge.toml (secrets come from the demo's own environment)."""
    room_blocks = "".join(
        f"""
[[rooms]]
id = "{room.id}"
name = "{room.name}"
timezone = "Europe/London"
provider = "{room.provider}"
resource = "{room.resource}"
calendar = "dav"
calendar_id = "{room.collection}"
buffers = "{room.buffers}"
feed_privacy = "busy"
"""
        for room in rooms
    )
    path = folder / "bridge.toml"
    path.write_text(
        f"""# Written by `roombridge demo`; points at the sandbox's emulators and Radicale.
[state]
url = "sqlite:///{folder / "state.db"}"

[server]
listen = "127.0.0.1:{server_port}"
public_url = "http://127.0.0.1:{server_port}"

[providers.hq]
kind = "nexudus"
base_url = "{nexudus_url}"
username = "{NEXUDUS_USER}"
password = "{password}"

[providers.flex]
kind = "officernd"
base_url = "{orn["base_url"]}"
token_url = "{orn["token_url"]}"
org = "{orn["org"]}"
client_id = "{ORND_CLIENT}"
client_secret = "{password}"

[calendars.dav]
kind = "caldav"
url = "{caldav_url}/"
{room_blocks}"""
    )
    return path


@contextmanager
def sandbox(folder: Path, *, server_port: int = 8765, caldav_port: int = 5232) -> Iterator[Sandbox]:
    """Start everything, run one sync, serve feeds; stop everything on exit."""
    from bridge.server import create_app

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    password = secrets.token_urlsafe(12)
    with ExitStack() as stack:
        nexudus = NexudusEmulator(now=now)
        nexudus.add_user(NEXUDUS_USER, password)
        nexudus_ids = seed_nexudus(nexudus, now)
        nexudus_url = stack.enter_context(nexudus.serve()).base_url
        orn = OfficeRndEmulator(org="acme", now=now)
        orn.add_application(ORND_CLIENT, password)
        pod = seed_officernd(orn, now)
        orn_url = stack.enter_context(orn.serve()).base_url
        caldav_url = stack.enter_context(radicale(folder, free_port(caldav_port)))
        rooms = [
            DemoRoom(
                "callisto",
                "Callisto Meeting Room",
                "hq",
                str(nexudus_ids["callisto"]),
                "/demo/callisto/",
            ),
            DemoRoom(
                "europa",
                "Europa Board Room",
                "hq",
                str(nexudus_ids["europa"]),
                "/demo/europa/",
                buffers="merged",
            ),
            DemoRoom("io", "Io Focus Pod", "flex", pod, "/demo/io/"),
        ]
        for room in rooms:
            make_collection(caldav_url, room.collection, room.name)
        port = free_port(server_port)
        config_path = write_config(
            folder,
            server_port=port,
            nexudus_url=nexudus_url,
            orn={"base_url": orn_url, "token_url": f"{orn_url}/oauth/token", "org": "acme"},
            caldav_url=caldav_url,
            rooms=rooms,
            password=password,
        )
        config = load_config(config_path)
        runtime = stack.enter_context(Runtime(config))
        options = PassOptions(window=runtime.window(), max_deletions=config.sync.max_deletions)
        results = [runtime.sync_room(room, options) for room in config.rooms]
        server = BackgroundServer(create_app(config), port=port)
        server_url = server.start().base_url
        stack.callback(server.stop)
        feeds = {
            room.id: feed_url(
                config.server.public_url,
                room.id,
                runtime.store.feed_token(room.id, runtime.clock()),
            )
            for room in config.rooms
        }
        yield Sandbox(folder, config_path, server_url, caldav_url, rooms, feeds, results)


def describe_failure(exc: BaseException) -> dict[str, Any]:
    """A short, secret-free description of why the demo stopped."""
    return {"error": type(exc).__name__, "message": str(exc)}
