"""Nexudus repeat fields ⇄ RRULE and derive_series, checked against an independent expander.

The oracle for "what a rule means" is recurring-ical-events over a VEVENT built here with
icalendar; the oracle for "what Nexudus stores" is the calendar-arithmetic materialiser in
``strategies.py``. Neither uses mappings.expansion.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar
import pytest
import recurring_ical_events
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mappings.errors import InvalidValue
from mappings.recurrence import (
    NexudusRepeat,
    RepeatCycle,
    derive_series,
    repeat_to_rrule,
    rrule_to_repeat,
)
from tests.mappings.strategies import (
    MONTH_ORDINALS,
    WEEKDAY_FLAGS,
    nth_weekday,
    repeat_settings,
    series_dates,
    zones,
)

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
SYDNEY = ZoneInfo("Australia/Sydney")


def expand_independently(
    dtstart: datetime,
    rule: str | None,
    rdates: Sequence[datetime] = (),
    exdates: Sequence[datetime] = (),
) -> list[datetime]:
    """UTC starts of DTSTART+RRULE+RDATE-EXDATE, via icalendar text and recurring-ical-events."""
    event = icalendar.Event()
    event.add("uid", "probe")
    event.add("dtstart", dtstart)
    event.add("dtend", dtstart + timedelta(minutes=1))
    if rule:
        event.add("rrule", icalendar.vRecur.from_ical(rule))
    for rdate in rdates:
        event.add("rdate", rdate)
    for exdate in exdates:
        event.add("exdate", exdate)
    calendar = icalendar.Calendar()
    calendar.add("prodid", "-//tests//EN")
    calendar.add("version", "2.0")
    calendar.add_component(event)
    parsed = icalendar.Calendar.from_ical(calendar.to_ical())
    low = min([dtstart, *rdates]) - timedelta(days=1)
    found = recurring_ical_events.of(parsed).between(low, dtstart + timedelta(days=20 * 366))
    return sorted(e["DTSTART"].dt.astimezone(UTC) for e in found)


def repeat_of(fields: dict[str, object], zone: ZoneInfo) -> NexudusRepeat:
    """The NexudusRepeat a create body's repeat fields stand for."""
    until = date.fromisoformat(str(fields["RepeatUntil"])[:10])
    return NexudusRepeat(
        repeats=int(str(fields["Repeats"])),
        every=int(str(fields["RepeatEvery"])),
        until=datetime.combine(until, datetime.min.time(), zone),
        weekdays=frozenset(d for d, flag in enumerate(WEEKDAY_FLAGS) if fields[flag]),
    )


def materialised(first: datetime, repeat: NexudusRepeat, zone: ZoneInfo) -> list[datetime]:
    """UTC member starts the test-side materialiser gives for a repeat."""
    assert repeat.until is not None
    dates = series_dates(
        first.date(), repeat.repeats, repeat.every, repeat.until.date(), repeat.weekdays
    )
    return [datetime.combine(d, first.time(), zone).astimezone(UTC) for d in dates]


def starts_on_its_cycle(first: datetime, repeats: int) -> bool:
    """Whether the first booking is a date its cycle produces (Nth-of-month cycles)."""
    if repeats not in MONTH_ORDINALS:
        return True
    found = nth_weekday(first.year, first.month, first.weekday(), MONTH_ORDINALS[repeats])
    return found == first.date()


# --- repeat_to_rrule ---------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_rule_from_repeat_fields_expands_to_what_nexudus_materialises(data: st.DataObject):
    zone_name = data.draw(zones)
    zone = ZoneInfo(zone_name)
    first, fields = data.draw(repeat_settings(zone_name))
    assume(starts_on_its_cycle(first, int(str(fields["Repeats"]))))
    repeat = repeat_of(fields, zone)
    dtstart = first.replace(tzinfo=zone)

    rule = repeat_to_rrule(repeat, dtstart, zone)

    assert expand_independently(dtstart, rule) == materialised(first, repeat, zone)
    assert re.search(r"UNTIL=\d{8}T\d{6}Z", rule)  # RFC 5545: UTC UNTIL with a TZID DTSTART


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_repeat_fields_survive_a_trip_through_rrule(data: st.DataObject):
    zone_name = data.draw(zones)
    zone = ZoneInfo(zone_name)
    first, fields = data.draw(repeat_settings(zone_name))
    assume(starts_on_its_cycle(first, int(str(fields["Repeats"]))))
    repeat = repeat_of(fields, zone)
    dtstart = first.replace(tzinfo=zone)
    rule = repeat_to_rrule(repeat, dtstart, zone)

    back = rrule_to_repeat(rule, dtstart, zone)

    unexpressible = (repeat.cycle is RepeatCycle.MONTHLY and first.day > 28) or (
        repeat.cycle is RepeatCycle.YEARLY and (first.month, first.day) == (2, 29)
    )
    if unexpressible:
        assert back is None
        return
    assert back is not None
    assert back.repeats == repeat.repeats
    assert materialised(first, back, zone) == materialised(first, repeat, zone)
    assert expand_independently(dtstart, repeat_to_rrule(back, dtstart, zone)) == (
        expand_independently(dtstart, rule)
    )


