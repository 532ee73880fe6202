"""Microsoft Graph event resources ⇄ canonical bookings, and patternedRecurrence ⇄ RRULE.

Reading (``from_json``) takes one event, a JSON array of events, or a page (``{"value": [...]}``).
A series is its ``seriesMaster`` plus ``occurrence``/``exception`` items linked by
``seriesMasterId`` (or, for the bridge's own instance bodies, by the booking-key extended
property): exceptions become overrides keyed by ``originalStart``; cancelled occurrences or
exceptions (``isCancelled``) become EXDATEs; plain occurrences add nothing (the pattern makes
them). In a list, ``@removed`` rows are skipped: they carry only an id.

``start``/``end`` are ``dateTimeTimeZone`` values whose zone may be a Windows id ("GMT Standard
Time"), an IANA name or UTC; they are resolved through ``mappings.timezones``. The booking's
zone is the IANA name the bridge stored in its data property when that still agrees with the
event's ``originalStartTimeZone``, else that Windows zone's CLDR default.

Writing (``to_json`` + ``instance_bodies``) produces the series master (or single event) body
with a deterministic ``transactionId`` (idempotent creation, DESIGN rule 1) and two
single-value extended properties: the booking key (what the backend filters on) and the data
that restores the booking (resource, IANA zone, buffers, version, extra fields and the exact
RRULE). Graph cannot carry EXDATEs or modified instances in the series body: each override
becomes an ``exception`` body to PATCH onto the occurrence with that ``originalStart``, each
EXDATE an ``isCancelled`` ``occurrence`` body whose occurrence the backend deletes.

What a patternedRecurrence cannot express (RDATEs, HOURLY rules, BYSETPOS outside the relative
forms, several BYMONTHDAY values, a DTSTART that is not an occurrence, ...) is refused by
``rrule_to_patterned`` with ``UnsupportedRecurrence``; ``is_representable`` tells the backend
to fall back to separate events. Outlook puts "day 29-31 of the month" on the last day of
shorter months where RFC 5545 skips them, so such rules are mapped to the RFC form of
Outlook's meaning (``BYMONTHDAY=28,29,30;BYSETPOS=-1``) and back.
"""

from __future__ import annotations

import calendar
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from html.parser import HTMLParser
from zoneinfo import ZoneInfo

from bridge.model import (
    Booking,
    BookingKey,
    BookingStatus,
    Buffers,
    Override,
    Person,
    Recurrence,
)
from mappings.errors import (
    InvalidValue,
    MalformedInput,
    MappingError,
    MissingField,
    UnknownTimezone,
    UnsupportedRecurrence,
)
from mappings.expansion import compile_rule, join_rule, rule_parts
from mappings.timezones import iana_to_windows, resolve_zone

KIND = "graph"

#: Zone used when neither the event nor the caller names one: instants stay exact.
FALLBACK_ZONE = "UTC"

#: The bridge's MAPI property set (a UUIDv5 of a roombridge URL, fixed forever).
PROPERTY_SET = "{98DAC705-684C-5EA4-91F7-0751078DC845}"
#: Single-value extended property holding the booking key (``["provider", "key"]``).
KEY_PROPERTY_ID = f"String {PROPERTY_SET} Name RoombridgeKey"
#: Single-value extended property holding the rest of the round-trip data (a JSON object).
DATA_PROPERTY_ID = f"String {PROPERTY_SET} Name RoombridgeData"

JsonObject = Mapping[str, object]

PATTERN_TYPES = (
    "daily",
    "weekly",
    "absoluteMonthly",
    "relativeMonthly",
    "absoluteYearly",
    "relativeYearly",
)
RANGE_TYPES = ("endDate", "noEnd", "numbered")

#: Graph day names in RRULE order (Monday first, as ``BYDAY`` is written).
DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_RRULE_DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_DAY_BY_NAME = dict(zip(DAY_NAMES, _RRULE_DAYS, strict=True))
_NAME_BY_DAY = dict(zip(_RRULE_DAYS, DAY_NAMES, strict=True))

#: ``index`` of relative patterns ⇄ RRULE ordinals.
_ORDINAL_BY_INDEX = {"first": 1, "second": 2, "third": 3, "fourth": 4, "last": -1}
_INDEX_BY_ORDINAL = {ordinal: index for index, ordinal in _ORDINAL_BY_INDEX.items()}

#: The day sets Exchange can use in a relative pattern ("day", "weekday", "weekend day").
_RELATIVE_DAY_SETS = (
    frozenset(_RRULE_DAYS),
    frozenset(_RRULE_DAYS[:5]),
    frozenset(_RRULE_DAYS[5:]),
)

#: RRULE parts a patternedRecurrence can carry (each only in some combinations).
_KNOWN_PARTS = frozenset(
    {"FREQ", "INTERVAL", "COUNT", "UNTIL", "BYDAY", "BYMONTHDAY", "BYMONTH", "BYSETPOS", "WKST"}
)
_FREQUENCIES = frozenset({"DAILY", "WEEKLY", "MONTHLY", "YEARLY"})
_FREQUENCY_BY_PATTERN = {
    "daily": "DAILY",
    "weekly": "WEEKLY",
    "absoluteMonthly": "MONTHLY",
    "relativeMonthly": "MONTHLY",
    "absoluteYearly": "YEARLY",
    "relativeYearly": "YEARLY",
}

#: Zone names whose ``dateTime`` values are UTC instants.
_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Etc/GMT", "GMT", "tzone://Microsoft/Utc"})


# --------------------------------------------------------------------------- identities


def transaction_id_for(key: BookingKey) -> str:
    """The deterministic ``transactionId`` of a booking's event (Graph deduplicates creates)."""
    digest = hashlib.sha256(f"{key.provider}\x00{key.key}".encode()).hexdigest()
    return f"roombridge-{digest[:40]}"


def key_property_value(key: BookingKey) -> str:
    """The value of the booking-key extended property (what the backend filters on)."""
    return json.dumps([key.provider, key.key], ensure_ascii=False, separators=(",", ":"))


# --------------------------------------------------------------------------- RRULE → Graph


