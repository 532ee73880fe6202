"""Nexudus → CalDAV end to end, against real Radicale and Xandikos servers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import icalendar
import pytest

from tests.e2e.world import World
from tests.plugins.caldav_servers import CalDAVServer


@pytest.fixture
def world(caldav_server: CalDAVServer, tmp_path: Path, state_url: str) -> Iterator[World]:
    """One room on each CalDAV server, with each state store (SQLite and PostgreSQL)."""
    with World(caldav_server, tmp_path, state_url=state_url).running() as running:
        yield running


def days(n: float) -> timedelta:
    return timedelta(days=n)


def test_singles_and_tentative_reach_the_calendar(world: World):
    world.book(world.now + days(1), Notes="Board meeting")
    world.book(world.now + days(2), hours=2, Tentative=True)
    outcome = world.sync()
    assert outcome.code == 0, outcome.document
    assert outcome.room["created"] == 2
    world.assert_converged()
    statuses = sorted(
        str(icalendar.Calendar.from_ical(ics).walk("VEVENT")[0]["STATUS"])
        for _h, _u, ics in world.objects()
    )
    assert statuses == ["CONFIRMED", "TENTATIVE"]


def test_second_pass_is_a_no_op(world: World):
    world.book(world.now + days(1))
    world.sync()
    again = world.sync()
    assert again.room | {"planned": []} == {
        "id": "callisto",
        "ok": True,
        "created": 0,
        "updated": 0,
        "deleted": 0,
        "declined": 0,
        "errors": [],
        "planned": [],
        "requests": {"calendar": 1},
    }


def test_moves_and_deletions_follow_the_provider(world: World):
    moved = world.book(world.now + days(1))
    gone = world.book(world.now + days(2))
    world.sync()
    world.tick()
    world.emulator.edit_booking(
        moved, FromTime=world.now + days(3), ToTime=world.now + days(3) + timedelta(hours=1)
    )
    world.emulator.cancel_booking(gone)
    outcome = world.sync()
    assert (outcome.room["updated"], outcome.room["deleted"]) == (1, 1)
    world.assert_converged()


def test_series_with_deleted_and_moved_members_is_one_recurring_event(world: World):
    with world.client() as client:
        start = world.now + days(1)
        first = client.create_booking(
            {
                "ResourceId": world.resource,
                "FromTime": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "ToTime": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "RepeatBooking": True,
                "Repeats": 2,
                "RepeatEvery": 1,
                "RepeatUntil": (start + days(60)).strftime("%Y-%m-%dT%H:%M:%S"),
            }
        )
    members = sorted(
        (r for r in world.emulator.bookings() if r.get("RepeatSeriesUniqueId")),
        key=lambda r: r["FromTime"],
    )
    assert members[0]["Id"] == first and len(members) >= 8
    world.emulator.cancel_booking(members[2]["Id"])
    world.emulator.edit_booking(
        members[4]["Id"],
        FromTime=world.now + days(29) + timedelta(hours=3),
        ToTime=world.now + days(29) + timedelta(hours=5),
    )
    outcome = world.sync()
    assert outcome.code == 0, outcome.document
    objects = world.objects()
    assert len(objects) == 1
    event = icalendar.Calendar.from_ical(objects[0][2]).walk("VEVENT")
    assert "RRULE" in event[0]
    world.assert_converged()


def test_third_party_edit_is_reverted_without_duplicates(world: World):
    world.book(world.now + days(1), Notes="Design review")
    world.sync()
    ((href, _uid, ics),) = world.objects()
    tampered = ics.replace(b"SUMMARY:", b"SUMMARY:Hijacked ")
    with world.calendar() as calendar:
        etag = calendar.get(href).etag
        calendar.update(href, tampered, etag)
    outcome = world.sync()
    assert outcome.room["updated"] == 1
    ((_href, _uid, restored),) = world.objects()
    assert b"Hijacked" not in restored
    world.assert_converged()


def test_third_party_deletion_is_recreated(world: World):
    world.book(world.now + days(1))
    world.sync()
    ((href, _uid, _ics),) = world.objects()
    with world.calendar() as calendar:
        calendar.delete(href, None)
    outcome = world.sync()
    assert outcome.room["created"] == 1
    world.assert_converged()


def test_mass_deletion_is_refused_unless_forced(caldav_server: CalDAVServer, tmp_path: Path):
    with World(caldav_server, tmp_path, max_deletions=2).running() as world:
        ids = [world.book(world.now + days(i + 1)) for i in range(4)]
        world.sync()
        world.tick()
        for booking_id in ids:
            world.emulator.cancel_booking(booking_id)
        refused = world.sync()
        assert refused.code == 1
        assert refused.room["deleted"] == 0
        assert "max_deletions" in " ".join(refused.room["errors"])
        assert len(world.objects()) == 4
        forced = world.sync("--force")
        assert forced.code == 0 and forced.room["deleted"] == 4
        assert world.objects() == []


def test_dry_run_writes_nothing(world: World):
    world.book(world.now + days(1))
    outcome = world.sync("--dry-run")
    assert outcome.code == 0
    assert [p["action"] for p in outcome.room["planned"]] == ["create"]
    assert world.objects() == []
    assert world.sync().room["created"] == 1


@pytest.mark.parametrize("mode", ["separate", "merged", "hidden"])
def test_buffer_modes(caldav_server: CalDAVServer, tmp_path: Path, mode: str):
    with World(caldav_server, tmp_path, buffers=mode).running() as world:
        world.book(world.now + days(1))
        assert world.sync().code == 0
        world.assert_converged()


def test_no_op_resync_costs_one_calendar_request_and_the_provider_list_pages(world: World):
    for i in range(30):
        world.book(world.now + days(1) + timedelta(hours=3 * i))
    world.sync()
    before = len(world.emulator.requests)
    outcome = world.sync()
    # A one-shot `roombridge sync` logs in once; `roombridge run` keeps its token.
    provider_paths = [r.path for r in world.emulator.requests[before:] if r.path != "/api/token"]
    assert outcome.room["requests"]["calendar"] == 1
    assert sorted(provider_paths) == ["/api/spaces/bookings", "/api/spaces/cancelledbookings"]


def test_ten_changes_cost_about_ten_writes(world: World):
    ids = [world.book(world.now + days(1) + timedelta(hours=3 * i)) for i in range(40)]
    world.sync()
    world.tick()
    for booking_id in ids[:10]:
        world.emulator.edit_booking(booking_id, Notes="changed")
    outcome = world.sync()
    assert outcome.room["updated"] == 10
    # one read, ten writes, one settling read
    assert outcome.room["requests"]["calendar"] == 12 if world.server.name == "radicale" else 13
