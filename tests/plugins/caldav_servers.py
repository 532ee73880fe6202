"""Real CalDAV servers for tests: Radicale 3 (htpasswd basic auth) and Xandikos (no auth).

Each server runs as a subprocess of the venv's Python on a free 127.0.0.1 port with its storage
in a session temp dir, is polled until it answers HTTP, and is terminated at the end of the
session. Xandikos runs without authentication: its ``--htpasswd`` option insists on HTTPS
(``--autocert``), which would test TLS set-up rather than the adapter.

Fixtures:
- ``radicale_server`` / ``xandikos_server`` (session): a running :class:`CalDAVServer`;
- ``caldav_server`` (parametrized over both): the server, with ``new_collection()``;
- ``caldav_backend``: a ready ``CalDAVCalendar`` on a fresh collection of ``caldav_server``.
"""

from __future__ import annotations

import itertools
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from bridge.calendars.caldav import CalDAVCalendar

SERVER_NAMES = ["radicale", "xandikos"]
STARTUP_TIMEOUT = 30.0
MKCALENDAR = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:set><D:prop>'
    "<D:displayname>{name}</D:displayname>"
    '<C:supported-calendar-component-set><C:comp name="VEVENT"/>'
    "</C:supported-calendar-component-set></D:prop></D:set></C:mkcalendar>"
)


@dataclass
class CalDAVServer:
    """A running CalDAV server: where it is, who may log in, and fresh collections on demand."""

    name: str
    base_url: str
    home: str  # path under which the test user may create calendars
    username: str | None = None
    password: str | None = None
    _counter: Iterator[int] = field(default_factory=itertools.count, repr=False)

    @property
    def auth(self) -> tuple[str, str] | None:
        if self.username is None or self.password is None:
            return None
        return (self.username, self.password)

    def collection_path(self) -> str:
        """A unique collection path that does not exist yet."""
        return f"{self.home}test-{next(self._counter)}-{secrets.token_hex(4)}/"

    def new_collection(self, display_name: str = "Test room") -> str:
        """Create a fresh calendar collection with MKCALENDAR and return its path."""
        path = self.collection_path()
        response = httpx.request(
            "MKCALENDAR",
            self.base_url + path,
            content=MKCALENDAR.format(name=display_name),
            headers={"Content-Type": "application/xml; charset=utf-8"},
            auth=self.auth,
        )
        assert response.status_code == 201, (response.status_code, response.text)
        return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{url} exited with {process.returncode}:\n{log.read_text()[-2000:]}")
        try:
            httpx.request("OPTIONS", url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    process.terminate()
    pytest.fail(f"{url} not ready after {STARTUP_TIMEOUT}s:\n{log.read_text()[-2000:]}")


def run_server(
    command: Callable[[int], list[str]], workdir: Path, log_name: str
) -> Iterator[str]:
    """Start the server on a free port, yield its base URL, terminate it afterwards."""
    port = free_port()
    log = workdir / log_name
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            command(port), stdout=log_file, stderr=subprocess.STDOUT, cwd=workdir
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(process, base_url + "/", log)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def radicale_config(workdir: Path, port: int) -> str:
    return (
        "[server]\n"
        f"hosts = 127.0.0.1:{port}\n"
        "[auth]\n"
        "type = htpasswd\n"
        f"htpasswd_filename = {workdir / 'users'}\n"
        "htpasswd_encryption = plain\n"
        "delay = 0\n"
        "[rights]\n"
        "type = owner_only\n"
        "[storage]\n"
        f"filesystem_folder = {workdir / 'collections'}\n"
        "[logging]\n"
        "level = warning\n"
    )


@pytest.fixture(scope="session")
def radicale_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CalDAVServer]:
    workdir = tmp_path_factory.mktemp("radicale")
    username, password = "rooms", "pw-" + secrets.token_urlsafe(12)
    (workdir / "users").write_text(f"{username}:{password}\n")
    config = workdir / "config"

    def command(port: int) -> list[str]:
        config.write_text(radicale_config(workdir, port))
        return [sys.executable, "-m", "radicale", "--config", str(config)]

    for base_url in run_server(command, workdir, "radicale.log"):
        yield CalDAVServer("radicale", base_url, f"/{username}/", username, password)


@pytest.fixture(scope="session")
def xandikos_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CalDAVServer]:
    workdir = tmp_path_factory.mktemp("xandikos")

    def command(port: int) -> list[str]:
        return [
            sys.executable, "-m", "xandikos.web", "--defaults",
            "-d", str(workdir / "data"), "-l", "127.0.0.1", "-p", str(port),
            "--state-dir", str(workdir / "state"), "--no-detect-systemd",
        ]

    for base_url in run_server(command, workdir, "xandikos.log"):
        yield CalDAVServer("xandikos", base_url, "/user/calendars/")


@pytest.fixture(params=SERVER_NAMES)
def caldav_server(request: pytest.FixtureRequest) -> CalDAVServer:
    server: CalDAVServer = request.getfixturevalue(f"{request.param}_server")
    return server


@pytest.fixture
def caldav_backend(caldav_server: CalDAVServer) -> Iterator[CalDAVCalendar]:
    backend = CalDAVCalendar(
        caldav_server.base_url,
        caldav_server.new_collection(),
        username=caldav_server.username,
        password=caldav_server.password,
    )
    with backend:
        yield backend
