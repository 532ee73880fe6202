"""A strict, in-memory emulator of the Nexudus admin REST API (the parts the bridge uses).

It answers like Nexudus (shared/reference/providers.md §2): bearer tokens from ``/api/token``
or HTTP Basic; the ``Records`` paging envelope; ``Booking_*`` equality and ``from_``/``to_``
range filters actually applied; the 400 validation envelope; bookings refused when the
resource is taken; repeat series materialised as one booking per occurrence in the business's
local time (DST-correct); ``PUT`` with full-record semantics and ``WhichBookingsToUpdate``
fan-out; ``DELETE`` leaving a cancelled-booking snapshot.

Tests drive it through a Python API (not HTTP): seed businesses, resources and bookings, edit
or cancel as an admin would in the Nexudus UI, move the clock, expire tokens, inject faults
(409 + Retry-After throttles, 500s, hung connections, slow replies; seeded, so deterministic)
and read per-route request counters.

Where the documentation is silent the emulator picks one reading and says so here:

- range-filter values (``YYYY-MM-DDTHH:mm``) are UTC, and both bounds are inclusive;
- ``dir`` accepts ``1``/``0``/``Ascending`` (ascending) and ``-1``/``Descending``;
- list rows are partial: ``InternalNotes``, ``BookingProducts``, ``BookingVisitors`` and the
  create-only repeat settings are left out (``RepeatSeriesUniqueId`` stays: it is the series
  filter the bridge needs);
- a series always contains the requested booking itself, plus every rule date after it up to
  ``RepeatUntil`` (a local date, inclusive); ``Monthly``/``Yearly`` clamp to the month's last
  day like .NET's ``AddMonths`` (31 Jan → 28 Feb → 31 Mar);
- ``*Local`` times are written without a zone suffix;
- coworkers (customers) are listed at ``GET /api/spaces/coworkers`` with the same envelope;
  ``Coworker_Email`` is an equality filter that ignores case, like every text filter here. A
  booking created (or re-assigned by a PUT) with a ``CoworkerId`` that is no coworker is a 400
  on ``CoworkerId``; a valid one fills ``CoworkerFullName``.
"""

from __future__ import annotations

import argparse
import base64
import calendar
import dataclasses
import itertools
import json
import os
import random
import secrets
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import IntEnum, StrEnum
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
from bridge.emulators.server import RunningServer, serve_in_thread

Record = dict[str, Any]

#: Windows zone name → (IANA zone, Description, TimeOffset, UsesSummerTime), as in
#: ``/api/sys/simpletimezones``. Only these zones can be given to a business.
SUPPORTED_ZONES: dict[str, tuple[str, str, str, bool]] = {
    "GMT Standard Time": (
        "Europe/London",
        "(UTC) Dublin, Edinburgh, Lisbon, London",
        "0:00",
        True,
    ),
    "W. Europe Standard Time": (
        "Europe/Berlin",
        "(UTC+01:00) Amsterdam, Berlin, Bern, Rome, Stockholm, Vienna",
        "1:00",
        True,
    ),
    "Romance Standard Time": (
        "Europe/Paris",
        "(UTC+01:00) Brussels, Copenhagen, Madrid, Paris",
        "1:00",
        True,
    ),
    "Eastern Standard Time": (
        "America/New_York",
        "(UTC-05:00) Eastern Time (US & Canada)",
        "-5:00",
        True,
    ),
    "Central Standard Time": (
        "America/Chicago",
        "(UTC-06:00) Central Time (US & Canada)",
        "-6:00",
        True,
    ),
    "Pacific Standard Time": (
        "America/Los_Angeles",
        "(UTC-08:00) Pacific Time (US & Canada)",
        "-8:00",
        True,
    ),
    "AUS Eastern Standard Time": (
        "Australia/Sydney",
        "(UTC+10:00) Canberra, Melbourne, Sydney",
        "10:00",
        True,
    ),
    "Tokyo Standard Time": ("Asia/Tokyo", "(UTC+09:00) Osaka, Sapporo, Tokyo", "9:00", False),
    "UTC": ("UTC", "(UTC) Coordinated Universal Time", "0:00", False),
}
#: SimpleTimeZone Ids, stable across runs.
ZONE_IDS: dict[str, int] = {name: index for index, name in enumerate(SUPPORTED_ZONES, start=1)}

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 25
MAX_SERIES_LENGTH = 1000
DEFAULT_TOKEN_LIFETIME = timedelta(seconds=604799)
DEFAULT_REFRESH_LIFETIME = timedelta(days=15)

DENIED = {"Message": "Authorization has been denied for this request."}
NOT_FOUND = {"Message": "Not found"}
SERVER_ERROR = {"Message": "An error has occurred."}
THROTTLE_TEXT = "You must wait before accessing this url again."
UNAVAILABLE_MESSAGE = "This resource is not available at the selected time."


class RepeatCycle(IntEnum):
    """eBookingRepeatCycle."""

    DAILY = 1
    WEEKLY = 2
    MONTHLY = 3
    YEARLY = 4
    FIRST_OF_MONTH = 5
    SECOND_OF_MONTH = 6
    THIRD_OF_MONTH = 7
    LAST_OF_MONTH = 8
    FOURTH_OF_MONTH = 9


class UpdateAction(IntEnum):
    """eRepeatedBookingUpdateAction."""

    UPDATE_THIS_BOOKING_ONLY = 1
    UPDATE_FUTURE_BOOKINGS_ONLY = 2
    UPDATE_ALL_BOOKINGS = 3
    UPDATE_NOT_CHARGED_BOOKINGS = 4
    DELETE_ALL_BOOKINGS = 5
    DELETE_BOOKINGS_AFTER_THIS = 6
    DELETE_NOT_CHARGED_BOOKINGS = 7
    REVERT_ALL_CHARGES = 8


#: Which week of the month each "…OfMonth" cycle means (-1: the last).
WEEK_OF_MONTH = {
    RepeatCycle.FIRST_OF_MONTH: 1,
    RepeatCycle.SECOND_OF_MONTH: 2,
    RepeatCycle.THIRD_OF_MONTH: 3,
    RepeatCycle.FOURTH_OF_MONTH: 4,
    RepeatCycle.LAST_OF_MONTH: -1,
}

#: RepeatOn* flags, indexed by ``date.weekday()``.
WEEKDAY_FLAGS = (
    "RepeatOnMondays",
    "RepeatOnTuesdays",
    "RepeatOnWednesdays",
    "RepeatOnThursdays",
    "RepeatOnFridays",
    "RepeatOnSaturdays",
    "RepeatOnSundays",
)

# ----- the booking record ------------------------------------------------------------------

#: Client-settable fields and their empty values; a PUT without one of them clears it.
WRITABLE_DEFAULTS: dict[str, Any] = {
    "ResourceId": None,
    "FloorPlanDeskId": None,
    "CoworkerId": None,
    "ExtraServiceId": None,
    "Notes": None,
    "InternalNotes": None,
    "ChargeNow": False,
    "InvoiceNow": False,
    "InvoiceThisCoworker": False,
    "DoNotUseBookingCredit": False,
    "PurchaseOrder": None,
    "DiscountCode": None,
    "LastNotificationTime": None,
    "GoogleCalendarId": None,
    "GoogleEventId": None,
    "Office365EventId": None,
    "PublicGoogleEventId": None,
    "Office365AdminEventId": None,
    "Tentative": False,
    "TeamsAtTheTimeOfBooking": None,
    "TariffAtTheTimeOfBooking": None,
    "Reminded": False,
    "MrmReminded": False,
    "OverridePrice": None,
    "KisiKeyId": None,
    "StartScheduledJobId": None,
    "EndScheduledJobId": None,
    "Billed": False,
    "CoworkerExtraServicePrice": None,
    "IncludeZoomInvite": False,
    "ZoomEventData": None,
    "SystemId": None,
    "BookingProducts": [],
    "BookingVisitors": [],
}
#: Create-only repeat settings: stored at creation, never changed by a PUT.
REPEAT_DEFAULTS: dict[str, Any] = {
    "RepeatSeriesUniqueId": None,
    "RepeatBooking": False,
    "Repeats": 0,
    "RepeatEvery": None,
    "RepeatUntil": None,
    "WhichBookingsToUpdate": 0,
    **dict.fromkeys(WEEKDAY_FLAGS, False),
}
#: Fields the list endpoints leave out (partial records).
LIST_OMITTED = frozenset(
    {"InternalNotes", "BookingProducts", "BookingVisitors"} | set(REPEAT_DEFAULTS)
) - {"RepeatSeriesUniqueId"}

