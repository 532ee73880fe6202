"""Prospero Bookings and Events ⇄ canonical bookings: statuses, linked Events, multi-event."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.model import Booking, BookingStatus, Override, Person, Recurrence, Window
from mappings import prospero
from mappings.errors import (
    InvalidValue,
    MalformedInput,
    MappingError,
    MissingField,
    UnknownTimezone,
    UnsupportedRecurrence,
)
from mappings.expansion import live_instants

FIXTURES = Path(__file__).parents[1] / "fixtures" / "prospero"
EVERYTHING = Window(datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
APPROVED = "0c6f7e3a-9d3b-11ef-8c4a-0242ac120002"
PENDING = "1d708f4b-9d3b-11ef-8c4a-0242ac120002"
DENIED = "2e81905c-9d3b-11ef-8c4a-0242ac120002"
MODULE = "7b2e9f10-9d3b-11ef-8c4a-0242ac120002"


def load(name: str) -> dict[str, Any]:
    data = json.loads((FIXTURES / name).read_text())
    assert isinstance(data, dict)
    return data


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def by_key(data: object, **kwargs: Any) -> dict[str, Booking]:
    return {booking.key: booking for booking in prospero.from_json(data, **kwargs)}


def single(data: object, **kwargs: Any) -> Booking:
    bookings = prospero.from_json(data, **kwargs)
    assert len(bookings) == 1
    return bookings[0]


# ------------------------------------------------------------------ reading


def test_list_response_gives_one_booking_per_entry_with_mapped_statuses() -> None:
    bookings = by_key(load("list-response.json"), provider="venue", timezone="Europe/London")
    assert set(bookings) == {APPROVED, PENDING, DENIED}
    assert bookings[APPROVED].status is BookingStatus.CONFIRMED
    assert bookings[PENDING].status is BookingStatus.TENTATIVE
    assert bookings[PENDING].status.is_live  # a pending request still blocks the room
    assert bookings[DENIED].status is BookingStatus.CANCELLED
    assert all(b.provider == "venue" and b.resource == MODULE for b in bookings.values())
    assert all(b.timezone == "Europe/London" for b in bookings.values())


def test_regression_approved_booking_whose_event_moved_uses_the_linked_event() -> None:
    # The form asked for 20 Nov 18:00; the admin moved the approved Event to 21 Nov 17:00.
    booking = by_key(load("list-response.json"))[APPROVED]
    assert (booking.start, booking.end) == (
        utc("2024-11-21T17:00:00Z"),
        utc("2024-11-21T20:00:00Z"),
    )
    assert booking.title == "Rehearsal"
    assert booking.description == "Main hall, piano"
    assert booking.extra_value("eventId") == "bf62d354-9d3b-11ef-8c4a-0242ac120002"


def test_without_the_linked_event_the_form_answers_give_the_times() -> None:
    data = {k: v for k, v in load("list-response.json").items() if k != "associatedEvents"}
    booking = by_key(data)[APPROVED]
    assert booking.start == utc("2024-11-20T18:00:00Z")
    assert booking.title == "Rehearsal (requested)"


def test_pending_booking_reads_the_contact_and_ids() -> None:
    bookings = by_key(load("list-response.json"))
    assert bookings[PENDING].organizer == Person(email="alan@example.org", name="Alan Turing")
    approved = bookings[APPROVED]
    assert approved.organizer == Person("grace@example.org", "Grace Hopper", "+1 555 0100")
    assert approved.extra_value("customerId") == "9d40b132-9d3b-11ef-8c4a-0242ac120002"
    assert approved.version == "2024-11-02T09:14:00Z"
    assert approved.updated == utc("2024-11-02T09:14:00Z")


def test_single_cancelled_booking_with_embedded_event() -> None:
    booking = single(load("single-booking.json"))
    assert booking.status is BookingStatus.CANCELLED
    assert booking.title == "Board meeting"
    assert booking.timezone == "UTC"
    assert live_instants(booking, EVERYTHING) == []


def test_booking_and_event_response_uses_the_responses_event() -> None:
    raw = load("single-booking.json")
    response = {
        "booking": {**raw, "bookingStatus": 1, "event": {**raw["event"], "id": None}},
        "event": {**raw["event"], "start": "2024-12-04T15:00:00Z", "end": "2024-12-04T16:00:00Z"},
    }
    booking = single(response)
    assert booking.status is BookingStatus.CONFIRMED
    assert booking.start == utc("2024-12-04T15:00:00Z")


@pytest.mark.parametrize(
    ("state", "status"),
    [
        (0, BookingStatus.TENTATIVE),
        ("APPROVED", BookingStatus.CONFIRMED),
        ("denied", BookingStatus.CANCELLED),
        (3, BookingStatus.CANCELLED),
    ],
)
def test_status_from_number_or_name(state: object, status: BookingStatus) -> None:
    assert single({**load("single-booking.json"), "bookingStatus": state}).status is status


def test_multi_event_booking_is_one_booking_whose_occurrences_are_the_events() -> None:
    data = load("multi-event-booking.json")
    data["events"] = list(reversed(data["events"]))  # order in the list does not matter
    booking = single(data, timezone="Europe/Paris")
    assert booking.key == data["id"]
    assert booking.title == "Festival day"
    expected = sorted((utc(e["start"]), utc(e["end"])) for e in data["events"])
    assert live_instants(booking, EVERYTHING) == expected
    recurrence = booking.recurrence
    assert recurrence is not None and recurrence.rrule is None
    assert [r.astimezone(UTC) for r in recurrence.rdates] == [s for s, _ in expected[1:]]
    # Only the closing day differs (shorter, other title): it alone carries an override.
    [override] = recurrence.overrides
    assert override.recurrence_id == utc("2025-03-10T10:00:00Z")
    assert override.title == "Festival closing"
    assert booking.extra_value("eventId") is None


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "moment",
    ["2024-12-03T16:00:00+01:00", "2024-12-03T15:00:00+00:00", "2024-12-03T15:00:00", "soon Z"],
)
def test_non_utc_event_times_are_refused_as_prospero_refuses_them(moment: str) -> None:
    data = load("single-booking.json")
    data["event"] = {**data["event"], "start": moment}
    with pytest.raises(InvalidValue) as caught:
        prospero.from_json(data)
    assert caught.value.field == "event.start"
    assert caught.value.booking == data["id"]


@pytest.mark.parametrize(
    ("change", "error", "field"),
    [
        ({"bookingStatus": None}, MissingField, "bookingStatus"),
        ({"bookingStatus": 7}, InvalidValue, "bookingStatus"),
        ({"bookingStatus": True}, InvalidValue, "bookingStatus"),
        ({"bookingModuleId": None}, MissingField, "bookingModuleId"),
        ({"event": None, "eventId": None}, MissingField, "event"),
        ({"event": {"title": "x", "start": "2024-12-03T15:00:00Z"}}, MissingField, "event.end"),
        (
            {"event": {"start": "2024-12-03T15:00:00Z", "end": "2024-12-03T15:00:00Z"}},
            InvalidValue,
            "event.end",
        ),
        ({"event": {"start": "2024-12-03T15:00:00Z", "end": 5}}, InvalidValue, "event.end"),
        ({"events": []}, InvalidValue, "events"),
        ({"events": ["x"]}, InvalidValue, "events[0]"),
    ],
)
def test_bad_booking_names_booking_and_field(
    change: dict[str, Any], error: type[MappingError], field: str
) -> None:
    data = {**load("single-booking.json"), **change}
    with pytest.raises(error) as caught:
        prospero.from_json(data)
    assert caught.value.field == field
    assert caught.value.booking == data["id"]


def test_two_events_at_one_instant_are_refused() -> None:
    data = load("multi-event-booking.json")
    data["events"] = [data["events"][0], {**data["events"][0], "eventId": "other"}]
    with pytest.raises(InvalidValue) as caught:
        prospero.from_json(data)
    assert caught.value.field == "events"


def test_list_entry_whose_id_disagrees_with_its_key_is_refused() -> None:
    data = load("list-response.json")
    data["bookings"] = {"not-the-id": data["bookings"][APPROVED]}
    with pytest.raises(InvalidValue) as caught:
        prospero.from_json(data)
    assert caught.value.field == "id"


def test_malformed_shapes_and_zones_are_mapping_errors() -> None:
    with pytest.raises(MalformedInput):
        prospero.from_json([])
    with pytest.raises(MalformedInput):
        prospero.from_json({"bookings": []})
    with pytest.raises(MalformedInput):
        prospero.from_json({"bookings": {}, "associatedEvents": {}})
    with pytest.raises(UnknownTimezone):
        prospero.from_json(load("single-booking.json"), timezone="Europe/Atlantis")


# ------------------------------------------------------------------ writing


def test_to_json_is_a_submit_body_with_utc_event() -> None:
    booking = by_key(load("list-response.json"), timezone="America/New_York")[APPROVED]
    assert prospero.to_json(booking) == {
        "submission": False,
        "bookingStatus": 1,
        "bookingModuleId": MODULE,
        "orgId": "5a1d0e2c-9d3b-11ef-8c4a-0242ac120002",
        "portalId": "8c3fa021-9d3b-11ef-8c4a-0242ac120002",
        "customerId": "9d40b132-9d3b-11ef-8c4a-0242ac120002",
        "contactId": "ae51c243-9d3b-11ef-8c4a-0242ac120002",
        "eventId": "bf62d354-9d3b-11ef-8c4a-0242ac120002",
        "contact": {"email": "grace@example.org", "name": "Grace Hopper", "phone": "+1 555 0100"},
        "event": {
            "title": "Rehearsal",
            "start": "2024-11-21T17:00:00Z",
            "end": "2024-11-21T20:00:00Z",
            "description": "Main hall, piano",
        },
    }


def test_to_json_writes_multi_event_bookings_as_events_without_excluded_ones() -> None:
    booking = single(load("multi-event-booking.json"))
    assert booking.recurrence is not None
    second = booking.recurrence.rdates[0]
    shortened = booking.evolve(
        recurrence=Recurrence(
            rdates=booking.recurrence.rdates,
            exdates=(second,),
            overrides=booking.recurrence.overrides,
        )
    )
    events = prospero.to_json(shortened)["events"]
    assert events == [
        {"title": "Festival day", "start": "2025-03-08T09:00:00Z", "end": "2025-03-08T17:00:00Z"},
        {
            "title": "Festival closing",
            "start": "2025-03-10T10:00:00Z",
            "end": "2025-03-10T13:00:00Z",
        },
    ]


def test_to_json_refuses_a_rule_prospero_cannot_hold() -> None:
    booking = single(load("single-booking.json")).evolve(
        recurrence=Recurrence(rrule="FREQ=WEEKLY;COUNT=3")
    )
    with pytest.raises(UnsupportedRecurrence) as caught:
        prospero.to_json(booking)
    assert caught.value.booking == booking.key


def test_cancel_body() -> None:
    assert prospero.cancel_body(prospero.EventProcedure.DELETE) == {
        "eventProcedure": 1,
        "notification": {},
    }
    assert prospero.cancel_body("cancel", {"message": "Sorry"}) == {
        "eventProcedure": 0,
        "notification": {"message": "Sorry"},
    }
    with pytest.raises(InvalidValue) as caught:
        prospero.cancel_body("archive")
    assert caught.value.field == "eventProcedure"


# ------------------------------------------------------------------ properties

NAMES = st.sampled_from(("Ada Lovelace", "Grace Hopper", "Zoë Ångström", None))
EMAILS = st.sampled_from(("a@example.org", "b@example.com", None))


@st.composite
def prospero_bookings(draw: st.DrawFn) -> tuple[dict[str, Any], list[tuple[datetime, datetime]]]:
    """A Prospero Booking with 1-4 whole-second UTC events, and those events' times."""
    base = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=draw(st.integers(0, 700_000)))
    offsets = draw(st.lists(st.integers(0, 60 * 24 * 90), min_size=1, max_size=4, unique=True))
    events = []
    times = []
    for offset in offsets:
        start = base + timedelta(minutes=offset)
        end = start + timedelta(seconds=draw(st.integers(60, 12 * 3600)))
        title = draw(st.sampled_from(("Rehearsal", "Gala", "")))
        event = {
            "title": title,
            "start": f"{start:%Y-%m-%dT%H:%M:%S}Z",
            "end": f"{end:%Y-%m-%dT%H:%M:%S}Z",
        }
        if draw(st.booleans()):
            event["description"] = draw(st.text(min_size=1, max_size=30))
        events.append(event)
        times.append((start, end))
    raw: dict[str, Any] = {
        "id": "40a3b27e-9d3b-11ef-8c4a-0242ac120002",
        "bookingStatus": draw(st.integers(0, 3)),
        "bookingModuleId": MODULE,
        "customerId": draw(st.sampled_from((None, "9d40b132-9d3b-11ef-8c4a-0242ac120002"))),
    }
    contact = {"name": draw(NAMES), "email": draw(EMAILS)}
    raw["contact"] = {k: v for k, v in contact.items() if v}
    if len(events) == 1:
        raw["event"] = events[0]
        raw["eventId"] = draw(st.sampled_from((None, "d184f576-9d3b-11ef-8c4a-0242ac120002")))
    else:
        raw["events"] = events
    return {k: v for k, v in raw.items() if v is not None}, sorted(times)


