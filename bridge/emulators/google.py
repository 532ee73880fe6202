"""A strict, in-memory emulator of the Google Calendar API v3 and Google's OAuth token endpoint.

It answers like Google (shared/reference/calendars.md §1.11) on the routes the bridge uses,
under ``/calendar/v3/``: ``calendars.get``; ``events`` ``list`` / ``get`` / ``insert`` /
``update`` / ``patch`` / ``delete`` / ``instances`` / ``import`` / ``watch``; ``channels.stop``;
and ``POST /token``, the service-account JWT grant, which verifies the assertion's RS256
signature against the key it issued and its claims (``iss``, ``sub``, ``aud``, ``scope``,
``exp``, ``iat``). What it reproduces, strictly:

- sync tokens over a per-calendar change log with tombstones; ``nextPageToken`` and
  ``nextSyncToken`` mutually exclusive, the token only on the last page; ``maxResults``
  (default 250, clamped to 2,500) and optionally short or empty pages; ``410 fullSyncRequired``
  for expired or invalidated tokens; ``400`` for a sync token combined with a restriction;
- client ids (``[a-v0-9]{5,1024}``, else ``400 invalid``) and ``409 duplicate``, also for ids
  of deleted events; ``etag`` changing on every write; ``If-Match`` → ``412 conditionNotMet``;
  ``DELETE`` → 204, again → ``410 deleted``; ``GET`` of a deleted event → 200 ``cancelled``;
- recurrence (RRULE, RDATE, EXDATE, EXRULE in ``start.timeZone``, RFC 5545: DTSTART is the
  first instance) expanded for ``singleEvents`` and ``instances`` (``timeMin`` inclusive,
  ``originalStart``); instance ids ``<id>_<YYYYMMDDTHHMMSSZ>``; exceptions with
  ``recurringEventId`` and ``originalStartTime``; cancelled exceptions listed (minimal) when
  ``singleEvents`` and ``showDeleted`` are both false;
- ``update`` replaces (missing extended properties removed), ``patch`` merges (``null``
  deletes a key, arrays replaced); extended property keys over 44 characters dropped, values
  over 1,024 characters truncated; list filters on them;
- resource attendees: a room calendar added with ``auto_accept`` answers invitations on the
  next request (accepted when free — the event is copied into the room calendar — declined
  when busy), bumping the organizer's event; the room may later decline by patching its own
  ``responseStatus``/``comment`` and private extended properties on its copy (``patch``);
  other changes to a copy, shared properties and any ``update`` (PUT) of a copy are ``403
  forbiddenForNonOrganizer`` (the reference: "use patch");
- error bodies in Google's exact shape; the per-user quota (600 requests per minute, sliding
  window, ``403 userRateLimitExceeded``); injected faults (403 rate limits, 429 with
  ``Retry-After``, 500, 503, hung requests, replies lost after the write was applied, 401);
  request counters per route.

Where Google is silent the emulator picks one reading and says so here:

- a sync token issued for other list parameters (``singleEvents``, ``showDeleted``...) is
  answered ``410 fullSyncRequired``;
- an exception whose instance a master update removes (new rule, new start) is deleted and
  shows in incremental sync as a bare ``{"id", "status": "cancelled"}``;
- updating a deleted event restores it (Google allows undeleting on the organizer's calendar);
- an event's ``iCalUID`` is ``<id>@google.com``; ``sequence`` grows when times or recurrence
  change; ``fields`` (partial responses) is accepted and ignored; there is no batch endpoint.

Tests drive it through a Python API: add users, service accounts and calendars, seed and edit
events as a person in the Google UI would, invalidate sync tokens, expire access tokens, inject
faults and read the request log.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import hashlib
import json
import random
import re
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from dateutil.rrule import rrule, rrulestr
from google.auth import exceptions as auth_exceptions
from google.auth import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bridge.emulators.server import RunningServer, serve_in_thread

Json = dict[str, Any]

API_PREFIX = "/calendar/v3"
TOKEN_PATH = "/token"
#: The audience google-auth puts in every service-account assertion, whatever ``token_uri`` is.
TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CALENDAR_SCOPE = "https://www.googleapis.com/auth/calendar"
WRITE_SCOPES = frozenset({CALENDAR_SCOPE, "https://www.googleapis.com/auth/calendar.events"})
READ_SCOPES = WRITE_SCOPES | {
    "https://www.googleapis.com/auth/calendar.readonly",
    "https://www.googleapis.com/auth/calendar.events.readonly",
}

DEFAULT_PAGE_SIZE = 250
MAX_PAGE_SIZE = 2500
MAX_KEY_LENGTH = 44
MAX_VALUE_LENGTH = 1024
#: How many instances an unbounded series is expanded to (and how far, from its start).
MAX_INSTANCES = 1000
EXPANSION_HORIZON = timedelta(days=3 * 366)
DEFAULT_TOKEN_LIFETIME = timedelta(hours=1)
#: How long deleted events are remembered for ``updatedMin`` reads.
TOMBSTONE_RETENTION = timedelta(days=28)
DEFAULT_QUOTA = 600
QUOTA_WINDOW = 60.0

EVENT_ID = re.compile(r"[a-v0-9]{5,1024}")
SYNC_TOKEN_RESTRICTIONS = (
    "iCalUID",
    "orderBy",
    "privateExtendedProperty",
    "q",
    "sharedExtendedProperty",
    "timeMin",
    "timeMax",
    "updatedMin",
)
#: List parameters a sync token remembers: a token is only good for the same ones.
TOKEN_BOUND_PARAMETERS = ("singleEvents", "showDeleted", "eventTypes", "showHiddenInvitations")
WRITABLE_FIELDS = (
    "summary",
    "description",
    "location",
    "start",
    "end",
    "status",
    "transparency",
    "visibility",
    "recurrence",
    "attendees",
    "extendedProperties",
    "reminders",
    "colorId",
    "guestsCanModify",
    "guestsCanInviteOthers",
    "guestsCanSeeOtherGuests",
    "sequence",
    "source",
    "attachments",
    "conferenceData",
    "anyoneCanAddSelf",
    "locked",
)
#: What an attendee may change on their own copy of someone else's event.
ATTENDEE_FIELDS = frozenset({"attendees", "extendedProperties", "reminders", "colorId"})


# ----- errors ----------------------------------------------------------------------------------


class ApiError(Exception):
    """An error reply in Google's shape: ``{"error": {"errors": [...], "code", "message"}}``."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        *,
        domain: str = "global",
        location: str | None = None,
        location_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.domain = domain
        self.location = location
        self.location_type = location_type
        self.headers = dict(headers or {})

    def body(self) -> Json:
        """The JSON error body."""
        item: Json = {"domain": self.domain, "reason": self.reason, "message": self.message}
        if self.location_type:
            item["locationType"] = self.location_type
        if self.location:
            item["location"] = self.location
        return {"error": {"errors": [item], "code": self.status, "message": self.message}}

    def response(self) -> Response:
        """The HTTP reply."""
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def not_found() -> ApiError:
    """404 for an unknown (or invisible) calendar or event."""
    return ApiError(404, "notFound", "Not Found")


def invalid(message: str, location: str | None = None) -> ApiError:
    """400 ``invalid``."""
    return ApiError(
        400, "invalid", message, location=location, location_type="parameter" if location else None
    )


def required(message: str) -> ApiError:
    """400 ``required`` (a missing field)."""
    return ApiError(400, "required", message)


def auth_error() -> ApiError:
    """401 for a missing, unknown or expired access token."""
    return ApiError(
        401,
        "authError",
        "Invalid Credentials",
        location="Authorization",
        location_type="header",
        headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
    )


def rate_limited(reason: str, status: int = 403, retry_after: int | None = None) -> ApiError:
    """403/429 ``usageLimits`` errors."""
    messages = {
        "rateLimitExceeded": "Rate Limit Exceeded",
        "userRateLimitExceeded": "User Rate Limit Exceeded",
        "quotaExceeded": "Calendar usage limits exceeded.",
    }
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return ApiError(status, reason, messages[reason], domain="usageLimits", headers=headers)


def full_sync_required() -> ApiError:
    """410 for a sync token the server no longer honours (exact body of the reference)."""
    return ApiError(
        410,
        "fullSyncRequired",
        "Sync token is no longer valid, a full sync is required.",
        domain="calendar",
        location="syncToken",
        location_type="parameter",
    )


def precondition_failed() -> ApiError:
    """412 for an ``If-Match`` that no longer matches."""
    return ApiError(
        412, "conditionNotMet", "Precondition Failed", location="If-Match", location_type="header"
    )


# ----- time and recurrence ---------------------------------------------------------------------


class EmulatorClock:
    """Now, for ``updated``/``created`` stamps and token expiry: the wall clock, or frozen."""

    def __init__(self, start: datetime | None = None) -> None:
        self._frozen = start
        self._offset = timedelta(0)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The current instant (UTC, milliseconds)."""
        with self._lock:
            current = (self._frozen or datetime.now(UTC)) + self._offset
        return current.astimezone(UTC).replace(microsecond=current.microsecond // 1000 * 1000)

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward."""
        with self._lock:
            self._offset += delta


