"""Client of the Prospero Bookings API (cookie login, bookings with their Events).

It returns Prospero's own JSON; turning it into canonical bookings is the job of
``mappings.prospero``. What it takes care of (shared/reference/providers.md §3, seed 003):

- auth: ``POST /auth/login`` with email and password sets an access cookie (1 h) and a refresh
  cookie (7 days); the client sends them back in the ``Cookie`` header, renews the access
  cookie with ``GET /auth/refresh`` shortly before it expires or after a 401, and logs in
  again when the refresh token is refused (400 "Unable to verify refresh token") or stale.
  Cookie names are not documented, so every cookie the server sets is kept and sent back;
- the booking lifecycle: list (``returnEvents``), public submit, admin create, update
  (customer and contact only), approve and deny (with the ``clientBookingLastUpdatedAt``
  optimistic check), cancel (``eventProcedure``), and change requests (submit, approve, deny);
- pacing and retries through :mod:`bridge.providers.http`, and every failure as a typed
  :mod:`bridge.providers.errors` exception built from Prospero's ``APIError {status, error}``,
  whose text never holds the password or a cookie.

Only ``/auth/login``, ``/auth/refresh`` and ``/bookings/submit`` are documented paths. Every
other path is an assumption, gathered in :data:`ENDPOINTS` (the emulator serves exactly that
table), so a live tenant that disagrees is fixed in one place.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from http.cookies import CookieError, SimpleCookie
from types import MappingProxyType
from typing import Any, Self

import httpx

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
from mappings.prospero import EventProcedure, cancel_body

PROVIDER = "prospero"

#: The documented lifetimes of the two cookies (§3.4).
ACCESS_LIFETIME = timedelta(hours=1)
REFRESH_LIFETIME = timedelta(days=7)
#: Cookies are renewed this long before they expire, so a pass never meets a 401 half way.
ACCESS_RENEWAL_MARGIN = timedelta(minutes=5)
REFRESH_RENEWAL_MARGIN = timedelta(hours=1)

#: Prospero publishes no rate limits (§0: SILENT); stay modest.
PROSPERO_PACING = PacingPolicy(requests_per_minute=120, request_burst=20, writes_per_minute=60)

#: What Prospero answers to a refresh with a bad or expired refresh token (§3.4).
BAD_REFRESH_TOKEN = "Unable to verify refresh token"

Record = dict[str, Any]


class Operation(StrEnum):
    """The API operations the bridge uses."""

    LOGIN = "log in"
    REFRESH = "refresh session"
    SUBMIT_BOOKING = "submit booking"
    LIST_BOOKINGS = "list bookings"
    CREATE_BOOKING = "create booking"
    UPDATE_BOOKING = "update booking"
    APPROVE_BOOKING = "approve booking"
    DENY_BOOKING = "deny booking"
    CANCEL_BOOKING = "cancel booking"
    SUBMIT_CHANGE_REQUEST = "submit change request"
    APPROVE_CHANGE_REQUEST = "approve change request"
    DENY_CHANGE_REQUEST = "deny change request"
    GET_ORGANIZATION = "get organization"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where an operation lives: method, path template, whether it needs the access cookie."""

    method: str
    path: str
    authenticated: bool
    documented: bool


