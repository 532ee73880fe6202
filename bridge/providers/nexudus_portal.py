"""Client of the Nexudus members-portal API (``https://{space}.spaces.nexudus.com/en/...``).

Some operators hold only a member's portal credentials, not an admin account. The portal API
(providers.md §2.11, seed ``nexudus-portal-bookings-api.md``) is what the space's own booking
calendar calls:

- ``GET /en/bookings/fullCalendarBookings?start=&end=&resourceId=``: bookings in a range;
- ``GET /en/bookings/fullCalendarEvents?start=&end=``: community events (some occupy a room);
- ``GET /en/bookings/search?start=&end=&…``: availability of every resource;
- ``POST /en/bookings/newBookingJson`` (create) and ``GET /en/bookings/deleteJson/{id}``
  (delete: it really is a GET);
- ``GET /en/bookings/{id}``: one booking, as ``{"Value": {...}, "Resource": {...}}``.

Auth is HTTP Basic with the member's email and password on every request; there is no token
to renew, so a 401 (or a redirect to the login page) means the password was changed or is
wrong, and is reported as such instead of being retried.

Times: list items carry the space's LOCAL wall-clock time written with a ``Z`` and
``ignoreTimezone: true`` (providers.md §2.7); range parameters and create bodies are written
the same way, so every call that takes or gives times needs the room's zone. Range parameters
are whole local dates, widened by the caller: the portal returns only items lying wholly
inside the range.

Every failure is a typed :mod:`bridge.providers.errors` exception whose text never holds the
password.
"""

from __future__ import annotations

import base64
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Self
from zoneinfo import ZoneInfo

import httpx

from bridge.providers.errors import (
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
from bridge.providers.nexudus import NEXUDUS_PACING, is_nexudus_throttle

PROVIDER = "nexudus-portal"
DEFAULT_LANGUAGE = "en"

#: Portal error codes that mean "the room is taken", not "the request is wrong".
CONFLICT_CODES = frozenset({"BOOKING_CONFLICT", "EVENT_CONFLICT", "RESOURCE_FULL", "NOT_AVAILABLE"})

Record = dict[str, Any]


def portal_time(instant: datetime, zone: ZoneInfo) -> str:
    """An instant as the portal writes it: local wall clock in ``zone``, a literal ``Z``."""
    return instant.astimezone(zone).strftime("%Y-%m-%dT%H:%MZ")


@dataclass(frozen=True, slots=True)
class Availability:
    """Whether one resource can be booked for a span, per ``/bookings/search``."""

    resource_id: int
    available: bool
    error_code: str | None
    message: str | None


@dataclass(frozen=True, slots=True)
class _Credentials:
    """The member's email and password; never printed."""

    email: str = field(repr=False)
    password: str = field(repr=False)

    def header(self) -> str:
        """The Basic ``Authorization`` header value."""
        pair = f"{self.email}:{self.password}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")


