"""OfficeRnD booking objects (API v1 and v2 "Flex" shapes) ⇄ canonical bookings.

Both shapes are read: v1 (``start.dateTime``, ``resourceId``, ``summary``, ``team``,
``canceled``) and v2 (``start`` as a plain ISO string, ``resource``, ``title``, ``company``,
``isCancelled``); ``_id`` is the key. ``timezone`` is the booked resource's IANA zone; the
``timezone`` parameter is used only when the object carries none, and ``UTC`` after that.

A recurring booking is one object whose ``start``/``end`` are the first instance (UTC
instants) and whose ``recurrence.rrule`` is evaluated on the resource's wall clock, so DTSTART
is that instant in the resource's zone; ``UNTIL`` stays a UTC instant.

OfficeRnD documents no API for per-instance exceptions, only ``/bookings/occurrences``. When
the object carries an ``occurrences`` array, that list is the truth for the period it covers
(``covered``; by default from the series' first instance to its end, or to the last listed
occurrence when the rule never ends): cancelled
instances become EXDATEs, instances whose times differ from the rule instant they stand for
become overrides, an instance the rule does not produce is paired with an unclaimed rule
instant of the same local date (an override) or else becomes an RDATE, and rule instants in
the covered period with no listed occurrence are excluded. The occurrences of a booking
without a rule are ignored: the object itself is the truth.

``recurrence.rrule`` may carry ``EXDATE:`` lines (UTC instants) after the RRULE: the bridge
writes them to leave occurrences out of a series it creates (:func:`rule_text`); they are read
back as EXDATEs.

All-day (``start.date``) bookings are refused: the API does not say whether their end date is
inclusive.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bridge.model import (
    NO_BUFFERS,
    Booking,
    BookingStatus,
    Buffers,
    Override,
    Person,
    Recurrence,
    Window,
)
from mappings.errors import (
    InvalidValue,
    MalformedInput,
    MappingError,
    MissingField,
    UnknownTimezone,
)
from mappings.expansion import compile_rule, join_rule, rule_instants, rule_parts

KIND = "officernd"

#: Zone used when neither the object nor the caller names one: instants stay exact.
FALLBACK_ZONE = "UTC"

#: Extra fields kept on the canonical booking so that ``to_json`` can write them back.
EXTRA_TEXT_FIELDS = ("member", "company", "source")
EXTRA_LIST_FIELDS = ("members", "visitors")

#: How far past the last listed occurrence an endless rule is expanded for pairing by date.
_PAIRING_SLACK = timedelta(days=2)

#: Expansion bound for rules that end by themselves (COUNT/UNTIL): effectively "all of it".
_SERIES_HORIZON = datetime(9000, 1, 1, tzinfo=UTC)

JsonObject = Mapping[str, object]


# --------------------------------------------------------------------------- reading


def from_json(
    data: object,
    *,
    provider: str = KIND,
    timezone: str | None = None,
    covered: Window | None = None,
) -> list[Booking]:
    """Canonical bookings from one OfficeRnD booking object, a list of them, or a page.

    ``covered`` is the period an embedded ``occurrences`` array is complete for (the window
    the occurrences were fetched for); by default the whole series, or up to the last listed
    occurrence when the rule never ends.
    """
    return [
        booking_from_object(item, provider=provider, timezone=timezone, covered=covered)
        for item in _booking_objects(data)
    ]


def _booking_objects(data: object) -> list[JsonObject]:
    """The booking objects of a single object, a JSON array, a v2 page or a webhook body."""
    if isinstance(data, Mapping):
        results = data.get("results")
        if isinstance(results, list):
            return _booking_objects(results)
        payload = data.get("data")
        if isinstance(payload, Mapping) and isinstance(payload.get("object"), Mapping):
            return _booking_objects(payload["object"])
        return [data]
    if isinstance(data, list):
        objects: list[JsonObject] = []
        for index, item in enumerate(data):
            if not isinstance(item, Mapping):
                raise MalformedInput(f"item {index} is not a booking object", field=f"[{index}]")
            objects.append(item)
        return objects
    raise MalformedInput("expected an OfficeRnD booking object or a list of them")


def booking_from_object(
    obj: JsonObject,
    *,
    provider: str = KIND,
    timezone: str | None = None,
    covered: Window | None = None,
) -> Booking:
    """One canonical booking from one OfficeRnD booking object (v1 or v2 shape)."""
    key = _booking_id(obj)
    zone_name = _zone_name(obj.get("timezone"), timezone, key)
    zone = ZoneInfo(zone_name)
    start = _when(obj, "start", key).astimezone(zone)
    end = _when(obj, "end", key).astimezone(zone)
    if end <= start:
        raise InvalidValue("end is not after start", booking=key, field="end")
    member = obj.get("member")
    return Booking(
        provider=provider,
        key=key,
        resource=_reference(obj, ("resource", "resourceId"), key, required=True) or "",
        start=start,
        end=end,
        timezone=zone_name,
        status=_status(obj, key),
        title=_text(obj, ("title", "summary"), key),
        description=_text(obj, ("description",), key),
        organizer=_member_person(member),
        buffers=_buffers(obj.get("serviceSlots"), key),
        recurrence=_recurrence(obj, key, start, end, zone, covered),
        version=_optional_text(obj.get("modifiedAt"), key, "modifiedAt"),
        updated=_optional_instant(obj.get("modifiedAt"), key, "modifiedAt"),
        extra=_extra(obj, key),
    )


def _booking_id(obj: JsonObject) -> str:
    """The booking's ``_id``."""
    value = obj.get("_id")
    if value is None:
        raise MissingField("booking object has no _id", field="_id")
    if not isinstance(value, str) or not value.strip():
        raise InvalidValue("_id must be a non-empty string", field="_id")
    return value.strip()


