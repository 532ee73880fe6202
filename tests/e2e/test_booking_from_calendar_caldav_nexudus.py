"""Booking the room from a CalDAV client, with Nexudus as the provider (issue 8)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bridge.sync.intake import RequestIntake
from tests.e2e.request_world import (
    PortalRequestWorld,
    RequestWorld,
    hours,
    request_ics,
    utc,
)
from tests.plugins.caldav_servers import CalDAVServer


@pytest.fixture
def world(caldav_server: CalDAVServer, tmp_path: Path, state_url: str) -> Iterator[RequestWorld]:
    """One room taking requests, on each CalDAV server and state store."""
    with RequestWorld(caldav_server, tmp_path, state_url=state_url).running() as running:
        yield running


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, no handler catches it."""


def _room_answer(world: RequestWorld | PortalRequestWorld, uid: str) -> list[str]:
    _href, _etag, calendar = world.request_event(uid)
    answers = []
    for event in calendar.walk("VEVENT"):
        listed = event["ATTENDEE"]
        for attendee in listed if isinstance(listed, list) else [listed]:
            if attendee.params.get("CUTYPE") == "ROOM":
                answers.append(str(attendee.params["PARTSTAT"]))
    return answers


def _comment(world: RequestWorld | PortalRequestWorld, uid: str) -> str:
    _href, _etag, calendar = world.request_event(uid)
    return str(calendar.walk("VEVENT")[0].get("COMMENT", ""))


def test_free_slot_request_becomes_a_tagged_booking(world: RequestWorld):
    start = world.now + timedelta(days=1, hours=3)
    world.invite("meet-1@client", start, start + hours(1))
    outcome = world.sync()
    assert outcome.code == 0, outcome.document
    records = world.room_records()
    assert [(utc(r["FromTime"]), utc(r["ToTime"])) for r in records] == [
        (start, start + hours(1))
    ]
    assert records[0]["SystemId"] == "roombridge:meet-1@client"
    _href, _etag, calendar = world.request_event("meet-1@client")
    master = calendar.walk("VEVENT")[0]
    assert str(master["X-ROOMBRIDGE-KEY"]) == str(records[0]["Id"])
    assert _room_answer(world, "meet-1@client") == ["ACCEPTED"]
    # The next passes neither book again nor copy the booking back as a bridge object.
    for _ in range(2):
        again = world.sync()
        assert again.code == 0, again.document
    assert len(world.room_records()) == 1
    assert world.bridge_objects() == []


def test_overlap_with_buffers_is_declined_with_the_slot_not_the_booker(world: RequestWorld):
    taken = world.now + timedelta(days=2)
    world.book(taken, CoworkerFullName="Zed Secret")
    world.sync()
    # 11:10 starts inside the request's 15 min setup buffer after a 10:00–11:00 booking.
    start = taken + hours(1) + timedelta(minutes=10)
    world.invite("meet-2@client", start, start + hours(1))
    outcome = world.sync()
    assert outcome.room["declined"] == 1, outcome.document
    assert len(world.room_records()) == 1
    assert _room_answer(world, "meet-2@client") == ["DECLINED"]
    comment = _comment(world, "meet-2@client")
    assert "the room is booked" in comment and "setup/cleanup" in comment
    assert "Zed" not in comment
    # A declined request is not asked about again.
    assert world.sync().room["declined"] == 0


def test_plain_collection_event_without_room_attendee_is_cancelled(world: RequestWorld):
    taken = world.now + timedelta(days=2)
    world.book(taken)
    world.sync()
    world.invite("solo@client", taken, taken + hours(1), room=False)
    world.sync()
    _href, _etag, calendar = world.request_event("solo@client")
    event = calendar.walk("VEVENT")[0]
    assert str(event["STATUS"]) == "CANCELLED"
    assert "the room is booked" in str(event["COMMENT"])


def test_recurring_request_with_two_conflicting_dates(world: RequestWorld):
    first = world.now + timedelta(days=1, hours=2)
    world.book(first + timedelta(days=7))
    world.book(first + timedelta(days=21))
    world.sync()
    world.invite("weekly@client", first, first + hours(1), rrule="FREQ=WEEKLY;COUNT=5")
    outcome = world.sync()
    assert outcome.code == 0, outcome.document
    mine = [r for r in world.room_records() if r["SystemId"] == "roombridge:weekly@client"]
    assert sorted(utc(r["FromTime"]) for r in mine) == [
        first, first + timedelta(days=14), first + timedelta(days=28)
    ]
    answers = _room_answer(world, "weekly@client")
    assert answers.count("DECLINED") == 2 and answers[0] == "ACCEPTED"
    assert world.sync().code == 0
    assert len(world.room_records()) == 5


