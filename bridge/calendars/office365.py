"""Microsoft 365 calendar backend: one room mailbox over Microsoft Graph (app-only).

Authentication is msal's ``ConfidentialClientApplication`` with the client-credentials flow
(scope ``https://graph.microsoft.com/.default``, ``instance_discovery=False``, the configured
``authority``); its token cache is reused until five minutes before expiry and shared by every
room of one ``[calendars.*]`` entry, as is the HTTP client. A ``ca_bundle`` is trusted *in
addition to* the system's CAs, by identity and Graph requests alike. The msal application is
built on first use, so building a backend does no I/O.

Reading (``read_changes``) is ``GET /users/{mailbox}/calendarView/delta`` over a window a
little wider than the sync window (``Prefer: odata.maxpagesize``), following every
``@odata.nextLink`` exactly as returned; the cursor is the ``@odata.deltaLink`` plus that
window. A 410 (``SyncStateNotFound``, ``resyncRequired``) or a sync window that has moved past
the cursor's starts a full round, which the engine diffs against its snapshot. Delta rows carry
no extended properties, so each changed object is fetched once with ``$expand`` (at most four
requests in flight per mailbox) — except the ones this process just wrote, recognised by their
etag. ``@removed`` rows become deletions.

Layouts (see :mod:`bridge.calendars.graph_events`): a single event, a series (exceptions
PATCHed, EXDATEs deleted occurrences) or, for what a ``patternedRecurrence`` cannot say, one
event per occurrence in the window, which the engine sees as ONE object with href
``group:<uid>`` and a composite etag. The iCalendar text written travels in an extended
property and comes back verbatim while Graph still shows what it says: echoes hash equal,
third-party edits do not. Single events are updated in place with ``PATCH`` + ``If-Match``;
series and groups are replaced (delete, then create: never two objects for one UID at once).

Writes: creates carry a ``transactionId`` derived from the UID, so a create retried after a
lost reply (504, a timeout) does not duplicate; if Graph answers with an event that is not
what was asked (an earlier create under that id), the create reports AlreadyExists with it.
Updates and deletes send ``If-Match: <@odata.etag>``; a 412 ``ErrorIrresolvableConflict`` whose
event turns out unchanged (they can be transient) is retried a bounded number of times.

Throttling: 429/503/504 (and 500/502 for reads) are retried after ``Retry-After`` (fractional
seconds or an HTTP date) or an exponential backoff; a 401 refreshes the token once. Never more
than four requests are in flight per mailbox, however many threads or backends share it.

Booking requests (:class:`~bridge.calendars.base.RequestAnswers`): the room's copy of an
organizer's meeting is tagged with one extended property (``ANSWER_PROPERTY``, PATCH with
``If-Match``) and answered with ``POST …/accept`` / ``…/decline`` (with the reason as the
comment; occurrences are declined one by one). A declined meeting leaves the room's calendar.

Also: ``list_rooms()``
(``/places/microsoft.graph.room``) and ``check()`` (the mailbox answers; else the rooms found).
"""

from __future__ import annotations

import json
import logging
import random
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from bridge.calendars.base import (
    AlreadyExists,
    CalendarError,
    ChangeSet,
    CursorExpired,
    NotFound,
    PreconditionFailed,
    RemoteObject,
)
from bridge.calendars.graph_events import (
    ANSWER_PROPERTY,
    ICS_PROPERTY,
    MEMBER_PROPERTY,
    READ_PROPERTIES,
    UID_PROPERTY,
    GraphLayoutError,
    Layout,
    Plan,
    StoredObject,
    answer_value,
    composite_etag,
    decode_stored,
    derived_ics,
    derived_members_ics,
    event_body,
    exception_body,
    extended_property,
    group_href,
    group_uid,
    instance_window,
    matches_event,
    matches_members,
    member_body,
    member_digest,
    members,
    offset_instant,
    parse_member_value,
    patch_body,
    plan_object,
    shape_of,
    uid_digest,
    unreadable_ics,
)
from bridge.config import Office365Config
from bridge.model import Window

log = logging.getLogger(__name__)

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
#: Outlook's documented limit of concurrent requests per app and mailbox.
MAILBOX_CONCURRENCY = 4
DELTA_PAGE_SIZE = 200
LIST_PAGE_SIZE = 500
#: How much wider than the sync window the delta window is: the future margin is how long a
#: cursor lasts before the moving window forces a full round.
SPAN_PAST_MARGIN = timedelta(days=1)
SPAN_FUTURE_MARGIN = timedelta(days=30)
MAX_PAGES = 10_000
MAX_ATTEMPTS = 6
MAX_RETRY_AFTER = 120.0
#: 412s that turn out transient (the event did not change) are retried this often.
TRANSIENT_CONFLICT_RETRIES = 2
REQUEST_TIMEOUT = 30.0
CURSOR_VERSION = 1

RETRYABLE = frozenset({429, 503, 504})
RETRYABLE_READS = frozenset({429, 500, 502, 503, 504, 412})

Sleep = Callable[[float], None]
WindowSource = Callable[[], Window]
JsonObject = Mapping[str, Any]


def default_window() -> Window:
    """The default sync window (30 days back, 365 ahead) around the wall clock."""
    return Window.around(datetime.now(UTC), 30, 365)


def span_for(window: Window) -> Window:
    """The delta window for a sync window."""
    return Window(window.start - SPAN_PAST_MARGIN, window.end + SPAN_FUTURE_MARGIN)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from ``Retry-After``: fractional seconds (Graph) or an HTTP date."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
    return seconds if seconds >= 0 else None


# ----- shared per configuration: tokens, HTTP, mailbox limits ----------------------------------