def rfc3339(instant: datetime) -> str:
    """Google's ``updated`` form: UTC with milliseconds and ``Z``."""
    utc = instant.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_rfc3339(text: str, name: str, *, offset_required: bool = True) -> datetime:
    """An RFC 3339 date-time parameter or field (400 when malformed or without offset)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise invalid(f"Invalid value for: {name}", name) from None
    if moment.tzinfo is None:
        if offset_required:
            raise invalid(f"Invalid value for: {name}", name)
        moment = moment.replace(tzinfo=UTC)
    return moment


@dataclass(frozen=True, slots=True)
class When:
    """An EventDateTime resolved: an instant (or a whole day) and the zone it is shown in."""

    instant: datetime
    zone: str
    all_day: bool = False

    @classmethod
    def of(cls, value: object, name: str, *, default_zone: str = "UTC") -> When:
        """Parse ``{"dateTime", "timeZone"}`` or ``{"date"}`` (400 when malformed)."""
        if not isinstance(value, Mapping):
            raise required(f"Missing {name} time.")
        zone_name = value.get("timeZone")
        if zone_name is not None and not _known_zone(str(zone_name)):
            raise invalid(f"Invalid time zone definition for {name} time.")
        if value.get("dateTime"):
            zone = str(zone_name or default_zone)
            try:
                moment = datetime.fromisoformat(str(value["dateTime"]))
            except ValueError:
                raise invalid(f"Invalid value for: {name}.dateTime") from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=ZoneInfo(zone))
            return cls(moment.astimezone(UTC), zone)
        if value.get("date"):
            try:
                day = date.fromisoformat(str(value["date"]))
            except ValueError:
                raise invalid(f"Invalid value for: {name}.date") from None
            return cls(datetime(day.year, day.month, day.day, tzinfo=UTC), "UTC", all_day=True)
        raise required(f"Missing {name} time.")

    def json(self, *, zone: str | None = None) -> Json:
        """As an EventDateTime (``dateTime`` with the offset of the zone shown in)."""
        if self.all_day:
            return {"date": self.instant.date().isoformat()}
        shown = zone or self.zone
        return {"dateTime": self.instant.astimezone(ZoneInfo(shown)).isoformat(), "timeZone": shown}


def _known_zone(name: str) -> bool:
    """Whether ``name`` is an IANA zone."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class Expansion:
    """A recurring master's instance starts (UTC), sorted, and its duration."""

    starts: tuple[datetime, ...]
    duration: timedelta
    all_day: bool


def expand(master: Mapping[str, Any], *, until: datetime | None = None) -> Expansion:
    """The instances of a master per RFC 5545, in ``start.timeZone`` (bounded)."""
    start = When.of(master.get("start"), "start")
    end = When.of(master.get("end"), "end")
    duration = end.instant - start.instant
    zone = ZoneInfo(start.zone)
    local_start = start.instant.astimezone(zone).replace(tzinfo=None)
    horizon = min(until or datetime.max.replace(tzinfo=UTC), start.instant + EXPANSION_HORIZON)
    included: set[datetime] = {start.instant}
    excluded: set[datetime] = set()
    for line in master.get("recurrence") or []:
        name, params, value = _split_line(str(line))
        if name in ("RRULE", "EXRULE"):
            rule = _compile(value, local_start, zone)
            instants = _rule_instants(rule, zone, horizon, start.all_day)
            (included if name == "RRULE" else excluded).update(instants)
        elif name in ("RDATE", "EXDATE"):
            values = _date_values(params, value, zone, local_start, start.all_day)
            (included if name == "RDATE" else excluded).update(values)
    starts = sorted(instant for instant in included - excluded if instant < horizon)
    return Expansion(tuple(starts[:MAX_INSTANCES]), duration, start.all_day)


def _split_line(line: str) -> tuple[str, dict[str, str], str]:
    """``NAME;P=V:VALUE`` → (name, params, value); 400 for anything but recurrence lines."""
    head, sep, value = line.partition(":")
    parts = head.split(";")
    name = parts[0].strip().upper()
    if not sep or name not in ("RRULE", "EXRULE", "RDATE", "EXDATE"):
        raise invalid("Invalid recurrence rule.")
    params = {}
    for part in parts[1:]:
        key, _, param = part.partition("=")
        params[key.strip().upper()] = param.strip().strip('"')
    return name, params, value.strip()


def _compile(value: str, local_start: datetime, zone: ZoneInfo) -> rrule:
    """A dateutil rule over naive wall-clock times, its UNTIL moved onto the wall clock."""
    parts = []
    for chunk in value.split(";"):
        key, _, part = chunk.partition("=")
        key = key.strip().upper()
        if key == "UNTIL":
            part = _wall_until(part.strip(), zone)
        parts.append(f"{key}={part.strip()}")
    try:
        compiled = rrulestr(";".join(parts), dtstart=local_start)
    except (ValueError, TypeError):
        raise invalid("Invalid recurrence rule.") from None
    if not isinstance(compiled, rrule):
        raise invalid("Invalid recurrence rule.")
    return compiled


def _wall_until(value: str, zone: ZoneInfo) -> str:
    """An UNTIL value as a naive wall-clock time in ``zone`` (a DATE includes its whole day)."""
    try:
        if value.endswith("Z"):
            utc = datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            return utc.astimezone(zone).strftime("%Y%m%dT%H%M%S")
        if "T" in value:
            return datetime.strptime(value, "%Y%m%dT%H%M%S").strftime("%Y%m%dT%H%M%S")
        return datetime.strptime(value, "%Y%m%d").strftime("%Y%m%dT235959")
    except ValueError:
        raise invalid("Invalid recurrence rule.") from None


def _rule_instants(rule: rrule, zone: ZoneInfo, horizon: datetime, all_day: bool) -> list[datetime]:
    """A rule's instants before the horizon (at most MAX_INSTANCES)."""
    found: list[datetime] = []
    for local in rule:
        instant = _localised(local, zone, all_day)
        if instant >= horizon or len(found) >= MAX_INSTANCES:
            break
        found.append(instant)
    return found


def _localised(local: datetime, zone: ZoneInfo, all_day: bool) -> datetime:
    """A naive wall-clock time as a UTC instant (gaps take the earlier offset, RFC 5545)."""
    if all_day:
        return datetime(local.year, local.month, local.day, tzinfo=UTC)
    return local.replace(tzinfo=zone, fold=0).astimezone(UTC)


def _date_values(
    params: Mapping[str, str], value: str, zone: ZoneInfo, local_start: datetime, all_day: bool
) -> list[datetime]:
    """The instants of an RDATE/EXDATE value list."""
    if "TZID" in params:
        if not _known_zone(params["TZID"]):
            raise invalid("Invalid recurrence rule.")
        zone = ZoneInfo(params["TZID"])
    found = []
    for item in value.split(","):
        text = item.strip().split("/")[0]
        try:
            if text.endswith("Z"):
                moment = datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            elif "T" in text:
                moment = _localised(datetime.strptime(text, "%Y%m%dT%H%M%S"), zone, all_day)
            else:
                day = datetime.strptime(text, "%Y%m%d")
                moment = _localised(
                    day if all_day else datetime.combine(day.date(), local_start.time()),
                    zone,
                    all_day,
                )
        except ValueError:
            raise invalid("Invalid recurrence rule.") from None
        found.append(moment.astimezone(UTC))
    return found


def instance_id(master_id: str, original: datetime, all_day: bool) -> str:
    """Google's instance id: ``<id>_<YYYYMMDDTHHMMSSZ>`` (all-day: ``<id>_<YYYYMMDD>``)."""
    if all_day:
        return f"{master_id}_{original:%Y%m%d}"
    return f"{master_id}_{original.astimezone(UTC):%Y%m%dT%H%M%SZ}"


def _parse_instance_id(event_id: str) -> tuple[str, datetime, bool] | None:
    """(master id, original start, all-day) of an instance id, or None."""
    master_id, sep, suffix = event_id.rpartition("_")
    if not sep or not master_id:
        return None
    for pattern, all_day in (("%Y%m%dT%H%M%SZ", False), ("%Y%m%d", True)):
        try:
            original = datetime.strptime(suffix.upper(), pattern).replace(tzinfo=UTC)
        except ValueError:
            continue
        return master_id, original, all_day
    return None


# ----- the store -------------------------------------------------------------------------------


@dataclass(slots=True)
class StoredEvent:
    """One stored event (single, master or exception) and where it sits in the change log."""

    body: Json
    changed: int
    deleted: bool = False
    purged: bool = False

    @property
    def id(self) -> str:
        """The event id."""
        return str(self.body["id"])

    @property
    def master_id(self) -> str | None:
        """The master's id, for an exception."""
        parent = self.body.get("recurringEventId")
        return str(parent) if parent else None


@dataclass(slots=True)
class CalendarData:
    """A calendar: its settings, events and the oldest change-log position tokens may name."""

    id: str
    summary: str
    time_zone: str
    resource: bool = False
    auto_accept: bool = True
    events: dict[str, StoredEvent] = field(default_factory=dict)
    readers: set[str] = field(default_factory=set)
    watermark: int = 0
    last_change: int = 0

    def json(self) -> Json:
        """The Calendar resource."""
        digest = hashlib.sha256(self.id.encode()).hexdigest()[:12]
        return {
            "kind": "calendar#calendar",
            "etag": f'"{digest}"',
            "id": self.id,
            "summary": self.summary,
            "timeZone": self.time_zone,
            "conferenceProperties": {"allowedConferenceSolutionTypes": []},
        }


@dataclass(slots=True)
class ServiceAccount:
    """A service account: its public key and the users it may act for (domain-wide delegation)."""

    email: str
    key_id: str
    public_pem: bytes
    subjects: set[str]


@dataclass(slots=True)
class AccessToken:
    """An issued access token."""

    user: str
    scopes: frozenset[str]
    expires: datetime


