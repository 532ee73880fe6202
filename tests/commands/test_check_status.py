"""`roombridge check` and `roombridge status` against a real world (emulator + Radicale)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import redirect_stdout
from datetime import timedelta
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.emulators.faults import FaultKind, FaultPlan
from tests.e2e.world import PASSWORD, World
from tests.plugins.caldav_servers import CalDAVServer


@pytest.fixture
def world(radicale_server: CalDAVServer, tmp_path: Path) -> Iterator[World]:
    with World(radicale_server, tmp_path).running() as running:
        yield running


def run(world: World, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        code = main([args[0], "--config", str(world.config_path), *args[1:]])
    return code, out.getvalue()


def test_check_reaches_provider_and_calendar(world: World, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("E2E_NEXUDUS_PASSWORD", PASSWORD)
    code, out = run(world, "check", "--json")
    document = json.loads(out)
    assert code == 0 and document["ok"]
    assert [c["ok"] for c in document["checks"]] == [True, True, True]
    assert PASSWORD not in out


def test_check_reports_an_unreachable_provider_without_secrets(
    world: World, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("E2E_NEXUDUS_PASSWORD", PASSWORD)
    world.emulator.faults.configure(FaultPlan(rate=1.0, kinds=(FaultKind.SERVER_ERROR,)))
    code, out = run(world, "check")
    assert code == 1
    assert "FAILED" in out and "provider hq" in out
    assert PASSWORD not in out


def test_bad_config_exits_2_naming_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    config = tmp_path / "bridge.toml"
    config.write_text('[[rooms]]\nid = "a"\nname = "A"\nprovider = "nope"\nresource = "1"\n')
    assert main(["check", "--config", str(config)]) == 2
    assert "rooms[0].provider" in capsys.readouterr().err


def test_status_shows_last_sync_and_pending_errors(world: World, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("E2E_NEXUDUS_PASSWORD", PASSWORD)
    code, out = run(world, "status", "--json")
    assert json.loads(out)["rooms"][0]["ok"] is None
    world.book(world.now + timedelta(days=1))
    assert world.sync().code == 0
    code, out = run(world, "status", "--json")
    room = json.loads(out)["rooms"][0]
    assert code == 0
    assert room["ok"] is True and room["created"] == 1 and room["last_sync"]
    code, text = run(world, "status")
    assert "callisto: ok" in text
    assert PASSWORD not in out + text
