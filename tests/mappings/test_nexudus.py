"""Nexudus admin records and portal items ⇄ bookings: seeds, series, DST, round trips, bad input."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import pytest
import recurring_ical_events
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.model import Booking, BookingStatus, Person, Window
from mappings.errors import (
    InvalidValue,
    MalformedInput,
    MappingError,
    MissingField,
    UnknownTimezone,
    UnsupportedRecurrence,
)
from mappings.expansion import expand, live_instants
from mappings.ical import booking_to_objects
from mappings.nexudus import (
    KIND,
    booking_to_create_bodies,
    booking_to_update_body,
    expressible_repeat,
    from_json,
    record_to_booking,
    records_to_bookings,
    to_json,
)
from tests.mappings.strategies import (
    Directory,
    GeneratedSeries,
    local_text,
    materialise,
    nexudus_series,
    utc_text,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "nexudus"
LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
SYDNEY = ZoneInfo("Australia/Sydney")
INTERNAL = "INTERNAL: do not show"
EVERYTHING = Window(datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))

Record = dict[str, Any]


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def members_of(records: list[Record]) -> list[tuple[datetime, datetime]]:
    """What Nexudus holds: each record's (FromTime, ToTime) as UTC instants, sorted."""
    return sorted(
        (datetime.fromisoformat(r["FromTime"]), datetime.fromisoformat(r["ToTime"]))
        for r in records
    )


def rendered(booking: Booking, window: Window) -> list[tuple[datetime, datetime, str, str]]:
    """(start, end, STATUS, DESCRIPTION) of the booking's VEVENTs as a calendar app expands them."""
    found = []
    for calendar_object in booking_to_objects(booking):
        calendar = icalendar.Calendar.from_ical(calendar_object.ics)
        for event in recurring_ical_events.of(calendar).between(window.start, window.end):
            found.append(
                (
                    event["DTSTART"].dt.astimezone(UTC),
                    event["DTEND"].dt.astimezone(UTC),
                    str(event.get("STATUS", "CONFIRMED")),
                    str(event.get("DESCRIPTION", "")),
                )
            )
    return sorted(found)


def expected_events(records: list[Record]) -> list[tuple[datetime, datetime, str, str]]:
    return sorted(
        (
            datetime.fromisoformat(r["FromTime"]),
            datetime.fromisoformat(r["ToTime"]),
            "TENTATIVE" if r["Tentative"] else "CONFIRMED",
            r["Notes"] or "",
        )
        for r in records
    )


def weekly_series(
    first: datetime,
    weeks: int,
    *,
    zone: ZoneInfo = LONDON,
    repeats: int = 2,
    until: date | None = None,
) -> list[Record]:
    """A freshly materialised series of ``weeks`` weekly members (or another cycle)."""
    start = first.astimezone(UTC)
    last_day = until or (first + timedelta(weeks=weeks - 1)).date()
    body = {
        "ResourceId": 287977693,
        "CoworkerId": 7,
        "FromTime": utc_text(start),
        "ToTime": utc_text(start + timedelta(hours=1)),
        "Notes": "Weekly planning",
        "RepeatBooking": True,
        "Repeats": repeats,
        "RepeatEvery": 1,
        "RepeatUntil": f"{last_day.isoformat()}T00:00:00Z",
    }
    return materialise(body, zone, Directory())


def move(record: Record, start: datetime, minutes: int = 60) -> None:
    end = start + timedelta(minutes=minutes)
    zone = start.tzinfo
    assert isinstance(zone, ZoneInfo)
    record.update(
        FromTime=utc_text(start),
        ToTime=utc_text(end),
        FromTimeLocal=local_text(start, zone),
        ToTimeLocal=local_text(end, zone),
    )


def one(records: list[Record], zone: str = "Europe/London") -> Booking:
    [booking] = from_json(records, timezone=zone)
    return booking


# --- seeds: portal items and the get-one envelope -------------------------------------------


