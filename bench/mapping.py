"""Mapping benchmark: Nexudus booking records → iCalendar, in µs per booking.

Two workloads, each timed through the bridge's real path (``mappings.nexudus.from_json`` then
``mappings.ical.bookings_to_calendar``, full privacy, separate buffers) and through a naive
baseline measured in the same run on the same records (one ``icalendar.Event`` per record,
built straight from its fields, no canonical model, no recurrence):

* one 150-member repeat series (Mon/Wed/Fri, London, across both DST changes): the bridge
  folds the members into one RRULE event, the baseline writes 150 events;
* 10,000 single bookings.

Each figure is the best of ``--repeats`` runs. The series output is also checked, untimed:
its expansion must give back exactly the 150 member times.

Run ``python -m bench.mapping`` or ``python bench/mapping.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

if __package__ in (None, ""):
    # Run as a script: make the repository's packages importable.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import icalendar
import recurring_ical_events

from bridge.model import BufferMode, Privacy
from mappings.ical import bookings_to_calendar

ZONE = ZoneInfo("Europe/London")
SERIES_MEMBERS = 150
SINGLE_BOOKINGS = 10_000
SERIES_ID = "5e41e5c2-bench-series"
FIRST_DAY = date(2025, 1, 6)  # a Monday; 150 Mon/Wed/Fri members run to mid-December
RESOURCE_ID = 287977693


@dataclass(frozen=True)
class Result:
    """One timed workload: the bridge against the naive baseline."""

    name: str
    bookings: int
    bridge_seconds: float
    baseline_seconds: float
    bridge_bytes: int
    baseline_bytes: int

    @property
    def bridge_us(self) -> float:
        return self.bridge_seconds / self.bookings * 1e6

    @property
    def baseline_us(self) -> float:
        return self.baseline_seconds / self.bookings * 1e6


# --- input records ---------------------------------------------------------------------------


def admin_record(
    record_id: int, start: datetime, minutes: int, **fields: object
) -> dict[str, object]:
    """An admin API booking record as ``GET /api/spaces/bookings/{id}`` returns it."""
    end = start + timedelta(minutes=minutes)
    record: dict[str, object] = {
        "Id": record_id,
        "UniqueId": f"00000000-0000-4000-8000-{record_id:012d}",
        "ResourceId": RESOURCE_ID,
        "ResourceName": "Callisto Meeting Room",
        "CoworkerId": 7,
        "CoworkerFullName": "Ada Lovelace",
        "FromTime": start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "ToTime": end.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "FromTimeLocal": start.astimezone(ZONE).strftime("%Y-%m-%dT%H:%M:%S"),
        "ToTimeLocal": end.astimezone(ZONE).strftime("%Y-%m-%dT%H:%M:%S"),
        "Notes": f"Booking {record_id}",
        "Tentative": record_id % 7 == 0,
        "UpdatedOn": "2025-01-02T03:04:05Z",
        "CreatedOn": "2025-01-02T03:04:05Z",
        "RepeatSeriesUniqueId": None,
        "RepeatBooking": False,
        "Repeats": 0,
        "WhichBookingsToUpdate": 0,
        "BookingVisitors": [],
    }
    record.update(fields)
    return record


def series_records() -> list[dict[str, object]]:
    """The members of one Mon/Wed/Fri 09:00 London series, as Nexudus materialises them."""
    days = []
    day = FIRST_DAY
    while len(days) < SERIES_MEMBERS:
        if day.weekday() in (0, 2, 4):
            days.append(day)
        day += timedelta(days=1)
    repeat = {
        "RepeatSeriesUniqueId": SERIES_ID,
        "RepeatBooking": True,
        "Repeats": 2,
        "RepeatEvery": 1,
        "RepeatUntil": f"{days[-1].isoformat()}T00:00:00Z",
        "RepeatOnMondays": True,
        "RepeatOnWednesdays": True,
        "RepeatOnFridays": True,
        "Notes": "Weekly planning",
    }
    return [
        admin_record(
            1_040_000_000 + index, datetime(d.year, d.month, d.day, 9, tzinfo=ZONE), 60, **repeat
        )
        for index, d in enumerate(days)
    ]


def single_records(count: int) -> list[dict[str, object]]:
    """``count`` unrelated bookings spread over a year of working hours."""
    first = datetime(2025, 1, 6, 8, tzinfo=ZONE)
    return [
        admin_record(
            1_050_000_000 + index,
            first + timedelta(days=index % 365, minutes=30 * (index % 20)),
            30 + 15 * (index % 6),
        )
        for index in range(count)
    ]


# --- the two ways of producing iCalendar -----------------------------------------------------


def bridge_ics(records: Sequence[dict[str, object]]) -> bytes:
    """The bridge's path: canonical bookings, then one calendar of their events."""
    from mappings.nexudus import from_json

    bookings = from_json(list(records), timezone="Europe/London")
    return bookings_to_calendar(bookings, privacy=Privacy.FULL, buffers=BufferMode.SEPARATE)


