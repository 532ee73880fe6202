"""Microsoft Graph events ⇄ bookings and patternedRecurrence ⇄ RRULE."""

from __future__ import annotations

import calendar
import json
import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bridge.model import (
    Booking,
    BookingKey,
    BookingStatus,
    Override,
    Person,
    Recurrence,
    Window,
)
from mappings import graph
from mappings.errors import (
    InvalidValue,
    MappingError,
    MissingField,
    UnknownTimezone,
    UnsupportedRecurrence,
)
from mappings.expansion import expand, live_instants, rule_instants
from tests.mappings.test_google import bookings, local_starts

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "graph"
LONDON = ZoneInfo("Europe/London")
BERLIN = ZoneInfo("Europe/Berlin")
HORIZON = timedelta(days=3 * 366)
WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def instants(rule: str, start: datetime) -> list[datetime]:
    zone = start.tzinfo
    assert isinstance(zone, ZoneInfo)
    return [start, *(i for i in rule_instants(rule, start, zone, start + HORIZON) if i != start)]


def through_graph(rule: str, start: datetime) -> str:
    patterned = graph.rrule_to_patterned(rule, start, str(start.tzinfo))
    return graph.patterned_to_rrule(patterned["pattern"], patterned["range"], str(start.tzinfo))


def everything(booking: Booking) -> Any:
    written = [graph.to_json(booking), *graph.instance_bodies(booking)]
    return json.loads(json.dumps(written))


# --------------------------------------------------------------------------- RRULE ⇄ pattern

THURSDAY = datetime(2025, 3, 20, 9, 0, tzinfo=LONDON)  # the third Thursday of March 2025


@pytest.mark.parametrize(
    ("rule", "start", "pattern", "range_"),
    [
        (
            "FREQ=DAILY;INTERVAL=2",
            THURSDAY,
            {"type": "daily", "interval": 2},
            {"type": "noEnd"},
        ),
        (
            "FREQ=WEEKLY;BYDAY=MO,TH,FR;COUNT=10",
            THURSDAY,
            {
                "type": "weekly",
                "interval": 1,
                "daysOfWeek": ["monday", "thursday", "friday"],
                "firstDayOfWeek": "monday",
            },
            {"type": "numbered", "numberOfOccurrences": 10},
        ),
        (
            "FREQ=WEEKLY;INTERVAL=2;BYDAY=TH,SU;WKST=SU",
            THURSDAY,
            {
                "type": "weekly",
                "interval": 2,
                "daysOfWeek": ["thursday", "sunday"],
                "firstDayOfWeek": "sunday",
            },
            {"type": "noEnd"},
        ),
        (
            "FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR;UNTIL=20250430T075959Z",
            THURSDAY,
            {
                "type": "weekly",
                "interval": 1,
                "daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"],
                "firstDayOfWeek": "monday",
            },
            # 09:00 BST on 30 April is 08:00Z, one second after UNTIL: the last one is the 29th.
            {"type": "endDate", "endDate": "2025-04-29"},
        ),
        (
            "FREQ=MONTHLY;BYMONTHDAY=20;UNTIL=20251220T090000Z",
            THURSDAY,
            {"type": "absoluteMonthly", "interval": 1, "dayOfMonth": 20},
            {"type": "endDate", "endDate": "2025-12-20"},
        ),
        (
            "FREQ=MONTHLY;INTERVAL=3;BYDAY=3TH",
            THURSDAY,
            {
                "type": "relativeMonthly",
                "interval": 3,
                "daysOfWeek": ["thursday"],
                "index": "third",
            },
            {"type": "noEnd"},
        ),
        (
            "FREQ=MONTHLY;BYDAY=-1FR",
            datetime(2025, 3, 28, 9, 0, tzinfo=LONDON),
            {"type": "relativeMonthly", "interval": 1, "daysOfWeek": ["friday"], "index": "last"},
            {"type": "noEnd"},
        ),
        (
            "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1;COUNT=6",
            datetime(2025, 3, 31, 9, 0, tzinfo=LONDON),
            {
                "type": "relativeMonthly",
                "interval": 1,
                "daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"],
                "index": "last",
            },
            {"type": "numbered", "numberOfOccurrences": 6},
        ),
        (
            "FREQ=MONTHLY;BYMONTHDAY=-1",
            datetime(2025, 1, 31, 9, 0, tzinfo=LONDON),
            {"type": "absoluteMonthly", "interval": 1, "dayOfMonth": 31},
            {"type": "noEnd"},
        ),
        (
            "FREQ=YEARLY",
            THURSDAY,
            {"type": "absoluteYearly", "interval": 1, "month": 3, "dayOfMonth": 20},
            {"type": "noEnd"},
        ),
        (
            "FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU;COUNT=3",
            datetime(2025, 10, 26, 10, 0, tzinfo=LONDON),
            {
                "type": "relativeYearly",
                "interval": 1,
                "month": 10,
                "daysOfWeek": ["sunday"],
                "index": "last",
            },
            {"type": "numbered", "numberOfOccurrences": 3},
        ),
    ],
)
def test_rrule_maps_to_pattern_and_back(
    rule: str, start: datetime, pattern: dict[str, object], range_: dict[str, object]
) -> None:
    patterned = graph.rrule_to_patterned(rule, start, "Europe/London")
    expected_range = {
        **range_,
        "startDate": start.date().isoformat(),
        "recurrenceTimeZone": "GMT Standard Time",
    }
    assert patterned == {"pattern": pattern, "range": expected_range}
    assert instants(through_graph(rule, start), start) == instants(rule, start)


