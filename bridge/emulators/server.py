"""Serve an ASGI app with uvicorn in a background thread on a free loopback port.

Emulators use it in tests and in ``roombridge demo``::

    with serve_in_thread(app) as server:
        httpx.get(f"{server.base_url}/healthz")

The socket is bound before the thread starts, so the port is known at once and no other
process can take it between "pick a port" and "listen". Shutdown is graceful but bounded: a
request left hanging on purpose (a fault-injected timeout) cannot keep a test waiting.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

STARTUP_TIMEOUT = 10.0
SHUTDOWN_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class RunningServer:
    """Where a background server listens."""

    host: str
    port: int

    @property
    def base_url(self) -> str:
        """``http://host:port`` without a trailing slash."""
        return f"http://{self.host}:{self.port}"


class BackgroundServer:
    """A uvicorn server for one app, started and stopped from the calling thread."""

    def __init__(self, app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0) -> None:
        # proto must say TCP: asyncio sets TCP_NODELAY only on sockets that do, and without
        # it every reply waits ~40 ms for a delayed ACK (Nagle).
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        bound_host, bound_port = self._socket.getsockname()[:2]
        self.address = RunningServer(bound_host, bound_port)
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name=f"uvicorn-{bound_port}",
            daemon=True,
        )

    def start(self) -> RunningServer:
        """Start serving; returns once the server accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"the server on port {self.address.port} failed to start")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the server on port {self.address.port} did not start")
            time.sleep(0.005)
        return self.address

    def stop(self) -> None:
        """Stop serving and wait for the thread; forces the exit if a request hangs on."""
        self._server.should_exit = True
        self._thread.join(SHUTDOWN_TIMEOUT)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(SHUTDOWN_TIMEOUT)
        self._socket.close()


class SwappableApp:
    """An ASGI app forwarding to whichever app is ``current``.

    Starting and stopping uvicorn costs ~0.2 s, so a test session can serve one of these for
    its whole life and swap a fresh emulator in for each test.
    """

    def __init__(self, current: ASGIApp | None = None) -> None:
        self.current = current

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Forward to the current app, or answer 503 when none is mounted."""
        app = self.current
        if app is None:
            if scope["type"] == "http":
                await PlainTextResponse("no app mounted", status_code=503)(scope, receive, send)
            return
        await app(scope, receive, send)


@contextmanager
def serve_in_thread(
    app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0
) -> Iterator[RunningServer]:
    """Serve ``app`` for the duration of the ``with`` block (port 0: any free port)."""
    server = BackgroundServer(app, host=host, port=port)
    address = server.start()
    try:
        yield address
    finally:
        server.stop()