def rrule_to_patterned(rrule: str, dtstart: datetime, zone: str) -> dict[str, dict[str, object]]:
    """The ``patternedRecurrence`` for an RRULE starting at ``dtstart`` in ``zone``.

    Raises UnsupportedRecurrence with the reason when Graph cannot express the rule exactly.
    ``UNTIL`` at any time of day maps exactly: every occurrence starts at DTSTART's wall-clock
    time, so ``endDate`` is the last local date whose occurrence starts no later than UNTIL.
    """
    iana = resolve_zone(zone, field="RRULE")
    tz = ZoneInfo(iana)
    parts = rule_parts(rrule)
    local = dtstart.astimezone(tz)
    _refuse_unrepresentable_parts(parts)
    pattern = _pattern(parts, local)
    _require_start_is_occurrence(parts, dtstart, tz)
    return {"pattern": pattern, "range": _range(parts, local, iana)}


def _unsupported(reason: str) -> UnsupportedRecurrence:
    """The error for a rule Graph cannot express."""
    return UnsupportedRecurrence(f"Graph cannot express this rule: {reason}", field="RRULE")


def _refuse_unrepresentable_parts(parts: Mapping[str, str]) -> None:
    """Refuse frequencies and rule parts no patternedRecurrence has."""
    if parts["FREQ"] not in _FREQUENCIES:
        raise _unsupported(f"FREQ={parts['FREQ']}")
    unknown = sorted(set(parts) - _KNOWN_PARTS)
    if unknown:
        raise _unsupported(", ".join(unknown))
    if "COUNT" in parts and "UNTIL" in parts:
        raise InvalidValue("RRULE has both COUNT and UNTIL", field="RRULE")


def _pattern(parts: Mapping[str, str], local: datetime) -> dict[str, object]:
    """The ``recurrencePattern`` for the rule's frequency."""
    interval = _positive_int(parts.get("INTERVAL", "1"), "INTERVAL")
    frequency = parts["FREQ"]
    if frequency == "DAILY":
        return _daily_pattern(parts, interval)
    if frequency == "WEEKLY":
        _refuse_parts(parts, ("BYMONTH", "BYMONTHDAY", "BYSETPOS"), "in a WEEKLY rule")
        days = _plain_days(parts["BYDAY"]) if "BYDAY" in parts else [_RRULE_DAYS[local.weekday()]]
        return _weekly_pattern(interval, days, parts.get("WKST", "MO"))
    if frequency == "MONTHLY":
        _refuse_parts(parts, ("BYMONTH",), "in a MONTHLY rule")
        return _monthly_pattern(parts, interval, local)
    return _yearly_pattern(parts, interval, local)


def _daily_pattern(parts: Mapping[str, str], interval: int) -> dict[str, object]:
    """A DAILY rule; ``BYDAY`` every day is the weekly pattern Outlook calls "every weekday"."""
    _refuse_parts(parts, ("BYMONTH", "BYMONTHDAY", "BYSETPOS"), "in a DAILY rule")
    if "BYDAY" not in parts:
        return {"type": "daily", "interval": interval}
    if interval != 1:
        raise _unsupported("DAILY with BYDAY and INTERVAL > 1")
    return _weekly_pattern(1, _plain_days(parts["BYDAY"]), "MO")


def _weekly_pattern(interval: int, days: Sequence[str], week_start: str) -> dict[str, object]:
    """A weekly pattern (``firstDayOfWeek`` from WKST, RFC 5545's default Monday)."""
    if week_start not in _NAME_BY_DAY:
        raise InvalidValue(f"unknown WKST {week_start!r}", field="RRULE")
    return {
        "type": "weekly",
        "interval": interval,
        "daysOfWeek": [_NAME_BY_DAY[day] for day in _RRULE_DAYS if day in days],
        "firstDayOfWeek": _NAME_BY_DAY[week_start],
    }


def _monthly_pattern(parts: Mapping[str, str], interval: int, local: datetime) -> dict[str, object]:
    """The absoluteMonthly (a day) or relativeMonthly (the n-th weekday) pattern."""
    if "BYDAY" in parts:
        _refuse_parts(parts, ("BYMONTHDAY",), "together with BYDAY")
        days, index = _relative_days(parts)
        return {"type": "relativeMonthly", "interval": interval, "daysOfWeek": days, "index": index}
    if "BYMONTHDAY" in parts:
        day = _absolute_day(parts, shortest_month=28, last_day=31)
    elif "BYSETPOS" in parts:
        raise _unsupported("BYSETPOS without BYDAY or BYMONTHDAY")
    else:
        day = local.day
        if day > 28:
            raise _unsupported(f"day {day} of every month (RFC 5545 skips shorter months)")
    return {"type": "absoluteMonthly", "interval": interval, "dayOfMonth": day}


def _yearly_pattern(parts: Mapping[str, str], interval: int, local: datetime) -> dict[str, object]:
    """The absoluteYearly (a date) or relativeYearly (n-th weekday of a month) pattern."""
    month = _single_month(parts, local)
    if "BYDAY" in parts:
        if "BYMONTH" not in parts:
            raise _unsupported("a weekday of the year without BYMONTH")
        _refuse_parts(parts, ("BYMONTHDAY",), "together with BYDAY")
        days, index = _relative_days(parts)
        return {
            "type": "relativeYearly",
            "interval": interval,
            "month": month,
            "daysOfWeek": days,
            "index": index,
        }
    shortest = _shortest_month_length(month)
    if "BYMONTHDAY" in parts:
        day = _absolute_day(parts, shortest_month=shortest, last_day=_longest_month_length(month))
    elif "BYSETPOS" in parts:
        raise _unsupported("BYSETPOS without BYDAY or BYMONTHDAY")
    else:
        day = local.day
        if day > shortest:
            raise _unsupported(f"{calendar.month_name[month]} {day} (RFC 5545 skips the years)")
    return {"type": "absoluteYearly", "interval": interval, "month": month, "dayOfMonth": day}


def _single_month(parts: Mapping[str, str], local: datetime) -> int:
    """The one month of a yearly rule (DTSTART's month when BYMONTH is absent)."""
    if "BYMONTH" not in parts:
        return local.month
    values = parts["BYMONTH"].split(",")
    if len(values) != 1:
        raise _unsupported("several BYMONTH values")
    month = _positive_int(values[0], "BYMONTH")
    if month > 12:
        raise InvalidValue(f"BYMONTH={month}", field="RRULE")
    return month