BOOL_FIELDS = frozenset(
    {
        "ChargeNow",
        "InvoiceNow",
        "InvoiceThisCoworker",
        "DoNotUseBookingCredit",
        "Tentative",
        "Reminded",
        "MrmReminded",
        "Billed",
        "IncludeZoomInvite",
        "RepeatBooking",
        *WEEKDAY_FLAGS,
    }
)
INT_FIELDS = frozenset(
    {
        "Id",
        "ResourceId",
        "FloorPlanDeskId",
        "CoworkerId",
        "ExtraServiceId",
        "KisiKeyId",
        "Repeats",
        "RepeatEvery",
        "WhichBookingsToUpdate",
    }
)
NUMBER_FIELDS = frozenset({"OverridePrice", "CoworkerExtraServicePrice"})
INSTANT_FIELDS = frozenset({"FromTime", "ToTime", "LastNotificationTime"})
LIST_FIELDS = frozenset({"BookingProducts", "BookingVisitors"})
STRING_FIELDS = frozenset(
    set(WRITABLE_DEFAULTS) - BOOL_FIELDS - INT_FIELDS - NUMBER_FIELDS - INSTANT_FIELDS - LIST_FIELDS
    | {"RepeatSeriesUniqueId", "RepeatUntil"}
)


# ----- pure calendar arithmetic --------------------------------------------------------------


def add_months(day: date, months: int) -> date:
    """``day`` moved by whole months, clamped to the target month's last day."""
    index = day.year * 12 + day.month - 1 + months
    year, month0 = divmod(index, 12)
    last = calendar.monthrange(year, month0 + 1)[1]
    return date(year, month0 + 1, min(day.day, last))


def weekday_of_month(year: int, month: int, weekday: int, week: int) -> date | None:
    """The ``week``-th ``weekday`` (0 = Monday) of a month; ``week == -1`` is the last one."""
    last_day = calendar.monthrange(year, month)[1]
    if week == -1:
        last = date(year, month, last_day)
        return last - timedelta(days=(last.weekday() - weekday) % 7)
    first = date(year, month, 1)
    day = 1 + (weekday - first.weekday()) % 7 + 7 * (week - 1)
    return date(year, month, day) if day <= last_day else None


def rule_dates(
    first: date, cycle: RepeatCycle, every: int, weekdays: frozenset[int]
) -> Iterator[date]:
    """The dates a repeat rule produces from ``first``'s period on, ascending, without end."""
    if cycle is RepeatCycle.DAILY:
        for step in itertools.count():
            yield first + timedelta(days=step * every)
    elif cycle is RepeatCycle.WEEKLY:
        monday = first - timedelta(days=first.weekday())
        days = sorted(weekdays or {first.weekday()})
        for week in itertools.count(step=every):
            for weekday in days:
                yield monday + timedelta(weeks=week, days=weekday)
    elif cycle in (RepeatCycle.MONTHLY, RepeatCycle.YEARLY):
        months = every if cycle is RepeatCycle.MONTHLY else 12 * every
        for step in itertools.count():
            yield add_months(first, step * months)
    else:
        week = WEEK_OF_MONTH[cycle]
        for step in itertools.count(step=every):
            month_start = add_months(first.replace(day=1), step)
            day = weekday_of_month(month_start.year, month_start.month, first.weekday(), week)
            if day is not None:
                yield day


def repeat_dates(
    first: date,
    cycle: RepeatCycle,
    every: int,
    until: date,
    weekdays: frozenset[int] = frozenset(),
    *,
    limit: int = MAX_SERIES_LENGTH,
) -> list[date]:
    """The local dates of a series: ``first`` itself, then each rule date after it to ``until``.

    Raises ValueError when the series would be longer than ``limit``.
    """
    dates = [first]
    for day in rule_dates(first, cycle, every, weekdays):
        if day > until:
            break
        if day > first:
            dates.append(day)
            if len(dates) > limit:
                raise ValueError(f"a series may have at most {limit} bookings")
    return dates


def local_spans(
    dates: Iterable[date], start: datetime, end: datetime, zone: ZoneInfo
) -> list[tuple[datetime, datetime]]:
    """UTC spans keeping ``start``'s local wall-clock time and wall-clock length on each date."""
    local_start = start.astimezone(zone)
    wall_start = local_start.time()
    wall_length = end.astimezone(zone).replace(tzinfo=None) - local_start.replace(tzinfo=None)
    spans = []
    for day in dates:
        naive = datetime.combine(day, wall_start)
        span_start = naive.replace(tzinfo=zone).astimezone(UTC)
        span_end = (naive + wall_length).replace(tzinfo=zone).astimezone(UTC)
        if span_end <= span_start:  # a wall time inside a DST gap: keep the real length
            span_end = span_start + (end - start)
        spans.append((span_start, span_end))
    return spans


def shift_wall_clock(instant: datetime, delta: timedelta, zone: ZoneInfo) -> datetime:
    """``instant`` moved by ``delta`` of local wall-clock time (09:00 + 1h is 10:00, DST or not)."""
    naive = instant.astimezone(zone).replace(tzinfo=None) + delta
    return naive.replace(tzinfo=zone).astimezone(UTC)


# ----- time text -----------------------------------------------------------------------------


