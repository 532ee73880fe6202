"""The Prospero emulator on its own: strict answers, cookies, the lifecycle, faults, and the
agreement between its own truth and what the bridge maps from its listings."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from bridge.emulators.faults import FaultKind, FaultPlan
from bridge.emulators.prospero import (
    ACCESS_COOKIE,
    BASE_PATH,
    GREETING,
    REFRESH_COOKIE,
    Behaviour,
    ProsperoEmulator,
)
from bridge.model import BookingStatus, Room, Window
from bridge.providers.prospero import BAD_REFRESH_TOKEN, ENDPOINTS, Operation
from bridge.sources.prospero import room_bookings
from mappings.prospero import BookingState, EventProcedure

NOW = datetime(2025, 3, 10, 8, 0, tzinfo=UTC)
USER, PASSWORD = "admin@example.org", "s3cret-Pa55word"
SOME_ID = "0c6f7e3a-9d3b-11ef-8c4a-0242ac120002"


def at(day: int, hour: int) -> datetime:
    """A UTC instant in March 2025."""
    return datetime(2025, 3, day, hour, tzinfo=UTC)


class Venue:
    """An emulator with one user, a module and a space, and an HTTP client on its app."""

    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.emulator = ProsperoEmulator(now=NOW, behaviour=behaviour)
        self.emulator.add_user(USER, PASSWORD)
        self.module = self.emulator.add_module("Venue hire")
        self.hall = self.emulator.add_space("Main hall")
        self.http = TestClient(self.emulator.app, base_url="http://testserver" + BASE_PATH)

    def login(self) -> None:
        reply = self.http.post("/auth/login", json={"email": USER, "password": PASSWORD})
        assert reply.status_code == 200, reply.text

    def submit(self, start: str = "2025-03-11T09:00:00Z", end: str = "2025-03-11T10:00:00Z"):
        body = {
            "bookingModuleId": self.module,
            "event": {"title": "Rehearsal", "start": start, "end": end, "spaceIds": [self.hall]},
        }
        return self.http.post("/bookings/submit", json=body)


@pytest.fixture
def venue() -> Iterator[Venue]:
    made = Venue()
    with made.http:
        yield made


def assert_api_error(reply, status: int) -> None:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert set(body) == {"status", "error"} and body["status"] == status and body["error"]


# ----- routes, auth, cookies ---------------------------------------------------------------------


def test_api_root_greets(venue: Venue):
    assert venue.http.get("").text == GREETING


@pytest.mark.parametrize("operation", list(Operation))
def test_every_endpoint_of_the_shared_table_is_served(venue: Venue, operation: Operation):
    endpoint = ENDPOINTS[operation]
    path = endpoint.path.format(booking_id=SOME_ID, change_request_id=SOME_ID)
    reply = venue.http.request(endpoint.method, path)
    # Served by a handler (an APIError), not Starlette's bare 404/405.
    assert reply.headers["content-type"] == "application/json"
    assert reply.json()["status"] == reply.status_code
    if endpoint.authenticated:
        assert reply.status_code == 401


def test_login_sets_an_hour_long_access_cookie_and_a_week_long_refresh_cookie(venue: Venue):
    reply = venue.http.post("/auth/login", json={"email": USER, "password": PASSWORD})
    cookies = {h.split("=", 1)[0]: h.lower() for h in reply.headers.get_list("set-cookie")}
    assert "max-age=3600" in cookies[ACCESS_COOKIE] and "httponly" in cookies[ACCESS_COOKIE]
    assert "max-age=604800" in cookies[REFRESH_COOKIE]
    assert reply.json() == {"user": {"email": USER}}


def test_wrong_password_and_unknown_login_fields_are_refused(venue: Venue):
    assert_api_error(venue.http.post("/auth/login", json={"email": USER, "password": "x"}), 401)
    body = {"email": USER, "password": PASSWORD, "remember": True}
    assert_api_error(venue.http.post("/auth/login", json=body), 400)


def test_access_lasts_an_hour_and_refresh_a_week(venue: Venue):
    venue.login()
    assert venue.http.get("/bookings").status_code == 200
    venue.emulator.advance_clock(timedelta(hours=1))
    assert_api_error(venue.http.get("/bookings"), 401)
    assert venue.http.get("/auth/refresh").status_code == 200
    assert venue.http.get("/bookings").status_code == 200
    venue.emulator.advance_clock(timedelta(days=7))
    refused = venue.http.get("/auth/refresh")
    assert_api_error(refused, 400)
    assert refused.json()["error"] == BAD_REFRESH_TOKEN


def test_access_cookies_can_be_made_to_expire_after_some_requests(venue: Venue):
    venue.login()
    venue.emulator.expire_access_after(2)
    assert [venue.http.get("/bookings").status_code for _ in range(4)] == [200, 200, 401, 401]


# ----- strictness --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "start",
    [
        "2025-03-11T09:00:00+00:00",
        "2025-03-11T10:00:00+01:00",
        "2025-03-11T09:00:00",
        "2025-03-11",
        "1741683600",
    ],
)
def test_only_utc_z_datetimes_are_accepted(venue: Venue, start: str):
    reply = venue.submit(start=start)
    assert_api_error(reply, 400)
    assert "UTC" in reply.json()["error"]
    assert venue.emulator.bookings() == []


def test_unknown_fields_parameters_and_modules_are_refused(venue: Venue):
    venue.login()
    body = {"bookingModuleId": venue.module, "event": {"title": "x"}, "colour": "red"}
    assert_api_error(venue.http.post("/bookings/submit", json=body), 400)
    multi = {"bookingModuleId": venue.module, "events": [], "event": {}}
    assert_api_error(venue.http.post("/bookings/submit", json=multi), 400)
    assert_api_error(venue.http.get("/bookings", params={"since": "2025-01-01T00:00:00Z"}), 400)
    assert_api_error(venue.http.get("/bookings", params={"returnEvents": "yes"}), 400)
    unknown = {"bookingModuleId": SOME_ID, "event": {"title": "x"}}
    assert_api_error(venue.http.post("/bookings/submit", json=unknown), 400)
    backwards = venue.submit(start="2025-03-11T10:00:00Z", end="2025-03-11T09:00:00Z")
    assert_api_error(backwards, 400)


def test_update_refuses_anything_but_customer_and_contact(venue: Venue):
    venue.login()
    booking = venue.submit().json()["booking"]
    reply = venue.http.patch(f"/bookings/{booking['id']}", json={"event": {"title": "new"}})
    assert_api_error(reply, 400)


# ----- lifecycle ---------------------------------------------------------------------------------


def test_lifecycle_moves_only_along_its_arrows(venue: Venue):
    venue.login()
    booking = venue.submit().json()["booking"]
    path = f"/bookings/{booking['id']}"
    approval = {
        "clientBookingLastUpdatedAt": booking["lastUpdated"],
        "event": {},
        "notification": {},
    }
    approved = venue.http.post(f"{path}/approve", json=approval).json()
    assert approved["booking"]["bookingStatus"] == BookingState.APPROVED
    fresh = {**approval, "clientBookingLastUpdatedAt": approved["booking"]["lastUpdated"]}
    assert_api_error(venue.http.post(f"{path}/approve", json=fresh), 400)
    denial = {"clientBookingLastUpdatedAt": fresh["clientBookingLastUpdatedAt"], "notification": {}}
    assert_api_error(venue.http.post(f"{path}/deny", json=denial), 400)
    cancel = {"eventProcedure": int(EventProcedure.CANCEL), "notification": {}}
    first = venue.http.post(f"{path}/cancel", json=cancel).json()
    again = venue.http.post(f"{path}/cancel", json=cancel).json()
    assert first == again  # cancelling a cancelled booking changes nothing
    assert first["booking"]["bookingStatus"] == BookingState.CANCELED
    change = {"bookingId": booking["id"], "cancellation": False, "contact": {}, "event": {}}
    assert_api_error(venue.http.post("/booking-change-requests/submit", json=change), 400)


def test_stale_or_non_utc_optimistic_check_is_refused(venue: Venue):
    venue.login()
    booking = venue.submit().json()["booking"]
    path = f"/bookings/{booking['id']}/approve"
    stale = {"clientBookingLastUpdatedAt": "2020-01-01T00:00:00Z", "event": {}, "notification": {}}
    assert_api_error(venue.http.post(path, json=stale), 409)
    local = {**stale, "clientBookingLastUpdatedAt": booking["lastUpdated"].replace("Z", "+00:00")}
    assert_api_error(venue.http.post(path, json=local), 400)


def test_last_updated_moves_forward_even_within_one_second(venue: Venue):
    booking = venue.emulator.submit(venue.module, at(11, 9), at(11, 10))
    stamps = [venue.emulator.booking(booking)["lastUpdated"]]
    for hour in (11, 12, 13):
        venue.emulator.request_change(booking, start=at(11, hour), end=at(11, hour + 1))
        stamps.append(venue.emulator.booking(booking)["lastUpdated"])
    assert stamps == sorted(set(stamps))


def test_admin_create_links_an_existing_event(venue: Venue):
    venue.login()
    first = venue.emulator.submit(venue.module, at(11, 9), at(11, 10))
    event_id = venue.emulator.approve(first)
    body = {
        "submission": False,
        "bookingStatus": 1,
        "eventId": event_id,
        "bookingModuleId": venue.module,
        "event": {
            "title": "Linked",
            "start": "2025-03-11T09:00:00Z",
            "end": "2025-03-11T10:00:00Z",
        },
    }
    created = venue.http.post("/bookings", json=body).json()
    assert created["booking"]["eventId"] == event_id == created["event"]["id"]
    body["eventId"] = SOME_ID
    assert_api_error(venue.http.post("/bookings", json=body), 400)


# ----- faults ------------------------------------------------------------------------------------


def test_faults_answer_in_prospero_s_shape_and_are_counted_per_route(venue: Venue):
    venue.emulator.set_faults(FaultPlan(rate=1.0, kinds=(FaultKind.THROTTLE,), retry_after=4))
    reply = venue.http.get("/bookings")
    assert_api_error(reply, 429)
    assert reply.headers["Retry-After"] == "4"
    venue.emulator.clear_faults()
    venue.emulator.fail_next(FaultKind.SERVER_ERROR)
    assert_api_error(venue.http.get("/bookings/x/y/z"), 500)
    assert venue.emulator.request_counts()["GET /api/bookings"] == 1
    assert [r.fault for r in venue.emulator.requests] == [
        FaultKind.THROTTLE,
        FaultKind.SERVER_ERROR,
    ]


# ----- the emulator's truth agrees with what the bridge maps ------------------------------------

ACTIONS = st.lists(
    st.tuples(
        st.sampled_from(
            ["submit", "approve", "deny", "cancel", "delete", "move", "change", "decide"]
        ),
        st.integers(0, 30),
        st.integers(0, 23),
        st.booleans(),
    ),
    max_size=25,
)


@settings(max_examples=120, deadline=None)
@given(ACTIONS)
def test_listing_maps_to_exactly_the_live_bookings_with_their_statuses(actions):
    venue = Venue()
    emulator = venue.emulator
    studio = emulator.add_space("Studio")
    for action, day, hour, flag in actions:
        _apply(venue, studio, action, at(11, 0) + timedelta(days=day, hours=hour), flag)
    _check_invariants(venue)
    with venue.http:
        venue.login()
        listing = venue.http.get("/bookings", params={"returnEvents": "true"}).json()
    window = Window(NOW - timedelta(days=1), NOW + timedelta(days=60))
    for space in (venue.hall, studio):
        room = Room("r", "R", "Europe/London", "venue", space)
        mapped = room_bookings(
            listing, booking_module=venue.module, room=room, provider="venue", window=window
        )
        truth = emulator.live_bookings(venue.module, space)
        assert {(b.key, b.status, b.start, b.end) for b in mapped} == {
            (
                live.booking,
                BookingStatus.CONFIRMED
                if live.state is BookingState.APPROVED
                else BookingStatus.TENTATIVE,
                live.start,
                live.end,
            )
            for live in truth
        }


def _apply(venue: Venue, studio: str, action: str, start: datetime, flag: bool) -> None:
    """One admin or end-user step; steps that do not apply to the chosen booking are skipped."""
    emulator = venue.emulator
    bookings = emulator.bookings()
    states = {b["id"]: b["bookingStatus"] for b in bookings}
    pending = [i for i, s in states.items() if s == BookingState.PENDING]
    approved = [i for i, s in states.items() if s == BookingState.APPROVED]
    pick = start.hour
    if action == "submit" or not bookings:
        space = studio if flag else venue.hall
        emulator.submit(venue.module, start, start + timedelta(hours=1), spaces=[space])
    elif action == "approve" and pending:
        booking = pending[pick % len(pending)]
        moved = {"start": start, "end": start + timedelta(hours=2)} if flag else {}
        emulator.approve(booking, **moved)
    elif action == "deny" and pending:
        emulator.deny(pending[pick % len(pending)])
    elif action == "cancel" and approved:
        procedure = EventProcedure.DELETE if flag else EventProcedure.CANCEL
        emulator.cancel(approved[pick % len(approved)], procedure)
    elif action == "delete":
        emulator.delete_booking(bookings[pick % len(bookings)]["id"])
    elif action == "move" and approved:
        spaces = [studio] if flag else [venue.hall]
        emulator.move_event(
            approved[pick % len(approved)],
            start=start,
            end=start + timedelta(minutes=90),
            spaces=spaces,
        )
    elif action == "change" and (pending or approved):
        live = pending + approved
        emulator.request_change(
            live[pick % len(live)], start=start, end=start + timedelta(minutes=45)
        )
    elif action == "decide" and emulator.change_requests():
        queued = emulator.change_requests()[0]["id"]
        if flag:
            emulator.approve_change(queued)
        else:
            emulator.deny_change(queued)


def _check_invariants(venue: Venue) -> None:
    """Approved bookings have their Event; pending and denied ones have none."""
    for booking in venue.emulator.bookings():
        event = venue.emulator.event_of(booking["id"])
        if booking["bookingStatus"] == BookingState.APPROVED:
            assert event is not None and not event["canceled"]
        elif booking["bookingStatus"] in (BookingState.PENDING, BookingState.DENIED):
            assert booking["eventId"] is None and event is None
        else:
            assert event is None or event["canceled"]