def _absolute_day(parts: Mapping[str, str], *, shortest_month: int, last_day: int) -> int:
    """``dayOfMonth`` for a BYMONTHDAY rule, in Outlook's "or the last day" meaning.

    Exact days that every month (of the pattern) has map as they are; ``-1`` is the last day;
    ``BYMONTHDAY=28,...,d;BYSETPOS=-1`` is "day d, or the last day of a shorter month".
    """
    text = parts["BYMONTHDAY"]
    position = parts.get("BYSETPOS")
    days = [_month_day(value) for value in text.split(",")]
    if position is None and days == [-1]:
        return last_day
    if position is None and len(days) == 1 and days[0] > 0:
        if days[0] > shortest_month:
            raise _unsupported(f"BYMONTHDAY={days[0]} (RFC 5545 skips shorter months)")
        return days[0]
    wanted = max(days)
    clamped = list(range(shortest_month, wanted + 1))  # 28, 29, ..., wanted
    if position == "-1" and wanted > shortest_month and days == clamped:
        return wanted
    suffix = f";BYSETPOS={position}" if position else ""
    raise _unsupported(f"BYMONTHDAY={text}{suffix}")


def _month_day(text: str) -> int:
    """One BYMONTHDAY value (-31..-1 or 1..31)."""
    try:
        day = int(text)
    except ValueError as exc:
        raise InvalidValue(f"BYMONTHDAY value {text!r}", field="RRULE") from exc
    if day == 0 or not -31 <= day <= 31:
        raise InvalidValue(f"BYMONTHDAY value {text!r}", field="RRULE")
    return day


def _relative_days(parts: Mapping[str, str]) -> tuple[list[str], str]:
    """``daysOfWeek`` and ``index`` of a relative pattern (``BYDAY=2TH`` or BYDAY+BYSETPOS)."""
    by_day = parts["BYDAY"].split(",")
    position = parts.get("BYSETPOS")
    if position is not None:
        if "," in position:
            raise _unsupported("several BYSETPOS values")
        days = _plain_days(parts["BYDAY"])
        if len(days) > 1 and frozenset(days) not in _RELATIVE_DAY_SETS:
            raise _unsupported(f"BYDAY={parts['BYDAY']} with BYSETPOS (not day/weekday/weekend)")
        ordinal = _ordinal(position)
    else:
        if len(by_day) != 1:
            raise _unsupported("several BYDAY values in a monthly or yearly rule without BYSETPOS")
        text = by_day[0]
        if len(text) <= 2:
            raise _unsupported(f"BYDAY={text} (every {text} of the period)")
        ordinal, days = _ordinal(text[:-2]), [text[-2:]]
        if days[0] not in _NAME_BY_DAY:
            raise InvalidValue(f"unknown weekday in BYDAY={text}", field="RRULE")
    names = [_NAME_BY_DAY[day] for day in _RRULE_DAYS if day in days]
    return names, _INDEX_BY_ORDINAL[ordinal]


def _ordinal(text: str) -> int:
    """An ordinal Graph has an ``index`` for (1-4 or -1)."""
    try:
        ordinal = int(text)
    except ValueError as exc:
        raise InvalidValue(f"bad ordinal {text!r}", field="RRULE") from exc
    if ordinal not in _INDEX_BY_ORDINAL:
        raise _unsupported(f"ordinal {ordinal} (Graph has first..fourth and last)")
    return ordinal


def _plain_days(by_day: str) -> list[str]:
    """BYDAY weekdays without ordinals."""
    days = by_day.split(",")
    for day in days:
        if day not in _NAME_BY_DAY:
            if day[-2:] in _NAME_BY_DAY:
                raise _unsupported(f"BYDAY ordinal {day} here")
            raise InvalidValue(f"unknown weekday {day!r} in BYDAY", field="RRULE")
    return days


def _refuse_parts(parts: Mapping[str, str], names: Sequence[str], where: str) -> None:
    """Refuse rule parts the pattern for this frequency cannot carry."""
    present = [name for name in names if name in parts]
    if present:
        raise _unsupported(f"{', '.join(present)} {where}")


def _positive_int(text: str, name: str) -> int:
    """A positive integer rule value."""
    if not text.isdigit() or int(text) < 1:
        raise InvalidValue(f"{name}={text} is not a positive integer", field="RRULE")
    return int(text)


def _shortest_month_length(month: int) -> int:
    """The fewest days the month has in any year."""
    return 28 if month == 2 else calendar.monthrange(2001, month)[1]


def _longest_month_length(month: int) -> int:
    """The most days the month has in any year."""
    return 29 if month == 2 else calendar.monthrange(2001, month)[1]


def _require_start_is_occurrence(parts: Mapping[str, str], dtstart: datetime, tz: ZoneInfo) -> None:
    """Refuse a DTSTART the rule does not produce: Graph would start the series later."""
    open_ended = {name: value for name, value in parts.items() if name not in ("COUNT", "UNTIL")}
    local = dtstart.astimezone(tz).replace(tzinfo=None)
    first = next(iter(compile_rule(join_rule(open_ended), dtstart, tz)), None)
    if first != local:
        raise _unsupported("DTSTART is not an occurrence of the rule")


def _range(parts: Mapping[str, str], local: datetime, iana: str) -> dict[str, object]:
    """The ``recurrenceRange``: COUNT → numbered, UNTIL → endDate (inclusive), else noEnd."""
    common = {"startDate": local.date().isoformat(), "recurrenceTimeZone": graph_zone_name(iana)}
    if "COUNT" in parts:
        count = _positive_int(parts["COUNT"], "COUNT")
        return {"type": "numbered", "numberOfOccurrences": count, **common}
    if "UNTIL" not in parts:
        return {"type": "noEnd", **common}
    last_day = _last_included_day(parts["UNTIL"], local)
    if last_day < local.date():
        # The rule ends before it starts: DTSTART is the only occurrence.
        return {"type": "numbered", "numberOfOccurrences": 1, **common}
    return {"type": "endDate", "endDate": last_day.isoformat(), **common}


