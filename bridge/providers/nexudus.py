"""Client of the Nexudus admin REST API (``https://spaces.nexudus.com/api``).

It returns Nexudus's own JSON records; turning them into canonical bookings is the job of
``mappings.nexudus``. What it takes care of:

- auth: a bearer token from ``POST /api/token`` (password grant), refreshed with its refresh
  token shortly before it expires, renewed once on a 401; or HTTP Basic;
- listing with the ``Records`` envelope, ``page``/``size`` paging and ``Booking_*`` filters;
  coworkers (customers) looked up by email with ``Coworker_Email``;
- pacing to the documented limits and retries through :mod:`bridge.providers.http`;
- every failure as a typed :mod:`bridge.providers.errors` exception whose text never holds the
  password or a token.

Nexudus range filters take minute precision (``YYYY-MM-DDTHH:mm``, read as UTC here), so every
lower bound is floored to the minute and pulled back by a safety margin; callers get some rows
they saw before, never miss one.
"""

from __future__ import annotations

import base64
import random
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Self

import httpx

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

PROVIDER = "nexudus"
DEFAULT_BASE_URL = "https://spaces.nexudus.com"

#: The documented limits: all calls 1 per 100 ms and 120/min, writes 60/min.
NEXUDUS_PACING = PacingPolicy(min_interval=0.1, requests_per_minute=120, writes_per_minute=60)

#: WhichBookingsToUpdate values the bridge uses (eRepeatedBookingUpdateAction).
UPDATE_THIS_BOOKING_ONLY = 1
UPDATE_FUTURE_BOOKINGS = 2
UPDATE_ALL_BOOKINGS = 3

#: Nexudus's throttle text (it answers HTTP 409, not 429).
THROTTLE_TEXT = "You must wait before accessing this url again"
#: How Nexudus words a booking refused because the resource is taken.
UNAVAILABLE_TEXT = "not available"

Record = dict[str, Any]
AuthMode = Literal["bearer", "basic"]


def is_nexudus_throttle(response: httpx.Response) -> bool:
    """Whether a response is Nexudus's throttle: 409 with Retry-After (or its text), or 429."""
    if response.status_code == 429:
        return True
    if response.status_code != 409:
        return False
    return "Retry-After" in response.headers or THROTTLE_TEXT in response.text


def filter_minute(instant: datetime) -> str:
    """An instant as a Nexudus range-filter value: UTC, ``YYYY-MM-DDTHH:mm``, floored."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


def filter_minute_ceiling(instant: datetime) -> str:
    """Like :func:`filter_minute` but rounded up, for upper bounds."""
    utc = instant.astimezone(UTC)
    floored = utc.replace(second=0, microsecond=0)
    return filter_minute(floored if floored == utc else floored + timedelta(minutes=1))


def parse_nexudus_time(value: object) -> datetime | None:
    """A Nexudus UTC timestamp (``…Z``, an offset, or no suffix meaning UTC), else ``None``."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def overlaps_window(record: Mapping[str, Any], window: Window) -> bool:
    """Whether a booking record's [FromTime, ToTime) meets the window (unparsable: kept)."""
    start = parse_nexudus_time(record.get("FromTime"))
    end = parse_nexudus_time(record.get("ToTime"))
    if start is None or end is None:
        return True
    return window.overlaps(start, end)


@dataclass(slots=True)
class _Token:
    """A bearer token pair; never printed."""

    access: str = field(repr=False)
    refresh: str | None = field(repr=False)
    refresh_at: float


@dataclass(frozen=True, slots=True)
class _Credentials:
    """Username and password; never printed."""

    username: str = field(repr=False)
    password: str = field(repr=False)
    client_id: str | None = field(default=None, repr=False)