def baseline_ics(records: Sequence[dict[str, object]]) -> bytes:
    """The naive path: one icalendar Event per record, straight from its fields."""
    calendar = icalendar.Calendar()
    calendar.add("PRODID", "-//bench//naive//EN")
    calendar.add("VERSION", "2.0")
    for record in records:
        event = icalendar.Event()
        event.add("UID", f"nexudus-{record['Id']}")
        event.add("DTSTAMP", datetime.fromisoformat(str(record["UpdatedOn"])))
        event.add("DTSTART", datetime.fromisoformat(str(record["FromTime"])))
        event.add("DTEND", datetime.fromisoformat(str(record["ToTime"])))
        event.add("SUMMARY", str(record["CoworkerFullName"]))
        event.add("DESCRIPTION", str(record["Notes"]))
        event.add("STATUS", "TENTATIVE" if record["Tentative"] else "CONFIRMED")
        calendar.add_component(event)
    return bytes(calendar.to_ical())


def best_of(repeats: int, work: Callable[[], bytes]) -> tuple[float, bytes]:
    """The fastest of ``repeats`` runs, and the output of the last."""
    best = float("inf")
    output = b""
    for _ in range(repeats):
        started = time.perf_counter()
        output = work()
        best = min(best, time.perf_counter() - started)
    return best, output


def measure(name: str, records: Sequence[dict[str, object]], repeats: int) -> Result:
    """Time both paths on the same records, in alternation-free blocks after one warm-up."""
    bridge_ics(records[:5])
    baseline_ics(records[:5])
    bridge_seconds, ours = best_of(repeats, lambda: bridge_ics(records))
    baseline_seconds, naive = best_of(repeats, lambda: baseline_ics(records))
    return Result(name, len(records), bridge_seconds, baseline_seconds, len(ours), len(naive))


def check_series(records: Sequence[dict[str, object]]) -> None:
    """The series calendar expands to exactly the member times (untimed)."""
    calendar = icalendar.Calendar.from_ical(bridge_ics(records))
    expected = sorted(datetime.fromisoformat(str(r["FromTime"])) for r in records)
    window_end = expected[-1] + timedelta(days=1)
    found = sorted(
        event["DTSTART"].dt.astimezone(UTC)
        for event in recurring_ical_events.of(calendar).between(expected[0], window_end)
        if str(event["UID"]) == f"roombridge-nexudus-{SERIES_ID}"
    )
    if found != expected:
        raise SystemExit(f"series check failed: {len(found)} occurrences, {len(expected)} members")


# --- report ----------------------------------------------------------------------------------


def report(results: Sequence[Result]) -> str:
    """The results as a small table."""
    lines = [
        f"{'workload':<28}{'bookings':>9}{'bridge µs/b':>13}{'naive µs/b':>12}"
        f"{'ratio':>8}{'bridge KiB':>12}{'naive KiB':>11}"
    ]
    for result in results:
        lines.append(
            f"{result.name:<28}{result.bookings:>9}{result.bridge_us:>13.1f}"
            f"{result.baseline_us:>12.1f}{result.bridge_us / result.baseline_us:>7.2f}x"
            f"{result.bridge_bytes / 1024:>12.1f}{result.baseline_bytes / 1024:>11.1f}"
        )
    lines.append("ratio = bridge time / naive time (same run, same records; lower is better)")
    return "\n".join(lines)


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--singles", type=int, default=SINGLE_BOOKINGS)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="1,000 singles, 2 repeats")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    singles = 1_000 if arguments.quick else arguments.singles
    repeats = 2 if arguments.quick else arguments.repeats
    series = series_records()
    check_series(series)
    results = [
        measure(f"series of {SERIES_MEMBERS} members", series, repeats),
        measure(f"{singles:,} single bookings", single_records(singles), max(1, repeats // 2)),
    ]
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