def test_graph_server_shaped_pattern_reads_ignoring_zero_fields() -> None:
    pattern = {
        "type": "relativeMonthly",
        "interval": 1,
        "month": 0,
        "dayOfMonth": 0,
        "daysOfWeek": ["Tuesday"],
        "firstDayOfWeek": "sunday",
        "index": "second",
    }
    range_ = {
        "type": "endDate",
        "startDate": "2025-03-11",
        "endDate": "2025-06-30",
        "recurrenceTimeZone": "Eastern Standard Time",
        "numberOfOccurrences": 0,
    }
    rule = graph.patterned_to_rrule(pattern, range_, "UTC")
    new_york = ZoneInfo("America/New_York")
    start = datetime(2025, 3, 11, 10, 0, tzinfo=new_york)
    days = [i.astimezone(new_york).date() for i in instants(rule, start)]
    expected = [
        day
        for month in range(3, 7)
        for day in [date(2025, month, d) for d in range(8, 15)]
        if day.weekday() == 1
    ]
    assert days == expected


def test_day_31_follows_outlook_onto_the_last_day_of_shorter_months() -> None:
    rule = graph.patterned_to_rrule(
        {"type": "absoluteMonthly", "interval": 1, "dayOfMonth": 31},
        {"type": "numbered", "numberOfOccurrences": 12, "startDate": "2025-01-31"},
        "Europe/London",
    )
    start = datetime(2025, 1, 31, 9, 0, tzinfo=LONDON)
    days = [i.date() for i in instants(rule, start)]
    assert days == [date(2025, m, calendar.monthrange(2025, m)[1]) for m in range(1, 13)]


def test_day_30_means_30th_or_the_end_of_february() -> None:
    rule = graph.patterned_to_rrule(
        {"type": "absoluteMonthly", "interval": 1, "dayOfMonth": 30},
        {"type": "numbered", "numberOfOccurrences": 4, "startDate": "2024-01-30"},
        "Europe/London",
    )
    start = datetime(2024, 1, 30, 9, 0, tzinfo=LONDON)
    assert [i.date() for i in instants(rule, start)] == [
        date(2024, 1, 30),
        date(2024, 2, 29),
        date(2024, 3, 30),
        date(2024, 4, 30),
    ]
    assert graph.rrule_to_patterned(rule, start, "Europe/London")["pattern"] == {
        "type": "absoluteMonthly",
        "interval": 1,
        "dayOfMonth": 30,
    }


def test_end_date_is_inclusive_in_the_recurrence_zone() -> None:
    rule = graph.patterned_to_rrule(
        {"type": "weekly", "interval": 1, "daysOfWeek": ["thursday"]},
        {
            "type": "endDate",
            "startDate": "2025-03-20",
            "endDate": "2025-04-03",
            "recurrenceTimeZone": "GMT Standard Time",
        },
        "UTC",
    )
    assert rule == "FREQ=WEEKLY;BYDAY=TH;UNTIL=20250403T225959Z"
    late = datetime(2025, 3, 20, 23, 30, tzinfo=LONDON)  # still on the end date at 23:30
    assert instants(rule, late)[-1] == datetime(2025, 4, 3, 23, 30, tzinfo=LONDON)


