"""A strict, in-memory emulator of the OfficeRnD v2 ("Flex") API (the parts the bridge uses).

It answers like OfficeRnD (shared/reference/providers.md §1): OAuth2 client credentials at
``/oauth/token`` limited to 5 requests a minute, bearer tokens that expire (401 afterwards) and
carry granular scopes; the ``results``/``cursorNext`` envelope with ``$limit`` ≤ 50;
``field[$op]=value`` filters actually applied; ``/bookings`` listing one row per recurring
series and refusing ``start``/``end`` filters; ``/bookings/occurrences`` expanding each rule on
the resource's wall clock; cancel (the record stays, ``isCancelled``) versus delete (gone).

Tests drive it through a Python API (not HTTP): seed locations, resources and bookings, edit,
cancel or delete them as an admin would, cancel or move single occurrences, move the clock,
expire tokens (now, or after a number of requests), inject faults (429 + Retry-After, 500,
hung connections, slow replies; seeded, so deterministic), read request counters and the
webhook events it would have sent.

Where the reference is silent the emulator picks one reading, marked [INF] there, and
:class:`Behaviour` gathers the choices a test may want to flip:

- error bodies are NestJS's (``{"statusCode", "message", "error"}``; the v2 reference names
  its operations ``bookingscontroller_*``); validation errors list their messages; unknown
  body fields and query parameters are refused (400), read-only fields are ignored;
- paging is keyset paging in ``_id`` order (ids grow with creation), so records updated
  while a client pages are never skipped; cursors are opaque; ``$limit`` outside 1..50 is
  refused rather than clamped;
- an endless series has ``seriesEnd: null``, which range filters treat as "never ends";
- ``/bookings/occurrences`` needs ``start`` and ``end``, lists the occurrences *overlapping*
  that period (cancelled ones included, ``canceled: true``), one-off bookings included, in
  (start, bookingId) order, refuses periods longer than :attr:`Behaviour.max_occurrence_period`
  and accepts ``resource``, ``booking``, ``member``, ``company`` and ``canceled`` filters;
- per-occurrence cancellations and moves exist only through the test controls (no API is
  documented); whether they bump the master's ``modifiedAt`` is
  :attr:`Behaviour.occurrence_edits_touch_master`; changing a booking's start, end or rule
  discards them;
- rules are DAILY, WEEKLY or MONTHLY with optional INTERVAL, COUNT, UNTIL (UTC), BYDAY and
  BYMONTHDAY, evaluated on the resource's wall clock; an occurrence keeps the first one's
  wall-clock length;
- creates and updates through the API apply the booking policy: a booking whose live
  occurrences, widened by their ``serviceSlots``, meet another live booking's (widened the same
  way) within a year is refused (409 "The resource is not available …", naming the slot, never
  the other booker); the test controls never check availability;
- ``POST /bookings/validate`` (scope ``flex.space.bookings.validate``; path from community
  code, body and answer undocumented) takes a create body and answers 200
  ``{"valid": bool, "errors": [message]}`` with the messages a create would be refused with;
  a malformed body is a 400 as for a create;
- ``recurrence.rrule`` holds RFC 5545 recurrence lines: the RRULE (with or without its
  ``RRULE:`` prefix), optionally followed by ``EXDATE:`` lines of UTC instants
  (``…Z``, comma-separated) that the series leaves out. The reference only documents the
  RRULE; OfficeRnD is a Node application whose rrule library (rrule.js ``rrulestr``) reads
  such lines, and it is the one way a single series can skip occurrences through the API
  (per-occurrence cancellation has no documented API) [INF];
- cancelling a cancelled booking answers 200 and changes nothing; updating one is refused;
- the token endpoint's 429 carries ``Retry-After`` (seconds until the window frees).
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import math
import os
import secrets
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from dateutil.rrule import DAILY, MONTHLY, WEEKLY, rrule, rruleset, rrulestr
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
from bridge.emulators.server import RunningServer, serve_in_thread
from bridge.providers.officernd import (
    SIGNATURE_HEADER,
    SignatureOrder,
    format_instant,
    webhook_signature,
)

Record = dict[str, Any]

API_PREFIX = "/api/v2/organizations/{org}"
TOKEN_PATH = "/oauth/token"
MAX_LIMIT = 50
MAX_IN_VALUES = 50
DEFAULT_TOKEN_LIFETIME = timedelta(seconds=3599)
TOKEN_WINDOW = timedelta(minutes=1)
TOO_MANY_TOKENS = "Too many requests, please try again later"
#: How far ahead an API create or update is checked against other bookings.
AVAILABILITY_HORIZON = timedelta(days=366)
#: Longest rule expansion the emulator performs for one bounded series.
MAX_SERIES_INSTANTS = 5000

SCOPE_READ = "flex.space.bookings.read"
SCOPE_CREATE = "flex.space.bookings.create"
SCOPE_UPDATE = "flex.space.bookings.update"
SCOPE_CANCEL = "flex.space.bookings.cancel"
SCOPE_DELETE = "flex.space.bookings.delete"
SCOPE_VALIDATE = "flex.space.bookings.validate"
SCOPE_RESOURCES = "flex.space.resources.read"
SCOPE_LOCATIONS = "flex.space.locations.read"
ALL_SCOPES = frozenset(
    {
        SCOPE_READ,
        SCOPE_CREATE,
        SCOPE_UPDATE,
        SCOPE_CANCEL,
        SCOPE_DELETE,
        SCOPE_VALIDATE,
        SCOPE_RESOURCES,
        SCOPE_LOCATIONS,
    }
)

#: Rule frequencies the reference documents.
FREQUENCIES = {"DAILY": DAILY, "WEEKLY": WEEKLY, "MONTHLY": MONTHLY}
RULE_PARTS = frozenset({"FREQ", "INTERVAL", "COUNT", "UNTIL", "BYDAY", "BYMONTHDAY", "WKST"})

#: Booking fields a client may write, and the JSON types each accepts.
WRITABLE_FIELDS: dict[str, tuple[type, ...]] = {
    "resource": (str,),
    "start": (str,),
    "end": (str,),
    "title": (str,),
    "description": (str,),
    "member": (str, type(None)),
    "company": (str, type(None)),
    "members": (list,),
    "visitors": (list,),
    "tentative": (bool,),
    "free": (bool,),
    "serviceSlots": (dict,),
    "recurrence": (dict, type(None)),
    "source": (str,),
}
#: Fields the server sets; a client sending them back is ignored, not refused.
READ_ONLY_FIELDS = frozenset(
    {
        "_id",
        "timezone",
        "isCancelled",
        "canceled",
        "seriesStart",
        "seriesEnd",
        "createdAt",
        "createdBy",
        "modifiedAt",
        "modifiedBy",
        "organization",
        "reference",
        "fees",
        "extras",
        "plan",
    }
)


@dataclass(frozen=True, slots=True)
class Behaviour:
    """The emulator's answers where the reference is silent or a test needs a knob."""

    #: Whether cancelling or moving one occurrence bumps its series' ``modifiedAt`` [INF].
    occurrence_edits_touch_master: bool = True
    #: Token endpoint limit per rolling minute (``None``: unlimited) [DOC: 5].
    token_requests_per_minute: int | None = 5
    #: Lifetime of an access token [DOC: one hour; the sample answers 3599].
    token_lifetime: timedelta = DEFAULT_TOKEN_LIFETIME
    #: Which message webhook signatures cover (§1.10 conflict; official: body first).
    signature_order: SignatureOrder = SignatureOrder.BODY_FIRST
    #: Longest ``/bookings/occurrences`` period answered in one query [DOC: one year].
    max_occurrence_period: timedelta = timedelta(days=366)


