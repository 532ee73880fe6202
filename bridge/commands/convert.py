"""``roombridge convert``: pure mapping between provider JSON and iCalendar, no config needed.

``--from KIND`` reads provider JSON (or ``ics``) from FILE or stdin, ``--to KIND`` writes
iCalendar (the default) or provider JSON to stdout. Each provider mapping lives in
``mappings/<kind>.py`` and exposes ``from_json(data, *, provider, timezone)`` and
``to_json(booking)``; modules are imported only when asked for, so a kind whose mapping is not
written yet fails with a clear message instead of breaking the whole command.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

from bridge.model import Booking, BufferMode, Privacy
from mappings.errors import MappingError
from mappings.ical import bookings_to_calendar, calendar_to_bookings

PROVIDER_KINDS = ("nexudus", "officernd", "prospero", "zenspace", "google", "graph")
ICS = "ics"
KINDS = (*PROVIDER_KINDS, ICS)

EXIT_OK = 0
EXIT_BAD_INPUT = 2

STDIN = "-"


class BadInput(Exception):
    """Input that cannot be converted; the message is the one line the user sees."""


def add_parser(subparsers: Any) -> None:
    """Register ``convert`` and its options."""
    parser = subparsers.add_parser(
        "convert",
        help="convert provider JSON to iCalendar, or iCalendar to provider JSON",
        description=(
            "Pure mapping, no config file: provider JSON to iCalendar (default --to ics), or "
            "--from ics --to KIND for provider JSON. Reads FILE, or stdin without one. "
            "Provider JSON output is one object for one booking, else an array."
        ),
    )
    parser.add_argument("--from", dest="source", required=True, choices=KINDS, metavar="KIND")
    parser.add_argument("--to", dest="target", default=ICS, choices=KINDS, metavar="KIND")
    parser.add_argument(
        "--timezone", metavar="ZONE", help="the room's IANA zone when the input carries none"
    )
    parser.add_argument(
        "--privacy",
        choices=[privacy.value for privacy in Privacy],
        default=Privacy.FULL.value,
        help="what iCalendar output may show (default: full)",
    )
    parser.add_argument(
        "--buffers",
        choices=[mode.value for mode in BufferMode],
        default=BufferMode.SEPARATE.value,
        help="how setup/cleanup time is shown in iCalendar output (default: separate)",
    )
    parser.add_argument("--name", help="calendar name (X-WR-CALNAME) of iCalendar output")
    # Every command takes --config; convert needs none and ignores it.
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("file", nargs="?", default=STDIN, metavar="FILE")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Convert the input and print the result; bad input exits 2 with one line on stderr."""
    try:
        raw = read_input(args.file)
        bookings = read_bookings(args.source, raw, timezone=args.timezone)
        output = render(
            bookings,
            args.target,
            privacy=Privacy(args.privacy),
            buffers=BufferMode(args.buffers),
            name=args.name,
        )
    except BadInput as exc:
        print(f"roombridge convert: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except MappingError as exc:
        print(f"roombridge convert: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    write_output(output)
    return EXIT_OK


def read_input(file: str) -> bytes:
    """The bytes of FILE, or of stdin for ``-``."""
    if file == STDIN:
        return cast(bytes, sys.stdin.buffer.read())
    try:
        return Path(file).read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read {file}: {exc.strerror or exc}") from exc


def read_bookings(kind: str, raw: bytes, *, timezone: str | None) -> list[Booking]:
    """Canonical bookings from input of the given kind."""
    if kind == ICS:
        return calendar_to_bookings(raw, provider=ICS, timezone=timezone)
    from_json = _mapping_function(kind, "from_json")
    try:
        data = json.loads(raw)
    except UnicodeDecodeError as exc:
        raise BadInput(f"{kind} input is not UTF-8 text: {exc.reason}") from exc
    except json.JSONDecodeError as exc:
        raise BadInput(
            f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    try:
        return cast(list[Booking], from_json(data, provider=kind, timezone=timezone))
    except MappingError:
        raise
    except ValueError as exc:
        # Records the mapping accepted but the model refuses (an end before its start).
        raise BadInput(f"invalid {kind} booking: {exc}") from exc


def render(
    bookings: Sequence[Booking],
    kind: str,
    *,
    privacy: Privacy,
    buffers: BufferMode,
    name: str | None,
) -> bytes:
    """The output document: iCalendar, or the provider's JSON."""
    if kind == ICS:
        return bookings_to_calendar(bookings, privacy=privacy, buffers=buffers, name=name)
    to_json = _mapping_function(kind, "to_json")
    documents = [to_json(booking) for booking in bookings]
    document = documents[0] if len(documents) == 1 else documents
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode()


def _mapping_function(kind: str, name: str) -> Callable[..., Any]:
    """``mappings.<kind>.<name>``, or BadInput when that mapping is not available yet."""
    module_name = f"mappings.{kind}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise BadInput(f"the {kind} mapping is not available ({module_name} is missing)") from exc
    function = getattr(module, name, None)
    if not callable(function):
        raise BadInput(f"the {kind} mapping has no {name}()")
    return cast(Callable[..., Any], function)


def write_output(output: bytes) -> None:
    """Bytes to stdout unchanged (iCalendar needs its CRLF line ends)."""
    sys.stdout.flush()
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:
        sys.stdout.write(output.decode())
        return
    buffer.write(output)
    buffer.flush()
