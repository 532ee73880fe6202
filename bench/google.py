"""Google Calendar benchmark: Nexudus (emulated) → a Google resource calendar, via sync.

Against the emulators of ``bridge/emulators`` (the Google one over loopback HTTP, with the
service-account token exchange), one command measures:

* the initial sync of N bookings (singles and weekly series with moved and deleted members)
  through the real command path: wall time, Google requests by route, token requests;
* the baseline: a bare sequential ``events.insert`` loop through the same client stack
  (google-api-python-client, httplib2, google-auth) with the same master bodies, into a fresh
  calendar — the floor any Google writer pays;
* a no-op resync (target: one ``events.list`` request) and a cold ``sync --full``;
* the per-user budget: two rooms synced as one user against an emulator enforcing Google's
  per-user quota (scaled ×10 by default: 60 requests per 6 s; ``--real-quota``: 600 per
  60 s). Once with the bridge's shared budget, once with the budget lifted: 403s, retries,
  time, and the peak requests seen in any window.

Targets are reported, never asserted. ``python -m bench.google [--bookings N] [--quick]
[--real-quota]``; results are printed and written as JSON (``bench/results/google.json``).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import redirect_stdout
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bridge.calendars.google import (
    GoogleCalendar,
    RequestBudget,
    build_google_calendar,
    shared_budget,
)
from bridge.calendars.google_events import series_write
from bridge.cli import main as roombridge
from bridge.config import GoogleConfig
from bridge.emulators.google import GoogleCalendarEmulator, RecordedRequest
from bridge.emulators.nexudus import NexudusEmulator
from bridge.model import BufferMode, Room, Window
from bridge.providers.http import PacingPolicy
from bridge.providers.nexudus import NexudusClient
from bridge.sources.nexudus import NexudusSource
from bridge.sync.engine import desired_objects

DEFAULT_BOOKINGS = 1000
QUICK_BOOKINGS = 120
#: One booking in ten is a weekly series of eight (with one moved and one deleted member).
SERIES_SHARE = 10
BUDGET_BOOKINGS = 300
QUICK_BUDGET_BOOKINGS = 150
RESULTS_PATH = Path(__file__).resolve().parent / "results" / "google.json"

PASSWORD_VARIABLE = "BENCH_NEXUDUS_PASSWORD"
PROVIDER_USER = "bench@example.com"
ADMIN = "rooms-admin@bench.example"
BUDGETED_ADMIN = "budgeted-admin@bench.example"
UNBUDGETED_ADMIN = "no-budget-admin@bench.example"
SERVICE_ACCOUNT = "bridge@bench.iam.gserviceaccount.com"
ROOMS = ("c_callisto@resource.calendar.google.com", "c_europa@resource.calendar.google.com")
BASELINE_ROOM = "c_baseline@resource.calendar.google.com"
BOOKED_SPAN = timedelta(days=300)
SEEDING_PACE = timedelta(minutes=3)

BUDGET_NOTE = "570 requests/min: Google's 600 less 5% headroom"
#: Targets from the issue (reported, not asserted).
NOOP_LIST_REQUESTS = 1
USER_QUOTA = 600
QUOTA_WINDOW = 60.0


class BenchError(RuntimeError):
    """A benchmark step failed (its figures would mean nothing)."""


class GoogleTime:
    """Seconds the backend spends in Google requests (retries and budget waits included)."""

    total = 0.0

    @classmethod
    def install(cls) -> None:
        """Wrap ``GoogleCalendar._execute`` to add up its wall time."""
        original = GoogleCalendar._execute

        def timed(self: GoogleCalendar, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(self, *args, **kwargs)
            finally:
                cls.total += time.perf_counter() - started

        GoogleCalendar._execute = timed  # type: ignore[method-assign]

    @classmethod
    def since(cls, mark: float) -> float:
        """Seconds spent since a reading of ``total``."""
        return round(cls.total - mark, 2)


def write_config(
    path: Path,
    *,
    provider_url: str,
    api_endpoint: str,
    rooms: Sequence[tuple[str, int, str]],
    subject: str,
) -> None:
    """The bench's bridge.toml: one room per (id, Nexudus resource, Google calendar)."""
    room_tables = "".join(
        f"""
[[rooms]]
id = "{room_id}"
name = "{room_id.title()}"
provider = "hq"
resource = "{resource}"
calendar = "workspace"
calendar_id = "{calendar_id}"
buffers = "separate"
"""
        for room_id, resource, calendar_id in rooms
    )
    path.write_text(
        f"""
[state]
url = "sqlite:///{path.parent / "state.db"}"

[sync]
past_days = 30
future_days = 365
max_deletions = 100000

[providers.hq]
kind = "nexudus"
base_url = "{provider_url}"
username = "{PROVIDER_USER}"
password = "${{{PASSWORD_VARIABLE}}}"

[calendars.workspace]
kind = "google"
service_account_file = "service-account.json"
subject = "{subject}"
api_endpoint = "{api_endpoint}"
{room_tables}"""
    )