class ApiProblem(Exception):
    """An error reply: status, JSON (or text) body and extra headers."""

    def __init__(
        self, status: int, body: Record | str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = dict(headers or {})

    def response(self) -> Response:
        """The reply to send."""
        if isinstance(self.body, str):
            return PlainTextResponse(self.body, status_code=self.status, headers=self.headers)
        return JSONResponse(self.body, status_code=self.status, headers=self.headers)


_ERROR_NAMES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    429: "Too Many Requests",
    500: "Internal Server Error",
}


def problem(status: int, *messages: str) -> ApiProblem:
    """A NestJS-style error: one message as a string, several as a list."""
    message: str | list[str] = messages[0] if len(messages) == 1 else list(messages)
    body = {"statusCode": status, "message": message, "error": _ERROR_NAMES.get(status, "Error")}
    return ApiProblem(status, body)


# ----- clock ---------------------------------------------------------------------------------


class ProviderClock:
    """The emulator's now: frozen at an instant, or following a source (the wall clock)."""

    def __init__(
        self, start: datetime | None = None, *, source: Callable[[], datetime] | None = None
    ) -> None:
        self._lock = threading.Lock()
        self._frozen = start if source is None else None
        self._source = source
        self._offset = timedelta(0) if source is None or start is None else start - source()

    def now(self) -> datetime:
        """The current instant, to the millisecond (OfficeRnD timestamps carry milliseconds)."""
        with self._lock:
            if self._frozen is not None:
                current = self._frozen
            else:
                current = (self._source() if self._source else datetime.now(UTC)) + self._offset
        utc = current.astimezone(UTC)
        return utc.replace(microsecond=utc.microsecond // 1000 * 1000)

    def set(self, instant: datetime) -> None:
        """Jump to ``instant`` (a frozen clock stays frozen, a following one follows from it)."""
        if instant.tzinfo is None:
            raise ValueError("the emulator clock needs an aware instant")
        with self._lock:
            if self._frozen is not None or self._source is None:
                self._frozen = instant
            else:
                self._offset = instant - self._source()

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward."""
        with self._lock:
            if self._frozen is not None:
                self._frozen += delta
            else:
                self._offset += delta


# ----- accounts and tokens -------------------------------------------------------------------


@dataclass(slots=True)
class _Grant:
    """Whose a token is, what it may do and until when."""

    client_id: str
    scopes: frozenset[str]
    expires: datetime


@dataclass(slots=True)
class Accounts:
    """API applications, their tokens, the token endpoint's rate window and grant counters."""

    clock: ProviderClock
    behaviour: Behaviour
    applications: dict[str, tuple[str, frozenset[str]]] = field(default_factory=dict, repr=False)
    tokens: dict[str, _Grant] = field(default_factory=dict, repr=False)
    token_requests: list[datetime] = field(default_factory=list)
    issued: Counter[str] = field(default_factory=Counter)
    expire_after: int | None = None

    def token_reply(self, form: Mapping[str, str]) -> Record:
        """Answer ``POST /oauth/token``; ApiProblem for throttling or refused credentials."""
        self._count_token_request()
        if form.get("grant_type") != "client_credentials":
            raise ApiProblem(400, {"error": "unsupported_grant_type"})
        client_id = form.get("client_id", "")
        known = self.applications.get(client_id)
        if known is None or not secrets.compare_digest(
            known[0].encode(), form.get("client_secret", "").encode()
        ):
            raise ApiProblem(401, {"error": "invalid_client"})
        granted = known[1]
        asked = frozenset(form.get("scope", "").split()) or granted
        if not asked <= granted:
            raise ApiProblem(
                400,
                {
                    "error": "invalid_scope",
                    "error_description": "The application was not granted: "
                    + " ".join(sorted(asked - granted)),
                },
            )
        token = secrets.token_urlsafe(32)
        lifetime = self.behaviour.token_lifetime
        self.tokens[token] = _Grant(client_id, asked, self.clock.now() + lifetime)
        self.issued[client_id] += 1
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": int(lifetime.total_seconds()),
            "scope": " ".join(sorted(asked)),
        }

    def _count_token_request(self) -> None:
        """Enforce the rolling-minute limit (every request counts, refused ones included)."""
        now = self.clock.now()
        self.token_requests = [t for t in self.token_requests if t > now - TOKEN_WINDOW]
        limit = self.behaviour.token_requests_per_minute
        if limit is not None and len(self.token_requests) >= limit:
            wait = self.token_requests[-limit] + TOKEN_WINDOW - now
            retry_after = str(max(1, math.ceil(wait.total_seconds())))
            raise ApiProblem(429, TOO_MANY_TOKENS, {"Retry-After": retry_after})
        self.token_requests.append(now)

    def authorise(self, header: str | None, scope: str) -> str:
        """The application a bearer header proves, if its token holds ``scope``; else 401/403."""
        if self.expire_after is not None:
            if self.expire_after <= 0:
                self.tokens.clear()
                self.expire_after = None
            else:
                self.expire_after -= 1
        scheme, _, credential = (header or "").partition(" ")
        grant = self.tokens.get(credential.strip()) if scheme.lower() == "bearer" else None
        if grant is None or grant.expires <= self.clock.now():
            raise ApiProblem(
                401, {"statusCode": 401, "message": "Unauthorized"}, {"WWW-Authenticate": "Bearer"}
            )
        if scope not in grant.scopes:
            raise problem(403, f"Missing required scope: {scope}")
        return grant.client_id


# ----- query parsing -------------------------------------------------------------------------

INSTANT, TEXT, FLAG = "instant", "text", "flag"
OPERATORS = frozenset({"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin"})
PAGING = frozenset({"$limit", "$cursorNext", "$cursorPrev"})


@dataclass(frozen=True, slots=True)
class Condition:
    """One parsed filter: a field, an operator and its value(s)."""

    name: str
    operator: str
    value: object

    def accepts(self, actual: object) -> bool:
        """Whether a record's value passes (``None`` is "never ends" for ``seriesEnd``)."""
        op, wanted = self.operator, self.value
        if op == "$in":
            return actual in wanted  # type: ignore[operator]
        if op == "$nin":
            return actual not in wanted  # type: ignore[operator]
        if op == "$eq":
            return actual == wanted
        if op == "$ne":
            return actual != wanted
        if actual is None:
            return self.name == "seriesEnd" and op in ("$gt", "$gte")
        comparisons: dict[str, Callable[[Any, Any], bool]] = {
            "$gt": lambda a, b: a > b,
            "$gte": lambda a, b: a >= b,
            "$lt": lambda a, b: a < b,
            "$lte": lambda a, b: a <= b,
        }
        return comparisons[op](actual, wanted)


