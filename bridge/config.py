"""The configuration file: one TOML document, read once, validated completely.

Where it is: ``--config PATH``, else ``$BRIDGE_CONFIG``, else ``./bridge.toml``. Any string
value may contain ``${ENV_VAR}``. Every problem (a missing variable, an unknown key, a wrong
type, a bad value, a room naming a provider that does not exist) is a :class:`ConfigFileError`
naming the file and the key, e.g. ``bridge.toml: rooms[2].provider: ...``; array indexes in
key names count from 0, as in ``jq``. Nothing runs with a bad configuration.

Secrets (passwords, client secrets, API keys, webhook secrets) are held in :class:`Secret`,
whose ``repr``/``str`` never show the value; the state URL's password is masked the same way.
Relative paths (the SQLite file, a Google service account file, a CA bundle) are relative to
the folder of the configuration file, not to the working directory.
"""

from __future__ import annotations

import hmac
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import ClassVar, Literal, TypeVar, cast
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bridge.devices.assumptions import (
    DEFAULT_ASSUMPTIONS,
    AssumptionError,
    ZenSpaceAssumptions,
    assumptions_from_table,
)
from bridge.errors import ConfigError
from bridge.model import BufferMode, Buffers, Privacy, Room

DEFAULT_FILE_NAME = "bridge.toml"
ENV_CONFIG = "BRIDGE_CONFIG"
DEFAULT_STATE_URL = "sqlite:///bridge-state.db"
DEFAULT_LISTEN = "127.0.0.1:8765"

ROOM_ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]*")
_ENV_REFERENCE = re.compile(r"\$\{([^}]*)\}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")

Direction = Literal["to-calendar", "from-calendar", "both"]
NexudusAuth = Literal["token", "basic"]
NexudusApi = Literal["admin", "portal"]

_T = TypeVar("_T")


class ConfigFileError(ConfigError):
    """A problem in the configuration file, naming the file and (when known) the key."""

    def __init__(self, path: Path, key: str | None, reason: str):
        self.path = path
        self.key = key
        self.reason = reason
        where = f"{path}: {key}" if key else str(path)
        super().__init__(f"{where}: {reason}")


class Secret:
    """A secret string (password, client secret, API key) that never shows in repr/str/logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        """The secret value itself, for the one place that must send it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)


def mask_url_password(url: str) -> str:
    """A database URL with its password (if any) replaced by ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable url>"


# --- the typed configuration ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StateConfig:
    """Where the state store lives: a SQLAlchemy URL (SQLite path already made absolute)."""

    url: str = DEFAULT_STATE_URL

    def __repr__(self) -> str:
        return f"StateConfig(url={mask_url_password(self.url)!r})"

    def __str__(self) -> str:
        return repr(self)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """The HTTP server: where it listens and the public base of printed feed URLs."""

    listen: str = DEFAULT_LISTEN
    public_url: str = f"http://{DEFAULT_LISTEN}"

    @property
    def host(self) -> str:
        """The host part of ``listen`` (IPv6 brackets removed)."""
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        """The port part of ``listen``."""
        return int(self.listen.rpartition(":")[2])


@dataclass(frozen=True, slots=True)
class SyncConfig:
    """Scheduling, the kept window and the mass-deletion safety valve."""

    interval: timedelta = timedelta(minutes=5)
    past_days: int = 30
    future_days: int = 365
    max_deletions: int = 50


@dataclass(frozen=True, kw_only=True)
class ProviderConfig:
    """A configured booking platform; subclasses hold the fields of each kind."""

    kind: ClassVar[str]
    name: str
    base_url: str
    webhook_secret: Secret | None = None


@dataclass(frozen=True, kw_only=True)
class NexudusConfig(ProviderConfig):
    """Nexudus: admin or members-portal API, bearer token (default) or HTTP Basic auth."""

    kind: ClassVar[str] = "nexudus"
    username: str
    password: Secret
    auth: NexudusAuth = "token"
    api: NexudusApi = "admin"
    client_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class OfficeRndConfig(ProviderConfig):
    """OfficeRnD: OAuth2 client credentials for one organisation."""

    kind: ClassVar[str] = "officernd"
    token_url: str
    org: str
    client_id: str
    client_secret: Secret


@dataclass(frozen=True, kw_only=True)
class ProsperoConfig(ProviderConfig):
    """Prospero: cookie login with email and password, bookings of one booking module."""

    kind: ClassVar[str] = "prospero"
    username: str
    password: Secret
    booking_module: str


@dataclass(frozen=True, kw_only=True)
class ZenSpaceConfig(ProviderConfig):
    """ZenSpace smart pods: an API key; also the only kind a room's ``devices`` may name."""

    kind: ClassVar[str] = "zenspace"
    api_key: Secret
    assumptions: ZenSpaceAssumptions = DEFAULT_ASSUMPTIONS


