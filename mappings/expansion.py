"""Occurrence expansion of canonical bookings, always bounded by an explicit window.

Rules are evaluated on the room's wall clock (naive local times, then localised), so a weekly
09:00 meeting stays at 09:00 across DST changes, exactly as RFC 5545 prescribes for a DTSTART
with a TZID. A local time that falls into a DST gap takes the offset from before the gap.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from dateutil.rrule import rrule, rrulestr

from bridge.model import Booking, BookingStatus, Occurrence, Override, Window
from mappings.errors import InvalidValue, UnsupportedRecurrence

#: Rule instants generated for one expansion before it is refused as unbounded.
MAX_RULE_INSTANTS = 100_000

#: Frequencies no room booking uses; they are refused rather than expanded.
REFUSED_FREQUENCIES = frozenset({"SECONDLY", "MINUTELY"})


def rule_parts(rule: str) -> dict[str, str]:
    """Split an RRULE value into upper-cased ``NAME -> value`` parts."""
    text = rule.strip()
    if text.upper().startswith("RRULE:"):
        text = text[6:]
    parts: dict[str, str] = {}
    for chunk in text.split(";"):
        if not chunk:
            continue
        name, sep, value = chunk.partition("=")
        if not sep or not value:
            raise InvalidValue(f"malformed RRULE part {chunk!r}", field="RRULE")
        parts[name.strip().upper()] = value.strip().upper()
    if "FREQ" not in parts:
        raise InvalidValue("RRULE has no FREQ", field="RRULE")
    return parts


def join_rule(parts: dict[str, str]) -> str:
    """Join RRULE parts with FREQ first, as clients expect."""
    ordered = ["FREQ", *[name for name in parts if name != "FREQ"]]
    return ";".join(f"{name}={parts[name]}" for name in ordered)


def _localise(local: datetime, zone: ZoneInfo) -> datetime:
    """Attach the zone to a naive wall-clock time (fold=0: gaps use the earlier offset)."""
    return local.replace(tzinfo=zone, fold=0)


def _until_on_wall_clock(value: str, zone: ZoneInfo) -> str:
    """Rewrite an UNTIL value as a naive local time so dateutil can pair it with DTSTART."""
    try:
        if value.endswith("Z"):
            instant = datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            return instant.astimezone(zone).strftime("%Y%m%dT%H%M%S")
        if "T" in value:
            return datetime.strptime(value, "%Y%m%dT%H%M%S").strftime("%Y%m%dT%H%M%S")
        # A DATE UNTIL includes that whole day.
        return datetime.strptime(value, "%Y%m%d").strftime("%Y%m%dT235959")
    except ValueError as exc:
        raise InvalidValue(f"malformed UNTIL {value!r}", field="RRULE") from exc


def compile_rule(rule: str, dtstart: datetime, zone: ZoneInfo) -> rrule:
    """A dateutil rule over naive wall-clock times of ``zone``, refusing unbounded ones."""
    parts = rule_parts(rule)
    if parts["FREQ"] in REFUSED_FREQUENCIES:
        raise UnsupportedRecurrence(
            f"FREQ={parts['FREQ']} is not a room booking rule", field="RRULE"
        )
    if "UNTIL" in parts:
        parts["UNTIL"] = _until_on_wall_clock(parts["UNTIL"], zone)
    local_start = dtstart.astimezone(zone).replace(tzinfo=None)
    try:
        compiled = rrulestr(join_rule(parts), dtstart=local_start)
    except (ValueError, TypeError) as exc:
        raise InvalidValue(f"invalid RRULE {rule!r}: {exc}", field="RRULE") from exc
    if not isinstance(compiled, rrule):
        raise InvalidValue(f"unsupported RRULE {rule!r}", field="RRULE")
    return compiled


def rule_instants(
    rule: str, dtstart: datetime, zone: ZoneInfo, until: datetime
) -> Iterator[datetime]:
    """Aware instants of ``rule`` from ``dtstart`` up to (excluding) ``until``."""
    compiled = compile_rule(rule, dtstart, zone)
    for count, local in enumerate(compiled, start=1):
        if count > MAX_RULE_INSTANTS:
            raise UnsupportedRecurrence(
                f"rule {rule!r} yields more than {MAX_RULE_INSTANTS} instants", field="RRULE"
            )
        instant = _localise(local, zone)
        if instant >= until:
            return
        yield instant


def expand(booking: Booking, window: Window) -> list[Occurrence]:
    """Every occurrence of ``booking`` overlapping ``window``, sorted by start.

    Cancelled occurrences (a cancelled booking, or an override with status cancelled) are
    included with their status so callers can tell "moved away" from "cancelled".
    """
    key = booking.booking_key
    recurrence = booking.recurrence
    if recurrence is None or not (recurrence.rrule or recurrence.rdates):
        if not window.overlaps(booking.start, booking.end):
            return []
        return [Occurrence(key, booking.start, booking.end, booking.status, None, booking.buffers)]

    zone = booking.zone
    duration = booking.duration
    # An occurrence starting before the window can still overlap it.
    horizon = window.end
    first_relevant = window.start - _longest(booking, duration)
    instants: set[datetime] = {booking.start}
    if recurrence.rrule:
        instants.update(rule_instants(recurrence.rrule, booking.start, zone, horizon))
    instants.update(recurrence.rdates)
    excluded = {exdate.astimezone(UTC) for exdate in recurrence.exdates}
    overrides = {o.recurrence_id.astimezone(UTC): o for o in recurrence.overrides}

    occurrences: list[Occurrence] = []
    for instant in instants:
        utc_instant = instant.astimezone(UTC)
        if utc_instant in excluded:
            continue
        override = overrides.pop(utc_instant, None)
        if override is not None:
            occurrences.append(_overridden(booking, override))
        elif instant >= first_relevant:
            end = instant + duration
            occurrences.append(
                Occurrence(key, instant, end, booking.status, instant, booking.buffers)
            )
    # Overrides whose instant the rule no longer yields still describe a real occurrence.
    occurrences.extend(
        _overridden(booking, o) for rid, o in overrides.items() if rid not in excluded
    )
    inside = [o for o in occurrences if window.overlaps(o.start, o.end)]
    return sorted(inside, key=lambda o: (o.start, o.end))


def _overridden(booking: Booking, override: Override) -> Occurrence:
    """The occurrence an override describes."""
    status = override.status or booking.status
    if booking.status is BookingStatus.CANCELLED:
        status = BookingStatus.CANCELLED
    return Occurrence(
        booking.booking_key,
        override.start,
        override.end,
        status,
        override.recurrence_id,
        booking.buffers,
    )


def _longest(booking: Booking, duration: timedelta) -> timedelta:
    """The longest occurrence of the booking, so window edges catch overlapping ones."""
    longest = duration
    if booking.recurrence:
        for override in booking.recurrence.overrides:
            longest = max(longest, override.end - override.start)
    return longest


def live_instants(booking: Booking, window: Window) -> list[tuple[datetime, datetime]]:
    """(start, end) UTC pairs of the live occurrences in the window: what tests compare."""
    return [
        (o.start.astimezone(UTC), o.end.astimezone(UTC))
        for o in expand(booking, window)
        if o.status.is_live
    ]
