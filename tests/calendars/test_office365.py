"""Microsoft 365 backend against the Graph emulator (msal against the TLS identity endpoint)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import icalendar
import pytest
import recurring_ical_events
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bridge.calendars.base import (
    AlreadyExists,
    CalendarError,
    NotFound,
    PreconditionFailed,
)
from bridge.calendars.graph_events import (
    Layout,
    StoredObject,
    decode_stored,
    encode_stored,
    plan_object,
)
from bridge.calendars.office365 import (
    MAILBOX_CONCURRENCY,
    MAX_ATTEMPTS,
    DeltaCursor,
    Office365Account,
    Office365Calendar,
    build_office365_calendar,
    parse_retry_after,
)
from bridge.emulators.graph import FaultKind, FaultPlan
from bridge.model import (
    Booking,
    BookingStatus,
    BufferMode,
    Buffers,
    Override,
    Privacy,
    Recurrence,
    Window,
)
from mappings.ical import booking_to_objects, content_hash
from tests.mappings.test_ical import NON_EMPTY_TEXT, TEXT, minutes, people, recurrences
from tests.plugins.graph import GRAPH_NOW, GRAPH_SECRET, ROOM, USER, GraphWorld

LONDON = ZoneInfo("Europe/London")
Make = Callable[..., Office365Calendar]


def booking(key: str = "1001", **changes: object) -> Booking:
    start = datetime(2025, 3, 12, 9, 0, tzinfo=LONDON)
    base = Booking(
        provider="hq",
        key=key,
        resource="287977693",
        start=start,
        end=start + timedelta(hours=1),
        timezone="Europe/London",
        title="Board meeting",
        description="Quarterly numbers",
    )
    return base.evolve(**changes)


def weekly(**changes: object) -> Booking:
    rid = datetime(2025, 3, 26, 9, 0, tzinfo=LONDON)
    return booking(
        "series-1",
        recurrence=Recurrence(
            rrule="FREQ=WEEKLY;COUNT=8",
            exdates=(datetime(2025, 3, 19, 9, 0, tzinfo=LONDON),),
            overrides=(
                Override(rid, rid + timedelta(hours=2), rid + timedelta(hours=3), title="Moved"),
            ),
        ),
        **changes,
    )


def irregular() -> Booking:
    """A series Graph has no pattern for (RDATEs): written as separate events."""
    return booking(
        "irregular",
        recurrence=Recurrence(
            rrule="FREQ=DAILY;COUNT=3",
            rdates=(datetime(2025, 3, 20, 15, 0, tzinfo=LONDON),),
        ),
    )


def only(b: Booking, buffers: BufferMode = BufferMode.HIDDEN) -> tuple[str, bytes]:
    (obj,) = booking_to_objects(b, buffers=buffers)
    return obj.uid, obj.ics


def spans(ics: bytes, window: Window) -> list[tuple[datetime, datetime]]:
    calendar = icalendar.Calendar.from_ical(ics)
    return sorted(
        (e["DTSTART"].dt.astimezone(UTC), e["DTEND"].dt.astimezone(UTC))
        for e in recurring_ical_events.of(calendar).between(window.start, window.end)
        if str(e.get("STATUS", "")).upper() != "CANCELLED"
    )


def graph_spans(graph: GraphWorld, mailbox: str = ROOM) -> list[tuple[datetime, datetime]]:
    window = graph.window()
    return [
        (s, e) for _id, s, e in graph.emulator.instance_spans(mailbox, window.start, window.end)
    ]


# ----- layouts ---------------------------------------------------------------------------------


def test_single_event_round_trip(office365: Office365Calendar, graph: GraphWorld):
    uid, ics = only(booking())
    written = office365.create(uid, ics)
    (event,) = graph.emulator.events(ROOM)
    assert written.href == event.id and written.etag == f'W/"{event.change_key}"'
    assert event.fields["subject"] == "Board meeting" and event.transaction_id
    assert event.fields["isReminderOn"] is False
    assert graph_spans(graph) == spans(ics, graph.window())
    assert content_hash(office365.get(written.href).ics) == content_hash(ics)


def test_series_gets_exceptions_and_deleted_occurrences(
    office365: Office365Calendar, graph: GraphWorld
):
    uid, ics = only(weekly())
    assert plan_object(uid, ics).layout is Layout.SERIES
    written = office365.create(uid, ics)
    (series,) = graph.emulator.events(ROOM)
    assert series.recurrence is not None and series.recurrence["pattern"]["type"] == "weekly"
    assert len(series.cancelled) == 1 and len(series.exceptions) == 1
    assert graph_spans(graph) == spans(ics, graph.window())
    assert written.etag == f'W/"{series.change_key}"'  # after the occurrence edits


def test_unrepresentable_series_becomes_one_object_of_separate_events(
    office365: Office365Calendar, graph: GraphWorld
):
    uid, ics = only(irregular())
    plan = plan_object(uid, ics)
    assert plan.layout is Layout.SEPARATE and "RDATE" in (plan.reason or "")
    written = office365.create(uid, ics)
    assert written.href == f"group:{uid}"
    events = graph.emulator.events(ROOM)
    assert len(events) == 4 and not any(e.is_series for e in events)
    assert graph_spans(graph) == spans(ics, graph.window())
    listing = office365.read_changes(None)
    assert [(o.href, o.uid) for o in listing.changed] == [(written.href, uid)]
    assert content_hash(listing.changed[0].ics) == content_hash(ics)
    office365.delete(written.href, listing.changed[0].etag)
    assert graph.emulator.events(ROOM) == []


# ----- echo suppression: what the bridge wrote reads back with the same hash -----------------


@st.composite
def window_bookings(draw: st.DrawFn) -> Booking:
    """Bookings of every shape, starting inside the tests' sync window."""
    zone_name = draw(st.sampled_from(("Europe/London", "America/New_York", "Australia/Sydney")))
    zone = ZoneInfo(zone_name)
    day = draw(st.dates(date(2025, 2, 20), date(2025, 12, 20)))
    start = datetime.combine(day, time(draw(st.sampled_from((0, 7, 9, 13, 22))), 0), zone)
    end = start + draw(minutes(15, 240))
    return Booking(
        provider=draw(st.sampled_from(("hq", "nexudus"))),
        key=draw(NON_EMPTY_TEXT),
        resource=draw(TEXT),
        start=start,
        end=end,
        timezone=zone_name,
        status=draw(st.sampled_from([BookingStatus.CONFIRMED, BookingStatus.TENTATIVE])),
        title=draw(TEXT),
        description=draw(TEXT),
        organizer=draw(st.none() | people),
        attendees=tuple(draw(st.lists(people, max_size=2))),
        private=draw(st.booleans()),
        buffers=Buffers(draw(minutes(0, 45, 15)), draw(minutes(0, 45, 15))),
        recurrence=draw(
            st.none()
            | recurrences(start, zone)
            | recurrences(start, zone)
            .filter(lambda r: r.rrule is not None)
            .map(lambda r: replace(r, rdates=()))
        ),
        version=draw(st.none() | NON_EMPTY_TEXT),
    )