@pytest.mark.parametrize(
    ("rule", "start", "reason"),
    [
        ("FREQ=HOURLY;INTERVAL=4", THURSDAY, "FREQ=HOURLY"),
        ("FREQ=DAILY;BYHOUR=9,15", THURSDAY, "BYHOUR"),
        ("FREQ=YEARLY;BYWEEKNO=12", THURSDAY, "BYWEEKNO"),
        ("FREQ=YEARLY;BYYEARDAY=79", THURSDAY, "BYYEARDAY"),
        ("FREQ=MONTHLY;BYMONTHDAY=20,21", THURSDAY, "BYMONTHDAY=20,21"),
        ("FREQ=MONTHLY;BYMONTHDAY=20;BYSETPOS=1", THURSDAY, "BYSETPOS"),
        ("FREQ=MONTHLY;BYMONTHDAY=-2", datetime(2025, 3, 30, 9, tzinfo=LONDON), "BYMONTHDAY=-2"),
        ("FREQ=MONTHLY;BYDAY=TH,FR;BYSETPOS=3", THURSDAY, "not day/weekday/weekend"),
        ("FREQ=MONTHLY;BYDAY=TH;BYSETPOS=3,4", THURSDAY, "several BYSETPOS"),
        ("FREQ=MONTHLY;BYDAY=TH", THURSDAY, "every TH"),
        ("FREQ=YEARLY;BYMONTH=3,9", THURSDAY, "several BYMONTH"),
        ("FREQ=DAILY;INTERVAL=2;BYDAY=TH,FR", THURSDAY, "INTERVAL > 1"),
        ("FREQ=WEEKLY;BYDAY=FR", THURSDAY, "DTSTART is not an occurrence"),
        ("FREQ=MONTHLY", datetime(2025, 1, 31, 9, 0, tzinfo=LONDON), "skips shorter months"),
        (
            "FREQ=MONTHLY;BYDAY=5FR",
            datetime(2025, 1, 31, 9, 0, tzinfo=LONDON),
            "ordinal 5",
        ),
        ("FREQ=YEARLY", datetime(2024, 2, 29, 9, 0, tzinfo=LONDON), "skips the years"),
    ],
)
def test_what_graph_cannot_express_is_refused_with_a_reason(
    rule: str, start: datetime, reason: str
) -> None:
    with pytest.raises(UnsupportedRecurrence) as caught:
        graph.rrule_to_patterned(rule, start, "Europe/London")
    assert reason in str(caught.value)


@pytest.mark.parametrize(
    ("pattern", "range_", "field"),
    [
        ({"type": "fortnightly", "interval": 1}, {"type": "noEnd"}, "recurrence.pattern.type"),
        ({"type": "weekly", "interval": 1}, {"type": "noEnd"}, "recurrence.pattern.daysOfWeek"),
        ({"type": "daily", "interval": -1}, {"type": "noEnd"}, "recurrence.pattern.interval"),
        (
            {"type": "relativeMonthly", "interval": 1, "daysOfWeek": ["monday"], "index": "fifth"},
            {"type": "noEnd"},
            "recurrence.pattern.index",
        ),
        ({"type": "absoluteYearly", "interval": 1}, {"type": "noEnd"}, "recurrence.pattern.month"),
        ({"type": "daily", "interval": 1}, {"type": "sometimes"}, "recurrence.range.type"),
        ({"type": "daily", "interval": 1}, {"type": "endDate"}, "recurrence.range.endDate"),
        (
            {"type": "daily", "interval": 1},
            {"type": "numbered", "numberOfOccurrences": 0},
            "recurrence.range.numberOfOccurrences",
        ),
    ],
)
def test_bad_patterns_name_the_field(
    pattern: dict[str, object], range_: dict[str, object], field: str
) -> None:
    with pytest.raises(MappingError) as caught:
        graph.patterned_to_rrule(pattern, range_, "Europe/London")
    assert caught.value.field == field


