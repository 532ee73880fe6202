"""Google Calendar Event resources ⇄ bookings: fixtures, round trips, expansion, bad input."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import pytest
import recurring_ical_events
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.model import (
    Booking,
    BookingKey,
    BookingStatus,
    Buffers,
    Override,
    Person,
    Recurrence,
    Window,
)
from mappings import google
from mappings.errors import (
    InvalidValue,
    MalformedInput,
    MappingError,
    MissingField,
    UnknownTimezone,
    UnsupportedRecurrence,
)
from mappings.expansion import expand, live_instants, rule_instants

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "google"
ZONES = ("Europe/London", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "UTC")
EVENT_ID = re.compile(r"^[a-v0-9]{5,1024}$")
LONDON = ZoneInfo("Europe/London")


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def everything(booking: Booking) -> Any:
    """What the backend writes, as Google would hand it back (through JSON)."""
    written = [google.to_json(booking), *google.instance_bodies(booking)]
    return json.loads(json.dumps(written))


def window_around(booking: Booking, days: int = 800) -> Window:
    return Window(booking.start - timedelta(days=2), booking.start + timedelta(days=days))


# --------------------------------------------------------------------------- strategies

WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=40)
names = st.one_of(st.none(), text.filter(bool))
emails = st.from_regex(r"[a-z]{1,8}@[a-z]{1,8}\.(org|com)", fullmatch=True)
people = st.builds(Person, email=emails, name=names)


@st.composite
def local_starts(draw: st.DrawFn) -> datetime:
    zone = ZoneInfo(draw(st.sampled_from(ZONES)))
    day = draw(st.dates(date(2024, 1, 1), date(2026, 12, 31)))
    # 06:00-20:45 stays clear of every DST gap and fold in the sampled zones.
    wall = time(draw(st.integers(6, 20)), draw(st.sampled_from((0, 15, 30, 45))))
    return datetime.combine(day, wall, zone)


@st.composite
def rules(draw: st.DrawFn, start: datetime) -> str:
    """An RRULE whose first instance is ``start`` (so every RFC reading agrees)."""
    frequency = draw(st.sampled_from(("DAILY", "WEEKLY", "MONTHLY", "YEARLY")))
    parts = [f"FREQ={frequency}"]
    interval = draw(st.integers(1, 3))
    if interval > 1:
        parts.append(f"INTERVAL={interval}")
    weekday = WEEKDAYS[start.weekday()]
    if frequency == "WEEKLY" and draw(st.booleans()):
        extra = draw(st.sets(st.sampled_from(WEEKDAYS), max_size=3))
        parts.append("BYDAY=" + ",".join(d for d in WEEKDAYS if d in extra | {weekday}))
    if frequency == "MONTHLY":
        ordinal = (start.day - 1) // 7 + 1
        parts.append(
            draw(
                st.sampled_from(
                    (f"BYMONTHDAY={start.day}", f"BYDAY={ordinal}{weekday}", "BYMONTHDAY=-1")
                )
            )
        )
        if parts[-1] == "BYMONTHDAY=-1" and (start + timedelta(days=1)).month == start.month:
            parts[-1] = f"BYMONTHDAY={start.day}"
    end = draw(st.sampled_from(("count", "until", "none")))
    if end == "count":
        parts.append(f"COUNT={draw(st.integers(1, 25))}")
    elif end == "until":
        until = start + timedelta(
            days=draw(st.integers(0, 400)), minutes=draw(st.integers(-90, 90))
        )
        parts.append(f"UNTIL={until.astimezone(UTC):%Y%m%dT%H%M%SZ}")
    return ";".join(parts)


@st.composite
def bookings(draw: st.DrawFn, *, with_rdates: bool = True) -> Booking:
    start = draw(local_starts())
    zone = start.tzinfo
    assert isinstance(zone, ZoneInfo)
    duration = timedelta(minutes=15 * draw(st.integers(1, 32)))
    status = draw(st.sampled_from(list(BookingStatus)))
    title = draw(text)
    description = draw(text)
    recurrence = None
    if draw(st.booleans()):
        rrule = draw(rules(start))
        instants = list(rule_instants(rrule, start, zone, start + timedelta(days=800)))[:30]
        # A rule may yield nothing after DTSTART (e.g. UNTIL before it): nothing to except then.
        chosen = (
            draw(st.lists(st.sampled_from(instants), unique=True, max_size=6)) if instants else []
        )
        split = draw(st.integers(0, len(chosen)))
        exdates, moved = chosen[:split], chosen[split:]
        overrides = []
        for rid in moved:
            shift = timedelta(minutes=15 * draw(st.integers(-8, 8)))
            length = timedelta(minutes=15 * draw(st.integers(1, 16)))
            other = (
                BookingStatus.TENTATIVE
                if status is not BookingStatus.TENTATIVE
                else BookingStatus.CONFIRMED
            )
            overrides.append(
                Override(
                    recurrence_id=rid,
                    start=rid + shift,
                    end=rid + shift + length,
                    status=draw(st.sampled_from((None, other))),
                    title=draw(st.one_of(st.none(), text.filter(lambda t: t != title))),
                    description=draw(st.one_of(st.none(), text.filter(lambda t: t != description))),
                )
            )
        rdates: list[datetime] = []
        if with_rdates:
            for _ in range(draw(st.integers(0, 2))):
                offset = timedelta(days=draw(st.integers(1, 300)), hours=draw(st.integers(0, 6)))
                rdates.append((start + offset).astimezone(zone))
        recurrence = Recurrence(
            rrule=rrule,
            rdates=tuple(sorted(set(rdates) - set(instants))),
            exdates=tuple(sorted(exdates)),
            overrides=tuple(sorted(overrides, key=lambda o: o.recurrence_id)),
        )
    extra_names = draw(st.lists(text.filter(bool), unique=True, max_size=3))
    return Booking(
        provider=draw(st.sampled_from(("hq", "flex", "venue"))),
        key=draw(text.filter(bool)),
        resource=draw(text),
        start=start,
        end=start + duration,
        timezone=str(zone),
        status=status,
        title=title,
        description=description,
        organizer=draw(st.one_of(st.none(), people)),
        attendees=tuple(draw(st.lists(people, max_size=3))),
        private=draw(st.booleans()),
        buffers=Buffers(
            timedelta(minutes=5 * draw(st.integers(0, 12))),
            timedelta(minutes=5 * draw(st.integers(0, 12))),
        ),
        recurrence=recurrence,
        version=draw(st.one_of(st.none(), text.filter(bool))),
        extra=tuple(sorted((name, draw(text)) for name in extra_names)),
    )


# --------------------------------------------------------------------------- ics for the check


def _ics_time(name: str, value: dict[str, str]) -> str:
    if "date" in value:
        return f"{name};VALUE=DATE:{value['date'].replace('-', '')}"
    instant = datetime.fromisoformat(value["dateTime"])
    zone_name = value["timeZone"]
    if zone_name == "UTC":
        return f"{name}:{instant.astimezone(UTC):%Y%m%dT%H%M%SZ}"
    return f"{name};TZID={zone_name}:{instant.astimezone(ZoneInfo(zone_name)):%Y%m%dT%H%M%S}"


def expanded_by_icalendar(
    bodies: list[dict[str, Any]], window: Window, zone: ZoneInfo
) -> list[tuple[datetime, datetime]]:
    """Expand Google's bodies with icalendar + recurring-ical-events, an independent reader."""
    master, *instances = bodies
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//roombridge tests//EN"]
    for body in (master, *instances):
        lines += ["BEGIN:VEVENT", "UID:series@test", "DTSTAMP:20250101T000000Z"]
        if "originalStartTime" in body:
            lines.append(_ics_time("RECURRENCE-ID", body["originalStartTime"]))
        lines += [_ics_time("DTSTART", body["start"]), _ics_time("DTEND", body["end"])]
        lines += body.get("recurrence", [])
        lines += [f"STATUS:{body['status'].upper()}", "END:VEVENT"]
    lines.append("END:VCALENDAR")
    calendar = icalendar.Calendar.from_ical("\r\n".join(lines) + "\r\n")
    found = []
    for event in recurring_ical_events.of(calendar).between(window.start, window.end):
        if str(event.get("STATUS", "CONFIRMED")) == "CANCELLED":
            continue
        start, end = event["DTSTART"].dt, event["DTEND"].dt
        if not isinstance(start, datetime):
            start = datetime.combine(start, time(0), zone)
            end = datetime.combine(end, time(0), zone)
        found.append((start.astimezone(UTC), end.astimezone(UTC)))
    return sorted(found)