def _last_included_day(until: str, local_start: datetime) -> date:
    """The last local date whose occurrence (at DTSTART's wall time) is not after UNTIL."""
    zone = local_start.tzinfo
    try:
        if until.endswith("Z"):
            instant = datetime.strptime(until, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            wall = instant.astimezone(zone).replace(tzinfo=None)
        elif "T" in until:
            wall = datetime.strptime(until, "%Y%m%dT%H%M%S")
        else:
            return datetime.strptime(until, "%Y%m%d").date()
    except ValueError as exc:
        raise InvalidValue(f"malformed UNTIL {until!r}", field="RRULE") from exc
    # Every occurrence sits at DTSTART's wall-clock time, and dateutil compares wall clocks.
    if wall.time() >= local_start.time().replace(tzinfo=None):
        return wall.date()
    return wall.date() - timedelta(days=1)


# --------------------------------------------------------------------------- Graph → RRULE


def patterned_to_rrule(
    pattern: Mapping[str, object], range: Mapping[str, object], zone: str
) -> str:
    """The RRULE (``UNTIL`` in UTC) of a ``recurrencePattern`` and ``recurrenceRange``.

    ``zone`` (IANA or Windows) is the series' zone, used for ``endDate`` when the range names
    no ``recurrenceTimeZone``.
    """
    if not isinstance(pattern, Mapping):
        raise InvalidValue("pattern is not an object", field="recurrence.pattern")
    if not isinstance(range, Mapping):
        raise InvalidValue("range is not an object", field="recurrence.range")
    rule = _rule_of_pattern(pattern)
    rule += _rule_of_range(range, zone)
    return ";".join(f"{name}={value}" for name, value in rule)


def _rule_of_pattern(pattern: Mapping[str, object]) -> list[tuple[str, str]]:
    """RRULE parts (ordered) for a recurrencePattern."""
    kind = pattern.get("type")
    if kind not in PATTERN_TYPES:
        raise InvalidValue(f"unknown pattern type {kind!r}", field="recurrence.pattern.type")
    interval = _pattern_int(pattern, "interval", default=1)
    rule = [("FREQ", _FREQUENCY_BY_PATTERN[str(kind)])]
    if interval > 1:
        rule.append(("INTERVAL", str(interval)))
    if kind == "weekly":
        days = _pattern_days(pattern)
        rule.append(("BYDAY", ",".join(days)))
        if interval > 1 and len(days) > 1:
            rule.append(("WKST", _day_code(pattern.get("firstDayOfWeek") or "sunday")))
    elif kind == "absoluteMonthly":
        day = _pattern_int(pattern, "dayOfMonth", default=None)
        rule += _day_of_month_parts(day, shortest=28)
    elif kind == "relativeMonthly":
        rule += _relative_parts(pattern)
    elif kind != "daily":
        month = _pattern_int(pattern, "month", default=None)
        if month > 12:
            raise InvalidValue(f"month {month}", field="recurrence.pattern.month")
        rule.append(("BYMONTH", str(month)))
        if kind == "absoluteYearly":
            day = _pattern_int(pattern, "dayOfMonth", default=None)
            rule += _day_of_month_parts(day, shortest=_shortest_month_length(month))
        else:
            rule += _relative_parts(pattern)
    return rule


def _day_of_month_parts(day: int, *, shortest: int) -> list[tuple[str, str]]:
    """BYMONTHDAY for Outlook's "day d, or the last day of a shorter month"."""
    if day > 31:
        raise InvalidValue(f"dayOfMonth {day}", field="recurrence.pattern.dayOfMonth")
    if day <= shortest:
        return [("BYMONTHDAY", str(day))]
    if day == 31:
        return [("BYMONTHDAY", "-1")]
    days = ",".join(str(value) for value in range(shortest, day + 1))
    return [("BYMONTHDAY", days), ("BYSETPOS", "-1")]


def _relative_parts(pattern: Mapping[str, object]) -> list[tuple[str, str]]:
    """``BYDAY=2TH`` for one day, ``BYDAY=MO,...;BYSETPOS=k`` for a day set."""
    index = pattern.get("index") or "first"
    if index not in _ORDINAL_BY_INDEX:
        raise InvalidValue(f"unknown index {index!r}", field="recurrence.pattern.index")
    ordinal = _ORDINAL_BY_INDEX[str(index)]
    days = _pattern_days(pattern)
    if len(days) == 1:
        return [("BYDAY", f"{ordinal}{days[0]}")]
    return [("BYDAY", ",".join(days)), ("BYSETPOS", str(ordinal))]


def _pattern_days(pattern: Mapping[str, object]) -> list[str]:
    """``daysOfWeek`` as RRULE weekdays, Monday first."""
    names = pattern.get("daysOfWeek")
    if not isinstance(names, list) or not names:
        raise MissingField("daysOfWeek is missing", field="recurrence.pattern.daysOfWeek")
    days = {_day_code(name) for name in names}
    return [day for day in _RRULE_DAYS if day in days]


def _day_code(name: object) -> str:
    """The RRULE weekday of a Graph day name."""
    code = _DAY_BY_NAME.get(name.lower()) if isinstance(name, str) else None
    if code is None:
        raise InvalidValue(f"unknown day {name!r}", field="recurrence.pattern.daysOfWeek")
    return code


def _pattern_int(pattern: Mapping[str, object], name: str, *, default: int | None) -> int:
    """A positive integer pattern field."""
    value = pattern.get(name)
    # Graph fills fields a pattern type does not use with 0.
    if value is None or value == 0:
        if default is None:
            raise MissingField(f"{name} is missing", field=f"recurrence.pattern.{name}")
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidValue(
            f"{name} {value!r} is not a positive integer", field=f"recurrence.pattern.{name}"
        )
    return value


def _rule_of_range(range_: Mapping[str, object], zone: str) -> list[tuple[str, str]]:
    """COUNT, UNTIL or nothing for a recurrenceRange."""
    kind = range_.get("type")
    if kind not in RANGE_TYPES:
        raise InvalidValue(f"unknown range type {kind!r}", field="recurrence.range.type")
    if kind == "noEnd":
        return []
    if kind == "numbered":
        count = range_.get("numberOfOccurrences")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise InvalidValue(
                f"numberOfOccurrences {count!r}", field="recurrence.range.numberOfOccurrences"
            )
        return [("COUNT", str(count))]
    end_text = range_.get("endDate")
    if not isinstance(end_text, str):
        raise MissingField("endDate is missing", field="recurrence.range.endDate")
    try:
        end_day = date.fromisoformat(end_text)
    except ValueError as exc:
        raise InvalidValue(f"endDate {end_text!r}", field="recurrence.range.endDate") from exc
    named = range_.get("recurrenceTimeZone")
    tz = ZoneInfo(
        resolve_zone(
            named if isinstance(named, str) and named else zone,
            field="recurrence.range.recurrenceTimeZone",
        )
    )
    # endDate is inclusive: every occurrence on that local day counts.
    last = datetime.combine(end_day, time(23, 59, 59), tz).astimezone(UTC)
    return [("UNTIL", f"{last:%Y%m%dT%H%M%SZ}")]


# --------------------------------------------------------------------------- representability


def unrepresentable_reason(booking: Booking) -> str | None:
    """Why Graph cannot hold the booking as one series (None when it can)."""
    recurrence = booking.recurrence
    if recurrence is None or not booking.is_recurring:
        return None
    if recurrence.rdates:
        return "RDATEs cannot be expressed in a patternedRecurrence"
    if recurrence.rrule is None:  # pragma: no cover - is_recurring implies rule or rdates
        return None
    try:
        rrule_to_patterned(recurrence.rrule, booking.start, booking.timezone)
    except (UnsupportedRecurrence, InvalidValue) as exc:
        return exc.reason
    if not _is_wall_time(booking.start.astimezone(booking.zone), booking.zone):
        return "the series starts in a DST fold, which a local dateTime cannot name"
    return _override_problem(booking)


def is_representable(booking: Booking) -> bool:
    """Whether Graph can hold the booking as one event or series (else: separate events)."""
    return unrepresentable_reason(booking) is None


def _override_problem(booking: Booking) -> str | None:
    """Why an override cannot be a Graph exception: no such occurrence, or it crosses one."""
    recurrence = booking.recurrence
    assert recurrence is not None and recurrence.rrule is not None
    zone = booking.zone
    rule = compile_rule(recurrence.rrule, booking.start, zone)
    excluded = {instant.astimezone(UTC) for instant in recurrence.exdates}
    for override in recurrence.overrides:
        if (
            override.recurrence_id.astimezone(UTC) in excluded
            or override.status is BookingStatus.CANCELLED
        ):
            continue
        rid = override.recurrence_id.astimezone(zone).replace(tzinfo=None)
        if rid not in rule:
            return f"override {override.recurrence_id.isoformat()} is not an occurrence of the rule"
        moved_to = override.start.astimezone(zone).date()
        before, after = rule.before(rid), rule.after(rid)
        # Exchange refuses to move an occurrence onto or past an adjacent occurrence's day.
        if (before is not None and moved_to <= before.date()) or (
            after is not None and moved_to >= after.date()
        ):
            return f"override {override.recurrence_id.isoformat()} crosses an adjacent occurrence"
    return None


# --------------------------------------------------------------------------- reading


def from_json(data: object, *, provider: str = KIND, timezone: str | None = None) -> list[Booking]:
    """Canonical bookings from one Graph event, a list of events, or a ``value`` page."""
    if isinstance(data, str | bytes):
        data = _parsed(data)
    if isinstance(data, Mapping) and isinstance(data.get("value"), list):
        return _bookings_of(_objects(data["value"]), provider, timezone, skip_removed=True)
    if isinstance(data, Mapping):
        return _bookings_of([data], provider, timezone, skip_removed=False)
    if isinstance(data, list):
        return _bookings_of(_objects(data), provider, timezone, skip_removed=True)
    raise MalformedInput("expected a Graph event, a list of them or a page with 'value'")


def _parsed(text: str | bytes) -> object:
    """JSON text decoded."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise MalformedInput(f"not JSON: {exc}") from exc


def _objects(items: Sequence[object]) -> list[JsonObject]:
    """The items of a list, each required to be a JSON object."""
    objects: list[JsonObject] = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise MalformedInput(f"item {index} is not an event", field=f"[{index}]")
        objects.append(item)
    return objects


def _bookings_of(
    events: list[JsonObject], provider: str, default_zone: str | None, *, skip_removed: bool
) -> list[Booking]:
    """Masters with their occurrences and exceptions attached, in input order."""
    masters: list[JsonObject] = []
    instances: list[JsonObject] = []
    for event in events:
        if skip_removed and "@removed" in event:
            continue
        is_instance = event.get("type") in ("occurrence", "exception")
        (instances if is_instance else masters).append(event)
    children: dict[int, list[JsonObject]] = {index: [] for index in range(len(masters))}
    by_id = {master.get("id"): index for index, master in enumerate(masters) if master.get("id")}
    by_key = {
        _key_value(master): index for index, master in enumerate(masters) if _key_value(master)
    }
    for instance in instances:
        parent = (
            by_id.get(instance.get("seriesMasterId")) if instance.get("seriesMasterId") else None
        )
        if parent is None:
            parent = by_key.get(_key_value(instance))
        if parent is None:
            raise MissingField(
                "occurrence or exception whose series master is not in the input",
                booking=_label(instance),
                field="seriesMasterId",
            )
        children[parent].append(instance)
    return [
        _booking(master, children[index], provider, default_zone)
        for index, master in enumerate(masters)
    ]


def _booking(
    event: JsonObject, instances: list[JsonObject], provider: str, default_zone: str | None
) -> Booking:
    """One booking from a single event or series master, errors labelled with the event."""
    try:
        return _booking_unlabelled(event, instances, provider, default_zone)
    except MappingError as exc:
        if exc.booking is not None:
            raise
        raise type(exc)(exc.reason, booking=_label(event), field=exc.field) from exc


def _booking_unlabelled(
    event: JsonObject, instances: list[JsonObject], provider: str, default_zone: str | None
) -> Booking:
    """The body of ``_booking``."""
    key = _key(event)
    data = _data(event)
    zone_name = _event_zone(event, data, default_zone)
    zone = ZoneInfo(zone_name)
    start = _event_time(event, "start", zone)
    end = _event_time(event, "end", zone)
    if end <= start:
        raise InvalidValue("end is not after start", field="end")
    status = _status(event)
    title = _optional_text(event, "subject") or ""
    description = _body_text(event)
    return Booking(
        provider=key[0] if key else provider,
        key=key[1] if key else _required_text(event, "id"),
        resource=_data_text(data, "resource") or _resource_attendee(event) or "",
        start=start,
        end=end,
        timezone=zone_name,
        status=status,
        title=title,
        description=description,
        organizer=_organizer(event),
        attendees=_attendees(event),
        private=_optional_text(event, "sensitivity") in ("private", "confidential"),
        buffers=_buffers(data),
        recurrence=_recurrence(
            event, instances, data, start, zone_name, status, title, description
        ),
        version=(
            _optional_text(event, "@odata.etag")
            or _optional_text(event, "changeKey")
            or _data_text(data, "version")
        ),
        updated=_updated(event),
        extra=_extra(data),
    )


def _label(event: JsonObject) -> str | None:
    """What errors call the event: its id, else its booking key."""
    ident = event.get("id")
    if isinstance(ident, str) and ident:
        return ident
    return _key_value(event)


def _extended_property(event: JsonObject, property_id: str) -> str | None:
    """The value of one single-value extended property, when expanded or written inline."""
    properties = event.get("singleValueExtendedProperties")
    for item in properties if isinstance(properties, list) else ():
        if isinstance(item, Mapping) and str(item.get("id", "")).lower() == property_id.lower():
            value = item.get("value")
            return value if isinstance(value, str) else None
    return None


def _key_value(event: JsonObject) -> str | None:
    """The raw booking-key property value."""
    return _extended_property(event, KEY_PROPERTY_ID)


def _key(event: JsonObject) -> tuple[str, str] | None:
    """The (provider, key) the bridge tagged the event with."""
    value = _key_value(event)
    if value is None:
        return None
    try:
        pair = json.loads(value)
    except ValueError:
        pair = None
    if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, str) for v in pair)):
        raise InvalidValue(f"booking key property {value!r}", field="singleValueExtendedProperties")
    return pair[0], pair[1]


def _data(event: JsonObject) -> JsonObject:
    """The round-trip data property (an empty object when absent)."""
    value = _extended_property(event, DATA_PROPERTY_ID)
    if value is None:
        return {}
    try:
        data = json.loads(value)
    except ValueError as exc:
        raise InvalidValue(
            "data property is not JSON", field="singleValueExtendedProperties"
        ) from exc
    if not isinstance(data, Mapping):
        raise InvalidValue("data property is not an object", field="singleValueExtendedProperties")
    return data


def _data_text(data: JsonObject, name: str) -> str | None:
    """A string member of the data property."""
    value = data.get(name)
    return value if isinstance(value, str) else None


def _buffers(data: JsonObject) -> Buffers:
    """Buffers from the data property (whole seconds)."""
    values = data.get("buffers")
    if values is None:
        return Buffers()
    if not (
        isinstance(values, list)
        and len(values) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values)
    ):
        raise InvalidValue(f"buffers {values!r}", field="singleValueExtendedProperties")
    return Buffers(timedelta(seconds=values[0]), timedelta(seconds=values[1]))


def _extra(data: JsonObject) -> tuple[tuple[str, str], ...]:
    """Extra provider fields from the data property."""
    pairs = data.get("extra")
    if pairs is None:
        return ()
    if not isinstance(pairs, list) or not all(
        isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, str) for v in pair)
        for pair in pairs
    ):
        raise InvalidValue("extra is not name/value pairs", field="singleValueExtendedProperties")
    return tuple(sorted((pair[0], pair[1]) for pair in pairs))


def _event_zone(event: JsonObject, data: JsonObject, default_zone: str | None) -> str:
    """The IANA zone of the event: the stored one while the event's own zone still agrees."""
    declared, declared_field = _declared_zone(event)
    declared_iana = _known_zone(declared)
    stored = _data_text(data, "timezone")
    if stored and (declared_iana is None or _same_zone(stored, str(declared))):
        return resolve_zone(stored, field="singleValueExtendedProperties")
    if declared_iana is not None:
        return declared_iana
    if declared is not None and default_zone is None:
        # A zone Graph names but nobody knows (e.g. tzone://Microsoft/Custom): say which.
        return resolve_zone(declared, field=declared_field)
    start = event.get("start")
    named = start.get("timeZone") if isinstance(start, Mapping) else None
    fallback = default_zone or (named if isinstance(named, str) and named else FALLBACK_ZONE)
    return resolve_zone(fallback, field="start.timeZone")


def _known_zone(name: str | None) -> str | None:
    """The IANA name of a zone name, or None when it is absent or unknown."""
    if name is None:
        return None
    try:
        return resolve_zone(name)
    except UnknownTimezone:
        return None


def _declared_zone(event: JsonObject) -> tuple[str | None, str]:
    """The zone the event was created in and its field (responses present times in UTC)."""
    original = event.get("originalStartTimeZone")
    if isinstance(original, str) and original:
        return original, "originalStartTimeZone"
    start = event.get("start")
    named = start.get("timeZone") if isinstance(start, Mapping) else None
    if isinstance(named, str) and named and named not in _UTC_NAMES:
        return named, "start.timeZone"
    return None, "start.timeZone"


def _same_zone(iana: str, declared: str) -> bool:
    """Whether a declared (Windows or IANA) zone name is the stored IANA zone's."""
    return declared == iana or declared == graph_zone_name(iana)


def _event_time(event: JsonObject, name: str, zone: ZoneInfo) -> datetime:
    """A ``dateTimeTimeZone`` as an aware instant in the booking's zone."""
    value = event.get(name)
    if value is None:
        raise MissingField(f"{name} is missing", field=name)
    if not isinstance(value, Mapping):
        raise InvalidValue(f"{name} is not a dateTimeTimeZone object", field=name)
    text = _required_text(value, "dateTime", f"{name}.dateTime")
    named = _optional_text(value, "timeZone", f"{name}.timeZone")
    own_zone = ZoneInfo(resolve_zone(named, field=f"{name}.timeZone")) if named else zone
    return _instant(text, own_zone, f"{name}.dateTime").astimezone(zone)


def _instant(text: str, zone: ZoneInfo, field: str) -> datetime:
    """An ISO date-time; one without an offset is a wall-clock time in ``zone``."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidValue(f"{text!r} is not an ISO 8601 date-time", field=field) from exc
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=zone)


def _status(event: JsonObject) -> BookingStatus:
    """``isCancelled`` → cancelled, ``showAs: tentative`` → tentative, else confirmed."""
    if event.get("isCancelled") is True:
        return BookingStatus.CANCELLED
    if _optional_text(event, "showAs") == "tentative":
        return BookingStatus.TENTATIVE
    return BookingStatus.CONFIRMED


def _body_text(event: JsonObject) -> str:
    """The description: the body as text (HTML bodies reduced to their text)."""
    body = event.get("body")
    if not isinstance(body, Mapping):
        return ""
    content = _optional_text(body, "content", "body.content") or ""
    if str(body.get("contentType", "text")).lower() == "html":
        return _html_text(content)
    return content


class _TextOfHtml(HTMLParser):
    """Collects the text of an HTML body, with line breaks where blocks end."""

    _BREAKS = frozenset({"br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Note a block start (a break) or a part whose text is not content."""
        if tag in ("style", "script", "head"):
            self._skipping += 1
        elif tag in self._BREAKS:
            self.chunks.append("\n")

    def handle_endtag(self, tag: str) -> None:
        """Leave a skipped part."""
        if tag in ("style", "script", "head") and self._skipping:
            self._skipping -= 1

    def handle_data(self, data: str) -> None:
        """Keep visible text."""
        if not self._skipping:
            self.chunks.append(data)


def _html_text(html: str) -> str:
    """Visible text of an HTML body, one line per block, trimmed."""
    parser = _TextOfHtml()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.chunks).splitlines())
    return "\n".join(line for line in lines if line)


