"""The configuration loader: every key of the contract, env substitution, relative paths,
masked secrets, and an error naming the file and the exact key for every kind of mistake."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from bridge.config import (
    CalDavConfig,
    Config,
    ConfigFileError,
    GoogleConfig,
    NexudusConfig,
    Office365Config,
    OfficeRndConfig,
    ProsperoConfig,
    Secret,
    ZenSpaceConfig,
    config_path,
    load_config,
    parse_duration,
)
from bridge.errors import ConfigError
from bridge.model import BufferMode, Buffers, Privacy

FIXTURES = Path(__file__).parent / "fixtures" / "config"

ENV = {
    "NEXUDUS_USER": "admin@example.org",
    "NEXUDUS_PASSWORD": "nx-pass-7431",
    "ORND_ID": "orn-client",
    "ORND_SECRET": "orn-secret-9902",
    "ORND_WEBHOOK_SECRET": "orn-hook-5521",
    "PROSPERO_PASSWORD": "pros-pass-1188",
    "ZENSPACE_KEY": "zsk_live_3377",
    "DAV_PASSWORD": "dav-pass-6654",
    "M365_SECRET": "m365-secret-2209",
}
SECRET_VALUES = [value for name, value in ENV.items() if name not in ("NEXUDUS_USER", "ORND_ID")]

PROVIDERS = """
[providers.hq]
kind = "nexudus"
base_url = "https://spaces.nexudus.com"
username = "admin@example.org"
password = "${NEXUDUS_PASSWORD}"

[providers.pods]
kind = "zenspace"
base_url = "https://pods.example.org"
api_key = "${ZENSPACE_KEY}"

