"""OfficeRnD booking objects ⇄ canonical bookings: shapes, recurrence, exceptions, round trips."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import recurring_ical_events
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from ical.calendar_stream import IcsCalendarStream
from icalendar import Calendar, Event, vRecur

from bridge.model import Booking, BookingStatus, BufferMode, Buffers, Recurrence, Window
from mappings import officernd
from mappings.errors import InvalidValue, MappingError, MissingField, UnknownTimezone
from mappings.expansion import expand, live_instants

FIXTURES = Path(__file__).parents[1] / "fixtures" / "officernd"
SEEDS = Path(__file__).parents[1] / "fixtures" / "seeds"
EVERYTHING = Window(datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))

Instants = list[tuple[datetime, datetime]]


def load(name: str) -> dict[str, Any]:
    data = json.loads((FIXTURES / name).read_text())
    assert isinstance(data, dict)
    return data


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


# ------------------------------------------------------------------ independent iCalendar check


def render_ics(booking: Booking) -> bytes:
    """The booking as a VEVENT set, written with icalendar independently of mappings.ical."""
    zone = booking.zone
    calendar = Calendar()
    calendar.add("prodid", "-//roombridge tests//EN")
    calendar.add("version", "2.0")
    stamp = datetime(2024, 1, 1, tzinfo=UTC)
    master = Event()
    master.add("uid", booking.key)
    master.add("dtstamp", stamp)
    master.add("dtstart", booking.start.astimezone(zone))
    master.add("dtend", booking.end.astimezone(zone))
    recurrence = booking.recurrence
    if recurrence is not None:
        if recurrence.rrule:
            master.add("rrule", vRecur.from_ical(recurrence.rrule))
        for rdate in recurrence.rdates:
            master.add("rdate", rdate.astimezone(zone))
        for exdate in recurrence.exdates:
            master.add("exdate", exdate.astimezone(zone))
    calendar.add_component(master)
    for override in recurrence.overrides if recurrence else ():
        moved = Event()
        moved.add("uid", booking.key)
        moved.add("dtstamp", stamp)
        moved.add("recurrence-id", override.recurrence_id.astimezone(zone))
        moved.add("dtstart", override.start.astimezone(zone))
        moved.add("dtend", override.end.astimezone(zone))
        calendar.add_component(moved)
    calendar.add_missing_timezones()
    return calendar.to_ical()


def ics_live_instants(ics: bytes, window: Window = EVERYTHING) -> Instants:
    """Live (start, end) UTC pairs of an iCalendar text, expanded by recurring-ical-events."""
    events = recurring_ical_events.of(Calendar.from_ical(ics)).between(window.start, window.end)
    return sorted(
        (event["DTSTART"].dt.astimezone(UTC), event["DTEND"].dt.astimezone(UTC))
        for event in events
        if str(event.get("STATUS", "")).upper() != "CANCELLED"
    )


def ical_live_instants(ics: bytes, window: Window = EVERYTHING) -> Instants:
    """The same, expanded by the ``ical`` library: the oracle where recurring-ical-events errs."""
    calendar = IcsCalendarStream.calendar_from_ics(ics.decode())
    return sorted(
        (event.dtstart.astimezone(UTC), event.dtend.astimezone(UTC))
        for event in calendar.timeline.overlapping(window.start, window.end)
        if str(event.status or "").upper() != "CANCELLED"
    )


def rie_would_confuse_ids(booking: Booking) -> bool:
    """Whether recurring-ical-events 3.x could pair an exception with the wrong instance.

    It matches a RECURRENCE-ID or EXDATE by its UTC wall time *or* its local wall time
    (``recurring_ical_events.util.to_recurrence_ids``, lenient on purpose, upstream issue
    #36), so an exception whose UTC time reads like another instance's local time hits both.
    """
    recurrence = booking.recurrence
    if recurrence is None:
        return False
    bare = booking.evolve(recurrence=Recurrence(rrule=recurrence.rrule, rdates=recurrence.rdates))
    instants = {o.recurrence_id for o in expand(bare, EVERYTHING) if o.recurrence_id}
    exceptions = {o.recurrence_id for o in recurrence.overrides} | set(recurrence.exdates)

    def walls(instant: datetime) -> set[object]:
        return {
            instant.astimezone(UTC).replace(tzinfo=None),
            instant.astimezone(booking.zone).replace(tzinfo=None),
        }

    # Either reading of an exception may hit either reading of another instance (an RDATE
    # at 07:00 local = 06:00Z is dropped by a RECURRENCE-ID at 06:00 local, for instance).
    return any(walls(i) & walls(e) for i in instants for e in exceptions if i != e)


def rule_instants_via_ics(
    start: datetime, end: datetime, rule: str, window: Window = EVERYTHING
) -> Instants:
    """The test-side expander: the bare rule's instances according to recurring-ical-events."""
    zone = start.tzinfo
    assert isinstance(zone, ZoneInfo)
    bare = Booking("t", "rule", "r", start, end, zone.key)
    return ics_live_instants(render_ics(bare.evolve(recurrence=Recurrence(rrule=rule))), window)


def single(data: object, **kwargs: Any) -> Booking:
    bookings = officernd.from_json(data, **kwargs)
    assert len(bookings) == 1
    return bookings[0]


# ------------------------------------------------------------------ shapes


def test_seed_v1_object_maps_every_field_the_bridge_uses() -> None:
    booking = single(load("v1-booking-object.json"), provider="flex")

    assert booking.booking_key.provider == "flex"
    assert booking.key == "64daff61c1a625f9053d5ece"
    assert booking.resource == "600638f94c6ea94c6dddc709"
    assert booking.timezone == "America/Vancouver"
    assert booking.start == utc("2024-01-13T16:00:00Z")
    assert booking.end == utc("2024-01-14T00:00:00Z")
    assert booking.start.utcoffset() == timedelta(hours=-8)  # held on the room's wall clock
    assert booking.title == "description of the booking"
    # canceled wins over tentative: the room is free again.
    assert booking.status is BookingStatus.CANCELLED
    assert not booking.buffers
    assert booking.recurrence is None
    assert booking.extra_value("company") == "63505d666b5233c8d432f585"
    assert booking.extra_value("member") == "63505d666b52330ae632f58d"
    assert booking.extra_value("free") == "false"
    assert booking.updated == utc("2023-11-16T19:55:31.993Z")


def test_tentative_booking_is_tentative_and_live() -> None:
    data = {**load("v1-booking-object.json"), "canceled": False}
    booking = single(data)
    assert booking.status is BookingStatus.TENTATIVE
    assert booking.status.is_live


def test_v1_and_v2_shapes_of_the_same_booking_map_identically() -> None:
    v1 = load("daily-until-2300z-sydney.json")
    v2 = {
        "_id": v1["_id"],
        "title": v1["summary"],
        "start": v1["start"]["dateTime"],
        "end": v1["end"]["dateTime"],
        "timezone": v1["timezone"],
        "resource": v1["resourceId"],
        "company": v1["team"],
        "recurrence": v1["recurrence"],
        "serviceSlots": v1["serviceSlots"],
        "isCancelled": False,
    }
    assert single(v1) == single(v2)


def test_accepts_a_list_a_v2_page_and_a_webhook_body() -> None:
    one = load("daily-until-2300z-sydney.json")
    other = {**one, "_id": "61e0aa00c1a625f9053d0003"}
    assert [b.key for b in officernd.from_json([one, other])] == [one["_id"], other["_id"]]
    page = {"results": [one, other], "cursorNext": None}
    assert [b.key for b in officernd.from_json(page)] == [one["_id"], other["_id"]]
    hook = {"event": "e1", "eventType": "booking.updated", "data": {"object": one}}
    assert [b.key for b in officernd.from_json(hook)] == [one["_id"]]


def test_service_slots_become_buffers() -> None:
    booking = single(load("v2-weekly-with-occurrences.json"))
    assert booking.buffers == Buffers(timedelta(minutes=15), timedelta(minutes=10))


def test_object_timezone_wins_over_the_parameter_which_wins_over_utc() -> None:
    data = load("daily-until-2300z-sydney.json")
    assert single(data, timezone="Europe/London").timezone == "Australia/Sydney"
    without = {k: v for k, v in data.items() if k != "timezone"}
    assert single(without, timezone="Europe/London").timezone == "Europe/London"
    assert single(without).timezone == "UTC"


def test_populated_member_object_gives_the_organizer() -> None:
    data = {
        **load("v1-booking-object.json"),
        "member": {"_id": "m1", "name": "Ada Lovelace", "email": "ada@example.com"},
    }
    booking = single(data)
    assert booking.organizer is not None
    assert booking.organizer.email == "ada@example.com"
    assert booking.extra_value("member") == "m1"


# ------------------------------------------------------------------ recurrence


def test_regression_until_2300z_in_a_zone_ahead_of_utc_keeps_the_last_local_morning() -> None:
    # 09:00 in Sydney on 18 Jan is 22:00Z on 17 Jan, before UNTIL=20220117T230000Z: it is an
    # instance. Comparing local dates with the UNTIL date would wrongly drop it.
    booking = single(load("daily-until-2300z-sydney.json"))
    assert booking.recurrence is not None
    assert booking.recurrence.rrule == "FREQ=DAILY;UNTIL=20220117T230000Z"
    starts = [start for start, _ in live_instants(booking, EVERYTHING)]
    local_days = [s.astimezone(booking.zone).date() for s in starts]
    assert local_days == [date(2022, 1, day) for day in range(11, 19)]
    assert ics_live_instants(render_ics(booking)) == live_instants(booking, EVERYTHING)


def test_same_until_in_a_zone_where_it_is_local_midnight_ends_a_day_earlier() -> None:
    data = {
        **load("daily-until-2300z-sydney.json"),
        "timezone": "Europe/Paris",
        "start": {"dateTime": "2022-01-11T08:00:00.000Z"},
        "end": {"dateTime": "2022-01-11T08:30:00.000Z"},
    }
    booking = single(data)
    last_start, _ = live_instants(booking, EVERYTHING)[-1]
    assert last_start == utc("2022-01-17T08:00:00Z")


def test_regression_monthly_on_the_31st_skips_short_months() -> None:
    data = {
        "_id": "m31",
        "title": "Month-end close",
        "start": "2024-01-31T17:00:00.000Z",
        "end": "2024-01-31T18:00:00.000Z",
        "timezone": "America/New_York",
        "resource": "r1",
        "recurrence": {"rrule": "FREQ=MONTHLY;COUNT=4"},
    }
    booking = single(data)
    local = [s.astimezone(booking.zone) for s, _ in live_instants(booking, EVERYTHING)]
    assert [(d.month, d.day, d.hour) for d in local] == [
        (1, 31, 12),
        (3, 31, 12),
        (5, 31, 12),
        (7, 31, 12),
    ]
    assert ics_live_instants(render_ics(booking)) == live_instants(booking, EVERYTHING)


def test_regression_monthly_31st_with_provider_clamped_instances_follows_the_provider() -> None:
    # If OfficeRnD lists a month-end instance (29 Feb) the rule does not produce, the calendar
    # must show it anyway: it becomes an RDATE, and the rule's own instances stay.
    data = {
        "_id": "m31",
        "start": "2024-01-31T17:00:00.000Z",
        "end": "2024-01-31T18:00:00.000Z",
        "timezone": "America/New_York",
        "resource": "r1",
        "recurrence": {"rrule": "FREQ=MONTHLY;COUNT=3"},
        "occurrences": [
            {"start": "2024-01-31T17:00:00Z", "end": "2024-01-31T18:00:00Z"},
            {"start": "2024-02-29T17:00:00Z", "end": "2024-02-29T18:00:00Z"},
            {"start": "2024-03-31T16:00:00Z", "end": "2024-03-31T17:00:00Z"},
            {"start": "2024-05-31T16:00:00Z", "end": "2024-05-31T17:00:00Z"},
        ],
    }
    booking = single(data)
    expected = [(utc(o["start"]), utc(o["end"])) for o in data["occurrences"]]
    assert live_instants(booking, EVERYTHING) == expected
    assert ics_live_instants(render_ics(booking)) == expected
    assert booking.recurrence is not None
    assert [r.astimezone(UTC) for r in booking.recurrence.rdates] == [utc("2024-02-29T17:00:00Z")]


def test_occurrences_become_exdates_overrides_and_rdates() -> None:
    data = load("v2-weekly-with-occurrences.json")
    booking = single(data)
    expected = sorted(
        (
            utc(o["start"]["dateTime"] if isinstance(o["start"], dict) else o["start"]),
            utc(o["end"]["dateTime"] if isinstance(o["end"], dict) else o["end"]),
        )
        for o in data["occurrences"]
        if not (o.get("canceled") or o.get("isCancelled"))
    )
    assert live_instants(booking, EVERYTHING) == expected
    assert ics_live_instants(render_ics(booking)) == expected
    recurrence = booking.recurrence
    assert recurrence is not None
    # 11 Mar cancelled; 1 Apr's instance was moved to Wednesday 3 Apr (another day).
    assert [e.astimezone(UTC) for e in recurrence.exdates] == [
        utc("2024-03-11T14:00:00Z"),
        utc("2024-04-01T13:00:00Z"),
    ]
    assert [r.astimezone(UTC) for r in recurrence.rdates] == [utc("2024-04-03T13:00:00Z")]
    # Same-day moves keep the rule instant they stand for as their recurrence id.
    assert [
        (o.recurrence_id.astimezone(UTC), o.start.astimezone(UTC)) for o in recurrence.overrides
    ] == [
        (utc("2024-03-18T14:00:00Z"), utc("2024-03-18T16:30:00Z")),
        (utc("2024-03-25T14:00:00Z"), utc("2024-03-25T13:00:00Z")),
    ]


@pytest.mark.parametrize("night_end", ["2024-03-31T02:30:00Z", "2024-03-31T03:30:00Z"])
def test_regression_instance_spanning_the_dst_change_keeps_the_providers_end(
    night_end: str,
) -> None:
    # 00:30-03:30 every night in London. On 31 Mar the clocks jump at 01:00 UTC: the rule's
    # wall-clock instance ends 02:30Z (2 real hours); a provider counting 3 real hours says
    # 03:30Z. Either way the calendar must show exactly what the provider lists.
    data = {
        "_id": "nights",
        "start": "2024-03-30T00:30:00Z",
        "end": "2024-03-30T03:30:00Z",
        "timezone": "Europe/London",
        "resource": "r",
        "recurrence": {"rrule": "FREQ=DAILY;COUNT=3"},
        "occurrences": [
            {"start": "2024-03-30T00:30:00Z", "end": "2024-03-30T03:30:00Z"},
            {"start": "2024-03-31T00:30:00Z", "end": night_end},
            {"start": "2024-03-31T23:30:00Z", "end": "2024-04-01T02:30:00Z"},
        ],
    }
    booking = single(data)
    expected = [(utc(o["start"]), utc(o["end"])) for o in data["occurrences"]]
    assert live_instants(booking, EVERYTHING) == expected
    assert ics_live_instants(render_ics(booking)) == expected
    assert booking.recurrence is not None
    assert len(booking.recurrence.overrides) == (night_end == "2024-03-31T03:30:00Z")


def test_recurring_ical_events_id_confusion_is_detected_by_the_test_guard() -> None:
    # Guard used by the property test: 06:00Z reads like the 06:00 BST instance's wall time.
    data = {
        "_id": "g",
        "start": "2024-06-01T05:00:00Z",
        "end": "2024-06-01T05:15:00Z",
        "timezone": "Europe/London",
        "resource": "r",
        "recurrence": {"rrule": "FREQ=DAILY;COUNT=1"},
        "occurrences": [
            {"start": "2024-06-01T05:00:00Z", "end": "2024-06-01T05:15:00Z"},
            {"start": "2024-06-01T06:00:00Z", "end": "2024-06-01T06:30:00Z"},
        ],
    }
    booking = single(data)
    assert rie_would_confuse_ids(booking)
    assert len(live_instants(booking, EVERYTHING)) == 2
    assert not rie_would_confuse_ids(single({**data, "timezone": "UTC"}))


def test_weekly_rule_keeps_local_time_across_the_dst_change() -> None:
    data = {k: v for k, v in load("v2-weekly-with-occurrences.json").items() if k != "occurrences"}
    booking = single(data)
    starts = [s.astimezone(booking.zone) for s, _ in live_instants(booking, EVERYTHING)]
    assert {(s.hour, s.minute) for s in starts} == {(14, 0)}
    assert {s.utcoffset() for s in starts} == {timedelta(0), timedelta(hours=1)}


def test_covered_window_limits_what_missing_occurrences_mean() -> None:
    # An endless weekly rule; occurrences were fetched only for March. The February instants
    # before the window still follow the rule; the unlisted March one is gone.
    data = {
        "_id": "w",
        "start": "2024-02-05T10:00:00Z",
        "end": "2024-02-05T11:00:00Z",
        "timezone": "UTC",
        "resource": "r",
        "recurrence": {"rrule": "FREQ=WEEKLY"},
        "occurrences": [
            {"start": "2024-03-04T10:00:00Z", "end": "2024-03-04T11:00:00Z"},
            {"start": "2024-03-18T10:00:00Z", "end": "2024-03-18T11:00:00Z"},
            {"start": "2024-03-25T10:00:00Z", "end": "2024-03-25T11:00:00Z"},
        ],
    }
    march = Window(utc("2024-03-01T00:00:00Z"), utc("2024-04-01T00:00:00Z"))
    booking = single(data, covered=march)
    february_to_april = Window(utc("2024-02-01T00:00:00Z"), utc("2024-04-09T00:00:00Z"))
    starts = [s for s, _ in live_instants(booking, february_to_april)]
    assert starts == [
        utc(f"2024-{m}T10:00:00Z")
        for m in ("02-05", "02-12", "02-19", "02-26", "03-04", "03-18", "03-25", "04-01", "04-08")
    ]


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("change", "error", "field"),
    [
        ({"_id": None}, MissingField, "_id"),
        ({"start": None}, MissingField, "start"),
        ({"start": {"dateTime": None, "date": "2022-01-10"}}, InvalidValue, "start.date"),
        ({"start": {"dateTime": "2022-01-10T22:00:00"}}, InvalidValue, "start.dateTime"),
        ({"end": {"dateTime": "2022-01-10T21:00:00Z"}}, InvalidValue, "end"),
        ({"end": {"dateTime": "yesterday"}}, InvalidValue, "end.dateTime"),
        ({"timezone": "Mars/Olympus_Mons"}, UnknownTimezone, "timezone"),
        ({"recurrence": {"rrule": "FREQ=FORTNIGHTLY"}}, InvalidValue, "recurrence.rrule"),
        ({"recurrence": {"rrule": "INTERVAL=2"}}, InvalidValue, "recurrence.rrule"),
        ({"recurrence": {"rrule": "FREQ=MINUTELY"}}, MappingError, "recurrence.rrule"),
        ({"serviceSlots": {"before": -5}}, InvalidValue, "serviceSlots.before"),
        ({"serviceSlots": {"after": "ten"}}, InvalidValue, "serviceSlots.after"),
        ({"canceled": "yes"}, InvalidValue, "canceled"),
        ({"resourceId": None}, MissingField, "resource"),
        (
            {"occurrences": [{"bookingId": "other", "start": "x"}]},
            InvalidValue,
            "occurrences[0].bookingId",
        ),
        ({"occurrences": [{"start": "2022-01-12T22:00:00Z"}]}, MissingField, "occurrences[0].end"),
    ],
)
def test_bad_input_names_booking_and_field(
    change: dict[str, Any], error: type[MappingError], field: str
) -> None:
    data = {**load("daily-until-2300z-sydney.json"), **change}
    with pytest.raises(error) as caught:
        officernd.from_json(data)
    assert caught.value.field == field
    if field != "_id":
        assert caught.value.booking == "61e0aa00c1a625f9053d0002"


