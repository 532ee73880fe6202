"""The door code in the organizer's description (opt-in) and the configurable assumptions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bridge.config import ZenSpaceConfig, load_config
from bridge.devices.assumptions import DEFAULT_ASSUMPTIONS
from bridge.devices.disclosure import description_with_codes
from bridge.errors import ConfigError
from bridge.model import Booking, Privacy

START = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
MEETING = Booking("hq", "1", "r", START, START + timedelta(hours=1), "Europe/London",
                  description="Agenda: budget")
CODES = [(START, "481516")]


def test_code_reaches_the_organizer_only_when_shared_with_full_privacy():
    shown = description_with_codes(MEETING, CODES, Privacy.FULL, share=True)
    assert shown.startswith("Agenda: budget") and "481516" in shown
    for privacy in (Privacy.BUSY, Privacy.TITLES):
        assert description_with_codes(MEETING, CODES, privacy, share=True) == "Agenda: budget"
    assert description_with_codes(MEETING, CODES, Privacy.FULL, share=False) == "Agenda: budget"
    private = MEETING.evolve(private=True)
    assert "481516" not in description_with_codes(private, CODES, Privacy.FULL, share=True)


def test_each_occurrence_of_a_series_gets_its_own_line():
    codes = [(START, "111111"), (START + timedelta(days=1), "222222")]
    shown = description_with_codes(MEETING, codes, Privacy.FULL, share=True)
    assert "(2025-03-03 09:00): 111111" in shown and "(2025-03-04 09:00): 222222" in shown


CONFIG = """
[providers.pods]
kind = "zenspace"
base_url = "http://127.0.0.1:1"
api_key = "k"
{assumptions}

[[rooms]]
id = "pod"
provider = "pods"
resource = "1"
timezone = "UTC"
devices = "pods"
device_space = "space"
{room}
"""


def load(tmp_path: Path, assumptions: str = "", room: str = ""):
    path = tmp_path / "bridge.toml"
    path.write_text(CONFIG.format(assumptions=assumptions, room=room))
    return load_config(path)


def test_assumptions_default_and_override(tmp_path: Path):
    provider = load(tmp_path).providers["pods"]
    assert isinstance(provider, ZenSpaceConfig) and provider.assumptions == DEFAULT_ASSUMPTIONS
    table = ('[providers.pods.assumptions]\ndevice_action_path = "/devices/{meeting_space_id}/do"'
             '\nswitched_devices = ["light"]\narming_horizon = "12h"\nunlock_key_digits = 8')
    assumptions = load(tmp_path, table).providers["pods"].assumptions  # type: ignore[attr-defined]
    assert assumptions.action_path("p") == "/devices/p/do"
    assert assumptions.switched_devices == ("light",)
    assert assumptions.arming_horizon == timedelta(hours=12)
    assert assumptions.unlock_key_digits == 8


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ("typo_key = 1", "typo_key"),
        ('unlock_key_digits = "6"', "unlock_key_digits"),
        ("unlock_key_digits = 2", "unlock_key_digits"),
        ('arming_horizon = "soon"', "arming_horizon"),
    ],
)
def test_bad_assumptions_name_the_key(tmp_path: Path, table: str, key: str):
    with pytest.raises(ConfigError, match=rf"providers\.pods\.assumptions\.{key}"):
        load(tmp_path, f"[providers.pods.assumptions]\n{table}")


def test_sharing_the_code_needs_full_privacy(tmp_path: Path):
    assert not load(tmp_path).rooms[0].device_code_to_organizer
    with pytest.raises(ConfigError, match=r"device_code_to_organizer.*feed_privacy"):
        load(tmp_path, room="device_code_to_organizer = true")
    room = load(tmp_path, room='feed_privacy = "full"\ndevice_code_to_organizer = true').rooms[0]
    assert room.device_code_to_organizer
