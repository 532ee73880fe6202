"""The Nexudus client against the strict emulator: auth, paging, filters, writes, failures."""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from dateutil import rrule

from bridge.emulators.faults import FaultKind, FaultPlan
from bridge.emulators.nexudus import NexudusEmulator
from bridge.model import Window
from bridge.providers.errors import (
    ProviderAuthError,
    ProviderConflict,
    ProviderError,
    ProviderNotFound,
    ProviderThrottled,
    ProviderUnavailable,
    ProviderValidationError,
)
from bridge.providers.http import (
    Pacer,
    PacingPolicy,
    RetryPolicy,
    TokenBucket,
    parse_retry_after,
)
from bridge.providers.nexudus import NexudusClient
from tests.plugins.nexudus import (
    NEXUDUS_NOW,
    NEXUDUS_PASSWORD,
    NEXUDUS_USER,
    ManualClock,
    NexudusWorld,
)

LONDON = ZoneInfo("Europe/London")
MakeClient = Callable[..., NexudusClient]


def at(day: str, hour: int, minute: int = 0) -> datetime:
    """A UTC instant."""
    return datetime.fromisoformat(day).replace(hour=hour, minute=minute, tzinfo=UTC)


def hour_bookings(world: NexudusWorld, count: int, *, room: int | None = None) -> list[int]:
    """``count`` one-hour bookings, one per day from 2025-03-11 09:00 UTC."""
    return [
        world.emulator.seed_booking(
            room or world.room_id,
            at("2025-03-11", 9) + timedelta(days=day),
            at("2025-03-11", 10) + timedelta(days=day),
        )
        for day in range(count)
    ]


def statuses(world: NexudusWorld, route: str) -> list[int | None]:
    """The statuses the emulator answered on one route, in order."""
    return [r.status for r in world.emulator.requests if f"{r.method} {r.route}" == route]


# ----- auth ----------------------------------------------------------------------------------


def test_logs_in_once_and_reuses_the_token(
    nexudus: NexudusWorld, nexudus_client: NexudusClient
) -> None:
    hour_bookings(nexudus, 2)
    for _ in range(3):
        assert len(list(nexudus_client.list_bookings(nexudus.room_id))) == 2
    assert nexudus.emulator.token_grants() == {"password": 1}


def test_refreshes_shortly_before_expiry_without_a_401(
    nexudus: NexudusWorld, nexudus_client: NexudusClient, nexudus_clock: ManualClock
) -> None:
    hour_bookings(nexudus, 1)
    list(nexudus_client.list_bookings(nexudus.room_id))
    nexudus_clock.advance(604799 - 3000)  # inside the last hour of the 7-day token
    list(nexudus_client.list_bookings(nexudus.room_id))
    assert nexudus.emulator.token_grants() == {"password": 1, "refresh_token": 1}
    assert 401 not in statuses(nexudus, "GET /api/spaces/bookings")


def test_token_expiring_mid_listing_is_renewed_and_the_listing_completes(
    nexudus: NexudusWorld, make_nexudus_client: MakeClient
) -> None:
    ids = hour_bookings(nexudus, 7)
    client = make_nexudus_client(page_size=3)
    listing = client.list_bookings(nexudus.room_id)
    seen = [next(listing)["Id"]]
    nexudus.emulator.expire_tokens()
    seen += [record["Id"] for record in listing]
    assert seen == ids
    assert nexudus.emulator.token_grants() == {"password": 1, "refresh_token": 1}
    assert statuses(nexudus, "GET /api/spaces/bookings").count(401) == 1


def test_refused_refresh_falls_back_to_the_password(make_nexudus_client: MakeClient) -> None:
    emulator = NexudusEmulator(
        now=NEXUDUS_NOW, token_lifetime=timedelta(hours=1), refresh_lifetime=timedelta(hours=2)
    )
    emulator.add_user(NEXUDUS_USER, NEXUDUS_PASSWORD)
    business = emulator.add_business("HQ")
    room = emulator.add_resource("Room", business_id=business)
    with emulator.serve() as server:
        client = make_nexudus_client(base_url=server.base_url)
        client.get_resource(room)
        emulator.advance_clock(timedelta(hours=3))  # access and refresh tokens both dead
        assert client.get_resource(room)["Id"] == room
    assert emulator.token_grants() == {"password": 2, "refresh_token": 1}