class NexudusClient:
    """Synchronous client of one Nexudus account (a space's admin user)."""

    def __init__(
        self,
        username: str,
        password: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        auth: AuthMode = "bearer",
        client_id: str | None = None,
        name: str = PROVIDER,
        timeout: float = 30.0,
        page_size: int = 1000,
        updated_margin: timedelta = timedelta(minutes=2),
        retry: RetryPolicy | None = None,
        pacing: PacingPolicy = NEXUDUS_PACING,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
        rng: random.Random | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if auth not in ("bearer", "basic"):
            raise ValueError(f"unknown auth mode {auth!r} (bearer or basic)")
        if not 1 <= page_size <= 1000:
            raise ValueError("page_size must be between 1 and 1000")
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.auth_mode: AuthMode = auth
        self._credentials = _Credentials(username, password, client_id)
        self._page_size = page_size
        self._margin = updated_margin
        self._clock = clock or SystemClock()
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
        self._token: _Token | None = None
        self._zones: dict[int, str] = {}
        self._business_zones: dict[int, str] = {}
        self._zone_names: dict[int, str] | None = None

    def __repr__(self) -> str:
        return (
            f"NexudusClient(name={self.name!r}, base_url={self.base_url!r}, "
            f"auth={self.auth_mode!r})"
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the underlying HTTP connections."""
        self._http.close()

    # ----- reads -------------------------------------------------------------------------

    def list_bookings(
        self,
        resource_id: int | str,
        *,
        updated_since: datetime | None = None,
        window: Window | None = None,
    ) -> Iterator[Record]:
        """Bookings of one resource, oldest change first, optionally changed since / in a window.

        A record updated while the listing runs may be yielded twice (old and new version); a
        record is never skipped, because each page restarts the query from the last
        ``UpdatedOn`` seen instead of trusting page offsets that shift under updates.
        """
        params: dict[str, str] = {"Booking_Resource": str(resource_id), "orderby": "UpdatedOn"}
        if window is not None:
            params["from_Booking_ToTime"] = filter_minute(window.start)
            params["to_Booking_FromTime"] = filter_minute_ceiling(window.end)
        since = None if updated_since is None else updated_since - self._margin
        for record in self._records_by_update(
            "/api/spaces/bookings", params, "Booking_UpdatedOn", since, "list bookings"
        ):
            if window is None or overlaps_window(record, window):
                yield record

    def list_series(self, series_id: str) -> Iterator[Record]:
        """The member bookings of one repeat series, in start order."""
        params = {"Booking_RepeatSeriesUniqueId": series_id, "orderby": "FromTime"}
        yield from self._records("/api/spaces/bookings", params, "list series")

    def list_cancelled(
        self, resource_id: int | str, *, since: datetime | None = None
    ) -> Iterator[Record]:
        """Cancelled-booking snapshots of one resource, cancelled since ``since`` (minus margin)."""
        params = {"CancelledBooking_Resource": str(resource_id), "orderby": "CancelledOn"}
        if since is not None:
            params["from_CancelledBooking_CancelledOn"] = filter_minute(since - self._margin)
        yield from self._records("/api/spaces/cancelledbookings", params, "list cancelled")

    def coworkers_by_email(self, email: str) -> list[Record]:
        """The coworkers (customers) whose ``Email`` is ``email``, ignoring case.

        The ``Coworker_Email`` filter narrows the listing; the exact comparison is made here
        too, so a tenant whose filter matches loosely (a substring) cannot bill a stranger.
        """
        wanted = email.strip().lower()
        params = {"Coworker_Email": email.strip(), "orderby": "Id"}
        return [
            record
            for record in self._records("/api/spaces/coworkers", params, "list coworkers")
            if str(record.get("Email") or "").strip().lower() == wanted
        ]

    def get_booking(self, booking_id: int) -> Record:
        """The full record of one booking."""
        return self._json_object("GET", f"/api/spaces/bookings/{int(booking_id)}", "get booking")

    def get_resource(self, resource_id: int | str) -> Record:
        """One resource (room) record."""
        path = f"/api/spaces/resources/{int(resource_id)}"
        return self._json_object("GET", path, "get resource")

    def get_business(self, business_id: int) -> Record:
        """One business (location) record."""
        path = f"/api/sys/businesses/{int(business_id)}"
        return self._json_object("GET", path, "get business")

    def resource_timezone(self, resource_id: int | str) -> str:
        """The Windows time-zone name of a resource's business, e.g. ``"GMT Standard Time"``.

        Resources carry no zone; it is Resource.BusinessId → Business.SimpleTimeZoneId →
        the SimpleTimeZone's Name. Each step is cached for the client's life.
        """
        key = int(resource_id)
        if key not in self._zones:
            business_id = self._required_int(self.get_resource(key), "BusinessId", "resource")
            self._zones[key] = self._business_timezone(business_id)
        return self._zones[key]

    # ----- writes ------------------------------------------------------------------------

    def create_booking(self, body: Mapping[str, Any]) -> int:
        """Create a booking (or a whole repeat series); returns the new (first) booking Id."""
        envelope = self._json_object(
            "POST", "/api/spaces/bookings", "create booking", json=dict(body)
        )
        value = envelope.get("Value")
        if not isinstance(value, dict) or not isinstance(value.get("Id"), int):
            raise ProviderError(self.name, "create booking", 200, "the reply carried no Id")
        return int(value["Id"])

    def update_booking(self, body: Mapping[str, Any], *, which: int | None = None) -> None:
        """Replace a booking with ``body``, a full record (Nexudus clears what is left out).

        ``which`` is WhichBookingsToUpdate (1 this, 2 this and future, 3 all); without it the
        body's own value is used, and a read-back ``0`` means "this booking only".
        """
        if "Id" not in body:
            raise ValueError("update_booking needs the booking Id in the body")
        payload = dict(body)
        action = which if which is not None else payload.get("WhichBookingsToUpdate")
        payload["WhichBookingsToUpdate"] = action or UPDATE_THIS_BOOKING_ONLY
        payload.setdefault("Repeats", 0)
        self._json_object("PUT", "/api/spaces/bookings", "update booking", json=payload)

    def delete_booking(self, booking_id: int) -> None:
        """Delete (cancel) one booking; Nexudus keeps a cancelled-booking snapshot."""
        operation = "delete booking"
        exchange = self._exchange("DELETE", f"/api/spaces/bookings/{int(booking_id)}", operation)
        # A retried delete whose first attempt went through finds the booking gone: done.
        if exchange.response.status_code == 404 and exchange.attempts > 1:
            return
        self._checked(exchange.response, operation)

    # ----- listing machinery ---------------------------------------------------------------

    def _records(self, path: str, params: Mapping[str, str], operation: str) -> Iterator[Record]:
        """Every record of a list query, page by page until HasNextPage is false."""
        page = 1
        while True:
            envelope = self._page(path, {**params, "page": str(page)}, operation)
            yield from envelope["Records"]
            if not envelope.get("HasNextPage") or not envelope["Records"]:
                return
            page += 1

    def _records_by_update(
        self,
        path: str,
        params: Mapping[str, str],
        update_filter: str,
        since: datetime | None,
        operation: str,
    ) -> Iterator[Record]:
        """Records ordered by UpdatedOn, each page re-anchored at the last UpdatedOn seen.

        Offset paging skips a record whenever one already listed is updated (it moves to the
        end and the rest shift up a place), so after each page the query restarts from that
        page's newest minute; only when a whole page shares that minute does it turn a page.
        """
        anchor = None if since is None else since.astimezone(UTC).replace(second=0, microsecond=0)
        page = 1
        seen: set[tuple[object, object]] = set()
        while True:
            query = dict(params, page=str(page))
            if anchor is not None:
                query[f"from_{update_filter}"] = filter_minute(anchor)
            envelope = self._page(path, query, operation)
            records: list[Record] = envelope["Records"]
            for record in records:
                identity = (record.get("Id"), record.get("UpdatedOn"))
                if identity not in seen:
                    seen.add(identity)
                    yield record
            if not envelope.get("HasNextPage") or not records:
                return
            newest = self._newest_minute(records)
            if newest is not None and (anchor is None or newest > anchor):
                anchor, page = newest, 1
            else:
                page += 1

    @staticmethod
    def _newest_minute(records: list[Record]) -> datetime | None:
        """The latest UpdatedOn of a page, floored to the minute (the filter's precision)."""
        stamps = [parse_nexudus_time(record.get("UpdatedOn")) for record in records]
        known = [stamp for stamp in stamps if stamp is not None]
        if not known:
            return None
        return max(known).astimezone(UTC).replace(second=0, microsecond=0)

    def _page(self, path: str, params: Mapping[str, str], operation: str) -> Record:
        """One page of a list endpoint, checked to be the ``Records`` envelope."""
        envelope = self._json_object(
            "GET", path, operation, params={**params, "size": str(self._page_size)}
        )
        if not isinstance(envelope.get("Records"), list):
            raise ProviderError(self.name, operation, 200, "the reply has no Records list")
        return envelope

    # ----- time zones ----------------------------------------------------------------------

    def _business_timezone(self, business_id: int) -> str:
        """The Windows zone name of one business, cached."""
        if business_id not in self._business_zones:
            business = self.get_business(business_id)
            zone_id = self._required_int(business, "SimpleTimeZoneId", "business")
            names = self._timezone_names()
            if zone_id not in names:
                raise ProviderError(
                    self.name, "resolve time zone", None, f"unknown SimpleTimeZoneId {zone_id}"
                )
            self._business_zones[business_id] = names[zone_id]
        return self._business_zones[business_id]

    def _timezone_names(self) -> dict[int, str]:
        """SimpleTimeZone Id → Name, loaded once."""
        if self._zone_names is None:
            rows = self._records("/api/sys/simpletimezones", {}, "list time zones")
            self._zone_names = {
                int(row["Id"]): str(row["Name"])
                for row in rows
                if isinstance(row.get("Id"), int) and isinstance(row.get("Name"), str)
            }
        return self._zone_names

    def _required_int(self, record: Mapping[str, Any], name: str, kind: str) -> int:
        """An integer field the time-zone chain needs, or a clear error."""
        value = record.get(name)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ProviderError(
                self.name, "resolve time zone", None, f"the {kind} record has no {name}"
            )
        return value

    # ----- requests, auth and errors -------------------------------------------------------

    def _json_object(
        self,
        method: str,
        path: str,
        operation: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Record | None = None,
    ) -> Record:
        """Send a request and return its JSON object body."""
        response = self._call(method, path, operation, params=params, json=json)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ProviderError(
                self.name, operation, response.status_code, "the reply is not a JSON object"
            )
        if body.get("WasSuccessful") is False:
            raise self._error(response, operation, body)
        return body

    def _call(
        self,
        method: str,
        path: str,
        operation: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Record | None = None,
    ) -> httpx.Response:
        """Send with auth and return the successful reply; failures become typed errors."""
        exchange = self._exchange(method, path, operation, params=params, json=json)
        return self._checked(exchange.response, operation)

    def _exchange(
        self,
        method: str,
        path: str,
        operation: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Record | None = None,
    ) -> Exchange:
        """Send with auth; on a 401 renew the token once and send again."""
        write = method in ("POST", "PUT", "PATCH", "DELETE")
        # A create is the only request whose repetition could duplicate something.
        idempotent = method != "POST"

        def build() -> httpx.Request:
            headers = {"Authorization": self._authorization(), "Accept": "application/json"}
            return self._http.build_request(method, path, params=params, json=json, headers=headers)

        self._ensure_token()
        exchange = self._sender.send(build, operation=operation, write=write, idempotent=idempotent)
        if exchange.response.status_code == 401 and self.auth_mode == "bearer":
            self._renew_token()
            exchange = self._sender.send(
                build, operation=operation, write=write, idempotent=idempotent
            )
        return exchange

    def _checked(self, response: httpx.Response, operation: str) -> httpx.Response:
        """``response`` if it succeeded, else its typed error raised."""
        if response.is_success:
            return response
        raise self._error(response, operation, None)

    def _ensure_token(self) -> None:
        """Log in, or refresh a token about to expire, before a request is paced and sent."""
        if self.auth_mode != "bearer":
            return
        if self._token is None:
            self._login()
        elif self._clock.monotonic() >= self._token.refresh_at:
            self._refresh_or_login(self._token)

    def _authorization(self) -> str:
        """The Authorization header value for the configured auth mode."""
        if self.auth_mode == "basic":
            pair = f"{self._credentials.username}:{self._credentials.password}"
            return "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        if self._token is None:
            self._login()
        assert self._token is not None
        return f"Bearer {self._token.access}"

    def _renew_token(self) -> None:
        """After a 401: refresh the token if we can, else log in again."""
        token = self._token
        self._token = None
        if token is not None:
            self._refresh_or_login(token)
        else:
            self._login()

    def _refresh_or_login(self, token: _Token) -> _Token:
        """A new token from the refresh token; a refused refresh falls back to the password."""
        if token.refresh:
            try:
                return self._request_token(
                    {"grant_type": "refresh_token", "refresh_token": token.refresh}
                )
            except ProviderAuthError:
                pass
        return self._login()

    def _login(self) -> _Token:
        """A new token from the password grant."""
        return self._request_token(
            {
                "grant_type": "password",
                "username": self._credentials.username,
                "password": self._credentials.password,
            }
        )

    def _request_token(self, form: dict[str, str]) -> _Token:
        """Call ``POST /api/token`` and remember the token it returns."""
        if self._credentials.client_id:
            form = {**form, "client_id": self._credentials.client_id}
        operation = "get token"

        def build() -> httpx.Request:
            return self._http.build_request("POST", "/api/token", data=form)

        started = self._clock.monotonic()
        response = self._sender.send(build, operation=operation, write=False, idempotent=True)
        reply = response.response
        if not reply.is_success:
            raise self._error(reply, operation, None)
        try:
            body = reply.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            raise ProviderAuthError(self.name, operation, reply.status_code, "no access_token")
        self._token = self._token_from(body, started)
        return self._token

    @staticmethod
    def _token_from(body: Mapping[str, Any], obtained: float) -> _Token:
        """A token that will be refreshed a little before it expires."""
        lifetime = body.get("expires_in")
        seconds = float(lifetime) if isinstance(lifetime, int | float) else 3600.0
        # Refresh with a tenth of the lifetime (at most an hour) to spare: clocks drift and a
        # sync pass started just before expiry should not hit a 401 half way.
        refresh_at = obtained + seconds - min(3600.0, seconds / 10)
        refresh = body.get("refresh_token")
        return _Token(
            body["access_token"], refresh if isinstance(refresh, str) else None, refresh_at
        )

    def _error(
        self, response: httpx.Response, operation: str, body: Record | None
    ) -> ProviderError:
        """The typed error for a failed reply."""
        status = response.status_code
        if body is None:
            body = self._body_of(response)
        errors = self._field_errors(body)
        message = self._redact(self._message(response, body, errors))
        if status == 400 and body.get("error") in ("invalid_grant", "invalid_client"):
            return ProviderAuthError(self.name, operation, status, message)
        if status in (401, 403):
            return ProviderAuthError(self.name, operation, status, message)
        if status == 404:
            return ProviderNotFound(self.name, operation, status, message)
        if is_nexudus_throttle(response):
            retry_after = parse_retry_after(response.headers.get("Retry-After"), self._clock.now())
            return ProviderThrottled(self.name, operation, status, message, retry_after=retry_after)
        if status >= 500:
            return ProviderUnavailable(self.name, operation, status, message)
        if UNAVAILABLE_TEXT in message.lower() or status == 409:
            return ProviderConflict(self.name, operation, status, message, errors=errors)
        if status in (400, 422) or body.get("WasSuccessful") is False:
            return ProviderValidationError(self.name, operation, status, message, errors=errors)
        return ProviderError(self.name, operation, status, message, errors=errors)

    @staticmethod
    def _body_of(response: httpx.Response) -> Record:
        """The reply's JSON object, or an empty one."""
        try:
            body = response.json()
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    def _field_errors(self, body: Mapping[str, Any]) -> tuple[FieldError, ...]:
        """Nexudus's ``Errors[]`` entries (AttemptedValue is left out: it may be anything)."""
        entries = body.get("Errors")
        if not isinstance(entries, list):
            return ()
        return tuple(
            FieldError(
                self._redact(str(entry.get("PropertyName") or "")),
                self._redact(str(entry.get("Message") or "")),
            )
            for entry in entries
            if isinstance(entry, dict)
        )

    @staticmethod
    def _message(
        response: httpx.Response, body: Mapping[str, Any], errors: tuple[FieldError, ...]
    ) -> str:
        """The provider's own explanation: Message, error_description, Errors[] or the text."""
        for key in ("Message", "error_description", "error"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
        if errors:
            return "; ".join(str(error) for error in errors)
        text = response.text.strip()
        return text[:200] if text else response.reason_phrase or "no explanation given"

    def _redact(self, text: str) -> str:
        """``text`` with any credential or token the provider might have echoed blanked out."""
        secrets = [self._credentials.password]
        if self._token is not None:
            secrets += [self._token.access, self._token.refresh or ""]
        for secret in secrets:
            if secret and len(secret) >= 4:
                text = text.replace(secret, "***")
        return text
