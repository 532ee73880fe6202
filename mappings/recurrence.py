"""Nexudus repeat fields ⇄ RRULE, and the smallest exact rule for a set of occurrence starts.

Nexudus stores a repeat series as separate bookings plus create-only repeat fields
(providers.md §2.6). The vendor documents the enum but not its meaning, so every reading
below is an interpretation ([INF]) made in this one place:

==================  ===========================================================================
Nexudus field       Meaning chosen here (RRULE in the room's zone, DTSTART = first booking)
==================  ===========================================================================
Repeats 1 Daily     ``FREQ=DAILY;INTERVAL=RepeatEvery``
Repeats 2 Weekly    ``FREQ=WEEKLY;INTERVAL=RepeatEvery;BYDAY=<RepeatOn* flags>``; no flag set
                    means the weekday of the first booking. Weeks start on Monday (RFC 5545's
                    default WKST), which decides the weeks an INTERVAL > 1 skips.
Repeats 3 Monthly   ``FREQ=MONTHLY``: the first booking's day of the month. A month without that
                    day is skipped (RFC 5545); because Nexudus's own behaviour there is unknown,
                    rules on days 29–31 are never offered back to Nexudus.
Repeats 4 Yearly    ``FREQ=YEARLY``: the first booking's month and day (29 February likewise
                    never offered back).
Repeats 5/6/7/9     First/Second/Third/FourthOfMonth: ``FREQ=MONTHLY;BYDAY=1MO/2MO/3MO/4MO``
                    with the weekday of the first booking.
Repeats 8           LastOfMonth: ``FREQ=MONTHLY;BYDAY=-1MO`` with the weekday of the first
                    booking (so in a five-week month it differs from FourthOfMonth).
RepeatEvery         INTERVAL for every cycle; null or missing means 1.
RepeatUntil         A calendar date in the room's local time, inclusive: only its local date
                    counts. UNTIL is emitted as the UTC instant of the last occurrence on or
                    before that date (RFC 5545 wants UTC when DTSTART has a TZID).
Wall-clock time     Every occurrence keeps the first booking's local time, across DST changes.
==================  ===========================================================================

A rule Nexudus cannot hold (``rrule_to_repeat`` answers ``None``): an endless rule (Nexudus
materialises every member), any BY-part other than those above, a BYDAY ordinal of 5 or -2,
an ordinal weekday other than DTSTART's, or a DTSTART the rule itself would not produce.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from enum import IntEnum
from itertools import pairwise
from math import gcd
from typing import TypeVar
from zoneinfo import ZoneInfo

from bridge.model import BookingStatus, Override, Recurrence
from mappings.errors import InvalidValue
from mappings.expansion import join_rule, rule_instants, rule_parts

#: RFC 5545 weekday codes, indexed like ``date.weekday()`` (0 = Monday).
WEEKDAY_CODES = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")

#: Later than any rule this module evaluates; bounded rules stop long before it.
_END_OF_TIME = datetime(9000, 1, 1, tzinfo=UTC)

_T = TypeVar("_T")

_ORDINAL_WEEKDAY = re.compile(r"^([+-]?\d)(MO|TU|WE|TH|FR|SA|SU)$")


class RepeatCycle(IntEnum):
    """Nexudus ``eBookingRepeatCycle`` (the ``Repeats`` field)."""

    DAILY = 1
    WEEKLY = 2
    MONTHLY = 3
    YEARLY = 4
    FIRST_OF_MONTH = 5
    SECOND_OF_MONTH = 6
    THIRD_OF_MONTH = 7
    LAST_OF_MONTH = 8
    FOURTH_OF_MONTH = 9


#: The BYDAY ordinal each "Nth weekday of the month" cycle stands for.
MONTH_ORDINALS: dict[RepeatCycle, int] = {
    RepeatCycle.FIRST_OF_MONTH: 1,
    RepeatCycle.SECOND_OF_MONTH: 2,
    RepeatCycle.THIRD_OF_MONTH: 3,
    RepeatCycle.FOURTH_OF_MONTH: 4,
    RepeatCycle.LAST_OF_MONTH: -1,
}

_CYCLE_OF_ORDINAL = {ordinal: cycle for cycle, ordinal in MONTH_ORDINALS.items()}

#: Rough length of one period of each frequency, for pairing and search horizons.
_PERIODS = {
    "DAILY": timedelta(days=1),
    "WEEKLY": timedelta(days=7),
    "MONTHLY": timedelta(days=31),
    "YEARLY": timedelta(days=366),
}


@dataclass(frozen=True, slots=True)
class NexudusRepeat:
    """The repeat fields of a Nexudus booking series.

    ``until`` is aware; only its calendar date in the room's zone counts (inclusive).
    ``weekdays`` are ``date.weekday()`` numbers (0 = Monday) and matter for weekly cycles only.
    """

    repeats: int
    every: int = 1
    until: datetime | None = None
    weekdays: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        if self.repeats not in {cycle.value for cycle in RepeatCycle}:
            raise InvalidValue(f"Repeats must be 1..9, not {self.repeats!r}", field="Repeats")
        if self.every < 1:
            raise InvalidValue(f"RepeatEvery must be ≥ 1, not {self.every!r}", field="RepeatEvery")
        if self.until is not None and self.until.tzinfo is None:
            raise InvalidValue("RepeatUntil must be timezone-aware", field="RepeatUntil")
        if not self.weekdays <= set(range(7)):
            raise InvalidValue(
                f"weekdays must be 0..6, not {sorted(self.weekdays)}", field="RepeatOn"
            )

    @property
    def cycle(self) -> RepeatCycle:
        """The ``Repeats`` value as an enum member."""
        return RepeatCycle(self.repeats)


def format_until(instant: datetime) -> str:
    """An RRULE ``UNTIL`` value: the instant in UTC ``Z`` form."""
    return instant.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def repeat_to_rrule(repeat: NexudusRepeat, dtstart: datetime, zone: ZoneInfo) -> str:
    """The RRULE value for Nexudus repeat fields whose first booking starts at ``dtstart``."""
    local = dtstart.astimezone(zone)
    parts = _cycle_parts(repeat, local)
    if repeat.until is not None:
        last_day = repeat.until.astimezone(zone).date()
        parts["UNTIL"] = format_until(_last_instant_on_or_before(parts, dtstart, zone, last_day))
    return join_rule(parts)


def _cycle_parts(repeat: NexudusRepeat, local: datetime) -> dict[str, str]:
    """FREQ, INTERVAL and BYDAY parts of a repeat cycle anchored at the local first start."""
    cycle = repeat.cycle
    parts: dict[str, str] = {}
    if cycle is RepeatCycle.DAILY:
        parts["FREQ"] = "DAILY"
    elif cycle is RepeatCycle.WEEKLY:
        parts["FREQ"] = "WEEKLY"
    elif cycle is RepeatCycle.YEARLY:
        parts["FREQ"] = "YEARLY"
    else:
        parts["FREQ"] = "MONTHLY"
    if repeat.every > 1:
        parts["INTERVAL"] = str(repeat.every)
    if cycle is RepeatCycle.WEEKLY:
        days = repeat.weekdays or frozenset({local.weekday()})
        parts["BYDAY"] = ",".join(WEEKDAY_CODES[day] for day in sorted(days))
    elif cycle in MONTH_ORDINALS:
        parts["BYDAY"] = f"{MONTH_ORDINALS[cycle]}{WEEKDAY_CODES[local.weekday()]}"
    return parts


def _last_instant_on_or_before(
    parts: dict[str, str], dtstart: datetime, zone: ZoneInfo, last_day: date
) -> datetime:
    """The last instant of the rule whose local date is ``last_day`` or earlier (else DTSTART)."""
    next_midnight = datetime.combine(last_day + timedelta(days=1), datetime.min.time(), zone)
    last = dtstart
    for instant in rule_instants(join_rule(parts), dtstart, zone, next_midnight):
        last = max(last, instant)
    return last


def rrule_to_repeat(rrule: str, dtstart: datetime, zone: ZoneInfo) -> NexudusRepeat | None:
    """The Nexudus repeat fields for an RRULE starting at ``dtstart``; None if Nexudus can't."""
    parts = rule_parts(rrule)
    if "UNTIL" not in parts and "COUNT" not in parts:
        return None
    local = dtstart.astimezone(zone)
    every = _interval(parts)
    shape = _cycle_of(parts, local, every)
    if shape is None:
        return None
    instants = list(rule_instants(rrule, dtstart, zone, _END_OF_TIME))
    if not instants or instants[0].astimezone(UTC) != dtstart.astimezone(UTC):
        return None
    cycle, weekdays = shape
    return NexudusRepeat(cycle.value, every, instants[-1].astimezone(zone), weekdays)