class MailboxLimiter:
    """At most ``limit`` requests in flight for one mailbox, across threads and backends."""

    def __init__(self, limit: int = MAILBOX_CONCURRENCY) -> None:
        self.limit = limit
        self._slots = threading.BoundedSemaphore(limit)
        self._lock = threading.Lock()
        self.in_flight = 0
        self.peak = 0

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the mailbox's request slots."""
        with self._slots:
            with self._lock:
                self.in_flight += 1
                self.peak = max(self.peak, self.in_flight)
            try:
                yield
            finally:
                with self._lock:
                    self.in_flight -= 1


class GraphTokens:
    """App-only access tokens from msal (client credentials), cached until near expiry."""

    def __init__(
        self,
        *,
        tenant_id: str,
        client_id: str,
        client_secret: str,
        authority: str,
        http: httpx.Client,
    ) -> None:
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.authority = authority.rstrip("/")
        self._secret = client_secret
        self._http = http
        self._app: Any = None
        self._lock = threading.Lock()
        self.acquired = 0

    def __repr__(self) -> str:
        return f"GraphTokens(authority={self.authority!r}, client_id={self.client_id!r})"

    def token(self) -> str:
        """A valid access token (msal answers from its cache until five minutes before expiry)."""
        with self._lock:
            app = self._application()
            try:
                result = app.acquire_token_for_client(scopes=[GRAPH_SCOPE])
            except (httpx.HTTPError, ValueError) as exc:
                failure = f"{type(exc).__name__}: {self._redact(str(exc))}"
            else:
                if isinstance(result, dict) and result.get("access_token"):
                    if result.get("token_source") != "cache":
                        self.acquired += 1
                    return str(result["access_token"])
                failure = self._reason(result)
        raise CalendarError("token", self.authority, None, failure)

    def invalidate(self, token: str) -> None:
        """Drop a token Graph refused (expired or revoked early): the next call gets a new one."""
        with self._lock:
            if self._app is None:
                return
            cache = self._app.token_cache
            for entry in list(cache.search(cache.CredentialType.ACCESS_TOKEN)):
                if entry.get("secret") == token:
                    cache.remove_at(entry)

    def _application(self) -> Any:
        if self._app is None:
            import msal

            try:
                self._app = msal.ConfidentialClientApplication(
                    self.client_id,
                    client_credential=self._secret,
                    authority=self.authority,
                    http_client=self._http,
                    instance_discovery=False,
                    token_cache=msal.TokenCache(),
                )
            except (ValueError, httpx.HTTPError) as exc:
                reason = f"identity discovery failed: {self._redact(str(exc))[:300]}"
                raise CalendarError("token", self.authority, None, reason) from None
        return self._app

    def _reason(self, result: object) -> str:
        if not isinstance(result, dict):
            return "no token in the identity answer"
        error = str(result.get("error") or "error")
        description = str(result.get("error_description") or "").split("\r\n")[0]
        description = description.split(" Trace ID:")[0]
        return self._redact(f"{error}: {description}"[:300])

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text


class Office365Account:
    """What the rooms of one ``[calendars.*]`` entry share: HTTP client, tokens, mailbox limits."""

    def __init__(self, config: Office365Config, *, http: httpx.Client | None = None) -> None:
        self.config = config
        self.graph_url = config.graph_url.rstrip("/")
        self.http = http or httpx.Client(
            verify=trust(config.ca_bundle),
            timeout=REQUEST_TIMEOUT,
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
        )
        self._owns_http = http is None
        self.tokens = GraphTokens(
            tenant_id=config.tenant_id,
            client_id=config.client_id,
            client_secret=config.client_secret.reveal(),
            authority=config.authority,
            http=self.http,
        )
        self._limiters: dict[str, MailboxLimiter] = {}
        self._lock = threading.Lock()
        self._users = 0

    def __repr__(self) -> str:
        return f"Office365Account(name={self.config.name!r}, graph_url={self.graph_url!r})"

    def limiter(self, mailbox: str) -> MailboxLimiter:
        """The request limiter of a mailbox (one per mailbox, whatever the backend)."""
        with self._lock:
            return self._limiters.setdefault(mailbox.lower(), MailboxLimiter())

    def calendar(
        self, mailbox: str, *, window: WindowSource | None = None, sleep: Sleep = time.sleep
    ) -> Office365Calendar:
        """A backend for one room mailbox of this account."""
        with self._lock:
            self._users += 1
        return Office365Calendar(self, mailbox, window=window, sleep=sleep)

    def release(self) -> None:
        """One backend is done; the last one closes the HTTP client."""
        with self._lock:
            self._users -= 1
            last = self._users <= 0
        if last:
            _forget_account(self)
            if self._owns_http:
                self.http.close()


def trust(ca_bundle: object | None) -> ssl.SSLContext:
    """The system's CAs, plus the configured extra CA bundle."""
    context = ssl.create_default_context()
    if ca_bundle is not None:
        context.load_verify_locations(cafile=str(ca_bundle))
    return context


_ACCOUNTS: dict[tuple[object, ...], Office365Account] = {}
_ACCOUNTS_LOCK = threading.Lock()


def _account_key(config: Office365Config) -> tuple[object, ...]:
    return (
        config.name,
        config.tenant_id,
        config.client_id,
        config.authority,
        config.graph_url,
        str(config.ca_bundle),
        hash(config.client_secret),
    )


def _forget_account(account: Office365Account) -> None:
    with _ACCOUNTS_LOCK:
        for key, known in list(_ACCOUNTS.items()):
            if known is account:
                del _ACCOUNTS[key]


def build_office365_calendar(
    config: Office365Config, mailbox: str, *, window: WindowSource | None = None
) -> Office365Calendar:
    """The backend of one room mailbox; rooms of one config share tokens, HTTP and limits.

    ``window`` gives the sync window (``Runtime.window``); the delta window is a little wider.
    """
    key = _account_key(config)
    with _ACCOUNTS_LOCK:
        account = _ACCOUNTS.get(key)
        if account is None:
            account = _ACCOUNTS[key] = Office365Account(config)
    return account.calendar(mailbox, window=window)


