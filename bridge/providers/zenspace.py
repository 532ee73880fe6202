"""Client of the ZenSpace smart-pod API (surface A of shared/reference/zenspace.md).

It speaks ZenSpace's own JSON; the bodies come from ``mappings.zenspace``. What it covers:

- ``POST /booking_operation`` — create, update (same ``id``) or cancel (``is_active: false``)
  a pod booking. The caller chooses ``id``, so the call is an idempotent upsert and is retried
  like a read;
- device status (``POST /devices/{id}/status``), device action (path and body per
  :class:`~bridge.devices.assumptions.ZenSpaceAssumptions`, gap G7), device events (a ``GET``
  with a JSON body, list under ``events`` or ``data``), and the meeting space state with its
  ``timezone`` (surface B, the only place the pod's zone is documented);
- the ``X-API-Key`` header on every call (gap G2), pacing and retries through
  :mod:`bridge.providers.http`, and typed :mod:`bridge.providers.errors` failures.

Secrets: the API key and any door code (``unlock_key``) sent are blanked out of every error
message, even if ZenSpace echoes them back; neither appears in ``repr``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

import httpx

from bridge.devices.assumptions import DEFAULT_ASSUMPTIONS, ZenSpaceAssumptions
from bridge.providers.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderNotFound,
    ProviderThrottled,
    ProviderUnavailable,
    ProviderValidationError,
)
from bridge.providers.http import (
    Clock,
    Pacer,
    PacingPolicy,
    RetryingSender,
    RetryPolicy,
    Sleep,
    SystemClock,
    parse_retry_after,
)

PROVIDER = "zenspace"

#: No limits are documented; stay gentle anyway (a pod gets a handful of calls per meeting).
ZENSPACE_PACING = PacingPolicy(min_interval=0.05, requests_per_minute=120)

Record = dict[str, Any]


@dataclass(frozen=True, slots=True)
class BookingReply:
    """What ``/booking_operation`` answered (``message`` is informational only, G4)."""

    booking_id: str
    message: str


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """One device's reported state: ``value`` (``on``/``off``, ``open``/``closed``, …)."""

    device: str
    value: str
    status: str

    def as_json(self) -> dict[str, str]:
        """The status as a JSON object."""
        return {"device": self.device, "value": self.value, "status": self.status}


@dataclass(frozen=True, slots=True)
class _Key:
    """The API key; never printed."""

    value: str = field(repr=False)


