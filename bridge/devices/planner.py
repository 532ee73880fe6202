"""The arming plan of one pod: which device actions its room's occurrences call for, and when.

Pure: bookings (the room's provider snapshot), the recorded actions and ``now`` in, the wanted
actions out. The executor records them (:meth:`StateStore.merge_device_actions`) and sends
each when it is due. Per occurrence there are at most three actions, identified by the pod
booking id and the kind:

- ``booking`` — ``POST /booking_operation`` with the occurrence's body (due at once);
- ``on`` — the pod's devices switched on ``lead`` before the (setup-widened) start; useless,
  and so skipped, once the occurrence has ended: a pod never opens after the meeting;
- ``off`` — switched off at the end plus the cleanup buffer (always still useful), unless the
  next meeting of the pod has switched them on by then.

Which occurrences: every live one starting within the horizon, plus every one already armed
(so a move beyond the horizon still reaches the pod). An armed occurrence that disappears or
is cancelled before its end gets its pod booking cancelled (``is_active: false``), its pending
``on`` skipped, and its devices switched off at once if they were switched on.

Identity: an occurrence is ``<booking key>@<rule instant>`` (``single`` for a one-off
booking); its pod booking id is fixed when it is first armed, so a moved occurrence — even a
moved one-off booking — updates the same pod booking.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bridge.model import Booking, Occurrence, Window
from bridge.state.store import (
    DeviceAction,
    DeviceActionKind,
    DeviceActionRecord,
    DeviceActionState,
)
from mappings.expansion import expand
from mappings.zenspace import occurrence_booking_id, occurrence_to_operation

#: How far back occurrences are expanded: one still running started before ``now``.
LOOKBACK = timedelta(days=2)
#: How far ahead armed occurrences are followed when they move.
FOLLOW_AHEAD = timedelta(days=400)
#: Stands in for the door code while the body is built: the plan never holds a code.
_CODE_PLACEHOLDER = "0"

Json = dict[str, object]


@dataclass(frozen=True, slots=True)
class PodSettings:
    """What the plan needs to know about one room's pod."""

    room_id: str
    meeting_space_id: str
    pod_zone: str
    lead: timedelta
    horizon: timedelta
    devices: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Armed:
    """One live occurrence to arm, with its booking."""

    identity: str
    occurrence: Occurrence
    booking: Booking

    @property
    def on_at(self) -> datetime:
        """When the devices should come on (setup-widened start minus the lead)."""
        return self.occurrence.blocked_start

    @property
    def off_at(self) -> datetime:
        """When the devices should go off (end plus cleanup)."""
        return self.occurrence.blocked_end


def occurrence_identity(occurrence: Occurrence) -> str:
    """``<booking key>@<rule instant in UTC>``, or ``@single`` for a one-off booking."""
    if occurrence.recurrence_id is None:
        return f"{occurrence.booking}@single"
    instant = occurrence.recurrence_id.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{occurrence.booking}@{instant}"


def action_id(pod_booking_id: str, kind: DeviceActionKind) -> str:
    """The record id of one action of one pod booking."""
    return f"{pod_booking_id}/{kind.value}"


def plan_arming(
    bookings: Iterable[Booking],
    records: Sequence[DeviceActionRecord],
    settings: PodSettings,
    now: datetime,
) -> list[DeviceAction]:
    """Every action the pod's occurrences call for now (unchanged ones included)."""
    by_identity = _records_by_identity(records)
    found = _occurrences(bookings, now)
    armed = [
        _Armed(identity, occurrence, booking)
        for identity, (occurrence, booking) in found.items()
        if occurrence.status.is_live
        and occurrence.blocked_end > now
        and (identity in by_identity or _within_horizon(occurrence, settings, now))
    ]
    armed.sort(key=lambda item: (item.on_at, item.identity))
    wanted: list[DeviceAction] = []
    for item in armed:
        pod_id = _pod_booking_id(item, by_identity.get(item.identity, {}))
        wanted.extend(_arming_actions(item, pod_id, armed, settings, now))
    for identity, kinds in by_identity.items():
        occurrence = found.get(identity, (None, None))[0]
        if occurrence is not None and occurrence.status.is_live:
            continue
        if _ended(kinds, occurrence, now):
            continue
        wanted.extend(_disarming_actions(kinds, settings, now))
    return wanted