# ----- reading helpers ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeltaCursor:
    """The stored cursor: the deltaLink and the window it covers."""

    link: str
    span: Window

    def text(self) -> str:
        """The cursor as stored by the engine."""
        return json.dumps(
            {
                "v": CURSOR_VERSION,
                "link": self.link,
                "start": self.span.start.isoformat(),
                "end": self.span.end.isoformat(),
            },
            separators=(",", ":"),
        )

    @classmethod
    def parse(cls, text: str | None) -> DeltaCursor | None:
        """A cursor from its text, or None (absent, foreign or unreadable: read everything)."""
        if not text:
            return None
        try:
            document = json.loads(text)
            if document.get("v") != CURSOR_VERSION:
                return None
            span = Window(
                datetime.fromisoformat(document["start"]), datetime.fromisoformat(document["end"])
            )
            return cls(str(document["link"]), span)
        except (ValueError, TypeError, KeyError, AttributeError):
            return None

    def covers(self, window: Window) -> bool:
        """Whether the cursor's window still holds the whole sync window."""
        return self.span.start <= window.start and self.span.end >= window.end


@dataclass(slots=True)
class RoundRows:
    """One delta round sorted by what it touched."""

    events: dict[str, JsonObject | None] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Known:
    """An object this process wrote or read: its etag, UID and iCalendar text."""

    etag: str | None
    uid: str
    ics: bytes


@dataclass(frozen=True, slots=True)
class GraphRoom:
    """A room listed by ``/places/microsoft.graph.room``."""

    address: str
    name: str
    capacity: int | None
    building: str | None
    street: str | None
    city: str | None


# ----- the backend -------------------------------------------------------------------------------