@dataclass(frozen=True, slots=True)
class ListQuery:
    """The parameters of one ``events.list`` (or ``instances``) request."""

    params: tuple[tuple[str, str], ...]

    def one(self, name: str) -> str | None:
        """The value of a parameter given once (the last one wins)."""
        values = self.all(name)
        return values[-1] if values else None

    def all(self, name: str) -> list[str]:
        """All values of a repeatable parameter."""
        return [value for key, value in self.params if key == name]

    def flag(self, name: str, default: bool = False) -> bool:
        """A boolean parameter (400 unless ``true``/``false``)."""
        value = self.one(name)
        if value is None:
            return default
        if value.lower() not in ("true", "false"):
            raise invalid(f"Invalid value for: {name}", name)
        return value.lower() == "true"

    def page_size(self) -> int:
        """``maxResults``: default 250, at most 2,500."""
        value = self.one("maxResults")
        if value is None:
            return DEFAULT_PAGE_SIZE
        if not value.isdigit() or int(value) < 1:
            raise invalid("Invalid value for: maxResults", "maxResults")
        return min(int(value), MAX_PAGE_SIZE)

    def binding(self) -> str:
        """A digest of the parameters a sync token is bound to."""
        bound = [(k, v) for k, v in sorted(self.params) if k in TOKEN_BOUND_PARAMETERS]
        return hashlib.sha256(json.dumps(bound).encode()).hexdigest()[:16]


def _encode_token(payload: Mapping[str, Any]) -> str:
    """An opaque token: base64url of compact JSON."""
    raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str) -> Json | None:
    """The payload of an opaque token, or None when it is not one of ours."""
    try:
        padded = token + "=" * (-len(token) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError):
        return None
    return payload if isinstance(payload, dict) else None