def test_weekly_0900_london_stays_0900_local_across_the_march_change():
    dtstart = datetime(2025, 3, 18, 9, tzinfo=LONDON)
    repeat = NexudusRepeat(2, 1, datetime(2025, 4, 15, tzinfo=LONDON), frozenset({1}))

    rule = repeat_to_rrule(repeat, dtstart, LONDON)
    starts = expand_independently(dtstart, rule)

    assert [s.astimezone(LONDON).hour for s in starts] == [9] * 5
    assert [s.hour for s in starts] == [9, 9, 8, 8, 8]  # UTC moves when BST starts


def test_repeat_until_includes_occurrences_on_its_last_day():
    dtstart = datetime(2025, 6, 3, 18, 30, tzinfo=SYDNEY)
    repeat = NexudusRepeat(2, 1, datetime(2025, 6, 24, tzinfo=SYDNEY), frozenset({1}))

    rule = repeat_to_rrule(repeat, dtstart, SYDNEY)

    # The last Tuesday, 24 June 18:30 AEST, is 08:30 UTC and is included.
    assert rule == "FREQ=WEEKLY;BYDAY=TU;UNTIL=20250624T083000Z"
    assert expand_independently(dtstart, rule)[-1] == datetime(2025, 6, 24, 8, 30, tzinfo=UTC)


def test_repeat_until_is_read_as_a_local_date_not_a_utc_instant():
    # 00:00Z on 10 March is still 9 March in New York: the written date is what counts.
    dtstart = datetime(2025, 3, 3, 20, tzinfo=NEW_YORK)
    until = datetime(2025, 3, 10, tzinfo=NEW_YORK)
    rule = repeat_to_rrule(NexudusRepeat(2, 1, until), dtstart, NEW_YORK)
    assert len(expand_independently(dtstart, rule)) == 2


def test_last_of_month_in_a_five_week_month_is_the_fifth_weekday():
    # March 2025 has five Mondays; LastOfMonth is the 31st, FourthOfMonth the 24th.
    dtstart = datetime(2025, 1, 27, 10, tzinfo=LONDON)
    until = datetime(2025, 4, 30, tzinfo=LONDON)

    last = expand_independently(
        dtstart, repeat_to_rrule(NexudusRepeat(8, 1, until), dtstart, LONDON)
    )
    fourth = expand_independently(
        dtstart, repeat_to_rrule(NexudusRepeat(9, 1, until), dtstart, LONDON)
    )

    assert [s.astimezone(LONDON).day for s in last] == [27, 24, 31, 28]
    assert [s.astimezone(LONDON).day for s in fourth] == [27, 24, 24, 28]


@pytest.mark.parametrize(
    ("repeats", "expected"),
    [
        (1, "FREQ=DAILY;INTERVAL=2"),
        (3, "FREQ=MONTHLY;INTERVAL=2"),
        (4, "FREQ=YEARLY;INTERVAL=2"),
        (5, "FREQ=MONTHLY;INTERVAL=2;BYDAY=1WE"),
        (6, "FREQ=MONTHLY;INTERVAL=2;BYDAY=2WE"),
        (7, "FREQ=MONTHLY;INTERVAL=2;BYDAY=3WE"),
        (9, "FREQ=MONTHLY;INTERVAL=2;BYDAY=4WE"),
        (8, "FREQ=MONTHLY;INTERVAL=2;BYDAY=-1WE"),
    ],
)
def test_each_cycle_names_its_rule_with_the_first_bookings_weekday(repeats: int, expected: str):
    dtstart = datetime(2025, 1, 1, 9, tzinfo=LONDON)  # a Wednesday
    assert repeat_to_rrule(NexudusRepeat(repeats, 2), dtstart, LONDON) == expected


def test_weekly_without_flags_repeats_on_the_first_bookings_weekday():
    dtstart = datetime(2025, 1, 2, 9, tzinfo=LONDON)  # a Thursday
    assert repeat_to_rrule(NexudusRepeat(2), dtstart, LONDON) == "FREQ=WEEKLY;BYDAY=TH"


