"""Windows ⇄ IANA zone names (CLDR table), zone resolution, and the table generator."""

from __future__ import annotations

import importlib.util
import sys
from datetime import datetime
from pathlib import Path
from types import ModuleType
from zoneinfo import ZoneInfo, available_timezones

import pytest

import mappings.windows_zones as table_module
from mappings.errors import MappingError, UnknownTimezone
from mappings.timezones import iana_to_windows, resolve_zone, windows_to_iana, zone
from mappings.windows_zones import IANA_TO_WINDOWS, WINDOWS_TO_IANA

KNOWN = available_timezones()
GENERATOR = Path(__file__).resolve().parents[2] / "scripts" / "update_windows_zones.py"


@pytest.mark.parametrize(
    ("windows", "iana"),
    [
        ("GMT Standard Time", "Europe/London"),
        ("Eastern Standard Time", "America/New_York"),
        ("AUS Eastern Standard Time", "Australia/Sydney"),
        ("W. Europe Standard Time", "Europe/Berlin"),
        ("Pacific Standard Time", "America/Los_Angeles"),
        ("Romance Standard Time", "Europe/Paris"),
    ],
)
def test_windows_names_map_to_cldr_default_zone(windows: str, iana: str) -> None:
    assert windows_to_iana(windows) == iana
    assert resolve_zone(windows) == iana
    assert zone(windows) == ZoneInfo(iana)


def test_windows_names_are_matched_case_insensitively_and_trimmed() -> None:
    assert windows_to_iana("gmt standard time") == "Europe/London"
    assert resolve_zone("  Eastern Standard Time ") == "America/New_York"


def test_iana_names_and_their_aliases_map_to_windows() -> None:
    assert iana_to_windows("Europe/London") == "GMT Standard Time"
    # CLDR lists the old ids; the current tzdb names come from the alias links.
    assert iana_to_windows("Asia/Kolkata") == iana_to_windows("Asia/Calcutta") is not None
    assert iana_to_windows("Europe/Kyiv") == iana_to_windows("Europe/Kiev") is not None
    assert iana_to_windows("Mars/Olympus_Mons") is None


def test_every_windows_zone_round_trips_through_its_default_zone() -> None:
    for windows, iana in WINDOWS_TO_IANA.items():
        assert iana in KNOWN, f"{windows} maps to {iana}, unknown to zoneinfo"
        assert iana_to_windows(iana) == windows
        assert ZoneInfo(resolve_zone(windows)).utcoffset(datetime(2026, 1, 15)) == ZoneInfo(
            iana
        ).utcoffset(datetime(2026, 1, 15))


def test_every_listed_iana_name_round_trips_to_the_same_windows_zone() -> None:
    checked = 0
    for iana, windows in IANA_TO_WINDOWS.items():
        if iana not in KNOWN:
            continue
        default = windows_to_iana(windows)
        assert default is not None and default in KNOWN, (iana, windows)
        assert iana_to_windows(default) == windows
        assert resolve_zone(iana) == iana  # an IANA name is never rewritten
        checked += 1
    assert checked > 400


def test_windows_zone_and_its_iana_members_share_offsets() -> None:
    """A 09:00 meeting in a Windows zone is the same instant as in each IANA member zone."""
    mismatched = []
    for iana, windows in IANA_TO_WINDOWS.items():
        if iana not in KNOWN:
            continue
        default = ZoneInfo(WINDOWS_TO_IANA[windows])
        for month in (1, 7):
            wall = datetime(2026, month, 15, 9, 0)
            if (
                wall.replace(tzinfo=ZoneInfo(iana)).utcoffset()
                != wall.replace(tzinfo=default).utcoffset()
            ):
                mismatched.append((iana, windows))
                break
    # tzdata moves faster than CLDR for a few remote zones (Antarctic stations, Greenland);
    # more than a handful means the table is stale and must be regenerated.
    assert len(mismatched) <= 5, mismatched


def test_unknown_names_raise_naming_booking_and_field() -> None:
    with pytest.raises(UnknownTimezone) as caught:
        resolve_zone("Mars Standard Time", booking="hq/42", field="start.timeZone")
    assert caught.value.booking == "hq/42"
    assert caught.value.field == "start.timeZone"
    assert "Mars Standard Time" in str(caught.value)
    assert isinstance(caught.value, MappingError)


