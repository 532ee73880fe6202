"""Options every configured command shares, and how they load the configuration."""

from __future__ import annotations

import argparse
import json
import sys

from bridge.config import Config, config_path, load_config


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """``--config PATH`` (else ``$BRIDGE_CONFIG``, else ``./bridge.toml``)."""
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="configuration file (default: $BRIDGE_CONFIG, else ./bridge.toml)",
    )


def add_json_option(parser: argparse.ArgumentParser) -> None:
    """``--json``: the same facts as one JSON document on stdout."""
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def configuration(args: argparse.Namespace) -> Config:
    """The validated configuration the command was pointed at."""
    return load_config(config_path(args.config))


def print_json(document: object) -> None:
    """Write a JSON document to stdout."""
    json.dump(document, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")


def on_terminal() -> bool:
    """Whether progress may be shown (stderr is a terminal)."""
    return sys.stderr.isatty()