def test_not_an_object_is_malformed_input() -> None:
    with pytest.raises(MappingError):
        officernd.from_json("not a booking")
    with pytest.raises(MappingError):
        officernd.from_json([1, 2])


def test_two_live_occurrences_at_one_instant_are_refused() -> None:
    data = load("v2-weekly-with-occurrences.json")
    data["occurrences"] = [*data["occurrences"], data["occurrences"][0]]
    with pytest.raises(InvalidValue) as caught:
        officernd.from_json(data)
    assert caught.value.field == "occurrences"


# ------------------------------------------------------------------ writing


def test_to_json_is_a_v2_create_body() -> None:
    booking = single(load("v2-weekly-with-occurrences.json"))
    body = officernd.to_json(booking)
    assert body == {
        "resource": "600638f94c6ea94c6dddc709",
        "start": "2024-03-04T14:00:00.000Z",
        "end": "2024-03-04T15:00:00.000Z",
        "title": "Design review",
        "description": "Weekly review of the floor plans",
        "tentative": False,
        "serviceSlots": {"before": 15, "after": 10},
        "recurrence": {"rrule": "FREQ=WEEKLY;BYDAY=MO;COUNT=6"},
        "company": "63505d666b5233c8d432f585",
    }


def test_to_v1_json_uses_v1_names() -> None:
    booking = single(load("daily-until-2300z-sydney.json"))
    body = officernd.to_v1_json(booking)
    assert body["resourceId"] == "600638f94c6ea94c6dddc710"
    assert body["start"] == {"dateTime": "2022-01-10T22:00:00.000Z"}
    assert body["summary"] == "Morning stand-up"
    assert body["team"] == "63505d666b5233c8d432f585"
    assert single({**body, "_id": booking.key, "timezone": booking.timezone}) == booking


