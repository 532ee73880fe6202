"""The OfficeRnD emulator answers like the documented v2 API (providers.md §1), over raw HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from dateutil import rrule
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.emulators.faults import FaultKind
from bridge.emulators.officernd import OfficeRndEmulator
from bridge.providers.officernd import verify_webhook_signature
from tests.plugins.nexudus import ManualClock
from tests.plugins.officernd import (
    OFFICERND_CLIENT_ID,
    OFFICERND_NOW,
    OFFICERND_ORG,
    OFFICERND_SECRET,
    OfficeRndWorld,
)

LONDON = ZoneInfo("Europe/London")
ALL = (
    "flex.space.bookings.read flex.space.bookings.create flex.space.bookings.update "
    "flex.space.bookings.cancel flex.space.bookings.delete flex.space.bookings.validate "
    "flex.space.resources.read "
    "flex.space.locations.read"
)


def at(day: str, hour: int, minute: int = 0) -> datetime:
    """A UTC instant."""
    return datetime.fromisoformat(day).replace(hour=hour, minute=minute, tzinfo=UTC)


def token(world: OfficeRndWorld, **form: str) -> httpx.Response:
    """POST /oauth/token with the test application's credentials unless overridden."""
    body = {
        "grant_type": "client_credentials",
        "client_id": OFFICERND_CLIENT_ID,
        "client_secret": OFFICERND_SECRET,
        **form,
    }
    return httpx.post(world.token_url, data=body)


def api(world: OfficeRndWorld, scope: str = ALL) -> httpx.Client:
    """An HTTP client on the organisation's API root with a fresh bearer token."""
    reply = token(world, scope=scope)
    assert reply.status_code == 200, reply.text
    return httpx.Client(
        base_url=f"{world.base_url}/api/v2/organizations/{OFFICERND_ORG}",
        headers={"Authorization": f"Bearer {reply.json()['access_token']}"},
        timeout=5.0,
    )


def seed_days(world: OfficeRndWorld, count: int, **fields: Any) -> list[str]:
    """``count`` one-hour bookings, one a day from 2025-03-11 09:00 UTC."""
    return [
        world.emulator.seed_booking(
            world.room,
            at("2025-03-11", 9) + timedelta(days=day),
            at("2025-03-11", 10) + timedelta(days=day),
            **fields,
        )
        for day in range(count)
    ]


def occurrences(client: httpx.Client, **params: str) -> list[dict[str, Any]]:
    """Every occurrence of a query, following cursorNext."""
    items: list[dict[str, Any]] = []
    query = dict(params)
    while True:
        page = client.get("/bookings/occurrences", params=query)
        assert page.status_code == 200, page.text
        items += page.json()["results"]
        if not page.json()["cursorNext"]:
            return items
        query["$cursorNext"] = page.json()["cursorNext"]


def starts(items: list[dict[str, Any]]) -> list[datetime]:
    return [datetime.fromisoformat(i["start"]["dateTime"].replace("Z", "+00:00")) for i in items]


# ----- tokens ------------------------------------------------------------------------------------


def test_client_credentials_return_an_hour_long_bearer_token(officernd: OfficeRndWorld) -> None:
    reply = token(officernd, scope="flex.space.bookings.read")
    assert reply.status_code == 200
    body = reply.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert (body["token_type"], body["expires_in"]) == ("Bearer", 3599)
    assert body["scope"] == "flex.space.bookings.read"


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({"client_secret": "wrong"}, 401, "invalid_client"),
        ({"client_id": "nobody"}, 401, "invalid_client"),
        ({"grant_type": "password"}, 400, "unsupported_grant_type"),
        ({"scope": "flex.settings.webhooks.create"}, 400, "invalid_scope"),
    ],
)
def test_token_requests_are_checked(
    officernd: OfficeRndWorld, form: dict[str, str], status: int, error: str
) -> None:
    reply = token(officernd, **form)
    assert (reply.status_code, reply.json()["error"]) == (status, error)


def test_the_token_endpoint_allows_five_requests_a_minute(
    officernd: OfficeRndWorld, officernd_clock: ManualClock
) -> None:
    assert [token(officernd).status_code for _ in range(5)] == [200] * 5
    refused = token(officernd)
    assert refused.status_code == 429
    assert refused.text == "Too many requests, please try again later"
    assert refused.headers["Retry-After"] == "60"
    officernd_clock.advance(59)
    assert token(officernd).status_code == 429
    officernd_clock.advance(1)
    assert token(officernd).status_code == 200


