"""The approval phase of the intake: the room's answer follows the provider's approval.

With a provider that approves bookings later (a writer that is an
:class:`~bridge.sources.approval.ApprovingWriter`, i.e. Prospero), a request the intake booked
is only pending. This phase sets the room's answer on the request event, in place (the same
calendar object, never a copy):

* some booking still pending → TENTATIVE;
* all approved (none pending) → ACCEPTED;
* every booking denied → DECLINED with :data:`DENIED_REASON`, and the request forgotten, as
  the intake does for a provider-side cancellation;
* gone (cancelled, deleted) → nothing here: the intake's own rule cancels the event.

It runs before the intake's decisions (so a denial is declined with its own reason, not as a
cancellation) and after them (so a request booked in this pass shows TENTATIVE at once). An
event edited since it was accepted is left to the intake first: answering it now would
record the edit as accepted without it reaching the provider.

Without a room attendee (a plain collection) the answer is the event's STATUS instead.

Not done: a recurring request (one booking per occurrence) whose occurrences are partly denied
stays ACCEPTED for the others, and the denied occurrences are not declined one by one.
"""

from __future__ import annotations

from collections.abc import Iterable

import icalendar

from bridge.calendars.caldav import room_attendees, set_room_answer
from bridge.errors import BridgeError
from bridge.model import Room, Window
from bridge.sources.approval import Approval, ApprovingWriter
from bridge.sources.writers import BookingWriter
from bridge.sync.extension import ExtendingWriter, extend_series
from bridge.sync.intake import IntakeOutcome, RequestIntake

DENIED_REASON = "the booking request was denied in the booking system"

#: The event STATUS standing for a room answer when no room attendee is invited.
STATUS_OF_ANSWER = {"TENTATIVE": "TENTATIVE", "ACCEPTED": "CONFIRMED"}


def room_answer(states: Iterable[Approval]) -> str | None:
    """The room's answer for a request whose bookings stand at ``states``; None: leave it."""
    found = set(states)
    if Approval.PENDING in found:
        return "TENTATIVE"
    if Approval.APPROVED in found:
        return "ACCEPTED"
    if found == {Approval.DENIED}:
        return "DECLINED"
    return None


def current_answer(ics: bytes) -> str:
    """The room's answer an event shows now (its STATUS when no room is invited)."""
    calendar = icalendar.Calendar.from_ical(ics)
    masters = [e for e in calendar.walk("VEVENT") if "RECURRENCE-ID" not in e]
    event = masters[0] if masters else calendar.walk("VEVENT")[0]
    rooms = room_attendees(event)
    if rooms:
        return str(rooms[0].params.get("PARTSTAT", "NEEDS-ACTION")).upper()
    status = str(event.get("STATUS", "CONFIRMED")).upper()
    return {"CONFIRMED": "ACCEPTED"}.get(status, status)


def answered_ics(ics: bytes, answer: str) -> bytes:
    """The event's text with the room's answer set on every VEVENT not already declined."""
    calendar = icalendar.Calendar.from_ical(ics)
    for event in calendar.walk("VEVENT"):
        rooms = room_attendees(event)
        if any(str(a.params.get("PARTSTAT", "")).upper() == "DECLINED" for a in rooms):
            continue  # an occurrence the room declined stays declined
        if not set_room_answer(event, answer):
            event.pop("STATUS", None)
            event.add("STATUS", STATUS_OF_ANSWER[answer])
    return bytes(calendar.to_ical())


def follow_approvals(
    intake: RequestIntake, writer: ApprovingWriter, outcome: IntakeOutcome
) -> None:
    """Set the room's answer of every accepted request from its bookings' approval."""
    accepted = intake._accepted()
    if not accepted:
        return
    room: Room = intake.room
    objects = {o.uid: o for o in intake.store.calendar_objects(room.id) if o.ics}
    keys = sorted({key for request in accepted.values() for key in request.keys})
    states = writer.approvals(room, keys)
    for uid, request in sorted(accepted.items()):
        obj = objects.get(uid)
        if obj is None or obj.ics is None or obj.content_hash != request.content_hash:
            continue
        answer = room_answer(states.get(key, Approval.GONE) for key in request.keys)
        if answer is None or answer == current_answer(obj.ics):
            continue
        try:
            if answer == "DECLINED":
                intake._forget(request)
                intake._decline(uid, obj, DENIED_REASON, outcome)
            else:
                written = intake._write(obj, answered_ics(obj.ics, answer), outcome)
                intake._remember(uid, request.keys, written)
        except BridgeError as exc:
            outcome.errors.append(f"{uid}: {exc}")


def run_intake(intake: RequestIntake, writer: BookingWriter, window: Window) -> IntakeOutcome:
    """The intake pass, wrapped in the approval phase when the provider approves later.

    A writer that books series occurrence by occurrence also has them extended as the
    window moves (``bridge.sync.extension``), between the decisions and the answers.
    """
    if not isinstance(writer, ApprovingWriter):
        return intake.run(window)
    outcome = IntakeOutcome()
    follow_approvals(intake, writer, outcome)
    decided = intake.run(window)
    if isinstance(writer, ExtendingWriter):
        extend_series(intake, writer, window, decided)
    follow_approvals(intake, writer, decided)
    decided.created += outcome.created
    decided.updated += outcome.updated
    decided.deleted += outcome.deleted
    decided.declined += outcome.declined
    decided.wrote |= outcome.wrote
    decided.errors[:0] = outcome.errors
    return decided