def test_portal_items_with_ignore_timezone_are_local_wall_clock_in_the_room_zone():
    items = fixture("portal-fullcalendar-bookings.json")

    new_york = from_json(items, timezone="America/New_York")
    london = from_json(items, timezone="Europe/London")

    # "2019-02-01T00:00Z" is midnight in the room, not midnight UTC.
    assert new_york[0].start == datetime(2019, 2, 1, 0, 0, tzinfo=NEW_YORK)
    assert new_york[0].start.astimezone(UTC) == datetime(2019, 2, 1, 5, 0, tzinfo=UTC)
    assert london[0].start.astimezone(UTC) == datetime(2019, 2, 1, 0, 0, tzinfo=UTC)
    assert [b.end - b.start for b in new_york] == [
        timedelta(hours=1),
        timedelta(minutes=75),
        timedelta(minutes=75),
        timedelta(hours=1),
        timedelta(hours=1),
    ]


def test_portal_items_map_booker_room_notes_and_privacy():
    items = fixture("portal-fullcalendar-bookings.json")

    bookings = from_json(items, timezone="Europe/London")

    assert [b.key for b in bookings] == [str(item["id"]) for item in items]
    assert [b.resource for b in bookings] == [str(item["resourceId"]) for item in items]
    first, last = bookings[0], bookings[-1]
    assert first.title == "David Hoch"
    assert first.organizer == Person(email="david@example.net", name="David Hoch")
    assert first.private is True and last.private is False
    assert last.description == "Amalthea Meeting Room"
    assert first.extra_value("CoworkerId") == "289024940"
    assert first.extra_value("ResourceName") == "Callisto Meeting Room"
    assert all(b.provider == KIND and b.status is BookingStatus.CONFIRMED for b in bookings)


def test_portal_items_without_a_timezone_are_wall_clock_utc():
    [booking] = from_json(fixture("portal-fullcalendar-bookings.json")[1])
    assert booking.timezone == "UTC"
    assert booking.start == datetime(2019, 2, 1, 17, 0, tzinfo=UTC)


def test_portal_item_without_ignore_timezone_is_a_utc_instant():
    item = fixture("portal-fullcalendar-bookings.json")[0] | {"ignoreTimezone": False}
    [booking] = from_json(item, timezone="America/New_York")
    assert booking.start.astimezone(UTC) == datetime(2019, 2, 1, 0, 0, tzinfo=UTC)


def test_get_one_envelope_reads_the_admin_shaped_value_as_utc():
    envelope = fixture("portal-get-one.json")

    [booking] = from_json(envelope, timezone="Europe/London")

    assert booking.key == "1040617591"
    assert booking.resource == "287977694"
    assert booking.start.astimezone(UTC) == datetime(2019, 5, 28, 12, 30, tzinfo=UTC)
    assert booking.end.astimezone(UTC) == datetime(2019, 5, 28, 14, 0, tzinfo=UTC)
    assert booking.title == "David Hoch"
    assert booking.description == ""
    assert booking.version == "2019-05-27T19:23:04Z"
    assert booking.updated == datetime(2019, 5, 27, 19, 23, 4, tzinfo=UTC)
    assert booking.recurrence is None
    assert dict(booking.extra) == {
        "CoworkerId": "289024940",
        "ResourceName": "Amalthea Meeting Room",
        "UniqueId": "256f955d-1676-4cb4-8c1f-f21c9669f28b",
    }


def test_get_one_envelope_takes_the_room_name_from_resource_when_value_lacks_it():
    envelope = fixture("portal-get-one.json")
    envelope["Value"] |= {"ResourceName": None, "CoworkerFullName": None}
    [booking] = from_json(envelope)
    assert booking.title == "Amalthea Meeting Room"
    assert booking.organizer is None


def test_the_seed_create_example_is_refused_because_it_ends_when_it_starts():
    with pytest.raises(InvalidValue) as caught:
        from_json(fixture("admin-create-body-example.json"))
    assert caught.value.field == "ToTime"


# --- admin singles ----------------------------------------------------------------------------


def test_single_admin_record_maps_status_notes_visitors_and_keeps_ids_in_extra():
    record = fixture("admin-single-record.json")

    booking = record_to_booking(record, timezone="Europe/London")

    assert booking.key == "1040617600"
    assert booking.status is BookingStatus.TENTATIVE
    assert booking.title == "Ada Lovelace"
    assert booking.description == "Board meeting\nBring the quarterly figures"
    assert booking.attendees == (Person(email="grace@example.net", name="Grace Hopper"),)
    # Crosses the October change: 00:30 BST to 01:45 BST (the first 01:45).
    assert booking.start.astimezone(UTC) == datetime(2025, 10, 25, 23, 30, tzinfo=UTC)
    assert booking.end - booking.start == timedelta(minutes=75)
    assert dict(booking.extra)["FloorPlanDeskId"] == "55"
    assert dict(booking.extra)["CoworkerId"] == "7"