def test_mostly_conflicting_series_is_declined_whole(world: RequestWorld):
    first = world.now + timedelta(days=1, hours=2)
    for week in (0, 1):
        world.book(first + timedelta(days=7 * week))
    world.sync()
    world.invite("busy@client", first, first + hours(1), rrule="FREQ=WEEKLY;COUNT=3")
    world.sync()
    assert len(world.room_records()) == 2
    assert "2 of 3 occurrences conflict" in _comment(world, "busy@client")


def test_calendar_move_and_refused_move(world: RequestWorld):
    start = world.now + timedelta(days=3)
    world.invite("move@client", start, start + hours(1))
    world.sync()
    later = start + hours(4)
    world.edit("move@client", request_ics("move@client", later, later + hours(1)))
    assert world.sync().code == 0
    assert [utc(r["FromTime"]) for r in world.room_records()] == [later]
    # A move onto a taken slot is refused and the event put back where it was.
    blocker = start + timedelta(days=1)
    world.book(blocker)
    world.sync()
    world.edit("move@client", request_ics("move@client", blocker, blocker + hours(1)))
    outcome = world.sync()
    assert outcome.code == 0, outcome.document
    _href, _etag, calendar = world.request_event("move@client")
    event = calendar.walk("VEVENT")[0]
    assert utc(event.decoded("DTSTART")) == later
    assert "change refused" in str(event["COMMENT"])
    assert sorted(utc(r["FromTime"]) for r in world.room_records()) == [later, blocker]


def test_a_series_edit_nexudus_refuses_keeps_the_accepted_booking(world: RequestWorld):
    start = world.now + timedelta(days=3)
    world.invite("grow@client", start, start + hours(1))
    for _ in range(2):  # booked, then a pass that reads Nexudus incrementally again
        assert world.sync().code == 0
    # Someone books the slot a week later in a way the bridge's incremental read does not see
    # before it acts (its UpdatedOn lies behind the watermark), so only Nexudus can refuse.
    world.emulator.set_clock(world.now - timedelta(days=2))
    world.book(start + timedelta(days=7))
    world.emulator.set_clock(datetime.now(UTC))
    # Turning the single into a series cannot be done in place: the single is cancelled, the
    # series refused, and the single put back under a new key.
    world.edit("grow@client", request_ics("grow@client", start, start + hours(1),
                                          rrule="FREQ=WEEKLY;COUNT=3"))
    outcome = world.sync()
    assert outcome.code == 0, outcome.document
    _href, _etag, calendar = world.request_event("grow@client")
    event = calendar.walk("VEVENT")[0]
    assert "RRULE" not in event and "change refused" in str(event["COMMENT"])
    mine = [r for r in world.room_records() if r["SystemId"] == "roombridge:grow@client"]
    assert [utc(r["FromTime"]) for r in mine] == [start]
    assert str(event["X-ROOMBRIDGE-KEY"]) == str(mine[0]["Id"])
    # The event follows the booking's new key: later passes neither cancel nor re-book it.
    for _ in range(2):
        again = world.sync()
        assert again.code == 0, again.document
        assert (again.room["declined"], again.room["created"]) == (0, 0), again.document
    assert [r["Id"] for r in world.room_records() if r["SystemId"] == "roombridge:grow@client"] == [
        mine[0]["Id"]
    ]
    assert world.room_answers("grow@client") == ["ACCEPTED"]


def test_single_occurrence_and_series_deletes(world: RequestWorld):
    first = world.now + timedelta(days=1, hours=2)
    rule = "FREQ=WEEKLY;COUNT=3"
    world.invite("series@client", first, first + hours(1), rrule=rule)
    world.sync()
    assert len(world.room_records()) == 3
    second = first + timedelta(days=7)
    world.edit(
        "series@client",
        request_ics("series@client", first, first + hours(1), rrule=rule, exdates=(second,)),
    )
    assert world.sync().code == 0
    assert [utc(r["FromTime"]) for r in world.room_records()] == [
        first, first + timedelta(days=14)
    ]
    world.remove("series@client")
    assert world.sync().code == 0
    assert world.room_records() == []


