"""Feed benchmark: naive icalendar rendering vs cached chunks, warm GET, 304, and a load run.

A room with 10,000 bookings (300 of them recurring series with exceptions) is put into a
fresh SQLite state store, then:

1. naive: what a server without the chunk cache would do per request: read the bookings
   from the store, keep those with an occurrence in the window, serialise them with
   icalendar (``mappings.ical.bookings_to_calendar``);
2. cold: our first request: render every chunk, store it, concatenate (two rounds
   interleaved with the naive ones, best of each);
3. warm GET over HTTP from a real uvicorn (a separate process), median of sequential GETs;
   also a warm assemble from stored chunks in a fresh process-level cache;
4. the 304 path (If-None-Match);
5. a load run: concurrency 32 for 10 s on loopback (wrk when installed, else httpx),
   requests/s and p99.

Run: ``.venv/bin/python bench/feeds.py`` (``--quick`` for a smaller room).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bridge.config import Config, load_config  # noqa: E402
from bridge.feeds.publisher import FeedPublisher, feed_url  # noqa: E402
from bridge.feeds.refresh import FeedSettings  # noqa: E402
from bridge.feeds.render import feed_window, shows_in_window  # noqa: E402
from bridge.model import (  # noqa: E402
    Booking,
    BookingStatus,
    Buffers,
    Override,
    Person,
    Recurrence,
)
from bridge.state.store import StateStore  # noqa: E402
from mappings.ical import bookings_to_calendar  # noqa: E402

#: The bookings are laid around the real clock, so the served feed shows the same window.
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
ROOM = "callisto"
ZONES = ("Europe/London", "America/New_York")
TITLES = ("Board meeting", "Standup; daily, all hands", "Interview\r\nEND:VEVENT", "Ünïcödé ☕")


def make_bookings(total: int, series: int, seed: int = 5) -> list[Booking]:
    """Singles spread over the window, plus recurring series with exceptions."""
    rng = random.Random(seed)
    bookings: list[Booking] = []
    for number in range(total - series):
        zone = ZoneInfo(ZONES[number % 2])
        day = NOW + timedelta(days=rng.randrange(-30, 365))
        start = day.astimezone(zone).replace(hour=rng.randrange(7, 19), minute=0, second=0)
        bookings.append(_booking(f"single-{number}", start, rng, recurrence=None))
    for number in range(series):
        zone = ZoneInfo(ZONES[number % 2])
        first = (NOW - timedelta(days=rng.randrange(0, 700))).astimezone(zone)
        start = first.replace(hour=rng.randrange(8, 17), minute=30, second=0, microsecond=0)
        bookings.append(_booking(f"series-{number}", start, rng, _recurrence(start, rng)))
    return bookings


def _booking(
    key: str, start: datetime, rng: random.Random, recurrence: Recurrence | None
) -> Booking:
    person = Person(f"member{rng.randrange(999)}@example.com", "Ada Lovelace", "+44 20 7946 0000")
    return Booking(
        provider="hq",
        key=key,
        resource="287977693",
        start=start,
        end=start + timedelta(minutes=rng.choice((30, 60, 90, 120))),
        timezone=str(start.tzinfo),
        status=BookingStatus.TENTATIVE if rng.random() < 0.1 else BookingStatus.CONFIRMED,
        title=rng.choice(TITLES),
        description="Coffee for 6, projector",
        organizer=person,
        attendees=(Person(name="Grace Hopper"),),
        buffers=Buffers(timedelta(minutes=15), timedelta(minutes=10))
        if rng.random() < 0.3
        else Buffers(),
        recurrence=recurrence,
        version=str(rng.randrange(10**6)),
        updated=NOW - timedelta(days=rng.randrange(100)),
    )


def _recurrence(start: datetime, rng: random.Random) -> Recurrence:
    rule = rng.choice(
        (
            "FREQ=WEEKLY",
            "FREQ=WEEKLY;BYDAY=MO,WE,FR",
            "FREQ=DAILY;COUNT=400",
            "FREQ=MONTHLY;BYDAY=1TU",
            "FREQ=WEEKLY;INTERVAL=2",
        )
    )
    if "COUNT" not in rule and rng.random() < 0.5:
        until = (NOW + timedelta(days=rng.randrange(30, 600))).strftime("%Y%m%dT%H%M%SZ")
        rule += f";UNTIL={until}"
    weeks = [start + timedelta(weeks=w) for w in range(1, 60)]
    exdates = tuple(rng.sample(weeks, 3)) if rule == "FREQ=WEEKLY" else ()
    overrides = ()
    if rule == "FREQ=WEEKLY":
        moved = [w for w in weeks if w not in exdates][:2]
        overrides = tuple(
            Override(rid, rid + timedelta(hours=1), rid + timedelta(hours=2), title="Moved")
            for rid in moved
        )
    return Recurrence(rrule=rule, exdates=exdates, overrides=overrides)


def write_config(folder: Path, port: int) -> Path:
    path = folder / "bridge.toml"
    path.write_text(f"""
