"""Carries out a room's arming plan against the ZenSpace API, recording every step.

One :func:`arm_room` call plans (pure, :mod:`bridge.devices.planner`), records the plan, and
sends every action that is due. Each action is recorded as ``sending`` before its call goes
out and as ``done`` (with the device status read back) after it succeeded, so a restart never
repeats a done action and never skips a due one: an action found ``sending`` after a crash is
sent again, which is safe because every ZenSpace call used sets a state by a caller-chosen id.

A late action (the bridge was down) is sent at once if it is still useful; one past its
``not_after`` (a pod booking or a switch-on after the meeting ended) is recorded as skipped. A
failed call is retried with backoff (``next_attempt_at``) until it succeeds or stops being
useful. Door codes are drawn from the state store at send time; they are never logged.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime

from bridge.config import ZenSpaceConfig
from bridge.devices.assumptions import ZenSpaceAssumptions
from bridge.devices.planner import PodSettings, plan_arming
from bridge.errors import BridgeError
from bridge.model import Room
from bridge.providers.errors import ProviderError
from bridge.providers.zenspace import ZenSpaceClient
from bridge.state.store import DeviceActionKind, DeviceActionRecord, StateStore

log = logging.getLogger(__name__)

#: The store cursor remembering the pod's time zone (asked from ZenSpace once).
POD_ZONE_CURSOR = "device_timezone"


@dataclass(slots=True)
class ArmingResult:
    """What one arming pass of a room did (action ids, never codes)."""

    room_id: str
    changed: int = 0
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    next_due: datetime | None = None


def build_zenspace_client(provider: ZenSpaceConfig) -> ZenSpaceClient:
    """The client of a configured ``kind = "zenspace"`` provider."""
    return ZenSpaceClient(
        provider.api_key.reveal(),
        base_url=provider.base_url,
        name=provider.name,
        assumptions=provider.assumptions,
    )


def arm_room(
    store: StateStore,
    client: ZenSpaceClient,
    room: Room,
    now: datetime,
) -> ArmingResult:
    """Plan the room's pod from its provider snapshot, record the plan, send what is due."""
    if room.device_space is None:
        raise BridgeError(f"room {room.id} has no device_space")
    assumptions = client.assumptions
    settings = PodSettings(
        room_id=room.id,
        meeting_space_id=room.device_space,
        pod_zone=pod_zone(store, client, room, now),
        lead=room.device_lead,
        horizon=assumptions.arming_horizon,
        devices=assumptions.switched_devices,
    )
    bookings = [stored.booking for stored in store.provider_bookings(room.id)]
    wanted = plan_arming(bookings, store.device_actions(room.id), settings, now)
    result = ArmingResult(room.id, changed=store.merge_device_actions(room.id, wanted, now))
    for record in store.due_device_actions(room.id, now):
        _execute(store, client, settings, assumptions, record, now, result)
    upcoming = store.next_device_action(room.id)
    result.next_due = None if upcoming is None else upcoming.ready_at
    return result


def pod_zone(store: StateStore, client: ZenSpaceClient, room: Room, now: datetime) -> str:
    """The pod's time zone (asked once, then remembered); the room's while ZenSpace is down."""
    assert room.device_space is not None
    zone = store.get_cursor(room.id, POD_ZONE_CURSOR)
    if zone is not None:
        return zone
    try:
        zone = client.meeting_space_timezone(room.device_space)
    except ProviderError as exc:
        log.warning("room %s: pod time zone unknown (%s); using the room's", room.id, exc)
        return room.timezone
    store.set_cursor(room.id, POD_ZONE_CURSOR, zone, now)
    return zone


def _execute(
    store: StateStore,
    client: ZenSpaceClient,
    settings: PodSettings,
    assumptions: ZenSpaceAssumptions,
    record: DeviceActionRecord,
    now: datetime,
    result: ArmingResult,
) -> None:
    """Send one due action (or record why not), recording before and after."""
    action = record.action
    reason = action.skip_reason
    if reason is None and action.not_after is not None and now >= action.not_after:
        reason = f"too late: the meeting ended at {action.not_after.isoformat()}"
    if reason is not None:
        store.finish_device_action(
            settings.room_id, action.action_id, action.fingerprint, now, skipped=True,
            outcome=reason,
        )
        log.info("room %s: %s skipped (%s)", settings.room_id, action.action_id, reason)
        result.skipped.append(action.action_id)
        return
    if not store.start_device_action(settings.room_id, action.action_id, action.fingerprint, now):
        return
    try:
        outcome = _send(store, client, settings, record, now)
    except ProviderError as exc:
        retry_at = now + assumptions.retry_delay(record.attempts + 1)
        store.postpone_device_action(
            settings.room_id, action.action_id, action.fingerprint, now,
            retry_at=retry_at, error=str(exc),
        )
        log.warning(
            "room %s: %s failed (attempt %d), retry at %s: %s",
            settings.room_id, action.action_id, record.attempts + 1, retry_at.isoformat(), exc,
        )
        result.failed.append(action.action_id)
        return
    store.finish_device_action(
        settings.room_id, action.action_id, action.fingerprint, now, outcome=outcome
    )
    log.info("room %s: %s done", settings.room_id, action.action_id)
    result.done.append(action.action_id)


def _send(
    store: StateStore,
    client: ZenSpaceClient,
    settings: PodSettings,
    record: DeviceActionRecord,
    now: datetime,
) -> str:
    """Make the call(s) of one action; the outcome to record (device statuses, JSON)."""
    action = record.action
    payload = json.loads(action.payload)
    if action.kind is DeviceActionKind.BOOKING:
        body = dict(payload)
        body["unlock_key"] = store.unlock_code(
            settings.room_id,
            action.pod_booking_id,
            action.booking_key,
            datetime.fromisoformat(str(body["start_datetime"])),
            now,
            digits=client.assumptions.unlock_key_digits,
        )
        reply = client.booking_operation(body)
        return json.dumps({"booking_id": reply.booking_id, "is_active": body.get("is_active")})
    switch_on = bool(payload["on"])
    statuses = {}
    for device in payload["devices"]:
        client.device_action(settings.meeting_space_id, device, switch_on=switch_on)
        statuses[device] = client.device_status(settings.meeting_space_id, device).as_json()
    return json.dumps(statuses, sort_keys=True)
