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
from dataclasses import dataclass, field


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
