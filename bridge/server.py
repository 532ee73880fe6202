"""The HTTP server (ASGI, Starlette): room feeds, ``/healthz``, ``/metrics`` and ``/``.

- ``GET|HEAD /feeds/<room>/<token>.ics`` — the room's ICS feed (``text/calendar``) with
  ``ETag`` and ``Last-Modified``; ``304`` for a matching ``If-None-Match`` (or, without one,
  ``If-Modified-Since``); gzip when the client accepts it. An unknown room, a wrong token and
  any other unknown path all answer the very same ``404``.
- ``GET /healthz`` — ``200`` when the state store answers, else ``503``.
- ``GET /metrics`` — Prometheus text format (feed requests, renders, durations, syncs).
- ``GET /`` — the status page: each configured room with its last sync, outcome, number of
  pending errors and next device action (no feed URLs, tokens, error texts or door codes:
  the page is as public as the server).

Tokens are secrets: the request log writes feed paths with the token replaced by ``***``;
uvicorn's own access log is off (see :func:`serve`).
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from time import perf_counter

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bridge.config import Config
from bridge.devices.status import next_device_action
from bridge.errors import StateError
from bridge.feeds.metrics import UNKNOWN_ROOM, FeedMetrics
from bridge.feeds.publisher import FEED_PATH, FeedDocument, FeedPublisher, utc_now
from bridge.state.store import StateStore

log = logging.getLogger("roombridge.http")

FEED_MEDIA_TYPE = "text/calendar; charset=utf-8"
_GZIP_SUFFIX = "-gzip"
_FEED_TOKEN_IN_PATH = re.compile(r"^(/feeds/[^/]+/)[^/]*$")
_SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def not_found() -> Response:
    """The one 404 of the server: unknown room, wrong token and unknown path look the same."""
    return PlainTextResponse(
        "Not Found\n", status_code=404, headers={"Cache-Control": "no-store", **_SECURITY_HEADERS}
    )


async def _not_found_handler(request: Request, exc: Exception) -> Response:
    """Starlette's own 404s (no route matched) answer exactly like a refused feed."""
    if isinstance(exc, HTTPException) and exc.status_code != 404:
        return PlainTextResponse(str(exc.detail), status_code=exc.status_code)
    return not_found()


