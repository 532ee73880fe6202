"""An in-memory emulator of the ZenSpace smart-pod API (surface A), for tests and the demo.

Strict where shared/reference/zenspace.md is clear: ``POST /booking_operation`` upserts by the
caller's ``id`` (``is_active: false`` cancels), answers ``{"booking_id", "message"}`` with
``"Booking created successfully."`` on a create, refuses an unknown ``meeting_space_id`` or an
end not after the start with 400; device status answers ``{"response": {"device", "value",
"status"}}`` and 404 ``Record Not Found`` for an unknown pod or device; the o3-sensor's
``"temprature"`` (sic) sub-device answers as ``"temperature"`` (G8).

Where the documentation is silent it follows :class:`~bridge.devices.assumptions.
ZenSpaceAssumptions` — the one place those readings live, shared with the client: the API key
header and its 401, the device-action path and body (G7), the events list key (G9), offsets
required on times (G10), unknown body fields refused (G3), update/cancel messages (G4).

Tests drive it through a Python API: add pods, read bookings and the timestamped log of device
state changes (``device_log``: "light on at T-10 min"), inject faults (429 + Retry-After, 500,
hung connections, slow replies) and read the request log.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Scope

from bridge.devices.assumptions import DEFAULT_ASSUMPTIONS, ZenSpaceAssumptions
from bridge.emulators.faults import (
    FaultInjector,
    FaultKind,
    FaultMiddleware,
    FaultPlan,
    RecordedRequest,
)
from bridge.emulators.server import RunningServer, serve_in_thread

Record = dict[str, Any]

NOT_FOUND = {"message": "Record Not Found"}
SERVER_ERROR = {"message": "Server Error"}
UNAUTHORIZED = {"message": "Unauthorized"}
CREATED = "Booking created successfully."
#: G4: only the create message is documented; these two are the emulator's choice.
UPDATED = "Booking updated successfully."
CANCELLED = "Booking cancelled successfully."

#: Fields of the published booking_operation example (SEED).
BOOKING_FIELDS = frozenset(
    {
        "attendees", "created_by_email", "created_by_name", "created_by_phone_no",
        "end_datetime", "external_id", "id", "is_active", "meeting_space_id",
        "start_datetime", "unlock_key",
    }
)
ATTENDEE_FIELDS = frozenset({"email", "name", "phone"})
#: Device types of a pod and their resting values.
DEFAULT_DEVICES = {"lock": "closed", "light": "off", "fan": "off"}
#: o3-sensor sub-devices: request spelling → (answered device name, value).
SENSOR_READINGS = {"temprature": ("temperature", "24"), "occupancy": ("occupancy", "vacant")}


def wall_clock() -> datetime:
    """The real time, UTC."""
    return datetime.now(UTC)


class ApiProblem(Exception):
    """An error reply the API gives."""

    def __init__(self, status: int, body: object) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def bad_request(message: str) -> ApiProblem:
    """A 400 (no body is documented, G4: the emulator explains in ``message``)."""
    return ApiProblem(400, {"message": message})


@dataclass(frozen=True, slots=True)
class DeviceChange:
    """One device state change, when it happened (emulator clock)."""

    at: datetime
    meeting_space_id: str
    device: str
    value: str


@dataclass(frozen=True, slots=True)
class BookingEvent:
    """One booking_operation the emulator applied (the door code left out)."""

    at: datetime
    booking_id: str
    message: str
    is_active: bool
    start: str
    end: str


@dataclass
class Pod:
    """One meeting space: its zone and its devices' values."""

    id: str
    name: str
    timezone: str
    enabled: bool = True
    devices: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_DEVICES))
    offline: set[str] = field(default_factory=set)