class GoogleData:
    """Calendars, events, accounts and tokens, with Google's rules; guarded by the app's lock."""

    def __init__(self, clock: EmulatorClock, seed: int) -> None:
        self.clock = clock
        self.rng = random.Random(seed)
        self.calendars: dict[str, CalendarData] = {}
        self.users: set[str] = set()
        self.service_accounts: dict[str, ServiceAccount] = {}
        self.tokens: dict[str, AccessToken] = {}
        self.token_lifetime = DEFAULT_TOKEN_LIFETIME
        self.grants: Counter[str] = Counter()
        self.channels: dict[str, Json] = {}
        self.pending: set[tuple[str, str]] = set()
        self.position = 0
        self.expire_after: int | None = None
        self.short_pages = False
        self.refuse_duplicate_imports = True

    # ----- change log ---------------------------------------------------------------------

    def _tick(self) -> int:
        """The next change-log position."""
        self.position += 1
        return self.position

    def _etag(self, position: int) -> str:
        """A fresh quoted etag (Google's are quoted decimal strings)."""
        return f'"{3_180_000_000_000_000 + position * 1000 + self.rng.randrange(1000)}"'

    def touch(self, calendar: CalendarData, stored: StoredEvent) -> None:
        """Record a change of ``stored``: new position, etag and ``updated``."""
        stored.changed = self._tick()
        stored.body["etag"] = self._etag(stored.changed)
        stored.body["updated"] = rfc3339(self.clock.now())
        calendar.events[stored.id] = stored
        calendar.last_change = stored.changed

    def invalidate_tokens_of(self, calendar: CalendarData) -> None:
        """Every sync token issued so far for the calendar is answered 410."""
        calendar.watermark = calendar.last_change = self._tick()

    # ----- lookup ------------------------------------------------------------------------

    def calendar(self, calendar_id: str, user: str) -> CalendarData:
        """A calendar the user may see (404 otherwise); ``primary`` is the user's own."""
        if calendar_id == "primary":
            calendar_id = user
        found = self.calendars.get(calendar_id)
        if found is None or (user not in found.readers and user != found.id):
            raise not_found()
        return found

    def master_of(self, calendar: CalendarData, stored: StoredEvent) -> StoredEvent | None:
        """The live master of an exception."""
        parent = calendar.events.get(stored.master_id or "")
        return parent if parent is not None and not parent.deleted else None

    def exceptions_of(self, calendar: CalendarData, master_id: str) -> list[StoredEvent]:
        """The stored exceptions of a master (cancelled ones included, purged ones not)."""
        return [
            stored
            for stored in calendar.events.values()
            if stored.master_id == master_id and not stored.purged and not stored.deleted
        ]

    def resolve(self, calendar: CalendarData, event_id: str) -> StoredEvent | None:
        """A stored event, or an unmodified instance materialised (not stored) from its master."""
        stored = calendar.events.get(event_id)
        if stored is not None and not stored.purged:
            return stored
        parsed = _parse_instance_id(event_id)
        if parsed is None:
            return None
        master_id, original, _all_day = parsed
        master = calendar.events.get(master_id)
        if master is None or master.deleted or not master.body.get("recurrence"):
            return None
        if original not in expand(master.body, until=original + timedelta(seconds=1)).starts:
            return None
        return StoredEvent(self.virtual_instance(master, original), master.changed)

    def virtual_instance(self, master: StoredEvent, original: datetime) -> Json:
        """The unmodified instance of a master at ``original``."""
        body = copy.deepcopy(master.body)
        body.pop("recurrence", None)
        start = When.of(master.body["start"], "start")
        end = When.of(master.body["end"], "end")
        at = When(original, start.zone, start.all_day)
        until = When(original + (end.instant - start.instant), end.zone, end.all_day)
        ident = instance_id(master.id, original, start.all_day)
        digest = hashlib.sha256(f"{body.get('etag')}{ident}".encode()).hexdigest()[:15]
        body.update(
            id=ident,
            etag=f'"{int(digest, 16)}"',
            recurringEventId=master.id,
            originalStartTime=at.json(),
            start=at.json(),
            end=until.json(),
        )
        return body

    # ----- writes ------------------------------------------------------------------------

    def insert(
        self, calendar: CalendarData, body: Json, user: str, *, imported: bool = False
    ) -> Json:
        """``events.insert`` / ``events.import``."""
        event_id = body.get("id")
        if imported:
            uid = body.get("iCalUID")
            if not uid:
                raise required("Missing iCalUID.")
            taken = any(
                s.body.get("iCalUID") == uid and not s.deleted for s in calendar.events.values()
            )
            if taken and self.refuse_duplicate_imports:
                raise ApiError(409, "duplicate", "The requested identifier already exists.")
            event_id = None
        if event_id is None:
            event_id = self._new_id(calendar)
        elif not isinstance(event_id, str) or not EVENT_ID.fullmatch(event_id):
            raise invalid("Invalid resource id value.")
        if event_id in calendar.events or self.resolve(calendar, event_id) is not None:
            raise ApiError(409, "duplicate", "The requested identifier already exists.")
        fields = self._validated(body, partial=False)
        now = rfc3339(self.clock.now())
        stored_body: Json = {
            "kind": "calendar#event",
            "id": event_id,
            "status": "confirmed",
            "htmlLink": f"https://www.google.com/calendar/event?eid={event_id}",
            "created": now,
            "creator": {"email": user},
            "organizer": {"email": calendar.id, "displayName": calendar.summary, "self": True},
            "iCalUID": (body.get("iCalUID") if imported else None) or f"{event_id}@google.com",
            "sequence": 0,
            "reminders": {"useDefault": True},
            "eventType": "default",
            **fields,
        }
        stored = StoredEvent(stored_body, 0)
        self.touch(calendar, stored)
        self._invitations_changed(calendar, stored)
        return self.render(calendar, stored)

    def _new_id(self, calendar: CalendarData) -> str:
        """A server-chosen id in the base32hex alphabet."""
        while True:
            candidate = "".join(
                self.rng.choice("0123456789abcdefghijklmnopqrstuv") for _ in range(26)
            )
            if candidate not in calendar.events:
                return candidate

    def replace_event(
        self, calendar: CalendarData, event_id: str, body: Json, if_match: str | None
    ) -> Json:
        """``events.update``: full replace of the writable fields."""
        stored = self._writable(calendar, event_id, if_match)
        if not _organizes(calendar, stored):
            # An attendee's copy is never replaced whole: only ``patch`` of its own parts.
            raise _non_organizer()
        fields = self._validated(body, partial=False)
        return self._apply(calendar, stored, fields)

    def patch_event(
        self, calendar: CalendarData, event_id: str, body: Json, if_match: str | None
    ) -> Json:
        """``events.patch``: merge (``null`` deletes a key, arrays replaced)."""
        stored = self._writable(calendar, event_id, if_match)
        self._check_copy_change(calendar, stored, body, partial=True)
        merged = _merged(stored.body, body)
        fields = self._validated(merged, partial=False)
        return self._apply(calendar, stored, fields)

    def delete_event(self, calendar: CalendarData, event_id: str, if_match: str | None) -> None:
        """``events.delete``: a master or single becomes a tombstone; an instance is cancelled."""
        stored = self.resolve(calendar, event_id)
        if stored is None:
            raise not_found()
        if stored.deleted:
            raise ApiError(410, "deleted", "Resource has been deleted")
        _check_etag(stored, if_match)
        if stored.master_id is not None:
            if stored.body.get("status") == "cancelled":
                raise ApiError(410, "deleted", "Resource has been deleted")
            stored.body["status"] = "cancelled"
            self.touch(calendar, stored)
            self._series_changed(calendar, self.master_of(calendar, stored) or stored)
            return
        stored.deleted = True
        stored.body["status"] = "cancelled"
        self.touch(calendar, stored)
        for exception in self.exceptions_of(calendar, stored.id):
            self._purge(calendar, exception)
        self._series_changed(calendar, stored)

    def _writable(self, calendar: CalendarData, event_id: str, if_match: str | None) -> StoredEvent:
        """The event a PUT/PATCH targets, after its ``If-Match``."""
        stored = self.resolve(calendar, event_id)
        if stored is None:
            raise not_found()
        _check_etag(stored, if_match)
        if stored.master_id is not None and self.master_of(calendar, stored) is None:
            raise not_found()
        return stored

    def _check_copy_change(
        self, calendar: CalendarData, stored: StoredEvent, body: Mapping[str, Any], *, partial: bool
    ) -> None:
        """On an attendee's copy only the attendee's own answer and private data may change."""
        if _organizes(calendar, stored):
            return
        extended = body.get("extendedProperties")
        if isinstance(extended, Mapping) and "shared" in extended:
            raise _non_organizer()
        for name in WRITABLE_FIELDS:
            if name in ATTENDEE_FIELDS:
                continue
            if partial and name not in body:
                continue
            if name in ("sequence",) and name not in body:
                continue
            if _normal(body.get(name)) != _normal(stored.body.get(name)):
                raise _non_organizer()
        theirs = {
            a.get("email"): a for a in stored.body.get("attendees", []) if isinstance(a, dict)
        }
        for attendee in (
            body.get("attendees", []) if isinstance(body.get("attendees"), list) else []
        ):
            email = attendee.get("email") if isinstance(attendee, Mapping) else None
            if email != calendar.id and _normal(attendee) != _normal(theirs.get(email)):
                raise _non_organizer()

    def _apply(self, calendar: CalendarData, stored: StoredEvent, fields: Json) -> Json:
        """Replace the writable fields of a stored (or materialised) event.

        A patch arrives here already merged into the current fields.
        """
        before = {
            name: copy.deepcopy(stored.body.get(name)) for name in ("start", "end", "recurrence")
        }
        for name in WRITABLE_FIELDS:
            if name != "sequence":
                stored.body.pop(name, None)
        if stored.master_id is not None:
            fields.pop("recurrence", None)
        stored.body.update(fields)
        stored.body.setdefault("status", "confirmed")
        stored.body.setdefault("reminders", {"useDefault": True})
        timing_changed = any(
            _normal(stored.body.get(name)) != _normal(value) for name, value in before.items()
        )
        if timing_changed and "sequence" not in fields:
            stored.body["sequence"] = int(stored.body.get("sequence", 0)) + 1
        was_deleted = stored.deleted
        stored.deleted = stored.master_id is None and stored.body["status"] == "cancelled"
        self.touch(calendar, stored)
        if stored.deleted:
            # A master or single set to cancelled is deleted, as with events.delete.
            for exception in self.exceptions_of(calendar, stored.id):
                self._purge(calendar, exception)
            self._series_changed(calendar, stored)
            return self.render(calendar, stored)
        if stored.master_id is None and (timing_changed or was_deleted):
            self._drop_orphans(calendar, stored)
        master = self.master_of(calendar, stored) if stored.master_id else stored
        if master is not None:
            self._series_changed(calendar, master)
        self._invitations_changed(calendar, stored)
        return self.render(calendar, stored)

    def _drop_orphans(self, calendar: CalendarData, master: StoredEvent) -> None:
        """Delete the exceptions whose instance the master no longer has."""
        exceptions = self.exceptions_of(calendar, master.id)
        if not exceptions:
            return
        starts = set(expand(master.body).starts) if master.body.get("recurrence") else set()
        for exception in exceptions:
            original = When.of(exception.body.get("originalStartTime"), "originalStartTime")
            if original.instant not in starts:
                self._purge(calendar, exception)

    def _purge(self, calendar: CalendarData, stored: StoredEvent) -> None:
        """Remove an exception: it stays in the change log as a bare deleted id."""
        stored.purged = True
        stored.deleted = True
        stored.body["status"] = "cancelled"
        self.touch(calendar, stored)

    def _validated(self, body: Mapping[str, Any], *, partial: bool) -> Json:
        """The writable fields of a body, checked like Google checks them."""
        fields = {name: copy.deepcopy(body[name]) for name in WRITABLE_FIELDS if name in body}
        fields = {name: value for name, value in fields.items() if value is not None}
        if not partial:
            if "end" not in fields:
                raise required("Missing end time.")
            if "start" not in fields:
                raise required("Missing start time.")
        status = fields.get("status", "confirmed")
        if status not in ("confirmed", "tentative", "cancelled"):
            raise invalid("Invalid value for: status")
        start = When.of(fields["start"], "start")
        end = When.of(fields["end"], "end")
        if end.instant < start.instant or (end.all_day and end.instant == start.instant):
            raise ApiError(
                400,
                "timeRangeEmpty",
                "The specified time range is empty.",
                domain="calendar",
                location="end",
                location_type="parameter",
            )
        recurrence = fields.get("recurrence")
        if recurrence:
            if not isinstance(recurrence, list) or not all(isinstance(x, str) for x in recurrence):
                raise invalid("Invalid recurrence rule.")
            if not start.all_day and not fields["start"].get("timeZone"):
                raise required("Missing time zone definition for start time.")
            expand(fields)
        if "attendees" in fields:
            fields["attendees"] = _attendees(fields["attendees"])
        fields["extendedProperties"] = _limited_properties(fields.get("extendedProperties"))
        if not fields["extendedProperties"]:
            del fields["extendedProperties"]
        return fields

    # ----- invitations -------------------------------------------------------------------

    def _invitations_changed(self, calendar: CalendarData, stored: StoredEvent) -> None:
        """Queue the rooms invited by an organizer's event for their automatic answer."""
        organizer = stored.body.get("organizer", {})
        if organizer.get("email") != calendar.id:
            self._propagate_answer(calendar, stored)
            return
        master = self.master_of(calendar, stored) if stored.master_id else stored
        if master is not None and _resource_emails(master.body) & self.calendars.keys():
            self.pending.add((calendar.id, master.id))

    def answer_invitations(self) -> None:
        """Let every invited room answer (Google does this asynchronously, shortly after)."""
        while self.pending:
            calendar_id, event_id = self.pending.pop()
            organizer_calendar = self.calendars.get(calendar_id)
            master = organizer_calendar.events.get(event_id) if organizer_calendar else None
            if organizer_calendar is None or master is None:
                continue
            for email in sorted(_resource_emails(master.body)):
                room = self.calendars.get(email)
                if room is not None and room.resource and room.auto_accept:
                    self._answer(organizer_calendar, master, room)

    def _answer(self, organizer: CalendarData, master: StoredEvent, room: CalendarData) -> None:
        """The room accepts (and holds a copy) when free, else declines."""
        attendee = _attendee(master.body, room.id)
        if attendee is None:
            return
        status = attendee.get("responseStatus", "needsAction")
        if master.deleted:
            self._mirror(organizer, master, room, keep=False)
            return
        if status == "needsAction":
            status = "accepted" if self._room_is_free(room, organizer, master) else "declined"
            attendee["responseStatus"] = status
            self.touch(organizer, master)
        self._mirror(organizer, master, room, keep=status == "accepted")

    def _room_is_free(
        self, room: CalendarData, organizer: CalendarData, master: StoredEvent
    ) -> bool:
        """Whether no opaque event of the room overlaps any instance of the invitation."""
        wanted = list(self.occurrences(organizer, master))
        for stored in room.events.values():
            if stored.deleted or stored.master_id or stored.id == master.id:
                continue
            if stored.body.get("transparency") == "transparent":
                continue
            mine = _attendee(stored.body, room.id)
            if mine is not None and mine.get("responseStatus") == "declined":
                continue
            for start, end in self.occurrences(room, stored):
                if any(
                    start < other_end and other_start < end for other_start, other_end in wanted
                ):
                    return False
        return True

    def occurrences(
        self, calendar: CalendarData, master: StoredEvent
    ) -> Iterator[tuple[datetime, datetime]]:
        """(start, end) of every live instance of an event (exceptions applied)."""
        for item in self.instances(calendar, master, show_deleted=False):
            yield When.of(item["start"], "start").instant, When.of(item["end"], "end").instant

    def _mirror(
        self, organizer: CalendarData, master: StoredEvent, room: CalendarData, *, keep: bool
    ) -> None:
        """Copy the organizer's series into the room calendar (or take the copy away)."""
        series = [master, *self.exceptions_of(organizer, master.id)]
        for original in series:
            existing = room.events.get(original.id)
            if not keep:
                if existing is not None and not existing.deleted:
                    existing.deleted = True
                    existing.body["status"] = "cancelled"
                    self.touch(room, existing)
                continue
            body = copy.deepcopy(original.body)
            body.pop("extendedProperties", None)
            body["organizer"] = {"email": organizer.id, "displayName": organizer.summary}
            for attendee in body.get("attendees", []):
                if attendee.get("email") == room.id:
                    attendee["self"] = True
            if existing is not None and not existing.deleted:
                private = existing.body.get("extendedProperties")
                if private:
                    body["extendedProperties"] = private
                if _normal(existing.body | {"etag": None, "updated": None}) == _normal(
                    body | {"etag": None, "updated": None}
                ):
                    continue
            self.touch(room, StoredEvent(body, 0))

    def _propagate_answer(self, room: CalendarData, copy_event: StoredEvent) -> None:
        """A room's answer on its copy reaches the organizer's event."""
        mine = _attendee(copy_event.body, room.id)
        organizer = self.calendars.get(str(copy_event.body.get("organizer", {}).get("email")))
        if mine is None or organizer is None:
            return
        original = self.resolve(organizer, copy_event.id)
        if original is None or original.deleted:
            return
        theirs = _attendee(original.body, room.id)
        if theirs is not None and theirs.get("responseStatus") != mine.get("responseStatus"):
            theirs["responseStatus"] = mine.get("responseStatus")
            if mine.get("comment"):
                theirs["comment"] = mine["comment"]
            self.touch(organizer, original)

    def _series_changed(self, calendar: CalendarData, master: StoredEvent) -> None:
        """After a change of a series, its copies in room calendars follow."""
        if master.body.get("organizer", {}).get("email") == calendar.id and _resource_emails(
            master.body
        ):
            self.pending.add((calendar.id, master.id))

    # ----- reads -------------------------------------------------------------------------

    def render(self, calendar: CalendarData, stored: StoredEvent, *, minimal: bool = False) -> Json:
        """The Event resource as Google returns it (minimal for tombstones in lists)."""
        if minimal and (stored.deleted or stored.body.get("status") == "cancelled"):
            keep: tuple[str, ...] = ("kind", "etag", "id", "status")
            if not stored.purged and stored.master_id:
                keep += ("recurringEventId", "originalStartTime")
            return {name: copy.deepcopy(stored.body[name]) for name in keep if name in stored.body}
        return copy.deepcopy(stored.body)

    def instances(
        self,
        calendar: CalendarData,
        master: StoredEvent,
        *,
        show_deleted: bool,
        until: datetime | None = None,
    ) -> list[Json]:
        """Every instance of a master (virtual and exceptions), by original start."""
        if not master.body.get("recurrence"):
            return [] if master.deleted else [self.render(calendar, master)]
        exceptions: dict[datetime, StoredEvent] = {}
        for exception in self.exceptions_of(calendar, master.id):
            held = When.of(exception.body.get("originalStartTime"), "originalStartTime")
            exceptions[held.instant] = exception
        expansion = expand(master.body, until=until)
        items = []
        for original in expansion.starts:
            found = exceptions.pop(original, None)
            if found is not None:
                if found.body.get("status") == "cancelled" and not show_deleted:
                    continue
                items.append(self.render(calendar, found))
            else:
                items.append(self.virtual_instance(master, original))
        for exception in exceptions.values():
            if exception.body.get("status") != "cancelled" or show_deleted:
                items.append(self.render(calendar, exception))
        return items


