"""A strict, in-memory emulator of Microsoft Graph's calendar API (the parts the bridge uses).

It reproduces shared/reference/calendars.md §2.8 item by item:

1. ``/v1.0/users/{idOrUpn}/events`` (list, ``POST`` 201), ``/events/{id}`` (``GET``, ``PATCH``
   200, ``DELETE`` 204), ``/events/{id}/instances``, ``/events/{id}/accept``,
   ``/tentativelyAccept`` and ``/decline`` (202), ``/calendar`` and ``/calendarView``;
   ``@odata.context``; ``@odata.etag`` =
   ``W/"<changeKey>"`` with the change key bumped on every write (a series master's too when
   one of its occurrences changes, as Exchange stores exceptions inside the master item). Ids are
   standard base64 with ``+``, ``/`` and ``=``: a client must percent-encode them in paths
   (routing reads the raw path, so an unencoded ``/`` is a 404).
2. ``/calendarView/delta``: ``startDateTime``/``endDateTime`` on the first request only (other
   query options are 400); absolute ``@odata.nextLink`` (``$skiptoken``) and
   ``@odata.deltaLink`` (``$deltatoken``) on the emulator's own base; parameters re-sent with a
   token are ignored; ``Prefer: odata.maxpagesize`` honoured (default 10 rows a page);
   knobs for an empty first page and for replayed rows.
3. ``@removed`` rows (``reason: deleted``) for deletions and for changes outside the window.
4. Recurrence: a ``seriesMaster`` full row, ``occurrence`` skeleton rows (``@odata.etag``, id,
   type, seriesMasterId, start, end), full ``exception`` rows; ``/instances``; ``PATCH`` of an
   occurrence makes it an exception (400 ``ErrorOccurrenceCrossingBoundary`` when it would
   move onto or past a neighbour's day); ``DELETE`` of an occurrence cancels it.
5. ``expire_delta_tokens()`` → 410 ``SyncStateNotFound``; ``require_resync()`` → a generic 410
   with a ``Location`` header holding the initial URL.
6. ``start``/``end`` always ``{"dateTime": "YYYY-MM-DDTHH:MM:SS.0000000", "timeZone": "UTC"}``
   unless ``Prefer: outlook.timezone``; Windows and IANA zone names accepted on input;
   ``recurrence`` validated (fields per pattern type, ``range.startDate`` = the start's date).
7. ``transactionId`` stored on create, immutable, echoed; a second ``POST`` with the
   ``transactionId`` of a live event answers 201 with that event (no duplicate).
8. ``singleValueExtendedProperties`` on create/PATCH; ``$expand=singleValueExtendedProperties(
   $filter=id eq '…' [or id eq '…'])``; ``$filter=singleValueExtendedProperties/Any(ep: ep/id
   eq '…' and ep/value eq|ne '…')`` or ``startswith(ep/value, '…')`` on ``/events``.
9. ``If-Match`` on PATCH/DELETE → 412 ``ErrorIrresolvableConflict`` on mismatch; injectable
   transient 412s (``FaultKind.CONFLICT``).
10. 404 ``ErrorItemNotFound``; every error in the ``{"error": {"code", "message",
    "innerError": {"request-id", "date"}}}`` envelope.
11. Throttling: injectable 429 ``TooManyRequests`` with a fractional ``Retry-After``, 503, 504,
    a reply lost after the write was applied (504); more than 4 requests in flight for one
    mailbox → 429 ``ApplicationThrottled`` ("MailboxConcurrency"). ``latency`` holds every
    request open for a while so that overlapping requests really overlap.
12. ``/places/microsoft.graph.room``; room mailboxes process meeting requests like
    ``AutomateProcessing=AutoAccept``: on the next request after an organizer's write, the resource
    attendee is set to ``accepted`` (free, within the booking window and maximum duration; the
    meeting is then copied into the room calendar) or ``declined``, and the organizer's event gets a
    new change key. ``accept``/``tentativelyAccept``/``decline`` as the room (decline also on one
    occurrence of its copy, which is then cancelled there and stays so) tell the organizer;
    declining the whole meeting removes the room's copy. The room's copy takes extended properties
    like any event (the answers' tags); the reference says nothing of other edits of a copy, which
    are allowed (they stay local, and the organizer's next update wins).
13. Bearer tokens are checked against the identity emulator's :class:`TokenRegistry` (401
    ``InvalidAuthenticationToken`` once expired).

Where Microsoft documents nothing the emulator picks one reading: delta rows for a changed series
repeat the master and every in-window instance; a deduplicated ``POST`` answers 201; bodies
are stored as sent and converted (text ⇄ HTML) to what ``Prefer: outlook.body-content-type``
asks for (HTML when it asks nothing); ``transactionId`` deduplicates against live events only.
Recurrences are expanded with :func:`mappings.graph.patterned_to_rrule`, the inverse of the
converter the bridge writes with, so a mapping slip shows up as a mismatch.
"""

from __future__ import annotations

import asyncio
import base64
import html
import json
import random
import re
import secrets
import threading
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qsl, quote, unquote
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from bridge.emulators.identity import TokenRegistry
from bridge.emulators.server import RunningServer, serve_in_thread
from mappings.errors import MappingError
from mappings.expansion import compile_rule
from mappings.graph import patterned_to_rrule
from mappings.timezones import iana_to_windows, resolve_zone

Record = dict[str, Any]

DEFAULT_DELTA_PAGE_SIZE = 10
DEFAULT_LIST_PAGE_SIZE = 10
MAX_PAGE_SIZE = 1000
MAILBOX_CONCURRENCY = 4
#: How a mailbox answers a meeting it received (``POST …/events/{id}/<verb>``).
#: The reply verbs a mailbox may POST on a meeting it received, and the answers they give.
RESPONSES = {
    "accept": "accepted",
    "tentativelyAccept": "tentativelyAccepted",
    "decline": "declined",
}
#: Instances generated for one series at most (a guard against runaway rules).
MAX_INSTANCES = 20_000

PATTERN_TYPES = frozenset(
    {"daily", "weekly", "absoluteMonthly", "relativeMonthly", "absoluteYearly", "relativeYearly"}
)
DAY_NAMES = frozenset(
    {"sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"}
)
INDEXES = frozenset({"first", "second", "third", "fourth", "last"})
SHOW_AS = frozenset({"free", "tentative", "busy", "oof", "workingElsewhere", "unknown"})
SENSITIVITY = frozenset({"normal", "personal", "private", "confidential"})

#: Event properties a client may write, and how the emulator treats them.
WRITABLE = frozenset(
    {
        "subject",
        "body",
        "start",
        "end",
        "showAs",
        "sensitivity",
        "isAllDay",
        "location",
        "locations",
        "attendees",
        "recurrence",
        "transactionId",
        "singleValueExtendedProperties",
        "categories",
        "importance",
        "isReminderOn",
        "reminderMinutesBeforeStart",
        "responseRequested",
        "allowNewTimeProposals",
        "isOnlineMeeting",
        "hideAttendees",
    }
)
_PROPERTY_ID = re.compile(
    r"(?P<type>String|Integer|Boolean|SystemTime|Binary|Double|Long)\s+"
    r"(?:\{(?P<guid>[0-9A-Fa-f-]{36})\}\s+(?:Name\s+(?P<name>\S.*)|Id\s+(?P<num>0x[0-9A-Fa-f]+))"
    r"|(?P<tag>0x[0-9A-Fa-f]+))$"
)
_STRING = r"'((?:[^']|'')*)'"
_ANY_FILTER = re.compile(
    r"singleValueExtendedProperties/any\(\s*(\w+)\s*:\s*\1/id\s+eq\s+" + _STRING + r"\s+and\s+"
    r"(?:\1/value\s+(eq|ne)\s+"
    + _STRING
    + r"|(startswith|contains)\(\s*\1/value\s*,\s*"
    + _STRING
    + r"\s*\))\s*\)",
    re.IGNORECASE,
)
_EXPAND = re.compile(
    r"singleValueExtendedProperties\(\s*\$filter\s*=\s*(.+)\)", re.IGNORECASE | re.DOTALL
)
_EXPAND_ID = re.compile(r"\s*id\s+eq\s+" + _STRING + r"\s*", re.IGNORECASE)
_MAXPAGESIZE = re.compile(r"odata\.maxpagesize\s*=\s*(\d+)", re.IGNORECASE)
_PREFER_ZONE = re.compile(r'outlook\.timezone\s*=\s*"([^"]+)"', re.IGNORECASE)
_PREFER_BODY = re.compile(r'outlook\.body-content-type\s*=\s*"?(text|html)"?', re.IGNORECASE)


# ----- errors --------------------------------------------------------------------------------


class GraphProblem(Exception):
    """An error reply: status, Graph error code and message, extra headers."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def response(self, now: datetime) -> Response:
        """The JSON error envelope."""
        return JSONResponse(
            error_envelope(self.code, self.message, now),
            status_code=self.status,
            headers=self.headers,
        )


def error_envelope(code: str, message: str, now: datetime) -> Record:
    """Graph's error body, with the ``innerError`` a real reply carries."""
    return {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": now.strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": str(uuid.uuid4()),
                "client-request-id": str(uuid.uuid4()),
            },
        }
    }


def _not_found() -> GraphProblem:
    return GraphProblem(
        404, "ErrorItemNotFound", "The specified object was not found in the store."
    )


def _bad_request(message: str, code: str = "ErrorInvalidRequest") -> GraphProblem:
    return GraphProblem(400, code, message)


# ----- time text -----------------------------------------------------------------------------


def graph_text(local: datetime) -> str:
    """A wall-clock time as Graph writes it: seven fractional digits, no offset."""
    return local.replace(tzinfo=None).strftime("%Y-%m-%dT%H:%M:%S") + ".0000000"