class ZenSpaceEmulator:
    """The emulator: a Starlette app over in-memory pods and bookings, plus test controls."""

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] = wall_clock,
        api_keys: tuple[str, ...] = (),
        assumptions: ZenSpaceAssumptions = DEFAULT_ASSUMPTIONS,
    ) -> None:
        self.clock = clock
        self.assumptions = assumptions
        self.api_keys = set(api_keys)
        self.pods: dict[str, Pod] = {}
        self.bookings: dict[str, Record] = {}
        self.booking_log: list[BookingEvent] = []
        self.device_log: list[DeviceChange] = []
        self.requests: list[RecordedRequest] = []
        self.faults = FaultInjector()
        self.faults.configure(FaultPlan(path_prefix="/"))
        self._lock = threading.RLock()
        self._routes = self._build_routes()
        self.app: ASGIApp = FaultMiddleware(
            Starlette(routes=self._routes), self, throttle=_throttled, server_error=_server_failed
        )

    def __repr__(self) -> str:
        return f"ZenSpaceEmulator(pods={len(self.pods)}, bookings={len(self.bookings)})"

    # ----- test controls -----------------------------------------------------------------

    def add_api_key(self, key: str) -> None:
        """Accept this API key."""
        self.api_keys.add(key)

    def add_pod(
        self, *, timezone: str, name: str = "Pod", meeting_space_id: str | None = None
    ) -> str:
        """A new pod with lock, light and fan; returns its meeting_space_id."""
        ZoneInfo(timezone)
        pod_id = meeting_space_id or str(uuid.uuid4())
        with self._lock:
            self.pods[pod_id] = Pod(pod_id, name, timezone)
        return pod_id

    def set_device_offline(self, meeting_space_id: str, device: str, offline: bool = True) -> None:
        """Make a device report ``offline`` (its actions then fail with 500)."""
        with self._lock:
            pod = self.pods[meeting_space_id]
            if offline:
                pod.offline.add(device)
            else:
                pod.offline.discard(device)

    def booking(self, booking_id: str) -> Record:
        """The stored body of one pod booking (door code included: it is the pod's copy)."""
        with self._lock:
            return dict(self.bookings[booking_id])

    def device_value(self, meeting_space_id: str, device: str) -> str:
        """A device's current value."""
        with self._lock:
            return self.pods[meeting_space_id].devices[device]

    def changes(self, meeting_space_id: str, device: str) -> list[tuple[datetime, str]]:
        """(when, value) of every change of one device, in order."""
        with self._lock:
            return [
                (c.at, c.value)
                for c in self.device_log
                if c.meeting_space_id == meeting_space_id and c.device == device
            ]

    def set_faults(self, plan: FaultPlan) -> None:
        """Inject random faults from now on (on every path unless the plan narrows it)."""
        if plan.path_prefix == FaultPlan().path_prefix:
            plan = dataclasses.replace(plan, path_prefix="/")
        self.faults.configure(plan)

    def fail_next(self, *kinds: FaultKind, retry_after: int | None = None) -> None:
        """Make the next requests fail with exactly these faults, in order."""
        if retry_after is not None:
            self.faults.configure(dataclasses.replace(self.faults.plan, retry_after=retry_after))
        self.faults.queue(kinds)

    def clear_faults(self) -> None:
        """No more injected faults."""
        self.faults.clear()
        self.faults.configure(FaultPlan(path_prefix="/"))

    def request_counts(self) -> Counter[str]:
        """Requests seen per ``"METHOD /route"``, faulted ones included."""
        with self._lock:
            return Counter(f"{r.method} {r.route}" for r in self.requests)

    def record(self, scope: Scope, fault: FaultKind | None, status: int | None) -> None:
        """Remember one answered request (called by the middleware)."""
        query = tuple(parse_qsl(scope.get("query_string", b"").decode(), keep_blank_values=True))
        entry = RecordedRequest(
            scope["method"], self._route_of(scope), scope["path"], query, fault, status
        )
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

    # ----- the API -----------------------------------------------------------------------

    def _build_routes(self) -> list[Route]:
        """The routes of surface A (plus the surface-B state call) the emulator implements."""
        a = self.assumptions
        status_path = a.device_status_path.replace("{meeting_space_id}", "{space}")
        action_path = a.device_action_path.replace("{meeting_space_id}", "{space}")
        return [
            Route(a.booking_path, self._booking_operation, methods=["POST"]),
            Route(status_path, self._device_status, methods=["POST"]),
            Route(action_path, self._device_action, methods=["POST"]),
            Route("/devices/{space}/device-instruction", self._instruction, methods=["POST"]),
            Route(a.events_path, self._events, methods=["GET"]),
            Route(a.space_state_path, self._space_state, methods=["GET"]),
        ]

    async def _booking_operation(self, request: Request) -> Response:
        """``POST /booking_operation``: create, update or cancel by ``id``."""
        raw = await request.body()
        return self._answer(request, lambda: self.apply_booking(_json_object(raw)))

    def apply_booking(self, body: Record) -> Record:
        """Validate and apply one booking operation; its reply."""
        checked = self._checked_booking(body)
        with self._lock:
            known = checked["id"] in self.bookings
            self.bookings[checked["id"]] = checked
            active = checked.get("is_active", True)
            message = CANCELLED if not active else UPDATED if known else CREATED
            self.booking_log.append(
                BookingEvent(
                    self.clock(), checked["id"], message, active,
                    checked["start_datetime"], checked["end_datetime"],
                )
            )
        return {"booking_id": checked["id"], "message": message}

    def _checked_booking(self, body: Record) -> Record:
        """The body, or the 400 its first problem calls for."""
        unknown = sorted(set(body) - BOOKING_FIELDS)
        if unknown and self.assumptions.refuse_unknown_fields:
            raise bad_request(f"unknown field {unknown[0]}")
        booking_id = body.get("id")
        if not isinstance(booking_id, str):
            raise bad_request("id is required")
        try:
            uuid.UUID(booking_id)
        except ValueError:
            raise bad_request("id must be a UUID") from None
        if body.get("meeting_space_id") not in self.pods:
            raise bad_request("unknown meeting_space_id")
        start = self._instant(body, "start_datetime")
        end = self._instant(body, "end_datetime")
        if end <= start:
            raise bad_request("end_datetime must be after start_datetime")
        if not isinstance(body.get("is_active", True), bool):
            raise bad_request("is_active must be a boolean")
        code = body.get("unlock_key")
        if code is not None and not (isinstance(code, str) and code.isdigit()):
            raise bad_request("unlock_key must be a string of digits")
        _check_people(body)
        return dict(body)

    def _instant(self, body: Record, name: str) -> datetime:
        """An ISO 8601 date-time field (with its offset, G10)."""
        value = body.get(name)
        if not isinstance(value, str):
            raise bad_request(f"{name} is required")
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise bad_request(f"{name} is not an ISO 8601 date-time") from None
        if moment.tzinfo is None:
            if self.assumptions.require_offsets:
                raise bad_request(f"{name} has no UTC offset")
            moment = moment.replace(tzinfo=UTC)
        return moment

    async def _device_status(self, request: Request) -> Response:
        """``POST /devices/{meeting_space_id}/status``."""
        space = request.path_params["space"]
        raw = await request.body()
        return self._answer(request, lambda: self.status_of(space, _json_object(raw)))

    def status_of(self, space: str, body: Record) -> Record:
        """The ``response`` envelope of one device's status."""
        with self._lock:
            pod = self._pod(space)
            device = body.get("device_type")
            if device == "o3-sensor":
                reading = SENSOR_READINGS.get(str(body.get("sub_device")))
                if reading is None:
                    raise ApiProblem(404, NOT_FOUND)
                return {"response": {"device": reading[0], "value": reading[1],
                                     "status": "online"}}
            if not isinstance(device, str) or device not in pod.devices:
                raise ApiProblem(404, NOT_FOUND)
            return {"response": _device_state(pod, device)}

    async def _device_action(self, request: Request) -> Response:
        """The device action (path and body: the G7 assumption)."""
        space = request.path_params["space"]
        raw = await request.body()
        return self._answer(request, lambda: self.act(space, _json_object(raw)))

    def act(self, space: str, body: Record) -> Record:
        """Switch one device; records the change with the emulator's time."""
        a = self.assumptions
        with self._lock:
            pod = self._pod(space)
            device = body.get("device_type")
            if not isinstance(device, str) or device not in pod.devices:
                raise ApiProblem(404, NOT_FOUND)
            wanted = body.get(a.device_action_field)
            if wanted not in (a.action_on, a.action_off):
                choices = f"{a.action_on} or {a.action_off}"
                raise bad_request(f"{a.device_action_field} must be {choices}")
            if device in pod.offline:
                raise ApiProblem(500, SERVER_ERROR)
            value = _device_value(device, wanted == a.action_on)
            if pod.devices[device] != value:
                pod.devices[device] = value
                self.device_log.append(DeviceChange(self.clock(), space, device, value))
            return {"response": _device_state(pod, device)}

    async def _instruction(self, request: Request) -> Response:
        """``POST /devices/{meeting_space_id}/device-instruction`` (V1)."""
        space = request.path_params["space"]
        raw = await request.body()

        def reply() -> Record:
            device = _json_object(raw).get("device_type")
            with self._lock:
                if device not in self._pod(space).devices:
                    raise ApiProblem(404, NOT_FOUND)
            return {"response": {"device_instruction": {
                "device": device, "instructions": f"Use the {device} panel by the door."}}}

        return self._answer(request, reply)

    async def _events(self, request: Request) -> Response:
        """``GET /devices/events`` with a JSON body naming the device type (G9)."""
        raw = await request.body()

        def reply() -> Record:
            device = _json_object(raw).get("device_type")
            with self._lock:
                events = [
                    {
                        "eventType": f"{change.device}StateChange",
                        "timestamp": change.at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                        "details": {"meeting_space_id": change.meeting_space_id,
                                    "value": change.value},
                    }
                    for change in self.device_log
                    if change.device == device
                ]
            return {self.assumptions.events_key: events}

        return self._answer(request, reply)

    async def _space_state(self, request: Request) -> Response:
        """``GET /meetingspace/get_meeting_space_by_id?meeting_space_id=`` (surface B)."""
        space = request.query_params.get("meeting_space_id", "")
        return self._answer(request, lambda: self.space_state(space))

    def space_state(self, space: str) -> Record:
        """The documented six fields; ``next_available_time`` from the active bookings."""
        with self._lock:
            pod = self._pod(space)
            zone = ZoneInfo(pod.timezone)
            free_at = self.clock().astimezone(UTC)
            for start, end in sorted(self._active_spans(space)):
                if start <= free_at < end:
                    free_at = end
            return {
                "logo": "",
                "booking_app_url": "http://example.com",
                "timezone": pod.timezone,
                "enabled": pod.enabled,
                "id": pod.id,
                "next_available_time": free_at.astimezone(zone).isoformat(timespec="seconds"),
            }

    def _active_spans(self, space: str) -> Iterator[tuple[datetime, datetime]]:
        """(start, end) of the pod's active bookings."""
        for body in self.bookings.values():
            if body.get("meeting_space_id") == space and body.get("is_active", True):
                yield (datetime.fromisoformat(body["start_datetime"]).astimezone(UTC),
                       datetime.fromisoformat(body["end_datetime"]).astimezone(UTC))

    def _pod(self, space: str) -> Pod:
        """A pod by id, or 404."""
        pod = self.pods.get(space)
        if pod is None:
            raise ApiProblem(404, NOT_FOUND)
        return pod

    def _answer(self, request: Request, reply: Callable[[], Record]) -> Response:
        """JSON of ``reply()`` once the API key passed; an ApiProblem as its error reply."""
        try:
            self._authenticate(request)
            return JSONResponse(reply())
        except ApiProblem as problem:
            return JSONResponse(problem.body, status_code=problem.status)

    def _authenticate(self, request: Request) -> None:
        """The ``X-API-Key`` check (G2: required on every route, 401 otherwise)."""
        if not self.assumptions.require_api_key:
            return
        key = request.headers.get(self.assumptions.api_key_header)
        if key is None or key not in self.api_keys:
            raise ApiProblem(401, UNAUTHORIZED)


