"""Writing calendar requests to Prospero: the ``BookingWriter`` of a Prospero room.

Prospero's Booking is an approval workflow (shared/reference/providers.md §3): the bridge acts
as the end user who invites the room, an admin approves or denies in Prospero.

- a request is submitted with the public ``/bookings/submit`` as a PENDING booking of the
  provider's booking module, its form answers naming the room's space (``spaceIds``), the
  organizer as the contact and the room's ``default_customer`` as ``customerId`` when set
  (Prospero needs no customer, so a request is never declined for want of one);
- Prospero has no recurrence: a recurring request is one submit per live occurrence inside the
  sync window (the seeded docs take one ``event`` per Booking; the announced multi-event
  ``events`` form is not accepted yet). As the window moves, the occurrences entering it are
  submitted too (:meth:`ProsperoWriter.extend`, skipping every occurrence ever asked for under
  the request's marker, so an interrupted create or extension never asks twice);
- crash adoption: the request marker is the last paragraph of ``requestNote`` (the note to the
  module's admin, which Prospero keeps and lists), so :meth:`ProsperoWriter.find` finds it;
- a move of a single request is a BookingChangeRequest (applied at once while the booking is
  pending, queued for the admin once approved); a recurring request is re-submitted whole.
  Change requests are not listed, so one the admin denies leaves the event at the asked-for
  times;
- cancel: an approved booking with ``eventProcedure`` 0 CANCEL (its Event is marked cancelled,
  not deleted); a pending one through a cancellation change request, which Prospero applies
  at once (it refuses to cancel a pending booking directly);
- approvals (:class:`bridge.sources.approval.ApprovingWriter`): each booking's
  ``bookingStatus`` as PENDING / APPROVED / DENIED, read from the source's listing (one request
  a pass, shared with the read); every write drops that listing so the next answer is fresh.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge.model import Booking, Room, Window
from bridge.providers.errors import ProviderNotFound, ProviderValidationError
from bridge.providers.prospero import format_instant
from bridge.sources.approval import Approval
from bridge.sources.prospero import ProsperoSource
from bridge.sources.writers import Refused
from mappings.expansion import expand
from mappings.prospero import BookingState, EventProcedure

NOTE = "<p>Requested by inviting the room from a calendar.</p><p>{marker}</p>"
_MARKER = re.compile(r"<p>(roombridge:[^<]*)</p>\s*$")

APPROVAL_OF_STATE = {
    BookingState.PENDING: Approval.PENDING,
    BookingState.APPROVED: Approval.APPROVED,
    BookingState.DENIED: Approval.DENIED,
    BookingState.CANCELED: Approval.GONE,
}

#: The states in which a booking holds the room.
LIVE = (BookingState.PENDING, BookingState.APPROVED)

JsonObject = Mapping[str, Any]


def request_note(marker: str) -> str:
    """The ``requestNote`` of a submitted request, ending with its marker."""
    return NOTE.format(marker=html.escape(marker, quote=False))


def marker_of(raw: JsonObject) -> str | None:
    """The marker a Booking's ``requestNote`` ends with, if any."""
    note = raw.get("requestNote")
    found = _MARKER.search(note) if isinstance(note, str) else None
    return html.unescape(found.group(1)) if found else None