def _interval(parts: dict[str, str]) -> int:
    """The INTERVAL of a rule (1 when absent)."""
    text = parts.get("INTERVAL", "1")
    if not text.isdigit() or int(text) < 1:
        raise InvalidValue(f"INTERVAL must be a positive integer, not {text!r}", field="RRULE")
    return int(text)


def _cycle_of(
    parts: dict[str, str], local: datetime, every: int
) -> tuple[RepeatCycle, frozenset[int]] | None:
    """The Nexudus cycle (and weekly weekdays) a rule's FREQ and BY-parts amount to."""
    freq = parts["FREQ"]
    by_parts = set(parts) - {"FREQ", "INTERVAL", "UNTIL", "COUNT", "WKST"}
    if freq == "DAILY" and not by_parts:
        return RepeatCycle.DAILY, frozenset()
    if freq == "WEEKLY" and by_parts <= {"BYDAY"}:
        return _weekly_cycle(parts, local, every)
    if freq == "MONTHLY":
        return _monthly_cycle(parts, local, by_parts)
    if freq == "YEARLY" and by_parts <= {"BYMONTH", "BYMONTHDAY"}:
        same_day = parts.get("BYMONTH", str(local.month)) == str(local.month) and parts.get(
            "BYMONTHDAY", str(local.day)
        ) == str(local.day)
        if same_day and (local.month, local.day) != (2, 29):
            return RepeatCycle.YEARLY, frozenset()
    return None