def _device_value(device: str, switch_on: bool) -> str:
    """The value a switched device reports: a lock opens and closes, the rest go on/off."""
    if device == "lock":
        return "open" if switch_on else "closed"
    return "on" if switch_on else "off"


def _device_state(pod: Pod, device: str) -> Record:
    """One device's ``{"device", "value", "status"}``."""
    status = "offline" if device in pod.offline else "online"
    return {"device": device, "value": pod.devices[device], "status": status}


def _check_people(body: Mapping[str, Any]) -> None:
    """Attendees are objects of string email/name/phone; creator fields are strings."""
    attendees = body.get("attendees", [])
    if not isinstance(attendees, list):
        raise bad_request("attendees must be a list")
    for attendee in attendees:
        if not isinstance(attendee, dict) or set(attendee) - ATTENDEE_FIELDS:
            raise bad_request("an attendee must be an object of email, name and phone")
        if not all(isinstance(value, str) for value in attendee.values()):
            raise bad_request("attendee fields must be strings")
    for name in ("created_by_email", "created_by_name", "created_by_phone_no", "external_id"):
        if name in body and not isinstance(body[name], str):
            raise bad_request(f"{name} must be a string")


def _json_object(raw: bytes) -> Record:
    """A JSON object request body, or 400."""
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    return body


def _throttled(plan: FaultPlan) -> Response:
    """A plain 429 with Retry-After."""
    headers = {"Retry-After": str(plan.retry_after)}
    return PlainTextResponse("Too Many Requests", 429, headers=headers)


def _server_failed() -> Response:
    """The 500 body."""
    return JSONResponse(SERVER_ERROR, status_code=500)
