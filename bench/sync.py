"""Sync benchmark: Nexudus (emulated) → CalDAV (a real Radicale) through ``roombridge sync``.

One command measures, in the same run and against the same Radicale:

* the bridge's initial sync of N bookings (``bridge.cli.main(["sync", ...])`` in-process: the
  real command path with config loading, state store, provider reads, planning and writes),
  against two baselines writing the same ics bytes into a fresh collection each:
  (a) a raw sequential ``If-None-Match: *`` PUT loop on one httpx client (keep-alive on our
  side; Radicale answers HTTP/1.0 and closes every connection, for every client alike), and
  (b) ``vdirsyncer sync`` from a filesystem storage holding the same .ics files;
* a no-op resync: CalDAV requests (the adapter's counter and Radicale's own log) and provider
  requests (the emulator's request log, the ``/api/token`` login counted apart);
* a pass after a handful of provider changes: how many calendar writes it takes.

Radicale logs every answered request with its own duration, so each figure is also split into
time spent inside Radicale and time spent outside it (the client's own cost, mostly).
``--rounds R`` repeats the three initial syncs interleaved and reports medians; ``--profile``
adds a cProfile of one more initial sync and no-op resync.

Targets are reported, never asserted. Run ``python -m bench.sync [--bookings N | --quick]``;
results are printed as a table and written as JSON (``bench/results/sync.json`` by default).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx

from bridge.calendars.caldav import CalDAVCalendar, resolve_file_namer
from bridge.cli import build_parser
from bridge.cli import main as roombridge
from bridge.config import load_config
from bridge.emulators.faults import RecordedRequest
from bridge.emulators.nexudus import NexudusEmulator
from bridge.model import Window
from bridge.providers.http import PacingPolicy
from bridge.providers.nexudus import NexudusClient
from bridge.sources.nexudus import NexudusSource
from bridge.sync.engine import desired_objects
from mappings.ical import content_hash

DEFAULT_BOOKINGS = 1000
QUICK_BOOKINGS = 200
DEFAULT_CHANGES = 10
RESULTS_PATH = Path(__file__).resolve().parent / "results" / "sync.json"

PAST_DAYS = 30
FUTURE_DAYS = 365
#: Bookings are spread over this many days from tomorrow (inside the sync window).
BOOKED_SPAN = timedelta(days=300)
BOOKING_LENGTH = timedelta(hours=1)
#: Seeded bookings were made over the weeks before the run, one every this often, so the
#: provider's ``UpdatedOn`` values look like a real account's (not one shared instant).
SEEDING_PACE = timedelta(minutes=3)
#: Provider time between passes (the ``roombridge run`` default interval is 5 minutes).
PASS_INTERVAL = timedelta(minutes=5)

DAV_USER = "rooms"
PROVIDER_USER = "bench@example.com"
DAV_PASSWORD_VARIABLE = "BENCH_DAV_PASSWORD"
PROVIDER_PASSWORD_VARIABLE = "BENCH_NEXUDUS_PASSWORD"
ICS_CONTENT_TYPE = "text/calendar; charset=utf-8"
STARTUP_TIMEOUT = 30.0
PROFILE_ROWS = 12

#: Targets from the issue (reported, not asserted).
MAX_RATIO_TO_RAW_PUT = 1.3
MIN_SPEEDUP_OVER_VDIRSYNCER = 2.0
#: A no-op pass: one sync-collection REPORT per room.
NOOP_CALENDAR_REQUESTS = 1
#: A pass that wrote: the first read plus the read that settles the sync token after writing.
CALENDAR_READS_AROUND_WRITES = 2
#: An incremental Nexudus read: one page of changed bookings, one of cancelled ones.
INCREMENTAL_LIST_PAGES = 2

PROVIDER_LOGIN_ROUTE = "/api/token"
PROVIDER_LIST_ROUTES = frozenset({"/api/spaces/bookings", "/api/spaces/cancelledbookings"})
CALDAV_WRITE_METHODS = frozenset({"PUT", "DELETE"})

#: Radicale (level "info") logs one line per answered request, before the answer is sent.
RADICALE_RESPONSE_LINE = re.compile(
    r"\] (?P<method>[A-Z]+) response status for '(?P<path>[^']*)'.*? in (?P<seconds>[\d.]+) "
    r"seconds.*: (?P<status>\d{3})\b"
)
MKCALENDAR_BODY = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:set><D:prop>'
    "<D:displayname>{name}</D:displayname>"
    '<C:supported-calendar-component-set><C:comp name="VEVENT"/>'
    "</C:supported-calendar-component-set></D:prop></D:set></C:mkcalendar>"
)


class BenchError(RuntimeError):
    """A benchmark step failed (the run stops: its figures would mean nothing)."""


# ----- the CalDAV server ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerRequest:
    """One request as Radicale logged it."""

    method: str
    path: str
    status: int
    seconds: float


@dataclass
class Radicale:
    """A running Radicale: where it listens, who may write, and what it has answered."""

    base_url: str
    username: str
    password: str
    log: Path

    def new_collection(self, name: str) -> str:
        """A fresh calendar collection (MKCALENDAR); its path, ending in a slash."""
        path = f"/{self.username}/{name}-{secrets.token_hex(4)}/"
        response = httpx.request(
            "MKCALENDAR",
            self.base_url + path,
            content=MKCALENDAR_BODY.format(name=name),
            headers={"Content-Type": "application/xml; charset=utf-8"},
            auth=(self.username, self.password),
        )
        if response.status_code != 201:
            raise BenchError(f"MKCALENDAR {path}: HTTP {response.status_code}")
        return path

    def requests(self) -> list[ServerRequest]:
        """Every request answered so far, in order."""
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            match = RADICALE_RESPONSE_LINE.search(line)
            if match:
                found.append(
                    ServerRequest(
                        match["method"],
                        match["path"],
                        int(match["status"]),
                        float(match["seconds"]),
                    )
                )
        return found


def free_port() -> int:
    """A free loopback TCP port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def radicale_config(workdir: Path, port: int) -> str:
    """Radicale's config: htpasswd auth, owner-only rights, storage and log in ``workdir``."""
    return (
        "[server]\n"
        f"hosts = 127.0.0.1:{port}\n"
        "[auth]\n"
        "type = htpasswd\n"
        f"htpasswd_filename = {workdir / 'users'}\n"
        "htpasswd_encryption = plain\n"
        "delay = 0\n"
        "[rights]\n"
        "type = owner_only\n"
        "[storage]\n"
        f"filesystem_folder = {workdir / 'collections'}\n"
        "[logging]\n"
        # "info" is the lowest level that logs every answered request (one "response status"
        # line each): the server-side request count.
        "level = info\n"
    )


