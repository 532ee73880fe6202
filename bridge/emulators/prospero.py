"""A strict, in-memory emulator of the Prospero Bookings API (the parts the bridge uses).

It answers like Prospero (shared/reference/providers.md §3, seed 003): cookie login at
``/auth/login`` (access cookie 1 h, refresh cookie 7 days), ``/auth/refresh`` refusing a bad
or stale refresh token with 400 "Unable to verify refresh token"; the booking lifecycle
pending → approved / denied (→ canceled), approval creating the linked Event whose times are
the calendar's; the ``clientBookingLastUpdatedAt`` optimistic check on approve and deny;
cancel with ``eventProcedure`` (the Event marked cancelled, or deleted); change requests
applied directly to a pending Booking, queued for an admin otherwise; UTC-only datetimes
(anything but ``YYYY-MM-DDThh:mm:ssZ`` is refused); every error as ``APIError {status, error}``.

The API is served under :data:`BASE_PATH` (Prospero's real base URL is undocumented), at the
paths of :data:`bridge.providers.prospero.ENDPOINTS`, the one table both sides share. So the
default :class:`FaultPlan` prefix ``/api/`` covers every call, the login included.

Tests drive it through a Python API (not HTTP): seed users, booking modules and spaces, submit
bookings as an end user, approve, deny, cancel or move Events as an admin, queue and decide
change requests, move the clock, expire cookies (now, or after a number of requests), inject
faults (429 + Retry-After, 500, hung connections, slow replies; seeded, so deterministic) and
read request counters.

Choices where the reference is silent [INF]:

- an Event carries ``spaceIds`` (the spaces it occupies); a booking's form answers may carry
  them too (what the end user asked for) and the Event copies them on approval;
- unknown body fields and query parameters are refused (400); ``events`` (the announced
  multi-event form) is not accepted yet, as in the seeded version of the docs;
- ``lastUpdated`` moves forward by at least a second on every change of a Booking, so the
  optimistic check cannot miss two changes within one second; a stale check answers 409;
- cancelling a canceled Booking answers 200 and changes nothing; cancelling a pending or
  denied one is refused (end users withdraw pending requests through a change request);
- an admin may delete a Booking outright (test control only): it then leaves every listing.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Scope

from bridge.emulators.faults import (
    FaultInjector,
    FaultKind,
    FaultMiddleware,
    FaultPlan,
    RecordedRequest,
)
from bridge.emulators.officernd import ProviderClock
from bridge.emulators.server import RunningServer, serve_in_thread
from bridge.providers.prospero import BAD_REFRESH_TOKEN, ENDPOINTS, Operation, format_instant
from mappings.prospero import BookingState, EventProcedure

Record = dict[str, Any]

BASE_PATH = "/api"
ACCESS_COOKIE = "prospero_access"
REFRESH_COOKIE = "prospero_refresh"
GREETING = "Hello, Prospero!"

#: ``YYYY-MM-DDThh:mm:ssZ`` (fractions tolerated): the only datetime form Prospero takes.
UTC_FORM = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")

#: Fields of the form's event answers.
EVENT_FIELDS = frozenset({"title", "start", "end", "description", "spaceIds"})
#: Fields of the submit and create bodies (§3.2).
BOOKING_FIELDS = frozenset(
    {
        "submission",
        "bookingStatus",
        "eventId",
        "orgId",
        "bookingModuleId",
        "portalId",
        "customerId",
        "contactId",
        "contact",
        "event",
        "requestNote",
        "notification",
    }
)


@dataclass(frozen=True, slots=True)
class Behaviour:
    """Cookie lifetimes (documented: 1 h and 7 days); tests shorten them."""

    access_lifetime: timedelta = timedelta(hours=1)
    refresh_lifetime: timedelta = timedelta(days=7)


class ApiProblem(Exception):
    """An ``APIError {status, error}`` reply, with optional extra headers."""

    def __init__(self, status: int, error: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status, error)
        self.status = status
        self.error = error
        self.headers = dict(headers or {})

    def response(self) -> Response:
        """The reply to send."""
        body = {"status": self.status, "error": self.error}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


# ----- records ---------------------------------------------------------------------------------


@dataclass(slots=True)
class StoredEvent:
    """An Event of the organisation."""

    id: str
    title: str
    start: datetime
    end: datetime
    description: str = ""
    space_ids: tuple[str, ...] = ()
    canceled: bool = False
    last_updated: datetime = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(slots=True)
class StoredBooking:
    """A Booking: form answers, status and the Event approval created."""

    id: str
    module: str
    portal: str | None
    state: BookingState
    answers: Record
    contact: Record = field(default_factory=dict)
    submission: bool = True
    event_id: str | None = None
    customer_id: str | None = None
    contact_id: str | None = None
    request_note: str | None = None
    created: datetime = datetime(1970, 1, 1, tzinfo=UTC)
    last_updated: datetime = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(slots=True)
class StoredChangeRequest:
    """An end user's pending change to an approved Booking."""

    id: str
    booking_id: str
    cancellation: bool
    answers: Record
    contact: Record
    request_note: str | None
    created: datetime


