"""The intake phase of a room's pass: calendar booking requests → provider bookings or declines.

It runs after both reads and before the provider→calendar plan. Foreign events come from the
stored calendar snapshot; :func:`bridge.sync.requests.plan_requests` decides; this module does
the I/O, in an order that survives a SIGKILL anywhere:

1. an intent (``intent:<uid>``) is stored in its own transaction before the provider create;
2. the provider create carries a marker of the event UID, so after a crash the next pass finds
   the booking (``BookingWriter.find``) and adopts it instead of booking the room again;
3. the event is tagged (X-ROOMBRIDGE-PROVIDER/KEY, the room's answer) with If-Match;
4. links (origin CALENDAR), the accepted event (``request:<uid>``) and the snapshot entry are
   recorded in one transaction, and the intent dropped.

The accepted event text is kept so a refused calendar edit can be put back as it was.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import icalendar

from bridge.calendars.base import CalendarBackend, RemoteObject
from bridge.calendars.caldav import declined_ics, room_declined, set_room_answer
from bridge.errors import BridgeError
from bridge.model import Room, Window
from bridge.sources.writers import BookingWriter, Refused, request_marker
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
    ProviderCancelled,
    Revert,
    RoomPolicy,
    Withdraw,
    plan_requests,
    without_occurrences,
)
from mappings.errors import MappingError
from mappings.ical import X_KEY, X_PROVIDER, calendar_to_bookings, content_hash

INTENT = "intent:"
ACCEPTED = "request:"
DECLINED = "declined:"

PROVIDER_CANCELLED = "cancelled in the booking system"


@dataclass(slots=True)
class IntakeOutcome:
    """What the intake did this pass (merged into the room's result)."""

    created: int = 0
    updated: int = 0
    deleted: int = 0
    declined: int = 0
    wrote: bool = False
    errors: list[str] = field(default_factory=list)


def tagged_ics(ics: bytes, provider: str, keys: Sequence[str]) -> bytes:
    """The event's text tagged with its provider booking keys, accepted by the room."""
    calendar = icalendar.Calendar.from_ical(ics)
    for event in calendar.walk("VEVENT"):
        for name in (X_PROVIDER, X_KEY):
            event.pop(name, None)
        event.add(X_PROVIDER, provider)
        event.add(X_KEY, ",".join(keys))
        set_room_answer(event, "ACCEPTED")
    return bytes(calendar.to_ical())


def with_comment(ics: bytes, comment: str) -> bytes:
    """The event's text with ``comment`` as its COMMENT (the reason of a revert)."""
    calendar = icalendar.Calendar.from_ical(ics)
    for event in calendar.walk("VEVENT"):
        event.pop("COMMENT", None)
        event.add("COMMENT", comment)
    return bytes(calendar.to_ical())


def request_of(
    room: Room, uid: str, ics: bytes, declined_hash: str | None = None
) -> CalendarRequest:
    """A foreign event read as a booking request of the room."""
    bookings = calendar_to_bookings(ics, provider=room.provider, timezone=room.timezone)
    if not bookings:
        raise ValueError(f"event {uid} holds no VEVENT")
    booking = bookings[0].evolve(provider=room.provider, key=uid, resource=room.resource)
    if booking.is_recurring:
        # Occurrences the room declined are not asked for (any more): they hold nothing.
        declined = room_declined(ics)
        booking = without_occurrences(booking, declined) if declined else booking
    calendar = icalendar.Calendar.from_ical(ics)
    masters = [e for e in calendar.walk("VEVENT") if "RECURRENCE-ID" not in e]
    master = masters[0] if masters else calendar.walk("VEVENT")[0]
    digest = content_hash(ics)
    answered = any(
        str(a.params.get("PARTSTAT", "")).upper() == "DECLINED"
        for a in _room_attendees(master)
    )
    return CalendarRequest(
        uid=uid,
        booking=booking,
        content_hash=digest,
        created=_created(master),
        declined_by_room=answered or not booking.status.is_live or declined_hash == digest,
    )


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
        calendar: CalendarBackend,
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
        accepted = self._accepted()
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
        return outcome

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

    def _accepted(self) -> dict[str, Accepted]:
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
                                     request.booking)
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
        return self._accept(request, obj, keys, (), "", outcome)

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
        elif isinstance(decision, DropOccurrences):
            self.writer.cancel_occurrences(self.room, decision.accepted.keys, decision.starts)
            self._remember(decision.accepted.uid, decision.accepted.keys, obj)
            outcome.updated += 1
        elif isinstance(decision, ProviderCancelled):
            self._forget(decision.accepted)
            self._decline(decision.request.uid, obj, PROVIDER_CANCELLED, outcome)

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
        self._accept(decision.request, obj, keys, decision.declined, decision.reason, outcome)
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
    ) -> Accepted:
        """Tag the event with its keys (declining ``declined`` occurrences) and link it."""
        assert obj.ics is not None
        ics = tagged_ics(obj.ics, self.writer.name, keys)
        if declined:
            ics = declined_ics(ics, reason, declined)
        written = self._write(obj, ics, outcome)
        self._remember(request.uid, keys, written)
        stored = request_of(self.room, request.uid, written.ics or b"")
        return Accepted(request.uid, tuple(sorted(keys)), stored.content_hash, stored.booking)

    def _change(
        self, decision: Change, obj: StoredObject, window: Window, outcome: IntakeOutcome
    ) -> None:
        """Move/retitle the provider bookings; a refusal reverts the event."""
        accepted = decision.accepted
        marker = request_marker(accepted.uid)
        try:
            keys = self.writer.change(self.room, accepted.keys, decision.booking, marker, window)
        except Refused as exc:
            self._revert(accepted, obj, exc.reason, outcome)
            return
        for key in set(accepted.keys) - set(keys):
            self.store.forget(self.room.id, key, accepted.uid)
        if set(keys) == set(accepted.keys):
            self._remember(accepted.uid, keys, obj)
        else:
            self._accept(decision.request, obj, keys, (), "", outcome)
        outcome.updated += 1

    def _revert(
        self, accepted: Accepted, obj: StoredObject, reason: str, outcome: IntakeOutcome
    ) -> None:
        """Put the event back as it was accepted, saying why."""
        record = self.store.get_cursor(self.room.id, ACCEPTED + accepted.uid)
        assert record is not None
        ics = with_comment(str(json.loads(record)["ics"]).encode(), f"change refused: {reason}")
        written = self._write(obj, ics, outcome)
        self._remember(accepted.uid, accepted.keys, written)
        outcome.declined += 1

    def _decline(self, uid: str, obj: StoredObject, reason: str, outcome: IntakeOutcome) -> None:
        """Decline the event as the room and remember not to look at it again."""
        decline = getattr(self.calendar, "decline", None)
        if decline is None:
            raise BridgeError(f"the calendar cannot decline events ({reason})")
        remote = decline(obj.href, obj.etag, comment=reason)
        written = self._stored_after(obj, remote if isinstance(remote, RemoteObject) else None)
        self.store.set_cursor(self.room.id, DECLINED + uid, written.content_hash, self.clock())
        outcome.declined += 1
        outcome.wrote = True

    def _withdraw(self, accepted: Accepted, outcome: IntakeOutcome) -> None:
        """Cancel the provider bookings of a deleted or cancelled event."""
        self.writer.cancel(self.room, accepted.keys)
        self._forget(accepted)
        outcome.deleted += 1

    # ----- recording -----------------------------------------------------------------------

    def _write(self, obj: StoredObject, ics: bytes, outcome: IntakeOutcome) -> StoredObject:
        """Replace the event (If-Match) and return the snapshot entry of what the server holds."""
        remote = self.calendar.update(obj.href, ics, obj.etag)
        outcome.wrote = True
        return self._stored_after(obj, remote)

    def _stored_after(self, obj: StoredObject, remote: RemoteObject | None) -> StoredObject:
        """Re-read a written event (servers may rewrite it) and store it in the snapshot."""
        current = self.calendar.get(remote.href if remote else obj.href)
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

    def _remember(self, uid: str, keys: Sequence[str], obj: StoredObject) -> None:
        """Links of the event to its bookings and the accepted text, in one transaction."""
        assert obj.ics is not None
        record = json.dumps({"hash": obj.content_hash, "ics": obj.ics.decode()})
        now = self.clock()
        with self.store.transaction():
            for key in keys:
                self.store.record_write(
                    self.room.id, key, uid=uid, href=obj.href, etag=obj.etag,
                    content_hash=obj.content_hash, origin=LinkOrigin.CALENDAR, now=now,
                )
            self.store.set_cursor(self.room.id, ACCEPTED + uid, record, now)
            self.store.set_cursor(self.room.id, INTENT + uid, None, now)

    def _forget(self, accepted: Accepted) -> None:
        """Drop the links and the accepted record of a request."""
        with self.store.transaction():
            for key in accepted.keys:
                self.store.forget(self.room.id, key, accepted.uid)
            self.store.set_cursor(self.room.id, ACCEPTED + accepted.uid, None, self.clock())


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