def _weekly_cycle(
    parts: dict[str, str], local: datetime, every: int
) -> tuple[RepeatCycle, frozenset[int]] | None:
    """A weekly rule as Nexudus weekdays, unless it uses ordinals or an unusual week start."""
    codes = parts["BYDAY"].split(",") if "BYDAY" in parts else [WEEKDAY_CODES[local.weekday()]]
    if any(code not in WEEKDAY_CODES for code in codes):
        return None
    days = frozenset(WEEKDAY_CODES.index(code) for code in codes)
    # WKST only changes which weeks an INTERVAL skips when a week holds several days.
    if parts.get("WKST", "MO") != "MO" and every > 1 and len(days) > 1:
        return None
    return RepeatCycle.WEEKLY, days


def _monthly_cycle(
    parts: dict[str, str], local: datetime, by_parts: set[str]
) -> tuple[RepeatCycle, frozenset[int]] | None:
    """A monthly rule as a Nexudus Monthly or Nth-weekday-of-month cycle."""
    if not by_parts or (by_parts == {"BYMONTHDAY"} and parts["BYMONTHDAY"] == str(local.day)):
        return (RepeatCycle.MONTHLY, frozenset()) if local.day <= 28 else None
    if by_parts != {"BYDAY"}:
        return None
    match = _ORDINAL_WEEKDAY.match(parts["BYDAY"])
    if match is None or WEEKDAY_CODES.index(match.group(2)) != local.weekday():
        return None
    cycle = _CYCLE_OF_ORDINAL.get(int(match.group(1)))
    return None if cycle is None else (cycle, frozenset())


# --- derive_series: the smallest exact rule for a set of starts -------------------------------


@dataclass(frozen=True, slots=True)
class _Fit:
    """One exact representation of a set of starts: rule plus RDATEs and EXDATEs (UTC)."""

    rule: str | None
    rdates: tuple[datetime, ...]
    exdates: tuple[datetime, ...]

    @property
    def cost(self) -> int:
        """How many exception entries the representation needs."""
        return len(self.rdates) + len(self.exdates)