def format_utc(instant: datetime) -> str:
    """An instant as Nexudus writes UTC times: ``2025-01-15T10:30:00Z``."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_local(instant: datetime, zone: ZoneInfo) -> str:
    """An instant as business-local wall time, without a suffix."""
    return instant.astimezone(zone).strftime("%Y-%m-%dT%H:%M:%S")


def parse_instant(value: str) -> datetime:
    """A UTC instant from ``…Z``, an offset, or no suffix (read as UTC); minutes may suffice."""
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_local_date(value: str) -> date:
    """The date part of a date or date-time text, taken as written (a business-local date)."""
    return datetime.fromisoformat(value.strip().replace("Z", "+00:00")).date()


# ----- problems (HTTP error replies) ---------------------------------------------------------


class ApiProblem(Exception):
    """An error reply: status, JSON body and extra headers."""

    def __init__(self, status: int, body: object, headers: Mapping[str, str] | None = None):
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = dict(headers or {})

    def response(self) -> Response:
        """The Starlette response for this problem."""
        return JSONResponse(self.body, status_code=self.status, headers=self.headers)


def validation_problem(*errors: tuple[str, str, object]) -> ApiProblem:
    """The 400 envelope of §2.5 for (PropertyName, Message, AttemptedValue) triples."""
    return ApiProblem(
        400,
        {
            "Message": ", ".join(f"{name}: {message}" for name, message, _ in errors),
            "Value": None,
            "Errors": [
                {"AttemptedValue": attempted, "Message": message, "PropertyName": name}
                for name, message, attempted in errors
            ],
            "WasSuccessful": False,
        },
    )


def success_envelope(message: str, value: object, now: datetime, user: str) -> Record:
    """The success reply of a write, as in [SEED] 002."""
    return {
        "Status": 200,
        "Message": message,
        "Value": value,
        "OpenInDialog": False,
        "OpenInWindow": False,
        "RedirectURL": None,
        "JavaScript": None,
        "UpdatedOn": format_utc(now),
        "UpdatedBy": user,
        "Errors": None,
        "WasSuccessful": True,
    }


# ----- list queries --------------------------------------------------------------------------


class Kind(StrEnum):
    """How a filter value is parsed and compared."""

    INT = "int"
    BOOL = "bool"
    TEXT = "text"
    INSTANT = "instant"
    DATE = "date"


@dataclass(frozen=True, slots=True)
class EntityQuery:
    """The filters and sort fields one list endpoint understands."""

    entity: str
    equality: Mapping[str, tuple[str, Kind]]
    ranges: Mapping[str, tuple[str, Kind]]
    fields: frozenset[str]

    def filter_for(self, name: str) -> tuple[str, Kind, str] | None:
        """(record field, kind, comparison) for a query parameter, or None if not a filter."""
        if name in ("Id", "UniqueId"):
            return name, Kind.INT if name == "Id" else Kind.TEXT, "eq"
        for prefix, comparison in (("from_", "ge"), ("to_", "le"), ("", "eq")):
            head = f"{prefix}{self.entity}_"
            if name.startswith(head):
                table = self.equality if comparison == "eq" else self.ranges
                known = table.get(name.removeprefix(head))
                return None if known is None else (*known, comparison)
        return None


def looks_like_filter(name: str) -> bool:
    """Whether a parameter is shaped like an ``Entity_Property`` filter (known or not)."""
    bare = name.removeprefix("from_").removeprefix("to_")
    head, _, tail = bare.partition("_")
    return bool(head[:1].isupper() and head.isalnum() and tail)


def parse_filter_value(text: str, kind: Kind) -> object:
    """A filter value as a comparable Python value; ValueError when malformed."""
    if kind is Kind.INT:
        return int(text)
    if kind is Kind.BOOL:
        lowered = text.strip().lower()
        if lowered not in ("true", "false"):
            raise ValueError(text)
        return lowered == "true"
    if kind is Kind.INSTANT:
        return parse_instant(text)
    if kind is Kind.DATE:
        return parse_local_date(text)
    return text


def matches(value: object, wanted: object, comparison: str) -> bool:
    """Whether a record value passes one filter (a missing value never passes a range)."""
    if comparison == "eq":
        if isinstance(value, str) and isinstance(wanted, str):
            return value.lower() == wanted.lower()
        return bool(value == wanted)
    if value is None:
        return False
    if comparison == "ge":
        return bool(value >= wanted)  # type: ignore[operator]
    return bool(value <= wanted)  # type: ignore[operator]


SORT_DIRECTIONS = {"1": 1, "0": 1, "ascending": 1, "asc": 1, "-1": -1, "descending": -1, "desc": -1}
PAGING_PARAMETERS = frozenset({"page", "size", "orderby", "orderBy", "dir"})


@dataclass(frozen=True, slots=True)
class PageRequest:
    """A parsed list query: filters, sort field and direction, page and size."""

    filters: tuple[tuple[str, object, str], ...]
    order: str
    direction: int
    page: int
    size: int


def parse_list_query(params: Iterable[tuple[str, str]], query: EntityQuery) -> PageRequest:
    """A :class:`PageRequest` from query parameters; ApiProblem(400) for malformed ones."""
    filters: list[tuple[str, object, str]] = []
    values = dict(params)
    for name, text in values.items():
        if name in PAGING_PARAMETERS:
            continue
        known = query.filter_for(name)
        if known is None:
            if looks_like_filter(name):
                raise validation_problem((name, "is not a valid filter", text))
            continue
        record_field, kind, comparison = known
        try:
            filters.append((record_field, parse_filter_value(text, kind), comparison))
        except ValueError:
            raise validation_problem((name, "is not a valid value", text)) from None
    order = values.get("orderby") or values.get("orderBy") or "Id"
    if order not in query.fields:
        raise validation_problem(("orderby", "is not a valid property", order))
    direction = SORT_DIRECTIONS.get(values.get("dir", "1").strip().lower())
    if direction is None:
        raise validation_problem(("dir", "is not a valid sort direction", values["dir"]))
    page = _positive_int(values, "page", 1)
    size = min(_positive_int(values, "size", DEFAULT_PAGE_SIZE), MAX_PAGE_SIZE)
    return PageRequest(tuple(filters), order, direction, page, size)


def _positive_int(values: Mapping[str, str], name: str, default: int) -> int:
    """A positive integer parameter, or ApiProblem(400)."""
    text = values.get(name)
    if text is None:
        return default
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise validation_problem((name, "must be a positive number", text))
    return number


def select_page(records: Iterable[Record], request: PageRequest) -> tuple[list[Record], Record]:
    """The page of matching records and the envelope fields describing it."""
    chosen = [
        record
        for record in records
        if all(matches(record.get(name), wanted, how) for name, wanted, how in request.filters)
    ]
    chosen.sort(key=lambda record: record["Id"])
    chosen.sort(
        key=lambda record: _sort_key(record.get(request.order)),
        reverse=request.direction < 0,
    )
    total = len(chosen)
    pages = -(-total // request.size)
    offset = (request.page - 1) * request.size
    page = chosen[offset : offset + request.size]
    paging = {
        "CurrentPage": request.page,
        "CurrentPageSize": request.size,
        "CurrentOrderField": request.order,
        "CurrentSortDirection": request.direction,
        "FirstItem": offset + 1 if page else 0,
        "LastItem": offset + len(page),
        "TotalItems": total,
        "TotalPages": pages,
        "HasNextPage": request.page < pages,
        "HasPreviousPage": request.page > 1,
    }
    return page, paging


def _sort_key(value: object) -> tuple[bool, Any]:
    """Sort key putting missing values first and comparing the rest as they are."""
    if value is None:
        return (False, 0)
    if isinstance(value, str):
        return (True, value.lower())
    return (True, value)


BOOKING_QUERY = EntityQuery(
    "Booking",
    equality={
        "Resource": ("ResourceId", Kind.INT),
        "Coworker": ("CoworkerId", Kind.INT),
        "FromTime": ("FromTime", Kind.INSTANT),
        "ToTime": ("ToTime", Kind.INSTANT),
        "Tentative": ("Tentative", Kind.BOOL),
        "Online": ("Online", Kind.BOOL),
        "Invoiced": ("Invoiced", Kind.BOOL),
        "RepeatSeriesUniqueId": ("RepeatSeriesUniqueId", Kind.TEXT),
        "RepeatBooking": ("RepeatBooking", Kind.BOOL),
        "Repeats": ("Repeats", Kind.INT),
        "SystemId": ("SystemId", Kind.TEXT),
        "Resource_Name": ("ResourceName", Kind.TEXT),
        "Coworker_FullName": ("CoworkerFullName", Kind.TEXT),
    },
    ranges={
        "Id": ("Id", Kind.INT),
        "CreatedOn": ("CreatedOn", Kind.INSTANT),
        "UpdatedOn": ("UpdatedOn", Kind.INSTANT),
        "FromTime": ("FromTime", Kind.INSTANT),
        "ToTime": ("ToTime", Kind.INSTANT),
        "RepeatUntil": ("RepeatUntil", Kind.DATE),
        "InvoiceDate": ("InvoiceDate", Kind.INSTANT),
    },
    fields=frozenset(
        {
            *WRITABLE_DEFAULTS,
            *REPEAT_DEFAULTS,
            "Id",
            "UniqueId",
            "BookingNumber",
            "ResourceName",
            "CoworkerFullName",
            "FromTime",
            "ToTime",
            "Online",
            "Invoiced",
            "InvoiceDate",
            "CreatedOn",
            "UpdatedOn",
        }
    ),
)
CANCELLED_QUERY = EntityQuery(
    "CancelledBooking",
    equality={
        "Resource": ("ResourceId", Kind.INT),
        "Coworker": ("CoworkerId", Kind.INT),
        "OriginalBookingId": ("OriginalBookingId", Kind.INT),
        "RepeatSeriesUniqueId": ("RepeatSeriesUniqueId", Kind.TEXT),
        "Resource_Name": ("ResourceName", Kind.TEXT),
        "CancellationReason": ("CancellationReason", Kind.INT),
    },
    ranges={
        "CancelledOn": ("CancelledOn", Kind.INSTANT),
        "CreatedOn": ("CreatedOn", Kind.INSTANT),
        "UpdatedOn": ("UpdatedOn", Kind.INSTANT),
        "FromTime": ("FromTime", Kind.INSTANT),
        "ToTime": ("ToTime", Kind.INSTANT),
    },
    fields=BOOKING_QUERY.fields
    | {"OriginalBookingId", "CancelledOn", "CancelledBy", "CancellationReason"},
)
RESOURCE_QUERY = EntityQuery(
    "Resource",
    equality={
        "Business": ("BusinessId", Kind.INT),
        "Name": ("Name", Kind.TEXT),
        "Archived": ("Archived", Kind.BOOL),
        "ResourceType": ("ResourceTypeId", Kind.INT),
    },
    ranges={"UpdatedOn": ("UpdatedOn", Kind.INSTANT), "CreatedOn": ("CreatedOn", Kind.INSTANT)},
    fields=frozenset({"Id", "Name", "BusinessId", "ResourceTypeId", "UpdatedOn", "CreatedOn"}),
)
BUSINESS_QUERY = EntityQuery(
    "Business",
    equality={"Name": ("Name", Kind.TEXT)},
    ranges={"UpdatedOn": ("UpdatedOn", Kind.INSTANT)},
    fields=frozenset({"Id", "Name", "UpdatedOn", "CreatedOn"}),
)
COWORKER_QUERY = EntityQuery(
    "Coworker",
    equality={
        "Email": ("Email", Kind.TEXT),
        "FullName": ("FullName", Kind.TEXT),
        "CompanyName": ("CompanyName", Kind.TEXT),
        "CoworkerType": ("CoworkerType", Kind.INT),
        "Active": ("Active", Kind.BOOL),
    },
    ranges={"UpdatedOn": ("UpdatedOn", Kind.INSTANT), "CreatedOn": ("CreatedOn", Kind.INSTANT)},
    fields=frozenset({"Id", "FullName", "Email", "CompanyName", "UpdatedOn", "CreatedOn"}),
)
ZONE_QUERY = EntityQuery(
    "SimpleTimeZone",
    equality={"Name": ("Name", Kind.TEXT)},
    ranges={},
    fields=frozenset({"Id", "Name"}),
)


# ----- clock, faults, counters ---------------------------------------------------------------


class EmulatorClock:
    """The emulator's notion of now: the wall clock until a test sets it, then frozen."""

    def __init__(self, start: datetime | None = None) -> None:
        self._frozen = start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The current instant, whole seconds (Nexudus timestamps carry no fractions)."""
        with self._lock:
            current = self._frozen or datetime.now(UTC)
        return current.astimezone(UTC).replace(microsecond=0)

    def set(self, instant: datetime) -> None:
        """Freeze the clock at ``instant``."""
        if instant.tzinfo is None:
            raise ValueError("the emulator clock needs an aware instant")
        with self._lock:
            self._frozen = instant

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward (freezing it if it was following the wall clock)."""
        with self._lock:
            self._frozen = (self._frozen or datetime.now(UTC)) + delta