def test_internal_notes_never_reach_the_booking_its_calendar_or_its_create_body():
    record = fixture("admin-single-record.json")
    series = fixture("admin-series-weekly-london.json")

    bookings = [record_to_booking(record), *from_json(series, timezone="Europe/London")]

    for booking in bookings:
        assert "INTERNAL" not in repr(booking)
        assert all(b"INTERNAL" not in o.ics for o in booking_to_objects(booking))
        assert "INTERNAL" not in json.dumps(to_json(booking, window=EVERYTHING))


def test_records_envelope_and_arrays_are_accepted():
    record = fixture("admin-single-record.json")
    assert [b.key for b in from_json({"Records": [record], "TotalItems": 1})] == ["1040617600"]
    assert [b.key for b in records_to_bookings([record, record | {"Id": 9}])] == ["1040617600", "9"]


# --- series: the fixture ----------------------------------------------------------------------


def test_series_fixture_becomes_one_booking_keyed_by_its_series_id():
    records = fixture("admin-series-weekly-london.json")

    booking = one(records)

    assert booking.key == records[0]["RepeatSeriesUniqueId"]
    assert booking.start == datetime(2025, 3, 4, 9, tzinfo=LONDON)
    assert booking.recurrence is not None
    assert booking.recurrence.rrule == "FREQ=WEEKLY;BYDAY=TU;UNTIL=20250429T080000Z"
    assert booking.recurrence.exdates == (datetime(2025, 3, 18, 9, tzinfo=LONDON),)
    assert booking.recurrence.rdates == ()
    assert live_instants(booking, EVERYTHING) == members_of(records)


def test_weekly_london_series_stays_0900_local_across_the_march_change():
    booking = one(fixture("admin-series-weekly-london.json"))

    unmoved = [o for o in expand(booking, EVERYTHING) if o.start == o.recurrence_id]

    assert {o.start.astimezone(LONDON).hour for o in unmoved} == {9}
    assert {o.start.astimezone(UTC).hour for o in unmoved} == {8, 9}


def test_member_moved_to_another_day_becomes_an_override_of_its_own_week():
    booking = one(fixture("admin-series-weekly-london.json"))

    assert booking.recurrence is not None
    moved = [o for o in booking.recurrence.overrides if o.start != o.recurrence_id]
    assert len(moved) == 1
    assert moved[0].recurrence_id == datetime(2025, 4, 8, 9, tzinfo=LONDON)
    assert (moved[0].start, moved[0].end) == (
        datetime(2025, 4, 9, 10, tzinfo=LONDON),
        datetime(2025, 4, 9, 11, 30, tzinfo=LONDON),
    )


def test_mixed_tentative_members_carry_their_status_in_overrides():
    booking = one(fixture("admin-series-weekly-london.json"))

    assert booking.status is BookingStatus.CONFIRMED
    statuses = {o.start: o.status for o in expand(booking, EVERYTHING)}
    assert statuses[datetime(2025, 4, 29, 9, tzinfo=LONDON)] is BookingStatus.TENTATIVE
    assert sum(s is BookingStatus.TENTATIVE for s in statuses.values()) == 1


def test_all_tentative_members_make_a_tentative_booking_without_overrides():
    records = weekly_series(datetime(2025, 5, 6, 9, tzinfo=LONDON), 5)
    for record in records:
        record["Tentative"] = True

    booking = one(records)

    assert booking.status is BookingStatus.TENTATIVE
    assert booking.recurrence is not None and booking.recurrence.overrides == ()


def test_series_version_changes_when_a_member_is_deleted():
    records = weekly_series(datetime(2025, 5, 6, 9, tzinfo=LONDON), 5)
    assert one(records).version != one(records[:-1]).version


# --- series: named regressions -----------------------------------------------------------------


