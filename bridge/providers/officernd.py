"""Client of the OfficeRnD v2 ("Flex") API, and the webhook signature check.

It returns OfficeRnD's own JSON objects; turning them into canonical bookings is the job of
``mappings.officernd``. What it takes care of (shared/reference/providers.md §1):

- auth: OAuth2 client credentials against the configured ``token_url``. The token endpoint
  allows 5 requests a minute, so a token is cached until shortly before it expires, token
  requests are paced to that limit on their own bucket, and a 401 renews it once;
- listing with the ``results``/``cursorNext`` envelope (``$limit`` ≤ 50), ``field[$op]=value``
  filters (``modifiedAt[$gte]`` for incremental reads, ``seriesStart``/``seriesEnd`` for
  windows: the API refuses ``start``/``end`` filters on ``/bookings``);
- ``/bookings/occurrences`` over windows longer than a year, split into year-long periods
  (its v2 parameter names ``start``/``end``/``resource``/``booking`` follow v1 and a community
  catalogue; they are unverified against a live tenant);
- writes (validate, create, update, cancel — which keeps the record — and delete), through
  :meth:`OfficeRndClient.for_writes`, a sibling client whose token also carries the write
  scopes, so a read-only deployment never asks for scopes it was not granted;
- pacing and retries through :mod:`bridge.providers.http`, and every failure as a typed
  :mod:`bridge.providers.errors` exception whose text never holds the client secret or a token.

Webhooks are signed in the ``officernd-signature`` header, ``t=<unix seconds>,v1=<hex>``, an
HMAC-SHA256 keyed with the webhook secret. The official examples sign ``body + "." + t``; one
community client signs ``t + "." + body`` (§1.10, conflict). :func:`verify_webhook_signature`
accepts either order by default: both are keyed with the secret, and a body is JSON (it starts
with ``{``), so one order's message can never pass for the other's.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Self
from urllib.parse import urlsplit

import httpx

from bridge.errors import BridgeError
from bridge.model import Window
from bridge.providers.errors import (
    FieldError,
    ProviderAuthError,
    ProviderConflict,
    ProviderError,
    ProviderNotFound,
    ProviderThrottled,
    ProviderUnavailable,
    ProviderValidationError,
)
from bridge.providers.http import (
    Clock,
    Exchange,
    Pacer,
    PacingPolicy,
    RetryingSender,
    RetryPolicy,
    Sleep,
    SystemClock,
    parse_retry_after,
)

PROVIDER = "officernd"
DEFAULT_BASE_URL = "https://app.officernd.com"
DEFAULT_TOKEN_URL = "https://identity.officernd.com/oauth/token"
API_VERSION = "v2"

#: The v2 page size cap (§1.3).
MAX_PAGE_SIZE = 50
#: ``/bookings/occurrences`` periods longer than a year must be paged (§1.5).
MAX_OCCURRENCE_PERIOD = timedelta(days=365)

#: What a read-only sync needs. Asking for a scope the application was not granted fails the
#: token request, so write scopes are asked for only when a caller passes them.
READ_SCOPES = ("flex.space.bookings.read", "flex.space.resources.read", "flex.space.locations.read")
WRITE_SCOPES = (
    "flex.space.bookings.validate",
    "flex.space.bookings.create",
    "flex.space.bookings.update",
    "flex.space.bookings.cancel",
    "flex.space.bookings.delete",
)

#: Read and write limits exist but their numbers are undocumented; a community note says about
#: 400 reads a minute, so stay well below that.
OFFICERND_PACING = PacingPolicy(requests_per_minute=300, request_burst=20, writes_per_minute=60)
#: The documented token endpoint limit: 5 requests a minute.
TOKEN_PACING = PacingPolicy(requests_per_minute=5, request_burst=4)

#: A token is replaced this long before it expires (capped at a tenth of its lifetime), so a
#: pass started just before expiry does not meet a 401 half way.
TOKEN_RENEWAL_MARGIN = timedelta(minutes=5)

SIGNATURE_HEADER = "officernd-signature"
#: The official examples allow this much drift between the signing and the checking clock.
SIGNATURE_TOLERANCE = timedelta(seconds=60)

Record = dict[str, Any]


class SignatureOrder(StrEnum):
    """How the signed message joins body and timestamp."""

    BODY_FIRST = "body-first"  # official demos: body + "." + t
    TIMESTAMP_FIRST = "timestamp-first"  # community n8n node: t + "." + body


class WebhookSignatureError(BridgeError):
    """A webhook whose ``officernd-signature`` is missing, malformed, stale or wrong."""


def format_instant(instant: datetime) -> str:
    """An instant the way OfficeRnD writes it: UTC, milliseconds, ``Z``."""
    utc = instant.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_instant(value: object) -> datetime | None:
    """An OfficeRnD timestamp (``…Z`` or an offset) as an aware datetime, else ``None``."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def occurrence_periods(window: Window, longest: timedelta = MAX_OCCURRENCE_PERIOD) -> list[Window]:
    """The window cut into consecutive periods no longer than ``longest``."""
    periods = []
    start = window.start
    while start < window.end:
        end = min(window.end, start + longest)
        periods.append(Window(start, end))
        start = end
    return periods