# ----- accounts and tokens -------------------------------------------------------------------


@dataclass(slots=True)
class _Grant:
    """Who a token belongs to and until when it is valid."""

    user: str
    client_id: str | None
    expires: datetime


@dataclass(slots=True)
class Accounts:
    """Admin users, their bearer and refresh tokens, and the token grants seen."""

    clock: EmulatorClock
    token_lifetime: timedelta = DEFAULT_TOKEN_LIFETIME
    refresh_lifetime: timedelta = DEFAULT_REFRESH_LIFETIME
    users: dict[str, str] = field(default_factory=dict, repr=False)
    access: dict[str, _Grant] = field(default_factory=dict, repr=False)
    refresh: dict[str, _Grant] = field(default_factory=dict, repr=False)
    grants: Counter[str] = field(default_factory=Counter)

    def token_reply(self, form: Mapping[str, str]) -> Record:
        """Answer ``POST /api/token``; ApiProblem(400) with an OAuth error otherwise."""
        grant_type = form.get("grant_type", "")
        self.grants[grant_type] += 1
        client_id = form.get("client_id") or None
        if grant_type == "password":
            user = form.get("username", "")
            if not user or self.users.get(user.lower()) != form.get("password"):
                raise self._invalid_grant("The user name or password is incorrect.")
            return self._issue(user.lower(), client_id)
        if grant_type == "refresh_token":
            held = self.refresh.get(form.get("refresh_token", ""))
            if held is None or held.expires <= self.clock.now() or held.client_id != client_id:
                raise self._invalid_grant("The refresh token is invalid or has expired.")
            return self._issue(held.user, client_id)
        raise ApiProblem(400, {"error": "unsupported_grant_type"})

    def _issue(self, user: str, client_id: str | None) -> Record:
        """A new token pair; earlier refresh tokens of this user and client stop working."""
        now = self.clock.now()
        for token, held in list(self.refresh.items()):
            if held.user == user and held.client_id == client_id:
                del self.refresh[token]
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        self.access[access] = _Grant(user, client_id, now + self.token_lifetime)
        self.refresh[refresh] = _Grant(user, client_id, now + self.refresh_lifetime)
        return {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": int(self.token_lifetime.total_seconds()),
            "refresh_token": refresh,
        }

    @staticmethod
    def _invalid_grant(description: str) -> ApiProblem:
        """The OAuth error body Nexudus sends for bad credentials."""
        return ApiProblem(400, {"error": "invalid_grant", "error_description": description})

    def authenticate(self, header: str | None) -> str:
        """The user an Authorization header proves, or ApiProblem(401)."""
        scheme, _, credential = (header or "").partition(" ")
        if scheme.lower() == "bearer":
            held = self.access.get(credential.strip())
            if held is not None and held.expires > self.clock.now():
                return held.user
        elif scheme.lower() == "basic":
            user = self._basic_user(credential.strip())
            if user is not None:
                return user
        raise ApiProblem(401, DENIED, {"WWW-Authenticate": 'Bearer, Basic realm="Nexudus"'})

    def _basic_user(self, credential: str) -> str | None:
        """The user of a valid Basic credential."""
        try:
            user, _, password = base64.b64decode(credential).decode().partition(":")
        except ValueError:
            return None
        return user.lower() if user and self.users.get(user.lower()) == password else None

    def expire_all(self) -> None:
        """Invalidate every access token (refresh tokens keep working)."""
        self.access.clear()


# ----- the booking store ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Move:
    """One booking's new place in an update: its record and its new span."""

    record: Record
    start: datetime
    end: datetime