def test_requests_need_a_live_token_with_the_route_scope(
    officernd: OfficeRndWorld, officernd_clock: ManualClock
) -> None:
    root = f"{officernd.base_url}/api/v2/organizations/{OFFICERND_ORG}"
    assert httpx.get(f"{root}/bookings").status_code == 401
    with api(officernd, scope="flex.space.bookings.read") as client:
        assert client.get("/bookings").status_code == 200
        denied = client.get(f"/resources/{officernd.room}")
        assert denied.status_code == 403
        assert denied.json()["message"] == "Missing required scope: flex.space.resources.read"
        officernd_clock.advance(3599)
        expired = client.get("/bookings")
        assert expired.status_code == 401
        assert expired.headers["WWW-Authenticate"] == "Bearer"


def test_tokens_can_be_made_to_expire_after_some_requests(officernd: OfficeRndWorld) -> None:
    with api(officernd) as client:
        officernd.emulator.expire_tokens_after(2)
        assert [client.get("/bookings").status_code for _ in range(3)] == [200, 200, 401]


def test_another_organisation_is_not_found(officernd: OfficeRndWorld) -> None:
    with api(officernd) as client:
        reply = client.get(f"{officernd.base_url}/api/v2/organizations/other/bookings")
        assert reply.status_code == 404


# ----- listing -----------------------------------------------------------------------------------


def test_bookings_page_with_cursors_in_both_directions(officernd: OfficeRndWorld) -> None:
    ids = seed_days(officernd, 7)
    with api(officernd) as client:
        first = client.get("/bookings", params={"$limit": "3"}).json()
        assert [b["_id"] for b in first["results"]] == ids[:3]
        assert (first["rangeStart"], first["rangeEnd"], first["cursorPrev"]) == (1, 3, None)
        second = client.get(
            "/bookings", params={"$limit": "3", "$cursorNext": first["cursorNext"]}
        ).json()
        assert [b["_id"] for b in second["results"]] == ids[3:6]
        assert (second["rangeStart"], second["rangeEnd"]) == (4, 6)
        back = client.get(
            "/bookings", params={"$limit": "3", "$cursorPrev": second["cursorPrev"]}
        ).json()
        assert [b["_id"] for b in back["results"]] == ids[:3]
        last = client.get(
            "/bookings", params={"$limit": "3", "$cursorNext": second["cursorNext"]}
        ).json()
        assert ([b["_id"] for b in last["results"]], last["cursorNext"]) == (ids[6:], None)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"$limit": "51"}, "$limit must be a number between 1 and 50"),
        ({"$limit": "0"}, "$limit must be a number between 1 and 50"),
        ({"$cursorNext": "bm90LWEtY3Vyc29y"}, "Invalid cursor"),
        ({"start[$gte]": "2025-03-01T00:00:00Z"}, "Filtering by 'start' is not supported"),
        ({"end": "2025-03-01T00:00:00Z"}, "Filtering by 'end' is not supported"),
        ({"colour": "red"}, "property colour should not exist"),
        ({"modifiedAt[$near]": "2025-03-01T00:00:00Z"}, "property modifiedAt[$near]"),
        ({"modifiedAt[$gte]": "yesterday"}, "modifiedAt[$gte] has an invalid value"),
        ({"$sort": "start"}, "property $sort should not exist"),
    ],
)
def test_bad_list_queries_are_refused(
    officernd: OfficeRndWorld, params: dict[str, str], message: str
) -> None:
    with api(officernd) as client:
        reply = client.get("/bookings", params=params)
    assert reply.status_code == 400
    body = reply.json()
    assert (body["statusCode"], body["error"]) == (400, "Bad Request")
    assert body["message"].startswith(message)


def test_filters_are_applied(officernd: OfficeRndWorld, officernd_clock: ManualClock) -> None:
    ids = seed_days(officernd, 4)
    other = officernd.emulator.seed_booking(
        officernd.other_room, at("2025-03-11", 9), at("2025-03-11", 10)
    )
    officernd_clock.advance(600)
    officernd.emulator.edit_booking(ids[2], title="changed")
    officernd.emulator.cancel_booking(ids[3])
    with api(officernd) as client:

        def listed(**params: str) -> list[str]:
            return [b["_id"] for b in client.get("/bookings", params=params).json()["results"]]

        assert listed(resource=officernd.room) == ids
        assert listed(**{"modifiedAt[$gte]": "2025-03-10T08:05:00.000Z"}) == ids[2:]
        assert listed(**{"_id[$in]": f"{ids[0]},{other}"}) == [ids[0], other]
        assert listed(isCancelled="true") == [ids[3]]
        assert listed(**{"seriesStart[$lt]": "2025-03-12T09:00:00Z"}) == [ids[0], other]
        assert listed(**{"seriesEnd[$gte]": "2025-03-13T10:00:00Z"}) == ids[2:]