def test_wrong_password_is_an_auth_error_without_the_password(
    nexudus: NexudusWorld, make_nexudus_client: MakeClient
) -> None:
    client = make_nexudus_client(password="hunter2-wrong-password")
    with pytest.raises(ProviderAuthError) as caught:
        client.get_resource(nexudus.room_id)
    assert "The user name or password is incorrect." in str(caught.value)
    assert "hunter2" not in str(caught.value) + repr(caught.value) + repr(client)


def test_basic_auth_works_and_fails_cleanly(
    nexudus: NexudusWorld, make_nexudus_client: MakeClient
) -> None:
    hour_bookings(nexudus, 2)
    client = make_nexudus_client(auth="basic")
    assert len(list(client.list_bookings(nexudus.room_id))) == 2
    assert nexudus.emulator.token_grants() == {}
    wrong = make_nexudus_client(auth="basic", password="not-the-password")
    with pytest.raises(ProviderAuthError) as caught:
        wrong.get_booking(1)
    assert caught.value.status == 401
    assert "not-the-password" not in str(caught.value)


# ----- listing -------------------------------------------------------------------------------


def test_paging_returns_every_booking_once(
    nexudus: NexudusWorld, make_nexudus_client: MakeClient
) -> None:
    ids = hour_bookings(nexudus, 10)
    hour_bookings(nexudus, 3, room=nexudus.other_room_id)
    client = make_nexudus_client(page_size=3)
    listed = [record["Id"] for record in client.list_bookings(nexudus.room_id)]
    assert sorted(listed) == ids
    assert len(listed) == len(set(listed))
    assert len(statuses(nexudus, "GET /api/spaces/bookings")) >= 4


def test_a_booking_updated_during_paging_does_not_hide_another(
    nexudus: NexudusWorld, make_nexudus_client: MakeClient
) -> None:
    ids = []
    for day in range(9):  # each booking last touched a minute after the previous one
        start = at("2025-03-11", 9) + timedelta(days=day)
        ids.append(
            nexudus.emulator.seed_booking(nexudus.room_id, start, start + timedelta(hours=1))
        )
        nexudus.emulator.advance_clock(timedelta(minutes=1))
    client = make_nexudus_client(page_size=3)
    listing = client.list_bookings(nexudus.room_id)
    seen = [next(listing)["Id"]]
    # An admin edits the first booking: with plain offset paging it would jump to the end
    # and the fourth booking would slide onto page 1, never to be listed.
    nexudus.emulator.edit_booking(ids[0], Notes="edited")
    seen += [record["Id"] for record in listing]
    assert set(seen) == set(ids)


def test_updated_since_filters_with_minute_precision_and_a_margin(
    nexudus: NexudusWorld, make_nexudus_client: MakeClient
) -> None:
    _, recent = hour_bookings(nexudus, 2)
    nexudus.emulator.advance_clock(timedelta(hours=1, seconds=42))
    nexudus.emulator.edit_booking(recent, Notes="changed at 09:00:42")
    client = make_nexudus_client(updated_margin=timedelta(minutes=2))
    since = at("2025-03-10", 9, 1)  # a minute after the change: only the margin catches it
    listed = [record["Id"] for record in client.list_bookings(nexudus.room_id, updated_since=since)]
    assert listed == [recent]
    [query] = [
        dict(r.query) for r in nexudus.emulator.requests if r.route == "/api/spaces/bookings"
    ]
    assert query["from_Booking_UpdatedOn"] == "2025-03-10T08:59"
    assert query["orderby"] == "UpdatedOn"
    assert query["Booking_Resource"] == str(nexudus.room_id)


