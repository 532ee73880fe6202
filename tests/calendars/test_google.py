"""The Google Calendar backend against the Google Calendar emulator.

The central property: any object the bridge writes (``mappings.ical.booking_to_objects`` for
any booking, buffers included) reads back from Google with the same content hash, so the
bridge's own writes are never mistaken for edits, while an edit made in Google changes it.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.calendars.base import AlreadyExists, CalendarError, NotFound, PreconditionFailed
from bridge.calendars.google import (
    GoogleCalendar,
    RequestBudget,
    RetryPolicy,
    build_google_calendar,
    shared_budget,
)
from bridge.calendars.google_events import event_id_for_uid, render_series, series_write
from bridge.config import GoogleConfig
from bridge.emulators.google import FaultKind, FaultPlan
from bridge.errors import ConfigError
from bridge.model import (
    Booking,
    BookingStatus,
    BufferMode,
    Buffers,
    Override,
    Person,
    Privacy,
    Recurrence,
)
from bridge.sync.engine import is_bridge_uid
from mappings.ical import booking_to_objects, calendar_to_bookings, content_hash
from tests.mappings.test_ical import bookings
from tests.plugins.google import GOOGLE_ADMIN, GoogleWorld, Sleeps

LONDON = ZoneInfo("Europe/London")
START = datetime(2025, 3, 17, 9, 0, tzinfo=LONDON)  # two weeks before London's DST change

buffer_modes = st.sampled_from(BufferMode)
privacies = st.sampled_from(Privacy)


@st.composite
def live_bookings(draw: st.DrawFn) -> Booking:
    """Live bookings, recurring ones rich in the overrides Google makes hard: cancelled
    instances, overrides of excluded instances, and overrides the rule does not produce."""
    booking = draw(bookings().filter(lambda b: b.status is not BookingStatus.CANCELLED))
    recurrence = booking.recurrence
    if recurrence is None:
        return booking
    overrides = {
        o.recurrence_id: replace(o, status=BookingStatus.CANCELLED) if draw(st.booleans()) else o
        for o in recurrence.overrides
    }
    if draw(st.booleans()):
        rid = booking.start + timedelta(
            days=draw(st.integers(1, 30)), hours=draw(st.integers(1, 5))
        )
        shift = timedelta(minutes=15 * draw(st.integers(-8, 8)))
        overrides.setdefault(
            rid, Override(rid, rid + shift, rid + shift + booking.duration, title="Extra")
        )
    return booking.evolve(
        recurrence=replace(recurrence, overrides=tuple(overrides[k] for k in sorted(overrides)))
    )


def weekly(**changes: Any) -> Booking:
    booking = Booking(
        provider="hq",
        key="5e41e5-77",
        resource="287977693",
        start=START,
        end=START + timedelta(hours=1),
        timezone="Europe/London",
        title="Weekly planning",
        description="Room set for 12",
        organizer=Person("ada@example.com", "Ada Lovelace", "+44 20 7946 0000"),
        attendees=(Person("bob@example.com", "Bob"),),
        buffers=Buffers(timedelta(minutes=15), timedelta(minutes=10)),
        recurrence=Recurrence(
            rrule="FREQ=WEEKLY;COUNT=8",
            exdates=(START + timedelta(weeks=1),),
            overrides=(
                Override(
                    START + timedelta(weeks=2),
                    START + timedelta(weeks=2, days=1),
                    START + timedelta(weeks=2, days=1, hours=2),
                    title="Moved to Wednesday",
                ),
                Override(
                    START + timedelta(weeks=3),
                    START + timedelta(weeks=3),
                    START + timedelta(weeks=3, hours=1),
                    status=BookingStatus.CANCELLED,
                ),
            ),
        ),
    )
    return booking.evolve(**changes)


def single(**changes: Any) -> Booking:
    booking = weekly(recurrence=None, buffers=Buffers(), key="1040617591")
    return booking.evolve(**changes)


def written(booking: Booking, buffers: BufferMode = BufferMode.SEPARATE) -> list[Any]:
    return booking_to_objects(booking, buffers=buffers)


# ----- the translation alone --------------------------------------------------------------------


def test_event_ids_are_base32hex_and_deterministic():
    uid = "roombridge-hq-5e41e5-77"
    event_id = event_id_for_uid(uid)
    assert event_id == event_id_for_uid(uid) != event_id_for_uid(uid + "-setup")
    assert set(event_id) <= set("0123456789abcdefghijklmnopqrstuv") and 5 <= len(event_id) <= 1024


def test_overrides_become_instance_writes_and_records():
    (obj, *_buffers) = written(weekly())
    write = series_write(obj.ics)
    assert write.uid == obj.uid and write.event_id == event_id_for_uid(obj.uid)
    assert write.master["recurrence"] == [
        "RRULE:FREQ=WEEKLY;COUNT=8",
        "EXDATE;TZID=Europe/London:20250324T090000",
    ]
    assert write.master["start"] == {
        "dateTime": "2025-03-17T09:00:00+00:00",
        "timeZone": "Europe/London",
    }
    private = write.master["extendedProperties"]["private"]
    assert private["roombridgeUid"] == obj.uid
    assert "X-ROOMBRIDGE-KEY;VALUE=TEXT:5e41e5-77" in private["roombridgeIcs"]
    assert "ATTENDEE" in private["roombridgeIcs"] and "attendees" not in write.master
    moved, cancelled = write.instances
    assert moved.body is not None and moved.body["summary"] == "Moved to Wednesday"
    assert moved.body["start"]["dateTime"] == "2025-04-01T09:00:00+01:00"
    assert cancelled.cancelled and "roombridgeRecords" in private


def test_a_wall_time_in_a_dst_gap_reads_back_in_its_own_words():
    """``mappings.ical`` may write 01:00 on London's spring-forward night (it means 02:00 BST)."""
    gap_end = datetime(2024, 3, 31, 1, 0, tzinfo=LONDON)
    obj = written(single(start=gap_end - timedelta(hours=4), end=gap_end))[0]
    assert b"DTEND;TZID=Europe/London:20240331T010000" in obj.ics
    write = series_write(obj.ics)
    master = dict(write.master, id=write.event_id)
    assert content_hash(render_series(master, [])) == content_hash(obj.ics)
    moved = dict(master, end={"dateTime": "2024-03-31T03:00:00+01:00", "timeZone": "Europe/London"})
    assert b"DTEND;TZID=Europe/London:20240331T030000" in render_series(moved, [])


