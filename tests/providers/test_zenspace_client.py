"""The ZenSpace client against the emulator (and a mock transport for what it cannot fake)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest

from bridge.devices.assumptions import ZenSpaceAssumptions
from bridge.emulators.faults import FaultKind
from bridge.emulators.zenspace import CANCELLED, CREATED, UPDATED
from bridge.model import Booking, Person
from bridge.providers.errors import (
    ProviderAuthError,
    ProviderUnavailable,
    ProviderValidationError,
)
from bridge.providers.zenspace import ZenSpaceClient
from mappings.zenspace import to_json
from tests.plugins.zenspace import POD_ZONE, ZENSPACE_KEY, ZENSPACE_NOW, ZenSpaceWorld

CODE = "482913"


def pod_body(world: ZenSpaceWorld, *, hours: int = 2, code: str = CODE) -> dict[str, object]:
    booking = Booking(
        provider="hq",
        key="1001",
        resource="r",
        start=ZENSPACE_NOW + timedelta(hours=hours),
        end=ZENSPACE_NOW + timedelta(hours=hours + 1),
        timezone="Europe/London",
        organizer=Person("ada@example.com", "Ada", "+441234"),
        attendees=(Person("bob@example.com", "Bob"),),
    )
    body = to_json(booking, unlock_key=code, meeting_space_id=world.pod, pod_zone=POD_ZONE)
    body["id"] = "1df0af31-00dc-48ed-a1a3-faf951414e4d"
    return body


def test_create_update_cancel_hit_the_same_pod_booking(
    zenspace: ZenSpaceWorld, zenspace_client: ZenSpaceClient
):
    body = pod_body(zenspace)
    created = zenspace_client.booking_operation(body)
    assert created.booking_id == body["id"] and created.message == CREATED
    moved = {**body, "start_datetime": "2025-03-03T02:30:00-08:00"}
    assert zenspace_client.booking_operation(moved).message == UPDATED
    assert zenspace_client.booking_operation({**moved, "is_active": False}).message == CANCELLED
    stored = zenspace.emulator.booking(str(body["id"]))
    assert stored["is_active"] is False and stored["unlock_key"] == CODE
    assert stored["start_datetime"] == "2025-03-03T02:30:00-08:00"
    assert len(zenspace.emulator.bookings) == 1


def test_wrong_api_key_is_an_auth_error_that_does_not_quote_the_key(
    make_zenspace_client: Callable[..., ZenSpaceClient], zenspace: ZenSpaceWorld
):
    client = make_zenspace_client(api_key="not-the-key-123")
    with pytest.raises(ProviderAuthError) as caught:
        client.device_status(zenspace.pod, "light")
    assert caught.value.status == 401
    assert "not-the-key-123" not in str(caught.value) + repr(caught.value) + repr(client)


def test_refused_body_is_a_validation_error(
    zenspace: ZenSpaceWorld, zenspace_client: ZenSpaceClient
):
    body = {**pod_body(zenspace), "meeting_space_id": "no-such-pod"}
    with pytest.raises(ProviderValidationError, match="meeting_space_id"):
        zenspace_client.booking_operation(body)


def test_echoed_key_and_code_are_redacted():
    def echo(request: httpx.Request) -> httpx.Response:
        key = request.headers["X-API-Key"]
        return httpx.Response(400, text=f"bad body {request.content.decode()} key={key}")

    client = ZenSpaceClient(
        "secret-key-abc", base_url="http://zen.test", transport=httpx.MockTransport(echo)
    )
    body = {"id": "x", "unlock_key": CODE, "meeting_space_id": "p"}
    with pytest.raises(ProviderValidationError) as caught:
        client.booking_operation(body)
    text = str(caught.value)
    assert "secret-key-abc" not in text and CODE not in text and "***" in text


def test_server_errors_are_retried_then_succeed(
    zenspace: ZenSpaceWorld, zenspace_client: ZenSpaceClient
):
    zenspace.emulator.fail_next(FaultKind.SERVER_ERROR, FaultKind.SERVER_ERROR)
    assert zenspace_client.booking_operation(pod_body(zenspace)).message == CREATED
    assert len(zenspace.sleeps) == 2
    assert zenspace.emulator.request_counts()["POST /booking_operation"] == 3


def test_throttle_waits_for_retry_after(zenspace: ZenSpaceWorld, zenspace_client: ZenSpaceClient):
    zenspace.emulator.fail_next(FaultKind.THROTTLE, retry_after=2)
    status = zenspace_client.device_status(zenspace.pod, "fan")
    assert status.value == "off" and zenspace.sleeps == [2.0]


def test_persistent_failure_is_unavailable(
    zenspace: ZenSpaceWorld, zenspace_client: ZenSpaceClient
):
    zenspace.emulator.fail_next(*[FaultKind.SERVER_ERROR] * 3)
    with pytest.raises(ProviderUnavailable):
        zenspace_client.device_action(zenspace.pod, "light", switch_on=True)
    assert zenspace.emulator.device_value(zenspace.pod, "light") == "off"


def test_device_action_and_status(zenspace: ZenSpaceWorld, zenspace_client: ZenSpaceClient):
    reply = zenspace_client.device_action(zenspace.pod, "light", switch_on=True)
    assert reply.value == "on"
    assert zenspace_client.device_status(zenspace.pod, "light").as_json() == {
        "device": "light",
        "value": "on",
        "status": "online",
    }
    temperature = zenspace_client.device_status(zenspace.pod, "o3-sensor", "temprature")
    assert temperature.device == "temperature"


def test_events_are_read_under_either_key(
    zenspace: ZenSpaceWorld, make_zenspace_client: Callable[..., ZenSpaceClient]
):
    client = make_zenspace_client()
    client.device_action(zenspace.pod, "fan", switch_on=True)
    assert [e["details"]["value"] for e in client.device_events("fan")] == ["on"]
    zenspace.emulator.assumptions = ZenSpaceAssumptions(events_key="data")
    assert len(client.device_events("fan")) == 1


def test_pod_timezone_is_asked_once(zenspace: ZenSpaceWorld, zenspace_client: ZenSpaceClient):
    assert zenspace_client.meeting_space_timezone(zenspace.pod) == POD_ZONE
    assert zenspace_client.meeting_space_timezone(zenspace.pod) == POD_ZONE
    counts = zenspace.emulator.request_counts()
    assert counts["GET /meetingspace/get_meeting_space_by_id"] == 1


def test_key_is_sent_in_the_assumed_header():
    seen: list[str | None] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("X-API-Key"))
        return httpx.Response(
            200, json={"response": {"device": "fan", "value": "on", "status": "online"}}
        )

    client = ZenSpaceClient(
        ZENSPACE_KEY, base_url="http://zen.test", transport=httpx.MockTransport(record)
    )
    client.device_status("p", "fan")
    assert seen == [ZENSPACE_KEY]
