"""The booking-request planner: calendar events the bridge did not write → provider decisions.

Pure: no clock, no I/O, nothing mutated. The intake executor parses the room calendar's foreign
events into :class:`CalendarRequest` records, gathers what it accepted earlier
(:class:`Accepted`) and the provider snapshot, and asks :func:`plan_requests` what to do.

The rules:

* a new request is checked against every live booking of the room, each with its own buffers,
  the request carrying the room's default buffers; requests accepted earlier in the same pass
  count too, taken in creation order then UID order, so of two requests for one slot exactly
  one wins, and always the same one;
* a single request that conflicts is declined; a recurring one has its conflicting occurrences
  declined, or is declined as a whole when more than the room's share of them conflicts;
* an edit of an accepted request is re-checked (its own bookings do not count against it): a
  free edit becomes a provider update, a refused one is reverted; occurrences the calendar
  removed are cancelled in the provider; a deleted or cancelled event withdraws the booking;
* a provider-side cancellation of an accepted request's bookings cancels the event;
* an accepted series the provider holds only up to a horizon (single bookings made inside an
  earlier window) is extended, unchanged, once the window reaches past that horizon: its
  occurrences starting from the horizon are checked like new ones, and only the clashing
  ones declined;
* a decline reason says when the room is taken, never by whom.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from bridge.model import Booking, Buffers, Occurrence, Recurrence, Window
from mappings.expansion import expand

#: Requests without a creation time sort first: they are the oldest the bridge can know of.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class RoomPolicy:
    """What a room allows requests: the window, its default buffers, the series conflict share."""

    window: Window
    default_buffers: Buffers
    series_decline_percent: int = 50


@dataclass(frozen=True, slots=True)
class CalendarRequest:
    """A calendar event the bridge did not write, read as the booking it asks for."""

    uid: str
    booking: Booking
    content_hash: str
    created: datetime | None = None
    declined_by_room: bool = False


@dataclass(frozen=True, slots=True)
class Accepted:
    """A request the bridge turned into provider bookings: their keys and the accepted event.

    ``through`` is where the provider bookings stop covering a series that was booked only
    inside a window (None: they cover it whole).
    """

    uid: str
    keys: tuple[str, ...]
    content_hash: str
    booking: Booking
    through: datetime | None = None


@dataclass(frozen=True, slots=True)
class Book:
    """Create the provider booking(s) of a new request; ``declined`` occurrences are left out."""

    request: CalendarRequest
    booking: Booking
    declined: tuple[datetime, ...] = ()
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Decline:
    """Decline the request as the room, with a reason that names no other booker."""

    request: CalendarRequest
    reason: str


@dataclass(frozen=True, slots=True)
class Change:
    """Update an accepted request's provider bookings to the edited event (already re-checked)."""

    request: CalendarRequest
    accepted: Accepted
    booking: Booking


@dataclass(frozen=True, slots=True)
class Revert:
    """Put an edited event back as it was accepted: the edit is not possible."""

    request: CalendarRequest
    accepted: Accepted
    reason: str


@dataclass(frozen=True, slots=True)
class DropOccurrences:
    """Cancel the provider occurrences (by their original starts) the calendar removed."""

    request: CalendarRequest
    accepted: Accepted
    starts: tuple[datetime, ...]


@dataclass(frozen=True, slots=True)
class Extend:
    """Book an accepted series' occurrences from ``since`` (``declined`` ones left out)."""

    request: CalendarRequest
    accepted: Accepted
    booking: Booking
    since: datetime
    declined: tuple[datetime, ...] = ()
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Withdraw:
    """The event was deleted or cancelled in the calendar: cancel its provider bookings."""

    accepted: Accepted


@dataclass(frozen=True, slots=True)
class ProviderCancelled:
    """Every provider booking of an accepted request is gone: cancel the event."""

    request: CalendarRequest
    accepted: Accepted


Decision = (
    Book | Decline | Change | Revert | DropOccurrences | Extend | Withdraw | ProviderCancelled
)


@dataclass(frozen=True, slots=True)
class Span:
    """Time the room is blocked (buffers included), in UTC, and the booked time it comes from."""

    start: datetime
    end: datetime
    booked_start: datetime
    booked_end: datetime
    owner: str

    def meets(self, other: Span) -> bool:
        """Whether the two blocked intervals overlap."""
        return self.start < other.end and other.start < self.end


