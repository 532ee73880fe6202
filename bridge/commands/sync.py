"""``roombridge sync``: one sync pass over the rooms (all by default)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, TextIO

from bridge.commands.options import (
    add_config_option,
    add_json_option,
    configuration,
    on_terminal,
    print_json,
)
from bridge.errors import BridgeError
from bridge.runtime import Runtime
from bridge.sync.engine import PassOptions, RoomResult


def add_parser(subparsers: Any) -> None:
    """Register the subcommand."""
    parser = subparsers.add_parser("sync", help="one sync pass over the rooms")
    add_config_option(parser)
    parser.add_argument("--room", action="append", metavar="ID", help="only this room (repeatable)")
    parser.add_argument("--full", action="store_true", help="ignore cursors: read everything")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and write nothing")
    parser.add_argument(
        "--force", action="store_true", help="exceed max_deletions (mass deletions)"
    )
    add_json_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Sync the selected rooms; exit 1 when any room had failures."""
    config = configuration(args)
    rooms = [config.room(room_id) for room_id in args.room] if args.room else config.rooms
    results: list[RoomResult] = []
    # Progress goes to stderr, and only to a terminal: piped output stays clean.
    show_progress = on_terminal() and not args.json
    with Runtime(config) as runtime:
        options = PassOptions(
            window=runtime.window(),
            max_deletions=config.sync.max_deletions,
            full=args.full,
            dry_run=args.dry_run,
            force=args.force,
            progress=TerminalProgress(sys.stderr) if show_progress else None,
        )
        for index, room in enumerate(rooms, start=1):
            if show_progress:
                print(f"[{index}/{len(rooms)}] syncing {room.id}…", file=sys.stderr, flush=True)
            try:
                result = runtime.sync_room(room, options)
            except BridgeError as exc:
                result = RoomResult(room.id, ok=False, errors=[str(exc)])
            results.append(result)
            if not args.json:
                _print_room(result, dry_run=args.dry_run)
    ok = all(result.ok for result in results)
    if args.json:
        print_json({"ok": ok, "dry_run": args.dry_run, "rooms": [r.as_json() for r in results]})
    return 0 if ok else 1


class TerminalProgress:
    """Rewrites one stderr line with a room's applied actions, at most a few times a second."""

    def __init__(self, stream: TextIO, *, interval: float = 0.2) -> None:
        self._stream = stream
        self._interval = interval
        self._shown_at = 0.0

    def __call__(self, room_id: str, done: int, total: int) -> None:
        """Show ``done`` of ``total``; the last call ends the line."""
        now = time.monotonic()
        finished = done >= total
        if not finished and now - self._shown_at < self._interval:
            return
        self._shown_at = now
        self._stream.write(f"\r  {room_id}: {done}/{total} changes applied")
        self._stream.write("\n" if finished else "")
        self._stream.flush()


def _print_room(result: RoomResult, *, dry_run: bool) -> None:
    """The human summary of one room."""
    if dry_run:
        print(f"{result.id}: {len(result.planned)} planned action(s)")
        for line in result.planned:
            print(f"  {line['action']:<7} {line['uid']}  ({line['reason']})")
    else:
        status = "ok" if result.ok else "FAILED"
        print(
            f"{result.id}: {status} — created {result.created}, updated {result.updated}, "
            f"deleted {result.deleted}"
        )
    for error in result.errors:
        print(f"  error: {error}")