# ----- which occurrences --------------------------------------------------------------------


def _occurrences(
    bookings: Iterable[Booking], now: datetime
) -> dict[str, tuple[Occurrence, Booking]]:
    """Every occurrence near now, live or cancelled, by identity."""
    window = Window(now - LOOKBACK, now + FOLLOW_AHEAD)
    found: dict[str, tuple[Occurrence, Booking]] = {}
    for booking in bookings:
        for occurrence in expand(booking, window):
            found[occurrence_identity(occurrence)] = (occurrence, booking)
    return found


def _within_horizon(occurrence: Occurrence, settings: PodSettings, now: datetime) -> bool:
    """Whether the occurrence starts (setup included) within the arming horizon."""
    return occurrence.blocked_start <= now + settings.horizon


def _records_by_identity(
    records: Sequence[DeviceActionRecord],
) -> dict[str, dict[DeviceActionKind, DeviceActionRecord]]:
    """Recorded actions grouped by occurrence identity, then kind."""
    grouped: dict[str, dict[DeviceActionKind, DeviceActionRecord]] = {}
    for record in records:
        grouped.setdefault(record.action.occurrence, {})[record.action.kind] = record
    return grouped


def _ended(
    kinds: Mapping[DeviceActionKind, DeviceActionRecord],
    occurrence: Occurrence | None,
    now: datetime,
) -> bool:
    """Whether an occurrence that is not live any more lies in the past (nothing to undo)."""
    if occurrence is not None:
        return occurrence.blocked_end <= now
    booking = kinds.get(DeviceActionKind.BOOKING)
    if booking is None or booking.action.not_after is None:
        return True
    return booking.action.not_after <= now


def _pod_booking_id(item: _Armed, kinds: Mapping[DeviceActionKind, DeviceActionRecord]) -> str:
    """The pod booking id fixed at first arming, else a new one from identity and start."""
    for record in kinds.values():
        return record.action.pod_booking_id
    occurrence = item.occurrence
    return occurrence_booking_id(occurrence.booking, occurrence.recurrence_id or occurrence.start)


# ----- arming --------------------------------------------------------------------------------


def _arming_actions(
    item: _Armed,
    pod_id: str,
    armed: Sequence[_Armed],
    settings: PodSettings,
    now: datetime,
) -> list[DeviceAction]:
    """The booking, on and off actions of one live occurrence."""
    body = _booking_body(item, pod_id, settings)
    actions = [
        _action(
            item, pod_id, DeviceActionKind.BOOKING, now, item.off_at, body, due_is_content=False
        )
    ]
    if not settings.devices:
        return actions
    switch = {"devices": list(settings.devices)}
    actions.append(
        _action(item, pod_id, DeviceActionKind.SWITCH_ON, item.on_at - settings.lead,
                item.off_at, {**switch, "on": True})
    )
    follower = _next_meeting_covering(item, armed, settings)
    skip = None if follower is None else f"the next meeting ({follower}) keeps the devices on"
    actions.append(
        _action(item, pod_id, DeviceActionKind.SWITCH_OFF, item.off_at, None,
                {**switch, "on": False}, skip_reason=skip)
    )
    return actions


def _booking_body(item: _Armed, pod_id: str, settings: PodSettings) -> Json:
    """The ``/booking_operation`` body of an occurrence, without its door code."""
    body = occurrence_to_operation(
        item.occurrence,
        item.booking,
        meeting_space_id=settings.meeting_space_id,
        unlock_key=_CODE_PLACEHOLDER,
        pod_zone=settings.pod_zone,
    )
    del body["unlock_key"]
    # A moved one-off booking keeps the pod booking it was first armed as.
    body["id"] = pod_id
    return body


def _next_meeting_covering(
    item: _Armed, armed: Sequence[_Armed], settings: PodSettings
) -> str | None:
    """Another occurrence whose devices are on at this one's switch-off time, if any."""
    for other in armed:
        if other.identity == item.identity:
            continue
        if other.on_at - settings.lead <= item.off_at < other.off_at:
            return other.identity
    return None