def _zone_name(value: object, fallback: str | None, key: str) -> str:
    """The resource's IANA zone: the object's, else the caller's, else UTC."""
    if value is None or value == "":
        value = fallback or FALLBACK_ZONE
    if not isinstance(value, str):
        raise InvalidValue("timezone must be a string", booking=key, field="timezone")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise UnknownTimezone(
            f"unknown time zone {value!r}", booking=key, field="timezone"
        ) from exc
    return value


def _when(obj: JsonObject, name: str, key: str, prefix: str = "") -> datetime:
    """``start``/``end`` as an aware instant, from ``{dateTime}`` (v1) or a string (v2)."""
    value = obj.get(name)
    field = f"{prefix}{name}"
    if isinstance(value, Mapping):
        moment = value.get("dateTime")
        if moment is None and value.get("date") is not None:
            raise InvalidValue(
                "all-day (date-only) bookings are not supported", booking=key, field=f"{field}.date"
            )
        if moment is None:
            raise MissingField(f"{name} has no dateTime", booking=key, field=f"{field}.dateTime")
        return _instant(moment, key, f"{field}.dateTime")
    if value is None:
        raise MissingField(f"{name} is missing", booking=key, field=field)
    return _instant(value, key, field)


def _instant(value: object, key: str, field: str) -> datetime:
    """An aware datetime from an ISO 8601 string that carries a UTC offset."""
    if not isinstance(value, str):
        raise InvalidValue("expected an ISO 8601 date-time string", booking=key, field=field)
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise InvalidValue(f"malformed date-time {value!r}", booking=key, field=field) from exc
    if moment.tzinfo is None:
        raise InvalidValue(f"date-time {value!r} has no UTC offset", booking=key, field=field)
    return moment


def _optional_instant(value: object, key: str, field: str) -> datetime | None:
    """An aware datetime, or ``None`` when the field is absent."""
    return None if value is None else _instant(value, key, field)


def _optional_text(value: object, key: str, field: str) -> str | None:
    """A string field that may be absent."""
    if value is None or isinstance(value, str):
        return value
    raise InvalidValue("expected a string", booking=key, field=field)


def _text(obj: JsonObject, names: Sequence[str], key: str) -> str:
    """The first present string among ``names`` (v2 name first), else empty."""
    for name in names:
        value = _optional_text(obj.get(name), key, name)
        if value is not None:
            return value
    return ""


