"""An in-process scheduler with an injectable clock.

Jobs are plain functions ``job(now) -> next run | None``. The scheduler sleeps until the
earliest job is due — to the second, not to a polling tick — runs every due job in due order,
and reschedules each at the time it returned (``None`` ends the job). A job that raises is
logged and retried with exponential backoff; it never stops the others.

``SystemClock`` waits on a :class:`threading.Event`, so a signal handler that sets it stops
the loop at once. ``SimulatedClock`` jumps straight to each deadline, so tests run a day of
scheduling in milliseconds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from bridge.errors import BridgeError

log = logging.getLogger(__name__)

#: Longest single nap of the system clock, so a wall-clock jump is noticed within it.
MAX_NAP = timedelta(seconds=30)

JobFunction = Callable[[datetime], datetime | None]


class Clock(Protocol):
    """What the scheduler needs of time."""

    def now(self) -> datetime:
        """The current aware instant."""
        ...

    def wait_until(self, deadline: datetime, stop: threading.Event) -> None:
        """Return at ``deadline``, or earlier once ``stop`` is set."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        """The current UTC time."""
        return datetime.now(UTC)

    def wait_until(self, deadline: datetime, stop: threading.Event) -> None:
        """Sleep on ``stop`` until the deadline, in naps of at most :data:`MAX_NAP`."""
        while not stop.is_set():
            remaining = deadline - self.now()
            if remaining <= timedelta(0):
                return
            stop.wait(min(remaining, MAX_NAP).total_seconds())


class SimulatedClock:
    """A clock that moves only when told, or jumps to the deadline it is asked to wait for."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("the simulated clock needs an aware instant")
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The simulated instant."""
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> None:
        """Let time pass."""
        with self._lock:
            self._now += delta

    def wait_until(self, deadline: datetime, stop: threading.Event) -> None:
        """Jump to the deadline (never backwards)."""
        with self._lock:
            self._now = max(self._now, deadline)


@dataclass(slots=True)
class _Job:
    """A named job and when it runs next."""

    name: str
    function: JobFunction
    next_run: datetime
    failures: int = 0


class Scheduler:
    """Runs named jobs at the times they ask for."""

    def __init__(
        self,
        clock: Clock,
        *,
        retry_base: timedelta = timedelta(seconds=10),
        retry_max: timedelta = timedelta(minutes=5),
    ) -> None:
        self.clock = clock
        self._retry_base = retry_base
        self._retry_max = retry_max
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()
        self._changed = threading.Event()

    def add(self, name: str, function: JobFunction, at: datetime | None = None) -> None:
        """Schedule a job (at once unless ``at``); replaces a job of the same name."""
        with self._lock:
            self._jobs[name] = _Job(name, function, at or self.clock.now())
        self._changed.set()

    def wake(self, name: str, at: datetime | None = None) -> None:
        """Run a job no later than ``at`` (default: now)."""
        when = at or self.clock.now()
        with self._lock:
            job = self._jobs.get(name)
            if job is not None and when < job.next_run:
                job.next_run = when
        self._changed.set()

    def next_run(self, name: str | None = None) -> datetime | None:
        """When a job (or the earliest of all) runs next; None when there is none."""
        with self._lock:
            if name is not None:
                job = self._jobs.get(name)
                return None if job is None else job.next_run
            return min((job.next_run for job in self._jobs.values()), default=None)

    def run_pending(self) -> list[str]:
        """Run every job that is due now, earliest first; the names run."""
        now = self.clock.now()
        with self._lock:
            due = sorted(
                (job for job in self._jobs.values() if job.next_run <= now),
                key=lambda job: (job.next_run, job.name),
            )
        for job in due:
            self._run(job, now)
        return [job.name for job in due]

    def run(self, stop: threading.Event, *, until: datetime | None = None) -> None:
        """Run jobs as they come due until ``stop`` is set (or the clock passes ``until``)."""
        while not stop.is_set():
            upcoming = self.next_run()
            if until is not None and (upcoming is None or upcoming > until):
                self.clock.wait_until(until, stop)
                return
            if upcoming is None:
                self._changed.wait(MAX_NAP.total_seconds())
                self._changed.clear()
                continue
            self.clock.wait_until(upcoming, stop)
            if not stop.is_set():
                self.run_pending()

    def _run(self, job: _Job, now: datetime) -> None:
        """Run one job and reschedule it (with backoff after a failure)."""
        try:
            following = job.function(now)
        except BridgeError as exc:
            self._failed(job, now, str(exc), with_trace=False)
            return
        except Exception as exc:
            self._failed(job, now, type(exc).__name__, with_trace=True)
            return
        with self._lock:
            job.failures = 0
            if following is None:
                self._jobs.pop(job.name, None)
            elif self._jobs.get(job.name) is job:
                # A wake() during the run may already have asked for an earlier time.
                job.next_run = following if job.next_run <= now else min(job.next_run, following)

    def _failed(self, job: _Job, now: datetime, reason: str, *, with_trace: bool) -> None:
        """Log a failed run and retry it later."""
        with self._lock:
            job.failures += 1
            delay: timedelta = min(self._retry_max, self._retry_base * 2 ** (job.failures - 1))
            job.next_run = now + delay
        log.error(
            "job %s failed (attempt %d), retry in %ss: %s",
            job.name, job.failures, int(delay.total_seconds()), reason, exc_info=with_trace,
        )