def _organizer(event: JsonObject) -> Person | None:
    """The organizer's name and address."""
    organizer = event.get("organizer")
    if not isinstance(organizer, Mapping):
        return None
    person = _person(organizer, "organizer")
    return person if person.email or person.name else None


def _attendees(event: JsonObject) -> tuple[Person, ...]:
    """The human attendees (``resource`` attendees are rooms)."""
    attendees = event.get("attendees")
    if attendees is None:
        return ()
    if not isinstance(attendees, list):
        raise InvalidValue("attendees is not a list", field="attendees")
    return tuple(
        _person(item, f"attendees[{index}]")
        for index, item in enumerate(attendees)
        if isinstance(item, Mapping) and item.get("type") != "resource"
    )


def _resource_attendee(event: JsonObject) -> str | None:
    """The address of the first resource (room) attendee."""
    attendees = event.get("attendees")
    for item in attendees if isinstance(attendees, list) else ():
        if isinstance(item, Mapping) and item.get("type") == "resource":
            address = _person(item, "attendees").email
            if address:
                return address
    return None


def _person(item: JsonObject, field: str) -> Person:
    """A recipient's ``emailAddress`` as a person."""
    address = item.get("emailAddress")
    if not isinstance(address, Mapping):
        return Person()
    return Person(
        email=_optional_text(address, "address", f"{field}.emailAddress.address") or None,
        name=_optional_text(address, "name", f"{field}.emailAddress.name") or None,
    )


