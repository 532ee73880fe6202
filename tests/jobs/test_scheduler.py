"""The in-process scheduler: due times to the second, backoff after failures, stopping."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

from bridge.errors import BridgeError
from bridge.jobs.scheduler import Scheduler, SimulatedClock, SystemClock

START = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)


def test_jobs_run_exactly_when_due_in_order():
    clock = SimulatedClock(START)
    scheduler = Scheduler(clock)
    runs: list[tuple[str, datetime]] = []

    def every(name: str, step: timedelta):
        def job(now: datetime) -> datetime:
            runs.append((name, now))
            return now + step
        return job

    scheduler.add("a", every("a", timedelta(minutes=5)))
    scheduler.add("b", every("b", timedelta(seconds=90)), at=START + timedelta(seconds=30))
    scheduler.run(threading.Event(), until=START + timedelta(minutes=5))
    assert runs == [
        ("a", START), ("b", START + timedelta(seconds=30)), ("b", START + timedelta(seconds=120)),
        ("b", START + timedelta(seconds=210)), ("a", START + timedelta(minutes=5)),
        ("b", START + timedelta(seconds=300)),
    ]
    assert clock.now() == START + timedelta(minutes=5)


def test_failing_job_backs_off_and_recovers():
    clock = SimulatedClock(START)
    scheduler = Scheduler(clock, retry_base=timedelta(seconds=10), retry_max=timedelta(seconds=30))
    attempts: list[datetime] = []

    def flaky(now: datetime) -> datetime | None:
        attempts.append(now)
        if len(attempts) <= 3:
            raise BridgeError("provider down")
        return None

    scheduler.add("flaky", flaky)
    scheduler.run(threading.Event(), until=START + timedelta(minutes=5))
    assert [int((a - START).total_seconds()) for a in attempts] == [0, 10, 30, 60]
    assert scheduler.next_run() is None  # returned None: done


def test_wake_brings_a_job_forward():
    clock = SimulatedClock(START)
    scheduler = Scheduler(clock)
    runs: list[datetime] = []
    scheduler.add("j", lambda now: runs.append(now) or now + timedelta(hours=1))
    scheduler.run_pending()
    clock.advance(timedelta(minutes=1))
    scheduler.wake("j")
    assert scheduler.run_pending() == ["j"] and runs[-1] == START + timedelta(minutes=1)


def test_stop_interrupts_a_long_wait():
    scheduler = Scheduler(SystemClock())
    scheduler.add("later", lambda now: None, at=datetime.now(UTC) + timedelta(hours=1))
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    began = time.monotonic()
    scheduler.run(stop)
    assert time.monotonic() - began < 5