def test_a_cancelled_booking_has_no_create_body() -> None:
    booking = single(load("v1-booking-object.json"))
    with pytest.raises(InvalidValue) as caught:
        officernd.to_json(booking)
    assert caught.value.field == "status"


def test_occurrence_changes_describe_cancel_move_and_add() -> None:
    booking = single(load("v2-weekly-with-occurrences.json"))
    changes = [change.as_json() for change in officernd.occurrence_changes(booking)]
    assert changes == [
        {"action": "cancel", "occurrence": "2024-03-11T14:00:00.000Z"},
        {
            "action": "move",
            "occurrence": "2024-03-18T14:00:00.000Z",
            "start": "2024-03-18T16:30:00.000Z",
            "end": "2024-03-18T18:00:00.000Z",
        },
        {
            "action": "move",
            "occurrence": "2024-03-25T14:00:00.000Z",
            "start": "2024-03-25T13:00:00.000Z",
            "end": "2024-03-25T14:00:00.000Z",
        },
        {"action": "cancel", "occurrence": "2024-04-01T13:00:00.000Z"},
        {
            "action": "add",
            "occurrence": "2024-04-03T13:00:00.000Z",
            "start": "2024-04-03T13:00:00.000Z",
            "end": "2024-04-03T14:00:00.000Z",
        },
    ]