# --------------------------------------------------------------------------- reading fixtures


def test_single_event_fixture_maps_every_field() -> None:
    [booking] = google.from_json(load("single-event.json"), provider="workspace")
    berlin = ZoneInfo("Europe/Berlin")
    assert booking.provider == "workspace"
    assert booking.key == "5qbdk0h1ulf1o7m1l8b9vgk3iv"
    assert booking.timezone == "Europe/Berlin"
    assert booking.start == datetime(2025, 3, 31, 10, 0, tzinfo=berlin)
    assert booking.end == datetime(2025, 3, 31, 11, 30, tzinfo=berlin)
    assert booking.status is BookingStatus.TENTATIVE
    assert booking.title == "Quarterly planning"
    assert booking.description == "Bring the budget sheet."
    assert booking.private is True
    assert booking.organizer == Person("ana@example.com", "Ana Lima")
    # The room is a resource attendee: it is the booking's resource, not a guest.
    assert booking.attendees == (Person("ana@example.com", "Ana Lima"), Person("ben@example.com"))
    assert booking.resource == "c_1888abcd@resource.calendar.google.com"
    assert booking.version == '"3423949284156000"'
    assert booking.updated == datetime(2025, 3, 2, 8, 0, 42, 78000, tzinfo=UTC)
    assert booking.recurrence is None


