"""Nexudus members portal (``api = "portal"``) → CalDAV end to end, on Radicale and Xandikos."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from bridge.emulators.faults import FaultKind, FaultPlan
from bridge.emulators.nexudus_portal import FAULT_PREFIX
from tests.e2e.crash import kill_and_heal
from tests.e2e.nexudus_portal_world import MEMBER, PASSWORD, PortalCalDavWorld
from tests.plugins.caldav_servers import CalDAVServer

LIST_ROUTES = [
    "GET /{language}/bookings/fullCalendarBookings",
    "GET /{language}/bookings/fullCalendarEvents",
]


@pytest.fixture
def world(
    caldav_server: CalDAVServer, tmp_path: Path, state_url: str
) -> Iterator[PortalCalDavWorld]:
    """One portal room on each CalDAV server, with each state store (SQLite and PostgreSQL)."""
    with PortalCalDavWorld(caldav_server, tmp_path, state_url=state_url).running() as running:
        yield running


@pytest.fixture
def dav_world(caldav_server: CalDAVServer, tmp_path: Path) -> Iterator[PortalCalDavWorld]:
    """One portal room on each CalDAV server, SQLite state."""
    with PortalCalDavWorld(caldav_server, tmp_path).running() as running:
        yield running


def days(n: float) -> timedelta:
    return timedelta(days=n)


def test_bookings_tentative_ones_and_room_events_reach_the_calendar(world: PortalCalDavWorld):
    world.book(world.now + days(1), notes="Board meeting", member=MEMBER)
    world.book(world.now + days(2), hours=2, tentative=True)
    world.event("Pottery workshop", world.now + days(3))
    world.event("Monday siesta", world.now + days(3), resource_id=0)  # in no room
    world.event("Yoga", world.now + days(4), resource_id=world.other_resource)
    outcome = world.sync()
    assert outcome.code == 0, outcome.document
    assert outcome.room["created"] == 3
    world.assert_converged()
    events = world.events_by_summary()
    assert str(events["Pottery workshop"]["STATUS"]) == "CONFIRMED"
    assert events["Pottery workshop"]["UID"].endswith("event-" + str(world.emulator.events()[0].id))
    assert str(events["Ada Member"]["DESCRIPTION"]) == "Board meeting"
    assert str(events["Otto Colleague"]["STATUS"]) == "TENTATIVE"


def test_local_wall_clock_times_land_at_the_right_instant(dav_world: PortalCalDavWorld):
    world = dav_world
    # Spread over the year, so both GMT and BST dates are hit: the portal's local "Z" times
    # must not be taken for UTC in either.
    starts = [world.now + days(d) for d in (10, 100, 200, 300)]
    for start in starts:
        world.book(start)
    assert world.sync().code == 0
    assert sorted(world.calendar_instants()) == [(s, s + timedelta(hours=1)) for s in starts]


def test_second_pass_is_a_no_op_reading_two_lists(world: PortalCalDavWorld):
    world.book(world.now + days(1))
    world.event("Talk", world.now + days(2))
    world.sync()
    before = len(world.emulator.requests)
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
    assert sorted(f"{r.method} {r.route}" for r in world.emulator.requests[before:]) == LIST_ROUTES


def test_status_changes_and_deletions_follow_the_provider(world: PortalCalDavWorld):
    pending = world.book(world.now + days(1), tentative=True)
    dropped = world.book(world.now + days(2))
    talk = world.event("Talk", world.now + days(3))
    moved_away = world.event("Fair", world.now + days(4))
    world.sync()
    world.emulator.edit_booking(pending, tentative=False)
    world.emulator.delete_booking(dropped)
    world.emulator.remove_event(talk)
    world.emulator.edit_event(moved_away, resource_id=world.other_resource)
    outcome = world.sync()
    assert outcome.code == 0, outcome.document
    assert (outcome.room["updated"], outcome.room["deleted"]) == (1, 3)
    assert str(world.events_by_summary()["Otto Colleague"]["STATUS"]) == "CONFIRMED"
    world.assert_converged()


def test_moves_notes_and_retitled_events_follow_the_provider(dav_world: PortalCalDavWorld):
    world = dav_world
    moved = world.book(world.now + days(1))
    noted = world.book(world.now + days(2))
    talk = world.event("Talk", world.now + days(3))
    world.sync()
    world.emulator.edit_booking(
        moved, start=world.now + days(5), end=world.now + days(5) + timedelta(hours=2)
    )
    world.emulator.edit_booking(noted, notes="Bring the projector")
    world.emulator.edit_event(talk, title="Keynote")
    outcome = world.sync()
    assert outcome.room["updated"] == 3, outcome.document
    assert "Keynote" in world.events_by_summary()
    world.assert_converged()


def test_a_password_change_fails_clearly_and_touches_nothing(dav_world: PortalCalDavWorld):
    world = dav_world
    world.book(world.now + days(1))
    world.book(world.now + days(2))
    assert world.sync().code == 0
    world.emulator.change_password(MEMBER, "the-members-new-password")
    process = world.sync_process()
    out, err = process.communicate(timeout=120)
    assert process.returncode == 1
    assert b"Traceback" not in err
    assert b"FAILED" in out
    assert b"HTTP 401" in out and b"password" in out
    assert PASSWORD.encode() not in out + err
    # A refused login is not an empty portal: nothing is deleted.
    assert len(world.objects()) == 2
    assert [r.status for r in world.emulator.requests].count(401) == 1
    # The operator updates the secret: the next pass picks up what changed meanwhile.
    world.password = "the-members-new-password"
    world.book(world.now + days(3))
    outcome = world.sync()
    assert outcome.code == 0 and outcome.room["created"] == 1
    world.assert_converged()


def test_a_room_without_a_timezone_is_a_clear_error(caldav_server: CalDAVServer, tmp_path: Path):
    with PortalCalDavWorld(caldav_server, tmp_path, room_timezone=None).running() as world:
        world.book(world.now + days(1))
        outcome = world.sync()
        assert outcome.code == 1
        (error,) = outcome.room["errors"]
        assert "set `timezone` on the room" in error and "portal" in error
        assert world.objects() == []
        assert world.emulator.requests == []


def test_mass_deletion_is_refused_unless_forced(caldav_server: CalDAVServer, tmp_path: Path):
    with PortalCalDavWorld(caldav_server, tmp_path, max_deletions=2).running() as world:
        ids = [world.book(world.now + days(i + 1)) for i in range(4)]
        world.sync()
        for booking_id in ids:
            world.emulator.delete_booking(booking_id)
        refused = world.sync()
        assert refused.code == 1 and refused.room["deleted"] == 0
        assert "max_deletions" in " ".join(refused.room["errors"])
        assert len(world.objects()) == 4
        forced = world.sync("--force")
        assert forced.code == 0 and forced.room["deleted"] == 4
        assert world.objects() == []


def test_provider_down_fails_cleanly_without_leaking_the_secret(dav_world: PortalCalDavWorld):
    world = dav_world
    world.book(world.now + days(1))
    world.emulator.set_faults(
        FaultPlan(rate=1.0, kinds=(FaultKind.SERVER_ERROR,), path_prefix=FAULT_PREFIX)
    )
    process = world.sync_process()
    out, err = process.communicate(timeout=300)
    assert process.returncode == 1
    assert b"Traceback" not in err and b"FAILED" in out
    assert PASSWORD.encode() not in out + err
    assert world.objects() == []


# ----- crashes and faults --------------------------------------------------------------------


def mutate(world: PortalCalDavWorld, rng: random.Random, count: int) -> None:
    """Random provider changes: new bookings and events, moves, notes, status, deletions."""
    for _ in range(count):
        live = [b.id for b in world.emulator.bookings() if b.resource_id == world.resource]
        events = [e.id for e in world.emulator.events()]
        slot = world.now + days(rng.randint(1, 300)) + timedelta(hours=rng.randint(0, 20))
        choice = rng.random()
        if choice < 0.35 or not live:
            world.book(slot, hours=rng.choice([0.5, 1, 2]), tentative=rng.random() < 0.2)
        elif choice < 0.45:
            world.event(f"Event {rng.randint(1, 10**6)}", slot, hours=rng.choice([1, 3]))
        elif choice < 0.65:
            world.emulator.edit_booking(rng.choice(live), start=slot, end=slot + timedelta(hours=1))
        elif choice < 0.8:
            world.emulator.edit_booking(
                rng.choice(live), notes=f"note {rng.random():.6f}", tentative=rng.random() < 0.3
            )
        elif choice < 0.9 and events:
            world.emulator.remove_event(rng.choice(events))
        else:
            world.emulator.delete_booking(rng.choice(live))


@pytest.mark.slow
def test_sigkill_at_random_points_heals_without_duplicates(
    caldav_server: CalDAVServer, tmp_path: Path
):
    rng = random.Random(20261122)
    with PortalCalDavWorld(caldav_server, tmp_path).running() as world:
        mutate(world, rng, 150)
        kill_and_heal(world, rng, lambda count: mutate(world, rng, count), edits_per_run=(5, 25))


@pytest.mark.slow
def test_provider_faults_converge_without_duplicates_or_tracebacks(
    caldav_server: CalDAVServer, tmp_path: Path
):
    rng = random.Random(7)
    with PortalCalDavWorld(caldav_server, tmp_path).running() as world:
        mutate(world, rng, 60)
        # A portal pass is only two requests: five rounds give every fault kind a chance.
        for round_number in range(5):
            world.emulator.set_faults(
                FaultPlan(
                    rate=0.3,
                    seed=round_number,
                    retry_after=1,
                    hang_seconds=0.5,
                    slow_seconds=0.1,
                    path_prefix=FAULT_PREFIX,
                )
            )
            codes = []
            for _attempt in range(8):
                process = world.sync_process()
                _out, err = process.communicate(timeout=300)
                assert b"Traceback" not in err, err.decode()
                codes.append(process.returncode)
                if process.returncode == 0:
                    break
            assert codes[-1] == 0, codes
            world.emulator.clear_faults()
            world.assert_converged()
            mutate(world, rng, 15)
        faults = {r.fault for r in world.emulator.requests}
        assert {FaultKind.THROTTLE, FaultKind.SERVER_ERROR} <= faults
