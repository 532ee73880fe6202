"""``roombridge status``: per room, the last sync, its outcome and the pending errors."""

from __future__ import annotations

import argparse
from typing import Any

from bridge.commands.options import add_config_option, add_json_option, configuration, print_json
from bridge.devices.status import next_device_action
from bridge.runtime import Runtime


def add_parser(subparsers: Any) -> None:
    """Register the subcommand."""
    parser = subparsers.add_parser("status", help="last sync, outcome and errors per room")
    add_config_option(parser)
    add_json_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print each room's state; exit 1 when a room's last pass failed or errors are pending."""
    config = configuration(args)
    rooms: list[dict[str, Any]] = []
    with Runtime(config) as runtime:
        store = runtime.store
        for room in config.rooms:
            last = store.last_run(room.id, finished=True)
            errors = store.errors(room.id)
            rooms.append(
                {
                    "id": room.id,
                    "last_sync": last.finished_at.isoformat()
                    if last and last.finished_at
                    else None,
                    "ok": last.ok if last else None,
                    "created": last.created if last else 0,
                    "updated": last.updated if last else 0,
                    "deleted": last.deleted if last else 0,
                    "run_errors": list(last.errors) if last else [],
                    "pending_errors": [
                        {
                            "item": e.item,
                            "operation": e.operation,
                            "message": e.message,
                            "attempts": e.attempts,
                        }
                        for e in errors
                    ],
                    "next_device_action": next_device_action(store, room.id),
                }
            )
    healthy = all(r["ok"] is not False and not r["pending_errors"] for r in rooms)
    if args.json:
        print_json({"ok": healthy, "rooms": rooms})
    else:
        for r in rooms:
            outcome = {True: "ok", False: "FAILED", None: "never synced"}[r["ok"]]
            when = r["last_sync"] or "-"
            print(f"{r['id']}: {outcome} (last sync {when})")
            if r["next_device_action"]:
                upcoming = r["next_device_action"]
                print(f"  next device action: {upcoming['action']} at {upcoming['due']}")
            for error in r["run_errors"]:
                print(f"  error: {error}")
            for pending in r["pending_errors"]:
                print(
                    f"  pending: {pending['item']} {pending['operation']} "
                    f"(attempt {pending['attempts']}): {pending['message']}"
                )
    return 0 if healthy else 1
