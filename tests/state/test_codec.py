"""Booking ⇄ JSON: every field survives, including zones, DST folds and sub-second buffers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.model import Booking, BookingStatus, Buffers, Override, Person, Recurrence
from bridge.state.codec import (
    BookingDecodeError,
    booking_from_json,
    booking_to_json,
    decode_datetime,
    dumps_booking,
    encode_datetime,
    loads_booking,
)

LONDON = ZoneInfo("Europe/London")

fixed_offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
zones = st.one_of(
    st.timezones(),
    st.sampled_from(
        [ZoneInfo(name) for name in ("Europe/London", "America/New_York",
                                     "Australia/Lord_Howe", "Pacific/Chatham", "UTC")]
    ),
    fixed_offsets,
    st.just(UTC),
)
#: Days with a DST change (both directions, 1 h and 30 min shifts), where fold matters.
TRANSITION_DAYS = [
    (ZoneInfo("Europe/London"), datetime(2024, 3, 31)),
    (ZoneInfo("Europe/London"), datetime(2024, 10, 27)),
    (ZoneInfo("America/New_York"), datetime(2024, 11, 3)),
    (ZoneInfo("America/New_York"), datetime(2024, 3, 10)),
    (ZoneInfo("Australia/Lord_Howe"), datetime(2024, 4, 7)),
]


@st.composite
def transition_instants(draw: st.DrawFn) -> datetime:
    zone, day = draw(st.sampled_from(TRANSITION_DAYS))
    offset = draw(st.timedeltas(min_value=timedelta(0), max_value=timedelta(hours=4)))
    return (day + offset).replace(tzinfo=zone, fold=draw(st.integers(0, 1)))


instants = st.one_of(
    st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1), timezones=zones),
    transition_instants(),
)
short_text = st.text(max_size=20)
optional_text = st.none() | short_text
people = st.builds(Person, email=optional_text, name=optional_text, phone=optional_text)
durations = st.timedeltas(min_value=timedelta(days=-1), max_value=timedelta(days=10))


@st.composite
def overrides(draw: st.DrawFn) -> Override:
    start = draw(instants)
    return Override(
        recurrence_id=draw(instants),
        start=start,
        end=start + draw(st.timedeltas(min_value=timedelta(seconds=1),
                                       max_value=timedelta(days=2))),
        status=draw(st.none() | st.sampled_from(BookingStatus)),
        title=draw(optional_text),
        description=draw(optional_text),
        version=draw(optional_text),
    )


recurrences = st.builds(
    Recurrence,
    rrule=st.none() | st.sampled_from(["FREQ=WEEKLY;COUNT=4", "FREQ=DAILY;UNTIL=20250101T000000Z"]),
    rdates=st.lists(instants, max_size=3).map(tuple),
    exdates=st.lists(instants, max_size=3).map(tuple),
    overrides=st.lists(overrides(), max_size=3).map(tuple),
)


@st.composite
def bookings(draw: st.DrawFn) -> Booking:
    start = draw(instants)
    return Booking(
        provider=draw(st.sampled_from(["hq", "flex", "pods"])),
        key=draw(st.text(min_size=1, max_size=12)),
        resource=draw(short_text),
        start=start,
        end=start + draw(st.timedeltas(min_value=timedelta(microseconds=1),
                                       max_value=timedelta(days=3))),
        timezone=draw(st.sampled_from(["Europe/London", "America/New_York", "UTC"])),
        status=draw(st.sampled_from(BookingStatus)),
        title=draw(short_text),
        description=draw(st.text(max_size=60)),
        organizer=draw(st.none() | people),
        attendees=tuple(draw(st.lists(people, max_size=3))),
        private=draw(st.booleans()),
        buffers=Buffers(draw(durations), draw(durations)),
        recurrence=draw(st.none() | recurrences),
        version=draw(optional_text),
        updated=draw(st.none() | instants),
        extra=tuple(draw(st.lists(st.tuples(short_text, short_text), max_size=4))),
    )


def wall_clock(value: datetime) -> tuple[object, ...]:
    """Everything that makes two aware datetimes the same value, beyond their instant."""
    zone = value.tzinfo
    zone_id = zone.key if isinstance(zone, ZoneInfo) else value.utcoffset()
    return (value.replace(tzinfo=None), value.utcoffset(), zone_id)


def all_datetimes(booking: Booking) -> list[datetime]:
    found = [booking.start, booking.end]
    if booking.updated:
        found.append(booking.updated)
    if booking.recurrence:
        found += [*booking.recurrence.rdates, *booking.recurrence.exdates]
        for override in booking.recurrence.overrides:
            found += [override.recurrence_id, override.start, override.end]
    return found


@settings(max_examples=150, deadline=None)
@given(bookings())
def test_every_booking_round_trips_exactly(booking: Booking) -> None:
    text = dumps_booking(booking)
    decoded = loads_booking(text)
    assert decoded == booking
    # == compares instants only; the wall time, offset and zone must survive too.
    assert [wall_clock(v) for v in all_datetimes(decoded)] == [
        wall_clock(v) for v in all_datetimes(booking)
    ]
    assert dumps_booking(decoded) == text


@settings(max_examples=150, deadline=None)
@given(instants)
def test_datetime_keeps_instant_zone_and_wall_time(value: datetime) -> None:
    decoded = decode_datetime(encode_datetime(value))
    assert decoded == value
    assert wall_clock(decoded) == wall_clock(value)


def test_second_0130_of_the_october_fall_back_stays_the_second() -> None:
    first = datetime(2024, 10, 27, 1, 30, tzinfo=LONDON)
    second = first.replace(fold=1)
    assert encode_datetime(first) == "2024-10-27T01:30:00+01:00[Europe/London]"
    assert encode_datetime(second) == "2024-10-27T01:30:00+00:00[Europe/London]"
    decoded = decode_datetime(encode_datetime(second))
    assert decoded.fold == 1
    assert decoded.astimezone(UTC) == datetime(2024, 10, 27, 1, 30, tzinfo=UTC)


def test_a_stored_offset_the_zone_no_longer_has_keeps_the_instant() -> None:
    # As if tzdata had changed since the value was written: London is +01:00 in July.
    decoded = decode_datetime("2024-07-01T12:00:00+00:00[Europe/London]")
    assert decoded.astimezone(UTC) == datetime(2024, 7, 1, 12, tzinfo=UTC)
    assert decoded.tzinfo == LONDON


def test_fixed_offset_comes_back_as_that_offset() -> None:
    value = datetime(2024, 12, 8, 3, 16, tzinfo=timezone(timedelta(hours=-8)))
    assert encode_datetime(value) == "2024-12-08T03:16:00-08:00"
    assert decode_datetime(encode_datetime(value)).utcoffset() == timedelta(hours=-8)


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        encode_datetime(datetime(2024, 1, 1))


def test_document_is_plain_readable_json() -> None:
    booking = Booking(
        "hq", "1042", "287977693",
        datetime(2024, 3, 31, 9, tzinfo=LONDON), datetime(2024, 3, 31, 10, tzinfo=LONDON),
        "Europe/London", buffers=Buffers(timedelta(minutes=15), timedelta(seconds=90)),
        extra=(("CoworkerId", "77"),),
    )
    document = json.loads(dumps_booking(booking))
    assert document["start"] == "2024-03-31T09:00:00+01:00[Europe/London]"
    assert document["buffers"] == {"before": 900, "after": 90}
    assert document["extra"] == [["CoworkerId", "77"]]
    assert booking_from_json(booking_to_json(booking)) == booking


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"start": "not a date"}, "Invalid isoformat"),
        ({"start": "2024-01-01T09:00:00"}, "no UTC offset"),
        ({"start": "2024-01-01T09:00:00+00:00[Mars/Olympus]"}, "unknown time zone"),
        ({"status": "maybe"}, "maybe"),
        ({"private": "yes"}, "boolean"),
        ({"buffers": {"before": "5m", "after": 0}}, "number of seconds"),
    ],
)
def test_broken_document_names_the_booking(change: dict[str, object], fragment: str) -> None:
    booking = Booking("hq", "b7", "r", datetime(2024, 1, 1, 9, tzinfo=UTC),
                      datetime(2024, 1, 1, 10, tzinfo=UTC), "UTC")
    document = booking_to_json(booking) | change
    with pytest.raises(BookingDecodeError, match="hq/b7") as caught:
        booking_from_json(document)
    assert fragment in str(caught.value)


def test_missing_field_and_bad_json_are_decode_errors() -> None:
    booking = Booking("hq", "b8", "r", datetime(2024, 1, 1, 9, tzinfo=UTC),
                      datetime(2024, 1, 1, 10, tzinfo=UTC), "UTC")
    document = booking_to_json(booking)
    del document["resource"]
    with pytest.raises(BookingDecodeError, match="resource"):
        booking_from_json(document)
    with pytest.raises(BookingDecodeError, match="not JSON"):
        loads_booking("{")