@dataclass(frozen=True, slots=True)
class LiveBooking:
    """What the room calendar must show for one booking: its status and span (UTC)."""

    booking: str
    state: BookingState
    start: datetime
    end: datetime
    title: str


@dataclass(slots=True)
class Session:
    """Cookie tokens issued to users, with expiry, and the login/refresh counters."""

    users: dict[str, str] = field(default_factory=dict, repr=False)
    access: dict[str, tuple[str, datetime]] = field(default_factory=dict, repr=False)
    refresh: dict[str, tuple[str, datetime]] = field(default_factory=dict, repr=False)
    logins: int = 0
    refreshes: int = 0
    expire_after: int | None = None


# ----- validation --------------------------------------------------------------------------------


def parse_utc(value: object, name: str) -> datetime:
    """A Prospero datetime, or 400: only ``…Z`` strings are accepted."""
    if not isinstance(value, str) or not UTC_FORM.match(value):
        raise ApiProblem(400, f"{name} must be a UTC date-time (YYYY-MM-DDThh:mm:ssZ)")
    return datetime.fromisoformat(value).astimezone(UTC)


def _json_object(raw: bytes) -> Record:
    """A JSON object request body (an empty body is ``{}``), or 400."""
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ApiProblem(400, "The request body must be a JSON object")
    return body


def _only(body: Mapping[str, Any], allowed: Iterable[str], where: str = "body") -> None:
    """400 for a field outside ``allowed``."""
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise ApiProblem(400, f"Unknown field in {where}: {', '.join(unknown)}")


def _require(body: Mapping[str, Any], *names: str) -> None:
    """400 for a missing required field."""
    for name in names:
        if name not in body:
            raise ApiProblem(400, f"{name} is required")


def _object(body: Mapping[str, Any], name: str) -> Record:
    """An optional object field (``{}`` when absent), or 400."""
    value = body.get(name, {})
    if not isinstance(value, dict):
        raise ApiProblem(400, f"{name} must be an object")
    return value