def test_recurring_fixture_attaches_moved_and_cancelled_instances() -> None:
    [booking] = google.from_json(load("recurring-series.json"))
    assert booking.recurrence is not None
    assert booking.recurrence.rrule == "FREQ=WEEKLY;BYDAY=MO;COUNT=5"
    occurrences = expand(booking, window_around(booking, 60))
    wall = [(o.start.astimezone(LONDON), o.end.astimezone(LONDON)) for o in occurrences]
    assert wall == [
        (datetime(2025, 3, 17, 9, 0, tzinfo=LONDON), datetime(2025, 3, 17, 9, 30, tzinfo=LONDON)),
        (datetime(2025, 3, 24, 9, 0, tzinfo=LONDON), datetime(2025, 3, 24, 9, 30, tzinfo=LONDON)),
        # moved instance, on summer time from here on, still 09:00 local for the others
        (datetime(2025, 3, 31, 14, 0, tzinfo=LONDON), datetime(2025, 3, 31, 14, 30, tzinfo=LONDON)),
        (datetime(2025, 4, 14, 9, 0, tzinfo=LONDON), datetime(2025, 4, 14, 9, 30, tzinfo=LONDON)),
    ]
    [moved] = booking.recurrence.overrides
    assert moved.title == "Team stand-up (moved)"
    assert moved.version == '"3424000000000001"'
    assert booking.recurrence.exdates == (datetime(2025, 4, 7, 9, 0, tzinfo=LONDON),)


def test_events_page_skips_deletion_stubs_and_uses_the_calendar_zone() -> None:
    call, offsite = google.from_json(load("events-page.json"))
    new_york = ZoneInfo("America/New_York")
    assert call.timezone == "America/New_York"
    # 01:30 on the night clocks go back is the first (EDT) 01:30; 02:30 is EST: two real hours.
    assert call.start.astimezone(UTC) == datetime(2025, 11, 2, 5, 30, tzinfo=UTC)
    assert call.end.astimezone(UTC) - call.start.astimezone(UTC) == timedelta(hours=2)
    assert offsite.start == datetime(2025, 11, 10, 0, 0, tzinfo=new_york)
    assert offsite.end == datetime(2025, 11, 12, 0, 0, tzinfo=new_york)


def test_caller_zone_wins_over_the_page_zone_for_floating_times() -> None:
    call, _ = google.from_json(load("events-page.json"), timezone="Europe/London")
    assert call.timezone == "Europe/London"
    assert call.start == datetime(2025, 11, 2, 1, 30, tzinfo=LONDON)


def test_json_text_is_accepted_and_garbage_refused() -> None:
    text_input = (FIXTURES / "single-event.json").read_text()
    assert google.from_json(text_input) == google.from_json(json.loads(text_input))
    with pytest.raises(MalformedInput):
        google.from_json("{not json")
    with pytest.raises(MalformedInput):
        google.from_json(42)


@pytest.mark.parametrize(
    ("name", "error", "booking", "field"),
    [
        ("missing-start.json", MissingField, "9nostart0000000000000000aa", "start"),
        ("unknown-zone.json", UnknownTimezone, "9badzone000000000000000aab", "start.timeZone"),
        ("end-before-start.json", InvalidValue, "9backwards00000000000000ac", "end"),
        (
            "orphan-instance.json",
            MissingField,
            "9orphan0000000000000000ad_20250331T090000Z",
            "recurringEventId",
        ),
        ("exrule.json", UnsupportedRecurrence, "9exrule00000000000000000ae", "recurrence"),
    ],
)
def test_bad_input_names_the_event_and_field(
    name: str, error: type[MappingError], booking: str, field: str
) -> None:
    with pytest.raises(error) as caught:
        google.from_json(load(f"invalid/{name}"))
    assert caught.value.booking == booking
    assert caught.value.field == field


