"""The ZenSpace emulator: strict where the documentation is clear, explicit where not."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest

from bridge.devices.assumptions import ZenSpaceAssumptions
from bridge.emulators.zenspace import CREATED, ZenSpaceEmulator
from tests.plugins.zenspace import ZENSPACE_KEY, ZENSPACE_NOW, ZenSpaceWorld

HEADERS = {"X-API-Key": ZENSPACE_KEY}


def booking_body(pod: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "attendees": [{"email": "du@mail.com", "name": "Du kar", "phone": "0987654321"}],
        "created_by_email": "du@example.com",
        "created_by_name": "Du kar",
        "created_by_phone_no": "12345678901",
        "end_datetime": "2025-03-03T03:20:00-08:00",
        "external_id": "f45th-7tghu76-t5464yrt",
        "id": str(uuid.uuid4()),
        "is_active": True,
        "meeting_space_id": pod,
        "start_datetime": "2025-03-03T03:16:00-08:00",
        "unlock_key": "1111",
    }
    body.update(changes)
    return body


def post(world: ZenSpaceWorld, path: str, body: object, headers: dict[str, str] = HEADERS):
    return httpx.post(f"{world.base_url}{path}", json=body, headers=headers, timeout=5)


def test_the_published_example_is_accepted(zenspace: ZenSpaceWorld):
    body = booking_body(zenspace.pod)
    reply = post(zenspace, "/booking_operation", body)
    assert reply.status_code == 200
    assert reply.json() == {"booking_id": body["id"], "message": CREATED}


def test_every_route_needs_the_api_key(zenspace: ZenSpaceWorld):
    assert post(zenspace, "/booking_operation", booking_body(zenspace.pod), {}).status_code == 401
    reply = post(zenspace, f"/devices/{zenspace.pod}/status", {"device_type": "lock"}, {})
    assert reply.status_code == 401


@pytest.mark.parametrize(
    "changes",
    [
        {"meeting_space_id": "unknown"},
        {"end_datetime": "2025-03-03T03:16:00-08:00"},
        {"start_datetime": "2025-03-03T03:16:00"},
        {"unlock_key": 1111},
        {"id": "not-a-uuid"},
        {"title": "not a ZenSpace field"},
        {"attendees": [{"email": 5}]},
    ],
)
def test_bad_bodies_are_refused_with_400(zenspace: ZenSpaceWorld, changes: dict[str, Any]):
    reply = post(zenspace, "/booking_operation", booking_body(zenspace.pod, **changes))
    assert reply.status_code == 400
    assert zenspace.emulator.bookings == {}


def test_device_status_envelope_and_404(zenspace: ZenSpaceWorld):
    reply = post(zenspace, f"/devices/{zenspace.pod}/status", {"device_type": "lock"})
    assert reply.json() == {"response": {"device": "lock", "value": "closed", "status": "online"}}
    sensor = post(zenspace, f"/devices/{zenspace.pod}/status",
                  {"device_type": "o3-sensor", "sub_device": "temprature"})
    assert sensor.json()["response"]["device"] == "temperature"
    missing = post(zenspace, f"/devices/{zenspace.pod}/status", {"device_type": "camera"})
    assert missing.status_code == 404 and missing.json() == {"message": "Record Not Found"}
    assert post(zenspace, "/devices/nope/status", {"device_type": "lock"}).status_code == 404


def test_device_changes_are_stamped_with_the_emulator_clock(zenspace: ZenSpaceWorld):
    path = f"/devices/{zenspace.pod}/action"
    post(zenspace, path, {"device_type": "light", "action": "on"})
    zenspace.clock.advance(timedelta(minutes=30))
    post(zenspace, path, {"device_type": "light", "action": "on"})  # no change: not logged
    post(zenspace, path, {"device_type": "light", "action": "off"})
    assert zenspace.emulator.changes(zenspace.pod, "light") == [
        (ZENSPACE_NOW, "on"), (ZENSPACE_NOW + timedelta(minutes=30), "off")]
    assert post(zenspace, path, {"device_type": "light", "action": "dim"}).status_code == 400


def test_offline_device_fails_and_reports_offline(zenspace: ZenSpaceWorld):
    zenspace.emulator.set_device_offline(zenspace.pod, "fan")
    assert post(zenspace, f"/devices/{zenspace.pod}/action",
                {"device_type": "fan", "action": "on"}).status_code == 500
    status = post(zenspace, f"/devices/{zenspace.pod}/status", {"device_type": "fan"})
    assert status.json()["response"]["status"] == "offline"


def test_space_state_names_the_zone_and_next_free_time(zenspace: ZenSpaceWorld):
    body = booking_body(zenspace.pod, start_datetime="2025-03-03T00:00:00-08:00",
                        end_datetime="2025-03-03T01:00:00-08:00")
    post(zenspace, "/booking_operation", body)
    state = httpx.get(f"{zenspace.base_url}/meetingspace/get_meeting_space_by_id",
                      params={"meeting_space_id": zenspace.pod}, headers=HEADERS).json()
    assert state["timezone"] == "America/Los_Angeles" and state["enabled"] is True
    # Now is 00:00 Pacific, inside the booking: free again at its end.
    assert state["next_available_time"] == "2025-03-03T01:00:00-08:00"


def test_events_list_key_follows_the_assumption():
    emulator = ZenSpaceEmulator(api_keys=("k",), assumptions=ZenSpaceAssumptions(events_key="data"))
    pod = emulator.add_pod(timezone="UTC")
    emulator.act(pod, {"device_type": "light", "action": "on"})
    with emulator.serve() as served:
        reply = httpx.request("GET", f"{served.base_url}/devices/events",
                              json={"device_type": "light"}, headers={"X-API-Key": "k"})
    assert [event["eventType"] for event in reply.json()["data"]] == ["lightStateChange"]
