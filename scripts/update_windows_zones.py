#!/usr/bin/env python3
"""Regenerate ``mappings/windows_zones.py``, the Windows ⇄ IANA time zone table, from CLDR.

The bridge meets Windows zone names ("GMT Standard Time") in Microsoft Graph events and in
Nexudus business settings, and IANA names everywhere else. The authoritative mapping is the
Unicode CLDR file ``common/supplemental/windowsZones.xml``.

Two ways to feed this script (it never downloads anything itself):

1. From CLDR directly (preferred when you are online)::

       curl -LO https://raw.githubusercontent.com/unicode-org/cldr/main/common/supplemental/windowsZones.xml
       curl -LO https://data.iana.org/time-zones/tzdb/backward
       .venv/bin/python scripts/update_windows_zones.py --cldr windowsZones.xml --backward backward

   ``--backward`` (the IANA tzdb ``backward`` file, optional) adds the alias names CLDR does not
   list, in both directions: CLDR keeps old ids such as ``Asia/Calcutta`` and ``Europe/Kiev``,
   so the current ``Asia/Kolkata`` and ``Europe/Kyiv`` come from the links.

2. Offline, from the copy of the same CLDR data that the ``tzlocal`` package ships (its
   ``windows_tz.py`` is generated from ``windowsZones.xml`` plus the tzdb ``backward`` links)::

       pip install --target /tmp/tzlocal_pkg tzlocal
       .venv/bin/python scripts/update_windows_zones.py \
           --tzlocal /tmp/tzlocal_pkg/tzlocal/windows_tz.py --source-note "tzlocal 5.4.5"

   The file is read as data (``ast.literal_eval``), never imported; tzlocal is not a dependency.

Either way the output holds ``WINDOWS_TO_IANA`` (each Windows name to CLDR's territory "001"
default zone) and ``IANA_TO_WINDOWS`` (every IANA name CLDR lists, aliases included, to its
Windows name), sorted, with a header naming the source, its version and SHA-256.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import sys
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "mappings" / "windows_zones.py"
DEFAULT_TERRITORY = "001"


@dataclass(frozen=True)
class ZoneTable:
    """The two directions of the mapping, plus where they came from."""

    windows_to_iana: dict[str, str]
    iana_to_windows: dict[str, str]
    source: str


def table_from_cldr(xml_text: str, links: dict[str, str], source: str) -> ZoneTable:
    """The table from ``windowsZones.xml`` text and tzdb ``link -> target`` aliases."""
    root = ElementTree.fromstring(xml_text)
    windows_to_iana: dict[str, str] = {}
    iana_to_windows: dict[str, str] = {}
    version = ""
    for map_timezones in root.iter("mapTimezones"):
        version = map_timezones.get("typeVersion", version)
        for map_zone in map_timezones.iter("mapZone"):
            windows = (map_zone.get("other") or "").strip()
            names = (map_zone.get("type") or "").split()
            if not windows or not names:
                continue
            if map_zone.get("territory") == DEFAULT_TERRITORY:
                windows_to_iana[windows] = names[0]
            for name in names:
                # The first Windows zone that lists a name wins; CLDR lists each name once.
                iana_to_windows.setdefault(name, windows)
    _add_aliases(iana_to_windows, links)
    described = f"{source} (CLDR tz data {version})" if version else source
    return ZoneTable(windows_to_iana, iana_to_windows, described)


def _add_aliases(iana_to_windows: dict[str, str], links: dict[str, str]) -> None:
    """Give every tzdb alias of a listed name (and every target of a listed alias) its zone."""
    for link, target in sorted(links.items()):
        if target in iana_to_windows:
            iana_to_windows.setdefault(link, iana_to_windows[target])
        elif link in iana_to_windows:
            iana_to_windows.setdefault(target, iana_to_windows[link])


def links_from_backward(text: str) -> dict[str, str]:
    """``link -> target`` pairs from a tzdb ``backward`` file (``Link TARGET LINK`` lines)."""
    links: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 3 and fields[0] == "Link":
            links[fields[2]] = fields[1]
    return links


def table_from_tzlocal(python_text: str, source: str) -> ZoneTable:
    """The table from tzlocal's generated ``windows_tz.py`` (``win_tz`` and ``tz_win`` dicts)."""
    literals: dict[str, dict[str, str]] = {}
    for node in ast.parse(python_text).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    literals[target.id] = ast.literal_eval(node.value)
    if "win_tz" not in literals or "tz_win" not in literals:
        raise ValueError("not a tzlocal windows_tz.py: win_tz / tz_win dicts missing")
    # tzlocal copies CLDR's whitespace-separated lists verbatim, so a stray trailing space in
    # windowsZones.xml shows up as an empty key; strip names and drop empty ones.
    windows_to_iana = _cleaned(literals["win_tz"])
    iana_to_windows = _cleaned(literals["tz_win"])
    return ZoneTable(windows_to_iana, iana_to_windows, source)


