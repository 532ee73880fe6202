"""Extending recurring requests as the sync window moves, for providers without recurrence.

A provider that cannot hold a rule (Prospero) gets one booking per occurrence inside the sync
window when the request is booked. As the window moves forward, later occurrences enter it;
this phase books them (a writer that is an :class:`OccurrenceWriter`), each pass:

* only occurrences after the last one already booked are new (creation books in start order,
  so a create interrupted half way is completed the same way); occurrences the room declined
  or the organizer removed are never booked again;
* each new occurrence is checked like a new request: against every live booking of the room
  with its buffers, the request carrying the room's default buffers; one that conflicts is
  declined on the event (that occurrence only), with the reason naming the slot;
* an event edited since it was accepted is left to the intake (it re-books an edited series
  whole).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from bridge.calendars.caldav import declined_ics
from bridge.errors import BridgeError
from bridge.model import Booking, Room, Window
from bridge.sources.writers import request_marker
from bridge.sync.intake import IntakeOutcome, RequestIntake
from bridge.sync.requests import Accepted, Span, _reason, blocked_spans, with_room_buffers


@runtime_checkable
class OccurrenceWriter(Protocol):
    """A writer that books a recurring request one occurrence at a time."""

    def occurrence_starts(self, room: Room, keys: Sequence[str]) -> Mapping[str, datetime]:
        """Where each live booking of ``keys`` starts."""
        ...

    def submit_occurrences(
        self, room: Room, booking: Booking, marker: str, starts: Sequence[datetime]
    ) -> list[str]:
        """Book the occurrences of ``booking`` starting at ``starts``; their keys."""
        ...


def new_spans(booking: Booking, window: Window, uid: str, after: datetime) -> list[Span]:
    """The blocked spans of the occurrences starting after ``after``.

    Occurrences the room declined are already left out of a request's booking (the intake
    reads them as excluded).
    """
    return [span for span in blocked_spans(booking, window, uid) if span.booked_start > after]


def extend_series(
    intake: RequestIntake, writer: OccurrenceWriter, window: Window, outcome: IntakeOutcome
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
    writer: OccurrenceWriter,
    window: Window,
    request: Accepted,
    known: Sequence[Booking],
    outcome: IntakeOutcome,
) -> None:
    """Book (or decline) one request's occurrences that entered the window."""
    room = intake.room
    booked = writer.occurrence_starts(room, request.keys)
    if not booked:
        return  # every booking is gone: the intake's own rule handles it
    booking = with_room_buffers(request.booking, room.default_buffers)
    wanted = new_spans(booking, window, request.uid, max(booked.values()))
    if not wanted:
        return
    mine = set(request.keys)
    busy = [
        span
        for other in known
        if other.status.is_live and other.key not in mine
        for span in blocked_spans(other, window, other.key)
    ]
    free: list[tuple[Span, Span | None]] = []
    taken: list[tuple[Span, Span | None]] = []
    for span in wanted:
        clash = next((b for b in sorted(busy, key=lambda s: s.start) if span.meets(b)), None)
        (taken if clash else free).append((span, clash))
    keys = list(request.keys)
    if free:
        starts = [span.booked_start for span, _ in free]
        keys += writer.submit_occurrences(room, booking, request_marker(request.uid), starts)
        outcome.updated += 1
    obj = {o.uid: o for o in intake.store.calendar_objects(room.id)}[request.uid]
    if taken:
        reason = "; ".join(
            _reason((span, clash), booking.timezone) for span, clash in taken if clash
        )
        declined = [span.booked_start for span, _ in taken]
        assert obj.ics is not None
        obj = intake._write(obj, declined_ics(obj.ics, reason, declined), outcome)
        outcome.declined += 1
    intake._remember(request.uid, keys, obj)