def render_time(instant: datetime, zone_name: str | None) -> Record:
    """A ``dateTimeTimeZone`` in UTC, or in the zone a ``Prefer: outlook.timezone`` names."""
    if zone_name is None:
        return {"dateTime": graph_text(instant.astimezone(UTC)), "timeZone": "UTC"}
    zone = ZoneInfo(resolve_zone(zone_name))
    return {"dateTime": graph_text(instant.astimezone(zone)), "timeZone": zone_name}


def offset_text(instant: datetime) -> str:
    """A DateTimeOffset in UTC (``originalStart``)."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def localise(naive: datetime, zone: ZoneInfo) -> datetime:
    """A wall-clock time in ``zone`` (the earlier offset in a fold or gap) as a UTC instant."""
    return naive.replace(tzinfo=zone, fold=0).astimezone(UTC)


def parse_query_instant(text: str, name: str) -> datetime:
    """``startDateTime``/``endDateTime``: ISO 8601, an offset honoured, none meaning UTC."""
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise _bad_request(f"The value '{text}' of parameter '{name}' is invalid.") from None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class ZonedTime:
    """A parsed ``dateTimeTimeZone``: the instant, the zone name as given, its IANA zone."""

    instant: datetime
    name: str
    iana: str


def parse_zoned(value: object, field_name: str) -> ZonedTime:
    """A ``dateTimeTimeZone`` input; wall time in a Windows or IANA zone."""
    if not isinstance(value, Mapping):
        raise _bad_request(f"Property '{field_name}' must be a dateTimeTimeZone object.")
    text, zone_name = value.get("dateTime"), value.get("timeZone")
    if not isinstance(text, str) or not text:
        raise _bad_request(f"'{field_name}.dateTime' is required.")
    if not isinstance(zone_name, str) or not zone_name:
        raise _bad_request(f"'{field_name}.timeZone' is required.")
    try:
        iana = resolve_zone(zone_name)
    except MappingError:
        raise GraphProblem(
            400,
            "TimeZoneNotSupportedException",
            "A valid TimeZone value must be specified. The following TimeZone value is not "
            f"supported: '{zone_name}'.",
        ) from None
    try:
        naive = datetime.fromisoformat(text)
    except ValueError:
        raise _bad_request(f"Cannot convert the literal '{text}' to DateTime.") from None
    if naive.tzinfo is not None:
        raise _bad_request(f"'{field_name}.dateTime' must not carry an offset: '{text}'.")
    return ZonedTime(localise(naive, ZoneInfo(iana)), zone_name, iana)


def windows_name(zone_name: str) -> str:
    """How Graph reports a zone it was given: its Windows name where one exists."""
    if zone_name in ("UTC", "Etc/UTC"):
        return "UTC"
    try:
        iana = resolve_zone(zone_name)
    except MappingError:
        return zone_name
    return iana_to_windows(iana) or zone_name


# ----- ids -----------------------------------------------------------------------------------


def new_event_id(rng: random.Random) -> str:
    """An opaque Exchange-looking id with characters a URL path must escape (+ / =)."""
    raw = bytes(rng.getrandbits(8) for _ in range(35))
    return "AAMkAG" + base64.b64encode(raw).decode()


def occurrence_id(master_id: str, original: datetime) -> str:
    """The deterministic id of one occurrence of a series."""
    payload = f"{master_id}\x00{offset_text(original)}".encode()
    return "AAMkOcc" + base64.b64encode(payload).decode()


def parse_occurrence_id(event_id: str) -> tuple[str, datetime] | None:
    """(master id, original start) of an occurrence id, or None for any other id."""
    if not event_id.startswith("AAMkOcc"):
        return None
    try:
        master, _, stamp = base64.b64decode(event_id[7:], validate=True).decode().partition("\x00")
        original = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None
    return master, original


def property_key(property_id: str) -> str | None:
    """A canonical form of an extended property id (GUID case-insensitive), or None."""
    match = _PROPERTY_ID.fullmatch(property_id.strip())
    if match is None:
        return None
    if match["tag"]:
        return f"{match['type']} {match['tag'].lower()}"
    guid = match["guid"].upper()
    if match["name"]:
        return f"{match['type']} {{{guid}}} Name {match['name']}"
    return f"{match['type']} {{{guid}}} Id {match['num'].lower()}"


def _unquote_literal(text: str) -> str:
    return text.replace("''", "'")


# ----- the data --------------------------------------------------------------------------------


@dataclass(slots=True)
class Instance:
    """What an exception changed on one occurrence (absent keys inherit from the master)."""

    fields: Record = field(default_factory=dict)
    start: datetime | None = None
    end: datetime | None = None
    start_zone: str | None = None
    end_zone: str | None = None
    change_key: str = ""
    created: datetime | None = None
    modified: datetime | None = None


@dataclass(slots=True)
class Event:
    """One stored event: a single instance or a series master (with its exceptions)."""

    id: str
    mailbox: str
    fields: Record
    start: datetime
    end: datetime
    start_zone: str
    end_zone: str
    zone_iana: str
    ical_uid: str
    change_key: str
    created: datetime
    modified: datetime
    transaction_id: str | None = None
    recurrence: Record | None = None
    rule: str | None = None
    properties: dict[str, tuple[str, str]] = field(default_factory=dict)
    exceptions: dict[datetime, Instance] = field(default_factory=dict)
    cancelled: set[datetime] = field(default_factory=set)
    organizer: Record | None = None
    is_organizer: bool = True
    response: str = "organizer"
    meeting_of: tuple[str, str] | None = None
    #: On a room's copy: occurrences (original starts) the room declined; they stay cancelled.
    declined: set[datetime] = field(default_factory=set)

    @property
    def is_series(self) -> bool:
        """Whether this is a series master."""
        return self.rule is not None

    @property
    def duration(self) -> timedelta:
        """Length of an unmodified occurrence."""
        return self.end - self.start

    def originals(self, until: datetime) -> Iterator[datetime]:
        """The rule's occurrence starts (UTC) before ``until``, cancelled ones included."""
        assert self.rule is not None
        zone = ZoneInfo(self.zone_iana)
        compiled = compile_rule(self.rule, self.start, zone)
        for count, local in enumerate(compiled, start=1):
            if count > MAX_INSTANCES:
                return
            instant = localise(local, zone)
            if instant >= until:
                return
            yield instant

    def occurrence_span(self, original: datetime) -> tuple[datetime, datetime]:
        """Where one occurrence really is (an exception may have moved it)."""
        instance = self.exceptions.get(original)
        if instance is not None and instance.start is not None and instance.end is not None:
            return instance.start, instance.end
        return original, original + self.duration

    def live_instances(self, start: datetime, end: datetime) -> list[datetime]:
        """Original starts of the uncancelled occurrences overlapping [start, end)."""
        longest = max(
            [self.duration]
            + [(i.end - i.start) for i in self.exceptions.values() if i.start and i.end]
        )
        moved = max(
            [timedelta(0)]
            + [abs(i.start - o) for o, i in self.exceptions.items() if i.start is not None]
        )
        found = []
        for original in self.originals(end + moved):
            if original in self.cancelled:
                continue
            if original + longest + moved <= start:
                continue
            span_start, span_end = self.occurrence_span(original)
            if span_start < end and span_end > start:
                found.append(original)
        return found

    def overlaps(self, start: datetime, end: datetime) -> bool:
        """Whether the event (any live occurrence of a series) overlaps [start, end)."""
        if not self.is_series:
            return self.start < end and self.end > start
        return bool(self.live_instances(start, end))


@dataclass(frozen=True, slots=True)
class MeetingReply:
    """A response a mailbox sent to a meeting's organizer (``original``: one occurrence)."""

    organizer: str
    event_id: str
    responder: str
    original: datetime | None
    response: str
    comment: str


@dataclass(slots=True)
class RoomPolicy:
    """The room's calendar processing (``Set-CalendarProcessing``)."""

    allow_conflicts: bool = False
    booking_window_days: int = 180
    maximum_duration_minutes: int = 1440


@dataclass(slots=True)
class Mailbox:
    """A user or room mailbox and its calendar."""

    address: str
    id: str
    display_name: str
    room: Record | None = None
    policy: RoomPolicy | None = None
    events: dict[str, Event] = field(default_factory=dict)
    seq: int = 0
    log: list[tuple[int, str]] = field(default_factory=list)
    in_flight: int = 0
    peak_in_flight: int = 0

    def touch(self, event_id: str) -> None:
        """Record a change of ``event_id`` for delta queries."""
        self.seq += 1
        self.log.append((self.seq, event_id))


@dataclass(slots=True)
class DeltaState:
    """What a delta token stands for: a mailbox, a window and where its last round ended."""

    mailbox: str
    start: datetime
    end: datetime
    seq: int
    initial_url: str


@dataclass(slots=True)
class Round:
    """A delta round being paged: its rows, how far the client got, where the round ends."""

    state: DeltaState
    rows: list[Record]
    offset: int = 0
    empty_page_pending: bool = False


class FaultKind(StrEnum):
    """Failures the emulator can inject before (or instead of) answering."""

    THROTTLE = "throttle"  # 429 TooManyRequests + fractional Retry-After
    UNAVAILABLE = "unavailable"  # 503 + Retry-After
    GATEWAY_TIMEOUT = "gateway_timeout"  # 504, nothing applied
    LOST_REPLY = "lost_reply"  # applied, then 504: the client cannot know
    CONFLICT = "conflict"  # a transient 412 ErrorIrresolvableConflict


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Random fault injection: each request fails with probability ``rate`` (seeded)."""

    rate: float = 0.0
    kinds: tuple[FaultKind, ...] = (FaultKind.THROTTLE, FaultKind.UNAVAILABLE)
    seed: int = 0
    retry_after: float = 0.05
    methods: frozenset[str] = frozenset({"GET", "POST", "PATCH", "DELETE"})


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the emulator saw it (no headers or bodies)."""

    method: str
    route: str
    path: str
    query: tuple[tuple[str, str], ...]
    mailbox: str | None
    status: int
    fault: FaultKind | None


