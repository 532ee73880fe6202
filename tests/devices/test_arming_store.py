"""The state store's device arming records and unlock codes, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bridge.state.store import DeviceAction, DeviceActionKind, DeviceActionState, StateStore

NOW = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
BOOK, ON = DeviceActionKind.BOOKING, DeviceActionKind.SWITCH_ON


def action(kind: DeviceActionKind, due: timedelta, fingerprint: str = "f1") -> DeviceAction:
    return DeviceAction(
        action_id=f"pod-1/{kind.value}", pod_booking_id="pod-1", occurrence="hq/1@single",
        booking_key="1", kind=kind, due_at=NOW + due, not_after=None, payload="{}",
        fingerprint=fingerprint,
    )


def test_progress_survives_replanning_and_a_changed_action_starts_over(state_url: str):
    with StateStore.open(state_url) as store:
        on = action(DeviceActionKind.SWITCH_ON, timedelta(minutes=5))
        book = action(DeviceActionKind.BOOKING, timedelta(0))
        assert store.merge_device_actions("r", [on, book], NOW) == 2
        due = store.due_device_actions("r", NOW + timedelta(minutes=5))
        assert [r.action.kind for r in due] == [BOOK, ON]
        assert store.start_device_action("r", on.action_id, "f1", NOW)
        store.finish_device_action("r", on.action_id, "f1", NOW, outcome='{"light": "on"}')
        assert store.merge_device_actions("r", [on, book], NOW) == 0
        [done] = [r for r in store.device_actions("r") if r.action.kind is ON]
        assert done.state is DeviceActionState.DONE and done.sent_fingerprint == "f1"
        moved = action(DeviceActionKind.SWITCH_ON, timedelta(hours=1), fingerprint="f2")
        assert store.merge_device_actions("r", [moved], NOW) == 1
        [again] = [r for r in store.device_actions("r") if r.action.kind is ON]
        assert again.state is DeviceActionState.PENDING and again.attempts == 0
        # A finish for the old plan does not touch the new one.
        store.finish_device_action("r", on.action_id, "f1", NOW)
        assert store.next_device_action("r") is not None


def test_failed_attempt_waits_for_its_retry_time(state_url: str):
    with StateStore.open(state_url) as store:
        book = action(DeviceActionKind.BOOKING, timedelta(0))
        store.merge_device_actions("r", [book], NOW)
        assert store.start_device_action("r", book.action_id, "f1", NOW)
        retry = NOW + timedelta(seconds=30)
        store.postpone_device_action("r", book.action_id, "f1", NOW, retry_at=retry, error="500")
        assert store.due_device_actions("r", NOW + timedelta(seconds=29)) == []
        [record] = store.due_device_actions("r", retry)
        assert record.attempts == 1 and record.outcome == "500"
        assert store.next_device_action("r").ready_at == retry  # type: ignore[union-attr]


def test_unlock_codes_are_stable_per_pod_booking_and_never_shared(state_url: str):
    with StateStore.open(state_url) as store:
        first = store.unlock_code("r", "pod-1", "1", NOW, NOW, digits=4)
        later = NOW + timedelta(hours=1)
        assert store.unlock_code("r", "pod-1", "1", later, NOW, digits=4) == first
        codes = {store.unlock_code("r", f"pod-{i}", "2", NOW, NOW, digits=4) for i in range(2, 300)}
        assert len(codes) == 298 and first not in codes
        assert all(len(code) == 4 and code.isdigit() for code in codes)
        assert store.unlock_codes("r", "1") == [(NOW + timedelta(hours=1), first)]
        store.purge_room("r")
        assert store.unlock_codes("r", "1") == [] and store.device_actions("r") == []