# ------------------------------------------------------------------ properties

ZONES = ("Europe/London", "America/New_York", "Australia/Sydney")
DST_CHANGES = {
    "Europe/London": (date(2024, 3, 31), date(2024, 10, 27), date(2025, 3, 30)),
    "America/New_York": (date(2024, 3, 10), date(2024, 11, 3), date(2025, 3, 9)),
    "Australia/Sydney": (date(2024, 4, 7), date(2024, 10, 6), date(2025, 4, 6)),
}
WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@st.composite
def series_objects(draw: st.DrawFn) -> dict[str, Any]:
    """An OfficeRnD recurring booking object (v2 shape) starting near a DST change."""
    zone_name = draw(st.sampled_from(ZONES))
    zone = ZoneInfo(zone_name)
    day = draw(st.sampled_from(DST_CHANGES[zone_name])) + timedelta(days=draw(st.integers(-45, 10)))
    # 06:00-20:45 never falls into a DST gap in these zones.
    local = datetime.combine(
        day, time(draw(st.integers(6, 20)), draw(st.sampled_from((0, 15, 30, 45)))), tzinfo=zone
    )
    duration = timedelta(minutes=15 * draw(st.integers(1, 16)))
    freq = draw(st.sampled_from(("DAILY", "WEEKLY", "MONTHLY")))
    parts = {"FREQ": freq}
    interval = draw(st.integers(1, 3))
    if interval > 1:
        parts["INTERVAL"] = str(interval)
    if freq == "WEEKLY" and draw(st.booleans()):
        days = draw(st.lists(st.sampled_from(WEEKDAYS), min_size=1, max_size=3, unique=True))
        parts["BYDAY"] = ",".join(days)
    if freq == "MONTHLY" and draw(st.booleans()):
        parts["BYDAY"] = draw(st.sampled_from(("1MO", "2TU", "-1FR", "3WE")))
    if freq == "DAILY" and draw(st.booleans()):
        parts["BYDAY"] = "MO,TU,WE,TH,FR"
    if draw(st.booleans()):
        parts["COUNT"] = str(draw(st.integers(1, 12)))
    else:
        span = timedelta(days=draw(st.integers(0, 150)), hours=draw(st.integers(0, 23)))
        parts["UNTIL"] = (local + span).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return {
        "_id": "6650aa00c1a625f9053dffff",
        "title": draw(st.text(max_size=20)),
        "description": draw(st.text(max_size=40)),
        "start": z(local),
        "end": z(local + duration),
        "timezone": zone_name,
        "resource": "600638f94c6ea94c6dddc709",
        "company": "63505d666b5233c8d432f585",
        "member": draw(st.sampled_from((None, "63505d666b52330ae632f58d"))),
        "tentative": draw(st.booleans()),
        "serviceSlots": {"before": draw(st.integers(0, 30)), "after": draw(st.integers(0, 30))},
        "recurrence": {"rrule": ";".join(f"{k}={v}" for k, v in parts.items())},
    }


