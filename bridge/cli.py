"""The ``roombridge`` command: parse arguments, call a subcommand module, print, exit.

Each subcommand lives in ``bridge/commands/<name>.py`` and exposes ``add_parser(subparsers)``
and ``run(args) -> int``. Every :class:`~bridge.errors.BridgeError` becomes a one-line message
and an exit code instead of a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from bridge import __version__
from bridge.errors import BridgeError, ConfigError

#: Subcommand modules in help order; a module that does not exist yet is skipped.
COMMANDS = ("check", "sync", "status", "feed", "feeds", "serve", "run", "convert", "demo")

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_USAGE = 2


def _command_modules() -> list[ModuleType]:
    """The subcommand modules that are present."""
    modules = []
    for name in COMMANDS:
        try:
            modules.append(importlib.import_module(f"bridge.commands.{name}"))
        except ModuleNotFoundError as exc:
            if exc.name != f"bridge.commands.{name}":
                raise
    return modules


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available subcommand."""
    parser = argparse.ArgumentParser(
        prog="roombridge",
        description="Calendar sync bridge for room booking platforms.",
    )
    parser.add_argument("--version", action="version", version=f"roombridge {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module in _command_modules():
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``roombridge`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except ConfigError as exc:
        print(f"roombridge: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BridgeError as exc:
        print(f"roombridge: {exc}", file=sys.stderr)
        return EXIT_FAILURES
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