@dataclass(frozen=True, slots=True)
class Preferences:
    """What a request's ``Prefer`` headers ask for."""

    page_size: int | None
    zone: str | None
    body_type: str


def preferences(header_values: list[str]) -> Preferences:
    """Parse every ``Prefer`` header of a request."""
    text = ",".join(header_values)
    size = _MAXPAGESIZE.search(text)
    zone = _PREFER_ZONE.search(text)
    body = _PREFER_BODY.search(text)
    return Preferences(
        page_size=int(size[1]) if size else None,
        zone=zone[1] if zone else None,
        body_type=body[1].lower() if body else "html",
    )


# ----- rendering ---------------------------------------------------------------------------------


def _text_to_html(text: str) -> str:
    escaped = html.escape(text).replace("\r\n", "\n").replace("\n", "<br>\r\n")
    return (
        '<html>\r\n<head>\r\n<meta http-equiv="Content-Type" content="text/html; '
        'charset=utf-8">\r\n</head>\r\n<body>\r\n' + escaped + "\r\n</body>\r\n</html>\r\n"
    )


def _html_to_text(content: str) -> str:
    body = re.sub(r"(?is)<head.*?</head>", "", content)
    body = re.sub(r"(?i)<br\s*/?>", "\n", body)
    return html.unescape(re.sub(r"<[^>]+>", "", body)).strip("\r\n")


def render_body(body: Record | None, wanted: str) -> Record:
    """The stored body converted to the content type the client asked for."""
    stored = body or {"contentType": "text", "content": ""}
    kind = str(stored.get("contentType", "text")).lower()
    content = str(stored.get("content") or "")
    if kind == wanted:
        return {"contentType": wanted, "content": content}
    converted = _text_to_html(content) if wanted == "html" else _html_to_text(content)
    return {"contentType": wanted, "content": converted}


def _preview(body: Record | None) -> str:
    return _html_to_text(render_body(body, "html")["content"])[:255]


@dataclass(frozen=True, slots=True)
class Rendering:
    """How one request wants events rendered."""

    prefer: Preferences
    expand: frozenset[str] | None
    select: frozenset[str] | None
    context: str