def test_local_and_date_until_are_normalised_to_utc() -> None:
    event = {
        "id": "abcde12345",
        "start": {"dateTime": "2025-03-03T18:00:00", "timeZone": "Europe/London"},
        "end": {"dateTime": "2025-03-03T19:00:00", "timeZone": "Europe/London"},
        "recurrence": ["RRULE:FREQ=DAILY;UNTIL=20250401"],
    }
    [booking] = google.from_json(event)
    assert booking.recurrence is not None
    assert booking.recurrence.rrule == "FREQ=DAILY;UNTIL=20250401T225959Z"
    last = expand(booking, window_around(booking, 60))[-1]
    assert last.start == datetime(2025, 4, 1, 18, 0, tzinfo=LONDON)


def test_date_exdates_and_utc_rdates_are_read() -> None:
    event = {
        "id": "abcde12345",
        "start": {"dateTime": "2025-03-03T09:00:00Z", "timeZone": "Europe/London"},
        "end": {"dateTime": "2025-03-03T10:00:00Z", "timeZone": "Europe/London"},
        "recurrence": [
            "RRULE:FREQ=DAILY;COUNT=5",
            "EXDATE;VALUE=DATE:20250304",
            "RDATE:20250310T120000Z",
        ],
    }
    [booking] = google.from_json(event)
    starts = [o.start for o in expand(booking, window_around(booking, 30))]
    assert datetime(2025, 3, 4, 9, 0, tzinfo=LONDON) not in starts
    assert datetime(2025, 3, 10, 12, 0, tzinfo=UTC) in starts
    assert len(starts) == 5


# --------------------------------------------------------------------------- writing


def test_event_ids_are_deterministic_base32hex_and_distinct() -> None:
    first = google.event_id_for(BookingKey("hq", "287977693"))
    assert EVENT_ID.match(first)
    assert first == google.event_id_for(BookingKey("hq", "287977693"))
    assert first != google.event_id_for(BookingKey("hq", "287977694"))
    # The provider/key boundary is part of the identity.
    assert google.event_id_for(BookingKey("a", "bc")) != google.event_id_for(BookingKey("ab", "c"))


def test_instance_ids_follow_googles_form() -> None:
    rid = datetime(2025, 3, 31, 9, 0, tzinfo=LONDON)
    assert google.instance_id("abcde", rid) == "abcde_20250331T080000Z"
    assert google.instance_id("abcde", rid.replace(hour=0), all_day=True) == "abcde_20250331"
    with pytest.raises(ValueError):
        google.instance_id("abcde", datetime(2025, 3, 31, 9, 0))


def _weekly(**changes: Any) -> Booking:
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
                Override(
                    start + timedelta(weeks=3),
                    start + timedelta(weeks=3),
                    start + timedelta(weeks=3, hours=1),
                    status=BookingStatus.CANCELLED,
                ),
            ),
        ),
    )
    return booking.evolve(**changes)


def test_to_json_writes_the_insert_body() -> None:
    booking = _weekly(private=True, status=BookingStatus.TENTATIVE)
    body = google.to_json(booking)
    assert EVENT_ID.match(str(body["id"]))
    assert body["start"] == {"dateTime": "2025-03-17T09:00:00+00:00", "timeZone": "Europe/London"}
    assert body["status"] == "tentative"
    assert body["transparency"] == "opaque"  # tentative still blocks the room
    assert body["visibility"] == "private"
    assert body["recurrence"] == [
        "RRULE:FREQ=WEEKLY;COUNT=6",
        # the EXDATE and the cancelled override, on the room's wall clock (BST from 30 March)
        "EXDATE;TZID=Europe/London:20250324T090000,20250407T090000",
    ]
    tags = body["extendedProperties"]["private"]  # type: ignore[index]
    assert all(len(name) <= 44 and len(value) <= 1024 for name, value in tags.items())


def test_instance_bodies_carry_series_identity_and_original_start() -> None:
    booking = _weekly()
    master_id = google.event_id_for(booking.booking_key)
    [moved] = google.instance_bodies(booking)
    assert moved["recurringEventId"] == master_id
    assert moved["id"] == f"{master_id}_20250331T080000Z"
    assert moved["originalStartTime"] == {
        "dateTime": "2025-03-31T09:00:00+01:00",
        "timeZone": "Europe/London",
    }
    assert moved["summary"] == "Stand-up (afternoon)"
    assert google.instance_bodies(booking.evolve(status=BookingStatus.CANCELLED)) == []