def test_weekly_flags_become_byday_in_week_order():
    dtstart = datetime(2025, 1, 1, 9, tzinfo=LONDON)
    repeat = NexudusRepeat(2, 3, None, frozenset({4, 0, 2}))
    assert repeat_to_rrule(repeat, dtstart, LONDON) == "FREQ=WEEKLY;INTERVAL=3;BYDAY=MO,WE,FR"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"repeats": 0}, "Repeats"),
        ({"repeats": 10}, "Repeats"),
        ({"repeats": 2, "every": 0}, "RepeatEvery"),
        ({"repeats": 2, "until": datetime(2025, 1, 1)}, "RepeatUntil"),
        ({"repeats": 2, "weekdays": frozenset({7})}, "RepeatOn"),
    ],
)
def test_impossible_repeat_fields_are_refused(fields: dict[str, object], field: str):
    with pytest.raises(InvalidValue) as caught:
        NexudusRepeat(**fields)  # type: ignore[arg-type]
    assert caught.value.field == field


# --- rrule_to_repeat ---------------------------------------------------------------------------


def test_a_count_rule_becomes_repeat_until_its_last_occurrence():
    dtstart = datetime(2025, 10, 6, 18, tzinfo=SYDNEY)
    repeat = rrule_to_repeat("FREQ=WEEKLY;BYDAY=MO,WE;COUNT=5", dtstart, SYDNEY)
    assert repeat == NexudusRepeat(
        2, 1, datetime(2025, 10, 20, 18, tzinfo=SYDNEY), frozenset({0, 2})
    )


@pytest.mark.parametrize(
    ("rule", "dtstart"),
    [
        ("FREQ=WEEKLY", datetime(2025, 1, 6, 9, tzinfo=LONDON)),  # endless
        ("FREQ=MONTHLY;BYDAY=5MO;COUNT=3", datetime(2025, 3, 31, 9, tzinfo=LONDON)),
        ("FREQ=MONTHLY;BYDAY=-2MO;COUNT=3", datetime(2025, 3, 24, 9, tzinfo=LONDON)),
        ("FREQ=MONTHLY;BYDAY=1TU;COUNT=3", datetime(2025, 1, 6, 9, tzinfo=LONDON)),
        ("FREQ=MONTHLY;BYDAY=MO;BYSETPOS=1;COUNT=3", datetime(2025, 1, 6, 9, tzinfo=LONDON)),
        ("FREQ=WEEKLY;BYDAY=TU;COUNT=3", datetime(2025, 1, 6, 9, tzinfo=LONDON)),  # not in sync
        ("FREQ=WEEKLY;BYDAY=1MO;COUNT=3", datetime(2025, 1, 6, 9, tzinfo=LONDON)),
        ("FREQ=HOURLY;COUNT=3", datetime(2025, 1, 6, 9, tzinfo=LONDON)),
        ("FREQ=DAILY;BYHOUR=9,15;COUNT=3", datetime(2025, 1, 6, 9, tzinfo=LONDON)),
        ("FREQ=MONTHLY;COUNT=3", datetime(2025, 1, 31, 9, tzinfo=LONDON)),  # skips February
        ("FREQ=YEARLY;COUNT=3", datetime(2024, 2, 29, 9, tzinfo=LONDON)),
        (
            "FREQ=WEEKLY;INTERVAL=2;WKST=SU;BYDAY=SU,MO;COUNT=4",
            datetime(2025, 1, 5, 9, tzinfo=LONDON),
        ),
    ],
)
def test_rules_nexudus_cannot_hold_have_no_repeat_fields(rule: str, dtstart: datetime):
    assert rrule_to_repeat(rule, dtstart, LONDON) is None


def test_a_malformed_rule_is_an_invalid_value():
    with pytest.raises(InvalidValue) as caught:
        rrule_to_repeat(
            "FREQ=WEEKLY;INTERVAL=-1;COUNT=2", datetime(2025, 1, 6, tzinfo=LONDON), LONDON
        )
    assert caught.value.field == "RRULE"


# --- derive_series -----------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_derived_series_of_a_clean_materialised_series_needs_no_exceptions(data: st.DataObject):
    zone_name = data.draw(zones)
    zone = ZoneInfo(zone_name)
    first, fields = data.draw(repeat_settings(zone_name))
    assume(starts_on_its_cycle(first, int(str(fields["Repeats"]))))
    starts = materialised(first, repeat_of(fields, zone), zone)

    rule, rdates, exdates = derive_series(starts, zone)

    assert (rdates, exdates) == ((), ())
    assert (rule is None) == (len(starts) == 1)
    assert expand_independently(starts[0].astimezone(zone), rule) == starts