def derive_series(
    starts: Sequence[datetime], zone: ZoneInfo
) -> tuple[str | None, tuple[datetime, ...], tuple[datetime, ...]]:
    """The smallest exact (RRULE, RDATEs, EXDATEs) whose DTSTART is the earliest start.

    Tries DAILY, WEEKLY (+BYDAY), MONTHLY by day, MONTHLY by nth/last weekday and YEARLY, each
    with a few INTERVALs, all at the earliest start's wall-clock time in ``zone``; "smallest"
    means fewest RDATE + EXDATE entries (ties go to the coarser frequency, then to no rule).
    Expanding the result yields exactly the distinct ``starts``. RDATE/EXDATE values are in
    ``zone``; the rule's UNTIL is the last start it covers, in UTC.
    """
    if any(start.tzinfo is None for start in starts):
        raise InvalidValue("occurrence starts must be timezone-aware", field="starts")
    unique = sorted({start.astimezone(UTC) for start in starts})
    if not unique:
        raise InvalidValue("no occurrence starts to describe", field="starts")
    best = _Fit(None, tuple(unique[1:]), ())
    for rule in candidate_rules(unique, zone):
        fit = _fit(rule, unique, zone)
        if fit is not None and fit.cost < best.cost:
            best = fit
    return (
        best.rule,
        tuple(instant.astimezone(zone) for instant in best.rdates),
        tuple(instant.astimezone(zone) for instant in best.exdates),
    )


def _fit(rule: str, starts: list[datetime], zone: ZoneInfo) -> _Fit | None:
    """The representation of sorted UTC ``starts`` with ``rule`` (DTSTART = first start)."""
    dtstart = starts[0]
    horizon = starts[-1] + timedelta(seconds=1)
    instants = [i.astimezone(UTC) for i in rule_instants(rule, dtstart, zone, horizon)]
    if not instants or instants[0] != dtstart:
        return None
    wanted = set(starts)
    covered = [instant for instant in instants if instant in wanted]
    if len(covered) < 2:
        return None
    until = covered[-1]
    kept = {instant for instant in instants if instant <= until}
    parts = rule_parts(rule)
    parts["UNTIL"] = format_until(until)
    return _Fit(join_rule(parts), tuple(sorted(wanted - kept)), tuple(sorted(kept - wanted)))


def candidate_rules(starts: Sequence[datetime], zone: ZoneInfo) -> list[str]:
    """Rules without UNTIL worth trying for sorted ``starts``, coarsest frequency first.

    Every rule is synchronised with the first start (it would produce it), keeps its
    wall-clock time, and takes its INTERVAL from the spacing of the starts that match it.
    """
    local = [start.astimezone(zone) for start in starts]
    first = local[0]
    on_time = [moment.date() for moment in local if moment.time() == first.time()]
    day = first.date()
    rules: list[str] = []
    same_date = [d for d in on_time if (d.month, d.day) == (day.month, day.day)]
    rules += _with_intervals("FREQ=YEARLY", [d.year - day.year for d in same_date])
    same_mday = [_month_index(d) - _month_index(day) for d in on_time if d.day == day.day]
    rules += _with_intervals("FREQ=MONTHLY", same_mday)
    for ordinal in _ordinals(day):
        matching = [d for d in on_time if d.weekday() == day.weekday() and ordinal in _ordinals(d)]
        steps = [_month_index(d) - _month_index(day) for d in matching]
        rules += _with_intervals(
            "FREQ=MONTHLY", steps, f";BYDAY={ordinal}{WEEKDAY_CODES[day.weekday()]}"
        )
    for weekdays in _weekday_sets(on_time, day):
        weeks = [_week_index(d, day) for d in on_time if d.weekday() in weekdays]
        by_day = (
            ""
            if weekdays == {day.weekday()}
            else ";BYDAY=" + ",".join(WEEKDAY_CODES[wd] for wd in sorted(weekdays))
        )
        rules += _with_intervals("FREQ=WEEKLY", weeks, by_day)
    rules += _with_intervals("FREQ=DAILY", [(d - day).days for d in on_time])
    return rules


def _with_intervals(head: str, steps: Iterable[int], tail: str = "") -> list[str]:
    """``head[;INTERVAL=n]tail`` for each plausible interval of the step indices."""
    return [head + (f";INTERVAL={n}" if n > 1 else "") + tail for n in _intervals(steps)]