def run_sync(config: Path, *args: str, ok: bool = True) -> tuple[float, dict[str, Any]]:
    """``roombridge sync --json`` in-process: (seconds, the JSON document)."""
    out = io.StringIO()
    started = time.perf_counter()
    with redirect_stdout(out):
        code = roombridge(["sync", "--config", str(config), "--json", *args])
    seconds = time.perf_counter() - started
    document: dict[str, Any] = json.loads(out.getvalue())
    if ok and code != 0:
        raise BenchError(f"sync {' '.join(args)} failed: {document}")
    return seconds, document


def routes(requests: Sequence[RecordedRequest]) -> dict[str, int]:
    """Requests by method and route."""
    return dict(sorted(Counter(f"{r.method} {r.route}" for r in requests).items()))


def seed(nexudus: NexudusEmulator, resource: int, now: datetime, count: int) -> None:
    """``count`` one-hour singles over the coming 300 days, made over past weeks."""
    step = BOOKED_SPAN / max(count, 1)
    nexudus.clock.set(now - SEEDING_PACE * count)
    for index in range(count):
        start = (now + timedelta(days=1) + step * index).replace(second=0, microsecond=0)
        nexudus.seed_booking(resource, start, start + timedelta(hours=1))
        nexudus.clock.advance(SEEDING_PACE)
    nexudus.clock.set(now)