@settings(max_examples=150, deadline=None)
@given(prospero_bookings(), st.sampled_from(("UTC", "Europe/London", "Australia/Sydney")))
def test_property_occurrences_are_exactly_the_events(
    case: tuple[dict[str, Any], list[tuple[datetime, datetime]]], zone: str
) -> None:
    raw, times = case
    booking = single(raw, timezone=zone)
    expected = times if raw["bookingStatus"] in (0, 1) else []
    assert live_instants(booking, EVERYTHING) == expected


@settings(max_examples=150, deadline=None)
@given(prospero_bookings(), st.sampled_from(("UTC", "America/New_York")))
def test_property_round_trip_booking_body_booking(
    case: tuple[dict[str, Any], list[tuple[datetime, datetime]]], zone: str
) -> None:
    raw, _ = case
    booking = single(raw, timezone=zone)
    body = prospero.to_json(booking)
    # Prospero answers with the Booking it stored: the body plus its id.
    assert single({**body, "id": raw["id"]}, timezone=zone) == booking


def test_round_trip_keeps_an_override_title_on_a_same_length_event() -> None:
    start = datetime(2025, 5, 1, 9, tzinfo=UTC)
    booking = Booking(
        provider=prospero.KIND,
        key="k",
        resource=MODULE,
        start=start,
        end=start + timedelta(hours=2),
        timezone="UTC",
        title="Day one",
        recurrence=Recurrence(
            rdates=(start + timedelta(days=1),),
            overrides=(
                Override(
                    start + timedelta(days=1),
                    start + timedelta(days=1),
                    start + timedelta(days=1, hours=2),
                    title="Day two",
                ),
            ),
        ),
    )
    assert single({**prospero.to_json(booking), "id": "k"}) == booking


def test_regression_equal_length_events_one_spanning_the_dst_change_stay_exact() -> None:
    # Both nights run 3 real hours; the second crosses 01:00 UTC on 31 Mar when London moves
    # to BST. An expander keeps an RDATE's length on the wall clock, so without an override
    # the second night would end an hour early.
    data = {
        "id": "nights",
        "bookingStatus": 1,
        "bookingModuleId": MODULE,
        "events": [
            {
                "title": "Night shoot",
                "start": "2024-03-30T00:30:00Z",
                "end": "2024-03-30T03:30:00Z",
            },
            {
                "title": "Night shoot",
                "start": "2024-03-31T00:30:00Z",
                "end": "2024-03-31T03:30:00Z",
            },
        ],
    }
    booking = single(data, timezone="Europe/London")
    expected = [(utc(e["start"]), utc(e["end"])) for e in data["events"]]
    assert live_instants(booking, EVERYTHING) == expected
    assert (
        single({**prospero.to_json(booking), "id": "nights"}, timezone="Europe/London") == booking
    )