def create_app(
    config: Config,
    *,
    store: StateStore | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> Starlette:
    """The ASGI app for a configuration (opens the state store unless one is given)."""
    owned = store is None
    state = store if store is not None else StateStore.open(config.state.url)
    metrics = FeedMetrics(state, [room.id for room in config.rooms])
    publisher = FeedPublisher(config, state, clock=clock, metrics=metrics)
    endpoints = _Endpoints(config, state, publisher, metrics)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if owned:
            state.close()

    app = Starlette(
        routes=[
            Route(FEED_PATH, endpoints.feed, methods=["GET", "HEAD"]),
            Route("/healthz", endpoints.healthz, methods=["GET", "HEAD"]),
            Route("/metrics", endpoints.metrics_page, methods=["GET"]),
            Route("/", endpoints.index, methods=["GET", "HEAD"]),
        ],
        exception_handlers={404: _not_found_handler},
        lifespan=lifespan,
    )
    app.state.publisher = publisher
    app.state.metrics = metrics
    return app


class _Endpoints:
    """The request handlers (plain functions: Starlette runs them in its thread pool)."""

    def __init__(
        self, config: Config, store: StateStore, publisher: FeedPublisher, metrics: FeedMetrics
    ) -> None:
        self.config = config
        self.store = store
        self.publisher = publisher
        self.metrics = metrics

    def feed(self, request: Request) -> Response:
        """A room's feed, or the common 404."""
        started = perf_counter()
        room_id = str(request.path_params["room"])
        token = str(request.path_params["token"])
        label = UNKNOWN_ROOM  # a label per configured room only, never one per URL
        try:
            if self.publisher.authorised(room_id, token):
                label = room_id
                response = feed_response(request, self.publisher.document(room_id))
            else:
                response = not_found()
        except StateError as exc:
            # The message names the store (password masked), never the request path.
            log.error("feed unavailable: %s", exc)
            response = PlainTextResponse("feed temporarily unavailable\n", status_code=503)
        status = str(response.status_code)
        self.metrics.requests.labels(label, status).inc()
        self.metrics.request_seconds.labels(status).observe(perf_counter() - started)
        return response

    def healthz(self, request: Request) -> Response:
        """200 when the state store answers."""
        try:
            self.store.ping()
        except StateError:
            return PlainTextResponse("state store unreachable\n", status_code=503)
        return PlainTextResponse("ok\n")

    def metrics_page(self, request: Request) -> Response:
        """The Prometheus exposition."""
        return Response(self.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    def index(self, request: Request) -> Response:
        """The status page: per room, the last sync, its outcome, pending errors, next action."""
        try:
            rows = "".join(self._status_row(room.id, room.name) for room in self.config.rooms)
        except StateError as exc:
            log.error("status page unavailable: %s", exc)
            return PlainTextResponse("state store unreachable\n", status_code=503)
        page = (
            "<!doctype html><html><head><meta charset=utf-8><title>roombridge</title></head>"
            "<body><h1>Rooms</h1><table><tr><th>room</th><th>last sync</th><th>outcome</th>"
            f"<th>pending errors</th><th>next device action</th></tr>{rows}</table>"
            "</body></html>"
        )
        return HTMLResponse(page, headers={"Cache-Control": "no-store", **_SECURITY_HEADERS})

    def _status_row(self, room_id: str, name: str) -> str:
        """One room's row: counts and times only."""
        last = self.store.last_run(room_id, finished=True)
        outcome = "never synced" if last is None else "ok" if last.ok else "failed"
        when = last.finished_at.isoformat() if last and last.finished_at else "-"
        upcoming = next_device_action(self.store, room_id)
        action = f"{upcoming['action']} at {upcoming['due']}" if upcoming else "-"
        cells = (f"{name} ({room_id})", when, outcome, str(len(self.store.errors(room_id))), action)
        return "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in cells) + "</tr>"


# --- conditional and compressed feed responses ------------------------------------------------


def feed_response(request: Request, document: FeedDocument) -> Response:
    """200 with the feed (gzip when accepted), 304 when the client's copy is current."""
    compressed = accepts_gzip(request.headers)
    etag = f'"{document.etag}{_GZIP_SUFFIX if compressed else ""}"'
    headers = {
        "ETag": etag,
        "Last-Modified": http_date(document.last_modified),
        "Cache-Control": "private, no-cache",
        "Vary": "Accept-Encoding",
        **_SECURITY_HEADERS,
    }
    if not_modified(request.headers, document):
        return Response(status_code=304, headers=headers)
    body = document.gzipped() if compressed else document.body
    if compressed:
        headers["Content-Encoding"] = "gzip"
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(body))
        return Response(b"", headers=headers, media_type=FEED_MEDIA_TYPE)
    return Response(body, headers=headers, media_type=FEED_MEDIA_TYPE)


def not_modified(headers: Headers, document: FeedDocument) -> bool:
    """Whether the client's copy is current (If-None-Match wins over If-Modified-Since)."""
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None:
        return any(_etag_matches(tag, document.etag) for tag in if_none_match.split(","))
    if_modified_since = headers.get("if-modified-since")
    if if_modified_since is None:
        return False
    try:
        since = parsedate_to_datetime(if_modified_since)
    except (TypeError, ValueError):
        return False
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return document.last_modified.replace(microsecond=0) <= since


def _etag_matches(candidate: str, etag: str) -> bool:
    """Weak comparison of one If-None-Match entry with the feed's ETag, either encoding."""
    tag = candidate.strip()
    if tag == "*":
        return True
    tag = tag.removeprefix("W/").strip('"')
    return tag in (etag, etag + _GZIP_SUFFIX)


def accepts_gzip(headers: Headers) -> bool:
    """Whether Accept-Encoding allows gzip (``gzip`` or ``*`` with a non-zero q)."""
    accepted: dict[str, float] = {}
    for item in headers.get("accept-encoding", "").split(","):
        name, _, params = item.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if name:
            accepted[name.strip().lower()] = quality
    if "gzip" in accepted:
        return accepted["gzip"] > 0
    return accepted.get("*", 0.0) > 0


def http_date(instant: datetime) -> str:
    """An HTTP date (IMF-fixdate)."""
    return format_datetime(instant.astimezone(UTC).replace(microsecond=0), usegmt=True)


# --- logging and running ------------------------------------------------------------------------


def redacted_path(path: str) -> str:
    """A request path fit for logs: a feed token becomes ``***``."""
    return _FEED_TOKEN_IN_PATH.sub(r"\1***", path)


class RequestLog:
    """ASGI middleware: one log line per request, method, redacted path, status, duration."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, noting its status."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        status = 500

        async def noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, noting_status)
        finally:
            log.info(
                "%s %s %d %.1fms",
                scope["method"],
                redacted_path(scope["path"]),
                status,
                (perf_counter() - started) * 1000,
            )


def serve(config: Config, *, log_level: str = "info") -> None:
    """Run the app on uvicorn at ``server.listen`` until SIGINT/SIGTERM."""
    app = RequestLog(create_app(config))
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.server.host,
            port=config.server.port,
            access_log=False,  # it would print feed tokens; RequestLog redacts them
            log_level=log_level,
            lifespan="on",
            server_header=False,
        )
    )
    server.run()
