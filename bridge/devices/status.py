"""A room's next device action, as ``roombridge status`` shows it (never a door code)."""

from __future__ import annotations

from bridge.state.store import DeviceActionKind, StateStore

#: How each kind of action reads in status output.
ACTION_WORDS = {
    DeviceActionKind.BOOKING: "book pod",
    DeviceActionKind.SWITCH_ON: "switch devices on",
    DeviceActionKind.SWITCH_OFF: "switch devices off",
}


def next_device_action(store: StateStore, room_id: str) -> dict[str, object] | None:
    """The room's next open device action: what, when, for which booking; None if none."""
    record = store.next_device_action(room_id)
    if record is None:
        return None
    action = record.action
    words = ACTION_WORDS[action.kind]
    if action.skip_reason is not None:
        words = f"record skipped {action.kind.value} ({action.skip_reason})"
    return {
        "action": words,
        "kind": action.kind.value,
        "due": record.ready_at.isoformat(),
        "booking": action.booking_key,
        "pod_booking_id": action.pod_booking_id,
        "attempts": record.attempts,
    }
