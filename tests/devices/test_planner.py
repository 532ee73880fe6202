"""The pure arming plan: horizon, lead times, moves, cancellations, back-to-back meetings."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from bridge.devices.planner import PodSettings, plan_arming
from bridge.model import Booking, BookingStatus, Buffers, Override, Person, Recurrence
from bridge.state.store import (
    DeviceAction,
    DeviceActionKind,
    DeviceActionRecord,
    DeviceActionState,
)

NOW = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
SETTINGS = PodSettings(
    room_id="pod",
    meeting_space_id="dcd8ec68-8516-4a4f-a03f-cf82f604d32b",
    pod_zone="America/Los_Angeles",
    lead=timedelta(minutes=10),
    horizon=timedelta(hours=24),
    devices=("light", "fan"),
)
ON, OFF, BOOK = DeviceActionKind.SWITCH_ON, DeviceActionKind.SWITCH_OFF, DeviceActionKind.BOOKING


def booking(key: str = "b1", *, start: timedelta = timedelta(hours=3), hours: float = 1,
            **fields: object) -> Booking:
    begin = NOW + start
    values: dict[str, object] = {
        "provider": "hq", "key": key, "resource": "r", "start": begin,
        "end": begin + timedelta(hours=hours), "timezone": "Europe/London",
        "organizer": Person("ada@example.com", "Ada"),
    }
    values.update(fields)
    return Booking(**values)  # type: ignore[arg-type]


def by_kind(actions: list[DeviceAction]) -> dict[DeviceActionKind, DeviceAction]:
    kinds = {action.kind: action for action in actions}
    assert len(kinds) == len(actions)
    return kinds


def done(action: DeviceAction, state: DeviceActionState = DeviceActionState.DONE,
         ) -> DeviceActionRecord:
    sent = action.fingerprint if state is DeviceActionState.DONE else None
    return DeviceActionRecord("pod", action, state, 1, None, sent, None, NOW)


def test_only_occurrences_within_the_horizon_are_armed():
    near = booking("near", start=timedelta(hours=23))
    far = booking("far", start=timedelta(hours=25))
    actions = plan_arming([near, far], [], SETTINGS, NOW)
    assert {a.booking_key for a in actions} == {"near"}


def test_lead_times_buffers_and_the_pod_body():
    meeting = booking(buffers=Buffers(timedelta(minutes=15), timedelta(minutes=5)))
    kinds = by_kind(plan_arming([meeting], [], SETTINGS, NOW))
    assert kinds[BOOK].due_at == NOW
    assert kinds[ON].due_at == meeting.start - timedelta(minutes=25)
    assert kinds[ON].not_after == meeting.end + timedelta(minutes=5)
    assert kinds[OFF].due_at == meeting.end + timedelta(minutes=5)
    assert kinds[OFF].not_after is None and kinds[OFF].skip_reason is None
    body = json.loads(kinds[BOOK].payload)
    assert "unlock_key" not in body
    # 11:00 UTC minus the 15-minute setup, on the pod's Pacific wall clock.
    assert body["start_datetime"] == "2025-03-03T02:45:00-08:00"
    assert body["meeting_space_id"] == SETTINGS.meeting_space_id and body["is_active"] is True
    assert body["id"] == kinds[ON].pod_booking_id == kinds[OFF].pod_booking_id
    assert json.loads(kinds[ON].payload) == {"devices": ["light", "fan"], "on": True}


def test_planning_again_wants_the_same_actions():
    meeting = booking()
    first = plan_arming([meeting], [], SETTINGS, NOW)
    records = [done(action) for action in first]
    later = plan_arming([meeting], records, SETTINGS, NOW + timedelta(minutes=7))
    assert [a.fingerprint for a in later] == [a.fingerprint for a in first]


def test_a_moved_one_off_booking_keeps_its_pod_booking():
    meeting = booking()
    first = by_kind(plan_arming([meeting], [], SETTINGS, NOW))
    records = [done(action) for action in first.values()]
    moved = meeting.evolve(start=meeting.start + timedelta(hours=2),
                           end=meeting.end + timedelta(hours=2))
    second = by_kind(plan_arming([moved], records, SETTINGS, NOW))
    assert second[BOOK].pod_booking_id == first[BOOK].pod_booking_id
    assert json.loads(second[BOOK].payload)["id"] == first[BOOK].pod_booking_id
    assert all(second[k].fingerprint != first[k].fingerprint for k in (BOOK, ON, OFF))
    assert second[ON].due_at == first[ON].due_at + timedelta(hours=2)


def test_a_moved_occurrence_of_a_series_keeps_its_pod_booking():
    series = booking(recurrence=Recurrence(rrule="FREQ=DAILY;COUNT=3"))
    first = plan_arming([series], [], SETTINGS, NOW)
    rule_instant = series.start
    moved = series.evolve(recurrence=Recurrence(
        rrule="FREQ=DAILY;COUNT=3",
        overrides=(Override(rule_instant, rule_instant + timedelta(hours=1),
                            series.end + timedelta(hours=1)),),
    ))
    second = plan_arming([moved], [done(a) for a in first], SETTINGS, NOW)
    assert {a.pod_booking_id for a in second} == {a.pod_booking_id for a in first}
    assert len({a.pod_booking_id for a in first}) == 1  # tomorrow is beyond the horizon


def test_a_cancelled_occurrence_is_cancelled_at_the_pod_and_not_switched_on():
    meeting = booking()
    first = by_kind(plan_arming([meeting], [], SETTINGS, NOW))
    records = [done(first[BOOK]), done(first[ON], DeviceActionState.PENDING),
               done(first[OFF], DeviceActionState.PENDING)]
    later = NOW + timedelta(minutes=30)
    cancelled = meeting.evolve(status=BookingStatus.CANCELLED)
    kinds = by_kind(plan_arming([cancelled], records, SETTINGS, later))
    assert json.loads(kinds[BOOK].payload)["is_active"] is False
    assert kinds[BOOK].skip_reason is None and kinds[BOOK].due_at <= later
    assert kinds[ON].skip_reason and kinds[OFF].skip_reason
    # A deleted booking (gone from the snapshot) is cancelled just the same.
    gone = by_kind(plan_arming([], records, SETTINGS, later))
    assert gone[BOOK].fingerprint == kinds[BOOK].fingerprint


def test_cancelled_while_on_switches_off_at_once():
    meeting = booking(start=timedelta(minutes=5))
    first = by_kind(plan_arming([meeting], [], SETTINGS, NOW))
    records = [done(first[BOOK]), done(first[ON]), done(first[OFF], DeviceActionState.PENDING)]
    later = NOW + timedelta(minutes=20)
    kinds = by_kind(plan_arming([], records, SETTINGS, later))
    assert kinds[OFF].skip_reason is None and kinds[OFF].due_at == later
    assert ON not in kinds
    records = [done(first[ON]), *(done(a) for a in kinds.values())]
    again = by_kind(plan_arming([], records, SETTINGS, later))
    assert again[OFF].fingerprint == kinds[OFF].fingerprint


def test_cancelled_before_it_was_booked_is_skipped():
    meeting = booking()
    first = by_kind(plan_arming([meeting], [], SETTINGS, NOW))
    records = [done(a, DeviceActionState.PENDING) for a in first.values()]
    kinds = by_kind(plan_arming([], records, SETTINGS, NOW))
    assert all(kinds[k].skip_reason for k in (BOOK, ON, OFF))


def test_back_to_back_meetings_keep_the_devices_on():
    first = booking("first", start=timedelta(hours=3))
    second = booking("second", start=timedelta(hours=4))
    kinds = {(a.booking_key, a.kind): a for a in plan_arming([first, second], [], SETTINGS, NOW)}
    assert kinds[("first", OFF)].skip_reason and "second" in kinds[("first", OFF)].skip_reason
    assert kinds[("second", OFF)].skip_reason is None
    apart = booking("later", start=timedelta(hours=5))
    kinds = {(a.booking_key, a.kind): a for a in plan_arming([first, apart], [], SETTINGS, NOW)}
    assert kinds[("first", OFF)].skip_reason is None


def test_past_occurrences_are_left_alone():
    meeting = booking(start=timedelta(hours=1))
    first = plan_arming([meeting], [], SETTINGS, NOW)
    records = [done(a) for a in first]
    assert plan_arming([], records, SETTINGS, NOW + timedelta(hours=3)) == []
    assert plan_arming([meeting], records, SETTINGS, NOW + timedelta(hours=3)) == []


def test_tentative_occurrences_are_armed_and_rooms_without_devices_only_book():
    tentative = booking(status=BookingStatus.TENTATIVE)
    bare = replace(SETTINGS, devices=())
    assert [a.kind for a in plan_arming([tentative], [], bare, NOW)] == [BOOK]