def _updated(event: JsonObject) -> datetime | None:
    """``lastModifiedDateTime`` as an instant."""
    text = _optional_text(event, "lastModifiedDateTime")
    return _instant(text, ZoneInfo("UTC"), "lastModifiedDateTime") if text else None


# --------------------------------------------------------------------------- recurrence in


def _recurrence(
    event: JsonObject,
    instances: list[JsonObject],
    data: JsonObject,
    start: datetime,
    zone_name: str,
    status: BookingStatus,
    title: str,
    description: str,
) -> Recurrence | None:
    """The series' rule plus its exceptions (overrides) and cancelled occurrences (EXDATEs)."""
    patterned = event.get("recurrence")
    if patterned is None and not instances:
        return None
    rrule = _series_rule(patterned, data, start, zone_name) if patterned is not None else None
    zone = ZoneInfo(zone_name)
    exdates = list(_cancelled_occurrences(event, start, zone))
    overrides: list[Override] = []
    for item in instances:
        try:
            if _status(item) is BookingStatus.CANCELLED:
                exdates.append(_original_start(item, zone))
            elif item.get("type") == "exception":
                overrides.append(_exception(item, zone, status, title, description))
        except MappingError as exc:
            raise type(exc)(exc.reason, booking=_label(item), field=exc.field) from exc
    recurrence = Recurrence(
        rrule=rrule,
        exdates=tuple(sorted(set(exdates))),
        overrides=tuple(sorted(overrides, key=lambda o: o.recurrence_id)),
    )
    return None if recurrence == Recurrence() else recurrence