def _check_etag(stored: StoredEvent, if_match: str | None) -> None:
    """412 when an ``If-Match`` names another etag (``*`` matches any)."""
    if if_match is None or if_match.strip() == "*":
        return
    wanted = {tag.strip() for tag in if_match.split(",")}
    if stored.body.get("etag") not in wanted:
        raise precondition_failed()


def _organizes(calendar: CalendarData, stored: StoredEvent) -> bool:
    """Whether the calendar holds the organizer's event (not an attendee's copy)."""
    return bool(stored.body.get("organizer", {}).get("email") == calendar.id)


def _non_organizer() -> ApiError:
    """Google's answer to a change only the organizer may make."""
    return ApiError(
        403,
        "forbiddenForNonOrganizer",
        "Shared properties can only be changed by the organizer of the event.",
        domain="calendar",
    )


def _merged(current: Mapping[str, Any], patch: Mapping[str, Any]) -> Json:
    """JSON merge patch: objects merge, ``null`` deletes, arrays and scalars replace."""
    result = copy.deepcopy(dict(current))
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        elif isinstance(value, Mapping) and isinstance(result.get(name), Mapping):
            result[name] = _merged(result[name], value)
        else:
            result[name] = copy.deepcopy(value)
    return result


def _normal(value: object) -> str:
    """A comparable form of JSON values."""
    return json.dumps(value, sort_keys=True, default=str)


def _limited_properties(value: object) -> Json:
    """Extended properties as Google keeps them: long keys dropped, long values truncated."""
    if not isinstance(value, Mapping):
        return {}
    kept: Json = {}
    for scope in ("private", "shared"):
        entries = value.get(scope)
        if not isinstance(entries, Mapping):
            continue
        kept[scope] = {
            str(key): str(item)[:MAX_VALUE_LENGTH]
            for key, item in entries.items()
            if item is not None and len(str(key)) <= MAX_KEY_LENGTH
        }
    return {scope: entries for scope, entries in kept.items() if entries}


def _attendees(value: object) -> list[Json]:
    """Attendees as Google stores them: each with an email and a ``responseStatus``."""
    if not isinstance(value, list):
        raise invalid("Invalid value for: attendees")
    attendees = []
    for item in value:
        if not isinstance(item, Mapping) or not item.get("email"):
            raise required("Missing attendee email.")
        attendee = dict(item)
        attendee.setdefault("responseStatus", "needsAction")
        if attendee["responseStatus"] not in ("needsAction", "declined", "tentative", "accepted"):
            raise invalid("Invalid attendee response status.")
        attendees.append(attendee)
    return attendees


def _resource_emails(body: Mapping[str, Any]) -> set[str]:
    """Emails of the resource attendees of an event."""
    return {
        str(attendee.get("email"))
        for attendee in body.get("attendees", []) or []
        if isinstance(attendee, Mapping) and attendee.get("resource") and attendee.get("email")
    }


def _attendee(body: Mapping[str, Any], email: str) -> Json | None:
    """The attendee entry with that email."""
    for attendee in body.get("attendees", []) or []:
        if isinstance(attendee, dict) and attendee.get("email") == email:
            return attendee
    return None


# ----- listing ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Candidate:
    """One list item with the key it is paged by."""

    key: tuple[Any, ...]
    item: Json