class NexudusData:
    """Businesses, resources, bookings and cancelled bookings, with Nexudus's rules."""

    def __init__(self, clock: EmulatorClock, seed: int) -> None:
        self.clock = clock
        self._rng = random.Random(seed)
        self.businesses: dict[int, Record] = {}
        self.resources: dict[int, Record] = {}
        self.coworkers: dict[int, Record] = {}
        self.bookings: dict[int, Record] = {}
        self.cancelled: dict[int, Record] = {}
        self._ids = itertools.count(1_040_000_001)

    # -- identities and zones

    def next_id(self) -> int:
        """A fresh integer Id (one sequence for every entity, like a shared key space)."""
        return next(self._ids)

    def new_guid(self) -> str:
        """A fresh GUID, reproducible for a given seed."""
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def zone_of_resource(self, resource_id: int) -> ZoneInfo:
        """The IANA zone of a resource's business."""
        business = self.businesses[self.resources[resource_id]["BusinessId"]]
        return ZoneInfo(SUPPORTED_ZONES[business["SimpleTimeZoneName"]][0])

    # -- seeding

    def add_business(
        self, name: str, time_zone: str, business_id: int | None, extra: Record
    ) -> int:
        """Store a business in one of the supported Windows zones."""
        if time_zone not in SUPPORTED_ZONES:
            raise ValueError(
                f"unsupported time zone {time_zone!r}; known: {sorted(SUPPORTED_ZONES)}"
            )
        key = business_id or self.next_id()
        now = self.clock.now()
        self.businesses[key] = {
            "Id": key,
            "UniqueId": self.new_guid(),
            "Name": name,
            "SimpleTimeZoneId": ZONE_IDS[time_zone],
            "SimpleTimeZoneName": time_zone,
            "Currency": "GBP",
            "CreatedOn": now,
            "UpdatedOn": now,
            **extra,
        }
        return key

    def add_resource(
        self, name: str, business_id: int, resource_id: int | None, extra: Record
    ) -> int:
        """Store a resource (room) of a known business."""
        if business_id not in self.businesses:
            raise ValueError(f"no business {business_id}")
        key = resource_id or self.next_id()
        now = self.clock.now()
        self.resources[key] = {
            "Id": key,
            "UniqueId": self.new_guid(),
            "Name": name,
            "BusinessId": business_id,
            "ResourceTypeId": None,
            "ResourceTypeName": "Meeting room",
            "Allocation": 1,
            "HideInCalendar": False,
            "Archived": False,
            "Visible": True,
            "GoogleCalendarId": None,
            "CreatedOn": now,
            "UpdatedOn": now,
            **extra,
        }
        return key

    def add_coworker(self, full_name: str, email: str, extra: Record) -> int:
        """Store a coworker (an individual customer)."""
        key = self.next_id()
        now = self.clock.now()
        self.coworkers[key] = {
            "Id": key,
            "UniqueId": self.new_guid(),
            "CoworkerType": 1,
            "FullName": full_name,
            "Email": email,
            "CompanyName": None,
            "Active": True,
            "CreatedOn": now,
            "UpdatedOn": now,
            **extra,
        }
        return key

    # -- reads

    def render_booking(self, record: Record, *, partial: bool) -> Record:
        """A stored booking (or cancelled snapshot) as JSON, with its local times."""
        zone = self.zone_of_resource(record["ResourceId"])
        out: Record = {}
        for name, value in record.items():
            if partial and name in LIST_OMITTED:
                continue
            out[name] = render_value(value)
        out["FromTimeLocal"] = format_local(record["FromTime"], zone)
        out["ToTimeLocal"] = format_local(record["ToTime"], zone)
        return out

    def booking_or_404(self, booking_id: int) -> Record:
        """A stored booking, or ApiProblem(404)."""
        record = self.bookings.get(booking_id)
        if record is None:
            raise ApiProblem(404, NOT_FOUND)
        return record

    # -- create

    def create(self, body: Record, user: str) -> Record:
        """``POST /api/spaces/bookings``: one booking or a whole repeat series."""
        _check_required(body, ("ResourceId", "FromTime", "ToTime"))
        _check_types(body)
        resource_id = self._resource_id(body)
        self._check_coworker(body)
        start, end = _span_of(body)
        zone = self.zone_of_resource(resource_id)
        repeat = self._repeat_settings(body, start, zone)
        spans = [(start, end)]
        if repeat["RepeatBooking"]:
            dates = self._series_dates(body, repeat, start.astimezone(zone).date())
            spans = local_spans(dates, start, end, zone)
        self.refuse_conflicts(resource_id, spans, ignore=set())
        first = None
        for span_start, span_end in spans:
            booking_id = self.insert(body, resource_id, span_start, span_end, repeat, user)
            first = first or booking_id
        return success_envelope(
            "Booking was successfully created.", {"Id": first}, self.clock.now(), user
        )

    def _resource_id(self, body: Mapping[str, Any]) -> int:
        """The body's ResourceId, checked to exist."""
        resource_id = int(body["ResourceId"])
        if resource_id not in self.resources:
            raise validation_problem(("ResourceId", "is not a valid resource", resource_id))
        return resource_id

    def _check_coworker(self, body: Mapping[str, Any]) -> None:
        """A body's CoworkerId, when set, must be a coworker (400 on CoworkerId otherwise)."""
        coworker_id = body.get("CoworkerId")
        if coworker_id is not None and coworker_id not in self.coworkers:
            raise validation_problem(("CoworkerId", "is not a valid customer", coworker_id))

    def coworker_name(self, body: Mapping[str, Any]) -> str | None:
        """The full name of the body's coworker (seeded bookings may name one directly)."""
        coworker = self.coworkers.get(body.get("CoworkerId") or 0)
        return coworker["FullName"] if coworker else body.get("CoworkerFullName")

    def _repeat_settings(self, body: Mapping[str, Any], start: datetime, zone: ZoneInfo) -> Record:
        """The create-only repeat fields this booking will carry."""
        settings = dict(REPEAT_DEFAULTS)
        series = body.get("RepeatSeriesUniqueId")
        if series and any(r["RepeatSeriesUniqueId"] == series for r in self.bookings.values()):
            raise validation_problem(
                ("RepeatSeriesUniqueId", "No new bookings can be added to the series", series)
            )
        if not body.get("RepeatBooking"):
            return settings
        repeats = body.get("Repeats") or RepeatCycle.WEEKLY
        if repeats not in set(RepeatCycle):
            raise validation_problem(("Repeats", "is not a valid repeat cycle", repeats))
        every = body.get("RepeatEvery") or 1
        if every < 1:
            raise validation_problem(("RepeatEvery", "must be at least 1", every))
        settings.update(
            {
                "RepeatSeriesUniqueId": self.new_guid(),
                "RepeatBooking": True,
                "Repeats": int(repeats),
                "RepeatEvery": every,
                **{flag: bool(body.get(flag)) for flag in WEEKDAY_FLAGS},
            }
        )
        return settings

    def _series_dates(self, body: Mapping[str, Any], repeat: Record, first: date) -> list[date]:
        """The local dates of a new series, validated."""
        text = body.get("RepeatUntil")
        if not text:
            raise validation_problem(("RepeatUntil", "is a required field", text))
        try:
            until = parse_local_date(str(text))
        except ValueError:
            raise validation_problem(("RepeatUntil", "is not a valid date", text)) from None
        if until < first:
            raise validation_problem(("RepeatUntil", "must not be before the booking", text))
        repeat["RepeatUntil"] = until
        weekdays = frozenset(i for i, flag in enumerate(WEEKDAY_FLAGS) if repeat[flag])
        try:
            return repeat_dates(
                first, RepeatCycle(repeat["Repeats"]), repeat["RepeatEvery"], until, weekdays
            )
        except ValueError as exc:
            raise validation_problem(("RepeatUntil", str(exc), text)) from None

    def insert(
        self,
        body: Mapping[str, Any],
        resource_id: int,
        start: datetime,
        end: datetime,
        repeat: Record,
        user: str,
    ) -> int:
        """Store one new booking built from a create body (no checks: callers make them)."""
        booking_id = self.next_id()
        now = self.clock.now()
        record: Record = {
            "Id": booking_id,
            "UniqueId": self.new_guid(),
            "BookingNumber": str(booking_id)[-7:],
            **_writable_from(body),
            **repeat,
            "ResourceId": resource_id,
            "ResourceName": self.resources[resource_id]["Name"],
            "CoworkerFullName": self.coworker_name(body),
            "FromTime": start,
            "ToTime": end,
            "Online": False,
            "Invoiced": False,
            "InvoiceDate": None,
            "CreatedOn": now,
            "UpdatedOn": now,
            "UpdatedBy": user,
        }
        self.bookings[booking_id] = record
        return booking_id

    # -- update

    def update(self, body: Record, user: str) -> Record:
        """``PUT /api/spaces/bookings``: replace a booking (and its series members)."""
        required = ("Id", "ResourceId", "FromTime", "ToTime", "Repeats", "WhichBookingsToUpdate")
        _check_required(body, required)
        _check_types(body)
        target = self.booking_or_404(int(body["Id"]))
        action = self._update_action(body["WhichBookingsToUpdate"])
        resource_id = self._resource_id(body)
        if body.get("CoworkerId") != target["CoworkerId"]:
            self._check_coworker(body)
        start, end = _span_of(body)
        zone = self.zone_of_resource(resource_id)
        moves = [
            _Move(member, *self._moved_span(member, target, start, end, zone))
            for member in self._members(target, action)
        ]
        self.refuse_conflicts(
            resource_id,
            [(move.start, move.end) for move in moves],
            ignore={move.record["Id"] for move in moves},
        )
        for move in moves:
            self._rewrite(move, body, resource_id, user)
        return success_envelope(
            "Booking was successfully updated.", {"Id": target["Id"]}, self.clock.now(), user
        )

    @staticmethod
    def _update_action(value: int) -> UpdateAction:
        """The WhichBookingsToUpdate of a PUT (0, read back on single bookings, means 1)."""
        if value == 0:
            return UpdateAction.UPDATE_THIS_BOOKING_ONLY
        if value not in (1, 2, 3, 4):
            raise validation_problem(
                ("WhichBookingsToUpdate", "is not a valid update action", value)
            )
        return UpdateAction(value)

    def _members(self, target: Record, action: UpdateAction) -> list[Record]:
        """The bookings an update action touches, the target first."""
        series = target["RepeatSeriesUniqueId"]
        if action is UpdateAction.UPDATE_THIS_BOOKING_ONLY or not series:
            return [target]
        members = [
            record
            for record in self.bookings.values()
            if record["RepeatSeriesUniqueId"] == series and record is not target
        ]
        if action is UpdateAction.UPDATE_FUTURE_BOOKINGS_ONLY:
            members = [record for record in members if record["FromTime"] >= target["FromTime"]]
        elif action is UpdateAction.UPDATE_NOT_CHARGED_BOOKINGS:
            members = [record for record in members if not record["Invoiced"]]
        return [target, *sorted(members, key=lambda record: record["FromTime"])]

    @staticmethod
    def _moved_span(
        member: Record, target: Record, start: datetime, end: datetime, zone: ZoneInfo
    ) -> tuple[datetime, datetime]:
        """Where a member goes: the target's new span, or shifted like the target in wall time."""
        if member is target:
            return start, end
        start_delta = _wall(start, zone) - _wall(target["FromTime"], zone)
        end_delta = _wall(end, zone) - _wall(target["ToTime"], zone)
        return (
            shift_wall_clock(member["FromTime"], start_delta, zone),
            shift_wall_clock(member["ToTime"], end_delta, zone),
        )

    def _rewrite(self, move: _Move, body: Mapping[str, Any], resource_id: int, user: str) -> None:
        """Replace a booking's writable fields with the body's (absent ones are cleared)."""
        record = move.record
        changed = record["CoworkerId"] != body.get("CoworkerId")
        record.update(_writable_from(body))
        record.update(
            {
                "ResourceId": resource_id,
                "ResourceName": self.resources[resource_id]["Name"],
                "CoworkerFullName": self.coworker_name(body) if changed
                else record["CoworkerFullName"],
                "FromTime": move.start,
                "ToTime": move.end,
                "UpdatedOn": self.clock.now(),
                "UpdatedBy": user,
            }
        )

    # -- delete

    def delete(self, booking_id: int, user: str) -> Record:
        """``DELETE /api/spaces/bookings/{id}``: the booking becomes a cancelled snapshot."""
        self.cancel(self.booking_or_404(booking_id)["Id"], user)
        return success_envelope(
            "The record was deleted successfully.", None, self.clock.now(), user
        )

    def cancel(self, booking_id: int, user: str, reason: int = 0) -> int:
        """Move a booking to the cancelled bookings; returns the snapshot's Id."""
        record = self.bookings.pop(booking_id)
        now = self.clock.now()
        snapshot_id = self.next_id()
        self.cancelled[snapshot_id] = {
            **record,
            "Id": snapshot_id,
            "UniqueId": self.new_guid(),
            "OriginalBookingId": booking_id,
            "CancelledOn": now,
            "CancelledBy": user,
            "CancellationReason": reason,
            "CreatedOn": now,
            "UpdatedOn": now,
        }
        return snapshot_id

    # -- availability

    def refuse_conflicts(
        self, resource_id: int, spans: list[tuple[datetime, datetime]], ignore: set[int]
    ) -> None:
        """ApiProblem(400) if a span meets a live booking of the resource, or another span."""
        ordered = sorted(spans)
        overlapping_each_other = any(
            earlier_end > later_start
            for (_, earlier_end), (later_start, _) in itertools.pairwise(ordered)
        )
        taken = any(
            record["FromTime"] < end and record["ToTime"] > start
            for record in self.bookings.values()
            if record["ResourceId"] == resource_id and record["Id"] not in ignore
            for start, end in spans
        )
        if overlapping_each_other or taken:
            raise validation_problem(("ResourceId", UNAVAILABLE_MESSAGE, resource_id))