BOOKING_FILTERS: dict[str, str] = {
    "_id": TEXT,
    "resource": TEXT,
    "member": TEXT,
    "company": TEXT,
    "isCancelled": FLAG,
    "tentative": FLAG,
    "createdAt": INSTANT,
    "modifiedAt": INSTANT,
    "seriesStart": INSTANT,
    "seriesEnd": INSTANT,
}
RESOURCE_FILTERS: dict[str, str] = {"_id": TEXT, "name": TEXT, "type": TEXT, "location": TEXT}
LOCATION_FILTERS: dict[str, str] = {"_id": TEXT, "name": TEXT}
OCCURRENCE_FILTERS: dict[str, str] = {
    "resource": TEXT,
    "booking": TEXT,
    "member": TEXT,
    "company": TEXT,
    "canceled": FLAG,
}


def parse_instant(text: str) -> datetime:
    """An ISO 8601 instant with a zone (``…Z`` or an offset); ValueError otherwise."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(text)
    return moment.astimezone(UTC)


def _typed(text: str, kind: str) -> object:
    """A filter value as a comparable Python value; ValueError when malformed."""
    if kind == INSTANT:
        return parse_instant(text)
    if kind == FLAG:
        lowered = text.strip().lower()
        if lowered not in ("true", "false"):
            raise ValueError(text)
        return lowered == "true"
    return text


def parse_filters(
    params: Iterable[tuple[str, str]], known: Mapping[str, str], *, extra: Iterable[str] = ()
) -> tuple[list[Condition], dict[str, str]]:
    """Conditions from ``field`` / ``field[$op]`` parameters, plus the paging and extra ones.

    Unknown fields, operators and parameters are refused (400), as are ``start``/``end``
    filters, which ``/bookings`` does not take.
    """
    conditions: list[Condition] = []
    others: dict[str, str] = {}
    allowed_extra = frozenset(extra) | PAGING
    for name, text in params:
        if name in allowed_extra:
            others[name] = text
            continue
        field_name, operator = _split_filter(name)
        if field_name in ("start", "end") and field_name not in known:
            raise problem(
                400,
                f"Filtering by '{field_name}' is not supported; use seriesStart/seriesEnd "
                "or /bookings/occurrences",
            )
        kind = known.get(field_name)
        if kind is None or operator not in OPERATORS:
            raise problem(400, f"property {name} should not exist")
        conditions.append(_condition(field_name, operator, text, kind, name))
    return conditions, others


def _split_filter(name: str) -> tuple[str, str]:
    """(``field``, ``$op``) of ``field[$op]``; plain ``field`` means ``$eq``."""
    if name.endswith("]") and "[" in name:
        field_name, _, operator = name[:-1].partition("[")
        return field_name, operator
    return name, "$eq"


def _condition(field_name: str, operator: str, text: str, kind: str, name: str) -> Condition:
    """One condition, its value parsed; 400 when malformed."""
    try:
        if operator in ("$in", "$nin"):
            values = [part for part in text.split(",") if part]
            if not values or len(values) > MAX_IN_VALUES:
                raise ValueError(text)
            return Condition(field_name, operator, frozenset(_typed(v, kind) for v in values))
        if kind == FLAG and operator not in ("$eq", "$ne"):
            raise ValueError(text)
        return Condition(field_name, operator, _typed(text, kind))
    except ValueError:
        raise problem(400, f"{name} has an invalid value") from None


def page_limit(others: Mapping[str, str]) -> int:
    """``$limit`` (default and maximum 50)."""
    text = others.get("$limit")
    if text is None:
        return MAX_LIMIT
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise problem(400, f"$limit must be a number between 1 and {MAX_LIMIT}")
    return int(text)


def _encode_cursor(direction: str, key: list[str]) -> str:
    """An opaque cursor for the page after (or before) ``key``."""
    raw = json.dumps({"d": direction, "k": key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(text: str, direction: str) -> list[str]:
    """The key a cursor points at; 400 when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        data = json.loads(raw)
        if data["d"] != direction or not isinstance(data["k"], list):
            raise ValueError(text)
        return [str(part) for part in data["k"]]
    except (ValueError, KeyError, TypeError):
        raise problem(400, "Invalid cursor") from None


def keyset_page(
    rows: list[Record], key: Callable[[Record], list[str]], others: Mapping[str, str]
) -> Record:
    """The ``results`` envelope of one page of ``rows`` (already filtered and sorted by key)."""
    limit = page_limit(others)
    if "$cursorNext" in others and "$cursorPrev" in others:
        raise problem(400, "Use either $cursorNext or $cursorPrev")
    indexed = list(enumerate(rows, start=1))
    if "$cursorPrev" in others:
        before = _decode_cursor(others["$cursorPrev"], "prev")
        earlier = [(i, row) for i, row in indexed if key(row) < before]
        chosen = earlier[-limit:]
    else:
        after = _decode_cursor(others["$cursorNext"], "next") if "$cursorNext" in others else None
        later = [(i, row) for i, row in indexed if after is None or key(row) > after]
        chosen = later[:limit]
    first = chosen[0][0] if chosen else 0
    last = chosen[-1][0] if chosen else 0
    return {
        "results": [row for _i, row in chosen],
        "cursorNext": _encode_cursor("next", key(chosen[-1][1])) if last < len(rows) else None,
        "cursorPrev": _encode_cursor("prev", key(chosen[0][1])) if first > 1 else None,
        "rangeStart": first,
        "rangeEnd": last,
    }


# ----- the booking store ---------------------------------------------------------------------


@dataclass(slots=True)
class OccurrenceEdit:
    """One occurrence of a series cancelled or moved on its own (UTC instants)."""

    start: datetime
    end: datetime
    cancelled: bool


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One expanded occurrence: which booking, where, whether it is off, its buffers."""

    booking: str
    resource: str
    start: datetime
    end: datetime
    cancelled: bool
    before: timedelta
    after: timedelta


@dataclass(slots=True)
class StoredBooking:
    """A booking as the emulator keeps it (UTC instants; ``start``/``end``: first instance)."""

    id: str
    resource: str
    start: datetime
    end: datetime
    rrule: str | None = None
    title: str = ""
    description: str = ""
    member: str | None = None
    company: str | None = None
    members: list[str] = field(default_factory=list)
    visitors: list[str] = field(default_factory=list)
    tentative: bool = False
    free: bool = False
    cancelled: bool = False
    before: float = 0
    after: float = 0
    source: str = "admin"
    created_at: datetime = datetime(1970, 1, 1, tzinfo=UTC)
    created_by: str = ""
    modified_at: datetime = datetime(1970, 1, 1, tzinfo=UTC)
    modified_by: str = ""
    edits: dict[datetime, OccurrenceEdit] = field(default_factory=dict)


def split_rule(rule: str) -> tuple[str, list[datetime]]:
    """The RRULE value and the EXDATE instants of a ``recurrence.rrule`` text; ValueError."""
    lines = [line.strip() for line in rule.strip().splitlines() if line.strip()]
    if not lines:
        raise ValueError("the rule is empty")
    first = lines[0]
    value = first[len("RRULE:"):] if first.upper().startswith("RRULE:") else first
    excluded: list[datetime] = []
    for line in lines[1:]:
        name, _sep, listed = line.partition(":")
        if name.strip().upper() != "EXDATE" or not listed:
            raise ValueError(f"only EXDATE lines may follow the RRULE, not {line!r}")
        for text in listed.split(","):
            try:
                instant = datetime.strptime(text.strip(), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            except ValueError:
                raise ValueError(f"EXDATE {text!r} is not a UTC date-time (…Z)") from None
            excluded.append(instant)
    return value, excluded


def compile_rule(rule: str, start: datetime, zone: ZoneInfo) -> rrule | rruleset:
    """The dateutil rule of a series starting at ``start``, on the resource's wall clock."""
    value, excluded = split_rule(rule)
    parts = dict(part.partition("=")[::2] for part in value.upper().split(";") if part)
    unknown = set(parts) - RULE_PARTS
    if unknown:
        raise ValueError(f"unsupported rule parts: {', '.join(sorted(unknown))}")
    if parts.get("FREQ") not in FREQUENCIES:
        raise ValueError("FREQ must be DAILY, WEEKLY or MONTHLY")
    if "UNTIL" in parts and not parts["UNTIL"].endswith("Z"):
        raise ValueError("UNTIL must be a UTC date-time (…Z)")
    if "UNTIL" in parts and "COUNT" in parts:
        raise ValueError("UNTIL and COUNT cannot both be given")
    compiled = rrulestr(value, dtstart=start.astimezone(zone))
    if not isinstance(compiled, rrule):
        raise ValueError("expected a single RRULE")
    if not excluded:
        return compiled
    series = rruleset()
    series.rrule(compiled)
    for instant in excluded:
        series.exdate(instant)
    return series


