"""Booking the room by inviting it from Google Calendar or Outlook (Microsoft 365), issue 8.

The same scenarios run for each pair of room calendar and provider: Google × Nexudus and
Microsoft 365 × Nexudus (the Google world takes any provider: another pair is one entry in
``GOOGLE_PROVIDERS``). The room answers invitations natively first (it accepts when its own
calendar is free: it knows the bridge's copies of provider bookings, never their buffers);
the bridge's answer is the last word. What is asserted is what people see: the provider's
bookings (once, with the request marker), the room's answer and reason on the organizer's
meeting, and the tags the bridge reads back on the room's copy.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from contextlib import redirect_stdout
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

import pytest

from bridge.cli import main
from bridge.emulators.identity import IdentityEmulator, TlsFiles
from bridge.emulators.server import RunningServer, SwappableApp
from bridge.sync.intake import RequestIntake
from tests.e2e.google_request_world import ADMIN, GoogleRequestWorld
from tests.e2e.office365_request_world import Office365RequestWorld
from tests.e2e.request_providers import (
    Held,
    NexudusRequests,
    OfficeRndRequestProvider,
    RequestProvider,
)
from tests.e2e.world import SyncOutcome

BOOKER = "Zed Secret"


class MeetingWorld(Protocol):
    """A room calendar taking invitations, a provider behind it, and the bridge between."""

    now: datetime

    def sync(self) -> SyncOutcome: ...
    def held(self) -> list[Held]: ...
    def book_taken(self, start: datetime, end: datetime, *, booker: str) -> None: ...
    def invite(self, start: datetime, end: datetime, *, weeks: int = 0) -> str: ...
    def move(self, meeting: str, start: datetime, end: datetime) -> None: ...
    def cancel_occurrence(self, meeting: str, original: datetime) -> None: ...
    def remove(self, meeting: str) -> None: ...
    def answer(self, meeting: str) -> tuple[str, str]: ...
    def occurrence_answers(self, meeting: str) -> dict[datetime, str]: ...
    def marker(self, meeting: str) -> str: ...
    def tags(self, meeting: str) -> str | None: ...
    def calendar_writes(self) -> int: ...


#: Google request worlds by provider (``tests.e2e.request_providers``): one entry per pair.
GOOGLE_PROVIDERS: dict[str, Callable[[datetime], RequestProvider]] = {
    "google-nexudus": NexudusRequests,
    "google-officernd": OfficeRndRequestProvider,
}


@pytest.fixture(params=[*GOOGLE_PROVIDERS, "office365-nexudus"])
def world(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    state_url: str,
) -> Iterator[MeetingWorld]:
    """One room taking invitations, on each calendar × provider pair and state store."""
    provider = GOOGLE_PROVIDERS.get(request.param)
    if provider is not None:
        google = GoogleRequestWorld(tmp_path, provider=provider, state_url=state_url)
        with google.running() as running:
            yield running
        return
    graph_server: tuple[SwappableApp, RunningServer] = request.getfixturevalue("graph_server")
    identity, _address = request.getfixturevalue("graph_identity")
    assert isinstance(identity, IdentityEmulator)
    tls: TlsFiles = request.getfixturevalue("graph_tls")
    office = Office365RequestWorld(
        graph_server, identity, tls.ca_certificate, tmp_path, state_url=state_url
    )
    with office.running():
        yield office


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, no handler catches it."""


def hours(n: float) -> timedelta:
    """Shorthand."""
    return timedelta(hours=n)


def mine(world: MeetingWorld, meeting: str) -> list[tuple[datetime, datetime]]:
    """The provider bookings made for a meeting, (start, end) in time order."""
    marker = world.marker(meeting)
    return [(h.start, h.end) for h in world.held() if h.marker == marker]


def quiet(world: MeetingWorld) -> None:
    """Another pass changes nothing anywhere: no calendar write, no provider change."""
    writes, held = world.calendar_writes(), world.held()
    outcome = world.sync()
    assert outcome.code == 0, outcome.document
    assert (outcome.room["created"], outcome.room["declined"]) == (0, 0), outcome.document
    assert world.calendar_writes() == writes
    assert world.held() == held