def test_last_of_month_series_lands_on_the_fifth_monday_of_a_five_week_month():
    records = weekly_series(
        datetime(2025, 1, 27, 10, tzinfo=LONDON), 0, repeats=8, until=date(2025, 4, 30)
    )

    booking = one(records)

    assert booking.recurrence is not None
    assert booking.recurrence.rrule == "FREQ=MONTHLY;BYDAY=-1MO;UNTIL=20250428T090000Z"
    assert datetime(2025, 3, 31, 9, tzinfo=UTC) in [
        s for s, _ in live_instants(booking, EVERYTHING)
    ]
    assert live_instants(booking, EVERYTHING) == members_of(records)


def test_fourth_of_month_series_differs_from_last_of_month_in_a_five_week_month():
    records = weekly_series(
        datetime(2025, 1, 27, 10, tzinfo=LONDON), 0, repeats=9, until=date(2025, 4, 30)
    )

    booking = one(records)

    assert booking.recurrence is not None
    assert booking.recurrence.rrule == "FREQ=MONTHLY;BYDAY=4MO;UNTIL=20250428T090000Z"
    march = [s for s, _ in live_instants(booking, EVERYTHING) if s.month == 3]
    assert march == [datetime(2025, 3, 24, 10, tzinfo=UTC)]


def test_repeat_until_on_the_last_members_day_keeps_that_member_without_exceptions():
    records = weekly_series(datetime(2025, 9, 2, 18, 30, tzinfo=SYDNEY), 6, zone=SYDNEY)
    assert records[-1]["RepeatUntil"].startswith(records[-1]["FromTimeLocal"][:10])

    booking = one(records, "Australia/Sydney")

    assert booking.recurrence is not None
    last = datetime.fromisoformat(records[-1]["FromTime"])
    assert booking.recurrence.rrule == f"FREQ=WEEKLY;BYDAY=TU;UNTIL={last:%Y%m%dT%H%M%SZ}"
    assert (booking.recurrence.exdates, booking.recurrence.overrides) == ((), ())


def test_deleted_first_member_keeps_the_repeat_rule_from_the_second():
    records = weekly_series(datetime(2025, 3, 4, 9, tzinfo=LONDON), 6)[1:]

    booking = one(records)

    assert booking.start == datetime(2025, 3, 11, 9, tzinfo=LONDON)
    assert booking.recurrence is not None
    assert booking.recurrence.rrule == "FREQ=WEEKLY;BYDAY=TU;UNTIL=20250408T080000Z"
    assert booking.recurrence.exdates == booking.recurrence.rdates == ()


def test_first_member_moved_to_another_day_is_an_override_of_the_rules_first_instant():
    records = weekly_series(datetime(2025, 3, 4, 9, tzinfo=LONDON), 6)
    move(records[0], datetime(2025, 3, 5, 11, tzinfo=LONDON))

    booking = one(records)

    assert booking.start == datetime(2025, 3, 4, 9, tzinfo=LONDON)
    assert booking.recurrence is not None
    [override] = booking.recurrence.overrides
    assert override.recurrence_id == datetime(2025, 3, 4, 9, tzinfo=LONDON)
    assert override.start == datetime(2025, 3, 5, 11, tzinfo=LONDON)
    assert live_instants(booking, EVERYTHING) == members_of(records)


def test_member_with_another_length_is_an_override_with_the_same_start():
    records = weekly_series(datetime(2025, 6, 3, 9, tzinfo=LONDON), 4)
    move(records[2], datetime(2025, 6, 17, 9, tzinfo=LONDON), minutes=150)

    booking = one(records)

    assert booking.recurrence is not None
    [override] = booking.recurrence.overrides
    assert override.start == override.recurrence_id
    assert override.end - override.start == timedelta(minutes=150)


def test_sydney_series_stays_1800_local_through_the_april_and_october_changes():
    records = weekly_series(datetime(2025, 3, 25, 18, tzinfo=SYDNEY), 32, zone=SYDNEY)

    booking = one(records, "Australia/Sydney")

    occurrences = expand(booking, EVERYTHING)
    assert {o.start.astimezone(SYDNEY).hour for o in occurrences} == {18}
    assert {o.start.astimezone(UTC).hour for o in occurrences} == {7, 8}
    assert booking.recurrence is not None and booking.recurrence.exdates == ()
    assert live_instants(booking, EVERYTHING) == members_of(records)