#: THE table of endpoint paths, relative to the configured ``base_url``. ``documented=False``
#: rows are assumptions (the stored docs name operations, not paths; §3.3): REST-style paths
#: under ``/bookings`` for the booking operations, ``/booking-change-requests`` for change
#: requests (public submit mirroring ``/bookings/submit``), ``PATCH`` for the partial update,
#: and ``/organization`` for the organisation (whose ``timezone`` is the zone Prospero keeps
#: apart from its UTC times). The emulator builds its routes from this table.
ENDPOINTS: Mapping[Operation, Endpoint] = MappingProxyType(
    {
        Operation.LOGIN: Endpoint("POST", "/auth/login", False, True),
        Operation.REFRESH: Endpoint("GET", "/auth/refresh", False, True),
        Operation.SUBMIT_BOOKING: Endpoint("POST", "/bookings/submit", False, True),
        Operation.LIST_BOOKINGS: Endpoint("GET", "/bookings", True, False),
        Operation.CREATE_BOOKING: Endpoint("POST", "/bookings", True, False),
        Operation.UPDATE_BOOKING: Endpoint("PATCH", "/bookings/{booking_id}", True, False),
        Operation.APPROVE_BOOKING: Endpoint("POST", "/bookings/{booking_id}/approve", True, False),
        Operation.DENY_BOOKING: Endpoint("POST", "/bookings/{booking_id}/deny", True, False),
        Operation.CANCEL_BOOKING: Endpoint("POST", "/bookings/{booking_id}/cancel", True, False),
        Operation.SUBMIT_CHANGE_REQUEST: Endpoint(
            "POST", "/booking-change-requests/submit", False, False
        ),
        Operation.APPROVE_CHANGE_REQUEST: Endpoint(
            "POST", "/booking-change-requests/{change_request_id}/approve", True, False
        ),
        Operation.DENY_CHANGE_REQUEST: Endpoint(
            "POST", "/booking-change-requests/{change_request_id}/deny", True, False
        ),
        Operation.GET_ORGANIZATION: Endpoint("GET", "/organization", True, False),
    }
)


def format_instant(instant: datetime) -> str:
    """An instant the way Prospero takes it: UTC, ``YYYY-MM-DDThh:mm:ssZ``."""
    if instant.tzinfo is None:
        raise ValueError("Prospero times must be aware instants")
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ----- the session -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Session:
    """The cookies of one login and when (client monotonic seconds) to renew them; never shown."""

    cookies: dict[str, str] = field(repr=False)
    access_renew_at: float
    refresh_renew_at: float

    def header(self) -> str:
        """The ``Cookie`` header value."""
        return "; ".join(f"{name}={value}" for name, value in sorted(self.cookies.items()))


@dataclass(frozen=True, slots=True)
class _Credentials:
    """Email and password; never printed."""

    username: str
    password: str = field(repr=False)


def _set_cookies(response: httpx.Response) -> dict[str, str | None]:
    """The cookies a reply sets (``None``: the reply deletes it)."""
    found: dict[str, str | None] = {}
    for header in response.headers.get_list("set-cookie"):
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(header)
        except CookieError:
            continue
        for name, morsel in jar.items():
            deleted = not morsel.value or morsel["max-age"] in ("0", "-1")
            found[name] = None if deleted else morsel.value
    return found


# ----- the client --------------------------------------------------------------------------------


