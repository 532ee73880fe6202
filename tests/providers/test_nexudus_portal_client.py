"""The Nexudus members-portal client against the strict portal emulator (and a few hand-made
replies for what the emulator does not do, such as a login redirect)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from bridge.emulators.faults import FaultKind
from bridge.model import BookingStatus
from bridge.providers.errors import (
    ProviderAuthError,
    ProviderConflict,
    ProviderNotFound,
    ProviderUnavailable,
    ProviderValidationError,
)
from bridge.providers.http import PacingPolicy, RetryPolicy
from bridge.providers.nexudus_portal import NexudusPortalClient, portal_time
from mappings import nexudus as nexudus_mapping
from tests.plugins.nexudus import ManualClock
from tests.plugins.nexudus_portal import (
    OTHER_MEMBER,
    PORTAL_MEMBER,
    PORTAL_PASSWORD,
    PORTAL_ZONE,
    PortalWorld,
)

LONDON = ZoneInfo(PORTAL_ZONE)
#: A summer day (BST, UTC+1), so local and UTC times differ by an hour.
SUMMER = datetime(2025, 6, 12, 9, 0, tzinfo=LONDON)
WINTER = datetime(2025, 3, 12, 9, 0, tzinfo=LONDON)


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


def test_list_bookings_gives_local_wall_clock_items_of_the_resource_only(
    nexudus_portal: PortalWorld, portal_client: NexudusPortalClient
):
    world = nexudus_portal
    mine = world.emulator.seed_booking(
        world.room_id, SUMMER, SUMMER + hours(1), member=PORTAL_MEMBER, notes="Sprint review"
    )
    world.emulator.seed_booking(world.other_room_id, SUMMER, SUMMER + hours(1), member=OTHER_MEMBER)
    items = portal_client.list_bookings(world.room_id, date(2025, 6, 1), date(2025, 6, 30))
    assert [item["id"] for item in items] == [mine]
    (item,) = items
    # 09:00 BST is 08:00 UTC; the portal writes the local 09:00 with a Z.
    assert (item["start"], item["end"], item["ignoreTimezone"]) == (
        "2025-06-12T09:00Z",
        "2025-06-12T10:00Z",
        True,
    )
    (booking,) = nexudus_mapping.from_json(item, provider="hq", timezone=PORTAL_ZONE)
    assert booking.start == SUMMER and booking.end == SUMMER + hours(1)
    assert booking.description == "Sprint review"


def test_list_bookings_returns_only_items_wholly_inside_the_dates(
    nexudus_portal: PortalWorld, portal_client: NexudusPortalClient
):
    world = nexudus_portal
    late = datetime(2025, 6, 30, 23, 0, tzinfo=LONDON)
    crossing = world.emulator.seed_booking(
        world.room_id, late, late + hours(2), member=PORTAL_MEMBER
    )
    inside = world.emulator.seed_booking(
        world.room_id, SUMMER, SUMMER + hours(1), member=PORTAL_MEMBER
    )
    june = portal_client.list_bookings(world.room_id, date(2025, 6, 1), date(2025, 6, 30))
    assert [item["id"] for item in june] == [inside]
    wider = portal_client.list_bookings(world.room_id, date(2025, 6, 1), date(2025, 7, 1))
    assert [item["id"] for item in wider] == [inside, crossing]


def test_list_bookings_drops_other_rooms_when_the_server_ignores_the_filter():
    items = [
        {"id": 1, "resourceId": 10, "start": "2025-06-12T09:00Z", "end": "2025-06-12T10:00Z"},
        {"id": 2, "resourceId": "11", "start": "2025-06-12T09:00Z", "end": "2025-06-12T10:00Z"},
    ]
    client = _client_replying(lambda request: httpx.Response(200, json=items))
    assert [i["id"] for i in client.list_bookings(10, date(2025, 6, 1), date(2025, 6, 2))] == [1]


def test_events_list_names_the_room_an_event_occupies(
    nexudus_portal: PortalWorld, portal_client: NexudusPortalClient
):
    world = nexudus_portal
    talk = world.emulator.add_event(
        "Pottery workshop", SUMMER, SUMMER + hours(3), resource_id=world.room_id
    )
    world.emulator.add_event("Monday siesta", SUMMER, SUMMER + hours(1))
    events = portal_client.list_events(date(2025, 6, 1), date(2025, 6, 30))
    by_title = {event["title"]: event for event in events}
    assert by_title["Pottery workshop"]["id"] == talk
    assert by_title["Pottery workshop"]["resourceId"] == world.room_id
    assert by_title["Monday siesta"]["resourceId"] == 0
    assert all(event["event"] is True for event in events)


def test_availability_reports_booking_and_event_conflicts(
    nexudus_portal: PortalWorld, portal_client: NexudusPortalClient
):
    world = nexudus_portal
    world.emulator.seed_booking(world.room_id, SUMMER, SUMMER + hours(1), member=OTHER_MEMBER)
    world.emulator.add_event("Demo day", SUMMER, SUMMER + hours(4), resource_id=world.other_room_id)
    taken = portal_client.availability(
        world.room_id, SUMMER + hours(0.5), SUMMER + hours(2), LONDON
    )
    assert (taken.available, taken.error_code) == (False, "BOOKING_CONFLICT")
    assert taken.message and "already booked" in taken.message
    free = portal_client.availability(world.room_id, SUMMER + hours(1), SUMMER + hours(2), LONDON)
    assert free.available and free.error_code is None
    event = portal_client.availability(world.other_room_id, SUMMER, SUMMER + hours(1), LONDON)
    assert (event.available, event.error_code) == (False, "EVENT_CONFLICT")


def test_search_filters_by_amenity_and_capacity(
    nexudus_portal: PortalWorld, portal_client: NexudusPortalClient
):
    world = nexudus_portal
    rows = portal_client.search(SUMMER, SUMMER + hours(1), LONDON, Projector=True)
    assert [row["Id"] for row in rows] == [world.big_room_id]
    roomy = portal_client.search(SUMMER, SUMMER + hours(1), LONDON, allocation=6)
    assert sorted(row["Id"] for row in roomy) == sorted([world.room_id, world.big_room_id])


def test_availability_of_an_unknown_resource_is_not_found(portal_client: NexudusPortalClient):
    with pytest.raises(ProviderNotFound, match="resource 42 is not listed"):
        portal_client.availability(42, SUMMER, SUMMER + hours(1), LONDON)


@pytest.mark.parametrize("start", [SUMMER, WINTER], ids=["bst", "gmt"])
def test_create_books_the_local_time_and_reads_back_as_the_same_instant(
    nexudus_portal: PortalWorld, portal_client: NexudusPortalClient, start: datetime
):
    world = nexudus_portal
    booking_id = portal_client.create_booking(
        world.room_id, start, start + hours(1.5), LONDON, notes="Interview", tentative=True
    )
    (stored,) = world.emulator.bookings()
    assert stored.id == booking_id
    assert (stored.start, stored.end) == (
        start.astimezone(UTC),
        (start + hours(1.5)).astimezone(UTC),
    )
    assert stored.coworker_id == world.member_id and stored.tentative
    envelope = portal_client.get_booking(booking_id)
    (booking,) = nexudus_mapping.from_json(envelope, provider="hq", timezone=PORTAL_ZONE)
    assert (booking.start, booking.end) == (start, start + hours(1.5))
    assert booking.status is BookingStatus.TENTATIVE


def test_create_on_a_taken_slot_is_a_conflict_naming_the_code(
    nexudus_portal: PortalWorld, portal_client: NexudusPortalClient
):
    world = nexudus_portal
    world.emulator.seed_booking(world.room_id, SUMMER, SUMMER + hours(1), member=OTHER_MEMBER)
    with pytest.raises(ProviderConflict, match="BOOKING_CONFLICT") as caught:
        portal_client.create_booking(world.room_id, SUMMER, SUMMER + hours(1), LONDON)
    assert "already booked" in caught.value.message
    assert len(world.emulator.bookings()) == 1


def test_create_in_the_past_is_a_validation_error(
    nexudus_portal: PortalWorld, portal_client: NexudusPortalClient
):
    past = datetime(2025, 1, 6, 9, 0, tzinfo=LONDON)
    with pytest.raises(ProviderValidationError, match="NO_PAST_BOOKINGS"):
        portal_client.create_booking(nexudus_portal.room_id, past, past + hours(1), LONDON)


def test_delete_removes_the_booking_and_a_repeated_delete_is_not_found(
    nexudus_portal: PortalWorld, portal_client: NexudusPortalClient
):
    world = nexudus_portal
    booking_id = portal_client.create_booking(world.room_id, SUMMER, SUMMER + hours(1), LONDON)
    portal_client.delete_booking(booking_id)
    assert world.emulator.bookings() == []
    with pytest.raises(ProviderNotFound):
        portal_client.delete_booking(booking_id)


def test_delete_whose_first_attempt_went_through_is_done(
    nexudus_portal: PortalWorld, portal_client: NexudusPortalClient
):
    world = nexudus_portal
    booking_id = portal_client.create_booking(world.room_id, SUMMER, SUMMER + hours(1), LONDON)
    # The first reply is lost after the portal acted on it: the retry then finds nothing.
    calls: list[int] = []

    def lose_first_reply(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            world.emulator.delete_booking(booking_id)
            raise httpx.ReadTimeout("lost", request=request)
        return httpx.Response(404, json={"Message": "Not found"})

    client = _client_replying(lose_first_reply)
    client.delete_booking(booking_id)
    assert len(calls) == 2


def test_delete_of_an_invoiced_booking_is_refused_with_the_portal_message(
    nexudus_portal: PortalWorld, portal_client: NexudusPortalClient
):
    world = nexudus_portal
    booking_id = world.emulator.seed_booking(
        world.room_id, SUMMER, SUMMER + hours(1), member=PORTAL_MEMBER, invoiced=True
    )
    with pytest.raises(ProviderValidationError, match="already been invoiced"):
        portal_client.delete_booking(booking_id)
    assert len(world.emulator.bookings()) == 1


def test_a_changed_password_is_a_clear_auth_error_without_the_secret(
    nexudus_portal: PortalWorld, portal_client: NexudusPortalClient, portal_clock: ManualClock
):
    portal_client.list_events(date(2025, 6, 1), date(2025, 6, 2))
    nexudus_portal.emulator.change_password(PORTAL_MEMBER, "a-new-password")
    with pytest.raises(ProviderAuthError) as caught:
        portal_client.list_bookings(nexudus_portal.room_id, date(2025, 6, 1), date(2025, 6, 2))
    error = caught.value
    assert error.status == 401
    assert "password" in str(error) and "username" in str(error)
    assert PORTAL_PASSWORD not in str(error) + repr(error) + repr(portal_client)
    assert portal_clock.sleeps == []  # a refused login is not retried
    assert [r.status for r in nexudus_portal.emulator.requests].count(401) == 1


def test_a_redirect_to_the_login_page_is_an_auth_error():
    client = _client_replying(
        lambda request: httpx.Response(302, headers={"Location": "/en/login?ReturnUrl=%2fen"})
    )
    with pytest.raises(ProviderAuthError, match="refused the member's email and password"):
        client.list_events(date(2025, 6, 1), date(2025, 6, 2))


def test_every_request_carries_basic_auth_and_the_language(
    nexudus_portal: PortalWorld, portal_client: NexudusPortalClient
):
    seen: list[httpx.Request] = []

    def capture(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=[])

    client = _client_replying(capture)
    client.list_events(date(2025, 6, 1), date(2025, 6, 2))
    (request,) = seen
    assert request.url.path == "/en/bookings/fullCalendarEvents"
    assert dict(request.url.params) == {"start": "2025-06-01", "end": "2025-06-02"}
    expected = base64.b64encode(f"{PORTAL_MEMBER}:{PORTAL_PASSWORD}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {expected}"


def test_throttles_and_server_errors_are_retried_on_reads(
    nexudus_portal: PortalWorld, portal_client: NexudusPortalClient, portal_clock: ManualClock
):
    world = nexudus_portal
    world.emulator.seed_booking(world.room_id, SUMMER, SUMMER + hours(1), member=PORTAL_MEMBER)
    world.emulator.fail_next(FaultKind.THROTTLE, FaultKind.SERVER_ERROR, retry_after=3)
    items = portal_client.list_bookings(world.room_id, date(2025, 6, 1), date(2025, 6, 30))
    assert len(items) == 1
    assert portal_clock.sleeps[0] == 3.0  # Retry-After honoured
    assert [r.status for r in world.emulator.requests] == [409, 500, 200]


def test_a_create_is_not_repeated_after_a_server_error(
    nexudus_portal: PortalWorld, portal_client: NexudusPortalClient
):
    world = nexudus_portal
    world.emulator.fail_next(FaultKind.SERVER_ERROR)
    with pytest.raises(ProviderUnavailable):
        portal_client.create_booking(world.room_id, SUMMER, SUMMER + hours(1), LONDON)
    assert len(world.emulator.requests) == 1


def test_portal_time_writes_local_wall_clock_with_a_z():
    assert portal_time(datetime(2025, 6, 12, 8, 0, tzinfo=UTC), LONDON) == "2025-06-12T09:00Z"
    assert portal_time(datetime(2025, 1, 12, 8, 0, tzinfo=UTC), LONDON) == "2025-01-12T08:00Z"


def _client_replying(handler: Callable[[httpx.Request], httpx.Response]) -> NexudusPortalClient:
    """A client whose every request is answered by ``handler`` (no network)."""
    clock = ManualClock()
    return NexudusPortalClient(
        PORTAL_MEMBER,
        PORTAL_PASSWORD,
        base_url="https://acme.spaces.nexudus.com",
        pacing=PacingPolicy(),
        retry=RetryPolicy(max_attempts=3),
        clock=clock,
        sleep=clock.sleep,
        transport=httpx.MockTransport(handler),
    )