[calendars.dav]
kind = "caldav"
url = "http://127.0.0.1:5232/"
"""

ROOMS = [
    'id = "callisto"\nprovider = "hq"\nresource = "1"',
    'id = "io"\nprovider = "hq"\nresource = "2"',
    'id = "europa"\nprovider = "hq"\nresource = "3"',
]


@pytest.fixture
def full_config(tmp_path: Path) -> Config:
    folder = tmp_path / "etc" / "roombridge"
    folder.mkdir(parents=True)
    shutil.copy(FIXTURES / "full.toml", folder / "bridge.toml")
    return load_config(folder / "bridge.toml", ENV)


def write_config(
    folder: Path, sections: str = "", providers: str = PROVIDERS, rooms: list[str] | None = None
) -> Path:
    rooms = ROOMS if rooms is None else rooms
    room_text = "".join(f"\n[[rooms]]\n{body}\n" for body in rooms)
    path = folder / "bridge.toml"
    path.write_text(f"{sections}\n{providers}\n{room_text}", encoding="utf-8")
    return path


def room_with(extra: str, base: str = ROOMS[2]) -> list[str]:
    """The default rooms with ``extra`` lines added to (or replacing keys of) rooms[2]."""
    lines = dict(line.split(" = ", 1) for line in base.splitlines())
    lines.update(line.split(" = ", 1) for line in extra.splitlines() if line)
    return [*ROOMS[:2], "\n".join(f"{key} = {value}" for key, value in lines.items())]


# --- a complete, valid file ------------------------------------------------------------------


def test_every_contract_key_is_read_with_its_type(full_config: Config) -> None:
    config = full_config
    assert config.sync.interval == timedelta(hours=1, minutes=30)
    assert (config.sync.past_days, config.sync.future_days, config.sync.max_deletions) == (
        30, 365, 50)
    assert config.server.host == "127.0.0.1" and config.server.port == 8765
    assert config.server.public_url == "https://rooms.example.org"

    hq = config.providers["hq"]
    assert isinstance(hq, NexudusConfig)
    assert (hq.username, hq.password.reveal(), hq.auth, hq.api) == (
        "admin@example.org", "nx-pass-7431", "basic", "portal")
    flex = config.providers["flex"]
    assert isinstance(flex, OfficeRndConfig)
    assert flex.client_secret.reveal() == "orn-secret-9902"
    assert flex.webhook_secret == Secret("orn-hook-5521")
    assert flex.token_url == "https://identity.officernd.com/oauth/token"
    venue = config.providers["venue"]
    assert isinstance(venue, ProsperoConfig)
    assert venue.booking_module == "5f0c3c1e-0000-1000-8000-00000000abcd"
    assert isinstance(config.providers["pods"], ZenSpaceConfig)

    dav = config.calendars["dav"]
    assert isinstance(dav, CalDavConfig) and dav.password == Secret("dav-pass-6654")
    m365 = config.calendars["m365"]
    assert isinstance(m365, Office365Config)
    assert m365.authority == f"https://login.microsoftonline.com/{m365.tenant_id}"
    assert m365.graph_url == "https://graph.microsoft.com/v1.0"
    google = config.calendars["workspace"]
    assert isinstance(google, GoogleConfig)
    assert google.subject == "rooms-admin@example.com"


def test_rooms_carry_every_setting_and_defaults(full_config: Config) -> None:
    callisto, io = full_config.rooms
    assert (callisto.direction, callisto.buffers, callisto.feed_privacy) == (
        "both", BufferMode.MERGED, Privacy.TITLES)
    assert (callisto.buffer_before, callisto.buffer_after) == (
        timedelta(minutes=15), timedelta(seconds=90))
    assert (callisto.devices, callisto.device_lead) == ("pods", timedelta(hours=1))
    assert io.name == "io-2" and io.timezone is None and io.calendar is None
    assert (io.direction, io.buffers, io.feed_privacy, io.device_lead) == (
        "to-calendar", BufferMode.SEPARATE, Privacy.BUSY, timedelta(minutes=10))
    assert full_config.room("io-2") is io
    with pytest.raises(ConfigError, match="callisto, io-2"):
        full_config.room("ganymede")


def test_room_config_becomes_a_model_room(full_config: Config) -> None:
    callisto, io = full_config.rooms
    room = callisto.to_room()
    assert (room.id, room.timezone, room.calendar_id, room.resource) == (
        "callisto", "Europe/London", "/rooms/callisto/", "287977693")
    assert room.default_buffers == Buffers(timedelta(minutes=15), timedelta(seconds=90))
    assert room.device_space == "dcd8ec68-8516-4a4f-a03f-cf82f604d32b"
    assert io.to_room(provider_timezone="America/Vancouver").timezone == "America/Vancouver"
    assert callisto.to_room(provider_timezone="America/Vancouver").timezone == "Europe/London"
    with pytest.raises(ConfigError, match=r"io-2.*timezone"):
        io.to_room()


def test_relative_paths_are_relative_to_the_config_file(
    full_config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "etc" / "roombridge"
    assert full_config.path == folder / "bridge.toml"
    assert full_config.state.url == f"sqlite:///{folder / 'state' / 'bridge-state.db'}"
    google = full_config.calendars["workspace"]
    assert isinstance(google, GoogleConfig)
    assert google.service_account_file == folder / "service-account.json"
    m365 = full_config.calendars["m365"]
    assert isinstance(m365, Office365Config) and m365.ca_bundle == folder / "certs" / "test-ca.pem"
    # Loading through a relative path from elsewhere resolves the same way.
    monkeypatch.chdir(folder / "..")
    again = load_config(Path("roombridge/bridge.toml"), ENV)
    assert again.state.url == full_config.state.url


def test_secrets_never_show_in_repr_or_str(full_config: Config) -> None:
    shown = repr(full_config) + str(full_config) + "".join(
        f"{provider}" for provider in full_config.providers.values())
    for value in SECRET_VALUES:
        assert value not in shown
    assert "Secret('***')" in repr(full_config.providers["hq"])
    assert f"{Secret('x')}" == "***"


def test_state_url_password_is_masked(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[state]\nurl = "postgres://bridge:${PG_PASSWORD}@db:5432/rb"')
    config = load_config(path, {**ENV, "PG_PASSWORD": "pg-pass-4410"})
    assert config.state.url == "postgresql://bridge:pg-pass-4410@db:5432/rb"
    assert "pg-pass-4410" not in repr(config)
    assert "pg-pass-4410" not in str(config.state)


def test_an_absolute_sqlite_path_is_kept(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[state]\nurl = "sqlite:////var/lib/roombridge/state.db"')
    assert load_config(path, ENV).state.url == "sqlite:////var/lib/roombridge/state.db"


def test_defaults_of_a_file_without_sections(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text("", encoding="utf-8")
    config = load_config(path, {})
    assert config.state.url == f"sqlite:///{tmp_path / 'bridge-state.db'}"
    assert config.server.listen == "127.0.0.1:8765"
    assert config.server.public_url == "http://127.0.0.1:8765"
    assert config.sync.interval == timedelta(minutes=5)
    assert (config.providers, config.calendars, config.rooms) == ({}, {}, [])


def test_env_vars_are_substituted_inside_strings(tmp_path: Path) -> None:
    providers = PROVIDERS.replace('"https://spaces.nexudus.com"',
                                  '"https://${NX_SPACE}.spaces.nexudus.com/${NX_LANG}"')
    path = write_config(tmp_path, providers=providers)
    config = load_config(path, {**ENV, "NX_SPACE": "acme", "NX_LANG": "en"})
    assert config.providers["hq"].base_url == "https://acme.spaces.nexudus.com/en"


def test_config_path_precedence(tmp_path: Path) -> None:
    assert config_path("given.toml", {"BRIDGE_CONFIG": "env.toml"}) == Path("given.toml")
    assert config_path(None, {"BRIDGE_CONFIG": "env.toml"}) == Path("env.toml")
    assert config_path(None, {}) == Path("bridge.toml")
    assert config_path(None, {"BRIDGE_CONFIG": ""}) == Path("bridge.toml")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("5m", timedelta(minutes=5)), ("90s", timedelta(seconds=90)), ("1h", timedelta(hours=1)),
     ("1h30m", timedelta(minutes=90)), ("0m", timedelta(0)), ("2d", timedelta(days=2))],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


# --- every mistake names the file and the key ---------------------------------------------

MISTAKES = [
    # unknown keys
    ("unknown top-level key", {"sections": 'colour = "blue"'}, "colour", "unknown key"),
    ("unknown key in a section", {"sections": '[sync]\nintervall = "5m"'}, "sync.intervall",
     "unknown key"),
    ("unknown key in a room", {"rooms": room_with('buffer = "merged"')}, "rooms[2].buffer",
     "unknown key"),
    ("unknown provider key", {"providers": PROVIDERS + 'passwrod = "x"\n'},
     "calendars.dav.passwrod", "unknown key"),
    ("unknown section", {"sections": "[logging]\nlevel = 1"}, "logging", "unknown key"),
    # wrong types
    ("string for integer", {"sections": '[sync]\npast_days = "30"'}, "sync.past_days",
     "expected an integer, got a string"),
    ("boolean for integer", {"sections": "[sync]\nmax_deletions = true"}, "sync.max_deletions",
     "expected an integer, got a boolean"),
    ("integer for string", {"rooms": room_with("resource = 287977693")}, "rooms[2].resource",
     "expected a string, got an integer"),
    ("table for section", {"sections": 'sync = "often"'}, "sync", "expected a table"),
    ("rooms not an array", {"sections": 'rooms = "all"', "rooms": []}, "rooms",
     "expected an array"),
    ("negative days", {"sections": "[sync]\npast_days = -1"}, "sync.past_days", "at least 0"),
    # bad enum values
    ("provider kind", {"providers": PROVIDERS.replace('"nexudus"', '"nexudos"')},
     "providers.hq.kind", "nexudus | officernd | prospero | zenspace"),
    ("calendar kind", {"providers": PROVIDERS.replace('"caldav"', '"webdav"')},
     "calendars.dav.kind", "caldav | google | office365"),
    ("missing kind", {"providers": PROVIDERS.replace('kind = "caldav"\n', "")},
     "calendars.dav.kind", "missing"),
    ("direction", {"rooms": room_with('direction = "sideways"\ncalendar = "dav"\n'
                                      'calendar_id = "/c/"')}, "rooms[2].direction", "sideways"),
    ("buffers", {"rooms": room_with('buffers = "visible"')}, "rooms[2].buffers",
     "separate | merged | hidden"),
    ("feed_privacy", {"rooms": room_with('feed_privacy = "public"')}, "rooms[2].feed_privacy",
     "busy | titles | full"),
    ("nexudus auth", {"providers": PROVIDERS.replace('username = "admin', 'auth = "oauth"\n'
                                                     'username = "admin')},
     "providers.hq.auth", "token | basic"),
    # room ids
    ("uppercase room id", {"rooms": room_with('id = "Europa"')}, "rooms[2].id", "not a room id"),
    ("room id starting with a dash", {"rooms": room_with('id = "-europa"')}, "rooms[2].id",
     "not a room id"),
    ("room id with underscore", {"rooms": room_with('id = "europa_1"')}, "rooms[2].id",
     "not a room id"),
    ("duplicate room id", {"rooms": room_with('id = "callisto"')}, "rooms[2].id",
     "duplicate room id 'callisto' (also rooms[0].id)"),
    # durations
    ("duration without unit", {"rooms": room_with('buffer_before = "5"')},
     "rooms[2].buffer_before", "not a duration"),
    ("duration in words", {"rooms": room_with('buffer_after = "5 min"')},
     "rooms[2].buffer_after", "not a duration"),
    ("duration out of order", {"sections": '[sync]\ninterval = "30m1h"'}, "sync.interval",
     "not a duration"),
    ("negative duration", {"rooms": room_with('device_lead = "-5m"')}, "rooms[2].device_lead",
     "not a duration"),
    ("zero interval", {"sections": '[sync]\ninterval = "0m"'}, "sync.interval",
     "longer than 0"),
    # dangling references
    ("missing provider", {"rooms": room_with('provider = "annex"')}, "rooms[2].provider",
     "names provider 'annex', but there is no [providers.annex] (defined: hq, pods)"),
    ("missing calendar", {"rooms": room_with('calendar = "outlook"\ncalendar_id = "x"')},
     "rooms[2].calendar", "names calendar 'outlook', but there is no [calendars.outlook]"),
    ("missing devices provider", {"rooms": room_with('devices = "zen"\ndevice_space = "s"')},
     "rooms[2].devices", "names provider 'zen'"),
    ("devices not zenspace", {"rooms": room_with('devices = "hq"\ndevice_space = "s"')},
     "rooms[2].devices", "devices need a zenspace provider"),
    # missing or inconsistent values
    ("room without resource", {"rooms": [*ROOMS[:2], 'id = "europa"\nprovider = "hq"']},
     "rooms[2].resource", "missing"),
    ("nexudus without password",
     {"providers": PROVIDERS.replace('password = "${NEXUDUS_PASSWORD}"\n', "")},
     "providers.hq.password", "missing"),
    ("calendar without calendar_id", {"rooms": room_with('calendar = "dav"')},
     "rooms[2].calendar_id", "required when calendar is set"),
    ("from-calendar without calendar", {"rooms": room_with('direction = "from-calendar"')},
     "rooms[2].direction", "needs a calendar"),
    ("devices without device_space", {"rooms": room_with('devices = "pods"')},
     "rooms[2].device_space", "required when devices is set"),
    ("empty string", {"rooms": room_with('resource = "  "')}, "rooms[2].resource", "empty"),
    ("unknown time zone", {"rooms": room_with('timezone = "Europe/Londres"')},
     "rooms[2].timezone", "not an IANA time zone"),
    ("url without scheme", {"providers": PROVIDERS.replace('"https://pods.example.org"',
                                                           '"pods.example.org"')},
     "providers.pods.base_url", "http:// or https://"),
    ("listen without port", {"sections": '[server]\nlisten = "8765"'}, "server.listen",
     "HOST:PORT"),
    ("unsupported database", {"sections": '[state]\nurl = "mysql://db/rb"'}, "state.url",
     "unsupported database"),
    ("missing env var", {"providers": PROVIDERS.replace("${NEXUDUS_PASSWORD}", "${NX_PASS}")},
     "providers.hq.password", "environment variable NX_PASS is not set"),
]


@pytest.mark.parametrize(("case", "parts", "key", "fragment"), MISTAKES,
                         ids=[case for case, *_ in MISTAKES])
def test_mistakes_name_the_file_and_the_key(
    tmp_path: Path, case: str, parts: dict[str, object], key: str, fragment: str
) -> None:
    path = write_config(tmp_path, **parts)  # type: ignore[arg-type]
    with pytest.raises(ConfigFileError) as caught:
        load_config(path, ENV)
    error = caught.value
    assert (error.path, error.key) == (path, key)
    assert str(error).startswith(f"{path}: {key}: ")
    assert fragment in str(error)
    assert isinstance(error, ConfigError)


def test_the_base_of_the_mistakes_is_valid(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path), ENV)
    assert [room.id for room in config.rooms] == ["callisto", "io", "europa"]


def test_errors_about_secret_fields_never_echo_the_secret(tmp_path: Path) -> None:
    wrong_type = PROVIDERS.replace('api_key = "${ZENSPACE_KEY}"', "api_key = 42")
    with pytest.raises(ConfigFileError) as caught:
        load_config(write_config(tmp_path, providers=wrong_type), ENV)
    assert caught.value.key == "providers.pods.api_key"
    assert "42" not in str(caught.value)
    typo_next_to_secret = PROVIDERS.replace('api_key = "${ZENSPACE_KEY}"',
                                            'api_key = "${ZENSPACE_KEY}"\napi_kye = "x"')
    with pytest.raises(ConfigFileError) as caught:
        load_config(write_config(tmp_path, providers=typo_next_to_secret), ENV)
    assert caught.value.key == "providers.pods.api_kye"
    assert ENV["ZENSPACE_KEY"] not in str(caught.value)


def test_invalid_toml_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text('[sync]\ninterval = "5m\n', encoding="utf-8")
    with pytest.raises(ConfigFileError, match=r"not valid TOML.*line 2") as caught:
        load_config(path, {})
    assert caught.value.path == path


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match="no such configuration file") as caught:
        load_config(tmp_path / "nowhere.toml", {})
    assert caught.value.path == tmp_path / "nowhere.toml"