def render_value(value: object) -> object:
    """A stored value as JSON: instants as ``…Z``, dates as local midnight."""
    if isinstance(value, datetime):
        return format_utc(value)
    if isinstance(value, date):
        return value.isoformat() + "T00:00:00"
    if isinstance(value, list):
        return [dict(item) if isinstance(item, dict) else item for item in value]
    return value


def _wall(instant: datetime, zone: ZoneInfo) -> datetime:
    """The naive local wall-clock time of an instant."""
    return instant.astimezone(zone).replace(tzinfo=None)


def _writable_from(body: Mapping[str, Any]) -> Record:
    """The client-settable fields of a body, each defaulted (cleared) when absent."""
    fields = {name: body.get(name, default) for name, default in WRITABLE_DEFAULTS.items()}
    for name in LIST_FIELDS:
        fields[name] = [dict(item) for item in fields[name] or [] if isinstance(item, dict)]
    if fields["LastNotificationTime"] is not None:
        fields["LastNotificationTime"] = parse_instant(fields["LastNotificationTime"])
    return fields


def _check_required(body: Mapping[str, Any], names: Iterable[str]) -> None:
    """The §2.5 validation error for every required field missing or null."""
    missing = [(name, "is a required field", None) for name in names if body.get(name) is None]
    if missing:
        raise validation_problem(*missing)


def _check_types(body: Mapping[str, Any]) -> None:
    """Reject values of the wrong JSON type, as model binding does."""
    wrong = [
        (name, f"The value '{value}' is not valid for {name}.", value)
        for name, value in body.items()
        if value is not None and not _type_ok(name, value)
    ]
    if wrong:
        raise validation_problem(*wrong)


