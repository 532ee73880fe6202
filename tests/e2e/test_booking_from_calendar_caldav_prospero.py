"""Booking the room from a CalDAV client, with Prospero as the provider (issue 8).

Prospero approves bookings later: the request event shows the room TENTATIVE while the
submitted booking is pending, ACCEPTED once approved (the same calendar object), and DECLINED
with the reason when denied.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from mappings.prospero import BookingState
from tests.e2e.prospero_request_world import ProsperoRequestWorld
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
) -> Iterator[ProsperoRequestWorld]:
    """The hall taking requests, on each CalDAV server and state store."""
    with ProsperoRequestWorld(caldav_server, tmp_path, state_url=state_url).running() as running:
        yield running


def _starts(bookings: list[dict[str, object]]) -> list[object]:
    return [utc(b["event"]["start"]) for b in bookings]  # type: ignore[index]


def test_request_is_submitted_pending_and_shown_tentative(world: ProsperoRequestWorld):
    start = world.now + timedelta(days=1, hours=3)
    world.invite("meet-1@client", start, start + hours(1), summary="Rehearsal")
    outcome = world.sync()
    assert outcome.code == 0, outcome.document
    [booking] = world.requested("meet-1@client")
    assert booking["bookingStatus"] == BookingState.PENDING
    assert booking["event"]["spaceIds"] == [world.hall]
    assert booking["event"]["title"] == "Rehearsal"
    assert booking["contact"]["email"] == "ada@example.com"
    assert (utc(booking["event"]["start"]), utc(booking["event"]["end"])) == (
        start, start + hours(1)
    )
    assert world.room_answers("meet-1@client") == ["TENTATIVE"]
    for _ in range(2):
        assert world.sync().code == 0
    assert len(world.requested("meet-1@client")) == 1
    assert world.bridge_objects() == []


def test_approval_confirms_in_place_and_denial_declines_with_the_reason(
    world: ProsperoRequestWorld,
):
    first, second = world.now + timedelta(days=2), world.now + timedelta(days=3)
    world.invite("yes@client", first, first + hours(1))
    world.invite("no@client", second, second + hours(1))
    world.sync()
    href_before, _etag, _calendar = world.request_event("yes@client")
    [approved] = world.requested("yes@client")
    [denied] = world.requested("no@client")
    world.emulator.approve(approved["id"])
    world.emulator.deny(denied["id"])
    outcome = world.sync()
    assert outcome.code == 0, outcome.document
    href_after, _etag, _calendar = world.request_event("yes@client")
    assert href_after == href_before
    assert world.room_answers("yes@client") == ["ACCEPTED"]
    assert world.room_answers("no@client") == ["DECLINED"]
    assert "denied" in world.comment("no@client")
    assert world.bridge_objects() == []
    assert len(world.objects()) == 2
    again = world.sync()
    assert again.code == 0 and again.room["declined"] == 0
    assert world.room_answers("yes@client") == ["ACCEPTED"]


def test_overlap_with_buffer_is_declined_naming_the_slot(world: ProsperoRequestWorld):
    taken = world.now + timedelta(days=2)
    world.book(taken, title="Zed's secret gala", contact={"name": "Zed"})
    world.sync()
    # 11:10 is after the gala (10:00–11:00) but inside the request's 15 min setup time.
    start = taken + hours(1) + timedelta(minutes=10)
    world.invite("meet-2@client", start, start + hours(1))
    outcome = world.sync()
    assert outcome.room["declined"] == 1, outcome.document
    assert world.requested("meet-2@client") == []
    world.assert_declined_for_a_buffer("meet-2@client", "Zed", "gala")


def test_recurring_request_is_one_submit_per_free_occurrence(world: ProsperoRequestWorld):
    first = world.now + timedelta(days=1, hours=2)
    world.book(first + timedelta(days=7))
    world.book(first + timedelta(days=21))
    world.sync()
    world.invite("weekly@client", first, first + hours(1), rrule="FREQ=WEEKLY;COUNT=5")
    outcome = world.sync()
    assert outcome.code == 0, outcome.document
    assert _starts(world.requested("weekly@client")) == [
        first, first + timedelta(days=14), first + timedelta(days=28)
    ]
    answers = world.room_answers("weekly@client")
    assert answers[0] == "TENTATIVE" and answers.count("DECLINED") == 2
    assert world.sync().code == 0
    assert len(world.requested("weekly@client")) == 3


def test_an_endless_series_is_extended_as_the_window_moves(world: ProsperoRequestWorld):
    world.future_days = 30
    world.write_config()
    first = world.now + timedelta(days=1, hours=2)
    world.invite("endless@client", first, first + hours(1), rrule="FREQ=WEEKLY")
    assert world.sync().code == 0
    weeks = [first + timedelta(days=7 * n) for n in range(5)]
    assert _starts(world.requested("endless@client")) == weeks
    # Week 6 is taken by the time the window reaches it.
    blocked = first + timedelta(days=35)
    world.book(blocked)
    world.future_days = 60
    world.write_config()
    outcome = world.sync()
    assert outcome.code == 0, outcome.document
    later = [first + timedelta(days=7 * n) for n in (6, 7, 8)]
    assert _starts(world.requested("endless@client")) == weeks + later
    answers = world.room_answers("endless@client")
    assert answers == ["TENTATIVE", "DECLINED"]
    _href, _etag, calendar = world.request_event("endless@client")
    declined = calendar.walk("VEVENT")[1]
    assert utc(declined.decoded("RECURRENCE-ID")) == blocked
    assert "the room is booked" in str(declined["COMMENT"])
    again = world.sync()
    assert again.code == 0 and again.room["declined"] == 0
    assert len(world.requested("endless@client")) == 8


def test_moves_become_change_requests_and_a_taken_move_is_reverted(
    world: ProsperoRequestWorld,
):
    start = world.now + timedelta(days=3)
    world.invite("move@client", start, start + hours(1))
    world.sync()
    [booking] = world.requested("move@client")
    # Pending: Prospero applies the change request at once.
    later = start + hours(4)
    world.edit("move@client", request_ics("move@client", later, later + hours(1)))
    assert world.sync().code == 0
    [moved] = world.requested("move@client")
    assert moved["id"] == booking["id"] and utc(moved["event"]["start"]) == later
    # Approved: the move waits for the admin as a change request.
    world.emulator.approve(booking["id"])
    world.sync()
    latest = later + hours(2)
    world.edit("move@client", request_ics("move@client", latest, latest + hours(1)))
    assert world.sync().code == 0
    [queued] = world.emulator.change_requests()
    assert queued["bookingId"] == booking["id"] and utc(queued["event"]["start"]) == latest
    refused_move(world, "move@client", latest)
    assert len(world.emulator.change_requests()) == 1


def test_single_occurrence_and_series_deletes(world: ProsperoRequestWorld):
    first = world.now + timedelta(days=1, hours=2)
    rule = "FREQ=WEEKLY;COUNT=3"
    world.invite("series@client", first, first + hours(1), rrule=rule)
    world.sync()
    assert len(world.requested("series@client")) == 3
    # One occurrence approved already: its cancellation goes through eventProcedure.
    approved = world.requested("series@client")[2]
    world.emulator.approve(approved["id"])
    world.sync()
    second = first + timedelta(days=7)
    world.edit(
        "series@client",
        request_ics("series@client", first, first + hours(1), rrule=rule, exdates=(second,)),
    )
    assert world.sync().code == 0
    assert _starts(world.requested("series@client")) == [first, first + timedelta(days=14)]
    world.remove("series@client")
    assert world.sync().code == 0
    assert world.requested("series@client") == []
    assert world.emulator.event_of(approved["id"])["canceled"] is True  # type: ignore[index]


def test_two_requests_for_one_slot_exactly_one_wins(world: ProsperoRequestWorld):
    race_for_one_slot(world, world.now + timedelta(days=4))
    assert len(world.requested("a-early@client")) == 1
    assert world.requested("b-late@client") == []
    assert world.room_answers("a-early@client") == ["TENTATIVE"]


def test_crash_between_submit_and_tag_submits_once(
    world: ProsperoRequestWorld, monkeypatch: pytest.MonkeyPatch
):
    start = world.now + timedelta(days=5)
    world.invite("crash@client", start, start + hours(1))

    crash_after_provider_create(world, monkeypatch)
    assert len(world.requested("crash@client")) == 1
    outcome = world.sync()
    assert outcome.code == 0, outcome.document
    assert len(world.requested("crash@client")) == 1
    assert world.room_answers("crash@client") == ["TENTATIVE"]
    assert world.sync().room["declined"] == 0
    assert len(world.requested("crash@client")) == 1