def test_two_requests_for_one_slot_exactly_one_wins(world: RequestWorld):
    start = world.now + timedelta(days=4)
    early = world.now - timedelta(days=1)
    world.invite("b-late@client", start, start + hours(1), created=early + hours(1))
    world.invite("a-early@client", start, start + hours(1), created=early)
    outcome = world.sync()
    assert outcome.room["declined"] == 1
    records = world.room_records()
    assert [r["SystemId"] for r in records] == ["roombridge:a-early@client"]
    assert _room_answer(world, "b-late@client") == ["DECLINED"]


def test_crash_between_provider_create_and_tag_books_once(
    world: RequestWorld, monkeypatch: pytest.MonkeyPatch
):
    start = world.now + timedelta(days=5)
    world.invite("crash@client", start, start + hours(1))

    def killed(*_args: object, **_kwargs: object) -> None:
        raise Killed  # the process dies right after the provider create

    with monkeypatch.context() as patch:
        patch.setattr(RequestIntake, "_accept", killed)
        with pytest.raises(Killed):
            world.sync()
    assert len(world.room_records()) == 1
    outcome = world.sync()
    assert outcome.code == 0, outcome.document
    assert len(world.room_records()) == 1
    assert _room_answer(world, "crash@client") == ["ACCEPTED"]
    assert world.sync().room["declined"] == 0
    assert len(world.room_records()) == 1


# ----- who is billed ---------------------------------------------------------------------------


def _mine(world: RequestWorld, uid: str) -> list[dict[str, object]]:
    return [r for r in world.room_records() if r["SystemId"] == f"roombridge:{uid}"]


def test_organizer_is_billed_as_the_coworker_with_her_email(world: RequestWorld):
    start = world.now + timedelta(days=1, hours=4)
    world.invite("billed@client", start, start + hours(1))
    assert world.sync().code == 0
    [record] = _mine(world, "billed@client")
    assert record["CoworkerId"] == world.ada
    assert record["CoworkerFullName"] == "Ada Lovelace"


def test_first_attendee_who_is_a_coworker_is_billed(world: RequestWorld):
    bob = world.emulator.add_coworker("Bob Builder", "bob@example.com")
    world.emulator.add_coworker("Cy Later", "cy@example.com")
    start = world.now + timedelta(days=1, hours=5)
    world.invite(
        "guest@client", start, start + hours(1),
        organizer="visitor@elsewhere.org", attendees=("nobody@elsewhere.org", "BOB@example.com",
                                                      "cy@example.com"),
    )
    assert world.sync().code == 0
    [record] = _mine(world, "guest@client")
    assert record["CoworkerId"] == bob
    assert _room_answer(world, "guest@client") == ["ACCEPTED"]


def test_nobody_to_bill_declines_without_naming_anyone_else(world: RequestWorld):
    world.emulator.add_coworker("Zed Secret", "zed@example.com")
    start = world.now + timedelta(days=2, hours=5)
    world.invite(
        "stranger@client", start, start + hours(1),
        organizer="stranger@elsewhere.org", attendees=("friend@elsewhere.org",),
    )
    outcome = world.sync()
    assert outcome.code == 0, outcome.document
    assert outcome.room["declined"] == 1
    assert _mine(world, "stranger@client") == []
    assert _room_answer(world, "stranger@client") == ["DECLINED"]
    comment = _comment(world, "stranger@client")
    assert comment.startswith("no Nexudus customer for stranger@elsewhere.org")
    assert "Zed" not in comment and "zed@" not in comment and "friend@" not in comment
    assert world.sync().room["declined"] == 0


def test_default_customer_is_billed_when_no_coworker_matches(
    caldav_server: CalDAVServer, tmp_path: Path, state_url: str
):
    desk = RequestWorld(caldav_server, tmp_path, state_url=state_url)
    house = desk.emulator.add_coworker("Front Desk", "desk@acme.example")
    desk.default_customer = str(house)
    with desk.running() as world:
        start = world.now + timedelta(days=1, hours=6)
        world.invite("walkin@client", start, start + hours(1), organizer="walkin@elsewhere.org")
        assert world.sync().code == 0
        [record] = _mine(world, "walkin@client")
        assert record["CoworkerId"] == house
        # A coworker's own request is still billed to her, not to the house account.
        later = start + timedelta(days=1)
        world.invite("ada-own@client", later, later + hours(1))
        assert world.sync().code == 0
        assert [r["CoworkerId"] for r in _mine(world, "ada-own@client")] == [world.ada]