def _weekday_position(day: date) -> int | None:
    """1..4 (or -1 for the last) among the Monday-Friday days of the month, else None."""
    if day.weekday() > 4:
        return None
    last = calendar.monthrange(day.year, day.month)[1]
    weekdays = [d for d in range(1, last + 1) if date(day.year, day.month, d).weekday() < 5]
    position = weekdays.index(day.day) + 1
    return -1 if position == len(weekdays) else position if position <= 4 else None


RULE_KINDS = (
    *("daily", "weekdays", "weekly", "weekly_days", "weekly_days", "weekly_days"),
    *("monthly", "monthly_last", "monthly_clamp", "monthly_nth", "monthly_set"),
    *("yearly", "yearly_date", "yearly_nth"),
)


@st.composite
def representable_rules(draw: st.DrawFn) -> tuple[str, datetime]:
    """Rules in every form Graph has, with DTSTART moved onto an occurrence."""
    start = draw(local_starts())
    kind = draw(st.sampled_from(RULE_KINDS))
    last_day = calendar.monthrange(start.year, start.month)[1]
    wanted = draw(st.sampled_from((29, 30)))  # "day 29/30, or the last day when shorter"
    if kind == "monthly_last":
        start = start.replace(day=last_day)
    elif kind == "monthly_clamp":
        start = start.replace(day=min(wanted, last_day))
    weekday = WEEKDAYS[start.weekday()]
    nth = (start.day - 1) // 7 + 1
    is_last = start.day + 7 > last_day
    ordinal = -1 if (is_last and draw(st.booleans())) or nth > 4 else nth
    days = draw(st.sets(st.sampled_from(WEEKDAYS), max_size=4)) | {weekday}
    by_day = ",".join(d for d in WEEKDAYS if d in days)
    position = _weekday_position(start.date())
    if kind == "monthly_set" and position is None:
        kind = "monthly_nth"
    body = {
        "daily": ["FREQ=DAILY"],
        "weekdays": ["FREQ=DAILY", f"BYDAY={by_day}"],
        "weekly": ["FREQ=WEEKLY"],
        "weekly_days": [
            "FREQ=WEEKLY",
            f"BYDAY={by_day}",
            f"WKST={draw(st.sampled_from(WEEKDAYS))}",
        ],
        "monthly": ["FREQ=MONTHLY", f"BYMONTHDAY={start.day}"],
        "monthly_last": ["FREQ=MONTHLY", "BYMONTHDAY=-1"],
        "monthly_clamp": [
            "FREQ=MONTHLY",
            f"BYMONTHDAY={','.join(str(d) for d in range(28, wanted + 1))}",
            "BYSETPOS=-1",
        ],
        "monthly_nth": ["FREQ=MONTHLY", f"BYDAY={ordinal}{weekday}"],
        "monthly_set": ["FREQ=MONTHLY", "BYDAY=MO,TU,WE,TH,FR", f"BYSETPOS={position}"],
        "yearly": ["FREQ=YEARLY"],
        "yearly_date": ["FREQ=YEARLY", f"BYMONTH={start.month}", f"BYMONTHDAY={start.day}"],
        "yearly_nth": ["FREQ=YEARLY", f"BYMONTH={start.month}", f"BYDAY={ordinal}{weekday}"],
    }[kind]
    parts = [body[0], *([] if kind == "weekdays" else [f"INTERVAL={draw(st.integers(1, 3))}"])]
    parts += body[1:]
    end = draw(st.sampled_from(("count", "until", "none")))
    if end == "count":
        parts.append(f"COUNT={draw(st.integers(1, 30))}")
    elif end == "until":
        until = start + timedelta(
            days=draw(st.integers(0, 700)), minutes=draw(st.integers(-600, 600))
        )
        parts.append(f"UNTIL={until.astimezone(UTC):%Y%m%dT%H%M%SZ}")
    return ";".join(parts), start


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(representable_rules())
def test_rrule_through_graph_expands_to_the_same_instants(case: tuple[str, datetime]) -> None:
    rule, start = case
    zone = str(start.tzinfo)
    try:
        patterned = graph.rrule_to_patterned(rule, start, zone)
    except UnsupportedRecurrence as refused:
        # Only the RFC "skip shorter months/years" days and non-occurrence starts may be refused.
        event("refused")
        assert re.search(r"skips|not an occurrence|ordinal", str(refused)), (rule, start)
        assert instants(rule, start)  # the rule itself is fine, Graph just cannot carry it
        return
    event("representable")
    back = graph.patterned_to_rrule(patterned["pattern"], patterned["range"], zone)
    assert instants(back, start) == instants(rule, start)
    # One trip through Graph gives the canonical rule: going round again changes nothing.
    assert through_graph(back, start) == back