def test_repeat_fields_that_disagree_with_the_members_give_way_to_a_derived_rule():
    records = weekly_series(datetime(2025, 3, 4, 9, tzinfo=LONDON), 8)
    for record in records:
        record["Repeats"] = 1  # says daily; the members are weekly

    booking = one(records)

    assert booking.recurrence is not None
    assert booking.recurrence.rrule == "FREQ=WEEKLY;UNTIL=20250422T080000Z"
    assert booking.recurrence.exdates == ()


def test_series_without_repeat_fields_derives_its_rule_from_the_members():
    records = weekly_series(datetime(2025, 3, 4, 9, tzinfo=LONDON), 8)
    for record in records:
        record.update(RepeatBooking=False, Repeats=0, RepeatUntil=None, RepeatOnTuesdays=False)
    del records[4]

    booking = one(records)

    assert booking.recurrence is not None
    assert booking.recurrence.rrule == "FREQ=WEEKLY;UNTIL=20250422T080000Z"
    assert booking.recurrence.exdates == (datetime(2025, 4, 1, 9, tzinfo=LONDON),)


def test_series_read_without_a_timezone_is_exact_in_utc():
    records = weekly_series(datetime(2025, 3, 4, 9, tzinfo=LONDON), 8)

    [booking] = from_json(records)

    assert booking.timezone == "UTC"
    assert live_instants(booking, EVERYTHING) == members_of(records)


def test_a_lone_series_member_keeps_the_series_key_and_is_not_recurring():
    [record] = weekly_series(datetime(2025, 3, 4, 9, tzinfo=LONDON), 1)

    booking = record_to_booking(record, timezone="Europe/London")

    assert booking.key == record["RepeatSeriesUniqueId"]
    assert booking.recurrence is None


# --- series: properties ------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(nexudus_series())
def test_series_expand_to_exactly_their_members_in_the_model_and_in_a_calendar(
    series: GeneratedSeries,
):
    [booking] = from_json(series.records, timezone=series.zone)

    assert booking.key == series.records[0]["RepeatSeriesUniqueId"]
    assert live_instants(booking, series.window) == series.members
    assert rendered(booking, series.window) == expected_events(series.records)


def create_and_read_back(booking: Booking, zone: str) -> list[Booking]:
    """Send the create bodies to an emulated Nexudus and read back what it stored."""
    json_body = to_json(booking, window=EVERYTHING)
    bodies = json_body if isinstance(json_body, list) else [json_body]
    directory = Directory()
    records = [record for body in bodies for record in materialise(body, ZoneInfo(zone), directory)]
    return from_json(records, timezone=zone)


@settings(max_examples=100, deadline=None)
@given(st.booleans().flatmap(lambda edited: nexudus_series(edited=edited)))
def test_series_survive_a_round_trip_through_create_bodies(series: GeneratedSeries):
    [booking] = from_json(series.records, timezone=series.zone)

    again = create_and_read_back(booking, series.zone)

    assert sorted(e for b in again for e in rendered(b, series.window)) == rendered(
        booking, series.window
    )
    repeat = expressible_repeat(booking)
    if repeat is not None:
        # One repeat body: Nexudus holds the same repeat fields and the same first booking.
        [copy] = again
        assert expressible_repeat(copy) == repeat
        assert (copy.start, copy.end, copy.status) == (booking.start, booking.end, booking.status)
    assert {(b.resource, b.title, b.organizer) for b in again} == {
        (booking.resource, booking.title, booking.organizer)
    }


def test_a_clean_series_is_created_with_one_repeat_body():
    booking = one(weekly_series(datetime(2025, 3, 4, 9, tzinfo=LONDON), 8))

    body = to_json(booking)

    assert isinstance(body, dict)
    assert body["RepeatBooking"] is True
    assert (body["Repeats"], body["RepeatEvery"], body["RepeatOnTuesdays"]) == (2, 1, True)
    assert body["RepeatUntil"] == "2025-04-22T09:00:00"
    assert (body["FromTime"], body["ToTime"]) == ("2025-03-04T09:00:00Z", "2025-03-04T10:00:00Z")
    assert (body["ResourceId"], body["CoworkerId"]) == (287977693, 7)