def seed_series(nexudus: NexudusEmulator, resource: int, now: datetime, count: int) -> None:
    """``count`` weekly series of eight, each with its third member deleted and fourth moved."""
    for index in range(count):
        first = now + timedelta(days=2 + index % 200, hours=7 + index % 9, minutes=30)
        last = first + timedelta(weeks=7)
        repeat = {
            "RepeatSeriesUniqueId": f"bench-series-{index}",
            "Repeats": 2,
            "RepeatEvery": 1,
            "RepeatUntil": last.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        for week in range(8):
            if week == 2:
                continue
            start = first + timedelta(weeks=week, hours=3 if week == 3 else 0)
            nexudus.seed_booking(resource, start, start + timedelta(hours=1), **repeat)


def provider_client(url: str) -> NexudusClient:
    """An unpaced admin API client of the emulator."""
    return NexudusClient(
        PROVIDER_USER,
        os.environ[PASSWORD_VARIABLE],
        base_url=url,
        pacing=PacingPolicy(min_interval=0, requests_per_minute=0, writes_per_minute=0),
    )


def baseline(config: GoogleConfig, nexudus_url: str, resource: int, window: Window) -> float:
    """Seconds a bare sequential insert loop takes to write the same masters to a fresh room."""
    with provider_client(nexudus_url) as client:
        source = NexudusSource(client, name="hq")
        room = Room("callisto", "Callisto", "Europe/London", "hq", str(resource))
        read = source.read(room, None, window, full=True, now=window.start)
    bodies = []
    for want in desired_objects(read.bookings, window, BufferMode.SEPARATE):
        write = series_write(want.ics)
        bodies.append({**write.master, "id": write.event_id})
    calendar = build_google_calendar(config, BASELINE_ROOM, budget=RequestBudget(10**9))
    events = calendar._service.events()
    calendar.check()  # the token exchange, outside the timing
    started = time.perf_counter()
    for body in bodies:
        events.insert(calendarId=BASELINE_ROOM, body=body, sendUpdates="none").execute()
    seconds = time.perf_counter() - started
    calendar.close()
    return seconds


def peak_in_window(
    requests: Sequence[RecordedRequest], stamps: Sequence[float], window: float
) -> int:
    """The most API requests that arrived within any ``window`` seconds."""
    times = [t for r, t in zip(requests, stamps, strict=True) if r.route != "/token"]
    peak, low = 0, 0
    for high, moment in enumerate(times):
        while times[low] <= moment - window:
            low += 1
        peak = max(peak, high - low + 1)
    return peak


class StampedEmulator(GoogleCalendarEmulator):
    """The Google emulator, remembering when each request was answered."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.stamps: list[float] = []

    def record(self, scope: Any, fault: Any, status: int | None) -> None:
        """Record the request and its arrival time."""
        self.stamps.append(time.monotonic())
        super().record(scope, fault, status)


def measure(bookings: int, budget_bookings: int, real_quota: bool, workdir: Path) -> dict[str, Any]:
    """Run every step; the figures as one JSON-ready document."""
    password = "bench-" + os.urandom(8).hex()
    os.environ[PASSWORD_VARIABLE] = password
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    nexudus = NexudusEmulator(now=now, seed=3)
    nexudus.add_user(PROVIDER_USER, password)
    business = nexudus.add_business("Bench", time_zone="GMT Standard Time")
    resources = [
        nexudus.add_resource(name, business_id=business) for name in ("Callisto", "Europa")
    ]
    series = bookings // SERIES_SHARE
    seed(nexudus, resources[0], now, bookings - series)
    google = GoogleCalendarEmulator(seed=5, quota_per_minute=None)
    google.add_user(ADMIN)
    for calendar_id in (*ROOMS, BASELINE_ROOM):
        google.add_room(calendar_id, calendar_id.split("@")[0], managers=[ADMIN])
    results: dict[str, Any] = {"bookings": bookings, "series": series}
    config_path = workdir / "sync" / "bridge.toml"
    config_path.parent.mkdir()
    with nexudus.serve() as nexudus_served, google.serve() as google_served:
        seed_series(nexudus, resources[0], now, series)
        key = google.create_service_account(SERVICE_ACCOUNT, subjects=[ADMIN])
        (config_path.parent / "service-account.json").write_text(json.dumps(key))
        endpoint = f"{google_served.base_url}/calendar/v3/"
        write_config(
            config_path,
            provider_url=nexudus_served.base_url,
            api_endpoint=endpoint,
            rooms=[("callisto", resources[0], ROOMS[0])],
            subject=ADMIN,
        )

        before, spent = len(google.requests), GoogleTime.total
        waited = shared_budget(ADMIN).waited
        seconds, document = run_sync(config_path)
        room = document["rooms"][0]
        made = google.requests[before:]
        results["initial"] = {
            "seconds": round(seconds, 2),
            "google_seconds": GoogleTime.since(spent),
            "budget_wait_seconds": round(shared_budget(ADMIN).waited - waited, 2),
            "created": room["created"],
            "google_requests": sum(r.route != "/token" for r in made),
            "token_requests": sum(r.route == "/token" for r in made),
            "routes": routes(made),
        }

        before, spent = len(google.requests), GoogleTime.total
        seconds, document = run_sync(config_path)
        results["noop"] = {
            "seconds": round(seconds, 2),
            "google_seconds": GoogleTime.since(spent),
            "calendar_requests": document["rooms"][0]["requests"]["calendar"],
            "routes": routes([r for r in google.requests[before:] if r.route != "/token"]),
        }

        before, spent = len(google.requests), GoogleTime.total
        seconds, document = run_sync(config_path, "--full")
        room = document["rooms"][0]
        results["cold_full"] = {
            "seconds": round(seconds, 2),
            "google_seconds": GoogleTime.since(spent),
            "google_requests": sum(r.route != "/token" for r in google.requests[before:]),
            "writes": room["created"] + room["updated"] + room["deleted"],
        }

        config = GoogleConfig(
            name="workspace",
            service_account_file=config_path.parent / "service-account.json",
            subject=ADMIN,
            api_endpoint=endpoint,
        )
        window = Window.around(now, 30, 365)
        results["baseline_seconds"] = round(
            baseline(config, nexudus_served.base_url, resources[0], window), 2
        )
    working = results["initial"]["google_seconds"] - results["initial"]["budget_wait_seconds"]
    results["ratio_to_bare_inserts"] = round(working / max(results["baseline_seconds"], 1e-9), 2)
    results["budget"] = measure_budget(budget_bookings, real_quota, workdir, now)
    results["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count()}
    return results


def measure_budget(bookings: int, real_quota: bool, workdir: Path, now: datetime) -> dict[str, Any]:
    """Two rooms as one user against the per-user quota: with the budget, and without."""
    scale = 1 if real_quota else 10
    limit, window = USER_QUOTA // scale, QUOTA_WINDOW / scale
    outcome: dict[str, Any] = {
        "quota": f"{limit} requests / {window:g} s",
        "bookings_per_room": bookings,
    }
    for label, subject, budget in (
        ("with_budget", BUDGETED_ADMIN, RequestBudget(limit * 95 // 100, window)),
        ("without_budget", UNBUDGETED_ADMIN, RequestBudget(10**9)),
    ):
        # The runtime asks for the subject's shared budget: register the bench's first.
        assert (
            shared_budget(subject, limit=budget.limit, window=budget.window).limit == budget.limit
        )
        outcome[label] = budget_run(label, subject, bookings, limit, window, workdir, now)
    return outcome


def budget_run(
    label: str, subject: str, bookings: int, limit: int, window: float, workdir: Path, now: datetime
) -> dict[str, Any]:
    """One sync of two fresh rooms as ``subject`` against the enforced quota."""
    nexudus = NexudusEmulator(now=now, seed=4)
    nexudus.add_user(PROVIDER_USER, os.environ[PASSWORD_VARIABLE])
    business = nexudus.add_business("Bench", time_zone="GMT Standard Time")
    resources = [
        nexudus.add_resource(name, business_id=business) for name in ("Callisto", "Europa")
    ]
    for resource in resources:
        seed(nexudus, resource, now, bookings)
    google = StampedEmulator(seed=6, quota_per_minute=limit, quota_window=window)
    google.add_user(subject)
    for calendar_id in ROOMS:
        google.add_room(calendar_id, calendar_id.split("@")[0], managers=[subject])
    config_path = workdir / label / "bridge.toml"
    config_path.parent.mkdir()
    with nexudus.serve() as nexudus_served, google.serve() as google_served:
        key = google.create_service_account(SERVICE_ACCOUNT, subjects=[subject])
        (config_path.parent / "service-account.json").write_text(json.dumps(key))
        write_config(
            config_path,
            provider_url=nexudus_served.base_url,
            api_endpoint=f"{google_served.base_url}/calendar/v3/",
            rooms=[("callisto", resources[0], ROOMS[0]), ("europa", resources[1], ROOMS[1])],
            subject=subject,
        )
        seconds, document = run_sync(config_path, ok=False)
    statuses = Counter(r.status for r in google.requests if r.route != "/token")
    api = sum(statuses.values())
    return {
        "seconds": round(seconds, 1),
        "ok": document["ok"],
        "created": sum(room["created"] for room in document["rooms"]),
        "errors": sum(len(room["errors"]) for room in document["rooms"]),
        "api_requests": api,
        "rate_limited_403": statuses.get(403, 0),
        "peak_requests_in_window": peak_in_window(google.requests, google.stamps, window),
        "requests_per_second": round(api / max(seconds, 1e-9), 1),
    }


def format_table(results: dict[str, Any]) -> str:
    """The human summary."""
    initial, noop, cold = results["initial"], results["noop"], results["cold_full"]
    lines = [
        f"{results['bookings']} bookings ({results['series']} weekly series of 8), "
        "Google emulator on loopback",
        f"{'step':<30}{'time':>10}{'in Google':>11}{'requests':>10}  note",
        f"{'initial sync':<30}{initial['seconds']:>8} s{initial['google_seconds']:>9} s"
        f"{initial['google_requests']:>10}  "
        f"{initial['created']} created, {initial['token_requests']} token request(s)",
        f"{'bare insert loop (baseline)':<30}{'':>10}{results['baseline_seconds']:>9} s",
        f"{'no-op resync':<30}{noop['seconds']:>8} s{noop['google_seconds']:>9} s"
        f"{noop['calendar_requests']:>10}  target {NOOP_LIST_REQUESTS} list call",
        f"{'cold --full':<30}{cold['seconds']:>8} s{cold['google_seconds']:>9} s"
        f"{cold['google_requests']:>10}  {cold['writes']} writes",
        f"initial sync: {initial['budget_wait_seconds']} s of the time in Google is waiting "
        f"for the per-user budget ({BUDGET_NOTE})",
        f"time in Google without budget waits, initial sync / bare inserts: "
        f"{results['ratio_to_bare_inserts']}×",
        f"initial routes: {initial['routes']}",
        "",
        f"per-user quota {results['budget']['quota']}, two rooms × "
        f"{results['budget']['bookings_per_room']} bookings, one user:",
        f"{'run':<16}{'time':>9}{'requests':>10}{'403s':>7}{'peak/window':>13}{'errors':>8}",
    ]
    for label in ("with_budget", "without_budget"):
        run = results["budget"][label]
        lines.append(
            f"{label:<16}{run['seconds']:>7} s{run['api_requests']:>10}{run['rate_limited_403']:>7}"
            f"{run['peak_requests_in_window']:>13}{run['errors']:>8}"
        )
    return "\n".join(lines)


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--bookings", type=int, default=DEFAULT_BOOKINGS)
    parser.add_argument("--budget-bookings", type=int, default=BUDGET_BOOKINGS)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_BOOKINGS} bookings")
    parser.add_argument(
        "--real-quota", action="store_true", help="600 requests / 60 s instead of 60 / 6 s"
    )
    parser.add_argument("--output", type=Path, default=RESULTS_PATH)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON."""
    args = parse_arguments(argv)
    GoogleTime.install()
    bookings = QUICK_BOOKINGS if args.quick else args.bookings
    budget_bookings = QUICK_BUDGET_BOOKINGS if args.quick else args.budget_bookings
    workdir = Path(tempfile.mkdtemp(prefix="bench-google-"))
    try:
        results = measure(bookings, budget_bookings, args.real_quota, workdir)
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    print(format_table(results))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults written to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
