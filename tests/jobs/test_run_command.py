"""``roombridge run`` as a real process: serves, arms a pod, switches it on to the second, stops
on SIGTERM and SIGINT."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from bridge.emulators.zenspace import ZenSpaceEmulator
from bridge.model import Booking, Person
from bridge.state.store import StateStore

KEY = "run-test-key-5e6f"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def write_config(folder: Path, state: str, port: int, zenspace_url: str, pod: str) -> Path:
    config = folder / "bridge.toml"
    config.write_text(f"""
[state]
url = "{state}"
[server]
listen = "127.0.0.1:{port}"
[sync]
interval = "1h"
[providers.hq]
kind = "nexudus"
base_url = "http://127.0.0.1:9"
username = "admin@example.com"
password = "unused"
[providers.pods]
kind = "zenspace"
base_url = "{zenspace_url}"
api_key = "${{ZEN_KEY}}"
[[rooms]]
id = "pod"
timezone = "UTC"
provider = "hq"
resource = "1"
devices = "pods"
device_space = "{pod}"
""")
    return config


def start_run(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bridge.cli", "run", "--config", str(config)],
        env={**os.environ, "ZEN_KEY": KEY}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )


def book(state: str, start: datetime, now: datetime) -> None:
    with StateStore.open(state) as store:
        store.put_provider_booking("pod", Booking(
            "hq", "77", "1", start, start + timedelta(hours=1), "UTC",
            organizer=Person("ada@example.com")), now)


def test_run_serves_arms_the_pod_and_stops_cleanly_on_sigterm(tmp_path: Path):
    emulator = ZenSpaceEmulator(api_keys=(KEY,))
    pod = emulator.add_pod(timezone="Europe/Paris")
    port = free_port()
    state = f"sqlite:///{tmp_path / 'state.db'}"
    now = datetime.now(UTC)
    book(state, now + timedelta(hours=2), now)
    with emulator.serve() as served:
        process = start_run(write_config(tmp_path, state, port, served.base_url, pod))
        try:
            assert wait_for(lambda: len(emulator.bookings) == 1), "the pod was never booked"
            health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            assert health.status_code == 200
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 0, err
    assert "stopped" in err
    code = next(iter(emulator.bookings.values()))["unlock_key"]
    assert code not in out + err and KEY not in out + err


def test_run_switches_the_pod_on_to_the_second_and_stops_on_sigint(tmp_path: Path):
    emulator = ZenSpaceEmulator(api_keys=(KEY,))
    pod = emulator.add_pod(timezone="Europe/Paris")
    state = f"sqlite:///{tmp_path / 'state.db'}"
    now = datetime.now(UTC).replace(microsecond=0)
    due = now + timedelta(seconds=25)  # device_lead (10 min) before the meeting starts
    book(state, due + timedelta(minutes=10), now)
    with emulator.serve() as served:
        process = start_run(write_config(tmp_path, state, free_port(), served.base_url, pod))
        try:
            assert wait_for(lambda: len(emulator.bookings) == 1), "the pod was never booked"
            assert datetime.now(UTC) < due, "too slow a start to measure the switch-on time"
            assert wait_for(lambda: emulator.changes(pod, "light"), timeout=60)
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
    (switched, _), *_ = emulator.changes(pod, "light")
    # At the due second: not at the next planning tick, and never early.
    assert timedelta(0) <= switched - due < timedelta(seconds=2), (switched, due)
    assert [value for _, value in emulator.changes(pod, "fan")] == ["on"]
    assert process.returncode == 0, err
    assert "stopped" in err
