"""A strict, in-memory emulator of the Nexudus members-portal API (the parts the bridge uses).

One emulator is one space (``https://{space}.spaces.nexudus.com``) in one IANA zone, with
members, resources, bookings and community events. It answers like the portal (seed
``nexudus-portal-bookings-api.md``, providers.md §2.7 and §2.11):

- every route sits under ``/{language}/bookings/`` and needs HTTP Basic auth with a member's
  email and password (401 otherwise; a changed password is refused at once);
- ``fullCalendarBookings`` / ``fullCalendarEvents`` need ``start`` and ``end`` (a missing one
  is an HTTP 500, as observed on live portals) and return only the items lying wholly inside
  [start, end] in local wall-clock time; items write LOCAL times with a ``Z`` and
  ``ignoreTimezone: true``, to the minute;
- ``search`` answers per resource with ``IsAvailable`` and an ``ErrorCode``;
- ``newBookingJson`` books as the logged-in member, refusing with the documented error codes;
  ``deleteJson/{id}`` (a GET) deletes one of the member's own bookings; both answer HTTP 200
  with the ``{"Status", "Message", "Value", …, "WasSuccessful"}`` envelope;
- ``GET /{language}/bookings/{id}`` gives the get-one envelope, UTC times with ``Z``.

Where the documentation is silent the emulator picks one reading and says so here:

- range values are local dates (``YYYY-MM-DD``) or local date-times (a ``Z`` is ignored);
  an end date with no time means the end of that day;
- list items also carry ``tentative``, ``invoiced`` and ``resourceTypeName`` (fields a live
  capture shows, [COMM]); events with ``resourceId: 0`` occupy no room;
- a refused write names its error code in a top-level ``ErrorCode`` of the envelope, and the
  create envelope's ``Value`` is ``{"Id": <new id>}``;
- members can read and delete only their own bookings (another's is a 404).

Tests drive it through a Python API: seed members, resources, bookings and events, edit or
delete as an admin would, change a member's password, inject faults (reusing the admin
emulator's :class:`FaultPlan`; use :data:`FAULT_PREFIX` as its ``path_prefix``) and read the
request log (which holds no headers or bodies: they carry the password).
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
import re
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

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
from bridge.emulators.nexudus import SERVER_ERROR, THROTTLE_TEXT, EmulatorClock
from bridge.emulators.server import RunningServer, serve_in_thread

Record = dict[str, Any]

LANGUAGE = "en"
#: The ``path_prefix`` a :class:`FaultPlan` needs to hit portal routes.
FAULT_PREFIX = f"/{LANGUAGE}/"

DENIED = {"Message": "Authorization has been denied for this request."}
NOT_FOUND = {"Message": "Not found"}
#: Amenity flags of a resource, which ``search`` filters on.
AMENITIES = (
    "Projector",
    "Internet",
    "ConferencePhone",
    "StandardPhone",
    "WhiteBoard",
    "LargeDisplay",
    "Catering",
    "TeaAndCoffee",
    "Drinks",
    "SecurityLock",
    "CCTV",
    "VoiceRecorder",
    "AirConditioning",
    "Heating",
    "NaturalLight",
)
#: The messages the portal shows with each error code.
ERROR_MESSAGES = {
    "NO_RESOURCE": "This resource does not exist.",
    "INVALID_INTERVAL": "The end of the booking must be after its start.",
    "NO_PAST_BOOKINGS": "Bookings cannot be made in the past.",
    "BOOKING_CONFLICT": "This resource is already booked. Please choose a different start "
    "and end times.",
    "EVENT_CONFLICT": "There is an event in this resource at the selected time.",
}
_LOCAL_MOMENT = re.compile(r"\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2})?(\.\d+)?)?Z?")


class PortalProblem(Exception):
    """A request the portal refuses: an HTTP status and a JSON body."""

    def __init__(self, status: int, body: object) -> None:
        super().__init__(status)
        self.status = status
        self.body = body

    def response(self) -> Response:
        """The HTTP reply."""
        return JSONResponse(self.body, status_code=self.status)


class Refusal(Exception):
    """A write the portal declines with an error code (HTTP 200, ``WasSuccessful: false``)."""

    def __init__(self, code: str, message: str | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.message = message or ERROR_MESSAGES.get(code, code)


def envelope(message: str, value: object, *, ok: bool = True, code: str | None = None) -> Record:
    """The portal's write reply envelope."""
    reply: Record = {
        "Status": 200 if ok else 500,
        "Message": message,
        "Value": value,
        "OpenInDialog": False,
        "OpenInWindow": False,
        "RedirectURL": None,
        "JavaScript": None,
        "UpdatedOn": None,
        "UpdatedBy": None,
        "Errors": None,
        "WasSuccessful": ok,
    }
    if code is not None:
        reply["ErrorCode"] = code
    return reply