@st.composite
def edited_series(draw: st.DrawFn) -> tuple[dict[str, Any], Instants]:
    """A series object with an ``occurrences`` array of cancelled, moved, resized, omitted
    and extra instances, plus the live (start, end) pairs the provider means."""
    obj = draw(series_objects())
    start, end = utc(obj["start"]), utc(obj["end"])
    base = rule_instants_via_ics(
        start.astimezone(ZoneInfo(obj["timezone"])), end, obj["recurrence"]["rrule"]
    )
    listed: list[dict[str, Any]] = []
    live: Instants = []
    for instance_start, instance_end in base:
        action = draw(
            st.sampled_from(("keep",) * 5 + ("cancel", "omit", "shift", "resize", "jump"))
        )
        if action == "omit":
            continue
        if action == "shift":
            delta = timedelta(minutes=15 * draw(st.integers(-12, 12).filter(bool)))
            instance_start, instance_end = instance_start + delta, instance_end + delta
        elif action == "resize":
            instance_end = instance_start + timedelta(minutes=15 * draw(st.integers(1, 12)))
        elif action == "jump":
            delta = timedelta(days=draw(st.integers(-3, 3).filter(bool)), minutes=30)
            instance_start, instance_end = instance_start + delta, instance_end + delta
        cancelled = action == "cancel"
        listed.append(
            {
                "bookingId": obj["_id"],
                "start": {"dateTime": z(instance_start)},
                "end": {"dateTime": z(instance_end)},
                "canceled": cancelled,
            }
        )
        if not cancelled:
            live.append((instance_start, instance_end))
    for _ in range(draw(st.integers(0, 2))):
        extra = start + timedelta(
            days=draw(st.integers(0, 60)), minutes=15 * draw(st.integers(-20, 20))
        )
        extra_end = extra + timedelta(minutes=15 * draw(st.integers(1, 8)))
        listed.append({"bookingId": obj["_id"], "start": z(extra), "end": z(extra_end)})
        live.append((extra, extra_end))
    assume(listed)
    assume(len({s for s, _ in live}) == len(live))  # OfficeRnD never lists two at one instant
    return {**obj, "occurrences": listed}, sorted(live)