class NexudusPortalClient:
    """Synchronous client of one Nexudus space's members portal, as one member."""

    def __init__(
        self,
        email: str,
        password: str,
        *,
        base_url: str,
        language: str = DEFAULT_LANGUAGE,
        name: str = PROVIDER,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        pacing: PacingPolicy = NEXUDUS_PACING,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
        rng: random.Random | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.language = language
        self.request_count = 0
        self._credentials = _Credentials(email, password)
        self._clock = clock or SystemClock()
        # Redirects are not followed: the portal answers a refused login with one.
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)
        self._sender = RetryingSender(
            self._http,
            provider=name,
            retry=retry or RetryPolicy(),
            pacer=Pacer(pacing, self._clock, sleep or time.sleep),
            clock=self._clock,
            sleep=sleep or time.sleep,
            rng=rng or random.Random(),
            is_throttle=is_nexudus_throttle,
        )

    def __repr__(self) -> str:
        return f"NexudusPortalClient(name={self.name!r}, base_url={self.base_url!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the underlying HTTP connections."""
        self._http.close()

    # ----- reads -------------------------------------------------------------------------

    def list_bookings(self, resource_id: int | str, first: date, last: date) -> list[Record]:
        """Bookings of one resource lying within local dates ``first`` to ``last`` (inclusive)."""
        params = {
            **_date_range(first, last),
            "resourceId": str(int(resource_id)),
            "showAll": "true",
        }
        items = self._json_list("/bookings/fullCalendarBookings", params, "list bookings")
        # The resource filter is the server's to apply; one that ignores it must not leak
        # another room's bookings into this one.
        return [item for item in items if _resource_of(item) == int(resource_id)]

    def list_events(self, first: date, last: date) -> list[Record]:
        """Community events lying within local dates ``first`` to ``last`` (all rooms)."""
        return self._json_list(
            "/bookings/fullCalendarEvents", _date_range(first, last), "list events"
        )

    def get_booking(self, booking_id: int) -> Record:
        """One booking as the get-one envelope ``{"Value": {...}, "Resource": {...}}``."""
        return self._json_object("GET", f"/bookings/{int(booking_id)}", "get booking")

    def search(
        self, start: datetime, end: datetime, zone: ZoneInfo, **criteria: str | int | bool
    ) -> list[Record]:
        """Resources matching ``criteria`` (group, type, allocation, amenities), with availability.

        Each row carries ``IsAvailable`` and, when not, an ``ErrorCode`` and ``Message``.
        """
        params = {"start": portal_time(start, zone), "end": portal_time(end, zone)}
        params.update({key: _query_value(value) for key, value in criteria.items()})
        reply = self._json_object("GET", "/bookings/search", "search", params=params)
        resources = reply.get("Resources")
        if not isinstance(resources, list):
            raise ProviderError(self.name, "search", 200, "the reply has no Resources list")
        return [r for r in resources if isinstance(r, dict)]

    def availability(
        self, resource_id: int | str, start: datetime, end: datetime, zone: ZoneInfo
    ) -> Availability:
        """Whether one resource is free for [start, end)."""
        wanted = int(resource_id)
        for resource in self.search(start, end, zone):
            if resource.get("Id") == wanted:
                code = resource.get("ErrorCode")
                message = resource.get("Message")
                return Availability(
                    wanted,
                    resource.get("IsAvailable") is True,
                    code if isinstance(code, str) else None,
                    message if isinstance(message, str) else None,
                )
        raise ProviderNotFound(self.name, "search", None, f"resource {wanted} is not listed")

    # ----- writes ------------------------------------------------------------------------

    def create_booking(
        self,
        resource_id: int | str,
        start: datetime,
        end: datetime,
        zone: ZoneInfo,
        *,
        tentative: bool = False,
        notes: str | None = None,
    ) -> int:
        """Book a resource as the logged-in member; returns the new booking's Id."""
        body: Record = {
            "Booking": {
                "Resource": {"Id": int(resource_id)},
                "Tentative": tentative,
                "Id": 0,
                "FromTime": portal_time(start, zone),
                "ToTime": portal_time(end, zone),
                "Notes": notes,
                "BookingVisitors": [],
            },
            "Products": [],
        }
        reply = self._json_object("POST", "/bookings/newBookingJson", "create booking", json=body)
        value = reply.get("Value")
        booking_id = value.get("Id") if isinstance(value, dict) else None
        if not isinstance(booking_id, int) or isinstance(booking_id, bool):
            raise ProviderError(self.name, "create booking", 200, "the reply carried no Id")
        return booking_id

    def delete_booking(self, booking_id: int) -> None:
        """Delete one of the member's bookings."""
        operation = "delete booking"
        path = self._path(f"/bookings/deleteJson/{int(booking_id)}")
        exchange = self._send("GET", path, operation, write=True)
        # A retried delete whose first attempt went through finds the booking gone: done.
        if exchange.response.status_code == 404 and exchange.attempts > 1:
            return
        self._checked_object(exchange.response, operation)

    # ----- requests and errors -------------------------------------------------------------

    def _path(self, route: str) -> str:
        """The URL path of a portal route in the client's language."""
        return f"/{self.language}{route}"

    def _json_list(self, route: str, params: Mapping[str, str], operation: str) -> list[Record]:
        """A GET whose reply is a bare JSON array of objects."""
        exchange = self._send("GET", self._path(route), operation, params=params)
        response = self._checked(exchange.response, operation)
        body = _json_of(response)
        if not isinstance(body, list):
            raise ProviderError(
                self.name, operation, response.status_code, "the reply is not a JSON array"
            )
        return [item for item in body if isinstance(item, dict)]

    def _json_object(
        self,
        method: str,
        route: str,
        operation: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Record | None = None,
    ) -> Record:
        """A request whose reply is a JSON object (a failed envelope raises)."""
        exchange = self._send(
            method, self._path(route), operation, params=params, json=json, write=method != "GET"
        )
        return self._checked_object(exchange.response, operation)

    def _send(
        self,
        method: str,
        path: str,
        operation: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Record | None = None,
        write: bool = False,
    ) -> Exchange:
        """Send with Basic auth, pacing and retries."""
        headers = {"Authorization": self._credentials.header(), "Accept": "application/json"}

        def build() -> httpx.Request:
            return self._http.build_request(method, path, params=params, json=json, headers=headers)

        # A create is the only request whose repetition could duplicate something.
        idempotent = method != "POST"
        exchange = self._sender.send(build, operation=operation, write=write, idempotent=idempotent)
        self.request_count += exchange.attempts
        return exchange

    def _checked_object(self, response: httpx.Response, operation: str) -> Record:
        """The reply's JSON object, or the typed error of a failure (HTTP or envelope)."""
        self._checked(response, operation)
        body = _json_of(response)
        if not isinstance(body, dict):
            raise ProviderError(
                self.name, operation, response.status_code, "the reply is not a JSON object"
            )
        if body.get("WasSuccessful") is False:
            raise self._envelope_error(body, operation)
        return body

    def _checked(self, response: httpx.Response, operation: str) -> httpx.Response:
        """``response`` if it succeeded, else its typed error raised."""
        if response.is_success:
            return response
        raise self._error(response, operation)

    def _error(self, response: httpx.Response, operation: str) -> ProviderError:
        """The typed error of a failed HTTP reply."""
        status = response.status_code
        if status in (401, 403) or _is_login_redirect(response):
            return ProviderAuthError(
                self.name,
                operation,
                status,
                "the portal refused the member's email and password (changed or wrong?); "
                "update `username`/`password` of this provider",
            )
        message = self._redact(_message_of(response))
        if status == 404:
            return ProviderNotFound(self.name, operation, status, message)
        if is_nexudus_throttle(response):
            retry_after = parse_retry_after(response.headers.get("Retry-After"), self._clock.now())
            return ProviderThrottled(self.name, operation, status, message, retry_after=retry_after)
        if status >= 500:
            return ProviderUnavailable(self.name, operation, status, message)
        if status in (400, 422):
            return ProviderValidationError(self.name, operation, status, message)
        return ProviderError(self.name, operation, status, message)

    def _envelope_error(self, body: Mapping[str, Any], operation: str) -> ProviderError:
        """The typed error of a ``WasSuccessful: false`` envelope (HTTP 200, ``Status`` 500)."""
        code = body.get("ErrorCode")
        text = body.get("Message")
        message = self._redact(text if isinstance(text, str) and text else "refused")
        if isinstance(code, str) and code:
            message = f"{message} ({code})"
        status = body.get("Status")
        status_code = status if isinstance(status, int) else None
        if code in CONFLICT_CODES or "not available" in message.lower():
            return ProviderConflict(self.name, operation, status_code, message)
        return ProviderValidationError(self.name, operation, status_code, message)

    def _redact(self, text: str) -> str:
        """``text`` with the password blanked out, should the portal ever echo it."""
        secret = self._credentials.password
        return text.replace(secret, "***") if len(secret) >= 4 else text


