"""Writing calendar requests to OfficeRnD (v2 "Flex"): the ``BookingWriter`` of an OfficeRnD room.

How each part of a request is expressed (shared/reference/providers.md §1):

- availability: OfficeRnD's own ``POST /bookings/validate`` is asked before every create; its
  messages become the refusal. The create itself runs the same booking policy, so a slot taken
  between the two calls is refused too;
- a recurring request is ONE booking carrying ``recurrence.rrule``. Occurrences the room
  declined (they conflict) are left out with ``EXDATE:`` lines after the RRULE in that same
  field (:func:`mappings.officernd.rule_text`). The API documents no per-occurrence cancel,
  and creating the whole series first would be refused by the booking policy for the very
  occurrences that conflict, so the series must be created without them in one call;
- the room's default buffers travel as ``serviceSlots`` (minutes);
- crash adoption: the request marker (``roombridge:<event UID>``) is the booking's ``source``,
  a writable string OfficeRnD keeps and returns ("the origin/source of the booking");
- ``change`` is a ``PUT`` of the times, title, buffers and rule (still leaving out the
  occurrences the series leaves out now: the calendar shows them declined); OfficeRnD re-applies its
  booking policy to an update (the validate call takes a create body, which would collide
  with the booking being moved), and a refusal raises :class:`Refused` with its message;
- ``cancel`` is ``POST /bookings/{id}/cancel`` (silent): the record stays, marked cancelled;
- ``cancel_occurrences`` adds EXDATE lines to the series' rule with a ``PUT``, and checks in
  the answer that OfficeRnD kept them (else the occurrence would silently stay booked);
- billing: a booking needs a ``member`` or a ``company``. The reference does not cover
  OfficeRnD's members API, so organizer emails are not looked up: the room's
  ``default_customer`` (an OfficeRnD company id) is billed, and without one the request is
  declined saying so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from bridge.errors import BridgeError
from bridge.model import Booking, Recurrence, Room, Window
from bridge.providers.errors import ProviderConflict, ProviderNotFound, ProviderValidationError
from bridge.providers.officernd import OfficeRndClient
from bridge.sources.writers import Refused
from bridge.sync.requests import without_occurrences
from mappings import officernd as officernd_mapping

NO_CUSTOMER = (
    "the room has no customer to bill bookings made from its calendar "
    "(set default_customer to an OfficeRnD company id)"
)

#: Fields a ``PUT`` sends: what a calendar edit can change.
UPDATED_FIELDS = ("start", "end", "title", "description", "serviceSlots", "recurrence", "source")


class OfficeRndWriter:
    """Bookings through the OfficeRnD v2 API: one booking per request, series included."""

    def __init__(self, client: OfficeRndClient, *, name: str, customer: str | None = None):
        self.client = client
        self.name = name
        self.customer = customer

    def __repr__(self) -> str:
        return f"OfficeRndWriter(name={self.name!r})"

    @property
    def _writes(self) -> OfficeRndClient:
        """The client whose token carries the write scopes."""
        return self.client.for_writes()

    def find(self, room: Room, marker: str, window: Window) -> list[str]:
        """Ids of the room's live bookings whose ``source`` is the marker."""
        return sorted(
            str(obj["_id"])
            for obj in self._writes.list_bookings(room.resource, window=window)
            if obj.get("source") == marker and not _cancelled(obj)
        )

    def create(self, room: Room, booking: Booking, marker: str, window: Window) -> list[str]:
        """Validate, then create the one booking; a refusal creates nothing."""
        body = self.body(room, booking, marker)
        refusals = self._writes.validate_booking(body)
        if refusals:
            raise Refused("; ".join(refusals))
        try:
            created = self._writes.create_booking(body)
        except (ProviderConflict, ProviderValidationError) as exc:
            raise Refused(exc.message) from exc
        return [str(created["_id"])]

    def change(
        self, room: Room, keys: Sequence[str], booking: Booking, marker: str, window: Window
    ) -> list[str]:
        """Update the booking in place (the booking policy re-checks it)."""
        if len(keys) != 1:
            self.cancel(room, keys)
            return self.create(room, booking, marker, window)
        if booking.is_recurring:
            booking = self._keeping_left_out(room, keys[0], booking)
        body = self.body(room, booking, marker)
        update = {name: body[name] for name in UPDATED_FIELDS if name in body}
        update.setdefault("recurrence", None)
        try:
            self._writes.update_booking(keys[0], update)
        except (ProviderConflict, ProviderValidationError) as exc:
            raise Refused(exc.message) from exc
        return list(keys)

    def cancel(self, room: Room, keys: Sequence[str]) -> None:
        """Cancel the bookings (the records stay, marked cancelled)."""
        for key in keys:
            try:
                self._writes.cancel_booking(key)
            except ProviderNotFound:
                continue

    def cancel_occurrences(
        self, room: Room, keys: Sequence[str], starts: Sequence[datetime]
    ) -> None:
        """Leave the occurrences starting at ``starts`` out of each series (EXDATE lines)."""
        for key in keys:
            obj = self._writes.get_booking(key)
            current = officernd_mapping.booking_from_object(obj, timezone=room.timezone)
            recurrence = current.recurrence
            if recurrence is None or not recurrence.rrule:
                if current.start.astimezone(UTC) in {s.astimezone(UTC) for s in starts}:
                    self.cancel(room, [key])
                continue
            narrowed = without_occurrences(current, starts)
            rule = officernd_mapping.rule_text(narrowed)
            answer = self._writes.update_booking(key, {"recurrence": {"rrule": rule}})
            _check_kept(answer, narrowed, room)

    def _keeping_left_out(self, room: Room, key: str, booking: Booking) -> Booking:
        """``booking`` still leaving out what the series leaves out now (declined, deleted).

        The calendar shows those occurrences declined or removed; an edit of the series must
        not book them again. An EXDATE the new rule does not produce is simply inert.
        """
        current = officernd_mapping.booking_from_object(
            self._writes.get_booking(key), timezone=room.timezone
        )
        return without_occurrences(booking, (current.recurrence or Recurrence()).exdates)

    def body(self, room: Room, booking: Booking, marker: str) -> dict[str, Any]:
        """The create body of a request: one booking, its rule, buffers, marker and customer."""
        booking = booking.evolve(resource=room.resource)
        body: dict[str, Any] = officernd_mapping.to_json(booking)
        rule = officernd_mapping.rule_text(booking)
        if rule is not None:
            body["recurrence"] = {"rrule": rule}
        body["source"] = marker
        if not body.get("member") and not body.get("company"):
            if self.customer is None:
                raise Refused(NO_CUSTOMER)
            body["company"] = self.customer
        return body


def _cancelled(obj: Mapping[str, Any]) -> bool:
    """Whether a booking object is cancelled."""
    return obj.get("isCancelled") is True or obj.get("canceled") is True


def _check_kept(answer: Mapping[str, Any], wanted: Booking, room: Room) -> None:
    """Raise when OfficeRnD's answer to a rule update does not leave the occurrences out."""
    kept = officernd_mapping.booking_from_object(answer, timezone=room.timezone).recurrence
    wanted_out = {m.astimezone(UTC) for m in (wanted.recurrence or Recurrence()).exdates}
    kept_out = {m.astimezone(UTC) for m in (kept or Recurrence()).exdates}
    if not wanted_out <= kept_out:
        raise BridgeError("OfficeRnD did not keep the occurrences left out of the series")
