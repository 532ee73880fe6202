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

The answer goes through the calendar's own ``accept`` (``tentative`` while pending): CalDAV sets
the room attendee's PARTSTAT (without a room attendee, a plain collection, the event's STATUS),
Google the room's ``responseStatus``, Microsoft 365 ``tentativelyAccept``/``accept``.

Not done: a recurring request (one booking per occurrence) whose occurrences are partly denied
stays ACCEPTED for the others, and the denied occurrences are not declined one by one.
"""

from __future__ import annotations

from collections.abc import Iterable

import icalendar

from bridge.calendars.caldav import room_attendees
from bridge.errors import BridgeError
from bridge.model import Room, Window
from bridge.sources.approval import Approval, ApprovingWriter
from bridge.sources.writers import BookingWriter
from bridge.sync.intake import IntakeOutcome, RequestIntake

DENIED_REASON = "the booking request was denied in the booking system"


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


def follow_approvals(
    intake: RequestIntake, writer: ApprovingWriter, outcome: IntakeOutcome
) -> None:
    """Set the room's answer of every accepted request from its bookings' approval."""
    accepted = intake.accepted_requests()
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
                intake.deny(request, obj, DENIED_REASON, outcome)
            else:
                intake.reanswer(obj, request, outcome, tentative=answer == "TENTATIVE")
        except BridgeError as exc:
            outcome.errors.append(f"{uid}: {exc}")


def run_intake(intake: RequestIntake, writer: BookingWriter, window: Window) -> IntakeOutcome:
    """The intake pass, wrapped in the approval phase when the provider approves later."""
    if not isinstance(writer, ApprovingWriter):
        return intake.run(window)
    outcome = IntakeOutcome()
    follow_approvals(intake, writer, outcome)
    decided = intake.run(window)
    follow_approvals(intake, writer, decided)
    decided.created += outcome.created
    decided.updated += outcome.updated
    decided.deleted += outcome.deleted
    decided.declined += outcome.declined
    decided.wrote |= outcome.wrote
    decided.errors[:0] = outcome.errors
    return decided
