"""``roombridge feeds``: each room's feed URL (with its token); ``--rotate ROOM`` replaces one.

The URL is ``<server.public_url>/feeds/<room>/<token>.ics``. A room's token is created on
first listing; after ``--rotate`` the old URL answers 404 and only the rotated room is
printed, with its new URL.
"""

from __future__ import annotations

import argparse
from typing import Any

from bridge.commands.options import add_config_option, add_json_option, configuration, print_json
from bridge.feeds.publisher import feed_url
from bridge.runtime import Runtime


def add_parser(subparsers: Any) -> None:
    """Register the subcommand."""
    parser = subparsers.add_parser("feeds", help="list each room's feed URL")
    add_config_option(parser)
    add_json_option(parser)
    parser.add_argument(
        "--rotate", metavar="ROOM", help="issue a new token for ROOM (the old URL stops working)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print ``[{"room", "url"}]`` (JSON) or one ``room  url`` line per room."""
    config = configuration(args)
    rooms = [config.room(args.rotate)] if args.rotate else config.rooms
    entries: list[dict[str, str]] = []
    with Runtime(config) as runtime:
        store, now = runtime.store, runtime.clock()
        for room in rooms:
            if args.rotate:
                token = store.rotate_feed_token(room.id, now)
            else:
                token = store.feed_token(room.id, now)
            entries.append(
                {"room": room.id, "url": feed_url(config.server.public_url, room.id, token)}
            )
    if args.json:
        print_json(entries)
    else:
        width = max((len(entry["room"]) for entry in entries), default=0)
        for entry in entries:
            print(f"{entry['room']:<{width}}  {entry['url']}")
    return 0