def test_window_filtering_is_exact(nexudus: NexudusWorld, nexudus_client: NexudusClient) -> None:
    seed = nexudus.emulator.seed_booking
    room = nexudus.room_id
    before = seed(room, at("2025-03-11", 8), at("2025-03-11", 9))  # ends at window start
    straddles_start = seed(room, at("2025-03-11", 8, 30), at("2025-03-11", 9, 30))
    inside = seed(room, at("2025-03-11", 11), at("2025-03-11", 12))
    straddles_end = seed(room, at("2025-03-11", 16, 45), at("2025-03-11", 18))
    after = seed(room, at("2025-03-11", 17, 0), at("2025-03-11", 18))  # starts at window end
    window = Window(at("2025-03-11", 9), at("2025-03-11", 17))
    del before, after
    listed = {record["Id"] for record in nexudus_client.list_bookings(room, window=window)}
    assert listed == {straddles_start, inside, straddles_end}


def test_window_bounds_with_seconds_still_catch_edge_bookings(
    nexudus: NexudusWorld, nexudus_client: NexudusClient
) -> None:
    room = nexudus.room_id
    edge = nexudus.emulator.seed_booking(room, at("2025-03-11", 9, 0), at("2025-03-11", 9, 1))
    window = Window(at("2025-03-11", 9, 0) + timedelta(seconds=30), at("2025-03-11", 10))
    assert [r["Id"] for r in nexudus_client.list_bookings(room, window=window)] == [edge]


def test_series_listing(nexudus: NexudusWorld, nexudus_client: NexudusClient) -> None:
    first = nexudus_client.create_booking(
        {
            "ResourceId": nexudus.room_id,
            "FromTime": "2025-03-12T09:00:00Z",
            "ToTime": "2025-03-12T10:00:00Z",
            "RepeatBooking": True,
            "Repeats": 1,
            "RepeatUntil": "2025-03-16",
        }
    )
    hour_bookings(nexudus, 1)
    series_id = nexudus_client.get_booking(first)["RepeatSeriesUniqueId"]
    members = list(nexudus_client.list_series(series_id))
    assert [m["FromTime"][:10] for m in members] == [
        "2025-03-12",
        "2025-03-13",
        "2025-03-14",
        "2025-03-15",
        "2025-03-16",
    ]
    assert members[0]["Id"] == first


def test_cancelled_listing(nexudus: NexudusWorld, nexudus_client: NexudusClient) -> None:
    early, late, elsewhere = hour_bookings(nexudus, 3)
    nexudus.emulator.cancel_booking(early)
    nexudus.emulator.advance_clock(timedelta(hours=1))
    nexudus_client.delete_booking(late)
    other = hour_bookings(nexudus, 1, room=nexudus.other_room_id)[0]
    nexudus_client.delete_booking(other)
    everything = list(nexudus_client.list_cancelled(nexudus.room_id))
    recent = list(nexudus_client.list_cancelled(nexudus.room_id, since=at("2025-03-10", 8, 30)))
    assert {row["OriginalBookingId"] for row in everything} == {early, late}
    assert [row["OriginalBookingId"] for row in recent] == [late]
    assert recent[0]["CancelledOn"] == "2025-03-10T09:00:00Z"
    assert elsewhere in {b["Id"] for b in nexudus.emulator.bookings()}


def test_resource_timezone_chain_is_resolved_and_cached(
    nexudus: NexudusWorld, make_nexudus_client: MakeClient
) -> None:
    sydney = nexudus.emulator.add_business("Sydney", time_zone="AUS Eastern Standard Time")
    harbour = nexudus.emulator.add_resource("Harbour", business_id=sydney)
    client = make_nexudus_client(page_size=4)  # the zone table spans several pages
    assert client.resource_timezone(harbour) == "AUS Eastern Standard Time"
    assert client.resource_timezone(nexudus.room_id) == "GMT Standard Time"
    before = len(nexudus.emulator.requests)
    assert client.resource_timezone(harbour) == "AUS Eastern Standard Time"
    assert len(nexudus.emulator.requests) == before


