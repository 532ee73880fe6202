"""``roombridge demo``: a local sandbox with emulated providers, Radicale and the feed server."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from bridge.demo import sandbox


def add_parser(subparsers: Any) -> None:
    """Register the subcommand."""
    parser = subparsers.add_parser(
        "demo", help="start a local sandbox: emulated providers, Radicale, one sync, feeds"
    )
    parser.add_argument(
        "--folder",
        default=".demo",
        help="where the sandbox keeps its config, state and calendars (default: ./.demo)",
    )
    parser.add_argument("--port", type=int, default=8765, help="feed server port (default 8765)")
    parser.add_argument(
        "--caldav-port", type=int, default=5232, help="Radicale port (default 5232)"
    )
    parser.add_argument(
        "--exit-after-start",
        action="store_true",
        help="print the URLs and stop at once (for scripts and tests)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Start the sandbox, print its URLs, and wait for Ctrl-C (or SIGTERM)."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    print("roombridge demo: starting emulators, Radicale and the feed server…", file=sys.stderr)
    with sandbox(
        Path(args.folder).absolute(), server_port=args.port, caldav_port=args.caldav_port
    ) as running:
        print(running.summary(), flush=True)
        if not args.exit_after_start:
            stop.wait()
        print("roombridge demo: stopping…", file=sys.stderr, flush=True)
    failed = [r.id for r in running.results if not r.ok]
    return 1 if failed else 0
