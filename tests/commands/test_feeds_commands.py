"""``roombridge feeds``, ``feed`` and ``serve`` from the command line, and end to end from a
Nexudus emulator through ``roombridge sync`` to the feed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from bridge.cli import main
from bridge.emulators.nexudus import NexudusEmulator
from bridge.server import create_app
from tests.feeds.parsers import READERS

ROOT = Path(__file__).resolve().parents[2]
USER = "admin@example.com"
PASSWORD = "feeds-Secret-Pa55word"
#: Details of the people booking, which a busy feed must never show.
PRIVATE = {
    "CoworkerFullName": "Marguerite Yourcenar",
    "Notes": "Allergy list: peanuts; call 07700 900123",
    "InternalNotes": "Staff only: VIP, invoice quarterly",
}
VISITOR = {"VisitorFullName": "Jean-Paul Sartre", "VisitorEmail": "jps@example.org"}


def config_text(state_url: str, base_url: str, resource: int, privacy: str = "busy") -> str:
    return f"""
[state]
url = "{state_url}"

[server]
listen = "127.0.0.1:8765"
public_url = "https://rooms.example.com/bridge/"

[sync]
past_days = 30
future_days = 365

[providers.hq]
kind = "nexudus"
base_url = "{base_url}"
username = "{USER}"
password = "${{FEEDS_NEXUDUS_PASSWORD}}"

[[rooms]]
id = "callisto"
name = "Callisto"
provider = "hq"
resource = "{resource}"
feed_privacy = "{privacy}"

[[rooms]]
id = "io"
name = "Io"
provider = "hq"
resource = "{resource + 1000}"
timezone = "Europe/London"
"""


class FeedWorld:
    """A feed-only room on a served Nexudus emulator, and the bridge's config."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        self.emulator = NexudusEmulator(now=self.now, seed=11)
        self.emulator.add_user(USER, PASSWORD)
        business = self.emulator.add_business("Acme London", time_zone="GMT Standard Time")
        self.resource = self.emulator.add_resource("Callisto", business_id=business)
        self.config = folder / "bridge.toml"
        self.base_url = ""

    def write(self, privacy: str = "busy") -> None:
        state_url = f"sqlite:///{self.folder / 'state.db'}"
        self.config.write_text(config_text(state_url, self.base_url, self.resource, privacy))

    def run(self, capsys: pytest.CaptureFixture[bytes], *args: str) -> tuple[int, bytes]:
        os.environ["FEEDS_NEXUDUS_PASSWORD"] = PASSWORD
        capsys.readouterr()
        code = main([*args, "--config", str(self.config)])
        return code, capsys.readouterr().out

    def provider_instants(self) -> Counter[tuple[datetime, datetime]]:
        def utc(value: object) -> datetime:
            moment = value if isinstance(value, datetime) else datetime.fromisoformat(
                str(value).replace("Z", "+00:00"))
            return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)

        return Counter((utc(r["FromTime"]), utc(r["ToTime"])) for r in self.emulator.bookings()
                       if r["ResourceId"] == self.resource)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[FeedWorld]:
    built = FeedWorld(tmp_path)
    with built.emulator.serve() as served:
        built.base_url = served.base_url
        built.write()
        yield built


