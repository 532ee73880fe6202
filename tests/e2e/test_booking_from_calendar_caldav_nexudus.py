"""Booking the room from a CalDAV client, with Nexudus as the provider (issue 8)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from bridge.sync.intake import RequestIntake
from tests.e2e.request_world import RequestWorld, hours, request_ics, utc
from tests.plugins.caldav_servers import CalDAVServer


@pytest.fixture
def world(caldav_server: CalDAVServer, tmp_path: Path, state_url: str) -> Iterator[RequestWorld]:
    """One room taking requests, on each CalDAV server and state store."""
    with RequestWorld(caldav_server, tmp_path, state_url=state_url).running() as running:
        yield running


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, no handler catches it."""


def _room_answer(world: RequestWorld, uid: str) -> list[str]:
    _href, _etag, calendar = world.request_event(uid)
    answers = []
    for event in calendar.walk("VEVENT"):
        attendee = event["ATTENDEE"]
        answers.append(str(attendee.params["PARTSTAT"]))
    return answers


def _comment(world: RequestWorld, uid: str) -> str:
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