@dataclass(slots=True)
class Member:
    """A member (coworker) who can log in to the portal."""

    coworker_id: int
    email: str
    password: str = field(repr=False)
    full_name: str
    company: str | None = None


@dataclass(slots=True)
class PortalBooking:
    """One stored booking; times are aware UTC instants."""

    id: int
    resource_id: int
    start: datetime
    end: datetime
    coworker_id: int
    notes: str | None = None
    tentative: bool = False
    private: bool = False
    invoiced: bool = False
    unique_id: str = ""
    created: datetime | None = None
    updated: datetime | None = None


@dataclass(slots=True)
class PortalEvent:
    """One community event; ``resource_id`` 0 means it occupies no room."""

    id: int
    title: str
    start: datetime
    end: datetime
    resource_id: int = 0
    all_day: bool = False
    venue_address: str | None = None


def local_text(instant: datetime, zone: ZoneInfo) -> str:
    """An instant as a list item writes it: local wall clock, minutes, a literal ``Z``."""
    return instant.astimezone(zone).strftime("%Y-%m-%dT%H:%MZ")


def utc_text(instant: datetime) -> str:
    """An instant as a UTC ``Z`` string with seconds (the get-one shape)."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_local(text: str, zone: ZoneInfo, *, end_of_day: bool = False) -> datetime:
    """A local date or wall-clock date-time (any ``Z`` ignored) as an aware UTC instant."""
    if not _LOCAL_MOMENT.fullmatch(text):
        raise ValueError(f"not a date or date-time: {text!r}")
    wall = datetime.fromisoformat(text.rstrip("Z"))
    if len(text.rstrip("Z")) == 10 and end_of_day:
        wall = datetime.combine(wall.date() + timedelta(days=1), time())
    return wall.replace(tzinfo=zone).astimezone(UTC)


def _slug(title: str) -> str:
    """An event title as its URL slug."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


