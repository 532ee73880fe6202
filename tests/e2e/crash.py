"""Kill timing for the SIGKILL tests: delays that land inside a sync process's real run.

A fixed delay range goes stale as the bridge gets faster (or the machine slower): the process
then finishes before the kill and the test proves nothing. The timer learns how long an
uninterrupted run of this test takes (runs that finished before their kill) and picks each
delay uniformly inside that span.
"""

from __future__ import annotations

import random
import signal
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

#: How many SIGKILLed runs each crash test makes (the issue asks for at least 20).
KILL_RUNS = 20


class KillableWorld(Protocol):
    """What the crash loop needs of a test world."""

    def sync_process(self, *args: str) -> subprocess.Popen[bytes]:
        """Start ``roombridge sync`` as a process that can be killed."""
        ...

    def sync(self, *args: str) -> Any:
        """Run one normal ``roombridge sync --json`` pass (``.code``, ``.document``)."""
        ...

    def assert_converged(self) -> None:
        """Fail unless the calendar shows exactly the provider's bookings."""
        ...


@dataclass
class KillTimer:
    """Chooses when to SIGKILL a sync process, from the durations seen so far."""

    rng: random.Random
    first_guess: float = 1.5
    floor: float = 0.15
    durations: list[float] = field(default_factory=list)
    killed: int = 0

    def span(self) -> float:
        """The expected length of one run: the median of the last few that finished."""
        recent = self.durations[-5:]
        return statistics.median(recent) if recent else self.first_guess

    def kill_during(self, process: subprocess.Popen[bytes]) -> bool:
        """Wait a random part of a run, then SIGKILL the process if it still runs."""
        started = time.monotonic()
        delay = max(self.floor, self.rng.uniform(0.1, 0.9) * self.span())
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.communicate(timeout=60)
            self.killed += 1
            return True
        self.durations.append(time.monotonic() - started)
        process.communicate(timeout=60)
        return False


def kill_and_heal(
    world: KillableWorld,
    rng: random.Random,
    edit: Callable[[int], None],
    *,
    edits_per_run: tuple[int, int] = (5, 25),
) -> None:
    """SIGKILL ``roombridge sync`` at random points of :data:`KILL_RUNS` runs, ``edit``-ing the
    provider between runs; after each kill one normal pass must converge."""
    killed_mid_run = 0
    timer = KillTimer(rng)
    for run in range(KILL_RUNS):
        if run:
            edit(rng.randint(*edits_per_run))
        process = world.sync_process(*(["--full"] if run % 5 == 4 else []))
        if timer.kill_during(process):
            killed_mid_run += 1
        outcome = world.sync()
        assert outcome.code == 0, (run, outcome.document)
        world.assert_converged()
    # The kills must really have landed mid-run for the test to mean anything.
    assert killed_mid_run >= KILL_RUNS // 2