@st.composite
def scattered_starts(draw: st.DrawFn) -> tuple[ZoneInfo, list[datetime]]:
    """A materialised series with members dropped and strays added anywhere, at any time."""
    zone_name = draw(zones)
    zone = ZoneInfo(zone_name)
    first, fields = draw(repeat_settings(zone_name))
    starts = materialised(first, repeat_of(fields, zone), zone)
    kept = [s for s in starts if draw(st.integers(0, 4)) > 0] or starts[:1]
    strays = draw(
        st.lists(
            st.integers(-30 * 96, 400 * 96).map(lambda n: timedelta(minutes=15 * n)), max_size=4
        )
    )
    return zone, sorted(set(kept) | {kept[0] + stray for stray in strays})


@settings(max_examples=150, deadline=None)
@given(scattered_starts())
def test_derived_series_expands_to_exactly_the_starts(case: tuple[ZoneInfo, list[datetime]]):
    zone, starts = case

    rule, rdates, exdates = derive_series(starts, zone)

    dtstart = starts[0].astimezone(zone)
    assert expand_independently(dtstart, rule, rdates, exdates) == starts
    assert len(rdates) + len(exdates) <= len(starts) - 1  # never worse than RDATEs alone


def test_derived_series_uses_one_exdate_for_one_gap():
    starts = [datetime(2025, 3, 4, 9, tzinfo=LONDON) + timedelta(weeks=k) for k in range(8)]
    del starts[3]

    rule, rdates, exdates = derive_series(starts, LONDON)

    assert rule == "FREQ=WEEKLY;UNTIL=20250422T080000Z"
    assert rdates == ()
    assert exdates == (datetime(2025, 3, 25, 9, tzinfo=LONDON),)


def test_derived_series_keeps_the_wall_clock_time_across_sydney_changes():
    # Fortnightly 18:00 Sydney from March to November crosses both April and October changes.
    starts = [datetime(2025, 3, 3, 18, tzinfo=SYDNEY) + timedelta(weeks=2 * k) for k in range(20)]
    utc_starts = [s.astimezone(UTC) for s in starts]

    rule, rdates, exdates = derive_series(utc_starts, SYDNEY)

    assert rule == f"FREQ=WEEKLY;INTERVAL=2;UNTIL={utc_starts[-1]:%Y%m%dT%H%M%SZ}"
    assert utc_starts[-1].hour == 7  # 18:00 AEDT in November
    assert (rdates, exdates) == ((), ())
    assert {s.astimezone(SYDNEY).hour for s in expand_independently(starts[0], rule)} == {18}


def test_derived_series_picks_the_nth_weekday_rule_for_last_mondays():
    days = [date(2025, 1, 27), date(2025, 2, 24), date(2025, 3, 31), date(2025, 4, 28)]
    starts = [datetime.combine(d, datetime.min.time(), NEW_YORK).replace(hour=8) for d in days]

    rule, rdates, exdates = derive_series(starts, NEW_YORK)

    assert rule is not None and "BYDAY=-1MO" in rule
    assert (rdates, exdates) == ((), ())


def test_a_moved_member_costs_one_rdate_and_one_exdate():
    starts = [datetime(2025, 5, 6, 9, tzinfo=LONDON) + timedelta(weeks=k) for k in range(6)]
    starts[2] = starts[2] + timedelta(hours=5)

    rule, rdates, exdates = derive_series(starts, LONDON)

    assert rule is not None and rule.startswith("FREQ=WEEKLY")
    assert rdates == (starts[2],)
    assert exdates == (starts[2] - timedelta(hours=5),)


def test_unrelated_starts_fall_back_to_rdates():
    starts = [
        datetime(2025, 1, 6, 9, tzinfo=LONDON),
        datetime(2025, 2, 19, 14, tzinfo=LONDON),
        datetime(2025, 7, 1, 11, 15, tzinfo=LONDON),
    ]
    assert derive_series(starts, LONDON) == (None, tuple(starts[1:]), ())


def test_one_start_is_no_rule_at_all():
    assert derive_series([datetime(2025, 1, 6, 9, tzinfo=LONDON)], LONDON) == (None, (), ())


def test_derive_series_refuses_naive_or_no_starts():
    with pytest.raises(InvalidValue):
        derive_series([datetime(2025, 1, 6, 9)], LONDON)
    with pytest.raises(InvalidValue):
        derive_series([], LONDON)
