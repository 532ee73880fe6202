"""Fault injection shared by every emulator.

The faults a test can ask for, the seeded injector that draws them per request, the request
log entry, and the ASGI middleware that answers with a fault (in each emulator's own words for
a throttle or a server error) or passes the request on, recording it either way.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class FaultKind(StrEnum):
    """Failures the emulator can inject before a request reaches its handler."""

    THROTTLE = "throttle"  # 409 + Retry-After, Nexudus's throttle
    SERVER_ERROR = "server_error"  # 500 {"Message": "An error has occurred."}
    TIMEOUT = "timeout"  # hold the connection, then drop it without a reply
    SLOW = "slow"  # answer normally, late


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Random fault injection: each request fails with probability ``rate``, kind by seeded RNG."""

    rate: float = 0.0
    kinds: tuple[FaultKind, ...] = tuple(FaultKind)
    seed: int = 0
    retry_after: int = 1
    hang_seconds: float = 5.0
    slow_seconds: float = 0.2
    path_prefix: str = "/api/"


class FaultInjector:
    """Decides, per request, which fault (if any) to inject; thread-safe and deterministic."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.plan = FaultPlan()
        self._rng = random.Random(0)
        self._queued: list[FaultKind] = []

    def configure(self, plan: FaultPlan) -> None:
        """Use ``plan`` from now on, with its RNG reseeded."""
        with self._lock:
            self.plan = plan
            self._rng = random.Random(plan.seed)

    def queue(self, kinds: Iterable[FaultKind]) -> None:
        """Make the next requests fail with these faults, in order, whatever the rate."""
        with self._lock:
            self._queued.extend(kinds)

    def clear(self) -> None:
        """No more faults."""
        self.configure(FaultPlan())
        with self._lock:
            self._queued.clear()

    def draw(self, path: str) -> FaultKind | None:
        """The fault for a request to ``path``, if one is due."""
        with self._lock:
            if not path.startswith(self.plan.path_prefix):
                return None
            if self._queued:
                return self._queued.pop(0)
            if self.plan.rate <= 0 or self._rng.random() >= self.plan.rate:
                return None
            return self._rng.choice(self.plan.kinds)


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the emulator saw it (no headers or bodies: they may hold secrets)."""

    method: str
    route: str
    path: str
    query: tuple[tuple[str, str], ...]
    fault: FaultKind | None
    status: int | None


class RecordingEmulator(Protocol):
    """What the middleware needs of an emulator: its injector and its request log."""

    faults: FaultInjector

    def record(self, scope: Scope, fault: FaultKind | None, status: int | None) -> None:
        """Remember one answered request."""
        ...


class FaultMiddleware:
    """ASGI middleware: records every request and injects the configured faults."""

    def __init__(
        self,
        app: ASGIApp,
        emulator: RecordingEmulator,
        *,
        throttle: Callable[[FaultPlan], Response],
        server_error: Callable[[], Response],
    ) -> None:
        self._app = app
        self._emulator = emulator
        self._throttle = throttle
        self._server_error = server_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection."""
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        fault = self._emulator.faults.draw(scope["path"])
        recorded = False

        async def send_recording(message: Message) -> None:
            nonlocal recorded
            # Record before the reply leaves, so a test reading the log right after its call
            # returns always finds that call in it.
            if message["type"] == "http.response.start" and not recorded:
                recorded = True
                status = None if fault is FaultKind.TIMEOUT else int(message["status"])
                self._emulator.record(scope, fault, status)
            await send(message)

        try:
            await self._serve(scope, receive, send_recording, fault)
        finally:
            if not recorded:
                self._emulator.record(scope, fault, None)

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, fault: FaultKind | None
    ) -> None:
        """Answer with the fault, or pass the request on to the API."""
        plan = self._emulator.faults.plan
        if fault is FaultKind.THROTTLE:
            await self._throttle(plan)(scope, receive, send)
        elif fault is FaultKind.SERVER_ERROR:
            await self._server_error()(scope, receive, send)
        elif fault is FaultKind.TIMEOUT:
            await hang_then_drop(receive, send, plan.hang_seconds)
        else:
            if fault is FaultKind.SLOW:
                await asyncio.sleep(plan.slow_seconds)
            await self._app(scope, receive, send)


async def hang_then_drop(receive: Receive, send: Send, seconds: float) -> None:
    """Hold the request until the client gives up (or ``seconds`` pass), then break it off."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (remaining := deadline - loop.time()) > 0:
        try:
            message: Message = await asyncio.wait_for(receive(), remaining)
        except TimeoutError:
            break
        if message["type"] == "http.disconnect":
            return
    # Announce a body and never finish it: the server has to close the connection.
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
        }
    )
    await send({"type": "http.response.body", "body": b"{", "more_body": True})
