"""Provider-neutral HTTP machinery: pacing, bounded retries with backoff, Retry-After.

Every provider client sends its requests through a :class:`RetryingSender`. It paces calls
with token buckets (so the bridge stays under the provider's documented limits instead of
discovering them through throttling), retries throttling, server errors, timeouts and dropped
connections a bounded number of times with exponential backoff and jitter, and honours
``Retry-After`` in both of its forms (seconds or an HTTP date).

A request that is not idempotent (a create) is retried only when the provider certainly did
not act on it: a refused connection, a throttle, a 503. After a read timeout or a 500 the
booking may exist already, and a blind retry would create a duplicate; the caller gets
:class:`ProviderUnavailable` and the next sync pass finds out what really happened.

The clock and the sleep are injected so tests can run years of pacing in microseconds.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Protocol

import httpx

from bridge.providers.errors import ProviderUnavailable

log = logging.getLogger(__name__)

Sleep = Callable[[float], None]


class Clock(Protocol):
    """A source of monotonic seconds (pacing, token expiry) and of wall time (HTTP dates)."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""
        ...

    def now(self) -> datetime:
        """The current aware UTC time."""
        ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        """Seconds from :func:`time.monotonic`."""
        return time.monotonic()

    def now(self) -> datetime:
        """The current UTC time."""
        return datetime.now(UTC)


class TokenBucket:
    """Paces calls: up to ``capacity`` at once, then ``rate`` calls per second.

    A call that finds the bucket empty reserves its token (the balance goes negative) and
    sleeps until the token would have been refilled, so waiting callers queue in order.
    """

    def __init__(self, capacity: float, rate: float, clock: Clock, sleep: Sleep) -> None:
        if capacity < 1 or rate <= 0:
            raise ValueError("a token bucket needs capacity >= 1 and a positive rate")
        self._capacity = capacity
        self._rate = rate
        self._clock = clock
        self._sleep = sleep
        self._tokens = capacity
        self._stamp = clock.monotonic()
        self._lock = threading.Lock()

    @classmethod
    def limiting(
        cls, limit: int, period: float, *, burst: int, clock: Clock, sleep: Sleep
    ) -> TokenBucket:
        """A bucket admitting at most ``limit`` calls in any window of ``period`` seconds.

        A bucket admits ``burst + rate * period`` calls in such a window, so the refill rate
        is what is left of the limit once the burst is spent.
        """
        if not 1 <= burst < limit:
            raise ValueError("burst must be at least 1 and below the limit")
        return cls(burst, (limit - burst) / period, clock, sleep)

    @classmethod
    def spacing(cls, interval: float, *, clock: Clock, sleep: Sleep) -> TokenBucket:
        """A bucket that keeps consecutive calls at least ``interval`` seconds apart."""
        return cls(1, 1 / interval, clock, sleep)

    def acquire(self) -> float:
        """Take one token, sleeping as long as needed; returns the seconds waited."""
        with self._lock:
            now = self._clock.monotonic()
            elapsed = max(0.0, now - self._stamp)
            self._tokens = min(self._capacity, self._tokens + elapsed * self._rate) - 1
            self._stamp = now
            wait = -self._tokens / self._rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait


@dataclass(frozen=True, slots=True)
class PacingPolicy:
    """How fast a client may call: a minimum spacing, a per-minute cap, a write cap.

    ``None`` or ``0`` switches a limit off (tests do that for the spacing).
    """

    min_interval: float | None = None
    requests_per_minute: int | None = None
    request_burst: int = 10
    writes_per_minute: int | None = None
    write_burst: int = 5