def _cleaned(pairs: dict[str, str]) -> dict[str, str]:
    """Names stripped of whitespace, empty names dropped."""
    return {
        name.strip(): value.strip()
        for name, value in pairs.items()
        if name.strip() and value.strip()
    }


def render(table: ZoneTable, digest: str, command: str) -> str:
    """The Python source of ``mappings/windows_zones.py``."""
    lines = [
        '"""Windows ⇄ IANA time zone names, generated from Unicode CLDR ``windowsZones.xml``.',
        "",
        "Do not edit. Regenerate with ``scripts/update_windows_zones.py`` (its docstring says",
        "how to get the CLDR input); this file was written by::",
        "",
        f"    {command}",
        "",
        f"Source: {table.source}",
        f"Source SHA-256: {digest}",
        "",
        "``WINDOWS_TO_IANA`` maps each Windows zone id to CLDR's default (territory 001) IANA",
        "zone; ``IANA_TO_WINDOWS`` maps every IANA name CLDR lists, and their tzdb aliases, to",
        "its Windows zone id.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "WINDOWS_TO_IANA: dict[str, str] = {",
        *_dict_lines(table.windows_to_iana),
        "}",
        "",
        "IANA_TO_WINDOWS: dict[str, str] = {",
        *_dict_lines(table.iana_to_windows),
        "}",
        "",
    ]
    return "\n".join(lines)


def _dict_lines(pairs: dict[str, str]) -> list[str]:
    """Sorted ``"name": "value",`` lines."""
    return [f"    {json.dumps(name)}: {json.dumps(pairs[name])}," for name in sorted(pairs)]


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--cldr", type=Path, help="CLDR common/supplemental/windowsZones.xml")
    source.add_argument("--tzlocal", type=Path, help="tzlocal's generated windows_tz.py")
    parser.add_argument("--backward", type=Path, help="tzdb 'backward' file (aliases, --cldr)")
    parser.add_argument("--source-note", default="", help="where the input came from")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Read the source, write the table module, print a one-line summary."""
    args = _arguments(argv)
    source_path: Path = args.cldr or args.tzlocal
    raw = source_path.read_bytes()
    note = args.source_note or source_path.name
    if args.cldr:
        links = links_from_backward(args.backward.read_text()) if args.backward else {}
        table = table_from_cldr(raw.decode(), links, f"unicode-org/cldr windowsZones.xml, {note}")
        flags = f"--cldr {source_path.name}" + (" --backward backward" if args.backward else "")
    else:
        table = table_from_tzlocal(raw.decode(), f"CLDR windowsZones.xml as shipped in {note}")
        flags = f"--tzlocal .../windows_tz.py --source-note {note!r}"
    command = f"scripts/update_windows_zones.py {flags}"
    args.output.write_text(render(table, hashlib.sha256(raw).hexdigest(), command))
    print(
        f"{args.output}: {len(table.windows_to_iana)} Windows zones, "
        f"{len(table.iana_to_windows)} IANA names"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