def _action(
    item: _Armed,
    pod_id: str,
    kind: DeviceActionKind,
    due_at: datetime,
    not_after: datetime | None,
    payload: Json,
    *,
    skip_reason: str | None = None,
    due_is_content: bool = True,
) -> DeviceAction:
    """One wanted action; its fingerprint covers what it sends and, for switches, when."""
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False)
    content: list[object] = [kind.value, text, skip_reason]
    if due_is_content:
        content += [due_at.astimezone(UTC).isoformat(), _iso(not_after)]
    return DeviceAction(
        action_id=action_id(pod_id, kind),
        pod_booking_id=pod_id,
        occurrence=item.identity,
        booking_key=item.occurrence.booking.key,
        kind=kind,
        due_at=due_at.astimezone(UTC),
        not_after=None if not_after is None else not_after.astimezone(UTC),
        payload=text,
        fingerprint=_fingerprint(content),
        skip_reason=skip_reason,
    )


# ----- disarming -----------------------------------------------------------------------------


def _disarming_actions(
    kinds: Mapping[DeviceActionKind, DeviceActionRecord],
    settings: PodSettings,
    now: datetime,
) -> list[DeviceAction]:
    """Undo what was armed for an occurrence that was cancelled or went away."""
    actions: list[DeviceAction] = []
    booking = kinds.get(DeviceActionKind.BOOKING)
    if booking is not None:
        actions.append(_cancellation(booking, now))
    switched_on = kinds.get(DeviceActionKind.SWITCH_ON)
    was_on = switched_on is not None and _may_have_been_sent(switched_on)
    if switched_on is not None and not was_on:
        actions.append(_replanned(switched_on, now, skip_reason="the meeting was cancelled"))
    off = kinds.get(DeviceActionKind.SWITCH_OFF)
    if off is not None:
        reason = None if was_on else "the meeting was cancelled"
        actions.append(_replanned(off, now, skip_reason=reason, marker="cancelled"))
    return actions


def _may_have_been_sent(record: DeviceActionRecord) -> bool:
    """Whether the action reached (or may have reached) the pod."""
    return record.sent_fingerprint is not None or record.state is DeviceActionState.SENDING


def _cancellation(record: DeviceActionRecord, now: datetime) -> DeviceAction:
    """The pod booking cancelled with its last body; skipped if it was never sent."""
    if not _may_have_been_sent(record):
        return _replanned(record, now, skip_reason="the meeting was cancelled before booking")
    body = json.loads(record.action.payload)
    body["is_active"] = False
    text = json.dumps(body, sort_keys=True, ensure_ascii=False)
    return DeviceAction(
        action_id=record.action.action_id,
        pod_booking_id=record.action.pod_booking_id,
        occurrence=record.action.occurrence,
        booking_key=record.action.booking_key,
        kind=DeviceActionKind.BOOKING,
        due_at=min(now, record.action.due_at),
        not_after=record.action.not_after,
        payload=text,
        fingerprint=_fingerprint([DeviceActionKind.BOOKING.value, text, None]),
    )


def _replanned(
    record: DeviceActionRecord,
    now: datetime,
    *,
    skip_reason: str | None,
    marker: str = "",
) -> DeviceAction:
    """An existing action made due now: sent at once, or skipped with a reason.

    Its fingerprint does not depend on ``now``, so planning again does not start it over.
    """
    return DeviceAction(
        action_id=record.action.action_id,
        pod_booking_id=record.action.pod_booking_id,
        occurrence=record.action.occurrence,
        booking_key=record.action.booking_key,
        kind=record.action.kind,
        due_at=min(now, record.action.due_at),
        not_after=None,
        payload=record.action.payload,
        fingerprint=_fingerprint(
            [record.action.kind.value, record.action.payload, skip_reason, marker]
        ),
        skip_reason=skip_reason,
    )


def _fingerprint(parts: Sequence[object]) -> str:
    """A short digest of what an action is."""
    text = json.dumps(list(parts), sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _iso(moment: datetime | None) -> str | None:
    """An instant as UTC ISO text, or None."""
    return None if moment is None else moment.astimezone(UTC).isoformat()
