"""The Nexudus emulator answers like the documented admin API (providers.md §2)."""

from __future__ import annotations

import socket
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from dateutil import rrule
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.emulators.faults import FaultKind, FaultPlan
from bridge.emulators.nexudus import NexudusEmulator, RepeatCycle, repeat_dates
from bridge.emulators.server import serve_in_thread
from tests.plugins.nexudus import NEXUDUS_PASSWORD, NEXUDUS_USER, NexudusWorld

LONDON = ZoneInfo("Europe/London")


def http(world: NexudusWorld, timeout: float = 5.0) -> httpx.Client:
    """A plain HTTP client logged in with Basic auth."""
    return httpx.Client(
        base_url=world.base_url, auth=(NEXUDUS_USER, NEXUDUS_PASSWORD), timeout=timeout
    )


def booking_body(room: int, start: str, end: str, **fields: Any) -> dict[str, Any]:
    """A create body."""
    return {"ResourceId": room, "FromTime": start, "ToTime": end, **fields}


def at(day: str, hour: int, minute: int = 0) -> datetime:
    """A UTC instant."""
    return datetime.fromisoformat(day).replace(hour=hour, minute=minute, tzinfo=UTC)


# ----- auth ----------------------------------------------------------------------------------


def token(world: NexudusWorld, **form: str) -> httpx.Response:
    """POST /api/token."""
    return httpx.post(f"{world.base_url}/api/token", data=form)


def test_password_grant_returns_a_token_pair_that_authorises(nexudus: NexudusWorld) -> None:
    reply = token(nexudus, grant_type="password", username=NEXUDUS_USER, password=NEXUDUS_PASSWORD)
    assert reply.status_code == 200
    body = reply.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 604799
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    listed = httpx.get(f"{nexudus.base_url}/api/spaces/bookings", headers=headers)
    assert listed.status_code == 200


def test_wrong_password_is_invalid_grant(nexudus: NexudusWorld) -> None:
    reply = token(nexudus, grant_type="password", username=NEXUDUS_USER, password="nope")
    assert reply.status_code == 400
    assert reply.json() == {
        "error": "invalid_grant",
        "error_description": "The user name or password is incorrect.",
    }


