"""Crash consistency (SIGKILL at random points) and provider faults, against real CalDAV servers."""

from __future__ import annotations

import random
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from bridge.emulators.faults import FaultKind, FaultPlan
from tests.e2e.crash import kill_and_heal
from tests.e2e.world import World, weekly_series_body
from tests.plugins.caldav_servers import CalDAVServer


def mutate(world: World, rng: random.Random, count: int) -> None:
    """Random provider edits: new bookings, moves, retitles and cancellations."""
    live = [r["Id"] for r in world.emulator.bookings() if not r.get("RepeatSeriesUniqueId")]
    for _ in range(count):
        choice = rng.random()
        if choice < 0.4 or not live:
            slot = world.now + timedelta(days=rng.randint(1, 300), hours=rng.randint(0, 20))
            world.book(slot, hours=rng.choice([0.5, 1, 2]))
        elif choice < 0.7:
            booking_id = rng.choice(live)
            slot = world.now + timedelta(days=rng.randint(1, 300), hours=rng.randint(0, 20))
            world.emulator.edit_booking(booking_id, FromTime=slot, ToTime=slot + timedelta(hours=1))
        elif choice < 0.85:
            world.emulator.edit_booking(rng.choice(live), Notes=f"note {rng.random():.6f}")
        else:
            booking_id = rng.choice(live)
            live.remove(booking_id)
            world.emulator.cancel_booking(booking_id)
    world.tick()


def seed_series(world: World) -> None:
    """A weekly series through the real API, so crashes also hit recurring objects."""
    start = world.now + timedelta(days=2, hours=9)
    with world.client() as client:
        client.create_booking(
            weekly_series_body(world.resource, start, start + timedelta(days=120))
        )


def kill_loop(world: World, rng: random.Random) -> None:
    """A series and 150 bookings, then the crash loop with random provider edits."""
    seed_series(world)
    mutate(world, rng, 150)
    kill_and_heal(world, rng, lambda count: mutate(world, rng, count))


@pytest.mark.slow
def test_sigkill_at_random_points_heals_without_duplicates(
    caldav_server: CalDAVServer, tmp_path: Path
):
    with World(caldav_server, tmp_path).running() as world:
        kill_loop(world, random.Random(20261121))


@pytest.mark.slow
@pytest.mark.postgres
def test_sigkill_with_the_postgresql_store_heals_without_duplicates(
    radicale_server: CalDAVServer, tmp_path: Path, postgres_database: str
):
    """The same crash loop with the state in PostgreSQL (its transactions, not SQLite's)."""
    with World(radicale_server, tmp_path, state_url=postgres_database).running() as world:
        kill_loop(world, random.Random(20261206))


@pytest.mark.slow
def test_provider_faults_converge_without_duplicates_or_tracebacks(
    caldav_server: CalDAVServer, tmp_path: Path, state_url: str
):
    rng = random.Random(7)
    with World(caldav_server, tmp_path, state_url=state_url).running() as world:
        seed_series(world)
        mutate(world, rng, 60)
        world.emulator.faults.configure(
            FaultPlan(rate=0.3, seed=3, retry_after=1, hang_seconds=0.5, slow_seconds=0.1)
        )
        for _round in range(3):
            codes = []
            for _attempt in range(8):
                process = world.sync_process()
                _out, err = process.communicate(timeout=300)
                assert b"Traceback" not in err, err.decode()
                codes.append(process.returncode)
                if process.returncode == 0:
                    break
            assert codes[-1] == 0, codes
            world.emulator.faults.clear()
            world.assert_converged()
            mutate(world, rng, 15)
            world.emulator.faults.configure(
                FaultPlan(rate=0.3, seed=_round + 10, retry_after=1, hang_seconds=0.5)
            )
        assert any(r.fault is not None for r in world.emulator.requests)
        assert {FaultKind.THROTTLE, FaultKind.SERVER_ERROR} <= {
            r.fault for r in world.emulator.requests
        }


def test_process_exit_code_and_output_are_clean_when_the_provider_is_down(
    caldav_server: CalDAVServer, tmp_path: Path
):
    with World(caldav_server, tmp_path).running() as world:
        world.book(world.now + timedelta(days=1))
        world.emulator.faults.configure(FaultPlan(rate=1.0, kinds=(FaultKind.SERVER_ERROR,)))
        process = world.sync_process()
        out, err = process.communicate(timeout=300)
        assert process.returncode == 1
        assert b"Traceback" not in err
        assert b"FAILED" in out
        assert world.objects() == []
        assert b"e2e-Secret" not in out + err
        _ = subprocess  # the module is used by World.sync_process