class PortalData:
    """Members, resources, bookings and events of one space, with the portal's rules."""

    def __init__(self, clock: EmulatorClock, zone: ZoneInfo, business: str, seed: int) -> None:
        self.clock = clock
        self.zone = zone
        self.business = business
        self._seed = seed
        self.members: dict[str, Member] = {}
        self.resources: dict[int, Record] = {}
        self.bookings: dict[int, PortalBooking] = {}
        self.events: dict[int, PortalEvent] = {}
        self._ids = itertools.count(1_040_000_001)
        self._guids = itertools.count(1)

    def next_id(self) -> int:
        """A fresh integer Id."""
        return next(self._ids)

    def new_guid(self) -> str:
        """A fresh GUID, reproducible for a given seed."""
        return str(uuid.UUID(int=self._seed << 64 | next(self._guids), version=4))

    def member_by_id(self, coworker_id: int) -> Member | None:
        """The member with a coworker Id."""
        return next((m for m in self.members.values() if m.coworker_id == coworker_id), None)

    # -- rendering

    def booking_item(self, booking: PortalBooking) -> Record:
        """A ``fullCalendarBookings`` item."""
        resource = self.resources[booking.resource_id]
        member = self.member_by_id(booking.coworker_id)
        return {
            "id": booking.id,
            "resourceId": booking.resource_id,
            "resourceName": resource["Name"],
            "resourceTypeName": resource["ResourceTypeName"],
            "title": resource["Name"],
            "start": local_text(booking.start, self.zone),
            "end": local_text(booking.end, self.zone),
            "allDay": False,
            "notes": booking.notes,
            "editable": False,
            "teamBooking": False,
            "groupName": resource["GroupName"],
            "coworkerId": str(booking.coworker_id),
            "coworkerEmail": member.email if member else None,
            "coworkerFullName": member.full_name if member else None,
            "coworkerCompanyName": member.company if member else None,
            "private": booking.private,
            "event": False,
            "tentative": booking.tentative,
            "invoiced": booking.invoiced,
            "ignoreTimezone": True,
        }

    def event_item(self, event: PortalEvent) -> Record:
        """A ``fullCalendarEvents`` item."""
        resource = self.resources.get(event.resource_id)
        return {
            "id": event.id,
            "resourceId": event.resource_id,
            "resourceName": resource["Name"] if resource else "",
            "title": event.title,
            "businessName": self.business,
            "location": None,
            "venueAddress": event.venue_address,
            "ticketsPage": None,
            "webAddress": None,
            "start": local_text(event.start, self.zone),
            "end": local_text(event.end, self.zone),
            "allDay": event.all_day,
            "editable": False,
            "ignoreTimezone": True,
            "event": True,
            "url": f"/{LANGUAGE}/Events/View/{event.id}/{_slug(event.title)}",
        }

    def get_one(self, booking: PortalBooking) -> Record:
        """The get-one envelope of a booking."""
        resource = self.resources[booking.resource_id]
        member = self.member_by_id(booking.coworker_id)
        value = {
            "Id": booking.id,
            "UniqueId": booking.unique_id,
            "ResourceId": booking.resource_id,
            "ResourceName": resource["Name"],
            "ResourceHideInCalendar": False,
            "CoworkerId": booking.coworker_id,
            "CoworkerFullName": member.full_name if member else None,
            "FromTime": utc_text(booking.start),
            "ToTime": utc_text(booking.end),
            "Notes": booking.notes,
            "Tentative": booking.tentative,
            "Online": True,
            "RepeatSeriesUniqueId": None,
            "RepeatBooking": False,
            "Repeats": 0,
            "WhichBookingsToUpdate": 0,
            "Invoiced": booking.invoiced,
            "IsEvent": False,
            "CreatedOn": utc_text(booking.created or booking.start),
            "UpdatedOn": utc_text(booking.updated or booking.start),
        }
        return {"Value": value, "Resource": dict(resource)}

    # -- reads

    def bookings_within(self, start: datetime, end: datetime) -> list[PortalBooking]:
        """Bookings lying wholly inside [start, end], by start."""
        inside = [b for b in self.bookings.values() if b.start >= start and b.end <= end]
        return sorted(inside, key=lambda b: (b.start, b.id))

    def events_within(self, start: datetime, end: datetime) -> list[PortalEvent]:
        """Events lying wholly inside [start, end], by start."""
        inside = [e for e in self.events.values() if e.start >= start and e.end <= end]
        return sorted(inside, key=lambda e: (e.start, e.id))

    def conflict(
        self, resource_id: int, start: datetime, end: datetime, *, ignore: int | None = None
    ) -> str | None:
        """The error code of what stops the resource being booked for [start, end)."""
        if resource_id not in self.resources:
            return "NO_RESOURCE"
        if end <= start:
            return "INVALID_INTERVAL"
        if start < self.clock.now():
            return "NO_PAST_BOOKINGS"
        for booking in self.bookings.values():
            taken = booking.start < end and booking.end > start
            if booking.resource_id == resource_id and booking.id != ignore and taken:
                return "BOOKING_CONFLICT"
        for event in self.events.values():
            if event.resource_id == resource_id and event.start < end and event.end > start:
                return "EVENT_CONFLICT"
        return None

    # -- writes

    def create(self, body: Mapping[str, Any], member: Member) -> int:
        """``newBookingJson``: one booking for the logged-in member."""
        booking = body.get("Booking")
        if not isinstance(booking, Mapping):
            raise PortalProblem(400, {"Message": "The request is invalid."})
        resource = booking.get("Resource")
        resource_id = resource.get("Id") if isinstance(resource, Mapping) else None
        if not isinstance(resource_id, int) or isinstance(resource_id, bool):
            raise Refusal("NO_RESOURCE")
        try:
            start = parse_local(str(booking.get("FromTime")), self.zone)
            end = parse_local(str(booking.get("ToTime")), self.zone)
        except ValueError:
            raise Refusal("INVALID_INTERVAL", "FromTime and ToTime must be dates.") from None
        code = self.conflict(resource_id, start, end)
        if code is not None:
            raise Refusal(code)
        notes = booking.get("Notes")
        return self.insert(
            resource_id,
            start,
            end,
            member.coworker_id,
            notes=notes if isinstance(notes, str) else None,
            tentative=booking.get("Tentative") is True,
        )

    def insert(
        self,
        resource_id: int,
        start: datetime,
        end: datetime,
        coworker_id: int,
        **fields: Any,
    ) -> int:
        """Store one booking (no checks: callers make them)."""
        for instant in (start, end):
            if instant.tzinfo is None or instant.second or instant.microsecond:
                raise ValueError("portal booking times are aware and whole minutes")
        now = self.clock.now()
        booking_id = self.next_id()
        self.bookings[booking_id] = PortalBooking(
            booking_id,
            resource_id,
            start.astimezone(UTC),
            end.astimezone(UTC),
            coworker_id,
            unique_id=self.new_guid(),
            created=now,
            updated=now,
            **fields,
        )
        return booking_id

    def delete(self, booking_id: int, member: Member) -> None:
        """``deleteJson``: remove one of the member's own bookings."""
        booking = self.bookings.get(booking_id)
        if booking is None or booking.coworker_id != member.coworker_id:
            raise PortalProblem(404, NOT_FOUND)
        if booking.invoiced:
            raise Refusal("INVOICED", "This booking has already been invoiced.")
        del self.bookings[booking_id]

    # -- search

    def search(self, params: Mapping[str, str]) -> Record:
        """``search``: each matching resource with its availability."""
        start = parse_local(params["start"], self.zone)
        end = parse_local(params["end"], self.zone, end_of_day=True)
        rows = [
            self._availability(resource, start, end)
            for resource in self.resources.values()
            if _matches(resource, params)
        ]
        return {
            "AllShifts": [],
            "StartDate": start.astimezone(self.zone).strftime("%Y-%m-%dT%H:%M:%S"),
            "EndDate": end.astimezone(self.zone).strftime("%Y-%m-%dT%H:%M:%S"),
            "Resources": rows,
            "SearchFields": list(AMENITIES),
            "SelectedTypes": None,
            "Group": params.get("group"),
            "ChargeBooingImmediately": False,
            "ResourceTypes": [],
        }

    def _availability(self, resource: Record, start: datetime, end: datetime) -> Record:
        """One resource row of a search reply."""
        code = self.conflict(resource["Id"], start, end)
        return {
            **resource,
            "IsAvailable": code is None,
            "AvailableUnits": 1,
            "Message": None if code is None else ERROR_MESSAGES.get(code, code),
            "ErrorCode": code,
        }