def test_what_google_cannot_hold_is_refused():
    floating = (
        b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:x\r\n"
        b"DTSTART:20250101T090000\r\nDTEND:20250101T100000\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    with pytest.raises(ValueError, match="floating"):
        series_write(floating)
    huge = single(extra=(("Blob", "x" * 40_000),))
    with pytest.raises(ValueError, match="extended properties"):
        series_write(written(huge)[0].ics)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(booking=live_bookings(), mode=buffer_modes, privacy=privacies)
def test_rendering_what_google_would_store_gives_back_the_hash(
    booking: Booking, mode: BufferMode, privacy: Privacy
):
    """Fast check without HTTP: the bodies, stored as Google stores them, render back."""
    for obj in booking_to_objects(booking, privacy=privacy, buffers=mode):
        write = series_write(obj.ics)
        master = dict(write.master, id=write.event_id)
        exceptions = [
            {
                "id": f"{write.event_id}_{index}",
                "status": "cancelled",
                "recurringEventId": write.event_id,
                "originalStartTime": {"dateTime": change.original_start.isoformat()},
            }
            if change.body is None
            else dict(change.body, id=f"{write.event_id}_{index}")
            for index, change in enumerate(write.instances)
        ]
        assert content_hash(render_series(master, exceptions)) == content_hash(obj.ics)


# ----- echo suppression through the emulator ----------------------------------------------------


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(booking=live_bookings(), mode=buffer_modes)
def test_every_object_the_bridge_writes_reads_back_with_its_hash(
    make_google_calendar: Callable[..., GoogleCalendar], booking: Booking, mode: BufferMode
):
    calendar = make_google_calendar()
    reader = make_google_calendar()
    booking = booking.evolve(key=f"{booking.key}-{next(UNIQUE)}")
    for obj in booking_to_objects(booking, buffers=mode):
        created = calendar.create(obj.uid, obj.ics)
        assert content_hash(created.ics) == content_hash(obj.ics)
        read = reader.get(created.href)
        assert (read.uid, read.etag) == (obj.uid, created.etag)
        assert content_hash(read.ics) == content_hash(obj.ics), read.ics.decode()


UNIQUE = itertools.count()


def test_a_full_read_and_an_incremental_read_give_the_written_objects(
    make_google_calendar: Callable[..., GoogleCalendar],
):
    writer = make_google_calendar()
    start = writer.read_changes(None)
    assert (start.changed, start.full, start.requests) == ([], True, 1)
    objects = written(weekly()) + written(single())
    for obj in objects:
        writer.create(obj.uid, obj.ics)
    hashes = {obj.uid: content_hash(obj.ics) for obj in objects}
    incremental = writer.read_changes(start.cursor)
    assert {o.uid: content_hash(o.ics) for o in incremental.changed} == hashes
    assert incremental.requests == 1 and not incremental.full
    fresh = make_google_calendar()
    full = fresh.read_changes(None)
    assert {o.uid: content_hash(o.ics) for o in full.changed} == hashes
    assert full.requests == 1
    assert {o.href: o.etag for o in full.changed} == {o.href: o.etag for o in incremental.changed}
    noop = fresh.read_changes(full.cursor)
    assert (noop.changed, noop.deleted, noop.requests) == ([], [], 1)


def edits(world: GoogleWorld, master_id: str) -> dict[str, Callable[[], object]]:
    """Ways a person can change a bridge event in Google."""
    room = world.room
    emulator = world.emulator
    second = f"{master_id}_20250331T080000Z"
    later = {"dateTime": "2025-04-28T11:00:00+01:00", "timeZone": "Europe/London"}
    later_end = {"dateTime": "2025-04-28T12:00:00+01:00", "timeZone": "Europe/London"}
    return {
        "summary": lambda: emulator.edit_event(room, master_id, summary="Hijacked"),
        "description": lambda: emulator.edit_event(room, master_id, description="x"),
        "location": lambda: emulator.edit_event(room, master_id, location="Moon"),
        "time": lambda: emulator.edit_event(room, master_id, start=later, end=later_end),
        "zone only": lambda: emulator.edit_event(
            room,
            master_id,
            start={"dateTime": "2025-03-17T10:00:00+01:00", "timeZone": "Europe/Paris"},
        ),
        "status": lambda: emulator.edit_event(room, master_id, status="tentative"),
        "free": lambda: emulator.edit_event(room, master_id, transparency="transparent"),
        "private": lambda: emulator.edit_event(room, master_id, visibility="private"),
        "rule": lambda: emulator.edit_event(
            room, master_id, recurrence=["RRULE:FREQ=DAILY;COUNT=3"]
        ),
        "guest": lambda: emulator.edit_event(
            room, master_id, attendees=[{"email": "eve@example.com"}]
        ),
        "tag": lambda: emulator.edit_event(
            room,
            master_id,
            extendedProperties={"private": {"roombridgeIcs": "X-ROOMBRIDGE-KEY:other"}},
        ),
        "one instance moved": lambda: emulator.edit_event(room, second, start=later, end=later_end),
        "one instance renamed": lambda: emulator.edit_event(room, second, summary="Just once"),
        "one instance cancelled": lambda: emulator.delete_event(room, second),
        "cancelled instance back": lambda: emulator.edit_event(
            room, f"{master_id}_20250407T080000Z", status="confirmed"
        ),
    }


EDIT_NAMES = [
    "summary",
    "description",
    "location",
    "time",
    "zone only",
    "status",
    "free",
    "private",
    "rule",
    "guest",
    "tag",
    "one instance moved",
    "one instance renamed",
    "one instance cancelled",
    "cancelled instance back",
]


@pytest.mark.parametrize("edit", EDIT_NAMES)
def test_an_edit_made_in_google_changes_the_hash(
    google: GoogleWorld, make_google_calendar: Callable[..., GoogleCalendar], edit: str
):
    calendar = make_google_calendar()
    obj = written(weekly())[0]
    created = calendar.create(obj.uid, obj.ics)
    cursor = calendar.read_changes(None).cursor
    edits(google, created.href)[edit]()
    changes = calendar.read_changes(cursor)
    (changed,) = [o for o in changes.changed if o.href == created.href]
    assert content_hash(changed.ics) != content_hash(obj.ics)
    assert changed.etag != created.etag
    assert content_hash(make_google_calendar().get(created.href).ics) == content_hash(changed.ics)


def test_updates_rewrite_instances_and_read_back_exactly(
    make_google_calendar: Callable[..., GoogleCalendar],
):
    calendar = make_google_calendar()
    before = written(weekly())[0]
    created = calendar.create(before.uid, before.ics)
    recurrence = weekly().recurrence
    assert recurrence is not None
    # Drop the move, un-cancel week 3, cancel week 5, retitle week 6.
    changed = weekly(
        title="Weekly planning (new room)",
        recurrence=Recurrence(
            rrule="FREQ=WEEKLY;COUNT=8",
            exdates=recurrence.exdates,
            overrides=(
                Override(
                    START + timedelta(weeks=5),
                    START + timedelta(weeks=5),
                    START + timedelta(weeks=5, hours=1),
                    status=BookingStatus.CANCELLED,
                ),
                Override(
                    START + timedelta(weeks=6),
                    START + timedelta(weeks=6),
                    START + timedelta(weeks=6, hours=1),
                    title="Offsite",
                ),
            ),
        ),
    )
    after = written(changed)[0]
    updated = calendar.update(created.href, after.ics, created.etag)
    assert content_hash(updated.ics) == content_hash(after.ics)
    fresh = make_google_calendar().get(created.href)
    assert content_hash(fresh.ics) == content_hash(after.ics)
    assert fresh.etag == updated.etag
    (booking,) = calendar_to_bookings(fresh.ics)
    assert booking.title == "Weekly planning (new room)"


def test_a_series_becoming_single_and_back(make_google_calendar: Callable[..., GoogleCalendar]):
    calendar = make_google_calendar()
    series = written(weekly())[0]
    created = calendar.create(series.uid, series.ics)
    alone = written(weekly(recurrence=None))[0]
    updated = calendar.update(created.href, alone.ics, created.etag)
    assert content_hash(make_google_calendar().get(created.href).ics) == content_hash(alone.ics)
    again = calendar.update(created.href, series.ics, updated.etag)
    assert content_hash(make_google_calendar().get(created.href).ics) == content_hash(series.ics)
    assert again.etag == make_google_calendar().get(created.href).etag


# ----- idempotency and concurrency --------------------------------------------------------------


def test_a_create_whose_reply_was_lost_is_reported_as_existing(
    google: GoogleWorld, google_calendar: GoogleCalendar
):
    obj = written(single())[0]
    google.emulator.fail_next(FaultKind.LOST_REPLY)
    with pytest.raises(AlreadyExists) as raised:
        google_calendar.create(obj.uid, obj.ics)
    assert raised.value.existing is not None
    assert content_hash(raised.value.existing.ics) == content_hash(obj.ics)
    assert len(google.emulator.events(google.room)) == 1


def test_creating_a_deleted_event_again_restores_it_under_its_id(
    google: GoogleWorld, google_calendar: GoogleCalendar
):
    obj = written(weekly())[0]
    created = google_calendar.create(obj.uid, obj.ics)
    google_calendar.delete(created.href, created.etag)
    google_calendar.delete(created.href, None)  # already gone: fine
    with pytest.raises(NotFound):
        google_calendar.get(created.href)
    again = google_calendar.create(obj.uid, obj.ics)
    assert again.href == created.href
    assert content_hash(google_calendar.get(created.href).ics) == content_hash(obj.ics)
    assert [
        e["status"] for e in google.emulator.events(google.room) if e["id"] == created.href
    ] == ["confirmed"]


def test_stale_etags_are_precondition_failures(
    google: GoogleWorld, google_calendar: GoogleCalendar
):
    obj = written(single())[0]
    created = google_calendar.create(obj.uid, obj.ics)
    google.emulator.edit_event(google.room, created.href, summary="Someone else")
    newer = written(single(title="Newer"))[0]
    with pytest.raises(PreconditionFailed):
        google_calendar.update(created.href, newer.ics, created.etag)
    with pytest.raises(PreconditionFailed):
        google_calendar.delete(created.href, created.etag)
    current = google_calendar.get(created.href)
    assert google_calendar.update(created.href, newer.ics, current.etag).etag != current.etag


def test_an_instance_changed_since_the_read_is_a_precondition_failure(
    google: GoogleWorld, google_calendar: GoogleCalendar
):
    obj = written(weekly())[0]
    created = google_calendar.create(obj.uid, obj.ics)
    google.emulator.edit_event(google.room, f"{created.href}_20250407T080000Z", summary="x")
    google_calendar.get(created.href)  # this process now knows the instance changed
    with pytest.raises(PreconditionFailed):
        google_calendar.update(created.href, obj.ics, created.etag)


def test_an_expired_sync_token_becomes_a_full_read(
    google: GoogleWorld, google_calendar: GoogleCalendar
):
    kept, gone = written(single()), written(single(key="2", title="Other"))
    for obj in kept + gone:
        google_calendar.create(obj.uid, obj.ics)
    cursor = google_calendar.read_changes(None).cursor
    google.emulator.delete_event(google.room, event_id_for_uid(gone[0].uid))
    google.emulator.invalidate_sync_tokens(google.room)
    recovered = google_calendar.read_changes(cursor)
    assert recovered.full and recovered.deleted == []
    assert [o.uid for o in recovered.changed] == [kept[0].uid]
    assert recovered.requests == 2


def test_incremental_reads_fetch_a_series_this_process_has_not_seen(
    google: GoogleWorld, make_google_calendar: Callable[..., GoogleCalendar]
):
    writer = make_google_calendar()
    obj = written(weekly())[0]
    created = writer.create(obj.uid, obj.ics)
    cursor = writer.read_changes(None).cursor
    google.emulator.edit_event(google.room, f"{created.href}_20250331T080000Z", summary="Once")
    other = make_google_calendar()
    changes = other.read_changes(cursor)
    (series,) = changes.changed
    assert series.href == created.href and b"SUMMARY:Once" in series.ics
    assert changes.requests == 2  # the list, and the series by iCalUID


def test_deletions_arrive_as_hrefs(google: GoogleWorld, google_calendar: GoogleCalendar):
    obj = written(weekly())[0]
    created = google_calendar.create(obj.uid, obj.ics)
    cursor = google_calendar.read_changes(None).cursor
    google.emulator.delete_event(google.room, created.href)
    changes = google_calendar.read_changes(cursor)
    assert created.href in changes.deleted and changes.changed == []


def test_short_pages_are_followed_to_the_sync_token(
    google: GoogleWorld, google_calendar: GoogleCalendar
):
    objects = [
        written(
            single(
                key=f"k{i}",
                start=START + timedelta(hours=i),
                end=START + timedelta(hours=i, minutes=30),
            )
        )[0]
        for i in range(12)
    ]
    for obj in objects:
        google_calendar.create(obj.uid, obj.ics)
    google.emulator.set_short_pages()
    listing = google_calendar.read_changes(None)
    assert sorted(o.uid for o in listing.changed) == sorted(o.uid for o in objects)
    assert listing.cursor


# ----- retries, quota, tokens -------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        FaultKind.RATE_LIMIT,
        FaultKind.USER_RATE_LIMIT,
        FaultKind.TOO_MANY_REQUESTS,
        FaultKind.BACKEND_ERROR,
        FaultKind.UNAVAILABLE,
        FaultKind.TIMEOUT,
    ],
)
def test_quota_server_and_transport_errors_are_retried(
    google: GoogleWorld,
    make_google_calendar: Callable[..., GoogleCalendar],
    google_sleeps: Sleeps,
    fault: FaultKind,
):
    google.emulator.set_faults(FaultPlan(hang_seconds=0.2))
    calendar = make_google_calendar(timeout=1.0)
    google.emulator.fail_next(fault, fault)
    listing = calendar.read_changes(None)
    assert listing.full and calendar.retries == 2
    assert len(google_sleeps.waits) == 2
    assert all(0 <= wait <= 1.0 for wait in google_sleeps.waits)