def _reference(
    obj: JsonObject, names: Sequence[str], key: str, *, required: bool = False
) -> str | None:
    """An id reference, given either as an id string or as a populated object with ``_id``."""
    for name in names:
        value = obj.get(name)
        if value is None:
            continue
        if isinstance(value, Mapping):
            value = value.get("_id")
        if isinstance(value, str) and value:
            return value
        raise InvalidValue("expected an id string or an object with _id", booking=key, field=name)
    if required:
        raise MissingField(f"{' / '.join(names)} is missing", booking=key, field=names[0])
    return None


def _flag(obj: JsonObject, names: Sequence[str], key: str, prefix: str = "") -> bool:
    """Whether any of the boolean fields ``names`` is true (absent means false)."""
    for name in names:
        value = obj.get(name)
        if value is None:
            continue
        if not isinstance(value, bool):
            raise InvalidValue("expected true or false", booking=key, field=f"{prefix}{name}")
        if value:
            return True
    return False


def _status(obj: JsonObject, key: str) -> BookingStatus:
    """Cancelled wins over tentative; everything else is confirmed."""
    if _flag(obj, ("canceled", "isCancelled"), key):
        return BookingStatus.CANCELLED
    if _flag(obj, ("tentative", "isTentative"), key):
        return BookingStatus.TENTATIVE
    return BookingStatus.CONFIRMED


def _member_person(value: object) -> Person | None:
    """The organizer, when ``member`` is a populated object with a name or email."""
    if not isinstance(value, Mapping):
        return None
    email, name = value.get("email"), value.get("name")
    person = Person(
        email=email if isinstance(email, str) and email else None,
        name=name if isinstance(name, str) and name else None,
    )
    return person if person.email or person.name else None


def _buffers(value: object, key: str) -> Buffers:
    """``serviceSlots.before/after`` minutes as setup/cleanup buffers."""
    if value is None:
        return NO_BUFFERS
    if not isinstance(value, Mapping):
        raise InvalidValue("serviceSlots must be an object", booking=key, field="serviceSlots")
    return Buffers(
        before=_minutes(value.get("before"), key, "serviceSlots.before"),
        after=_minutes(value.get("after"), key, "serviceSlots.after"),
    )


def _minutes(value: object, key: str, field: str) -> timedelta:
    """A non-negative number of minutes (absent means zero)."""
    if value is None:
        return timedelta(0)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidValue("expected a number of minutes", booking=key, field=field)
    if not math.isfinite(value) or value < 0:
        raise InvalidValue(f"{value!r} is not a duration in minutes", booking=key, field=field)
    return timedelta(minutes=value)


def _extra(obj: JsonObject, key: str) -> tuple[tuple[str, str], ...]:
    """Writable OfficeRnD fields with no canonical home, kept for the way back."""
    pairs: dict[str, str] = {}
    member = _reference(obj, ("member",), key)
    company = _reference(obj, ("company", "team"), key)
    source = _optional_text(obj.get("source"), key, "source")
    for name, text in (("member", member), ("company", company), ("source", source)):
        if text:
            pairs[name] = text
    for name in EXTRA_LIST_FIELDS:
        ids = _id_list(obj.get(name), key, name)
        if ids:
            pairs[name] = ",".join(ids)
    if obj.get("free") is not None:
        pairs["free"] = "true" if _flag(obj, ("free",), key) else "false"
    return tuple(sorted(pairs.items()))