class ZenSpaceClient:
    """Synchronous client of one ZenSpace account (one API key)."""

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str,
        name: str = PROVIDER,
        assumptions: ZenSpaceAssumptions = DEFAULT_ASSUMPTIONS,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        pacing: PacingPolicy = ZENSPACE_PACING,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
        rng: random.Random | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.assumptions = assumptions
        self._key = _Key(api_key)
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
        )
        self._zones: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"ZenSpaceClient(name={self.name!r}, base_url={self.base_url!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the underlying HTTP connections."""
        self._http.close()

    # ----- bookings ------------------------------------------------------------------------

    def booking_operation(self, body: Mapping[str, Any]) -> BookingReply:
        """Create, update or cancel one pod booking (the body decides which)."""
        if not isinstance(body.get("id"), str) or not body["id"]:
            raise ValueError("a booking_operation body needs its id")
        code = body.get("unlock_key")
        hidden = (code,) if isinstance(code, str) else ()
        reply = self._json(
            "POST", self.assumptions.booking_path, "booking operation", json=dict(body),
            hidden=hidden,
        )
        booking_id = reply.get("booking_id")
        if not isinstance(booking_id, str):
            raise ProviderError(self.name, "booking operation", 200, "the reply has no booking_id")
        message = reply.get("message")
        return BookingReply(booking_id, message if isinstance(message, str) else "")

    # ----- devices -------------------------------------------------------------------------

    def device_status(
        self, meeting_space_id: str, device_type: str, sub_device: str | None = None
    ) -> DeviceStatus:
        """One device's current state."""
        body: Record = {"device_type": device_type}
        if sub_device is not None:
            body["sub_device"] = sub_device
        path = self.assumptions.status_path(meeting_space_id)
        return self._device_reply(self._json("POST", path, "device status", json=body))

    def device_action(
        self, meeting_space_id: str, device_type: str, *, switch_on: bool
    ) -> DeviceStatus:
        """Switch one device on or off; the pod's answer (body per the G7 assumption)."""
        body = self.assumptions.action_body(device_type, switch_on)
        path = self.assumptions.action_path(meeting_space_id)
        return self._device_reply(self._json("POST", path, "device action", json=body))

    def device_events(self, device_type: str) -> list[Record]:
        """Recent device events (a GET with a JSON body; list under ``events`` or ``data``)."""
        reply = self._json(
            "GET", self.assumptions.events_path, "device events", json={"device_type": device_type}
        )
        for key in (self.assumptions.events_key, "events", "data"):
            events = reply.get(key)
            if isinstance(events, list):
                return [event for event in events if isinstance(event, dict)]
        raise ProviderError(self.name, "device events", 200, "the reply has no event list")

    # ----- meeting spaces ------------------------------------------------------------------

    def meeting_space(self, meeting_space_id: str) -> Record:
        """The state of one meeting space (``timezone``, ``enabled``, ``next_available_time``)."""
        return self._json(
            "GET",
            self.assumptions.space_state_path,
            "meeting space state",
            params={"meeting_space_id": meeting_space_id},
        )

    def meeting_space_timezone(self, meeting_space_id: str) -> str:
        """The pod's IANA time zone, asked once per client."""
        if meeting_space_id not in self._zones:
            zone = self.meeting_space(meeting_space_id).get("timezone")
            if not isinstance(zone, str) or not zone:
                raise ProviderError(
                    self.name, "meeting space state", 200, "the reply names no timezone"
                )
            self._zones[meeting_space_id] = zone
        return self._zones[meeting_space_id]

    # ----- requests and errors -------------------------------------------------------------

    def _device_reply(self, reply: Record) -> DeviceStatus:
        """The ``{"response": {"device", "value", "status"}}`` envelope."""
        inner = reply.get("response")
        if not isinstance(inner, dict):
            raise ProviderError(self.name, "device call", 200, "the reply has no response")
        return DeviceStatus(
            str(inner.get("device") or ""), str(inner.get("value") or ""),
            str(inner.get("status") or ""),
        )

    def _json(
        self,
        method: str,
        path: str,
        operation: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Record | None = None,
        hidden: tuple[str, ...] = (),
    ) -> Record:
        """Send one request and return its JSON object reply; failures as typed errors."""

        def build() -> httpx.Request:
            headers = {
                self.assumptions.api_key_header: self._key.value,
                "Accept": "application/json",
            }
            return self._http.build_request(method, path, params=params, json=json, headers=headers)

        # Every call either reads or sets a state by a caller-chosen id: safe to repeat.
        exchange = self._sender.send(
            build, operation=operation, write=method != "GET", idempotent=True
        )
        response = exchange.response
        if not response.is_success:
            raise self._error(response, operation, hidden)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ProviderError(
                self.name, operation, response.status_code, "the reply is not a JSON object"
            )
        return body

    def _error(
        self, response: httpx.Response, operation: str, hidden: tuple[str, ...]
    ) -> ProviderError:
        """The typed error for a failed reply (its text redacted)."""
        status = response.status_code
        message = self._redact(_explanation(response), hidden)
        if status in (401, 403):
            return ProviderAuthError(self.name, operation, status, message)
        if status == 404:
            return ProviderNotFound(self.name, operation, status, message)
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), self._clock.now())
            return ProviderThrottled(self.name, operation, status, message, retry_after=retry_after)
        if status >= 500:
            return ProviderUnavailable(self.name, operation, status, message)
        if status in (400, 422):
            return ProviderValidationError(self.name, operation, status, message)
        return ProviderError(self.name, operation, status, message)

    def _redact(self, text: str, hidden: tuple[str, ...]) -> str:
        """``text`` without the API key or a door code it might echo."""
        for secret in (self._key.value, *hidden):
            if secret:
                text = text.replace(secret, "***")
        return text


def _explanation(response: httpx.Response) -> str:
    """ZenSpace's words: ``message``/``error`` of a JSON body, else the raw text (G4)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("message", "error", "detail"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value[:200]
    text = response.text.strip()
    return text[:200] if text else response.reason_phrase or "no explanation given"