def _type_ok(name: str, value: object) -> bool:
    """Whether one field's value has the type Nexudus expects."""
    if name in BOOL_FIELDS:
        return isinstance(value, bool)
    if name in INT_FIELDS:
        return isinstance(value, int) and not isinstance(value, bool)
    if name in NUMBER_FIELDS:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if name in LIST_FIELDS:
        return isinstance(value, list)
    if name in INSTANT_FIELDS:
        return isinstance(value, str) and _parses(value)
    if name in STRING_FIELDS:
        return isinstance(value, str)
    return True


def _parses(value: str) -> bool:
    """Whether a text is a date-time Nexudus would accept."""
    try:
        parse_instant(value)
    except ValueError:
        return False
    return True


def _span_of(body: Mapping[str, Any]) -> tuple[datetime, datetime]:
    """FromTime and ToTime of a body, ToTime strictly later."""
    start, end = parse_instant(body["FromTime"]), parse_instant(body["ToTime"])
    if end <= start:
        raise validation_problem(("ToTime", "must be later than FromTime", body["ToTime"]))
    return start, end


# ----- HTTP ----------------------------------------------------------------------------------


def _throttled(plan: FaultPlan) -> Response:
    """Nexudus's throttle: 409 with Retry-After (not 429)."""
    headers = {"Retry-After": str(plan.retry_after)}
    return PlainTextResponse(THROTTLE_TEXT, status_code=409, headers=headers)


def _server_failed() -> Response:
    """Nexudus's 500 body."""
    return JSONResponse(SERVER_ERROR, status_code=500)


def _read_form(raw: bytes) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body."""
    return dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))


class NexudusEmulator:
    """The emulator: a Starlette app over :class:`NexudusData`, plus the test controls."""

    def __init__(
        self,
        *,
        now: datetime | None = None,
        seed: int = 0,
        token_lifetime: timedelta = DEFAULT_TOKEN_LIFETIME,
        refresh_lifetime: timedelta = DEFAULT_REFRESH_LIFETIME,
    ) -> None:
        self.clock = EmulatorClock(now)
        self.data = NexudusData(self.clock, seed)
        self.accounts = Accounts(self.clock, token_lifetime, refresh_lifetime)
        self.faults = FaultInjector()
        self.requests: list[RecordedRequest] = []
        self._lock = threading.RLock()
        self._routes = self._build_routes()
        self.app: ASGIApp = FaultMiddleware(
            Starlette(routes=self._routes), self, throttle=_throttled, server_error=_server_failed
        )

    def __repr__(self) -> str:
        return (
            f"NexudusEmulator(bookings={len(self.data.bookings)}, "
            f"resources={len(self.data.resources)})"
        )

    # ----- test controls -----------------------------------------------------------------

    def add_user(self, email: str, password: str) -> None:
        """Allow an admin user (emails are case-insensitive)."""
        with self._lock:
            self.accounts.users[email.lower()] = password

    def add_business(
        self,
        name: str,
        *,
        time_zone: str = "GMT Standard Time",
        business_id: int | None = None,
        **fields: Any,
    ) -> int:
        """Seed a business (location) in a Windows time zone; returns its Id."""
        with self._lock:
            return self.data.add_business(name, time_zone, business_id, fields)

    def add_resource(
        self, name: str, *, business_id: int, resource_id: int | None = None, **fields: Any
    ) -> int:
        """Seed a resource (room) of a business; returns its Id."""
        with self._lock:
            return self.data.add_resource(name, business_id, resource_id, fields)

    def add_coworker(self, full_name: str, email: str, **fields: Any) -> int:
        """Seed a coworker (customer) with an email address; returns its Id."""
        with self._lock:
            return self.data.add_coworker(full_name, email, fields)

    def seed_booking(
        self,
        resource_id: int,
        start: datetime,
        end: datetime,
        *,
        user: str = "admin",
        **fields: Any,
    ) -> int:
        """Create a booking as an admin in the Nexudus UI would (no availability check).

        ``fields`` are Nexudus field names; ``RepeatSeriesUniqueId`` may tie seeded bookings
        into a series.
        """
        with self._lock:
            repeat = {
                **REPEAT_DEFAULTS,
                **{k: v for k, v in fields.items() if k in REPEAT_DEFAULTS},
            }
            if repeat["RepeatSeriesUniqueId"]:
                repeat["RepeatBooking"] = True
            body = {k: v for k, v in fields.items() if k not in REPEAT_DEFAULTS}
            return self.data.insert(body, resource_id, _utc(start), _utc(end), repeat, user)

    def edit_booking(self, booking_id: int, *, user: str = "admin", **changes: Any) -> None:
        """Change fields of a booking as an admin would; FromTime/ToTime take datetimes."""
        with self._lock:
            record = self.data.booking_or_404(booking_id)
            for name in ("FromTime", "ToTime"):
                if name in changes:
                    changes[name] = _utc(changes[name])
            record.update(changes)
            if "ResourceId" in changes:
                record["ResourceName"] = self.data.resources[record["ResourceId"]]["Name"]
            record["UpdatedOn"] = self.clock.now()
            record["UpdatedBy"] = user

    def cancel_booking(self, booking_id: int, *, user: str = "admin", reason: int = 0) -> int:
        """Delete a booking as an admin would; returns the cancelled snapshot's Id."""
        with self._lock:
            return self.data.cancel(booking_id, user, reason)

    def booking(self, booking_id: int) -> Record:
        """The full JSON record of one live booking."""
        with self._lock:
            return self.data.render_booking(self.data.booking_or_404(booking_id), partial=False)

    def bookings(self) -> list[Record]:
        """Every live booking as full JSON records, by Id."""
        with self._lock:
            return [
                self.data.render_booking(record, partial=False)
                for _, record in sorted(self.data.bookings.items())
            ]

    def cancelled(self) -> list[Record]:
        """Every cancelled-booking snapshot as JSON, by Id."""
        with self._lock:
            return [
                self.data.render_booking(record, partial=False)
                for _, record in sorted(self.data.cancelled.items())
            ]

    def set_clock(self, instant: datetime) -> None:
        """Freeze the emulator's clock at ``instant``."""
        self.clock.set(instant)

    def advance_clock(self, delta: timedelta) -> None:
        """Move the emulator's clock forward."""
        self.clock.advance(delta)

    def expire_tokens(self) -> None:
        """Invalidate every bearer token now (refresh tokens still work)."""
        with self._lock:
            self.accounts.expire_all()

    def set_faults(self, plan: FaultPlan) -> None:
        """Inject random faults from now on (``FaultPlan()`` switches them off)."""
        self.faults.configure(plan)

    def fail_next(self, *kinds: FaultKind, retry_after: int | None = None) -> None:
        """Make the next requests fail with exactly these faults, in order."""
        if retry_after is not None:
            self.faults.configure(dataclasses.replace(self.faults.plan, retry_after=retry_after))
        self.faults.queue(kinds)

    def clear_faults(self) -> None:
        """No more injected faults."""
        self.faults.clear()

    def request_counts(self) -> Counter[str]:
        """Requests seen per ``"METHOD /route/{param}"``, faulted ones included."""
        with self._lock:
            return Counter(f"{r.method} {r.route}" for r in self.requests)

    def token_grants(self) -> Counter[str]:
        """Token requests seen per grant_type."""
        with self._lock:
            return Counter(self.accounts.grants)

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
        """The routes of the admin API the emulator implements."""
        return [
            Route("/api/token", self._token, methods=["POST"]),
            Route(
                "/api/spaces/bookings",
                self._bookings,
                methods=["GET", "POST", "PUT"],
            ),
            Route(
                "/api/spaces/bookings/{booking_id:int}",
                self._booking,
                methods=["GET", "DELETE"],
            ),
            Route("/api/spaces/cancelledbookings", self._cancelled_list, methods=["GET"]),
            Route(
                "/api/spaces/cancelledbookings/{booking_id:int}",
                self._cancelled_one,
                methods=["GET"],
            ),
            Route("/api/spaces/resources", self._resource_list, methods=["GET"]),
            Route("/api/spaces/resources/{resource_id:int}", self._resource_one, methods=["GET"]),
            Route("/api/spaces/coworkers", self._coworker_list, methods=["GET"]),
            Route("/api/spaces/coworkers/{coworker_id:int}", self._coworker_one, methods=["GET"]),
            Route("/api/sys/businesses", self._business_list, methods=["GET"]),
            Route("/api/sys/businesses/{business_id:int}", self._business_one, methods=["GET"]),
            Route("/api/sys/simpletimezones", self._zone_list, methods=["GET"]),
        ]

    async def _token(self, request: Request) -> Response:
        """``POST /api/token``."""
        form = _read_form(await request.body())
        with self._lock:
            return self._answer(lambda: self.accounts.token_reply(form))

    async def _bookings(self, request: Request) -> Response:
        """``GET``/``POST``/``PUT /api/spaces/bookings``."""
        body = await request.body() if request.method != "GET" else b""
        with self._lock:
            try:
                user = self.accounts.authenticate(request.headers.get("Authorization"))
                if request.method == "GET":
                    return JSONResponse(self._list_bookings(request))
                payload = _json_object(body)
                if request.method == "POST":
                    return JSONResponse(self.data.create(payload, user))
                return JSONResponse(self.data.update(payload, user))
            except ApiProblem as problem:
                return problem.response()

    def _list_bookings(self, request: Request) -> Record:
        """The booking list envelope."""
        page_request = parse_list_query(request.query_params.multi_items(), BOOKING_QUERY)
        rows, paging = select_page(self.data.bookings.values(), page_request)
        return {"Records": [self.data.render_booking(r, partial=True) for r in rows], **paging}

    async def _booking(self, request: Request) -> Response:
        """``GET``/``DELETE /api/spaces/bookings/{id}``."""
        booking_id = int(request.path_params["booking_id"])
        with self._lock:

            def reply() -> Record:
                user = self.accounts.authenticate(request.headers.get("Authorization"))
                if request.method == "DELETE":
                    return self.data.delete(booking_id, user)
                record = self.data.booking_or_404(booking_id)
                return self.data.render_booking(record, partial=False)

            return self._answer(reply)

    async def _cancelled_list(self, request: Request) -> Response:
        """``GET /api/spaces/cancelledbookings``."""
        with self._lock:

            def reply() -> Record:
                self.accounts.authenticate(request.headers.get("Authorization"))
                query = parse_list_query(request.query_params.multi_items(), CANCELLED_QUERY)
                rows, paging = select_page(self.data.cancelled.values(), query)
                records = [self.data.render_booking(r, partial=True) for r in rows]
                return {"Records": records, **paging}

            return self._answer(reply)

    async def _cancelled_one(self, request: Request) -> Response:
        """``GET /api/spaces/cancelledbookings/{id}``."""
        booking_id = int(request.path_params["booking_id"])
        with self._lock:

            def reply() -> Record:
                self.accounts.authenticate(request.headers.get("Authorization"))
                record = self.data.cancelled.get(booking_id)
                if record is None:
                    raise ApiProblem(404, NOT_FOUND)
                return self.data.render_booking(record, partial=False)

            return self._answer(reply)

    async def _resource_list(self, request: Request) -> Response:
        """``GET /api/spaces/resources``."""
        return self._simple_list(request, self.data.resources, RESOURCE_QUERY)

    async def _resource_one(self, request: Request) -> Response:
        """``GET /api/spaces/resources/{id}``."""
        return self._simple_one(request, self.data.resources, "resource_id")

    async def _coworker_list(self, request: Request) -> Response:
        """``GET /api/spaces/coworkers``."""
        return self._simple_list(request, self.data.coworkers, COWORKER_QUERY)

    async def _coworker_one(self, request: Request) -> Response:
        """``GET /api/spaces/coworkers/{id}``."""
        return self._simple_one(request, self.data.coworkers, "coworker_id")

    async def _business_list(self, request: Request) -> Response:
        """``GET /api/sys/businesses``."""
        return self._simple_list(request, self.data.businesses, BUSINESS_QUERY)

    async def _business_one(self, request: Request) -> Response:
        """``GET /api/sys/businesses/{id}``."""
        return self._simple_one(request, self.data.businesses, "business_id")

    async def _zone_list(self, request: Request) -> Response:
        """``GET /api/sys/simpletimezones``."""
        zones = {
            ZONE_IDS[name]: {
                "Id": ZONE_IDS[name],
                "Name": name,
                "Description": description,
                "TimeOffset": offset,
                "UsesSummerTime": summer,
            }
            for name, (_, description, offset, summer) in SUPPORTED_ZONES.items()
        }
        return self._simple_list(request, zones, ZONE_QUERY)

    def _simple_list(
        self, request: Request, table: Mapping[int, Record], query: EntityQuery
    ) -> Response:
        """A list endpoint over a plain table."""
        with self._lock:

            def reply() -> Record:
                self.accounts.authenticate(request.headers.get("Authorization"))
                page_request = parse_list_query(request.query_params.multi_items(), query)
                rows, paging = select_page(table.values(), page_request)
                return {"Records": [_render(row) for row in rows], **paging}

            return self._answer(reply)

    def _simple_one(self, request: Request, table: Mapping[int, Record], key: str) -> Response:
        """A get-one endpoint over a plain table."""
        with self._lock:

            def reply() -> Record:
                self.accounts.authenticate(request.headers.get("Authorization"))
                record = table.get(int(request.path_params[key]))
                if record is None:
                    raise ApiProblem(404, NOT_FOUND)
                return _render(record)

            return self._answer(reply)

    @staticmethod
    def _answer(reply: Callable[[], Record]) -> Response:
        """JSON of ``reply()``, or the error reply of the ApiProblem it raised."""
        try:
            return JSONResponse(reply())
        except ApiProblem as problem:
            return problem.response()