def _optional_id(body: Mapping[str, Any], name: str) -> str | None:
    """An optional id field: a non-empty string, ``""`` (clears) or absent."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiProblem(400, f"{name} must be a string")
    return value


def checked_answers(answers: Mapping[str, Any], *, complete: bool) -> Record:
    """Event form answers, validated; ``complete`` requires title, start and end."""
    _only(answers, EVENT_FIELDS, "event")
    if complete:
        _require(answers, "title", "start", "end")
    checked: Record = {}
    for name in ("title", "description"):
        if name in answers:
            if not isinstance(answers[name], str):
                raise ApiProblem(400, f"event.{name} must be a string")
            checked[name] = answers[name]
    for name in ("start", "end"):
        if name in answers:
            checked[name] = format_instant(parse_utc(answers[name], f"event.{name}"))
    if "spaceIds" in answers:
        spaces = answers["spaceIds"]
        if not isinstance(spaces, list) or not all(isinstance(s, str) for s in spaces):
            raise ApiProblem(400, "event.spaceIds must be a list of ids")
        checked["spaceIds"] = list(spaces)
    return checked


def _span(answers: Mapping[str, Any]) -> tuple[datetime, datetime]:
    """The start and end of complete answers, end after start."""
    start = parse_utc(answers.get("start"), "event.start")
    end = parse_utc(answers.get("end"), "event.end")
    if end <= start:
        raise ApiProblem(400, "event.end must be after event.start")
    return start, end


# ----- the data --------------------------------------------------------------------------------


class ProsperoData:
    """The organisation's modules, spaces, bookings, events and change requests."""

    def __init__(self, clock: ProviderClock, org_name: str, timezone: str) -> None:
        self.clock = clock
        self.org = {"id": new_id(), "name": org_name, "timezone": timezone}
        self.modules: dict[str, Record] = {}
        self.spaces: dict[str, Record] = {}
        self.bookings: dict[str, StoredBooking] = {}
        self.events: dict[str, StoredEvent] = {}
        self.change_requests: dict[str, StoredChangeRequest] = {}

    def now(self) -> datetime:
        """The clock, to the second (Prospero's datetime form has no fractions)."""
        return self.clock.now().replace(microsecond=0)

    def booking_or_404(self, booking_id: str) -> StoredBooking:
        """A booking, or 404."""
        booking = self.bookings.get(booking_id)
        if booking is None:
            raise ApiProblem(404, f"Booking {booking_id} not found")
        return booking

    def touch(self, booking: StoredBooking) -> None:
        """Move ``lastUpdated`` forward by at least a second."""
        booking.last_updated = max(self.now(), booking.last_updated + timedelta(seconds=1))

    def new_booking(self, body: Mapping[str, Any], *, public: bool) -> StoredBooking:
        """A Booking from a validated submit or create body (not stored yet)."""
        _only(body, BOOKING_FIELDS)
        _require(body, "bookingModuleId", "event")
        module = body["bookingModuleId"]
        if module not in self.modules:
            raise ApiProblem(400, f"Unknown bookingModuleId {module}")
        org = body.get("orgId")
        if org is not None and org != self.org["id"]:
            raise ApiProblem(400, f"Unknown orgId {org}")
        answers = checked_answers(_object(body, "event"), complete=True)
        _span(answers)
        submission = public or body.get("submission") is True
        state = BookingState.PENDING if submission else _state(body.get("bookingStatus", 0))
        now = self.now()
        return StoredBooking(
            id=new_id(),
            module=module,
            portal=_optional_id(body, "portalId") or self.modules[module]["portalId"],
            state=state,
            answers=answers,
            contact=_object(body, "contact"),
            submission=submission,
            customer_id=_optional_id(body, "customerId") or None,
            contact_id=_optional_id(body, "contactId") or None,
            request_note=_optional_id(body, "requestNote"),
            created=now,
            last_updated=now,
        )

    def approve(self, booking: StoredBooking, overrides: Mapping[str, Any]) -> StoredEvent:
        """Approve a pending booking: its Event is made from its answers and ``overrides``."""
        if booking.state is not BookingState.PENDING:
            raise ApiProblem(400, "Only pending bookings can be approved")
        fields = {**booking.answers, **checked_answers(overrides, complete=False)}
        start, end = _span(fields)
        event = StoredEvent(
            new_id(),
            title=str(fields.get("title", "")),
            start=start,
            end=end,
            description=str(fields.get("description", "")),
            space_ids=tuple(fields.get("spaceIds", ())),
            last_updated=self.now(),
        )
        self.events[event.id] = event
        booking.state = BookingState.APPROVED
        booking.event_id = event.id
        self.touch(booking)
        return event

    def deny(self, booking: StoredBooking) -> None:
        """Deny a pending booking."""
        if booking.state is not BookingState.PENDING:
            raise ApiProblem(400, "Only pending bookings can be denied")
        booking.state = BookingState.DENIED
        self.touch(booking)

    def cancel(self, booking: StoredBooking, procedure: EventProcedure) -> StoredEvent | None:
        """Cancel an approved booking; its Event is marked cancelled or deleted."""
        if booking.state is BookingState.CANCELED:
            return self.events.get(booking.event_id or "")
        if booking.state is not BookingState.APPROVED:
            raise ApiProblem(400, "Only approved bookings can be canceled")
        booking.state = BookingState.CANCELED
        self.touch(booking)
        event = self.events.get(booking.event_id or "")
        if event is None:
            return None
        if procedure is EventProcedure.DELETE:
            del self.events[event.id]
            return None
        event.canceled = True
        event.last_updated = self.now()
        return event

    def change_directly(self, booking: StoredBooking, request: StoredChangeRequest) -> None:
        """Apply a change request to a pending booking at once."""
        if request.cancellation:
            booking.state = BookingState.CANCELED
        else:
            answers = {**booking.answers, **request.answers}
            _span(answers)
            booking.answers = answers
            booking.contact = {**booking.contact, **request.contact}
        self.touch(booking)

    def apply_change(
        self,
        request: StoredChangeRequest,
        overrides: Mapping[str, Any],
        procedure: EventProcedure | None,
    ) -> tuple[StoredBooking, StoredEvent | None]:
        """Approve a queued change request; it is deleted."""
        booking = self.booking_or_404(request.booking_id)
        if request.cancellation:
            if procedure is None:
                raise ApiProblem(400, "eventProcedure is required for a cancellation")
            event = self.cancel(booking, procedure)
        else:
            fields = checked_answers(overrides, complete=False)
            booking.answers = {**booking.answers, **request.answers}
            booking.contact = {**booking.contact, **request.contact}
            event = self.events.get(booking.event_id or "")
            if event is not None:
                self.move_event(event, {**request.answers, **fields})
            self.touch(booking)
        del self.change_requests[request.id]
        return booking, event

    def move_event(self, event: StoredEvent, fields: Mapping[str, Any]) -> None:
        """Change an Event's times, title, description or spaces."""
        current = {"start": format_instant(event.start), "end": format_instant(event.end)}
        start, end = _span({**current, **fields})
        event.start, event.end = start, end
        event.title = str(fields.get("title", event.title))
        event.description = str(fields.get("description", event.description))
        event.space_ids = tuple(fields.get("spaceIds", event.space_ids))
        event.last_updated = self.now()

    def render(self, booking: StoredBooking) -> Record:
        """A Booking as the API returns it."""
        return {
            "id": booking.id,
            "orgId": self.org["id"],
            "bookingModuleId": booking.module,
            "portalId": booking.portal,
            "customerId": booking.customer_id,
            "contactId": booking.contact_id,
            "eventId": booking.event_id,
            "bookingStatus": int(booking.state),
            "submission": booking.submission,
            "contact": dict(booking.contact),
            "event": dict(booking.answers),
            "requestNote": booking.request_note,
            "createdAt": format_instant(booking.created),
            "lastUpdated": format_instant(booking.last_updated),
        }

    def render_event(self, event: StoredEvent) -> Record:
        """An Event as the API returns it."""
        return {
            "id": event.id,
            "orgId": self.org["id"],
            "title": event.title,
            "start": format_instant(event.start),
            "end": format_instant(event.end),
            "description": event.description,
            "spaceIds": list(event.space_ids),
            "canceled": event.canceled,
            "lastUpdated": format_instant(event.last_updated),
        }

    def render_change_request(self, request: StoredChangeRequest) -> Record:
        """A BookingChangeRequest as the API returns it."""
        return {
            "id": request.id,
            "bookingId": request.booking_id,
            "cancellation": request.cancellation,
            "contact": dict(request.contact),
            "event": dict(request.answers),
            "requestNote": request.request_note,
            "createdAt": format_instant(request.created),
        }