def _series_rule(patterned: object, data: JsonObject, start: datetime, zone_name: str) -> str:
    """The RRULE of the series: the stored exact rule while it still matches the pattern."""
    if not isinstance(patterned, Mapping):
        raise InvalidValue("recurrence is not a patternedRecurrence", field="recurrence")
    pattern, range_ = patterned.get("pattern"), patterned.get("range")
    if not isinstance(pattern, Mapping):
        raise MissingField("pattern is missing", field="recurrence.pattern")
    if not isinstance(range_, Mapping):
        raise MissingField("range is missing", field="recurrence.range")
    derived = patterned_to_rrule(pattern, range_, zone_name)
    compile_rule(derived, start, ZoneInfo(zone_name))
    stored = _data_text(data, "rrule")
    if stored is None:
        return derived
    try:
        canonical = rrule_to_patterned(stored, start, zone_name)
    except MappingError:
        return derived
    if patterned_to_rrule(canonical["pattern"], canonical["range"], zone_name) == derived:
        return stored
    return derived


def _cancelled_occurrences(
    event: JsonObject, start: datetime, zone: ZoneInfo
) -> Iterator[datetime]:
    """EXDATEs from the beta ``cancelledOccurrences`` ids (``OID.<master>.<YYYY-MM-DD>``)."""
    ids = event.get("cancelledOccurrences")
    local_start = start.astimezone(zone).time().replace(tzinfo=None)
    for occurrence_id in ids if isinstance(ids, list) else ():
        text = str(occurrence_id).rsplit(".", 1)[-1]
        try:
            day = date.fromisoformat(text)
        except ValueError as exc:
            raise InvalidValue(
                f"occurrence id {occurrence_id!r}", field="cancelledOccurrences"
            ) from exc
        yield datetime.combine(day, local_start, zone)


def _original_start(item: JsonObject, zone: ZoneInfo) -> datetime:
    """The instant the pattern gave an occurrence (``originalStart``, else its start)."""
    if item.get("originalStart") is None:
        return _event_time(item, "start", zone)
    text = _required_text(item, "originalStart")
    return _instant(text, ZoneInfo("UTC"), "originalStart").astimezone(zone)


def _exception(
    item: JsonObject, zone: ZoneInfo, status: BookingStatus, title: str, description: str
) -> Override:
    """A modified occurrence; fields equal to the master's are left to inherit."""
    start = _event_time(item, "start", zone)
    end = _event_time(item, "end", zone)
    if end <= start:
        raise InvalidValue("end is not after start", field="end")
    own_status = _status(item)
    subject = _optional_text(item, "subject") or ""
    details = _body_text(item)
    return Override(
        recurrence_id=_original_start(item, zone),
        start=start,
        end=end,
        status=None if own_status is status else own_status,
        title=None if subject == title else subject,
        description=None if details == description else details,
        version=_optional_text(item, "@odata.etag") or _optional_text(item, "changeKey"),
    )


# --------------------------------------------------------------------------- writing


def graph_zone_name(iana: str) -> str:
    """The zone name written to Graph: the Windows id when CLDR has one, else the IANA name."""
    if iana in _UTC_NAMES:
        return "UTC"
    return iana_to_windows(iana) or iana