def test_a_series_is_one_row_and_its_instances_are_occurrences(
    officernd: OfficeRndWorld,
) -> None:
    series = officernd.emulator.seed_booking(
        officernd.room,
        at("2025-03-24", 9),
        at("2025-03-24", 10),
        rrule="FREQ=WEEKLY;UNTIL=20250421T235959Z",
        before=15,
        after=10,
    )
    with api(officernd) as client:
        (row,) = client.get("/bookings").json()["results"]
        assert row["_id"] == series
        assert row["recurrence"] == {"rrule": "FREQ=WEEKLY;UNTIL=20250421T235959Z"}
        assert row["serviceSlots"] == {"before": 15, "after": 10}
        assert row["timezone"] == "Europe/London"
        assert (row["seriesStart"], row["seriesEnd"]) == (
            "2025-03-24T09:00:00.000Z",
            "2025-04-21T09:00:00.000Z",
        )
        items = occurrences(client, start="2025-03-01T00:00:00Z", end="2025-06-01T00:00:00Z")
    # 09:00 GMT is 09:00 London until 30 March, then the wall clock holds: 08:00 UTC.
    assert [s.astimezone(LONDON).hour for s in starts(items)] == [9] * 5
    assert starts(items)[:2] == [at("2025-03-24", 9), at("2025-03-31", 8)]
    assert all(i["bookingId"] == series and i["canceled"] is False for i in items)


@settings(max_examples=60, deadline=None)
@given(
    frequency=st.sampled_from(["DAILY", "WEEKLY", "MONTHLY"]),
    interval=st.integers(1, 3),
    count=st.integers(1, 15),
    day=st.integers(0, 300),
    hour=st.integers(6, 20),
)
def test_occurrences_follow_the_rule_on_the_resource_wall_clock(
    frequency: str, interval: int, count: int, day: int, hour: int
) -> None:
    emulator = OfficeRndEmulator(now=OFFICERND_NOW)
    location = emulator.add_location("HQ", timezone="America/New_York")
    room = emulator.add_resource("Room", location=location)
    local = datetime(2025, 1, 1, hour, 30, tzinfo=ZoneInfo("America/New_York")) + timedelta(
        days=day
    )
    rule = f"FREQ={frequency};INTERVAL={interval};COUNT={count}"
    booking = emulator.seed_booking(room, local, local + timedelta(minutes=45), rrule=rule)
    expected = list(rrule.rrulestr(rule, dtstart=local))
    found = emulator.live_occurrences(room, at("2024-12-01", 0), at("2031-01-01", 0))
    assert [o.start for o in found] == [e.astimezone(UTC) for e in expected]
    assert {o.start.astimezone(local.tzinfo).time() for o in found} == {local.time()}
    assert all(o.end - o.start == timedelta(minutes=45) for o in found)
    assert all(o.booking == booking for o in found)


def test_occurrence_edits_show_only_in_occurrences(officernd: OfficeRndWorld) -> None:
    first = at("2025-03-11", 14)
    series = officernd.emulator.seed_booking(
        officernd.room, first, first + timedelta(hours=1), rrule="FREQ=DAILY;COUNT=4"
    )
    single = officernd.emulator.seed_booking(
        officernd.room, at("2025-03-20", 9), at("2025-03-20", 10)
    )
    officernd.emulator.cancel_occurrence(series, first + timedelta(days=1))
    moved_to = first + timedelta(days=2, hours=3)
    officernd.emulator.move_occurrence(
        series, first + timedelta(days=2), moved_to, moved_to + timedelta(hours=2)
    )
    with api(officernd) as client:
        period = {"start": "2025-03-01T00:00:00Z", "end": "2025-04-01T00:00:00Z"}
        items = occurrences(client, **period)
        assert [(i["bookingId"], i["canceled"]) for i in items] == [
            (series, False),
            (series, True),
            (series, False),
            (series, False),
            (single, False),
        ]
        assert starts(items)[2] == moved_to
        live = occurrences(client, **period, canceled="false", booking=series)
        assert len(live) == 3
        # The series row itself does not change: instances are only visible as occurrences.
        (row,) = client.get("/bookings", params={"_id[$in]": series}).json()["results"]
        assert (row["start"], row["end"]) == (
            "2025-03-11T14:00:00.000Z",
            "2025-03-11T15:00:00.000Z",
        )