def new_id() -> str:
    """A fresh version-1 UUID (Prospero's ids are version 1) with a random node."""
    return str(uuid.uuid1(node=secrets.randbits(48)))


def _state(value: object) -> BookingState:
    """``bookingStatus`` of an admin create, or 400."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return BookingState(value)
        except ValueError:
            pass
    raise ApiProblem(400, "bookingStatus must be 0, 1, 2 or 3")


def _procedure(value: object) -> EventProcedure:
    """``eventProcedure``, or 400."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return EventProcedure(value)
        except ValueError:
            pass
    raise ApiProblem(400, "eventProcedure must be 0 (CANCEL) or 1 (DELETE)")


# ----- HTTP ------------------------------------------------------------------------------------

Handler = Callable[[Request, bytes], Response]


def _throttled(plan: FaultPlan) -> Response:
    """A 429 in Prospero's APIError shape, with Retry-After."""
    return ApiProblem(429, "Too many requests", {"Retry-After": str(plan.retry_after)}).response()


def _server_failed() -> Response:
    """A 500 in Prospero's APIError shape."""
    return ApiProblem(500, "Internal server error").response()


class ProsperoEmulator:
    """The emulator: a Starlette app over :class:`ProsperoData`, plus the test controls."""

    def __init__(
        self,
        *,
        now: datetime | None = None,
        clock: Callable[[], datetime] | None = None,
        org_name: str = "Prospero Playhouse",
        timezone: str = "Europe/London",
        behaviour: Behaviour | None = None,
    ) -> None:
        self.clock = ProviderClock(now, source=clock)
        self.behaviour = behaviour or Behaviour()
        self.data = ProsperoData(self.clock, org_name, timezone)
        self.session = Session()
        self.faults = FaultInjector()
        self.requests: list[RecordedRequest] = []
        self._lock = threading.RLock()
        self._handlers: dict[Operation, Handler] = {
            Operation.LOGIN: self._login,
            Operation.REFRESH: self._refresh,
            Operation.SUBMIT_BOOKING: self._submit,
            Operation.LIST_BOOKINGS: self._list,
            Operation.CREATE_BOOKING: self._create,
            Operation.UPDATE_BOOKING: self._update,
            Operation.APPROVE_BOOKING: self._approve,
            Operation.DENY_BOOKING: self._deny,
            Operation.CANCEL_BOOKING: self._cancel,
            Operation.SUBMIT_CHANGE_REQUEST: self._submit_change,
            Operation.APPROVE_CHANGE_REQUEST: self._approve_change,
            Operation.DENY_CHANGE_REQUEST: self._deny_change,
            Operation.GET_ORGANIZATION: self._organization,
        }
        self._routes = self._build_routes()
        self.app: ASGIApp = FaultMiddleware(
            Starlette(routes=self._routes), self, throttle=_throttled, server_error=_server_failed
        )

    def __repr__(self) -> str:
        return (
            f"ProsperoEmulator(bookings={len(self.data.bookings)}, events={len(self.data.events)})"
        )

    @staticmethod
    def api_url(server: RunningServer) -> str:
        """The ``base_url`` a client of the served emulator is configured with."""
        return server.base_url + BASE_PATH

    # ----- test controls: accounts, places, clock, faults ----------------------------------

    def add_user(self, email: str, password: str) -> None:
        """An admin user who can log in."""
        with self._lock:
            self.session.users[email] = password

    def add_module(self, name: str) -> str:
        """A BookingModule (with its booking Portal); returns its id."""
        with self._lock:
            module = {"id": new_id(), "name": name, "portalId": new_id()}
            self.data.modules[module["id"]] = module
            return str(module["id"])

    def add_space(self, name: str) -> str:
        """A space (room) of the venue; returns its id."""
        with self._lock:
            space = {"id": new_id(), "name": name}
            self.data.spaces[space["id"]] = space
            return str(space["id"])

    @property
    def org_id(self) -> str:
        """The organisation's id."""
        return str(self.data.org["id"])

    def set_behaviour(self, **changes: Any) -> None:
        """Change some :class:`Behaviour` choices from now on."""
        with self._lock:
            self.behaviour = replace(self.behaviour, **changes)

    def set_clock(self, instant: datetime) -> None:
        """Move the emulator's clock to ``instant``."""
        self.clock.set(instant)

    def advance_clock(self, delta: timedelta) -> None:
        """Move the emulator's clock forward."""
        self.clock.advance(delta)

    def expire_access(self) -> None:
        """Invalidate every access cookie now (refresh cookies stay valid)."""
        with self._lock:
            self.session.access.clear()

    def expire_access_after(self, requests: int) -> None:
        """Invalidate every access cookie once ``requests`` more authenticated calls are served."""
        with self._lock:
            self.session.expire_after = requests

    def expire_refresh(self) -> None:
        """Invalidate every refresh cookie now."""
        with self._lock:
            self.session.refresh.clear()

    def set_faults(self, plan: FaultPlan) -> None:
        """Inject random faults from now on (``FaultPlan()`` switches them off)."""
        self.faults.configure(plan)

    def fail_next(self, *kinds: FaultKind, retry_after: int | None = None) -> None:
        """Make the next API requests fail with exactly these faults, in order."""
        if retry_after is not None:
            self.faults.configure(replace(self.faults.plan, retry_after=retry_after))
        self.faults.queue(kinds)

    def clear_faults(self) -> None:
        """No more injected faults."""
        self.faults.clear()

    def request_counts(self) -> Counter[str]:
        """Requests seen per ``"METHOD /route/{param}"``, faulted ones included."""
        with self._lock:
            return Counter(f"{r.method} {r.route}" for r in self.requests)

    @property
    def logins(self) -> int:
        """Successful logins so far."""
        return self.session.logins

    @property
    def refreshes(self) -> int:
        """Successful cookie refreshes so far."""
        return self.session.refreshes

    def record(self, scope: Scope, fault: FaultKind | None, status: int | None) -> None:
        """Remember one answered request (called by the middleware)."""
        query = tuple(parse_qsl(scope.get("query_string", b"").decode(), keep_blank_values=True))
        entry = RecordedRequest(
            scope["method"], self._route_of(scope), scope["path"], query, fault, status
        )
        with self._lock:
            self.requests.append(entry)

    def _route_of(self, scope: Scope) -> str:
        """The route template a request fully matches, else its raw path."""
        for route in self._routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return route.path_format
        return str(scope["path"])

    @contextmanager
    def serve(self) -> Iterator[RunningServer]:
        """Serve the emulator on a free loopback port for the ``with`` block."""
        with serve_in_thread(self.app) as server:
            yield server

    # ----- test controls: the booking lifecycle ---------------------------------------------

    def submit(
        self,
        module: str,
        start: datetime,
        end: datetime,
        *,
        title: str = "",
        spaces: Iterable[str] = (),
        description: str = "",
        contact: Mapping[str, str] | None = None,
    ) -> str:
        """Submit a booking request as an end user would (PENDING); returns its id."""
        answers: Record = {
            "title": title,
            "start": format_instant(start),
            "end": format_instant(end),
            "spaceIds": list(spaces),
        }
        if description:
            answers["description"] = description
        body = {"bookingModuleId": module, "event": answers, "contact": dict(contact or {})}
        with self._lock:
            booking = self.data.new_booking(body, public=True)
            self.data.bookings[booking.id] = booking
            return booking.id

    def approve(self, booking_id: str, **overrides: Any) -> str:
        """Approve a pending booking as an admin; ``overrides``: Event fields. Its Event id."""
        with self._lock:
            booking = self.data.booking_or_404(booking_id)
            return self.data.approve(booking, _answers(overrides)).id

    def deny(self, booking_id: str) -> None:
        """Deny a pending booking as an admin."""
        with self._lock:
            self.data.deny(self.data.booking_or_404(booking_id))

    def cancel(self, booking_id: str, procedure: EventProcedure = EventProcedure.CANCEL) -> None:
        """Cancel an approved booking as an admin."""
        with self._lock:
            self.data.cancel(self.data.booking_or_404(booking_id), procedure)

    def move_event(self, booking_id: str, **fields: Any) -> None:
        """Change the Event of an approved booking (times, title, spaces) as an admin."""
        with self._lock:
            booking = self.data.booking_or_404(booking_id)
            event = self.data.events.get(booking.event_id or "")
            if event is None:
                raise ValueError(f"booking {booking_id} has no Event")
            self.data.move_event(event, checked_answers(_answers(fields), complete=False))

    def request_change(
        self, booking_id: str, *, cancellation: bool = False, **fields: Any
    ) -> str | None:
        """An end user's change request; its id when queued, ``None`` when applied at once.

        A pending booking is changed directly; an approved one's request waits for an admin.
        """
        with self._lock:
            return self._change_request(
                {"bookingId": booking_id, "cancellation": cancellation, "event": _answers(fields)}
            )[0]

    def approve_change(
        self, change_request_id: str, procedure: EventProcedure | None = None
    ) -> None:
        """Approve a queued change request as an admin."""
        with self._lock:
            request = self._change_request_or_404(change_request_id)
            self.data.apply_change(request, {}, procedure)

    def deny_change(self, change_request_id: str) -> None:
        """Deny a queued change request as an admin (it is deleted)."""
        with self._lock:
            del self.data.change_requests[self._change_request_or_404(change_request_id).id]

    def delete_booking(self, booking_id: str) -> None:
        """Remove a booking and its Event outright (an admin purge): it leaves every listing."""
        with self._lock:
            booking = self.data.bookings.pop(booking_id)
            self.data.events.pop(booking.event_id or "", None)
            # Its queued change requests go with it: nothing is left to change.
            for request_id in [
                r.id for r in self.data.change_requests.values() if r.booking_id == booking_id
            ]:
                del self.data.change_requests[request_id]

    # ----- test controls: reading the truth ------------------------------------------------

    def booking(self, booking_id: str) -> Record:
        """One booking as the API renders it."""
        with self._lock:
            return self.data.render(self.data.booking_or_404(booking_id))

    def bookings(self) -> list[Record]:
        """Every booking as the API renders it, oldest first."""
        with self._lock:
            ordered = sorted(self.data.bookings.values(), key=lambda b: (b.created, b.id))
            return [self.data.render(booking) for booking in ordered]

    def event_of(self, booking_id: str) -> Record | None:
        """The Event of a booking, if it has one."""
        with self._lock:
            event = self.data.events.get(self.data.booking_or_404(booking_id).event_id or "")
            return None if event is None else self.data.render_event(event)

    def change_requests(self) -> list[Record]:
        """The queued change requests."""
        with self._lock:
            return [self.data.render_change_request(r) for r in self.data.change_requests.values()]

    def live_bookings(self, module: str, space: str | None = None) -> list[LiveBooking]:
        """Pending and approved bookings of a module (in ``space``, when given) and their spans.

        Pending: the requested times; approved: the Event's. What a room calendar must show.
        """
        with self._lock:
            live = []
            for booking in self.data.bookings.values():
                if booking.module != module or booking.state not in (
                    BookingState.PENDING,
                    BookingState.APPROVED,
                ):
                    continue
                event = self.data.events.get(booking.event_id or "")
                if event is not None:
                    spaces, start, end, title = event.space_ids, event.start, event.end, event.title
                else:
                    start, end = _span(booking.answers)
                    spaces = tuple(booking.answers.get("spaceIds", ()))
                    title = str(booking.answers.get("title", ""))
                if space is None or space in spaces:
                    live.append(LiveBooking(booking.id, booking.state, start, end, title))
            return live

    # ----- HTTP handlers -------------------------------------------------------------------

    def _build_routes(self) -> list[Route]:
        """The root greeting, and one route per row of the shared endpoint table."""
        routes = [Route(BASE_PATH, self._greeting, methods=["GET"])]
        for operation, endpoint in ENDPOINTS.items():
            routes.append(
                Route(
                    BASE_PATH + endpoint.path,
                    self._endpoint(operation),
                    methods=[endpoint.method],
                    name=operation.name,
                )
            )
        return routes

    @staticmethod
    async def _greeting(_request: Request) -> Response:
        """``GET /``: the API root's greeting."""
        return PlainTextResponse(GREETING)

    def _endpoint(self, operation: Operation) -> Callable[[Request], Awaitable[Response]]:
        """The Starlette endpoint of one operation: read, lock, authorise, answer."""
        handler = self._handlers[operation]
        authenticated = ENDPOINTS[operation].authenticated

        async def serve(request: Request) -> Response:
            raw = await request.body()
            with self._lock:
                try:
                    if authenticated:
                        self._authorise(request)
                    return handler(request, raw)
                except ApiProblem as problem:
                    return problem.response()

        return serve

    def _authorise(self, request: Request) -> str:
        """The user whose access cookie came with the request, or 401."""
        session = self.session
        if session.expire_after is not None:
            if session.expire_after <= 0:
                session.access.clear()
                session.expire_after = None
            else:
                session.expire_after -= 1
        grant = session.access.get(request.cookies.get(ACCESS_COOKIE, ""))
        if grant is None or grant[1] <= self.data.now():
            raise ApiProblem(401, "Unauthorized")
        return grant[0]

    def _login(self, request: Request, raw: bytes) -> Response:
        """``POST /auth/login`` with ``{email, password}``: sets both cookies."""
        self._no_query(request)
        body = _json_object(raw)
        _only(body, ("email", "password"))
        email, password = body.get("email"), body.get("password")
        known = self.session.users.get(email) if isinstance(email, str) else None
        if (
            known is None
            or not isinstance(password, str)
            or not secrets.compare_digest(known.encode(), password.encode())
        ):
            raise ApiProblem(401, "Invalid email or password")
        assert isinstance(email, str)
        self.session.logins += 1
        response = JSONResponse({"user": {"email": email}})
        self._issue(response, email, refresh=True)
        return response

    def _refresh(self, request: Request, _raw: bytes) -> Response:
        """``GET /auth/refresh`` with the refresh cookie: a new access cookie."""
        self._no_query(request)
        grant = self.session.refresh.get(request.cookies.get(REFRESH_COOKIE, ""))
        if grant is None or grant[1] <= self.data.now():
            raise ApiProblem(400, BAD_REFRESH_TOKEN)
        self.session.refreshes += 1
        response = JSONResponse({"user": {"email": grant[0]}})
        self._issue(response, grant[0], refresh=False)
        return response

    def _issue(self, response: Response, email: str, *, refresh: bool) -> None:
        """Set a fresh access cookie (and refresh cookie) on ``response``."""
        now = self.data.now()
        lifetimes = [(ACCESS_COOKIE, self.session.access, self.behaviour.access_lifetime)]
        if refresh:
            lifetimes.append(
                (REFRESH_COOKIE, self.session.refresh, self.behaviour.refresh_lifetime)
            )
        for name, table, lifetime in lifetimes:
            token = secrets.token_urlsafe(32)
            table[token] = (email, now + lifetime)
            response.set_cookie(
                name, token, max_age=int(lifetime.total_seconds()), httponly=True, samesite="lax"
            )

    def _submit(self, request: Request, raw: bytes) -> Response:
        """``POST /bookings/submit`` (public): a PENDING booking, ``{booking}``."""
        self._no_query(request)
        booking = self.data.new_booking(_json_object(raw), public=True)
        self.data.bookings[booking.id] = booking
        return JSONResponse({"booking": self.data.render(booking)})

    def _list(self, request: Request, _raw: bytes) -> Response:
        """``GET /bookings?returnEvents=``: the map of every booking, and their Events."""
        query = dict(request.query_params)
        _only(query, ("returnEvents",), "query")
        flag = query.get("returnEvents", "false")
        if flag not in ("true", "false"):
            raise ApiProblem(400, "returnEvents must be true or false")
        bookings = {b.id: self.data.render(b) for b in self.data.bookings.values()}
        reply: Record = {"bookings": bookings}
        if flag == "true":
            linked = (self.data.events.get(b.event_id or "") for b in self.data.bookings.values())
            reply["associatedEvents"] = [self.data.render_event(e) for e in linked if e]
        return JSONResponse(reply)

    def _create(self, request: Request, raw: bytes) -> Response:
        """``POST /bookings`` (admin): pending, or approved with a new or existing Event."""
        self._no_query(request)
        body = _json_object(raw)
        booking = self.data.new_booking(body, public=False)
        event: StoredEvent | None = None
        linked = _optional_id(body, "eventId")
        if booking.state is BookingState.APPROVED:
            if linked:
                event = self.data.events.get(linked)
                if event is None:
                    raise ApiProblem(400, f"Unknown eventId {linked}")
                booking.event_id = event.id
            else:
                booking.state = BookingState.PENDING
                event = self.data.approve(booking, {})
        self.data.bookings[booking.id] = booking
        reply: Record = {"booking": self.data.render(booking)}
        if event is not None:
            reply["event"] = self.data.render_event(event)
        return JSONResponse(reply)

    def _update(self, request: Request, raw: bytes) -> Response:
        """``PATCH /bookings/{id}``: only the customer and contact can change."""
        self._no_query(request)
        booking = self.data.booking_or_404(request.path_params["booking_id"])
        body = _json_object(raw)
        if set(body) - {"customerId", "contactId"}:
            raise ApiProblem(400, "Only customerId and contactId can be changed")
        if "customerId" in body:
            booking.customer_id = _optional_id(body, "customerId") or None
        if "contactId" in body:
            booking.contact_id = _optional_id(body, "contactId") or None
        self.data.touch(booking)
        return JSONResponse({"booking": self.data.render(booking)})

    def _checked_freshness(self, booking: StoredBooking, body: Mapping[str, Any]) -> None:
        """The ``clientBookingLastUpdatedAt`` check: 409 when the booking changed since."""
        seen = parse_utc(body.get("clientBookingLastUpdatedAt"), "clientBookingLastUpdatedAt")
        if seen != booking.last_updated:
            raise ApiProblem(
                409,
                "The Booking was updated since "
                f"{format_instant(seen)}; it was last updated at "
                f"{format_instant(booking.last_updated)}",
            )

    def _approve(self, request: Request, raw: bytes) -> Response:
        """``POST /bookings/{id}/approve``: ``{booking, event}``."""
        self._no_query(request)
        body = _json_object(raw)
        _only(
            body,
            ("clientBookingLastUpdatedAt", "event", "notification", "customerId", "contactId"),
        )
        _require(body, "clientBookingLastUpdatedAt", "event", "notification")
        booking = self.data.booking_or_404(request.path_params["booking_id"])
        self._checked_freshness(booking, body)
        event = self.data.approve(booking, _object(body, "event"))
        for name, attribute in (("customerId", "customer_id"), ("contactId", "contact_id")):
            if name in body:
                setattr(booking, attribute, _optional_id(body, name) or None)
        reply = {"booking": self.data.render(booking), "event": self.data.render_event(event)}
        return JSONResponse(reply)

    def _deny(self, request: Request, raw: bytes) -> Response:
        """``POST /bookings/{id}/deny``: ``{booking}``."""
        self._no_query(request)
        body = _json_object(raw)
        _only(body, ("clientBookingLastUpdatedAt", "notification"))
        _require(body, "clientBookingLastUpdatedAt", "notification")
        booking = self.data.booking_or_404(request.path_params["booking_id"])
        self._checked_freshness(booking, body)
        self.data.deny(booking)
        return JSONResponse({"booking": self.data.render(booking)})

    def _cancel(self, request: Request, raw: bytes) -> Response:
        """``POST /bookings/{id}/cancel`` with ``eventProcedure``: ``{booking, event?}``."""
        self._no_query(request)
        body = _json_object(raw)
        _only(body, ("eventProcedure", "notification"))
        _require(body, "eventProcedure", "notification")
        booking = self.data.booking_or_404(request.path_params["booking_id"])
        event = self.data.cancel(booking, _procedure(body["eventProcedure"]))
        reply: Record = {"booking": self.data.render(booking)}
        if event is not None:
            reply["event"] = self.data.render_event(event)
        return JSONResponse(reply)

    def _submit_change(self, request: Request, raw: bytes) -> Response:
        """``POST /booking-change-requests/submit`` (public)."""
        self._no_query(request)
        body = _json_object(raw)
        _only(body, ("bookingId", "cancellation", "contact", "event", "requestNote"))
        _require(body, "bookingId", "cancellation", "contact", "event")
        request_id, booking = self._change_request(body)
        if request_id is None:
            return JSONResponse({"booking": self.data.render(booking)})
        queued = self.data.change_requests[request_id]
        return JSONResponse({"changeRequest": self.data.render_change_request(queued)})

    def _change_request(self, body: Mapping[str, Any]) -> tuple[str | None, StoredBooking]:
        """Apply (pending booking) or queue (approved) a change request body."""
        if not isinstance(body.get("cancellation"), bool):
            raise ApiProblem(400, "cancellation must be a boolean")
        booking = self.data.booking_or_404(str(body.get("bookingId")))
        request = StoredChangeRequest(
            new_id(),
            booking.id,
            body["cancellation"],
            checked_answers(_object(body, "event"), complete=False),
            _object(body, "contact"),
            _optional_id(body, "requestNote"),
            self.data.now(),
        )
        if booking.state is BookingState.PENDING:
            self.data.change_directly(booking, request)
            return None, booking
        if booking.state is not BookingState.APPROVED:
            raise ApiProblem(400, "Only pending or approved bookings can be changed")
        self.data.change_requests[request.id] = request
        return request.id, booking

    def _change_request_or_404(self, change_request_id: str) -> StoredChangeRequest:
        """A queued change request, or 404."""
        request = self.data.change_requests.get(change_request_id)
        if request is None:
            raise ApiProblem(404, f"BookingChangeRequest {change_request_id} not found")
        return request

    def _approve_change(self, request: Request, raw: bytes) -> Response:
        """``POST /booking-change-requests/{id}/approve``: ``{booking, event?}``."""
        self._no_query(request)
        body = _json_object(raw)
        _only(body, ("event", "notification", "eventProcedure"))
        _require(body, "event", "notification")
        queued = self._change_request_or_404(request.path_params["change_request_id"])
        procedure = None if "eventProcedure" not in body else _procedure(body["eventProcedure"])
        booking, event = self.data.apply_change(queued, _object(body, "event"), procedure)
        reply: Record = {"booking": self.data.render(booking)}
        if event is not None and not queued.cancellation:
            reply["event"] = self.data.render_event(event)
        return JSONResponse(reply)

    def _deny_change(self, request: Request, _raw: bytes) -> Response:
        """``POST /booking-change-requests/{id}/deny``: 204, the request is deleted."""
        self._no_query(request)
        queued = self._change_request_or_404(request.path_params["change_request_id"])
        del self.data.change_requests[queued.id]
        return Response(status_code=204)

    def _organization(self, request: Request, _raw: bytes) -> Response:
        """``GET /organization``: ``{organization: {id, name, timezone}}``."""
        self._no_query(request)
        return JSONResponse({"organization": dict(self.data.org)})

    @staticmethod
    def _no_query(request: Request) -> None:
        """400 for query parameters on an operation that takes none."""
        if request.query_params:
            raise ApiProblem(400, f"Unknown query parameter: {next(iter(request.query_params))}")


def _answers(fields: Mapping[str, Any]) -> Record:
    """Event answers from test-control keywords (``start``/``end`` datetimes, ``spaces``)."""
    answers: Record = {}
    for name, value in fields.items():
        if name in ("start", "end"):
            answers[name] = format_instant(value)
        elif name == "spaces":
            answers["spaceIds"] = list(value)
        else:
            answers[name] = value
    return answers
