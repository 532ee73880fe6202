"""`roombridge demo`: the sandbox starts, syncs, serves feeds, and Ctrl-C stops everything."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import icalendar

from tests.feeds.parsers import READERS

ROOT = Path(__file__).resolve().parents[1]


def start_demo(folder: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bridge.cli",
            "demo",
            "--folder",
            str(folder),
            "--port",
            "0",
            "--caldav-port",
            "0",
            *extra,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as in a terminal
    )


def ctrl_c(process: subprocess.Popen[str]) -> None:
    """What a terminal does on Ctrl-C: SIGINT to the whole foreground process group."""
    os.killpg(process.pid, signal.SIGINT)


def read_summary(process: subprocess.Popen[str], timeout: float = 90) -> str:
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.strip().startswith("try") is False and "roombridge status --config" in line:
            break
    return "".join(lines)


def port_open(url: str) -> bool:
    host, port = re.match(r"http://([\d.]+):(\d+)", url).groups()  # type: ignore[union-attr]
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, int(port))) == 0


def test_demo_serves_feeds_and_calendars_then_stops_on_ctrl_c(tmp_path: Path):
    process = start_demo(tmp_path / "demo")
    try:
        summary = read_summary(process)
        assert "FAILED" not in summary, summary
        assert summary.count("events written") == 3
        feeds = re.findall(r"feed\s+(http://\S+\.ics)", summary)
        calendars = re.findall(r"calendar\s+(http://\S+/)", summary)
        assert len(feeds) == 3 and len(calendars) == 3
        for url in feeds:
            response = httpx.get(url, timeout=10)
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/calendar")
            events = icalendar.Calendar.from_ical(response.content).walk("VEVENT")
            assert events
            # The four parsers see the same occurrences over the seeded months.
            now = datetime.now(UTC)
            seen = [read(response.content, now - timedelta(days=1), now + timedelta(days=200))
                    for read in READERS.values()]
            assert seen[0] and all(other == seen[0] for other in seen[1:])
            # Busy feeds: no booker names or notes from the seeded data.
            for secret in ("Ada Lovelace", "Design review", "Grace Hopper", "Focus session"):
                assert secret.encode() not in response.content
        status_page = re.search(r"status page\s+(http://\S+/)", summary).group(1)  # type: ignore[union-attr]
        page = httpx.get(status_page, timeout=10).text
        assert page.count("<td>ok</td>") == 3 and "/feeds/" not in page
        for url in re.findall(r"(?:health|metrics)\s+(http://\S+)", summary):
            assert httpx.get(url, timeout=10).status_code == 200
        wrong = re.sub(r"/[^/]+\.ics$", "/not-the-token.ics", feeds[0])
        assert httpx.get(wrong, timeout=10).status_code == 404
        assert httpx.request("PROPFIND", calendars[0], headers={"Depth": "1"}).status_code == 207
        ctrl_c(process)
        assert process.wait(timeout=60) == 0
        assert not port_open(feeds[0]) and not port_open(calendars[0])
    finally:
        if process.poll() is None:
            process.kill()


def test_ctrl_c_during_start_up_stops_everything_without_a_false_error(tmp_path: Path):
    process = start_demo(tmp_path / "demo")
    try:
        assert process.stderr is not None
        assert "starting" in process.stderr.readline()
        time.sleep(1.0)  # inside the start-up: emulators up, Radicale starting
        ctrl_c(process)
        _, err = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "did not start" not in err and "Traceback" not in err
    assert "stopping" in err
    radicale = (tmp_path / "demo" / "radicale.conf").read_text()
    port = re.search(r"hosts = 127.0.0.1:(\d+)", radicale).group(1)  # type: ignore[union-attr]
    assert not port_open(f"http://127.0.0.1:{port}")
