"""Nexudus → Microsoft 365 end to end: the sync engine's scenarios against the Graph emulator.

msal authenticates against the identity emulator over TLS (throwaway CA as ``ca_bundle``);
Graph is the strict emulator. The calendar's truth is the emulator's state.
"""

from __future__ import annotations

import io
import json
import os
import random
from collections.abc import Iterator
from contextlib import redirect_stdout
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from bridge.cli import main
from bridge.emulators.graph import FaultKind, FaultPlan
from bridge.emulators.identity import IdentityEmulator, TlsAddress, TlsFiles
from bridge.emulators.server import RunningServer, SwappableApp
from tests.e2e.crash import KillTimer
from tests.e2e.office365_world import Office365World, event_uid
from tests.plugins.graph import GRAPH_SECRET, ROOM

KILL_RUNS = 20


@pytest.fixture
def make_world(
    graph_server: tuple[SwappableApp, RunningServer],
    graph_identity: tuple[IdentityEmulator, TlsAddress],
    graph_tls: TlsFiles,
    tmp_path: Path,
) -> Iterator[object]:
    """A factory of running worlds (one per test)."""
    identity, _address = graph_identity
    identity.lifetime = 3599
    stack: list[object] = []

    def make(**options: object) -> Office365World:
        world = Office365World(
            graph_server,
            identity,
            graph_tls.ca_certificate,
            tmp_path,
            **options,  # type: ignore[arg-type]
        )
        context = world.running()
        context.__enter__()
        stack.append(context)
        return world

    yield make
    for context in reversed(stack):
        context.__exit__(None, None, None)  # type: ignore[attr-defined]


@pytest.fixture
def world(make_world: object) -> Office365World:
    return make_world()  # type: ignore[operator]


def days(n: float) -> timedelta:
    return timedelta(days=n)


