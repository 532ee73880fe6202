"""Extending recurring requests as the sync window moves, for providers without recurrence.

A provider that cannot hold a rule (Prospero) gets one booking per occurrence inside the sync
window when the request is booked. As the window moves forward, later occurrences enter it;
this phase books them (a writer that is an :class:`ExtendingWriter`), each pass:

* only occurrences never asked for under the request's marker are new (so a create
  interrupted half way is completed, and a denied or cancelled occurrence is not asked for
  again); occurrences the room declined or the organizer removed are never booked again;
* each new occurrence is checked like a new request: against every live booking of the room
  with its buffers, the request carrying the room's default buffers; one that conflicts is
  declined on the event (that occurrence only), with the reason naming the slot;
* an event edited since it was accepted is left to the intake (it re-books an edited series
  whole).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from bridge.calendars.caldav import declined_ics
from bridge.errors import BridgeError
from bridge.model import Booking, Room, Window
from bridge.sources.writers import request_marker
from bridge.sync.intake import IntakeOutcome, RequestIntake
from bridge.sync.requests import (
    Accepted,
    Span,
    _conflicts,
    _reason,
    blocked_spans,
    with_room_buffers,
    without_occurrences,
)


@runtime_checkable
class ExtendingWriter(Protocol):
    """A writer that books a recurring request one occurrence at a time, inside a window."""

    def asked_starts(self, room: Room, marker: str) -> set[datetime]:
        """Where every booking ever made under ``marker`` starts (denied, cancelled too)."""
        ...

    def extend(
        self, room: Room, booking: Booking, marker: str, since: datetime, window: Window
    ) -> list[str]:
        """Book the occurrences starting in [since, window end) never asked for; their keys."""
        ...


def new_spans(booking: Booking, window: Window, uid: str, asked: set[datetime]) -> list[Span]:
    """The blocked spans of the occurrences never asked for.

    Occurrences the room declined or the organizer removed are already left out of a
    request's booking (the intake reads them as excluded).
    """
    return [span for span in blocked_spans(booking, window, uid) if span.booked_start not in asked]


def extend_series(
    intake: RequestIntake, writer: ExtendingWriter, window: Window, outcome: IntakeOutcome
) -> None:
    """Book the occurrences of accepted recurring requests that entered the window."""
    room = intake.room
    accepted = {uid: a for uid, a in intake._accepted().items() if a.booking.is_recurring}
    if not accepted:
        return
    objects = {o.uid: o for o in intake.store.calendar_objects(room.id) if o.ics}
    known = [pb.booking for pb in intake.store.provider_bookings(room.id)]
    for uid, request in sorted(accepted.items()):
        obj = objects.get(uid)
        if obj is None or obj.ics is None or obj.content_hash != request.content_hash:
            continue
        try:
            _extend(intake, writer, window, request, known, outcome)
        except BridgeError as exc:
            outcome.errors.append(f"{uid}: {exc}")


def _extend(
    intake: RequestIntake,
    writer: ExtendingWriter,
    window: Window,
    request: Accepted,
    known: Sequence[Booking],
    outcome: IntakeOutcome,
) -> None:
    """Book (or decline) one request's occurrences that entered the window."""
    room = intake.room
    marker = request_marker(request.uid)
    booking = with_room_buffers(request.booking, room.default_buffers)
    wanted = new_spans(booking, window, request.uid, writer.asked_starts(room, marker))
    if not wanted:
        return
    busy = [
        span
        for other in known
        if other.status.is_live
        for span in blocked_spans(other, window, other.key)
    ]
    taken = _conflicts(wanted, busy, frozenset(request.keys) | {request.uid})
    clashing = {span.booked_start for span, _ in taken}
    free = [span for span in wanted if span.booked_start not in clashing]
    keys = set(request.keys)
    if free:
        since = min(span.booked_start for span in free)
        narrowed = without_occurrences(booking, sorted(clashing)) if clashing else booking
        keys.update(writer.extend(room, narrowed, marker, since, window))
        outcome.updated += 1
    obj = {o.uid: o for o in intake.store.calendar_objects(room.id)}[request.uid]
    if taken:
        reason = "; ".join(_reason(clash, booking.timezone) for clash in taken)
        assert obj.ics is not None
        obj = intake._write(obj, declined_ics(obj.ics, reason, sorted(clashing)), outcome)
        outcome.declined += 1
    intake._remember(request.uid, sorted(keys), obj)