@dataclass(frozen=True, kw_only=True)
class CalendarConfig:
    """A configured calendar backend; subclasses hold the fields of each kind."""

    kind: ClassVar[str]
    name: str


@dataclass(frozen=True, kw_only=True)
class CalDavConfig(CalendarConfig):
    """A CalDAV server; rooms name a collection path or URL as their ``calendar_id``."""

    kind: ClassVar[str] = "caldav"
    url: str
    username: str | None = None
    password: Secret | None = None


@dataclass(frozen=True, kw_only=True)
class GoogleConfig(CalendarConfig):
    """Google Calendar through a service account with domain-wide delegation."""

    kind: ClassVar[str] = "google"
    service_account_file: Path
    subject: str
    api_endpoint: str | None = None


@dataclass(frozen=True, kw_only=True)
class Office365Config(CalendarConfig):
    """Microsoft 365 room mailboxes through Microsoft Graph (client credentials)."""

    kind: ClassVar[str] = "office365"
    tenant_id: str
    client_id: str
    client_secret: Secret
    authority: str
    graph_url: str = "https://graph.microsoft.com/v1.0"
    ca_bundle: Path | None = None


@dataclass(frozen=True, slots=True)
class RoomConfig:
    """One ``[[rooms]]`` entry, validated; references to providers/calendars are checked."""

    id: str
    name: str
    provider: str
    resource: str
    timezone: str | None = None
    calendar: str | None = None
    calendar_id: str | None = None
    direction: Direction = "to-calendar"
    buffers: BufferMode = BufferMode.SEPARATE
    buffer_before: timedelta = timedelta(0)
    buffer_after: timedelta = timedelta(0)
    feed_privacy: Privacy = Privacy.BUSY
    devices: str | None = None
    device_space: str | None = None
    device_lead: timedelta = timedelta(minutes=10)
    device_code_to_organizer: bool = False
    series_decline_percent: int = 50
    default_customer: str | None = None

    def to_room(self, provider_timezone: str | None = None) -> Room:
        """The model's :class:`Room`; ``provider_timezone`` fills a zone the file left out."""
        zone = self.timezone or provider_timezone
        if zone is None:
            raise ConfigError(
                f"room {self.id}: no timezone configured and the provider gave none"
            )
        return Room(
            id=self.id,
            name=self.name,
            timezone=zone,
            provider=self.provider,
            resource=self.resource,
            calendar=self.calendar,
            calendar_id=self.calendar_id,
            direction=self.direction,
            buffers=self.buffers,
            default_buffers=Buffers(self.buffer_before, self.buffer_after),
            feed_privacy=self.feed_privacy,
            devices=self.devices,
            device_space=self.device_space,
            device_lead=self.device_lead,
            device_code_to_organizer=self.device_code_to_organizer,
            series_decline_percent=self.series_decline_percent,
            default_customer=self.default_customer,
        )


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated configuration file."""

    path: Path
    state: StateConfig = field(default_factory=StateConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    providers: dict[str, ProviderConfig] = field(default_factory=dict)
    calendars: dict[str, CalendarConfig] = field(default_factory=dict)
    rooms: list[RoomConfig] = field(default_factory=list)

    def room(self, room_id: str) -> RoomConfig:
        """The room with this id (a ConfigError naming the known ids when there is none)."""
        for room in self.rooms:
            if room.id == room_id:
                return room
        known = ", ".join(room.id for room in self.rooms) or "none"
        raise ConfigError(f"{self.path}: no room {room_id!r} (configured rooms: {known})")


# --- locating and loading -------------------------------------------------------------------


def config_path(arg: str | None, environ: Mapping[str, str] | None = None) -> Path:
    """The configuration file to use: ``--config``, else ``$BRIDGE_CONFIG``, else ./bridge.toml."""
    if arg:
        return Path(arg)
    env = os.environ if environ is None else environ
    from_env = env.get(ENV_CONFIG, "")
    return Path(from_env) if from_env else Path(DEFAULT_FILE_NAME)


def load_config(path: Path | str, environ: Mapping[str, str] | None = None) -> Config:
    """Read, substitute ``${ENV_VAR}`` and validate the file; ConfigFileError on any problem."""
    path = Path(path).absolute()
    document = _read_toml(path)
    env = os.environ if environ is None else environ
    substituted = cast(dict[str, object], _substitute(document, "", path, env))
    return _ConfigReader(path).config(substituted)


def _read_toml(path: Path) -> dict[str, object]:
    """The parsed TOML document."""
    try:
        with path.open("rb") as stream:
            return tomllib.load(stream)
    except FileNotFoundError:
        raise ConfigFileError(
            path, None, "no such configuration file (give --config PATH or set $BRIDGE_CONFIG)"
        ) from None
    except OSError as exc:
        raise ConfigFileError(path, None, f"cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(path, None, f"not valid TOML: {exc}") from None


def _substitute(value: object, key: str, path: Path, env: Mapping[str, str]) -> object:
    """``value`` with every ``${NAME}`` in its strings replaced from ``env``."""
    if isinstance(value, str):
        return _substitute_string(value, key, path, env)
    if isinstance(value, dict):
        return {
            name: _substitute(item, _child_key(key, name), path, env)
            for name, item in value.items()
        }
    if isinstance(value, list):
        return [_substitute(item, f"{key}[{index}]", path, env) for index, item in enumerate(value)]
    return value


def _substitute_string(value: str, key: str, path: Path, env: Mapping[str, str]) -> str:
    """One string with its ``${NAME}`` references replaced."""

    def replacement(match: re.Match[str]) -> str:
        name = match.group(1)
        if not _ENV_NAME.fullmatch(name):
            raise ConfigFileError(path, key, f"${{{name}}} is not a valid environment variable")
        if name not in env:
            raise ConfigFileError(path, key, f"environment variable {name} is not set")
        return env[name]

    return _ENV_REFERENCE.sub(replacement, value)


def _child_key(parent: str, name: str) -> str:
    """The dotted key of ``name`` inside ``parent``."""
    return f"{parent}.{name}" if parent else name


def parse_duration(text: str) -> timedelta:
    """A duration such as ``90s``, ``5m``, ``1h30m`` or ``0m`` (ValueError otherwise)."""
    match = _DURATION.fullmatch(text.strip())
    if not text.strip() or match is None:
        raise ValueError(f"{text!r} is not a duration like 90s, 5m, 1h or 1h30m")
    days, hours, minutes, seconds = (int(part) if part else 0 for part in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


# --- validation ------------------------------------------------------------------------------

_TOML_TYPE_NAMES: dict[type, str] = {
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a float",
    dict: "a table",
    list: "an array",
}


def _type_name(value: object) -> str:
    """How TOML calls the type of ``value``, for error messages."""
    return _TOML_TYPE_NAMES.get(type(value), "a date/time")


class _Table:
    """Typed, key-tracking access to one TOML table; ``finish()`` rejects unknown keys."""

    def __init__(self, data: Mapping[str, object], key: str, path: Path):
        self.data = data
        self.key = key
        self.path = path
        self.used: set[str] = set()

    def key_of(self, name: str) -> str:
        """The full key of a field, as error messages name it."""
        return _child_key(self.key, name)

    def error(self, name: str | None, reason: str) -> ConfigFileError:
        """An error about one field (or the whole table when ``name`` is None)."""
        return ConfigFileError(self.path, self.key_of(name) if name else self.key, reason)

    def raw(self, name: str, expected: type[_T], required: bool) -> _T | None:
        """The value of ``name`` checked to be of type ``expected``; None when absent."""
        self.used.add(name)
        if name not in self.data:
            if required:
                raise self.error(name, "missing (required)")
            return None
        value = self.data[name]
        # TOML booleans are Python ints: never accept one where a number is meant.
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise self.error(
                name, f"expected {_TOML_TYPE_NAMES[expected]}, got {_type_name(value)}"
            )
        return value

    def string(self, name: str) -> str:
        """A required non-empty string."""
        value = self.raw(name, str, required=True)
        assert value is not None
        if not value.strip():
            raise self.error(name, "must not be empty")
        return value

    def absent(self, name: str) -> bool:
        """Whether an optional field was left out (and mark it as known either way)."""
        self.used.add(name)
        return name not in self.data

    def optional_string(self, name: str) -> str | None:
        """An optional non-empty string."""
        return None if self.absent(name) else self.string(name)

    def secret(self, name: str) -> Secret:
        """A required secret (its value never appears in messages)."""
        return Secret(self.string(name))

    def optional_secret(self, name: str) -> Secret | None:
        """An optional secret."""
        return None if self.absent(name) else self.secret(name)

    def integer(self, name: str, default: int, minimum: int) -> int:
        """An integer at least ``minimum``."""
        value = self.raw(name, int, required=False)
        if value is None:
            return default
        if value < minimum:
            raise self.error(name, f"must be at least {minimum}, got {value}")
        return value

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        """One of a fixed set of strings."""
        value = self.raw(name, str, required=False)
        if value is None:
            return default
        if value not in choices:
            raise self.error(name, f"must be one of {' | '.join(choices)}, got {value!r}")
        return value

    def duration(self, name: str, default: timedelta) -> timedelta:
        """A duration string (``90s``, ``5m``, ``1h30m``)."""
        value = self.raw(name, str, required=False)
        if value is None:
            return default
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise self.error(name, str(exc)) from None

    def http_url(self, name: str) -> str:
        """A required http(s) URL."""
        value = self.string(name)
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise self.error(name, f"expected an http:// or https:// URL, got {value!r}")
        return value

    def optional_http_url(self, name: str) -> str | None:
        """An optional http(s) URL."""
        return None if self.absent(name) else self.http_url(name)

    def file_path(self, name: str) -> Path:
        """A required file path, made absolute relative to the configuration file's folder."""
        return self.path.parent / Path(self.string(name)).expanduser()

    def optional_file_path(self, name: str) -> Path | None:
        """An optional file path, relative to the configuration file's folder."""
        return None if self.absent(name) else self.file_path(name)

    def subtable(self, name: str) -> _Table:
        """A nested table (empty when absent)."""
        value = self.raw(name, dict, required=False)
        return _Table(value or {}, self.key_of(name), self.path)

    def finish(self) -> None:
        """Reject keys nobody asked for (usually typos)."""
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            known = ", ".join(sorted(self.used)) or "none"
            raise self.error(unknown[0], f"unknown key (known keys here: {known})")