class ProsperoClient:
    """Synchronous client of one Prospero organisation, logged in as one admin user."""

    def __init__(
        self,
        username: str,
        password: str,
        *,
        base_url: str,
        name: str = PROVIDER,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        pacing: PacingPolicy = PROSPERO_PACING,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
        rng: random.Random | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self._credentials = _Credentials(username, password)
        self._clock = clock or SystemClock()
        pause = sleep or time.sleep
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)
        self._sender = RetryingSender(
            self._http,
            provider=name,
            retry=retry or RetryPolicy(),
            pacer=Pacer(pacing, self._clock, pause),
            clock=self._clock,
            sleep=pause,
            rng=rng or random.Random(),
        )
        self._session: _Session | None = None
        self._session_lock = threading.Lock()
        self._timezone: str | None = None
        self.request_count = 0
        self.logins = 0
        self.refreshes = 0

    def __repr__(self) -> str:
        return f"ProsperoClient(name={self.name!r}, base_url={self.base_url!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the underlying HTTP connections."""
        self._http.close()

    # ----- reads ---------------------------------------------------------------------------

    def list_bookings(self, *, return_events: bool = True) -> Record:
        """Every Booking of the organisation: ``{bookings: {id: Booking}, associatedEvents?}``.

        There is no filter of any kind (§3.3), so this is one request for everything.
        """
        params = {"returnEvents": _flag(return_events)}
        body = self._call(Operation.LIST_BOOKINGS, params=params)
        if not isinstance(body.get("bookings"), dict):
            raise ProviderError(self.name, Operation.LIST_BOOKINGS, 200, "no bookings map")
        events = body.get("associatedEvents")
        if events is not None and not isinstance(events, list):
            raise ProviderError(
                self.name, Operation.LIST_BOOKINGS, 200, "associatedEvents is not a list"
            )
        return body

    def get_organization(self) -> Record:
        """The organisation object (its ``timezone`` among others)."""
        body = self._call(Operation.GET_ORGANIZATION)
        organization = body.get("organization")
        if not isinstance(organization, dict):
            raise ProviderError(self.name, Operation.GET_ORGANIZATION, 200, "no organization")
        return organization

    def organization_timezone(self) -> str:
        """The organisation's time zone name (Prospero keeps it apart from the UTC times)."""
        if self._timezone is None:
            zone = self.get_organization().get("timezone")
            if not isinstance(zone, str) or not zone:
                raise ProviderError(
                    self.name, Operation.GET_ORGANIZATION, 200, "the organization has no timezone"
                )
            self._timezone = zone
        return self._timezone

    # ----- writes --------------------------------------------------------------------------

    def submit_booking(self, body: Mapping[str, Any]) -> Record:
        """Submit a Booking as an end user (public, no login): ``{booking}``, PENDING."""
        return self._call(Operation.SUBMIT_BOOKING, json=dict(body))

    def create_booking(self, body: Mapping[str, Any]) -> Record:
        """Create a Booking as an admin (``mappings.prospero.to_json``): ``{booking, event?}``."""
        return self._call(Operation.CREATE_BOOKING, json=dict(body))

    def update_booking(
        self, booking_id: str, *, customer_id: str | None = None, contact_id: str | None = None
    ) -> Record:
        """Change a Booking's customer or contact (``""`` clears one): ``{booking}``."""
        body = {
            name: value
            for name, value in (("customerId", customer_id), ("contactId", contact_id))
            if value is not None
        }
        return self._call(Operation.UPDATE_BOOKING, {"booking_id": booking_id}, json=body)

    def approve_booking(
        self,
        booking_id: str,
        *,
        last_updated: str,
        event: Mapping[str, Any] | None = None,
        notification: Mapping[str, Any] | None = None,
    ) -> Record:
        """Approve a pending Booking seen at ``last_updated``: ``{booking, event}``.

        A Booking changed since (the end user edited it) is refused with
        :class:`ProviderConflict`; re-read it before approving. Retried like a read: a second
        approval of an approved Booking is refused, never doubled.
        """
        body = {
            "clientBookingLastUpdatedAt": last_updated,
            "event": dict(event or {}),
            "notification": dict(notification or {}),
        }
        return self._call(
            Operation.APPROVE_BOOKING, {"booking_id": booking_id}, json=body, idempotent=True
        )

    def deny_booking(
        self,
        booking_id: str,
        *,
        last_updated: str,
        notification: Mapping[str, Any] | None = None,
    ) -> Record:
        """Deny a pending Booking seen at ``last_updated``: ``{booking}``."""
        body = {
            "clientBookingLastUpdatedAt": last_updated,
            "notification": dict(notification or {}),
        }
        return self._call(
            Operation.DENY_BOOKING, {"booking_id": booking_id}, json=body, idempotent=True
        )

    def cancel_booking(
        self,
        booking_id: str,
        procedure: EventProcedure = EventProcedure.CANCEL,
        *,
        notification: Mapping[str, Any] | None = None,
    ) -> Record:
        """Cancel an approved Booking; its Event is marked cancelled or deleted (``procedure``)."""
        body = cancel_body(procedure, notification)
        return self._call(
            Operation.CANCEL_BOOKING, {"booking_id": booking_id}, json=body, idempotent=True
        )

    def submit_change_request(
        self,
        booking_id: str,
        *,
        cancellation: bool = False,
        event: Mapping[str, Any] | None = None,
        contact: Mapping[str, Any] | None = None,
        request_note: str | None = None,
    ) -> Record:
        """Ask for a change as the end user: ``{changeRequest}``, or ``{booking}`` when pending."""
        body: Record = {
            "bookingId": booking_id,
            "cancellation": cancellation,
            "contact": dict(contact or {}),
            "event": dict(event or {}),
        }
        if request_note is not None:
            body["requestNote"] = request_note
        return self._call(Operation.SUBMIT_CHANGE_REQUEST, json=body)

    def approve_change_request(
        self,
        change_request_id: str,
        *,
        event: Mapping[str, Any] | None = None,
        notification: Mapping[str, Any] | None = None,
        procedure: EventProcedure | None = None,
    ) -> Record:
        """Apply a change request (``procedure``: what a cancellation does to the Event)."""
        body: Record = {"event": dict(event or {}), "notification": dict(notification or {})}
        if procedure is not None:
            body["eventProcedure"] = int(procedure)
        return self._call(
            Operation.APPROVE_CHANGE_REQUEST, {"change_request_id": change_request_id}, json=body
        )

    def deny_change_request(self, change_request_id: str) -> None:
        """Reject a change request (it is deleted either way)."""
        self._call(Operation.DENY_CHANGE_REQUEST, {"change_request_id": change_request_id})

    # ----- requests ------------------------------------------------------------------------

    def _call(
        self,
        operation: Operation,
        path_params: Mapping[str, str] | None = None,
        *,
        params: Mapping[str, str] | None = None,
        json: Record | None = None,
        idempotent: bool | None = None,
    ) -> Record:
        """Send one operation and return its JSON object body (``{}`` for an empty reply)."""
        endpoint = ENDPOINTS[operation]
        path = endpoint.path.format(**{k: _segment(v) for k, v in (path_params or {}).items()})
        # A POST that creates something is the only request whose repetition could double it.
        safe = endpoint.method != "POST" if idempotent is None else idempotent
        if endpoint.authenticated:
            exchange = self._send_in_session(endpoint.method, path, operation, params, json, safe)
        else:
            exchange = self._send(endpoint.method, path, operation, params, json, safe, None)
        response = self._checked(exchange.response, operation)
        if response.status_code == 204 or not response.content:
            return {}
        body = _json_body(response)
        if not isinstance(body, dict):
            raise ProviderError(self.name, operation, response.status_code, "not a JSON object")
        return body

    def _send(
        self,
        method: str,
        path: str,
        operation: Operation,
        params: Mapping[str, str] | None,
        json: Record | None,
        idempotent: bool,
        session: _Session | None,
    ) -> Exchange:
        """One request (retried per the policy), with the session's cookies when given."""

        def build() -> httpx.Request:
            headers = {"Accept": "application/json"}
            if session is not None:
                headers["Cookie"] = session.header()
            return self._http.build_request(method, path, params=params, json=json, headers=headers)

        exchange = self._sender.send(
            build, operation=operation, write=method != "GET", idempotent=idempotent
        )
        self.request_count += exchange.attempts
        return exchange

    def _send_in_session(
        self,
        method: str,
        path: str,
        operation: Operation,
        params: Mapping[str, str] | None,
        json: Record | None,
        idempotent: bool,
    ) -> Exchange:
        """Send with the access cookie; after a 401 renew the session once and send again."""
        session = self._current_session()
        exchange = self._send(method, path, operation, params, json, idempotent, session)
        if exchange.response.status_code == 401:
            session = self._renewed_after_refusal(session)
            exchange = self._send(method, path, operation, params, json, idempotent, session)
        return exchange

    def _checked(self, response: httpx.Response, operation: Operation) -> httpx.Response:
        """``response`` if it succeeded, else its typed error raised."""
        if response.is_success:
            return response
        raise self._error(response, operation)

    # ----- auth ----------------------------------------------------------------------------

    def _current_session(self) -> _Session:
        """A live session: logged in, refreshed or kept, whichever is due.

        The lock makes threads sharing the client wait for one login instead of each logging in.
        """
        with self._session_lock:
            session, now = self._session, self._clock.monotonic()
            if session is None or now >= session.refresh_renew_at:
                return self._log_in()
            if now >= session.access_renew_at:
                return self._refresh(session) or self._log_in()
            return session

    def _renewed_after_refusal(self, refused: _Session) -> _Session:
        """After a 401: a fresh session, unless another thread has renewed it already."""
        with self._session_lock:
            current = self._session
            if current is not None and current is not refused:
                return current
            return self._refresh(refused) or self._log_in()

    def _log_in(self) -> _Session:
        """``POST /auth/login`` and keep the cookies it sets."""
        operation = Operation.LOGIN
        endpoint = ENDPOINTS[operation]
        credentials = {"email": self._credentials.username, "password": self._credentials.password}
        started = self._clock.monotonic()
        # Logging in twice only sets fresh cookies: safe to retry.
        exchange = self._send(
            endpoint.method, endpoint.path, operation, None, credentials, True, None
        )
        self.logins += 1
        response = self._checked(exchange.response, operation)
        cookies = {name: value for name, value in _set_cookies(response).items() if value}
        if not cookies:
            raise ProviderAuthError(self.name, operation, response.status_code, "no cookies set")
        self._session = _Session(
            cookies,
            access_renew_at=started + _renewal(ACCESS_LIFETIME, ACCESS_RENEWAL_MARGIN),
            refresh_renew_at=started + _renewal(REFRESH_LIFETIME, REFRESH_RENEWAL_MARGIN),
        )
        return self._session

    def _refresh(self, session: _Session) -> _Session | None:
        """``GET /auth/refresh``; ``None`` when the refresh token is refused (log in then)."""
        operation = Operation.REFRESH
        endpoint = ENDPOINTS[operation]
        started = self._clock.monotonic()
        exchange = self._send(endpoint.method, endpoint.path, operation, None, None, True, session)
        self.refreshes += 1
        response = exchange.response
        if response.status_code in (400, 401, 403):
            self._session = None
            return None
        self._checked(response, operation)
        cookies = dict(session.cookies)
        for name, value in _set_cookies(response).items():
            if value is None:
                cookies.pop(name, None)
            else:
                cookies[name] = value
        self._session = _Session(
            cookies,
            access_renew_at=started + _renewal(ACCESS_LIFETIME, ACCESS_RENEWAL_MARGIN),
            refresh_renew_at=session.refresh_renew_at,
        )
        return self._session

    # ----- errors --------------------------------------------------------------------------

    def _error(self, response: httpx.Response, operation: Operation) -> ProviderError:
        """The typed error of a failed reply, from Prospero's ``APIError {status, error}``."""
        status = response.status_code
        message = self._redact(_message(response))
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), self._clock.now())
            return ProviderThrottled(self.name, operation, status, message, retry_after=retry_after)
        auth_call = operation in (Operation.LOGIN, Operation.REFRESH)
        if status in (401, 403) or (auth_call and status < 500):
            return ProviderAuthError(self.name, operation, status, message)
        if status == 404:
            return ProviderNotFound(self.name, operation, status, message)
        if status >= 500:
            return ProviderUnavailable(self.name, operation, status, message)
        if status == 409:
            return ProviderConflict(self.name, operation, status, message)
        if status in (400, 422):
            errors = (FieldError("", message),)
            return ProviderValidationError(self.name, operation, status, message, errors=errors)
        return ProviderError(self.name, operation, status, message)

    def _redact(self, text: str) -> str:
        """``text`` with the password or a cookie value the server might have echoed blanked."""
        secrets = [self._credentials.password]
        if self._session is not None:
            secrets.extend(self._session.cookies.values())
        for secret in secrets:
            if secret and len(secret) >= 4:
                text = text.replace(secret, "***")
        return text


def _renewal(lifetime: timedelta, margin: timedelta) -> float:
    """Seconds after issue at which to renew: the lifetime less a margin (≤ a tenth of it)."""
    seconds = lifetime.total_seconds()
    return seconds - min(margin.total_seconds(), seconds / 10)


def _json_body(response: httpx.Response) -> object:
    """The reply's JSON, or ``None`` when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None


def _message(response: httpx.Response) -> str:
    """Prospero's own explanation: the APIError's ``error``, else the reply text."""
    body = _json_body(response)
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, str) and error:
            return error
    text = response.text.strip()
    return text[:200] if text else response.reason_phrase or "no explanation given"


def _segment(identifier: str) -> str:
    """An id as one URL path segment (ids are UUIDs; refuse anything path-like)."""
    text = str(identifier)
    if not text or "/" in text or "?" in text or text in (".", ".."):
        raise ValueError(f"not a valid Prospero id: {text!r}")
    return text


def _flag(value: bool) -> str:
    """A boolean query parameter."""
    return "true" if value else "false"