MAILBOXES = itertools.count()


def test_two_occurrences_moved_onto_one_time_stay_two_events(
    office365: Office365Calendar, graph: GraphWorld
):
    # Regression (found by Hypothesis): both members had one transactionId, Graph kept one.
    first, second = (datetime(2025, 3, 20, hour, tzinfo=LONDON) for hour in (9, 10))
    moved = (datetime(2025, 3, 20, 12, tzinfo=LONDON), datetime(2025, 3, 20, 13, tzinfo=LONDON))
    uid, ics = only(
        booking(
            "collide",
            recurrence=Recurrence(
                rdates=(first, second),
                overrides=(Override(first, *moved), Override(second, *moved)),
            ),
        )
    )
    written = office365.create(uid, ics)
    assert graph_spans(graph) == spans(ics, graph.window())
    assert len(graph.emulator.events(ROOM)) == 3
    (read,) = office365.read_changes(None).changed
    assert read.href == written.href and content_hash(read.ics) == content_hash(ics)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    b=window_bookings(),
    mode=st.sampled_from(BufferMode),
    privacy=st.sampled_from([Privacy.FULL, Privacy.BUSY]),
)
def test_written_objects_read_back_with_the_same_hash_and_edits_change_it(
    graph: GraphWorld, b: Booking, mode: BufferMode, privacy: Privacy
):
    mailbox = f"room-{next(MAILBOXES)}@contoso.example"
    graph.emulator.add_room(mailbox, "Scratch")
    account = Office365Account(graph.config())
    writer = account.calendar(mailbox, window=graph.window)
    reader = account.calendar(mailbox, window=graph.window)
    try:
        wanted = {}
        for obj in booking_to_objects(b, privacy=privacy, buffers=mode):
            event(f"layout: {plan_object(obj.uid, obj.ics).layout}")
            written = writer.create(obj.uid, obj.ics)
            wanted[written.href] = (obj.uid, content_hash(obj.ics))
        listing = reader.read_changes(None)  # a fresh backend: no memory of the writes
        seen = {o.href: (o.uid, content_hash(o.ics)) for o in listing.changed}
        in_window = {h: w for h, w in wanted.items() if h in seen}
        assert seen == in_window
        for href, (_uid, digest) in wanted.items():
            assert content_hash(reader.get(href).ics) == digest
        # A third-party edit of any event of the first object changes its hash.
        href = next(iter(wanted))
        target = next(e for e in graph.emulator.events(mailbox) if _belongs(e, href))
        graph.emulator.patch_event(mailbox, target.id, {"subject": "Edited elsewhere ⚠"})
        assert content_hash(reader.get(href).ics) != wanted[href][1]
    finally:
        writer.close()
        reader.close()