def test_retry_after_is_honoured(
    google: GoogleWorld, google_calendar: GoogleCalendar, google_sleeps: Sleeps
):
    google.emulator.fail_next(FaultKind.TOO_MANY_REQUESTS, retry_after=7)
    google_calendar.read_changes(None)
    assert google_sleeps.waits and google_sleeps.waits[0] >= 7


def test_retries_give_up_with_the_last_error(
    google: GoogleWorld, google_calendar: GoogleCalendar, google_sleeps: Sleeps
):
    google.emulator.fail_next(*[FaultKind.UNAVAILABLE] * 5)
    with pytest.raises(CalendarError) as raised:
        google_calendar.read_changes(None)
    assert raised.value.status == 503 and "backendError" in str(raised.value)
    waits = google_sleeps.waits
    assert len(waits) == 4 and all(w <= 0.5 * 2**i for i, w in enumerate(waits))


def test_other_errors_are_not_retried(google: GoogleWorld, google_calendar: GoogleCalendar):
    with pytest.raises(NotFound):
        google_calendar.get("nosuchevent")
    assert google_calendar.retries == 0


def test_an_expired_access_token_is_renewed_and_the_request_repeated(
    google: GoogleWorld, google_calendar: GoogleCalendar
):
    google_calendar.read_changes(None)
    google.emulator.expire_tokens()
    assert google_calendar.read_changes(None).full
    assert google_calendar.token_request_count == 2
    assert google.emulator.token_grants() == {"issued": 2}


