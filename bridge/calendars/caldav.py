"""CalDAV calendar backend: one room's calendar collection over raw WebDAV requests.

Every request goes through one keep-alive ``httpx.Client``; the python ``caldav`` library is not
used at all. Its sync silently falls back to a full search with a fake token and loses
deletions, its "no overwrite" create is a racy client-side UID search instead of
``If-None-Match: *``, and it runs on another HTTP stack, so discovery is done here too (PROPFIND
of the collection, and of the principal's calendar home when the collection is missing).

Server behaviour this adapter relies on or works around (tested against Radicale 3 and Xandikos):

- reads are RFC 6578 ``sync-collection`` REPORTs asking for ``getetag`` and ``calendar-data``,
  so a no-op or incremental read is one request where the server honours ``calendar-data``
  (Radicale). Xandikos answers ``calendar-data`` with a 404 propstat; those members are then
  fetched with one ``calendar-multiget`` per batch, so a read costs two requests there;
- a rejected token is 403 (Radicale), 412 (Xandikos) or 409, always with a
  ``DAV:valid-sync-token`` error element; the read then becomes a full listing (empty token);
- a truncated answer (a 507 entry for the collection itself) is continued with the returned
  token until complete;
- creates are ``If-None-Match: *`` PUTs to a name derived from the UID; a taken UID under
  another name is 409 (Radicale) or 412 (Xandikos) ``no-uid-conflict``, reported as
  AlreadyExists with the existing object found by a UID query.
"""

from __future__ import annotations

import hashlib
import importlib
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from urllib.parse import quote, unquote, urljoin, urlsplit, urlunsplit
from xml.sax.saxutils import escape

import httpx
import icalendar

from bridge.calendars.base import (
    AlreadyExists,
    CalendarError,
    ChangeSet,
    NotFound,
    PreconditionFailed,
    RemoteObject,
)
from mappings.ical import X_KEY, X_PROVIDER

DAV_NS = "DAV:"
CALDAV_NS = "urn:ietf:params:xml:ns:caldav"
CALENDARSERVER_NS = "http://calendarserver.org/ns/"

XML_CONTENT_TYPE = "application/xml; charset=utf-8"
ICS_CONTENT_TYPE = "text/calendar; charset=utf-8"

# Big enough that a 10,000-event calendar costs a handful of requests, small enough that one
# request body stays well under any server's size limit.
MULTIGET_BATCH = 500
# A server that keeps answering 507 with the same token would otherwise loop forever.
MAX_SYNC_PAGES = 1000

TOKEN_REJECTED_STATUSES = frozenset({403, 409, 412})
SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,199}")
ESCAPED_SEPARATOR = re.compile(r"%2F|%5C", re.IGNORECASE)
FOLDED_LINE = re.compile(r"\r?\n[ \t]")
HREF_SEGMENT_SAFE = "@:+!$&'()*,;=~"


def _dav(name: str) -> str:
    return f"{{{DAV_NS}}}{name}"


def _caldav(name: str) -> str:
    return f"{{{CALDAV_NS}}}{name}"


@dataclass(frozen=True, slots=True)
class CollectionInfo:
    """What ``check()`` learned about the configured calendar collection."""

    url: str
    display_name: str | None
    components: tuple[str, ...]
    sync_token: str | None


@dataclass(frozen=True, slots=True)
class DavResponse:
    """One ``D:response`` of a multistatus: its href, its status and its 200-OK properties."""

    href: str
    status: int | None
    props: dict[str, ET.Element] = field(default_factory=dict)
    error_tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Multistatus:
    """A parsed 207 answer: the responses and the top-level sync token, if any."""

    responses: list[DavResponse]
    sync_token: str | None


class TokenRejected(Exception):
    """The server refused the sync token (``DAV:valid-sync-token``): a full listing is due."""


@dataclass(slots=True)
class SyncPage:
    """What the sync-collection pages found, before missing calendar data is fetched."""

    changed: dict[str, RemoteObject] = field(default_factory=dict)
    without_data: dict[str, str | None] = field(default_factory=dict)
    deleted: dict[str, None] = field(default_factory=dict)
    token: str | None = None