def blocked_spans(booking: Booking, window: Window, owner: str) -> list[Span]:
    """The blocked spans of a booking's live occurrences in the window."""
    return [_span(occurrence, owner) for occurrence in expand(booking, window) if _live(occurrence)]


def _live(occurrence: Occurrence) -> bool:
    """Whether an occurrence holds the room."""
    return occurrence.status.is_live


def _span(occurrence: Occurrence, owner: str) -> Span:
    """An occurrence as a blocked span."""
    return Span(
        occurrence.blocked_start,
        occurrence.blocked_end,
        occurrence.start.astimezone(UTC),
        occurrence.end.astimezone(UTC),
        owner,
    )


def busy_reason(taken: Span, timezone: str, *, buffered: bool) -> str:
    """Why a slot is refused, in the room's local time, without the other booking's details."""
    zone = ZoneInfo(timezone)
    start, end = taken.booked_start.astimezone(zone), taken.booked_end.astimezone(zone)
    when = f"{start:%Y-%m-%d} {start:%H:%M}\u2013{end:%H:%M}"
    suffix = " (with its setup/cleanup time)" if buffered else ""
    return f"the room is booked {when}{suffix}"


def with_room_buffers(booking: Booking, buffers: Buffers) -> Booking:
    """The request's booking carrying the room's default buffers."""
    return booking if booking.buffers == buffers else booking.evolve(buffers=buffers)


def plan_requests(
    requests: Iterable[CalendarRequest],
    accepted: Mapping[str, Accepted],
    known: Iterable[Booking],
    policy: RoomPolicy,
) -> tuple[Decision, ...]:
    """What to do with the room's calendar requests this pass, in a deterministic order."""
    current = {request.uid: request for request in requests}
    known_by_key = {booking.key: booking for booking in known}
    busy = [
        span
        for booking in known_by_key.values()
        if booking.status.is_live
        for span in blocked_spans(booking, policy.window, booking.key)
    ]
    decisions: list[Decision] = []
    for uid in sorted(accepted.keys() - current.keys()):
        decisions.append(Withdraw(accepted[uid]))
    for uid in sorted(accepted.keys() & current.keys()):
        decision = _plan_accepted(current[uid], accepted[uid], known_by_key, busy, policy)
        if decision is not None:
            decisions.append(decision)
    fresh = [r for uid, r in current.items() if uid not in accepted and not r.declined_by_room]
    for request in sorted(fresh, key=_arrival):
        decision = _plan_new(request, busy, policy)
        decisions.append(decision)
        if isinstance(decision, Book):
            busy.extend(blocked_spans(decision.booking, policy.window, request.uid))
    return tuple(decisions)


def _arrival(request: CalendarRequest) -> tuple[datetime, str]:
    """Race order: who asked first, then the UID."""
    return (request.created or _EPOCH).astimezone(UTC), request.uid


def _conflicts(spans: Sequence[Span], busy: Sequence[Span], ignore: frozenset[str]) -> list[
    tuple[Span, Span]
]:
    """Each requested span that meets a busy span, with the first busy span it meets."""
    found = []
    for wanted in spans:
        for taken in sorted(busy, key=lambda s: s.start):
            if taken.owner not in ignore and wanted.meets(taken):
                found.append((wanted, taken))
                break
    return found


def _reason(clash: tuple[Span, Span], timezone: str) -> str:
    """The reason for one clash; it mentions buffers when only they make the overlap."""
    wanted, taken = clash
    booked_overlap = (
        wanted.booked_start < taken.booked_end and taken.booked_start < wanted.booked_end
    )
    return busy_reason(taken, timezone, buffered=not booked_overlap)


def _plan_new(request: CalendarRequest, busy: Sequence[Span], policy: RoomPolicy) -> Decision:
    """Book, partly book or decline a new request."""
    booking = with_room_buffers(request.booking, policy.default_buffers)
    if not booking.status.is_live:
        return Decline(request, "the event is cancelled")
    spans = blocked_spans(booking, policy.window, request.uid)
    if not spans:
        return Decline(request, "the event has no occurrence inside the bookable window")
    clashes = _conflicts(spans, busy, frozenset())
    if not clashes:
        return Book(request, booking)
    reason = _reason(clashes[0], booking.timezone)
    if not booking.is_recurring:
        return Decline(request, reason)
    if len(clashes) == len(spans) or 100 * len(clashes) > policy.series_decline_percent * len(
        spans
    ):
        share = f"{len(clashes)} of {len(spans)} occurrences conflict; first: {reason}"
        return Decline(request, share)
    starts = tuple(wanted.booked_start for wanted, _ in clashes)
    partial = without_occurrences(booking, starts)
    detail = "; ".join(_reason(clash, booking.timezone) for clash in clashes)
    return Book(request, partial, starts, f"occurrences declined: {detail}")