def _belongs(event: object, href: str) -> bool:
    from tests.e2e.office365_world import event_uid

    return getattr(event, "id", None) == href or f"group:{event_uid(event)}" == href  # type: ignore[arg-type]


# ----- incremental reads --------------------------------------------------------------------------


def test_incremental_reads_and_a_quiet_mailbox_cost_one_request(
    office365: Office365Calendar, graph: GraphWorld, make_office365: Make
):
    first = office365.read_changes(None)
    assert first.full and first.changed == [] and first.requests == 1
    a = office365.create(*only(booking("a")))
    b = office365.create(*only(weekly()))
    after_writes = office365.read_changes(first.cursor)
    assert {o.href for o in after_writes.changed} == {a.href, b.href}
    assert after_writes.requests == 1  # our own writes are recognised by their etags
    quiet = office365.read_changes(after_writes.cursor)
    assert (quiet.changed, quiet.deleted, quiet.requests) == ([], [], 1)
    other = make_office365()  # another process: same cursor, nothing cached
    assert other.read_changes(after_writes.cursor).requests == 1
    graph.emulator.delete_event(ROOM, a.href)
    gone = other.read_changes(after_writes.cursor)
    assert gone.deleted == [a.href] and not gone.full


def test_delta_pages_are_followed_verbatim_through_quirks(make_office365: Make, graph: GraphWorld):
    writer = make_office365()
    for index in range(7):
        writer.create(
            *only(
                booking(
                    f"k{index}",
                    start=booking().start + timedelta(days=index),
                    end=booking().end + timedelta(days=index),
                )
            )
        )
    graph.emulator.set_delta_quirks(replay_rate=0.5, empty_first_page=True)
    reader = make_office365()
    reader.page_size = 2
    listing = reader.read_changes(None)
    assert len(listing.changed) == 7 and len({o.href for o in listing.changed}) == 7
    assert listing.requests > 5


def test_expired_delta_token_turns_into_a_full_read(
    office365: Office365Calendar, graph: GraphWorld
):
    cursor = office365.read_changes(None).cursor
    office365.create(*only(booking()))
    graph.emulator.expire_delta_tokens()
    again = office365.read_changes(cursor)
    assert again.full and len(again.changed) == 1


def test_a_cursor_the_window_has_outgrown_reads_everything(
    office365: Office365Calendar, graph: GraphWorld
):
    cursor = office365.read_changes(None).cursor
    parsed = DeltaCursor.parse(cursor)
    assert parsed is not None and parsed.covers(graph.window())
    old = DeltaCursor(
        parsed.link, Window(parsed.span.start, graph.window().end - timedelta(days=1))
    )
    assert office365.read_changes(old.text()).full
    assert office365.read_changes("not a cursor").full


def test_third_party_deleted_member_is_noticed_by_another_process(
    make_office365: Make, graph: GraphWorld
):
    writer = make_office365()
    uid, ics = only(irregular())
    writer.create(uid, ics)
    cursor = writer.read_changes(None).cursor
    graph.emulator.delete_event(ROOM, graph.emulator.events(ROOM)[1].id)
    reader = make_office365()
    changes = reader.read_changes(cursor)
    (changed,) = changes.changed
    assert changed.href == f"group:{uid}" and content_hash(changed.ics) != content_hash(ics)