class GraphData:
    """Mailboxes, events, delta tokens: the emulator's state and its rules (no HTTP here)."""

    def __init__(self, seed: int, now: datetime | None) -> None:
        self.rng = random.Random(seed)
        self.mailboxes: dict[str, Mailbox] = {}
        self.tokens: dict[str, DeltaState] = {}
        self.rounds: dict[str, Round] = {}
        self.pending: list[tuple[str, str]] = []
        #: Meeting responses sent to organizers (what their inbox shows; Graph has no API
        #: for the comment on the organizer's side).
        self.replies: list[MeetingReply] = []
        self.frozen_now = now
        self.replay_rate = 0.0
        self.empty_first_page = False
        self.resync_required = False
        self.occurrence_boundary_checks = True
        self.deduplicated = 0

    # ----- clock and mailboxes -------------------------------------------------------------

    def now(self) -> datetime:
        """The emulator's now (frozen when a test set one)."""
        return (self.frozen_now or datetime.now(UTC)).replace(microsecond=0)

    def mailbox(self, name: str) -> Mailbox:
        """A mailbox by address (case-insensitive) or id, or 404 ErrorInvalidUser."""
        key = name.lower()
        found = self.mailboxes.get(key)
        if found is None:
            found = next((m for m in self.mailboxes.values() if m.id == name), None)
        if found is None:
            raise GraphProblem(404, "ErrorInvalidUser", f"The requested user '{name}' is invalid.")
        return found

    def change_key(self) -> str:
        """A fresh change key."""
        return base64.b64encode(self.rng.getrandbits(128).to_bytes(16, "big")).decode()

    # ----- reading events ------------------------------------------------------------------

    def resolve(self, box: Mailbox, event_id: str) -> tuple[Event, datetime | None]:
        """The event an id names: (event, None) or (series master, occurrence original start)."""
        event = box.events.get(event_id)
        if event is not None:
            return event, None
        parsed = parse_occurrence_id(event_id)
        if parsed is not None:
            master = box.events.get(parsed[0])
            if master is not None and master.is_series and self._is_occurrence(master, parsed[1]):
                return master, parsed[1]
        raise _not_found()

    @staticmethod
    def _is_occurrence(master: Event, original: datetime) -> bool:
        if original in master.cancelled:
            return False
        return any(o == original for o in master.originals(original + timedelta(seconds=1)))

    def render_event(self, event: Event, how: Rendering) -> Record:
        """A full event resource."""
        fields = event.fields
        attendees = [dict(a) for a in fields.get("attendees") or []]
        row: Record = {
            "@odata.etag": f'W/"{event.change_key}"',
            "id": event.id,
            "createdDateTime": event.created.strftime("%Y-%m-%dT%H:%M:%S.0000000Z"),
            "lastModifiedDateTime": event.modified.strftime("%Y-%m-%dT%H:%M:%S.0000000Z"),
            "changeKey": event.change_key,
            "categories": list(fields.get("categories") or []),
            "transactionId": event.transaction_id,
            "originalStartTimeZone": windows_name(event.start_zone),
            "originalEndTimeZone": windows_name(event.end_zone),
            "iCalUId": event.ical_uid,
            "reminderMinutesBeforeStart": fields.get("reminderMinutesBeforeStart", 15),
            "isReminderOn": fields.get("isReminderOn", True),
            "hasAttachments": False,
            "subject": fields.get("subject", ""),
            "bodyPreview": _preview(fields.get("body")),
            "importance": fields.get("importance", "normal"),
            "sensitivity": fields.get("sensitivity", "normal"),
            "isAllDay": bool(fields.get("isAllDay", False)),
            "isCancelled": False,
            "isOrganizer": event.is_organizer,
            "responseRequested": fields.get("responseRequested", True),
            "seriesMasterId": None,
            "showAs": fields.get("showAs", "busy"),
            "type": "seriesMaster" if event.is_series else "singleInstance",
            "webLink": f"https://outlook.office365.com/owa/?itemid={quote(event.id, safe='')}",
            "onlineMeetingUrl": None,
            "isOnlineMeeting": bool(fields.get("isOnlineMeeting", False)),
            "responseStatus": {"response": event.response, "time": "0001-01-01T00:00:00Z"},
            "body": render_body(fields.get("body"), how.prefer.body_type),
            "start": render_time(event.start, how.prefer.zone),
            "end": render_time(event.end, how.prefer.zone),
            "location": fields.get("location") or {"displayName": "", "locationType": "default"},
            "locations": list(fields.get("locations") or []),
            "recurrence": event.recurrence,
            "attendees": attendees,
            "organizer": event.organizer or {"emailAddress": {"name": "", "address": ""}},
        }
        return self._finish(row, event.properties, how)

    def render_instance(
        self, master: Event, original: datetime, how: Rendering, *, skeleton: bool
    ) -> Record:
        """An occurrence or exception of a series (a skeleton row in delta pages)."""
        instance = master.exceptions.get(original)
        start, end = master.occurrence_span(original)
        kind = "exception" if instance is not None else "occurrence"
        change_key = instance.change_key if instance is not None else master.change_key
        ident = occurrence_id(master.id, original)
        if skeleton and instance is None:
            return {
                "@odata.type": "#microsoft.graph.event",
                "@odata.etag": f'W/"{change_key}"',
                "id": ident,
                "type": kind,
                "seriesMasterId": master.id,
                "start": render_time(start, how.prefer.zone),
                "end": render_time(end, how.prefer.zone),
            }
        row = self.render_event(master, Rendering(how.prefer, None, None, how.context))
        overrides = instance.fields if instance is not None else {}
        for name in ("subject", "showAs", "sensitivity", "importance", "location", "attendees"):
            if name in overrides:
                row[name] = overrides[name]
        if "body" in overrides:
            row["body"] = render_body(overrides["body"], how.prefer.body_type)
            row["bodyPreview"] = _preview(overrides["body"])
        row.update(
            {
                "@odata.etag": f'W/"{change_key}"',
                "changeKey": change_key,
                "id": ident,
                "type": kind,
                "seriesMasterId": master.id,
                "recurrence": None,
                "originalStart": offset_text(original),
                "iCalUId": master.ical_uid[:-8] + f"{int(original.timestamp()) % 10**8:08d}",
                "start": render_time(start, how.prefer.zone),
                "end": render_time(end, how.prefer.zone),
                "transactionId": None,
            }
        )
        if instance is not None and instance.start_zone:
            row["originalStartTimeZone"] = windows_name(instance.start_zone)
        properties = {}
        if instance is not None:
            properties = instance.fields.get("_properties", {})
        return self._finish(row, properties, how)

    @staticmethod
    def _finish(row: Record, properties: Mapping[str, tuple[str, str]], how: Rendering) -> Record:
        if how.select is not None:
            keep = how.select | {"id", "@odata.etag"}
            row = {name: value for name, value in row.items() if name in keep}
        if how.expand is not None:
            row["singleValueExtendedProperties"] = [
                {"id": given, "value": value}
                for key, (given, value) in sorted(properties.items())
                if key in how.expand
            ]
        return row

    # ----- writing events ------------------------------------------------------------------

    def create(self, box: Mailbox, body: Record) -> tuple[Event, bool]:
        """Create an event from a POST body; (event, True) when a live one had its transactionId."""
        _check_writable(body)
        transaction = body.get("transactionId")
        if transaction is not None:
            if not isinstance(transaction, str) or not transaction:
                raise _bad_request("transactionId must be a non-empty string.")
            for existing in box.events.values():
                if existing.transaction_id == transaction:
                    self.deduplicated += 1
                    return existing, True
        if "start" not in body or "end" not in body:
            raise _bad_request("An event needs both 'start' and 'end'.")
        start = parse_zoned(body["start"], "start")
        end = parse_zoned(body["end"], "end")
        if end.instant < start.instant:
            raise _bad_request("The end of the event is before its start.")
        now = self.now()
        event = Event(
            id=new_event_id(self.rng),
            mailbox=box.address,
            fields={},
            start=start.instant,
            end=end.instant,
            start_zone=start.name,
            end_zone=end.name,
            zone_iana=start.iana,
            ical_uid="040000008200E00074C5B7101A82E00800000000" + secrets.token_hex(28).upper(),
            change_key=self.change_key(),
            created=now,
            modified=now,
            transaction_id=transaction,
            organizer={"emailAddress": {"name": box.display_name, "address": box.address}},
        )
        self._apply_fields(event, body)
        if body.get("recurrence") is not None:
            self._set_recurrence(event, body["recurrence"])
        box.events[event.id] = event
        box.touch(event.id)
        self._queue_processing(box, event)
        return event, False

    def update(self, box: Mailbox, event_id: str, body: Record, if_match: str | None) -> Record:
        """PATCH an event or one occurrence; returns what to render (event, original)."""
        _check_writable(body)
        event, original = self.resolve(box, event_id)
        current = event.change_key
        if original is not None and original in event.exceptions:
            current = event.exceptions[original].change_key
        _check_if_match(if_match, current)
        if original is not None:
            self._update_occurrence(box, event, original, body)
            return {"event": event, "original": original}
        if "transactionId" in body and body["transactionId"] != event.transaction_id:
            raise _bad_request("The property 'transactionId' cannot be changed.")
        start = parse_zoned(body["start"], "start") if "start" in body else None
        end = parse_zoned(body["end"], "end") if "end" in body else None
        new_start = start.instant if start else event.start
        new_end = end.instant if end else event.end
        if new_end < new_start:
            raise _bad_request("The end of the event is before its start.")
        if start is not None:
            event.start, event.start_zone, event.zone_iana = start.instant, start.name, start.iana
        if end is not None:
            event.end, event.end_zone = end.instant, end.name
        self._apply_fields(event, body)
        if "recurrence" in body:
            recurrence = body["recurrence"]
            if recurrence is None:
                event.recurrence, event.rule = None, None
            else:
                self._set_recurrence(event, recurrence)
            # Exchange drops exceptions and cancellations when the pattern changes.
            event.exceptions.clear()
            event.cancelled.clear()
        elif event.is_series and (start or end):
            event.exceptions.clear()
            event.cancelled.clear()
        self._bump(box, event)
        self._queue_processing(box, event)
        return {"event": event, "original": None}

    def _update_occurrence(
        self, box: Mailbox, master: Event, original: datetime, body: Record
    ) -> None:
        disallowed = {"recurrence", "transactionId"} & body.keys()
        if disallowed:
            raise _bad_request(f"'{sorted(disallowed)[0]}' cannot be set on an occurrence.")
        instance = master.exceptions.get(original) or Instance(created=self.now())
        old_start, old_end = master.occurrence_span(original)
        start = parse_zoned(body["start"], "start") if "start" in body else None
        end = parse_zoned(body["end"], "end") if "end" in body else None
        new_start = start.instant if start else old_start
        new_end = end.instant if end else old_end
        if new_end < new_start:
            raise _bad_request("The end of the event is before its start.")
        if self.occurrence_boundary_checks:
            self._refuse_crossing(master, original, new_start)
        if start is not None:
            instance.start, instance.start_zone = start.instant, start.name
        else:
            instance.start = old_start
        if end is not None:
            instance.end, instance.end_zone = end.instant, end.name
        else:
            instance.end = old_end
        for name, value in body.items():
            if name in ("start", "end"):
                continue
            if name == "singleValueExtendedProperties":
                props = dict(instance.fields.get("_properties", {}))
                props.update(_extended_properties(value))
                instance.fields["_properties"] = props
                continue
            instance.fields[name] = _checked_field(name, value)
        instance.change_key = self.change_key()
        instance.modified = self.now()
        master.exceptions[original] = instance
        box.touch(occurrence_id(master.id, original))
        self._bump(box, master)
        self._queue_processing(box, master)

    @staticmethod
    def _refuse_crossing(master: Event, original: datetime, new_start: datetime) -> None:
        zone = ZoneInfo(master.zone_iana)
        previous = None
        following = None
        for candidate in master.originals(original + timedelta(days=800)):
            if candidate < original:
                previous = candidate
            elif candidate > original:
                following = candidate
                break
        moved_to = new_start.astimezone(zone).date()
        crosses = (previous is not None and moved_to <= previous.astimezone(zone).date()) or (
            following is not None and moved_to >= following.astimezone(zone).date()
        )
        if crosses:
            raise GraphProblem(
                400,
                "ErrorOccurrenceCrossingBoundary",
                "An occurrence cannot be moved onto or past the day of an adjacent occurrence.",
            )

    def delete(self, box: Mailbox, event_id: str, if_match: str | None) -> None:
        """DELETE an event (a whole series for its master) or cancel one occurrence."""
        event, original = self.resolve(box, event_id)
        if original is not None:
            current = event.change_key
            if original in event.exceptions:
                current = event.exceptions[original].change_key
            _check_if_match(if_match, current)
            event.cancelled.add(original)
            event.exceptions.pop(original, None)
            box.touch(occurrence_id(event.id, original))
            self._bump(box, event)
            self._queue_processing(box, event)  # the rooms' copies lose the occurrence too
            return
        _check_if_match(if_match, event.change_key)
        del box.events[event.id]
        box.touch(event.id)
        self._withdraw_copies(event)

    def _bump(self, box: Mailbox, event: Event) -> None:
        event.change_key = self.change_key()
        event.modified = self.now()
        box.touch(event.id)

    def _apply_fields(self, event: Event, body: Record) -> None:
        for name, value in body.items():
            if name in ("start", "end", "recurrence", "transactionId"):
                continue
            if name == "singleValueExtendedProperties":
                event.properties.update(_extended_properties(value))
                continue
            event.fields[name] = _checked_field(name, value)

    def _set_recurrence(self, event: Event, recurrence: object) -> None:
        event.recurrence, event.rule = _validated_recurrence(recurrence, event)

    # ----- queries -------------------------------------------------------------------------

    def instances(self, master: Event, start: datetime, end: datetime) -> list[datetime]:
        """Original starts of the live occurrences overlapping [start, end), by real start."""
        found = master.live_instances(start, end)
        return sorted(found, key=lambda o: master.occurrence_span(o)[0])

    def filtered(self, box: Mailbox, clause: str | None) -> list[Event]:
        """Singles and series masters matching an extended-property ``$filter``."""
        events = sorted(box.events.values(), key=lambda e: (e.created, e.id))
        if clause is None:
            return events
        match = _ANY_FILTER.fullmatch(clause.strip())
        if match is None:
            raise _bad_request(f"Invalid filter clause: {clause[:200]}", "BadRequest")
        key = property_key(_unquote_literal(match[2]))
        if key is None:
            raise _bad_request("The extended property id is malformed.", "ErrorInvalidProperty")
        operator = (match[3] or match[5]).lower()
        wanted = _unquote_literal(match[4] if match[4] is not None else match[6]).lower()
        chosen = []
        for event in events:
            stored = event.properties.get(key)
            if stored is None:
                continue
            value = stored[1].lower()
            if (
                (operator == "eq" and value == wanted)
                or (operator == "ne" and value != wanted)
                or (operator == "startswith" and value.startswith(wanted))
                or (operator == "contains" and wanted in value)
            ):
                chosen.append(event)
        return chosen

    # ----- delta -----------------------------------------------------------------------------

    def delta_rows(
        self, box: Mailbox, state: DeltaState, how: Rendering, *, initial: bool
    ) -> list[Record]:
        """The rows of one delta round: everything in the window, or what changed since."""
        if initial:
            chosen: list[str] = sorted(box.events, key=lambda i: (box.events[i].created, i))
        else:
            seen: dict[str, None] = {}
            for seq, event_id in box.log:
                if seq > state.seq:
                    seen[event_id] = None
            chosen = list(seen)
        rows: list[Record] = []
        for event_id in chosen:
            rows.extend(self._delta_rows_of(box, event_id, state, how, initial=initial))
        if self.replay_rate and rows:
            for row in list(rows):
                if "@removed" not in row and self.rng.random() < self.replay_rate:
                    rows.append(row)
        return rows

    def _delta_rows_of(
        self, box: Mailbox, event_id: str, state: DeltaState, how: Rendering, *, initial: bool
    ) -> list[Record]:
        removed = [
            {
                "@odata.type": "#microsoft.graph.event",
                "id": event_id,
                "@removed": {"reason": "deleted"},
            }
        ]
        parsed = parse_occurrence_id(event_id)
        if parsed is not None:
            master = box.events.get(parsed[0])
            if master is None or parsed[1] in master.cancelled:
                return [] if initial else removed
            return []  # reported with its master, which a change to it also bumps
        event = box.events.get(event_id)
        if event is None:
            return [] if initial else removed
        if not event.is_series:
            if event.overlaps(state.start, state.end):
                return [self.render_event(event, how)]
            return [] if initial else removed
        originals = self.instances(event, state.start, state.end)
        if not originals:
            return [] if initial else removed
        rows = [self.render_event(event, how)]
        rows.extend(self.render_instance(event, o, how, skeleton=True) for o in originals)
        return rows

    def new_round(self, state: DeltaState, rows: list[Record]) -> str:
        """Store a round for paging; returns its skip token."""
        token = secrets.token_urlsafe(24)
        self.rounds[token] = Round(state, rows, empty_page_pending=self.empty_first_page)
        return token

    def issue_delta_token(self, state: DeltaState) -> str:
        """A delta token for the state at the end of a round."""
        token = secrets.token_urlsafe(24)
        self.tokens[token] = state
        return token

    # ----- room processing -------------------------------------------------------------------

    def _queue_processing(self, box: Mailbox, event: Event) -> None:
        if box.room is not None:
            return
        for attendee in event.fields.get("attendees") or []:
            address = str((attendee.get("emailAddress") or {}).get("address", "")).lower()
            room = self.mailboxes.get(address)
            if attendee.get("type") == "resource" and room is not None and room.room is not None:
                self.pending.append((box.address, event.id))
                return

    def settle(self) -> None:
        """Process the meeting requests rooms received (AutoAccept), in order."""
        pending, self.pending = self.pending, []
        for organizer_address, event_id in pending:
            organizer = self.mailboxes.get(organizer_address.lower())
            event = organizer.events.get(event_id) if organizer else None
            if organizer is None or event is None:
                continue
            for attendee in event.fields.get("attendees") or []:
                address = str((attendee.get("emailAddress") or {}).get("address", "")).lower()
                room = self.mailboxes.get(address)
                if attendee.get("type") != "resource" or room is None or room.policy is None:
                    continue
                accepted = self._room_accepts(room, event)
                attendee["status"] = {
                    "response": "accepted" if accepted else "declined",
                    "time": offset_text(self.now()),
                }
                if accepted:
                    self._copy_into(room, organizer, event)
                else:
                    self._remove_copy(room, organizer.address, event.id)
            self._bump(organizer, event)

    def _room_accepts(self, room: Mailbox, event: Event) -> bool:
        policy = room.policy
        assert policy is not None
        if event.duration > timedelta(minutes=policy.maximum_duration_minutes):
            return False
        horizon = self.now() + timedelta(days=policy.booking_window_days)
        if event.start > horizon:
            return False
        if policy.allow_conflicts:
            return True
        spans = [(event.start, event.end)]
        if event.is_series:
            spans = [event.occurrence_span(o) for o in event.live_instances(event.start, horizon)]
        for other in room.events.values():
            if other.meeting_of == (event.mailbox, event.id):
                continue
            if other.fields.get("showAs", "busy") == "free":
                continue
            if any(other.overlaps(start, end) for start, end in spans):
                return False
        return True

    def _copy_into(self, room: Mailbox, organizer: Mailbox, event: Event) -> None:
        link = (organizer.address, event.id)
        copy = next((e for e in room.events.values() if e.meeting_of == link), None)
        now = self.now()
        if copy is None:
            copy = Event(
                id=new_event_id(self.rng),
                mailbox=room.address,
                fields={},
                start=event.start,
                end=event.end,
                start_zone=event.start_zone,
                end_zone=event.end_zone,
                zone_iana=event.zone_iana,
                ical_uid=event.ical_uid,
                change_key="",
                created=now,
                modified=now,
                meeting_of=link,
            )
            room.events[copy.id] = copy
        copy.fields = {k: v for k, v in event.fields.items() if k != "transactionId"}
        copy.start, copy.end = event.start, event.end
        copy.start_zone, copy.end_zone, copy.zone_iana = (
            event.start_zone,
            event.end_zone,
            event.zone_iana,
        )
        copy.recurrence, copy.rule = event.recurrence, event.rule
        copy.exceptions = dict(event.exceptions)
        copy.cancelled = set(event.cancelled) | copy.declined
        copy.organizer = event.organizer
        copy.is_organizer = False
        copy.response = "accepted"
        self._bump(room, copy)

    def _remove_copy(self, room: Mailbox, organizer: str, event_id: str) -> None:
        for copy in list(room.events.values()):
            if copy.meeting_of == (organizer, event_id):
                del room.events[copy.id]
                room.touch(copy.id)

    def _withdraw_copies(self, event: Event) -> None:
        for room in self.mailboxes.values():
            if room.room is not None:
                self._remove_copy(room, event.mailbox, event.id)

    def respond(self, box: Mailbox, event_id: str, verb: str, body: Record | None = None) -> None:
        """``accept``/``decline`` a meeting the mailbox received, wholly or one occurrence.

        Declining the whole meeting removes the copy; declining an occurrence cancels it in
        the copy (it stays cancelled when the organizer updates the series). The organizer's
        event shows the answer (per occurrence as an exception) with a new change key.
        """
        event, original = self.resolve(box, event_id)
        if event.is_organizer or event.meeting_of is None:
            raise _bad_request(
                "Your request can't be completed. You can't respond to a meeting you organized."
            )
        response = RESPONSES[verb]
        body = body or {}
        if body.get("sendResponse", True):
            organizer, source = event.meeting_of
            comment = str(body.get("comment") or "")
            self.replies.append(MeetingReply(organizer, source, box.address, original, response,
                                             comment))
        if original is None:
            if response == "declined":
                del box.events[event.id]
                box.touch(event.id)
            else:
                event.response = response
                self._bump(box, event)
        elif response == "declined":
            event.declined.add(original)
            event.cancelled.add(original)
            event.exceptions.pop(original, None)
            box.touch(occurrence_id(event.id, original))
            self._bump(box, event)
        else:
            raise _bad_request("An occurrence is accepted with its series.")
        self._tell_organizer(box, event, original, response)

    def _tell_organizer(
        self, box: Mailbox, copy: Event, original: datetime | None, response: str
    ) -> None:
        """The room's answer shows on the organizer's event (or on that occurrence)."""
        assert copy.meeting_of is not None
        organizer_address, organizer_event = copy.meeting_of
        organizer = self.mailboxes.get(organizer_address.lower())
        source = organizer.events.get(organizer_event) if organizer else None
        if organizer is None or source is None:
            return
        status = {"response": response, "time": offset_text(self.now())}
        if original is None:
            attendees = source.fields.get("attendees") or []
        else:
            instance = source.exceptions.get(original) or Instance(created=self.now())
            instance.start, instance.end = source.occurrence_span(original)
            attendees = [dict(a) for a in source.fields.get("attendees") or []]
            instance.fields["attendees"] = attendees
            instance.change_key = self.change_key()
            instance.modified = self.now()
            source.exceptions[original] = instance
        for attendee in attendees:
            address = str((attendee.get("emailAddress") or {}).get("address", "")).lower()
            if address == box.address.lower():
                attendee["status"] = status
        self._bump(organizer, source)


