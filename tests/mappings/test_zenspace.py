"""ZenSpace ``/booking_operation`` bodies ⇄ occurrences and bookings."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.model import (
    Booking,
    BookingKey,
    BookingStatus,
    Buffers,
    Occurrence,
    Override,
    Person,
    Recurrence,
    Window,
)
from mappings import zenspace
from mappings.errors import (
    InvalidValue,
    MalformedInput,
    MappingError,
    MissingField,
    UnknownTimezone,
    UnsupportedRecurrence,
)
from mappings.expansion import expand

FIXTURES = Path(__file__).parents[1] / "fixtures" / "zenspace"
POD = "dcd8ec68-8516-4a4f-a03f-cf82f604d32b"
LA = ZoneInfo("America/Los_Angeles")


def seed() -> dict[str, Any]:
    data = json.loads((FIXTURES / "seed-booking-operation.json").read_text())
    assert isinstance(data, dict)
    return data


def meeting(**changes: Any) -> Booking:
    start = datetime(2024, 12, 8, 9, 0, tzinfo=ZoneInfo("Europe/London"))
    booking = Booking(
        provider="hq",
        key="287977693",
        resource="callisto",
        start=start,
        end=start + timedelta(hours=1),
        timezone="Europe/London",
        title="Board meeting",
        organizer=Person("ada@example.com", "Ada Lovelace", "+44 20 7946 0000"),
        attendees=(Person("grace@example.org", "Grace Hopper"),),
        buffers=Buffers(timedelta(minutes=15), timedelta(minutes=10)),
    )
    return booking.evolve(**changes)


def only_occurrence(booking: Booking) -> Occurrence:
    window = Window(booking.start - timedelta(days=1), booking.end + timedelta(days=1))
    [occurrence] = expand(booking, window)
    return occurrence


def operation(booking: Booking, **kwargs: Any) -> dict[str, object]:
    options: dict[str, Any] = {
        "meeting_space_id": POD,
        "unlock_key": "4821",
        "pod_zone": "America/Los_Angeles",
    }
    options.update(kwargs)
    return zenspace.occurrence_to_operation(only_occurrence(booking), booking, **options)


# ------------------------------------------------------------------ identity


def test_occurrence_id_is_the_documented_uuid5() -> None:
    key = BookingKey("hq", "287977693")
    start = datetime(2024, 12, 8, 9, 0, tzinfo=UTC)
    ident = zenspace.occurrence_booking_id(key, start)
    namespace = uuid.uuid5(
        uuid.NAMESPACE_URL, "https://github.com/roombridge/roombridge#zenspace-booking"
    )
    assert ident == str(uuid.uuid5(namespace, "hq/287977693@2024-12-08T09:00:00Z"))
    assert uuid.UUID(ident).version == 5


def test_occurrence_id_depends_on_the_instant_not_its_zone() -> None:
    key = BookingKey("hq", "287977693")
    utc_start = datetime(2024, 12, 8, 17, 0, tzinfo=UTC)
    same = zenspace.occurrence_booking_id(key, utc_start.astimezone(LA))
    assert same == zenspace.occurrence_booking_id(key, utc_start)
    assert zenspace.occurrence_booking_id(key, utc_start + timedelta(days=7)) != same
    assert zenspace.occurrence_booking_id(BookingKey("hq", "other"), utc_start) != same
    assert zenspace.occurrence_booking_id(BookingKey("flex", "287977693"), utc_start) != same


def test_naive_occurrence_start_is_refused() -> None:
    with pytest.raises(InvalidValue):
        zenspace.occurrence_booking_id(BookingKey("hq", "1"), datetime(2024, 1, 1))


# ------------------------------------------------------------------ writing


def test_operation_body_has_every_documented_field() -> None:
    booking = meeting()
    body = operation(booking)
    assert body == {
        "id": zenspace.occurrence_booking_id(booking.booking_key, booking.start),
        "external_id": "hq/287977693",
        "meeting_space_id": POD,
        # 09:00 London is 01:00 in Los Angeles; 15 min setup widens the start only.
        "start_datetime": "2024-12-08T00:45:00-08:00",
        "end_datetime": "2024-12-08T02:00:00-08:00",
        "is_active": True,
        "unlock_key": "4821",
        "attendees": [{"email": "grace@example.org", "name": "Grace Hopper", "phone": ""}],
        "created_by_email": "ada@example.com",
        "created_by_name": "Ada Lovelace",
        "created_by_phone_no": "+44 20 7946 0000",
    }
    assert "Board meeting" not in json.dumps(body)  # ZenSpace has no title; none leaks


def test_regression_setup_buffer_across_the_dst_change_uses_the_earlier_offset() -> None:
    # 03:30 PDT on 10 Mar 2024 minus a 2 h setup is 00:30 PST: the clocks jumped at 02:00.
    start = datetime(2024, 3, 10, 3, 30, tzinfo=LA)
    booking = meeting(
        start=start,
        end=start + timedelta(hours=1),
        timezone="America/Los_Angeles",
        buffers=Buffers(before=timedelta(hours=2)),
    )
    body = operation(booking)
    assert body["start_datetime"] == "2024-03-10T00:30:00-08:00"
    assert body["end_datetime"] == "2024-03-10T04:30:00-07:00"
    assert datetime.fromisoformat(str(body["end_datetime"])) - datetime.fromisoformat(
        str(body["start_datetime"])
    ) == timedelta(hours=3)


def test_cancelled_occurrence_or_inactive_flag_writes_is_active_false() -> None:
    assert operation(meeting(status=BookingStatus.CANCELLED))["is_active"] is False
    assert operation(meeting(), is_active=False)["is_active"] is False
    assert operation(meeting(status=BookingStatus.TENTATIVE))["is_active"] is True


def test_moved_occurrence_keeps_its_pod_booking_id() -> None:
    start = datetime(2024, 6, 3, 9, 0, tzinfo=LA)
    moved_from = start + timedelta(days=7)
    series = meeting(
        start=start,
        end=start + timedelta(hours=1),
        timezone="America/Los_Angeles",
        recurrence=Recurrence(
            rrule="FREQ=WEEKLY;COUNT=3",
            overrides=(
                Override(
                    moved_from, moved_from + timedelta(hours=5), moved_from + timedelta(hours=6)
                ),
            ),
        ),
    )
    occurrences = expand(series, Window(start, start + timedelta(days=30)))
    bodies = [
        zenspace.occurrence_to_operation(
            o, series, meeting_space_id=POD, unlock_key="1", pod_zone="America/Los_Angeles"
        )
        for o in occurrences
    ]
    ids = [body["id"] for body in bodies]
    assert len(set(ids)) == 3
    assert ids[1] == zenspace.occurrence_booking_id(series.booking_key, moved_from)
    assert bodies[1]["start_datetime"] == "2024-06-10T13:45:00-07:00"


@pytest.mark.parametrize("code", ["12a4", "", "１２３４", " 1234", "12.5"])
def test_non_numeric_unlock_key_is_refused_without_echoing_it(code: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        operation(meeting(), unlock_key=code)
    assert caught.value.field == "unlock_key"
    assert caught.value.booking == "287977693"
    if code.strip():
        assert code.strip() not in str(caught.value)


def test_missing_meeting_space_and_unknown_pod_zone_are_named() -> None:
    with pytest.raises(MissingField) as missing:
        operation(meeting(), meeting_space_id="")
    assert missing.value.field == "meeting_space_id"
    with pytest.raises(UnknownTimezone) as zone:
        operation(meeting(), pod_zone="Pacific/Nowhere")
    assert zone.value.field == "pod_zone"


def test_to_json_of_a_single_booking_and_refusal_of_a_series() -> None:
    booking = meeting(buffers=Buffers())
    body = zenspace.to_json(booking, unlock_key="0042")
    assert body["meeting_space_id"] == "callisto"
    assert body["start_datetime"] == "2024-12-08T09:00:00+00:00"
    assert body["unlock_key"] == "0042"
    assert "unlock_key" not in zenspace.to_json(booking)
    series = booking.evolve(recurrence=Recurrence(rrule="FREQ=DAILY;COUNT=2"))
    with pytest.raises(UnsupportedRecurrence):
        zenspace.to_json(series)


# ------------------------------------------------------------------ reading


def test_seed_body_reads_as_one_booking() -> None:
    [booking] = zenspace.from_json(seed(), provider="pods", timezone="America/Los_Angeles")
    assert booking.booking_key == BookingKey("pods", "f45th-7tghu76-t5464yrt")
    assert booking.resource == POD
    assert booking.start == datetime(2024, 12, 8, 11, 16, tzinfo=UTC)
    assert booking.end == datetime(2024, 12, 8, 11, 20, tzinfo=UTC)
    assert booking.timezone == "America/Los_Angeles"
    assert booking.status is BookingStatus.CONFIRMED
    assert booking.organizer == Person("du@example.com", "Du kar", "12345678901")
    assert booking.attendees == (Person("du@mail.com", "Du kar", "0987654321"),)
    assert "1111" not in repr(booking)  # the door code is not carried


def test_without_a_zone_the_offsets_are_kept_as_utc_instants() -> None:
    [booking] = zenspace.from_json(seed())
    assert booking.timezone == "UTC"
    assert booking.start == datetime(2024, 12, 8, 11, 16, tzinfo=UTC)


def test_key_falls_back_to_id_and_inactive_is_cancelled() -> None:
    data = {**seed(), "external_id": None, "is_active": False}
    [booking] = zenspace.from_json(data)
    assert booking.key == "1df0af31-00dc-48ed-a1a3-faf951414e4d"
    assert booking.status is BookingStatus.CANCELLED


@pytest.mark.parametrize(
    ("change", "error", "field"),
    [
        ({"start_datetime": "2024-12-08T03:16:00"}, InvalidValue, "start_datetime"),
        ({"start_datetime": "2024-12-08T03:16:00-25:00"}, InvalidValue, "start_datetime"),
        ({"end_datetime": "2024-12-08T03:16:00-08:00"}, InvalidValue, "end_datetime"),
        ({"end_datetime": "2024-12-08T04:16:00-07:00"}, InvalidValue, "end_datetime"),
        ({"end_datetime": None}, MissingField, "end_datetime"),
        ({"unlock_key": "open-sesame"}, InvalidValue, "unlock_key"),
        ({"unlock_key": 1111}, InvalidValue, "unlock_key"),
        ({"meeting_space_id": None}, MissingField, "meeting_space_id"),
        ({"is_active": "no"}, InvalidValue, "is_active"),
        ({"attendees": [{"email": 5}]}, InvalidValue, "attendees[0].email"),
        ({"attendees": "du@mail.com"}, InvalidValue, "attendees"),
    ],
)
def test_bad_body_names_booking_and_field(
    change: dict[str, Any], error: type[MappingError], field: str
) -> None:
    with pytest.raises(error) as caught:
        zenspace.from_json({**seed(), **change})
    assert caught.value.field == field
    assert caught.value.booking == "f45th-7tghu76-t5464yrt"
    assert "open-sesame" not in str(caught.value)


def test_unidentified_or_non_object_bodies_are_refused() -> None:
    with pytest.raises(MissingField):
        zenspace.from_json({**seed(), "external_id": None, "id": None})
    with pytest.raises(MalformedInput):
        zenspace.from_json(["not", "a", "body"])


# ------------------------------------------------------------------ properties

ZONES = st.sampled_from(
    ("America/Los_Angeles", "Europe/London", "Australia/Sydney", "Asia/Kolkata")
)
PEOPLE = st.builds(
    Person,
    email=st.sampled_from((None, "a@example.org")),
    name=st.sampled_from((None, "Zoë", "Du kar")),
    phone=st.sampled_from((None, "0987654321")),
).filter(lambda p: bool(p.email or p.name or p.phone))


@st.composite
def single_bookings(draw: st.DrawFn) -> Booking:
    zone = draw(ZONES)
    start = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=draw(st.integers(0, 1_000_000)))
    return Booking(
        provider="pods",
        key=draw(st.sampled_from(("abc", "287977693", "a/b"))),
        resource=POD,
        start=start.astimezone(ZoneInfo(zone)),
        end=start + timedelta(minutes=draw(st.integers(1, 600))),
        timezone=zone,
        status=draw(st.sampled_from((BookingStatus.CONFIRMED, BookingStatus.CANCELLED))),
        organizer=draw(st.none() | PEOPLE),
        attendees=tuple(draw(st.lists(PEOPLE, max_size=3))),
    )


@settings(max_examples=150, deadline=None)
@given(single_bookings(), ZONES)
def test_property_round_trip_booking_body_booking(booking: Booking, pod_zone: str) -> None:
    body = zenspace.to_json(booking, unlock_key="2468", pod_zone=pod_zone)
    assert zenspace.from_json(body, provider="pods", timezone=booking.timezone) == [booking]


@settings(max_examples=100, deadline=None)
@given(single_bookings(), ZONES, st.integers(0, 180), st.sampled_from(("DAILY", "WEEKLY")))
def test_property_every_occurrence_maps_to_its_own_pod_booking_blocking_setup_time(
    booking: Booking, pod_zone: str, setup: int, freq: str
) -> None:
    series = booking.evolve(
        buffers=Buffers(before=timedelta(minutes=setup)),
        recurrence=Recurrence(rrule=f"FREQ={freq};COUNT=6"),
    )
    occurrences = expand(series, Window(series.start, series.start + timedelta(days=60)))
    bodies = [
        zenspace.occurrence_to_operation(
            o, series, meeting_space_id=POD, unlock_key="1357", pod_zone=pod_zone
        )
        for o in occurrences
    ]
    assert len({body["id"] for body in bodies}) == len(occurrences) == 6
    for occurrence, body in zip(occurrences, bodies, strict=True):
        [back] = zenspace.from_json(body, provider="pods")
        assert back.start == occurrence.start - timedelta(minutes=setup)
        assert back.end == occurrence.end
        assert back.key == series.key
        assert datetime.fromisoformat(str(body["start_datetime"])).utcoffset() == (
            back.start.astimezone(ZoneInfo(pod_zone)).utcoffset()
        )