def test_missing_booking_is_not_found(nexudus_client: NexudusClient) -> None:
    with pytest.raises(ProviderNotFound) as caught:
        nexudus_client.get_booking(424242)
    assert caught.value.status == 404


# ----- creating series: every Repeats kind against an independent expectation ------------------

WEEKDAY = (rrule.MO, rrule.TU, rrule.WE, rrule.TH, rrule.FR, rrule.SA, rrule.SU)


def expected_local_dates(repeats: int, first: date, until: date, every: int) -> list[date]:
    """Dates from dateutil (RFC 5545) or written out by hand for the .NET-style clamping."""
    start = datetime.combine(first, datetime.min.time())
    end = datetime.combine(until, datetime.min.time())
    nth = {5: 1, 6: 2, 7: 3, 9: 4, 8: -1}
    if repeats == 1:
        rule = rrule.rrule(rrule.DAILY, dtstart=start, interval=every, until=end)
    elif repeats == 2:
        days = (WEEKDAY[0], WEEKDAY[2])  # RepeatOnMondays + RepeatOnWednesdays
        rule = rrule.rrule(rrule.WEEKLY, dtstart=start, interval=every, byweekday=days, until=end)
    elif repeats in nth:
        weekday = WEEKDAY[first.weekday()](nth[repeats])
        rule = rrule.rrule(
            rrule.MONTHLY,
            dtstart=start.replace(day=1),
            interval=every,
            byweekday=weekday,
            until=end,
        )
    else:
        return {
            3: [date(2025, 3, 31), date(2025, 4, 30), date(2025, 5, 31), date(2025, 6, 30)],
            4: [date(2025, 3, 31), date(2026, 3, 31), date(2027, 3, 31)],
        }[repeats]
    return sorted({first} | {d.date() for d in rule if d.date() > first})