def assert_booked_once(world: MeetingWorld, meeting: str, start: datetime) -> None:
    """After a pass: one booking of an hour at ``start``, accepted and tagged; then quiet."""
    outcome = world.sync()
    assert outcome.code == 0, outcome.document
    assert mine(world, meeting) == [(start, start + hours(1))]
    assert len(world.held()) == 1
    assert world.answer(meeting)[0] == "accepted"
    assert world.tags(meeting) is not None
    quiet(world)


def accepted_next_to_a_booking(world: MeetingWorld) -> tuple[str, datetime]:
    """An accepted meeting, and the start of someone's booking (an hour) the next day."""
    start = world.now + timedelta(days=3)
    meeting = world.invite(start, start + hours(1))
    world.sync()
    blocker = start + timedelta(days=1)
    world.book_taken(blocker, blocker + hours(1), booker=BOOKER)
    world.sync()
    assert len(mine(world, meeting)) == 1
    return meeting, blocker


def test_free_slot_request_becomes_one_tagged_booking(world: MeetingWorld):
    start = world.now + timedelta(days=1, hours=3)
    meeting = world.invite(start, start + hours(1))
    assert_booked_once(world, meeting, start)
    quiet(world)


def test_overlap_with_a_buffer_is_declined_naming_the_slot_not_the_booker(world: MeetingWorld):
    taken = world.now + timedelta(days=2)
    world.book_taken(taken, taken + hours(1), booker=BOOKER)
    world.sync()
    # 11:10 is free in the room's own calendar, but inside the request's 15-minute setup.
    start = taken + hours(1) + timedelta(minutes=10)
    meeting = world.invite(start, start + hours(1))
    outcome = world.sync()
    assert outcome.room["declined"] == 1, outcome.document
    assert mine(world, meeting) == [] and len(world.held()) == 1
    status, reason = world.answer(meeting)
    assert status == "declined"
    assert "the room is booked" in reason and "setup/cleanup" in reason
    assert "Zed" not in reason
    quiet(world)


def test_recurring_request_with_two_conflicting_dates(world: MeetingWorld):
    first = world.now + timedelta(days=1, hours=2)
    for week in (1, 3):  # each ends 10 minutes before that week's meeting: buffers clash
        ends = first + timedelta(days=7 * week, minutes=-10)
        world.book_taken(ends - hours(1), ends, booker=BOOKER)
    world.sync()
    meeting = world.invite(first, first + hours(1), weeks=5)
    outcome = world.sync()
    assert outcome.code == 0, outcome.document
    booked = [first + timedelta(days=7 * week) for week in (0, 2, 4)]
    assert [start for start, _end in mine(world, meeting)] == booked
    answers = world.occurrence_answers(meeting)
    declined = sorted(o for o, answer in answers.items() if answer == "declined")
    assert declined == [first + timedelta(days=7), first + timedelta(days=21)]
    assert all(answers[o] == "accepted" for o in booked)
    quiet(world)
    assert len(world.held()) == 5


def test_a_move_to_a_free_slot_moves_the_booking(world: MeetingWorld):
    start = world.now + timedelta(days=3)
    meeting = world.invite(start, start + hours(1))
    world.sync()
    later = start + hours(4)
    world.move(meeting, later, later + hours(1))
    outcome = world.sync()
    assert outcome.code == 0, outcome.document
    assert mine(world, meeting) == [(later, later + hours(1))]
    assert len(world.held()) == 1
    assert world.answer(meeting)[0] == "accepted"
    quiet(world)


def test_a_move_onto_a_buffer_is_declined_and_releases_the_room(world: MeetingWorld):
    meeting, blocker = accepted_next_to_a_booking(world)
    # The organizer cannot be overruled in their own meeting: the room declines the new time.
    moved = blocker + hours(1) + timedelta(minutes=5)
    world.move(meeting, moved, moved + hours(1))
    outcome = world.sync()
    assert outcome.code == 0, outcome.document
    status, reason = world.answer(meeting)
    assert status == "declined"
    assert "change refused" in reason and "the room is booked" in reason and "Zed" not in reason
    assert mine(world, meeting) == []
    assert [(h.start, h.end) for h in world.held()] == [(blocker, blocker + hours(1))]
    quiet(world)


