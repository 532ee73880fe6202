"""Bounded occurrence expansion: wall-clock rules, DST, exceptions, unbounded rules refused."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bridge.model import Booking, BookingStatus, Override, Recurrence, Window
from mappings.errors import InvalidValue, UnsupportedRecurrence
from mappings.expansion import expand, live_instants

LONDON = ZoneInfo("Europe/London")
SYDNEY = ZoneInfo("Australia/Sydney")
YEAR_2026 = Window(datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))


def weekly(start: datetime, rule: str, **recurrence: object) -> Booking:
    zone = start.tzinfo
    name = zone.key if isinstance(zone, ZoneInfo) else "UTC"
    return Booking(
        "nexudus",
        "s1",
        "r1",
        start,
        start + timedelta(hours=1),
        name,
        recurrence=Recurrence(rrule=rule, **recurrence),  # type: ignore[arg-type]
    )


def test_weekly_0900_london_stays_0900_across_the_march_change():
    booking = weekly(datetime(2026, 3, 16, 9, tzinfo=LONDON), "FREQ=WEEKLY;COUNT=4")
    local = [o.start.astimezone(LONDON).hour for o in expand(booking, YEAR_2026)]
    utc = [o.start.astimezone(UTC).hour for o in expand(booking, YEAR_2026)]
    assert local == [9, 9, 9, 9]
    assert utc == [9, 9, 8, 8]


def test_sydney_weekly_crosses_april_change():
    booking = weekly(datetime(2026, 3, 30, 18, tzinfo=SYDNEY), "FREQ=WEEKLY;COUNT=3")
    assert [o.start.astimezone(SYDNEY).hour for o in expand(booking, YEAR_2026)] == [18, 18, 18]


def test_until_in_utc_includes_the_last_local_occurrence():
    booking = weekly(datetime(2026, 3, 16, 9, tzinfo=LONDON), "FREQ=WEEKLY;UNTIL=20260413T080000Z")
    assert len(live_instants(booking, YEAR_2026)) == 5


def test_exdate_and_override_and_rdate():
    start = datetime(2026, 5, 4, 9, tzinfo=LONDON)
    moved = Override(
        recurrence_id=start + timedelta(weeks=2),
        start=start + timedelta(weeks=2, hours=3),
        end=start + timedelta(weeks=2, hours=5),
    )
    booking = weekly(
        start,
        "FREQ=WEEKLY;COUNT=4",
        exdates=(start + timedelta(weeks=1),),
        rdates=(datetime(2026, 7, 1, 14, tzinfo=LONDON),),
        overrides=(moved,),
    )
    got = [(o.start.astimezone(LONDON), o.end - o.start) for o in expand(booking, YEAR_2026)]
    assert got == [
        (start, timedelta(hours=1)),
        (start + timedelta(weeks=2, hours=3), timedelta(hours=2)),
        (start + timedelta(weeks=3), timedelta(hours=1)),
        (datetime(2026, 7, 1, 14, tzinfo=LONDON), timedelta(hours=1)),
    ]


def test_cancelled_override_is_kept_but_not_live():
    start = datetime(2026, 5, 4, 9, tzinfo=LONDON)
    cancelled = Override(start, start, start + timedelta(hours=1), status=BookingStatus.CANCELLED)
    booking = weekly(start, "FREQ=WEEKLY;COUNT=2", overrides=(cancelled,))
    assert [o.status for o in expand(booking, YEAR_2026)] == [
        BookingStatus.CANCELLED,
        BookingStatus.CONFIRMED,
    ]
    assert len(live_instants(booking, YEAR_2026)) == 1


def test_window_bounds_expansion_of_an_endless_rule():
    booking = weekly(datetime(2020, 1, 6, 9, tzinfo=LONDON), "FREQ=DAILY")
    window = Window(datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 6, 8, tzinfo=UTC))
    assert len(expand(booking, window)) == 7


def test_occurrence_straddling_the_window_start_is_included():
    booking = weekly(datetime(2026, 6, 1, 23, 30, tzinfo=UTC), "FREQ=DAILY;COUNT=3")
    window = Window(datetime(2026, 6, 2, 0, 0, tzinfo=UTC), datetime(2026, 6, 3, tzinfo=UTC))
    assert [o.start.day for o in expand(booking, window)] == [1, 2]


def test_secondly_rule_is_refused_at_once():
    booking = weekly(datetime(2026, 1, 5, 9, tzinfo=UTC), "FREQ=SECONDLY;COUNT=100000000")
    started = time.monotonic()
    with pytest.raises(UnsupportedRecurrence) as caught:
        expand(booking, YEAR_2026)
    assert caught.value.field == "RRULE"
    assert time.monotonic() - started < 1


def test_rule_with_too_many_instants_is_refused_not_hung():
    booking = weekly(datetime(1990, 1, 1, 9, tzinfo=UTC), "FREQ=HOURLY")
    with pytest.raises(UnsupportedRecurrence):
        expand(booking, YEAR_2026)


@pytest.mark.parametrize("rule", ["FREQ=WEEKLY;BYDAY", "INTERVAL=2", "FREQ=WEEKLY;UNTIL=2026XX01"])
def test_malformed_rules_are_invalid_values(rule: str):
    booking = weekly(datetime(2026, 1, 5, 9, tzinfo=UTC), rule)
    with pytest.raises(InvalidValue):
        expand(booking, YEAR_2026)