def _id_list(value: object, key: str, field: str) -> list[str]:
    """A list of ids, each given as a string or a populated object with ``_id``."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidValue("expected a list of ids", booking=key, field=field)
    ids: list[str] = []
    for index, item in enumerate(value):
        ident = item.get("_id") if isinstance(item, Mapping) else item
        if not isinstance(ident, str) or not ident or "," in ident:
            raise InvalidValue("expected an id", booking=key, field=f"{field}[{index}]")
        ids.append(ident)
    return ids


# --------------------------------------------------------------------------- recurrence


def _recurrence(
    obj: JsonObject,
    key: str,
    start: datetime,
    end: datetime,
    zone: ZoneInfo,
    covered: Window | None,
) -> Recurrence | None:
    """The booking's recurrence: its rule, reconciled with any listed occurrences."""
    text = _rule_text(obj.get("recurrence"), key)
    if text is None:
        return None
    value, excluded = _rule_lines(text, key, zone)
    rule = _rule(value, key, start, zone)
    listed = _listed_occurrences(obj.get("occurrences"), key)
    if not listed:
        if covered is not None and isinstance(obj.get("occurrences"), list):
            # An empty list for a known period: every instance in it was cancelled or moved out.
            found = Recurrence(rrule=rule, exdates=_instants_in(rule, start, zone, covered))
        else:
            found = Recurrence(rrule=rule)
    else:
        found = _reconcile(rule, start, end, zone, listed, covered, key)
    if not excluded:
        return found
    exdates = tuple(sorted({*found.exdates, *excluded}))
    return Recurrence(found.rrule, found.rdates, exdates, found.overrides)