def _matches(resource: Record, params: Mapping[str, str]) -> bool:
    """Whether a resource meets a search's group, type, allocation and amenity criteria."""
    if "group" in params and resource["GroupName"] != params["group"]:
        return False
    if "type" in params and resource["ResourceTypeName"] != params["type"]:
        return False
    allocation = params.get("allocation")
    if allocation and (resource["Allocation"] or 0) < int(allocation):
        return False
    return all(resource[name] for name in AMENITIES if params.get(name, "").lower() == "true")


# ----- HTTP ----------------------------------------------------------------------------------


def _throttled(plan: FaultPlan) -> Response:
    """Nexudus's throttle: 409 with Retry-After (not 429)."""
    headers = {"Retry-After": str(plan.retry_after)}
    return PlainTextResponse(THROTTLE_TEXT, status_code=409, headers=headers)


def _server_failed() -> Response:
    """Nexudus's 500 body."""
    return JSONResponse(SERVER_ERROR, status_code=500)


class NexudusPortalEmulator:
    """The emulator: a Starlette app over :class:`PortalData`, plus the test controls."""

    def __init__(
        self,
        *,
        now: datetime | None = None,
        timezone: str = "Europe/London",
        business: str = "Demo Space",
        seed: int = 0,
    ) -> None:
        self.clock = EmulatorClock(now)
        self.data = PortalData(self.clock, ZoneInfo(timezone), business, seed)
        self.faults = FaultInjector()
        self.requests: list[RecordedRequest] = []
        self._lock = threading.RLock()
        self._routes = self._build_routes()
        self.app: ASGIApp = FaultMiddleware(
            Starlette(routes=self._routes), self, throttle=_throttled, server_error=_server_failed
        )

    def __repr__(self) -> str:
        return (
            f"NexudusPortalEmulator(bookings={len(self.data.bookings)}, "
            f"events={len(self.data.events)}, resources={len(self.data.resources)})"
        )

    # ----- test controls -----------------------------------------------------------------

    def add_member(
        self, email: str, password: str, *, full_name: str, company: str | None = None
    ) -> int:
        """Allow a member to log in; returns their coworker Id."""
        with self._lock:
            member = Member(self.data.next_id(), email.lower(), password, full_name, company)
            self.data.members[member.email] = member
            return member.coworker_id

    def change_password(self, email: str, password: str) -> None:
        """Change a member's password (as they would in the portal); the old one stops working."""
        with self._lock:
            self.data.members[email.lower()].password = password

    def add_resource(
        self,
        name: str,
        *,
        group: str | None = None,
        resource_type: str = "Meeting Rooms (hourly)",
        allocation: int | None = None,
        amenities: tuple[str, ...] = (),
    ) -> int:
        """Seed a resource (room); returns its Id."""
        unknown = set(amenities) - set(AMENITIES)
        if unknown:
            raise ValueError(f"unknown amenities {sorted(unknown)}")
        with self._lock:
            resource_id = self.data.next_id()
            self.data.resources[resource_id] = {
                "Name": name,
                "GroupName": group,
                "Description": None,
                "ResourceTypeName": resource_type,
                **{flag: flag in amenities for flag in AMENITIES},
                "AllowMultipleBookings": False,
                "Allocation": allocation,
                "Shifts": [],
                "Id": resource_id,
                "IdString": str(resource_id),
                "UniqueId": self.data.new_guid(),
                "IsNull": False,
            }
            return resource_id

    def seed_booking(
        self,
        resource_id: int,
        start: datetime,
        end: datetime,
        *,
        member: str,
        notes: str | None = None,
        tentative: bool = False,
        private: bool = False,
        invoiced: bool = False,
    ) -> int:
        """Create a booking as an admin would for a member (no availability check)."""
        with self._lock:
            coworker = self.data.members[member.lower()].coworker_id
            return self.data.insert(
                resource_id,
                start,
                end,
                coworker,
                notes=notes,
                tentative=tentative,
                private=private,
                invoiced=invoiced,
            )

    def edit_booking(self, booking_id: int, **changes: Any) -> None:
        """Change a booking's fields (``start``, ``end``, ``notes``, ``tentative``, …)."""
        with self._lock:
            booking = self.data.bookings[booking_id]
            for name, value in changes.items():
                if not hasattr(booking, name):
                    raise ValueError(f"a portal booking has no field {name!r}")
                setattr(booking, name, value.astimezone(UTC) if name in ("start", "end") else value)
            booking.updated = self.clock.now()

    def delete_booking(self, booking_id: int) -> None:
        """Delete a booking as an admin would (it leaves no trace in the portal)."""
        with self._lock:
            del self.data.bookings[booking_id]

    def add_event(
        self,
        title: str,
        start: datetime,
        end: datetime,
        *,
        resource_id: int = 0,
        all_day: bool = False,
        venue_address: str | None = None,
    ) -> int:
        """Seed a community event, in a room when ``resource_id`` is given; returns its Id."""
        with self._lock:
            event_id = self.data.next_id()
            self.data.events[event_id] = PortalEvent(
                event_id,
                title,
                start.astimezone(UTC),
                end.astimezone(UTC),
                resource_id,
                all_day,
                venue_address,
            )
            return event_id

    def edit_event(self, event_id: int, **changes: Any) -> None:
        """Change an event's fields (``title``, ``start``, ``end``, ``resource_id``)."""
        with self._lock:
            event = self.data.events[event_id]
            for name, value in changes.items():
                if not hasattr(event, name):
                    raise ValueError(f"an event has no field {name!r}")
                setattr(event, name, value)

    def remove_event(self, event_id: int) -> None:
        """Delete an event."""
        with self._lock:
            del self.data.events[event_id]

    def bookings(self) -> list[PortalBooking]:
        """Every booking, by Id (copies)."""
        with self._lock:
            return [dataclasses.replace(b) for _, b in sorted(self.data.bookings.items())]

    def events(self) -> list[PortalEvent]:
        """Every event, by Id (copies)."""
        with self._lock:
            return [dataclasses.replace(e) for _, e in sorted(self.data.events.items())]

    def advance_clock(self, delta: timedelta) -> None:
        """Move the emulator's clock forward."""
        self.clock.advance(delta)

    def set_faults(self, plan: FaultPlan) -> None:
        """Inject random faults from now on (``FaultPlan()`` switches them off)."""
        self.faults.configure(plan)

    def fail_next(self, *kinds: FaultKind, retry_after: int | None = None) -> None:
        """Make the next portal requests fail with exactly these faults, in order."""
        plan = dataclasses.replace(self.faults.plan, path_prefix=FAULT_PREFIX)
        if retry_after is not None:
            plan = dataclasses.replace(plan, retry_after=retry_after)
        self.faults.configure(plan)
        self.faults.queue(kinds)

    def clear_faults(self) -> None:
        """No more injected faults."""
        self.faults.clear()

    def request_counts(self) -> Counter[str]:
        """Requests seen per ``"METHOD /route/{param}"``, faulted ones included."""
        with self._lock:
            return Counter(f"{r.method} {r.route}" for r in self.requests)

    def record(self, scope: Scope, fault: FaultKind | None, status: int | None) -> None:
        """Remember one answered request (called by the middleware)."""
        query = tuple(parse_qsl(scope.get("query_string", b"").decode(), keep_blank_values=True))
        route = self._route_of(scope)
        entry = RecordedRequest(scope["method"], route, scope["path"], query, fault, status)
        with self._lock:
            self.requests.append(entry)

    def _route_of(self, scope: Scope) -> str:
        """The route template a request matches, else its raw path."""
        for route in self._routes:
            match, _ = route.matches(scope)
            if match is not Match.NONE:
                return route.path_format
        return str(scope["path"])

    @contextmanager
    def serve(self) -> Iterator[RunningServer]:
        """Serve the emulator on a free loopback port for the ``with`` block."""
        with serve_in_thread(self.app) as server:
            yield server

    # ----- HTTP handlers -----------------------------------------------------------------

    def _build_routes(self) -> list[Route]:
        """The portal routes the emulator implements."""
        base = "/{language}/bookings"
        return [
            Route(f"{base}/calendar", self._calendar, methods=["GET"]),
            Route(f"{base}/fullCalendarBookings", self._list_bookings, methods=["GET"]),
            Route(f"{base}/fullCalendarEvents", self._list_events, methods=["GET"]),
            Route(f"{base}/search", self._search, methods=["GET"]),
            Route(f"{base}/newBookingJson", self._create, methods=["POST"]),
            Route(f"{base}/deleteJson/{{booking_id:int}}", self._delete, methods=["GET"]),
            Route(f"{base}/{{booking_id:int}}", self._get_one, methods=["GET"]),
        ]

    def _member(self, request: Request) -> Member:
        """The member a Basic Authorization header proves, or PortalProblem(401)."""
        if request.path_params.get("language") != LANGUAGE:
            raise PortalProblem(404, NOT_FOUND)
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                email, _, password = base64.b64decode(credential).decode().partition(":")
            except ValueError:
                email, password = "", ""
            member = self.data.members.get(email.lower())
            if member is not None and member.password == password:
                return member
        raise PortalProblem(401, DENIED)

    def _answer(self, request: Request, reply: Callable[[Member], object]) -> Response:
        """JSON of ``reply(member)`` for an authenticated request, or the refusal."""
        with self._lock:
            try:
                return JSONResponse(reply(self._member(request)))
            except PortalProblem as problem:
                return problem.response()

    def _range(self, request: Request) -> tuple[datetime, datetime]:
        """The required ``start``/``end`` parameters (a missing one is the portal's 500)."""
        start, end = request.query_params.get("start"), request.query_params.get("end")
        if not start or not end:
            raise PortalProblem(500, SERVER_ERROR)
        try:
            zone = self.data.zone
            return parse_local(start, zone), parse_local(end, zone, end_of_day=True)
        except ValueError:
            raise PortalProblem(500, SERVER_ERROR) from None

    async def _calendar(self, request: Request) -> Response:
        """``GET /{language}/bookings/calendar``: calendar set-up data, no bookings."""

        def reply(_member: Member) -> Record:
            types = sorted({r["ResourceTypeName"] for r in self.data.resources.values()})
            return {
                "ResourceTypes": [{"Name": name} for name in types],
                "Resources": list(self.data.resources.values()),
                "AllShifts": [],
                "ShowAll": True,
            }

        return self._answer(request, reply)

    async def _list_bookings(self, request: Request) -> Response:
        """``GET /{language}/bookings/fullCalendarBookings``."""
        params = request.query_params

        def reply(member: Member) -> list[Record]:
            start, end = self._range(request)
            rows = self.data.bookings_within(start, end)
            if params.get("resourceId"):
                rows = [b for b in rows if str(b.resource_id) == params["resourceId"]]
            if params.get("showAll", "true").lower() == "false":
                rows = [b for b in rows if b.coworker_id == member.coworker_id]
            if params.get("group"):
                resources = self.data.resources
                rows = [b for b in rows if resources[b.resource_id]["GroupName"] == params["group"]]
            return [self.data.booking_item(b) for b in rows]

        return self._answer(request, reply)

    async def _list_events(self, request: Request) -> Response:
        """``GET /{language}/bookings/fullCalendarEvents``."""

        def reply(_member: Member) -> list[Record]:
            start, end = self._range(request)
            return [self.data.event_item(e) for e in self.data.events_within(start, end)]

        return self._answer(request, reply)

    async def _search(self, request: Request) -> Response:
        """``GET /{language}/bookings/search``."""

        def reply(_member: Member) -> Record:
            self._range(request)
            return self.data.search(dict(request.query_params))

        return self._answer(request, reply)

    async def _create(self, request: Request) -> Response:
        """``POST /{language}/bookings/newBookingJson``."""
        raw = await request.body()

        def reply(member: Member) -> Record:
            try:
                body = json.loads(raw or b"null")
            except ValueError:
                body = None
            if not isinstance(body, dict):
                raise PortalProblem(400, {"Message": "The request is invalid."})
            try:
                booking_id = self.data.create(body, member)
            except Refusal as refusal:
                return envelope(refusal.message, None, ok=False, code=refusal.code)
            return envelope("Your booking has been created", {"Id": booking_id})

        return self._answer(request, reply)

    async def _delete(self, request: Request) -> Response:
        """``GET /{language}/bookings/deleteJson/{id}``."""
        booking_id = int(request.path_params["booking_id"])

        def reply(member: Member) -> Record:
            try:
                self.data.delete(booking_id, member)
            except Refusal as refusal:
                return envelope(refusal.message, None, ok=False, code=refusal.code)
            return envelope("Booking was successfully deleted.", None)

        return self._answer(request, reply)

    async def _get_one(self, request: Request) -> Response:
        """``GET /{language}/bookings/{id}``."""
        booking_id = int(request.path_params["booking_id"])

        def reply(member: Member) -> Record:
            booking = self.data.bookings.get(booking_id)
            if booking is None or booking.coworker_id != member.coworker_id:
                raise PortalProblem(404, NOT_FOUND)
            return self.data.get_one(booking)

        return self._answer(request, reply)