def test_cancelled_overrides_come_back_as_exdates() -> None:
    booking = _weekly()
    [back] = google.from_json(everything(booking))
    assert back.recurrence is not None and booking.recurrence is not None
    assert len(back.recurrence.exdates) == 2
    assert [o.title for o in back.recurrence.overrides] == ["Stand-up (afternoon)"]
    window = window_around(booking, 60)
    assert live_instants(back, window) == live_instants(booking, window)


def test_override_off_the_rule_stands_on_an_rdate() -> None:
    start = datetime(2025, 3, 17, 9, 0, tzinfo=LONDON)
    stray = start + timedelta(days=2)  # a Wednesday: the weekly rule never gives it
    booking = _weekly(
        recurrence=Recurrence(
            rrule="FREQ=WEEKLY;COUNT=3",
            overrides=(Override(stray, stray + timedelta(hours=2), stray + timedelta(hours=3)),),
        )
    )
    body = google.to_json(booking)
    assert "RDATE;TZID=Europe/London:20250319T090000" in body["recurrence"]  # type: ignore[operator]
    [back] = google.from_json(everything(booking))
    window = window_around(booking, 30)
    assert live_instants(back, window) == live_instants(booking, window)


def test_fold_instants_are_written_in_utc() -> None:
    """01:30 happens twice on 26 Oct 2025 in London; the second one needs a UTC value."""
    start = datetime(2025, 10, 19, 1, 30, tzinfo=LONDON)
    second = datetime(2025, 10, 26, 1, 30, tzinfo=LONDON, fold=1)
    booking = _weekly(
        start=start,
        end=start + timedelta(minutes=30),
        recurrence=Recurrence(rrule="FREQ=DAILY;COUNT=3", rdates=(second,)),
    )
    lines = google.recurrence_lines(booking)
    assert "RDATE:20251026T013000Z" in lines
    [back] = google.from_json(everything(booking))
    assert back == booking


def test_all_day_bookings_are_written_as_dates_and_read_back() -> None:
    day = datetime(2025, 6, 2, 0, 0, tzinfo=LONDON)
    booking = _weekly(
        start=day,
        end=day + timedelta(days=1),
        recurrence=Recurrence(
            rrule="FREQ=WEEKLY;UNTIL=20250623T225959Z",
            exdates=(day + timedelta(weeks=1),),
        ),
    )
    body = google.to_json(booking)
    assert body["start"] == {"date": "2025-06-02"}
    assert body["end"] == {"date": "2025-06-03"}
    assert body["recurrence"] == [
        "RRULE:FREQ=WEEKLY;UNTIL=20250623",
        "EXDATE;VALUE=DATE:20250609",
    ]
    [back] = google.from_json(everything(booking))
    assert back.timezone == "Europe/London"
    window = window_around(booking, 60)
    assert live_instants(back, window) == live_instants(booking, window)
    assert live_instants(back, window) == expanded_by_icalendar(everything(booking), window, LONDON)


def test_long_extra_fields_are_split_across_tags_and_restored() -> None:
    booking = _weekly(extra=(("notes", "x" * 3000), ("CoworkerId", "1")))
    booking = booking.evolve(extra=tuple(sorted(booking.extra)))
    tags = google.to_json(booking)["extendedProperties"]["private"]  # type: ignore[index]
    assert all(len(value) <= google.MAX_TAG_VALUE for value in tags.values())
    [back] = google.from_json(everything(booking))
    assert back.extra == booking.extra


def test_a_tag_google_would_truncate_is_refused() -> None:
    with pytest.raises(InvalidValue) as caught:
        google.to_json(_weekly(key="k" * 2000))
    assert caught.value.field == f"extendedProperties.private.{google.TAG_KEY}"


# --------------------------------------------------------------------------- properties


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bookings())
def test_round_trip_is_identity(booking: Booking) -> None:
    expected = booking
    if booking.status is BookingStatus.CANCELLED and booking.recurrence is not None:
        # Deleting a series deletes its exceptions: Google holds none for a cancelled booking.
        expected = booking.evolve(recurrence=replace(booking.recurrence, overrides=()))
    assert google.from_json(everything(booking)) == [expected]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bookings())
def test_written_recurrence_expands_like_the_booking(booking: Booking) -> None:
    window = window_around(booking)
    expected = live_instants(booking.evolve(status=BookingStatus.CONFIRMED), window)
    bodies: list[dict[str, Any]] = everything(booking.evolve(status=BookingStatus.CONFIRMED))
    assert expanded_by_icalendar(bodies, window, booking.zone) == expected
