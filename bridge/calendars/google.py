"""Google Calendar backend: one room's resource calendar through the Calendar API v3.

Built on google-api-python-client from the packaged static discovery document (no discovery
request), with ``api_endpoint`` honoured for test servers, and google-auth service-account
credentials with domain-wide delegation: the token exchange (an RS256 JWT grant) really
happens against the key file's ``token_uri``, and a 401 mid-run makes the transport fetch a
new token and repeat the request.

What the sync engine gets, per :class:`~bridge.calendars.base.CalendarBackend`:

- reads are ``events.list`` with ``syncToken`` (pages followed until the page carrying
  ``nextSyncToken``), ``singleEvents`` false so a recurring event is its master plus its
  exceptions; ``410 fullSyncRequired`` turns the read into a full listing, which the engine
  diffs against its snapshot to find deletions; ``status: "cancelled"`` items are deletions
  (or cancelled instances). Each object is a whole series: ``href`` is the master's event id,
  ``etag`` the master's etag (plus a digest of its exceptions' etags when it has some), ``uid``
  the bridge's UID and ``ics`` the series rendered by :mod:`bridge.calendars.google_events`.
  A changed series whose other parts this process has not seen is fetched whole with one
  ``events.list?iCalUID=`` request; a no-op read is one request;
- creates are ``events.insert`` with a client-chosen event id derived from the UID
  (base32hex), so a create repeated after a crash or a lost reply answers ``409 duplicate``:
  the existing event is returned for adoption (AlreadyExists), or, when it was deleted (its
  id stays reserved), restored by an update. Instance exceptions follow the master
  (``PUT`` of the instance found with ``events.instances?originalStart=``; cancellation by
  ``PATCH status=cancelled``);
- updates and deletes carry ``If-Match``; ``412`` is PreconditionFailed (re-read, re-plan);
- quota errors (403 ``rateLimitExceeded``/``userRateLimitExceeded``, 429, 5xx) and transport
  failures are retried here with exponential backoff and full jitter, honouring
  ``Retry-After``; the client library's own retry is off. Every request (token requests
  aside) first takes a slot from a :class:`RequestBudget` shared by all rooms acting as the
  same user, so the bridge stays under Google's 600 requests per minute per user;
- answering booking requests (:class:`~bridge.calendars.base.RequestAnswers`): the room's
  copy of an organizer's meeting cannot be rewritten (``update`` is ``403
  forbiddenForNonOrganizer``), so the room PATCHes only what is its own on that copy: its
  attendee entry's ``responseStatus``/``comment`` and the private extended properties
  ``roombridgeProvider``/``roombridgeKeys`` (the tags, read back as ``X-ROOMBRIDGE-PROVIDER``/
  ``X-ROOMBRIDGE-KEY``). Occurrences are declined on their instances.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import google_auth_httplib2
import httplib2
from google.auth import exceptions as auth_exceptions
from google.oauth2 import service_account
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from bridge.calendars.base import (
    AlreadyExists,
    CalendarError,
    ChangeSet,
    NotFound,
    PreconditionFailed,
    RemoteObject,
)
from bridge.calendars.google_events import (
    PRIVATE_KEYS,
    PRIVATE_PROVIDER,
    EventTranslationError,
    InstanceChange,
    SeriesWrite,
    event_id_for_uid,
    exception_lines,
    instant_key,
    natural_instance,
    natural_lines,
    render_series,
    series_uid,
    series_write,
)
from bridge.config import GoogleConfig
from bridge.errors import ConfigError

Json = dict[str, Any]

SCOPES = ("https://www.googleapis.com/auth/calendar",)
DEFAULT_ENDPOINT = "https://www.googleapis.com/calendar/v3/"
#: Google's largest page: a 10,000-event calendar lists in four requests.
PAGE_SIZE = 2500
#: A server that keeps paging forever would otherwise loop forever.
MAX_PAGES = 1000
DEFAULT_TIMEOUT = 30.0
#: Google's per-user quota: requests per minute per user per project.
USER_REQUESTS_PER_MINUTE = 600
#: What the shared budget allows of it: our window and Google's are not aligned to the
#: millisecond, and other tools may act as the same user.
BUDGET_REQUESTS_PER_MINUTE = USER_REQUESTS_PER_MINUTE * 95 // 100
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    http.client.HTTPException,
    httplib2.HttpLib2Error,
    auth_exceptions.TransportError,
)


# ----- rate budget and retries -----------------------------------------------------------------


class RequestBudget:
    """At most ``limit`` requests in any ``window`` seconds, shared by every room and thread.

    A sliding log of start times: ``acquire`` waits until the oldest request of the window
    leaves it. Waiting before sending is what keeps a busy bridge from provoking 403 storms.
    """

    def __init__(
        self,
        limit: int = USER_REQUESTS_PER_MINUTE,
        window: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a request budget needs a positive limit and window")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._sleep = sleep
        self._started: deque[float] = deque()
        self._lock = threading.Lock()
        self.waited = 0.0

    def acquire(self) -> float:
        """Take one request slot, waiting as long as needed; returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                while self._started and self._started[0] <= now - self.window:
                    self._started.popleft()
                if len(self._started) < self.limit:
                    self._started.append(now)
                    self.waited += waited
                    return waited
                delay = self._started[0] + self.window - now
            self._sleep(delay)
            waited += delay

    def __repr__(self) -> str:
        return f"RequestBudget(limit={self.limit}, window={self.window})"