def without_occurrences(booking: Booking, starts: Sequence[datetime]) -> Booking:
    """The booking with the occurrences starting at ``starts`` excluded (EXDATEs)."""
    recurrence = booking.recurrence or Recurrence()
    zone = booking.zone
    exdates = tuple(sorted({*recurrence.exdates, *(s.astimezone(zone) for s in starts)}))
    return booking.evolve(recurrence=Recurrence(
        recurrence.rrule, recurrence.rdates, exdates, recurrence.overrides
    ))


def _plan_accepted(
    request: CalendarRequest,
    accepted: Accepted,
    known: Mapping[str, Booking],
    busy: Sequence[Span],
    policy: RoomPolicy,
) -> Decision | None:
    """What an accepted request needs: nothing, or a change, revert, drop, withdraw, cancel."""
    if not any(key in known and known[key].status.is_live for key in accepted.keys):
        return ProviderCancelled(request, accepted)
    if request.content_hash == accepted.content_hash:
        return _plan_extension(request, accepted, busy, policy)
    booking = with_room_buffers(request.booking, policy.default_buffers)
    if not booking.status.is_live or request.declined_by_room:
        return Withdraw(accepted)
    previous = with_room_buffers(accepted.booking, policy.default_buffers)
    dropped = _dropped_only(previous, booking, policy.window)
    if dropped is not None:
        return DropOccurrences(request, accepted, dropped) if dropped else None
    spans = blocked_spans(booking, policy.window, request.uid)
    clashes = _conflicts(spans, busy, frozenset(accepted.keys) | {request.uid})
    if clashes:
        return Revert(request, accepted, _reason(clashes[0], booking.timezone))
    return Change(request, accepted, booking)


def _plan_extension(
    request: CalendarRequest, accepted: Accepted, busy: Sequence[Span], policy: RoomPolicy
) -> Extend | None:
    """Extend a windowed series whose horizon the window has passed, if it recurs there."""
    window = policy.window
    if accepted.through is None or accepted.through >= window.end:
        return None
    since = max(accepted.through, window.start)
    booking = with_room_buffers(request.booking, policy.default_buffers)
    spans = [
        span
        for span in blocked_spans(booking, Window(since, window.end), request.uid)
        if span.booked_start >= since
    ]
    if not spans:
        return None
    clashes = _conflicts(spans, busy, frozenset(accepted.keys) | {request.uid})
    if not clashes:
        return Extend(request, accepted, booking, since)
    starts = tuple(wanted.booked_start for wanted, _ in clashes)
    detail = "; ".join(_reason(clash, booking.timezone) for clash in clashes)
    return Extend(
        request, accepted, without_occurrences(booking, starts), since, starts,
        f"occurrences declined: {detail}",
    )


def _dropped_only(
    previous: Booking, current: Booking, window: Window
) -> tuple[datetime, ...] | None:
    """The original starts of removed occurrences when removing them is the only edit."""
    same_shape = (
        previous.start == current.start
        and previous.end == current.end
        and previous.title == current.title
        and previous.description == current.description
        and _rule(previous) == _rule(current)
    )
    if not same_shape:
        return None
    before = {_occurrence_id(o): o for o in expand(previous, window) if _live(o)}
    after = {_occurrence_id(o): o for o in expand(current, window) if _live(o)}
    if any(key not in before or _times(before[key]) != _times(after[key]) for key in after):
        return None
    return tuple(sorted(before.keys() - after.keys()))


def _times(occurrence: Occurrence) -> tuple[datetime, datetime]:
    """Where an occurrence is, in UTC."""
    return occurrence.start.astimezone(UTC), occurrence.end.astimezone(UTC)


def _rule(booking: Booking) -> str | None:
    """A booking's RRULE, if any."""
    return booking.recurrence.rrule if booking.recurrence else None


def _occurrence_id(occurrence: Occurrence) -> datetime:
    """An occurrence's identity: its rule instant (or start), in UTC."""
    return (occurrence.recurrence_id or occurrence.start).astimezone(UTC)