def test_the_budget_waits_instead_of_exceeding_the_window():
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    budget = RequestBudget(3, 10.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        assert budget.acquire() == 0
        now[0] += 1
    assert budget.acquire() == pytest.approx(7.0)
    assert waits == [pytest.approx(7.0)]
    assert shared_budget("Rooms@Example.com") is shared_budget("rooms@example.com")
    assert shared_budget("a@example.com") is not shared_budget("b@example.com")


def test_a_backend_spends_the_budget_on_every_api_request_but_not_on_tokens(
    make_google_calendar: Callable[..., GoogleCalendar],
):
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    budget = RequestBudget(5, 60.0, clock=lambda: now[0], sleep=sleep)
    calendar = make_google_calendar(budget=budget)
    for obj in written(weekly()):
        calendar.create(obj.uid, obj.ics)
    assert calendar.request_count > 5
    assert now[0] >= 60.0 * ((calendar.request_count - 1) // 5)


# ----- rooms, foreign events, decline -----------------------------------------------------------


def test_foreign_events_read_with_their_people_and_can_be_declined(
    google: GoogleWorld, google_calendar: GoogleCalendar
):
    invitation = google.emulator.seed_event(
        GOOGLE_ADMIN,
        {
            "summary": "Offsite prep",
            "start": {"dateTime": "2025-03-20T14:00:00+00:00", "timeZone": "Europe/London"},
            "end": {"dateTime": "2025-03-20T15:00:00+00:00", "timeZone": "Europe/London"},
            "attendees": [
                {"email": GOOGLE_ADMIN, "displayName": "Rooms Admin"},
                {"email": google.room, "resource": True},
            ],
        },
    )
    listing = google_calendar.read_changes(None)
    (foreign,) = listing.changed
    assert foreign.uid == invitation["iCalUID"] and not is_bridge_uid(foreign.uid)
    event = icalendar.Calendar.from_ical(foreign.ics).walk("VEVENT")[0]
    assert str(event["ORGANIZER"]) == f"mailto:{GOOGLE_ADMIN}"
    room_line = next(a for a in event["ATTENDEE"] if str(a) == f"mailto:{google.room}")
    assert (room_line.params["PARTSTAT"], room_line.params["CUTYPE"]) == ("ACCEPTED", "RESOURCE")
    answered = google_calendar.decline(
        foreign.href, foreign.etag, reason="Room closed for cleaning"
    )
    assert answered.href == foreign.href and answered.etag != foreign.etag
    organizer_view = google.emulator.event(GOOGLE_ADMIN, invitation["id"])
    assert organizer_view is not None
    room = next(a for a in organizer_view["attendees"] if a["email"] == google.room)
    assert (room["responseStatus"], room["comment"]) == ("declined", "Room closed for cleaning")
    changes = google_calendar.read_changes(listing.cursor)
    event = icalendar.Calendar.from_ical(changes.changed[0].ics).walk("VEVENT")[0]
    room_line = next(a for a in event["ATTENDEE"] if str(a) == f"mailto:{google.room}")
    assert room_line.params["PARTSTAT"] == "DECLINED"


def test_one_occurrence_of_a_recurring_invitation_can_be_declined(
    google: GoogleWorld, google_calendar: GoogleCalendar
):
    series = google.emulator.seed_event(
        GOOGLE_ADMIN,
        {
            "summary": "Stand-up",
            "start": {"dateTime": "2025-03-17T09:00:00+00:00", "timeZone": "Europe/London"},
            "end": {"dateTime": "2025-03-17T09:15:00+00:00", "timeZone": "Europe/London"},
            "recurrence": ["RRULE:FREQ=DAILY;COUNT=5"],
            "attendees": [{"email": GOOGLE_ADMIN}, {"email": google.room, "resource": True}],
        },
    )
    (invited,) = google_calendar.read_changes(None).changed
    third = datetime(2025, 3, 19, 9, 0, tzinfo=LONDON)
    declined = google_calendar.decline(
        invited.href, invited.etag, reason="Deep clean", occurrences=[third]
    )
    assert declined.etag != invited.etag
    answers = {
        item["originalStartTime"]["dateTime"][:10]: next(
            a["responseStatus"] for a in item["attendees"] if a["email"] == google.room
        )
        for item in google.emulator.expanded(GOOGLE_ADMIN)
        if item["recurringEventId"] == series["id"]
    }
    assert answers == {
        "2025-03-17": "accepted",
        "2025-03-18": "accepted",
        "2025-03-19": "declined",
        "2025-03-20": "accepted",
        "2025-03-21": "accepted",
    }
    with pytest.raises(PreconditionFailed):
        google_calendar.decline(invited.href, invited.etag, reason="stale")


def test_the_room_accepts_and_tags_its_copy_read_back_without_churn(
    google: GoogleWorld,
    google_calendar: GoogleCalendar,
    make_google_calendar: Callable[..., GoogleCalendar],
):
    invitation = google.emulator.seed_event(
        GOOGLE_ADMIN,
        {
            "summary": "Planning",
            "start": {"dateTime": "2025-03-20T14:00:00+00:00", "timeZone": "Europe/London"},
            "end": {"dateTime": "2025-03-20T15:00:00+00:00", "timeZone": "Europe/London"},
            "attendees": [{"email": GOOGLE_ADMIN}, {"email": google.room, "resource": True}],
        },
    )
    listing = google_calendar.read_changes(None)
    (invited,) = listing.changed
    with pytest.raises(PreconditionFailed):
        google_calendar.accept(invited.href, '"stale"', provider="hq", keys=["41"])
    accepted = google_calendar.accept(invited.href, invited.etag, provider="hq", keys=["41", "42"])
    event = icalendar.Calendar.from_ical(accepted.ics).walk("VEVENT")[0]
    tags = (str(event["X-ROOMBRIDGE-PROVIDER"]), str(event["X-ROOMBRIDGE-KEY"]))
    assert tags == ("hq", "41\\,42")  # TEXT values escape their commas
    copy = google.emulator.event(google.room, invitation["id"])
    assert copy is not None
    assert copy["extendedProperties"]["private"] == {
        "roombridgeProvider": "hq", "roombridgeKeys": "41,42"
    }
    organizer_view = google.emulator.event(GOOGLE_ADMIN, invitation["id"])
    assert organizer_view is not None and "extendedProperties" not in organizer_view
    # Another process reads the tags back, with the same text the answer returned.
    (again,) = make_google_calendar().read_changes(None).changed
    assert again.ics == accepted.ics
    with pytest.raises(CalendarError, match="organizer"):
        google_calendar.restore(accepted.href, accepted.etag, accepted.ics, reason="no")
    declined = google_calendar.decline(accepted.href, accepted.etag, reason="change refused")
    event = icalendar.Calendar.from_ical(declined.ics).walk("VEVENT")[0]
    assert "X-ROOMBRIDGE-KEY" not in event


def test_an_event_made_in_the_room_calendar_is_only_tagged(
    google: GoogleWorld, google_calendar: GoogleCalendar
):
    made = google.emulator.seed_event(
        google.room,
        {
            "summary": "Walk-in",
            "start": {"dateTime": "2025-03-21T14:00:00+00:00", "timeZone": "Europe/London"},
            "end": {"dateTime": "2025-03-21T15:00:00+00:00", "timeZone": "Europe/London"},
        },
        user=GOOGLE_ADMIN,
    )
    (read,) = google_calendar.read_changes(None).changed
    accepted = google_calendar.accept(read.href, read.etag, provider="hq", keys=["7"])
    event = icalendar.Calendar.from_ical(accepted.ics).walk("VEVENT")[0]
    assert str(event["X-ROOMBRIDGE-KEY"]) == "7"
    stored = google.emulator.event(google.room, made["id"])
    assert stored is not None and "attendees" not in stored
    with pytest.raises(CalendarError, match="not invited"):
        google_calendar.decline(accepted.href, accepted.etag, reason="taken")


def test_declining_an_event_without_the_room_is_an_error(google_calendar: GoogleCalendar):
    obj = written(single())[0]
    created = google_calendar.create(obj.uid, obj.ics)
    with pytest.raises(CalendarError, match="not invited"):
        google_calendar.decline(created.href, created.etag, reason="no room here")


def test_check_reaches_the_calendar(google: GoogleWorld, make_google_calendar: Callable[..., Any]):
    assert make_google_calendar().check() == {
        "id": google.room,
        "summary": "Callisto",
        "timeZone": "Europe/London",
    }
    with pytest.raises(NotFound):
        make_google_calendar("c_nowhere@resource.calendar.google.com").check()


def test_no_discovery_request_is_made(google: GoogleWorld, google_calendar: GoogleCalendar):
    google_calendar.check()
    assert all(r.route.startswith(("/calendar/v3/", "/token")) for r in google.emulator.requests)


# ----- configuration and secrets ----------------------------------------------------------------


def test_key_file_problems_are_config_errors_naming_the_file(google: GoogleWorld, tmp_path: Path):
    missing = google.config(key_file=tmp_path / "nope.json")
    with pytest.raises(ConfigError, match=r"nope\.json"):
        build_google_calendar(missing, google.room)
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    with pytest.raises(ConfigError, match="not JSON"):
        build_google_calendar(google.config(key_file=garbage), google.room)
    partial = tmp_path / "partial.json"
    info = json.loads(google.key_file.read_text())
    partial.write_text(json.dumps({k: v for k, v in info.items() if k != "token_uri"}))
    with pytest.raises(ConfigError, match="token_uri") as raised:
        build_google_calendar(google.config(key_file=partial), google.room)
    assert "PRIVATE KEY" not in str(raised.value)


def test_a_refused_token_is_an_error_without_secrets(
    google: GoogleWorld, make_google_calendar: Callable[..., GoogleCalendar]
):
    google.emulator.add_user("intern@example.com")
    calendar = make_google_calendar(config=google.config(subject="intern@example.com"))
    with pytest.raises(CalendarError, match="unauthorized_client") as raised:
        calendar.read_changes(None)
    key = json.loads(google.key_file.read_text())["private_key"]
    assert key.splitlines()[1] not in str(raised.value) + repr(calendar)
    assert "Credentials" not in repr(calendar)


def test_the_builder_names_nothing_secret_in_its_repr(google: GoogleWorld):
    config = GoogleConfig(
        name="workspace",
        service_account_file=google.key_file,
        subject=GOOGLE_ADMIN,
        api_endpoint=google.api_endpoint,
    )
    calendar = build_google_calendar(config, google.room, retry=RetryPolicy(attempts=1))
    assert repr(calendar) == f"GoogleCalendar({google.room!r})"
    calendar.close()