_SHARED_BUDGETS: dict[str, RequestBudget] = {}
_SHARED_BUDGETS_LOCK = threading.Lock()


def shared_budget(
    subject: str, limit: int = BUDGET_REQUESTS_PER_MINUTE, window: float = 60.0
) -> RequestBudget:
    """The process-wide budget of one Google user: rooms synced as that user share it.

    The first call for a subject sets its limit and window; later calls get the same object.
    """
    with _SHARED_BUDGETS_LOCK:
        budget = _SHARED_BUDGETS.get(subject.lower())
        if budget is None:
            budget = _SHARED_BUDGETS[subject.lower()] = RequestBudget(limit, window)
        return budget


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter; ``Retry-After`` is a floor (capped)."""

    attempts: int = 6
    base: float = 0.5
    cap: float = 32.0
    max_retry_after: float = 120.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        jittered = rng.uniform(0, min(self.cap, self.base * 2**attempt))
        if retry_after is None:
            return jittered
        return max(min(retry_after, self.max_retry_after), jittered)


class CountingHttp(httplib2.Http):  # type: ignore[misc]
    """An ``httplib2.Http`` that counts requests and spends the user's budget on API ones."""

    def __init__(self, *, budget: RequestBudget, token_uri: str, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self.budget = budget
        self.token_uri = token_uri
        self.api_requests = 0
        self.token_requests = 0

    def request(self, uri: str, *args: Any, **kwargs: Any) -> Any:
        """Send one request (after taking a budget slot, unless it is a token request)."""
        if uri.startswith(self.token_uri):
            self.token_requests += 1
        else:
            self.budget.acquire()
            self.api_requests += 1
        return super().request(uri, *args, **kwargs)


# ----- the backend -----------------------------------------------------------------------------


@dataclass(slots=True)
class Series:
    """A Google event as this process last saw it whole: master and exceptions by id."""

    master: Json
    exceptions: dict[str, Json] = field(default_factory=dict)

    @property
    def deleted(self) -> bool:
        """Whether the master is deleted (Google keeps it as ``status: cancelled``)."""
        return self.master.get("status") == "cancelled"

    @property
    def etag(self) -> str | None:
        """The master's etag, plus a digest of the exceptions' etags when there are any."""
        etag = self.master.get("etag")
        if not self.exceptions:
            return str(etag) if etag else None
        listed = "\n".join(f"{i} {e.get('etag', '')}" for i, e in sorted(self.exceptions.items()))
        return f"{etag}|{hashlib.sha256(listed.encode()).hexdigest()[:16]}"


def master_etag(etag: str | None) -> str | None:
    """The master's own etag inside an object etag."""
    return etag.split("|", 1)[0] if etag else None


class _SyncTokenExpired(Exception):
    """Google answered 410 ``fullSyncRequired`` to a sync token."""


class GoogleCalendar:
    """One Google calendar (a room's resource calendar), read incrementally, written safely."""

    def __init__(
        self,
        service: Any,
        calendar_id: str,
        *,
        http: CountingHttp,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.calendar_id = calendar_id
        self._service = service
        self._events = service.events()
        self._http = http
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._rng = rng or random.Random()
        # Series this process has seen whole, as of the sync token in ``_cache_token``: an
        # incremental read applies its changes to them instead of fetching them again.
        self._cache: dict[str, Series] = {}
        self._cache_token: str | None = None
        self.retries = 0

    def __repr__(self) -> str:
        return f"GoogleCalendar({self.calendar_id!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    @property
    def request_count(self) -> int:
        """API requests sent so far (token requests not counted)."""
        return self._http.api_requests

    @property
    def token_request_count(self) -> int:
        """Token requests sent so far."""
        return self._http.token_requests

    # ----- reads -------------------------------------------------------------------------

    def check(self) -> Json:
        """Reach the calendar once (``calendars.get``); returns its id, name and zone."""
        found = self._execute(
            "check", self._target(), self._service.calendars().get(calendarId=self.calendar_id)
        )
        return {key: found.get(key) for key in ("id", "summary", "timeZone")}

    def read_changes(self, cursor: str | None) -> ChangeSet:
        """Objects changed since ``cursor``; a full listing when it is None or rejected."""
        before = self.request_count
        if cursor != self._cache_token:
            self._cache = {}
        full = not cursor
        items: list[Json] = []
        token: str | None = None
        if cursor:
            try:
                items, token = self._list_all(cursor)
            except _SyncTokenExpired:
                full = True
        deleted: list[str] = []
        if full:
            items, token = self._list_all(None)
            changed = self._fold_full(items)
        else:
            changed, deleted = self._fold_incremental(items)
        self._cache_token = token
        return ChangeSet(
            changed=changed,
            deleted=deleted,
            cursor=token,
            full=full,
            requests=self.request_count - before,
        )

    def get(self, href: str) -> RemoteObject:
        """Read one object (raises NotFound, also for a deleted event)."""
        series = self._fetch_series(href)
        if series is None or series.deleted:
            raise NotFound("get", self._target(href), 404, "no such event")
        self._cache[href] = series
        return self._remote(series)

    def find_by_uid(self, uid: str) -> RemoteObject | None:
        """The object of a bridge UID (its event id is derived from it), or None."""
        try:
            return self.get(event_id_for_uid(uid))
        except NotFound:
            return None

    def _list_all(self, sync_token: str | None) -> tuple[list[Json], str]:
        """Every page of ``events.list`` (from a sync token, or everything)."""
        items: list[Json] = []
        page_token: str | None = None
        for _page in range(MAX_PAGES):
            params: Json = {"calendarId": self.calendar_id, "maxResults": PAGE_SIZE}
            if sync_token:
                params["syncToken"] = sync_token
            if page_token:
                params["pageToken"] = page_token
            try:
                page = self._execute("read", self._target(), self._events.list(**params))
            except CalendarError as exc:
                if sync_token and exc.status == 410:
                    raise _SyncTokenExpired(sync_token) from None
                raise
            items.extend(item for item in page.get("items", []) if isinstance(item, dict))
            if page.get("nextSyncToken"):
                return items, str(page["nextSyncToken"])
            page_token = page.get("nextPageToken")
            if not page_token:
                raise CalendarError(
                    "read", self._target(), None, "the last page carries no nextSyncToken"
                )
        raise CalendarError("read", self._target(), None, f"still paging after {MAX_PAGES} pages")

    def _fold_full(self, items: list[Json]) -> list[RemoteObject]:
        """A full listing: every live series, which also becomes the cache."""
        masters: dict[str, Json] = {}
        exceptions: dict[str, dict[str, Json]] = {}
        for item in items:
            parent = item.get("recurringEventId")
            if parent:
                exceptions.setdefault(str(parent), {})[str(item["id"])] = item
            elif item.get("status") != "cancelled":
                masters[str(item["id"])] = item
        self._cache = {
            event_id: Series(master, exceptions.get(event_id, {}))
            for event_id, master in masters.items()
        }
        return [self._remote(series) for series in self._cache.values()]

    def _fold_incremental(self, items: list[Json]) -> tuple[list[RemoteObject], list[str]]:
        """Changes since a token: apply them to known series, fetch the others whole."""
        dirty: dict[str, None] = {}
        missing: dict[str, Json] = {}
        deleted: list[str] = []
        for item in items:
            event_id = str(item.get("id"))
            parent = item.get("recurringEventId")
            if parent:
                series = self._cache.get(str(parent))
                if series is None:
                    missing.setdefault(str(parent), item)
                else:
                    series.exceptions[event_id] = item
                dirty[str(parent)] = None
            elif item.get("status") == "cancelled":
                self._forget(event_id, dirty, deleted)
            elif item.get("recurrence") and event_id not in self._cache:
                missing[event_id] = item
                dirty[event_id] = None
            else:
                series = self._cache.get(event_id)
                keep = series.exceptions if series is not None and item.get("recurrence") else {}
                self._cache[event_id] = Series(item, keep)
                dirty[event_id] = None
        for event_id, hint in missing.items():
            series = self._fetch_series(event_id, hint)
            if series is None or series.deleted:
                self._cache.pop(event_id, None)
                deleted.append(event_id)
            else:
                self._cache[event_id] = series
        changed = [
            self._remote(self._cache[event_id]) for event_id in dirty if event_id in self._cache
        ]
        return changed, deleted

    def _forget(self, event_id: str, dirty: dict[str, None], deleted: list[str]) -> None:
        """A deletion: a whole event, or an exception removed from a known series."""
        if self._cache.pop(event_id, None) is not None:
            dirty.pop(event_id, None)
            deleted.append(event_id)
            return
        for master_id, series in self._cache.items():
            if series.exceptions.pop(event_id, None) is not None:
                dirty[master_id] = None
                return
        deleted.append(event_id)

    def _fetch_series(self, event_id: str, hint: Mapping[str, Any] | None = None) -> Series | None:
        """A series read whole: its master and every exception (None when unknown)."""
        master: Json | None = None
        uid = hint.get("iCalUID") if hint else None
        if not uid:
            try:
                master = self._execute(
                    "read",
                    self._target(event_id),
                    self._events.get(calendarId=self.calendar_id, eventId=event_id),
                )
            except NotFound:
                return None
            uid = master.get("iCalUID")
            if not master.get("recurrence") or master.get("status") == "cancelled" or not uid:
                return Series(master)
        exceptions: dict[str, Json] = {}
        page_token: str | None = None
        for _page in range(MAX_PAGES):
            params: Json = {
                "calendarId": self.calendar_id,
                "iCalUID": uid,
                "showDeleted": True,
                "maxResults": PAGE_SIZE,
            }
            if page_token:
                params["pageToken"] = page_token
            page = self._execute("read", self._target(event_id), self._events.list(**params))
            for item in page.get("items", []):
                if item.get("id") == event_id:
                    master = item
                elif item.get("recurringEventId") == event_id:
                    exceptions[str(item["id"])] = item
            page_token = page.get("nextPageToken")
            if not page_token:
                break
        if master is None:
            return None
        return Series(master, exceptions)

    def _remote(self, series: Series) -> RemoteObject:
        """The engine's view of a series."""
        master = series.master
        try:
            ics = render_series(master, series.exceptions.values())
        except (EventTranslationError, KeyError, TypeError, ValueError):
            ics = b""  # an event no client could read: known to the engine, never equal
        return RemoteObject(
            href=str(master["id"]), etag=series.etag, uid=series_uid(master), ics=ics
        )

    # ----- writes ------------------------------------------------------------------------

    def create(self, uid: str, ics: bytes) -> RemoteObject:
        """Create the event for ``uid`` unless it exists (raises AlreadyExists then)."""
        write = self._plan("create", uid, ics)
        target = self._target(write.event_id)
        body = {**write.master, "id": write.event_id}
        try:
            created = self._execute(
                "create",
                target,
                self._events.insert(calendarId=self.calendar_id, body=body, sendUpdates="none"),
            )
        except CalendarError as exc:
            if exc.status != 409:
                raise
            return self._after_duplicate(write, exc)
        series = self._reconciled(write, Series(created), refetch=False)
        return self._remote(series)

    def _after_duplicate(self, write: SeriesWrite, exc: CalendarError) -> RemoteObject:
        """The id is taken: hand the live event over for adoption, or restore a deleted one."""
        series = self._fetch_series(write.event_id)
        if series is None:
            raise exc
        if not series.deleted:
            self._cache[write.event_id] = series
            raise AlreadyExists(
                "create", exc.target, exc.status, exc.reason, existing=self._remote(series)
            )
        # Google keeps a deleted event's id reserved; updating it brings the event back.
        restored = self._put_master(write, series.master.get("etag"), "create")
        return self._remote(self._reconciled(write, Series(restored), refetch=True))

    def update(self, href: str, ics: bytes, etag: str | None) -> RemoteObject:
        """Replace the event if its etag still matches (raises PreconditionFailed)."""
        write = self._plan("update", None, ics)
        if write.event_id != href:
            raise CalendarError(
                "update", self._target(href), None, "the object's UID belongs to another event"
            )
        series = self._cache.get(href)
        simple = not write.instances and not write.recurring and etag and "|" not in etag
        if series is None and not simple:
            series = self._fetch_series(href)
            if series is None or series.deleted:
                raise NotFound("update", self._target(href), 404, "no such event")
        stale_instances = (
            series is not None
            and etag
            and series.etag != etag
            and master_etag(series.etag) == master_etag(etag)
        )
        if stale_instances:
            # The master's If-Match would pass; an exception changed since it was read.
            raise PreconditionFailed(
                "update", self._target(href), 412, "an instance changed since it was read"
            )
        had_exceptions = bool(series and series.exceptions)
        updated = self._put_master(write, master_etag(etag), "update")
        kept = series.exceptions if series is not None and write.recurring else {}
        return self._remote(self._reconciled(write, Series(updated, dict(kept)), had_exceptions))

    def delete(self, href: str, etag: str | None) -> None:
        """Delete the event if its etag still matches; an event already gone is fine."""
        request = self._events.delete(calendarId=self.calendar_id, eventId=href, sendUpdates="none")
        with contextlib.suppress(NotFound):
            self._execute("delete", self._target(href), request, if_match=master_etag(etag))
        self._cache.pop(href, None)

    # ----- answering booking requests (RequestAnswers) ----------------------------------

    #: The room's copy of an organizer's meeting is not the room's to rewrite (an update of it
    #: is ``403 forbiddenForNonOrganizer``): a refused edit is declined instead.
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
        """As the room, accept and tag the copy with its booking keys (private properties).

        One PATCH of the room's copy sets its own ``responseStatus`` and the private tags;
        ``declined`` occurrences are then declined with ``reason``. An event the room
        organizes (made straight in its calendar) is only tagged: nobody awaits an answer.
        """
        current = self._answerable(href, etag, "accept")
        tags = {PRIVATE_PROVIDER: provider, PRIVATE_KEYS: ",".join(keys)}
        self._answer(current.master, "tentative" if tentative else "accepted", "", tags, "accept")
        self._decline_occurrences(href, declined, reason, "accept")
        return self._answered(href, "accept")

    def decline(
        self,
        href: str,
        etag: str | None = None,
        *,
        reason: str = "",
        occurrences: Sequence[datetime] = (),
    ) -> RemoteObject:
        """As the room, answer "declined" on an organizer's event (or only some occurrences).

        The room's ``responseStatus`` changes on its copy, and Google carries it to the
        organizer's event; ``reason`` goes with it as the attendee comment. A whole decline
        also drops the room's tags. ``etag`` is checked first.
        """
        current = self._answerable(href, etag, "decline")
        if not occurrences:
            untag = {PRIVATE_PROVIDER: None, PRIVATE_KEYS: None}
            self._answer(current.master, "declined", reason, untag, "decline")
        self._decline_occurrences(href, occurrences, reason, "decline")
        return self._answered(href, "decline")

    def restore(self, href: str, etag: str | None, ics: bytes, *, reason: str) -> RemoteObject:
        """Not possible: only the organizer may change a meeting (see ``can_restore``)."""
        raise CalendarError(
            "restore", self._target(href), None, "only the organizer can change this event"
        )

    def _answerable(self, href: str, etag: str | None, operation: str) -> Series:
        """The series the room answers, if it is still at ``etag``."""
        target = self._target(href)
        current = self._fetch_series(href)
        if current is None or current.deleted:
            raise NotFound(operation, target, 404, "no such event")
        if etag and etag != current.etag:
            raise PreconditionFailed(operation, target, 412, "the event changed since it was read")
        return current

    def _decline_occurrences(
        self, href: str, starts: Sequence[datetime], reason: str, operation: str
    ) -> None:
        """Decline the instances starting (originally) at ``starts``."""
        for start in starts:
            instance = self._instance_at(href, start.astimezone(UTC))
            if instance is None:
                raise CalendarError(
                    operation,
                    self._target(href),
                    None,
                    f"the event has no occurrence at {start.isoformat()}",
                )
            self._answer(instance, "declined", reason, {}, operation)

    def _answered(self, href: str, operation: str) -> RemoteObject:
        """The series as it is after the room's answer."""
        self._cache.pop(href, None)
        series = self._fetch_series(href)
        if series is None:
            raise NotFound(operation, self._target(href), 404, "the event is gone")
        self._cache[href] = series
        return self._remote(series)

    def _answer(
        self,
        event: Mapping[str, Any],
        status: str,
        comment: str,
        tags: Mapping[str, str | None],
        operation: str,
    ) -> Json:
        """PATCH the room's own attendee entry (and private tags) of one event or instance."""
        target = self._target(str(event["id"]))
        attendees = [dict(a) for a in event.get("attendees", []) if isinstance(a, Mapping)]
        room = self.calendar_id.lower()
        mine = [a for a in attendees if a.get("self") or str(a.get("email", "")).lower() == room]
        body: Json = {}
        if mine:
            for attendee in mine:
                attendee["responseStatus"] = status
                attendee.pop("comment", None)
                if comment:
                    attendee["comment"] = comment
            body["attendees"] = attendees
        elif status == "declined" or not self._organizes(event):
            # An event written straight into the room calendar has nobody to answer to.
            raise CalendarError(operation, target, None, "the room is not invited to this event")
        if tags:
            body["extendedProperties"] = {"private": dict(tags)}
        request = self._events.patch(
            calendarId=self.calendar_id, eventId=str(event["id"]), body=body, sendUpdates="none"
        )
        return self._execute(operation, target, request, if_match=event.get("etag"))

    def _organizes(self, event: Mapping[str, Any]) -> bool:
        """Whether the room calendar is the event's organizer (it was made right there)."""
        organizer = event.get("organizer")
        if not isinstance(organizer, Mapping):
            return False
        return bool(organizer.get("self")) or str(organizer.get("email", "")).lower() == (
            self.calendar_id.lower()
        )

    def _plan(self, operation: str, uid: str | None, ics: bytes) -> SeriesWrite:
        """The Google writes for an object (a CalendarError when Google cannot hold it)."""
        try:
            write = series_write(ics)
        except EventTranslationError as exc:
            raise CalendarError(operation, self._target(), None, str(exc)) from None
        if uid is not None and write.uid != uid:
            raise CalendarError(operation, self._target(), None, f"the object's UID is not {uid!r}")
        return write

    def _put_master(self, write: SeriesWrite, etag: str | None, operation: str) -> Json:
        """``events.update`` of the master with ``If-Match``."""
        request = self._events.update(
            calendarId=self.calendar_id,
            eventId=write.event_id,
            body={**write.master, "id": write.event_id},
            sendUpdates="none",
        )
        return self._execute(operation, self._target(write.event_id), request, if_match=etag)

    def _reconciled(self, write: SeriesWrite, series: Series, refetch: bool) -> Series:
        """Bring the instance exceptions in line with the write; the series as it now is."""
        master = series.master
        current = {_original_key(exc): exc for exc in series.exceptions.values()}
        wanted = {instant_key(change.original_start): change for change in write.instances}
        for key in sorted(current.keys() | wanted.keys()):
            written = self._reconcile_instance(
                write.event_id, master, current.get(key), wanted.get(key), key
            )
            if written is not None:
                series.exceptions[str(written["id"])] = written
        if refetch:
            fetched = self._fetch_series(write.event_id)
            if fetched is not None:
                series = fetched
        self._cache[write.event_id] = series
        return series

    def _reconcile_instance(
        self,
        event_id: str,
        master: Json,
        current: Json | None,
        change: InstanceChange | None,
        key: str,
    ) -> Json | None:
        """Write one instance if it differs from what the object wants; what was written."""
        original = datetime.strptime(key, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        cancelled_now = current is not None and current.get("status") == "cancelled"
        if change is None:
            if current is None or (
                not cancelled_now and exception_lines(current, master) == natural_lines(master, key)
            ):
                return None
            body = {**natural_instance(master, original), "recurringEventId": event_id}
            return self._write_instance(event_id, current, original, body, "PUT", missing_ok=True)
        if change.body is None:
            if cancelled_now:
                return None
            return self._write_instance(
                event_id, current, original, {"status": "cancelled"}, "PATCH", missing_ok=False
            )
        body = {**change.body, "recurringEventId": event_id}
        unchanged = (
            current is not None
            and not cancelled_now
            and exception_lines(current, master) == exception_lines(body, master)
        )
        if unchanged:
            return None
        return self._write_instance(event_id, current, original, body, "PUT", missing_ok=False)

    def _write_instance(
        self,
        event_id: str,
        current: Json | None,
        original: datetime,
        body: Json,
        method: str,
        *,
        missing_ok: bool,
    ) -> Json | None:
        """PUT or PATCH one instance (found by its original start when not known yet)."""
        instance = current or self._instance_at(event_id, original)
        if instance is None:
            if missing_ok:
                return None
            raise CalendarError(
                "update",
                self._target(event_id),
                None,
                f"the series has no instance at {original:%Y-%m-%dT%H:%M:%SZ}",
            )
        instance_id = str(instance["id"])
        writer = self._events.update if method == "PUT" else self._events.patch
        request = writer(
            calendarId=self.calendar_id, eventId=instance_id, body=body, sendUpdates="none"
        )
        try:
            return self._execute(
                "update", self._target(instance_id), request, if_match=instance.get("etag")
            )
        except NotFound:
            if missing_ok:
                return None
            raise

    def _instance_at(self, event_id: str, original: datetime) -> Json | None:
        """The instance of a series at its original start (``events.instances``)."""
        request = self._events.instances(
            calendarId=self.calendar_id,
            eventId=event_id,
            originalStart=original.strftime("%Y-%m-%dT%H:%M:%SZ"),
            showDeleted=True,
        )
        page = self._execute("update", self._target(event_id), request)
        items = [item for item in page.get("items", []) if isinstance(item, dict)]
        return items[0] if items else None

    # ----- plumbing ----------------------------------------------------------------------

    def _target(self, event_id: str | None = None) -> str:
        """What errors name: the calendar, and the event when there is one."""
        if event_id is None:
            return f"calendar {self.calendar_id}"
        return f"calendar {self.calendar_id} event {event_id}"

    def _execute(
        self, operation: str, target: str, request: Any, *, if_match: str | None = None
    ) -> Json:
        """Run one API request with our retries; a CalendarError when it finally fails."""
        if if_match:
            request.headers["If-Match"] = if_match
        attempts = self._retry.attempts
        for attempt in range(attempts):
            try:
                result = request.execute(num_retries=0)
            except HttpError as exc:
                status, reason, message = _error_of(exc)
                retryable = status in RETRYABLE_STATUSES or (
                    status == 403 and reason in RATE_LIMIT_REASONS
                )
                if retryable and attempt + 1 < attempts:
                    self._pause(attempt, _retry_after(exc))
                    continue
                raise _failure(operation, target, status, reason, message) from None
            except auth_exceptions.RefreshError as exc:
                reason = f"the token request was refused: {_first_line(exc)}"
                raise CalendarError(operation, target, None, reason) from None
            except TRANSPORT_ERRORS as exc:
                if attempt + 1 < attempts:
                    self._pause(attempt, None)
                    continue
                reason = f"cannot reach Google ({type(exc).__name__}: {_first_line(exc)})"
                raise CalendarError(operation, target, None, reason) from None
            return result if isinstance(result, dict) else {}
        raise CalendarError(operation, target, None, "no attempt was made")

    def _pause(self, attempt: int, retry_after: float | None) -> None:
        """Back off before the next attempt."""
        self.retries += 1
        self._sleep(self._retry.delay(attempt, retry_after, self._rng))


def _original_key(exception: Mapping[str, Any]) -> str:
    """The instance key of an exception."""
    original = exception.get("originalStartTime") or {}
    if original.get("date"):
        day = datetime.strptime(str(original["date"]), "%Y-%m-%d").replace(tzinfo=UTC)
        return instant_key(day)
    return instant_key(datetime.fromisoformat(str(original.get("dateTime"))))


def _error_of(exc: HttpError) -> tuple[int, str, str]:
    """(status, first error reason, message) of an API error reply."""
    status = int(exc.resp.status)
    try:
        body = json.loads(exc.content.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, AttributeError):
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return status, "", _first_line(exc.reason or exc.resp.reason or "failed")
    errors = error.get("errors") or [{}]
    first = errors[0] if isinstance(errors[0], dict) else {}
    return status, str(first.get("reason", "")), str(error.get("message", "") or "failed")


def _retry_after(exc: HttpError) -> float | None:
    """The ``Retry-After`` of a reply, in seconds (a number or an HTTP date)."""
    value = exc.resp.get("retry-after") if exc.resp is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(str(value))
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _failure(operation: str, target: str, status: int, reason: str, message: str) -> CalendarError:
    """The CalendarError for a final error reply."""
    text = f"{reason}: {message}" if reason else message
    if status in (404, 410):
        return NotFound(operation, target, status, text)
    if status == 412:
        return PreconditionFailed(operation, target, status, text)
    if status == 401:
        text = "authentication failed (check the service account and its domain-wide delegation)"
    return CalendarError(operation, target, status, text)


def _first_line(value: object) -> str:
    """The first line of an error text, shortened."""
    text = str(value).strip().splitlines()
    return text[0][:300] if text else ""


# ----- building one from the configuration -----------------------------------------------------


def build_google_calendar(
    config: GoogleConfig,
    calendar_id: str,
    *,
    budget: RequestBudget | None = None,
    retry: RetryPolicy | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    sleep: Callable[[float], None] = time.sleep,
) -> GoogleCalendar:
    """The backend of one room calendar (``calendar_id``) of a ``[calendars.*]`` google entry.

    Rooms synced as the same ``subject`` share one :func:`shared_budget` unless ``budget``
    is given. No request is sent until the backend is used.
    """
    info = _key_file(config)
    try:
        credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
            info, scopes=list(SCOPES), subject=config.subject
        )
    except (ValueError, KeyError) as exc:
        raise ConfigError(
            f"calendars.{config.name}: {config.service_account_file} is not a service account "
            f"key file ({_first_line(exc)})"
        ) from None
    http = CountingHttp(
        budget=budget or shared_budget(config.subject),
        token_uri=str(info["token_uri"]),
        timeout=timeout,
    )
    authorised = google_auth_httplib2.AuthorizedHttp(credentials, http=http)
    service = build(
        "calendar",
        "v3",
        http=authorised,
        static_discovery=True,
        cache_discovery=False,
        client_options={"api_endpoint": config.api_endpoint or DEFAULT_ENDPOINT},
    )
    return GoogleCalendar(service, calendar_id, http=http, retry=retry, sleep=sleep)


def _key_file(config: GoogleConfig) -> Json:
    """The service account key file's JSON (errors name the file, never its content)."""
    path = Path(config.service_account_file)
    where = f"calendars.{config.name}: service_account_file {path}"
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{where} cannot be read ({exc.strerror})") from None
    except ValueError:
        raise ConfigError(f"{where} is not JSON") from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise ConfigError(f"{where} is not a service account key file")
    missing = [name for name in ("client_email", "private_key", "token_uri") if not info.get(name)]
    if missing:
        raise ConfigError(f"{where} lacks {', '.join(missing)}")
    return info