def api_root(base_url: str, org: str) -> str:
    """The organisation's API root: ``{base_url}/api/v2/organizations/{org}``.

    A ``base_url`` that already names the organisation's path is used as it is.
    """
    base = base_url.rstrip("/")
    if urlsplit(base).path.rstrip("/").endswith(f"/organizations/{org}"):
        return base
    return f"{base}/api/{API_VERSION}/organizations/{org}"


# ----- webhook signatures ----------------------------------------------------------------------


def _signed_message(body: bytes, timestamp: str, order: SignatureOrder) -> bytes:
    """The bytes the signature covers."""
    stamp = timestamp.encode("ascii")
    return body + b"." + stamp if order is SignatureOrder.BODY_FIRST else stamp + b"." + body


def webhook_signature(
    secret: str, body: bytes, timestamp: int, *, order: SignatureOrder = SignatureOrder.BODY_FIRST
) -> str:
    """The ``officernd-signature`` header value for a body sent at ``timestamp`` (unix seconds)."""
    digest = hmac.new(
        secret.encode(), _signed_message(body, str(timestamp), order), hashlib.sha256
    ).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_webhook_signature(
    secret: str,
    body: bytes,
    header: str | None,
    *,
    now: datetime,
    tolerance: timedelta = SIGNATURE_TOLERANCE,
    orders: Sequence[SignatureOrder] = tuple(SignatureOrder),
) -> datetime:
    """Check a webhook's ``officernd-signature``; returns when it was signed.

    ``body`` must be the raw request body, byte for byte. Raises
    :class:`WebhookSignatureError` (never quoting the secret or the expected digest) when the
    header is missing or malformed, the timestamp is further than ``tolerance`` from ``now``,
    or no accepted ``orders`` reproduces the signature.
    """
    if not header:
        raise WebhookSignatureError(f"no {SIGNATURE_HEADER} header")
    timestamp, signature = _signature_parts(header)
    signed_at = datetime.fromtimestamp(int(timestamp), UTC)
    if abs(now - signed_at) > tolerance:
        raise WebhookSignatureError(
            f"{SIGNATURE_HEADER} timestamp is {abs(now - signed_at).total_seconds():.0f}s "
            f"away from now (tolerance {tolerance.total_seconds():.0f}s)"
        )
    for order in orders:
        expected = hmac.new(
            secret.encode(), _signed_message(body, timestamp, order), hashlib.sha256
        ).hexdigest()
        if hmac.compare_digest(expected, signature.lower()):
            return signed_at
    raise WebhookSignatureError(f"{SIGNATURE_HEADER} does not match the body")