def to_json(booking: Booking) -> dict[str, object]:
    """The event body the Graph backend POSTs: a single event or the series master.

    Raises UnsupportedRecurrence (see ``unrepresentable_reason``) when Graph cannot hold the
    booking as one series; the backend then writes its occurrences as separate events.
    """
    reason = unrepresentable_reason(booking)
    if reason is not None:
        raise UnsupportedRecurrence(reason, booking=str(booking.booking_key), field="recurrence")
    body: dict[str, object] = {
        "subject": booking.title,
        "body": {"contentType": "text", "content": booking.description},
        "start": _date_time_zone(booking.start, booking.timezone),
        "end": _date_time_zone(booking.end, booking.timezone),
        # A tentative booking still holds the room, so it shows as tentative, never free.
        "showAs": "tentative" if booking.status is BookingStatus.TENTATIVE else "busy",
        "sensitivity": "private" if booking.private else "normal",
        "transactionId": transaction_id_for(booking.booking_key),
        "singleValueExtendedProperties": [
            {"id": KEY_PROPERTY_ID, "value": key_property_value(booking.booking_key)},
            {"id": DATA_PROPERTY_ID, "value": _data_value(booking)},
        ],
    }
    if booking.status is BookingStatus.CANCELLED:
        # Read-only in Graph (the backend deletes instead); kept so the body says what it is.
        body["isCancelled"] = True
    if booking.recurrence is not None and booking.recurrence.rrule and booking.is_recurring:
        body["recurrence"] = rrule_to_patterned(
            booking.recurrence.rrule, booking.start, booking.timezone
        )
    if booking.organizer is not None:
        body["organizer"] = {"emailAddress": _address(booking.organizer)}
    attendees = [
        {"type": "required", "emailAddress": _address(person)}
        for person in booking.attendees
        if person.email
    ]
    if attendees:
        body["attendees"] = attendees
    return body


def instance_bodies(booking: Booking) -> list[dict[str, object]]:
    """What to apply to the series' occurrences after creating it, by ``originalStart``.

    ``type: exception`` bodies are PATCHed onto the occurrence (a moved or retitled instance);
    ``type: occurrence`` bodies with ``isCancelled`` name occurrences to delete (EXDATEs).
    """
    recurrence = booking.recurrence
    if recurrence is None or not booking.is_recurring or not booking.status.is_live:
        return []
    key_property = {"id": KEY_PROPERTY_ID, "value": key_property_value(booking.booking_key)}
    excluded = {instant.astimezone(UTC) for instant in recurrence.exdates}
    cancelled = set(excluded)
    bodies: list[dict[str, object]] = []
    for override in recurrence.overrides:
        rid = override.recurrence_id.astimezone(UTC)
        if rid in excluded:
            continue
        if override.status is BookingStatus.CANCELLED:
            cancelled.add(rid)
            continue
        bodies.append(_exception_body(booking, override, key_property))
    bodies += [
        {
            "type": "occurrence",
            "originalStart": _utc_text(rid),
            "isCancelled": True,
            "singleValueExtendedProperties": [key_property],
        }
        for rid in sorted(cancelled)
    ]
    return bodies


def _exception_body(
    booking: Booking, override: Override, key_property: dict[str, str]
) -> dict[str, object]:
    """The PATCH body of one modified occurrence."""
    status = override.status or booking.status
    return {
        "type": "exception",
        "originalStart": _utc_text(override.recurrence_id),
        "subject": booking.title if override.title is None else override.title,
        "body": {
            "contentType": "text",
            "content": booking.description
            if override.description is None
            else override.description,
        },
        "start": _date_time_zone(override.start, booking.timezone),
        "end": _date_time_zone(override.end, booking.timezone),
        "showAs": "tentative" if status is BookingStatus.TENTATIVE else "busy",
        "singleValueExtendedProperties": [key_property],
    }


def _utc_text(instant: datetime) -> str:
    """A DateTimeOffset in UTC, as Graph writes ``originalStart``."""
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _date_time_zone(instant: datetime, iana: str) -> dict[str, str]:
    """A ``dateTimeTimeZone``: wall time in the zone, or UTC where the wall time is ambiguous."""
    zone = ZoneInfo(iana)
    local = instant.astimezone(zone)
    if _is_wall_time(local, zone):
        return {
            "dateTime": local.replace(tzinfo=None).isoformat(),
            "timeZone": graph_zone_name(iana),
        }
    return {"dateTime": instant.astimezone(UTC).replace(tzinfo=None).isoformat(), "timeZone": "UTC"}


def _is_wall_time(local: datetime, zone: ZoneInfo) -> bool:
    """Whether the wall-clock time names exactly this instant (not in a DST fold or gap)."""
    naive = local.replace(tzinfo=None)
    # Offsets, not datetimes, are compared: same-zone datetime equality ignores ``fold``.
    earlier = naive.replace(tzinfo=zone, fold=0).utcoffset()
    later = naive.replace(tzinfo=zone, fold=1).utcoffset()
    return earlier == later == local.utcoffset()


def _data_value(booking: Booking) -> str:
    """The data property: what restores the booking beyond what Graph's fields hold."""
    data: dict[str, object] = {
        "resource": booking.resource,
        "timezone": booking.timezone,
        "buffers": [
            _whole_seconds(booking.buffers.before),
            _whole_seconds(booking.buffers.after),
        ],
    }
    if booking.version is not None:
        data["version"] = booking.version
    if booking.extra:
        data["extra"] = [list(pair) for pair in booking.extra]
    if booking.recurrence is not None and booking.recurrence.rrule:
        data["rrule"] = booking.recurrence.rrule
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _whole_seconds(span: timedelta) -> int:
    """A buffer as whole non-negative seconds."""
    seconds = span.total_seconds()
    if seconds < 0 or seconds != int(seconds):
        raise InvalidValue(f"buffer {span} is not whole non-negative seconds", field="buffers")
    return int(seconds)


def _address(person: Person) -> dict[str, str]:
    """An ``emailAddress`` object (Graph has no phone numbers)."""
    address: dict[str, str] = {}
    if person.email:
        address["address"] = person.email
    if person.name:
        address["name"] = person.name
    return address


# --------------------------------------------------------------------------- JSON fields


def _optional_text(obj: JsonObject, name: str, field: str | None = None) -> str | None:
    """A string field, or None when absent or null."""
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidValue(f"{name} is not a string", field=field or name)
    return value


def _required_text(obj: JsonObject, name: str, field: str | None = None) -> str:
    """A non-empty string field."""
    value = _optional_text(obj, name, field)
    if not value:
        raise MissingField(f"{name} is missing", field=field or name)
    return value