[state]
url = "sqlite:///{folder / "state.db"}"

[server]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"

[providers.hq]
kind = "nexudus"
base_url = "http://127.0.0.1:9"
username = "bench"
password = "bench"

[[rooms]]
id = "{ROOM}"
name = "Callisto"
provider = "hq"
resource = "287977693"
timezone = "Europe/London"
buffers = "separate"
feed_privacy = "titles"
""")
    return path


def timed(action: Callable[[], object], repeat: int = 1) -> tuple[float, object]:
    """Best-of-``repeat`` wall time of an action, and its last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        result = action()
        best = min(best, time.perf_counter() - started)
    return best, result


def naive_render(store: StateStore, config: Config) -> bytes:
    settings = FeedSettings.of(config, config.rooms[0])
    window = feed_window(NOW, settings.past_days, settings.future_days)
    bookings = [pb.booking for pb in store.provider_bookings(ROOM)]
    shown = [b for b in bookings if shows_in_window(b, settings.buffers, window)]
    return bookings_to_calendar(
        shown, privacy=settings.privacy, buffers=settings.buffers, name=settings.name, dtstamp=NOW
    )


def forget_chunks(store: StateStore) -> None:
    """Drop the room's cached chunks so that the next request renders them all again."""
    keys = [chunk.booking_key for chunk in store.feed_chunks(ROOM, with_text=False)]
    store.delete_feed_chunks(ROOM, keys)
    store.mark_feed_rendered(ROOM, -1, "", NOW)
    gc.collect()


