"""The sync benchmark still runs end to end (tiny N) and reports every figure it promises."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.sync import main

ROOT = Path(__file__).resolve().parents[2]
MEASUREMENTS = {"raw_put", "vdirsyncer", "bridge_initial", "bridge_noop", "bridge_changes"}
PASS_KEYS = {
    "seconds",
    "created",
    "updated",
    "deleted",
    "calendar_requests",
    "server_requests",
    "server_seconds",
    "outside_server_seconds",
    "provider_requests",
}
TARGETS = {
    "initial_vs_raw_put",
    "vdirsyncer_vs_initial",
    "noop_calendar_requests",
    "noop_provider_requests",
    "changes_writes",
    "changes_calendar_requests",
}


def test_quick_run_writes_every_measurement_and_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "results" / "sync.json"

    code = main(["--bookings", "20", "--changes", "5", "--output", str(output)])

    assert code == 0, capsys.readouterr().err
    results = json.loads(output.read_text())
    assert results["bookings"] == 20
    assert results["objects"] == 20
    assert len(results["initial_vs_raw_put_per_round"]) == results["rounds"] == 1
    assert results["same_objects_as_baselines"] is True
    measured = results["measurements"]
    assert set(measured) == MEASUREMENTS
    for name in ("bridge_initial", "bridge_noop", "bridge_changes"):
        assert set(measured[name]) >= PASS_KEYS, name
        assert set(measured[name]["provider_requests"]) == {"total", "login", "list_pages", "other"}
    assert measured["bridge_initial"]["created"] == 20
    assert measured["raw_put"]["server_requests"]["PUT"] == 20
    assert measured["vdirsyncer"]["server_requests"]["PUT"] == 20
    assert measured["bridge_changes"]["expected"] == {"created": 1, "updated": 3, "deleted": 1}
    assert set(results["derived"]) == {
        "initial_outside_server_vs_raw_put",
        "vdirsyncer_outside_server_vs_raw_put",
        "best_possible_speedup_over_vdirsyncer",
    }
    assert set(results["targets"]) == TARGETS
    for target in results["targets"].values():
        assert set(target) == {"value", "target", "met"}
        assert isinstance(target["met"], bool)
    table = capsys.readouterr().out
    assert "bridge initial sync" in table and "initial_vs_raw_put" in table


def test_runs_as_a_script_from_the_repository() -> None:
    completed = subprocess.run(
        [sys.executable, "bench/sync.py", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "--bookings" in completed.stdout and "--quick" in completed.stdout