def test_occurrences_overlapping_the_period_are_listed(officernd: OfficeRndWorld) -> None:
    straddling = officernd.emulator.seed_booking(
        officernd.room, at("2025-03-11", 23), at("2025-03-12", 1)
    )
    officernd.emulator.seed_booking(officernd.room, at("2025-03-12", 1), at("2025-03-12", 2))
    with api(officernd) as client:
        items = occurrences(client, start="2025-03-12T00:00:00Z", end="2025-03-12T01:00:00Z")
    assert [i["bookingId"] for i in items] == [straddling]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"start": "2025-03-01T00:00:00Z"}, "start and end are required"),
        ({"start": "2025-03-01T00:00:00Z", "end": "2026-03-03T00:00:00Z"}, "longer than one year"),
        ({"start": "2025-03-02T00:00:00Z", "end": "2025-03-01T00:00:00Z"}, "end must be after"),
        ({"start": "soon", "end": "2025-03-01T00:00:00Z"}, "start and end must be ISO"),
        (
            {"start": "2025-03-01T00:00:00Z", "end": "2025-03-02T00:00:00Z", "room": "x"},
            "property room should not exist",
        ),
    ],
)
def test_bad_occurrence_queries_are_refused(
    officernd: OfficeRndWorld, params: dict[str, str], message: str
) -> None:
    with api(officernd) as client:
        reply = client.get("/bookings/occurrences", params=params)
    assert reply.status_code == 400
    assert message in reply.json()["message"]


def test_occurrence_edits_touch_the_series_only_when_configured(
    officernd: OfficeRndWorld, officernd_clock: ManualClock
) -> None:
    first = at("2025-03-11", 14)
    series = officernd.emulator.seed_booking(
        officernd.room, first, first + timedelta(hours=1), rrule="FREQ=DAILY;COUNT=4"
    )
    created = officernd.emulator.booking(series)["modifiedAt"]
    officernd_clock.advance(60)
    officernd.emulator.set_behaviour(occurrence_edits_touch_master=False)
    officernd.emulator.cancel_occurrence(series, first + timedelta(days=1))
    assert officernd.emulator.booking(series)["modifiedAt"] == created
    officernd.emulator.set_behaviour(occurrence_edits_touch_master=True)
    officernd.emulator.cancel_occurrence(series, first + timedelta(days=2))
    assert officernd.emulator.booking(series)["modifiedAt"] == "2025-03-10T08:01:00.000Z"
    with pytest.raises(ValueError, match="not an occurrence"):
        officernd.emulator.cancel_occurrence(series, first + timedelta(hours=1))


# ----- writes ------------------------------------------------------------------------------------


def create_body(world: OfficeRndWorld, **fields: Any) -> dict[str, Any]:
    return {
        "resource": world.room,
        "start": "2025-03-20T13:00:00.000Z",
        "end": "2025-03-20T14:00:00.000Z",
        "company": "company-1",
        **fields,
    }


def test_create_then_update_keeps_what_the_body_leaves_out(
    officernd: OfficeRndWorld, officernd_clock: ManualClock
) -> None:
    with api(officernd) as client:
        created = client.post(
            "/bookings", json=create_body(officernd, title="Review", description="Floor plans")
        )
        assert created.status_code == 201
        booking = created.json()
        assert (booking["isCancelled"], booking["timezone"]) == (False, "Europe/London")
        officernd_clock.advance(30)
        updated = client.put(
            f"/bookings/{booking['_id']}",
            json={"title": "Design review", "_id": booking["_id"], "modifiedAt": "ignored"},
        )
        assert updated.status_code == 200
        body = updated.json()
        assert (body["title"], body["description"]) == ("Design review", "Floor plans")
        assert body["modifiedAt"] == "2025-03-10T08:00:30.000Z"
        assert body["createdAt"] == "2025-03-10T08:00:00.000Z"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"colour": "red"}, "property colour should not exist"),
        ({"company": None}, "member or company must be given"),
        ({"start": "2025-03-20"}, "start must be a valid ISO 8601 date-time"),
        ({"end": "2025-03-20T12:00:00Z"}, "end must be after start"),
        ({"resource": "000000000000000000000000"}, "resource must reference"),
        ({"serviceSlots": {"before": -5}}, "serviceSlots.before must be a non-negative"),
        ({"recurrence": {"rrule": "FREQ=HOURLY"}}, "FREQ must be DAILY, WEEKLY or MONTHLY"),
        ({"recurrence": {"rrule": "FREQ=DAILY;UNTIL=20250401T000000"}}, "UNTIL must be a UTC"),
        ({"recurrence": {"rrule": "FREQ=DAILY;BYHOUR=9"}}, "unsupported rule parts: BYHOUR"),
        ({"tentative": "yes"}, "tentative has the wrong type"),
    ],
)
def test_invalid_bodies_are_refused(
    officernd: OfficeRndWorld, fields: dict[str, Any], message: str
) -> None:
    with api(officernd) as client:
        reply = client.post("/bookings", json=create_body(officernd, **fields))
    assert reply.status_code == 400, reply.text
    text = reply.json()["message"]
    assert message in (text if isinstance(text, str) else " | ".join(text))
    assert officernd.emulator.bookings() == []


