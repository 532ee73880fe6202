"""Nexudus → CalDAV end to end, against real Radicale and Xandikos servers."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import icalendar
import pytest

from bridge.cli import main
from tests.e2e.world import ROOT, World, weekly_series_body
from tests.plugins.caldav_servers import CalDAVServer


@pytest.fixture
def world(caldav_server: CalDAVServer, tmp_path: Path, state_url: str) -> Iterator[World]:
    """One room on each CalDAV server, with each state store (SQLite and PostgreSQL)."""
    with World(caldav_server, tmp_path, state_url=state_url).running() as running:
        yield running


def days(n: float) -> timedelta:
    return timedelta(days=n)


def test_singles_and_tentative_reach_the_calendar(world: World):
    world.book(world.now + days(1), Notes="Board meeting")
    world.book(world.now + days(2), hours=2, Tentative=True)
    outcome = world.sync()
    assert outcome.code == 0, outcome.document
    assert outcome.room["created"] == 2
    world.assert_converged()
    statuses = sorted(
        str(icalendar.Calendar.from_ical(ics).walk("VEVENT")[0]["STATUS"])
        for _h, _u, ics in world.objects()
    )
    assert statuses == ["CONFIRMED", "TENTATIVE"]


def test_second_pass_is_a_no_op(world: World):
    world.book(world.now + days(1))
    world.sync()
    again = world.sync()
    assert again.room | {"planned": []} == {
        "id": "callisto",
        "ok": True,
        "created": 0,
        "updated": 0,
        "deleted": 0,
        "declined": 0,
        "errors": [],
        "planned": [],
        "requests": {"calendar": 1},
    }


def test_moves_and_deletions_follow_the_provider(world: World):
    moved = world.book(world.now + days(1))
    gone = world.book(world.now + days(2))
    world.sync()
    world.tick()
    world.emulator.edit_booking(
        moved, FromTime=world.now + days(3), ToTime=world.now + days(3) + timedelta(hours=1)
    )
    world.emulator.cancel_booking(gone)
    outcome = world.sync()
    assert (outcome.room["updated"], outcome.room["deleted"]) == (1, 1)
    world.assert_converged()


def test_series_with_deleted_and_moved_members_is_one_recurring_event(world: World):
    with world.client() as client:
        start = world.now + days(1)
        first = client.create_booking(weekly_series_body(world.resource, start, start + days(60)))
    members = sorted(
        (r for r in world.emulator.bookings() if r.get("RepeatSeriesUniqueId")),
        key=lambda r: r["FromTime"],
    )
    assert members[0]["Id"] == first and len(members) >= 8
    world.emulator.cancel_booking(members[2]["Id"])
    world.emulator.edit_booking(
        members[4]["Id"],
        FromTime=world.now + days(29) + timedelta(hours=3),
        ToTime=world.now + days(29) + timedelta(hours=5),
    )
    outcome = world.sync()
    assert outcome.code == 0, outcome.document
    objects = world.objects()
    assert len(objects) == 1
    event = icalendar.Calendar.from_ical(objects[0][2]).walk("VEVENT")
    assert "RRULE" in event[0]
    world.assert_converged()


def test_third_party_edit_is_reverted_without_duplicates(world: World):
    world.book(world.now + days(1), Notes="Design review")
    world.sync()
    ((href, _uid, ics),) = world.objects()
    tampered = ics.replace(b"SUMMARY:", b"SUMMARY:Hijacked ")
    with world.calendar() as calendar:
        etag = calendar.get(href).etag
        calendar.update(href, tampered, etag)
    outcome = world.sync()
    assert outcome.room["updated"] == 1
    ((_href, _uid, restored),) = world.objects()
    assert b"Hijacked" not in restored
    world.assert_converged()


def test_third_party_deletion_is_recreated(world: World):
    world.book(world.now + days(1))
    world.sync()
    ((href, _uid, _ics),) = world.objects()
    with world.calendar() as calendar:
        calendar.delete(href, None)
    outcome = world.sync()
    assert outcome.room["created"] == 1
    world.assert_converged()


def test_mass_deletion_is_refused_unless_forced(caldav_server: CalDAVServer, tmp_path: Path):
    with World(caldav_server, tmp_path, max_deletions=2).running() as world:
        ids = [world.book(world.now + days(i + 1)) for i in range(4)]
        world.sync()
        world.tick()
        for booking_id in ids:
            world.emulator.cancel_booking(booking_id)
        refused = world.sync()
        assert refused.code == 1
        assert refused.room["deleted"] == 0
        assert "max_deletions" in " ".join(refused.room["errors"])
        assert len(world.objects()) == 4
        forced = world.sync("--force")
        assert forced.code == 0 and forced.room["deleted"] == 4
        assert world.objects() == []


def test_dry_run_writes_nothing(world: World):
    world.book(world.now + days(1))
    outcome = world.sync("--dry-run")
    assert outcome.code == 0
    assert [p["action"] for p in outcome.room["planned"]] == ["create"]
    assert world.objects() == []
    assert world.sync().room["created"] == 1


@pytest.mark.parametrize("mode", ["separate", "merged", "hidden"])
def test_buffer_modes(caldav_server: CalDAVServer, tmp_path: Path, mode: str):
    with World(caldav_server, tmp_path, buffers=mode).running() as world:
        world.book(world.now + days(1))
        assert world.sync().code == 0
        world.assert_converged()


def test_no_op_resync_costs_one_calendar_request_and_the_provider_list_pages(world: World):
    for i in range(30):
        world.book(world.now + days(1) + timedelta(hours=3 * i))
    world.sync()
    before = len(world.emulator.requests)
    outcome = world.sync()
    # A one-shot `roombridge sync` logs in once; `roombridge run` keeps its token.
    provider_paths = [r.path for r in world.emulator.requests[before:] if r.path != "/api/token"]
    assert outcome.room["requests"]["calendar"] == 1
    assert sorted(provider_paths) == ["/api/spaces/bookings", "/api/spaces/cancelledbookings"]


def create_weekly_series(world: World, start_offset: timedelta, weeks: int = 6) -> str:
    """A weekly repeat series made through the API; returns its RepeatSeriesUniqueId."""
    start = world.now + start_offset
    with world.client() as client:
        until = start + days(7 * weeks - 1)
        first = client.create_booking(weekly_series_body(world.resource, start, until))
        return str(client.get_booking(first)["RepeatSeriesUniqueId"])


def test_quiet_pass_with_series_rereads_no_series(world: World):
    """Rows re-listed inside the watermark's safety margin must not re-read their series."""
    series = [create_weekly_series(world, days(1) + timedelta(hours=2 * i)) for i in range(5)]
    world.book(world.now + days(2))
    assert world.sync().code == 0
    before = len(world.emulator.requests)
    quiet = world.sync()
    requests = [r for r in world.emulator.requests[before:] if r.path != "/api/token"]
    assert quiet.room["requests"]["calendar"] == 1
    assert sorted(r.path for r in requests) == [
        "/api/spaces/bookings",
        "/api/spaces/cancelledbookings",
    ]
    # One changed member re-reads its own series once, and no other, even when the edit
    # carries the same UpdatedOn as the row last read (the emulator's clock stands still).
    member = next(
        r for r in world.emulator.bookings() if r.get("RepeatSeriesUniqueId") == series[3]
    )
    world.emulator.edit_booking(member["Id"], Notes="projector please")
    before = len(world.emulator.requests)
    changed = world.sync()
    assert changed.code == 0 and changed.room["updated"] == 1, changed.document
    series_reads = [
        dict(r.query)["Booking_RepeatSeriesUniqueId"]
        for r in world.emulator.requests[before:]
        if "Booking_RepeatSeriesUniqueId" in dict(r.query)
    ]
    assert series_reads == [series[3]]
    world.assert_converged()