def _intervals(steps: Iterable[int]) -> list[int]:
    """Plausible intervals: the gcd of all steps, and the commonest gap between neighbours."""
    indices = sorted({step for step in steps if step >= 0})
    gaps = [later - earlier for earlier, later in pairwise(indices)]
    if not gaps:
        return []
    common = Counter(gaps).most_common(1)[0][0]
    whole = 0
    for index in indices:
        whole = gcd(whole, index)
    return sorted({whole, common})


def _month_index(day: date) -> int:
    """Months since year 0, so differences count calendar months."""
    return day.year * 12 + day.month - 1


def _week_index(day: date, first: date) -> int:
    """Monday-based weeks between ``first``'s week and ``day``'s week."""
    monday = day - timedelta(days=day.weekday())
    first_monday = first - timedelta(days=first.weekday())
    return (monday - first_monday).days // 7


def _ordinals(day: date) -> list[int]:
    """Which BYDAY ordinals ``day`` satisfies for its weekday: its nth, and -1 if last."""
    ordinals = [(day.day - 1) // 7 + 1]
    if (day + timedelta(days=7)).month != day.month:
        ordinals.append(-1)
    return ordinals


def _weekday_sets(days: Sequence[date], first: date) -> list[frozenset[int]]:
    """BYDAY sets worth trying: the first weekday alone, the recurring weekdays, all seen."""
    counts = Counter(day.weekday() for day in days)
    alone = frozenset({first.weekday()})
    recurring = frozenset(wd for wd, count in counts.items() if count >= 2) | alone
    seen = frozenset(counts)
    sets: list[frozenset[int]] = []
    for weekdays in (alone, recurring, seen):
        if weekdays not in sets:
            sets.append(weekdays)
    return sets


def rule_period(rule: str) -> timedelta:
    """Roughly how far apart a rule's consecutive instants are (FREQ times INTERVAL)."""
    parts = rule_parts(rule)
    return _PERIODS.get(parts["FREQ"], timedelta(days=1)) * _interval(parts)


# --- fit_series: materialised members → one master booking with a Recurrence -----------------


@dataclass(frozen=True, slots=True)
class Member:
    """One concrete occurrence of a series as the provider holds it (aware start and end)."""

    start: datetime
    end: datetime
    status: BookingStatus = BookingStatus.CONFIRMED
    title: str = ""
    description: str = ""


@dataclass(frozen=True, slots=True)
class SeriesShape:
    """A series as its master occurrence (DTSTART/DTEND and content) plus its Recurrence."""

    start: datetime
    end: datetime
    status: BookingStatus
    title: str
    description: str
    recurrence: Recurrence | None

    @property
    def cost(self) -> int:
        """How many exception entries (RDATE, EXDATE, override) the shape needs."""
        if self.recurrence is None:
            return 0
        r = self.recurrence
        return len(r.rdates) + len(r.exdates) + len(r.overrides)


@dataclass(frozen=True, slots=True)
class _Master:
    """What every occurrence inherits unless an override says otherwise."""

    duration: timedelta
    status: BookingStatus
    title: str
    description: str


def fit_series(
    members: Sequence[Member], zone: ZoneInfo, rules: Sequence[tuple[str, datetime]] = ()
) -> SeriesShape:
    """The smallest exact series for ``members``, trying ``rules`` (RRULE, DTSTART) first.

    Each candidate rule is paired with the members: same instant, else same local date, else
    the nearest free instant within half a period; a paired member that differs (time,
    duration, status, title, description) becomes an override, an unpaired member an RDATE,
    an unpaired instant an EXDATE, and the rule ends (UNTIL) at its last paired instant.
    :func:`derive_series`'s rules (from all members, and from all but the first one or two)
    and "no rule at all" are tried after ``rules``; the shape with fewest exception entries
    wins, then the one with fewest RDATEs, then the earlier candidate. Expanding the result
    yields exactly the members' (start, end) pairs, with their status and content.
    """
    if not members:
        raise InvalidValue("a series needs at least one member", field="members")
    ordered = sorted(members, key=lambda member: member.start.astimezone(UTC))
    starts = [member.start.astimezone(UTC) for member in ordered]
    if len(set(starts)) != len(starts):
        raise InvalidValue("two members of the series start at the same instant", field="FromTime")
    master = _master_of(ordered)
    best: SeriesShape | None = None
    for rule, dtstart in _candidates(rules, starts, zone):
        shape = _shape(rule, dtstart, ordered, zone, master)
        if shape is not None and (best is None or _rank(shape) < _rank(best)):
            best = shape
        if best is not None and best.cost == 0:
            break
    # The last candidate (no rule, DTSTART at the first member) always fits.
    assert best is not None
    return best


def _candidates(
    rules: Sequence[tuple[str, datetime]], starts: Sequence[datetime], zone: ZoneInfo
) -> Iterator[tuple[str | None, datetime]]:
    """Candidate (RRULE, DTSTART) pairs in order of preference, derived ones computed lazily."""
    yield from rules
    # A derived rule starts at its first start's wall-clock time, so a moved first member
    # would spoil it: rules derived from the later members are tried too.
    for skipped in range(min(3, len(starts) - 1)):
        derived_rule = derive_series(starts[skipped:], zone)[0]
        if derived_rule is not None:
            yield derived_rule, starts[skipped]
    yield None, starts[0]


def _rank(shape: SeriesShape) -> tuple[int, int]:
    """How good a shape is: fewest exception entries, then fewest RDATEs.

    An override says which occurrence moved; an RDATE (+EXDATE) only says that one appeared.
    """
    return shape.cost, len(shape.recurrence.rdates) if shape.recurrence else 0


def _master_of(members: Sequence[Member]) -> _Master:
    """The commonest duration, title and description; tentative only if every member is."""
    statuses = {member.status for member in members}
    return _Master(
        duration=_commonest(member.end - member.start for member in members),
        status=statuses.pop() if len(statuses) == 1 else BookingStatus.CONFIRMED,
        title=_commonest(member.title for member in members),
        description=_commonest(member.description for member in members),
    )


def _commonest(values: Iterable[_T]) -> _T:
    """The most frequent value; the first seen wins a tie."""
    return Counter(values).most_common(1)[0][0]


def _shape(
    rule: str | None, dtstart: datetime, members: Sequence[Member], zone: ZoneInfo, master: _Master
) -> SeriesShape | None:
    """The series ``rule`` from ``dtstart`` gives ``members``, or None if it can't anchor them."""
    first = dtstart.astimezone(UTC)
    if rule is None:
        instants = [first]
    else:
        horizon = members[-1].start + rule_period(rule)
        instants = [i.astimezone(UTC) for i in rule_instants(rule, dtstart, zone, horizon)]
        if not instants or instants[0] != first:
            return None
    reach = rule_period(rule) / 2 if rule else timedelta(0)
    paired, unpaired = _pair(members, instants, zone, reach)
    if first not in paired:
        # A DTSTART that no member stands for would be an occurrence of nothing.
        return None
    last = max(paired)
    recurrence = Recurrence(
        rrule=_ending(rule, last) if rule and last > first else None,
        rdates=tuple(member.start.astimezone(zone) for member in unpaired),
        exdates=tuple(i.astimezone(zone) for i in instants if i <= last and i not in paired),
        overrides=_overrides(paired, unpaired, zone, master),
    )
    if recurrence.rrule is None and not recurrence.rdates:
        # Nothing recurs: the series is its one member, wherever the rule would have put it.
        only = paired[first]
        return SeriesShape(
            only.start.astimezone(zone),
            only.end.astimezone(zone),
            only.status,
            only.title,
            only.description,
            None,
        )
    return SeriesShape(
        start=first.astimezone(zone),
        end=(first + master.duration).astimezone(zone),
        status=master.status,
        title=master.title,
        description=master.description,
        recurrence=recurrence,
    )


def _ending(rule: str, last: datetime) -> str:
    """``rule`` with its end set to the instant ``last`` (UNTIL in UTC, no COUNT)."""
    parts = rule_parts(rule)
    parts.pop("COUNT", None)
    parts["UNTIL"] = format_until(last)
    return join_rule(parts)


def _pair(
    members: Sequence[Member], instants: Sequence[datetime], zone: ZoneInfo, reach: timedelta
) -> tuple[dict[datetime, Member], list[Member]]:
    """Members paired to the rule instants they stand for, and the members left over."""
    free = set(instants)
    paired: dict[datetime, Member] = {}

    def take(instant: datetime, member: Member) -> None:
        free.discard(instant)
        paired[instant] = member

    left: list[Member] = []
    for member in members:
        if member.start.astimezone(UTC) in free:
            take(member.start.astimezone(UTC), member)
        else:
            left.append(member)
    # A member moved within its day stands for that day's instant; one moved to another
    # day stands for the nearest free instant, as long as that is closer than the next one.
    for same_day in (True, False):
        still: list[Member] = []
        for member in left:
            instant = _nearest(member, free, zone, reach, same_day)
            if instant is None:
                still.append(member)
            else:
                take(instant, member)
        left = still
    return paired, left


def _nearest(
    member: Member, free: set[datetime], zone: ZoneInfo, reach: timedelta, same_day: bool
) -> datetime | None:
    """The free instant nearest to the member: on its local date, or else within ``reach``."""
    start = member.start.astimezone(UTC)
    day = start.astimezone(zone).date()
    near = [
        instant
        for instant in free
        if (instant.astimezone(zone).date() == day if same_day else abs(instant - start) < reach)
    ]
    return min(near, key=lambda instant: (abs(instant - start), instant), default=None)


def _overrides(
    paired: dict[datetime, Member], unpaired: Sequence[Member], zone: ZoneInfo, master: _Master
) -> tuple[Override, ...]:
    """An override for every member that differs from what its instant would give."""
    standing = [*paired.items(), *((member.start.astimezone(UTC), member) for member in unpaired)]
    overrides = [
        _override(instant, member, zone, master)
        for instant, member in sorted(standing, key=lambda pair: pair[0])
    ]
    return tuple(override for override in overrides if override is not None)


def _override(
    instant: datetime, member: Member, zone: ZoneInfo, master: _Master
) -> Override | None:
    """The override making ``instant`` look like ``member``, or None if it already does."""
    moved = member.start != instant or member.end - member.start != master.duration
    status = member.status if member.status is not master.status else None
    title = member.title if member.title != master.title else None
    description = member.description if member.description != master.description else None
    if not moved and status is None and title is None and description is None:
        return None
    return Override(
        recurrence_id=instant.astimezone(zone),
        start=member.start.astimezone(zone),
        end=member.end.astimezone(zone),
        status=status,
        title=title,
        description=description,
    )


def repeat_rules(
    repeat: NexudusRepeat, starts: Sequence[datetime], zone: ZoneInfo
) -> list[tuple[str, datetime]]:
    """Candidate (RRULE, DTSTART) pairs for repeat fields, anchored near the first members.

    The first booking may have been deleted or moved, so each of the first three members'
    dates is tried at the members' commonest wall-clock time, and also the dates that rule
    produces nearest to that member and nearest to the first member.
    """
    local = sorted(start.astimezone(zone) for start in starts)
    wall = _commonest(moment.time() for moment in local)
    if repeat.until is not None and repeat.until > local[-1] + _PERIODS["YEARLY"]:
        # Members are the truth and the rule is cut at the last one anyway; a far-off
        # RepeatUntil would only cost expansion time.
        repeat = replace(repeat, until=None)
    first = datetime.combine(local[0].date(), wall, zone)
    rules: list[tuple[str, datetime]] = []
    for moment in local[:3]:
        anchor = datetime.combine(moment.date(), wall, zone)
        rule = repeat_to_rrule(repeat, anchor, zone)
        nearest = _nearest_rule_instant(rule, anchor, zone)
        # The same rule reaching back to the first member's week or month.
        reaching = _nearest_rule_instant(rule, first, zone)
        for dtstart in (anchor, nearest, reaching):
            candidate = (repeat_to_rrule(repeat, dtstart, zone), dtstart)
            if candidate not in rules:
                rules.append(candidate)
    return rules


def _nearest_rule_instant(rule: str, anchor: datetime, zone: ZoneInfo) -> datetime:
    """The instant of ``rule`` nearest to ``anchor`` (whole days away, same wall-clock time)."""
    period = rule_period(rule)
    # Whole days keep the wall-clock time of the probe equal to the anchor's.
    probe = anchor - timedelta(days=period.days // 2)
    near = list(rule_instants(rule, probe, zone, anchor + period))
    return min(near, key=lambda instant: abs(instant - anchor), default=anchor)
