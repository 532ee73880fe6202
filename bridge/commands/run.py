"""``roombridge run``: ``serve`` plus the scheduler (periodic sync, device actions on time).

One process on SQLite: the HTTP server (when ``bridge.server`` is available) runs in a
background thread, the scheduler in the main thread. SIGTERM and SIGINT set a stop event:
the scheduler finishes the job it is running, the server shuts down, every client and the
state store are closed, and the exit status is 0.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from bridge.commands.options import add_config_option, configuration
from bridge.config import Config
from bridge.jobs.rooms import DeviceClients, schedule_rooms
from bridge.jobs.scheduler import Scheduler, SystemClock
from bridge.runtime import Runtime
from bridge.state.store import StateStore

log = logging.getLogger(__name__)


def add_parser(subparsers: Any) -> None:
    """Register the subcommand."""
    parser = subparsers.add_parser(
        "run", help="serve plus scheduled sync and device arming, until SIGTERM/SIGINT"
    )
    add_config_option(parser)
    parser.add_argument(
        "--no-server", action="store_true", help="run the scheduler only (no HTTP server)"
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log verbosity (default: info)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run until a stop signal; 0 after a clean stop."""
    config = configuration(args)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    stop = threading.Event()
    with _stop_on_signals(stop), Runtime(config) as runtime:
        clients = DeviceClients(runtime)
        try:
            scheduler = Scheduler(SystemClock())
            schedule_rooms(scheduler, runtime, clients.client)
            with _http_server(config, runtime.store, enabled=not args.no_server):
                print(
                    f"roombridge: running {len(config.rooms)} room(s), "
                    f"sync every {config.sync.interval}",
                    file=sys.stderr,
                    flush=True,
                )
                scheduler.run(stop)
        finally:
            clients.close()
    print("roombridge: stopped", file=sys.stderr, flush=True)
    return 0


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop`` for the duration of the block."""

    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def _http_server(config: Config, store: StateStore, *, enabled: bool) -> Iterator[None]:
    """The feed/status server in a background thread, when enabled and available."""
    if not enabled:
        yield
        return
    try:
        server_module = importlib.import_module("bridge.server")
    except ModuleNotFoundError as exc:
        if exc.name != "bridge.server":
            raise
        log.warning("bridge.server is not available: running the scheduler alone")
        yield
        return
    from bridge.emulators.server import BackgroundServer

    app = server_module.RequestLog(server_module.create_app(config, store=store))
    server = BackgroundServer(app, host=config.server.host, port=config.server.port)
    address = server.start()
    print(f"roombridge: serving on {address.base_url}", file=sys.stderr, flush=True)
    try:
        yield
    finally:
        server.stop()