# ----- validation ------------------------------------------------------------------------------


def _check_writable(body: Record) -> None:
    for name in body:
        if name.startswith("@odata"):
            continue
        if name not in WRITABLE:
            raise GraphProblem(
                400,
                "RequestBodyRead",
                f"The property '{name}' does not exist on type 'microsoft.graph.event'. Make "
                "sure to only use property names that are defined by the type or mark the type "
                "as open type.",
            )


def _check_if_match(if_match: str | None, change_key: str) -> None:
    if if_match is None or if_match.strip() == "*":
        return
    if if_match.strip() != f'W/"{change_key}"':
        raise GraphProblem(
            412,
            "ErrorIrresolvableConflict",
            "The send or update operation could not be performed because the change key passed "
            "in the request does not match the current change key for the item.",
        )


def _checked_field(name: str, value: object) -> object:
    if name == "showAs" and value not in SHOW_AS:
        raise _bad_request(f"Requested value '{value}' was not found.", "RequestBodyRead")
    if name == "sensitivity" and value not in SENSITIVITY:
        raise _bad_request(f"Requested value '{value}' was not found.", "RequestBodyRead")
    if name == "subject" and not isinstance(value, str | None):
        raise _bad_request("subject must be a string.", "RequestBodyRead")
    if name == "body":
        if not isinstance(value, Mapping) or str(value.get("contentType", "")).lower() not in (
            "text",
            "html",
        ):
            raise _bad_request("body must be an itemBody with contentType text or html.")
        return {"contentType": str(value["contentType"]).lower(), "content": value.get("content")}
    if name == "attendees":
        if not isinstance(value, list):
            raise _bad_request("attendees must be a list.", "RequestBodyRead")
        checked = []
        for attendee in value:
            if not isinstance(attendee, Mapping) or not isinstance(
                attendee.get("emailAddress"), Mapping
            ):
                raise _bad_request("Each attendee needs an emailAddress.", "RequestBodyRead")
            if attendee.get("type", "required") not in ("required", "optional", "resource"):
                raise _bad_request(f"Unknown attendee type {attendee.get('type')!r}.")
            checked.append(
                {
                    "type": attendee.get("type", "required"),
                    "status": {"response": "none", "time": "0001-01-01T00:00:00Z"},
                    "emailAddress": dict(attendee["emailAddress"]),
                }
            )
        return checked
    return value


def _extended_properties(value: object) -> dict[str, tuple[str, str]]:
    if not isinstance(value, list):
        raise _bad_request("singleValueExtendedProperties must be a list.", "RequestBodyRead")
    stored: dict[str, tuple[str, str]] = {}
    for item in value:
        if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
            raise _bad_request("Each extended property needs an id.", "RequestBodyRead")
        key = property_key(item["id"])
        if key is None:
            raise GraphProblem(
                400, "ErrorInvalidProperty", f"The property id '{item['id'][:200]}' is malformed."
            )
        raw = item.get("value")
        if not isinstance(raw, str):
            raise _bad_request("An extended property value must be a string.", "RequestBodyRead")
        stored[key] = (item["id"], raw)
    return stored