@contextmanager
def running_radicale(workdir: Path) -> Iterator[Radicale]:
    """Start Radicale as a subprocess of this Python, yield it, terminate it afterwards."""
    workdir.mkdir(parents=True, exist_ok=True)
    password = "pw-" + secrets.token_urlsafe(12)
    (workdir / "users").write_text(f"{DAV_USER}:{password}\n")
    port = free_port()
    config = workdir / "config"
    config.write_text(radicale_config(workdir, port))
    log = workdir / "radicale.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "radicale", "--config", str(config)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
    server = Radicale(f"http://127.0.0.1:{port}", DAV_USER, password, log)
    try:
        wait_until_listening(process, server.base_url + "/")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until_listening(process: subprocess.Popen[bytes], url: str) -> None:
    """Poll ``url`` until the server answers; fail if it exits or takes too long."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"Radicale exited with status {process.returncode}")
        try:
            httpx.request("OPTIONS", url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise BenchError(f"Radicale not answering at {url} after {STARTUP_TIMEOUT:.0f}s")


def server_requests_in(requests: Sequence[ServerRequest], collection: str) -> dict[str, int]:
    """Requests to a collection (or its members) by method, with their total."""
    methods = Counter(r.method for r in requests if r.path.startswith(collection))
    return {"total": sum(methods.values()), **dict(sorted(methods.items()))}


def server_seconds_in(requests: Sequence[ServerRequest], collection: str) -> float:
    """Seconds Radicale spent answering requests to a collection (its own measurement)."""
    return round(sum(r.seconds for r in requests if r.path.startswith(collection)), 4)


# ----- the provider --------------------------------------------------------------------------


def seed_bookings(emulator: NexudusEmulator, resource: int, count: int, now: datetime) -> list[int]:
    """``count`` one-hour bookings spread over the coming months, made over past weeks."""
    step = max(timedelta(minutes=1), BOOKED_SPAN // count)
    first_start = now.replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
    emulator.set_clock(now - SEEDING_PACE * count)
    booked = []
    for index in range(count):
        start = first_start + step * index
        fields: dict[str, Any] = {"CoworkerFullName": f"Member {index % 97}"}
        if index % 3 == 0:
            fields["Notes"] = f"Agenda item {index}: quarterly review"
        if index % 10 == 0:
            fields["Tentative"] = True
        booked.append(emulator.seed_booking(resource, start, start + BOOKING_LENGTH, **fields))
        emulator.advance_clock(SEEDING_PACE)
    emulator.set_clock(now)
    return booked


@dataclass(frozen=True, slots=True)
class ExpectedWrites:
    """The calendar writes a set of provider changes calls for."""

    created: int = 0
    updated: int = 0
    deleted: int = 0

    @property
    def total(self) -> int:
        """All writes."""
        return self.created + self.updated + self.deleted


def change_bookings(
    emulator: NexudusEmulator, resource: int, booking_ids: Sequence[int], count: int
) -> ExpectedWrites:
    """Make ``count`` changes as admins would: moves, note edits, cancellations, new bookings.

    Each change calls for exactly one calendar write.
    """
    kinds = ("move", "move", "notes", "cancel", "new")
    spacing = max(1, len(booking_ids) // (count + 1))
    expected = Counter[str]()
    for number in range(count):
        kind = kinds[number % len(kinds)]
        booking_id = booking_ids[(number + 1) * spacing % len(booking_ids)]
        record = emulator.booking(booking_id)
        start = datetime.fromisoformat(record["FromTime"].replace("Z", "+00:00"))
        if kind == "move":
            moved = start + timedelta(minutes=30)
            emulator.edit_booking(booking_id, FromTime=moved, ToTime=moved + BOOKING_LENGTH)
            expected["updated"] += 1
        elif kind == "notes":
            emulator.edit_booking(booking_id, Notes=f"Changed agenda #{number}")
            expected["updated"] += 1
        elif kind == "cancel":
            emulator.cancel_booking(booking_id)
            expected["deleted"] += 1
        else:
            new_start = start + timedelta(minutes=20)
            emulator.seed_booking(
                resource, new_start, new_start + BOOKING_LENGTH, CoworkerFullName="Walk-in"
            )
            expected["created"] += 1
    return ExpectedWrites(expected["created"], expected["updated"], expected["deleted"])


def provider_requests_in(requests: Sequence[RecordedRequest]) -> dict[str, int]:
    """Provider requests split into the login, list pages and anything else."""
    login = sum(1 for r in requests if r.route == PROVIDER_LOGIN_ROUTE)
    pages = sum(1 for r in requests if r.method == "GET" and r.route in PROVIDER_LIST_ROUTES)
    return {
        "total": len(requests),
        "login": login,
        "list_pages": pages,
        "other": len(requests) - login - pages,
    }


# ----- the bridge ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RenderedObject:
    """One calendar object exactly as the bridge renders it."""

    uid: str
    file_name: str
    ics: bytes
    content_hash: str


@dataclass
class Setting:
    """The served emulator, the Radicale server and the secrets a bridge.toml refers to."""

    workdir: Path
    radicale: Radicale
    emulator: NexudusEmulator
    resource: int
    provider_url: str
    provider_password: str

    def write_config(self, name: str, collection: str) -> Path:
        """A bridge.toml for one room synced into ``collection``, with its own state DB."""
        path = self.workdir / f"{name}.toml"
        path.write_text(
            f"""