@pytest.mark.parametrize(
    ("repeats", "first", "until", "every"),
    [
        (1, date(2025, 3, 28), date(2025, 4, 8), 2),  # Daily, every 2 days, across BST
        (2, date(2025, 3, 17), date(2025, 4, 16), 1),  # Weekly Mon+Wed
        (3, date(2025, 3, 31), date(2025, 6, 30), 1),  # Monthly from the 31st
        (4, date(2025, 3, 31), date(2027, 4, 1), 1),  # Yearly
        (5, date(2025, 3, 3), date(2025, 7, 31), 1),  # FirstOfMonth (Monday)
        (6, date(2025, 3, 11), date(2025, 7, 31), 1),  # SecondOfMonth (Tuesday)
        (7, date(2025, 3, 20), date(2025, 8, 31), 2),  # ThirdOfMonth (Thursday), every 2
        (8, date(2025, 3, 28), date(2025, 7, 31), 1),  # LastOfMonth (Friday)
        (9, date(2025, 3, 24), date(2025, 7, 31), 1),  # FourthOfMonth (Monday)
    ],
)
def test_create_materialises_each_repeat_kind(
    nexudus: NexudusWorld,
    nexudus_client: NexudusClient,
    repeats: int,
    first: date,
    until: date,
    every: int,
) -> None:
    local_start = datetime.combine(first, datetime.min.time()).replace(hour=9, tzinfo=LONDON)
    body: dict[str, Any] = {
        "ResourceId": nexudus.room_id,
        "FromTime": local_start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "ToTime": (local_start + timedelta(hours=1)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "RepeatBooking": True,
        "Repeats": repeats,
        "RepeatEvery": every,
        "RepeatUntil": until.isoformat(),
        "RepeatOnMondays": repeats == 2,
        "RepeatOnWednesdays": repeats == 2,
    }
    first_id = nexudus_client.create_booking(body)
    series_id = nexudus_client.get_booking(first_id)["RepeatSeriesUniqueId"]
    members = list(nexudus_client.list_series(series_id))
    expected = expected_local_dates(repeats, first, until, every)
    assert [date.fromisoformat(m["FromTimeLocal"][:10]) for m in members] == expected
    for member in members:
        start = datetime.fromisoformat(member["FromTime"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(member["ToTime"].replace("Z", "+00:00"))
        assert start.astimezone(LONDON).time().isoformat() == "09:00:00"
        assert end - start == timedelta(hours=1)
    assert members[0]["Id"] == first_id


def test_create_single_booking(nexudus: NexudusWorld, nexudus_client: NexudusClient) -> None:
    booking_id = nexudus_client.create_booking(
        {
            "ResourceId": nexudus.room_id,
            "FromTime": "2025-03-11T09:00:00Z",
            "ToTime": "2025-03-11T10:00:00Z",
            "Notes": "Board meeting",
            "Tentative": True,
        }
    )
    stored = nexudus_client.get_booking(booking_id)
    assert (stored["FromTime"], stored["ToTime"]) == (
        "2025-03-11T09:00:00Z",
        "2025-03-11T10:00:00Z",
    )
    assert stored["Notes"] == "Board meeting" and stored["Tentative"] is True
    assert stored["RepeatSeriesUniqueId"] is None


# ----- coworkers ---------------------------------------------------------------------------------


def test_coworkers_by_email_filters_pages_and_compares_exactly(
    nexudus: NexudusWorld, make_nexudus_client: MakeClient
) -> None:
    first = nexudus.emulator.add_coworker("Ada Lovelace", "ada@example.com")
    for index in range(5):
        nexudus.emulator.add_coworker(f"Member {index}", f"member{index}@example.com")
    twin = nexudus.emulator.add_coworker("Ada (company)", "Ada@Example.com")
    client = make_nexudus_client(page_size=1)
    found = client.coworkers_by_email(" ada@EXAMPLE.com ")
    assert [record["Id"] for record in found] == [first, twin]
    assert client.coworkers_by_email("nobody@example.com") == []
    queries = [r.query for r in nexudus.emulator.requests if r.route == "/api/spaces/coworkers"]
    assert ("Coworker_Email", "ada@EXAMPLE.com") in queries[0]
    # Two matches at one per page: two pages, then the empty lookup.
    assert len(queries) == 3


# ----- update and delete -------------------------------------------------------------------------


def weekly_series(client: NexudusClient, world: NexudusWorld) -> list[dict[str, Any]]:
    """Four Monday 09:00-10:00 London bookings from 17 March 2025 (the DST change is 30 March)."""
    first = client.create_booking(
        {
            "ResourceId": world.room_id,
            "FromTime": "2025-03-17T09:00:00Z",
            "ToTime": "2025-03-17T10:00:00Z",
            "RepeatBooking": True,
            "Repeats": 2,
            "RepeatUntil": "2025-04-07",
            "Notes": "stand-up",
        }
    )
    return list(client.list_series(client.get_booking(first)["RepeatSeriesUniqueId"]))


@pytest.mark.parametrize(
    ("which", "moved"),
    [(1, [False, True, False, False]), (2, [False, True, True, True]), (3, [True] * 4)],
)
def test_update_with_which_bookings_to_update(
    nexudus: NexudusWorld, nexudus_client: NexudusClient, which: int, moved: list[bool]
) -> None:
    members = weekly_series(nexudus_client, nexudus)
    record = nexudus_client.get_booking(members[1]["Id"])
    record.update(FromTime="2025-03-24T09:30:00Z", ToTime="2025-03-24T10:30:00Z")
    nexudus_client.update_booking(record, which=which)
    for member, was_moved in zip(members, moved, strict=True):
        local_start = nexudus_client.get_booking(member["Id"])["FromTimeLocal"][11:16]
        assert local_start == ("09:30" if was_moved else "09:00")


def test_update_keeps_fields_when_sent_the_full_record(
    nexudus: NexudusWorld, nexudus_client: NexudusClient
) -> None:
    booking = nexudus.emulator.seed_booking(
        nexudus.room_id, at("2025-03-11", 9), at("2025-03-11", 10), InternalNotes="keep me"
    )
    record = nexudus_client.get_booking(booking)
    record["Notes"] = "new notes"
    nexudus_client.update_booking(record)
    stored = nexudus_client.get_booking(booking)
    assert (stored["Notes"], stored["InternalNotes"]) == ("new notes", "keep me")


def test_delete_leaves_a_cancelled_snapshot(
    nexudus: NexudusWorld, nexudus_client: NexudusClient
) -> None:
    [booking] = hour_bookings(nexudus, 1)
    nexudus_client.delete_booking(booking)
    with pytest.raises(ProviderNotFound):
        nexudus_client.get_booking(booking)
    [snapshot] = nexudus_client.list_cancelled(nexudus.room_id)
    assert snapshot["OriginalBookingId"] == booking
    assert snapshot["FromTime"] == "2025-03-11T09:00:00Z"
    with pytest.raises(ProviderNotFound):
        nexudus_client.delete_booking(booking)


def test_validation_error_carries_the_message_and_errors(
    nexudus: NexudusWorld, nexudus_client: NexudusClient
) -> None:
    with pytest.raises(ProviderValidationError) as caught:
        nexudus_client.create_booking(
            {"ResourceId": nexudus.room_id, "ToTime": "2025-03-11T10:00Z"}
        )
    error = caught.value
    assert error.status == 400
    assert error.message == "FromTime: is a required field"
    assert [(e.property_name, e.message) for e in error.errors] == [
        ("FromTime", "is a required field")
    ]
    assert (error.provider, error.operation) == ("nexudus", "create booking")


def test_overlap_is_a_conflict(nexudus: NexudusWorld, nexudus_client: NexudusClient) -> None:
    hour_bookings(nexudus, 1)
    with pytest.raises(ProviderConflict) as caught:
        nexudus_client.create_booking(
            {
                "ResourceId": nexudus.room_id,
                "FromTime": "2025-03-11T09:30:00Z",
                "ToTime": "2025-03-11T10:30:00Z",
            }
        )
    assert "not available" in str(caught.value)
    assert len(nexudus.emulator.bookings()) == 1


# ----- retries and throttling ---------------------------------------------------------------------


def test_409_retry_after_is_honoured(
    nexudus: NexudusWorld, nexudus_client: NexudusClient, nexudus_clock: ManualClock
) -> None:
    [booking] = hour_bookings(nexudus, 1)
    nexudus_client.get_booking(booking)  # log in first
    nexudus.emulator.fail_next(FaultKind.THROTTLE, FaultKind.THROTTLE, retry_after=7)
    assert nexudus_client.get_booking(booking)["Id"] == booking
    assert nexudus_clock.sleeps == [7.0, 7.0]


def test_throttled_create_is_retried_and_creates_once(
    nexudus: NexudusWorld, nexudus_client: NexudusClient, nexudus_clock: ManualClock
) -> None:
    nexudus_client.get_resource(nexudus.room_id)
    nexudus.emulator.fail_next(FaultKind.THROTTLE, retry_after=3)
    nexudus_client.create_booking(
        {
            "ResourceId": nexudus.room_id,
            "FromTime": "2025-03-11T09:00Z",
            "ToTime": "2025-03-11T10:00Z",
        }
    )
    assert len(nexudus.emulator.bookings()) == 1
    assert nexudus_clock.sleeps == [3.0]


def test_create_is_not_retried_after_an_ambiguous_500(
    nexudus: NexudusWorld, nexudus_client: NexudusClient
) -> None:
    nexudus_client.get_resource(nexudus.room_id)
    nexudus.emulator.fail_next(FaultKind.SERVER_ERROR)
    with pytest.raises(ProviderUnavailable):
        nexudus_client.create_booking(
            {
                "ResourceId": nexudus.room_id,
                "FromTime": "2025-03-11T09:00Z",
                "ToTime": "2025-03-11T10:00Z",
            }
        )
    assert nexudus.emulator.request_counts()["POST /api/spaces/bookings"] == 1


def test_listing_completes_under_a_30_percent_fault_rate(
    nexudus: NexudusWorld, make_nexudus_client: MakeClient, nexudus_clock: ManualClock
) -> None:
    ids = hour_bookings(nexudus, 40)
    nexudus.emulator.set_faults(
        FaultPlan(rate=0.3, seed=17, retry_after=2, hang_seconds=2.0, slow_seconds=0.02)
    )
    client = make_nexudus_client(
        page_size=3, timeout=0.25, retry=RetryPolicy(max_attempts=8, base_delay=0.5)
    )
    listed = {record["Id"] for record in client.list_bookings(nexudus.room_id)}
    assert listed == set(ids)
    faults = {r.fault for r in nexudus.emulator.requests if r.fault is not None}
    assert {FaultKind.THROTTLE, FaultKind.SERVER_ERROR, FaultKind.TIMEOUT} <= faults
    assert nexudus_clock.sleeps  # the client backed off instead of hammering


def test_retries_are_bounded_then_unavailable(
    nexudus: NexudusWorld, make_nexudus_client: MakeClient, nexudus_clock: ManualClock
) -> None:
    client = make_nexudus_client(retry=RetryPolicy(max_attempts=4, base_delay=1.0, max_delay=30))
    client.get_resource(nexudus.room_id)
    nexudus.emulator.set_faults(FaultPlan(rate=1.0, kinds=(FaultKind.SERVER_ERROR,)))
    with pytest.raises(ProviderUnavailable) as caught:
        client.get_resource(nexudus.room_id)
    assert caught.value.status == 500
    assert "An error has occurred." in str(caught.value)
    assert nexudus.emulator.request_counts()["GET /api/spaces/resources/{resource_id}"] == 1 + 4
    waits = nexudus_clock.sleeps
    assert len(waits) == 3
    for retry, wait in enumerate(waits, start=1):  # exponential, jittered into [c/2, c]
        ceiling = 1.0 * 2 ** (retry - 1)
        assert ceiling / 2 <= wait <= ceiling


def test_persistent_throttle_becomes_provider_throttled(
    nexudus: NexudusWorld, make_nexudus_client: MakeClient
) -> None:
    client = make_nexudus_client(retry=RetryPolicy(max_attempts=3))
    client.get_resource(nexudus.room_id)
    nexudus.emulator.set_faults(FaultPlan(rate=1.0, kinds=(FaultKind.THROTTLE,), retry_after=5))
    with pytest.raises(ProviderThrottled) as caught:
        client.get_resource(nexudus.room_id)
    assert caught.value.retry_after == 5.0


def test_unreachable_provider_is_unavailable(make_nexudus_client: MakeClient) -> None:
    client = make_nexudus_client(base_url="http://127.0.0.1:9", retry=RetryPolicy(max_attempts=3))
    with pytest.raises(ProviderUnavailable) as caught:
        client.get_booking(1)
    assert "could not connect" in str(caught.value)


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    now = datetime(2025, 3, 10, 8, 0, tzinfo=UTC)
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after("Mon, 10 Mar 2025 08:00:30 GMT", now) == 30.0
    assert parse_retry_after("Mon, 10 Mar 2025 07:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


# ----- pacing ------------------------------------------------------------------------------------


def most_in_any_window(instants: list[float], width: float) -> int:
    """The largest number of instants inside any half-open window [t, t + width)."""
    ordered = sorted(instants)
    best = 0
    for index, start in enumerate(ordered):
        best = max(best, sum(1 for t in ordered[index:] if t < start + width))
    return best


def test_writes_are_paced_to_60_per_minute(
    nexudus: NexudusWorld, make_nexudus_client: MakeClient, nexudus_clock: ManualClock
) -> None:
    client = make_nexudus_client(pacing=PacingPolicy(writes_per_minute=60, write_burst=5))
    instants = []
    for day in range(75):
        start = at("2025-04-01", 9) + timedelta(days=day)
        client.create_booking(
            {
                "ResourceId": nexudus.room_id,
                "FromTime": start.isoformat(),
                "ToTime": (start + timedelta(hours=1)).isoformat(),
            }
        )
        instants.append(nexudus_clock.monotonic())
    assert len(nexudus.emulator.bookings()) == 75
    assert most_in_any_window(instants, 60.0) <= 60
    assert instants[-1] - instants[0] >= 60.0  # it really had to wait
    assert most_in_any_window(instants[:5], 0.001) == 5  # the burst goes out at once


def test_reads_are_spaced_100_ms_apart_by_default_policy(
    nexudus: NexudusWorld, make_nexudus_client: MakeClient, nexudus_clock: ManualClock
) -> None:
    client = make_nexudus_client(pacing=PacingPolicy(min_interval=0.1))
    instants = []
    for _ in range(10):
        client.get_resource(nexudus.room_id)
        instants.append(nexudus_clock.monotonic())
    gaps = [later - earlier for earlier, later in itertools.pairwise(instants)]
    assert all(gap >= 0.1 - 1e-9 for gap in gaps)


def test_token_bucket_limit_holds_for_any_window() -> None:
    clock = ManualClock()
    rng = random.Random(5)
    bucket = TokenBucket.limiting(60, 60.0, burst=10, clock=clock, sleep=clock.sleep)
    instants = []
    for _ in range(300):
        clock.advance(rng.choice([0.0, 0.0, 0.2, 1.5, 7.0]))
        bucket.acquire()
        instants.append(clock.monotonic())
    assert most_in_any_window(instants, 60.0) <= 60


def test_pacer_without_limits_never_waits() -> None:
    clock = ManualClock()
    pacer = Pacer(PacingPolicy(), clock, clock.sleep)
    assert sum(pacer.wait_turn(write=True) for _ in range(1000)) == 0
    assert clock.sleeps == []


# ----- secrets -----------------------------------------------------------------------------------


def test_no_secret_reaches_any_error_or_log(
    nexudus: NexudusWorld,
    make_nexudus_client: MakeClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_nexudus_client(retry=RetryPolicy(max_attempts=2))
    errors: list[ProviderError] = []

    def capture(action: Callable[[], object]) -> None:
        try:
            action()
        except ProviderError as exc:
            errors.append(exc)

    hour_bookings(nexudus, 1)
    client.get_resource(nexudus.room_id)
    capture(lambda: client.get_booking(999))
    capture(lambda: client.create_booking({"ResourceId": nexudus.room_id}))
    nexudus.emulator.fail_next(FaultKind.SERVER_ERROR, FaultKind.SERVER_ERROR)
    capture(lambda: client.get_resource(nexudus.room_id))
    nexudus.emulator.fail_next(FaultKind.THROTTLE, FaultKind.THROTTLE)
    capture(lambda: client.get_resource(nexudus.room_id))
    nexudus.emulator.expire_tokens()
    nexudus.emulator.add_user(NEXUDUS_USER, "rotated-password-now")
    nexudus.emulator.advance_clock(timedelta(days=16))  # refresh token dead too
    capture(lambda: client.get_resource(nexudus.room_id))
    capture(lambda: make_nexudus_client(auth="basic").get_booking(1))
    assert len(errors) == 6
    issued = list(nexudus.emulator.accounts.access) + list(nexudus.emulator.accounts.refresh)
    secrets = [NEXUDUS_PASSWORD, "rotated-password-now", *issued]
    texts = [str(e) for e in errors] + [repr(e) for e in errors] + [repr(client)]
    texts += [str(arg) for e in errors for arg in e.args]
    texts += [record.getMessage() for record in caplog.records]
    for secret in secrets:
        assert all(secret not in text for text in texts), "a secret leaked"
    assert isinstance(errors[-2], ProviderAuthError) and isinstance(errors[-1], ProviderAuthError)


def test_client_with_transport_errors_never_quotes_headers(make_nexudus_client: MakeClient) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("boom", request=request)

    client = make_nexudus_client(
        auth="basic", transport=httpx.MockTransport(refuse), retry=RetryPolicy(max_attempts=2)
    )
    with pytest.raises(ProviderUnavailable) as caught:
        client.get_booking(1)
    assert NEXUDUS_PASSWORD not in str(caught.value)
    assert "Basic" not in str(caught.value)