def is_bounded(rule: str) -> bool:
    """Whether a rule ends by itself."""
    value, _excluded = split_rule(rule)
    return any(part.split("=")[0] in ("COUNT", "UNTIL") for part in value.upper().split(";"))


def _wall_end(instant: datetime, zone: ZoneInfo, length: timedelta) -> datetime:
    """Where an unmodified occurrence starting at ``instant`` ends: same wall-clock length."""
    return (instant.astimezone(zone) + length).astimezone(UTC)


class OfficeRndData:
    """Locations, resources and bookings, with OfficeRnD's rules."""

    def __init__(self, clock: ProviderClock, org: str, seed: int) -> None:
        self.clock = clock
        self.org = org
        self.organization_id = f"{0x5FE2 + seed:04x}" + "0" * 20
        self.locations: dict[str, Record] = {}
        self.resources: dict[str, Record] = {}
        self.bookings: dict[str, StoredBooking] = {}
        self._ids = itertools.count(1)
        self._seed = seed

    def next_id(self) -> str:
        """A fresh 24-hex ObjectId; later ids sort after earlier ones."""
        return f"6650{self._seed % 0x10000:04x}{next(self._ids):016x}"

    # -- places

    def add_location(self, name: str, timezone: str) -> str:
        """Store a location in an IANA zone."""
        ZoneInfo(timezone)
        key = self.next_id()
        self.locations[key] = {"_id": key, "name": name, "timezone": timezone}
        return key

    def add_resource(self, name: str, location: str, timezone: str | None, kind: str) -> str:
        """Store a resource of a location (its zone: its own, else the location's)."""
        if location not in self.locations:
            raise ValueError(f"no location {location}")
        zone = timezone or self.locations[location]["timezone"]
        ZoneInfo(zone)
        key = self.next_id()
        self.resources[key] = {
            "_id": key,
            "name": name,
            "type": kind,
            "location": location,
            "timezone": zone,
        }
        return key

    def zone_of(self, resource: str) -> ZoneInfo:
        """The IANA zone of a resource."""
        return ZoneInfo(self.resources[resource]["timezone"])

    # -- expansion

    def rule_instants(
        self, booking: StoredBooking, start: datetime, end: datetime
    ) -> list[datetime]:
        """The booking's rule instants in [start, end), UTC (the first instance for a one-off)."""
        if booking.rrule is None:
            return [booking.start] if start <= booking.start < end else []
        rule = compile_rule(booking.rrule, booking.start, self.zone_of(booking.resource))
        found = rule.between(start, end, inc=True)
        return [instant.astimezone(UTC) for instant in found if instant < end]

    def occurrences(
        self, booking: StoredBooking, start: datetime, end: datetime
    ) -> list[Occurrence]:
        """The booking's occurrences overlapping [start, end), moved and cancelled ones included."""
        zone = self.zone_of(booking.resource)
        length = booking.end.astimezone(zone) - booking.start.astimezone(zone)
        longest = max(
            [booking.end - booking.start, *(e.end - e.start for e in booking.edits.values())]
        )
        spans: dict[datetime, tuple[datetime, datetime, bool]] = {}
        for instant in self.rule_instants(booking, start - longest - timedelta(hours=3), end):
            edit = booking.edits.get(instant)
            if edit is not None:
                spans[instant] = (edit.start, edit.end, edit.cancelled)
            else:
                spans[instant] = (instant, _wall_end(instant, zone, length), False)
        for instant, edit in booking.edits.items():
            spans.setdefault(instant, (edit.start, edit.end, edit.cancelled))
        return sorted(
            (
                Occurrence(
                    booking.id,
                    booking.resource,
                    span_start,
                    span_end,
                    cancelled or booking.cancelled,
                    timedelta(minutes=booking.before),
                    timedelta(minutes=booking.after),
                )
                for span_start, span_end, cancelled in spans.values()
                if span_start < end and span_end > start
            ),
            key=lambda o: (o.start, o.booking),
        )

    def series_end(self, booking: StoredBooking) -> datetime | None:
        """When the series' last occurrence ends; ``None`` for a rule without end."""
        if booking.rrule is None:
            return max([booking.end, *(e.end for e in booking.edits.values())])
        if not is_bounded(booking.rrule):
            return None
        zone = self.zone_of(booking.resource)
        rule = compile_rule(booking.rrule, booking.start, zone)
        length = booking.end.astimezone(zone) - booking.start.astimezone(zone)
        last = booking.start
        for instant in itertools.islice(rule, MAX_SERIES_INSTANTS):
            last = instant
        ends = [_wall_end(last, zone, length), *(e.end for e in booking.edits.values())]
        return max(ends)

    # -- rendering

    def render(self, booking: StoredBooking) -> Record:
        """A booking as the v2 API returns it."""
        end = self.series_end(booking)
        return {
            "_id": booking.id,
            "organization": self.organization_id,
            "title": booking.title,
            "description": booking.description,
            "start": format_instant(booking.start),
            "end": format_instant(booking.end),
            "timezone": self.resources[booking.resource]["timezone"],
            "resource": booking.resource,
            "member": booking.member,
            "company": booking.company,
            "members": list(booking.members),
            "visitors": list(booking.visitors),
            "isCancelled": booking.cancelled,
            "tentative": booking.tentative,
            "free": booking.free,
            "serviceSlots": {"before": booking.before, "after": booking.after},
            "recurrence": {"rrule": booking.rrule},
            "seriesStart": format_instant(booking.start),
            "seriesEnd": None if end is None else format_instant(end),
            "source": booking.source,
            "createdAt": format_instant(booking.created_at),
            "createdBy": booking.created_by,
            "modifiedAt": format_instant(booking.modified_at),
            "modifiedBy": booking.modified_by,
        }

    def filter_values(self, booking: StoredBooking) -> Record:
        """The values booking filters compare against."""
        return {
            "_id": booking.id,
            "resource": booking.resource,
            "member": booking.member,
            "company": booking.company,
            "isCancelled": booking.cancelled,
            "tentative": booking.tentative,
            "createdAt": booking.created_at,
            "modifiedAt": booking.modified_at,
            "seriesStart": booking.start,
            "seriesEnd": self.series_end(booking),
        }

    @staticmethod
    def render_occurrence(occurrence: Occurrence) -> Record:
        """One ``/bookings/occurrences`` item."""
        return {
            "bookingId": occurrence.booking,
            "resource": occurrence.resource,
            "start": {"dateTime": format_instant(occurrence.start)},
            "end": {"dateTime": format_instant(occurrence.end)},
            "canceled": occurrence.cancelled,
        }

    def booking_or_404(self, booking_id: str) -> StoredBooking:
        """A stored booking, or 404."""
        booking = self.bookings.get(booking_id)
        if booking is None:
            raise problem(404, f"Booking {booking_id} not found")
        return booking

    # -- writes

    def insert(self, booking: StoredBooking, user: str) -> StoredBooking:
        """Store a new booking under a fresh id, stamped now."""
        now = self.clock.now()
        booking.id = self.next_id()
        booking.created_at = booking.modified_at = now
        booking.created_by = booking.modified_by = user
        self.bookings[booking.id] = booking
        return booking

    def touch(self, booking: StoredBooking, user: str) -> None:
        """Record a change: ``modifiedAt`` moves to now."""
        booking.modified_at = self.clock.now()
        booking.modified_by = user

    def conflicts(self, candidate: StoredBooking) -> list[str]:
        """Why the booking policy refuses ``candidate``: each slot it meets within a year.

        Both sides are widened by their service slots; the messages name the taken slot in
        the resource's zone, never who booked it.
        """
        start = candidate.start - timedelta(days=1)
        end = candidate.start + AVAILABILITY_HORIZON
        mine = [o for o in self.occurrences(candidate, start, end) if not o.cancelled]
        zone = self.zone_of(candidate.resource)
        found: list[str] = []
        for other in self.bookings.values():
            if other.id == candidate.id or other.resource != candidate.resource or other.cancelled:
                continue
            theirs = [o for o in self.occurrences(other, start, end) if not o.cancelled]
            for taken in theirs:
                if any(_blocked_overlap(wanted, taken) for wanted in mine):
                    found.append(_unavailable(taken, zone))
        return sorted(set(found))

    def refuse_conflicts(self, candidate: StoredBooking) -> None:
        """409 when the booking policy refuses ``candidate`` (see :meth:`conflicts`)."""
        found = self.conflicts(candidate)
        if found:
            raise problem(409, found[0])