def fallback_href_name(uid: str) -> str:
    """Resource name for ``uid`` without mappings.ical: the UID when safe, else its sha256."""
    if SAFE_NAME.fullmatch(uid):
        return uid
    return hashlib.sha256(uid.encode("utf-8")).hexdigest()


def with_ics_suffix(name: str) -> str:
    """The resource file name: ``name`` with ``.ics`` appended unless it already ends so."""
    return name if name.endswith(".ics") else name + ".ics"


def resolve_file_namer() -> Callable[[str], str]:
    """The shared UID → resource file name rule: mappings.ical's when present, else the fallback.

    Names come back ready for a URL (percent-escaped). Resolved lazily because mappings/ical.py
    is developed alongside this adapter; a module that exists but fails to import is an error,
    not a reason to silently name resources differently.
    """
    try:
        module = importlib.import_module("mappings.ical")
    except ImportError:
        module = None
    shared: Callable[[str], str] | None = getattr(module, "object_href_name", None)
    if not callable(shared):
        return lambda uid: fallback_href_name(uid) + ".ics"

    def shared_file_name(uid: str) -> str:
        name = with_ics_suffix(shared(uid))
        # Radicale and Xandikos refuse an escaped path separator in a name (403).
        if ESCAPED_SEPARATOR.search(name):
            return fallback_href_name(uid) + ".ics"
        return name

    return shared_file_name


def ics_uid(ics: bytes) -> str:
    """The first UID property value in an iCalendar text ("" when there is none)."""
    text = FOLDED_LINE.sub("", ics.decode("utf-8", errors="replace"))
    for line in text.splitlines():
        name, colon, value = line.partition(":")
        if colon and name.split(";", 1)[0].strip().upper() == "UID":
            return value.strip()
    return ""


def normalise_href(href: str) -> str:
    """The path of ``href`` percent-encoded one canonical way, so hrefs compare as strings."""
    path = urlsplit(href).path or "/"
    return "/".join(quote(unquote(segment), safe=HREF_SEGMENT_SAFE) for segment in path.split("/"))


def crlf(text: str) -> bytes:
    """The iCalendar text with CRLF line ends restored (XML parsing turns them into LF)."""
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def _status_code(status_line: str | None) -> int | None:
    parts = (status_line or "").split()
    if len(parts) >= 2 and parts[1].isdigit():
        return int(parts[1])
    return None


def _parse_response(element: ET.Element) -> DavResponse:
    href = element.findtext(_dav("href")) or ""
    props: dict[str, ET.Element] = {}
    for propstat in element.findall(_dav("propstat")):
        if _status_code(propstat.findtext(_dav("status"))) != 200:
            continue
        for prop in propstat.findall(_dav("prop")):
            props.update((child.tag, child) for child in prop)
    error = element.find(_dav("error"))
    error_tags = tuple(child.tag for child in error) if error is not None else ()
    return DavResponse(
        href=normalise_href(href),
        status=_status_code(element.findtext(_dav("status"))),
        props=props,
        error_tags=error_tags,
    )


def parse_multistatus(body: bytes) -> Multistatus:
    """Parse a 207 Multi-Status body (raises ``ET.ParseError`` on malformed XML)."""
    root = ET.fromstring(body)
    if root.tag != _dav("multistatus"):
        raise ET.ParseError(f"expected DAV:multistatus, got {root.tag}")
    token = root.findtext(_dav("sync-token"))
    responses = [_parse_response(element) for element in root.findall(_dav("response"))]
    return Multistatus(responses=responses, sync_token=token.strip() if token else None)