def _rule_text(value: object, key: str) -> str | None:
    """``recurrence.rrule`` as given, or ``None`` when the booking does not recur."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidValue("recurrence must be an object", booking=key, field="recurrence")
    text = value.get("rrule")
    if text is None or text == "":
        return None
    if not isinstance(text, str):
        raise InvalidValue("rrule must be a string", booking=key, field="recurrence.rrule")
    return text


def _rule_lines(text: str, key: str, zone: ZoneInfo) -> tuple[str, tuple[datetime, ...]]:
    """The RRULE value of ``recurrence.rrule`` and the instants its EXDATE lines leave out."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    excluded: list[datetime] = []
    for line in lines[1:]:
        name, _sep, listed = line.partition(":")
        if name.strip().upper() != "EXDATE" or not listed:
            raise InvalidValue(
                f"unexpected line {line!r} after the RRULE", booking=key, field="recurrence.rrule"
            )
        for item in listed.split(","):
            try:
                moment = datetime.strptime(item.strip(), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            except ValueError as exc:
                raise InvalidValue(
                    f"EXDATE {item!r} is not a UTC date-time", booking=key,
                    field="recurrence.rrule",
                ) from exc
            excluded.append(moment.astimezone(zone))
    return (lines[0] if lines else text), tuple(excluded)


def rule_text(booking: Booking) -> str | None:
    """``recurrence.rrule`` for a booking: its RRULE, then one EXDATE line of what it skips.

    OfficeRnD documents only the RRULE; the EXDATE line is RFC 5545's (and rrule.js's, which
    reads both) way for one series to leave occurrences out (see the emulator's docstring).
    """
    recurrence = booking.recurrence
    if recurrence is None or not recurrence.rrule:
        return None
    if not recurrence.exdates:
        return recurrence.rrule
    skipped = ",".join(
        sorted({m.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ") for m in recurrence.exdates})
    )
    return f"RRULE:{recurrence.rrule}\nEXDATE:{skipped}"


def _instants_in(
    rule: str, start: datetime, zone: ZoneInfo, period: Window
) -> tuple[datetime, ...]:
    """The rule's instants (DTSTART included) inside ``period``, in the room's zone."""
    instants = [start.astimezone(zone), *rule_instants(rule, start, zone, period.end)]
    return tuple(sorted({i for i in instants if period.start <= i < period.end}))


def _rule(text: str, key: str, start: datetime, zone: ZoneInfo) -> str:
    """The normalised RRULE value (UNTIL in UTC), validated against DTSTART."""
    field = "recurrence.rrule"
    try:
        parts = rule_parts(text)
        if "UNTIL" in parts:
            parts["UNTIL"] = _utc_until(parts["UNTIL"], zone)
        rule = join_rule(parts)
        compile_rule(rule, start, zone)
    except MappingError as exc:
        raise type(exc)(exc.reason, booking=key, field=field) from exc
    return rule


def _utc_until(value: str, zone: ZoneInfo) -> str:
    """UNTIL as a UTC ``Z`` instant; a local or DATE value is read on the room's wall clock."""
    try:
        if value.endswith("Z"):
            moment = datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        elif "T" in value:
            moment = datetime.strptime(value, "%Y%m%dT%H%M%S").replace(tzinfo=zone)
        else:
            # A DATE UNTIL includes that whole local day.
            day = datetime.strptime(value, "%Y%m%d")
            moment = day.replace(hour=23, minute=59, second=59, tzinfo=zone)
    except ValueError as exc:
        raise InvalidValue(f"malformed UNTIL {value!r}", field="RRULE") from exc
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


@dataclass(frozen=True, slots=True)
class ListedOccurrence:
    """One item of an ``occurrences`` array: where an instance is, and whether it is off."""

    start: datetime
    end: datetime
    cancelled: bool


def _listed_occurrences(value: object, key: str) -> list[ListedOccurrence]:
    """The ``occurrences`` array, validated (UTC instants)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidValue("occurrences must be a list", booking=key, field="occurrences")
    listed: list[ListedOccurrence] = []
    for index, item in enumerate(value):
        prefix = f"occurrences[{index}]."
        if not isinstance(item, Mapping):
            raise InvalidValue("expected an object", booking=key, field=prefix.rstrip("."))
        owner = item.get("bookingId", item.get("booking"))
        if owner is not None and owner != key:
            raise InvalidValue(
                f"occurrence belongs to booking {owner!r}", booking=key, field=f"{prefix}bookingId"
            )
        start = _when(item, "start", key, prefix).astimezone(UTC)
        end = _when(item, "end", key, prefix).astimezone(UTC)
        if end <= start:
            raise InvalidValue("end is not after start", booking=key, field=f"{prefix}end")
        cancelled = _flag(item, ("canceled", "isCancelled"), key, prefix)
        listed.append(ListedOccurrence(start, end, cancelled))
    return listed


def _distinct(listed: list[ListedOccurrence], key: str) -> list[ListedOccurrence]:
    """One entry per start: a live entry hides a cancelled one at the same instant."""
    by_start: dict[datetime, ListedOccurrence] = {}
    for item in sorted(listed, key=lambda o: (o.start, o.cancelled, o.end)):
        known = by_start.get(item.start)
        if known is None:
            by_start[item.start] = item
        elif not known.cancelled and not item.cancelled:
            raise InvalidValue(
                f"two live occurrences start at {item.start.isoformat()}",
                booking=key,
                field="occurrences",
            )
    return list(by_start.values())


class _Claims:
    """Rule instants (UTC) not yet matched to a listed occurrence, grouped by local date."""

    def __init__(self, instants: list[datetime], zone: ZoneInfo) -> None:
        self.zone = zone
        self.by_day: dict[date, list[datetime]] = {}
        for instant in sorted(set(instants)):
            self.by_day.setdefault(_local_day(instant, zone), []).append(instant)

    def take(self, instant: datetime) -> bool:
        """Claim ``instant`` if it is an unclaimed rule instant."""
        bucket = self.by_day.get(_local_day(instant, self.zone), [])
        if instant in bucket:
            bucket.remove(instant)
            return True
        return False

    def take_same_day(self, moment: datetime) -> datetime | None:
        """Claim the first unclaimed rule instant on ``moment``'s local date."""
        bucket = self.by_day.get(_local_day(moment, self.zone))
        return bucket.pop(0) if bucket else None

    def unclaimed(self) -> list[datetime]:
        """The rule instants no listed occurrence stands for, sorted."""
        return sorted(instant for bucket in self.by_day.values() for instant in bucket)


def _local_day(moment: datetime, zone: ZoneInfo) -> date:
    """The date of an instant on the room's wall clock."""
    return moment.astimezone(zone).date()


@dataclass
class _Exceptions:
    """EXDATEs, RDATEs and overrides gathered while pairing listed occurrences (UTC)."""

    exdates: list[datetime]
    rdates: list[datetime]
    overrides: list[Override]


def _reconcile(
    rule: str,
    start: datetime,
    end: datetime,
    zone: ZoneInfo,
    listed: list[ListedOccurrence],
    covered: Window | None,
    key: str,
) -> Recurrence:
    """The rule plus the exceptions that make its expansion equal the listed occurrences."""
    duration = end - start  # on the wall clock: start and end share the room's zone
    items = _distinct(listed, key)
    bounded = _is_bounded(rule)
    horizon = _SERIES_HORIZON if bounded else max(i.start for i in items) + _PAIRING_SLACK
    instants = [start.astimezone(UTC)]
    instants += [i.astimezone(UTC) for i in rule_instants(rule, start, zone, horizon)]
    claims = _Claims(instants, zone)
    found = _Exceptions([], [], [])
    claimed: list[datetime] = []

    # Exact instants first, so an occurrence moved onto another day never steals one.
    unpaired: list[ListedOccurrence] = []
    for item in items:
        if claims.take(item.start):
            claimed.append(item.start)
            _record(found, item.start, item, _rule_end(item.start, zone, duration))
        else:
            unpaired.append(item)
    for item in sorted(unpaired, key=lambda o: (o.cancelled, o.start)):
        instant = claims.take_same_day(item.start)
        if instant is not None:
            claimed.append(instant)
            _record(found, instant, item, _rule_end(instant, zone, duration))
        elif not item.cancelled:
            found.rdates.append(item.start)
            if item.end != _rule_end(item.start, zone, duration):
                found.overrides.append(Override(item.start, item.start, item.end))

    seen = [*claimed, *(item.start for item in items)]
    first, last = _covered_span(covered, start, None if bounded else max(seen))
    found.exdates += [i for i in claims.unclaimed() if first <= i <= last]
    return Recurrence(
        rrule=rule,
        rdates=tuple(i.astimezone(zone) for i in sorted(found.rdates)),
        exdates=tuple(i.astimezone(zone) for i in sorted(found.exdates)),
        overrides=tuple(
            Override(
                o.recurrence_id.astimezone(zone), o.start.astimezone(zone), o.end.astimezone(zone)
            )
            for o in sorted(found.overrides, key=lambda o: o.recurrence_id)
        ),
    )


def _rule_end(instant: datetime, zone: ZoneInfo, duration: timedelta) -> datetime:
    """Where an unmodified instance starting at ``instant`` ends.

    Like RFC 5545 expanders (recurring-ical-events, mappings.expansion) the length is kept on
    the room's wall clock, so an instance spanning a DST change is an hour longer or shorter.
    """
    return instant.astimezone(zone) + duration


def _record(
    found: _Exceptions, instant: datetime, item: ListedOccurrence, rule_end: datetime
) -> None:
    """What a listed occurrence paired with rule ``instant`` means: nothing, EXDATE or override."""
    if item.cancelled:
        found.exdates.append(instant)
    elif item.start != instant or item.end != rule_end:
        found.overrides.append(Override(instant, item.start, item.end))


def _is_bounded(rule: str) -> bool:
    """Whether the rule ends by itself (COUNT or UNTIL)."""
    parts = rule_parts(rule)
    return "COUNT" in parts or "UNTIL" in parts


def _covered_span(
    covered: Window | None, start: datetime, last_seen: datetime | None
) -> tuple[datetime, datetime]:
    """The inclusive period in which a rule instant with no listed occurrence is excluded.

    Without an explicit window the listing covers the series from its first instance: to its
    end when the rule ends by itself, else up to the last listed occurrence.
    """
    if covered is not None:
        # Window is half-open; the largest instant strictly before its end is inside it.
        return covered.start, covered.end - timedelta(microseconds=1)
    return start.astimezone(UTC), last_seen or _SERIES_HORIZON


# --------------------------------------------------------------------------- writing


def _utc_text(moment: datetime) -> str:
    """An instant the way OfficeRnD writes it: UTC with milliseconds and ``Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _minutes_value(delta: timedelta) -> int | float:
    """A buffer as a number of minutes, integral when it is whole."""
    minutes = delta.total_seconds() / 60
    return int(minutes) if minutes.is_integer() else minutes


def _writable_parts(booking: Booking) -> dict[str, object]:
    """The fields every create body carries, under their v2 names."""
    if booking.status is BookingStatus.CANCELLED:
        raise InvalidValue(
            "a cancelled booking has no create body (cancel it with POST /bookings/{id}/cancel)",
            booking=booking.key,
            field="status",
        )
    body: dict[str, object] = {
        "start": _utc_text(booking.start),
        "end": _utc_text(booking.end),
        "title": booking.title,
        "description": booking.description,
        "tentative": booking.status is BookingStatus.TENTATIVE,
        "serviceSlots": {
            "before": _minutes_value(booking.buffers.before),
            "after": _minutes_value(booking.buffers.after),
        },
    }
    rule = booking.recurrence.rrule if booking.recurrence else None
    if rule:
        body["recurrence"] = {"rrule": rule}
    for name in EXTRA_TEXT_FIELDS:
        value = booking.extra_value(name)
        if value:
            body[name] = value
    for name in EXTRA_LIST_FIELDS:
        value = booking.extra_value(name)
        if value:
            body[name] = value.split(",")
    free = booking.extra_value("free")
    if free is not None:
        body["free"] = free == "true"
    return body


def to_json(booking: Booking) -> dict[str, object]:
    """A v2 ``POST /bookings`` body for the booking (instance changes: ``occurrence_changes``)."""
    return {"resource": booking.resource, **_writable_parts(booking)}


def to_v1_json(booking: Booking) -> dict[str, object]:
    """A v1 booking body (``POST /bookings`` takes a JSON array of these)."""
    body = _writable_parts(booking)
    renamed: dict[str, object] = {
        "resourceId": booking.resource,
        "start": {"dateTime": body.pop("start")},
        "end": {"dateTime": body.pop("end")},
        "summary": body.pop("title"),
    }
    if "company" in body:
        renamed["team"] = body.pop("company")
    return {**renamed, **body}


class OccurrenceAction(StrEnum):
    """What must happen to one instance of an OfficeRnD series."""

    CANCEL = "cancel"
    MOVE = "move"
    ADD = "add"


@dataclass(frozen=True, slots=True)
class OccurrenceChange:
    """One instance that differs from the series rule.

    ``occurrence`` is the rule instant the change applies to (for ``ADD``, the extra
    instance's own start); ``start``/``end`` are the new times of a move or an addition.
    OfficeRnD cannot hold an extra instance inside a series, so ``ADD`` means a separate
    one-off booking.
    """

    action: OccurrenceAction
    occurrence: datetime
    start: datetime | None = None
    end: datetime | None = None

    def as_json(self) -> dict[str, object]:
        """The change as JSON (UTC instants)."""
        body: dict[str, object] = {
            "action": self.action.value,
            "occurrence": _utc_text(self.occurrence),
        }
        if self.start is not None and self.end is not None:
            body["start"] = _utc_text(self.start)
            body["end"] = _utc_text(self.end)
        return body


def occurrence_changes(booking: Booking) -> list[OccurrenceChange]:
    """The instance cancellations, moves and additions that ``to_json``'s rule cannot say.

    Override titles and descriptions are not representable per instance in OfficeRnD and
    are left out.
    """
    recurrence = booking.recurrence
    if recurrence is None:
        return []
    excluded = {moment.astimezone(UTC) for moment in recurrence.exdates}
    overrides = {o.recurrence_id.astimezone(UTC): o for o in recurrence.overrides}
    changes = [OccurrenceChange(OccurrenceAction.CANCEL, moment) for moment in sorted(excluded)]
    for rdate in sorted({moment.astimezone(UTC) for moment in recurrence.rdates} - excluded):
        moved = overrides.pop(rdate, None)
        if moved is not None and moved.status is BookingStatus.CANCELLED:
            continue
        plain_end = _rule_end(rdate, booking.zone, booking.duration)
        start, end = (moved.start, moved.end) if moved else (rdate, plain_end)
        changes.append(OccurrenceChange(OccurrenceAction.ADD, rdate, start, end))
    for instant, override in sorted(overrides.items()):
        if instant in excluded:
            continue
        if override.status is BookingStatus.CANCELLED:
            changes.append(OccurrenceChange(OccurrenceAction.CANCEL, instant))
        elif override.start != instant or override.end != _rule_end(
            instant, booking.zone, booking.duration
        ):
            changes.append(
                OccurrenceChange(OccurrenceAction.MOVE, instant, override.start, override.end)
            )
    return sorted(changes, key=lambda change: (change.occurrence, change.action.value))
