"""Prospero → CalDAV end to end, against real Radicale and Xandikos servers.

Scenarios of the sync engine issue, for Prospero's approval workflow: singles (pending shows
TENTATIVE, approved CONFIRMED at its Event's times), status changes (a booking approved after
it was synced as tentative is confirmed in place), denials, cancellations and deletions (every
read is full, so each disappears on the next pass), change requests, token expiry mid-sync,
provider faults, and SIGKILLed ``roombridge sync`` processes that the next pass must heal.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import icalendar
import pytest

from bridge.emulators.faults import FaultKind, FaultPlan
from mappings.prospero import BookingState, EventProcedure
from tests.e2e.crash import kill_and_heal
from tests.e2e.prospero_world import PASSWORD, ProsperoCalDavWorld
from tests.plugins.caldav_servers import CalDAVServer

LIST_ROUTE = "GET /api/bookings"
LOGIN_ROUTE = "POST /api/auth/login"
REFRESH_ROUTE = "GET /api/auth/refresh"
ORGANIZATION_ROUTE = "GET /api/organization"


@pytest.fixture
def world(
    caldav_server: CalDAVServer, tmp_path: Path, state_url: str
) -> Iterator[ProsperoCalDavWorld]:
    """The hall on each CalDAV server, with each state store (SQLite and PostgreSQL)."""
    with ProsperoCalDavWorld(caldav_server, tmp_path, state_url=state_url).running() as running:
        yield running


@pytest.fixture
def dav_world(caldav_server: CalDAVServer, tmp_path: Path) -> Iterator[ProsperoCalDavWorld]:
    """The hall on each CalDAV server, SQLite state (where the store is not the point)."""
    with ProsperoCalDavWorld(caldav_server, tmp_path).running() as running:
        yield running


def days(n: float) -> timedelta:
    return timedelta(days=n)


def morning(world: ProsperoCalDavWorld, day: int) -> datetime:
    """09:00 UTC ``day`` days from now."""
    return world.now.replace(hour=9) + days(day)


def status_of(ics: bytes) -> str:
    (event,) = icalendar.Calendar.from_ical(ics).walk("VEVENT")
    return str(event["STATUS"])


def routes_since(world: ProsperoCalDavWorld, first: int) -> list[str]:
    return [f"{r.method} {r.route}" for r in world.emulator.requests[first:]]


# ----- singles -----------------------------------------------------------------------------------


def test_pending_and_approved_bookings_of_the_hall_reach_the_calendar(world: ProsperoCalDavWorld):
    world.request(morning(world, 1), title="Auditions")
    approved = world.request(morning(world, 2), hours=2, title="Rehearsal")
    # The admin approves at other times than requested: the Event's times are the truth.
    later = morning(world, 2) + timedelta(hours=5)
    world.emulator.approve(approved, start=later, end=later + timedelta(hours=2))
    world.request(morning(world, 3), space=world.studio)
    world.request(morning(world, 4), module=world.other_module)
    outcome = world.sync()
    assert outcome.code == 0, outcome.document
    assert outcome.room["created"] == 2
    world.assert_converged()
    assert sorted(status_of(ics) for _h, _u, ics in world.objects()) == ["CONFIRMED", "TENTATIVE"]


def test_second_pass_is_a_no_op_that_lists_once(world: ProsperoCalDavWorld):
    world.book(morning(world, 1))
    world.request(morning(world, 2))
    assert world.sync().code == 0
    first = len(world.emulator.requests)
    again = world.sync()
    assert (again.room["created"], again.room["updated"], again.room["deleted"]) == (0, 0, 0)
    # A fresh process logs in once and lists once; the zone is remembered from the first pass.
    assert sorted(routes_since(world, first)) == [LIST_ROUTE, LOGIN_ROUTE]
    world.assert_converged()


# ----- status changes ----------------------------------------------------------------------------


def test_booking_approved_after_it_was_synced_as_tentative_is_confirmed_in_place(
    world: ProsperoCalDavWorld,
):
    booking = world.request(morning(world, 1), title="Gala")
    world.sync()
    ((href, uid, ics),) = world.objects()
    assert status_of(ics) == "TENTATIVE"
    world.tick()
    later = morning(world, 1) + timedelta(hours=1)
    world.emulator.approve(booking, start=later, end=later + timedelta(hours=1))
    outcome = world.sync()
    assert (outcome.room["created"], outcome.room["updated"]) == (0, 1)
    ((href_after, uid_after, ics_after),) = world.objects()
    assert (href_after, uid_after) == (href, uid)
    assert status_of(ics_after) == "CONFIRMED"
    world.assert_converged()


def test_denied_and_cancelled_bookings_disappear(world: ProsperoCalDavWorld):
    denied = world.request(morning(world, 1))
    kept_event = world.book(morning(world, 2))
    deleted_event = world.book(morning(world, 3))
    withdrawn = world.request(morning(world, 4))
    stays = world.book(morning(world, 5))
    world.sync()
    assert len(world.objects()) == 5
    world.tick()
    world.emulator.deny(denied)
    world.emulator.cancel(kept_event, EventProcedure.CANCEL)
    world.emulator.cancel(deleted_event, EventProcedure.DELETE)
    world.emulator.request_change(withdrawn, cancellation=True)
    outcome = world.sync()
    assert outcome.code == 0, outcome.document
    assert outcome.room["deleted"] == 4
    assert world.emulator.booking(withdrawn)["bookingStatus"] == BookingState.CANCELED
    ((_href, uid, _ics),) = world.objects()
    assert stays in uid
    world.assert_converged()


def test_admin_deleting_a_booking_is_seen_without_a_full_pass(world: ProsperoCalDavWorld):
    gone = world.book(morning(world, 1))
    world.book(morning(world, 2))
    world.sync()
    world.emulator.delete_booking(gone)
    outcome = world.sync()
    assert outcome.room["deleted"] == 1
    world.assert_converged()


def test_changes_move_the_calendar_event(dav_world: ProsperoCalDavWorld):
    world = dav_world
    pending = world.request(morning(world, 1))
    approved = world.book(morning(world, 2), title="Tech run")
    moved_by_admin = world.book(morning(world, 3))
    leaves_the_hall = world.book(morning(world, 4))
    world.sync()
    world.tick()
    # The end user moves the pending request directly, and asks to move the approved one.
    world.emulator.request_change(
        pending, start=morning(world, 6), end=morning(world, 6) + days(0.1)
    )
    queued = world.emulator.request_change(
        approved, start=morning(world, 7), end=morning(world, 7) + timedelta(hours=3)
    )
    assert queued is not None
    world.emulator.move_event(
        moved_by_admin,
        title="Dress rehearsal",
        start=morning(world, 8),
        end=morning(world, 8) + timedelta(hours=1),
    )
    world.emulator.move_event(leaves_the_hall, spaces=[world.studio])
    before = world.sync()
    assert (before.room["updated"], before.room["deleted"]) == (2, 1)
    world.assert_converged()
    world.emulator.approve_change(queued)
    after = world.sync()
    assert after.room["updated"] == 1
    world.assert_converged()


# ----- safety valve, tokens ------------------------------------------------------------------


def test_mass_cancellation_is_refused_unless_forced(caldav_server: CalDAVServer, tmp_path: Path):
    with ProsperoCalDavWorld(caldav_server, tmp_path, max_deletions=2).running() as world:
        ids = [world.book(morning(world, i + 1)) for i in range(4)]
        world.sync()
        for booking in ids:
            world.emulator.cancel(booking)
        refused = world.sync()
        assert refused.code == 1 and refused.room["deleted"] == 0
        assert len(world.objects()) == 4
        forced = world.sync("--force")
        assert forced.code == 0 and forced.room["deleted"] == 4
        assert world.objects() == []


def test_access_cookie_expiring_mid_sync_is_refreshed_once(dav_world: ProsperoCalDavWorld):
    world = dav_world
    for day in range(1, 5):
        world.book(morning(world, day))
    # The first pass asks for the organisation's zone, then lists: the cookie dies in between.
    world.emulator.expire_access_after(1)
    outcome = world.sync()
    assert outcome.code == 0, outcome.document
    assert routes_since(world, 0) == [
        LOGIN_ROUTE,
        ORGANIZATION_ROUTE,
        LIST_ROUTE,
        REFRESH_ROUTE,
        LIST_ROUTE,
    ]
    assert [r.status for r in world.emulator.requests].count(401) == 1
    world.assert_converged()


def test_refresh_token_refused_mid_sync_leads_to_one_new_login(dav_world: ProsperoCalDavWorld):
    world = dav_world
    world.book(morning(world, 1))
    world.emulator.expire_access_after(1)
    world.emulator.set_behaviour(refresh_lifetime=timedelta(0))
    outcome = world.sync()
    assert outcome.code == 0, outcome.document
    assert routes_since(world, 0).count(LOGIN_ROUTE) == 2
    refreshes = [r.status for r in world.emulator.requests if r.route == "/api/auth/refresh"]
    assert refreshes == [400]
    world.assert_converged()


# ----- failures ------------------------------------------------------------------------------


def test_provider_down_fails_cleanly_without_leaking_the_password(
    radicale_server: CalDAVServer, tmp_path: Path
):
    with ProsperoCalDavWorld(radicale_server, tmp_path).running() as world:
        world.book(morning(world, 1))
        world.emulator.set_faults(FaultPlan(rate=1.0, kinds=(FaultKind.SERVER_ERROR,)))
        process = world.sync_process()
        out, err = process.communicate(timeout=300)
        assert process.returncode == 1
        assert b"Traceback" not in err
        assert PASSWORD.encode() not in out + err
        assert world.objects() == []


def test_wrong_password_fails_the_room_and_keeps_the_calendar(
    radicale_server: CalDAVServer, tmp_path: Path
):
    with ProsperoCalDavWorld(radicale_server, tmp_path).running() as world:
        world.book(morning(world, 1))
        assert world.sync().code == 0
        world.emulator.session.users.clear()
        world.emulator.expire_access()
        world.emulator.expire_refresh()
        outcome = world.sync()
        assert outcome.code == 1
        assert "log in" in " ".join(outcome.room["errors"])
        assert len(world.objects()) == 1  # an auth failure never reads as "nothing booked"


def mutate(world: ProsperoCalDavWorld, rng: random.Random, count: int) -> None:
    """Random end-user and admin steps across the hall, the studio and another module."""
    emulator = world.emulator
    for _ in range(count):
        bookings = emulator.bookings()
        pending = [b["id"] for b in bookings if b["bookingStatus"] == BookingState.PENDING]
        approved = [b["id"] for b in bookings if b["bookingStatus"] == BookingState.APPROVED]
        slot = world.now + days(rng.randint(1, 300)) + timedelta(hours=rng.randint(7, 18))
        choice = rng.random()
        if choice < 0.3 or not (pending or approved):
            space = world.studio if rng.random() < 0.15 else world.hall
            module = world.other_module if rng.random() < 0.1 else world.module
            world.request(slot, hours=rng.choice([0.5, 1, 2]), space=space, module=module)
        elif choice < 0.5 and pending:
            moved = {"start": slot, "end": slot + timedelta(hours=1)} if rng.random() < 0.3 else {}
            emulator.approve(rng.choice(pending), **moved)
        elif choice < 0.58 and pending:
            emulator.deny(rng.choice(pending))
        elif choice < 0.66 and approved:
            emulator.cancel(rng.choice(approved), rng.choice(list(EventProcedure)))
        elif choice < 0.76 and approved:
            emulator.move_event(rng.choice(approved), start=slot, end=slot + timedelta(hours=2))
        elif choice < 0.88:
            target = rng.choice(pending + approved)
            queued = emulator.request_change(target, start=slot, end=slot + timedelta(hours=1))
            if queued is not None and rng.random() < 0.7:
                emulator.approve_change(queued)
            elif queued is not None:
                emulator.deny_change(queued)
        else:
            emulator.delete_booking(rng.choice(pending + approved))
    world.tick()


@pytest.mark.slow
def test_sigkill_at_random_points_heals_without_duplicates(
    caldav_server: CalDAVServer, tmp_path: Path
):
    rng = random.Random(20260412)
    with ProsperoCalDavWorld(caldav_server, tmp_path).running() as world:
        mutate(world, rng, 120)
        kill_and_heal(world, rng, lambda count: mutate(world, rng, count), edits_per_run=(5, 20))


@pytest.mark.slow
def test_provider_faults_converge_without_duplicates_or_tracebacks(
    caldav_server: CalDAVServer, tmp_path: Path
):
    rng = random.Random(11)
    with ProsperoCalDavWorld(caldav_server, tmp_path).running() as world:
        mutate(world, rng, 50)
        # A pass makes only a few Prospero calls (login, list): several passes per round,
        # so every kind of fault gets drawn.
        for round_number in range(4):
            world.emulator.set_faults(
                FaultPlan(
                    rate=0.3, seed=round_number, retry_after=1, hang_seconds=0.5, slow_seconds=0.1
                )
            )
            codes = []
            for attempt in range(12):
                process = world.sync_process()
                _out, err = process.communicate(timeout=300)
                assert b"Traceback" not in err, err.decode()
                codes.append(process.returncode)
                if process.returncode == 0 and attempt >= 4:
                    break
            assert codes[-1] == 0, codes
            world.emulator.clear_faults()
            world.assert_converged()
            mutate(world, rng, 10)
        faults = {r.fault for r in world.emulator.requests}
        assert {FaultKind.THROTTLE, FaultKind.SERVER_ERROR} <= faults
