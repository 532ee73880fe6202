"""The Prospero client against the strict emulator: cookie sessions, the booking lifecycle,
change requests, UTC-only times, typed failures, retries and secrecy."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from bridge.emulators.faults import FaultKind, FaultPlan
from bridge.model import BookingStatus, Room, Window
from bridge.providers.errors import (
    ProviderAuthError,
    ProviderConflict,
    ProviderError,
    ProviderNotFound,
    ProviderThrottled,
    ProviderUnavailable,
    ProviderValidationError,
)
from bridge.providers.http import RetryPolicy
from bridge.providers.prospero import (
    BAD_REFRESH_TOKEN,
    ENDPOINTS,
    Operation,
    ProsperoClient,
    format_instant,
)
from bridge.sources.prospero import ProsperoSource
from mappings import prospero as prospero_mapping
from mappings.prospero import BookingState, EventProcedure
from tests.plugins.nexudus import ManualClock
from tests.plugins.prospero import PROSPERO_PASSWORD, PROSPERO_USER, ProsperoWorld

MakeClient = Callable[..., ProsperoClient]
LIST = "GET /api/bookings"
LOGIN = "POST /api/auth/login"
REFRESH = "GET /api/auth/refresh"


def at(day: int, hour: int) -> datetime:
    """A UTC instant in March 2025."""
    return datetime(2025, 3, day, hour, tzinfo=UTC)


def routes(world: ProsperoWorld) -> list[str]:
    """``METHOD route`` of every request the emulator saw, in order."""
    return [f"{r.method} {r.route}" for r in world.emulator.requests]


def submit_body(world: ProsperoWorld, start: str, end: str, **answers: object) -> dict[str, object]:
    """A public submit body for the hall."""
    event = {"title": "Rehearsal", "start": start, "end": end, "spaceIds": [world.hall], **answers}
    return {"bookingModuleId": world.module, "event": event, "contact": {"name": "Ariel"}}


# ----- sessions --------------------------------------------------------------------------------


def test_one_login_serves_many_calls_and_lists_bookings_with_their_events(
    prospero: ProsperoWorld, prospero_client: ProsperoClient
):
    pending = prospero.emulator.submit(prospero.module, at(11, 9), at(11, 10), title="Audition")
    approved = prospero.emulator.submit(prospero.module, at(12, 9), at(12, 10))
    event_id = prospero.emulator.approve(approved, start=at(12, 14), end=at(12, 16))
    first = prospero_client.list_bookings()
    second = prospero_client.list_bookings(return_events=False)
    assert set(first["bookings"]) == {pending, approved}
    assert [e["id"] for e in first["associatedEvents"]] == [event_id]
    assert "associatedEvents" not in second
    assert routes(prospero) == [LOGIN, LIST, LIST]
    assert prospero.emulator.logins == 1


def test_wrong_password_is_an_auth_error_that_does_not_show_it(make_prospero_client: MakeClient):
    client = make_prospero_client(password="not-the-Password-123")
    with pytest.raises(ProviderAuthError) as caught:
        client.list_bookings()
    assert caught.value.status == 401
    assert "not-the-Password-123" not in str(caught.value) + repr(caught.value) + repr(client)


def test_access_cookie_is_refreshed_before_it_expires(
    prospero: ProsperoWorld, prospero_client: ProsperoClient, prospero_clock: ManualClock
):
    prospero_client.list_bookings()
    prospero_clock.advance(timedelta(minutes=57).total_seconds())
    prospero_client.list_bookings()
    assert routes(prospero) == [LOGIN, LIST, REFRESH, LIST]
    assert [r.status for r in prospero.emulator.requests] == [200] * 4


def test_access_cookie_refused_mid_session_is_refreshed_once(
    prospero: ProsperoWorld, prospero_client: ProsperoClient
):
    prospero_client.list_bookings()
    prospero.emulator.expire_access()
    prospero_client.list_bookings()
    assert routes(prospero) == [LOGIN, LIST, LIST, REFRESH, LIST]
    assert [r.status for r in prospero.emulator.requests].count(401) == 1
    assert (prospero.emulator.logins, prospero.emulator.refreshes) == (1, 1)


def test_refused_refresh_token_leads_to_a_new_login(
    prospero: ProsperoWorld, prospero_client: ProsperoClient
):
    prospero_client.list_bookings()
    prospero.emulator.expire_access()
    prospero.emulator.expire_refresh()
    prospero_client.list_bookings()
    assert routes(prospero) == [LOGIN, LIST, LIST, REFRESH, LOGIN, LIST]
    refresh = next(r for r in prospero.emulator.requests if r.route == "/api/auth/refresh")
    assert refresh.status == 400
    assert prospero.emulator.logins == 2


def test_after_a_week_the_client_logs_in_again_without_trying_the_stale_refresh(
    prospero: ProsperoWorld, prospero_client: ProsperoClient, prospero_clock: ManualClock
):
    prospero_client.list_bookings()
    prospero_clock.advance(timedelta(days=7).total_seconds())
    prospero_client.list_bookings()
    assert routes(prospero) == [LOGIN, LIST, LOGIN, LIST]


def test_a_session_that_cannot_be_renewed_fails_as_auth_error(
    prospero: ProsperoWorld, prospero_client: ProsperoClient
):
    prospero_client.list_bookings()
    prospero.emulator.expire_access()
    prospero.emulator.expire_refresh()
    prospero.emulator.session.users[PROSPERO_USER] = "changed-Password-99"
    with pytest.raises(ProviderAuthError) as caught:
        prospero_client.list_bookings()
    assert caught.value.operation == Operation.LOGIN
    assert PROSPERO_PASSWORD not in str(caught.value)


def test_bad_refresh_token_message_is_prospero_s(prospero: ProsperoWorld):
    reply = httpx.get(f"{prospero.base_url}/auth/refresh", cookies={"prospero_refresh": "forged"})
    assert reply.status_code == 400
    assert reply.json() == {"status": 400, "error": BAD_REFRESH_TOKEN}


# ----- the booking lifecycle -------------------------------------------------------------------


def test_submitted_booking_is_pending_then_approved_with_its_event(
    prospero: ProsperoWorld, prospero_client: ProsperoClient
):
    submitted = prospero_client.submit_booking(
        submit_body(prospero, "2025-03-11T09:00:00Z", "2025-03-11T11:00:00Z")
    )["booking"]
    assert submitted["bookingStatus"] == BookingState.PENDING
    assert submitted["eventId"] is None
    approved = prospero_client.approve_booking(
        submitted["id"],
        last_updated=submitted["lastUpdated"],
        event={"start": "2025-03-11T10:00:00Z", "end": "2025-03-11T12:00:00Z"},
    )
    assert approved["booking"]["bookingStatus"] == BookingState.APPROVED
    assert approved["booking"]["eventId"] == approved["event"]["id"]
    # The approved Event's times (moved by the admin) are what the bridge maps.
    (booking,) = prospero_mapping.from_json(prospero_client.list_bookings())
    assert booking.status is BookingStatus.CONFIRMED
    assert (booking.start, booking.end) == (at(11, 10), at(11, 12))


def test_approval_of_a_booking_changed_since_it_was_read_is_a_conflict(
    prospero: ProsperoWorld, prospero_client: ProsperoClient, prospero_clock: ManualClock
):
    booking = prospero_client.submit_booking(
        submit_body(prospero, "2025-03-11T09:00:00Z", "2025-03-11T11:00:00Z")
    )["booking"]
    prospero_clock.advance(30)
    # The end user moves the request before the admin approves what they saw.
    prospero_client.submit_change_request(
        booking["id"], event={"start": "2025-03-11T13:00:00Z", "end": "2025-03-11T14:00:00Z"}
    )
    with pytest.raises(ProviderConflict):
        prospero_client.approve_booking(booking["id"], last_updated=booking["lastUpdated"])
    with pytest.raises(ProviderConflict):
        prospero_client.deny_booking(booking["id"], last_updated=booking["lastUpdated"])
    fresh = prospero.emulator.booking(booking["id"])
    assert fresh["bookingStatus"] == BookingState.PENDING
    denied = prospero_client.deny_booking(booking["id"], last_updated=fresh["lastUpdated"])
    assert denied["booking"]["bookingStatus"] == BookingState.DENIED


@pytest.mark.parametrize(
    ("procedure", "event_left"),
    [(EventProcedure.CANCEL, True), (EventProcedure.DELETE, False)],
)
def test_cancel_marks_or_deletes_the_event(
    prospero: ProsperoWorld,
    prospero_client: ProsperoClient,
    procedure: EventProcedure,
    event_left: bool,
):
    booking = prospero.emulator.submit(prospero.module, at(11, 9), at(11, 10))
    prospero.emulator.approve(booking)
    reply = prospero_client.cancel_booking(booking, procedure)
    assert reply["booking"]["bookingStatus"] == BookingState.CANCELED
    event = prospero.emulator.event_of(booking)
    assert (event is not None) is event_left
    assert ("event" in reply) is event_left
    if event is not None:
        assert event["canceled"] is True
    # A cancelled booking is no longer live, whatever became of its Event.
    (mapped,) = prospero_mapping.from_json(prospero_client.list_bookings())
    assert mapped.status is BookingStatus.CANCELLED


def test_cancelling_a_pending_booking_is_refused(
    prospero: ProsperoWorld, prospero_client: ProsperoClient
):
    booking = prospero.emulator.submit(prospero.module, at(11, 9), at(11, 10))
    with pytest.raises(ProviderValidationError, match="approved"):
        prospero_client.cancel_booking(booking)


def test_admin_create_can_approve_at_once_and_round_trips_through_the_mapping(
    prospero: ProsperoWorld, prospero_client: ProsperoClient
):
    room = Room("hall", "Main hall", "Europe/London", "venue", prospero.module)
    pending = prospero_client.submit_booking(
        submit_body(prospero, "2025-03-11T09:00:00Z", "2025-03-11T10:30:00Z")
    )["booking"]
    (booking,) = prospero_mapping.from_json(prospero_client.list_bookings(), timezone=room.timezone)
    body = prospero_mapping.to_json(booking.evolve(status=BookingStatus.CONFIRMED))
    created = prospero_client.create_booking(body)
    assert created["booking"]["bookingStatus"] == BookingState.APPROVED
    assert (created["event"]["start"], created["event"]["end"]) == (
        pending["event"]["start"],
        pending["event"]["end"],
    )


def test_update_changes_only_customer_and_contact(
    prospero: ProsperoWorld, prospero_client: ProsperoClient
):
    booking = prospero.emulator.submit(prospero.module, at(11, 9), at(11, 10))
    updated = prospero_client.update_booking(booking, customer_id="cust-1", contact_id="con-1")
    assert (updated["booking"]["customerId"], updated["booking"]["contactId"]) == (
        "cust-1",
        "con-1",
    )
    cleared = prospero_client.update_booking(booking, customer_id="")
    assert cleared["booking"]["customerId"] is None
    assert cleared["booking"]["contactId"] == "con-1"


# ----- change requests -------------------------------------------------------------------------


def test_change_request_on_a_pending_booking_applies_at_once(
    prospero: ProsperoWorld, prospero_client: ProsperoClient
):
    booking = prospero.emulator.submit(prospero.module, at(11, 9), at(11, 10))
    reply = prospero_client.submit_change_request(
        booking, event={"start": "2025-03-11T15:00:00Z", "end": "2025-03-11T16:00:00Z"}
    )
    assert "changeRequest" not in reply
    assert reply["booking"]["event"]["start"] == "2025-03-11T15:00:00Z"
    assert prospero.emulator.change_requests() == []


def test_change_request_on_an_approved_booking_waits_for_the_admin(
    prospero: ProsperoWorld, prospero_client: ProsperoClient
):
    booking = prospero.emulator.submit(prospero.module, at(11, 9), at(11, 10))
    prospero.emulator.approve(booking)
    moved = {"start": "2025-03-11T15:00:00Z", "end": "2025-03-11T16:00:00Z"}
    queued = prospero_client.submit_change_request(booking, event=moved)["changeRequest"]
    event = prospero.emulator.event_of(booking)
    assert event is not None and event["start"] == "2025-03-11T09:00:00Z"
    reply = prospero_client.approve_change_request(queued["id"])
    assert reply["event"]["start"] == "2025-03-11T15:00:00Z"
    assert prospero.emulator.change_requests() == []
    # Denying (or approving) twice finds nothing: the request is deleted either way.
    with pytest.raises(ProviderNotFound):
        prospero_client.deny_change_request(queued["id"])


def test_denied_change_request_leaves_the_event_alone(
    prospero: ProsperoWorld, prospero_client: ProsperoClient
):
    booking = prospero.emulator.submit(prospero.module, at(11, 9), at(11, 10))
    prospero.emulator.approve(booking)
    queued = prospero_client.submit_change_request(
        booking, event={"start": "2025-03-11T15:00:00Z", "end": "2025-03-11T16:00:00Z"}
    )["changeRequest"]
    prospero_client.deny_change_request(queued["id"])
    event = prospero.emulator.event_of(booking)
    assert event is not None and event["start"] == "2025-03-11T09:00:00Z"
    assert prospero.emulator.change_requests() == []


def test_cancellation_request_needs_an_event_procedure_to_be_approved(
    prospero: ProsperoWorld, prospero_client: ProsperoClient
):
    booking = prospero.emulator.submit(prospero.module, at(11, 9), at(11, 10))
    prospero.emulator.approve(booking)
    queued = prospero_client.submit_change_request(booking, cancellation=True)["changeRequest"]
    with pytest.raises(ProviderValidationError, match="eventProcedure"):
        prospero_client.approve_change_request(queued["id"])
    prospero_client.approve_change_request(queued["id"], procedure=EventProcedure.DELETE)
    assert prospero.emulator.booking(booking)["bookingStatus"] == BookingState.CANCELED
    assert prospero.emulator.event_of(booking) is None


# ----- UTC only ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "start", ["2025-03-11T09:00:00+01:00", "2025-03-11T09:00:00", "2025-03-11 09:00:00Z"]
)
def test_non_utc_times_are_refused_with_prospero_s_error(
    prospero: ProsperoWorld, prospero_client: ProsperoClient, start: str
):
    with pytest.raises(ProviderValidationError, match="UTC") as caught:
        prospero_client.submit_booking(submit_body(prospero, start, "2025-03-11T11:00:00Z"))
    assert caught.value.status == 400
    assert prospero.emulator.bookings() == []


def test_format_instant_writes_utc_with_z():
    summer = datetime(2025, 7, 1, 11, 30, tzinfo=ZoneInfo("Europe/London"))
    assert format_instant(summer) == "2025-07-01T10:30:00Z"
    with pytest.raises(ValueError):
        format_instant(datetime(2025, 7, 1, 10, 30))


# ----- failures and retries ----------------------------------------------------------------------


def test_throttling_is_retried_after_the_retry_after_delay(
    prospero: ProsperoWorld, prospero_client: ProsperoClient, prospero_clock: ManualClock
):
    prospero.emulator.fail_next(FaultKind.THROTTLE, FaultKind.SERVER_ERROR, retry_after=3)
    prospero_client.list_bookings()
    assert [r.status for r in prospero.emulator.requests] == [429, 500, 200, 200]
    assert prospero_clock.sleeps[0] == 3


def test_persistent_throttling_is_a_typed_error(
    prospero: ProsperoWorld, make_prospero_client: MakeClient
):
    client = make_prospero_client(retry=RetryPolicy(max_attempts=2, base_delay=0.1))
    client.list_bookings()
    prospero.emulator.fail_next(FaultKind.THROTTLE, FaultKind.THROTTLE)
    with pytest.raises(ProviderThrottled) as caught:
        client.list_bookings()
    assert caught.value.retry_after == 1


def test_a_submit_that_may_have_been_applied_is_not_repeated(
    prospero: ProsperoWorld, prospero_client: ProsperoClient
):
    prospero.emulator.fail_next(FaultKind.SERVER_ERROR)
    with pytest.raises(ProviderUnavailable):
        prospero_client.submit_booking(
            submit_body(prospero, "2025-03-11T09:00:00Z", "2025-03-11T10:00:00Z")
        )
    assert len(prospero.emulator.requests) == 1


def test_hung_connection_is_retried_for_a_read(
    prospero: ProsperoWorld, make_prospero_client: MakeClient
):
    client = make_prospero_client(timeout=0.3)
    prospero.emulator.set_faults(FaultPlan(hang_seconds=0.2))
    prospero.emulator.fail_next(FaultKind.TIMEOUT)
    assert client.list_bookings()["bookings"] == {}
    assert [r.fault for r in prospero.emulator.requests][:1] == [FaultKind.TIMEOUT]


def test_unknown_booking_is_not_found(prospero_client: ProsperoClient):
    with pytest.raises(ProviderNotFound):
        prospero_client.cancel_booking("0c6f7e3a-9d3b-11ef-8c4a-0242ac120002")


def test_path_like_ids_are_refused_before_sending(
    prospero: ProsperoWorld, prospero_client: ProsperoClient
):
    with pytest.raises(ValueError):
        prospero_client.cancel_booking("../organization")
    assert prospero.emulator.requests == []


def test_cookies_never_show_in_errors(prospero: ProsperoWorld, prospero_client: ProsperoClient):
    prospero_client.list_bookings()
    with pytest.raises(ProviderError) as caught:
        prospero_client.cancel_booking("0c6f7e3a-9d3b-11ef-8c4a-0242ac120002")
    tokens = [*prospero.emulator.session.access, *prospero.emulator.session.refresh]
    shown = str(caught.value) + repr(caught.value) + repr(prospero_client)
    assert tokens and not any(token in shown for token in tokens)


# ----- organisation and the endpoint table ------------------------------------------------------


def test_organization_timezone_is_read_once(
    prospero: ProsperoWorld, prospero_client: ProsperoClient
):
    assert prospero_client.organization_timezone() == "Europe/London"
    assert prospero_client.organization_timezone() == "Europe/London"
    assert routes(prospero).count("GET /api/organization") == 1


def test_only_the_three_documented_paths_are_marked_documented():
    documented = {e.path for e in ENDPOINTS.values() if e.documented}
    assert documented == {"/auth/login", "/auth/refresh", "/bookings/submit"}
    assert set(ENDPOINTS) == set(Operation)


# ----- the source on top of the client -----------------------------------------------------------


def test_source_reads_the_room_in_full_with_one_listing(
    prospero: ProsperoWorld, prospero_client: ProsperoClient, prospero_clock: ManualClock
):
    emulator = prospero.emulator
    hall_pending = emulator.submit(
        prospero.module, at(11, 9), at(11, 10), spaces=[prospero.hall], title="Audition"
    )
    hall_approved = emulator.submit(prospero.module, at(12, 9), at(12, 10), spaces=[prospero.hall])
    emulator.approve(hall_approved, start=at(12, 17), end=at(12, 19))
    studio = emulator.submit(prospero.module, at(13, 9), at(13, 10), spaces=[prospero.studio])
    denied = emulator.submit(prospero.module, at(14, 9), at(14, 10), spaces=[prospero.hall])
    emulator.deny(denied)
    other_module = emulator.add_module("Other venue")
    emulator.submit(other_module, at(15, 9), at(15, 10), spaces=[prospero.hall])
    past = emulator.submit(prospero.module, at(1, 9), at(1, 10), spaces=[prospero.hall])

    source = ProsperoSource(
        prospero_client, name="venue", booking_module=prospero.module, clock=prospero_clock
    )
    window = Window(at(10, 0), at(10, 0) + timedelta(days=365))
    hall = Room("hall", "Main hall", "Europe/London", "venue", prospero.hall)
    read = source.read(hall, None, window, full=False, now=at(10, 8))
    assert read.full and read.removed == [] and read.cursor is None
    by_key = {b.key: b for b in read.bookings}
    assert set(by_key) == {hall_pending, hall_approved}
    assert by_key[hall_pending].status is BookingStatus.TENTATIVE
    assert by_key[hall_approved].status is BookingStatus.CONFIRMED
    assert (by_key[hall_approved].start, by_key[hall_approved].end) == (at(12, 17), at(12, 19))
    assert {b.resource for b in read.bookings} == {prospero.hall}
    assert past not in by_key

    # The studio reads within the reuse period share the listing; a whole-module room sees all.
    studio_room = Room("studio", "Studio", "Europe/London", "venue", prospero.studio)
    studio_read = source.read(studio_room, None, window, full=False, now=at(10, 8))
    assert [b.key for b in studio_read.bookings] == [studio]
    assert studio_read.requests == 0
    whole = Room("all", "Venue", "Europe/London", "venue", prospero.module)
    assert {b.key for b in source.read(whole, None, window, full=True, now=at(10, 8)).bookings} == {
        hall_pending,
        hall_approved,
        studio,
    }
    assert routes(prospero).count(LIST) == 2  # --full always lists afresh
    prospero_clock.advance(20)
    source.read(hall, None, window, full=False, now=at(10, 8))
    assert routes(prospero).count(LIST) == 3