def _date_range(first: date, last: date) -> dict[str, str]:
    """The ``start``/``end`` parameters of a list call (both required by the portal)."""
    if last < first:
        raise ValueError("the last date of a range must not be before its first")
    return {"start": first.isoformat(), "end": last.isoformat()}


def _query_value(value: str | int | bool) -> str:
    """A search criterion as a query value (booleans as ``true``/``false``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _resource_of(item: Mapping[str, Any]) -> int | None:
    """An item's ``resourceId`` as an integer, if it has one."""
    value = item.get("resourceId")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _json_of(response: httpx.Response) -> object:
    """The reply's JSON, or None when it is not JSON."""
    try:
        body: object = response.json()
    except ValueError:
        return None
    return body


def _is_login_redirect(response: httpx.Response) -> bool:
    """Whether a reply sends the browser to the login page (how the portal refuses a login)."""
    location = response.headers.get("Location", "")
    return response.is_redirect and "login" in location.lower()


def _message_of(response: httpx.Response) -> str:
    """The portal's own explanation: ``Message`` of a JSON body, else the start of the text."""
    body = _json_of(response)
    if isinstance(body, dict):
        message = body.get("Message")
        if isinstance(message, str) and message:
            return message
    text = response.text.strip()
    return text[:200] if text else response.reason_phrase or "no explanation given"