class ProsperoWriter:
    """Booking requests through Prospero's booking module of the provider."""

    def __init__(self, source: ProsperoSource, *, name: str, customer: str | None = None):
        self.source = source
        self.client = source.client
        self.name = name
        self.customer = customer

    def __repr__(self) -> str:
        return f"ProsperoWriter(name={self.name!r})"

    def find(self, room: Room, marker: str, window: Window) -> list[str]:
        """Ids of the module's pending or approved bookings carrying the marker."""
        return sorted(
            key
            for key, raw in self._bookings(fresh=True).items()
            if marker_of(raw) == marker and _state(raw) in LIVE
        )

    def create(self, room: Room, booking: Booking, marker: str, window: Window) -> list[str]:
        """One pending submit per live occurrence in the window; a refusal withdraws them."""
        starts = [o.start for o in expand(booking, window) if o.status.is_live]
        return self.submit_occurrences(room, booking, marker, starts)

    def submit_occurrences(
        self, room: Room, booking: Booking, marker: str, starts: Sequence[datetime]
    ) -> list[str]:
        """One pending submit per occurrence starting at ``starts``, in start order."""
        wanted = {start.astimezone(UTC) for start in starts}
        spans = [
            (o.start, o.end)
            for o in expand(booking, _covering(starts))
            if o.status.is_live and o.start.astimezone(UTC) in wanted
        ]
        created: list[str] = []
        try:
            for start, end in sorted(spans):
                body = self._submit_body(room, booking, marker, start, end)
                reply = self.client.submit_booking(body)
                created.append(str(reply["booking"]["id"]))
        except ProviderValidationError as exc:
            self.cancel(room, created)
            raise Refused(exc.message) from exc
        except BaseException:
            self.cancel(room, created)
            raise
        finally:
            self.source.forget_listing()
        return created

    def change(
        self, room: Room, keys: Sequence[str], booking: Booking, marker: str, window: Window
    ) -> list[str]:
        """A change request for a single booking; a recurring request is submitted anew."""
        if len(keys) != 1 or booking.is_recurring:
            self.cancel(room, keys)
            return self.create(room, booking, marker, window)
        try:
            self.client.submit_change_request(
                keys[0],
                event=_answers(room, self.source.booking_module, booking, booking.start,
                               booking.end),
                contact=_contact(booking),
                request_note=request_note(marker),
            )
        except ProviderValidationError as exc:
            raise Refused(exc.message) from exc
        finally:
            self.source.forget_listing()
        return list(keys)

    def cancel(self, room: Room, keys: Sequence[str]) -> None:
        """Withdraw pending bookings, cancel approved ones (their Event marked cancelled)."""
        if not keys:
            return
        listed = self._bookings(fresh=True)
        try:
            for key in keys:
                raw = listed.get(key)
                state = _state(raw) if raw is not None else None
                try:
                    if state is BookingState.PENDING:
                        self.client.submit_change_request(key, cancellation=True)
                    elif state is BookingState.APPROVED:
                        self.client.cancel_booking(key, EventProcedure.CANCEL)
                except ProviderNotFound:
                    continue
        finally:
            self.source.forget_listing()

    def cancel_occurrences(
        self, room: Room, keys: Sequence[str], starts: Sequence[datetime]
    ) -> None:
        """Cancel the bookings (one per occurrence) that start at one of ``starts``."""
        wanted = {start.astimezone(UTC) for start in starts}
        listed = self._bookings(fresh=True)
        chosen = [key for key in keys if key in listed and _start(listed[key]) in wanted]
        self.cancel(room, chosen)

    def horizon(self, booking: Booking, window: Window) -> datetime | None:
        """Up to when ``create`` in ``window`` covers ``booking``: the window's end for a series."""
        return window.end if booking.is_recurring else None

    def extend(
        self, room: Room, booking: Booking, marker: str, since: datetime, window: Window
    ) -> list[str]:
        """Submit the occurrences starting in [since, window end) never asked for; all their keys.

        Raises :class:`Refused` with nothing of this call left submitted.
        """
        if since >= window.end:
            return []
        listed = self._bookings(fresh=False)
        mine = {
            key: start
            for key, raw in listed.items()
            if marker_of(raw) == marker and (start := _start(raw)) is not None
        }
        asked = set(mine.values())
        starts = [
            o.start
            for o in expand(booking, Window(since, window.end))
            if o.status.is_live and o.start >= since and o.start.astimezone(UTC) not in asked
        ]
        made = self.submit_occurrences(room, booking, marker, starts) if starts else []
        kept = [
            key for key, start in mine.items()
            if start >= since and _state(listed[key]) in LIVE
        ]
        return sorted({*kept, *made})

    def approvals(self, room: Room, keys: Sequence[str]) -> dict[str, Approval]:
        """Each booking's approval state (from the source's current listing)."""
        listed = self._bookings(fresh=False)
        return {
            key: APPROVAL_OF_STATE[_state(listed[key])] if key in listed else Approval.GONE
            for key in keys
        }

    def _bookings(self, *, fresh: bool) -> dict[str, JsonObject]:
        """The module's Bookings by id (with their Events' times joined in)."""
        listing = self.source.listing(fresh=fresh)
        events = {
            str(event.get("id")): event
            for event in listing.get("associatedEvents") or []
            if isinstance(event, Mapping)
        }
        found: dict[str, JsonObject] = {}
        for key, raw in (listing.get("bookings") or {}).items():
            if isinstance(raw, Mapping) and raw.get("bookingModuleId") == (
                self.source.booking_module
            ):
                event = events.get(str(raw.get("eventId")))
                found[str(key)] = {**raw, "event": event} if event else raw
        return found

    def _submit_body(
        self, room: Room, booking: Booking, marker: str, start: datetime, end: datetime
    ) -> dict[str, Any]:
        """The public submit body of one occurrence of a request."""
        body: dict[str, Any] = {
            "bookingModuleId": self.source.booking_module,
            "event": _answers(room, self.source.booking_module, booking, start, end),
            "contact": _contact(booking),
            "requestNote": request_note(marker),
        }
        if self.customer:
            body["customerId"] = self.customer
        return body


def _answers(
    room: Room, module: str, booking: Booking, start: datetime, end: datetime
) -> dict[str, Any]:
    """The event part of the booking form: title, times (UTC) and the room's space."""
    answers: dict[str, Any] = {
        "title": booking.title or "Room booking",
        "start": format_instant(start),
        "end": format_instant(end),
    }
    if booking.description:
        answers["description"] = booking.description
    # A room that is the booking module itself books the module's one space: no space ids.
    if room.resource != module:
        answers["spaceIds"] = [room.resource]
    return answers


def _contact(booking: Booking) -> dict[str, str]:
    """The contact part of the form: the organizer's email and name."""
    organizer = booking.organizer
    if organizer is None:
        return {}
    fields = {"email": organizer.email, "name": organizer.name}
    return {name: value for name, value in fields.items() if value}


def _covering(starts: Sequence[datetime]) -> Window:
    """A window holding every one of ``starts`` (empty when there are none)."""
    if not starts:
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        return Window(epoch, epoch + timedelta(seconds=1))
    return Window(min(starts), max(starts) + timedelta(seconds=1))


def _state(raw: JsonObject) -> BookingState:
    """A Booking's ``bookingStatus``."""
    value = raw.get("bookingStatus")
    if isinstance(value, str):
        return BookingState[value.strip().upper()]
    return BookingState(int(value if isinstance(value, int) else -1))


def _start(raw: JsonObject) -> datetime | None:
    """Where a Booking starts: its Event's start once approved, else the form's (UTC)."""
    event = raw.get("event")
    value = event.get("start") if isinstance(event, Mapping) else None
    if not isinstance(value, str):
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