def _blocked_overlap(a: Occurrence, b: Occurrence) -> bool:
    """Whether two occurrences overlap once widened by their service slots."""
    return a.start - a.before < b.end + b.after and b.start - b.before < a.end + a.after


def _unavailable(taken: Occurrence, zone: ZoneInfo) -> str:
    """The policy's refusal for one taken slot, in the resource's zone."""
    start, end = taken.start.astimezone(zone), taken.end.astimezone(zone)
    slots = " (with its service slots)" if taken.before or taken.after else ""
    return (
        "The resource is not available for the selected time: it is booked "
        f"{start:%Y-%m-%d %H:%M}\u2013{end:%H:%M}{slots}"
    )


# ----- request bodies --------------------------------------------------------------------------


def booking_from_body(
    data: OfficeRndData, body: Mapping[str, Any], base: StoredBooking | None
) -> StoredBooking:
    """A booking from a create body (``base`` None) or an update body over ``base``; 400s."""
    problems = [
        f"property {name} should not exist"
        for name in body
        if name not in WRITABLE_FIELDS and name not in READ_ONLY_FIELDS
    ]
    problems += [
        f"{name} has the wrong type"
        for name, value in body.items()
        if name in WRITABLE_FIELDS and not isinstance(value, WRITABLE_FIELDS[name])
    ]
    if base is None:
        problems += [
            f"{name} should not be empty"
            for name in ("resource", "start", "end")
            if not body.get(name)
        ]
        if not body.get("member") and not body.get("company"):
            problems.append("member or company must be given")
    if problems:
        raise problem(400, *problems)
    booking = (
        replace(base, edits=dict(base.edits)) if base else StoredBooking("", "", _EPOCH, _EPOCH)
    )
    _apply_fields(data, booking, body)
    if base is not None and (
        (booking.start, booking.end, booking.rrule) != (base.start, base.end, base.rrule)
    ):
        booking.edits = {}
    return booking


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _apply_fields(data: OfficeRndData, booking: StoredBooking, body: Mapping[str, Any]) -> None:
    """Copy the writable fields of ``body`` onto ``booking``, validating each."""
    if "resource" in body:
        if body["resource"] not in data.resources:
            raise problem(400, "resource must reference an existing resource")
        booking.resource = body["resource"]
    for name in ("start", "end"):
        if name in body:
            try:
                setattr(booking, name, parse_instant(body[name]))
            except ValueError:
                raise problem(400, f"{name} must be a valid ISO 8601 date-time") from None
    if booking.end <= booking.start:
        raise problem(400, "end must be after start")
    for name in ("title", "description", "member", "company", "tentative", "free", "source"):
        if name in body:
            setattr(booking, name, body[name])
    for name in ("members", "visitors"):
        if name in body:
            setattr(booking, name, [str(item) for item in body[name]])
    if "serviceSlots" in body:
        booking.before, booking.after = _service_slots(body["serviceSlots"])
    if "recurrence" in body:
        booking.rrule = _rule_of(body["recurrence"])
    if booking.rrule is not None:
        try:
            compile_rule(booking.rrule, booking.start, data.zone_of(booking.resource))
        except ValueError as exc:
            raise problem(400, f"recurrence.rrule is invalid: {exc}") from None


def _service_slots(value: Mapping[str, Any]) -> tuple[float, float]:
    """``serviceSlots.before/after``: non-negative minutes."""
    slots = []
    for name in ("before", "after"):
        minutes = value.get(name, 0)
        if (
            isinstance(minutes, bool)
            or not isinstance(minutes, int | float)
            or not math.isfinite(minutes)
            or minutes < 0
        ):
            raise problem(400, f"serviceSlots.{name} must be a non-negative number")
        slots.append(minutes)
    return slots[0], slots[1]


def _rule_of(value: Mapping[str, Any] | None) -> str | None:
    """``recurrence.rrule`` (null or empty: not recurring)."""
    if value is None:
        return None
    rule = value.get("rrule")
    if rule is None or rule == "":
        return None
    if not isinstance(rule, str):
        raise problem(400, "recurrence.rrule must be a string")
    return rule.removeprefix("RRULE:")


def _json_body(raw: bytes) -> Record:
    """A JSON object request body, or 400."""
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise problem(400, "The request body must be a JSON object")
    return body


# ----- webhooks --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """A webhook the emulator would have sent: its type, raw body and signature header."""

    event_type: str
    body: bytes
    signature: str

    @property
    def headers(self) -> dict[str, str]:
        """The headers it would carry."""
        return {"Content-Type": "application/json", SIGNATURE_HEADER: self.signature}