def test_a_series_with_exceptions_needs_a_window_to_be_created_one_by_one():
    booking = one(fixture("admin-series-weekly-london.json"))

    with pytest.raises(UnsupportedRecurrence) as caught:
        booking_to_create_bodies(booking)
    bodies = booking_to_create_bodies(
        booking, Window(EVERYTHING.start, datetime(2025, 4, 1, tzinfo=UTC))
    )

    assert caught.value.booking == booking.key
    assert [b["FromTime"] for b in bodies] == [
        "2025-03-04T09:00:00Z",
        "2025-03-11T09:00:00Z",
        "2025-03-25T09:00:00Z",
    ]
    assert all("RepeatBooking" not in b for b in bodies)


def test_single_record_round_trips_through_its_create_body():
    booking = record_to_booking(fixture("admin-single-record.json"), timezone="Europe/London")

    [copy] = create_and_read_back(booking, "Europe/London")

    def held(b: Booking) -> tuple[object, ...]:
        extra = {k: v for k, v in b.extra if k != "UniqueId"}
        return (
            b.resource,
            b.start,
            b.end,
            b.status,
            b.title,
            b.description,
            b.organizer,
            b.attendees,
            b.timezone,
            extra,
        )

    assert held(copy) == held(booking)


def test_update_body_carries_id_times_and_which_bookings():
    booking = record_to_booking(fixture("admin-single-record.json"))

    body = booking_to_update_body(
        booking.evolve(start=booking.start + timedelta(hours=1)), 1040617600, 1
    )

    assert body["Id"] == 1040617600
    assert body["WhichBookingsToUpdate"] == 1
    assert body["Repeats"] == 0
    assert body["FromTime"] == "2025-10-26T00:30:00Z"
    with pytest.raises(InvalidValue) as caught:
        booking_to_update_body(booking, 1040617600, 5)
    assert caught.value.field == "WhichBookingsToUpdate"


def test_a_cancelled_booking_has_nothing_to_create():
    booking = record_to_booking(fixture("admin-single-record.json"))
    assert booking_to_create_bodies(booking.evolve(status=BookingStatus.CANCELLED)) == []


# --- bad input ---------------------------------------------------------------------------------


def single() -> Record:
    return fixture("admin-single-record.json")


BAD_RECORDS: list[tuple[str, Callable[[Record], object], type[MappingError], str]] = [
    ("missing ResourceId", lambda r: r.pop("ResourceId"), MissingField, "ResourceId"),
    ("null FromTime", lambda r: r.update(FromTime=None), MissingField, "FromTime"),
    ("missing ToTime", lambda r: r.pop("ToTime"), MissingField, "ToTime"),
    (
        "ends before it starts",
        lambda r: r.update(ToTime="2025-10-25T22:00:00Z"),
        InvalidValue,
        "ToTime",
    ),
    ("Repeats too big", lambda r: r.update(Repeats=10), InvalidValue, "Repeats"),
    ("Repeats negative", lambda r: r.update(Repeats=-1), InvalidValue, "Repeats"),
    ("RepeatEvery negative", lambda r: r.update(RepeatEvery=-2), InvalidValue, "RepeatEvery"),
    ("bad FromTime", lambda r: r.update(FromTime="next tuesday"), InvalidValue, "FromTime"),
    ("numeric FromTime", lambda r: r.update(FromTime=1735689600), InvalidValue, "FromTime"),
    ("bad RepeatUntil", lambda r: r.update(RepeatUntil="someday"), InvalidValue, "RepeatUntil"),
    ("text ResourceId", lambda r: r.update(ResourceId="room"), InvalidValue, "ResourceId"),
    ("boolean ResourceId", lambda r: r.update(ResourceId=True), InvalidValue, "ResourceId"),
    ("text Tentative", lambda r: r.update(Tentative="yes"), InvalidValue, "Tentative"),
    (
        "visitors not a list",
        lambda r: r.update(BookingVisitors="Grace"),
        InvalidValue,
        "BookingVisitors",
    ),
    (
        "local time disagrees",
        lambda r: r.update(FromTimeLocal="2025-10-26T05:30:00"),
        InvalidValue,
        "FromTimeLocal",
    ),
]


