"""The approval phase's pure parts: which answer the room gives, and how CalDAV writes it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import icalendar
import pytest

from bridge.calendars.caldav import tagged_ics
from bridge.sources.approval import Approval
from bridge.sources.prospero_writer import marker_of, request_note
from bridge.sources.writers import request_marker
from bridge.sync.approvals import current_answer, room_answer
from tests.e2e.request_world import request_ics

START = datetime(2025, 3, 20, 13, tzinfo=UTC)


@pytest.mark.parametrize(
    ("states", "answer"),
    [
        ([Approval.PENDING], "TENTATIVE"),
        ([Approval.APPROVED, Approval.PENDING], "TENTATIVE"),
        ([Approval.APPROVED], "ACCEPTED"),
        ([Approval.APPROVED, Approval.DENIED], "ACCEPTED"),
        ([Approval.DENIED, Approval.DENIED], "DECLINED"),
        ([Approval.DENIED, Approval.GONE], None),
        ([Approval.GONE], None),
        ([], None),
    ],
)
def test_room_answer_follows_the_bookings(states: list[Approval], answer: str | None) -> None:
    assert room_answer(states) == answer


def answered(ics: bytes, answer: str) -> bytes:
    """The request tagged with its Prospero booking and the room's answer, as CalDAV writes it."""
    return tagged_ics(ics, "venue", ["b-1"], answer)


def test_answer_is_written_on_the_room_attendee_and_keeps_declined_occurrences() -> None:
    ics = request_ics("a@client", START, START + timedelta(hours=1), rrule="FREQ=WEEKLY;COUNT=3")
    calendar = icalendar.Calendar.from_ical(ics)
    declined = icalendar.Event.from_ical(calendar.walk("VEVENT")[0].to_ical())
    declined.pop("RRULE")
    declined.add("RECURRENCE-ID", START + timedelta(days=7))
    declined["ATTENDEE"].params["PARTSTAT"] = "DECLINED"
    calendar.add_component(declined)
    tentative = answered(calendar.to_ical(), "TENTATIVE")
    assert current_answer(tentative) == "TENTATIVE"
    parts = [
        str(e["ATTENDEE"].params["PARTSTAT"])
        for e in icalendar.Calendar.from_ical(tentative).walk("VEVENT")
    ]
    assert parts == ["TENTATIVE", "DECLINED"]
    assert current_answer(answered(tentative, "ACCEPTED")) == "ACCEPTED"


def test_without_a_room_attendee_the_answer_is_the_status() -> None:
    ics = request_ics("b@client", START, START + timedelta(hours=1), room=False)
    assert current_answer(ics) == "ACCEPTED"
    tentative = answered(ics, "TENTATIVE")
    event = icalendar.Calendar.from_ical(tentative).walk("VEVENT")[0]
    assert str(event["STATUS"]) == "TENTATIVE"
    assert current_answer(answered(tentative, "ACCEPTED")) == "ACCEPTED"


@pytest.mark.parametrize("uid", ["meet-1@client", "a<b>&c", "x", "x-2"])
def test_the_prospero_marker_is_read_back_exactly(uid: str) -> None:
    marker = request_marker(uid)
    assert marker_of({"requestNote": request_note(marker)}) == marker
    assert marker_of({"requestNote": request_note(request_marker(uid + "-2"))}) != marker
    assert marker_of({"requestNote": None}) is None
    assert marker_of({"requestNote": "<p>just a note</p>"}) is None