# ----- HTTP --------------------------------------------------------------------------------------


def _throttled(plan: FaultPlan) -> Response:
    """OfficeRnD's throttle: 429 with Retry-After."""
    headers = {"Retry-After": str(plan.retry_after)}
    body = {"statusCode": 429, "message": "ThrottlerException: Too Many Requests"}
    return JSONResponse(body, status_code=429, headers=headers)


def _server_failed() -> Response:
    """OfficeRnD's 500 body."""
    return JSONResponse({"statusCode": 500, "message": "Internal server error"}, status_code=500)


class OfficeRndEmulator:
    """The emulator: a Starlette app over :class:`OfficeRndData`, plus the test controls."""

    def __init__(
        self,
        *,
        org: str = "acme",
        now: datetime | None = None,
        clock: Callable[[], datetime] | None = None,
        seed: int = 0,
        behaviour: Behaviour | None = None,
        webhook_secret: str | None = None,
    ) -> None:
        self.clock = ProviderClock(now, source=clock)
        self.behaviour = behaviour or Behaviour()
        self.data = OfficeRndData(self.clock, org, seed)
        self.accounts = Accounts(self.clock, self.behaviour)
        self.faults = FaultInjector()
        self.requests: list[RecordedRequest] = []
        self.webhooks: list[WebhookEvent] = []
        self.webhook_secret = webhook_secret or secrets.token_hex(16)
        self._lock = threading.RLock()
        self._routes = self._build_routes()
        self.app: ASGIApp = FaultMiddleware(
            Starlette(routes=self._routes), self, throttle=_throttled, server_error=_server_failed
        )

    def __repr__(self) -> str:
        return (
            f"OfficeRndEmulator(org={self.data.org!r}, bookings={len(self.data.bookings)}, "
            f"resources={len(self.data.resources)})"
        )

    @property
    def org(self) -> str:
        """The organisation slug the API answers for."""
        return self.data.org

    # ----- test controls: accounts, places, clock, faults ----------------------------------

    def add_application(
        self, client_id: str, client_secret: str, scopes: Iterable[str] = ALL_SCOPES
    ) -> None:
        """Register an API application (Settings → API Access) with the scopes it was granted."""
        with self._lock:
            self.accounts.applications[client_id] = (client_secret, frozenset(scopes))

    def add_location(self, name: str, *, timezone: str = "Europe/London") -> str:
        """Seed a location in an IANA zone; returns its id."""
        with self._lock:
            return self.data.add_location(name, timezone)

    def add_resource(
        self,
        name: str,
        *,
        location: str,
        timezone: str | None = None,
        kind: str = "meeting_room",
    ) -> str:
        """Seed a resource (room) of a location; returns its id."""
        with self._lock:
            return self.data.add_resource(name, location, timezone, kind)

    def set_behaviour(self, **changes: Any) -> None:
        """Change some :class:`Behaviour` choices from now on."""
        with self._lock:
            self.behaviour = replace(self.behaviour, **changes)
            self.accounts.behaviour = self.behaviour

    def set_clock(self, instant: datetime) -> None:
        """Move the emulator's clock to ``instant``."""
        self.clock.set(instant)

    def advance_clock(self, delta: timedelta) -> None:
        """Move the emulator's clock forward."""
        self.clock.advance(delta)

    def expire_tokens(self) -> None:
        """Invalidate every access token now."""
        with self._lock:
            self.accounts.tokens.clear()

    def expire_tokens_after(self, requests: int) -> None:
        """Invalidate every token once ``requests`` more API requests have been answered."""
        with self._lock:
            self.accounts.expire_after = requests

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

    def tokens_issued(self) -> int:
        """How many access tokens the token endpoint handed out."""
        with self._lock:
            return sum(self.accounts.issued.values())

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

    # ----- test controls: bookings, as an admin in the OfficeRnD UI -------------------------

    def seed_booking(
        self,
        resource: str,
        start: datetime,
        end: datetime,
        *,
        rrule: str | None = None,
        title: str = "",
        description: str = "",
        before: float = 0,
        after: float = 0,
        tentative: bool = False,
        member: str | None = None,
        company: str | None = "company-1",
        user: str = "admin",
    ) -> str:
        """Create a booking (a series with ``rrule``) without availability checks; its id."""
        with self._lock:
            if resource not in self.data.resources:
                raise ValueError(f"no resource {resource}")
            booking = StoredBooking(
                "",
                resource,
                _utc(start),
                _utc(end),
                rrule=rrule,
                title=title,
                description=description,
                member=member,
                company=company,
                tentative=tentative,
                before=before,
                after=after,
            )
            if rrule is not None:
                compile_rule(rrule, booking.start, self.data.zone_of(resource))
            self.data.insert(booking, user)
            self._emit("booking.created", booking)
            return booking.id

    def edit_booking(self, booking_id: str, *, user: str = "admin", **changes: Any) -> None:
        """Change a booking as an admin would.

        ``changes`` use the emulator's field names: ``start``/``end`` (aware datetimes),
        ``rrule``, ``title``, ``description``, ``tentative``, ``before``/``after`` (minutes),
        ``resource``, ``member``, ``company``. Changing start, end or rule drops the
        per-occurrence edits.
        """
        with self._lock:
            booking = self.data.booking_or_404(booking_id)
            for name in ("start", "end"):
                if name in changes:
                    changes[name] = _utc(changes[name])
            timing = (booking.start, booking.end, booking.rrule)
            for name, value in changes.items():
                if name not in _EDITABLE:
                    raise ValueError(f"{name} cannot be edited")
                setattr(booking, name, value)
            if booking.end <= booking.start:
                raise ValueError("end must be after start")
            if (booking.start, booking.end, booking.rrule) != timing:
                booking.edits = {}
            self.data.touch(booking, user)
            self._emit("booking.updated", booking)

    def cancel_booking(self, booking_id: str, *, user: str = "admin") -> None:
        """Cancel a booking as an admin would: it stays, marked cancelled."""
        with self._lock:
            booking = self.data.booking_or_404(booking_id)
            if not booking.cancelled:
                booking.cancelled = True
                self.data.touch(booking, user)
                self._emit("booking.updated", booking)

    def delete_booking(self, booking_id: str) -> None:
        """Delete a booking for good, as an admin would."""
        with self._lock:
            booking = self.data.bookings.pop(booking_id)
            self._emit("booking.removed", booking)

    def cancel_occurrence(self, booking_id: str, instant: datetime, *, user: str = "admin") -> None:
        """Cancel one occurrence of a series ("only this booking"); ``instant``: its rule start."""
        with self._lock:
            booking, rule_instant = self._occurrence_of(booking_id, instant)
            start, end = self._current_span(booking, rule_instant)
            booking.edits[rule_instant] = OccurrenceEdit(start, end, cancelled=True)
            self._occurrence_edited(booking, user)

    def move_occurrence(
        self,
        booking_id: str,
        instant: datetime,
        start: datetime,
        end: datetime,
        *,
        user: str = "admin",
    ) -> None:
        """Move one occurrence of a series to [start, end)."""
        with self._lock:
            booking, rule_instant = self._occurrence_of(booking_id, instant)
            if _utc(end) <= _utc(start):
                raise ValueError("end must be after start")
            booking.edits[rule_instant] = OccurrenceEdit(_utc(start), _utc(end), cancelled=False)
            self._occurrence_edited(booking, user)

    def _occurrence_of(self, booking_id: str, instant: datetime) -> tuple[StoredBooking, datetime]:
        """The series and one of its rule instants, checked."""
        booking = self.data.booking_or_404(booking_id)
        moment = _utc(instant)
        if booking.rrule is None:
            raise ValueError("only a series has occurrences of its own")
        if moment not in self.data.rule_instants(booking, moment, moment + timedelta(seconds=1)):
            raise ValueError(f"{moment.isoformat()} is not an occurrence of {booking_id}")
        return booking, moment

    def _current_span(self, booking: StoredBooking, instant: datetime) -> tuple[datetime, datetime]:
        """Where the occurrence of ``instant`` is now."""
        edit = booking.edits.get(instant)
        if edit is not None:
            return edit.start, edit.end
        zone = self.data.zone_of(booking.resource)
        length = booking.end.astimezone(zone) - booking.start.astimezone(zone)
        return instant, _wall_end(instant, zone, length)

    def _occurrence_edited(self, booking: StoredBooking, user: str) -> None:
        """Apply the configured answer to "does an occurrence edit touch its series?"."""
        if self.behaviour.occurrence_edits_touch_master:
            self.data.touch(booking, user)
            self._emit("booking.updated", booking)

    # ----- test controls: reading the truth ------------------------------------------------

    def booking(self, booking_id: str) -> Record:
        """One booking as the API renders it."""
        with self._lock:
            return self.data.render(self.data.booking_or_404(booking_id))

    def bookings(self) -> list[Record]:
        """Every booking (cancelled ones included) as the API renders them, by id."""
        with self._lock:
            return [self.data.render(b) for _, b in sorted(self.data.bookings.items())]

    def rule_instants(self, booking_id: str, start: datetime, end: datetime) -> list[datetime]:
        """The rule instants (UTC) of a booking in [start, end): what occurrence edits name."""
        with self._lock:
            booking = self.data.booking_or_404(booking_id)
            return self.data.rule_instants(booking, _utc(start), _utc(end))

    def live_occurrences(self, resource: str, start: datetime, end: datetime) -> list[Occurrence]:
        """The live occurrences of a resource's bookings overlapping [start, end)."""
        with self._lock:
            return [
                occurrence
                for booking in self.data.bookings.values()
                if booking.resource == resource and not booking.cancelled
                for occurrence in self.data.occurrences(booking, _utc(start), _utc(end))
                if not occurrence.cancelled
            ]

    def _emit(self, event_type: str, booking: StoredBooking) -> None:
        """Queue the webhook a change would send, signed per the configured order."""
        now = self.clock.now()
        payload = {
            "event": self.data.next_id(),
            "eventType": event_type,
            "data": {"object": self.data.render(booking)},
            "createdAt": format_instant(now),
        }
        body = json.dumps(payload, separators=(",", ":")).encode()
        signature = webhook_signature(
            self.webhook_secret,
            body,
            int(now.timestamp()),
            order=self.behaviour.signature_order,
        )
        self.webhooks.append(WebhookEvent(event_type, body, signature))

    # ----- HTTP handlers -------------------------------------------------------------------

    def _build_routes(self) -> list[Route]:
        """The routes of the v2 API the emulator implements."""
        prefix = API_PREFIX
        return [
            Route(TOKEN_PATH, self._token, methods=["POST"]),
            Route(f"{prefix}/bookings", self._bookings, methods=["GET", "POST"]),
            Route(f"{prefix}/bookings/occurrences", self._occurrences, methods=["GET"]),
            Route(f"{prefix}/bookings/validate", self._validate, methods=["POST"]),
            Route(
                f"{prefix}/bookings/{{booking_id}}", self._booking, methods=["GET", "PUT", "DELETE"]
            ),
            Route(f"{prefix}/bookings/{{booking_id}}/cancel", self._cancel, methods=["POST"]),
            Route(f"{prefix}/resources", self._resources, methods=["GET"]),
            Route(f"{prefix}/resources/{{item_id}}", self._resource, methods=["GET"]),
            Route(f"{prefix}/locations", self._locations, methods=["GET"]),
            Route(f"{prefix}/locations/{{item_id}}", self._location, methods=["GET"]),
        ]

    async def _token(self, request: Request) -> Response:
        """``POST /oauth/token`` (form-encoded client credentials)."""
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        with self._lock:
            return self._answer(lambda: self.accounts.token_reply(form))

    def _authorised(self, request: Request, scope: str) -> str:
        """The caller's application, after checking the organisation and the token's scope."""
        if request.path_params.get("org") != self.data.org:
            raise problem(404, "Organization not found")
        return self.accounts.authorise(request.headers.get("Authorization"), scope)

    async def _bookings(self, request: Request) -> Response:
        """``GET``/``POST /bookings``."""
        raw = await request.body() if request.method == "POST" else b""
        with self._lock:
            if request.method == "GET":
                return self._answer(lambda: self._list_bookings(request))
            return self._answer(lambda: self._create(request, raw), status=201)

    def _list_bookings(self, request: Request) -> Record:
        """One page of bookings (series masters only)."""
        self._authorised(request, SCOPE_READ)
        conditions, others = parse_filters(request.query_params.multi_items(), BOOKING_FILTERS)
        chosen = [
            booking
            for _id, booking in sorted(self.data.bookings.items())
            if all(c.accepts(self.data.filter_values(booking).get(c.name)) for c in conditions)
        ]
        rows = [self.data.render(booking) for booking in chosen]
        return keyset_page(rows, lambda row: [row["_id"]], others)

    def _create(self, request: Request, raw: bytes) -> Record:
        """``POST /bookings``."""
        user = self._authorised(request, SCOPE_CREATE)
        booking = booking_from_body(self.data, _json_body(raw), None)
        self.data.refuse_conflicts(booking)
        self.data.insert(booking, user)
        self._emit("booking.created", booking)
        return self.data.render(booking)

    async def _validate(self, request: Request) -> Response:
        """``POST /bookings/validate``: whether a create body would be accepted."""
        raw = await request.body()
        with self._lock:

            def verdict() -> Record:
                self._authorised(request, SCOPE_VALIDATE)
                booking = booking_from_body(self.data, _json_body(raw), None)
                errors = self.data.conflicts(booking)
                return {"valid": not errors, "errors": errors}

            return self._answer(verdict)

    async def _occurrences(self, request: Request) -> Response:
        """``GET /bookings/occurrences``."""
        with self._lock:
            return self._answer(lambda: self._list_occurrences(request))

    def _list_occurrences(self, request: Request) -> Record:
        """One page of occurrences overlapping the requested period."""
        self._authorised(request, SCOPE_READ)
        conditions, others = parse_filters(
            request.query_params.multi_items(), OCCURRENCE_FILTERS, extra=("start", "end")
        )
        start, end = self._period(others)
        flags = [c for c in conditions if c.name == "canceled"]
        items: list[Record] = []
        for booking in self.data.bookings.values():
            values = {
                "resource": booking.resource,
                "booking": booking.id,
                "member": booking.member,
                "company": booking.company,
            }
            if not all(c.accepts(values.get(c.name)) for c in conditions if c.name != "canceled"):
                continue
            for occurrence in self.data.occurrences(booking, start, end):
                if all(c.accepts(occurrence.cancelled) for c in flags):
                    items.append(self.data.render_occurrence(occurrence))
        items.sort(key=_occurrence_key)
        return keyset_page(items, _occurrence_key, others)

    def _period(self, others: Mapping[str, str]) -> tuple[datetime, datetime]:
        """The ``start``/``end`` period of an occurrences query, validated."""
        try:
            start, end = parse_instant(others["start"]), parse_instant(others["end"])
        except KeyError:
            raise problem(400, "start and end are required") from None
        except ValueError:
            raise problem(400, "start and end must be ISO 8601 date-times") from None
        if end <= start:
            raise problem(400, "end must be after start")
        if end - start > self.behaviour.max_occurrence_period:
            raise problem(400, "The period cannot be longer than one year; page through it")
        return start, end

    async def _booking(self, request: Request) -> Response:
        """``GET``/``PUT``/``DELETE /bookings/{id}``."""
        raw = await request.body() if request.method == "PUT" else b""
        booking_id = request.path_params["booking_id"]
        with self._lock:
            if request.method == "GET":

                def read() -> Record:
                    self._authorised(request, SCOPE_READ)
                    return self.data.render(self.data.booking_or_404(booking_id))

                return self._answer(read)
            if request.method == "PUT":
                return self._answer(lambda: self._update(request, booking_id, raw))
            return self._answer(lambda: self._delete(request, booking_id))

    def _update(self, request: Request, booking_id: str, raw: bytes) -> Record:
        """``PUT /bookings/{id}``: the named fields change, the rest stays."""
        user = self._authorised(request, SCOPE_UPDATE)
        current = self.data.booking_or_404(booking_id)
        if current.cancelled:
            raise problem(400, "Canceled bookings cannot be updated")
        changed = booking_from_body(self.data, _json_body(raw), current)
        self.data.refuse_conflicts(changed)
        self.data.touch(changed, user)
        self.data.bookings[booking_id] = changed
        self._emit("booking.updated", changed)
        return self.data.render(changed)

    def _delete(self, request: Request, booking_id: str) -> Record:
        """``DELETE /bookings/{id}``: gone for good."""
        self._authorised(request, SCOPE_DELETE)
        booking = self.data.booking_or_404(booking_id)
        del self.data.bookings[booking_id]
        self._emit("booking.removed", booking)
        return {"_id": booking_id, "deleted": True}

    async def _cancel(self, request: Request) -> Response:
        """``POST /bookings/{id}/cancel?isSilent=&skipCancellationPolicy=``."""
        booking_id = request.path_params["booking_id"]
        with self._lock:

            def cancel() -> Record:
                user = self._authorised(request, SCOPE_CANCEL)
                _conditions, _others = parse_filters(
                    request.query_params.multi_items(),
                    {},
                    extra=("isSilent", "skipCancellationPolicy"),
                )
                booking = self.data.booking_or_404(booking_id)
                if not booking.cancelled:
                    booking.cancelled = True
                    self.data.touch(booking, user)
                    self._emit("booking.updated", booking)
                return self.data.render(booking)

            return self._answer(cancel)

    async def _resources(self, request: Request) -> Response:
        """``GET /resources``."""
        return self._table_page(request, self.data.resources, RESOURCE_FILTERS, SCOPE_RESOURCES)

    async def _resource(self, request: Request) -> Response:
        """``GET /resources/{id}``."""
        return self._table_item(request, self.data.resources, "Resource", SCOPE_RESOURCES)

    async def _locations(self, request: Request) -> Response:
        """``GET /locations``."""
        return self._table_page(request, self.data.locations, LOCATION_FILTERS, SCOPE_LOCATIONS)

    async def _location(self, request: Request) -> Response:
        """``GET /locations/{id}``."""
        return self._table_item(request, self.data.locations, "Location", SCOPE_LOCATIONS)

    def _table_page(
        self, request: Request, table: Mapping[str, Record], known: Mapping[str, str], scope: str
    ) -> Response:
        """A list endpoint over a plain table."""
        with self._lock:

            def page() -> Record:
                self._authorised(request, scope)
                conditions, others = parse_filters(request.query_params.multi_items(), known)
                rows = [
                    dict(row)
                    for _id, row in sorted(table.items())
                    if all(c.accepts(row.get(c.name)) for c in conditions)
                ]
                return keyset_page(rows, lambda row: [row["_id"]], others)

            return self._answer(page)

    def _table_item(
        self, request: Request, table: Mapping[str, Record], kind: str, scope: str
    ) -> Response:
        """A get-one endpoint over a plain table."""
        with self._lock:

            def item() -> Record:
                self._authorised(request, scope)
                row = table.get(request.path_params["item_id"])
                if row is None:
                    raise problem(404, f"{kind} not found")
                return dict(row)

            return self._answer(item)

    @staticmethod
    def _answer(reply: Callable[[], Record], *, status: int = 200) -> Response:
        """JSON of ``reply()``, or the error reply of the ApiProblem it raised."""
        try:
            return JSONResponse(reply(), status_code=status)
        except ApiProblem as error:
            return error.response()