class Lister:
    """``events.list`` over one calendar: filters, expansion, paging and sync tokens."""

    def __init__(self, data: GoogleData, calendar: CalendarData, query: ListQuery) -> None:
        self.data = data
        self.calendar = calendar
        self.query = query

    def page(self) -> Json:
        """One page of the answer."""
        query = self.query
        sync_token = query.one("syncToken")
        page_token = query.one("pageToken")
        since: int | None = None
        if sync_token is not None:
            self._check_sync_combination()
            since = self._sync_position(sync_token)
        elif query.one("updatedMin") is not None:
            self._check_updated_min()
        single = query.flag("singleEvents")
        if query.one("orderBy") == "startTime" and not single:
            raise ApiError(
                400,
                "badRequest",
                "The requested ordering is not available for the particular query.",
            )
        if query.one("orderBy") not in (None, "startTime", "updated"):
            raise invalid("Invalid value for: orderBy", "orderBy")
        time_min, time_max = self._time_range()
        snapshot: int = self.calendar.last_change
        after: tuple[Any, ...] | None = None
        if page_token is not None:
            state = _decode_token(page_token)
            if (
                state is None
                or state.get("c") != self.calendar.id
                or state.get("b") != query.binding()
            ):
                raise invalid("Invalid page token.", "pageToken")
            snapshot = int(state["p"])
            after = tuple(state["a"]) if state.get("a") is not None else None
        candidates = sorted(
            self._candidates(since, snapshot, single, time_min, time_max), key=lambda c: c.key
        )
        if after is not None:
            candidates = [c for c in candidates if c.key > after]
        size = query.page_size()
        if self.data.short_pages and candidates:
            # Short and even empty pages that still carry a nextPageToken (reference §1.2.9).
            size = min(size, self.data.rng.randint(0, max(1, size // 2)))
        chosen, rest = candidates[:size], candidates[size:]
        answer = self._envelope([c.item for c in chosen])
        if rest:
            last = chosen[-1].key if chosen else after
            answer["nextPageToken"] = _encode_token(
                {
                    "c": self.calendar.id,
                    "b": query.binding(),
                    "p": snapshot,
                    "a": list(last) if last is not None else None,
                }
            )
        else:
            answer["nextSyncToken"] = _encode_token(
                {"c": self.calendar.id, "b": query.binding(), "p": snapshot}
            )
        return answer

    def _envelope(self, items: list[Json]) -> Json:
        """The ``Events`` envelope around items."""
        calendar = self.calendar
        return {
            "kind": "calendar#events",
            "etag": f'"{self.calendar.last_change}"',
            "summary": calendar.summary,
            "description": "",
            "updated": rfc3339(self.data.clock.now()),
            "timeZone": calendar.time_zone,
            "accessRole": "owner",
            "defaultReminders": [],
            "items": items,
        }

    def _check_sync_combination(self) -> None:
        """400 when a sync token comes with a restriction it cannot be combined with."""
        restricted = [name for name in SYNC_TOKEN_RESTRICTIONS if self.query.one(name) is not None]
        if restricted or self.query.one("showDeleted") == "false":
            raise ApiError(
                400,
                "syncTokenWithRequestRestrictions",
                "Sync token cannot be used with other request restrictions.",
                domain="calendar",
                location="syncToken",
                location_type="parameter",
            )

    def _sync_position(self, token: str) -> int:
        """The change-log position a sync token names (410 when it is no longer valid)."""
        state = _decode_token(token)
        if (
            state is None
            or state.get("c") != self.calendar.id
            or state.get("b") != self.query.binding()
            or not isinstance(state.get("p"), int)
            or int(state["p"]) < self.calendar.watermark
        ):
            raise full_sync_required()
        return int(state["p"])

    def _check_updated_min(self) -> None:
        """410 when ``updatedMin`` reaches back before the change log's memory."""
        updated_min = parse_rfc3339(str(self.query.one("updatedMin")), "updatedMin")
        if updated_min < self.data.clock.now() - TOMBSTONE_RETENTION:
            raise ApiError(
                410,
                "updatedMinTooLongAgo",
                "The requested minimum modification time lies too far in the past.",
                domain="calendar",
                location="updatedMin",
                location_type="parameter",
            )

    def _time_range(self) -> tuple[datetime | None, datetime | None]:
        """``timeMin``/``timeMax`` (400 ``timeRangeEmpty`` when max ≤ min)."""
        low = self.query.one("timeMin")
        high = self.query.one("timeMax")
        time_min = parse_rfc3339(low, "timeMin") if low else None
        time_max = parse_rfc3339(high, "timeMax") if high else None
        if time_min is not None and time_max is not None and time_max <= time_min:
            raise ApiError(
                400,
                "timeRangeEmpty",
                "The specified time range is empty.",
                domain="calendar",
                location="timeMax",
                location_type="parameter",
            )
        return time_min, time_max

    def _candidates(
        self,
        since: int | None,
        snapshot: int,
        single: bool,
        time_min: datetime | None,
        time_max: datetime | None,
    ) -> Iterator[_Candidate]:
        """Every item the request lists, keyed for paging."""
        show_deleted = since is not None or self.query.flag("showDeleted")
        updated_min = self.query.one("updatedMin")
        floor = parse_rfc3339(updated_min, "updatedMin") if updated_min is not None else None
        if floor is not None:
            show_deleted = True
        order = self.query.one("orderBy")
        for stored in list(self.calendar.events.values()):
            if stored.changed > snapshot:
                continue
            if since is not None and stored.changed <= since:
                continue
            if floor is not None and datetime.fromisoformat(stored.body["updated"]) < floor:
                continue
            if stored.purged and since is None:
                continue
            if not self._matches(stored):
                continue
            for item in self._items_of(stored, single, show_deleted, time_min, time_max):
                yield _Candidate(self._key(stored, item, order), item)

    def _items_of(
        self,
        stored: StoredEvent,
        single: bool,
        show_deleted: bool,
        time_min: datetime | None,
        time_max: datetime | None,
    ) -> Iterator[Json]:
        """What one stored event contributes to a listing."""
        calendar = self.calendar
        cancelled = stored.deleted or stored.body.get("status") == "cancelled"
        if stored.master_id is not None:
            if self.data.master_of(calendar, stored) is None and not stored.purged:
                return
            if cancelled:
                # Cancelled instances show unless both singleEvents and showDeleted are true and
                # it was not asked for (reference §1.2 item 11).
                if show_deleted or not single:
                    yield self.data.render(calendar, stored, minimal=True)
                return
            if _overlaps(stored.body, time_min, time_max):
                yield self.data.render(calendar, stored)
            return
        if cancelled:
            if show_deleted:
                yield self.data.render(calendar, stored, minimal=True)
            return
        if single and stored.body.get("recurrence"):
            for item in self.data.instances(calendar, stored, show_deleted=False, until=time_max):
                if item.get("id") in calendar.events:
                    continue  # exceptions are listed on their own
                if _overlaps(item, time_min, time_max):
                    yield item
            return
        if stored.body.get("recurrence"):
            if self._any_instance_overlaps(stored, time_min, time_max):
                yield self.data.render(calendar, stored)
            return
        if _overlaps(stored.body, time_min, time_max):
            yield self.data.render(calendar, stored)

    def _any_instance_overlaps(
        self, master: StoredEvent, time_min: datetime | None, time_max: datetime | None
    ) -> bool:
        """Whether some instance of a master overlaps the range."""
        if time_min is None and time_max is None:
            return True
        return any(
            _overlaps(item, time_min, time_max)
            for item in self.data.instances(
                self.calendar, master, show_deleted=False, until=time_max
            )
        )

    def _matches(self, stored: StoredEvent) -> bool:
        """The iCalUID, extended property, text and event type filters."""
        body = stored.body
        query = self.query
        uid = query.one("iCalUID")
        if uid is not None and body.get("iCalUID") != uid:
            return False
        for scope, name in (
            ("private", "privateExtendedProperty"),
            ("shared", "sharedExtendedProperty"),
        ):
            properties = body.get("extendedProperties", {}).get(scope, {})
            for constraint in query.all(name):
                key, _, value = constraint.partition("=")
                if properties.get(key) != value:
                    return False
        text = query.one("q")
        if text:
            haystack = " ".join(
                str(body.get(f, "")) for f in ("summary", "description", "location")
            )
            if text.lower() not in haystack.lower():
                return False
        types = query.all("eventTypes")
        return not types or body.get("eventType", "default") in types

    @staticmethod
    def _key(stored: StoredEvent, item: Mapping[str, Any], order: str | None) -> tuple[Any, ...]:
        """The paging key: start time when ordered so, else change position; then the id."""
        if order == "startTime" and isinstance(item.get("start"), Mapping):
            start = When.of(item["start"], "start").instant.isoformat()
            return (start, str(item.get("id")))
        return (stored.changed, str(item.get("id")))


def _overlaps(
    item: Mapping[str, Any], time_min: datetime | None, time_max: datetime | None
) -> bool:
    """``end > timeMin`` and ``start < timeMax`` (reference §1.2 item 10)."""
    if time_min is None and time_max is None:
        return True
    start = When.of(item.get("start"), "start").instant
    end = When.of(item.get("end"), "end").instant
    return (time_min is None or end > time_min) and (time_max is None or start < time_max)


def _minimal_item(item: Mapping[str, Any]) -> Json:
    """A cancelled instance as lists show it."""
    keep = ("kind", "etag", "id", "status", "recurringEventId", "originalStartTime")
    return {name: copy.deepcopy(item[name]) for name in keep if name in item}


# ----- faults and the request log --------------------------------------------------------------


class FaultKind(StrEnum):
    """Failures injected before (or, for LOST_REPLY, after) a request reaches its handler."""

    RATE_LIMIT = "rate_limit"  # 403 usageLimits rateLimitExceeded
    USER_RATE_LIMIT = "user_rate_limit"  # 403 usageLimits userRateLimitExceeded
    TOO_MANY_REQUESTS = "too_many_requests"  # 429 rateLimitExceeded + Retry-After
    BACKEND_ERROR = "backend_error"  # 500 backendError
    UNAVAILABLE = "unavailable"  # 503 backendError
    UNAUTHORIZED = "unauthorized"  # 401 authError (the client must refresh its token)
    TIMEOUT = "timeout"  # hold the connection, then drop it without a reply
    LOST_REPLY = "lost_reply"  # the request is applied, then the connection drops


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Random fault injection: each API request fails with probability ``rate`` (seeded)."""

    rate: float = 0.0
    kinds: tuple[FaultKind, ...] = (
        FaultKind.RATE_LIMIT,
        FaultKind.USER_RATE_LIMIT,
        FaultKind.TOO_MANY_REQUESTS,
        FaultKind.BACKEND_ERROR,
        FaultKind.UNAVAILABLE,
    )
    seed: int = 0
    retry_after: int = 1
    hang_seconds: float = 5.0
    methods: frozenset[str] | None = None


class FaultInjector:
    """Decides, per request, which fault (if any) to inject; deterministic under a seed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.plan = FaultPlan()
        self._rng = random.Random(0)
        self._queued: deque[FaultKind] = deque()

    def configure(self, plan: FaultPlan) -> None:
        """Use ``plan`` from now on, its RNG reseeded."""
        with self._lock:
            self.plan = plan
            self._rng = random.Random(plan.seed)

    def queue(self, kinds: Iterable[FaultKind]) -> None:
        """Make the next API requests fail with these faults, in order."""
        with self._lock:
            self._queued.extend(kinds)

    def clear(self) -> None:
        """No more faults."""
        self.configure(FaultPlan())
        with self._lock:
            self._queued.clear()

    def draw(self, path: str, method: str) -> FaultKind | None:
        """The fault for one request, if any is due (the token endpoint is never faulted)."""
        with self._lock:
            if not path.startswith(API_PREFIX + "/"):
                return None
            if self.plan.methods is not None and method not in self.plan.methods:
                return None
            if self._queued:
                return self._queued.popleft()
            if self.plan.rate <= 0 or self._rng.random() >= self.plan.rate:
                return None
            return self._rng.choice(self.plan.kinds)


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the emulator saw it (no headers or bodies: they hold credentials)."""

    method: str
    route: str
    path: str
    query: tuple[tuple[str, str], ...]
    user: str | None
    fault: FaultKind | None
    status: int | None


class UserQuota:
    """Google's per-user limit: at most ``limit`` requests in any ``window`` seconds."""

    def __init__(self, limit: int | None = DEFAULT_QUOTA, window: float = QUOTA_WINDOW) -> None:
        self.limit = limit
        self.window = window
        self._seen: dict[str, deque[float]] = {}

    def admit(self, user: str) -> bool:
        """Count one request of ``user``; False when it is over the limit (not counted)."""
        if self.limit is None:
            return True
        now = time.monotonic()
        seen = self._seen.setdefault(user, deque())
        while seen and seen[0] <= now - self.window:
            seen.popleft()
        if len(seen) >= self.limit:
            return False
        seen.append(now)
        return True


# ----- HTTP ------------------------------------------------------------------------------------


class _Instrumentation:
    """ASGI middleware: records every request and injects the configured faults."""

    def __init__(self, app: ASGIApp, emulator: GoogleCalendarEmulator) -> None:
        self._app = app
        self._emulator = emulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        fault = self._emulator.faults.draw(scope["path"], scope["method"])
        scope.setdefault("state", {})["fault"] = fault
        recorded = False

        async def send_recording(message: Message) -> None:
            nonlocal recorded
            if message["type"] == "http.response.start" and not recorded:
                recorded = True
                lost = fault in (FaultKind.TIMEOUT, FaultKind.LOST_REPLY)
                self._emulator.record(scope, fault, None if lost else int(message["status"]))
            if fault is FaultKind.LOST_REPLY:
                return
            await send(message)

        try:
            await self._serve(scope, receive, send_recording, fault)
            if fault is FaultKind.LOST_REPLY:
                await _drop(send)
        finally:
            if not recorded:
                self._emulator.record(scope, fault, None)

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, fault: FaultKind | None
    ) -> None:
        """Answer with the fault, or pass the request on."""
        plan = self._emulator.faults.plan
        replies = {
            FaultKind.RATE_LIMIT: rate_limited("rateLimitExceeded"),
            FaultKind.USER_RATE_LIMIT: rate_limited("userRateLimitExceeded"),
            FaultKind.TOO_MANY_REQUESTS: rate_limited(
                "rateLimitExceeded", 429, retry_after=plan.retry_after
            ),
            FaultKind.BACKEND_ERROR: ApiError(500, "backendError", "Backend Error"),
            FaultKind.UNAVAILABLE: ApiError(
                503, "backendError", "The service is currently unavailable."
            ),
            FaultKind.UNAUTHORIZED: auth_error(),
        }
        if fault in replies:
            await replies[fault].response()(scope, receive, send)
        elif fault is FaultKind.TIMEOUT:
            await _hang_then_drop(receive, send, plan.hang_seconds)
        else:
            await self._app(scope, receive, send)


async def _hang_then_drop(receive: Receive, send: Send, seconds: float) -> None:
    """Hold the request until the client gives up (or ``seconds`` pass), then break it off."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (remaining := deadline - loop.time()) > 0:
        try:
            message: Message = await asyncio.wait_for(receive(), remaining)
        except TimeoutError:
            break
        if message["type"] == "http.disconnect":
            return
    await _drop(send)


async def _drop(send: Send) -> None:
    """Announce a body and never finish it: the server has to close the connection."""
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
        }
    )
    await send({"type": "http.response.body", "body": b"{", "more_body": True})


class GoogleCalendarEmulator:
    """The emulator: a Starlette app over :class:`GoogleData`, plus the test controls."""

    def __init__(
        self,
        *,
        seed: int = 0,
        now: datetime | None = None,
        quota_per_minute: int | None = DEFAULT_QUOTA,
        quota_window: float = QUOTA_WINDOW,
        token_lifetime: timedelta = DEFAULT_TOKEN_LIFETIME,
    ) -> None:
        self.clock = EmulatorClock(now)
        self.data = GoogleData(self.clock, seed)
        self.data.token_lifetime = token_lifetime
        self.quota = UserQuota(quota_per_minute, quota_window)
        self.faults = FaultInjector()
        self.requests: list[RecordedRequest] = []
        self.base_url = ""
        self._lock = threading.RLock()
        self._routes = self._build_routes()
        self.app: ASGIApp = _Instrumentation(Starlette(routes=self._routes), self)

    def __repr__(self) -> str:
        return f"GoogleCalendarEmulator(calendars={sorted(self.data.calendars)})"

    # ----- set-up ------------------------------------------------------------------------

    def add_user(self, email: str, *, time_zone: str = "UTC") -> str:
        """A Workspace user with a primary calendar (its id is the email)."""
        with self._lock:
            self.data.users.add(email)
            calendar = CalendarData(email, email, time_zone, readers={email})
            self.data.calendars.setdefault(email, calendar)
            return email

    def add_room(
        self,
        calendar_id: str,
        name: str,
        *,
        time_zone: str = "Europe/London",
        auto_accept: bool = True,
        managers: Iterable[str] = (),
    ) -> str:
        """A resource (room) calendar, readable and writable by ``managers``."""
        with self._lock:
            self.data.calendars[calendar_id] = CalendarData(
                calendar_id,
                name,
                time_zone,
                resource=True,
                auto_accept=auto_accept,
                readers=set(managers),
            )
            return calendar_id

    def share(self, calendar_id: str, user: str) -> None:
        """Give a user access to a calendar."""
        with self._lock:
            self.data.calendars[calendar_id].readers.add(user)

    def create_service_account(
        self, email: str, *, subjects: Iterable[str], key_bits: int = 2048
    ) -> Json:
        """A service account allowed to act for ``subjects``; returns its JSON key file content.

        The key is made now (RSA); its ``token_uri`` points at this emulator, so call this
        while serving, or set ``base_url`` first.
        """
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=key_bits)
        private_pem = private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        public_pem = private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        key_id = secrets.token_hex(20)
        with self._lock:
            self.data.service_accounts[email] = ServiceAccount(
                email, key_id, public_pem, set(subjects)
            )
        return {
            "type": "service_account",
            "project_id": "roombridge-emulator",
            "private_key_id": key_id,
            "private_key": private_pem.decode(),
            "client_email": email,
            "client_id": str(int(hashlib.sha256(email.encode()).hexdigest()[:15], 16)),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": f"{self.base_url}{TOKEN_PATH}",
            "universe_domain": "googleapis.com",
        }

    # ----- acting as people in the Google UI ----------------------------------------------

    def seed_event(self, calendar_id: str, body: Json, *, user: str | None = None) -> Json:
        """Create an event directly (as someone using the calendar); returns it."""
        with self._lock:
            calendar = self.data.calendars[calendar_id]
            created = self.data.insert(calendar, copy.deepcopy(body), user or calendar_id)
            self.data.answer_invitations()
            return created

    def edit_event(self, calendar_id: str, event_id: str, **changes: Any) -> Json:
        """Patch an event (or one instance) as a person would; ``None`` removes a field."""
        with self._lock:
            calendar = self.data.calendars[calendar_id]
            edited = self.data.patch_event(calendar, event_id, changes, None)
            self.data.answer_invitations()
            return edited

    def delete_event(self, calendar_id: str, event_id: str) -> None:
        """Delete an event (or cancel one instance) as a person would."""
        with self._lock:
            self.data.delete_event(self.data.calendars[calendar_id], event_id, None)
            self.data.answer_invitations()

    def event(self, calendar_id: str, event_id: str) -> Json | None:
        """An event as ``events.get`` returns it (None when unknown)."""
        with self._lock:
            calendar = self.data.calendars[calendar_id]
            stored = self.data.resolve(calendar, event_id)
            return None if stored is None else self.data.render(calendar, stored)

    def events(self, calendar_id: str, *, deleted: bool = False) -> list[Json]:
        """Stored masters, singles and exceptions of a calendar (deleted ones on request)."""
        with self._lock:
            calendar = self.data.calendars[calendar_id]
            return [
                self.data.render(calendar, s)
                for s in calendar.events.values()
                if deleted or not s.deleted
            ]

    def expanded(self, calendar_id: str, *, until: datetime | None = None) -> list[Json]:
        """Every live instance of every live event, as ``singleEvents=true`` lists them."""
        with self._lock:
            calendar = self.data.calendars[calendar_id]
            items: list[Json] = []
            for stored in list(calendar.events.values()):
                if stored.deleted or stored.master_id is not None:
                    continue
                items.extend(self.data.instances(calendar, stored, show_deleted=False, until=until))
            return items

    def tick(self) -> None:
        """Let rooms answer pending invitations now."""
        with self._lock:
            self.data.answer_invitations()

    # ----- controls ----------------------------------------------------------------------

    def invalidate_sync_tokens(self, calendar_id: str) -> None:
        """Make every sync token of a calendar answer 410 (as after an ACL change)."""
        with self._lock:
            self.data.invalidate_tokens_of(self.data.calendars[calendar_id])

    def expire_tokens(self, *, after_requests: int = 0) -> None:
        """Invalidate every access token now, or once that many more API requests came in."""
        with self._lock:
            if after_requests > 0:
                self.data.expire_after = after_requests
            else:
                self.data.tokens.clear()

    def set_short_pages(self, enabled: bool = True) -> None:
        """Answer lists with short or empty pages (``nextPageToken`` still set)."""
        with self._lock:
            self.data.short_pages = enabled

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

    def token_grants(self) -> Counter[str]:
        """Token grants answered, per outcome (``issued`` or an OAuth error code)."""
        with self._lock:
            return Counter(self.data.grants)

    def record(self, scope: Scope, fault: FaultKind | None, status: int | None) -> None:
        """Remember one answered request (called by the middleware)."""
        query = tuple(parse_qsl(scope.get("query_string", b"").decode(), keep_blank_values=True))
        user = scope.get("state", {}).get("user")
        entry = RecordedRequest(
            scope["method"], self._route_of(scope), scope["path"], query, user, fault, status
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
        """Serve on a free loopback port for the ``with`` block (sets ``base_url``)."""
        with serve_in_thread(self.app) as server:
            self.base_url = server.base_url
            yield server

    # ----- routes ------------------------------------------------------------------------

    def _build_routes(self) -> list[Route]:
        """The API routes and the token endpoint."""
        events = API_PREFIX + "/calendars/{calendar_id}/events"
        return [
            Route(TOKEN_PATH, self._token, methods=["POST"]),
            Route(API_PREFIX + "/calendars/{calendar_id}", self._calendar, methods=["GET"]),
            Route(events, self._events, methods=["GET", "POST"]),
            Route(events + "/import", self._import, methods=["POST"]),
            Route(events + "/watch", self._watch, methods=["POST"]),
            Route(events + "/{event_id}/instances", self._instances, methods=["GET", "POST"]),
            Route(events + "/{event_id}", self._event, methods=["GET", "PUT", "PATCH", "DELETE"]),
            Route(API_PREFIX + "/channels/stop", self._stop, methods=["POST"]),
        ]

    async def _token(self, request: Request) -> Response:
        """``POST /token``: the JWT-bearer grant of a service account."""
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        with self._lock:
            try:
                reply = self._grant(form)
            except _OAuthError as error:
                self.data.grants[error.code] += 1
                return JSONResponse(
                    {"error": error.code, "error_description": error.description}, status_code=400
                )
            self.data.grants["issued"] += 1
            return JSONResponse(reply)

    def _grant(self, form: Mapping[str, str]) -> Json:
        """Verify the assertion and issue an access token for its subject."""
        if form.get("grant_type") != JWT_BEARER_GRANT:
            raise _OAuthError("unsupported_grant_type", "Invalid grant_type.")
        assertion = form.get("assertion", "")
        header, claims = _jwt_parts(assertion)
        account = self.data.service_accounts.get(str(claims.get("iss")))
        if account is None:
            raise _OAuthError("invalid_grant", "Invalid JWT Signature.")
        if header.get("alg") != "RS256" or header.get("kid") not in (None, account.key_id):
            raise _OAuthError("invalid_grant", "Invalid JWT Signature.")
        try:
            verified = jwt.decode(  # type: ignore[no-untyped-call]
                assertion, certs=account.public_pem, audience=TOKEN_AUDIENCE
            )
        except (ValueError, auth_exceptions.GoogleAuthError) as exc:
            raise _OAuthError("invalid_grant", f"Invalid JWT: {exc}") from None
        lifetime = int(verified.get("exp", 0)) - int(verified.get("iat", 0))
        if lifetime <= 0 or lifetime > 3600:
            raise _OAuthError("invalid_grant", "Invalid JWT: Token must be a short-lived token.")
        subject = str(verified.get("sub") or account.email)
        if subject != account.email and (
            subject not in account.subjects or subject not in self.data.users
        ):
            raise _OAuthError(
                "unauthorized_client",
                "Client is unauthorized to retrieve access tokens using this method, or client "
                "not authorized for any of the scopes requested.",
            )
        scopes = frozenset(str(verified.get("scope", "")).split())
        if not scopes or not scopes <= READ_SCOPES:
            raise _OAuthError("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
        token = "ya29." + secrets.token_urlsafe(32)
        lifetime_seconds = int(self.data.token_lifetime.total_seconds())
        self.data.tokens[token] = AccessToken(
            subject, scopes, self.clock.now() + self.data.token_lifetime
        )
        return {"access_token": token, "expires_in": lifetime_seconds, "token_type": "Bearer"}

    def _authorised(self, request: Request, *, write: bool) -> str:
        """The user behind the request's bearer token; quota counted (401/403 otherwise)."""
        if self.data.expire_after is not None:
            self.data.expire_after -= 1
            if self.data.expire_after <= 0:
                self.data.expire_after = None
                self.data.tokens.clear()
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        held = self.data.tokens.get(credential.strip()) if scheme.lower() == "bearer" else None
        if held is None or held.expires <= self.clock.now():
            raise auth_error()
        request.scope.setdefault("state", {})["user"] = held.user
        if not held.scopes & (WRITE_SCOPES if write else READ_SCOPES):
            raise ApiError(403, "insufficientPermissions", "Insufficient Permission")
        if not self.quota.admit(held.user):
            raise rate_limited("userRateLimitExceeded")
        self.data.answer_invitations()
        return held.user

    async def _params(self, request: Request) -> ListQuery:
        """Query parameters, plus the form body of a ``POST`` overriding to ``GET``."""
        params = list(request.query_params.multi_items())
        if request.method == "POST":
            params += parse_qsl((await request.body()).decode("utf-8", "replace"))
        return ListQuery(tuple(params))

    @staticmethod
    def _is_get(request: Request) -> bool:
        """Whether the request is a read (a GET, or a POST with ``X-HTTP-Method-Override: GET``)."""
        override = request.headers.get("x-http-method-override", "").upper()
        return request.method == "GET" or (request.method == "POST" and override == "GET")

    async def _body(self, request: Request) -> Json:
        """A JSON object request body (400 ``parseError`` otherwise)."""
        raw = await request.body()
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ApiError(400, "parseError", "Parse Error")
        return body

    def _answer(
        self, request: Request, action: Callable[[], Json | None], *, write: bool
    ) -> Response:
        """Run ``action`` as the authorised user; errors become Google error replies."""
        with self._lock:
            try:
                self._authorised(request, write=write)
                result = action()
            except ApiError as error:
                return error.response()
        if result is None:
            return Response(status_code=204)
        return JSONResponse(result)

    def _calendar_for(self, request: Request) -> CalendarData:
        """The calendar of the path, as the request's user sees it."""
        user = request.scope["state"]["user"]
        return self.data.calendar(request.path_params["calendar_id"], user)

    async def _calendar(self, request: Request) -> Response:
        """``calendars.get``."""
        return self._answer(request, lambda: self._calendar_for(request).json(), write=False)

    async def _events(self, request: Request) -> Response:
        """``events.list`` (GET, or POST overridden to GET) and ``events.insert`` (POST)."""
        if self._is_get(request):
            query = await self._params(request)
            return self._answer(
                request,
                lambda: Lister(self.data, self._calendar_for(request), query).page(),
                write=False,
            )
        try:
            body = await self._body(request)
        except ApiError as error:
            return error.response()
        return self._answer(
            request,
            lambda: self.data.insert(
                self._calendar_for(request), body, request.scope["state"]["user"]
            ),
            write=True,
        )

    async def _import(self, request: Request) -> Response:
        """``events.import``: a private copy under its iCalUID."""
        try:
            body = await self._body(request)
        except ApiError as error:
            return error.response()
        return self._answer(
            request,
            lambda: self.data.insert(
                self._calendar_for(request), body, request.scope["state"]["user"], imported=True
            ),
            write=True,
        )

    async def _event(self, request: Request) -> Response:
        """``events.get`` / ``update`` / ``patch`` / ``delete``."""
        event_id = request.path_params["event_id"]
        if_match = request.headers.get("if-match")
        if request.method == "GET":
            return self._answer(request, lambda: self._get(request, event_id), write=False)
        if request.method == "DELETE":
            return self._answer(
                request,
                lambda: self.data.delete_event(self._calendar_for(request), event_id, if_match),
                write=True,
            )
        try:
            body = await self._body(request)
        except ApiError as error:
            return error.response()
        write = self.data.replace_event if request.method == "PUT" else self.data.patch_event
        return self._answer(
            request,
            lambda: write(self._calendar_for(request), event_id, body, if_match),
            write=True,
        )

    def _get(self, request: Request, event_id: str) -> Json:
        """``events.get``: deleted events too (status ``cancelled``)."""
        calendar = self._calendar_for(request)
        stored = self.data.resolve(calendar, event_id)
        if stored is None:
            raise not_found()
        return self.data.render(calendar, stored)

    async def _instances(self, request: Request) -> Response:
        """``events.instances``: ``timeMin`` inclusive, ``originalStart``, paging."""
        query = await self._params(request)
        event_id = request.path_params["event_id"]

        def reply() -> Json:
            calendar = self._calendar_for(request)
            master = calendar.events.get(event_id)
            if master is None or master.purged or master.master_id is not None:
                raise not_found()
            if master.deleted:
                raise ApiError(410, "deleted", "Resource has been deleted")
            return self._instances_page(calendar, master, query)

        return self._answer(request, reply, write=False)

    def _instances_page(
        self, calendar: CalendarData, master: StoredEvent, query: ListQuery
    ) -> Json:
        """One page of a master's instances."""
        show_deleted = query.flag("showDeleted")
        low, high = query.one("timeMin"), query.one("timeMax")
        time_min = parse_rfc3339(low, "timeMin") if low else None
        time_max = parse_rfc3339(high, "timeMax") if high else None
        original = query.one("originalStart")
        wanted = parse_rfc3339(original, "originalStart") if original else None
        items = []
        for item in self.data.instances(
            calendar, master, show_deleted=show_deleted, until=time_max
        ):
            start_of = When.of(item.get("originalStartTime") or item.get("start"), "start").instant
            if wanted is not None and start_of != wanted.astimezone(UTC):
                continue
            if item.get("status") == "cancelled":
                items.append(_minimal_item(item))
                continue
            end = When.of(item["end"], "end").instant
            start = When.of(item["start"], "start").instant
            if (time_min is None or end >= time_min) and (time_max is None or start < time_max):
                items.append(item)
        offset = (
            int(query.one("pageToken") or 0) if (query.one("pageToken") or "0").isdigit() else 0
        )
        size = query.page_size()
        answer = Lister(self.data, calendar, query)._envelope(items[offset : offset + size])
        if offset + size < len(items):
            answer["nextPageToken"] = str(offset + size)
        return answer

    async def _watch(self, request: Request) -> Response:
        """``events.watch``: a Channel (no notifications are sent)."""
        try:
            body = await self._body(request)
        except ApiError as error:
            return error.response()

        def reply() -> Json:
            calendar = self._calendar_for(request)
            if body.get("type") != "web_hook" or not body.get("id") or not body.get("address"):
                raise required("Missing channel id, type or address.")
            channel = {
                "kind": "api#channel",
                "id": body["id"],
                "resourceId": hashlib.sha256(calendar.id.encode()).hexdigest()[:27],
                "resourceUri": f"{self.base_url}{API_PREFIX}/calendars/{calendar.id}/events",
                "expiration": str(int((self.clock.now() + timedelta(days=7)).timestamp() * 1000)),
            }
            if body.get("token"):
                channel["token"] = body["token"]
            self.data.channels[str(body["id"])] = channel
            return channel

        return self._answer(request, reply, write=False)

    async def _stop(self, request: Request) -> Response:
        """``channels.stop``."""
        try:
            body = await self._body(request)
        except ApiError as error:
            return error.response()

        def reply() -> None:
            channel = self.data.channels.get(str(body.get("id")))
            if channel is None or channel["resourceId"] != body.get("resourceId"):
                raise not_found()
            del self.data.channels[str(body["id"])]

        return self._answer(request, reply, write=False)


def _jwt_parts(assertion: str) -> tuple[Json, Json]:
    """The unverified header and claims of a JWT (to find whose key verifies it)."""
    parts = assertion.split(".")
    try:
        if len(parts) != 3:
            raise ValueError("not three parts")
        header, claims = (
            json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
            for part in parts[:2]
        )
    except (ValueError, UnicodeDecodeError):
        raise _OAuthError("invalid_grant", "Invalid JWT: malformed.") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise _OAuthError("invalid_grant", "Invalid JWT: malformed.")
    return header, claims


class _OAuthError(Exception):
    """An OAuth 2.0 token endpoint error (RFC 6749 §5.2)."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description


# ----- running it by hand ----------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``python -m bridge.emulators.google --port N``: serve an emulator with one room."""
    import uvicorn

    parser = argparse.ArgumentParser(description="Serve the Google Calendar API emulator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8282)
    parser.add_argument("--key-file", default="service-account.json")
    args = parser.parse_args(argv)
    emulator = GoogleCalendarEmulator()
    emulator.base_url = f"http://{args.host}:{args.port}"
    admin = emulator.add_user("rooms-admin@example.com")
    room = emulator.add_room("callisto@resource.calendar.google.com", "Callisto", managers=[admin])
    key = emulator.create_service_account(
        "bridge@roombridge-emulator.iam.gserviceaccount.com", subjects=[admin]
    )
    with open(args.key_file, "w", encoding="utf-8") as handle:
        json.dump(key, handle)
    print(
        f"Google Calendar emulator on {emulator.base_url}{API_PREFIX}/ (room {room}, "
        f"subject {admin}, key file {args.key_file})"
    )
    uvicorn.run(emulator.app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