class Office365Calendar:
    """One room mailbox's calendar, through Microsoft Graph."""

    def __init__(
        self,
        account: Office365Account,
        mailbox: str,
        *,
        window: WindowSource | None = None,
        sleep: Sleep = time.sleep,
        rng: random.Random | None = None,
        page_size: int = DELTA_PAGE_SIZE,
    ) -> None:
        self.account = account
        self.mailbox = mailbox
        self.window = window or default_window
        self.page_size = page_size
        self.request_count = 0
        self.limiter = account.limiter(mailbox)
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._known: dict[str, Known] = {}
        self._known_ids: dict[str, str] = {}
        self._deleted: set[str] = set()
        self._uids: dict[str, str] = {}
        self._span: Window | None = None
        self._pool = ThreadPoolExecutor(max_workers=MAILBOX_CONCURRENCY)
        self._closed = False

    def __repr__(self) -> str:
        return f"Office365Calendar(mailbox={self.mailbox!r}, graph_url={self.account.graph_url!r})"

    def __enter__(self) -> Office365Calendar:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker threads; the last backend of an account closes its HTTP client."""
        if self._closed:
            return
        self._closed = True
        self._pool.shutdown(wait=True)
        self.account.release()

    @property
    def base(self) -> str:
        """The mailbox's Graph URL."""
        return f"{self.account.graph_url}/users/{quote(self.mailbox, safe='@')}"

    # ----- reads -----------------------------------------------------------------------------

    def read_changes(self, cursor: str | None) -> ChangeSet:
        """Objects changed since ``cursor``; a full listing when it is None, stale or rejected."""
        before = self.request_count
        state = DeltaCursor.parse(cursor)
        window = self.window()
        rows: list[JsonObject] | None = None
        link = ""
        if state is not None and state.covers(window):
            try:
                rows, link = self._delta_round(state.link)
                span = state.span
            except CursorExpired:
                rows = None
        full = rows is None
        if rows is None:
            span = span_for(window)
            rows, link = self._delta_round(self._initial_delta_url(span))
        self._span = span
        changed, deleted = self._resolve_round(rows, full=full, span=span)
        return ChangeSet(
            changed=changed,
            deleted=[] if full else deleted,
            cursor=DeltaCursor(link, span).text(),
            full=full,
            requests=self.request_count - before,
        )

    def get(self, href: str) -> RemoteObject:
        """Read one object (raises NotFound)."""
        uid = group_uid(href)
        if uid is not None:
            found = self._group_members(uid)
            if not found:
                raise NotFound("get", href, 404, "no events of this object")
            return self._group_object(uid, found)
        return self._object_of(self._fetch_event(href))

    def find_by_uid(self, uid: str) -> RemoteObject | None:
        """The object holding ``uid`` (a single event, a series or a group), or None."""
        found = self._events_with_uid(uid)
        if not found:
            return None
        tops = [e for e in found if extended_property(e, MEMBER_PROPERTY) is None]
        if tops and len(tops) == len(found):
            return self._object_of(tops[0])
        return self._group_object(uid, found)

    def _initial_delta_url(self, span: Window) -> str:
        start = span.start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        end = span.end.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"{self.base}/calendarView/delta?startDateTime={start}&endDateTime={end}"

    def _delta_round(self, url: str) -> tuple[list[JsonObject], str]:
        """Every row of one delta round, following nextLinks verbatim; (rows, deltaLink)."""
        rows: list[JsonObject] = []
        headers = {"Prefer": f"odata.maxpagesize={self.page_size}, {TEXT_BODY}"}
        for _ in range(MAX_PAGES):
            response = self._send("read", "GET", url, headers=headers, raw_url=True)
            if response.status_code == 410:
                raise CursorExpired("read", self.mailbox, 410, self._reason(response))
            if response.status_code != 200:
                raise self._failure("read", self.mailbox, response)
            page = self._json(response, "read")
            rows.extend(item for item in page.get("value") or () if isinstance(item, Mapping))
            next_link = page.get("@odata.nextLink")
            if isinstance(next_link, str) and next_link:
                url = next_link
                continue
            delta_link = page.get("@odata.deltaLink")
            if isinstance(delta_link, str) and delta_link:
                return rows, delta_link
            raise CalendarError("read", self.mailbox, 200, "a delta page with neither link")
        raise CalendarError("read", self.mailbox, None, f"more than {MAX_PAGES} delta pages")

    def _sorted_rows(self, rows: Sequence[JsonObject]) -> RoundRows:
        """What a round touched: top-level events, groups (by UID digest), removals."""
        last: dict[str, JsonObject] = {}
        for row in rows:
            ident = row.get("id")
            if isinstance(ident, str):
                last.pop(ident, None)
                last[ident] = row
        sorted_rows = RoundRows()
        for ident, row in last.items():
            if "@removed" in row:
                sorted_rows.removed.append(ident)
                continue
            if row.get("type") in ("occurrence", "exception"):
                master = row.get("seriesMasterId")
                if isinstance(master, str) and master not in last:
                    sorted_rows.events.setdefault(master, None)
                elif isinstance(master, str) and "@removed" not in last[master]:
                    sorted_rows.events.setdefault(master, last[master])
                continue
            digest = member_digest(row.get("transactionId"))
            if digest is not None:
                sorted_rows.groups.setdefault(digest, []).append(ident)
                continue
            sorted_rows.events[ident] = row
        return sorted_rows

    def _resolve_round(
        self, rows: Sequence[JsonObject], *, full: bool, span: Window
    ) -> tuple[list[RemoteObject], list[str]]:
        touched = self._sorted_rows(rows)
        deleted = list(touched.removed)
        group_uids = {
            self._uid_of_digest(digest, member_ids) for digest, member_ids in touched.groups.items()
        }
        if not full:
            group_uids |= self._groups_hit_by(touched.removed)
        group_uids.discard(None)
        tasks = [
            self._pool.submit(self._resolve_event, ident, row, span)
            for ident, row in touched.events.items()
        ]
        tasks += [
            self._pool.submit(self._resolve_group, uid, span)
            for uid in sorted(u for u in group_uids if u is not None)
        ]
        changed: list[RemoteObject] = []
        for task in tasks:
            outcome = task.result()
            if isinstance(outcome, RemoteObject):
                changed.append(outcome)
            elif isinstance(outcome, str):
                deleted.append(outcome)
        return changed, deleted

    def _resolve_event(
        self, ident: str, row: JsonObject | None, span: Window
    ) -> RemoteObject | str:
        """A changed single event or series as a RemoteObject, or its href when it is gone."""
        etag = row.get("@odata.etag") if row is not None else None
        known = self._known.get(ident)
        if known is not None and etag is not None and known.etag == etag:
            return RemoteObject(ident, known.etag, known.uid, known.ics)
        try:
            event = self._fetch_event(ident)
        except NotFound:
            return ident
        if known is not None and known.etag == event.get("@odata.etag"):
            return RemoteObject(ident, known.etag, known.uid, known.ics)
        return self._object_of(event, span)

    def _resolve_group(self, uid: str, span: Window) -> RemoteObject | str:
        found = self._group_members(uid)
        if not found:
            return group_href(uid)
        return self._group_object(uid, found, span)

    def _uid_of_digest(self, digest: str, member_ids: Sequence[str]) -> str | None:
        """The UID behind a member transaction digest (one member fetched when unknown)."""
        uid = self._uids.get(digest)
        if uid is not None:
            return uid
        for ident in member_ids:
            try:
                event = self._fetch_event(ident)
            except NotFound:
                continue
            parsed = parse_member_value(extended_property(event, MEMBER_PROPERTY))
            if parsed is not None and uid_digest(parsed[0]) == digest:
                with self._lock:
                    self._uids[digest] = parsed[0]
                return parsed[0]
        return None

    def _groups_hit_by(self, removed: Sequence[str]) -> set[str | None]:
        """Groups that lost a member among ``removed`` (a census when any id is unknown)."""
        hit: set[str | None] = set()
        unknown = False
        for ident in removed:
            owner = self._known_ids.get(ident)
            if owner is None:
                unknown = unknown or (ident not in self._known and ident not in self._deleted)
            elif group_uid(owner) is not None:
                hit.add(group_uid(owner))
        if unknown:
            hit |= self._groups_missing_members()
        return hit

    def _groups_missing_members(self) -> set[str | None]:
        """A census of every member event: the groups holding fewer than they were written with."""
        found = self._list_events(
            f"singleValueExtendedProperties/Any(ep: ep/id eq '{MEMBER_PROPERTY}' "
            "and startswith(ep/value, 'roombridge-'))",
            (MEMBER_PROPERTY,),
        )
        counts: dict[str, list[int]] = {}
        for event in found:
            parsed = parse_member_value(extended_property(event, MEMBER_PROPERTY))
            if parsed is None:
                continue
            uid, _index, count = parsed
            self._uids[uid_digest(uid)] = uid
            counts.setdefault(uid, []).append(count)
        return {uid for uid, seen in counts.items() if len(seen) != max(seen)}

    def _object_of(self, event: JsonObject, span: Window | None = None) -> RemoteObject:
        """A single event or series master as the engine sees it (stored text while intact)."""
        span = span or self._span or span_for(self.window())
        ident = str(event["id"])
        etag = event.get("@odata.etag")
        uid = extended_property(event, UID_PROPERTY)
        stored = decode_stored(extended_property(event, ICS_PROPERTY))
        instances = None
        plan: Plan | None = None
        if uid and stored is not None:
            try:
                plan = plan_object(uid, stored.ics)
            except GraphLayoutError:
                plan = None
        if event.get("type") == "seriesMaster":
            listed = instance_window(plan, span) if plan is not None else _padded(span)
            instances = self._instances(ident, listed)
        name = uid or str(event.get("iCalUId") or ident)
        if plan is not None and _still_holds(plan, event, instances, span):
            ics = plan.ics
        else:
            try:
                ics = derived_ics(name, event, instances, span, foreign=not uid)
            except GraphLayoutError as exc:
                # One unreadable event must not fail the room's read: it shows as changed.
                ics = unreadable_ics(name, str(exc))
        remote = RemoteObject(ident, etag, name, ics)
        self._remember(remote)
        return remote

    def _group_object(
        self, uid: str, found: Sequence[JsonObject], span: Window | None = None
    ) -> RemoteObject:
        """A separate layout (or whatever holds ``uid`` as several events) as one object."""
        window = self.window()
        href = group_href(uid)
        etag = composite_etag((str(e["id"]), e.get("@odata.etag")) for e in found)
        known = self._known.get(href)
        if known is not None and known.etag == etag:
            return RemoteObject(href, etag, uid, known.ics)
        anchor = next(
            (
                e
                for e in found
                if (parsed := parse_member_value(extended_property(e, MEMBER_PROPERTY)))
                and parsed[1] == 0
            ),
            None,
        )
        stored = decode_stored(extended_property(anchor, ICS_PROPERTY)) if anchor else None
        ics: bytes | None = None
        if stored is not None:
            try:
                plan = plan_object(uid, stored.ics)
            except GraphLayoutError:
                plan = None
            if plan is not None and _members_hold(plan, stored, found, window):
                ics = stored.ics
        if ics is None:
            try:
                ics = derived_members_ics(uid, found)
            except GraphLayoutError as exc:
                ics = unreadable_ics(uid, str(exc))
        remote = RemoteObject(href, etag, uid, ics)
        self._remember(remote, [str(e["id"]) for e in found])
        return remote

    def _fetch_event(self, ident: str) -> JsonObject:
        response = self._send(
            "get",
            "GET",
            f"{self.base}/events/{_segment(ident)}",
            params={"$expand": _expand_clause()},
            headers={"Prefer": TEXT_BODY},
        )
        if response.status_code != 200:
            raise self._failure("get", ident, response)
        return self._json(response, "get")

    def _instances(self, ident: str, window: Window) -> list[JsonObject]:
        url = f"{self.base}/events/{_segment(ident)}/instances"
        params: dict[str, str] | None = {
            "startDateTime": _query_time(window.start),
            "endDateTime": _query_time(window.end),
            "$top": str(LIST_PAGE_SIZE),
        }
        return self._pages("read", url, params)

    def _events_with_uid(self, uid: str) -> list[JsonObject]:
        literal = uid.replace("'", "''")
        return self._list_events(
            f"singleValueExtendedProperties/Any(ep: ep/id eq '{UID_PROPERTY}' "
            f"and ep/value eq '{literal}')",
            READ_PROPERTIES,
        )

    def _group_members(self, uid: str) -> list[JsonObject]:
        return self._events_with_uid(uid)

    def _list_events(self, clause: str, properties: Sequence[str]) -> list[JsonObject]:
        params: dict[str, str] | None = {
            "$filter": clause,
            "$expand": _expand_clause(properties),
            "$top": str(LIST_PAGE_SIZE),
        }
        return self._pages("find", f"{self.base}/events", params)

    def _pages(self, operation: str, url: str, params: dict[str, str] | None) -> list[JsonObject]:
        found: list[JsonObject] = []
        for _ in range(MAX_PAGES):
            response = self._send(
                operation,
                "GET",
                url,
                params=params,
                headers={"Prefer": TEXT_BODY},
                raw_url=params is None,
            )
            if response.status_code != 200:
                raise self._failure(operation, self.mailbox, response)
            page = self._json(response, operation)
            found.extend(item for item in page.get("value") or () if isinstance(item, Mapping))
            next_link = page.get("@odata.nextLink")
            if not isinstance(next_link, str) or not next_link:
                return found
            url, params = next_link, None
        raise CalendarError(operation, self.mailbox, None, f"more than {MAX_PAGES} pages")

    def _remember(self, remote: RemoteObject, member_ids: Sequence[str] = ()) -> None:
        with self._lock:
            self._known[remote.href] = Known(remote.etag, remote.uid, remote.ics)
            for ident in member_ids:
                self._known_ids[ident] = remote.href
            if group_uid(remote.href) is not None:
                self._uids[uid_digest(remote.uid)] = remote.uid

    def _forget(self, href: str) -> None:
        with self._lock:
            self._known.pop(href, None)

    # ----- writes ----------------------------------------------------------------------------

    def create(self, uid: str, ics: bytes) -> RemoteObject:
        """Create the object for ``uid`` unless it exists (raises AlreadyExists then)."""
        plan = self._plan(uid, ics)
        if plan.layout is Layout.SEPARATE:
            existing = self.find_by_uid(uid)
            if existing is not None:
                raise AlreadyExists("create", uid, None, "events for this UID exist", existing)
            return self._create_members(plan)
        return self._create_event(plan)

    def update(self, href: str, ics: bytes, etag: str | None) -> RemoteObject:
        """Make the object hold ``ics`` if its etag still matches (raises PreconditionFailed)."""
        uid = group_uid(href) or _ics_uid(ics)
        plan = self._plan(uid, ics)
        if group_uid(href) is None and plan.layout is Layout.SINGLE:
            patched, etag = self._patch_single(href, plan, etag)
            if patched is not None:
                return patched
        self.delete(href, etag, missing_ok=False)
        if plan.layout is Layout.SEPARATE:
            return self._create_members(plan)
        return self._create_event(plan)

    def delete(self, href: str, etag: str | None, *, missing_ok: bool = True) -> None:
        """Delete the object if its etag still matches; an object already gone is fine."""
        uid = group_uid(href)
        if uid is None:
            self._delete_event(href, etag, missing_ok=missing_ok)
            self._forget(href)
            return
        found = self._group_members(uid)
        if not found:
            if missing_ok:
                return
            raise NotFound("delete", href, 404, "no events of this object")
        current = composite_etag((str(e["id"]), e.get("@odata.etag")) for e in found)
        if etag is not None and etag != current:
            raise PreconditionFailed("delete", href, 412, "a member changed since it was read")
        for event in found:
            self._delete_event(str(event["id"]), event.get("@odata.etag"), missing_ok=True)
        self._forget(href)

    # ----- answering booking requests (RequestAnswers) ----------------------------------------

    #: The room's copy of a meeting is the organizer's to change: a refused edit is declined.
    can_restore = False

    def accept(
        self,
        href: str,
        etag: str | None,
        *,
        provider: str,
        keys: Sequence[str],
        declined: Sequence[datetime] = (),
        reason: str = "",
        tentative: bool = False,
    ) -> RemoteObject:
        """Tag the room's copy (extended property, If-Match), accept it, decline ``declined``.

        A booking the provider has not approved yet is accepted with ``tentativelyAccept``.
        """
        ident = self._meeting(href, "accept")
        headers = {"Prefer": TEXT_BODY, **({"If-Match": etag} if etag else {})}
        body = {"singleValueExtendedProperties": [
            {"id": ANSWER_PROPERTY, "value": answer_value(provider, keys)}
        ]}
        url = f"{self.base}/events/{_segment(ident)}"
        response = self._send("accept", "PATCH", url, json_body=body, headers=headers)
        if response.status_code != 200:
            raise self._failure("accept", href, response)
        if not self._json(response, "accept").get("isOrganizer"):
            # A meeting the room received; an event made in its own calendar needs no answer.
            self._respond(ident, "tentativelyAccept" if tentative else "accept", "")
        for start in declined:
            self._respond(self._occurrence_at(ident, start), "decline", reason)
        self._forget(href)
        return self.get(href)

    def decline(
        self,
        href: str,
        etag: str | None = None,
        *,
        reason: str = "",
        occurrences: Sequence[datetime] = (),
    ) -> RemoteObject | None:
        """Decline a meeting the room received (``POST …/decline``), or some occurrences.

        Exchange removes a declined meeting from the room's calendar: None then.
        """
        ident = self._meeting(href, "decline")
        if etag is not None and self._fetch_event(ident).get("@odata.etag") != etag:
            raise PreconditionFailed("decline", href, 412, "the event changed since it was read")
        if occurrences:
            for start in occurrences:
                self._respond(self._occurrence_at(ident, start), "decline", reason)
            self._forget(href)
            return self.get(href)
        self._respond(ident, "decline", reason)
        self._forget(href)
        return None

    def restore(self, href: str, etag: str | None, ics: bytes, *, reason: str) -> RemoteObject:
        """Not possible: only the organizer may change a meeting (see ``can_restore``)."""
        raise CalendarError("restore", href, None, "only the organizer can change this meeting")

    def _meeting(self, href: str, operation: str) -> str:
        """The event id of a meeting the room can answer (never one of the bridge's groups)."""
        if group_uid(href) is not None:
            raise CalendarError(
                operation, href, None, "the bridge's own events are not invitations"
            )
        return href

    def _respond(self, ident: str, verb: str, comment: str) -> None:
        """``POST …/accept|decline`` as the room, telling the organizer."""
        response = self._send(
            verb,
            "POST",
            f"{self.base}/events/{_segment(ident)}/{verb}",
            json_body={"comment": comment, "sendResponse": True},
        )
        if response.status_code not in (200, 202, 204):
            raise self._failure(verb, ident, response)

    def _occurrence_at(self, ident: str, start: datetime) -> str:
        """The id of the occurrence of a series whose original start is ``start``."""
        wanted = start.astimezone(UTC)
        around = Window(wanted - timedelta(days=1), wanted + timedelta(days=1))
        for instance in self._instances(ident, around):
            original = instance.get("originalStart")
            if original and offset_instant(original).replace(microsecond=0) == wanted:
                return str(instance["id"])
        raise CalendarError(
            "decline", ident, None, f"the meeting has no occurrence at {wanted.isoformat()}"
        )

    def _plan(self, uid: str, ics: bytes) -> Plan:
        try:
            plan = plan_object(uid, ics)
        except (GraphLayoutError, ValueError) as exc:
            raise CalendarError("write", uid, None, f"cannot lay out the object: {exc}") from None
        if plan.layout is Layout.SEPARATE:
            log.info("%s: written as separate events (%s)", uid, plan.reason)
        return plan

    def _create_event(self, plan: Plan) -> RemoteObject:
        response = self._send(
            "create",
            "POST",
            f"{self.base}/events",
            json_body=event_body(plan),
            headers={"Prefer": TEXT_BODY},
        )
        if response.status_code not in (200, 201):
            if response.status_code == 409:
                raise AlreadyExists(
                    "create", plan.uid, 409, self._reason(response), self.find_by_uid(plan.uid)
                )
            raise self._failure("create", plan.uid, response)
        created = self._json(response, "create")
        wanted_type = "seriesMaster" if plan.layout is Layout.SERIES else "singleInstance"
        if created.get("type") != wanted_type or shape_of(created) != plan.master.normalised():
            # Graph answered with the event an earlier create made under this transactionId.
            existing = self.get(str(created["id"]))
            raise AlreadyExists(
                "create", plan.uid, response.status_code, "an event for this UID exists", existing
            )
        ident = str(created["id"])
        etag = created.get("@odata.etag")
        if plan.layout is Layout.SERIES and (plan.exceptions or plan.cancelled):
            self._apply_instance_changes(ident, plan)
            etag = self._fetch_event(ident).get("@odata.etag")
        remote = RemoteObject(ident, etag, plan.uid, plan.ics)
        self._remember(remote)
        return remote

    def _apply_instance_changes(self, ident: str, plan: Plan) -> None:
        """PATCH the exceptions onto their occurrences and delete the cancelled ones."""
        touched = plan.exception_range()
        assert touched is not None
        window = Window(touched[0] - timedelta(days=1), touched[1] + timedelta(days=1))
        by_original: dict[datetime, str] = {}
        for instance in self._instances(ident, window):
            if instance.get("originalStart"):
                original = offset_instant(instance["originalStart"]).astimezone(UTC)
                by_original[original] = str(instance["id"])
        for original in sorted(plan.cancelled):
            occurrence = by_original.get(original)
            if occurrence is not None:
                self._delete_event(occurrence, None, missing_ok=True)
        for original, shape in sorted(plan.exceptions.items()):
            occurrence = by_original.get(original)
            if occurrence is None:
                raise CalendarError(
                    "create", plan.uid, None, f"no occurrence at {original.isoformat()} to modify"
                )
            response = self._send(
                "create",
                "PATCH",
                f"{self.base}/events/{_segment(occurrence)}",
                json_body=exception_body(plan, shape),
            )
            if response.status_code != 200:
                raise self._failure("create", plan.uid, response)

    def _create_members(self, plan: Plan) -> RemoteObject:
        span = self._span or span_for(self.window())
        shapes = members(plan, span)
        if not shapes:
            raise CalendarError("create", plan.uid, None, "no occurrence in the window to write")
        written: list[tuple[str, str | None]] = []
        starts: Counter[datetime] = Counter()
        for index, shape in enumerate(shapes):
            body = member_body(plan, shape, index, len(shapes), span, repeat=starts[shape.start])
            starts[shape.start] += 1
            response = self._send(
                "create",
                "POST",
                f"{self.base}/events",
                json_body=body,
                headers={"Prefer": TEXT_BODY},
            )
            if response.status_code not in (200, 201):
                raise self._failure("create", plan.uid, response)
            created = self._json(response, "create")
            written.append((str(created["id"]), created.get("@odata.etag")))
        remote = RemoteObject(group_href(plan.uid), composite_etag(written), plan.uid, plan.ics)
        self._remember(remote, [ident for ident, _etag in written])
        return remote

    def _patch_single(
        self, href: str, plan: Plan, etag: str | None
    ) -> tuple[RemoteObject | None, str | None]:
        """PATCH a single event in place; (None, its new etag) when it turned out a series."""
        for _attempt in range(TRANSIENT_CONFLICT_RETRIES + 1):
            headers = {"Prefer": TEXT_BODY}
            if etag:
                headers["If-Match"] = etag
            response = self._send(
                "update",
                "PATCH",
                f"{self.base}/events/{_segment(href)}",
                json_body=patch_body(plan),
                headers=headers,
            )
            if response.status_code == 412 and self._conflict_was_transient(href, etag):
                continue
            if response.status_code != 200:
                raise self._failure("update", href, response)
            patched = self._json(response, "update")
            if patched.get("type") != "singleInstance":
                return None, patched.get("@odata.etag")
            remote = RemoteObject(href, patched.get("@odata.etag"), plan.uid, plan.ics)
            self._remember(remote)
            return remote, remote.etag
        raise PreconditionFailed("update", href, 412, "the change key keeps conflicting")

    def _delete_event(self, ident: str, etag: str | None, *, missing_ok: bool) -> None:
        for _attempt in range(TRANSIENT_CONFLICT_RETRIES + 1):
            headers = {"If-Match": etag} if etag else {}
            response = self._send(
                "delete", "DELETE", f"{self.base}/events/{_segment(ident)}", headers=headers
            )
            if response.status_code in (200, 204) or (response.status_code == 404 and missing_ok):
                with self._lock:
                    self._deleted.add(ident)
                return
            if response.status_code == 412 and self._conflict_was_transient(ident, etag):
                continue
            raise self._failure("delete", ident, response)
        raise PreconditionFailed("delete", ident, 412, "the change key keeps conflicting")

    def _conflict_was_transient(self, ident: str, etag: str | None) -> bool:
        """After a 412: whether the event still has the etag sent (then try again)."""
        if etag is None:
            return False
        try:
            current = self._fetch_event(ident)
        except NotFound:
            return False
        return current.get("@odata.etag") == etag

    # ----- rooms and checks ------------------------------------------------------------------

    def list_rooms(self) -> list[GraphRoom]:
        """Every room ``/places/microsoft.graph.room`` lists."""
        url = f"{self.account.graph_url}/places/microsoft.graph.room"
        found = self._pages("rooms", url, {"$top": "100"})
        rooms = []
        for item in found:
            located = item.get("address")
            address: Mapping[str, Any] = located if isinstance(located, Mapping) else {}
            rooms.append(
                GraphRoom(
                    address=str(item.get("emailAddress") or ""),
                    name=str(item.get("displayName") or ""),
                    capacity=item.get("capacity")
                    if isinstance(item.get("capacity"), int)
                    else None,
                    building=item.get("building")
                    if isinstance(item.get("building"), str)
                    else None,
                    street=str(address.get("street")) if address.get("street") else None,
                    city=str(address.get("city")) if address.get("city") else None,
                )
            )
        return rooms

    def check(self) -> dict[str, object]:
        """Reach the mailbox's calendar once; a missing mailbox names the rooms that exist."""
        response = self._send("check", "GET", f"{self.base}/calendar")
        if response.status_code == 200:
            rooms = self.list_rooms()
            listed = any(room.address.lower() == self.mailbox.lower() for room in rooms)
            return {"mailbox": self.mailbox, "room": listed, "rooms": len(rooms)}
        if response.status_code == 404:
            try:
                rooms = self.list_rooms()
            except CalendarError:
                rooms = []
            names = ", ".join(f"{room.address} ({room.name})" for room in rooms) or "none"
            raise CalendarError(
                "check", self.mailbox, 404, f"no such mailbox (rooms found: {names})"
            )
        raise self._failure("check", self.mailbox, response)

    # ----- plumbing --------------------------------------------------------------------------

    def _send(
        self,
        operation: str,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: object = None,
        headers: Mapping[str, str] | None = None,
        raw_url: bool = False,
    ) -> httpx.Response:
        """One request with retries for throttling and transient failures (see module doc)."""
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            token = self.account.tokens.token()
            sent = {
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "Prefer": 'IdType="ImmutableId"',
                **(headers or {}),
            }
            if headers and "Prefer" in headers:
                sent["Prefer"] = f'{headers["Prefer"]}, IdType="ImmutableId"'
            request = self.account.http.build_request(
                method,
                httpx.URL(url) if raw_url else url,
                params=params,
                json=json_body,
                headers=sent,
            )
            failure: str | None = None
            try:
                with self.limiter.slot():
                    with self._lock:
                        self.request_count += 1
                    response = self.account.http.send(request)
                    response.read()
            except httpx.TimeoutException:
                failure = "timed out"
            except httpx.HTTPError as exc:
                failure = f"cannot reach Microsoft Graph ({type(exc).__name__})"
            if failure is not None:
                if attempt < MAX_ATTEMPTS:
                    self._pause(attempt, None, method, url, failure)
                    continue
                raise CalendarError(operation, _path_of(url), None, failure)
            if response.status_code == 401 and not refreshed:
                refreshed = True
                self.account.tokens.invalidate(token)
                continue
            delay = self._retry_delay(response, method, attempt, "If-Match" in sent)
            if delay is None:
                return response
            self._pause(attempt, delay, method, url, f"HTTP {response.status_code}")

    def _retry_delay(
        self, response: httpx.Response, method: str, attempt: int, conditional: bool
    ) -> float | None:
        status = response.status_code
        retryable = RETRYABLE_READS if method == "GET" else RETRYABLE
        # Without If-Match a 412 cannot be a real conflict: Outlook's transient kind.
        transient_conflict = (
            status == 412
            and not conditional
            and _error_code(response) == "ErrorIrresolvableConflict"
        )
        if (status not in retryable and not transient_conflict) or attempt >= MAX_ATTEMPTS:
            return None
        if status == 412 and not transient_conflict:
            return None
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if retry_after is None:
            return self._backoff(attempt)
        if retry_after > MAX_RETRY_AFTER:
            return None
        return retry_after

    def _backoff(self, attempt: int) -> float:
        ceiling = min(8.0, 0.25 * 2 ** (attempt - 1))
        return self._rng.uniform(ceiling / 2, ceiling)

    def _pause(self, attempt: int, delay: float | None, method: str, url: str, why: str) -> None:
        wait = self._backoff(attempt) if delay is None else delay
        log.info(
            "graph %s: %s %s failed (%s), retry %d in %.2fs",
            self.mailbox,
            method,
            _path_of(url),
            why,
            attempt,
            wait,
        )
        self._sleep(wait)

    def _json(self, response: httpx.Response, operation: str) -> dict[str, Any]:
        try:
            document = response.json()
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise CalendarError(operation, self.mailbox, response.status_code, "not a JSON object")
        return document

    def _failure(self, operation: str, target: str, response: httpx.Response) -> CalendarError:
        status = response.status_code
        reason = self._reason(response)
        kind: type[CalendarError] = CalendarError
        if status == 404:
            kind = NotFound
        elif status == 412:
            kind = PreconditionFailed
        elif status == 410:
            kind = CursorExpired
        elif status == 401:
            reason = f"authentication failed ({reason})"
        return kind(operation, target, status, reason)

    @staticmethod
    def _reason(response: httpx.Response) -> str:
        code = _error_code(response)
        try:
            message = str(response.json()["error"].get("message") or "")
        except (ValueError, KeyError, TypeError, AttributeError):
            message = response.reason_phrase or ""
        return f"{code}: {message}"[:300] if code else message[:300]