def _render(record: Mapping[str, Any]) -> Record:
    """A plain stored record as JSON (internal helper fields dropped)."""
    return {
        name: render_value(value) for name, value in record.items() if name != "SimpleTimeZoneName"
    }


def _json_object(raw: bytes) -> Record:
    """A JSON object request body, or the 400 Nexudus gives for a malformed one."""
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ApiProblem(
            400,
            {
                "Message": "The request is invalid.",
                "Value": None,
                "Errors": None,
                "WasSuccessful": False,
            },
        )
    return body


def _utc(instant: datetime) -> datetime:
    """An aware instant in UTC, whole seconds."""
    if instant.tzinfo is None:
        raise ValueError("booking times must be aware")
    return instant.astimezone(UTC).replace(microsecond=0)


# ----- running it by hand --------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``python -m bridge.emulators.nexudus --port N``: serve a small emulator until Ctrl-C.

    The admin user and password come from ``NEXUDUS_USER`` / ``NEXUDUS_PASSWORD``, the same
    variables a bridge config would reference, so they never appear on a command line.
    """
    import uvicorn

    parser = argparse.ArgumentParser(description="Serve the Nexudus admin-API emulator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8181)
    args = parser.parse_args(argv)
    user = os.environ.get("NEXUDUS_USER", "admin@example.com")
    password = os.environ.get("NEXUDUS_PASSWORD")
    if not password:
        parser.error("set NEXUDUS_PASSWORD to the password the emulator should accept")
    emulator = NexudusEmulator()
    emulator.add_user(user, password)
    business = emulator.add_business("Demo Space")
    emulator.add_resource("Meeting Room", business_id=business)
    print(f"Nexudus emulator on http://{args.host}:{args.port}/api (user {user})")
    uvicorn.run(emulator.app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