def error_tags(body: bytes) -> tuple[str, ...]:
    """Tags of the conditions inside a ``DAV:error`` body (empty when the body is not one)."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return ()
    if root.tag != _dav("error"):
        return ()
    return tuple(child.tag for child in root if child.tag != _dav("responsedescription"))


def _local_name(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def sync_collection_body(token: str) -> str:
    """A sync-collection REPORT body asking for etags and calendar data of changed members."""
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<D:sync-collection xmlns:D="{DAV_NS}" xmlns:C="{CALDAV_NS}">'
        f"<D:sync-token>{escape(token)}</D:sync-token>"
        "<D:sync-level>1</D:sync-level>"
        "<D:prop><D:getetag/><C:calendar-data/></D:prop>"
        "</D:sync-collection>"
    )


def multiget_body(hrefs: Iterable[str]) -> str:
    """A calendar-multiget REPORT body for ``hrefs``."""
    listed = "".join(f"<D:href>{escape(href)}</D:href>" for href in hrefs)
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<C:calendar-multiget xmlns:D="{DAV_NS}" xmlns:C="{CALDAV_NS}">'
        f"<D:prop><D:getetag/><C:calendar-data/></D:prop>{listed}"
        "</C:calendar-multiget>"
    )


def uid_query_body(uid: str) -> str:
    """A calendar-query REPORT body finding events whose UID contains ``uid``."""
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<C:calendar-query xmlns:D="{DAV_NS}" xmlns:C="{CALDAV_NS}">'
        "<D:prop><D:getetag/><C:calendar-data/></D:prop>"
        '<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">'
        '<C:prop-filter name="UID">'
        f'<C:text-match collation="i;octet">{escape(uid)}</C:text-match>'
        "</C:prop-filter></C:comp-filter></C:comp-filter></C:filter>"
        "</C:calendar-query>"
    )


def propfind_body(*props: str) -> str:
    """A PROPFIND body naming ``props`` (prefixed D:, C: or CS:)."""
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<D:propfind xmlns:D="{DAV_NS}" xmlns:C="{CALDAV_NS}" xmlns:CS="{CALENDARSERVER_NS}">'
        f"<D:prop>{''.join(f'<{prop}/>' for prop in props)}</D:prop>"
        "</D:propfind>"
    )


def mkcalendar_body(display_name: str) -> str:
    """A MKCALENDAR body for an event calendar called ``display_name``."""
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<C:mkcalendar xmlns:D="{DAV_NS}" xmlns:C="{CALDAV_NS}"><D:set><D:prop>'
        f"<D:displayname>{escape(display_name)}</D:displayname>"
        '<C:supported-calendar-component-set><C:comp name="VEVENT"/>'
        "</C:supported-calendar-component-set>"
        "</D:prop></D:set></C:mkcalendar>"
    )


def _without_userinfo(url: str) -> tuple[str, str | None, str | None]:
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None, None
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    bare = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return bare, username, password


def collection_url_for(base_url: str, collection: str) -> str:
    """The collection's absolute URL: ``collection`` (a path or URL) resolved against the base."""
    base = base_url if base_url.endswith("/") else base_url + "/"
    url = urljoin(base, collection)
    return url if url.endswith("/") else url + "/"


