"""The members-portal emulator over raw HTTP: it must be as strict as the portal it stands for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from bridge.emulators.faults import FaultKind, FaultPlan
from bridge.emulators.nexudus_portal import FAULT_PREFIX
from mappings import nexudus as nexudus_mapping
from tests.plugins.nexudus_portal import (
    OTHER_MEMBER,
    OTHER_PASSWORD,
    PORTAL_MEMBER,
    PORTAL_PASSWORD,
    PORTAL_ZONE,
    PortalWorld,
)

LONDON = ZoneInfo(PORTAL_ZONE)
SUMMER = datetime(2025, 6, 12, 9, 0, tzinfo=LONDON)
JUNE = {"start": "2025-06-01", "end": "2025-06-30"}


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


def http(world: PortalWorld, email: str = PORTAL_MEMBER, password: str = PORTAL_PASSWORD):
    return httpx.Client(base_url=world.base_url, auth=(email, password), timeout=5)


def create_body(resource_id: int, start: str, end: str) -> dict[str, object]:
    return {
        "Booking": {
            "Resource": {"Id": resource_id},
            "Tentative": False,
            "Id": 0,
            "FromTime": start,
            "ToTime": end,
        },
        "Products": [],
    }


def test_every_route_needs_a_members_basic_auth(nexudus_portal: PortalWorld):
    with httpx.Client(base_url=nexudus_portal.base_url, timeout=5) as anonymous:
        assert anonymous.get("/en/bookings/fullCalendarBookings", params=JUNE).status_code == 401
    with http(nexudus_portal, password="wrong") as wrong:
        assert wrong.get("/en/bookings/fullCalendarEvents", params=JUNE).status_code == 401
    with http(nexudus_portal) as member:
        assert member.get("/en/bookings/fullCalendarEvents", params=JUNE).status_code == 200
        nexudus_portal.emulator.change_password(PORTAL_MEMBER, "changed")
        assert member.get("/en/bookings/fullCalendarEvents", params=JUNE).status_code == 401


@pytest.mark.parametrize("missing", ["start", "end"])
def test_list_ranges_are_required(nexudus_portal: PortalWorld, missing: str):
    params = {k: v for k, v in JUNE.items() if k != missing}
    with http(nexudus_portal) as member:
        reply = member.get("/en/bookings/fullCalendarBookings", params=params)
    assert reply.status_code == 500


def test_items_have_the_seed_shape_and_local_times(nexudus_portal: PortalWorld):
    world = nexudus_portal
    booking_id = world.emulator.seed_booking(
        world.room_id, SUMMER, SUMMER + hours(1.25), member=OTHER_MEMBER, private=True
    )
    with http(world) as member:
        (item,) = member.get("/en/bookings/fullCalendarBookings", params=JUNE).json()
    seed_keys = {
        "id", "resourceId", "resourceName", "title", "start", "end", "allDay", "notes",
        "editable", "teamBooking", "groupName", "coworkerId", "coworkerEmail",
        "coworkerFullName", "coworkerCompanyName", "private", "event", "ignoreTimezone",
    }  # fmt: skip
    assert seed_keys <= item.keys()
    assert item["id"] == booking_id and item["resourceId"] == world.room_id
    assert (item["start"], item["end"]) == ("2025-06-12T09:00Z", "2025-06-12T10:15Z")
    assert item["coworkerId"] == str(world.other_member_id)
    assert (item["private"], item["event"], item["ignoreTimezone"]) == (True, False, True)


def test_lists_hold_only_items_wholly_inside_the_range_in_local_time(
    nexudus_portal: PortalWorld,
):
    world = nexudus_portal
    # 00:30 local on 1 June is 23:30 UTC on 31 May: inside June in the space's own time.
    early = datetime(2025, 6, 1, 0, 30, tzinfo=LONDON)
    inside = world.emulator.seed_booking(
        world.room_id, early, early + hours(1), member=PORTAL_MEMBER
    )
    late = datetime(2025, 6, 30, 23, 30, tzinfo=LONDON)
    world.emulator.seed_booking(world.room_id, late, late + hours(1), member=PORTAL_MEMBER)
    world.emulator.add_event("Long fair", early, late + hours(1), resource_id=world.room_id)
    with http(world) as member:
        bookings = member.get("/en/bookings/fullCalendarBookings", params=JUNE).json()
        events = member.get("/en/bookings/fullCalendarEvents", params=JUNE).json()
    assert [item["id"] for item in bookings] == [inside]
    assert events == []


def test_resource_and_show_all_filters_apply(nexudus_portal: PortalWorld):
    world = nexudus_portal
    mine = world.emulator.seed_booking(
        world.room_id, SUMMER, SUMMER + hours(1), member=PORTAL_MEMBER
    )
    theirs = world.emulator.seed_booking(
        world.room_id, SUMMER + hours(2), SUMMER + hours(3), member=OTHER_MEMBER
    )
    world.emulator.seed_booking(world.other_room_id, SUMMER, SUMMER + hours(1), member=OTHER_MEMBER)
    with http(world) as member:
        room = {**JUNE, "resourceId": str(world.room_id)}
        listed = member.get("/en/bookings/fullCalendarBookings", params=room).json()
        own = member.get(
            "/en/bookings/fullCalendarBookings", params={**room, "showAll": "false"}
        ).json()
    assert [item["id"] for item in listed] == [mine, theirs]
    assert [item["id"] for item in own] == [mine]


def test_create_reads_wall_clock_times_and_refuses_with_error_codes(
    nexudus_portal: PortalWorld,
):
    world = nexudus_portal
    world.emulator.add_event(
        "Workshop", SUMMER + hours(4), SUMMER + hours(5), resource_id=world.room_id
    )
    with http(world) as member:
        created = member.post(
            "/en/bookings/newBookingJson",
            json=create_body(world.room_id, "2025-06-12T09:00Z", "2025-06-12T10:00Z"),
        ).json()
        refusals = {
            code: member.post("/en/bookings/newBookingJson", json=body).json()
            for code, body in {
                "BOOKING_CONFLICT": create_body(
                    world.room_id, "2025-06-12T09:30Z", "2025-06-12T10:30Z"
                ),
                "EVENT_CONFLICT": create_body(
                    world.room_id, "2025-06-12T12:30Z", "2025-06-12T13:30Z"
                ),
                "NO_RESOURCE": create_body(1, "2025-06-12T09:00Z", "2025-06-12T10:00Z"),
                "INVALID_INTERVAL": create_body(
                    world.room_id, "2025-06-12T10:00Z", "2025-06-12T09:00Z"
                ),
                "NO_PAST_BOOKINGS": create_body(
                    world.room_id, "2025-01-12T09:00Z", "2025-01-12T10:00Z"
                ),
            }.items()
        }
    assert created["WasSuccessful"] is True and created["Status"] == 200
    (stored,) = world.emulator.bookings()
    assert stored.id == created["Value"]["Id"]
    assert stored.start == datetime(2025, 6, 12, 8, 0, tzinfo=UTC)  # 09:00 BST
    for code, reply in refusals.items():
        assert (reply["WasSuccessful"], reply["Status"], reply["ErrorCode"]) == (False, 500, code)
        assert reply["Message"]
    assert len(world.emulator.bookings()) == 1


def test_members_read_and_delete_only_their_own_bookings(nexudus_portal: PortalWorld):
    world = nexudus_portal
    theirs = world.emulator.seed_booking(
        world.room_id, SUMMER, SUMMER + hours(1), member=OTHER_MEMBER
    )
    with http(world) as member:
        assert member.get(f"/en/bookings/{theirs}").status_code == 404
        assert member.get(f"/en/bookings/deleteJson/{theirs}").status_code == 404
    with http(world, OTHER_MEMBER, OTHER_PASSWORD) as owner:
        envelope = owner.get(f"/en/bookings/{theirs}").json()
        deleted = owner.get(f"/en/bookings/deleteJson/{theirs}").json()
    (booking,) = nexudus_mapping.from_json(envelope, timezone=PORTAL_ZONE)
    assert (booking.start, booking.end) == (SUMMER, SUMMER + hours(1))
    assert deleted["WasSuccessful"] is True
    assert deleted["Message"] == "Booking was successfully deleted."
    assert world.emulator.bookings() == []


def test_search_marks_each_resource_available_or_not(nexudus_portal: PortalWorld):
    world = nexudus_portal
    world.emulator.seed_booking(world.room_id, SUMMER, SUMMER + hours(1), member=OTHER_MEMBER)
    params = {"start": "2025-06-12T09:30", "end": "2025-06-12T10:30", "group": "Small"}
    with http(world) as member:
        reply = member.get("/en/bookings/search", params=params).json()
    rows = {row["Id"]: row for row in reply["Resources"]}
    assert set(rows) == {world.room_id, world.other_room_id}
    assert (rows[world.room_id]["IsAvailable"], rows[world.room_id]["ErrorCode"]) == (
        False,
        "BOOKING_CONFLICT",
    )
    assert rows[world.other_room_id]["IsAvailable"] is True


def test_events_show_their_room_or_none(nexudus_portal: PortalWorld):
    world = nexudus_portal
    world.emulator.add_event(
        "Pottery workshop", SUMMER, SUMMER + hours(2), resource_id=world.room_id
    )
    world.emulator.add_event("Monday siesta", SUMMER, SUMMER + hours(1))
    with http(world) as member:
        events = member.get("/en/bookings/fullCalendarEvents", params=JUNE).json()
    by_title = {event["title"]: event for event in events}
    assert by_title["Pottery workshop"]["resourceName"] == "Callisto Meeting Room"
    assert by_title["Pottery workshop"]["url"].startswith("/en/Events/View/")
    assert (by_title["Monday siesta"]["resourceId"], by_title["Monday siesta"]["resourceName"]) == (
        0,
        "",
    )


def test_faults_hit_portal_routes_and_are_logged_without_secrets(nexudus_portal: PortalWorld):
    world = nexudus_portal
    world.emulator.set_faults(
        FaultPlan(rate=1.0, kinds=(FaultKind.THROTTLE,), retry_after=2, path_prefix=FAULT_PREFIX)
    )
    with http(world) as member:
        reply = member.get("/en/bookings/fullCalendarEvents", params=JUNE)
    assert reply.status_code == 409 and reply.headers["Retry-After"] == "2"
    (logged,) = world.emulator.requests
    assert (logged.fault, logged.status, logged.route) == (
        FaultKind.THROTTLE,
        409,
        "/{language}/bookings/fullCalendarEvents",
    )
    assert PORTAL_PASSWORD not in repr(world.emulator.requests) + repr(world.emulator)


def test_an_unknown_language_is_not_found(nexudus_portal: PortalWorld):
    with http(nexudus_portal) as member:
        assert member.get("/xx/bookings/fullCalendarEvents", params=JUNE).status_code == 404
