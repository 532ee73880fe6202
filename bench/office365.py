"""Microsoft 365 benchmark: Nexudus (emulated) → a room mailbox (Graph emulator), via sync.

One command measures, against the emulators of ``bridge/emulators`` (identity over TLS, Graph
over loopback HTTP, an optional per-request latency to stand in for the network):

* the initial sync of N bookings through the real command path (config, state store, provider
  reads, planning, msal, Graph writes): wall time, Graph requests by route, and the peak
  number of requests in flight for the mailbox, seen by the emulator (target: ≤ 4);
* the baseline: a bare sequential ``POST /events`` loop on one keep-alive httpx client with
  the same event bodies, into a fresh mailbox — the floor any Graph writer pays;
* a no-op resync (target: one ``calendarView/delta`` request);
* a cold ``sync --full`` by a fresh runtime (nothing cached: every event is fetched once with
  ``$expand``, four at a time), with its requests and peak concurrency;
* a pass after a handful of provider changes.

Targets are reported, never asserted. ``python -m bench.office365 [--bookings N] [--latency S]
[--quick]``; results are printed and written as JSON (``bench/results/office365.json``).
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
from collections.abc import Sequence
from contextlib import redirect_stdout
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bridge.calendars.graph_events import event_body, plan_object
from bridge.cli import main as roombridge
from bridge.emulators.graph import GraphEmulator
from bridge.emulators.identity import IdentityEmulator, make_test_certificates
from bridge.emulators.nexudus import NexudusEmulator
from bridge.model import BufferMode, Room, Window
from bridge.providers.http import PacingPolicy
from bridge.providers.nexudus import NexudusClient
from bridge.sources.nexudus import NexudusSource
from bridge.sync.engine import desired_objects

DEFAULT_BOOKINGS = 1000
QUICK_BOOKINGS = 150
DEFAULT_CHANGES = 10
RESULTS_PATH = Path(__file__).resolve().parent / "results" / "office365.json"

TENANT = "9a1e4c0b-5b7e-4d59-8e02-3c1f6a7b2d90"
CLIENT_ID = "3c5d9e21-0f4a-4b8c-9d6e-71a2b3c4d5e6"
SECRET_VARIABLE = "BENCH_M365_SECRET"
PROVIDER_PASSWORD_VARIABLE = "BENCH_NEXUDUS_PASSWORD"
PROVIDER_USER = "bench@example.com"
ROOM = "callisto@bench.example"
BASELINE_ROOM = "baseline@bench.example"
BOOKED_SPAN = timedelta(days=300)
SEEDING_PACE = timedelta(minutes=3)
PASS_INTERVAL = timedelta(minutes=5)

#: Targets from the issue (reported, not asserted).
NOOP_DELTA_REQUESTS = 1
MAX_MAILBOX_CONCURRENCY = 4


class BenchError(RuntimeError):
    """A benchmark step failed (its figures would mean nothing)."""


def write_config(
    path: Path,
    *,
    provider_url: str,
    authority: str,
    graph_url: str,
    ca: Path,
    resource: int,
    state: Path,
) -> None:
    """The bench's bridge.toml (secrets come from the environment)."""
    path.write_text(
        f"""
[state]
url = "sqlite:///{state}"

[sync]
past_days = 30
future_days = 365
max_deletions = 100000

[providers.hq]
kind = "nexudus"
base_url = "{provider_url}"
username = "{PROVIDER_USER}"
password = "${{{PROVIDER_PASSWORD_VARIABLE}}}"

[calendars.m365]
kind = "office365"
tenant_id = "{TENANT}"
client_id = "{CLIENT_ID}"
client_secret = "${{{SECRET_VARIABLE}}}"
authority = "{authority}"
graph_url = "{graph_url}"
ca_bundle = "{ca}"

[[rooms]]
id = "callisto"
name = "Callisto"
provider = "hq"
resource = "{resource}"
calendar = "m365"
calendar_id = "{ROOM}"
buffers = "separate"
"""
    )