def test_ten_changes_cost_about_ten_writes(world: World):
    ids = [world.book(world.now + days(1) + timedelta(hours=3 * i)) for i in range(40)]
    world.sync()
    world.tick()
    for booking_id in ids[:10]:
        world.emulator.edit_booking(booking_id, Notes="changed")
    outcome = world.sync()
    assert outcome.room["updated"] == 10
    # one read, ten writes, one settling read
    assert outcome.room["requests"]["calendar"] == 12 if world.server.name == "radicale" else 13


def _sync_stderr(world: World, stderr: int) -> None:
    """Run `roombridge sync` as a process whose stderr is ``stderr``; it must succeed."""
    command = [sys.executable, "-m", "bridge.cli", "sync", "--config", str(world.config_path)]
    done = subprocess.run(
        command, cwd=ROOT, env=world.env(), stdout=subprocess.PIPE, stderr=stderr, timeout=300
    )
    assert done.returncode == 0, done.stdout


def test_progress_shows_on_a_terminal_and_not_when_piped(
    radicale_server: CalDAVServer, tmp_path: Path
):
    with World(radicale_server, tmp_path).running() as world:
        for i in range(12):
            world.book(world.now + days(1) + timedelta(hours=3 * i))
        controller, terminal = pty.openpty()
        try:
            _sync_stderr(world, terminal)
            os.close(terminal)
            shown = b""
            while chunk := _read_available(controller):
                shown += chunk
        finally:
            os.close(controller)
        assert b"[1/1] syncing callisto" in shown
        assert b"callisto: 12/12 changes applied" in shown
        world.tick()
        world.emulator.edit_booking(world.emulator.bookings()[0]["Id"], Notes="moved")
        piped = tmp_path / "stderr.txt"
        with piped.open("wb") as sink:
            _sync_stderr(world, sink.fileno())
        assert piped.read_bytes() == b""


def _read_available(fd: int) -> bytes:
    """What a closed pty still holds (EIO marks its end on Linux)."""
    try:
        return os.read(fd, 65536)
    except OSError:
        return b""


def test_room_option_syncs_only_that_room_and_an_unknown_room_exits_2(
    radicale_server: CalDAVServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    with World(radicale_server, tmp_path).running() as world:
        europa = world.emulator.add_resource("Europa", business_id=world.business)
        europa_collection = radicale_server.new_collection("Europa")
        with world.config_path.open("a") as config:
            config.write(
                f'\n[[rooms]]\nid = "europa"\nname = "Europa"\nprovider = "hq"\n'
                f'resource = "{europa}"\ncalendar = "dav"\ncalendar_id = "{europa_collection}"\n'
            )
        world.book(world.now + days(1))
        start = world.now + days(2)
        world.emulator.seed_booking(europa, start, start + timedelta(hours=1))
        only = world.sync("--room", "europa")
        assert [(r["id"], r["created"]) for r in only.document["rooms"]] == [("europa", 1)]
        assert world.objects() == []  # callisto's collection was not touched
        both = world.sync()
        assert [(r["id"], r["created"]) for r in both.document["rooms"]] == [
            ("callisto", 1),
            ("europa", 0),
        ]
        capsys.readouterr()
        command = ["sync", "--config", str(world.config_path), "--room", "ganymede"]
        assert main(command) == 2
        assert "ganymede" in capsys.readouterr().err