def cold_render_peak(config: Config, store: StateStore) -> int:
    """Peak traced memory (this process) of one more cold render, traced apart: tracing is slow."""
    forget_chunks(store)
    tracemalloc.start()
    FeedPublisher(config, store, clock=lambda: NOW).document(ROOM)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(config_path: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bridge.cli",
            "serve",
            "--config",
            str(config_path),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the server did not start")


def sequential(url: str, count: int, headers: dict[str, str]) -> list[float]:
    with httpx.Client(timeout=30) as client:
        client.get(url, headers=headers)
        latencies = []
        for _ in range(count):
            started = time.perf_counter()
            response = client.get(url, headers=headers)
            response.read()
            latencies.append(time.perf_counter() - started)
    return latencies


def load_run(
    url: str, headers: dict[str, str], seconds: int, concurrency: int
) -> dict[str, object]:
    wrk = shutil.which("wrk")
    if wrk:
        return _wrk(wrk, url, headers, seconds, concurrency)
    return asyncio.run(_httpx_load(url, headers, seconds, concurrency))


def _wrk(
    wrk: str, url: str, headers: dict[str, str], seconds: int, concurrency: int
) -> dict[str, object]:
    args = [wrk, "-t2", f"-c{concurrency}", f"-d{seconds}s", "--latency"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    output = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    rps = float(output.split("Requests/sec:")[1].split()[0])
    p99_text = output.split(" 99%")[1].split()[0]
    return {
        "tool": "wrk",
        "requests_per_s": rps,
        "p99_ms": _wrk_ms(p99_text),
        "non_2xx_3xx": "Non-2xx" in output,
    }


def _wrk_ms(text: str) -> float:
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)


async def _httpx_load(
    url: str, headers: dict[str, str], seconds: int, concurrency: int
) -> dict[str, object]:
    latencies: list[float] = []
    statuses: set[int] = set()
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def worker() -> None:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                response = await client.get(url, headers=headers)
                await response.aread()
                latencies.append(time.perf_counter() - started)
                statuses.add(response.status_code)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "tool": "httpx",
        "requests_per_s": len(latencies) / elapsed,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "statuses": sorted(statuses),
    }


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bookings", type=int, default=10_000)
    parser.add_argument("--series", type=int, default=300)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="1,000 bookings, 3 s load run")
    args = parser.parse_args(argv)
    if args.quick:
        args.bookings, args.series, args.seconds = 1_000, 30, 3
    folder = Path(tempfile.mkdtemp(prefix="roombridge-bench-"))
    port = free_port()
    config = load_config(write_config(folder, port))
    results: dict[str, object] = {"bookings": args.bookings, "series": args.series}
    bookings = make_bookings(args.bookings, args.series)
    with StateStore.open(config.state.url) as store:
        with store.transaction():
            for booking in bookings:
                store.put_provider_booking(ROOM, booking, NOW)
        token = store.feed_token(ROOM, NOW)

        # Interleaved rounds, best of each: load from other work hits both alike.
        naive_times, cold_times = [], []
        for _ in range(2):
            seconds, naive_body = timed(lambda: naive_render(store, config))
            naive_times.append(seconds)
            forget_chunks(store)
            publisher = FeedPublisher(config, store, clock=lambda: NOW)
            seconds, document = timed(partial(publisher.document, ROOM))
            cold_times.append(seconds)
        naive_s, cold_s = min(naive_times), min(cold_times)
        results["naive_render_s"] = round(naive_s, 3)
        results["cold_render_s"] = round(cold_s, 3)
        results["naive_rounds_s"] = [round(t, 2) for t in naive_times]
        results["cold_rounds_s"] = [round(t, 2) for t in cold_times]
        results["cold_render_peak_mb"] = round(cold_render_peak(config, store) / 2**20, 1)
        body = document.body  # type: ignore[attr-defined]
        results["feed_bytes"] = len(body)
        results["feed_gzip_bytes"] = len(document.gzipped())  # type: ignore[attr-defined]
        results["naive_bytes"] = len(naive_body)  # type: ignore[arg-type]
        results["events"] = body.count(b"BEGIN:VEVENT")

        fresh = FeedPublisher(config, store, clock=lambda: NOW)
        from_store_s, _ = timed(
            lambda: FeedPublisher(config, store, clock=lambda: NOW).document(ROOM), repeat=3
        )
        results["assemble_from_stored_chunks_s"] = round(from_store_s, 4)
        fresh.document(ROOM)
        warm_s, _ = timed(lambda: fresh.document(ROOM), repeat=50)
        results["warm_in_process_s"] = round(warm_s, 5)

    server = start_server(folder / "bridge.toml", port)
    try:
        url = feed_url(f"http://127.0.0.1:{port}", ROOM, token)
        # The server's clock is real; its first request renders everything (cold over HTTP).
        started = time.perf_counter()
        first = httpx.get(url, timeout=120)
        results["cold_get_http_s"] = round(time.perf_counter() - started, 3)
        etag = first.headers["etag"]
        plain = sequential(url, 30, {"Accept-Encoding": "identity"})
        gz = sequential(url, 30, {"Accept-Encoding": "gzip"})
        not_modified = sequential(url, 200, {"If-None-Match": etag, "Accept-Encoding": "identity"})
        results["warm_get_http_median_s"] = round(statistics.median(plain), 4)
        results["warm_get_http_gzip_median_s"] = round(statistics.median(gz), 4)
        results["not_modified_304_median_s"] = round(statistics.median(not_modified), 5)
        results["speedup_warm_vs_naive"] = round(naive_s / statistics.median(plain), 1)
        results["speedup_304_vs_naive"] = round(naive_s / statistics.median(not_modified), 1)
        results["cold_vs_naive"] = round(cold_s / naive_s, 2)
        results["load_get_gzip"] = load_run(
            url, {"Accept-Encoding": "gzip"}, args.seconds, args.concurrency
        )
        results["load_304"] = load_run(url, {"If-None-Match": etag}, args.seconds, args.concurrency)
        results["server_rss_mb"] = round(rss_mb(server.pid), 1)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    results["bench_process_maxrss_mb"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
    )
    print(json.dumps(results, indent=2))
    shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