# --------------------------------------------------------------------------- reading events


def test_single_event_fixture_maps_every_field() -> None:
    [booking] = graph.from_json(load("single-event.json"), provider="m365")
    los_angeles = ZoneInfo("America/Los_Angeles")
    assert booking.provider == "m365"
    assert booking.key == "AAMkAGIAAAoZDOFAAA="
    # Times come back in UTC; the event's own zone is its Windows originalStartTimeZone.
    assert booking.timezone == "America/Los_Angeles"
    assert booking.start == datetime(2025, 3, 10, 9, 0, tzinfo=los_angeles)
    assert booking.end == datetime(2025, 3, 10, 10, 0, tzinfo=los_angeles)
    assert booking.status is BookingStatus.TENTATIVE
    assert booking.private is True
    assert booking.title == "Design review"
    assert booking.description == "Agenda: mock-ups, open questions\nBring laptops"
    assert booking.organizer == Person("dana@example.com", "Dana Scully")
    assert booking.attendees == (
        Person("dana@example.com", "Dana Scully"),
        Person("fox@example.com", "Fox Mulder"),
    )
    assert booking.resource == "callisto@example.com"
    assert booking.version == 'W/"ZlnW4RIAV06KYYwlrfNZvQAAKGWwbw=="'
    assert booking.updated == datetime(2025, 3, 2, 10, 30, 15, 123456, tzinfo=UTC)


def test_series_fixture_with_exception_and_cancelled_occurrence() -> None:
    [booking] = graph.from_json(load("series-with-exceptions.json"))
    assert booking.timezone == "Europe/Berlin"
    window = Window(booking.start - timedelta(days=1), booking.start + timedelta(days=120))
    seen = [
        (o.start.astimezone(BERLIN), o.end.astimezone(BERLIN), o.status)
        for o in expand(booking, window)
    ]
    confirmed, tentative = BookingStatus.CONFIRMED, BookingStatus.TENTATIVE
    assert seen == [
        (
            datetime(2025, 3, 6, 15, 0, tzinfo=BERLIN),
            datetime(2025, 3, 6, 16, 0, tzinfo=BERLIN),
            confirmed,
        ),
        (
            datetime(2025, 3, 20, 15, 0, tzinfo=BERLIN),
            datetime(2025, 3, 20, 16, 0, tzinfo=BERLIN),
            confirmed,
        ),
        # the exception: moved to the morning and tentative
        (
            datetime(2025, 4, 3, 10, 30, tzinfo=BERLIN),
            datetime(2025, 4, 3, 12, 0, tzinfo=BERLIN),
            tentative,
        ),
        # 17 April is cancelled; 1 May is the inclusive end date
        (
            datetime(2025, 5, 1, 15, 0, tzinfo=BERLIN),
            datetime(2025, 5, 1, 16, 0, tzinfo=BERLIN),
            confirmed,
        ),
    ]
    [moved] = booking.recurrence.overrides if booking.recurrence else ()
    assert moved.title == "Sprint review (room swap)"
    assert moved.status is BookingStatus.TENTATIVE


def test_occurrence_without_its_master_is_an_error() -> None:
    page = load("series-with-exceptions.json")
    with pytest.raises(MissingField) as caught:
        graph.from_json(page["value"][1:])
    assert caught.value.field == "seriesMasterId"
    assert caught.value.booking == "AAMkAGException1="


@pytest.mark.parametrize(
    ("name", "error", "booking", "field"),
    [
        ("missing-end.json", MissingField, "AAMkAGNoEnd=", "end"),
        ("unknown-zone.json", UnknownTimezone, "AAMkAGBadZone=", "start.timeZone"),
        ("unknown-pattern.json", InvalidValue, "AAMkAGBadPattern=", "recurrence.pattern.type"),
        ("end-before-start.json", InvalidValue, "AAMkAGBackwards=", "end"),
    ],
)
def test_bad_events_name_the_event_and_field(
    name: str, error: type[MappingError], booking: str, field: str
) -> None:
    with pytest.raises(error) as caught:
        graph.from_json(load(f"invalid/{name}"))
    assert caught.value.booking == booking
    assert caught.value.field == field