@PROPERTY_SETTINGS
@given(edited_series())
def test_property_expansion_equals_the_providers_live_occurrences(
    case: tuple[dict[str, Any], Instants],
) -> None:
    obj, expected = case
    booking = single(obj)
    assert live_instants(booking, EVERYTHING) == expected
    if rie_would_confuse_ids(booking):
        assert ical_live_instants(render_ics(booking)) == expected
    else:
        assert ics_live_instants(render_ics(booking)) == expected


@PROPERTY_SETTINGS
@given(edited_series())
def test_property_occurrence_changes_replay_onto_the_rule_give_the_live_occurrences(
    case: tuple[dict[str, Any], Instants],
) -> None:
    obj, expected = case
    booking = single(obj)
    by_instant = {
        s: e
        for s, e in rule_instants_via_ics(booking.start, booking.end, obj["recurrence"]["rrule"])
    }
    for change in officernd.occurrence_changes(booking):
        instant = change.occurrence.astimezone(UTC)
        if change.action is officernd.OccurrenceAction.CANCEL:
            by_instant.pop(instant)
        elif change.action is officernd.OccurrenceAction.MOVE:
            assert change.start is not None and change.end is not None
            by_instant.pop(instant)
            by_instant[change.start.astimezone(UTC)] = change.end.astimezone(UTC)
        else:
            assert change.start is not None and change.end is not None
            by_instant[change.start.astimezone(UTC)] = change.end.astimezone(UTC)
    assert sorted(by_instant.items()) == expected