def _signature_parts(header: str) -> tuple[str, str]:
    """(timestamp, hex signature) of a header ``t=…,v1=…`` (the first two parts, by position)."""
    parts = [part.strip().partition("=") for part in header.split(",")]
    if len(parts) < 2 or not all(sep for _key, sep, _value in parts[:2]):
        raise WebhookSignatureError(f"{SIGNATURE_HEADER} is not of the form t=…,v1=…")
    timestamp, signature = parts[0][2].strip(), parts[1][2].strip()
    if not timestamp.isdigit() or not signature:
        raise WebhookSignatureError(f"{SIGNATURE_HEADER} has no valid timestamp and signature")
    return timestamp, signature


# ----- the client --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Token:
    """A bearer token and when (client monotonic seconds) to replace it; never printed."""

    access: str = field(repr=False)
    renew_at: float


@dataclass(frozen=True, slots=True)
class _Credentials:
    """Client id and secret; never printed."""

    client_id: str
    client_secret: str = field(repr=False)


class OfficeRndClient:
    """Synchronous client of one OfficeRnD organisation (an API application's credentials)."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        *,
        org: str,
        base_url: str = DEFAULT_BASE_URL,
        token_url: str = DEFAULT_TOKEN_URL,
        scopes: Sequence[str] = READ_SCOPES,
        name: str = PROVIDER,
        timeout: float = 30.0,
        page_size: int = MAX_PAGE_SIZE,
        modified_margin: timedelta = timedelta(minutes=2),
        retry: RetryPolicy | None = None,
        pacing: PacingPolicy = OFFICERND_PACING,
        token_pacing: PacingPolicy = TOKEN_PACING,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
        rng: random.Random | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        self.name = name
        self.org = org
        self.root = api_root(base_url, org)
        self.token_url = token_url
        self.scopes = tuple(scopes)
        self._credentials = _Credentials(client_id, client_secret)
        self._page_size = page_size
        self._margin = modified_margin
        self._clock = clock or SystemClock()
        pause = sleep or time.sleep
        chance = rng or random.Random()
        policy = retry or RetryPolicy()
        self._http = httpx.Client(base_url=self.root, timeout=timeout, transport=transport)
        self._sender = RetryingSender(
            self._http,
            provider=name,
            retry=policy,
            pacer=Pacer(pacing, self._clock, pause),
            clock=self._clock,
            sleep=pause,
            rng=chance,
        )
        self._token_sender = RetryingSender(
            self._http,
            provider=name,
            retry=policy,
            pacer=Pacer(token_pacing, self._clock, pause),
            clock=self._clock,
            sleep=pause,
            rng=chance,
        )
        self._token: _Token | None = None
        self._token_lock = threading.Lock()
        self._zones: dict[str, str] = {}
        self._writes: OfficeRndClient | None = None
        self._sibling = dict(
            base_url=base_url, token_url=token_url, name=name, timeout=timeout,
            page_size=page_size, modified_margin=modified_margin, retry=retry, pacing=pacing,
            token_pacing=token_pacing, clock=clock, sleep=sleep, rng=rng, transport=transport,
        )
        self.request_count = 0

    def __repr__(self) -> str:
        return f"OfficeRndClient(name={self.name!r}, root={self.root!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the underlying HTTP connections (and the write client's)."""
        if self._writes is not None:
            self._writes.close()
        self._http.close()

    def for_writes(self) -> OfficeRndClient:
        """A client of the same application whose token carries the write scopes too.

        Made once, on first use (no token is asked for before a call), and closed with this one.
        """
        if set(WRITE_SCOPES) <= set(self.scopes):
            return self
        if self._writes is None:
            scopes = tuple(dict.fromkeys((*self.scopes, *WRITE_SCOPES)))
            self._writes = OfficeRndClient(
                self._credentials.client_id,
                self._credentials.client_secret,
                org=self.org,
                scopes=scopes,
                **self._sibling,  # type: ignore[arg-type]
            )
        return self._writes

    # ----- reads ---------------------------------------------------------------------------

    def list_bookings(
        self,
        resource: str | None = None,
        *,
        modified_since: datetime | None = None,
        window: Window | None = None,
    ) -> Iterator[Record]:
        """Bookings (one row per series), optionally of a resource, changed since, in a window.

        ``modified_since`` is pulled back by the safety margin, so callers see some rows again
        rather than miss one written while the previous read ran. ``window`` keeps the
        bookings whose series meets it.
        """
        params: dict[str, str] = {}
        if resource is not None:
            params["resource"] = resource
        if modified_since is not None:
            params["modifiedAt[$gte]"] = format_instant(modified_since - self._margin)
        if window is not None:
            params["seriesStart[$lt]"] = format_instant(window.end)
            params["seriesEnd[$gte]"] = format_instant(window.start)
        yield from self._results("/bookings", params, "list bookings")

    def list_occurrences(
        self, window: Window, *, resource: str | None = None, booking: str | None = None
    ) -> Iterator[Record]:
        """The occurrences meeting ``window`` (cancelled ones included), year by year.

        An occurrence straddling two periods is listed by both; it is yielded once.
        """
        seen: set[tuple[object, object]] = set()
        for period in occurrence_periods(window):
            params = {"start": format_instant(period.start), "end": format_instant(period.end)}
            if resource is not None:
                params["resource"] = resource
            if booking is not None:
                params["booking"] = booking
            for item in self._results("/bookings/occurrences", params, "list occurrences"):
                identity = (item.get("bookingId"), _start_text(item))
                if identity not in seen:
                    seen.add(identity)
                    yield item

    def get_booking(self, booking_id: str) -> Record:
        """One booking object."""
        return self._json_object("GET", f"/bookings/{_segment(booking_id)}", "get booking")

    def get_resource(self, resource_id: str) -> Record:
        """One resource (room) object."""
        return self._json_object("GET", f"/resources/{_segment(resource_id)}", "get resource")

    def get_location(self, location_id: str) -> Record:
        """One location object."""
        return self._json_object("GET", f"/locations/{_segment(location_id)}", "get location")

    def resource_timezone(self, resource_id: str) -> str:
        """The resource's IANA zone (its own ``timezone``, else its location's), cached."""
        if resource_id not in self._zones:
            resource = self.get_resource(resource_id)
            zone = resource.get("timezone")
            location = resource.get("location")
            if not zone and isinstance(location, str) and location:
                zone = self.get_location(location).get("timezone")
            if not isinstance(zone, str) or not zone:
                raise ProviderError(
                    self.name, "resolve time zone", None, f"resource {resource_id} has no timezone"
                )
            self._zones[resource_id] = zone
        return self._zones[resource_id]

    # ----- writes (scopes: WRITE_SCOPES) ---------------------------------------------------

    def validate_booking(self, body: Mapping[str, Any]) -> list[str]:
        """Why OfficeRnD would refuse to create ``body`` (``POST /bookings/validate``); [] if not.

        The answer's shape is undocumented: ``{"valid": bool, "errors": [...]}`` is read, each
        error a message or an object with ``message``; ``valid: false`` with no message still
        counts as a refusal.
        """
        reply = self._json_object(
            "POST", "/bookings/validate", "validate booking", json=dict(body), idempotent=True
        )
        errors = reply.get("errors")
        listed = errors if isinstance(errors, list) else []
        messages = [
            str(item.get("message") if isinstance(item, Mapping) else item)
            for item in listed
            if item
        ]
        if reply.get("valid") is False and not messages:
            messages.append("the booking is not valid")
        return messages

    def create_booking(self, body: Mapping[str, Any]) -> Record:
        """Create a booking (a series when the body has ``recurrence.rrule``); returns it."""
        return self._json_object("POST", "/bookings", "create booking", json=dict(body))

    def update_booking(self, booking_id: str, body: Mapping[str, Any]) -> Record:
        """Change the fields ``body`` names (``PUT``); returns the updated booking."""
        path = f"/bookings/{_segment(booking_id)}"
        return self._json_object("PUT", path, "update booking", json=dict(body), idempotent=True)

    def cancel_booking(
        self, booking_id: str, *, silent: bool = True, skip_cancellation_policy: bool = False
    ) -> Record:
        """Cancel a booking: the record stays, marked cancelled; returns it.

        ``silent`` suppresses the member notification; ``skip_cancellation_policy`` waives
        the policy's fees. Cancelling twice is harmless, so the call is retried like a read.
        """
        params = {
            "isSilent": _flag(silent),
            "skipCancellationPolicy": _flag(skip_cancellation_policy),
        }
        path = f"/bookings/{_segment(booking_id)}/cancel"
        return self._json_object("POST", path, "cancel booking", params=params, idempotent=True)

    def delete_booking(self, booking_id: str) -> None:
        """Delete a booking for good (no trace is left in listings)."""
        operation = "delete booking"
        exchange = self._exchange(
            "DELETE", f"/bookings/{_segment(booking_id)}", operation, idempotent=True
        )
        # A retried delete whose first attempt went through finds the booking gone: done.
        if exchange.response.status_code == 404 and exchange.attempts > 1:
            return
        self._checked(exchange.response, operation)

    # ----- listing machinery -----------------------------------------------------------------

    def _results(self, path: str, params: Mapping[str, str], operation: str) -> Iterator[Record]:
        """Every item of a list query, following ``cursorNext`` until it runs out."""
        cursor: str | None = None
        while True:
            query = {**params, "$limit": str(self._page_size)}
            if cursor is not None:
                query["$cursorNext"] = cursor
            envelope = self._json_object("GET", path, operation, params=query)
            results = envelope.get("results")
            if not isinstance(results, list):
                raise ProviderError(self.name, operation, 200, "the reply has no results list")
            yield from (item for item in results if isinstance(item, dict))
            following = envelope.get("cursorNext")
            if not results or not isinstance(following, str) or not following:
                return
            if following == cursor:
                raise ProviderError(self.name, operation, 200, "the paging cursor did not move")
            cursor = following

    # ----- requests, auth and errors ---------------------------------------------------------

    def _json_object(
        self,
        method: str,
        path: str,
        operation: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Record | None = None,
        idempotent: bool | None = None,
    ) -> Record:
        """Send a request and return its JSON object body."""
        exchange = self._exchange(
            method, path, operation, params=params, json=json, idempotent=idempotent
        )
        response = self._checked(exchange.response, operation)
        body = _json_body(response)
        if not isinstance(body, dict):
            raise ProviderError(
                self.name, operation, response.status_code, "the reply is not a JSON object"
            )
        return body

    def _exchange(
        self,
        method: str,
        path: str,
        operation: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Record | None = None,
        idempotent: bool | None = None,
    ) -> Exchange:
        """Send with a bearer token; on a 401 get a new token once and send again."""
        write = method in ("POST", "PUT", "PATCH", "DELETE")
        # A create is the only request whose repetition could duplicate something.
        safe = method != "POST" if idempotent is None else idempotent

        sent_with: list[_Token] = []

        def build() -> httpx.Request:
            token = self._current_token()
            sent_with.append(token)
            headers = {"Authorization": f"Bearer {token.access}", "Accept": "application/json"}
            return self._http.build_request(method, path, params=params, json=json, headers=headers)

        self._current_token()
        exchange = self._sender.send(build, operation=operation, write=write, idempotent=safe)
        self.request_count += exchange.attempts
        if exchange.response.status_code == 401:
            self._replace_token(sent_with[-1])
            exchange = self._sender.send(build, operation=operation, write=write, idempotent=safe)
            self.request_count += exchange.attempts
        return exchange

    def _checked(self, response: httpx.Response, operation: str) -> httpx.Response:
        """``response`` if it succeeded, else its typed error raised."""
        if response.is_success:
            return response
        raise self._error(response, operation)

    def _current_token(self) -> _Token:
        """The cached access token, fetched first when there is none or it is about to expire.

        The lock makes threads sharing the client (``roombridge run``) wait for one fetch
        instead of each spending one of the endpoint's five requests a minute.
        """
        with self._token_lock:
            token = self._token
            if token is None or self._clock.monotonic() >= token.renew_at:
                token = self._request_token()
            return token

    def _replace_token(self, refused: _Token) -> None:
        """After a 401: drop the refused token, unless another thread has replaced it already."""
        with self._token_lock:
            if self._token is refused:
                self._token = None

    def _request_token(self) -> _Token:
        """``POST token_url`` (client credentials) and cache the token it returns."""
        operation = "get token"
        form = {
            "grant_type": "client_credentials",
            "client_id": self._credentials.client_id,
            "client_secret": self._credentials.client_secret,
            "scope": " ".join(self.scopes),
        }

        def build() -> httpx.Request:
            headers = {"Accept": "application/json"}
            return self._http.build_request("POST", self.token_url, data=form, headers=headers)

        obtained = self._clock.monotonic()
        exchange = self._token_sender.send(build, operation=operation, write=False, idempotent=True)
        self.request_count += exchange.attempts
        reply = self._checked(exchange.response, operation)
        body = _json_body(reply)
        access = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(access, str) or not access:
            raise ProviderAuthError(self.name, operation, reply.status_code, "no access_token")
        lifetime = body.get("expires_in") if isinstance(body, dict) else None
        seconds = float(lifetime) if isinstance(lifetime, int | float) else 3600.0
        margin = min(TOKEN_RENEWAL_MARGIN.total_seconds(), seconds / 10)
        self._token = _Token(access, obtained + seconds - margin)
        return self._token

    def _error(self, response: httpx.Response, operation: str) -> ProviderError:
        """The typed error for a failed reply."""
        status = response.status_code
        body = _json_body(response)
        fields = body if isinstance(body, dict) else {}
        message = self._redact(_message(response, fields))
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), self._clock.now())
            return ProviderThrottled(self.name, operation, status, message, retry_after=retry_after)
        if status in (401, 403) or fields.get("error") in _OAUTH_AUTH_ERRORS:
            return ProviderAuthError(self.name, operation, status, message)
        if status == 404:
            return ProviderNotFound(self.name, operation, status, message)
        if status >= 500:
            return ProviderUnavailable(self.name, operation, status, message)
        if status == 409:
            return ProviderConflict(self.name, operation, status, message)
        if status in (400, 422):
            errors = tuple(FieldError("", text) for text in _message_list(fields))
            return ProviderValidationError(self.name, operation, status, message, errors=errors)
        return ProviderError(self.name, operation, status, message)

    def _redact(self, text: str) -> str:
        """``text`` with the client secret or a token the server might have echoed blanked out."""
        secrets = [self._credentials.client_secret]
        if self._token is not None:
            secrets.append(self._token.access)
        for secret in secrets:
            if secret and len(secret) >= 4:
                text = text.replace(secret, "***")
        return text


