"""The Graph emulator and the identity endpoint, spoken to over HTTP as a client would."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import msal
import pytest

from bridge.emulators.graph import FaultKind, FaultPlan, RoomPolicy, occurrence_id
from bridge.emulators.identity import IdentityEmulator, TlsAddress, TlsFiles
from tests.plugins.graph import (
    GRAPH_CLIENT_ID,
    GRAPH_NOW,
    GRAPH_SECRET,
    GRAPH_TENANT,
    ROOM,
    USER,
    GraphWorld,
)

PROP = "String {98DAC705-684C-5EA4-91F7-0751078DC845} Name RoombridgeUid"
WINDOW = {"startDateTime": "2025-03-01T00:00:00Z", "endDateTime": "2025-05-01T00:00:00Z"}


@pytest.fixture
def client(graph: GraphWorld) -> Iterator[httpx.Client]:
    token = graph.identity.tokens.issue(GRAPH_TENANT, GRAPH_CLIENT_ID, 3600)
    with httpx.Client(
        base_url=graph.graph_url, headers={"Authorization": f"Bearer {token}"}, timeout=10
    ) as http:
        yield http


def seg(ident: str) -> str:
    return quote(ident, safe="")


def body(start: str, end: str, zone: str = "GMT Standard Time", **extra: Any) -> dict[str, Any]:
    return {
        "subject": "Planning",
        "start": {"dateTime": start, "timeZone": zone},
        "end": {"dateTime": end, "timeZone": zone},
        **extra,
    }


WEEKLY = {
    "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["wednesday"]},
    "range": {"type": "numbered", "startDate": "2025-03-12", "numberOfOccurrences": 6},
}


def create(client: httpx.Client, payload: dict[str, Any], mailbox: str = ROOM) -> dict[str, Any]:
    response = client.post(f"/users/{mailbox}/events", json=payload)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def delta_round(
    client: httpx.Client, url: str, params: dict[str, str] | None = None, size: int = 100
) -> tuple[list[dict[str, Any]], str, int]:
    """All rows of one round, the deltaLink and the number of pages."""
    rows: list[dict[str, Any]] = []
    pages = 0
    headers = {"Prefer": f"odata.maxpagesize={size}"}
    response = client.get(url, params=params, headers=headers)
    while True:
        pages += 1
        assert response.status_code == 200, response.text
        page = response.json()
        rows.extend(page["value"])
        if "@odata.nextLink" in page:
            response = client.get(page["@odata.nextLink"], headers=headers)
            continue
        return rows, page["@odata.deltaLink"], pages


# ----- events, ids, errors -----------------------------------------------------------------------


def test_create_patch_delete_with_etags_and_change_keys(client: httpx.Client):
    created = create(client, body("2025-03-11T09:00:00", "2025-03-11T10:00:00"))
    assert created["@odata.etag"] == f'W/"{created["changeKey"]}"'
    assert created["start"] == {"dateTime": "2025-03-11T09:00:00.0000000", "timeZone": "UTC"}
    assert created["originalStartTimeZone"] == "GMT Standard Time"
    url = f"/users/{ROOM}/events/{seg(created['id'])}"
    patched = client.patch(
        url, json={"subject": "Moved"}, headers={"If-Match": created["@odata.etag"]}
    )
    assert patched.status_code == 200 and patched.json()["changeKey"] != created["changeKey"]
    stale = client.delete(url, headers={"If-Match": created["@odata.etag"]})
    assert stale.status_code == 412
    assert stale.json()["error"]["code"] == "ErrorIrresolvableConflict"
    assert (
        client.delete(url, headers={"If-Match": patched.json()["@odata.etag"]}).status_code == 204
    )
    missing = client.get(url)
    assert missing.status_code == 404
    error = missing.json()["error"]
    assert error["code"] == "ErrorItemNotFound"
    assert error["innerError"]["request-id"] and error["innerError"]["date"]


def test_ids_must_be_percent_encoded(client: httpx.Client, graph: GraphWorld):
    ids = [
        create(client, body("2025-03-11T09:00:00", "2025-03-11T10:00:00"))["id"] for _ in range(12)
    ]
    slashed = next(i for i in ids if "/" in i)
    assert client.get(f"/users/{ROOM}/events/{seg(slashed)}").status_code == 200
    assert client.get(f"/users/{ROOM}/events/{slashed}").status_code in (400, 404)


def test_zones_windows_and_iana_and_prefer_timezone(client: httpx.Client):
    created = create(client, body("2025-07-01T09:00:00", "2025-07-01T10:00:00", "Europe/London"))
    assert created["start"]["dateTime"] == "2025-07-01T08:00:00.0000000"  # BST → UTC
    shown = client.get(
        f"/users/{ROOM}/events/{seg(created['id'])}",
        headers={"Prefer": 'outlook.timezone="Pacific Standard Time"'},
    ).json()
    assert shown["start"] == {
        "dateTime": "2025-07-01T01:00:00.0000000",
        "timeZone": "Pacific Standard Time",
    }
    bad = client.post(
        f"/users/{ROOM}/events",
        json=body("2025-07-01T09:00:00", "2025-07-01T10:00:00", "Mars/Olympus"),
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "TimeZoneNotSupportedException"


def test_unknown_properties_and_bodies_are_refused(client: httpx.Client):
    unknown = client.post(
        f"/users/{ROOM}/events",
        json=body("2025-03-11T09:00:00", "2025-03-11T10:00:00", colour="red"),
    )
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "RequestBodyRead"
    broken = client.post(f"/users/{ROOM}/events", content=b"{not json")
    assert broken.status_code == 400


def test_bodies_are_html_unless_text_is_preferred(client: httpx.Client):
    created = create(
        client,
        body(
            "2025-03-11T09:00:00",
            "2025-03-11T10:00:00",
            body={"contentType": "text", "content": "a < b\nline"},
        ),
    )
    url = f"/users/{ROOM}/events/{seg(created['id'])}"
    assert client.get(url).json()["body"]["contentType"] == "html"
    text = client.get(url, headers={"Prefer": 'outlook.body-content-type="text"'}).json()["body"]
    assert text == {"contentType": "text", "content": "a < b\nline"}


def test_authentication_is_required_and_expires(client: httpx.Client, graph: GraphWorld):
    anonymous = httpx.get(f"{graph.graph_url}/users/{ROOM}/events")
    assert anonymous.status_code == 401
    assert client.get(f"/users/{ROOM}/events").status_code == 200
    graph.identity.tokens.expire_all()
    expired = client.get(f"/users/{ROOM}/events")
    assert expired.status_code == 401
    assert expired.json()["error"]["code"] == "InvalidAuthenticationToken"


# ----- transactionId and extended properties ----------------------------------------------------


def test_transaction_id_deduplicates_creates_and_is_immutable(
    client: httpx.Client, graph: GraphWorld
):
    payload = body("2025-03-11T09:00:00", "2025-03-11T10:00:00", transactionId="tx-1")
    first = create(client, payload)
    again = create(client, payload)
    assert again["id"] == first["id"] and again["transactionId"] == "tx-1"
    assert len(graph.emulator.events(ROOM)) == 1
    changed = client.patch(
        f"/users/{ROOM}/events/{seg(first['id'])}", json={"transactionId": "tx-2"}
    )
    assert changed.status_code == 400
    client.delete(f"/users/{ROOM}/events/{seg(first['id'])}")
    assert create(client, payload)["id"] != first["id"]  # only live events deduplicate


def test_extended_properties_expand_and_filter(client: httpx.Client):
    tagged = create(
        client,
        body(
            "2025-03-11T09:00:00",
            "2025-03-11T10:00:00",
            singleValueExtendedProperties=[{"id": PROP, "value": "roombridge-hq-1"}],
        ),
    )
    create(client, body("2025-03-12T09:00:00", "2025-03-12T10:00:00"))
    url = f"/users/{ROOM}/events/{seg(tagged['id'])}"
    assert "singleValueExtendedProperties" not in client.get(url).json()
    expanded = client.get(
        url, params={"$expand": f"singleValueExtendedProperties($filter=id eq '{PROP}')"}
    )
    assert expanded.json()["singleValueExtendedProperties"] == [
        {"id": PROP, "value": "roombridge-hq-1"}
    ]
    for clause in (
        f"singleValueExtendedProperties/Any(ep: ep/id eq '{PROP}' "
        "and ep/value eq 'ROOMBRIDGE-HQ-1')",
        f"singleValueExtendedProperties/any(p: p/id eq '{PROP}' "
        "and startswith(p/value, 'roombridge-'))",
    ):
        found = client.get(f"/users/{ROOM}/events", params={"$filter": clause}).json()["value"]
        assert [e["id"] for e in found] == [tagged["id"]]
    unfiltered = client.get(url, params={"$expand": "singleValueExtendedProperties"})
    assert unfiltered.status_code == 400


# ----- recurrence -------------------------------------------------------------------------------


def test_series_instances_exceptions_and_cancellations(client: httpx.Client):
    master = create(client, body("2025-03-12T09:00:00", "2025-03-12T10:00:00", recurrence=WEEKLY))
    assert master["type"] == "seriesMaster"
    listing = client.get(
        f"/users/{ROOM}/events/{seg(master['id'])}/instances", params=WINDOW
    ).json()["value"]
    assert [i["start"]["dateTime"][:16] for i in listing] == [
        "2025-03-12T09:00",
        "2025-03-19T09:00",
        "2025-03-26T09:00",
        "2025-04-02T08:00",
        "2025-04-09T08:00",
        "2025-04-16T08:00",
    ]  # 09:00 London stays 09:00 across the DST change
    moved = client.patch(
        f"/users/{ROOM}/events/{seg(listing[1]['id'])}",
        json={
            "subject": "Moved",
            "start": {"dateTime": "2025-03-20T11:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2025-03-20T12:00:00", "timeZone": "UTC"},
        },
    )
    assert moved.status_code == 200 and moved.json()["type"] == "exception"
    assert moved.json()["originalStart"] == "2025-03-19T09:00:00Z"
    crossing = client.patch(
        f"/users/{ROOM}/events/{seg(listing[2]['id'])}",
        json={
            "start": {"dateTime": "2025-04-02T11:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2025-04-02T12:00:00", "timeZone": "UTC"},
        },
    )
    assert crossing.status_code == 400
    assert crossing.json()["error"]["code"] == "ErrorOccurrenceCrossingBoundary"
    assert client.delete(f"/users/{ROOM}/events/{seg(listing[3]['id'])}").status_code == 204
    after = client.get(f"/users/{ROOM}/events/{seg(master['id'])}/instances", params=WINDOW).json()[
        "value"
    ]
    assert [i["type"] for i in after] == [
        "occurrence",
        "exception",
        "occurrence",
        "occurrence",
        "occurrence",
    ]
    assert (
        client.get(f"/users/{ROOM}/events/{seg(master['id'])}").json()["changeKey"]
        != master["changeKey"]
    )


def test_recurrence_is_validated(client: httpx.Client):
    wrong_start = {**WEEKLY, "range": {**WEEKLY["range"], "startDate": "2025-03-13"}}
    response = client.post(
        f"/users/{ROOM}/events",
        json=body("2025-03-12T09:00:00", "2025-03-12T10:00:00", recurrence=wrong_start),
    )
    assert response.status_code == 400 and "startDate" in response.json()["error"]["message"]
    no_days = {"pattern": {"type": "weekly", "interval": 1}, "range": WEEKLY["range"]}
    response = client.post(
        f"/users/{ROOM}/events",
        json=body("2025-03-12T09:00:00", "2025-03-12T10:00:00", recurrence=no_days),
    )
    assert response.status_code == 400


# ----- delta ------------------------------------------------------------------------------------


def test_delta_paging_links_and_rows(client: httpx.Client, graph: GraphWorld):
    create(client, body("2025-03-11T09:00:00", "2025-03-11T10:00:00"))
    master = create(client, body("2025-03-12T09:00:00", "2025-03-12T10:00:00", recurrence=WEEKLY))
    url = f"/users/{ROOM}/calendarView/delta"
    rows, link, pages = delta_round(client, url, WINDOW, size=3)
    assert pages == 3 and link.startswith(graph.graph_url)
    kinds = [r["type"] for r in rows]
    assert kinds == ["singleInstance", "seriesMaster"] + ["occurrence"] * 6
    skeleton = rows[2]
    assert set(skeleton) == {
        "@odata.type",
        "@odata.etag",
        "id",
        "type",
        "seriesMasterId",
        "start",
        "end",
    }
    assert skeleton["seriesMasterId"] == master["id"]
    quiet, link2, _ = delta_round(client, link)
    assert quiet == []
    # Parameters sent again with a token are ignored (they are part of the token).
    again = client.get(
        link2 + "&startDateTime=2020-01-01T00:00:00Z&endDateTime=2030-01-01T00:00:00Z"
    )
    assert again.status_code == 200 and again.json()["value"] == []


def test_delta_refuses_query_options_and_needs_a_window(client: httpx.Client):
    url = f"/users/{ROOM}/calendarView/delta"
    assert client.get(url).status_code == 400
    for option in ("$select", "$expand", "$filter", "$orderby"):
        response = client.get(url, params={**WINDOW, option: "subject"})
        assert response.status_code == 400, option


def test_delta_reports_removals_and_moves_out_of_the_window(
    client: httpx.Client, graph: GraphWorld
):
    gone = create(client, body("2025-03-11T09:00:00", "2025-03-11T10:00:00"))
    away = create(client, body("2025-03-13T09:00:00", "2025-03-13T10:00:00"))
    _rows, link, _ = delta_round(client, f"/users/{ROOM}/calendarView/delta", WINDOW)
    client.delete(f"/users/{ROOM}/events/{seg(gone['id'])}")
    client.patch(
        f"/users/{ROOM}/events/{seg(away['id'])}",
        json={
            "start": {"dateTime": "2025-09-01T09:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2025-09-01T10:00:00", "timeZone": "UTC"},
        },
    )
    rows, _link, _ = delta_round(client, link)
    assert sorted((r["id"], r["@removed"]["reason"]) for r in rows) == sorted(
        [(gone["id"], "deleted"), (away["id"], "deleted")]
    )


def test_delta_quirks_empty_first_page_and_replays(client: httpx.Client, graph: GraphWorld):
    for day in range(11, 16):
        create(client, body(f"2025-03-{day}T09:00:00", f"2025-03-{day}T10:00:00"))
    graph.emulator.set_delta_quirks(replay_rate=0.5, empty_first_page=True)
    first = client.get(f"/users/{ROOM}/calendarView/delta", params=WINDOW).json()
    assert first["value"] == [] and "@odata.nextLink" in first
    rows, _link, _ = delta_round(client, first["@odata.nextLink"])
    assert len(rows) > 5 and len({r["id"] for r in rows}) == 5


def test_expired_tokens_answer_410(client: httpx.Client, graph: GraphWorld):
    _rows, link, _ = delta_round(client, f"/users/{ROOM}/calendarView/delta", WINDOW)
    graph.emulator.require_resync()
    generic = client.get(link)
    assert (
        generic.status_code == 410
        and "calendarView/delta?startDateTime=" in generic.headers["Location"]
    )
    graph.emulator.require_resync(False)
    graph.emulator.expire_delta_tokens()
    expired = client.get(link)
    assert expired.status_code == 410 and expired.json()["error"]["code"] == "SyncStateNotFound"


# ----- throttling and faults --------------------------------------------------------------------


def test_injected_throttle_has_a_fractional_retry_after(client: httpx.Client, graph: GraphWorld):
    graph.emulator.set_faults(FaultPlan(rate=1.0, kinds=(FaultKind.THROTTLE,), retry_after=2.128))
    response = client.get(f"/users/{ROOM}/events")
    assert response.status_code == 429 and response.headers["Retry-After"] == "2.128"
    assert response.json()["error"]["code"] == "TooManyRequests"


def test_lost_reply_applies_the_write(client: httpx.Client, graph: GraphWorld):
    graph.emulator.fail_next(FaultKind.LOST_REPLY)
    response = client.post(
        f"/users/{ROOM}/events", json=body("2025-03-11T09:00:00", "2025-03-11T10:00:00")
    )
    assert response.status_code == 504
    assert len(graph.emulator.events(ROOM)) == 1


def test_more_than_four_requests_in_flight_are_throttled(graph: GraphWorld):
    graph.emulator.latency = 0.3
    token = graph.identity.tokens.issue(GRAPH_TENANT, GRAPH_CLIENT_ID, 3600)
    statuses: list[int] = []

    def call() -> None:
        response = httpx.get(
            f"{graph.graph_url}/users/{ROOM}/events",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert response.json()["error"]["code"] == "ApplicationThrottled"

    threads = [threading.Thread(target=call) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 200, 200, 200, 429, 429]
    assert graph.emulator.peak_concurrency(ROOM) == 6


# ----- rooms ------------------------------------------------------------------------------------


def test_places_lists_rooms(client: httpx.Client):
    rooms = client.get("/places/microsoft.graph.room").json()["value"]
    assert [(r["emailAddress"], r["displayName"], r["capacity"]) for r in rooms] == [
        (ROOM, "Callisto Meeting Room", 10)
    ]


def meeting(start: str, end: str) -> dict[str, Any]:
    return body(
        start,
        end,
        "UTC",
        attendees=[{"type": "resource", "emailAddress": {"address": ROOM, "name": "Callisto"}}],
    )


def room_response(client: httpx.Client, event_id: str) -> str:
    event = client.get(f"/users/{USER}/events/{seg(event_id)}").json()
    return str(event["attendees"][0]["status"]["response"])


def test_rooms_auto_accept_free_slots_and_decline_conflicts(
    client: httpx.Client, graph: GraphWorld
):
    first = create(client, meeting("2025-03-11T09:00:00", "2025-03-11T10:00:00"), USER)
    assert room_response(client, first["id"]) == "accepted"  # processed by the next request
    copies = graph.emulator.events(ROOM)
    assert len(copies) == 1 and copies[0].ical_uid == first["iCalUId"]
    clash = create(client, meeting("2025-03-11T09:30:00", "2025-03-11T10:30:00"), USER)
    assert room_response(client, clash["id"]) == "declined"
    too_long = create(client, meeting("2025-03-12T09:00:00", "2025-03-13T10:00:00"), USER)
    assert room_response(client, too_long["id"]) == "declined"
    far = create(client, meeting("2026-03-12T09:00:00", "2026-03-12T10:00:00"), USER)
    assert room_response(client, far["id"]) == "declined"
    assert len(graph.emulator.events(ROOM)) == 1


def test_the_room_declines_a_meeting(client: httpx.Client, graph: GraphWorld):
    first = create(client, meeting("2025-03-11T09:00:00", "2025-03-11T10:00:00"), USER)
    graph.emulator.settle()
    (copy,) = graph.emulator.events(ROOM)
    before = client.get(f"/users/{USER}/events/{seg(first['id'])}").json()["changeKey"]
    response = client.post(
        f"/users/{ROOM}/events/{seg(copy.id)}/decline", json={"comment": "taken"}
    )
    assert response.status_code == 202
    assert graph.emulator.events(ROOM) == []
    after = client.get(f"/users/{USER}/events/{seg(first['id'])}").json()
    assert after["attendees"][0]["status"]["response"] == "declined"
    assert after["changeKey"] != before
    own = create(client, body("2025-03-14T09:00:00", "2025-03-14T10:00:00"))
    assert client.post(f"/users/{ROOM}/events/{seg(own['id'])}/decline", json={}).status_code == 400


def test_the_room_accepts_and_tags_its_copy(client: httpx.Client, graph: GraphWorld):
    first = create(client, meeting("2025-03-11T09:00:00", "2025-03-11T10:00:00"), USER)
    graph.emulator.settle()
    (copy,) = graph.emulator.events(ROOM)
    url = f"/users/{ROOM}/events/{seg(copy.id)}"
    tag = [{"id": PROP.replace("RoombridgeUid", "RoombridgeAnswer"), "value": "hq 42"}]
    stale = client.patch(url, json={"singleValueExtendedProperties": tag},
                         headers={"If-Match": 'W/"stale"'})
    assert stale.status_code == 412
    tagged = client.patch(url, json={"singleValueExtendedProperties": tag},
                          headers={"If-Match": f'W/"{copy.change_key}"'})
    assert tagged.status_code == 200, tagged.text
    before = client.get(f"/users/{USER}/events/{seg(first['id'])}").json()["changeKey"]
    accepted = client.post(f"{url}/accept", json={"comment": "", "sendResponse": True})
    assert accepted.status_code == 202
    after = client.get(f"/users/{USER}/events/{seg(first['id'])}").json()
    assert after["attendees"][0]["status"]["response"] == "accepted"
    assert after["changeKey"] != before
    read = client.get(url, params={"$expand": "singleValueExtendedProperties($filter=id eq "
                                   f"'{tag[0]['id']}')"}).json()
    assert read["responseStatus"]["response"] == "accepted"
    assert read["singleValueExtendedProperties"][0]["value"] == "hq 42"
    own = create(client, body("2025-03-14T09:00:00", "2025-03-14T10:00:00"))
    assert client.post(f"/users/{ROOM}/events/{seg(own['id'])}/accept", json={}).status_code == 400


def test_the_room_declines_one_occurrence_and_it_stays_declined(
    client: httpx.Client, graph: GraphWorld
):
    weekly = meeting("2025-03-12T09:00:00", "2025-03-12T10:00:00")
    weekly["recurrence"] = WEEKLY
    weekly["start"]["timeZone"] = weekly["end"]["timeZone"] = "GMT Standard Time"
    series = create(client, weekly, USER)
    graph.emulator.settle()
    (copy,) = graph.emulator.events(ROOM)
    second = datetime(2025, 3, 19, 9, 0, tzinfo=UTC)
    occurrence = f"/users/{ROOM}/events/{seg(occurrence_id(copy.id, second))}/decline"
    assert client.post(occurrence, json={"comment": "taken"}).status_code == 202
    (reply,) = [r for r in graph.emulator.replies(USER) if r.response == "declined"]
    assert (reply.event_id, reply.original, reply.comment) == (series["id"], second, "taken")
    (copy,) = graph.emulator.events(ROOM)
    assert second not in copy.live_instances(second, second + timedelta(hours=1))
    assert len(copy.live_instances(second - timedelta(days=7), second + timedelta(days=40))) == 5
    instances = client.get(
        f"/users/{USER}/events/{seg(series['id'])}/instances",
        params={"startDateTime": "2025-03-01T00:00:00Z", "endDateTime": "2025-05-01T00:00:00Z"},
    ).json()["value"]
    answers = {i["originalStart"][:10]: i["attendees"][0]["status"]["response"]
               for i in instances}
    assert answers["2025-03-19"] == "declined" and answers["2025-03-12"] == "accepted"
    # The organizer retitles the series: the room's copy follows, the declined date stays out.
    client.patch(f"/users/{USER}/events/{seg(series['id'])}", json={"subject": "Renamed"})
    graph.emulator.settle()
    (copy,) = graph.emulator.events(ROOM)
    assert copy.fields["subject"] == "Renamed"
    assert second in copy.cancelled


def test_room_policy_may_allow_conflicts(client: httpx.Client, graph: GraphWorld):
    graph.emulator.add_room(
        "europa@contoso.example", "Europa", policy=RoomPolicy(allow_conflicts=True)
    )
    for _ in range(2):
        payload = meeting("2025-03-11T09:00:00", "2025-03-11T10:00:00")
        payload["attendees"][0]["emailAddress"]["address"] = "europa@contoso.example"
        create(client, payload, USER)
    graph.emulator.settle()
    assert len(graph.emulator.events("europa@contoso.example")) == 2


def test_occurrence_ids_are_deterministic():
    start = datetime(2025, 3, 12, 9, tzinfo=UTC)
    assert occurrence_id("AAMk=/+", start) == occurrence_id("AAMk=/+", start)
    assert occurrence_id("AAMk=/+", start) != occurrence_id("AAMk=/+", start + timedelta(days=7))
    assert GRAPH_NOW.tzinfo is UTC


# ----- the identity endpoint --------------------------------------------------------------------


def test_identity_serves_msal_over_tls_and_refuses_bad_credentials(
    graph_identity: tuple[IdentityEmulator, TlsAddress], graph_tls: TlsFiles
):
    identity, _address = graph_identity
    import ssl

    context = ssl.create_default_context(cafile=str(graph_tls.ca_certificate))
    with httpx.Client(verify=context) as http:
        app = msal.ConfidentialClientApplication(
            GRAPH_CLIENT_ID,
            client_credential=GRAPH_SECRET,
            authority=identity.authority(GRAPH_TENANT),
            http_client=http,
            instance_discovery=False,
        )
        result = app.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
        assert result["token_type"] == "Bearer" and result["expires_in"] > 300
        assert identity.tokens.holder(result["access_token"]) is not None
        cached = app.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
        assert cached["token_source"] == "cache"
        wrong = msal.ConfidentialClientApplication(
            GRAPH_CLIENT_ID,
            client_credential="not-the-secret",
            authority=identity.authority(GRAPH_TENANT),
            http_client=http,
            instance_discovery=False,
        ).acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
        assert wrong["error"] == "invalid_client" and 7000215 in wrong["error_codes"]
        with pytest.raises(ValueError):
            msal.ConfidentialClientApplication(
                GRAPH_CLIENT_ID,
                client_credential=GRAPH_SECRET,
                authority=identity.authority("no-such-tenant"),
                http_client=http,
                instance_discovery=False,
            )
        scope = http.post(
            identity.authority(GRAPH_TENANT) + "/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": GRAPH_CLIENT_ID,
                "client_secret": GRAPH_SECRET,
                "scope": "https://graph.microsoft.com/User.Read",
            },
        )
        assert scope.status_code == 400 and scope.json()["error"] == "invalid_scope"
    assert GRAPH_SECRET not in repr(identity) + repr(identity.requests)


def test_identity_is_https_only(graph_identity: tuple[IdentityEmulator, TlsAddress]):
    _identity, address = graph_identity
    assert address.base_url.startswith("https://")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{address.base_url}/{GRAPH_TENANT}/v2.0/.well-known/openid-configuration")


def test_calendar_view_expands_series_into_instances(client: httpx.Client):
    create(client, body("2025-03-11T09:00:00", "2025-03-11T10:00:00"))
    create(client, body("2025-03-12T09:00:00", "2025-03-12T10:00:00", recurrence=WEEKLY))
    view = client.get(f"/users/{ROOM}/calendarView", params={**WINDOW, "$top": "50"}).json()
    assert [e["type"] for e in view["value"]] == ["singleInstance"] + ["occurrence"] * 6
    assert all(e["subject"] == "Planning" for e in view["value"])