TEXT_BODY = 'outlook.body-content-type="text"'


def _error_code(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return ""


def _segment(ident: str) -> str:
    """An id as one URL path segment (Graph ids hold +, / and =)."""
    return quote(ident, safe="")


def _path_of(url: str) -> str:
    return urlsplit(url).path


def _query_time(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _expand_clause(properties: Sequence[str] = READ_PROPERTIES) -> str:
    ids = " or ".join(f"id eq '{pid}'" for pid in properties)
    return f"singleValueExtendedProperties($filter={ids})"


def _still_holds(
    plan: Plan, event: JsonObject, instances: Sequence[JsonObject] | None, span: Window
) -> bool:
    """Whether Graph still shows what the stored text says (unreadable values: it does not)."""
    try:
        return matches_event(plan, event, instances, span)
    except (GraphLayoutError, KeyError, TypeError):
        return False


def _members_hold(
    plan: Plan, stored: StoredObject, found: Sequence[JsonObject], window: Window
) -> bool:
    """Whether a separate layout's members still show what the stored text says."""
    try:
        return matches_members(plan, stored, found, window)
    except (GraphLayoutError, KeyError, TypeError):
        return False


def _padded(span: Window) -> Window:
    return Window(span.start - timedelta(days=7), span.end + timedelta(days=7))


def _ics_uid(ics: bytes) -> str:
    text = ics.decode("utf-8", errors="replace").replace("\r\n ", "").replace("\r\n\t", "")
    for line in text.splitlines():
        name, colon, value = line.partition(":")
        if colon and name.split(";", 1)[0].strip().upper() == "UID":
            return value.strip()
    raise CalendarError("write", "?", None, "the object has no UID")


__all__ = [
    "MAILBOX_CONCURRENCY",
    "GraphRoom",
    "GraphTokens",
    "MailboxLimiter",
    "Office365Account",
    "Office365Calendar",
    "StoredObject",
    "build_office365_calendar",
]