#: OAuth error codes that mean the credentials or scopes were refused.
_OAUTH_AUTH_ERRORS = frozenset(
    {"invalid_client", "invalid_grant", "invalid_scope", "unauthorized_client"}
)


def _json_body(response: httpx.Response) -> object:
    """The reply's JSON, or ``None`` when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None


def _message_list(body: Mapping[str, Any]) -> list[str]:
    """``message`` as a list: NestJS validation errors send a list of strings."""
    value = body.get("message")
    if isinstance(value, list):
        return [str(item) for item in value if item]
    return [value] if isinstance(value, str) and value else []


def _message(response: httpx.Response, body: Mapping[str, Any]) -> str:
    """The provider's own explanation: ``message``, an OAuth error, or the reply text."""
    messages = _message_list(body)
    if messages:
        return "; ".join(messages)
    for key in ("error_description", "error"):
        value = body.get(key)
        if isinstance(value, str) and value:
            return value
    text = response.text.strip()
    return text[:200] if text else response.reason_phrase or "no explanation given"


def _start_text(item: Mapping[str, Any]) -> object:
    """An occurrence's start as given (``{"dateTime": …}`` or a plain string)."""
    start = item.get("start")
    return start.get("dateTime") if isinstance(start, Mapping) else start


def _segment(identifier: str) -> str:
    """An id as one URL path segment (ids are 24-hex ObjectIds; refuse anything path-like)."""
    text = str(identifier)
    if not text or "/" in text or text in (".", ".."):
        raise ValueError(f"not a valid OfficeRnD id: {text!r}")
    return text


def _flag(value: bool) -> str:
    """A boolean query parameter."""
    return "true" if value else "false"