# ----- writes with concurrency control ----------------------------------------------------------


def test_update_in_place_with_if_match(office365: Office365Calendar, graph: GraphWorld):
    uid, ics = only(booking())
    written = office365.create(uid, ics)
    _uid, moved = only(
        booking(start=booking().start + timedelta(hours=2), end=booking().end + timedelta(hours=2))
    )
    updated = office365.update(written.href, moved, written.etag)
    assert updated.href == written.href and updated.etag != written.etag
    with pytest.raises(PreconditionFailed):
        office365.update(written.href, ics, written.etag)
    with pytest.raises(PreconditionFailed):
        office365.delete(written.href, written.etag)
    assert graph_spans(graph) == spans(moved, graph.window())


def test_transient_412_is_retried_when_the_event_did_not_change(
    office365: Office365Calendar, graph: GraphWorld
):
    uid, ics = only(booking())
    written = office365.create(uid, ics)
    graph.emulator.fail_next(FaultKind.CONFLICT)
    _uid, retitled = only(booking(title="Renamed"))
    updated = office365.update(written.href, retitled, written.etag)
    (event,) = graph.emulator.events(ROOM)
    assert event.fields["subject"] == "Renamed" and updated.etag == f'W/"{event.change_key}"'


def test_layout_changes_replace_the_events(office365: Office365Calendar, graph: GraphWorld):
    uid, single = only(booking("series-1"))
    written = office365.create(uid, single)
    _uid, series = only(weekly())
    as_series = office365.update(written.href, series, written.etag)
    assert as_series.href != written.href
    (event,) = graph.emulator.events(ROOM)
    assert event.is_series
    _uid, back = only(booking("series-1", title="Single again"))
    office365.update(as_series.href, back, as_series.etag)
    (event,) = graph.emulator.events(ROOM)
    assert not event.is_series and event.fields["subject"] == "Single again"
    with pytest.raises(NotFound):
        office365.get(as_series.href)


def test_a_create_whose_reply_was_lost_is_not_duplicated(
    office365: Office365Calendar, graph: GraphWorld
):
    graph.emulator.fail_next(FaultKind.LOST_REPLY)
    uid, ics = only(booking())
    office365.create(uid, ics)
    assert len(graph.emulator.events(ROOM)) == 1
    assert graph.emulator.deduplicated_creates == 1
    assert graph.sleeps  # the 504 was waited out


def test_create_of_an_existing_uid_with_other_content_reports_it(
    make_office365: Make, graph: GraphWorld
):
    uid, ics = only(booking())
    make_office365().create(uid, ics)
    _uid, changed = only(booking(title="Changed meanwhile"))
    with pytest.raises(AlreadyExists) as raised:
        make_office365().create(uid, changed)
    assert raised.value.existing is not None
    assert content_hash(raised.value.existing.ics) == content_hash(ics)
    found = make_office365().find_by_uid(uid)
    assert found is not None and found.href == raised.value.existing.href


# ----- throttling, concurrency, tokens ------------------------------------------------------


def test_throttles_are_waited_out_with_fractional_retry_after(
    office365: Office365Calendar, graph: GraphWorld
):
    graph.emulator.set_faults(FaultPlan(rate=0.0, retry_after=0.375))
    graph.emulator.fail_next(FaultKind.THROTTLE, FaultKind.UNAVAILABLE, FaultKind.GATEWAY_TIMEOUT)
    assert office365.read_changes(None).changed == []
    assert graph.sleeps[:2] == [0.375, 0.375]  # Retry-After, to the millisecond
    assert 0.5 <= graph.sleeps[2] <= 1.0  # a 504 without Retry-After: backoff (3rd try)
    assert parse_retry_after("2.128") == 2.128 and parse_retry_after("soon") is None


def test_endless_throttling_gives_up_with_a_clear_error(
    office365: Office365Calendar, graph: GraphWorld
):
    graph.emulator.set_faults(FaultPlan(rate=1.0, kinds=(FaultKind.THROTTLE,), retry_after=0.01))
    with pytest.raises(CalendarError) as raised:
        office365.read_changes(None)
    assert raised.value.status == 429 and "TooManyRequests" in str(raised.value)
    assert len(graph.sleeps) == MAX_ATTEMPTS - 1