def run_sync(config: Path, *args: str) -> tuple[float, dict[str, Any]]:
    """``roombridge sync --json`` in-process: (seconds, the room's JSON entry)."""
    out = io.StringIO()
    started = time.perf_counter()
    with redirect_stdout(out):
        code = roombridge(["sync", "--config", str(config), "--json", *args])
    seconds = time.perf_counter() - started
    document = json.loads(out.getvalue())
    if code != 0:
        raise BenchError(f"sync {' '.join(args)} failed: {document}")
    room: dict[str, Any] = document["rooms"][0]
    return seconds, room


def graph_routes(graph: GraphEmulator, since: int) -> dict[str, int]:
    """Graph requests since request number ``since``, by method and route."""
    return dict(sorted(graph.route_counts(since).items()))


def seed(nexudus: NexudusEmulator, resource: int, now: datetime, count: int) -> list[int]:
    """``count`` one-hour bookings spread over the coming 300 days, made over past weeks."""
    step = BOOKED_SPAN / count
    nexudus.clock.set(now - SEEDING_PACE * count)
    ids = []
    for index in range(count):
        start = (now + timedelta(days=1) + step * index).replace(second=0, microsecond=0)
        ids.append(nexudus.seed_booking(resource, start, start + timedelta(hours=1)))
        nexudus.clock.advance(SEEDING_PACE)
    nexudus.clock.set(now)
    return ids


def baseline(graph_url: str, token: str, nexudus_url: str, resource: int, window: Window) -> float:
    """Seconds a bare sequential POST loop takes to write the same events to a fresh mailbox."""
    client = NexudusClient(
        PROVIDER_USER,
        os.environ[PROVIDER_PASSWORD_VARIABLE],
        base_url=nexudus_url,
        pacing=PacingPolicy(min_interval=0, requests_per_minute=0, writes_per_minute=0),
    )
    with client:
        source = NexudusSource(client, name="hq")
        room = Room("callisto", "Callisto", "Europe/London", "hq", str(resource))
        read = source.read(room, None, window, full=True, now=window.start)
    bodies = []
    for want in desired_objects(read.bookings, window, BufferMode.SEPARATE):
        bodies.append(event_body(plan_object(want.uid, want.ics)))
    headers = {"Authorization": f"Bearer {token}", "Prefer": 'outlook.body-content-type="text"'}
    with httpx.Client(headers=headers, timeout=30) as http:
        started = time.perf_counter()
        for body in bodies:
            response = http.post(f"{graph_url}/users/{BASELINE_ROOM}/events", json=body)
            if response.status_code != 201:
                raise BenchError(f"baseline POST: HTTP {response.status_code}")
        return time.perf_counter() - started