def test_refresh_grant_rotates_the_refresh_token(nexudus: NexudusWorld) -> None:
    first = token(
        nexudus, grant_type="password", username=NEXUDUS_USER, password=NEXUDUS_PASSWORD
    ).json()
    second = token(nexudus, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert second.status_code == 200
    again = token(nexudus, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


def test_tokens_expire_on_the_emulator_clock() -> None:
    emulator = NexudusEmulator(now=at("2025-01-01", 9), token_lifetime=timedelta(hours=1))
    emulator.add_user(NEXUDUS_USER, NEXUDUS_PASSWORD)
    with emulator.serve() as server:
        body = httpx.post(
            f"{server.base_url}/api/token",
            data={"grant_type": "password", "username": NEXUDUS_USER, "password": NEXUDUS_PASSWORD},
        ).json()
        headers = {"Authorization": f"Bearer {body['access_token']}"}
        url = f"{server.base_url}/api/spaces/bookings"
        emulator.advance_clock(timedelta(minutes=59))
        assert httpx.get(url, headers=headers).status_code == 200
        emulator.advance_clock(timedelta(minutes=2))
        expired = httpx.get(url, headers=headers)
        assert expired.status_code == 401
        assert expired.json() == {"Message": "Authorization has been denied for this request."}


def test_missing_or_wrong_credentials_are_401(nexudus: NexudusWorld) -> None:
    url = f"{nexudus.base_url}/api/spaces/bookings"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, auth=(NEXUDUS_USER, "wrong")).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer forged"}).status_code == 401
    assert httpx.get(url, auth=(NEXUDUS_USER.upper(), NEXUDUS_PASSWORD)).status_code == 200


def test_expire_tokens_control_invalidates_bearer_tokens(nexudus: NexudusWorld) -> None:
    body = token(
        nexudus, grant_type="password", username=NEXUDUS_USER, password=NEXUDUS_PASSWORD
    ).json()
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    nexudus.emulator.expire_tokens()
    assert httpx.get(f"{nexudus.base_url}/api/spaces/bookings", headers=headers).status_code == 401


# ----- envelope, paging, filters -------------------------------------------------------------


def seed_hours(world: NexudusWorld, count: int, room: int | None = None) -> list[int]:
    """``count`` one-hour bookings on consecutive days from 2025-03-11 09:00 UTC."""
    ids = []
    for index in range(count):
        start = at("2025-03-11", 9) + timedelta(days=index)
        ids.append(
            world.emulator.seed_booking(room or world.room_id, start, start + timedelta(hours=1))
        )
    return ids


def test_list_envelope_and_paging_arithmetic(nexudus: NexudusWorld) -> None:
    ids = seed_hours(nexudus, 7)
    with http(nexudus) as client:
        page = client.get("/api/spaces/bookings", params={"page": 3, "size": 3}).json()
    assert list(page) == [
        "Records",
        "CurrentPage",
        "CurrentPageSize",
        "CurrentOrderField",
        "CurrentSortDirection",
        "FirstItem",
        "LastItem",
        "TotalItems",
        "TotalPages",
        "HasNextPage",
        "HasPreviousPage",
    ]
    assert [r["Id"] for r in page["Records"]] == ids[6:]
    assert page["CurrentPage"] == 3 and page["CurrentPageSize"] == 3
    assert (page["FirstItem"], page["LastItem"], page["TotalItems"]) == (7, 7, 7)
    assert page["TotalPages"] == 3
    assert page["HasNextPage"] is False and page["HasPreviousPage"] is True


def test_size_is_capped_at_1000(nexudus: NexudusWorld) -> None:
    with http(nexudus) as client:
        page = client.get("/api/spaces/bookings", params={"size": 5000}).json()
    assert page["CurrentPageSize"] == 1000


def test_list_rows_are_partial_and_get_one_is_full(nexudus: NexudusWorld) -> None:
    booking = nexudus.emulator.seed_booking(
        nexudus.room_id, at("2025-03-11", 9), at("2025-03-11", 10), InternalNotes="door code 4711"
    )
    with http(nexudus) as client:
        row = client.get("/api/spaces/bookings").json()["Records"][0]
        full = client.get(f"/api/spaces/bookings/{booking}").json()
    assert "InternalNotes" not in row and "Repeats" not in row
    assert "RepeatSeriesUniqueId" in row
    assert full["InternalNotes"] == "door code 4711"
    assert full["FromTime"] == "2025-03-11T09:00:00Z"
    assert full["FromTimeLocal"] == "2025-03-11T09:00:00"
    assert full["ResourceName"] == "Callisto Meeting Room"
    assert full["Repeats"] == 0 and full["RepeatBooking"] is False


def test_equality_and_range_filters_are_applied(nexudus: NexudusWorld) -> None:
    mine = seed_hours(nexudus, 4)
    seed_hours(nexudus, 2, room=nexudus.other_room_id)
    with http(nexudus) as client:
        by_room = client.get("/api/spaces/bookings", params={"Booking_Resource": nexudus.room_id})
        ranged = client.get(
            "/api/spaces/bookings",
            params={
                "Booking_Resource": nexudus.room_id,
                "from_Booking_FromTime": "2025-03-12T09:00",
                "to_Booking_FromTime": "2025-03-13T09:00",
            },
        )
    assert [r["Id"] for r in by_room.json()["Records"]] == mine
    assert [r["Id"] for r in ranged.json()["Records"]] == mine[1:3]


def test_updated_on_filter_and_order(nexudus: NexudusWorld) -> None:
    ids = seed_hours(nexudus, 3)
    nexudus.emulator.advance_clock(timedelta(minutes=10))
    nexudus.emulator.edit_booking(ids[0], Notes="moved")
    with http(nexudus) as client:
        since = client.get(
            "/api/spaces/bookings",
            params={"from_Booking_UpdatedOn": "2025-03-10T08:05", "orderby": "UpdatedOn"},
        ).json()
        newest_first = client.get(
            "/api/spaces/bookings", params={"orderby": "UpdatedOn", "dir": "-1"}
        ).json()
    assert [r["Id"] for r in since["Records"]] == [ids[0]]
    assert newest_first["Records"][0]["Id"] == ids[0]
    assert newest_first["CurrentSortDirection"] == -1


@pytest.mark.parametrize("direction", ["1", "0", "Ascending", "-1", "Descending"])
def test_all_documented_dir_forms_are_accepted(nexudus: NexudusWorld, direction: str) -> None:
    ids = seed_hours(nexudus, 3)
    with http(nexudus) as client:
        reply = client.get("/api/spaces/bookings", params={"orderby": "FromTime", "dir": direction})
    listed = [r["Id"] for r in reply.json()["Records"]]
    assert listed == (ids[::-1] if direction in ("-1", "Descending") else ids)


@pytest.mark.parametrize(
    "params",
    [
        {"Booking_Resource": "callisto"},
        {"from_Booking_UpdatedOn": "yesterday"},
        {"Booking_Colour": "blue"},
        {"to_Booking_Nothing": "2025-01-01T00:00"},
        {"Booking_Tentative": "maybe"},
        {"page": "0"},
        {"orderby": "Colour"},
    ],
)
def test_malformed_filters_are_400(nexudus: NexudusWorld, params: dict[str, str]) -> None:
    with http(nexudus) as client:
        reply = client.get("/api/spaces/bookings", params=params)
    assert reply.status_code == 400
    assert reply.json()["WasSuccessful"] is False


def test_parameters_that_are_not_filters_are_ignored(nexudus: NexudusWorld) -> None:
    with http(nexudus) as client:
        assert client.get("/api/spaces/bookings", params={"_": "1700000000"}).status_code == 200


# ----- create ----------------------------------------------------------------------------------


def test_create_success_body_matches_the_documented_shape(nexudus: NexudusWorld) -> None:
    with http(nexudus) as client:
        reply = client.post(
            "/api/spaces/bookings",
            json=booking_body(nexudus.room_id, "2025-03-11T09:00:00Z", "2025-03-11T10:00:00Z"),
        )
    body = reply.json()
    assert reply.status_code == 200
    assert set(body) == {
        "Status",
        "Message",
        "Value",
        "OpenInDialog",
        "OpenInWindow",
        "RedirectURL",
        "JavaScript",
        "UpdatedOn",
        "UpdatedBy",
        "Errors",
        "WasSuccessful",
    }
    assert body["Message"] == "Booking was successfully created."
    assert body["WasSuccessful"] is True and body["Errors"] is None
    assert body["UpdatedOn"] == "2025-03-10T08:00:00Z"
    stored = nexudus.emulator.booking(body["Value"]["Id"])
    assert stored["CreatedOn"] == stored["UpdatedOn"] == "2025-03-10T08:00:00Z"


def test_missing_required_field_gives_the_seed_validation_body(nexudus: NexudusWorld) -> None:
    with http(nexudus) as client:
        reply = client.post(
            "/api/spaces/bookings",
            json={"ResourceId": nexudus.room_id, "ToTime": "2025-01-15T10:30:00Z"},
        )
    assert reply.status_code == 400
    assert reply.json() == {
        "Message": "FromTime: is a required field",
        "Value": None,
        "Errors": [
            {"AttemptedValue": None, "Message": "is a required field", "PropertyName": "FromTime"}
        ],
        "WasSuccessful": False,
    }


@pytest.mark.parametrize("end", ["2025-03-11T09:00:00Z", "2025-03-11T08:00:00Z"])
def test_end_not_after_start_is_400(nexudus: NexudusWorld, end: str) -> None:
    with http(nexudus) as client:
        reply = client.post(
            "/api/spaces/bookings", json=booking_body(nexudus.room_id, "2025-03-11T09:00:00Z", end)
        )
    assert reply.status_code == 400
    assert reply.json()["Errors"][0]["PropertyName"] == "ToTime"
    assert nexudus.emulator.bookings() == []


def test_overlap_is_refused_but_back_to_back_is_fine(nexudus: NexudusWorld) -> None:
    nexudus.emulator.seed_booking(nexudus.room_id, at("2025-03-11", 9), at("2025-03-11", 10))
    with http(nexudus) as client:
        clash = client.post(
            "/api/spaces/bookings",
            json=booking_body(nexudus.room_id, "2025-03-11T09:59:00Z", "2025-03-11T11:00:00Z"),
        )
        adjacent = client.post(
            "/api/spaces/bookings",
            json=booking_body(nexudus.room_id, "2025-03-11T10:00:00Z", "2025-03-11T11:00:00Z"),
        )
        other_room = client.post(
            "/api/spaces/bookings",
            json=booking_body(
                nexudus.other_room_id, "2025-03-11T09:30:00Z", "2025-03-11T10:00:00Z"
            ),
        )
    assert clash.status_code == 400
    assert "not available" in clash.json()["Message"]
    assert clash.json()["WasSuccessful"] is False
    assert adjacent.status_code == 200 and other_room.status_code == 200


def test_wrongly_typed_values_are_400(nexudus: NexudusWorld) -> None:
    with http(nexudus) as client:
        reply = client.post(
            "/api/spaces/bookings",
            json=booking_body(
                nexudus.room_id, "2025-03-11T09:00:00Z", "2025-03-11T10:00:00Z", Tentative="yes"
            ),
        )
    assert reply.status_code == 400
    assert reply.json()["Errors"][0]["PropertyName"] == "Tentative"


def test_weekly_series_keeps_local_time_across_dst(nexudus: NexudusWorld) -> None:
    with http(nexudus) as client:
        reply = client.post(
            "/api/spaces/bookings",
            json=booking_body(
                nexudus.room_id,
                "2025-03-24T09:00:00Z",
                "2025-03-24T10:30:00Z",
                RepeatBooking=True,
                Repeats=2,
                RepeatEvery=1,
                RepeatUntil="2025-04-07",
                RepeatOnMondays=True,
            ),
        )
    assert reply.status_code == 200
    members = nexudus.emulator.bookings()
    assert reply.json()["Value"]["Id"] == members[0]["Id"]
    assert [(m["FromTime"], m["ToTime"]) for m in members] == [
        ("2025-03-24T09:00:00Z", "2025-03-24T10:30:00Z"),
        ("2025-03-31T08:00:00Z", "2025-03-31T09:30:00Z"),
        ("2025-04-07T08:00:00Z", "2025-04-07T09:30:00Z"),
    ]
    assert {m["FromTimeLocal"][11:] for m in members} == {"09:00:00"}
    assert len({m["RepeatSeriesUniqueId"] for m in members}) == 1
    assert all(m["RepeatUntil"] == "2025-04-07T00:00:00" for m in members)


def test_series_that_would_overlap_is_refused_whole(nexudus: NexudusWorld) -> None:
    nexudus.emulator.seed_booking(nexudus.room_id, at("2025-03-13", 9), at("2025-03-13", 10))
    with http(nexudus) as client:
        reply = client.post(
            "/api/spaces/bookings",
            json=booking_body(
                nexudus.room_id,
                "2025-03-11T09:00:00Z",
                "2025-03-11T10:00:00Z",
                RepeatBooking=True,
                Repeats=1,
                RepeatUntil="2025-03-15",
            ),
        )
    assert reply.status_code == 400
    assert len(nexudus.emulator.bookings()) == 1


def test_repeat_without_until_is_a_validation_error(nexudus: NexudusWorld) -> None:
    with http(nexudus) as client:
        reply = client.post(
            "/api/spaces/bookings",
            json=booking_body(
                nexudus.room_id, "2025-03-11T09:00:00Z", "2025-03-11T10:00:00Z", RepeatBooking=True
            ),
        )
    assert reply.status_code == 400
    assert reply.json()["Errors"][0]["PropertyName"] == "RepeatUntil"


# ----- repeat rules against dateutil (an independent implementation) ---------------------------

NTH = {
    RepeatCycle.FIRST_OF_MONTH: 1,
    RepeatCycle.SECOND_OF_MONTH: 2,
    RepeatCycle.THIRD_OF_MONTH: 3,
    RepeatCycle.FOURTH_OF_MONTH: 4,
    RepeatCycle.LAST_OF_MONTH: -1,
}
WEEKDAYS = (rrule.MO, rrule.TU, rrule.WE, rrule.TH, rrule.FR, rrule.SA, rrule.SU)


def dateutil_dates(
    first: date, cycle: RepeatCycle, every: int, until: date, weekdays: frozenset[int]
) -> list[date]:
    """The same series from dateutil's RFC 5545 engine, plus the requested first date."""
    start = datetime.combine(first, datetime.min.time())
    end = datetime.combine(until, datetime.min.time())
    if cycle is RepeatCycle.DAILY:
        rule = rrule.rrule(rrule.DAILY, dtstart=start, interval=every, until=end)
    elif cycle is RepeatCycle.WEEKLY:
        days = [WEEKDAYS[d] for d in sorted(weekdays or {first.weekday()})]
        rule = rrule.rrule(
            rrule.WEEKLY, dtstart=start, interval=every, byweekday=days, until=end, wkst=rrule.MO
        )
    else:
        weekday = WEEKDAYS[first.weekday()](NTH[cycle])
        rule = rrule.rrule(
            rrule.MONTHLY,
            dtstart=start.replace(day=1),
            interval=every,
            byweekday=weekday,
            until=end,
        )
    return sorted({first} | {moment.date() for moment in rule if moment.date() > first})


@settings(max_examples=150, deadline=None)
@given(
    first=st.dates(min_value=date(2024, 1, 1), max_value=date(2027, 12, 31)),
    cycle=st.sampled_from(
        [c for c in RepeatCycle if c not in (RepeatCycle.MONTHLY, RepeatCycle.YEARLY)]
    ),
    every=st.integers(min_value=1, max_value=4),
    span_days=st.integers(min_value=0, max_value=400),
    weekdays=st.frozensets(st.integers(min_value=0, max_value=6), max_size=7),
)
def test_repeat_dates_agree_with_dateutil(
    first: date, cycle: RepeatCycle, every: int, span_days: int, weekdays: frozenset[int]
) -> None:
    until = first + timedelta(days=span_days)
    mine = repeat_dates(first, cycle, every, until, weekdays)
    assert mine == dateutil_dates(first, cycle, every, until, weekdays)


def test_monthly_and_yearly_clamp_to_the_last_day_of_the_month() -> None:
    monthly = repeat_dates(date(2025, 1, 31), RepeatCycle.MONTHLY, 1, date(2025, 5, 31))
    assert monthly == [
        date(2025, 1, 31),
        date(2025, 2, 28),
        date(2025, 3, 31),
        date(2025, 4, 30),
        date(2025, 5, 31),
    ]
    yearly = repeat_dates(date(2024, 2, 29), RepeatCycle.YEARLY, 1, date(2028, 3, 1))
    assert yearly == [
        date(2024, 2, 29),
        date(2025, 2, 28),
        date(2026, 2, 28),
        date(2027, 2, 28),
        date(2028, 2, 29),
    ]


def test_series_length_is_bounded() -> None:
    with pytest.raises(ValueError, match="at most"):
        repeat_dates(date(2025, 1, 1), RepeatCycle.DAILY, 1, date(2030, 1, 1))


# ----- update -------------------------------------------------------------------------------------


def create_weekly(
    client: httpx.Client, world: NexudusWorld, weeks: int = 4
) -> list[dict[str, Any]]:
    """A weekly Monday 09:00-10:00 London series starting 2025-03-17; returns its members."""
    until = (date(2025, 3, 17) + timedelta(weeks=weeks - 1)).isoformat()
    reply = client.post(
        "/api/spaces/bookings",
        json=booking_body(
            world.room_id,
            "2025-03-17T09:00:00Z",
            "2025-03-17T10:00:00Z",
            RepeatBooking=True,
            Repeats=2,
            RepeatUntil=until,
            Notes="stand-up",
        ),
    )
    assert reply.status_code == 200, reply.text
    return world.emulator.bookings()


def test_put_requires_the_documented_fields(nexudus: NexudusWorld) -> None:
    with http(nexudus) as client:
        reply = client.put("/api/spaces/bookings", json={"Id": 1})
    body = reply.json()
    assert reply.status_code == 400
    assert [e["PropertyName"] for e in body["Errors"]] == [
        "ResourceId",
        "FromTime",
        "ToTime",
        "Repeats",
        "WhichBookingsToUpdate",
    ]


def test_put_of_unknown_id_is_404(nexudus: NexudusWorld) -> None:
    with http(nexudus) as client:
        reply = client.put(
            "/api/spaces/bookings",
            json=booking_body(
                nexudus.room_id,
                "2025-03-11T09:00:00Z",
                "2025-03-11T10:00:00Z",
                Id=999,
                Repeats=0,
                WhichBookingsToUpdate=1,
            ),
        )
    assert reply.status_code == 404


def test_put_replaces_the_whole_record(nexudus: NexudusWorld) -> None:
    booking = nexudus.emulator.seed_booking(
        nexudus.room_id, at("2025-03-11", 9), at("2025-03-11", 10), Notes="n", InternalNotes="i"
    )
    with http(nexudus) as client:
        row = client.get("/api/spaces/bookings").json()["Records"][0]
        row.update(WhichBookingsToUpdate=1, Repeats=0)
        nexudus.emulator.advance_clock(timedelta(minutes=5))
        reply = client.put("/api/spaces/bookings", json=row)
    assert reply.status_code == 200
    assert reply.json()["Message"] == "Booking was successfully updated."
    stored = nexudus.emulator.booking(booking)
    assert stored["Notes"] == "n"
    assert stored["InternalNotes"] is None  # the list row lacked it, so the PUT cleared it
    assert stored["UpdatedOn"] == "2025-03-10T08:05:00Z"


@pytest.mark.parametrize(
    ("which", "moved"),
    [(1, [False, True, False, False]), (2, [False, True, True, True]), (3, [True] * 4)],
)
def test_put_fans_out_over_the_series(nexudus: NexudusWorld, which: int, moved: list[bool]) -> None:
    with http(nexudus) as client:
        members = create_weekly(client, nexudus)
        target = client.get(f"/api/spaces/bookings/{members[1]['Id']}").json()
        target.update(
            FromTime="2025-03-24T10:00:00Z",
            ToTime="2025-03-24T11:30:00Z",
            Notes="retro",
            WhichBookingsToUpdate=which,
        )
        assert client.put("/api/spaces/bookings", json=target).status_code == 200
    after = {m["Id"]: m for m in nexudus.emulator.bookings()}
    for member, was_moved in zip(members, moved, strict=True):
        local = after[member["Id"]]
        if was_moved:
            # One hour later and half an hour longer, in London wall time across the DST change.
            assert local["FromTimeLocal"][11:] == "10:00:00"
            assert local["ToTimeLocal"][11:] == "11:30:00"
            assert local["Notes"] == "retro"
        else:
            assert local["FromTimeLocal"][11:] == "09:00:00"
            assert local["Notes"] == "stand-up"
        assert local["RepeatSeriesUniqueId"] == member["RepeatSeriesUniqueId"]


def test_put_that_would_overlap_changes_nothing(nexudus: NexudusWorld) -> None:
    with http(nexudus) as client:
        members = create_weekly(client, nexudus, weeks=2)
        nexudus.emulator.seed_booking(nexudus.room_id, at("2025-03-24", 10), at("2025-03-24", 11))
        target = client.get(f"/api/spaces/bookings/{members[0]['Id']}").json()
        target.update(FromTime="2025-03-17T10:00:00Z", ToTime="2025-03-17T11:00:00Z")
        target.update(WhichBookingsToUpdate=3)
        reply = client.put("/api/spaces/bookings", json=target)
    assert reply.status_code == 400 and "not available" in reply.json()["Message"]
    assert nexudus.emulator.booking(members[0]["Id"])["FromTime"] == "2025-03-17T09:00:00Z"


# ----- delete and cancelled bookings -------------------------------------------------------------


def test_delete_leaves_a_cancelled_snapshot(nexudus: NexudusWorld) -> None:
    booking = nexudus.emulator.seed_booking(
        nexudus.room_id, at("2025-03-11", 9), at("2025-03-11", 10)
    )
    nexudus.emulator.advance_clock(timedelta(hours=1))
    with http(nexudus) as client:
        reply = client.delete(f"/api/spaces/bookings/{booking}")
        again = client.delete(f"/api/spaces/bookings/{booking}")
        gone = client.get(f"/api/spaces/bookings/{booking}")
        cancelled = client.get(
            "/api/spaces/cancelledbookings",
            params={"CancelledBooking_Resource": nexudus.room_id},
        ).json()
    assert reply.json()["Message"] == "The record was deleted successfully."
    assert again.status_code == 404 and gone.status_code == 404
    [row] = cancelled["Records"]
    assert row["OriginalBookingId"] == booking
    assert row["CancelledOn"] == "2025-03-10T09:00:00Z"
    assert row["FromTime"] == "2025-03-11T09:00:00Z"
    assert row["CancelledBy"] == NEXUDUS_USER


def test_cancelled_on_range_filter(nexudus: NexudusWorld) -> None:
    first, second = seed_hours(nexudus, 2)
    nexudus.emulator.cancel_booking(first)
    nexudus.emulator.advance_clock(timedelta(hours=2))
    nexudus.emulator.cancel_booking(second)
    with http(nexudus) as client:
        rows = client.get(
            "/api/spaces/cancelledbookings",
            params={"from_CancelledBooking_CancelledOn": "2025-03-10T09:00"},
        ).json()["Records"]
    assert [row["OriginalBookingId"] for row in rows] == [second]


# ----- resources, businesses, time zones --------------------------------------------------------


def test_time_zone_chain_is_served(nexudus: NexudusWorld) -> None:
    sydney = nexudus.emulator.add_business("Sydney", time_zone="AUS Eastern Standard Time")
    room = nexudus.emulator.add_resource("Harbour", business_id=sydney)
    with http(nexudus) as client:
        resource = client.get(f"/api/spaces/resources/{room}").json()
        business = client.get(f"/api/sys/businesses/{resource['BusinessId']}").json()
        zones = client.get("/api/sys/simpletimezones", params={"size": 100}).json()["Records"]
        listed = client.get("/api/spaces/resources", params={"Resource_Business": sydney}).json()
    assert "TimeZone" not in resource and "SimpleTimeZoneId" not in resource
    [zone] = [z for z in zones if z["Id"] == business["SimpleTimeZoneId"]]
    assert zone["Name"] == "AUS Eastern Standard Time"
    assert set(zone) == {"Id", "Name", "Description", "TimeOffset", "UsesSummerTime"}
    assert [r["Id"] for r in listed["Records"]] == [room]


# ----- coworkers (customers) ---------------------------------------------------------------------


def test_coworkers_are_listed_with_the_envelope_and_the_email_filter(
    nexudus: NexudusWorld,
) -> None:
    ada = nexudus.emulator.add_coworker("Ada Lovelace", "ada@example.com")
    for index in range(4):
        nexudus.emulator.add_coworker(f"Member {index}", f"member{index}@example.com")
    with http(nexudus) as client:
        matched = client.get("/api/spaces/coworkers", params={"Coworker_Email": "ADA@example.com"})
        partial = client.get("/api/spaces/coworkers", params={"Coworker_Email": "example.com"})
        page = client.get("/api/spaces/coworkers", params={"page": 2, "size": 2}).json()
        one = client.get(f"/api/spaces/coworkers/{ada}")
        missing = client.get("/api/spaces/coworkers/1")
        wrong = client.get("/api/spaces/coworkers", params={"Coworker_Mail": "x"})
    assert [(r["Id"], r["FullName"]) for r in matched.json()["Records"]] == [(ada, "Ada Lovelace")]
    assert matched.json()["TotalItems"] == 1
    # A substring is not a match: the filter compares whole addresses.
    assert partial.json()["Records"] == []
    assert (page["TotalItems"], page["TotalPages"], len(page["Records"])) == (5, 3, 2)
    assert page["HasNextPage"] is True and page["HasPreviousPage"] is True
    assert one.status_code == 200 and one.json()["Email"] == "ada@example.com"
    assert missing.status_code == 404
    assert wrong.status_code == 400


def test_coworkers_need_authentication(nexudus: NexudusWorld) -> None:
    assert httpx.get(f"{nexudus.base_url}/api/spaces/coworkers").status_code == 401


def test_booking_coworker_must_exist_and_lends_its_name(nexudus: NexudusWorld) -> None:
    ada = nexudus.emulator.add_coworker("Ada Lovelace", "ada@example.com")
    with http(nexudus) as client:
        unknown = client.post("/api/spaces/bookings", json=booking_body(
            nexudus.room_id, "2025-03-11T09:00:00Z", "2025-03-11T10:00:00Z", CoworkerId=4242,
        ))
        made = client.post("/api/spaces/bookings", json=booking_body(
            nexudus.room_id, "2025-03-11T09:00:00Z", "2025-03-11T10:00:00Z", CoworkerId=ada,
        ))
        record = client.get(f"/api/spaces/bookings/{made.json()['Value']['Id']}").json()
        reassigned = client.put("/api/spaces/bookings", json={
            **record, "CoworkerId": 4242, "WhichBookingsToUpdate": 1,
        })
    assert unknown.status_code == 400
    assert unknown.json()["Errors"][0]["PropertyName"] == "CoworkerId"
    assert record["CoworkerId"] == ada and record["CoworkerFullName"] == "Ada Lovelace"
    assert reassigned.status_code == 400
    assert nexudus.emulator.booking(record["Id"])["CoworkerId"] == ada


def test_unsupported_zone_cannot_be_seeded() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        NexudusEmulator().add_business("Mars", time_zone="Olympus Mons Standard Time")


def test_sydney_series_follows_southern_dst(nexudus: NexudusWorld) -> None:
    sydney = nexudus.emulator.add_business("Sydney", time_zone="AUS Eastern Standard Time")
    room = nexudus.emulator.add_resource("Harbour", business_id=sydney)
    with http(nexudus) as client:
        reply = client.post(
            "/api/spaces/bookings",
            json=booking_body(
                room,
                "2025-03-30T22:00:00Z",  # Monday 31 March, 09:00 AEDT
                "2025-03-30T23:00:00Z",
                RepeatBooking=True,
                Repeats=1,
                RepeatEvery=7,
                RepeatUntil="2025-04-07",
            ),
        )
    assert reply.status_code == 200
    starts = [m["FromTime"] for m in nexudus.emulator.bookings()]
    assert starts == ["2025-03-30T22:00:00Z", "2025-04-06T23:00:00Z"]  # 09:00 AEST after 6 April


# ----- test controls: faults, counters -----------------------------------------------------------


def test_queued_throttle_and_server_error(nexudus: NexudusWorld) -> None:
    nexudus.emulator.fail_next(FaultKind.THROTTLE, FaultKind.SERVER_ERROR, retry_after=9)
    with http(nexudus) as client:
        throttled = client.get("/api/spaces/bookings")
        failed = client.get("/api/spaces/bookings")
        fine = client.get("/api/spaces/bookings")
    assert throttled.status_code == 409
    assert throttled.headers["Retry-After"] == "9"
    assert throttled.text == "You must wait before accessing this url again."
    assert failed.status_code == 500 and failed.json() == {"Message": "An error has occurred."}
    assert fine.status_code == 200


def test_timeout_fault_hangs_until_the_client_gives_up(nexudus: NexudusWorld) -> None:
    nexudus.emulator.fail_next(FaultKind.TIMEOUT)
    with http(nexudus, timeout=0.3) as client, pytest.raises(httpx.ReadTimeout):
        client.get("/api/spaces/bookings")


def test_timeout_fault_drops_the_connection_after_hanging(nexudus: NexudusWorld) -> None:
    nexudus.emulator.set_faults(FaultPlan(rate=1.0, kinds=(FaultKind.TIMEOUT,), hang_seconds=0.2))
    with http(nexudus, timeout=5) as client, pytest.raises(httpx.RemoteProtocolError):
        client.get("/api/spaces/bookings")


def test_slow_fault_answers_late_but_correctly(nexudus: NexudusWorld) -> None:
    nexudus.emulator.set_faults(FaultPlan(rate=1.0, kinds=(FaultKind.SLOW,), slow_seconds=0.3))
    with http(nexudus, timeout=0.1) as client, pytest.raises(httpx.ReadTimeout):
        client.get("/api/spaces/bookings")
    with http(nexudus, timeout=5) as client:
        assert client.get("/api/spaces/bookings").status_code == 200


def fault_sequence(world: NexudusWorld, seed: int) -> list[int]:
    """Statuses of 40 requests under a seeded 30 % throttle/500 plan."""
    world.emulator.set_faults(
        FaultPlan(rate=0.3, kinds=(FaultKind.THROTTLE, FaultKind.SERVER_ERROR), seed=seed)
    )
    with http(world) as client:
        return [client.get("/api/spaces/bookings").status_code for _ in range(40)]


def test_random_faults_are_deterministic_for_a_seed(nexudus: NexudusWorld) -> None:
    first = fault_sequence(nexudus, seed=3)
    assert fault_sequence(nexudus, seed=3) == first
    assert fault_sequence(nexudus, seed=4) != first
    assert 4 <= sum(status != 200 for status in first) <= 20
    nexudus.emulator.clear_faults()
    with http(nexudus) as client:
        assert all(client.get("/api/spaces/bookings").status_code == 200 for _ in range(10))


def test_request_counters_are_per_route(nexudus: NexudusWorld) -> None:
    booking = seed_hours(nexudus, 1)[0]
    nexudus.emulator.fail_next(FaultKind.THROTTLE)
    with http(nexudus) as client:
        client.get("/api/spaces/bookings")
        client.get("/api/spaces/bookings")
        client.get(f"/api/spaces/bookings/{booking}")
        client.delete(f"/api/spaces/bookings/{booking}")
    counts = nexudus.emulator.request_counts()
    assert counts["GET /api/spaces/bookings"] == 2
    assert counts["GET /api/spaces/bookings/{booking_id}"] == 1
    assert counts["DELETE /api/spaces/bookings/{booking_id}"] == 1
    statuses = [r.status for r in nexudus.emulator.requests]
    assert statuses == [409, 200, 200, 200]


# ----- the background server ---------------------------------------------------------------------


def test_background_server_uses_a_free_port_and_shuts_down() -> None:
    emulator = NexudusEmulator()
    with serve_in_thread(emulator.app) as first, serve_in_thread(emulator.app) as second:
        assert first.port != second.port
        assert httpx.get(f"{first.base_url}/api/spaces/bookings").status_code == 401
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", first.port)) != 0