class Pacer:
    """The token buckets of one :class:`PacingPolicy`; call :meth:`wait_turn` before a request."""

    def __init__(self, policy: PacingPolicy, clock: Clock, sleep: Sleep) -> None:
        self._all: list[TokenBucket] = []
        self._writes: list[TokenBucket] = []
        if policy.min_interval:
            self._all.append(TokenBucket.spacing(policy.min_interval, clock=clock, sleep=sleep))
        if policy.requests_per_minute:
            self._all.append(
                TokenBucket.limiting(
                    policy.requests_per_minute,
                    60.0,
                    burst=min(policy.request_burst, policy.requests_per_minute - 1),
                    clock=clock,
                    sleep=sleep,
                )
            )
        if policy.writes_per_minute:
            self._writes.append(
                TokenBucket.limiting(
                    policy.writes_per_minute,
                    60.0,
                    burst=min(policy.write_burst, policy.writes_per_minute - 1),
                    clock=clock,
                    sleep=sleep,
                )
            )

    def wait_turn(self, *, write: bool) -> float:
        """Block until a request (a write when ``write``) may go out; returns seconds waited."""
        buckets = [*self._writes, *self._all] if write else self._all
        return sum(bucket.acquire() for bucket in buckets)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many times to try, and how long to back off between tries.

    The n-th backoff is drawn uniformly from [c/2, c] with c = min(max_delay, base_delay·2ⁿ⁻¹):
    growing, but spread so that many workers do not retry in lockstep. A ``Retry-After``
    replaces the backoff; one longer than ``max_retry_after`` is not waited for at all.
    """

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 300.0

    def backoff(self, retry_number: int, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry_number`` (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (retry_number - 1))
        return rng.uniform(ceiling / 2, ceiling)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), if valid."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


#: Statuses worth retrying for a request that is safe to repeat.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Statuses that prove the server did not act on the request, so even a create may be retried.
UNPROCESSED_STATUSES = frozenset({429, 503})
#: Transport failures raised before the request reached the server.
UNSENT_ERRORS: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)


def is_throttle_status(response: httpx.Response) -> bool:
    """The standard throttle signal, HTTP 429."""
    return response.status_code == 429


@dataclass(frozen=True, slots=True)
class Exchange:
    """The final response of a request and how many attempts it took."""

    response: httpx.Response
    attempts: int


class RetryingSender:
    """Sends requests with pacing and bounded retries; returns the last response it got.

    ``is_throttle`` lets a provider name its own throttle signal (Nexudus answers 409 with
    ``Retry-After``). Responses are returned whatever their status: turning them into typed
    errors is the provider client's job, because only it knows the provider's error body.
    Transport failures that outlast the retries become :class:`ProviderUnavailable`.
    """

    def __init__(
        self,
        client: httpx.Client,
        *,
        provider: str,
        retry: RetryPolicy,
        pacer: Pacer,
        clock: Clock,
        sleep: Sleep,
        rng: random.Random,
        is_throttle: Callable[[httpx.Response], bool] = is_throttle_status,
    ) -> None:
        self._client = client
        self._provider = provider
        self._retry = retry
        self._pacer = pacer
        self._clock = clock
        self._sleep = sleep
        self._rng = rng
        self._is_throttle = is_throttle

    def send(
        self,
        build: Callable[[], httpx.Request],
        *,
        operation: str,
        write: bool,
        idempotent: bool,
    ) -> Exchange:
        """Send the request ``build`` makes (rebuilt per attempt, so auth stays fresh)."""
        attempt = 0
        while True:
            attempt += 1
            self._pacer.wait_turn(write=write)
            request = build()
            try:
                response = self._client.send(request)
            except httpx.TransportError as exc:
                if not self._may_retry_failure(exc, attempt, idempotent):
                    raise self._unavailable(operation, exc, attempt, idempotent) from exc
                self._pause(attempt, None, request, f"{type(exc).__name__}")
                continue
            delay = self._retry_delay(response, attempt, idempotent)
            if delay is None:
                return Exchange(response, attempt)
            response.close()
            self._pause(attempt, delay, request, f"HTTP {response.status_code}")

    def _may_retry_failure(self, exc: httpx.TransportError, attempt: int, idempotent: bool) -> bool:
        """Whether a transport failure deserves another attempt."""
        if attempt >= self._retry.max_attempts:
            return False
        return idempotent or isinstance(exc, UNSENT_ERRORS)

    def _retry_delay(
        self, response: httpx.Response, attempt: int, idempotent: bool
    ) -> float | None:
        """Seconds to wait before retrying ``response``, or ``None`` to return it as final."""
        throttled = self._is_throttle(response)
        status = response.status_code
        if not throttled and status not in RETRYABLE_STATUSES:
            return None
        if not (throttled or idempotent or status in UNPROCESSED_STATUSES):
            return None
        if attempt >= self._retry.max_attempts:
            return None
        retry_after = parse_retry_after(response.headers.get("Retry-After"), self._clock.now())
        if retry_after is None:
            return self._retry.backoff(attempt, self._rng)
        if retry_after > self._retry.max_retry_after:
            return None
        return retry_after

    def _pause(
        self, attempt: int, delay: float | None, request: httpx.Request, reason: str
    ) -> None:
        """Sleep before the next attempt; ``None`` means use the backoff schedule."""
        wait = self._retry.backoff(attempt, self._rng) if delay is None else delay
        # The path only: a query string may carry an API key for some providers.
        log.info(
            "%s: %s %s failed (%s), retry %d in %.2fs",
            self._provider,
            request.method,
            request.url.path,
            reason,
            attempt,
            wait,
        )
        self._sleep(wait)

    def _unavailable(
        self, operation: str, exc: httpx.TransportError, attempts: int, idempotent: bool
    ) -> ProviderUnavailable:
        """The typed error for a transport failure; never quotes the request itself."""
        unsent = isinstance(exc, UNSENT_ERRORS)
        if unsent:
            reason = "could not connect"
        elif isinstance(exc, httpx.TimeoutException):
            reason = "timed out"
        else:
            reason = "connection dropped"
        detail = f"{reason} ({type(exc).__name__}) after {attempts} attempt(s)"
        if not (idempotent or unsent):
            detail += "; the provider may or may not have applied it"
        return ProviderUnavailable(self._provider, operation, None, detail)
