"""OfficeRnD → CalDAV end to end, against real Radicale and Xandikos servers.

Scenarios of the sync engine issue: singles, tentative bookings, recurrences with cancelled
and moved instances, buffers in each mode, status changes, cancellations and deletions (a
``DELETE`` is seen by full reads only), token expiry mid-sync, provider faults, and SIGKILLed
``roombridge sync`` processes that the next pass must heal.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import icalendar
import pytest

from bridge.emulators.faults import FaultKind, FaultPlan
from bridge.emulators.officernd import Behaviour
from bridge.model import Room, Window
from bridge.providers.http import PacingPolicy
from bridge.providers.officernd import OfficeRndClient
from bridge.sources.officernd import FULL_READ_EVERY, OfficeRndCursor, OfficeRndSource
from tests.e2e.crash import KillTimer
from tests.e2e.officernd_world import (
    CLIENT_ID,
    ORG,
    PROVIDER,
    SECRET,
    OfficeRndCalDavWorld,
)
from tests.plugins.caldav_servers import CalDAVServer

LONDON = ZoneInfo("Europe/London")
KILL_RUNS = 20
BOOKINGS_ROUTE = "GET /api/v2/organizations/{org}/bookings"
OCCURRENCES_ROUTE = "GET /api/v2/organizations/{org}/bookings/occurrences"
TOKEN_ROUTE = "POST /oauth/token"


@pytest.fixture
def world(
    caldav_server: CalDAVServer, tmp_path: Path, state_url: str
) -> Iterator[OfficeRndCalDavWorld]:
    """One room on each CalDAV server, with each state store (SQLite and PostgreSQL)."""
    with OfficeRndCalDavWorld(caldav_server, tmp_path, state_url=state_url).running() as running:
        yield running


@pytest.fixture
def dav_world(caldav_server: CalDAVServer, tmp_path: Path) -> Iterator[OfficeRndCalDavWorld]:
    """One room on each CalDAV server, SQLite state (where the store is not the point)."""
    with OfficeRndCalDavWorld(caldav_server, tmp_path).running() as running:
        yield running


def days(n: float) -> timedelta:
    return timedelta(days=n)


def morning(world: OfficeRndCalDavWorld, day: int) -> datetime:
    """09:00 UTC ``day`` days from now: clear of any DST change in London."""
    return world.now.replace(hour=9) + days(day)


def events_of(ics: bytes) -> list[icalendar.Event]:
    return list(icalendar.Calendar.from_ical(ics).walk("VEVENT"))


def booking_objects(world: OfficeRndCalDavWorld) -> list[tuple[str, str, bytes]]:
    return [o for o in world.objects() if not o[1].endswith(("-setup", "-cleanup"))]


# ----- singles, series, buffers --------------------------------------------------------------


def test_singles_and_tentative_reach_the_calendar(world: OfficeRndCalDavWorld):
    world.book(morning(world, 1), title="Board meeting")
    world.book(morning(world, 2), hours=2, tentative=True)
    outcome = world.sync()
    assert outcome.code == 0, outcome.document
    assert outcome.room["created"] == 2
    world.assert_converged()
    statuses = sorted(str(events_of(ics)[0]["STATUS"]) for _h, _u, ics in world.objects())
    assert statuses == ["CONFIRMED", "TENTATIVE"]


def test_second_pass_is_a_no_op_and_reads_one_listing_page(world: OfficeRndCalDavWorld):
    world.book(morning(world, 1))
    world.book(morning(world, 3), rrule="FREQ=WEEKLY;COUNT=5")
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
    # Incremental: one page of changes (the margin re-reads both bookings, series included).
    routes = [f"{r.method} {r.route}" for r in world.emulator.requests[before:]]
    assert sorted(routes) == sorted([TOKEN_ROUTE, BOOKINGS_ROUTE, *[OCCURRENCES_ROUTE] * 2])


def test_series_with_cancelled_and_moved_instances_is_one_recurring_event(
    world: OfficeRndCalDavWorld,
):
    first = morning(world, 2)
    series = world.book(first, rrule="FREQ=WEEKLY;UNTIL=" + _until(first + days(70)))
    world.emulator.cancel_occurrence(series, first + days(14))
    world.emulator.move_occurrence(
        series,
        first + days(28),
        first + days(29) + timedelta(hours=4),
        first + days(29) + timedelta(hours=6),
    )
    outcome = world.sync()
    assert outcome.code == 0, outcome.document
    ((_href, _uid, ics),) = world.objects()
    events = events_of(ics)
    master = next(e for e in events if "RRULE" in e)
    assert "EXDATE" in master
    assert any("RECURRENCE-ID" in e for e in events)
    world.assert_converged()


def test_daily_series_keeps_its_wall_clock_time_across_dst(
    caldav_server: CalDAVServer, tmp_path: Path
):
    # A London 09:00 series across the next DST change: UTC times shift by an hour.
    with OfficeRndCalDavWorld(caldav_server, tmp_path).running() as world:
        _sync_series_across_dst(world)


def _sync_series_across_dst(world: OfficeRndCalDavWorld) -> None:
    first = (_next_dst_change(world.now) - days(5)).astimezone(LONDON)
    start = first.replace(hour=9, minute=0, second=0, microsecond=0).astimezone(UTC)
    world.book(start, rrule="FREQ=DAILY;COUNT=12", title="Stand-up")
    assert world.sync().code == 0
    world.assert_converged()
    hours = {s.astimezone(LONDON).hour for _r, s, _e in world.calendar_spans()}
    assert hours == {9}


@pytest.mark.parametrize("mode", ["separate", "merged", "hidden"])
def test_buffer_modes(caldav_server: CalDAVServer, tmp_path: Path, mode: str):
    with OfficeRndCalDavWorld(caldav_server, tmp_path, buffers=mode).running() as world:
        world.book(morning(world, 1), before=15, after=30)
        world.book(morning(world, 2), after=10)
        world.book(morning(world, 3), rrule="FREQ=DAILY;COUNT=4", before=20)
        world.book(morning(world, 9))
        assert world.sync().code == 0
        world.assert_converged()
        roles = {
            uid.rsplit("-", 1)[-1]
            for _h, uid, _i in world.objects()
            if uid.endswith(("-setup", "-cleanup"))
        }
        assert roles == ({"setup", "cleanup"} if mode == "separate" else set())
        # A buffer change reaches the calendar too.
        first = world.emulator.bookings()[0]["_id"]
        world.tick()
        world.emulator.edit_booking(first, before=45)
        assert world.sync().code == 0
        world.assert_converged()


# ----- changes on the provider ---------------------------------------------------------------


def test_status_changes_move_through(world: OfficeRndCalDavWorld):
    pending = world.book(morning(world, 1), tentative=True)
    dropped = world.book(morning(world, 2))
    world.sync()
    world.tick()
    world.emulator.edit_booking(pending, tentative=False)
    world.emulator.cancel_booking(dropped)
    outcome = world.sync()
    assert (outcome.room["updated"], outcome.room["deleted"]) == (1, 1)
    ((_href, _uid, ics),) = world.objects()
    assert str(events_of(ics)[0]["STATUS"]) == "CONFIRMED"
    assert world.emulator.booking(dropped)["isCancelled"] is True  # cancel keeps the record
    world.assert_converged()


def test_moves_and_retitles_follow_the_provider(dav_world: OfficeRndCalDavWorld):
    world = dav_world
    moved = world.book(morning(world, 1))
    renamed = world.book(morning(world, 2), title="Old")
    series = world.book(morning(world, 3), rrule="FREQ=DAILY;COUNT=3")
    world.sync()
    world.tick()
    world.emulator.edit_booking(
        moved, start=morning(world, 5), end=morning(world, 5) + timedelta(hours=2)
    )
    world.emulator.edit_booking(renamed, title="New")
    world.emulator.edit_booking(series, rrule="FREQ=DAILY;COUNT=6")
    outcome = world.sync()
    assert outcome.room["updated"] == 3
    world.assert_converged()


def test_deletion_is_seen_by_a_full_read(world: OfficeRndCalDavWorld):
    kept = world.book(morning(world, 1))
    gone = world.book(morning(world, 2))
    world.sync()
    world.tick()
    world.emulator.delete_booking(gone)
    world.emulator.edit_booking(kept, title="still here")
    incremental = world.sync()
    # A DELETE leaves no trace in a modifiedAt listing: the incremental pass cannot see it.
    assert incremental.room["deleted"] == 0
    assert len(world.objects()) == 2
    full = world.sync("--full")
    assert full.code == 0 and full.room["deleted"] == 1
    world.assert_converged()


def test_occurrence_edit_that_does_not_touch_the_series_waits_for_a_full_read(
    caldav_server: CalDAVServer, tmp_path: Path
):
    behaviour = Behaviour(occurrence_edits_touch_master=False, token_requests_per_minute=None)
    with OfficeRndCalDavWorld(caldav_server, tmp_path, behaviour=behaviour).running() as world:
        first = morning(world, 1)
        series = world.book(first, rrule="FREQ=DAILY;COUNT=5")
        world.sync()
        # A later change moves the cursor past the series' modifiedAt (and the safety margin).
        world.tick(10)
        world.book(morning(world, 9))
        world.sync()
        world.emulator.cancel_occurrence(series, first + days(2))
        assert world.sync().room["updated"] == 0  # the assumption documented in the source
        assert world.sync("--full").room["updated"] == 1
        world.assert_converged()


def test_occurrence_edits_that_touch_the_series_are_seen_incrementally(
    dav_world: OfficeRndCalDavWorld,
):
    world = dav_world
    first = morning(world, 1)
    series = world.book(first, rrule="FREQ=DAILY;COUNT=5")
    world.sync()
    world.tick()
    world.emulator.cancel_occurrence(series, first + days(1))
    world.emulator.move_occurrence(
        series,
        first + days(3),
        first + days(3) + timedelta(hours=5),
        first + days(3) + timedelta(hours=6),
    )
    outcome = world.sync()
    assert outcome.room["updated"] == 1
    world.assert_converged()


def test_source_reads_in_full_once_a_day(radicale_server: CalDAVServer, tmp_path: Path):
    with OfficeRndCalDavWorld(radicale_server, tmp_path).running() as world:
        kept = world.book(morning(world, 1))
        gone = world.book(morning(world, 2))
        client = OfficeRndClient(
            CLIENT_ID,
            SECRET,
            org=ORG,
            base_url=world.base_url,
            token_url=f"{world.base_url}/oauth/token",
            pacing=PacingPolicy(),
        )
        with client:
            source = OfficeRndSource(client, name=PROVIDER)
            room = Room("callisto", "Callisto", "Europe/London", PROVIDER, world.resource)
            window = Window.around(world.now, 30, 365)
            first = source.read(room, None, window, full=False, now=world.now)
            assert first.full and {b.key for b in first.bookings} == {kept, gone}
            world.emulator.delete_booking(gone)
            soon = source.read(room, first.cursor, window, full=False, now=world.now + days(0.5))
            assert not soon.full and soon.removed == []
            later = world.now + FULL_READ_EVERY
            due = source.read(room, soon.cursor, window, full=False, now=later)
            assert due.full and {b.key for b in due.bookings} == {kept}
            cursor = OfficeRndCursor.loads(due.cursor)
            assert cursor is not None and cursor.full_at == later
            assert due.requests >= 1


# ----- third parties, safety valve -----------------------------------------------------------


def test_third_party_edit_is_reverted_without_duplicates(dav_world: OfficeRndCalDavWorld):
    world = dav_world
    world.book(morning(world, 1), title="Design review")
    world.sync()
    ((href, _uid, ics),) = world.objects()
    with world.calendar() as calendar:
        calendar.update(
            href, ics.replace(b"SUMMARY:", b"SUMMARY:Hijacked "), calendar.get(href).etag
        )
    outcome = world.sync()
    assert outcome.room["updated"] == 1
    ((_href, _uid, restored),) = world.objects()
    assert b"Hijacked" not in restored
    world.assert_converged()


def test_mass_cancellation_is_refused_unless_forced(caldav_server: CalDAVServer, tmp_path: Path):
    with OfficeRndCalDavWorld(caldav_server, tmp_path, max_deletions=2).running() as world:
        ids = [world.book(morning(world, i + 1)) for i in range(4)]
        world.sync()
        world.tick()
        for booking_id in ids:
            world.emulator.cancel_booking(booking_id)
        refused = world.sync()
        assert refused.code == 1 and refused.room["deleted"] == 0
        assert "max_deletions" in " ".join(refused.room["errors"])
        assert len(world.objects()) == 4
        forced = world.sync("--force")
        assert forced.code == 0 and forced.room["deleted"] == 4
        assert world.objects() == []


# ----- tokens --------------------------------------------------------------------------------


def test_token_expiring_mid_sync_is_renewed_once(caldav_server: CalDAVServer, tmp_path: Path):
    with OfficeRndCalDavWorld(caldav_server, tmp_path).running() as world:
        for day in range(1, 6):
            world.book(morning(world, day), rrule="FREQ=DAILY;COUNT=3" if day % 2 else None)
        world.emulator.expire_tokens_after(3)
        outcome = world.sync()
        assert outcome.code == 0, outcome.document
        world.assert_converged()
        assert world.emulator.tokens_issued() == 2
        assert [r.status for r in world.emulator.requests].count(401) == 1


def test_one_pass_takes_one_token_under_the_real_rate_limit(
    radicale_server: CalDAVServer, tmp_path: Path
):
    behaviour = Behaviour(token_requests_per_minute=5)
    with OfficeRndCalDavWorld(radicale_server, tmp_path, behaviour=behaviour).running() as world:
        for day in range(1, 60):
            world.book(morning(world, day) + timedelta(hours=day % 5))
        for day in range(1, 4):
            world.book(morning(world, day) + timedelta(hours=8), rrule="FREQ=WEEKLY;COUNT=20")
        assert world.sync("--full").code == 0
        counts = world.emulator.request_counts()
        assert counts[TOKEN_ROUTE] == 1
        assert counts[BOOKINGS_ROUTE] == 2  # 62 bookings, 50 a page
        world.assert_converged()


# ----- failures ------------------------------------------------------------------------------


def test_provider_down_fails_cleanly_without_leaking_the_secret(
    radicale_server: CalDAVServer, tmp_path: Path
):
    with OfficeRndCalDavWorld(radicale_server, tmp_path).running() as world:
        world.book(morning(world, 1))
        world.emulator.set_faults(FaultPlan(rate=1.0, kinds=(FaultKind.SERVER_ERROR,)))
        process = world.sync_process()
        out, err = process.communicate(timeout=300)
        assert process.returncode == 1
        assert b"Traceback" not in err
        assert b"FAILED" in out
        assert SECRET.encode() not in out + err
        assert world.objects() == []


def mutate(world: OfficeRndCalDavWorld, rng: random.Random, count: int, *, deletes: bool) -> None:
    """Random admin changes: new bookings and series, moves, retitles, buffer and status
    changes, cancellations, occurrence edits, and (when ``deletes``) hard deletions."""
    for _ in range(count):
        bookings = [b for b in world.emulator.bookings() if not b["isCancelled"]]
        singles = [b["_id"] for b in bookings if not b["recurrence"]["rrule"]]
        series = [b["_id"] for b in bookings if b["recurrence"]["rrule"]]
        choice = rng.random()
        slot = world.now + days(rng.randint(1, 300)) + timedelta(hours=rng.randint(7, 18))
        if choice < 0.3 or not singles:
            world.book(
                slot,
                hours=rng.choice([0.5, 1, 2]),
                before=rng.choice([0, 0, 15]),
                after=rng.choice([0, 10]),
            )
        elif choice < 0.4:
            world.book(
                slot,
                rrule=f"FREQ={rng.choice(['DAILY', 'WEEKLY'])};COUNT={rng.randint(2, 8)}",
                after=rng.choice([0, 15]),
            )
        elif choice < 0.55:
            world.emulator.edit_booking(
                rng.choice(singles), start=slot, end=slot + timedelta(hours=1)
            )
        elif choice < 0.65:
            world.emulator.edit_booking(
                rng.choice(singles), title=f"note {rng.random():.6f}", tentative=rng.random() < 0.3
            )
        elif choice < 0.75 and series:
            _edit_occurrence(world, rng, rng.choice(series))
        elif choice < 0.85 or not deletes:
            world.emulator.cancel_booking(rng.choice(singles))
        else:
            world.emulator.delete_booking(rng.choice(singles))
    world.tick()


def _edit_occurrence(world: OfficeRndCalDavWorld, rng: random.Random, series: str) -> None:
    """Cancel or move one instance of a series."""
    start, end = world.compared_period()
    instants = world.emulator.rule_instants(series, start, end)
    if not instants:
        return
    instant = rng.choice(instants)
    if rng.random() < 0.5:
        world.emulator.cancel_occurrence(series, instant)
    else:
        later = instant + timedelta(hours=2)
        world.emulator.move_occurrence(series, instant, later, later + timedelta(hours=1))


@pytest.mark.slow
def test_sigkill_at_random_points_heals_without_duplicates(
    caldav_server: CalDAVServer, tmp_path: Path
):
    rng = random.Random(20261121)
    with OfficeRndCalDavWorld(caldav_server, tmp_path).running() as world:
        mutate(world, rng, 120, deletes=False)
        killed_mid_run = 0
        timer = KillTimer(rng)
        for run in range(KILL_RUNS):
            # Hard deletions are only visible to full reads, so they come before full passes.
            full_check = run % 4 == 3
            if run:
                mutate(world, rng, rng.randint(5, 20), deletes=full_check)
            process = world.sync_process(*(["--full"] if run % 5 == 4 else []))
            if timer.kill_during(process):
                killed_mid_run += 1
            outcome = world.sync(*(["--full"] if full_check else []))
            assert outcome.code == 0, (run, outcome.document)
            world.assert_converged()
        # The kills must really have landed mid-run for the test to mean anything.
        assert killed_mid_run >= KILL_RUNS // 2


@pytest.mark.slow
def test_provider_faults_converge_without_duplicates_or_tracebacks(
    caldav_server: CalDAVServer, tmp_path: Path
):
    rng = random.Random(11)
    with OfficeRndCalDavWorld(caldav_server, tmp_path).running() as world:
        mutate(world, rng, 50, deletes=False)
        for round_number in range(3):
            world.emulator.set_faults(
                FaultPlan(
                    rate=0.3, seed=round_number, retry_after=1, hang_seconds=0.5, slow_seconds=0.1
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
            mutate(world, rng, 10, deletes=False)
        faults = {r.fault for r in world.emulator.requests}
        assert {FaultKind.THROTTLE, FaultKind.SERVER_ERROR} <= faults


# ----- helpers -------------------------------------------------------------------------------


def _until(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _next_dst_change(after: datetime) -> datetime:
    """The first instant after ``after`` (+10 days) at which London's UTC offset changes."""
    zone = LONDON
    moment = after + days(10)
    offset = moment.astimezone(zone).utcoffset()
    while moment.astimezone(zone).utcoffset() == offset:
        moment += timedelta(hours=1)
    return moment
