"""Chunk rendering and feed text: privacy, buffers, injection, folding, the four readers."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar
import pytest
import vobject
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.feeds.render import (
    LINE_OCTETS,
    concatenate,
    escape_text,
    feed_booking,
    feed_header,
    feed_window,
    fold_line,
    ical_duration,
    render_booking,
    render_bookings,
    stamped,
    vtimezone,
    zone_range,
)
from bridge.model import (
    Booking,
    BookingStatus,
    BufferMode,
    Buffers,
    Override,
    Person,
    Privacy,
    Recurrence,
    Window,
)
from mappings.expansion import live_instants
from tests.feeds.parsers import READERS

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
STAMP = datetime(2025, 3, 1, 12, tzinfo=UTC)
WINDOW = Window(datetime(2025, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC))

SECRETS = {
    "title": "Acquisition of Globex",
    "description": "Bring the NDA; door code 4711",
    "organizer_name": "Ada Lovelace",
    "organizer_email": "ada@example.com",
    "phone": "+44 20 7946 0123",
    "attendee": "Grace Hopper",
    "attendee_email": "grace@example.org",
    "key": "booking-key-8675309",
    "resource": "resource-31337",
    "extra": "coworker-99731",
}


def booking(key: str = "b1", **changes: object) -> Booking:
    start = datetime(2025, 3, 10, 9, tzinfo=LONDON)
    base = Booking(
        "hq", key, "r1", start, start + timedelta(hours=1), "Europe/London", title="Meeting"
    )
    return base.evolve(**changes)


def secret_booking(key: str = SECRETS["key"]) -> Booking:
    start = datetime(2025, 3, 10, 9, tzinfo=LONDON)
    return Booking(
        "hq",
        key,
        SECRETS["resource"],
        start,
        start + timedelta(hours=1),
        "Europe/London",
        title=SECRETS["title"],
        description=SECRETS["description"],
        organizer=Person(SECRETS["organizer_email"], SECRETS["organizer_name"], SECRETS["phone"]),
        attendees=(Person(SECRETS["attendee_email"], SECRETS["attendee"]),),
        private=True,
        buffers=Buffers(timedelta(minutes=15), timedelta(minutes=10)),
        recurrence=Recurrence(
            rrule="FREQ=WEEKLY;COUNT=5",
            overrides=(
                Override(
                    datetime(2025, 3, 17, 9, tzinfo=LONDON),
                    datetime(2025, 3, 17, 10, tzinfo=LONDON),
                    datetime(2025, 3, 17, 11, tzinfo=LONDON),
                    title=SECRETS["title"] + " (moved)",
                    description=SECRETS["description"],
                ),
            ),
        ),
        version="v-1234567",
        extra=(("CoworkerId", SECRETS["extra"]),),
    )


def feed_of(
    bookings: list[Booking],
    *,
    privacy: Privacy = Privacy.BUSY,
    buffers: BufferMode = BufferMode.HIDDEN,
    name: str = "Callisto",
) -> bytes:
    """A whole feed built the way the publisher builds it."""
    chunks, tzids, years = [], {}, []
    for rendered in render_bookings(bookings, room_id="callisto", privacy=privacy, buffers=buffers):
        if rendered is None:
            continue
        chunks.append(stamped(rendered.template, STAMP, 0))
        tzids.update(dict.fromkeys(rendered.tzids))
        years.append((rendered.first_year, rendered.last_year))
    first, last = zone_range((y[0] for y in years), (y[1] for y in years))
    zones = [vtimezone(tzid, first, last) for tzid in tzids]
    return concatenate(feed_header(name, timedelta(minutes=5)), zones, chunks)


def expected(
    bookings: list[Booking], window: Window = WINDOW
) -> Counter[tuple[datetime, datetime]]:
    return Counter(pair for b in bookings for pair in live_instants(b, window))


# --- privacy ---------------------------------------------------------------------------------


def test_a_busy_feed_shows_nothing_from_the_booking_but_its_times() -> None:
    body = feed_of([secret_booking()], privacy=Privacy.BUSY, buffers=BufferMode.SEPARATE)
    text = body.decode()
    for name, secret in SECRETS.items():
        assert secret not in text, name
        assert secret.split()[0] not in text, name
    assert "CLASS" not in text  # not even that the booking is private
    assert "X-ROOMBRIDGE" not in text
    summaries = {str(e["SUMMARY"]) for e in icalendar.Calendar.from_ical(body).walk("VEVENT")}
    assert summaries == {"Busy"}


def test_titles_shows_titles_of_public_bookings_only() -> None:
    public = secret_booking("public").evolve(private=False)
    body = feed_of([public, secret_booking("private")], privacy=Privacy.TITLES)
    text = body.decode()
    summaries = Counter(
        str(e["SUMMARY"]) for e in icalendar.Calendar.from_ical(body).walk("VEVENT")
    )
    # The public series (master + moved occurrence) shows titles, the private one stays busy.
    assert summaries == {SECRETS["title"]: 1, SECRETS["title"] + " (moved)": 1, "Busy": 2}
    for name in ("description", "organizer_email", "organizer_name", "phone", "attendee"):
        assert SECRETS[name] not in text, name


def test_full_shows_description_and_people() -> None:
    body = feed_of([secret_booking().evolve(private=False)], privacy=Privacy.FULL)
    event = icalendar.Calendar.from_ical(body).walk("VEVENT")[0]
    assert str(event["DESCRIPTION"]) == SECRETS["description"]
    assert str(event["ORGANIZER"]) == "mailto:" + SECRETS["organizer_email"]
    assert str(event["ORGANIZER"].params["CN"]) == SECRETS["organizer_name"]
    assert SECRETS["key"] not in body.decode()  # UIDs are opaque at every level


# --- what each booking becomes ---------------------------------------------------------------


def test_recurring_booking_stays_one_master_with_its_overrides() -> None:
    series = secret_booking()
    body = feed_of([series])
    events = icalendar.Calendar.from_ical(body).walk("VEVENT")
    assert len(events) == 2
    assert str(events[0]["RRULE"].to_ical().decode()) == "FREQ=WEEKLY;COUNT=5"
    assert "RECURRENCE-ID" in events[1] and events[0]["UID"] == events[1]["UID"]


def test_cancelled_occurrences_become_exdates_and_cancelled_bookings_vanish() -> None:
    rid = datetime(2025, 3, 17, 9, tzinfo=LONDON)
    series = booking(
        recurrence=Recurrence(
            rrule="FREQ=WEEKLY;COUNT=4",
            overrides=(
                Override(rid, rid, rid + timedelta(hours=1), status=BookingStatus.CANCELLED),
            ),
        )
    )
    shown = feed_booking(series)
    assert shown is not None and shown.recurrence is not None
    assert shown.recurrence.overrides == () and shown.recurrence.exdates == (rid,)
    assert live_instants(shown, WINDOW) == live_instants(series, WINDOW)
    assert feed_booking(booking(status=BookingStatus.CANCELLED)) is None
    assert (
        render_booking(
            booking(status=BookingStatus.CANCELLED),
            room_id="r",
            privacy=Privacy.BUSY,
            buffers=BufferMode.HIDDEN,
        )
        is None
    )
    body = feed_of([series])
    assert b"STATUS:CANCELLED" not in body and b"EXDATE" in body


def test_tentative_bookings_stay_tentative() -> None:
    body = feed_of([booking(status=BookingStatus.TENTATIVE)])
    assert str(icalendar.Calendar.from_ical(body).walk("VEVENT")[0]["STATUS"]) == "TENTATIVE"


@pytest.mark.parametrize("mode", list(BufferMode))
def test_buffers_follow_the_room_mode(mode: BufferMode) -> None:
    with_buffers = booking(buffers=Buffers(timedelta(minutes=15), timedelta(minutes=30)))
    found = READERS["icalendar"](feed_of([with_buffers], buffers=mode), WINDOW.start, WINDOW.end)
    start = with_buffers.start.astimezone(UTC)
    end = with_buffers.end.astimezone(UTC)
    setup, cleanup = start - timedelta(minutes=15), end + timedelta(minutes=30)
    wanted = {
        BufferMode.SEPARATE: {(setup, start), (start, end), (end, cleanup)},
        BufferMode.MERGED: {(setup, cleanup)},
        BufferMode.HIDDEN: {(start, end)},
    }[mode]
    assert set(found) == wanted


def test_the_same_booking_renders_the_same_text_and_uid_per_room() -> None:
    first = render_booking(booking(), room_id="a", privacy=Privacy.BUSY, buffers=BufferMode.HIDDEN)
    again = render_booking(booking(), room_id="a", privacy=Privacy.BUSY, buffers=BufferMode.HIDDEN)
    other = render_booking(booking(), room_id="b", privacy=Privacy.BUSY, buffers=BufferMode.HIDDEN)
    assert first is not None and again is not None and other is not None
    assert first == again
    assert first.template != other.template  # the UID differs per room


def test_stamping_sets_dtstamp_and_sequence_in_every_event() -> None:
    rendered = render_booking(
        secret_booking(), room_id="r", privacy=Privacy.BUSY, buffers=BufferMode.SEPARATE
    )
    assert rendered is not None
    events = icalendar.Calendar.from_ical(
        concatenate(
            feed_header("x", timedelta(hours=1)), [], [stamped(rendered.template, STAMP, 7)]
        )
    ).walk("VEVENT")
    assert len(events) == 6  # booking, setup, cleanup: a master and a moved occurrence each
    assert {e["DTSTAMP"].dt for e in events} == {STAMP}
    assert {int(e["SEQUENCE"]) for e in events} == {7}


def test_a_batch_renders_exactly_like_one_by_one() -> None:
    bookings = [
        secret_booking(),
        booking("b2"),
        booking("b3", status=BookingStatus.CANCELLED),
        booking(
            "b4",
            timezone="America/New_York",
            start=datetime(2025, 3, 9, 1, 30, tzinfo=NEW_YORK),
            end=datetime(2025, 3, 9, 3, 30, tzinfo=NEW_YORK),
        ),
    ]
    choices = {"room_id": "r", "privacy": Privacy.TITLES, "buffers": BufferMode.SEPARATE}
    assert render_bookings(bookings, **choices) == [render_booking(b, **choices) for b in bookings]


# --- injection, escaping, folding ------------------------------------------------------------

HOSTILE_TITLES = [
    "Team\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nSUMMARY:Injected\r\nDTSTART:20250101T000000Z",
    "a;b,c\\d:e",
    "END:VCALENDAR",
    "Line\nbreak\rand\r\nmore",
    "Ünïcödé ☕ " * 20,
    "\x00\x07control\x1bchars",
    "x" * 300,
]


@pytest.mark.parametrize("title", HOSTILE_TITLES)
@pytest.mark.parametrize("reader", sorted(READERS))
def test_hostile_titles_cannot_break_or_inject(title: str, reader: str) -> None:
    bookings = [
        booking(
            "hostile", title=title, description=title, organizer=Person("x@example.com", title)
        ),
        booking(
            "plain",
            start=datetime(2025, 3, 11, 9, tzinfo=LONDON),
            end=datetime(2025, 3, 11, 10, tzinfo=LONDON),
        ),
    ]
    body = feed_of(bookings, privacy=Privacy.FULL)
    assert_well_formed(body)
    found = READERS[reader](body, WINDOW.start, WINDOW.end)
    assert found == expected(bookings)
    events = icalendar.Calendar.from_ical(body).walk("VEVENT")
    assert len(events) == 2
    clean = title.replace("\r\n", "\n").replace("\r", "\n")
    clean = "".join(c for c in clean if c in "\n\t" or (ord(c) >= 32 and ord(c) != 127))
    assert str(events[0]["SUMMARY"]) == clean
    assert str(events[0]["DESCRIPTION"]) == clean


def assert_well_formed(body: bytes) -> None:
    """CRLF line ends only, every physical line at most 75 octets, valid UTF-8."""
    assert body.endswith(b"END:VCALENDAR\r\n")
    body.decode("utf-8")
    lines = body.split(b"\r\n")
    assert b"\n" not in body.replace(b"\r\n", b"") and b"\r" not in body.replace(b"\r\n", b"")
    assert all(len(line) <= LINE_OCTETS for line in lines)
    unfolded = body.replace(b"\r\n ", b"").split(b"\r\n")
    begins = [line for line in unfolded if line.startswith(b"BEGIN:")]
    ends = [line for line in unfolded if line.startswith(b"END:")]
    assert len(begins) == len(ends)


@settings(max_examples=150, deadline=None)
@given(st.text(min_size=0, max_size=400))
def test_folding_keeps_the_line_and_the_limit(text: str) -> None:
    line = "SUMMARY:" + escape_text(text)
    folded = fold_line(line)
    pieces = folded.encode("utf-8").split(b"\r\n")
    assert all(len(piece) <= LINE_OCTETS for piece in pieces)
    assert all(piece.startswith(b" ") for piece in pieces[1:])
    assert folded.replace("\r\n ", "") == line


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1, max_size=80))
def test_calendar_name_round_trips_through_every_reader(name: str) -> None:
    body = feed_of([booking()], name=name)
    assert_well_formed(body)
    cleaned = "".join(
        c
        for c in name.replace("\r\n", "\n").replace("\r", "\n")
        if c in "\n\t" or (ord(c) >= 32 and ord(c) != 127)
    )
    # vobject unescapes X- and RFC 7986 TEXT properties (icalendar keeps them raw).
    calendar = vobject.readOne(body.decode())
    assert calendar.contents["x-wr-calname"][0].value == cleaned
    assert calendar.contents["name"][0].value == cleaned
    for reader in READERS.values():
        assert reader(body, WINDOW.start, WINDOW.end) == expected([booking()])


def test_header_sets_name_refresh_and_ttl() -> None:
    body = feed_of([booking()], name="Callisto, 2nd floor")
    assert b"X-WR-CALNAME:Callisto\\, 2nd floor\r\n" in body
    calendar = icalendar.Calendar.from_ical(body)
    assert calendar["X-PUBLISHED-TTL"] == "PT5M"
    assert calendar["REFRESH-INTERVAL"].dt == timedelta(minutes=5)
    assert calendar["REFRESH-INTERVAL"].params["VALUE"] == "DURATION"


@pytest.mark.parametrize(
    ("length", "text"),
    [
        (timedelta(minutes=5), "PT5M"),
        (timedelta(hours=1, seconds=30), "PT1H30S"),
        (timedelta(days=1, hours=2), "P1DT2H"),
        (timedelta(days=2), "P2D"),
        (timedelta(0), "PT0S"),
    ],
)
def test_durations(length: timedelta, text: str) -> None:
    assert ical_duration(length) == text


def test_window_is_day_aligned_and_stable_through_the_day() -> None:
    morning = feed_window(datetime(2025, 3, 3, 0, 5, tzinfo=UTC), 30, 365)
    evening = feed_window(datetime(2025, 3, 3, 23, 55, tzinfo=UTC), 30, 365)
    assert morning == evening
    assert morning.start == datetime(2025, 2, 1, tzinfo=UTC)
    assert morning.end == datetime(2026, 3, 4, tzinfo=UTC)


# --- the four readers agree with the bookings -------------------------------------------------


def varied_bookings() -> list[Booking]:
    """Singles, DST edges, series with moved, deleted and cancelled occurrences, two zones."""
    fall_back = datetime(2025, 10, 26, 1, 30, tzinfo=LONDON, fold=1)  # the second 01:30
    rid = datetime(2025, 3, 24, 9, tzinfo=LONDON)
    return [
        booking("single"),
        booking(
            "tentative",
            status=BookingStatus.TENTATIVE,
            start=datetime(2025, 3, 30, 0, 30, tzinfo=LONDON),
            end=datetime(2025, 3, 30, 3, 0, tzinfo=LONDON),
        ),
        booking("fold", start=fall_back, end=fall_back + timedelta(hours=1)),
        # Ends in the first 01:45 of the repeated hour (vobject alone would read the second).
        booking(
            "ends-in-repeated-hour",
            start=datetime(2025, 10, 26, 0, 30, tzinfo=LONDON),
            end=datetime(2025, 10, 26, 1, 45, tzinfo=LONDON),
        ),
        # Dates without a rule (the ``ical`` library alone would drop the first one).
        booking(
            "dates-only",
            start=datetime(2025, 5, 3, 9, tzinfo=LONDON),
            end=datetime(2025, 5, 3, 17, tzinfo=LONDON),
            recurrence=Recurrence(
                rdates=(
                    datetime(2025, 5, 4, 9, tzinfo=LONDON),
                    datetime(2025, 5, 5, 10, tzinfo=LONDON),
                )
            ),
        ),
        booking(
            "weekly",
            recurrence=Recurrence(
                rrule="FREQ=WEEKLY;BYDAY=MO,WE",
                exdates=(datetime(2025, 3, 12, 9, tzinfo=LONDON),),
                overrides=(
                    Override(rid, rid + timedelta(hours=3), rid + timedelta(hours=5)),
                    Override(
                        rid + timedelta(days=7),
                        rid + timedelta(days=7),
                        rid + timedelta(days=7, hours=1),
                        status=BookingStatus.CANCELLED,
                    ),
                ),
            ),
        ),
        booking(
            "new-york",
            timezone="America/New_York",
            start=datetime(2025, 1, 6, 17, tzinfo=NEW_YORK),
            end=datetime(2025, 1, 6, 18, 30, tzinfo=NEW_YORK),
            recurrence=Recurrence(rrule="FREQ=MONTHLY;BYDAY=1MO;UNTIL=20251231T235959Z"),
        ),
        booking(
            "daily-count",
            recurrence=Recurrence(rrule="FREQ=DAILY;COUNT=10"),
            buffers=Buffers(timedelta(minutes=10), timedelta(minutes=5)),
        ),
    ]


@pytest.mark.parametrize("reader", sorted(READERS))
def test_every_reader_sees_exactly_the_bookings_occurrences(reader: str) -> None:
    bookings = varied_bookings()
    body = feed_of(bookings)
    assert_well_formed(body)
    assert READERS[reader](body, WINDOW.start, WINDOW.end) == expected(bookings)