def test_custom_zone_falls_back_to_the_callers_zone() -> None:
    event_body = load("single-event.json") | {"originalStartTimeZone": "tzone://Microsoft/Custom"}
    [booking] = graph.from_json(event_body, timezone="Europe/London")
    assert booking.timezone == "Europe/London"
    assert booking.start.astimezone(UTC) == datetime(2025, 3, 10, 16, 0, tzinfo=UTC)
    with pytest.raises(UnknownTimezone) as caught:
        graph.from_json(event_body)
    assert caught.value.field == "originalStartTimeZone"


def test_iana_zone_names_are_accepted_on_input() -> None:
    body = {
        "id": "x",
        "start": {"dateTime": "2025-07-01T09:00:00", "timeZone": "Europe/Berlin"},
        "end": {"dateTime": "2025-07-01T10:00:00", "timeZone": "W. Europe Standard Time"},
    }
    [booking] = graph.from_json(body)
    assert booking.timezone == "Europe/Berlin"
    assert booking.end - booking.start == timedelta(hours=1)


# --------------------------------------------------------------------------- writing events


def _series(**changes: Any) -> Booking:
    start = datetime(2025, 3, 17, 9, 0, tzinfo=LONDON)
    booking = Booking(
        provider="hq",
        key="series-1",
        resource="287977693",
        start=start,
        end=start + timedelta(hours=1),
        timezone="Europe/London",
        title="Stand-up",
        recurrence=Recurrence(
            rrule="FREQ=WEEKLY;COUNT=6",
            exdates=(start + timedelta(weeks=1),),
            overrides=(
                Override(
                    start + timedelta(weeks=2),
                    start + timedelta(weeks=2, hours=5),
                    start + timedelta(weeks=2, hours=6),
                    title="Stand-up (afternoon)",
                ),
            ),
        ),
    )
    return booking.evolve(**changes)


def test_to_json_writes_windows_zones_tags_and_idempotency_key() -> None:
    booking = _series(status=BookingStatus.TENTATIVE, private=True)
    body = graph.to_json(booking)
    assert body["start"] == {"dateTime": "2025-03-17T09:00:00", "timeZone": "GMT Standard Time"}
    assert body["showAs"] == "tentative"
    assert body["sensitivity"] == "private"
    assert body["transactionId"] == graph.transaction_id_for(booking.booking_key)
    assert body["recurrence"] == {
        "pattern": {
            "type": "weekly",
            "interval": 1,
            "daysOfWeek": ["monday"],
            "firstDayOfWeek": "monday",
        },
        "range": {
            "type": "numbered",
            "numberOfOccurrences": 6,
            "startDate": "2025-03-17",
            "recurrenceTimeZone": "GMT Standard Time",
        },
    }
    properties = body["singleValueExtendedProperties"]
    assert isinstance(properties, list)
    for item in properties:
        assert re.fullmatch(r"String \{[0-9A-F-]{36}\} Name Roombridge\w+", item["id"])
    assert {"id": graph.KEY_PROPERTY_ID, "value": '["hq","series-1"]'} in properties


def test_transaction_ids_are_deterministic_per_booking() -> None:
    key = BookingKey("hq", "1")
    assert graph.transaction_id_for(key) == graph.transaction_id_for(BookingKey("hq", "1"))
    assert graph.transaction_id_for(key) != graph.transaction_id_for(BookingKey("hq", "2"))


def test_instance_bodies_patch_exceptions_and_delete_exdates() -> None:
    booking = _series()
    moved, deleted = graph.instance_bodies(booking)
    assert moved["type"] == "exception"
    assert moved["originalStart"] == "2025-03-31T08:00:00Z"
    assert moved["start"] == {"dateTime": "2025-03-31T14:00:00", "timeZone": "GMT Standard Time"}
    assert deleted == {
        "type": "occurrence",
        "originalStart": "2025-03-24T09:00:00Z",
        "isCancelled": True,
        "singleValueExtendedProperties": [
            {"id": graph.KEY_PROPERTY_ID, "value": '["hq","series-1"]'}
        ],
    }


