"""Booking the room from a CalDAV client, with OfficeRnD as the provider (issue 8)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from bridge.model import BookingKey
from mappings.ical import event_uid
from tests.e2e.officernd_request_world import CUSTOMER, OfficeRndRequestWorld
from tests.e2e.officernd_world import PROVIDER
from tests.e2e.request_world import (
    crash_after_provider_create,
    hours,
    race_for_one_slot,
    refused_move,
    request_ics,
    utc,
)
from tests.plugins.caldav_servers import CalDAVServer


@pytest.fixture
def world(
    caldav_server: CalDAVServer, tmp_path: Path, state_url: str
) -> Iterator[OfficeRndRequestWorld]:
    """One OfficeRnD room taking requests, on each CalDAV server and state store."""
    with OfficeRndRequestWorld(caldav_server, tmp_path, state_url=state_url).running() as running:
        yield running


def test_free_slot_request_becomes_one_tagged_booking(world: OfficeRndRequestWorld):
    start = world.now + timedelta(days=1, hours=3)
    world.invite("meet-1@client", start, start + hours(1), summary="Planning")
    outcome = world.sync()
    assert outcome.code == 0, outcome.document
    [booking] = world.room_bookings()
    assert (utc(booking["start"]), utc(booking["end"])) == (start, start + hours(1))
    assert booking["source"] == "roombridge:meet-1@client"
    assert booking["company"] == CUSTOMER
    assert booking["serviceSlots"] == {"before": 15, "after": 15}
    assert booking["title"] == "Planning"
    _href, _etag, calendar = world.request_event("meet-1@client")
    assert str(calendar.walk("VEVENT")[0]["X-ROOMBRIDGE-KEY"]) == booking["_id"]
    assert world.room_answers("meet-1@client") == ["ACCEPTED"]
    for _ in range(2):
        assert world.sync().code == 0
    assert len(world.room_bookings()) == 1
    assert world.bridge_objects() == []


def test_overlap_with_a_bookings_service_slot_is_declined_naming_the_slot(
    world: OfficeRndRequestWorld,
):
    taken = world.now + timedelta(days=2)
    world.book(taken, title="Zed Secret board", member="zed-member", after=30)
    world.sync()
    # 11:20 is free of the booking itself (10:00–11:00) but inside its 30 min cleanup slot.
    start = taken + hours(1) + timedelta(minutes=20)
    world.invite("meet-2@client", start, start + hours(1))
    outcome = world.sync()
    assert outcome.room["declined"] == 1, outcome.document
    assert len(world.room_bookings()) == 1
    world.assert_declined_for_a_buffer("meet-2@client", "Zed", "board")
    assert world.sync().room["declined"] == 0


def test_recurring_request_with_two_conflicting_dates_is_one_series(
    world: OfficeRndRequestWorld,
):
    first = world.now + timedelta(days=1, hours=2)
    world.book(first + timedelta(days=7))
    world.book(first + timedelta(days=21))
    world.sync()
    world.invite("weekly@client", first, first + hours(1), rrule="FREQ=WEEKLY;COUNT=5")
    outcome = world.sync()
    assert outcome.code == 0, outcome.document
    [series] = world.requested("weekly@client")
    assert "FREQ=WEEKLY" in series["recurrence"]["rrule"]
    starts = world.occurrence_starts(series["_id"], world.now, world.now + timedelta(days=60))
    assert starts == [first, first + timedelta(days=14), first + timedelta(days=28)]
    answers = world.room_answers("weekly@client")
    assert answers[0] == "ACCEPTED" and answers.count("DECLINED") == 2
    assert world.sync().code == 0
    assert len(world.room_bookings()) == 3
    # The two blockers are on the calendar; the series is the request event itself.
    blockers = [b["_id"] for b in world.room_bookings() if b["_id"] != series["_id"]]
    assert sorted(world.bridge_objects()) == sorted(
        event_uid(BookingKey(PROVIDER, key)) for key in blockers
    )


def test_renaming_a_partly_declined_series_keeps_the_declined_dates_out(
    world: OfficeRndRequestWorld,
):
    first = world.now + timedelta(days=1, hours=2)
    world.book(first + timedelta(days=7))
    world.invite("rename@client", first, first + hours(1), rrule="FREQ=WEEKLY;COUNT=4")
    world.sync()
    [series] = world.requested("rename@client")
    # The organizer's client renames the series, keeping the room's declined occurrence.
    _href, _etag, calendar = world.request_event("rename@client")
    for event in calendar.walk("VEVENT"):
        event.pop("SUMMARY")
        event.add("SUMMARY", "Renamed sync")
    world.edit("rename@client", calendar.to_ical())
    outcome = world.sync()
    assert outcome.code == 0, outcome.document
    [renamed] = world.requested("rename@client")
    assert renamed["_id"] == series["_id"] and renamed["title"] == "Renamed sync"
    period = (world.now, world.now + timedelta(days=60))
    assert world.occurrence_starts(series["_id"], *period) == [
        first, first + timedelta(days=14), first + timedelta(days=21)
    ]
    assert "change refused" not in world.comment("rename@client")


def test_move_updates_the_booking_and_a_taken_move_is_reverted(world: OfficeRndRequestWorld):
    start = world.now + timedelta(days=3)
    world.invite("move@client", start, start + hours(1))
    world.sync()
    [booking] = world.room_bookings()
    later = start + hours(4)
    world.edit("move@client", request_ics("move@client", later, later + hours(1)))
    assert world.sync().code == 0
    [moved] = world.requested("move@client")
    assert moved["_id"] == booking["_id"]
    assert utc(moved["start"]) == later
    refused_move(world, "move@client", later)
    assert sorted(utc(b["start"]) for b in world.room_bookings()) == [
        later, later + timedelta(days=1)
    ]


def test_single_occurrence_and_series_deletes(world: OfficeRndRequestWorld):
    first = world.now + timedelta(days=1, hours=2)
    rule = "FREQ=WEEKLY;COUNT=3"
    world.invite("series@client", first, first + hours(1), rrule=rule)
    world.sync()
    [series] = world.requested("series@client")
    period = (world.now, world.now + timedelta(days=30))
    assert len(world.occurrence_starts(series["_id"], *period)) == 3
    second = first + timedelta(days=7)
    world.edit(
        "series@client",
        request_ics("series@client", first, first + hours(1), rrule=rule, exdates=(second,)),
    )
    assert world.sync().code == 0
    assert world.occurrence_starts(series["_id"], *period) == [first, first + timedelta(days=14)]
    world.remove("series@client")
    assert world.sync().code == 0
    assert world.room_bookings() == []
    # Cancelled, not deleted: OfficeRnD keeps the record.
    assert world.emulator.booking(series["_id"])["isCancelled"] is True


def test_two_requests_for_one_slot_exactly_one_wins(world: OfficeRndRequestWorld):
    race_for_one_slot(world, world.now + timedelta(days=4))
    assert [b["source"] for b in world.room_bookings()] == ["roombridge:a-early@client"]
    assert world.room_answers("a-early@client") == ["ACCEPTED"]


def test_crash_between_provider_create_and_tag_books_once(
    world: OfficeRndRequestWorld, monkeypatch: pytest.MonkeyPatch
):
    start = world.now + timedelta(days=5)
    world.invite("crash@client", start, start + hours(1))

    crash_after_provider_create(world, monkeypatch)
    assert len(world.room_bookings()) == 1
    outcome = world.sync()
    assert outcome.code == 0, outcome.document
    assert len(world.room_bookings()) == 1
    assert world.room_answers("crash@client") == ["ACCEPTED"]
    assert world.sync().room["declined"] == 0
    assert len(world.room_bookings()) == 1


def test_without_a_customer_to_bill_the_request_is_declined(
    caldav_server: CalDAVServer, tmp_path: Path
):
    bare = OfficeRndRequestWorld(caldav_server, tmp_path, customer=None)
    with bare.running() as world:
        start = world.now + timedelta(days=1)
        world.invite("nobody@client", start, start + hours(1))
        outcome = world.sync()
        assert outcome.room["declined"] == 1, outcome.document
        assert world.room_bookings() == []
        assert "default_customer" in world.comment("nobody@client")
