"""The intake phase of a room's pass: calendar booking requests → provider bookings or declines.

It runs after both reads and before the provider→calendar plan. Foreign events come from the
stored calendar snapshot; :func:`bridge.sync.requests.plan_requests` decides; this module does
the I/O, in an order that survives a SIGKILL anywhere:

1. an intent (``intent:<uid>``) is stored in its own transaction before the provider create;
2. the provider create carries a marker of the event UID, so after a crash the next pass finds
   the booking (``BookingWriter.find``) and adopts it instead of booking the room again;
3. the room accepts the event and tags it with the booking keys, with If-Match
   (:class:`~bridge.calendars.base.RequestAnswers`: CalDAV rewrites the event; Google patches
   the room's attendee entry and private properties on its copy; Graph sets an extended
   property on the room's copy and POSTs ``accept``);
4. links (origin CALENDAR), the accepted event (``request:<uid>``) and the snapshot entry are
   recorded in one transaction, and the intent dropped.

Calendars are only written through that interface, so every backend gets the same rules.
On Google and Microsoft 365 the room answers an invitation natively first (it accepts when its
own calendar, which holds the bridge's copies of provider bookings but not their buffers, is
free; a meeting it declines never reaches the room's calendar); the bridge's answer, with
buffers and the provider's own checks, is the last word.

A refused edit (a move onto a taken slot): where the room may rewrite the event (CalDAV,
``can_restore``) the accepted version is put back with the reason, and the booking stays.
Google and Microsoft 365 hold the organizer's meeting, which the room cannot rewrite; there
the room declines the edited meeting with the reason and the provider booking it held is
cancelled: a meeting the room declined must not keep the room booked, and the organizer sees
at once that the new time is not theirs. The calendar is answered first, so a crash between
the two leaves a declined request whose booking the next pass withdraws.

The accepted event, as read back after the answer, is kept so that the echo of our own answer
is no change, and a refused edit can be put back as it was, together with the horizon of a
series booked only inside a window (``through``), from which later passes extend it; an
extension is recorded like a create, after the provider writes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import Enum

import icalendar

from bridge.calendars.base import AnsweringCalendar, RemoteObject
from bridge.errors import BridgeError
from bridge.model import Booking, Room, Window
from bridge.sources.approval import ApprovingWriter
from bridge.sources.writers import BookingWriter, Refused, WindowedWriter, request_marker
from bridge.state.store import CalendarObject as StoredObject
from bridge.state.store import LinkOrigin, ObjectOrigin, StateStore
from bridge.sync.requests import (
    Accepted,
    Book,
    CalendarRequest,
    Change,
    Decision,
    Decline,
    DropOccurrences,
    Extend,
    ProviderCancelled,
    Revert,
    RoomPolicy,
    Withdraw,
    blocked_spans,
    plan_requests,
    without_occurrences,
)
from mappings.errors import MappingError
from mappings.ical import X_KEY, X_PROVIDER, calendar_to_bookings, content_hash

INTENT = "intent:"
ACCEPTED = "request:"
DECLINED = "declined:"

PROVIDER_CANCELLED = "cancelled in the booking system"


class _Keep(Enum):
    """Leave the stored horizon of an accepted request as it is."""

    THROUGH = "keep"


KEEP = _Keep.THROUGH


@dataclass(slots=True)
class IntakeOutcome:
    """What the intake did this pass (merged into the room's result)."""

    created: int = 0
    updated: int = 0
    deleted: int = 0
    declined: int = 0
    wrote: bool = False
    errors: list[str] = field(default_factory=list)
    #: Provider bookings the intake cancelled: the provider→calendar plan must not restore them.
    released: set[str] = field(default_factory=set)


def request_of(
    room: Room, uid: str, ics: bytes, declined_hash: str | None = None
) -> CalendarRequest:
    """A foreign event read as a booking request of the room."""
    calendar = icalendar.Calendar.from_ical(ics)
    bookings = calendar_to_bookings(
        _untagged(calendar), provider=room.provider, timezone=room.timezone
    )
    if not bookings:
        raise ValueError(f"event {uid} holds no VEVENT")
    booking = bookings[0].evolve(provider=room.provider, key=uid, resource=room.resource)
    if booking.is_recurring:
        # Occurrences the room declined are not asked for (any more): they hold nothing.
        declined = _declined_occurrences(calendar, room)
        booking = without_occurrences(booking, declined) if declined else booking
    masters = [e for e in calendar.walk("VEVENT") if "RECURRENCE-ID" not in e]
    master = masters[0] if masters else calendar.walk("VEVENT")[0]
    digest = content_hash(ics)
    answered = any(
        str(a.params.get("PARTSTAT", "")).upper() == "DECLINED"
        for a in _own_attendees(master, room)
    )
    return CalendarRequest(
        uid=uid,
        booking=booking,
        content_hash=digest,
        created=_created(master),
        declined_by_room=answered or not booking.status.is_live or declined_hash == digest,
    )


def _untagged(calendar: icalendar.Calendar) -> bytes:
    """The event without the room's tags: it is read as another client's event, never ours."""
    untagged = icalendar.Calendar.from_ical(calendar.to_ical())
    for event in untagged.walk("VEVENT"):
        for name in (X_PROVIDER, X_KEY):
            event.pop(name, None)
    return bytes(untagged.to_ical())


def _declined_occurrences(calendar: icalendar.Calendar, room: Room) -> list[datetime]:
    """The occurrences (RECURRENCE-IDs) of an event that this room declined, in order."""
    found = []
    for event in calendar.walk("VEVENT"):
        if "RECURRENCE-ID" in event and any(
            str(a.params.get("PARTSTAT", "")).upper() == "DECLINED"
            for a in _own_attendees(event, room)
        ):
            found.append(event.decoded("RECURRENCE-ID"))
    return sorted(found)


def _own_attendees(event: icalendar.cal.Component, room: Room) -> list[icalendar.vCalAddress]:
    """The attendees standing for this room: its own address if listed, else every room.

    Google and Graph rooms are addressed by their calendar id; a meeting may invite several.
    """
    rooms = _room_attendees(event)
    address = f"mailto:{room.calendar_id or ''}".lower()
    own = [a for a in rooms if str(a).lower() == address]
    return own or rooms


def _room_attendees(event: icalendar.cal.Component) -> list[icalendar.vCalAddress]:
    """Room/resource attendees of an event."""
    values = event.get("ATTENDEE", [])
    listed = values if isinstance(values, list) else [values]
    return [a for a in listed if str(a.params.get("CUTYPE", "")).upper() in ("ROOM", "RESOURCE")]


def _created(event: icalendar.cal.Component) -> datetime | None:
    """When the organizer made the event: CREATED, else DTSTAMP."""
    for name in ("CREATED", "DTSTAMP"):
        if name in event:
            value = event.decoded(name)
            if isinstance(value, datetime) and value.tzinfo is not None:
                return value
    return None


class RequestIntake:
    """Executes the request planner's decisions for one room."""

    def __init__(
        self,
        room: Room,
        calendar: AnsweringCalendar,
        writer: BookingWriter,
        store: StateStore,
        *,
        clock: Callable[[], datetime],
    ) -> None:
        self.room = room
        self.calendar = calendar
        self.writer = writer
        self.store = store
        self.clock = clock

    def run(self, window: Window) -> IntakeOutcome:
        """One intake pass over the stored snapshots."""
        outcome = IntakeOutcome()
        policy = RoomPolicy(window, self.room.default_buffers, self.room.series_decline_percent)
        objects = {o.uid: o for o in self.store.calendar_objects(self.room.id)
                   if o.origin is ObjectOrigin.FOREIGN and o.ics}
        requests = self._requests(objects, outcome)
        accepted = self.accepted_requests()
        for uid in sorted(requests.keys() - accepted.keys()):
            adopted = self._recover(requests[uid], objects[uid], window, outcome)
            if adopted is not None:
                accepted[uid] = adopted
        known = [pb.booking for pb in self.store.provider_bookings(self.room.id)]
        for decision in plan_requests(requests.values(), accepted, known, policy):
            uid = _uid_of(decision)
            try:
                self._apply(decision, objects.get(uid), window, outcome)
            except BridgeError as exc:
                outcome.errors.append(f"{uid}: {exc}")
                self.store.record_error(self.room.id, uid, "request", str(exc), self.clock())
            else:
                self.store.clear_error(self.room.id, uid, "request")
        self._clear_errors_of_gone_events(objects.keys() | accepted.keys())
        return outcome

    def _clear_errors_of_gone_events(self, present: set[str]) -> None:
        """Drop the errors of requests whose event is gone: nothing is left to retry."""
        for error in self.store.errors(self.room.id):
            if error.operation == "request" and error.item not in present:
                self.store.clear_error(self.room.id, error.item, "request")

    # ----- reading -------------------------------------------------------------------------

    def _requests(
        self, objects: dict[str, StoredObject], outcome: IntakeOutcome
    ) -> dict[str, CalendarRequest]:
        """Every foreign event that parses, as a request."""
        found = {}
        for uid, obj in objects.items():
            assert obj.ics is not None
            declined = self.store.get_cursor(self.room.id, DECLINED + uid)
            try:
                found[uid] = request_of(self.room, uid, obj.ics, declined)
            except (MappingError, ValueError) as exc:
                outcome.errors.append(f"{uid}: not a readable booking request: {exc}")
        return found

    def accepted_requests(self) -> dict[str, Accepted]:
        """The requests linked to provider bookings, with the event text they were accepted as."""
        keys: dict[str, list[str]] = {}
        for link in self.store.room_links(self.room.id):
            if link.origin is LinkOrigin.CALENDAR:
                keys.setdefault(link.uid, []).append(link.booking_key)
        accepted = {}
        for uid, booking_keys in keys.items():
            record = self.store.get_cursor(self.room.id, ACCEPTED + uid)
            if record is None:
                continue
            stored = json.loads(record)
            ics = str(stored["ics"]).encode()
            request = request_of(self.room, uid, ics)
            accepted[uid] = Accepted(uid, tuple(sorted(booking_keys)), stored["hash"],
                                     request.booking, _through(stored))
        return accepted

    def _recover(
        self, request: CalendarRequest, obj: StoredObject, window: Window, outcome: IntakeOutcome
    ) -> Accepted | None:
        """Adopt the provider booking an interrupted pass made for this request, if any."""
        if self.store.get_cursor(self.room.id, INTENT + request.uid) is None:
            return None
        keys = self.writer.find(self.room, request_marker(request.uid), window)
        if not keys:
            return None
        # The interrupted pass's window is unknown: extend from this one's start (the
        # extension skips what is already booked).
        through = window.start if self._horizon(request.booking, window) else None
        return self._accept(request, obj, keys, (), "", outcome, through)

    # ----- applying ------------------------------------------------------------------------

    def _apply(
        self, decision: Decision, obj: StoredObject | None, window: Window, outcome: IntakeOutcome
    ) -> None:
        """Carry out one decision."""
        if isinstance(decision, Withdraw):
            self._withdraw(decision.accepted, outcome)
            return
        assert obj is not None
        if isinstance(decision, Book):
            self._book(decision, obj, window, outcome)
        elif isinstance(decision, Decline):
            self._decline(decision.request.uid, obj, decision.reason, outcome)
        elif isinstance(decision, Change):
            self._change(decision, obj, window, outcome)
        elif isinstance(decision, Revert):
            self._revert(decision.accepted, obj, decision.reason, outcome)
        elif isinstance(decision, Extend):
            self._extend(decision, obj, window, outcome)
        elif isinstance(decision, DropOccurrences):
            self.writer.cancel_occurrences(self.room, decision.accepted.keys, decision.starts)
            self._remember(decision.accepted.uid, decision.accepted.keys, obj)
            outcome.updated += 1
        elif isinstance(decision, ProviderCancelled):
            self.deny(decision.accepted, obj, PROVIDER_CANCELLED, outcome)

    def _book(
        self, decision: Book, obj: StoredObject, window: Window, outcome: IntakeOutcome
    ) -> None:
        """Intent, provider create (or adopt), then tag the event and link it."""
        uid = decision.request.uid
        marker = request_marker(uid)
        self.store.set_cursor(self.room.id, INTENT + uid, decision.request.content_hash,
                              self.clock())
        try:
            keys = self.writer.create(self.room, decision.booking, marker, window)
        except Refused as exc:
            self._decline(uid, obj, exc.reason, outcome)
            self.store.set_cursor(self.room.id, INTENT + uid, None, self.clock())
            return
        self._accept(decision.request, obj, keys, decision.declined, decision.reason, outcome,
                     self._horizon(decision.booking, window))
        outcome.created += 1
        if decision.declined:
            outcome.declined += 1

    def _accept(
        self,
        request: CalendarRequest,
        obj: StoredObject,
        keys: Sequence[str],
        declined: Sequence[datetime],
        reason: str,
        outcome: IntakeOutcome,
        through: datetime | None = None,
    ) -> Accepted:
        """Accept and tag the event with its keys (declining ``declined`` occurrences), link it."""
        remote = self.calendar.accept(
            obj.href, obj.etag, provider=self.writer.name, keys=keys, declined=declined,
            reason=reason, tentative=isinstance(self.writer, ApprovingWriter),
        )
        outcome.wrote = True
        written = self._stored_after(obj, remote)
        self._remember(request.uid, keys, written, through)
        stored = request_of(self.room, request.uid, written.ics or b"")
        return Accepted(request.uid, tuple(sorted(keys)), stored.content_hash, stored.booking,
                        through)

    def _horizon(self, booking: Booking, window: Window) -> datetime | None:
        """Where the writer's bookings of ``booking`` made in ``window`` stop covering it."""
        if isinstance(self.writer, WindowedWriter):
            return self.writer.horizon(booking, window)
        return None

    def _extend(
        self, decision: Extend, obj: StoredObject, window: Window, outcome: IntakeOutcome
    ) -> None:
        """Book a windowed series' newly covered occurrences; decline those that cannot be."""
        assert obj.ics is not None
        if not isinstance(self.writer, WindowedWriter):
            raise BridgeError(f"{self.writer.name} cannot extend a series booked in parts")
        accepted = decision.accepted
        declined, reason = decision.declined, decision.reason
        try:
            keys = self.writer.extend(self.room, decision.booking, request_marker(accepted.uid),
                                      decision.since, window)
        except Refused as exc:
            keys = []
            spans = blocked_spans(decision.booking, Window(decision.since, window.end), "")
            declined = tuple(sorted({*declined, *(s.booked_start for s in spans
                                                  if s.booked_start >= decision.since)}))
            reason = f"occurrences declined: {exc.reason}"
        written = obj
        if declined:
            remote = self.calendar.decline(obj.href, obj.etag, reason=reason, occurrences=declined)
            outcome.wrote = True
            outcome.declined += 1
            if remote is not None:
                written = self._stored_after(obj, remote)
        self._remember(accepted.uid, sorted({*accepted.keys, *keys}), written, window.end)
        outcome.updated += 1

    def _change(
        self, decision: Change, obj: StoredObject, window: Window, outcome: IntakeOutcome
    ) -> None:
        """Move/retitle the provider bookings; a refusal reverts the event."""
        accepted = decision.accepted
        marker = request_marker(accepted.uid)
        try:
            keys = self.writer.change(self.room, accepted.keys, decision.booking, marker, window)
        except Refused as exc:
            kept = set(exc.kept if exc.kept is not None else accepted.keys)
            rekeyed = kept != set(accepted.keys)
            if rekeyed:
                # The writer put the old bookings back under new keys: follow them.
                for key in set(accepted.keys) - kept:
                    self.store.forget(self.room.id, key, accepted.uid)
                accepted = replace(accepted, keys=tuple(sorted(kept)))
            self._revert(accepted, obj, exc.reason, outcome, retag=rekeyed)
            return
        for key in set(accepted.keys) - set(keys):
            self.store.forget(self.room.id, key, accepted.uid)
        if set(keys) == set(accepted.keys):
            self._remember(accepted.uid, keys, obj)
        else:
            self._accept(decision.request, obj, keys, (), "", outcome,
                         self._horizon(decision.booking, window))
        outcome.updated += 1

    def _revert(
        self,
        accepted: Accepted,
        obj: StoredObject,
        reason: str,
        outcome: IntakeOutcome,
        *,
        retag: bool = False,
    ) -> None:
        """Refuse an edit: put the event back as accepted, or decline it and release the room.

        ``retag``: the bookings now have other keys than the accepted event carries.
        """
        why = f"change refused: {reason}"
        if not self.calendar.can_restore:
            self._decline(accepted.uid, obj, why, outcome)
            self._release(accepted, outcome)
            return
        record = self.store.get_cursor(self.room.id, ACCEPTED + accepted.uid)
        assert record is not None
        ics = str(json.loads(record)["ics"]).encode()
        remote = self.calendar.restore(obj.href, obj.etag, ics, reason=why)
        outcome.wrote = True
        written = self._stored_after(obj, remote)
        if retag:
            self.reanswer(written, accepted, outcome)
        else:
            self._remember(accepted.uid, accepted.keys, written)
        outcome.declined += 1

    def reanswer(
        self,
        obj: StoredObject,
        accepted: Accepted,
        outcome: IntakeOutcome,
        *,
        tentative: bool | None = None,
    ) -> None:
        """Accept an accepted request's event again, tagged with its keys as they are now.

        ``tentative`` defaults to whether the provider approves bookings later.
        """
        if tentative is None:
            tentative = isinstance(self.writer, ApprovingWriter)
        remote = self.calendar.accept(
            obj.href, obj.etag, provider=self.writer.name, keys=accepted.keys,
            tentative=tentative,
        )
        outcome.wrote = True
        self._remember(accepted.uid, accepted.keys, self._stored_after(obj, remote))

    def deny(
        self, accepted: Accepted, obj: StoredObject, reason: str, outcome: IntakeOutcome
    ) -> None:
        """The provider will not hold an accepted request after all: forget it, decline it."""
        self._forget(accepted)
        self._decline(accepted.uid, obj, reason, outcome)

    def _decline(self, uid: str, obj: StoredObject, reason: str, outcome: IntakeOutcome) -> None:
        """Decline the event as the room and remember not to look at it again."""
        remote = self.calendar.decline(obj.href, obj.etag, reason=reason)
        outcome.declined += 1
        outcome.wrote = True
        if remote is None:  # the backend took the declined meeting out of the room's calendar
            self.store.delete_calendar_object(self.room.id, obj.href)
            digest = obj.content_hash
        else:
            digest = self._stored_after(obj, remote).content_hash
        self.store.set_cursor(self.room.id, DECLINED + uid, digest, self.clock())

    def _withdraw(self, accepted: Accepted, outcome: IntakeOutcome) -> None:
        """Cancel the provider bookings of a deleted or cancelled event."""
        self._release(accepted, outcome)

    def _release(self, accepted: Accepted, outcome: IntakeOutcome) -> None:
        """Cancel a request's provider bookings and forget them (links and snapshot)."""
        self.writer.cancel(self.room, accepted.keys)
        self._forget(accepted, released=True)
        outcome.released.update(accepted.keys)
        outcome.deleted += 1

    # ----- recording -----------------------------------------------------------------------

    def _stored_after(self, obj: StoredObject, remote: RemoteObject) -> StoredObject:
        """Re-read an answered event (servers may rewrite it) and store it in the snapshot."""
        current = self.calendar.get(remote.href)
        stored = StoredObject(
            room_id=self.room.id,
            href=current.href,
            uid=obj.uid,
            etag=current.etag,
            content_hash=content_hash(current.ics),
            origin=ObjectOrigin.FOREIGN,
            ics=current.ics,
        )
        self.store.put_calendar_object(stored)
        return stored

    def _remember(
        self,
        uid: str,
        keys: Sequence[str],
        obj: StoredObject,
        through: datetime | _Keep | None = KEEP,
    ) -> None:
        """Links of the event to its bookings and the accepted text, in one transaction."""
        assert obj.ics is not None
        if through is KEEP:
            previous = self.store.get_cursor(self.room.id, ACCEPTED + uid)
            through = _through(json.loads(previous)) if previous else None
        document: dict[str, str | None] = {"hash": obj.content_hash, "ics": obj.ics.decode()}
        if through is not None:
            document["through"] = through.isoformat()
        record = json.dumps(document)
        now = self.clock()
        with self.store.transaction():
            for key in keys:
                self.store.record_write(
                    self.room.id, key, uid=uid, href=obj.href, etag=obj.etag,
                    content_hash=obj.content_hash, origin=LinkOrigin.CALENDAR, now=now,
                )
            self.store.set_cursor(self.room.id, ACCEPTED + uid, record, now)
            self.store.set_cursor(self.room.id, INTENT + uid, None, now)

    def _forget(self, accepted: Accepted, *, released: bool = False) -> None:
        """Drop the links and the accepted record of a request (and released bookings)."""
        with self.store.transaction():
            for key in accepted.keys:
                self.store.forget(self.room.id, key, accepted.uid)
                if released:
                    self.store.delete_provider_booking(self.room.id, key)
            self.store.set_cursor(self.room.id, ACCEPTED + accepted.uid, None, self.clock())


def _through(stored: dict[str, object]) -> datetime | None:
    """The horizon kept in an accepted record, if any."""
    value = stored.get("through")
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _uid_of(decision: Decision) -> str:
    """The event UID a decision is about."""
    if isinstance(decision, Withdraw):
        return decision.accepted.uid
    return decision.request.uid


def calendar_linked_keys(store: StateStore, room_id: str) -> set[str]:
    """Booking keys whose calendar object is a linked request event (not a bridge object)."""
    return {
        link.booking_key
        for link in store.room_links(room_id)
        if link.origin is LinkOrigin.CALENDAR
    }
