"""The Google Calendar emulator answers like Google (calendars.md §1.11), byte for byte where
the bridge relies on it: tokens, sync tokens and paging, ids, etags, recurrence, attendees,
error bodies, quota and faults. Driven with raw HTTP and with google-auth itself."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import google_auth_httplib2
import httplib2
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import crypt
from google.auth import jwt as google_jwt
from google.auth.exceptions import RefreshError
from google.oauth2 import service_account

from bridge.emulators.google import (
    JWT_BEARER_GRANT,
    TOKEN_AUDIENCE,
    FaultKind,
    GoogleCalendarEmulator,
    expand,
    instance_id,
)
from tests.plugins.google import GOOGLE_ADMIN, SERVICE_ACCOUNT, GoogleWorld, new_google_world

LONDON = ZoneInfo("Europe/London")
SCOPE = "https://www.googleapis.com/auth/calendar"


def credentials(world: GoogleWorld, subject: str = GOOGLE_ADMIN) -> Any:
    info = json.loads(world.key_file.read_text())
    return service_account.Credentials.from_service_account_info(
        info, scopes=[SCOPE], subject=subject
    )


def access_token(world: GoogleWorld) -> str:
    creds = credentials(world)
    creds.refresh(google_auth_httplib2.Request(httplib2.Http()))
    return str(creds.token)


class Api:
    """Raw HTTP to the emulator, with a bearer token fetched through google-auth."""

    def __init__(self, world: GoogleWorld) -> None:
        self.world = world
        self.client = httpx.Client(base_url=world.base_url + "/calendar/v3", timeout=10)
        self.token = access_token(world)

    def calendar(self, calendar_id: str | None = None) -> str:
        return f"/calendars/{calendar_id or self.world.room}/events"

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kwargs)

    def insert(self, body: dict[str, Any], calendar_id: str | None = None) -> dict[str, Any]:
        response = self.request("POST", self.calendar(calendar_id), json=body)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def list_all(self, **params: Any) -> tuple[list[dict[str, Any]], str, int]:
        """Every page; returns (items, nextSyncToken, pages)."""
        items: list[dict[str, Any]] = []
        pages = 0
        page_token = None
        calendar_id = params.pop("calendar_id", None)
        while True:
            query = dict(params, **({"pageToken": page_token} if page_token else {}))
            response = self.request("GET", self.calendar(calendar_id), params=query)
            assert response.status_code == 200, response.text
            page = response.json()
            pages += 1
            items.extend(page["items"])
            assert not ("nextPageToken" in page and "nextSyncToken" in page)
            if "nextSyncToken" in page:
                return items, page["nextSyncToken"], pages
            page_token = page["nextPageToken"]


@pytest.fixture
def api(google: GoogleWorld) -> Iterator[Api]:
    client = Api(google)
    yield client
    client.client.close()


def timed(start: datetime, hours: float = 1, **fields: Any) -> dict[str, Any]:
    end = start + timedelta(hours=hours)
    zone = str(getattr(start.tzinfo, "key", "UTC"))
    return {
        "start": {"dateTime": start.isoformat(), "timeZone": zone},
        "end": {"dateTime": end.isoformat(), "timeZone": zone},
        **fields,
    }


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert error["code"] == response.status_code
    assert error["message"] == error["errors"][0]["message"]
    return dict(error["errors"][0])


# ----- token endpoint ---------------------------------------------------------------------------


def test_google_auth_gets_a_token_for_the_delegated_user(google: GoogleWorld):
    creds = credentials(google)
    creds.refresh(google_auth_httplib2.Request(httplib2.Http()))
    assert creds.token and creds.expiry > datetime.now(UTC).replace(tzinfo=None)
    assert google.emulator.token_grants() == {"issued": 1}


def test_a_subject_outside_the_delegation_is_unauthorized_client(google: GoogleWorld):
    google.emulator.add_user("mallory@example.com")
    creds = credentials(google, subject="mallory@example.com")
    with pytest.raises(RefreshError, match="unauthorized_client"):
        creds.refresh(google_auth_httplib2.Request(httplib2.Http()))


def signed_assertion(key_pem: bytes, key_id: str | None, **claims: Any) -> str:
    now = int(time.time())
    payload = {
        "iss": SERVICE_ACCOUNT,
        "sub": GOOGLE_ADMIN,
        "aud": TOKEN_AUDIENCE,
        "scope": SCOPE,
        "iat": now,
        "exp": now + 3600,
        **claims,
    }
    signer = crypt.RSASigner.from_string(key_pem, key_id)
    return google_jwt.encode(signer, payload).decode()


def own_key(world: GoogleWorld) -> tuple[bytes, str]:
    info = json.loads(world.key_file.read_text())
    return info["private_key"].encode(), info["private_key_id"]


@pytest.mark.parametrize(
    ("claims", "error"),
    [
        ({"aud": "http://127.0.0.1/token"}, "invalid_grant"),
        ({"exp": int(time.time()) - 60, "iat": int(time.time()) - 3660}, "invalid_grant"),
        ({"iss": "someone@else.iam.gserviceaccount.com"}, "invalid_grant"),
        ({"scope": "https://www.googleapis.com/auth/drive"}, "invalid_scope"),
        ({"sub": "nobody@example.com"}, "unauthorized_client"),
    ],
)
def test_the_token_endpoint_checks_every_claim(
    google: GoogleWorld, claims: dict[str, Any], error: str
):
    key, key_id = own_key(google)
    form = {"grant_type": JWT_BEARER_GRANT, "assertion": signed_assertion(key, key_id, **claims)}
    response = httpx.post(f"{google.base_url}/token", data=form)
    assert response.status_code == 400
    assert response.json()["error"] == error


def test_the_token_endpoint_checks_the_signature(google: GoogleWorld):
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=1024).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    form = {"grant_type": JWT_BEARER_GRANT, "assertion": signed_assertion(stranger, None)}
    response = httpx.post(f"{google.base_url}/token", data=form)
    assert response.status_code == 400
    refused = response.json()
    assert refused["error"] == "invalid_grant"
    assert refused["error_description"].startswith("Invalid JWT")
    good_key, key_id = own_key(google)
    form["assertion"] = signed_assertion(good_key, key_id)
    issued = httpx.post(f"{google.base_url}/token", data=form).json()
    assert set(issued) == {"access_token", "expires_in", "token_type"}
    assert issued["token_type"] == "Bearer"


def test_requests_without_a_valid_token_get_googles_401(google: GoogleWorld):
    response = httpx.get(f"{google.api_endpoint}calendars/{google.room}/events")
    assert response.status_code == 401
    assert error_of(response) == {
        "domain": "global",
        "reason": "authError",
        "message": "Invalid Credentials",
        "locationType": "header",
        "location": "Authorization",
    }


def test_expired_tokens_are_refused(api: Api, google: GoogleWorld):
    assert api.request("GET", api.calendar()).status_code == 200
    google.emulator.expire_tokens()
    assert api.request("GET", api.calendar()).status_code == 401


def test_a_user_cannot_see_a_calendar_not_shared_with_them(api: Api, google: GoogleWorld):
    google.emulator.add_room("c_private@resource.calendar.google.com", "Private", managers=[])
    response = api.request("GET", api.calendar("c_private@resource.calendar.google.com"))
    assert response.status_code == 404
    assert error_of(response) == {"domain": "global", "reason": "notFound", "message": "Not Found"}


# ----- ids, etags, deletes ----------------------------------------------------------------------


START = datetime(2025, 3, 24, 9, 0, tzinfo=LONDON)


@pytest.mark.parametrize("bad", ["abc", "UPPERCASE0", "has_underscore", "wxyz01234", "a" * 1025])
def test_client_ids_outside_base32hex_are_invalid(api: Api, bad: str):
    response = api.request("POST", api.calendar(), json=timed(START, id=bad))
    assert response.status_code == 400
    assert error_of(response) == {
        "domain": "global",
        "reason": "invalid",
        "message": "Invalid resource id value.",
    }


def test_a_taken_id_is_409_even_after_deletion(api: Api):
    api.insert(timed(START, id="roombridge0001"))
    again = api.request("POST", api.calendar(), json=timed(START, id="roombridge0001"))
    assert again.status_code == 409
    assert error_of(again) == {
        "domain": "global",
        "reason": "duplicate",
        "message": "The requested identifier already exists.",
    }
    assert api.request("DELETE", api.calendar() + "/roombridge0001").status_code == 204
    assert (
        api.request("POST", api.calendar(), json=timed(START, id="roombridge0001")).status_code
        == 409
    )
    gone = api.request("GET", api.calendar() + "/roombridge0001")
    assert gone.status_code == 200 and gone.json()["status"] == "cancelled"
    twice = api.request("DELETE", api.calendar() + "/roombridge0001")
    assert twice.status_code == 410
    assert error_of(twice) == {
        "domain": "global",
        "reason": "deleted",
        "message": "Resource has been deleted",
    }


def test_server_fields_and_generated_ids(api: Api):
    created = api.insert(timed(START, summary="Board"))
    assert set(created["id"]) <= set("0123456789abcdefghijklmnopqrstuv")
    assert created["iCalUID"] == created["id"] + "@google.com"
    assert created["status"] == "confirmed" and created["sequence"] == 0
    assert created["etag"].startswith('"') and created["updated"].endswith("Z")
    assert created["organizer"]["email"] == api.world.room


def test_etags_change_on_every_write_and_if_match_is_enforced(api: Api):
    created = api.insert(timed(START, summary="Board", id="etagtest01"))
    path = api.calendar() + "/etagtest01"
    patched = api.request(
        "PATCH", path, json={"summary": "Board 2"}, headers={"If-Match": created["etag"]}
    )
    assert patched.status_code == 200 and patched.json()["etag"] != created["etag"]
    stale = api.request("PUT", path, json=timed(START), headers={"If-Match": created["etag"]})
    assert stale.status_code == 412
    assert error_of(stale) == {
        "domain": "global",
        "reason": "conditionNotMet",
        "message": "Precondition Failed",
        "locationType": "header",
        "location": "If-Match",
    }
    assert api.request("DELETE", path, headers={"If-Match": created["etag"]}).status_code == 412
    current = patched.json()["etag"]
    assert api.request("DELETE", path, headers={"If-Match": current}).status_code == 204


def test_update_replaces_and_patch_merges_extended_properties(api: Api):
    body = timed(START, id="props00001")
    body["extendedProperties"] = {"private": {"a": "1", "b": "2"}, "shared": {"s": "x"}}
    created = api.insert(body)
    path = api.calendar() + "/props00001"
    patched = api.request(
        "PATCH", path, json={"extendedProperties": {"private": {"a": None, "c": "3"}}}
    ).json()
    assert patched["extendedProperties"] == {"private": {"b": "2", "c": "3"}, "shared": {"s": "x"}}
    replaced = api.request("PUT", path, json=timed(START, summary="only this")).json()
    assert "extendedProperties" not in replaced
    assert replaced["summary"] == "only this" and replaced["id"] == created["id"]


def test_long_property_keys_are_dropped_and_long_values_truncated(api: Api):
    body = timed(START)
    body["extendedProperties"] = {
        "private": {"k" * 45: "dropped", "ok": "v" * 1500, "k" * 44: "kept"}
    }
    stored = api.insert(body)["extendedProperties"]["private"]
    assert stored == {"ok": "v" * 1024, "k" * 44: "kept"}


def test_start_and_end_are_required_and_ordered(api: Api):
    missing = api.request("POST", api.calendar(), json={"start": timed(START)["start"]})
    assert missing.status_code == 400
    assert error_of(missing) == {
        "domain": "global",
        "reason": "required",
        "message": "Missing end time.",
    }
    backwards = timed(START)
    backwards["end"] = timed(START - timedelta(hours=2))["start"]
    response = api.request("POST", api.calendar(), json=backwards)
    assert response.status_code == 400 and error_of(response)["reason"] == "timeRangeEmpty"


# ----- listing, sync tokens, paging -------------------------------------------------------------


def test_sync_token_only_on_the_last_page_and_incremental_changes(api: Api):
    ids = [api.insert(timed(START + timedelta(days=i)))["id"] for i in range(7)]
    items, token, pages = api.list_all(maxResults=3)
    assert pages == 3 and sorted(i["id"] for i in items) == sorted(ids)
    unchanged = api.request("GET", api.calendar(), params={"syncToken": token}).json()
    assert unchanged["items"] == [] and unchanged["nextSyncToken"] == token
    api.request("PATCH", api.calendar() + f"/{ids[0]}", json={"summary": "moved"})
    api.request("DELETE", api.calendar() + f"/{ids[1]}")
    changes, _, _ = api.list_all(syncToken=token)
    by_id = {item["id"]: item for item in changes}
    assert set(by_id) == {ids[0], ids[1]}
    assert by_id[ids[0]]["summary"] == "moved"
    assert by_id[ids[1]] == {
        "kind": "calendar#event",
        "etag": by_id[ids[1]]["etag"],
        "id": ids[1],
        "status": "cancelled",
    }
    full, _, _ = api.list_all()
    assert ids[1] not in {item["id"] for item in full}


def test_short_and_empty_pages_still_list_everything(api: Api, google: GoogleWorld):
    ids = {api.insert(timed(START + timedelta(hours=i)))["id"] for i in range(30)}
    google.emulator.set_short_pages()
    items, _, pages = api.list_all(maxResults=10)
    assert {item["id"] for item in items} == ids and len(items) == 30
    assert pages > 3


def test_invalidated_sync_tokens_answer_410_with_googles_body(api: Api, google: GoogleWorld):
    api.insert(timed(START))
    _, token, _ = api.list_all()
    google.emulator.invalidate_sync_tokens(google.room)
    response = api.request("GET", api.calendar(), params={"syncToken": token})
    assert response.status_code == 410
    assert response.json() == {
        "error": {
            "errors": [
                {
                    "domain": "calendar",
                    "reason": "fullSyncRequired",
                    "message": "Sync token is no longer valid, a full sync is required.",
                    "locationType": "parameter",
                    "location": "syncToken",
                }
            ],
            "code": 410,
            "message": "Sync token is no longer valid, a full sync is required.",
        }
    }
    _, fresh, _ = api.list_all()
    assert api.request("GET", api.calendar(), params={"syncToken": fresh}).status_code == 200


@pytest.mark.parametrize(
    "extra",
    [
        {"timeMin": "2025-01-01T00:00:00Z"},
        {"q": "x"},
        {"showDeleted": "false"},
        {"iCalUID": "x"},
        {"privateExtendedProperty": "a=b"},
        {"orderBy": "updated"},
    ],
)
def test_sync_tokens_refuse_restrictions(api: Api, extra: dict[str, str]):
    _, token, _ = api.list_all()
    response = api.request("GET", api.calendar(), params={"syncToken": token, **extra})
    assert response.status_code == 400
    assert error_of(response) == {
        "domain": "calendar",
        "reason": "syncTokenWithRequestRestrictions",
        "message": "Sync token cannot be used with other request restrictions.",
        "locationType": "parameter",
        "location": "syncToken",
    }


def test_a_token_from_other_list_parameters_needs_a_full_sync(api: Api):
    _, token, _ = api.list_all(singleEvents="true")
    response = api.request("GET", api.calendar(), params={"syncToken": token})
    assert response.status_code == 410


def test_time_filters_use_end_after_min_and_start_before_max(api: Api):
    inside = api.insert(timed(START, summary="inside"))
    api.insert(timed(START - timedelta(hours=1), summary="ends at min"))
    api.insert(timed(START + timedelta(hours=3), summary="starts at max"))
    items, _, _ = api.list_all(
        timeMin=START.isoformat(), timeMax=(START + timedelta(hours=3)).isoformat()
    )
    assert [item["id"] for item in items] == [inside["id"]]
    empty = api.request(
        "GET", api.calendar(), params={"timeMin": START.isoformat(), "timeMax": START.isoformat()}
    )
    assert empty.status_code == 400 and error_of(empty)["reason"] == "timeRangeEmpty"
    no_single = api.request("GET", api.calendar(), params={"orderBy": "startTime"})
    assert no_single.status_code == 400


def test_long_gets_arrive_as_posts_with_a_method_override(api: Api):
    created = api.insert(timed(START, id="override01"))
    response = api.request(
        "POST",
        api.calendar(),
        content="iCalUID=override01%40google.com&alt=json",
        headers={
            "X-HTTP-Method-Override": "GET",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert response.status_code == 200
    assert [item["id"] for item in response.json()["items"]] == [created["id"]]


def test_private_extended_property_filter(api: Api):
    tagged = timed(START)
    tagged["extendedProperties"] = {"private": {"roombridgeUid": "x-1"}}
    wanted = api.insert(tagged)
    api.insert(timed(START))
    items, _, _ = api.list_all(privateExtendedProperty="roombridgeUid=x-1")
    assert [item["id"] for item in items] == [wanted["id"]]


# ----- recurrence -------------------------------------------------------------------------------


WEEKLY = ["RRULE:FREQ=WEEKLY;COUNT=4", "EXDATE;TZID=Europe/London:20250407T090000"]
SERIES_START = datetime(2025, 3, 17, 9, 0, tzinfo=LONDON)  # London changes to BST on 30 March


def test_single_events_expand_on_the_wall_clock_across_dst(api: Api):
    master = api.insert(timed(SERIES_START, recurrence=WEEKLY, id="series0001"))
    items, _, _ = api.list_all(singleEvents="true", orderBy="startTime")
    starts = [datetime.fromisoformat(item["start"]["dateTime"]) for item in items]
    assert [s.astimezone(LONDON).strftime("%m-%d %H:%M") for s in starts] == [
        "03-17 09:00",
        "03-24 09:00",
        "03-31 09:00",
    ]
    assert [s.astimezone(UTC).hour for s in starts] == [9, 9, 8]
    assert [item["id"] for item in items] == [
        "series0001_20250317T090000Z",
        "series0001_20250324T090000Z",
        "series0001_20250331T080000Z",
    ]
    assert all(item["recurringEventId"] == master["id"] for item in items)
    assert items[2]["originalStartTime"] == items[2]["start"]


def test_instances_and_exceptions(api: Api):
    api.insert(timed(SERIES_START, recurrence=WEEKLY, id="series0002", summary="Sync"))
    path = api.calendar() + "/series0002/instances"
    second = "2025-03-24T09:00:00Z"
    found = api.request("GET", path, params={"originalStart": second}).json()["items"]
    assert [item["id"] for item in found] == ["series0002_20250324T090000Z"]
    moved = dict(
        found[0],
        start=timed(SERIES_START + timedelta(days=8))["start"],
        end=timed(SERIES_START + timedelta(days=8), 2)["end"],
        summary="Moved",
    )
    put = api.request("PUT", api.calendar() + f"/{found[0]['id']}", json=moved)
    assert put.status_code == 200 and put.json()["recurringEventId"] == "series0002"
    third = api.request("GET", path, params={"originalStart": "2025-03-31T08:00:00Z"}).json()
    cancel = api.request("DELETE", api.calendar() + f"/{third['items'][0]['id']}")
    assert cancel.status_code == 204
    listing, _, _ = api.list_all()
    by_id = {item["id"]: item for item in listing}
    assert by_id["series0002_20250324T090000Z"]["summary"] == "Moved"
    assert by_id["series0002_20250331T080000Z"] == {
        "kind": "calendar#event",
        "etag": by_id["series0002_20250331T080000Z"]["etag"],
        "id": "series0002_20250331T080000Z",
        "status": "cancelled",
        "recurringEventId": "series0002",
        "originalStartTime": {"dateTime": "2025-03-31T09:00:00+01:00", "timeZone": "Europe/London"},
    }
    # timeMin is inclusive for instances: an instance ending exactly then is listed.
    inclusive = api.request(
        "GET", path, params={"timeMin": "2025-03-17T10:00:00Z", "timeMax": "2025-03-18T00:00:00Z"}
    ).json()["items"]
    assert [item["id"] for item in inclusive] == ["series0002_20250317T090000Z"]
    singles, _, _ = api.list_all(singleEvents="true")
    assert sorted(i["id"] for i in singles) == [
        "series0002_20250317T090000Z",
        "series0002_20250324T090000Z",
    ]


def test_a_master_change_removes_exceptions_the_rule_no_longer_has(api: Api):
    api.insert(timed(SERIES_START, recurrence=["RRULE:FREQ=WEEKLY;COUNT=4"], id="series0003"))
    _, token, _ = api.list_all()
    api.request("PATCH", api.calendar() + "/series0003_20250324T090000Z", json={"summary": "x"})
    api.request(
        "PATCH", api.calendar() + "/series0003", json={"recurrence": ["RRULE:FREQ=DAILY;COUNT=2"]}
    )
    changes, _, _ = api.list_all(syncToken=token)
    purged = [item for item in changes if item["id"] == "series0003_20250324T090000Z"]
    assert purged == [
        {
            "kind": "calendar#event",
            "etag": purged[0]["etag"],
            "id": purged[0]["id"],
            "status": "cancelled",
        }
    ]
    assert api.request("GET", api.calendar() + "/series0003_20250324T090000Z").status_code == 404


def test_expansion_handles_rdate_exdate_exrule_and_until_in_utc():
    master = {
        "start": {"dateTime": "2025-10-20T09:00:00+01:00", "timeZone": "Europe/London"},
        "end": {"dateTime": "2025-10-20T10:00:00+01:00", "timeZone": "Europe/London"},
        "recurrence": [
            "RRULE:FREQ=DAILY;UNTIL=20251030T090000Z",
            "EXRULE:FREQ=WEEKLY;BYDAY=SA,SU",
            "RDATE;TZID=Europe/London:20251101T120000",
            "EXDATE:20251022T080000Z",
        ],
    }
    starts = [s.astimezone(LONDON).strftime("%d %H:%M") for s in expand(master).starts]
    assert starts == [
        "20 09:00",
        "21 09:00",
        "23 09:00",
        "24 09:00",
        "27 09:00",
        "28 09:00",
        "29 09:00",
        "30 09:00",
        "01 12:00",
    ]
    assert (
        instance_id("abcde", datetime(2025, 10, 27, 9, tzinfo=UTC), False)
        == "abcde_20251027T090000Z"
    )


# ----- rooms answer invitations -----------------------------------------------------------------


def invitation(start: datetime, room: str, **fields: Any) -> dict[str, Any]:
    return timed(
        start,
        attendees=[{"email": GOOGLE_ADMIN}, {"email": room, "resource": True}],
        **fields,
    )


def test_a_room_accepts_when_free_declines_when_busy(api: Api, google: GoogleWorld):
    _, admin_token, _ = api.list_all(calendar_id=GOOGLE_ADMIN)
    first = api.insert(invitation(START, google.room, summary="Planning"), GOOGLE_ADMIN)
    # The room answers shortly after (on the next request), bumping the organizer's event.
    changes, _, _ = api.list_all(calendar_id=GOOGLE_ADMIN, syncToken=admin_token)
    answered = next(item for item in changes if item["id"] == first["id"])
    assert answered["etag"] != first["etag"]
    room_answer = next(a for a in answered["attendees"] if a["email"] == google.room)
    assert room_answer["responseStatus"] == "accepted"
    room_copy = api.request("GET", api.calendar() + f"/{first['id']}").json()
    assert room_copy["organizer"]["email"] == GOOGLE_ADMIN
    clash = api.insert(invitation(START + timedelta(minutes=30), google.room), GOOGLE_ADMIN)
    api.request("GET", api.calendar(GOOGLE_ADMIN))
    clashed = api.request("GET", api.calendar(GOOGLE_ADMIN) + f"/{clash['id']}").json()
    assert {a["email"]: a["responseStatus"] for a in clashed["attendees"]}[
        google.room
    ] == "declined"
    assert api.request("GET", api.calendar() + f"/{clash['id']}").status_code == 404


def test_only_the_organizer_changes_shared_fields(api: Api, google: GoogleWorld):
    event = api.insert(invitation(START, google.room), GOOGLE_ADMIN)
    api.request("GET", api.calendar())
    copy = api.request("GET", api.calendar() + f"/{event['id']}").json()
    refused = api.request("PATCH", api.calendar() + f"/{event['id']}", json={"summary": "mine"})
    assert refused.status_code == 403
    assert error_of(refused) == {
        "domain": "calendar",
        "reason": "forbiddenForNonOrganizer",
        "message": "Shared properties can only be changed by the organizer of the event.",
    }
    attendees = [dict(a) for a in copy["attendees"]]
    for attendee in attendees:
        if attendee["email"] == google.room:
            attendee["responseStatus"] = "declined"
    declined = api.request(
        "PATCH", api.calendar() + f"/{event['id']}", json={"attendees": attendees}
    )
    assert declined.status_code == 200
    organizer_view = api.request("GET", api.calendar(GOOGLE_ADMIN) + f"/{event['id']}").json()
    assert {a["email"]: a["responseStatus"] for a in organizer_view["attendees"]}[
        google.room
    ] == "declined"


def test_a_copy_takes_private_tags_by_patch_never_an_update(api: Api, google: GoogleWorld):
    event = api.insert(invitation(START, google.room, summary="Planning"), GOOGLE_ADMIN)
    api.request("GET", api.calendar())
    path = api.calendar() + f"/{event['id']}"
    copy = api.request("GET", path).json()
    # Even an unchanged body may not be PUT on an attendee's copy.
    replaced = api.request("PUT", path, json={k: copy[k] for k in ("summary", "start", "end")})
    assert replaced.status_code == 403
    assert error_of(replaced)["reason"] == "forbiddenForNonOrganizer"
    shared = api.request(
        "PATCH", path, json={"extendedProperties": {"shared": {"booking": "42"}}}
    )
    assert shared.status_code == 403
    tagged = api.request(
        "PATCH", path, json={"extendedProperties": {"private": {"roombridgeKeys": "42"}}}
    )
    assert tagged.status_code == 200, tagged.text
    assert tagged.json()["extendedProperties"]["private"] == {"roombridgeKeys": "42"}
    organizer_view = api.request("GET", api.calendar(GOOGLE_ADMIN) + f"/{event['id']}").json()
    assert "extendedProperties" not in organizer_view
    # The organizer's next edit reaches the copy; the room's private tags stay on it.
    api.request("PATCH", api.calendar(GOOGLE_ADMIN) + f"/{event['id']}", json={"summary": "New"})
    api.request("GET", api.calendar())
    again = api.request("GET", path).json()
    assert again["summary"] == "New"
    assert again["extendedProperties"]["private"] == {"roombridgeKeys": "42"}


# ----- import, watch ----------------------------------------------------------------------------


def test_import_needs_an_ical_uid_and_refuses_duplicates(api: Api):
    path = api.calendar() + "/import"
    missing = api.request("POST", path, json=timed(START))
    assert missing.status_code == 400
    assert api.request("POST", path, json=timed(START, iCalUID="x@example.com")).status_code == 200
    assert api.request("POST", path, json=timed(START, iCalUID="x@example.com")).status_code == 409


def test_watch_returns_a_channel_that_can_be_stopped(api: Api):
    channel = api.request(
        "POST",
        api.calendar() + "/watch",
        json={"id": "chan-1", "type": "web_hook", "address": "https://example.com/hook"},
    ).json()
    assert channel["kind"] == "api#channel" and channel["id"] == "chan-1"
    stop = {"id": "chan-1", "resourceId": channel["resourceId"]}
    assert api.request("POST", "/channels/stop", json=stop).status_code == 204
    assert api.request("POST", "/channels/stop", json=stop).status_code == 404


# ----- quota, faults, counters ------------------------------------------------------------------


def test_the_per_user_quota_answers_403_user_rate_limit(google_server: Any, tmp_path: Any):
    mount, server = google_server
    world = new_google_world(server.base_url, tmp_path, quota_per_minute=5)
    mount.current = world.emulator.app
    try:
        api = Api(world)
        statuses = [api.request("GET", api.calendar()).status_code for _ in range(7)]
        assert statuses == [200] * 5 + [403, 403]
        limited = api.request("GET", api.calendar())
        assert error_of(limited) == {
            "domain": "usageLimits",
            "reason": "userRateLimitExceeded",
            "message": "User Rate Limit Exceeded",
        }
    finally:
        mount.current = None


@pytest.mark.parametrize(
    ("kind", "status", "reason"),
    [
        (FaultKind.RATE_LIMIT, 403, "rateLimitExceeded"),
        (FaultKind.USER_RATE_LIMIT, 403, "userRateLimitExceeded"),
        (FaultKind.TOO_MANY_REQUESTS, 429, "rateLimitExceeded"),
        (FaultKind.BACKEND_ERROR, 500, "backendError"),
        (FaultKind.UNAVAILABLE, 503, "backendError"),
        (FaultKind.UNAUTHORIZED, 401, "authError"),
    ],
)
def test_injected_faults_look_like_google(
    api: Api, google: GoogleWorld, kind: FaultKind, status: int, reason: str
):
    google.emulator.fail_next(kind, retry_after=7)
    response = api.request("GET", api.calendar())
    assert response.status_code == status
    assert error_of(response)["reason"] == reason
    if kind is FaultKind.TOO_MANY_REQUESTS:
        assert response.headers["Retry-After"] == "7"
    assert api.request("GET", api.calendar()).status_code == 200


def test_a_lost_reply_still_applies_the_write(api: Api, google: GoogleWorld):
    google.emulator.fail_next(FaultKind.LOST_REPLY)
    with pytest.raises(httpx.HTTPError):
        api.request("POST", api.calendar(), json=timed(START, id="lostrepl01"))
    assert google.emulator.event(google.room, "lostrepl01") is not None
    assert (
        api.request("POST", api.calendar(), json=timed(START, id="lostrepl01")).status_code == 409
    )


def test_requests_are_counted_per_route_without_secrets(api: Api, google: GoogleWorld):
    api.insert(timed(START, id="counted001"))
    api.request("GET", api.calendar() + "/counted001")
    api.request("GET", api.calendar())
    counts = google.emulator.request_counts()
    assert counts["POST /calendar/v3/calendars/{calendar_id}/events"] == 1
    assert counts["GET /calendar/v3/calendars/{calendar_id}/events/{event_id}"] == 1
    assert counts["GET /calendar/v3/calendars/{calendar_id}/events"] == 1
    assert counts["POST /token"] == 1
    assert all(r.user in (None, GOOGLE_ADMIN) for r in google.emulator.requests)
    assert api.token not in repr(google.emulator.requests)


def test_an_emulator_alone_is_cheap_to_make():
    emulator = GoogleCalendarEmulator(quota_per_minute=None)
    emulator.add_user("a@example.com")
    assert "a@example.com" in repr(emulator)