def test_a_booking_over_another_is_a_conflict(officernd: OfficeRndWorld) -> None:
    officernd.emulator.seed_booking(
        officernd.room,
        at("2025-03-13", 13, 30),
        at("2025-03-13", 14, 30),
        rrule="FREQ=WEEKLY;COUNT=3",
    )
    with api(officernd) as client:
        # A daily series whose third instance meets the weekly one.
        clash = client.post(
            "/bookings",
            json=create_body(
                officernd,
                start="2025-03-11T13:00:00Z",
                end="2025-03-11T14:00:00Z",
                recurrence={"rrule": "FREQ=DAILY;COUNT=5"},
            ),
        )
        assert clash.status_code == 409
        fine = client.post("/bookings", json=create_body(officernd, resource=officernd.other_room))
        assert fine.status_code == 201


def test_service_slots_widen_both_sides_of_the_booking_policy(officernd: OfficeRndWorld) -> None:
    officernd.emulator.seed_booking(
        officernd.room, at("2025-03-13", 10), at("2025-03-13", 11), after=30,
        title="Zed's board", member="zed",
    )
    with api(officernd) as client:
        # 11:20 is clear of the booking but inside its 30 min cleanup slot.
        in_cleanup = create_body(
            officernd, start="2025-03-13T11:20:00Z", end="2025-03-13T12:00:00Z"
        )
        refused = client.post("/bookings", json=in_cleanup)
        assert refused.status_code == 409
        assert "booked 2025-03-13 10:00\u201311:00 (with its service slots)" in (
            refused.json()["message"]
        )
        assert "Zed" not in refused.text and "zed" not in refused.text
        # 11:40 with a 15 min setup slot of its own reaches back into the cleanup too.
        own_setup = create_body(
            officernd, start="2025-03-13T11:40:00Z", end="2025-03-13T12:00:00Z",
            serviceSlots={"before": 15, "after": 0},
        )
        assert client.post("/bookings", json=own_setup).status_code == 409
        clear = create_body(officernd, start="2025-03-13T11:30:00Z", end="2025-03-13T12:00:00Z")
        assert client.post("/bookings", json=clear).status_code == 201


def test_validate_answers_what_a_create_would_without_creating(
    officernd: OfficeRndWorld,
) -> None:
    officernd.emulator.seed_booking(officernd.room, at("2025-03-13", 10), at("2025-03-13", 11))
    with api(officernd) as client:
        taken = client.post(
            "/bookings/validate",
            json=create_body(officernd, start="2025-03-13T10:30:00Z", end="2025-03-13T11:30:00Z"),
        )
        assert taken.status_code == 200, taken.text
        verdict = taken.json()
        assert verdict["valid"] is False
        assert verdict["errors"] == [
            "The resource is not available for the selected time: it is booked "
            "2025-03-13 10:00\u201311:00"
        ]
        free = client.post("/bookings/validate", json=create_body(officernd))
        assert free.json() == {"valid": True, "errors": []}
        malformed = client.post("/bookings/validate", json=create_body(officernd, colour="red"))
        assert malformed.status_code == 400
    assert len(officernd.emulator.bookings()) == 1
    with api(officernd, scope="flex.space.bookings.create") as narrow:
        assert narrow.post("/bookings/validate", json=create_body(officernd)).status_code == 403