def test_zone_without_windows_name_is_written_as_iana() -> None:
    start = datetime(2025, 3, 17, 9, 0, tzinfo=ZoneInfo("America/Nuuk"))
    booking = _series(
        start=start, end=start + timedelta(hours=1), timezone="America/Nuuk", recurrence=None
    )
    written = graph.to_json(booking)["start"]
    assert written == {
        "dateTime": "2025-03-17T09:00:00",
        "timeZone": graph.graph_zone_name("America/Nuuk"),
    }
    [back] = graph.from_json(everything(booking))
    assert back == booking


def test_single_event_in_a_dst_fold_is_written_in_utc() -> None:
    start = datetime(2025, 10, 26, 1, 30, tzinfo=LONDON, fold=1)
    booking = _series(start=start, end=start + timedelta(minutes=30), recurrence=None)
    assert graph.to_json(booking)["start"] == {"dateTime": "2025-10-26T01:30:00", "timeZone": "UTC"}
    [back] = graph.from_json(everything(booking))
    assert back.start.astimezone(UTC) == start.astimezone(UTC)


@pytest.mark.parametrize(
    ("recurrence", "reason"),
    [
        (
            Recurrence(
                rrule="FREQ=WEEKLY;COUNT=3", rdates=(datetime(2025, 3, 19, 9, tzinfo=LONDON),)
            ),
            "RDATE",
        ),
        (Recurrence(rrule="FREQ=MINUTELY;COUNT=3"), "FREQ=MINUTELY"),
        (
            Recurrence(
                rrule="FREQ=WEEKLY;COUNT=3",
                overrides=(
                    Override(
                        datetime(2025, 3, 19, 9, tzinfo=LONDON),
                        datetime(2025, 3, 19, 10, tzinfo=LONDON),
                        datetime(2025, 3, 19, 11, tzinfo=LONDON),
                    ),
                ),
            ),
            "not an occurrence",
        ),
        (
            Recurrence(
                rrule="FREQ=DAILY;COUNT=5",
                overrides=(
                    Override(
                        datetime(2025, 3, 18, 9, tzinfo=LONDON),
                        datetime(2025, 3, 19, 12, tzinfo=LONDON),
                        datetime(2025, 3, 19, 13, tzinfo=LONDON),
                    ),
                ),
            ),
            "crosses an adjacent occurrence",
        ),
    ],
)
def test_unrepresentable_bookings_are_flagged_for_separate_events(
    recurrence: Recurrence, reason: str
) -> None:
    booking = _series(recurrence=recurrence)
    assert not graph.is_representable(booking)
    assert reason in (graph.unrepresentable_reason(booking) or "")
    with pytest.raises(UnsupportedRecurrence) as caught:
        graph.to_json(booking)
    assert caught.value.booking == "hq/series-1"


def test_a_series_edited_in_outlook_drops_the_stale_stored_rule() -> None:
    booking = _series(recurrence=Recurrence(rrule="FREQ=WEEKLY;COUNT=6"))
    master = graph.to_json(booking)
    master["recurrence"] = {
        "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"]},
        "range": {"type": "numbered", "numberOfOccurrences": 3, "startDate": "2025-03-17"},
    }
    [back] = graph.from_json(master)
    assert back.recurrence is not None
    assert back.recurrence.rrule == "FREQ=WEEKLY;BYDAY=MO;COUNT=3"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bookings(with_rdates=False))
def test_round_trip_of_representable_bookings_is_identity(booking: Booking) -> None:
    if not graph.is_representable(booking):
        event("not representable")
        with pytest.raises(UnsupportedRecurrence):
            graph.to_json(booking)
        return
    event("representable")
    expected = booking
    if booking.status is BookingStatus.CANCELLED and booking.recurrence is not None:
        # A deleted series keeps neither exceptions nor deleted occurrences.
        expected = booking.evolve(recurrence=replace(booking.recurrence, overrides=(), exdates=()))
    [back] = graph.from_json(everything(booking))
    assert back == expected
    window = Window(booking.start - timedelta(days=1), booking.start + timedelta(days=800))
    assert live_instants(back, window) == live_instants(expected, window)