@pytest.mark.parametrize(
    ("change", "error", "field"),
    [case[1:] for case in BAD_RECORDS],
    ids=[case[0] for case in BAD_RECORDS],
)
def test_bad_records_name_the_booking_and_the_field(
    change: Callable[[Record], object], error: type[MappingError], field: str
):
    record = single()
    change(record)

    with pytest.raises(error) as caught:
        from_json(record, timezone="Europe/London")

    assert type(caught.value) is error
    assert (caught.value.booking, caught.value.field) == ("1040617600", field)


def test_a_record_known_only_by_unique_id_is_named_by_it():
    record = single()
    del record["Id"]
    record["ToTime"] = record["FromTime"]
    with pytest.raises(InvalidValue) as caught:
        from_json(record)
    assert caught.value.booking == record["UniqueId"]


def test_a_single_record_without_any_id_cannot_be_keyed():
    record = single()
    del record["Id"], record["UniqueId"]
    with pytest.raises(MissingField) as caught:
        from_json(record)
    assert caught.value.field == "Id"


@pytest.mark.parametrize("data", [42, "booking", None, [1], [[]], {"Value": None}])
def test_json_of_the_wrong_shape_is_malformed_input(data: object):
    with pytest.raises(MalformedInput):
        from_json(data)


def test_an_unknown_room_zone_is_named():
    with pytest.raises(UnknownTimezone) as caught:
        from_json(single(), timezone="Mars/Olympus_Mons")
    assert caught.value.field == "timezone"


def test_a_wrong_room_zone_shows_up_as_a_local_time_mismatch():
    with pytest.raises(InvalidValue) as caught:
        from_json(fixture("admin-series-weekly-london.json"), timezone="America/New_York")
    assert caught.value.field == "FromTimeLocal"


def test_series_members_on_different_resources_are_inconsistent():
    records = weekly_series(datetime(2025, 3, 4, 9, tzinfo=LONDON), 3)
    records[1]["ResourceId"] = 1
    with pytest.raises(InvalidValue) as caught:
        from_json(records, timezone="Europe/London")
    assert (caught.value.booking, caught.value.field) == (
        records[0]["RepeatSeriesUniqueId"],
        "ResourceId",
    )


def test_series_members_starting_together_are_inconsistent():
    records = weekly_series(datetime(2025, 3, 4, 9, tzinfo=LONDON), 3)
    records.append(records[1] | {"Id": 5})
    with pytest.raises(InvalidValue) as caught:
        from_json(records, timezone="Europe/London")
    assert (caught.value.booking, caught.value.field) == (
        records[0]["RepeatSeriesUniqueId"],
        "FromTime",
    )


def test_a_resource_that_is_not_a_nexudus_id_cannot_be_sent():
    booking = record_to_booking(single()).evolve(resource="callisto")
    with pytest.raises(InvalidValue) as caught:
        to_json(booking)
    assert caught.value.field == "ResourceId"


JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.text(max_size=12)
    | st.sampled_from(["2025-01-01T10:00:00Z", "2025-01-01T09:00:00Z", "2025-13-01", "x", "1"])
)
FIELD_NAMES = st.sampled_from(
    [
        "Id",
        "UniqueId",
        "ResourceId",
        "FromTime",
        "ToTime",
        "Tentative",
        "Repeats",
        "RepeatEvery",
        "RepeatUntil",
        "RepeatBooking",
        "RepeatSeriesUniqueId",
        "BookingVisitors",
        "Notes",
        "CoworkerFullName",
        "FromTimeLocal",
        "Value",
        "Records",
        "resourceId",
        "start",
        "end",
        "ignoreTimezone",
        "UpdatedOn",
        "RepeatOnMondays",
    ]
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(FIELD_NAMES, inner, max_size=6),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(JSON_VALUES)
def test_any_json_either_maps_or_raises_a_mapping_error(data: object):
    with contextlib.suppress(MappingError):
        from_json(data, timezone="Europe/London")


def test_regression_portal_item_awaiting_approval_is_tentative() -> None:
    item = {
        "id": 1040617591,
        "resourceId": 287977693,
        "start": "2026-05-04T09:00Z",
        "end": "2026-05-04T10:00Z",
        "ignoreTimezone": True,
        "tentative": True,
    }
    [booking] = from_json(item, timezone="Europe/London")
    assert booking.status is BookingStatus.TENTATIVE
    [confirmed] = from_json({**item, "tentative": False}, timezone="Europe/London")
    assert confirmed.status is BookingStatus.CONFIRMED