def test_a_move_onto_a_booked_slot_releases_the_room(world: MeetingWorld):
    meeting, blocker = accepted_next_to_a_booking(world)
    # Straight onto the booking: the room itself may refuse first (Microsoft 365 re-checks a
    # moved meeting, Google does not); either way the meeting holds nothing afterwards.
    world.move(meeting, blocker, blocker + hours(1))
    outcome = world.sync()
    assert outcome.code == 0, outcome.document
    assert world.answer(meeting)[0] == "declined"
    assert mine(world, meeting) == []
    assert [(h.start, h.end) for h in world.held()] == [(blocker, blocker + hours(1))]
    quiet(world)


def test_single_occurrence_and_series_deletes(world: MeetingWorld):
    first = world.now + timedelta(days=1, hours=2)
    meeting = world.invite(first, first + hours(1), weeks=3)
    world.sync()
    assert len(mine(world, meeting)) == 3
    second = first + timedelta(days=7)
    world.cancel_occurrence(meeting, second)
    assert world.sync().code == 0
    assert [start for start, _end in mine(world, meeting)] == [first, first + timedelta(days=14)]
    world.remove(meeting)
    assert world.sync().code == 0
    assert world.held() == []
    quiet(world)


def test_two_requests_for_one_slot_in_one_pass_exactly_one_wins(world: MeetingWorld):
    start = world.now + timedelta(days=4)
    # Both are free in the room's own calendar; only the bridge's buffers make them clash.
    first = world.invite(start, start + hours(1))
    second = world.invite(start + hours(1) + timedelta(minutes=10), start + hours(2))
    outcome = world.sync()
    assert outcome.room["declined"] == 1, outcome.document
    won = [meeting for meeting in (first, second) if mine(world, meeting)]
    assert len(won) == 1 and len(world.held()) == 1
    lost = second if won == [first] else first
    assert world.answer(won[0])[0] == "accepted"
    assert world.answer(lost)[0] == "declined"
    quiet(world)


def test_crash_between_provider_create_and_answer_books_once(
    world: MeetingWorld, monkeypatch: pytest.MonkeyPatch
):
    start = world.now + timedelta(days=5)
    meeting = world.invite(start, start + hours(1))

    def killed(*_args: object, **_kwargs: object) -> None:
        raise Killed  # the process dies right after the provider create

    with monkeypatch.context() as patch:
        patch.setattr(RequestIntake, "_accept", killed)
        with pytest.raises(Killed):
            world.sync()
    assert len(mine(world, meeting)) == 1
    assert_booked_once(world, meeting, start)




def test_a_conflicting_event_made_in_the_google_room_calendar_is_an_error_until_removed(
    tmp_path: Path,
) -> None:
    # Not an invitation: a receptionist types an event straight into the room calendar, onto a
    # booking's cleanup time. Nobody awaits the room's answer, so nothing can be declined; the
    # item stays a pending error until the event is moved or deleted, and then it is cleared.
    with GoogleRequestWorld(tmp_path).running() as world:
        taken = world.now + timedelta(days=2)
        world.book_taken(taken, taken + hours(1), booker="Zed Secret")
        assert world.sync().code == 0
        start = taken + hours(1) + timedelta(minutes=5)
        made = world.google.seed_event(
            world.room,
            {
                "summary": "Walk-in",
                "start": {"dateTime": start.isoformat(), "timeZone": "UTC"},
                "end": {"dateTime": (start + hours(1)).isoformat(), "timeZone": "UTC"},
            },
            user=ADMIN,
        )
        assert world.sync().code == 1
        assert "not invited" in " ".join(pending_errors(world.config_path))
        world.google.delete_event(world.room, str(made["id"]))
        assert world.sync().code == 0
        assert pending_errors(world.config_path) == []
        assert len(world.held()) == 1


def pending_errors(config: Path) -> list[str]:
    """The pending per-item errors ``roombridge status --json`` shows for the room."""
    out = io.StringIO()
    with redirect_stdout(out):
        main(["status", "--config", str(config), "--json"])
    (room,) = json.loads(out.getvalue())["rooms"]
    return [str(error["message"]) for error in room["pending_errors"]]