# ----- a series Nexudus cannot hold: single bookings inside the moving window ------------------


@pytest.fixture
def short_world(
    caldav_server: CalDAVServer, tmp_path: Path, state_url: str
) -> Iterator[RequestWorld]:
    """A room whose window reaches 20 days ahead, so an endless series is booked in parts."""
    world = RequestWorld(caldav_server, tmp_path, state_url=state_url, future_days=20)
    with world.running() as running:
        yield running


def test_endless_series_is_extended_as_the_window_moves_and_cancelled_whole(
    short_world: RequestWorld,
):
    world = short_world
    first = world.now + timedelta(days=1, hours=3)
    week = timedelta(days=7)
    world.invite("endless@client", first, first + hours(1), rrule="FREQ=WEEKLY")
    assert world.sync_at(world.now).ok
    # Inside now + 20 days: three weeks of singles (Nexudus cannot hold an endless series).
    starts = [utc(r["FromTime"]) for r in _mine(world, "endless@client")]
    assert starts == [first, first + week, first + 2 * week]
    assert all(not r["RepeatSeriesUniqueId"] for r in _mine(world, "endless@client"))
    # Someone books the slot of week 4 before the window reaches it.
    world.book(first + 3 * week)
    # Two weeks later the window reaches 34 days ahead: weeks 3 and 4 are newly covered.
    later = world.now + 2 * week
    result = world.sync_at(later)
    assert result.ok, result.errors
    starts = [utc(r["FromTime"]) for r in _mine(world, "endless@client")]
    assert starts == [first, first + week, first + 2 * week, first + 4 * week]
    assert _room_answer(world, "endless@client") == ["ACCEPTED", "DECLINED"]
    [declined] = [e for e in world.request_event("endless@client")[2].walk("VEVENT")
                  if "RECURRENCE-ID" in e]
    assert utc(declined.decoded("RECURRENCE-ID")) == first + 3 * week
    assert "the room is booked" in str(declined["COMMENT"])
    # Passes at the same time, and an hour on, book nothing twice.
    for moment in (later, later + hours(1)):
        assert world.sync_at(moment).ok
        assert len(_mine(world, "endless@client")) == 4
    # Deleting the series cancels every booking made for it, early and late ones alike.
    world.remove("endless@client")
    assert world.sync_at(later + hours(1)).ok
    assert _mine(world, "endless@client") == []
    assert len(world.room_records()) == 1


# ----- the members portal (api = "portal"): its own availability call first ---------------------


@pytest.fixture
def portal_world(
    caldav_server: CalDAVServer, tmp_path: Path, state_url: str
) -> Iterator[PortalRequestWorld]:
    """A portal room taking requests, on each CalDAV server and state store."""
    with PortalRequestWorld(caldav_server, tmp_path, state_url=state_url).running() as running:
        assert isinstance(running, PortalRequestWorld)
        yield running


def test_portal_request_is_searched_booked_and_withdrawn(portal_world: PortalRequestWorld):
    world = portal_world
    start = world.now + timedelta(days=2, hours=3)
    world.invite("portal-1@client", start, start + hours(1))
    outcome = world.sync()
    assert outcome.code == 0, outcome.document
    assert world.room_bookings() == [(start, start + hours(1), "roombridge:portal-1@client")]
    assert world.emulator.request_counts()["GET /{language}/bookings/search"] == 1
    assert _room_answer(world, "portal-1@client") == ["ACCEPTED"]
    for _ in range(2):
        assert world.sync().code == 0
    assert len(world.room_bookings()) == 1
    assert [uid for _href, uid, _ics in world.objects() if uid.startswith("roombridge-")] == []
    world.remove("portal-1@client")
    assert world.sync().code == 0
    assert world.room_bookings() == []


def test_portal_refusal_declines_with_the_portals_reason(portal_world: PortalRequestWorld):
    world = portal_world
    start = world.now - timedelta(days=2)
    world.invite("portal-late@client", start, start + hours(1))
    outcome = world.sync()
    assert outcome.code == 0, outcome.document
    assert outcome.room["declined"] == 1
    assert world.room_bookings() == []
    assert _room_answer(world, "portal-late@client") == ["DECLINED"]
    assert _comment(world, "portal-late@client") == "Bookings cannot be made in the past."
    assert world.emulator.request_counts()["POST /{language}/bookings/newBookingJson"] == 0