#: Fields :meth:`OfficeRndEmulator.edit_booking` may change.
_EDITABLE = frozenset(
    {
        "start",
        "end",
        "rrule",
        "title",
        "description",
        "tentative",
        "before",
        "after",
        "resource",
        "member",
        "company",
        "free",
    }
)


def _occurrence_key(item: Record) -> list[str]:
    """Sort and cursor key of an occurrence item: its start, then its booking."""
    return [item["start"]["dateTime"], item["bookingId"]]


def _utc(instant: datetime) -> datetime:
    """An aware instant in UTC, to the millisecond."""
    if instant.tzinfo is None:
        raise ValueError("booking times must be aware")
    utc = instant.astimezone(UTC)
    return utc.replace(microsecond=utc.microsecond // 1000 * 1000)


# ----- running it by hand ------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``python -m bridge.emulators.officernd --port N``: serve a small emulator until Ctrl-C.

    The application's id and secret come from ``ORND_ID`` / ``ORND_SECRET``, the variables a
    bridge config would reference, so they never appear on a command line.
    """
    import uvicorn

    parser = argparse.ArgumentParser(description="Serve the OfficeRnD v2 API emulator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8182)
    parser.add_argument("--org", default="acme")
    args = parser.parse_args(argv)
    client_id = os.environ.get("ORND_ID", "roombridge")
    client_secret = os.environ.get("ORND_SECRET")
    if not client_secret:
        parser.error("set ORND_SECRET to the client secret the emulator should accept")
    emulator = OfficeRndEmulator(org=args.org)
    emulator.add_application(client_id, client_secret)
    location = emulator.add_location("Demo Space", timezone="Europe/London")
    room = emulator.add_resource("Meeting Room", location=location)
    base = f"http://{args.host}:{args.port}"
    print(f"OfficeRnD emulator: base_url = {base}, token_url = {base}{TOKEN_PATH}")
    print(f"org = {args.org}, resource = {room} (client id {client_id})")
    uvicorn.run(emulator.app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