def test_never_more_than_four_requests_per_mailbox(make_office365: Make, graph: GraphWorld):
    writer = make_office365()
    for index in range(16):
        writer.create(
            *only(
                booking(
                    f"p{index}",
                    start=booking().start + timedelta(days=index),
                    end=booking().end + timedelta(days=index),
                )
            )
        )
    graph.emulator.latency = 0.05
    graph.emulator.reset_peak(ROOM)
    account = Office365Account(graph.config())
    readers = [make_office365(account=account) for _ in range(2)]
    import threading

    threads = [threading.Thread(target=r.read_changes, args=(None,)) for r in readers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert graph.emulator.peak_concurrency(ROOM) == MAILBOX_CONCURRENCY
    assert readers[0].limiter is readers[1].limiter and readers[0].limiter.peak == 4
    assert not [r for r in graph.emulator.requests if r.status == 429]


def test_tokens_are_cached_and_refreshed_after_a_401(make_office365: Make, graph: GraphWorld):
    account = Office365Account(graph.config())
    first, second = make_office365(account=account), make_office365(account=account)
    grants = graph.identity.token_requests()
    first.read_changes(None)
    second.read_changes(None)
    assert graph.identity.token_requests() == grants + 1
    graph.identity.tokens.expire_all()
    first.read_changes(None)
    assert graph.identity.token_requests() == grants + 2
    assert account.tokens.acquired == 2


def test_a_token_inside_msals_five_minute_margin_is_renewed_before_use(
    make_office365: Make, graph: GraphWorld
):
    account = Office365Account(graph.config())
    backend = make_office365(account=account)
    graph.identity.lifetime = 3599  # far from expiry: one grant serves every request
    backend.read_changes(None)
    backend.read_changes(None)
    assert account.tokens.acquired == 1
    graph.identity.lifetime = 240  # a token expiring within 5 minutes is never reused
    fresh = Office365Account(graph.config())
    near = make_office365(account=fresh)
    grants = graph.identity.token_requests()
    near.read_changes(None)
    near.read_changes(None)
    assert graph.identity.token_requests() == grants + 2
    assert fresh.tokens.acquired == 2


def test_bad_credentials_fail_cleanly_without_the_secret(make_office365: Make, graph: GraphWorld):
    wrong = make_office365(
        client_secret=type(graph.config().client_secret)("wrong-" + GRAPH_SECRET)
    )
    with pytest.raises(CalendarError) as raised:
        wrong.read_changes(None)
    assert "invalid_client" in str(raised.value) and GRAPH_SECRET not in str(raised.value)
    assert GRAPH_SECRET not in repr(wrong) + repr(wrong.account) + repr(wrong.account.tokens)
    untrusted = make_office365(ca_bundle=None)
    with pytest.raises(CalendarError) as tls:
        untrusted.read_changes(None)
    assert "identity" in str(tls.value) and tls.value.__cause__ is None


def test_build_shares_one_account_per_configuration(graph: GraphWorld):
    config = graph.config()
    one = build_office365_calendar(config, ROOM, window=graph.window)
    two = build_office365_calendar(config, USER, window=graph.window)
    try:
        assert one.account is two.account
        assert one.limiter is not two.limiter
    finally:
        one.close()
        two.close()
    assert one.account.http.is_closed


# ----- foreign events, declines, rooms --------------------------------------------------------


def test_foreign_events_read_as_their_own_icalendar(
    office365: Office365Calendar, graph: GraphWorld
):
    graph.emulator.create_event(
        USER,
        {
            "subject": "Team sync",
            "start": {"dateTime": "2025-03-11T09:00:00", "timeZone": "GMT Standard Time"},
            "end": {"dateTime": "2025-03-11T10:00:00", "timeZone": "GMT Standard Time"},
            "attendees": [{"type": "resource", "emailAddress": {"address": ROOM}}],
        },
    )
    graph.emulator.settle()
    (read,) = office365.read_changes(None).changed
    (event,) = icalendar.Calendar.from_ical(read.ics).walk("VEVENT")
    assert read.uid == graph.emulator.events(ROOM)[0].ical_uid
    assert str(event["SUMMARY"]) == "Team sync"
    assert event["DTSTART"].dt == datetime(2025, 3, 11, 9, 0, tzinfo=LONDON)
    assert "ada@contoso.example" in str(event["ORGANIZER"])
    assert office365.decline(read.href, reason="The room is booked") is None
    assert graph.emulator.events(ROOM) == []
    organizer = graph.emulator.events(USER)[0]
    assert organizer.fields["attendees"][0]["status"]["response"] == "declined"


def test_the_room_accepts_tags_and_declines_occurrences_of_a_meeting(
    office365: Office365Calendar, make_office365: Make, graph: GraphWorld
):
    meeting = graph.emulator.create_event(
        USER,
        {
            "subject": "Stand-up",
            "start": {"dateTime": "2025-03-12T09:00:00", "timeZone": "GMT Standard Time"},
            "end": {"dateTime": "2025-03-12T09:30:00", "timeZone": "GMT Standard Time"},
            "recurrence": {
                "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["wednesday"]},
                "range": {"type": "numbered", "startDate": "2025-03-12",
                          "numberOfOccurrences": 4},
            },
            "attendees": [{"type": "resource", "emailAddress": {"address": ROOM}}],
        },
    )
    graph.emulator.settle()
    (read,) = office365.read_changes(None).changed
    with pytest.raises(PreconditionFailed):
        office365.accept(read.href, 'W/"stale"', provider="hq", keys=["s-1"])
    second = datetime(2025, 3, 19, 9, 0, tzinfo=LONDON)
    accepted = office365.accept(
        read.href, read.etag, provider="hq", keys=["s-1"], declined=[second], reason="taken"
    )
    master = icalendar.Calendar.from_ical(accepted.ics).walk("VEVENT")[0]
    assert (str(master["X-ROOMBRIDGE-PROVIDER"]), str(master["X-ROOMBRIDGE-KEY"])) == ("hq", "s-1")
    assert master["EXDATE"].dts[0].dt == second
    # Another process reads the same text back: the echo of the answer is no change.
    (again,) = make_office365().read_changes(None).changed
    assert again.ics == accepted.ics
    replies = [(r.original, r.response, r.comment) for r in graph.emulator.replies(USER)]
    assert replies == [(None, "accepted", ""), (second.astimezone(UTC), "declined", "taken")]
    organizer = next(e for e in graph.emulator.events(USER) if e.id == meeting)
    assert organizer.fields["attendees"][0]["status"]["response"] == "accepted"
    with pytest.raises(CalendarError, match="organizer"):
        office365.restore(accepted.href, accepted.etag, accepted.ics, reason="no")
    assert office365.decline(accepted.href, reason="change refused") is None
    assert graph.emulator.events(ROOM) == []


def test_an_event_made_in_the_room_mailbox_is_only_tagged(
    office365: Office365Calendar, graph: GraphWorld
):
    graph.emulator.create_event(
        ROOM,
        {
            "subject": "Walk-in",
            "start": {"dateTime": "2025-03-13T09:00:00", "timeZone": "GMT Standard Time"},
            "end": {"dateTime": "2025-03-13T10:00:00", "timeZone": "GMT Standard Time"},
        },
    )
    (read,) = office365.read_changes(None).changed
    accepted = office365.accept(read.href, read.etag, provider="hq", keys=["7"])
    event = icalendar.Calendar.from_ical(accepted.ics).walk("VEVENT")[0]
    assert str(event["X-ROOMBRIDGE-KEY"]) == "7"
    assert graph.emulator.replies(ROOM) == [] and graph.emulator.replies(USER) == []


def test_rooms_are_listed_and_check_names_them(make_office365: Make):
    room = make_office365()
    (listed,) = room.list_rooms()
    assert (listed.address, listed.name, listed.capacity) == (ROOM, "Callisto Meeting Room", 10)
    assert room.check() == {"mailbox": ROOM, "room": True, "rooms": 1}
    with pytest.raises(CalendarError) as missing:
        make_office365("nobody@contoso.example").check()
    assert ROOM in str(missing.value) and missing.value.status == 404


def test_stored_payload_round_trips_and_rejects_garbage():
    stored = StoredObject(b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", GRAPH_WINDOW, 3)
    assert decode_stored(encode_stored(stored)) == stored
    assert decode_stored("z1:not-base64!") is None and decode_stored(None) is None


GRAPH_WINDOW = Window(GRAPH_NOW, GRAPH_NOW + timedelta(days=10))
