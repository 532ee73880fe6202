"""``roombridge feed ROOM``: write the room's ICS feed to stdout, the bytes the server sends."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bridge.commands.options import add_config_option, configuration
from bridge.feeds.publisher import FeedPublisher
from bridge.runtime import Runtime


def add_parser(subparsers: Any) -> None:
    """Register the subcommand."""
    parser = subparsers.add_parser("feed", help="write a room's ICS feed to stdout")
    parser.add_argument("room", metavar="ROOM", help="the room id")
    add_config_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Render (from the state store) and print the feed; exit 2 for an unknown room."""
    config = configuration(args)
    room = config.room(args.room)
    with Runtime(config) as runtime:
        publisher = FeedPublisher(config, runtime.store, clock=runtime.clock)
        body = publisher.document(room.id).body
    sys.stdout.buffer.write(body)
    sys.stdout.buffer.flush()
    return 0
