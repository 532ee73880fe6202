"""``roombridge serve``: the HTTP server (feeds, ``/healthz``, ``/metrics``) on uvicorn."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from bridge.commands.options import add_config_option, configuration
from bridge.server import serve


def add_parser(subparsers: Any) -> None:
    """Register the subcommand."""
    parser = subparsers.add_parser("serve", help="serve feeds, /healthz and /metrics over HTTP")
    add_config_option(parser)
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log verbosity (default: info)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM."""
    config = configuration(args)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    print(
        f"roombridge: serving on http://{config.server.listen} "
        f"(feed URLs: roombridge feeds --config {config.path})",
        file=sys.stderr,
        flush=True,
    )
    serve(config, log_level=args.log_level)
    return 0
