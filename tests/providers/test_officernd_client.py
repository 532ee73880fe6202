"""The OfficeRnD client against the strict emulator: tokens, paging, filters, writes, failures,
and the webhook signature check."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.emulators.faults import FaultKind, FaultPlan
from bridge.emulators.officernd import Behaviour, OfficeRndEmulator
from bridge.model import Window
from bridge.providers.errors import (
    ProviderAuthError,
    ProviderConflict,
    ProviderNotFound,
    ProviderThrottled,
    ProviderUnavailable,
    ProviderValidationError,
)
from bridge.providers.http import PacingPolicy, RetryPolicy
from bridge.providers.officernd import (
    MAX_OCCURRENCE_PERIOD,
    READ_SCOPES,
    WRITE_SCOPES,
    OfficeRndClient,
    SignatureOrder,
    WebhookSignatureError,
    api_root,
    occurrence_periods,
    verify_webhook_signature,
    webhook_signature,
)
from tests.plugins.nexudus import ManualClock
from tests.plugins.officernd import (
    OFFICERND_CLIENT_ID,
    OFFICERND_NOW,
    OFFICERND_SECRET,
    OfficeRndWorld,
)

MakeClient = Callable[..., OfficeRndClient]
TOKEN = "POST /oauth/token"
BOOKINGS = "GET /api/v2/organizations/{org}/bookings"
OCCURRENCES = "GET /api/v2/organizations/{org}/bookings/occurrences"


def at(day: str, hour: int, minute: int = 0) -> datetime:
    """A UTC instant."""
    return datetime.fromisoformat(day).replace(hour=hour, minute=minute, tzinfo=UTC)


def hour_bookings(world: OfficeRndWorld, count: int, *, room: str | None = None) -> list[str]:
    """``count`` one-hour bookings, one per day from 2025-03-11 09:00 UTC."""
    return [
        world.emulator.seed_booking(
            room or world.room,
            at("2025-03-11", 9) + timedelta(days=day),
            at("2025-03-11", 10) + timedelta(days=day),
        )
        for day in range(count)
    ]


def statuses(world: OfficeRndWorld, route: str) -> list[int | None]:
    """The statuses the emulator answered on one route, in order."""
    return [r.status for r in world.emulator.requests if f"{r.method} {r.route}" == route]


def queries(world: OfficeRndWorld, route: str) -> list[dict[str, str]]:
    """The query parameters of each request to one route."""
    return [dict(r.query) for r in world.emulator.requests if f"{r.method} {r.route}" == route]


# ----- tokens ----------------------------------------------------------------------------------


def test_takes_one_token_with_the_read_scopes_and_reuses_it(
    officernd: OfficeRndWorld, officernd_client: OfficeRndClient
) -> None:
    hour_bookings(officernd, 2)
    for _ in range(3):
        assert len(list(officernd_client.list_bookings(officernd.room))) == 2
    officernd_client.get_resource(officernd.room)
    assert officernd.emulator.tokens_issued() == 1
    (grant,) = officernd.emulator.accounts.tokens.values()
    assert grant.scopes == frozenset(READ_SCOPES)


def test_renews_the_token_shortly_before_it_expires_without_a_401(
    officernd: OfficeRndWorld, officernd_client: OfficeRndClient, officernd_clock: ManualClock
) -> None:
    hour_bookings(officernd, 1)
    list(officernd_client.list_bookings(officernd.room))
    officernd_clock.advance(3000)  # well inside the hour-long token's life: kept
    list(officernd_client.list_bookings(officernd.room))
    assert officernd.emulator.tokens_issued() == 1
    officernd_clock.advance(479)  # two minutes before it expires: replaced ahead of time
    list(officernd_client.list_bookings(officernd.room))
    assert officernd.emulator.tokens_issued() == 2
    assert 401 not in statuses(officernd, BOOKINGS)


def test_token_expiring_mid_listing_is_renewed_once_and_the_listing_completes(
    officernd: OfficeRndWorld, make_officernd_client: MakeClient
) -> None:
    ids = hour_bookings(officernd, 7)
    client = make_officernd_client(page_size=3)
    listing = client.list_bookings(officernd.room)
    seen = [next(listing)["_id"]]
    officernd.emulator.expire_tokens()
    seen += [booking["_id"] for booking in listing]
    assert seen == ids
    assert officernd.emulator.tokens_issued() == 2
    assert statuses(officernd, BOOKINGS).count(401) == 1


def test_threads_sharing_a_client_renew_an_expired_token_once(
    officernd: OfficeRndWorld, officernd_client: OfficeRndClient
) -> None:
    hour_bookings(officernd, 3)
    officernd_client.get_resource(officernd.room)
    officernd.emulator.expire_tokens()

    def count(_: int) -> int:
        return len(list(officernd_client.list_bookings(officernd.room)))

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(count, range(8))) == [3] * 8
    assert officernd.emulator.tokens_issued() == 2


def test_token_requests_are_paced_under_the_endpoint_limit(
    officernd: OfficeRndWorld, officernd_client: OfficeRndClient, officernd_clock: ManualClock
) -> None:
    # Eight renewals in a row: the first four go at once, then one a minute; none is refused.
    started = officernd_clock.monotonic()
    for _ in range(8):
        officernd.emulator.expire_tokens()
        officernd_client.get_resource(officernd.room)
    assert 429 not in statuses(officernd, TOKEN)
    assert officernd.emulator.tokens_issued() == 8
    assert officernd_clock.monotonic() - started >= 4 * 60 - 1


def test_a_throttled_token_request_waits_for_retry_after(
    officernd: OfficeRndWorld, make_officernd_client: MakeClient, officernd_clock: ManualClock
) -> None:
    unpaced = make_officernd_client(token_pacing=PacingPolicy())
    for _ in range(6):
        officernd.emulator.expire_tokens()
        unpaced.get_resource(officernd.room)
    assert statuses(officernd, TOKEN).count(429) == 1
    assert officernd.emulator.tokens_issued() == 6
    assert max(officernd_clock.sleeps) == 60  # the emulator's Retry-After


def test_throttling_that_outlasts_the_retries_is_a_typed_error(
    officernd: OfficeRndWorld, make_officernd_client: MakeClient
) -> None:
    officernd.emulator.set_behaviour(token_requests_per_minute=1)
    officernd.emulator.accounts.token_requests.append(OFFICERND_NOW)
    client = make_officernd_client(
        token_pacing=PacingPolicy(), retry=RetryPolicy(max_attempts=2, max_retry_after=10)
    )
    with pytest.raises(ProviderThrottled) as caught:
        client.get_resource(officernd.room)
    assert caught.value.retry_after == 60


def test_a_wrong_secret_is_an_auth_error_that_never_shows_the_secret(
    officernd: OfficeRndWorld, make_officernd_client: MakeClient
) -> None:
    wrong = "not-the-Secret-at-all"
    client = make_officernd_client(client_secret=wrong)
    with pytest.raises(ProviderAuthError) as caught:
        client.get_resource(officernd.room)
    assert caught.value.status == 401
    for text in (str(caught.value), repr(caught.value), repr(client)):
        assert wrong not in text and OFFICERND_SECRET not in text


def test_asking_for_ungranted_write_scopes_fails_the_token_request(
    officernd: OfficeRndWorld, make_officernd_client: MakeClient
) -> None:
    officernd.emulator.add_application("reader", "reader-secret", READ_SCOPES)
    client = make_officernd_client(
        client_id="reader", client_secret="reader-secret", scopes=READ_SCOPES + WRITE_SCOPES
    )
    with pytest.raises(ProviderAuthError, match="not granted"):
        client.get_resource(officernd.room)


def test_a_route_outside_the_token_scopes_is_an_auth_error(
    officernd: OfficeRndWorld, make_officernd_client: MakeClient
) -> None:
    client = make_officernd_client(scopes=("flex.space.bookings.read",))
    assert list(client.list_bookings(officernd.room)) == []
    with pytest.raises(ProviderAuthError) as caught:
        client.get_resource(officernd.room)
    assert caught.value.status == 403


# ----- paging and filters ------------------------------------------------------------------------


def test_lists_every_page_of_fifty(
    officernd: OfficeRndWorld, officernd_client: OfficeRndClient
) -> None:
    ids = hour_bookings(officernd, 120)
    hour_bookings(officernd, 3, room=officernd.other_room)
    assert [b["_id"] for b in officernd_client.list_bookings(officernd.room)] == ids
    pages = queries(officernd, BOOKINGS)
    assert [page["$limit"] for page in pages] == ["50"] * 3
    assert "$cursorNext" not in pages[0] and all("$cursorNext" in page for page in pages[1:])
    assert all(page["resource"] == officernd.room for page in pages)


def test_records_updated_while_paging_are_neither_skipped_nor_repeated(
    officernd: OfficeRndWorld, make_officernd_client: MakeClient
) -> None:
    ids = hour_bookings(officernd, 9)
    client = make_officernd_client(page_size=3)
    listing = client.list_bookings(officernd.room)
    seen = [next(listing)["_id"] for _ in range(3)]
    officernd.emulator.edit_booking(ids[0], title="changed after it was listed")
    officernd.emulator.edit_booking(ids[5], title="changed before it was listed")
    rest = list(listing)
    assert seen + [b["_id"] for b in rest] == ids
    assert next(b for b in rest if b["_id"] == ids[5])["title"] == "changed before it was listed"


def test_modified_since_reads_changes_and_a_safety_margin(
    officernd: OfficeRndWorld, officernd_client: OfficeRndClient, officernd_clock: ManualClock
) -> None:
    ids = hour_bookings(officernd, 4)
    officernd_clock.advance(600)
    officernd.emulator.edit_booking(ids[1], title="moved on")
    officernd_clock.advance(60)
    officernd.emulator.edit_booking(ids[3], title="moved on too")
    since = OFFICERND_NOW + timedelta(seconds=660)
    changed = list(officernd_client.list_bookings(officernd.room, modified_since=since))
    # ids[1] changed 60 s before `since`: inside the 2-minute margin, so it is read again.
    assert [b["_id"] for b in changed] == [ids[1], ids[3]]
    (query,) = queries(officernd, BOOKINGS)
    assert query["modifiedAt[$gte]"] == "2025-03-10T08:09:00.000Z"


def test_window_selects_bookings_by_series_span(
    officernd: OfficeRndWorld, officernd_client: OfficeRndClient
) -> None:
    seed = officernd.emulator.seed_booking
    room = officernd.room
    before = seed(room, at("2025-01-06", 9), at("2025-01-06", 10))
    inside = seed(room, at("2025-04-02", 9), at("2025-04-02", 10))
    after = seed(room, at("2025-09-01", 9), at("2025-09-01", 10))
    into = seed(room, at("2025-02-03", 9), at("2025-02-03", 10), rrule="FREQ=WEEKLY;COUNT=12")
    ended = seed(room, at("2025-01-01", 9), at("2025-01-01", 10), rrule="FREQ=DAILY;COUNT=5")
    endless = seed(room, at("2024-06-03", 9), at("2024-06-03", 10), rrule="FREQ=WEEKLY")
    window = Window(at("2025-03-01", 0), at("2025-06-01", 0))
    listed = {b["_id"] for b in officernd_client.list_bookings(room, window=window)}
    assert listed == {inside, into, endless}
    assert not listed & {before, after, ended}
    (query,) = queries(officernd, BOOKINGS)
    assert query["seriesStart[$lt]"] == "2025-06-01T00:00:00.000Z"
    assert query["seriesEnd[$gte]"] == "2025-03-01T00:00:00.000Z"


def test_occurrences_over_two_years_are_read_year_by_year_once_each(
    officernd: OfficeRndWorld, officernd_client: OfficeRndClient
) -> None:
    series = officernd.emulator.seed_booking(
        officernd.room, at("2025-03-12", 14), at("2025-03-12", 15), rrule="FREQ=WEEKLY;COUNT=110"
    )
    window = Window(at("2025-03-01", 0), at("2027-03-01", 0))
    # A booking straddling the first period boundary is listed by both periods.
    boundary = occurrence_periods(window)[0].end
    long_one = officernd.emulator.seed_booking(
        officernd.room, boundary - timedelta(hours=1), boundary + timedelta(hours=1)
    )
    items = list(officernd_client.list_occurrences(window, resource=officernd.room))
    starts = [item["start"]["dateTime"] for item in items if item["bookingId"] == series]
    london = ZoneInfo("Europe/London")
    first = datetime(2025, 3, 12, 14, tzinfo=london)
    in_window = [k for k in range(110) if first + timedelta(weeks=k) < window.end]
    assert len(starts) == len(set(starts)) == len(in_window)
    assert [item["bookingId"] for item in items].count(long_one) == 1
    periods = [
        (datetime.fromisoformat(q["start"]), datetime.fromisoformat(q["end"]))
        for q in queries(officernd, OCCURRENCES)
    ]
    assert {start for start, _end in periods} == {window.start, boundary}
    assert all(end - start <= MAX_OCCURRENCE_PERIOD for start, end in periods)


@settings(max_examples=100, deadline=None)
@given(
    start=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)),
    length=st.timedeltas(min_value=timedelta(minutes=1), max_value=timedelta(days=2000)),
)
def test_occurrence_periods_tile_the_window_within_a_year(
    start: datetime, length: timedelta
) -> None:
    window = Window(start.replace(tzinfo=UTC), start.replace(tzinfo=UTC) + length)
    periods = occurrence_periods(window)
    assert periods[0].start == window.start and periods[-1].end == window.end
    assert all(a.end == b.start for a, b in itertools.pairwise(periods))
    assert all(p.end - p.start <= MAX_OCCURRENCE_PERIOD for p in periods)


def test_resource_timezone_comes_from_the_resource_or_its_location(
    officernd: OfficeRndWorld, officernd_client: OfficeRndClient
) -> None:
    sydney = officernd.emulator.add_resource(
        "Pod", location=officernd.location, timezone="Australia/Sydney"
    )
    assert officernd_client.resource_timezone(officernd.room) == "Europe/London"
    assert officernd_client.resource_timezone(sydney) == "Australia/Sydney"
    officernd_client.resource_timezone(sydney)
    assert (
        officernd.emulator.request_counts()["GET /api/v2/organizations/{org}/resources/{item_id}"]
        == 2
    )  # cached


def test_an_organisation_path_in_base_url_is_kept() -> None:
    root = "https://app.officernd.com/api/v2/organizations/acme"
    assert api_root("https://app.officernd.com/", "acme") == root
    assert api_root(root + "/", "acme") == root


# ----- writes ------------------------------------------------------------------------------------


def test_create_update_cancel_and_delete(
    officernd: OfficeRndWorld, make_officernd_client: MakeClient
) -> None:
    client = make_officernd_client(scopes=READ_SCOPES + WRITE_SCOPES)
    created = client.create_booking(
        {
            "resource": officernd.room,
            "start": "2025-03-20T13:00:00.000Z",
            "end": "2025-03-20T14:00:00.000Z",
            "title": "Sync test",
            "company": "company-1",
            "serviceSlots": {"before": 10, "after": 5},
        }
    )
    booking_id = created["_id"]
    assert officernd.emulator.booking(booking_id)["serviceSlots"] == {"before": 10, "after": 5}
    updated = client.update_booking(booking_id, {"title": "Renamed", "end": "2025-03-20T15:00:00Z"})
    assert (updated["title"], updated["end"]) == ("Renamed", "2025-03-20T15:00:00.000Z")
    cancelled = client.cancel_booking(booking_id)
    assert cancelled["isCancelled"] is True
    assert client.get_booking(booking_id)["isCancelled"] is True  # the record stays
    (query,) = queries(officernd, "POST /api/v2/organizations/{org}/bookings/{booking_id}/cancel")
    assert query == {"isSilent": "true", "skipCancellationPolicy": "false"}
    client.delete_booking(booking_id)
    with pytest.raises(ProviderNotFound):
        client.get_booking(booking_id)
    kinds = [event.event_type for event in officernd.emulator.webhooks]
    assert kinds == ["booking.created", "booking.updated", "booking.updated", "booking.removed"]


def test_refused_writes_are_typed(
    officernd: OfficeRndWorld, make_officernd_client: MakeClient
) -> None:
    client = make_officernd_client(scopes=READ_SCOPES + WRITE_SCOPES)
    hour_bookings(officernd, 1)
    body = {"resource": officernd.room, "company": "company-1"}
    with pytest.raises(ProviderConflict):
        client.create_booking(
            {**body, "start": "2025-03-11T09:30:00Z", "end": "2025-03-11T10:30:00Z"}
        )
    with pytest.raises(ProviderValidationError) as caught:
        client.create_booking(
            {**body, "start": "2025-03-12T10:00:00Z", "end": "2025-03-12T09:00:00Z"}
        )
    assert "end must be after start" in str(caught.value)
    with pytest.raises(ProviderValidationError, match="FREQ"):
        client.create_booking(
            {
                **body,
                "start": "2025-03-13T10:00:00Z",
                "end": "2025-03-13T11:00:00Z",
                "recurrence": {"rrule": "FREQ=YEARLY"},
            }
        )


def test_validate_reports_the_policy_refusals_without_creating(
    officernd: OfficeRndWorld, make_officernd_client: MakeClient
) -> None:
    client = make_officernd_client(scopes=READ_SCOPES + WRITE_SCOPES)
    hour_bookings(officernd, 1)
    body = {"resource": officernd.room, "company": "company-1"}
    refusals = client.validate_booking(
        {**body, "start": "2025-03-11T10:10:00Z", "end": "2025-03-11T11:00:00Z",
         "serviceSlots": {"before": 15, "after": 0}}
    )
    assert refusals == [
        "The resource is not available for the selected time: it is booked "
        "2025-03-11 09:00\u201310:00"
    ]
    assert client.validate_booking(
        {**body, "start": "2025-03-11T10:15:00Z", "end": "2025-03-11T11:00:00Z",
         "serviceSlots": {"before": 15, "after": 0}}
    ) == []
    assert len(officernd.emulator.bookings()) == 1


def test_writes_go_through_a_sibling_with_the_write_scopes(
    officernd: OfficeRndWorld, make_officernd_client: MakeClient
) -> None:
    reader = make_officernd_client()
    assert reader.scopes == READ_SCOPES
    writer = reader.for_writes()
    assert writer is reader.for_writes() and writer is not reader
    assert set(WRITE_SCOPES) <= set(writer.scopes)
    assert officernd.emulator.tokens_issued() == 0  # nothing is asked for before a call
    created = writer.create_booking(
        {"resource": officernd.room, "company": "company-1",
         "start": "2025-03-20T13:00:00Z", "end": "2025-03-20T14:00:00Z"}
    )
    assert reader.get_booking(created["_id"])["_id"] == created["_id"]
    assert officernd.emulator.tokens_issued() == 2
    full = make_officernd_client(scopes=READ_SCOPES + WRITE_SCOPES)
    assert full.for_writes() is full


def test_a_create_is_not_repeated_after_a_server_error(
    officernd: OfficeRndWorld, make_officernd_client: MakeClient
) -> None:
    client = make_officernd_client(scopes=READ_SCOPES + WRITE_SCOPES)
    client.get_resource(officernd.room)
    officernd.emulator.fail_next(FaultKind.SERVER_ERROR)
    with pytest.raises(ProviderUnavailable):
        client.create_booking(
            {
                "resource": officernd.room,
                "start": "2025-03-20T13:00:00Z",
                "end": "2025-03-20T14:00:00Z",
                "company": "c",
            }
        )
    assert officernd.emulator.request_counts()["POST /api/v2/organizations/{org}/bookings"] == 1


# ----- failures ----------------------------------------------------------------------------------


def test_server_errors_and_throttles_are_retried_honouring_retry_after(
    officernd: OfficeRndWorld, officernd_client: OfficeRndClient, officernd_clock: ManualClock
) -> None:
    hour_bookings(officernd, 2)
    officernd.emulator.fail_next(FaultKind.SERVER_ERROR, FaultKind.THROTTLE, retry_after=7)
    assert len(list(officernd_client.list_bookings(officernd.room))) == 2
    assert statuses(officernd, BOOKINGS) == [500, 429, 200]
    assert 7.0 in officernd_clock.sleeps


def test_a_dropped_connection_on_a_read_is_retried(
    officernd: OfficeRndWorld, make_officernd_client: MakeClient
) -> None:
    hour_bookings(officernd, 1)
    client = make_officernd_client(timeout=2.0)
    client.get_resource(officernd.room)
    officernd.emulator.set_faults(FaultPlan(rate=0.0, hang_seconds=0.2))
    officernd.emulator.fail_next(FaultKind.TIMEOUT)
    assert len(list(client.list_bookings(officernd.room))) == 1
    assert statuses(officernd, BOOKINGS) == [None, 200]


def test_a_provider_that_stays_down_is_unavailable(
    officernd: OfficeRndWorld, officernd_client: OfficeRndClient
) -> None:
    officernd_client.get_resource(officernd.room)
    officernd.emulator.fail_next(*[FaultKind.SERVER_ERROR] * 5)
    with pytest.raises(ProviderUnavailable) as caught:
        list(officernd_client.list_bookings(officernd.room))
    assert caught.value.status == 500
    assert "Internal server error" in str(caught.value)


def test_the_token_url_is_used_as_given(
    officernd: OfficeRndWorld, make_officernd_client: MakeClient
) -> None:
    # The token URL is absolute: its host and path are used as given, not under the API root.
    seen: list[httpx.Request] = []

    def spy(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/identity/oauth/token":
            form = parse_qs(request.content.decode())
            assert form["grant_type"] == ["client_credentials"]
            assert form["client_id"] == [OFFICERND_CLIENT_ID]
            assert form["scope"] == [" ".join(READ_SCOPES)]
            return httpx.Response(200, json={"access_token": "t0ken-value", "expires_in": 3599})
        assert request.headers["Authorization"] == "Bearer t0ken-value"
        return httpx.Response(200, json={"_id": "r1", "timezone": "Europe/Paris"})

    client = make_officernd_client(
        base_url="https://app.example.test",
        token_url="https://id.example.test/identity/oauth/token",
        transport=httpx.MockTransport(spy),
    )
    assert client.resource_timezone("r1") == "Europe/Paris"
    hosts = [urlsplit(str(r.url)).netloc for r in seen]
    assert hosts == ["id.example.test", "app.example.test"]
    assert seen[1].url.path == "/api/v2/organizations/acme/resources/r1"


# ----- webhook signatures ------------------------------------------------------------------------

WEBHOOK_SECRET = "whsec-0123456789abcdef"
BODY = json.dumps({"eventType": "booking.updated", "data": {"object": {"_id": "b1"}}}).encode()


@pytest.mark.parametrize("order", list(SignatureOrder))
def test_signatures_in_either_order_verify(order: SignatureOrder) -> None:
    sent = int(OFFICERND_NOW.timestamp())
    header = webhook_signature(WEBHOOK_SECRET, BODY, sent, order=order)
    assert header.startswith(f"t={sent},v1=")
    signed_at = verify_webhook_signature(WEBHOOK_SECRET, BODY, header, now=OFFICERND_NOW)
    assert signed_at == OFFICERND_NOW
    other = next(o for o in SignatureOrder if o is not order)
    with pytest.raises(WebhookSignatureError):
        verify_webhook_signature(WEBHOOK_SECRET, BODY, header, now=OFFICERND_NOW, orders=[other])


def test_the_official_signature_is_hmac_sha256_of_body_dot_timestamp() -> None:
    import hashlib
    import hmac

    digest = hmac.new(WEBHOOK_SECRET.encode(), BODY + b".1741593600", hashlib.sha256).hexdigest()
    assert webhook_signature(WEBHOOK_SECRET, BODY, 1741593600) == f"t=1741593600,v1={digest}"


@pytest.mark.parametrize(
    ("body", "header_of", "now", "reason"),
    [
        (BODY + b" ", lambda h: h, OFFICERND_NOW, "does not match"),
        (BODY, lambda h: h.replace("v1=", "v1=0"), OFFICERND_NOW, "does not match"),
        (BODY, lambda h: h, OFFICERND_NOW + timedelta(seconds=61), "away from now"),
        (BODY, lambda h: h, OFFICERND_NOW - timedelta(seconds=61), "away from now"),
        (BODY, lambda h: "v1=abc", OFFICERND_NOW, "not of the form"),
        (BODY, lambda h: "t=soon,v1=abc", OFFICERND_NOW, "no valid timestamp"),
        (BODY, lambda h: "", OFFICERND_NOW, "no officernd-signature"),
    ],
)
def test_bad_signatures_are_refused_without_revealing_the_secret(
    body: bytes, header_of: Callable[[str], str], now: datetime, reason: str
) -> None:
    header = header_of(webhook_signature(WEBHOOK_SECRET, BODY, int(OFFICERND_NOW.timestamp())))
    with pytest.raises(WebhookSignatureError, match=reason) as caught:
        verify_webhook_signature(WEBHOOK_SECRET, body, header, now=now)
    assert WEBHOOK_SECRET not in str(caught.value)


def test_a_wrong_secret_fails_verification() -> None:
    header = webhook_signature(WEBHOOK_SECRET, BODY, int(OFFICERND_NOW.timestamp()))
    with pytest.raises(WebhookSignatureError):
        verify_webhook_signature("another-secret", BODY, header, now=OFFICERND_NOW)


def test_emulator_webhooks_verify_with_the_shared_secret() -> None:
    emulator = OfficeRndEmulator(
        now=OFFICERND_NOW,
        webhook_secret=WEBHOOK_SECRET,
        behaviour=Behaviour(signature_order=SignatureOrder.TIMESTAMP_FIRST),
    )
    location = emulator.add_location("HQ")
    room = emulator.add_resource("Room", location=location)
    booking = emulator.seed_booking(room, at("2025-03-11", 9), at("2025-03-11", 10))
    emulator.cancel_booking(booking)
    emulator.delete_booking(booking)
    for event in emulator.webhooks:
        header = event.headers["officernd-signature"]
        verify_webhook_signature(WEBHOOK_SECRET, event.body, header, now=OFFICERND_NOW)
        assert json.loads(event.body)["data"]["object"]["_id"] == booking
    assert [e.event_type for e in emulator.webhooks] == [
        "booking.created",
        "booking.updated",
        "booking.removed",
    ]