def test_feeds_lists_urls_based_on_public_url_and_rotate_replaces_one(
    world: FeedWorld, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    code, out = world.run(capsysbinary, "feeds", "--json")
    assert code == 0
    listed = json.loads(out)
    assert [entry["room"] for entry in listed] == ["callisto", "io"]
    for entry in listed:
        prefix = f"https://rooms.example.com/bridge/feeds/{entry['room']}/"
        assert entry["url"].startswith(prefix) and entry["url"].endswith(".ics")
        token = entry["url"][len(prefix):-4]
        assert len(token) >= 22  # 128 random bits, URL-safe base64
    assert json.loads(world.run(capsysbinary, "feeds", "--json")[1]) == listed  # stable

    code, out = world.run(capsysbinary, "feeds", "--json", "--rotate", "io")
    rotated = json.loads(out)
    assert code == 0 and [entry["room"] for entry in rotated] == ["io"]
    assert rotated[0]["url"] != listed[1]["url"]
    after = json.loads(world.run(capsysbinary, "feeds", "--json")[1])
    assert after == [listed[0], rotated[0]]

    code, out = world.run(capsysbinary, "feeds")
    assert code == 0 and out.decode().split() == ["callisto", after[0]["url"], "io",
                                                   after[1]["url"]]


def test_unknown_rooms_are_usage_errors(world: FeedWorld,
                                        capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    assert world.run(capsysbinary, "feeds", "--rotate", "nowhere")[0] == 2
    assert world.run(capsysbinary, "feed", "nowhere")[0] == 2


def test_sync_then_feed_shows_the_provider_bookings_and_nothing_private(
    world: FeedWorld, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    base = world.now + timedelta(days=1, hours=1)
    world.emulator.seed_booking(world.resource, base, base + timedelta(hours=1), **PRIVATE,
                                BookingVisitors=[VISITOR])
    world.emulator.seed_booking(world.resource, base + timedelta(days=2),
                                base + timedelta(days=2, hours=2), Tentative=True, **PRIVATE)
    series = "5e1f1c9a-0000-4000-8000-000000000001"
    for week in range(4):
        start = base + timedelta(days=7 * week, hours=3)
        world.emulator.seed_booking(world.resource, start, start + timedelta(hours=1),
                                    RepeatSeriesUniqueId=series, **PRIVATE)
    code, out = world.run(capsysbinary, "sync", "--json")
    assert code == 0, out

    code, body = world.run(capsysbinary, "feed", "callisto")
    assert code == 0 and body.startswith(b"BEGIN:VCALENDAR\r\n")
    window = (world.now - timedelta(days=30), world.now + timedelta(days=365))
    for name, reader in READERS.items():
        assert reader(body, *window) == world.provider_instants(), name
    text = body.decode()
    for secret in [*PRIVATE.values(), *VISITOR.values(), "Marguerite", "07700", "jps@"]:
        assert secret not in text
    assert "STATUS:TENTATIVE" in text

    # The same data does reach a feed that may show it: the check above can fail.
    world.write(privacy="full")
    full = world.run(capsysbinary, "feed", "callisto")[1].decode()
    assert PRIVATE["CoworkerFullName"] in full and "Allergy list" in full


def test_feed_command_writes_the_bytes_the_server_sends(
    world: FeedWorld, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    start = world.now + timedelta(days=3)
    world.emulator.seed_booking(world.resource, start, start + timedelta(hours=1))
    assert world.run(capsysbinary, "sync", "--json")[0] == 0
    listed = json.loads(world.run(capsysbinary, "feeds", "--json")[1])
    path = "/" + listed[0]["url"].split("/bridge/", 1)[1]
    code, printed = world.run(capsysbinary, "feed", "callisto")
    from bridge.config import load_config

    with TestClient(create_app(load_config(world.config))) as client:
        served = client.get(path, headers={"Accept-Encoding": "identity"})
    assert code == 0 and served.status_code == 200
    assert served.content == printed


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_serve_runs_uvicorn_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "bridge.toml"
    config.write_text(config_text(f"sqlite:///{tmp_path / 'state.db'}", "http://127.0.0.1:9", 1)
                      .replace("127.0.0.1:8765", f"127.0.0.1:{port}"))
    env = {**os.environ, "FEEDS_NEXUDUS_PASSWORD": PASSWORD, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge.cli", "serve", "--config", str(config)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        health = None
        while time.monotonic() < deadline:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert health is not None and health.status_code == 200
        token_probe = httpx.get(f"http://127.0.0.1:{port}/feeds/callisto/secret-token.ics")
        assert token_probe.status_code == 404
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=20)
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit shows the signal.
    assert process.returncode in (0, -15), stderr
    assert b"Finished server process" in stderr
    assert b"secret-token" not in stderr and b"/feeds/callisto/***" in stderr
