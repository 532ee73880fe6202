"""``roombridge check``: validate the configuration and reach every provider and calendar once."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from bridge.commands.options import add_config_option, add_json_option, configuration, print_json
from bridge.config import RoomConfig
from bridge.errors import BridgeError
from bridge.model import Window
from bridge.runtime import Runtime


def add_parser(subparsers: Any) -> None:
    """Register the subcommand."""
    parser = subparsers.add_parser(
        "check", help="validate the configuration and reach every provider and calendar"
    )
    add_config_option(parser)
    add_json_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Check each room's provider resource and calendar; exit 1 when any is unreachable."""
    config = configuration(args)
    checks: list[dict[str, Any]] = []
    discovered: set[str] = set()
    with Runtime(config) as runtime:
        checks.append(_attempt("state", config.state.url.split("://")[0], runtime.store.ping))
        for room in config.rooms:
            checks.append(
                _attempt(
                    f"room {room.id}: provider {room.provider}",
                    f"resource {room.resource}",
                    lambda room=room: _reach_provider(runtime, room),
                )
            )
            calendar = runtime.calendar(room)
            check = getattr(calendar, "check", None)
            if check is not None:
                checks.append(
                    _attempt(f"room {room.id}: calendar {room.calendar}", room.calendar_id, check)
                )
            list_rooms = getattr(calendar, "list_rooms", None)
            if list_rooms is not None and room.calendar not in discovered:
                discovered.add(str(room.calendar))
                checks.append(_discovery(str(room.calendar), list_rooms))
    ok = all(item["ok"] for item in checks)
    if args.json:
        print_json({"ok": ok, "config": str(config.path), "checks": checks})
    else:
        print(f"configuration {config.path}: valid")
        for item in checks:
            mark = "ok" if item["ok"] else "FAILED"
            detail = f" — {item['error']}" if item.get("error") else ""
            print(f"{mark:>6}  {item['what']} ({item['target']}){detail}")
            for found in item.get("rooms", ()):
                print(f"        {_room_line(found)}")
    return 0 if ok else 1


def _reach_provider(runtime: Runtime, room: RoomConfig) -> None:
    """Resolve the room (its zone too) and read one day of its bookings, writing nothing."""
    model_room = runtime.room(room, ask_provider=True)
    now = runtime.clock()
    runtime.source(room.provider).read(
        model_room, None, Window(now, now + timedelta(days=1)), full=True, now=now
    )


def _discovery(calendar: str, list_rooms: Callable[[], Sequence[Any]]) -> dict[str, Any]:
    """The rooms a calendar service lists (Microsoft 365 places), to pick ``calendar_id``s from."""
    what = f"calendar {calendar}: rooms"
    try:
        rooms = [asdict(found) for found in list_rooms()]
    except BridgeError as exc:
        return {"what": what, "target": "room list", "ok": False, "error": str(exc)}
    return {"what": what, "target": f"{len(rooms)} found", "ok": True, "rooms": rooms}


def _room_line(room: dict[str, Any]) -> str:
    """One discovered room: its address, name, capacity and where it is."""
    capacity = f", {room['capacity']} seats" if room.get("capacity") else ""
    place = ", ".join(str(room[key]) for key in ("building", "street", "city") if room.get(key))
    return f"{room['address']}  {room['name']}{capacity}" + (f" — {place}" if place else "")


def _attempt(what: str, target: str | None, action: Any) -> dict[str, Any]:
    """Run one reachability check, turning a failure into a reported line."""
    try:
        action()
    except BridgeError as exc:
        return {"what": what, "target": target, "ok": False, "error": str(exc)}
    return {"what": what, "target": target, "ok": True}