@pytest.mark.parametrize("name", ["", "   ", "Europe/Londn", "localtime", "../etc/passwd"])
def test_names_that_are_not_zones_are_refused(name: str) -> None:
    with pytest.raises(UnknownTimezone):
        resolve_zone(name)
    with pytest.raises(UnknownTimezone):
        zone(name)


def test_zone_objects_are_cached() -> None:
    assert zone("GMT Standard Time") is zone("GMT Standard Time")
    assert zone("Europe/London") is ZoneInfo("Europe/London")


def test_utc_names_resolve_to_utc() -> None:
    # "UTC" is a Windows id and an IANA name at once; the IANA reading is kept.
    assert resolve_zone("UTC") == "UTC"
    assert windows_to_iana("UTC") == "Etc/UTC"
    assert resolve_zone("tzone://Microsoft/Utc") == "Etc/UTC"


def test_generated_table_names_its_source_and_how_to_regenerate() -> None:
    header = table_module.__doc__ or ""
    assert "CLDR" in header
    assert "update_windows_zones.py" in header
    assert "SHA-256" in header


# --------------------------------------------------------------------------- generator


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("update_windows_zones", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


CLDR_SAMPLE = """<?xml version="1.0" encoding="UTF-8" ?>
<supplementalData>
  <windowsZones>
    <mapTimezones otherVersion="7e11800" typeVersion="2021a">
      <mapZone other="GMT Standard Time" territory="001" type="Europe/London"/>
      <mapZone other="GMT Standard Time" territory="IE" type="Europe/Dublin"/>
      <mapZone other="GMT Standard Time" territory="PT" type="Europe/Lisbon Atlantic/Madeira"/>
      <mapZone other="India Standard Time" territory="001" type="Asia/Calcutta"/>
      <mapZone other="Central Standard Time (Mexico)" territory="MX"
               type="America/Mexico_City America/Chihuahua "/>
      <mapZone other="Central Standard Time (Mexico)" territory="001" type="America/Mexico_City"/>
    </mapTimezones>
  </windowsZones>
</supplementalData>
"""

BACKWARD_SAMPLE = """# tzdb backward links
Link\tEurope/London\t\tGB
Link\tAsia/Kolkata\t\tAsia/Calcutta\t# CLDR still lists the old name
Link\tEurope/Lisbon\t\tPortugal
"""


def test_generator_reads_cldr_with_territory_defaults_and_aliases() -> None:
    generator = _generator()
    links = generator.links_from_backward(BACKWARD_SAMPLE)
    table = generator.table_from_cldr(CLDR_SAMPLE, links, "sample")
    assert table.windows_to_iana == {
        "GMT Standard Time": "Europe/London",
        "India Standard Time": "Asia/Calcutta",
        "Central Standard Time (Mexico)": "America/Mexico_City",
    }
    assert table.iana_to_windows["Atlantic/Madeira"] == "GMT Standard Time"
    assert table.iana_to_windows["GB"] == "GMT Standard Time"  # alias of a listed name
    assert table.iana_to_windows["Asia/Kolkata"] == "India Standard Time"  # target of one
    assert "" not in table.iana_to_windows  # the stray space in a type list
    assert "2021a" in table.source


def test_generator_output_is_an_importable_table(tmp_path: Path) -> None:
    generator = _generator()
    table = generator.table_from_cldr(CLDR_SAMPLE, {}, "sample")
    target = tmp_path / "windows_zones_sample.py"
    target.write_text(generator.render(table, "0" * 64, "scripts/update_windows_zones.py"))
    namespace: dict[str, object] = {}
    exec(compile(target.read_text(), str(target), "exec"), namespace)
    assert namespace["WINDOWS_TO_IANA"] == table.windows_to_iana
    assert namespace["IANA_TO_WINDOWS"] == table.iana_to_windows


def test_generator_reads_tzlocal_tables_as_data_and_drops_empty_names() -> None:
    generator = _generator()
    source = (
        "# generated\n"
        'win_tz = {"GMT Standard Time": "Europe/London"}\n'
        "tz_names = win_tz\n"
        'tz_win = {"": "Central Standard Time (Mexico)", "Europe/London": "GMT Standard Time"}\n'
    )
    table = generator.table_from_tzlocal(source, "tzlocal sample")
    assert table.windows_to_iana == {"GMT Standard Time": "Europe/London"}
    assert table.iana_to_windows == {"Europe/London": "GMT Standard Time"}
    with pytest.raises(ValueError):
        generator.table_from_tzlocal("x = 1\n", "not tzlocal")
