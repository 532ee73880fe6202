"""The OfficeRnD writer against the strict emulator: what a calendar request becomes there."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from bridge.model import Booking, Buffers, Person, Recurrence, Room, Window
from bridge.providers.officernd import OfficeRndClient
from bridge.sources.officernd_writer import NO_CUSTOMER, OfficeRndWriter
from bridge.sources.writers import Refused, request_marker
from tests.plugins.officernd import OfficeRndWorld

MakeClient = Callable[..., OfficeRndClient]
LONDON = "Europe/London"
WINDOW = Window(datetime(2025, 3, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC))


def at(day: str, hour: int, minute: int = 0) -> datetime:
    """A UTC instant."""
    return datetime.fromisoformat(day).replace(hour=hour, minute=minute, tzinfo=UTC)


def room(world: OfficeRndWorld) -> Room:
    return Room(id="callisto", name="Callisto", provider="flex", resource=world.room,
                timezone=LONDON)


ROOM_BUFFERS = Buffers(timedelta(minutes=15), timedelta(minutes=15))


def request(start: datetime, *, rrule: str | None = None, exdates: tuple[datetime, ...] = (),
            buffers: Buffers = ROOM_BUFFERS) -> Booking:
    recurrence = Recurrence(rrule=rrule, exdates=exdates) if rrule else None
    return Booking(
        provider="flex", key="uid-1@client", resource="", start=start,
        end=start + timedelta(hours=1), timezone=LONDON, title="Planning",
        organizer=Person(email="ada@example.com"), buffers=buffers, recurrence=recurrence,
    )


@pytest.fixture
def writer(make_officernd_client: MakeClient) -> OfficeRndWriter:
    return OfficeRndWriter(make_officernd_client(), name="flex", customer="company-7")


def occurrence_starts(world: OfficeRndWorld, booking_id: str) -> list[datetime]:
    return sorted(
        o.start for o in world.emulator.live_occurrences(world.room, WINDOW.start, WINDOW.end)
        if o.booking == booking_id
    )


def test_a_request_becomes_one_marked_booking_found_again(
    officernd: OfficeRndWorld, writer: OfficeRndWriter
) -> None:
    marker = request_marker("uid-1@client")
    [key] = writer.create(room(officernd), request(at("2025-03-20", 13)), marker, WINDOW)
    created = officernd.emulator.booking(key)
    assert (created["source"], created["company"], created["title"]) == (
        marker, "company-7", "Planning"
    )
    assert created["serviceSlots"] == {"before": 15, "after": 15}
    assert writer.find(room(officernd), marker, WINDOW) == [key]
    assert writer.find(room(officernd), request_marker("other@client"), WINDOW) == []
    counts = officernd.emulator.request_counts()
    assert counts["POST /api/v2/organizations/{org}/bookings/validate"] == 1


def test_the_validate_call_refuses_with_officernds_words_and_nothing_is_made(
    officernd: OfficeRndWorld, writer: OfficeRndWriter
) -> None:
    officernd.emulator.seed_booking(
        officernd.room, at("2025-03-20", 11), at("2025-03-20", 12), member="zed", after=30
    )
    with pytest.raises(Refused) as refused:
        writer.create(room(officernd), request(at("2025-03-20", 12, 30)), "m", WINDOW)
    assert "booked 2025-03-20 11:00\u201312:00 (with its service slots)" in refused.value.reason
    assert "zed" not in refused.value.reason
    assert len(officernd.emulator.bookings()) == 1


def test_a_series_with_declined_dates_is_one_booking_without_them(
    officernd: OfficeRndWorld, writer: OfficeRndWriter
) -> None:
    first = at("2025-03-11", 13)
    officernd.emulator.seed_booking(officernd.room, at("2025-03-18", 13), at("2025-03-18", 14))
    wanted = request(first, rrule="FREQ=WEEKLY;COUNT=4", exdates=(at("2025-03-18", 13),))
    [key] = writer.create(room(officernd), wanted, "m", WINDOW)
    assert occurrence_starts(officernd, key) == [
        first, at("2025-03-25", 13), at("2025-04-01", 12)
    ]
    # A single-occurrence delete from the calendar joins the dates left out.
    writer.cancel_occurrences(room(officernd), [key], [at("2025-03-25", 13)])
    assert occurrence_starts(officernd, key) == [first, at("2025-04-01", 12)]


def test_change_updates_in_place_and_a_refusal_carries_the_reason(
    officernd: OfficeRndWorld, writer: OfficeRndWriter
) -> None:
    [key] = writer.create(room(officernd), request(at("2025-03-20", 13)), "m", WINDOW)
    moved = writer.change(room(officernd), [key], request(at("2025-03-20", 16)), "m", WINDOW)
    assert moved == [key]
    assert officernd.emulator.booking(key)["start"] == "2025-03-20T16:00:00.000Z"
    officernd.emulator.seed_booking(officernd.room, at("2025-03-21", 9), at("2025-03-21", 10))
    with pytest.raises(Refused, match="not available"):
        writer.change(room(officernd), [key], request(at("2025-03-21", 9)), "m", WINDOW)
    assert officernd.emulator.booking(key)["start"] == "2025-03-20T16:00:00.000Z"


def test_cancel_keeps_the_record(officernd: OfficeRndWorld, writer: OfficeRndWriter) -> None:
    [key] = writer.create(room(officernd), request(at("2025-03-20", 13)), "m", WINDOW)
    writer.cancel(room(officernd), [key, "6650ffff0000000000000099"])
    assert officernd.emulator.booking(key)["isCancelled"] is True
    assert writer.find(room(officernd), "m", WINDOW) == []


def test_without_a_customer_the_request_is_refused_before_any_call(
    officernd: OfficeRndWorld, make_officernd_client: MakeClient
) -> None:
    bare = OfficeRndWriter(make_officernd_client(), name="flex")
    with pytest.raises(Refused) as refused:
        bare.create(room(officernd), request(at("2025-03-20", 13)), "m", WINDOW)
    assert refused.value.reason == NO_CUSTOMER
    assert officernd.emulator.bookings() == []