class _ConfigReader:
    """Builds a :class:`Config` from a substituted TOML document, section by section."""

    def __init__(self, path: Path):
        self.path = path

    def config(self, document: dict[str, object]) -> Config:
        """The whole configuration."""
        root = _Table(document, "", self.path)
        state = self.state(root.subtable("state"))
        server = self.server(root.subtable("server"))
        sync = self.sync(root.subtable("sync"))
        providers = self.named_tables(root.subtable("providers"), _PROVIDER_READERS)
        calendars = self.named_tables(root.subtable("calendars"), _CALENDAR_READERS)
        room_tables = root.raw("rooms", list, required=False) or []
        rooms = [
            self.room(self.room_table(item, index), providers, calendars)
            for index, item in enumerate(room_tables)
        ]
        root.finish()
        self.check_unique_room_ids(rooms)
        return Config(self.path, state, server, sync, providers, calendars, rooms)

    def state(self, table: _Table) -> StateConfig:
        """The ``[state]`` section."""
        url = table.optional_string("url") or DEFAULT_STATE_URL
        table.finish()
        return StateConfig(self.state_url(url, table))

    def state_url(self, url: str, table: _Table) -> str:
        """The state URL checked, with a relative SQLite path made absolute."""
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise table.error("url", "not a database URL like sqlite:///path.db") from None
        backend = parsed.get_backend_name()
        if backend == "postgres":
            parsed = parsed.set(drivername=parsed.drivername.replace("postgres", "postgresql", 1))
        elif backend not in ("sqlite", "postgresql"):
            raise table.error(
                "url", f"unsupported database {backend!r} (use sqlite:/// or postgresql://)"
            )
        if backend == "sqlite" and _is_relative_sqlite_file(parsed.database):
            parsed = parsed.set(database=str(self.path.parent / str(parsed.database)))
        return parsed.render_as_string(hide_password=False)

    def server(self, table: _Table) -> ServerConfig:
        """The ``[server]`` section."""
        listen = table.optional_string("listen") or DEFAULT_LISTEN
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise table.error("listen", f"expected HOST:PORT, got {listen!r}")
        public_url = table.optional_http_url("public_url") or f"http://{listen}"
        table.finish()
        return ServerConfig(listen, public_url.rstrip("/"))

    def sync(self, table: _Table) -> SyncConfig:
        """The ``[sync]`` section."""
        defaults = SyncConfig()
        interval = table.duration("interval", defaults.interval)
        if interval <= timedelta(0):
            raise table.error("interval", "must be longer than 0s")
        sync = SyncConfig(
            interval=interval,
            past_days=table.integer("past_days", defaults.past_days, minimum=0),
            future_days=table.integer("future_days", defaults.future_days, minimum=1),
            max_deletions=table.integer("max_deletions", defaults.max_deletions, minimum=0),
        )
        table.finish()
        return sync

    def named_tables(
        self, section: _Table, readers: Mapping[str, Callable[[_Table, str], _T]]
    ) -> dict[str, _T]:
        """``[providers.NAME]`` or ``[calendars.NAME]`` tables, each read by its kind."""
        result: dict[str, _T] = {}
        for name in list(section.data):
            table = section.subtable(name)
            kind = table.choice("kind", tuple(readers), default="")
            if not kind:
                raise table.error("kind", f"missing (one of {' | '.join(readers)})")
            result[name] = readers[kind](table, name)
            table.finish()
        return result

    def room_table(self, item: object, index: int) -> _Table:
        """The ``index``-th ``[[rooms]]`` entry as a table."""
        key = f"rooms[{index}]"
        if not isinstance(item, dict):
            raise ConfigFileError(self.path, key, f"expected a table, got {_type_name(item)}")
        return _Table(item, key, self.path)

    def room(
        self,
        table: _Table,
        providers: Mapping[str, ProviderConfig],
        calendars: Mapping[str, CalendarConfig],
    ) -> RoomConfig:
        """One room, with its references to providers, calendars and devices checked."""
        room_id = table.string("id")
        if not ROOM_ID_PATTERN.fullmatch(room_id):
            raise table.error(
                "id", f"{room_id!r} is not a room id (lowercase letters, digits, '-'; "
                "starting with a letter or digit)"
            )
        provider = self.reference(table, "provider", providers, "providers")
        calendar = self.optional_reference(table, "calendar", calendars, "calendars")
        calendar_id = table.optional_string("calendar_id")
        if calendar is not None and calendar_id is None:
            raise table.error("calendar_id", "missing (required when calendar is set)")
        if calendar is None and calendar_id is not None:
            raise table.error("calendar_id", "set but the room has no calendar")
        direction = table.choice("direction", ("to-calendar", "from-calendar", "both"),
                                 default="to-calendar")
        if calendar is None and direction != "to-calendar":
            raise table.error("direction", f"{direction!r} needs a calendar")
        devices = self.devices(table, providers)
        device_space = table.optional_string("device_space")
        if devices is not None and device_space is None:
            raise table.error("device_space", "missing (required when devices is set)")
        if devices is None and device_space is not None:
            raise table.error("device_space", "set but the room has no devices")
        room = RoomConfig(
            id=room_id,
            name=table.optional_string("name") or room_id,
            provider=provider,
            resource=table.string("resource"),
            timezone=self.timezone(table),
            calendar=calendar,
            calendar_id=calendar_id,
            direction=cast(Direction, direction),
            buffers=BufferMode(table.choice("buffers", tuple(BufferMode), "separate")),
            buffer_before=table.duration("buffer_before", timedelta(0)),
            buffer_after=table.duration("buffer_after", timedelta(0)),
            feed_privacy=Privacy(table.choice("feed_privacy", tuple(Privacy), "busy")),
            devices=devices,
            device_space=device_space,
            device_lead=table.duration("device_lead", timedelta(minutes=10)),
            device_code_to_organizer=self.device_code_to_organizer(table),
            series_decline_percent=self.series_decline_percent(table),
            default_customer=table.optional_string("default_customer"),
        )
        if room.device_code_to_organizer and room.feed_privacy is not Privacy.FULL:
            raise table.error("device_code_to_organizer", 'needs feed_privacy = "full"')
        if room.device_code_to_organizer and room.devices is None:
            raise table.error("device_code_to_organizer", "set but the room has no devices")
        table.finish()
        return room

    def reference(
        self, table: _Table, name: str, targets: Mapping[str, object], section: str
    ) -> str:
        """A required name of a ``[section.NAME]`` table that exists."""
        value = table.string(name)
        if value not in targets:
            known = ", ".join(sorted(targets)) or "none"
            raise table.error(
                name,
                f"names {section.removesuffix('s')} {value!r}, but there is no "
                f"[{section}.{value}] (defined: {known})",
            )
        return value

    def optional_reference(
        self, table: _Table, name: str, targets: Mapping[str, object], section: str
    ) -> str | None:
        """An optional name of a ``[section.NAME]`` table that exists."""
        if table.absent(name):
            return None
        return self.reference(table, name, targets, section)

    def series_decline_percent(self, table: _Table) -> int:
        """Above this share (%) of conflicting occurrences a recurring request is declined."""
        percent = table.integer("series_decline_percent", 50, 0)
        if percent > 100:
            raise table.error("series_decline_percent", "must be between 0 and 100")
        return percent

    def device_code_to_organizer(self, table: _Table) -> bool:
        """Whether the pod's door code goes into the organizer's event (off by default)."""
        return table.raw("device_code_to_organizer", bool, required=False) or False

    def devices(self, table: _Table, providers: Mapping[str, ProviderConfig]) -> str | None:
        """The room's devices provider, which must be of kind zenspace."""
        devices = self.optional_reference(table, "devices", providers, "providers")
        if devices is not None and providers[devices].kind != ZenSpaceConfig.kind:
            raise table.error(
                "devices",
                f"provider {devices!r} is of kind {providers[devices].kind!r}; "
                "devices need a zenspace provider",
            )
        return devices

    def timezone(self, table: _Table) -> str | None:
        """An optional IANA time zone name that exists."""
        zone = table.optional_string("timezone")
        if zone is None:
            return None
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise table.error("timezone", f"{zone!r} is not an IANA time zone") from None
        return zone

    def check_unique_room_ids(self, rooms: list[RoomConfig]) -> None:
        """Two rooms may not share an id (ids are in URLs and state keys)."""
        seen: dict[str, int] = {}
        for index, room in enumerate(rooms):
            if room.id in seen:
                raise ConfigFileError(
                    self.path, f"rooms[{index}].id",
                    f"duplicate room id {room.id!r} (also rooms[{seen[room.id]}].id)",
                )
            seen[room.id] = index