def graph_client(world: Office365World) -> httpx.Client:
    """A third-party client of the mailbox (an Outlook user editing the room calendar)."""
    token = world.identity.tokens.issue("someone", "outlook", 3600)
    return httpx.Client(
        base_url=world.graph_url, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def only_event(world: Office365World) -> tuple[str, str]:
    """(uid, event id) of the single bridge event of the room."""
    ((uid, events),) = world.bridge_events().items()
    return uid, events[0].id


# ----- singles, series, moves, deletions ---------------------------------------------------------


def test_singles_and_tentative_reach_the_mailbox(world: Office365World):
    world.book(world.now + days(1), Notes="Board meeting")
    world.book(world.now + days(2), hours=2, Tentative=True)
    outcome = world.sync()
    assert outcome.code == 0, outcome.document
    assert outcome.room["created"] == 2
    world.assert_converged()
    shown = sorted(e.fields.get("showAs") for e in world.graph.events(ROOM))
    assert shown == ["busy", "tentative"]


def test_second_pass_is_one_delta_request_and_writes_nothing(world: Office365World):
    for i in range(12):
        world.book(world.now + days(1) + timedelta(hours=3 * i))
    world.sync()
    before = len(world.graph.requests)
    again = world.sync()
    assert again.room["requests"] == {"calendar": 1}
    assert (again.room["created"], again.room["updated"], again.room["deleted"]) == (0, 0, 0)
    assert [r.route for r in world.graph.requests[before:]] == ["delta"]


def test_series_with_deleted_and_moved_members_is_one_series_with_exceptions(
    world: Office365World,
):
    world.book_series(world.now + days(1), days=60)
    members = world.series_members()
    assert len(members) >= 8
    world.nexudus.cancel_booking(members[2]["Id"])
    moved_to = _utc_of(members[4]["FromTime"]) + timedelta(hours=3)
    world.nexudus.edit_booking(
        members[4]["Id"], FromTime=moved_to, ToTime=moved_to + timedelta(hours=2)
    )
    outcome = world.sync()
    assert outcome.code == 0, outcome.document
    ((_uid, events),) = world.bridge_events().items()
    (series,) = events
    assert series.is_series and series.recurrence["pattern"]["type"] == "weekly"
    assert len(series.cancelled) == 1 and len(series.exceptions) == 1
    world.assert_converged()
    assert world.sync().room["requests"] == {"calendar": 1}


def test_moves_and_deletions_follow_the_provider(world: Office365World):
    moved = world.book(world.now + days(1))
    gone = world.book(world.now + days(2))
    world.sync()
    world.tick()
    world.nexudus.edit_booking(
        moved, FromTime=world.now + days(3), ToTime=world.now + days(3) + timedelta(hours=1)
    )
    world.nexudus.cancel_booking(gone)
    outcome = world.sync()
    assert (outcome.room["updated"], outcome.room["deleted"]) == (1, 1), outcome.document
    world.assert_converged()


def test_a_series_change_replaces_the_series_without_a_duplicate(world: Office365World):
    world.book_series(world.now + days(1), days=35)
    world.sync()
    world.tick()
    members = world.series_members()
    world.nexudus.cancel_booking(members[1]["Id"])
    outcome = world.sync()
    assert outcome.code == 0 and outcome.room["updated"] == 1, outcome.document
    world.assert_converged()


@pytest.mark.parametrize("mode", ["separate", "merged", "hidden"])
def test_buffer_modes(make_world: object, mode: str):
    world: Office365World = make_world(buffers=mode)  # type: ignore[operator]
    world.book(world.now + days(1))
    assert world.sync().code == 0
    world.assert_converged()


# ----- third-party edits -------------------------------------------------------------------------


def test_third_party_edit_is_reverted(world: Office365World):
    world.book(world.now + days(1), Notes="Design review")
    world.sync()
    _uid, ident = only_event(world)
    with graph_client(world) as client:
        start = world.now + days(1) + timedelta(hours=5)
        response = client.patch(
            f"/users/{ROOM}/events/{quote(ident, safe='')}",
            json={
                "subject": "Hijacked",
                "start": {"dateTime": f"{start:%Y-%m-%dT%H:%M:%S}", "timeZone": "UTC"},
                "end": {
                    "dateTime": f"{start + timedelta(hours=1):%Y-%m-%dT%H:%M:%S}",
                    "timeZone": "UTC",
                },
            },
        )
        assert response.status_code == 200
    outcome = world.sync()
    assert outcome.room["updated"] == 1, outcome.document
    (event,) = world.graph.events(ROOM)
    assert event.fields["subject"] != "Hijacked"
    world.assert_converged()
    assert world.sync().room["updated"] == 0


def test_third_party_deletion_is_recreated(world: Office365World):
    world.book(world.now + days(1))
    world.sync()
    _uid, ident = only_event(world)
    world.graph.delete_event(ROOM, ident)
    outcome = world.sync()
    assert outcome.room["created"] == 1, outcome.document
    world.assert_converged()


def test_third_party_deletion_of_one_occurrence_is_healed(world: Office365World):
    world.book_series(world.now + days(1), days=42)
    world.sync()
    (series,) = world.graph.events(ROOM)
    with graph_client(world) as client:
        listing = client.get(
            f"/users/{ROOM}/events/{quote(series.id, safe='')}/instances",
            params={
                "startDateTime": world.now.isoformat(),
                "endDateTime": (world.now + days(60)).isoformat(),
            },
        ).json()["value"]
        client.delete(f"/users/{ROOM}/events/{quote(listing[2]['id'], safe='')}")
    assert world.calendar_instants() != world.provider_instants()
    outcome = world.sync()
    assert outcome.code == 0 and outcome.room["updated"] == 1, outcome.document
    world.assert_converged()


def test_foreign_events_are_left_alone(world: Office365World):
    world.book(world.now + days(1))
    start = (world.now + days(2)).strftime("%Y-%m-%dT%H:%M:%S")
    end = (world.now + days(2) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    foreign = world.graph.create_event(
        ROOM,
        {
            "subject": "Walk-in",
            "start": {"dateTime": start, "timeZone": "UTC"},
            "end": {"dateTime": end, "timeZone": "UTC"},
        },
    )
    assert world.sync().code == 0
    assert world.sync().code == 0
    assert foreign in {e.id for e in world.graph.events(ROOM)}
    world.assert_converged()


# ----- failures ----------------------------------------------------------------------------------


def test_expired_delta_token_recovers_with_a_full_resync(world: Office365World):
    ids = [world.book(world.now + days(i + 1)) for i in range(5)]
    world.sync()
    world.graph.expire_delta_tokens()
    world.tick()
    world.nexudus.cancel_booking(ids[0])
    world.nexudus.edit_booking(ids[1], Notes="changed while the token expired")
    world.book(world.now + days(9))
    outcome = world.sync()
    assert outcome.code == 0, outcome.document
    assert (outcome.room["created"], outcome.room["deleted"]) == (1, 1)
    assert any(r.status == 410 for r in world.graph.requests)
    world.assert_converged()
    assert world.sync().room["requests"] == {"calendar": 1}


def test_generic_resync_required_410_also_recovers(world: Office365World):
    world.book(world.now + days(1))
    world.sync()
    world.graph.require_resync()
    world.book(world.now + days(2))
    outcome = world.sync()
    world.graph.require_resync(False)
    assert outcome.code == 0 and outcome.room["created"] == 1, outcome.document
    world.assert_converged()


def test_throttling_and_lost_replies_converge_without_duplicates(world: Office365World):
    world.book_series(world.now + days(1), days=50)
    for i in range(15):
        world.book(world.now + days(2) + timedelta(hours=5 * i))
    world.graph.set_faults(
        FaultPlan(
            rate=0.25,
            seed=4,
            retry_after=0.01,
            kinds=(
                FaultKind.THROTTLE,
                FaultKind.UNAVAILABLE,
                FaultKind.GATEWAY_TIMEOUT,
                FaultKind.LOST_REPLY,
                FaultKind.CONFLICT,
            ),
        )
    )
    outcome = world.sync()
    world.graph.clear_faults()
    assert outcome.code == 0, outcome.document
    world.assert_converged()
    faults = [r.fault for r in world.graph.requests if r.fault is not None]
    assert FaultKind.THROTTLE in faults and len(set(faults)) >= 3, faults
    # Creates applied whose reply is lost: the retried POST must not duplicate them.
    for i in range(8):
        world.book(world.now + days(20) + timedelta(hours=5 * i))
    world.graph.set_faults(
        FaultPlan(
            rate=0.5,
            seed=2,
            retry_after=0.01,
            kinds=(FaultKind.LOST_REPLY,),
            methods=frozenset({"POST"}),
        )
    )
    outcome = world.sync()
    world.graph.clear_faults()
    assert outcome.code == 0 and outcome.room["created"] == 8, outcome.document
    assert world.graph.deduplicated_creates >= 1
    world.assert_converged()
    assert world.sync().room["requests"] == {"calendar": 1}


def test_token_expiry_mid_run_gets_a_new_token_and_finishes(world: Office365World):
    for i in range(10):
        world.book(world.now + days(1) + timedelta(hours=4 * i))
    grants_before = world.identity.token_requests()
    world.graph.expire_tokens_after(4)
    outcome = world.sync()
    assert outcome.code == 0, outcome.document
    assert outcome.room["created"] == 10
    assert any(r.status == 401 for r in world.graph.requests)
    assert world.identity.token_requests() == grants_before + 2  # first token, then one more
    world.assert_converged()


def test_no_secret_in_output_when_the_identity_refuses(world: Office365World):
    world.book(world.now + days(1))
    world.config_path.write_text(
        world.config_path.read_text().replace('client_id = "', 'client_id = "x')
    )
    process = world.sync_process()
    out, err = process.communicate(timeout=120)
    assert process.returncode == 1
    assert b"Traceback" not in err
    assert b"unauthorized_client" in out
    assert GRAPH_SECRET.encode() not in out + err


# ----- crash consistency -----------------------------------------------------------------------


def mutate(world: Office365World, rng: random.Random, count: int) -> None:
    """Random provider edits: new bookings, moves, retitles and cancellations."""
    live = [r["Id"] for r in world.nexudus.bookings() if not r.get("RepeatSeriesUniqueId")]
    for _ in range(count):
        choice = rng.random()
        if choice < 0.45 or not live:
            slot = world.now + days(rng.randint(1, 300)) + timedelta(hours=rng.randint(0, 20))
            live.append(world.book(slot, hours=rng.choice([0.5, 1, 2])))
        elif choice < 0.7:
            slot = world.now + days(rng.randint(1, 300)) + timedelta(hours=rng.randint(0, 20))
            world.nexudus.edit_booking(
                rng.choice(live), FromTime=slot, ToTime=slot + timedelta(hours=1)
            )
        elif choice < 0.85:
            world.nexudus.edit_booking(rng.choice(live), Notes=f"note {rng.random():.6f}")
        else:
            booking = rng.choice(live)
            live.remove(booking)
            world.nexudus.cancel_booking(booking)
    world.tick()


@pytest.mark.slow
def test_sigkill_at_random_points_heals_without_duplicates(make_world: object):
    # Every Graph request takes 30 ms, so a run's writes last long enough to be cut.
    world: Office365World = make_world(latency=0.03)  # type: ignore[operator]
    rng = random.Random(20261121)
    world.book_series(world.now + days(2) + timedelta(hours=9), days=120)
    mutate(world, rng, 60)
    # Some creates are applied but their reply is lost: the retry must not duplicate them.
    world.graph.set_faults(
        FaultPlan(
            rate=0.08,
            seed=9,
            retry_after=0.01,
            kinds=(FaultKind.LOST_REPLY,),
            methods=frozenset({"POST"}),
        )
    )
    killed_mid_run = killed_after_writing = 0
    timer = KillTimer(rng, first_guess=3.0)
    for run in range(KILL_RUNS):
        if run:
            mutate(world, rng, rng.randint(3, 12))
        writes_before = writes(world)
        process = world.sync_process(*(["--full"] if run % 5 == 4 else []))
        if timer.kill_during(process):
            killed_mid_run += 1
            killed_after_writing += writes(world) > writes_before
        world.assert_no_duplicates()
    world.graph.clear_faults()
    outcome = world.sync()
    assert outcome.code == 0, outcome.document
    world.assert_converged()
    # The kills must really have landed mid-run, and often between two writes.
    assert killed_mid_run >= KILL_RUNS // 2
    assert killed_after_writing >= 5, killed_after_writing
    assert world.graph.deduplicated_creates >= 1
    assert all(event_uid(e) for e in world.graph.events(ROOM))


def writes(world: Office365World) -> int:
    """Write requests the Graph emulator has answered so far."""
    return sum(r.method in ("POST", "PATCH", "DELETE") for r in world.graph.requests)


def _utc_of(text: str):
    from tests.e2e.world import _utc

    return _utc(text)


def test_check_reaches_the_mailbox_and_names_the_rooms_when_it_is_wrong(world: Office365World):
    os.environ["E2E_NEXUDUS_PASSWORD"], os.environ["E2E_M365_SECRET"] = (
        world.env()["E2E_NEXUDUS_PASSWORD"],
        GRAPH_SECRET,
    )

    def check() -> dict[str, object]:
        out = io.StringIO()
        with redirect_stdout(out):
            main(["check", "--config", str(world.config_path), "--json"])
        return dict(json.loads(out.getvalue()))

    passed = check()
    assert passed["ok"] is True
    # Room discovery: every room the tenant lists, with its address, to pick calendar_ids from.
    (discovery,) = [c for c in passed["checks"] if str(c["what"]).endswith(": rooms")]
    assert [(r["address"], r["name"], r["street"], r["city"]) for r in discovery["rooms"]] == [
        (ROOM, "Callisto Meeting Room", "1 Main Street", "London")
    ]
    out = io.StringIO()
    with redirect_stdout(out):
        main(["check", "--config", str(world.config_path)])
    assert f"{ROOM}  Callisto Meeting Room, 8 seats — HQ, 1 Main Street, London" in out.getvalue()
    world.config_path.write_text(
        world.config_path.read_text().replace(f'calendar_id = "{ROOM}"', 'calendar_id = "x@y.z"')
    )
    failed = check()
    assert failed["ok"] is False
    assert f"{ROOM} (Callisto Meeting Room)" in json.dumps(failed)