[state]
url = "sqlite:///{self.workdir / (name + "-state.db")}"

[sync]
past_days = {PAST_DAYS}
future_days = {FUTURE_DAYS}
max_deletions = 50

[providers.hq]
kind = "nexudus"
base_url = "{self.provider_url}"
username = "{PROVIDER_USER}"
password = "${{{PROVIDER_PASSWORD_VARIABLE}}}"

[calendars.dav]
kind = "caldav"
url = "{self.radicale.base_url}"
username = "{self.radicale.username}"
password = "${{{DAV_PASSWORD_VARIABLE}}}"

[[rooms]]
id = "callisto"
name = "Callisto"
provider = "hq"
resource = "{self.resource}"
calendar = "dav"
calendar_id = "{collection}"
"""
        )
        return path

    def secrets_environment(self) -> dict[str, str]:
        """The variables the generated configs read their passwords from."""
        return {
            DAV_PASSWORD_VARIABLE: self.radicale.password,
            PROVIDER_PASSWORD_VARIABLE: self.provider_password,
        }

    def provider_log_mark(self) -> int:
        """A position in the emulator's request log."""
        return len(self.emulator.requests)

    def provider_requests_since(self, mark: int) -> dict[str, int]:
        """Provider requests since a mark, split by kind."""
        return provider_requests_in(self.emulator.requests[mark:])