class CalDAVCalendar:
    """One CalDAV calendar collection, read with sync-collection and written conditionally.

    ``collection`` is the configured ``calendar_id``: a path or URL resolved against ``url``.
    Credentials may also come from the URL's userinfo; they never appear in ``repr`` or errors.
    ``request_count`` counts every HTTP request sent. An injected ``client`` is used as is
    (its own timeout applies) and is not closed by :meth:`close`.
    """

    def __init__(
        self,
        url: str,
        collection: str,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        client: httpx.Client | None = None,
    ) -> None:
        bare_url, url_username, url_password = _without_userinfo(url)
        self.base_url = bare_url
        self.collection_url = collection_url_for(bare_url, collection)
        self.collection_path = normalise_href(self.collection_url)
        self.username = username if username is not None else url_username
        self._password = password if password is not None else url_password
        self._auth = (
            httpx.BasicAuth(self.username, self._password or "")
            if self.username is not None
            else None
        )
        self._owns_client = client is None
        self._client = client or httpx.Client(timeout=timeout)
        self._file_name = resolve_file_namer()
        self.request_count = 0

    def __repr__(self) -> str:
        return f"CalDAVCalendar({self.collection_url!r}, username={self.username!r})"

    def __enter__(self) -> CalDAVCalendar:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP client if this backend created it."""
        if self._owns_client:
            self._client.close()

    # -- discovery ------------------------------------------------------------------------

    def check(self) -> CollectionInfo:
        """Reach the collection once and report its name, components and sync token."""
        body = propfind_body("D:displayname", "D:resourcetype",
                             "C:supported-calendar-component-set", "D:sync-token")
        response = self._send("check", "PROPFIND", self.collection_url, depth="0", body=body)
        own = self._own_response("check", response) if response.status_code == 207 else None
        # Xandikos answers a PROPFIND of a missing path with a 207 holding a 404.
        status = own.status if own is not None and own.status else response.status_code
        if status in (404, 410):
            raise NotFound("check", self.collection_url, status,
                           self._missing_collection_reason())
        if own is None:
            raise self._failure("check", self.collection_url, response)
        props = own.props
        resource_type = props.get(_dav("resourcetype"))
        if resource_type is None or resource_type.find(_caldav("calendar")) is None:
            raise CalendarError("check", self.collection_url, response.status_code,
                                "not a calendar collection")
        return self._collection_info(props)

    def ensure_collection(self, display_name: str) -> CollectionInfo:
        """The collection, created with MKCALENDAR first when it does not exist yet."""
        try:
            return self.check()
        except NotFound:
            pass
        response = self._send("mkcalendar", "MKCALENDAR", self.collection_url,
                              body=mkcalendar_body(display_name))
        # 405/409/403 with resource-must-be-null: someone created it meanwhile, which is fine.
        if response.status_code not in (201, 405) and not (
            response.status_code in (403, 409)
            and _dav("resource-must-be-null") in error_tags(response.content)
        ):
            raise self._failure("mkcalendar", self.collection_url, response)
        return self.check()

    def list_calendars(self) -> list[str]:
        """Paths of the calendar collections in the user's calendar home (for error hints)."""
        principal = self._single_href("discover", self.base_url, "D:current-user-principal")
        home = self._single_href("discover", urljoin(self.base_url, principal),
                                 "C:calendar-home-set")
        response = self._send("discover", "PROPFIND", urljoin(self.base_url, home), depth="1",
                              body=propfind_body("D:resourcetype"))
        if response.status_code != 207:
            raise self._failure("discover", home, response)
        return [
            item.href
            for item in self._parse("discover", home, response).responses
            if (kind := item.props.get(_dav("resourcetype"))) is not None
            and kind.find(_caldav("calendar")) is not None
        ]

    # -- reads ----------------------------------------------------------------------------

    def read_changes(self, cursor: str | None) -> ChangeSet:
        """Objects changed since ``cursor``; a full listing when it is None or rejected."""
        before = self.request_count
        full = not cursor
        try:
            page = self._sync_pages(cursor or "")
        except TokenRejected:
            full = True
            page = self._sync_pages("")
        self._fetch_missing_data(page, full=full)
        return ChangeSet(
            changed=list(page.changed.values()),
            deleted=[] if full else list(page.deleted),
            cursor=page.token,
            full=full,
            requests=self.request_count - before,
        )

    def get(self, href: str) -> RemoteObject:
        """Read one object (raises NotFound)."""
        url = self._url(href)
        response = self._send("get", "GET", url)
        if response.status_code != 200:
            raise self._failure("get", url, response)
        return RemoteObject(
            href=normalise_href(url),
            etag=response.headers.get("ETag"),
            uid=ics_uid(response.content),
            ics=response.content,
        )

    def find_by_uid(self, uid: str) -> RemoteObject | None:
        """The object holding ``uid`` whatever its resource name, or None."""
        response = self._send("find", "REPORT", self.collection_url, depth="1",
                              body=uid_query_body(uid))
        if response.status_code != 207:
            raise self._failure("find", self.collection_url, response)
        for item in self._parse("find", self.collection_url, response).responses:
            found = self._remote_object(item)
            if found is not None and found.uid == uid:
                return found
        return None

    # -- writes ---------------------------------------------------------------------------

    def create(self, uid: str, ics: bytes) -> RemoteObject:
        """Create the object for ``uid`` unless it exists (raises AlreadyExists then)."""
        url = urljoin(self.collection_url, self._file_name(uid))
        response = self._send("create", "PUT", url, body=ics,
                              headers={"If-None-Match": "*", "Content-Type": ICS_CONTENT_TYPE})
        if response.status_code in (200, 201, 204):
            return self._written(url, uid, ics, response)
        taken = response.status_code == 412 or (
            response.status_code == 409
            and _caldav("no-uid-conflict") in error_tags(response.content)
        )
        if taken:
            raise AlreadyExists("create", url, response.status_code,
                                self._reason(response) or "the object already exists",
                                existing=self._existing(url, uid))
        raise self._failure("create", url, response)

    def update(self, href: str, ics: bytes, etag: str | None) -> RemoteObject:
        """Replace the object if its etag still matches (raises PreconditionFailed).

        Without an etag the object must at least exist (``If-Match: *``): an update never
        re-creates something deleted meanwhile.
        """
        url = self._url(href)
        response = self._send("update", "PUT", url, body=ics,
                              headers={"If-Match": etag or "*", "Content-Type": ICS_CONTENT_TYPE})
        if response.status_code in (200, 201, 204):
            return self._written(url, ics_uid(ics), ics, response)
        raise self._failure("update", url, response)

    def delete(self, href: str, etag: str | None) -> None:
        """Delete the object if its etag still matches; an object already gone is fine."""
        url = self._url(href)
        headers = {"If-Match": etag} if etag else {}
        response = self._send("delete", "DELETE", url, headers=headers)
        if response.status_code in (200, 204, 404, 410):
            return
        raise self._failure("delete", url, response)

    # -- answering booking requests (RequestAnswers) -----------------------------------------

    #: A CalDAV collection holds the only copy of the event: the room may put it back.
    can_restore = True

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
        """Rewrite the event tagged with its booking keys, accepted by the room (If-Match)."""
        current = self._current(href, etag, "accept")
        ics = tagged_ics(current.ics, provider, keys, "TENTATIVE" if tentative else "ACCEPTED")
        if declined:
            ics = declined_ics(ics, reason, declined)
        return self.update(current.href, ics, current.etag)

    def decline(
        self,
        href: str,
        etag: str | None,
        *,
        reason: str,
        occurrences: Sequence[datetime] = (),
    ) -> RemoteObject:
        """Decline an event as the room (or only some occurrences), if it is still at ``etag``.

        The room attendee's PARTSTAT becomes DECLINED; a plain collection's event with no room
        attendee becomes STATUS:CANCELLED. The reason travels as a COMMENT.
        """
        current = self._current(href, etag, "decline")
        declined = declined_ics(current.ics, reason, occurrences)
        return self.update(current.href, declined, current.etag)

    def restore(self, href: str, etag: str | None, ics: bytes, *, reason: str) -> RemoteObject:
        """Put the event back as ``ics`` with the reason as its COMMENT (If-Match)."""
        return self.update(href, with_comment(ics, reason), etag)

    def _current(self, href: str, etag: str | None, operation: str) -> RemoteObject:
        """The object now, if it is still at ``etag``."""
        current = self.get(href)
        if etag is not None and current.etag is not None and current.etag != etag:
            raise PreconditionFailed(operation, href, 412, "the event changed since it was read")
        return current

    # -- sync internals -------------------------------------------------------------------

    def _sync_pages(self, token: str) -> SyncPage:
        page = SyncPage(token=token)
        for _ in range(MAX_SYNC_PAGES):
            truncated = self._sync_once(page)
            if not truncated:
                return page
        raise CalendarError("read", self.collection_url, 507,
                            f"server still truncating after {MAX_SYNC_PAGES} pages")

    def _sync_once(self, page: SyncPage) -> bool:
        """One sync-collection REPORT folded into ``page``; true when the server truncated."""
        sent_token = page.token or ""
        response = self._send("read", "REPORT", self.collection_url, depth="0",
                              body=sync_collection_body(sent_token))
        if (
            response.status_code in TOKEN_REJECTED_STATUSES
            and _dav("valid-sync-token") in error_tags(response.content)
            and sent_token
        ):
            raise TokenRejected(sent_token)
        if response.status_code != 207:
            raise self._failure("read", self.collection_url, response)
        result = self._parse("read", self.collection_url, response)
        truncated = False
        for item in result.responses:
            if item.href == self.collection_path or item.href.endswith("/"):
                truncated = truncated or item.status == 507 or _dav(
                    "number-of-matches-within-limits") in item.error_tags
                continue
            self._fold(page, item)
        if not result.sync_token:
            raise CalendarError("read", self.collection_url, response.status_code,
                                "sync-collection answer carries no sync-token")
        if truncated and result.sync_token == sent_token:
            raise CalendarError("read", self.collection_url, 507,
                                "server truncated the answer without advancing the token")
        page.token = result.sync_token
        return truncated

    def _fold(self, page: SyncPage, item: DavResponse) -> None:
        page.changed.pop(item.href, None)
        page.without_data.pop(item.href, None)
        page.deleted.pop(item.href, None)
        if item.status in (404, 410):
            page.deleted[item.href] = None
            return
        found = self._remote_object(item)
        if found is not None:
            page.changed[item.href] = found
        else:
            etag = item.props.get(_dav("getetag"))
            page.without_data[item.href] = etag.text if etag is not None else None

    def _fetch_missing_data(self, page: SyncPage, *, full: bool) -> None:
        hrefs = list(page.without_data)
        unanswered: list[str] = []
        for start in range(0, len(hrefs), MULTIGET_BATCH):
            batch = hrefs[start:start + MULTIGET_BATCH]
            for item in self._multiget(batch):
                found = self._remote_object(item)
                if found is not None and item.href in page.without_data:
                    page.changed[item.href] = found
            unanswered.extend(href for href in batch if href not in page.changed)
        page.without_data.clear()
        # Either deleted since the sync report, or a name the multiget cannot resolve (Xandikos
        # cuts hrefs at an escaped "#"): one GET each tells which.
        for href in unanswered:
            try:
                page.changed[href] = self.get(href)
            except NotFound:
                if not full:
                    page.deleted[href] = None

    def _multiget(self, hrefs: list[str]) -> Iterator[DavResponse]:
        response = self._send("read", "REPORT", self.collection_url, depth="1",
                              body=multiget_body(hrefs))
        if response.status_code != 207:
            raise self._failure("read", self.collection_url, response)
        yield from self._parse("read", self.collection_url, response).responses

    @staticmethod
    def _remote_object(item: DavResponse) -> RemoteObject | None:
        data = item.props.get(_caldav("calendar-data"))
        if data is None or not data.text:
            return None
        ics = crlf(data.text)
        etag = item.props.get(_dav("getetag"))
        return RemoteObject(
            href=item.href,
            etag=etag.text.strip() if etag is not None and etag.text else None,
            uid=ics_uid(ics),
            ics=ics,
        )

    # -- write internals ------------------------------------------------------------------

    def _written(self, url: str, uid: str, ics: bytes, response: httpx.Response) -> RemoteObject:
        etag = response.headers.get("ETag")
        if etag is None or etag.startswith("W/"):
            # The server altered what we sent (or will not say): learn what it holds now.
            return self.get(url)
        return RemoteObject(href=normalise_href(url), etag=etag, uid=uid, ics=ics)

    def _existing(self, url: str, uid: str) -> RemoteObject | None:
        try:
            return self.get(url)
        except NotFound:
            pass
        # The UID lives under another resource name (made by another client).
        return self.find_by_uid(uid)

    # -- plumbing -------------------------------------------------------------------------

    def _url(self, href: str) -> str:
        return urljoin(self.collection_url, href)

    def _send(
        self,
        operation: str,
        method: str,
        url: str,
        *,
        depth: str | None = None,
        body: str | bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        sent = dict(headers or {})
        if depth is not None:
            sent["Depth"] = depth
        if isinstance(body, str):
            sent.setdefault("Content-Type", XML_CONTENT_TYPE)
            body = body.encode("utf-8")
        self.request_count += 1
        try:
            return self._client.request(method, url, content=body, headers=sent, auth=self._auth)
        except httpx.TimeoutException:
            reason = "timed out"
        except httpx.HTTPError as exc:
            reason = f"cannot reach the server ({type(exc).__name__}: {self._redact(str(exc))})"
        # Raised outside the except blocks: the httpx exception holds the request and so the
        # Authorization header; it must not travel along as __context__.
        raise CalendarError(operation, url, None, reason)

    def _parse(self, operation: str, url: str, response: httpx.Response) -> Multistatus:
        try:
            return parse_multistatus(response.content)
        except ET.ParseError:
            pass
        raise CalendarError(operation, url, response.status_code, "unparseable multistatus")

    def _own_response(self, operation: str, response: httpx.Response) -> DavResponse:
        for item in self._parse(operation, self.collection_url, response).responses:
            if item.href == self.collection_path:
                return item
        raise CalendarError(operation, self.collection_url, response.status_code,
                            "the collection is missing from its own PROPFIND answer")

    def _collection_info(self, props: dict[str, ET.Element]) -> CollectionInfo:
        components = props.get(_caldav("supported-calendar-component-set"))
        names = (
            tuple(comp.get("name", "") for comp in components.findall(_caldav("comp")))
            if components is not None
            else ()
        )
        display = props.get(_dav("displayname"))
        token = props.get(_dav("sync-token"))
        return CollectionInfo(
            url=self.collection_url,
            display_name=display.text if display is not None else None,
            components=names,
            sync_token=token.text if token is not None else None,
        )

    def _single_href(self, operation: str, url: str, prop: str) -> str:
        response = self._send(operation, "PROPFIND", url, depth="0", body=propfind_body(prop))
        if response.status_code != 207:
            raise self._failure(operation, url, response)
        for item in self._parse(operation, url, response).responses:
            for value in item.props.values():
                href = value.findtext(_dav("href"))
                if href:
                    return href.strip()
        raise CalendarError(operation, url, response.status_code, f"no {prop} in the answer")

    def _missing_collection_reason(self) -> str:
        try:
            calendars = self.list_calendars()
        except CalendarError:
            return "no calendar collection at this path"
        listed = ", ".join(calendars) if calendars else "none"
        return f"no calendar collection at this path (calendars found: {listed})"

    def _failure(self, operation: str, url: str, response: httpx.Response) -> CalendarError:
        status = response.status_code
        reason = self._reason(response)
        kind: type[CalendarError] = CalendarError
        if status in (404, 410):
            kind = NotFound
        elif status == 412:
            kind = PreconditionFailed
        elif status == 401:
            reason = "authentication failed (check username and password)"
        return kind(operation, url, status, reason or response.reason_phrase or "failed")

    def _reason(self, response: httpx.Response) -> str:
        conditions = [_local_name(tag) for tag in error_tags(response.content)]
        description = ""
        try:
            root = ET.fromstring(response.content)
            description = (root.findtext(_dav("responsedescription")) or "").strip()
        except ET.ParseError:
            if "xml" not in response.headers.get("Content-Type", ""):
                description = response.text.strip().splitlines()[0] if response.text.strip() else ""
        text = "; ".join(part for part in (", ".join(conditions), description) if part)
        return self._redact(text[:300])

    def _redact(self, text: str) -> str:
        if self._password:
            text = text.replace(self._password, "***")
        return text


#: Attendee types that stand for a room (the one the bridge answers for).
ROOM_CUTYPES = frozenset({"ROOM", "RESOURCE"})


def room_attendees(event: icalendar.cal.Component) -> list[icalendar.vCalAddress]:
    """The event's attendees that are rooms or resources."""
    values = event.get("ATTENDEE", [])
    listed = values if isinstance(values, list) else [values]
    return [a for a in listed if str(a.params.get("CUTYPE", "")).upper() in ROOM_CUTYPES]


def set_room_answer(event: icalendar.cal.Component, partstat: str) -> bool:
    """Answer for the room attendees; whether the event has any."""
    rooms = room_attendees(event)
    for attendee in rooms:
        attendee.params["PARTSTAT"] = partstat
        attendee.params.pop("RSVP", None)
    return bool(rooms)


def _set_comment(event: icalendar.cal.Component, comment: str) -> None:
    """Replace the event's COMMENT with ``comment``."""
    event.pop("COMMENT", None)
    event.add("COMMENT", comment)


def _decline_event(event: icalendar.cal.Component, comment: str) -> None:
    """Decline one VEVENT as the room (or cancel it when no room is invited)."""
    if not set_room_answer(event, "DECLINED"):
        event.pop("STATUS", None)
        event.add("STATUS", "CANCELLED")
    _set_comment(event, comment)


def _declined_instance(
    master: icalendar.cal.Component, start: datetime, comment: str
) -> icalendar.cal.Component:
    """An override cancelling one occurrence of ``master`` for the room."""
    instance = icalendar.Event.from_ical(master.to_ical())
    for name in ("RRULE", "RDATE", "EXDATE", "DTSTART", "DTEND", "DURATION", "RECURRENCE-ID"):
        instance.pop(name, None)
    first = master.decoded("DTSTART")
    zone = first.tzinfo if isinstance(first, datetime) else None
    local = start.astimezone(zone) if zone is not None else start
    length = master.decoded("DTEND") - first if "DTEND" in master else master.decoded("DURATION")
    instance.add("RECURRENCE-ID", local)
    instance.add("DTSTART", local)
    instance.add("DTEND", local + length)
    set_room_answer(instance, "DECLINED")
    instance.add("STATUS", "CANCELLED")
    _set_comment(instance, comment)
    return instance


def declined_ics(ics: bytes, comment: str, occurrences: Sequence[datetime] = ()) -> bytes:
    """The event's text declined by the room: wholly, or only at the given occurrences."""
    calendar = icalendar.Calendar.from_ical(ics)
    events = [c for c in calendar.subcomponents if c.name == "VEVENT"]
    if not occurrences:
        for event in events:
            _decline_event(event, comment)
        return bytes(calendar.to_ical())
    master = next((e for e in events if "RECURRENCE-ID" not in e), None)
    if master is None:
        raise ValueError("declining occurrences needs the series' master event")
    taken = {e.decoded("RECURRENCE-ID") for e in events if "RECURRENCE-ID" in e}
    for start in occurrences:
        existing = next((e for e in events if e.decoded("RECURRENCE-ID", None) == start), None)
        if existing is not None:
            _decline_event(existing, comment)
        elif start not in taken:
            calendar.add_component(_declined_instance(master, start, comment))
    return bytes(calendar.to_ical())


#: The event STATUS standing for the room's answer in a plain collection (no room attendee).
STATUS_OF_ANSWER = {"TENTATIVE": "TENTATIVE", "ACCEPTED": "CONFIRMED"}


def tagged_ics(
    ics: bytes, provider: str, keys: Sequence[str], answer: str = "ACCEPTED"
) -> bytes:
    """The event's text tagged with its provider booking keys and the room's answer.

    Occurrences the room declined stay declined. Without a room attendee (a plain collection)
    a tentative answer is the event's STATUS, and an accepted one clears a TENTATIVE STATUS.
    """
    calendar = icalendar.Calendar.from_ical(ics)
    for event in calendar.walk("VEVENT"):
        for name in (X_PROVIDER, X_KEY):
            event.pop(name, None)
        event.add(X_PROVIDER, provider)
        event.add(X_KEY, ",".join(keys))
        rooms = room_attendees(event)
        if any(str(a.params.get("PARTSTAT", "")).upper() == "DECLINED" for a in rooms):
            continue
        if not set_room_answer(event, answer) and (
            answer == "TENTATIVE" or str(event.get("STATUS", "")).upper() == "TENTATIVE"
        ):
            event.pop("STATUS", None)
            event.add("STATUS", STATUS_OF_ANSWER[answer])
    return bytes(calendar.to_ical())


def with_comment(ics: bytes, comment: str) -> bytes:
    """The event's text with ``comment`` as its COMMENT (the reason of a restore)."""
    calendar = icalendar.Calendar.from_ical(ics)
    for event in calendar.walk("VEVENT"):
        _set_comment(event, comment)
    return bytes(calendar.to_ical())