@PROPERTY_SETTINGS
@given(series_objects(), st.booleans())
def test_property_round_trip_object_booking_body_booking(obj: dict[str, Any], v1: bool) -> None:
    booking = single(obj)
    body = officernd.to_v1_json(booking) if v1 else officernd.to_json(booking)
    # The server adds what a create body cannot carry: the id and the resource's zone.
    echoed = {**body, "_id": obj["_id"], "timezone": obj["timezone"]}
    assert single(echoed) == booking


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edited_series())
def test_property_project_ical_rendering_expands_to_the_providers_live_occurrences(
    case: tuple[dict[str, Any], Instants],
) -> None:
    # The same check through the project's own iCalendar writer (mappings.ical).
    ical = pytest.importorskip("mappings.ical")
    obj, expected = case
    booking = single(obj)
    assume(not rie_would_confuse_ids(booking))
    [own] = ical.booking_to_objects(booking, buffers=BufferMode.HIDDEN)
    assert ics_live_instants(own.ics) == expected


def test_regression_every_instance_in_the_window_moved_out_leaves_none_live() -> None:
    """An empty occurrences list for a covered window means nothing is live there."""
    obj = {
        "_id": "6650aa00c1a625f9053d0001",
        "start": "2026-06-01T09:00:00.000Z",
        "end": "2026-06-01T10:00:00.000Z",
        "timezone": "Europe/London",
        "resource": "600638f94c6ea94c6dddc709",
        "company": "63505d666b5233c8d432f585",
        "recurrence": {"rrule": "FREQ=DAILY;UNTIL=20260610T090000Z"},
        "occurrences": [],
    }
    covered = Window(datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 6, 20, tzinfo=UTC))
    [booking] = officernd.from_json(obj, covered=covered)
    assert live_instants(booking, covered) == []
    [unknown] = officernd.from_json({**obj, "occurrences": None})
    assert len(live_instants(unknown, covered)) == 10