@contextmanager
def environment(variables: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the block, restoring the previous values afterwards."""
    previous = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def render_objects(setting: Setting, config_path: Path, now: datetime) -> list[RenderedObject]:
    """The objects the bridge will write, rendered by its own source and engine code."""
    config = load_config(config_path, setting.secrets_environment())
    room_config = config.rooms[0]
    window = Window.around(now, PAST_DAYS, FUTURE_DAYS)
    client = NexudusClient(
        PROVIDER_USER,
        setting.provider_password,
        base_url=setting.provider_url,
        pacing=PacingPolicy(min_interval=0, requests_per_minute=0, writes_per_minute=0),
    )
    with client:
        source = NexudusSource(client, name="hq")
        room = room_config.to_room(source.resource_timezone(room_config.resource))
        bookings = source.read(room, None, window, full=True, now=now).bookings
    file_name = resolve_file_namer()
    return [
        RenderedObject(want.uid, file_name(want.uid), want.ics, want.content_hash)
        for want in desired_objects(bookings, window, room.buffers)
    ]


@dataclass(frozen=True, slots=True)
class Pass:
    """One timed ``roombridge sync --json`` run and what it reported."""

    seconds: float
    room: dict[str, Any]
    provider_requests: dict[str, int]
    server_requests: dict[str, int]
    server_seconds: float

    def as_json(self) -> dict[str, Any]:
        """The pass as results JSON."""
        return {
            "seconds": round(self.seconds, 4),
            "created": self.room["created"],
            "updated": self.room["updated"],
            "deleted": self.room["deleted"],
            "calendar_requests": self.room["requests"]["calendar"],
            "server_requests": self.server_requests,
            "server_seconds": self.server_seconds,
            "provider_requests": self.provider_requests,
        }


def run_sync_command(config_path: Path) -> tuple[float, dict[str, Any]]:
    """Run ``roombridge sync --json`` in-process; the wall time and the room's JSON entry."""
    out = io.StringIO()
    with redirect_stdout(out):
        start = time.perf_counter()
        code = roombridge(["sync", "--config", str(config_path), "--json"])
        seconds = time.perf_counter() - start
    try:
        document = json.loads(out.getvalue())
    except json.JSONDecodeError as exc:
        raise BenchError(f"roombridge sync exited {code} without a JSON document") from exc
    room: dict[str, Any] = document["rooms"][0]
    if code != 0 or not room["ok"]:
        raise BenchError(f"roombridge sync exited {code}: {room.get('errors')}")
    return seconds, room


def timed_pass(setting: Setting, config_path: Path, collection: str) -> Pass:
    """One sync pass, with the provider's and Radicale's view of the requests it made."""
    provider_mark = setting.provider_log_mark()
    server_mark = len(setting.radicale.requests())
    seconds, room = run_sync_command(config_path)
    server = setting.radicale.requests()[server_mark:]
    return Pass(
        seconds,
        room,
        setting.provider_requests_since(provider_mark),
        server_requests_in(server, collection),
        server_seconds_in(server, collection),
    )


def collection_hashes(setting: Setting, collection: str) -> dict[str, str]:
    """UID → content hash of every object in a collection (read with the bridge's adapter)."""
    radicale = setting.radicale
    with CalDAVCalendar(
        radicale.base_url, collection, username=radicale.username, password=radicale.password
    ) as calendar:
        listing = calendar.read_changes(None)
    return {obj.uid: content_hash(obj.ics) for obj in listing.changed}


# ----- the baselines -------------------------------------------------------------------------


def raw_put_loop(radicale: Radicale, collection: str, objects: Sequence[RenderedObject]) -> float:
    """Seconds to PUT every object, one after another, on one keep-alive connection."""
    collection_url = radicale.base_url + collection
    headers = {"If-None-Match": "*", "Content-Type": ICS_CONTENT_TYPE}
    with httpx.Client(auth=(radicale.username, radicale.password), timeout=30.0) as client:
        start = time.perf_counter()
        for obj in objects:
            url = urljoin(collection_url, obj.file_name)
            response = client.put(url, content=obj.ics, headers=headers)
            if response.status_code not in (201, 204):
                raise BenchError(f"raw PUT {obj.file_name}: HTTP {response.status_code}")
        return time.perf_counter() - start


@dataclass(frozen=True, slots=True)
class VdirsyncerRun:
    """vdirsyncer's timings: the initial sync, a no-op sync, and its bare start-up."""

    sync_seconds: float
    noop_seconds: float
    startup_seconds: float
    server_requests: dict[str, int]
    server_seconds: float
    noop_server_requests: dict[str, int]


def vdirsyncer_executable() -> str | None:
    """The vdirsyncer command next to this Python, else on PATH."""
    beside = Path(sys.executable).parent / "vdirsyncer"
    return str(beside) if beside.exists() else shutil.which("vdirsyncer")


def vdirsyncer_config(workdir: Path, radicale: Radicale, collection: str) -> str:
    """One pair: a filesystem collection → the CalDAV collection (password from the env)."""
    return f"""
[general]
status_path = "{workdir / "status"}/"

[pair bench]
a = "bench_local"
b = "bench_dav"
collections = null

[storage bench_local]
type = "filesystem"
path = "{workdir / "local"}/"
fileext = ".ics"

[storage bench_dav]
type = "caldav"
url = "{radicale.base_url}{collection}"
username = "{radicale.username}"
password.fetch = ["command", "printenv", "{DAV_PASSWORD_VARIABLE}"]
"""


def run_vdirsyncer(
    executable: str, workdir: Path, setting: Setting, objects: Sequence[RenderedObject]
) -> VdirsyncerRun:
    """Sync the same objects with vdirsyncer into a fresh collection; time only the syncs."""
    radicale = setting.radicale
    collection = radicale.new_collection("vdirsyncer")
    local = workdir / "local"
    local.mkdir(parents=True)
    for obj in objects:
        (local / obj.file_name).write_bytes(obj.ics)
    config = workdir / "vdirsyncer.conf"
    config.write_text(vdirsyncer_config(workdir, radicale, collection))
    env = {**os.environ, **setting.secrets_environment()}

    def vdirsyncer(*args: str) -> float:
        start = time.perf_counter()
        completed = subprocess.run(
            [executable, "-c", str(config), *args],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
        seconds = time.perf_counter() - start
        if completed.returncode != 0:
            tail = completed.stderr.decode(errors="replace")[-800:]
            raise BenchError(f"vdirsyncer {' '.join(args)} exited {completed.returncode}: {tail}")
        return seconds

    startup = vdirsyncer("--version")
    vdirsyncer("discover")
    mark = len(radicale.requests())
    sync_seconds = vdirsyncer("sync")
    after_sync = radicale.requests()
    noop_seconds = vdirsyncer("sync")
    after_noop = radicale.requests()
    return VdirsyncerRun(
        sync_seconds,
        noop_seconds,
        startup,
        server_requests_in(after_sync[mark:], collection),
        server_seconds_in(after_sync[mark:], collection),
        server_requests_in(after_noop[len(after_sync) :], collection),
    )


# ----- the run -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """One reported target: what was measured against what was asked for."""

    name: str
    value: float | None
    wanted: str
    met: bool | None

    def as_json(self) -> dict[str, Any]:
        """The target as results JSON."""
        value = None if self.value is None else round(self.value, 3)
        return {"value": value, "target": self.wanted, "met": self.met}


def ratio(numerator: float, denominator: float) -> float:
    """A ratio that tolerates a zero denominator (an infinitely fast baseline)."""
    return numerator / denominator if denominator > 0 else float("inf")


def evaluate_targets(results: Mapping[str, Any], expected: ExpectedWrites) -> dict[str, Target]:
    """The issue's targets, measured."""
    measured = results["measurements"]
    initial = measured["bridge_initial"]["seconds"]
    raw = measured["raw_put"]["seconds"]
    targets = {
        "initial_vs_raw_put": Target(
            "initial sync / raw PUT loop",
            ratio(initial, raw),
            f"<= {MAX_RATIO_TO_RAW_PUT}x",
            ratio(initial, raw) <= MAX_RATIO_TO_RAW_PUT,
        )
    }
    vdir = measured.get("vdirsyncer")
    speedup = ratio(vdir["seconds"], initial) if vdir else None
    targets["vdirsyncer_vs_initial"] = Target(
        "vdirsyncer / initial sync",
        speedup,
        f">= {MIN_SPEEDUP_OVER_VDIRSYNCER}x",
        None if speedup is None else speedup >= MIN_SPEEDUP_OVER_VDIRSYNCER,
    )
    noop = measured["bridge_noop"]
    targets["noop_calendar_requests"] = Target(
        "no-op CalDAV requests",
        noop["server_requests"]["total"],
        f"<= {NOOP_CALENDAR_REQUESTS} per room",
        noop["server_requests"]["total"] <= NOOP_CALENDAR_REQUESTS
        and noop["calendar_requests"] <= NOOP_CALENDAR_REQUESTS,
    )
    provider = noop["provider_requests"]
    targets["noop_provider_requests"] = Target(
        "no-op provider requests (login apart)",
        provider["total"] - provider["login"],
        f"list pages only (<= {INCREMENTAL_LIST_PAGES})",
        provider["other"] == 0 and provider["list_pages"] <= INCREMENTAL_LIST_PAGES,
    )
    changes = measured["bridge_changes"]
    writes = sum(
        count
        for method, count in changes["server_requests"].items()
        if method in CALDAV_WRITE_METHODS
    )
    targets["changes_writes"] = Target(
        f"writes for {expected.total} changes",
        writes,
        f"== {expected.total}",
        writes == expected.total,
    )
    allowed = expected.total + CALENDAR_READS_AROUND_WRITES
    targets["changes_calendar_requests"] = Target(
        f"CalDAV requests for {expected.total} changes",
        changes["server_requests"]["total"],
        f"<= {allowed} ({expected.total} writes + {CALENDAR_READS_AROUND_WRITES} reads)",
        changes["server_requests"]["total"] <= allowed,
    )
    return targets


def derived_figures(measured: Mapping[str, Any]) -> dict[str, float | None]:
    """Ratios that explain the targets (not targets themselves).

    Radicale's share of a sync swamps the clients' on a loaded machine, so the ratio of the
    time spent outside Radicale says more about the bridge's own cost; and since no sequential
    client can beat the raw PUT loop, vdirsyncer / raw PUT is the largest speed-up over
    vdirsyncer that this server allows.
    """
    raw, initial, vdir = measured["raw_put"], measured["bridge_initial"], measured["vdirsyncer"]
    return {
        "initial_outside_server_vs_raw_put": round(
            ratio(initial["outside_server_seconds"], raw["outside_server_seconds"]), 3
        ),
        "vdirsyncer_outside_server_vs_raw_put": None
        if vdir is None
        else round(ratio(vdir["outside_server_seconds"], raw["outside_server_seconds"]), 3),
        "best_possible_speedup_over_vdirsyncer": None
        if vdir is None
        else round(ratio(vdir["seconds"], raw["seconds"]), 3),
    }


def environment_facts() -> dict[str, Any]:
    """What the figures were measured on."""
    facts: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    for package in ("radicale", "vdirsyncer", "httpx"):
        try:
            facts[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            facts[package] = None
    return facts


def measure_raw_put(setting: Setting, objects: Sequence[RenderedObject]) -> dict[str, Any]:
    """Baseline (a): the raw PUT loop into a fresh collection."""
    radicale = setting.radicale
    collection = radicale.new_collection("raw")
    mark = len(radicale.requests())
    seconds = raw_put_loop(radicale, collection, objects)
    requests = radicale.requests()[mark:]
    return {
        "seconds": round(seconds, 4),
        "server_requests": server_requests_in(requests, collection),
        "server_seconds": server_seconds_in(requests, collection),
    }


def measure_vdirsyncer(
    setting: Setting, objects: Sequence[RenderedObject], workdir: Path
) -> dict[str, Any] | None:
    """Baseline (b): vdirsyncer into a fresh collection (None when it is not installed)."""
    executable = vdirsyncer_executable()
    if executable is None:
        return None
    run = run_vdirsyncer(executable, workdir, setting, objects)
    return {
        "seconds": round(run.sync_seconds, 4),
        "noop_seconds": round(run.noop_seconds, 4),
        "startup_seconds": round(run.startup_seconds, 4),
        "server_requests": run.server_requests,
        "server_seconds": run.server_seconds,
        "noop_server_requests": run.noop_server_requests,
    }


def with_client_seconds(entry: dict[str, Any]) -> dict[str, Any]:
    """The entry with the seconds spent outside Radicale (the client's own cost, mostly)."""
    return {**entry, "outside_server_seconds": round(entry["seconds"] - entry["server_seconds"], 4)}


def median_round(rounds: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median time, listing every round's seconds."""
    ordered = sorted(rounds, key=lambda entry: entry["seconds"])
    return {
        **with_client_seconds(ordered[(len(ordered) - 1) // 2]),
        "rounds_seconds": [entry["seconds"] for entry in rounds],
    }


def run_benchmark(
    bookings: int,
    *,
    changes: int = DEFAULT_CHANGES,
    rounds: int = 1,
    workdir: Path,
    profile_dir: Path | None = None,
    progress: Callable[[str], None] = lambda _message: None,
) -> dict[str, Any]:
    """Run every measurement in ``workdir``; the results document."""
    if bookings < changes + 1:
        raise BenchError(f"need more bookings ({bookings}) than changes ({changes})")
    build_parser()  # imports the subcommand modules once, outside the timed region
    now = datetime.now(UTC).replace(microsecond=0)
    emulator = NexudusEmulator(now=now, seed=11)
    provider_password = "pw-" + secrets.token_urlsafe(12)
    emulator.add_user(PROVIDER_USER, provider_password)
    business = emulator.add_business("Acme London", time_zone="GMT Standard Time")
    resource = emulator.add_resource("Callisto", business_id=business)
    progress(f"seeding {bookings} bookings")
    booking_ids = seed_bookings(emulator, resource, bookings, now)
    results: dict[str, Any] = {
        "bookings": bookings,
        "changes": changes,
        "rounds": rounds,
        "environment": environment_facts(),
        "measurements": {},
    }
    measured: dict[str, Any] = results["measurements"]
    with running_radicale(workdir / "radicale") as radicale, emulator.serve() as served:
        setting = Setting(workdir, radicale, emulator, resource, served.base_url, provider_password)
        with environment(setting.secrets_environment()):
            objects: list[RenderedObject] = []
            raw_rounds: list[dict[str, Any]] = []
            initial_rounds: list[dict[str, Any]] = []
            vdirsyncer_rounds: list[dict[str, Any]] = []
            # Rounds interleave the three writers so that load drifting on a shared machine
            # hits them alike; each round writes into fresh collections (and a fresh state DB).
            for number in range(1, rounds + 1):
                collection = radicale.new_collection("bridge")
                config_path = setting.write_config(f"bridge-{number}", collection)
                objects = objects or render_objects(setting, config_path, now)
                progress(f"round {number}/{rounds}: raw PUT loop of {len(objects)} objects")
                raw_rounds.append(measure_raw_put(setting, objects))
                progress(f"round {number}/{rounds}: bridge initial sync")
                initial_rounds.append(timed_pass(setting, config_path, collection).as_json())
                progress(f"round {number}/{rounds}: vdirsyncer sync")
                vdirsyncer = measure_vdirsyncer(setting, objects, workdir / f"vdirsyncer-{number}")
                if vdirsyncer is not None:
                    vdirsyncer_rounds.append(vdirsyncer)
            results["objects"] = len(objects)
            results["same_objects_as_baselines"] = collection_hashes(setting, collection) == {
                obj.uid: obj.content_hash for obj in objects
            }
            measured["raw_put"] = median_round(raw_rounds)
            measured["bridge_initial"] = median_round(initial_rounds)
            measured["vdirsyncer"] = median_round(vdirsyncer_rounds) if vdirsyncer_rounds else None
            results["initial_vs_raw_put_per_round"] = [
                round(ratio(bridge["seconds"], raw["seconds"]), 3)
                for bridge, raw in zip(initial_rounds, raw_rounds, strict=True)
            ]

            progress("bridge: no-op resync")
            emulator.advance_clock(PASS_INTERVAL)
            measured["bridge_noop"] = with_client_seconds(
                timed_pass(setting, config_path, collection).as_json()
            )

            progress(f"bridge: {changes} provider changes")
            emulator.advance_clock(PASS_INTERVAL)
            expected = change_bookings(emulator, resource, booking_ids, changes)
            emulator.advance_clock(PASS_INTERVAL)
            measured["bridge_changes"] = {
                **with_client_seconds(timed_pass(setting, config_path, collection).as_json()),
                "expected": {
                    "created": expected.created,
                    "updated": expected.updated,
                    "deleted": expected.deleted,
                },
            }

            if profile_dir is not None:
                progress("profiling an extra initial sync and no-op resync (not in the figures)")
                profiled_collection = radicale.new_collection("profiled")
                profiled_config = setting.write_config("profiled", profiled_collection)
                results["profiles"] = {
                    "initial": profile_sync(profiled_config, profile_dir / "sync-initial.prof"),
                    "noop": profile_sync(profiled_config, profile_dir / "sync-noop.prof"),
                }
    results["derived"] = derived_figures(measured)
    targets = evaluate_targets(results, expected)
    results["targets"] = {key: target.as_json() for key, target in targets.items()}
    return results


@dataclass(frozen=True, slots=True)
class ProfileRow:
    """One function of a profile."""

    own: float
    cumulative: float
    calls: int
    file: str
    name: str

    def as_json(self) -> dict[str, Any]:
        """The row as results JSON."""
        return {
            "function": self.name,
            "own": round(self.own, 3),
            "cumulative": round(self.cumulative, 3),
            "calls": self.calls,
        }


def is_project_file(filename: str) -> bool:
    """Whether a profiled function is the bridge's own code."""
    return any(f"{os.sep}{package}{os.sep}" in filename for package in ("bridge", "mappings"))


def profile_sync(config_path: Path, profile_to: Path) -> dict[str, Any]:
    """Run one sync under cProfile; the stats file and where the time went."""
    profiler = cProfile.Profile()
    profiler.enable()
    seconds, _room = run_sync_command(config_path)
    profiler.disable()
    profile_to.parent.mkdir(parents=True, exist_ok=True)
    profiler.dump_stats(str(profile_to))
    stats: dict[tuple[str, int, str], tuple[Any, ...]]
    stats = pstats.Stats(str(profile_to)).stats  # type: ignore[attr-defined]
    rows = [
        ProfileRow(own, cumulative, calls, filename, f"{Path(filename).name}:{line}({function})")
        for (filename, line, function), (_prim, calls, own, cumulative, _callers) in stats.items()
    ]
    by_own = sorted(rows, key=lambda row: row.own, reverse=True)
    ours = sorted(
        (row for row in rows if is_project_file(row.file)),
        key=lambda row: row.cumulative,
        reverse=True,
    )
    return {
        "file": str(profile_to),
        "seconds_under_profiler": round(seconds, 3),
        "top_own_time": [row.as_json() for row in by_own[:PROFILE_ROWS]],
        "top_cumulative_project": [row.as_json() for row in ours[:PROFILE_ROWS]],
    }


# ----- output --------------------------------------------------------------------------------


def format_table(results: Mapping[str, Any]) -> str:
    """The human summary: each measurement, its seconds and requests, each target and verdict."""
    lines = [
        f"roombridge sync benchmark: {results['bookings']} bookings → "
        f"{results['objects']} objects, Radicale {results['environment']['radicale']}, "
        f"load {results['environment']['load_average_1m']} on "
        f"{results['environment']['cpus']} CPUs"
        + (f", median of {results['rounds']} rounds" if results["rounds"] > 1 else ""),
        "",
        *_aligned(measurement_rows(results)),
        "",
        *_aligned(
            [("target", "measured", "wanted", "met")]
            + [
                (key, _number(t["value"]), t["target"], _verdict(t["met"]))
                for key, t in results["targets"].items()
            ]
        ),
    ]
    lines.append("")
    lines.extend(f"{key}: {_number(value)}" for key, value in results["derived"].items())
    if not results.get("same_objects_as_baselines", True):
        lines.append("WARNING: the bridge wrote objects that differ from the baselines' objects")
    return "\n".join(lines)


def measurement_rows(results: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """Table rows: seconds, ratio to the baseline, Radicale's own seconds, requests."""
    measured = results["measurements"]
    raw, vdir = measured["raw_put"], measured["vdirsyncer"]
    rows: list[tuple[str, ...]] = [
        ("measurement", "seconds", "ratio", "in Radicale", "outside", "CalDAV requests", "provider")
    ]
    rows.append(
        (
            "(a) raw PUT loop",
            _seconds(raw["seconds"]),
            "1.00x raw",
            _seconds(raw["server_seconds"]),
            _seconds(raw["outside_server_seconds"]),
            _methods(raw["server_requests"]),
            "-",
        )
    )
    if vdir is not None:
        rows.append(
            (
                "(b) vdirsyncer sync",
                _seconds(vdir["seconds"]),
                _ratio(vdir["seconds"], raw["seconds"], "raw"),
                _seconds(vdir["server_seconds"]),
                _seconds(vdir["outside_server_seconds"]),
                _methods(vdir["server_requests"]),
                "-",
            )
        )
        rows.append(
            (
                "    vdirsyncer no-op sync",
                _seconds(vdir["noop_seconds"]),
                "",
                "",
                "",
                _methods(vdir["noop_server_requests"]),
                "-",
            )
        )
        rows.append(
            ("    vdirsyncer --version", _seconds(vdir["startup_seconds"]), "", "", "", "", "")
        )
    noop_baseline = vdir["noop_seconds"] if vdir is not None else None
    for label, entry, baseline, baseline_name in (
        ("bridge initial sync", measured["bridge_initial"], raw["seconds"], "raw"),
        ("bridge no-op resync", measured["bridge_noop"], noop_baseline, "vdirsyncer no-op"),
        (f"bridge after {results['changes']} changes", measured["bridge_changes"], None, ""),
    ):
        provider = entry["provider_requests"]
        rows.append(
            (
                label,
                _seconds(entry["seconds"]),
                _ratio(entry["seconds"], baseline, baseline_name),
                _seconds(entry["server_seconds"]),
                _seconds(entry["outside_server_seconds"]),
                _methods(entry["server_requests"]),
                f"{provider['total'] - provider['login']} + login {provider['login']}",
            )
        )
    return rows


def _seconds(value: float) -> str:
    """Seconds for the table."""
    return f"{value:.3f}"


def _ratio(value: float, baseline: float | None, name: str) -> str:
    """``1.12x raw`` (empty without a baseline)."""
    return "" if baseline is None else f"{ratio(value, baseline):.2f}x {name}"


def _methods(counts: Mapping[str, int]) -> str:
    """``total (METHOD n, ...)`` of a server request summary."""
    detail = ", ".join(f"{m} {n}" for m, n in counts.items() if m != "total")
    return f"{counts['total']} ({detail})" if detail else str(counts["total"])


def _number(value: float | None) -> str:
    """A measured value for the table."""
    if value is None:
        return "n/a"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _verdict(met: bool | None) -> str:
    """A target verdict for the table."""
    return "n/a" if met is None else ("met" if met else "NOT met")


def _aligned(rows: Sequence[tuple[str, ...]]) -> list[str]:
    """Rows as left-aligned columns."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.sync", description="Nexudus → Radicale sync benchmark."
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--bookings",
        type=int,
        default=DEFAULT_BOOKINGS,
        metavar="N",
        help=f"bookings to sync (default {DEFAULT_BOOKINGS})",
    )
    size.add_argument(
        "--quick", action="store_true", help=f"a smoke run with {QUICK_BOOKINGS} bookings"
    )
    parser.add_argument(
        "--changes",
        type=int,
        default=DEFAULT_CHANGES,
        help=f"provider changes before the last pass (default {DEFAULT_CHANGES})",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat the three initial syncs, interleaved; medians are reported (default 1)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=RESULTS_PATH,
        help="where the JSON results go (default bench/results/sync.json)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also profile an extra initial sync and no-op resync (.prof files next to the output)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON; 1 when a step failed."""
    args = parse_arguments(argv)
    bookings = QUICK_BOOKINGS if args.quick else args.bookings

    def progress(message: str) -> None:
        print(f"… {message}", file=sys.stderr, flush=True)

    profile_dir = args.output.parent if args.profile else None
    with tempfile.TemporaryDirectory(prefix="roombridge-bench-") as workdir:
        try:
            results = run_benchmark(
                bookings,
                changes=args.changes,
                rounds=max(1, args.rounds),
                workdir=Path(workdir),
                profile_dir=profile_dir,
                progress=progress,
            )
        except BenchError as exc:
            print(f"benchmark failed: {exc}", file=sys.stderr)
            return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(format_table(results))
    for name, profile in results.get("profiles", {}).items():
        print(
            f"\nprofile of an extra {name} sync ({profile['seconds_under_profiler']} s "
            "under cProfile), own s / cumulative s / calls:"
        )
        for title, key in (
            ("most own time", "top_own_time"),
            ("project code by cumulative time", "top_cumulative_project"),
        ):
            print(f"  {title}:")
            for row in profile[key]:
                print(
                    f"    {row['own']:8.3f}  {row['cumulative']:8.3f}  {row['calls']:>8}  "
                    f"{row['function']}"
                )
    print(f"\nresults written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
