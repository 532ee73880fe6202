"""Device arming on simulated time, against the ZenSpace emulator and a real state store.

The scheduler and the emulator share one simulated clock, so "light on at T-10 min" is read
straight from the emulator's timestamped device log.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import redirect_stdout
from datetime import timedelta
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.emulators.faults import FaultKind
from bridge.emulators.zenspace import CANCELLED, CREATED, UPDATED
from bridge.model import Booking, BookingStatus, Buffers, Person, Recurrence
from bridge.providers.zenspace import ZenSpaceClient
from bridge.state.store import DeviceActionKind, DeviceActionState
from tests.jobs.rig import ROOM, PodRig
from tests.plugins.zenspace import ZENSPACE_NOW as NOW
from tests.plugins.zenspace import ZenSpaceWorld

SETUP, CLEANUP, LEAD = timedelta(minutes=15), timedelta(minutes=5), timedelta(minutes=10)


def meeting(
    start: timedelta = timedelta(hours=3),
    *,
    key: str = "5001",
    **fields: object,
) -> Booking:
    values: dict[str, object] = {
        "provider": "hq",
        "key": key,
        "resource": "1",
        "start": NOW + start,
        "end": NOW + start + timedelta(hours=1),
        "timezone": "Europe/London",
        "title": "Board meeting",
        "organizer": Person("ada@example.com", "Ada Lovelace", "+4412"),
        "attendees": (Person("bob@example.com", "Bob"),),
        "buffers": Buffers(SETUP, CLEANUP),
    }
    values.update(fields)
    return Booking(**values)  # type: ignore[arg-type]


@pytest.fixture
def rig(
    zenspace: ZenSpaceWorld,
    zenspace_client: ZenSpaceClient,
    tmp_path: Path,
) -> Iterator[PodRig]:
    pod_rig = PodRig(zenspace, zenspace_client, tmp_path)
    yield pod_rig
    pod_rig.close()


def switched(world: ZenSpaceWorld, device: str = "light") -> list[tuple[object, str]]:
    return list(world.emulator.changes(world.pod, device))


def test_pod_is_booked_then_switched_on_and_off_to_the_second(rig: PodRig, zenspace: ZenSpaceWorld):
    booking = meeting()
    rig.book(booking)
    rig.run_until(NOW + timedelta(hours=6))
    on_at = booking.start - SETUP - LEAD
    off_at = booking.end + CLEANUP
    for device in ("light", "fan"):
        assert switched(zenspace, device) == [(on_at, "on"), (off_at, "off")]
    [created] = zenspace.emulator.booking_log
    assert created.message == CREATED and created.at == NOW
    stored = zenspace.emulator.booking(created.booking_id)
    assert stored["start_datetime"] == "2025-03-03T02:45:00-08:00"  # setup included
    assert stored["created_by_email"] == "ada@example.com"
    assert stored["attendees"] == [{"email": "bob@example.com", "name": "Bob", "phone": ""}]
    code = stored["unlock_key"]
    assert len(code) == 6 and code.isdigit()
    assert rig.runtime.store.unlock_codes(ROOM, "5001") == [(booking.start - SETUP, code)]
    on = rig.records()[DeviceActionKind.SWITCH_ON][0]
    assert on.state is DeviceActionState.DONE
    assert json.loads(on.outcome or "")["light"] == {
        "device": "light",
        "value": "on",
        "status": "online",
    }


def test_occurrences_are_armed_when_they_enter_the_horizon(rig: PodRig, zenspace: ZenSpaceWorld):
    booking = meeting(timedelta(hours=30))
    rig.book(booking)
    rig.run_until(NOW + timedelta(hours=5))
    assert zenspace.emulator.booking_log == []
    rig.run_until(NOW + timedelta(hours=7))
    [created] = zenspace.emulator.booking_log
    enters = booking.start - SETUP - timedelta(hours=24)
    assert enters <= created.at <= enters + timedelta(minutes=5)


def test_a_moved_meeting_updates_the_same_pod_booking(rig: PodRig, zenspace: ZenSpaceWorld):
    booking = meeting()
    rig.book(booking)
    rig.run_until(NOW + timedelta(hours=1))
    moved = booking.evolve(
        start=booking.start + timedelta(hours=2), end=booking.end + timedelta(hours=2)
    )
    rig.book(moved)
    rig.run_until(NOW + timedelta(hours=8))
    log = zenspace.emulator.booking_log
    assert [event.message for event in log] == [CREATED, UPDATED]
    assert log[0].booking_id == log[1].booking_id
    assert switched(zenspace) == [(moved.start - SETUP - LEAD, "on"), (moved.end + CLEANUP, "off")]


def test_a_cancelled_meeting_is_cancelled_at_the_pod_and_never_opened(
    rig: PodRig, zenspace: ZenSpaceWorld
):
    booking = meeting()
    rig.book(booking)
    rig.run_until(NOW + timedelta(hours=1))
    rig.book(booking.evolve(status=BookingStatus.CANCELLED))
    rig.run_until(NOW + timedelta(hours=8))
    assert [(e.message, e.is_active) for e in zenspace.emulator.booking_log] == [
        (CREATED, True),
        (CANCELLED, False),
    ]
    assert switched(zenspace) == []
    assert {r.state for r in rig.records()[DeviceActionKind.SWITCH_ON]} == {
        DeviceActionState.SKIPPED
    }


def test_late_start_after_downtime_switches_on_at_once(rig: PodRig, zenspace: ZenSpaceWorld):
    booking = meeting()
    rig.book(booking)
    rig.run_until(NOW + timedelta(hours=1))
    rig.close()
    zenspace.clock.advance(timedelta(hours=2, minutes=5))  # the bridge was down
    back = zenspace.clock.now()
    assert back > booking.start
    rig.start()
    rig.run_until(NOW + timedelta(hours=6))
    assert switched(zenspace) == [(back, "on"), (booking.end + CLEANUP, "off")]


def test_never_unlocks_after_the_meeting_ended(rig: PodRig, zenspace: ZenSpaceWorld):
    booking = meeting()
    rig.book(booking)
    rig.run_until(NOW + timedelta(hours=1))
    rig.close()
    zenspace.clock.advance(timedelta(hours=5))  # down until after the meeting
    rig.start()
    rig.run_until(NOW + timedelta(hours=8))
    assert switched(zenspace) == []
    [on] = rig.records()[DeviceActionKind.SWITCH_ON]
    assert on.state is DeviceActionState.SKIPPED and "too late" in (on.outcome or "")
    # A meeting first seen after it ended is not armed at all.
    rig.book(meeting(timedelta(hours=-2), key="5002"))
    rig.run_until(NOW + timedelta(hours=9))
    assert len(zenspace.emulator.booking_log) == 1


def test_restart_mid_way_neither_repeats_nor_skips(rig: PodRig, zenspace: ZenSpaceWorld):
    booking = meeting()
    rig.book(booking)
    on_at = booking.start - SETUP - LEAD
    rig.run_until(on_at + timedelta(minutes=1))
    rig.restart()
    rig.run_until(NOW + timedelta(hours=6))
    counts = zenspace.emulator.request_counts()
    assert counts["POST /booking_operation"] == 1
    assert counts["POST /devices/{space}/action"] == 4  # light and fan, on and off, once each
    assert switched(zenspace) == [(on_at, "on"), (booking.end + CLEANUP, "off")]


def test_an_action_recorded_as_sending_before_a_crash_is_sent_after_restart(
    rig: PodRig, zenspace: ZenSpaceWorld
):
    booking = meeting()
    rig.book(booking)
    rig.run_until(NOW + timedelta(hours=1))
    [on] = rig.records()[DeviceActionKind.SWITCH_ON]
    store = rig.runtime.store
    on_at = booking.start - SETUP - LEAD
    # The crash: "sending" recorded, the call never made.
    assert store.start_device_action(ROOM, on.action.action_id, on.action.fingerprint, on_at)
    rig.restart()
    rig.run_until(NOW + timedelta(hours=6))
    assert switched(zenspace)[0] == (on_at, "on")


def test_failed_device_calls_are_retried_with_backoff(rig: PodRig, zenspace: ZenSpaceWorld):
    booking = meeting()
    rig.book(booking)
    on_at = booking.start - SETUP - LEAD
    rig.run_until(on_at - timedelta(minutes=1))
    # More failures than the client's own 3 attempts: the executor must come back later.
    zenspace.emulator.fail_next(*[FaultKind.SERVER_ERROR] * 3)
    rig.run_until(NOW + timedelta(hours=6))
    retry = rig.client.assumptions.retry_delay(1)
    assert switched(zenspace) == [(on_at + retry, "on"), (booking.end + CLEANUP, "off")]
    [on] = rig.records()[DeviceActionKind.SWITCH_ON]
    assert on.state is DeviceActionState.DONE and on.attempts == 2


def run_cli(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(list(args))
    return code, out.getvalue()


def test_codes_are_unique_and_never_in_logs_feeds_or_status(
    rig: PodRig,
    zenspace: ZenSpaceWorld,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
):
    caplog.set_level(logging.DEBUG)
    series = meeting(recurrence=Recurrence(rrule="FREQ=DAILY;COUNT=4"))
    rig.book(series)
    rig.book(meeting(timedelta(hours=5), key="5003"))
    rig.run_until(NOW + timedelta(days=3, hours=2))
    codes = [body["unlock_key"] for body in zenspace.emulator.bookings.values()]
    assert len(codes) == 5 and len(set(codes)) == 5
    config = str(rig.config_path)
    outputs = []
    for args in (["status", "--json"], ["status"], ["feed", ROOM]):
        main([*args, "--config", config])
        captured = capsys.readouterr()
        outputs += [captured.out, captured.err]
    text = "\n".join([*outputs, caplog.text])
    assert "BEGIN:VCALENDAR" in outputs[4] and "next_device_action" in outputs[0]
    for code in codes:
        assert code not in text


def test_status_shows_the_next_device_action(rig: PodRig, zenspace: ZenSpaceWorld):
    booking = meeting()
    rig.book(booking)
    rig.run_until(NOW + timedelta(minutes=1))
    _, out = run_cli("status", "--json", "--config", str(rig.config_path))
    upcoming = json.loads(out)["rooms"][0]["next_device_action"]
    assert upcoming["kind"] == "on"
    assert upcoming["due"] == (booking.start - SETUP - LEAD).isoformat()
    assert upcoming["booking"] == "5001"
    _, text = run_cli("status", "--config", str(rig.config_path))
    assert "next device action: switch devices on" in text


def test_device_job_wakes_for_the_next_action(rig: PodRig, zenspace: ZenSpaceWorld):
    booking = meeting(timedelta(minutes=27, seconds=30))
    rig.book(booking)
    rig.run_until(NOW + timedelta(seconds=1))
    # Not the 5-minute planning tick: the switch-on time itself.
    assert rig.scheduler.next_run(f"devices:{ROOM}") == booking.start - SETUP - LEAD