def test_exdate_lines_leave_occurrences_out_of_one_series(officernd: OfficeRndWorld) -> None:
    officernd.emulator.seed_booking(officernd.room, at("2025-03-18", 13), at("2025-03-18", 14))
    rule = "RRULE:FREQ=WEEKLY;COUNT=4\nEXDATE:20250318T130000Z"
    with api(officernd) as client:
        # Without the EXDATE the second week meets the seeded booking.
        whole = create_body(
            officernd, start="2025-03-11T13:00:00Z", end="2025-03-11T14:00:00Z",
            recurrence={"rrule": "FREQ=WEEKLY;COUNT=4"},
        )
        assert client.post("/bookings", json=whole).status_code == 409
        created = client.post("/bookings", json={**whole, "recurrence": {"rrule": rule}})
        assert created.status_code == 201, created.text
        series = created.json()
        assert series["recurrence"]["rrule"] == rule.removeprefix("RRULE:")
        items = occurrences(
            client, booking=series["_id"], start="2025-03-10T00:00:00Z",
            end="2025-04-30T00:00:00Z",
        )
        # 13:00 on London's wall clock: 12:00 UTC once summer time starts on 30 March.
        assert starts(items) == [
            at("2025-03-11", 13), at("2025-03-25", 13), at("2025-04-01", 12)
        ]
        bad = {**whole, "recurrence": {"rrule": "FREQ=WEEKLY;COUNT=4\nEXDATE:20250318"}}
        assert client.post("/bookings", json=bad).status_code == 400


def test_cancel_keeps_the_record_and_delete_removes_it(
    officernd: OfficeRndWorld, officernd_clock: ManualClock
) -> None:
    (booking,) = seed_days(officernd, 1)
    with api(officernd) as client:
        officernd_clock.advance(10)
        cancelled = client.post(
            f"/bookings/{booking}/cancel",
            params={"isSilent": "true", "skipCancellationPolicy": "true"},
        )
        assert cancelled.status_code == 200
        assert cancelled.json()["isCancelled"] is True
        assert cancelled.json()["modifiedAt"] == "2025-03-10T08:00:10.000Z"
        officernd_clock.advance(10)
        again = client.post(f"/bookings/{booking}/cancel")
        assert again.json()["modifiedAt"] == "2025-03-10T08:00:10.000Z"  # nothing changed
        assert client.put(f"/bookings/{booking}", json={"title": "x"}).status_code == 400
        assert client.get(f"/bookings/{booking}").status_code == 200
        assert client.delete(f"/bookings/{booking}").status_code == 200
        assert client.get(f"/bookings/{booking}").status_code == 404
        assert client.delete(f"/bookings/{booking}").status_code == 404
        assert client.get("/bookings").json()["results"] == []
    kinds = [e.event_type for e in officernd.emulator.webhooks]
    assert kinds == ["booking.created", "booking.updated", "booking.removed"]
    for event in officernd.emulator.webhooks:
        verify_webhook_signature(
            officernd.emulator.webhook_secret,
            event.body,
            event.signature,
            now=OFFICERND_NOW + timedelta(seconds=20),
        )


def test_resources_and_locations(officernd: OfficeRndWorld) -> None:
    with api(officernd) as client:
        room = client.get(f"/resources/{officernd.room}").json()
        assert (room["timezone"], room["location"], room["type"]) == (
            "Europe/London",
            officernd.location,
            "meeting_room",
        )
        listed = client.get("/resources", params={"location": officernd.location}).json()
        assert [r["_id"] for r in listed["results"]] == [officernd.room, officernd.other_room]
        assert client.get(f"/locations/{officernd.location}").json()["name"] == "Acme London"
        assert client.get("/resources/nope").status_code == 404


# ----- faults and counters -----------------------------------------------------------------------


def test_injected_faults_and_request_counters(officernd: OfficeRndWorld) -> None:
    with api(officernd) as client:
        officernd.emulator.fail_next(FaultKind.THROTTLE, FaultKind.SERVER_ERROR, retry_after=9)
        throttled = client.get("/bookings")
        assert (throttled.status_code, throttled.headers["Retry-After"]) == (429, "9")
        assert client.get("/bookings").status_code == 500
        assert client.get("/bookings").status_code == 200
        assert client.get(f"/bookings/{'f' * 24}").status_code == 404
    counts = officernd.emulator.request_counts()
    assert counts["GET /api/v2/organizations/{org}/bookings"] == 3
    assert counts["GET /api/v2/organizations/{org}/bookings/{booking_id}"] == 1
    assert counts["POST /oauth/token"] == 1
    faults = [r.fault for r in officernd.emulator.requests if r.fault]
    assert faults == [FaultKind.THROTTLE, FaultKind.SERVER_ERROR]
    assert officernd.emulator.tokens_issued() == 1