def measure(bookings: int, changes: int, latency: float) -> dict[str, Any]:
    """Run every step; the figures as one JSON-ready document."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-office365-"))
    secret = "bench-" + os.urandom(8).hex()
    password = "bench-" + os.urandom(8).hex()
    os.environ[SECRET_VARIABLE] = secret
    os.environ[PROVIDER_PASSWORD_VARIABLE] = password
    tls = make_test_certificates(workdir / "tls")
    identity = IdentityEmulator()
    identity.register(TENANT, CLIENT_ID, secret)
    graph = GraphEmulator(tokens=identity.tokens, seed=1, latency=latency)
    graph.add_room(ROOM, "Callisto")
    graph.add_room(BASELINE_ROOM, "Baseline")
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    nexudus = NexudusEmulator(now=now, seed=3)
    nexudus.add_user(PROVIDER_USER, password)
    business = nexudus.add_business("Bench", time_zone="GMT Standard Time")
    resource = nexudus.add_resource("Callisto", business_id=business)
    ids = seed(nexudus, resource, now, bookings)
    config = workdir / "bridge.toml"
    results: dict[str, Any] = {"bookings": bookings, "latency_s": latency}
    with identity.serve(tls), graph.serve() as graph_served, nexudus.serve() as nexudus_served:
        graph_url = f"{graph_served.base_url}/v1.0"
        write_config(
            config,
            provider_url=nexudus_served.base_url,
            authority=identity.authority(TENANT),
            graph_url=graph_url,
            ca=tls.ca_certificate,
            resource=resource,
            state=workdir / "state.db",
        )

        before = len(graph.requests)
        seconds, room = run_sync(str(config))
        results["initial"] = {
            "seconds": round(seconds, 2),
            "created": room["created"],
            "graph_requests": len(graph.requests) - before,
            "routes": graph_routes(graph, before),
            "peak_in_flight": graph.peak_concurrency(ROOM),
            "throttled": sum(r.status == 429 for r in graph.requests[before:]),
        }

        before = len(graph.requests)
        seconds, room = run_sync(str(config))
        results["noop"] = {
            "seconds": round(seconds, 2),
            "calendar_requests": room["requests"]["calendar"],
            "routes": graph_routes(graph, before),
        }

        graph.reset_peak(ROOM)
        before = len(graph.requests)
        seconds, room = run_sync(str(config), "--full")
        results["cold_full"] = {
            "seconds": round(seconds, 2),
            "graph_requests": len(graph.requests) - before,
            "routes": graph_routes(graph, before),
            "peak_in_flight": graph.peak_concurrency(ROOM),
            "writes": room["created"] + room["updated"] + room["deleted"],
        }

        nexudus.clock.advance(PASS_INTERVAL)
        for booking_id in ids[:changes]:
            nexudus.edit_booking(booking_id, Notes="changed")
        before = len(graph.requests)
        seconds, room = run_sync(str(config))
        results["changes"] = {
            "changed_bookings": changes,
            "seconds": round(seconds, 2),
            "updated": room["updated"],
            "routes": graph_routes(graph, before),
        }

        token = identity.tokens.issue(TENANT, CLIENT_ID, 3600)
        window = Window.around(now, 30, 365)
        results["baseline_seconds"] = round(
            baseline(graph_url, token, nexudus_served.base_url, resource, window), 2
        )
    results["ratio_to_bare_posts"] = round(
        results["initial"]["seconds"] / max(results["baseline_seconds"], 1e-9), 2
    )
    results["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count()}
    return results


def format_table(results: dict[str, Any]) -> str:
    """The human summary."""
    initial, noop, cold, changed = (results[k] for k in ("initial", "noop", "cold_full", "changes"))
    rows = [
        (
            "initial sync",
            f"{initial['seconds']} s",
            initial["graph_requests"],
            initial["peak_in_flight"],
            f"{initial['created']} created",
        ),
        ("bare POST loop (baseline)", f"{results['baseline_seconds']} s", "", "", ""),
        (
            "no-op resync",
            f"{noop['seconds']} s",
            noop["calendar_requests"],
            "",
            f"target {NOOP_DELTA_REQUESTS} delta call",
        ),
        (
            "cold --full read",
            f"{cold['seconds']} s",
            cold["graph_requests"],
            cold["peak_in_flight"],
            f"{cold['writes']} writes",
        ),
        (
            f"{changed['changed_bookings']} changes",
            f"{changed['seconds']} s",
            sum(changed["routes"].values()),
            "",
            f"{changed['updated']} updated",
        ),
    ]
    lines = [
        f"{results['bookings']} bookings, Graph latency {results['latency_s']} s/request",
        f"{'step':<28}{'time':>10}{'requests':>10}{'peak':>6}  note",
    ]
    lines += [f"{a:<28}{b:>10}{c!s:>10}{d!s:>6}  {e}" for a, b, c, d, e in rows]
    lines.append(
        f"initial sync / bare POSTs: {results['ratio_to_bare_posts']}×; peak in flight "
        f"≤ {MAX_MAILBOX_CONCURRENCY} required"
    )
    lines.append(f"initial routes: {initial['routes']}")
    lines.append(f"cold --full routes: {cold['routes']}")
    return "\n".join(lines)


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--bookings", type=int, default=DEFAULT_BOOKINGS)
    parser.add_argument("--changes", type=int, default=DEFAULT_CHANGES)
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        help="seconds the Graph emulator holds every request (network stand-in)",
    )
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_BOOKINGS} bookings")
    parser.add_argument("--output", type=Path, default=RESULTS_PATH)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON."""
    args = parse_arguments(argv)
    bookings = QUICK_BOOKINGS if args.quick else args.bookings
    try:
        results = measure(bookings, min(args.changes, bookings), args.latency)
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