def _is_relative_sqlite_file(database: str | None) -> bool:
    """Whether a SQLite database name is a relative file path (not memory, not a URI)."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return False
    return not Path(database).is_absolute()


# --- one reader per kind ---------------------------------------------------------------------


def _nexudus(table: _Table, name: str) -> NexudusConfig:
    """``kind = "nexudus"``."""
    return NexudusConfig(
        name=name,
        base_url=table.http_url("base_url"),
        username=table.string("username"),
        password=table.secret("password"),
        auth=cast(NexudusAuth, table.choice("auth", ("token", "basic"), "token")),
        api=cast(NexudusApi, table.choice("api", ("admin", "portal"), "admin")),
        client_id=table.optional_string("client_id"),
        webhook_secret=table.optional_secret("webhook_secret"),
    )


def _officernd(table: _Table, name: str) -> OfficeRndConfig:
    """``kind = "officernd"``."""
    return OfficeRndConfig(
        name=name,
        base_url=table.http_url("base_url"),
        token_url=table.http_url("token_url"),
        org=table.string("org"),
        client_id=table.string("client_id"),
        client_secret=table.secret("client_secret"),
        webhook_secret=table.optional_secret("webhook_secret"),
    )


def _prospero(table: _Table, name: str) -> ProsperoConfig:
    """``kind = "prospero"``."""
    return ProsperoConfig(
        name=name,
        base_url=table.http_url("base_url"),
        username=table.string("username"),
        password=table.secret("password"),
        booking_module=table.string("booking_module"),
        webhook_secret=table.optional_secret("webhook_secret"),
    )


def _zenspace(table: _Table, name: str) -> ZenSpaceConfig:
    """``kind = "zenspace"``."""
    return ZenSpaceConfig(
        name=name,
        base_url=table.http_url("base_url"),
        api_key=table.secret("api_key"),
        webhook_secret=table.optional_secret("webhook_secret"),
        assumptions=_zenspace_assumptions(table),
    )


def _zenspace_assumptions(table: _Table) -> ZenSpaceAssumptions:
    """The optional ``[providers.NAME.assumptions]`` table (bridge/devices/assumptions.py)."""
    assumptions = table.subtable("assumptions")
    try:
        return assumptions_from_table(assumptions.data)
    except AssumptionError as exc:
        raise assumptions.error(exc.key, exc.reason) from None


def _caldav(table: _Table, name: str) -> CalDavConfig:
    """``kind = "caldav"``."""
    config = CalDavConfig(
        name=name,
        url=table.http_url("url"),
        username=table.optional_string("username"),
        password=table.optional_secret("password"),
    )
    if config.password is not None and config.username is None:
        raise table.error("username", "missing (required when password is set)")
    return config


def _google(table: _Table, name: str) -> GoogleConfig:
    """``kind = "google"``."""
    return GoogleConfig(
        name=name,
        service_account_file=table.file_path("service_account_file"),
        subject=table.string("subject"),
        api_endpoint=table.optional_http_url("api_endpoint"),
    )


def _office365(table: _Table, name: str) -> Office365Config:
    """``kind = "office365"``."""
    tenant_id = table.string("tenant_id")
    return Office365Config(
        name=name,
        tenant_id=tenant_id,
        client_id=table.string("client_id"),
        client_secret=table.secret("client_secret"),
        authority=(
            table.optional_http_url("authority")
            or f"https://login.microsoftonline.com/{tenant_id}"
        ),
        graph_url=(table.optional_http_url("graph_url") or Office365Config.graph_url).rstrip("/"),
        ca_bundle=table.optional_file_path("ca_bundle"),
    )


_PROVIDER_READERS: dict[str, Callable[[_Table, str], ProviderConfig]] = {
    NexudusConfig.kind: _nexudus,
    OfficeRndConfig.kind: _officernd,
    ProsperoConfig.kind: _prospero,
    ZenSpaceConfig.kind: _zenspace,
}

_CALENDAR_READERS: dict[str, Callable[[_Table, str], CalendarConfig]] = {
    CalDavConfig.kind: _caldav,
    GoogleConfig.kind: _google,
    Office365Config.kind: _office365,
}