def _validated_recurrence(recurrence: object, event: Event) -> tuple[Record, str]:
    """The stored patternedRecurrence and its RRULE, or 400 for any malformed part."""
    if not isinstance(recurrence, Mapping):
        raise _bad_request("recurrence must be a patternedRecurrence.", "RequestBodyRead")
    pattern, range_ = recurrence.get("pattern"), recurrence.get("range")
    if not isinstance(pattern, Mapping) or not isinstance(range_, Mapping):
        raise _recurrence_problem("Both pattern and range are required.")
    kind = pattern.get("type")
    if kind not in PATTERN_TYPES:
        raise _recurrence_problem(f"Unknown recurrence pattern type '{kind}'.")
    interval = pattern.get("interval")
    if not isinstance(interval, int) or isinstance(interval, bool) or not 1 <= interval <= 99:
        raise _recurrence_problem("The recurrence interval must be between 1 and 99.")
    days = pattern.get("daysOfWeek") or []
    if not isinstance(days, list) or any(str(d).lower() not in DAY_NAMES for d in days):
        raise _recurrence_problem("daysOfWeek holds an unknown day.")
    if kind in ("weekly", "relativeMonthly", "relativeYearly") and not days:
        raise _recurrence_problem(f"A {kind} pattern needs daysOfWeek.")
    if kind in ("absoluteMonthly", "absoluteYearly") and not (
        isinstance(pattern.get("dayOfMonth"), int) and 1 <= pattern["dayOfMonth"] <= 31
    ):
        raise _recurrence_problem(f"A {kind} pattern needs dayOfMonth 1-31.")
    if kind in ("absoluteYearly", "relativeYearly") and not (
        isinstance(pattern.get("month"), int) and 1 <= pattern["month"] <= 12
    ):
        raise _recurrence_problem(f"A {kind} pattern needs month 1-12.")
    if pattern.get("index", "first") not in INDEXES:
        raise _recurrence_problem("index must be first, second, third, fourth or last.")
    if str(pattern.get("firstDayOfWeek", "sunday")).lower() not in DAY_NAMES:
        raise _recurrence_problem("firstDayOfWeek is not a day.")
    range_kind = range_.get("type")
    if range_kind not in ("endDate", "noEnd", "numbered"):
        raise _recurrence_problem(f"Unknown recurrence range type '{range_kind}'.")
    start_text = range_.get("startDate")
    local_start = event.start.astimezone(ZoneInfo(event.zone_iana)).date()
    try:
        start_date = date.fromisoformat(str(start_text))
    except ValueError:
        raise _recurrence_problem("range.startDate is required.") from None
    if start_date != local_start:
        raise _recurrence_problem(
            f"range.startDate {start_date} must be the date of the event's start ({local_start})."
        )
    if range_kind == "endDate":
        try:
            end_date = date.fromisoformat(str(range_.get("endDate")))
        except ValueError:
            raise _recurrence_problem("range.endDate is required for an endDate range.") from None
        if end_date < start_date:
            raise _recurrence_problem("range.endDate is before range.startDate.")
    if range_kind == "numbered":
        count = range_.get("numberOfOccurrences")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise _recurrence_problem("numberOfOccurrences must be a positive number.")
    zone_name = range_.get("recurrenceTimeZone") or event.start_zone
    try:
        rule = patterned_to_rrule(pattern, range_, str(zone_name))
    except MappingError as exc:
        raise _recurrence_problem(exc.reason) from None
    stored: Record = {
        "pattern": {
            "type": kind,
            "interval": interval,
            "month": pattern.get("month", 0),
            "dayOfMonth": pattern.get("dayOfMonth", 0),
            "daysOfWeek": [str(d).lower() for d in days],
            "firstDayOfWeek": str(pattern.get("firstDayOfWeek", "sunday")).lower(),
            "index": pattern.get("index", "first"),
        },
        "range": {
            "type": range_kind,
            "startDate": start_date.isoformat(),
            "endDate": str(range_.get("endDate", "0001-01-01")),
            "recurrenceTimeZone": windows_name(str(zone_name)),
            "numberOfOccurrences": range_.get("numberOfOccurrences", 0),
        },
    }
    return stored, rule


def _recurrence_problem(message: str) -> GraphProblem:
    return GraphProblem(400, "ErrorPropertyValidationFailure", message)


# ----- HTTP --------------------------------------------------------------------------------------


def _route_of(segments: list[str]) -> str:
    """A route name for the request log."""
    if segments[:2] == ["v1.0", "places"]:
        return "places"
    tail = segments[4:] if len(segments) > 3 else []
    if len(segments) >= 4 and segments[3] == "calendarView":
        return "delta" if tail[:1] == ["delta"] else "calendarView"
    if len(segments) >= 4 and segments[3] == "events":
        if len(segments) == 4:
            return "events"
        return segments[5] if len(segments) > 5 else "event"
    return segments[3] if len(segments) > 3 else "/".join(segments)


class GraphEmulator:
    """The emulator: an ASGI app over :class:`GraphData`, plus the controls tests use."""

    def __init__(
        self,
        *,
        tokens: TokenRegistry,
        seed: int = 0,
        now: datetime | None = None,
        latency: float = 0.0,
        concurrency_limit: int = MAILBOX_CONCURRENCY,
    ) -> None:
        self.tokens = tokens
        self.data = GraphData(seed, now)
        self.latency = latency
        self.concurrency_limit = concurrency_limit
        self.requests: list[RecordedRequest] = []
        self._plan = FaultPlan()
        self._fault_rng = random.Random(0)
        self._queued: list[FaultKind] = []
        self._expire_countdown: int | None = None
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"GraphEmulator(mailboxes={len(self.data.mailboxes)}, requests={len(self.requests)})"

    # ----- test controls -----------------------------------------------------------------

    def add_mailbox(self, address: str, display_name: str | None = None) -> Mailbox:
        """A user mailbox."""
        with self._lock:
            box = Mailbox(address, str(uuid.uuid4()), display_name or address.split("@")[0])
            self.data.mailboxes[address.lower()] = box
            return box

    def add_room(
        self,
        address: str,
        display_name: str,
        *,
        capacity: int = 8,
        building: str = "HQ",
        street: str = "1 Main Street",
        city: str = "London",
        policy: RoomPolicy | None = None,
    ) -> Mailbox:
        """A room mailbox, listed in ``/places``, processing meeting requests (AutoAccept)."""
        with self._lock:
            box = self.add_mailbox(address, display_name)
            box.policy = policy or RoomPolicy()
            box.room = {
                "id": str(uuid.uuid4()),
                "emailAddress": address,
                "displayName": display_name,
                "address": {
                    "street": street,
                    "city": city,
                    "state": "",
                    "countryOrRegion": "GB",
                    "postalCode": "",
                },
                "geoCoordinates": None,
                "phone": "",
                "nickname": display_name,
                "label": "",
                "capacity": capacity,
                "building": building,
                "floorNumber": 1,
                "floorLabel": "1",
                "isManaged": True,
                "isWheelchairAccessible": False,
                "bookingType": "standard",
                "tags": [],
                "audioDeviceName": None,
                "videoDeviceName": None,
                "displayDevice": None,
            }
            return box

    def replies(self, organizer: str) -> list[MeetingReply]:
        """The meeting responses an organizer received, oldest first."""
        with self._lock:
            return [r for r in self.data.replies if r.organizer.lower() == organizer.lower()]

    def create_event(self, mailbox: str, body: Record) -> str:
        """Create an event as another client (Outlook, a person) would; returns its id."""
        with self._lock:
            event, _ = self.data.create(self.data.mailbox(mailbox), json.loads(json.dumps(body)))
            return event.id

    def patch_event(self, mailbox: str, event_id: str, body: Record) -> None:
        """Edit an event or occurrence as another client would (no If-Match)."""
        with self._lock:
            self.data.update(
                self.data.mailbox(mailbox), event_id, json.loads(json.dumps(body)), None
            )

    def delete_event(self, mailbox: str, event_id: str) -> None:
        """Delete an event, or cancel an occurrence, as another client would."""
        with self._lock:
            self.data.delete(self.data.mailbox(mailbox), event_id, None)

    def events(self, mailbox: str) -> list[Event]:
        """The stored events of a mailbox (singles and series masters), oldest first."""
        with self._lock:
            box = self.data.mailbox(mailbox)
            return sorted(box.events.values(), key=lambda e: (e.created, e.id))

    def instance_spans(
        self, mailbox: str, start: datetime, end: datetime
    ) -> list[tuple[str, datetime, datetime]]:
        """(event id, start, end) of every live single or occurrence overlapping [start, end)."""
        with self._lock:
            found = []
            for event in self.events(mailbox):
                if event.is_series:
                    for original in event.live_instances(start, end):
                        span = event.occurrence_span(original)
                        found.append((event.id, span[0], span[1]))
                elif event.overlaps(start, end):
                    found.append((event.id, event.start, event.end))
            return sorted(found, key=lambda item: (item[1], item[2], item[0]))

    def expire_delta_tokens(self) -> None:
        """Forget every delta and skip token: the next use answers 410 SyncStateNotFound."""
        with self._lock:
            self.data.tokens.clear()
            self.data.rounds.clear()

    def require_resync(self, required: bool = True) -> None:
        """Answer delta tokens with the generic 410 + ``Location`` (initial URL)."""
        with self._lock:
            self.data.resync_required = required

    def set_delta_quirks(self, *, replay_rate: float = 0.0, empty_first_page: bool = False) -> None:
        """Replay some rows within a round; start each round with an empty page."""
        with self._lock:
            self.data.replay_rate = replay_rate
            self.data.empty_first_page = empty_first_page

    def set_faults(self, plan: FaultPlan) -> None:
        """Inject faults at random from now on (seeded)."""
        with self._lock:
            self._plan = plan
            self._fault_rng = random.Random(plan.seed)

    def fail_next(self, *kinds: FaultKind) -> None:
        """Make the next mailbox requests fail with these faults, in order."""
        with self._lock:
            self._queued.extend(kinds)

    def clear_faults(self) -> None:
        """No more faults."""
        with self._lock:
            self._plan = FaultPlan()
            self._queued.clear()

    def expire_tokens_after(self, requests: int) -> None:
        """Expire every access token once ``requests`` more mailbox requests were answered."""
        with self._lock:
            self._expire_countdown = requests

    @property
    def deduplicated_creates(self) -> int:
        """How many POSTs were answered with the event their transactionId already named."""
        with self._lock:
            return self.data.deduplicated

    def settle(self) -> None:
        """Let rooms process their pending meeting requests now."""
        with self._lock:
            self.data.settle()

    def peak_concurrency(self, mailbox: str) -> int:
        """The most requests ever in flight at once for a mailbox."""
        with self._lock:
            return self.data.mailbox(mailbox).peak_in_flight

    def reset_peak(self, mailbox: str) -> None:
        """Start measuring peak concurrency afresh."""
        with self._lock:
            self.data.mailbox(mailbox).peak_in_flight = 0

    def route_counts(self, since: int = 0) -> Counter[str]:
        """Requests per route (from request number ``since`` on)."""
        with self._lock:
            return Counter(f"{r.method} {r.route}" for r in self.requests[since:])

    @contextmanager
    def serve(self) -> Iterator[RunningServer]:
        """Serve on a free loopback port (plain HTTP) for the ``with`` block."""
        with serve_in_thread(self) as server:
            yield server

    # ----- ASGI ----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one request: auth, concurrency, faults, then the API itself."""
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        raw_path = scope.get("raw_path") or scope["path"].encode()
        segments = [unquote(s) for s in raw_path.decode("latin-1").split("?")[0].split("/") if s]
        route = _route_of(segments)
        mailbox = segments[2].lower() if len(segments) > 2 and segments[1] == "users" else None
        body = await request.body()
        fault: FaultKind | None = None
        with self._lock:
            now = self.data.now()
            box = self.data.mailboxes.get(mailbox) if mailbox else None
            if box is not None:
                box.in_flight += 1
                box.peak_in_flight = max(box.peak_in_flight, box.in_flight)
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            with self._lock:
                response, fault = self._answer(request, segments, body, box, now)
        finally:
            with self._lock:
                if box is not None:
                    box.in_flight -= 1
        with self._lock:
            if box is not None and self._expire_countdown is not None:
                self._expire_countdown -= 1
                if self._expire_countdown <= 0:
                    self._expire_countdown = None
                    self.tokens.expire_all()
            self.requests.append(
                RecordedRequest(
                    request.method,
                    route,
                    scope["path"],
                    tuple(parse_qsl(scope.get("query_string", b"").decode())),
                    mailbox,
                    response.status_code,
                    fault,
                )
            )
        await response(scope, receive, send)

    def _answer(
        self, request: Request, segments: list[str], body: bytes, box: Mailbox | None, now: datetime
    ) -> tuple[Response, FaultKind | None]:
        try:
            self._authenticate(request)
            if box is not None and box.in_flight > self.concurrency_limit:
                raise GraphProblem(
                    429,
                    "ApplicationThrottled",
                    "Application is over its MailboxConcurrency limit.",
                    {"Retry-After": "0.2"},
                )
            fault = self._draw_fault(request.method, box)
            if fault in (FaultKind.THROTTLE, FaultKind.UNAVAILABLE):
                return self._fault_reply(fault, now), fault
            if fault is FaultKind.GATEWAY_TIMEOUT:
                return self._fault_reply(fault, now), fault
            if fault is FaultKind.CONFLICT:
                return self._fault_reply(fault, now), fault
            self.data.settle()
            response = self._dispatch(request, segments, body)
            if fault is FaultKind.LOST_REPLY:
                return self._fault_reply(FaultKind.GATEWAY_TIMEOUT, now), fault
            return response, fault
        except GraphProblem as problem:
            return problem.response(now), None

    def _authenticate(self, request: Request) -> None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise GraphProblem(
                401,
                "InvalidAuthenticationToken",
                "Access token is empty.",
                {"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'},
            )
        if self.tokens.holder(token.strip()) is None:
            raise GraphProblem(
                401,
                "InvalidAuthenticationToken",
                "Access token has expired or is not yet valid.",
                {"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'},
            )

    def _draw_fault(self, method: str, box: Mailbox | None) -> FaultKind | None:
        if box is None:
            return None
        if self._queued:
            return self._queued.pop(0)
        plan = self._plan
        if plan.rate <= 0 or method not in plan.methods:
            return None
        if self._fault_rng.random() >= plan.rate:
            return None
        return self._fault_rng.choice(plan.kinds)

    def _fault_reply(self, fault: FaultKind, now: datetime) -> Response:
        retry_after = f"{self._plan.retry_after:.3f}".rstrip("0").rstrip(".") or "0"
        if fault is FaultKind.THROTTLE:
            body = {
                "error": {
                    "code": "TooManyRequests",
                    "innerError": {
                        "code": "429",
                        "date": now.strftime("%Y-%m-%dT%H:%M:%S"),
                        "message": "Please retry after",
                        "request-id": str(uuid.uuid4()),
                        "status": "429",
                    },
                    "message": "Please retry again later.",
                }
            }
            return JSONResponse(body, status_code=429, headers={"Retry-After": retry_after})
        if fault is FaultKind.UNAVAILABLE:
            return GraphProblem(
                503,
                "ServiceNotAvailable",
                "The service is temporarily unavailable.",
                {"Retry-After": retry_after},
            ).response(now)
        if fault is FaultKind.CONFLICT:
            return GraphProblem(
                412,
                "ErrorIrresolvableConflict",
                "The send or update operation could not be performed because the change key "
                "passed in the request does not match the current change key for the item.",
            ).response(now)
        return GraphProblem(
            504, "GatewayTimeout", "The gateway did not receive a response."
        ).response(now)

    # ----- routing -------------------------------------------------------------------------

    def _dispatch(self, request: Request, segments: list[str], raw: bytes) -> Response:
        method = request.method
        if not segments or segments[0] != "v1.0":
            raise GraphProblem(400, "BadRequest", "Invalid version.")
        if segments[1:3] == ["places", "microsoft.graph.room"] and len(segments) == 3:
            if method != "GET":
                raise _method_not_allowed()
            return self._places(request)
        if len(segments) < 4 or segments[1] != "users":
            raise GraphProblem(400, "BadRequest", "Resource not found for the segment.")
        box = self.data.mailbox(segments[2])
        rest = segments[3:]
        how = self._rendering(request, box)
        if rest == ["calendar"] and method == "GET":
            return JSONResponse(
                {
                    "@odata.context": how.context + "/calendar/$entity",
                    "id": base64.b64encode(box.id.encode()).decode(),
                    "name": "Calendar",
                    "canEdit": True,
                    "owner": {"name": box.display_name, "address": box.address},
                }
            )
        if rest == ["calendarView", "delta"] and method == "GET":
            return self._delta(request, box, how)
        if rest == ["calendarView"] and method == "GET":
            return self._calendar_view(request, box, how)
        if rest == ["events"]:
            if method == "GET":
                return self._list(request, box, how)
            if method == "POST":
                event, existed = self.data.create(box, _json_body(raw))
                row = self.data.render_event(event, how)
                row["@odata.context"] = how.context + "/events/$entity"
                # A deduplicated retry answers like the first create did.
                del existed
                return JSONResponse(row, status_code=201)
            raise _method_not_allowed()
        if len(rest) == 2 and rest[0] == "events":
            return self._one(request, box, rest[1], raw, how)
        if len(rest) == 3 and rest[0] == "events" and rest[2] == "instances" and method == "GET":
            return self._instances(request, box, rest[1], how)
        if len(rest) == 3 and rest[0] == "events" and rest[2] in RESPONSES and method == "POST":
            self.data.respond(box, rest[1], rest[2], _json_body(raw))
            return Response(status_code=202)
        raise GraphProblem(400, "BadRequest", "Resource not found for the segment.")

    def _rendering(self, request: Request, box: Mailbox) -> Rendering:
        prefer = preferences(request.headers.getlist("prefer"))
        if prefer.zone is not None:
            try:
                resolve_zone(prefer.zone)
            except MappingError:
                prefer = Preferences(prefer.page_size, None, prefer.body_type)
        query = dict(request.query_params)
        expand = None
        if "$expand" in query:
            expand = _expand_ids(query["$expand"])
        select = None
        if "$select" in query:
            select = frozenset(s.strip() for s in query["$select"].split(",") if s.strip())
        base = f"{request.url.scheme}://{request.url.netloc}/v1.0"
        return Rendering(prefer, expand, select, f"{base}/$metadata#users('{quote(box.address)}')")

    def _one(
        self, request: Request, box: Mailbox, event_id: str, raw: bytes, how: Rendering
    ) -> Response:
        method = request.method
        if method == "GET":
            _only_options(request, {"$select", "$expand"})
            event, original = self.data.resolve(box, event_id)
            if original is not None:
                row = self.data.render_instance(event, original, how, skeleton=False)
            else:
                row = self.data.render_event(event, how)
            row["@odata.context"] = how.context + "/events/$entity"
            return JSONResponse(row)
        if method == "PATCH":
            result = self.data.update(
                box, event_id, _json_body(raw), request.headers.get("If-Match")
            )
            event, original = result["event"], result["original"]
            if original is not None:
                row = self.data.render_instance(event, original, how, skeleton=False)
            else:
                row = self.data.render_event(event, how)
            row["@odata.context"] = how.context + "/events/$entity"
            return JSONResponse(row)
        if method == "DELETE":
            self.data.delete(box, event_id, request.headers.get("If-Match"))
            return Response(status_code=204)
        raise _method_not_allowed()

    def _list(self, request: Request, box: Mailbox, how: Rendering) -> Response:
        _only_options(request, {"$select", "$expand", "$filter", "$top", "$skip"})
        query = dict(request.query_params)
        events = self.data.filtered(box, query.get("$filter"))
        top = _page_size(query.get("$top"), how.prefer.page_size, DEFAULT_LIST_PAGE_SIZE)
        skip = _non_negative(query.get("$skip", "0"), "$skip")
        page = events[skip : skip + top]
        document: Record = {
            "@odata.context": how.context + "/events",
            "value": [self.data.render_event(e, how) for e in page],
        }
        if skip + top < len(events):
            document["@odata.nextLink"] = _with_query(
                request, {"$skip": str(skip + top), "$top": str(top)}
            )
        return JSONResponse(document)

    def _instances(self, request: Request, box: Mailbox, event_id: str, how: Rendering) -> Response:
        _only_options(
            request, {"startDateTime", "endDateTime", "$select", "$top", "$skip", "$expand"}
        )
        query = dict(request.query_params)
        start, end = _window_of(query)
        event, original = self.data.resolve(box, event_id)
        if original is not None or not event.is_series:
            raise _bad_request("The instances of a non-recurring item cannot be listed.")
        originals = self.data.instances(event, start, end)
        top = _page_size(query.get("$top"), how.prefer.page_size, DEFAULT_LIST_PAGE_SIZE)
        skip = _non_negative(query.get("$skip", "0"), "$skip")
        page = originals[skip : skip + top]
        document: Record = {
            "@odata.context": how.context + f"/events('{quote(event.id, safe='')}')/instances",
            "value": [self.data.render_instance(event, o, how, skeleton=False) for o in page],
        }
        if skip + top < len(originals):
            document["@odata.nextLink"] = _with_query(
                request, {"$skip": str(skip + top), "$top": str(top)}
            )
        return JSONResponse(document)

    def _calendar_view(self, request: Request, box: Mailbox, how: Rendering) -> Response:
        _only_options(request, {"startDateTime", "endDateTime", "$select", "$top", "$skip"})
        query = dict(request.query_params)
        start, end = _window_of(query)
        rows: list[tuple[datetime, Record]] = []
        for event in box.events.values():
            if event.is_series:
                for original in self.data.instances(event, start, end):
                    row = self.data.render_instance(event, original, how, skeleton=False)
                    rows.append((event.occurrence_span(original)[0], row))
            elif event.overlaps(start, end):
                rows.append((event.start, self.data.render_event(event, how)))
        rows.sort(key=lambda item: (item[0], item[1]["id"]))
        top = _page_size(query.get("$top"), how.prefer.page_size, DEFAULT_LIST_PAGE_SIZE)
        skip = _non_negative(query.get("$skip", "0"), "$skip")
        document: Record = {
            "@odata.context": how.context + "/calendarView",
            "value": [row for _start, row in rows[skip : skip + top]],
        }
        if skip + top < len(rows):
            document["@odata.nextLink"] = _with_query(
                request, {"$skip": str(skip + top), "$top": str(top)}
            )
        return JSONResponse(document)

    def _places(self, request: Request) -> Response:
        _only_options(request, {"$top", "$skip", "$select"})
        query = dict(request.query_params)
        rooms = [m.room for m in self.data.mailboxes.values() if m.room is not None]
        top = _page_size(query.get("$top"), None, 100)
        skip = _non_negative(query.get("$skip", "0"), "$skip")
        base = f"{request.url.scheme}://{request.url.netloc}/v1.0"
        document: Record = {
            "@odata.context": f"{base}/$metadata#places/microsoft.graph.room",
            "value": [
                dict(room, **{"@odata.type": "#microsoft.graph.room"})
                for room in rooms[skip : skip + top]
            ],
        }
        if skip + top < len(rooms):
            document["@odata.nextLink"] = _with_query(
                request, {"$skip": str(skip + top), "$top": str(top)}
            )
        return JSONResponse(document)

    # ----- delta -------------------------------------------------------------------------------

    def _delta(self, request: Request, box: Mailbox, how: Rendering) -> Response:
        query = dict(request.query_params)
        base = f"{request.url.scheme}://{request.url.netloc}/v1.0/users/{quote(box.address)}/calendarView/delta"
        if "$skiptoken" in query:
            current = self.data.rounds.get(query["$skiptoken"])
            if current is None or current.state.mailbox != box.address:
                raise _sync_state_not_found()
            return self._page(current, query["$skiptoken"], base, how)
        if "$deltatoken" in query:
            state = self.data.tokens.get(query["$deltatoken"])
            if state is None or state.mailbox != box.address:
                raise _sync_state_not_found()
            if self.data.resync_required:
                raise GraphProblem(
                    410,
                    "resyncRequired",
                    "The delta token is no longer valid; restart the synchronization.",
                    {"Location": state.initial_url},
                )
            rows = self.data.delta_rows(box, state, how, initial=False)
            next_state = DeltaState(box.address, state.start, state.end, box.seq, state.initial_url)
            token = self.data.new_round(next_state, rows)
            return self._page(self.data.rounds[token], token, base, how)
        unsupported = sorted(name for name in query if name.startswith("$"))
        if unsupported:
            raise GraphProblem(
                400,
                "ErrorInvalidUrlQuery",
                f"The following parameters are not supported with change tracking over the "
                f"'CalendarView' resource: '{unsupported[0]}'.",
            )
        if "startDateTime" not in query or "endDateTime" not in query:
            raise GraphProblem(
                400,
                "ErrorInvalidParameter",
                "This request requires a time window specified by the query string parameters "
                "StartDateTime and EndDateTime.",
            )
        start, end = _window_of(query)
        window_query = f"startDateTime={quote(query['startDateTime'])}"
        window_query += f"&endDateTime={quote(query['endDateTime'])}"
        initial_url = f"{base}?{window_query}"
        state = DeltaState(box.address, start, end, box.seq, initial_url)
        rows = self.data.delta_rows(box, state, how, initial=True)
        token = self.data.new_round(state, rows)
        return self._page(self.data.rounds[token], token, base, how)

    def _page(self, current: Round, token: str, base: str, how: Rendering) -> Response:
        size = min(how.prefer.page_size or DEFAULT_DELTA_PAGE_SIZE, MAX_PAGE_SIZE)
        context = how.context.rsplit("#", 1)[0] + "#Collection(event)"
        headers = {"Preference-Applied": "odata.track-changes"}
        if current.empty_page_pending:
            current.empty_page_pending = False
            return JSONResponse(
                {
                    "@odata.context": context,
                    "@odata.nextLink": f"{base}?$skiptoken={token}",
                    "value": [],
                },
                headers=headers,
            )
        rows = current.rows[current.offset : current.offset + size]
        current.offset += len(rows)
        document: Record = {"@odata.context": context, "value": rows}
        if current.offset < len(current.rows):
            document["@odata.nextLink"] = f"{base}?$skiptoken={token}"
        else:
            self.data.rounds.pop(token, None)
            delta = self.data.issue_delta_token(current.state)
            document["@odata.deltaLink"] = f"{base}?$deltatoken={delta}"
        return JSONResponse(document, headers=headers)


def _sync_state_not_found() -> GraphProblem:
    return GraphProblem(
        410,
        "SyncStateNotFound",
        "The sync state generation is not found; generation=149;[highest=157][157][155][156].",
    )


def _method_not_allowed() -> GraphProblem:
    return GraphProblem(405, "ErrorInvalidRequest", "The OData request is not supported.")


def _json_body(raw: bytes) -> Record:
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise _bad_request("Unable to read JSON request payload.", "BadRequest") from None
    if not isinstance(body, dict):
        raise _bad_request("The request body must be a JSON object.", "BadRequest")
    return body


def _expand_ids(text: str) -> frozenset[str]:
    match = _EXPAND.fullmatch(text.strip())
    if match is None:
        raise GraphProblem(
            400,
            "BadRequest",
            "Extended properties can only be expanded with a $filter on their id.",
        )
    keys = set()
    for clause in re.split(r"\s+or\s+", match[1].strip(), flags=re.IGNORECASE):
        part = _EXPAND_ID.fullmatch(clause)
        key = property_key(_unquote_literal(part[1])) if part else None
        if key is None:
            raise GraphProblem(400, "BadRequest", f"Invalid $expand filter: {clause[:200]}")
        keys.add(key)
    return frozenset(keys)


def _only_options(request: Request, allowed: set[str]) -> None:
    for name in request.query_params:
        if name not in allowed:
            raise GraphProblem(400, "BadRequest", f"Query option '{name}' is not allowed here.")


def _page_size(top: str | None, preferred: int | None, default: int) -> int:
    if top is not None:
        size = _non_negative(top, "$top")
        if size < 1:
            raise _bad_request("$top must be positive.", "BadRequest")
        return min(size, MAX_PAGE_SIZE)
    return min(preferred or default, MAX_PAGE_SIZE)


def _non_negative(text: str, name: str) -> int:
    if not text.isdigit():
        raise _bad_request(f"Invalid value '{text}' for {name}.", "BadRequest")
    return int(text)


def _window_of(query: Mapping[str, str]) -> tuple[datetime, datetime]:
    if "startDateTime" not in query or "endDateTime" not in query:
        raise GraphProblem(
            400,
            "ErrorInvalidParameter",
            "This request requires a time window specified by the query string parameters "
            "StartDateTime and EndDateTime.",
        )
    start = parse_query_instant(query["startDateTime"], "startDateTime")
    end = parse_query_instant(query["endDateTime"], "endDateTime")
    if end <= start:
        raise _bad_request("endDateTime must be after startDateTime.")
    return start, end


def _with_query(request: Request, changes: Mapping[str, str]) -> str:
    """The request's own absolute URL (path as sent, ids still escaped) with changed options."""
    params = dict(request.query_params)
    params.update(changes)
    query = "&".join(f"{quote(k, safe='$')}={quote(v, safe='')}" for k, v in params.items())
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    path = raw_path.decode("latin-1").split("?")[0]
    return f"{request.url.scheme}://{request.url.netloc}{path}?{query}"
