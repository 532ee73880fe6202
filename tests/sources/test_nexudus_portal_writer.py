"""The members-portal writer against the strict portal emulator: search first, then book."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from bridge.model import Booking, Person, Recurrence, Room, Window
from bridge.providers.nexudus_portal import NexudusPortalClient
from bridge.sources.nexudus_portal_writer import NexudusPortalWriter
from bridge.sources.writers import Refused, WindowedWriter, request_marker
from tests.plugins.nexudus import NEXUDUS_NOW
from tests.plugins.nexudus_portal import OTHER_MEMBER, PortalWorld

MakeClient = Callable[..., NexudusPortalClient]
MARKER = request_marker("meet@client")
START = datetime(2025, 3, 12, 9, 0, tzinfo=UTC)  # 09:00 in London
WEEK = timedelta(days=7)
WINDOW = Window(NEXUDUS_NOW - timedelta(days=30), NEXUDUS_NOW + timedelta(days=20))


def room_of(world: PortalWorld) -> Room:
    """The portal's first room."""
    return Room(
        id="callisto", name="Callisto", timezone="Europe/London", provider="space",
        resource=str(world.room_id), direction="both",
    )


def request(start: datetime = START, *, rrule: str | None = None, notes: str = "") -> Booking:
    """A booking as read from a calendar request."""
    return Booking(
        provider="space", key="meet@client", resource="", start=start,
        end=start + timedelta(hours=1), timezone="Europe/London", title="Sync",
        description=notes, organizer=Person(email="ada@example.com"),
        recurrence=Recurrence(rrule=rrule) if rrule else None,
    )


@pytest.fixture
def writer(make_portal_client: MakeClient) -> NexudusPortalWriter:
    """A writer logged in as the portal's first member."""
    return NexudusPortalWriter(make_portal_client(), name="space")


def starts(world: PortalWorld) -> list[datetime]:
    """Starts of the room's bookings, in order."""
    return sorted(b.start for b in world.emulator.bookings() if b.resource_id == world.room_id)


def counts(world: PortalWorld) -> dict[str, int]:
    """Searches and creates the portal answered."""
    seen = world.emulator.request_counts()
    return {
        "search": seen["GET /{language}/bookings/search"],
        "create": seen["POST /{language}/bookings/newBookingJson"],
    }


def test_free_slot_is_searched_then_booked_with_the_marker(
    nexudus_portal: PortalWorld, writer: NexudusPortalWriter
) -> None:
    room = room_of(nexudus_portal)
    keys = writer.create(room, request(notes="Agenda"), MARKER, WINDOW)
    assert counts(nexudus_portal) == {"search": 1, "create": 1}
    [made] = nexudus_portal.emulator.bookings()
    assert (made.start, made.end) == (START, START + timedelta(hours=1))
    assert made.notes == f"Agenda\n{MARKER}"
    assert writer.find(room, MARKER, WINDOW) == keys == [str(made.id)]
    assert writer.find(room, request_marker("other@client"), WINDOW) == []


def test_taken_slot_is_refused_by_the_search_before_any_create(
    nexudus_portal: PortalWorld, writer: NexudusPortalWriter
) -> None:
    nexudus_portal.emulator.seed_booking(
        nexudus_portal.room_id, START + timedelta(minutes=30), START + timedelta(hours=2),
        member=OTHER_MEMBER,
    )
    with pytest.raises(Refused, match="already booked") as refused:
        writer.create(room_of(nexudus_portal), request(), MARKER, WINDOW)
    assert "Otto" not in refused.value.reason
    assert counts(nexudus_portal) == {"search": 1, "create": 0}


def test_series_is_booked_inside_the_window_skipping_what_is_over(
    nexudus_portal: PortalWorld, writer: NexudusPortalWriter
) -> None:
    room = room_of(nexudus_portal)
    first = START - WEEK  # 5 March, before the portal's now (10 March): over already
    booking = request(first, rrule="FREQ=WEEKLY")
    assert isinstance(writer, WindowedWriter)
    assert writer.horizon(booking, WINDOW) == WINDOW.end
    assert writer.horizon(request(), WINDOW) is None
    keys = writer.create(room, booking, MARKER, WINDOW)
    assert starts(nexudus_portal) == [START, START + WEEK, START + 2 * WEEK]
    assert len(keys) == 3


def test_a_refused_occurrence_cancels_the_series_made_so_far(
    nexudus_portal: PortalWorld, writer: NexudusPortalWriter
) -> None:
    taken = START + WEEK
    nexudus_portal.emulator.seed_booking(
        nexudus_portal.room_id, taken, taken + timedelta(hours=1), member=OTHER_MEMBER
    )
    with pytest.raises(Refused):
        writer.create(room_of(nexudus_portal), request(rrule="FREQ=WEEKLY"), MARKER, WINDOW)
    assert starts(nexudus_portal) == [taken]


def test_extend_books_the_new_part_once(
    nexudus_portal: PortalWorld, writer: NexudusPortalWriter
) -> None:
    room = room_of(nexudus_portal)
    booking = request(rrule="FREQ=WEEKLY")
    writer.create(room, booking, MARKER, Window(WINDOW.start, START + WEEK + timedelta(hours=2)))
    assert len(starts(nexudus_portal)) == 2
    moved = Window(WINDOW.start, START + 3 * WEEK)
    since = START + WEEK + timedelta(hours=2)
    added = writer.extend(room, booking, MARKER, since, moved)
    assert writer.extend(room, booking, MARKER, since, moved) == added
    assert len(added) == 2 and len(starts(nexudus_portal)) == 4


def test_change_rebooks_and_a_refused_change_puts_the_old_booking_back(
    nexudus_portal: PortalWorld, writer: NexudusPortalWriter
) -> None:
    room = room_of(nexudus_portal)
    keys = writer.create(room, request(), MARKER, WINDOW)
    later = START + timedelta(hours=3)
    moved = writer.change(room, keys, request(later), MARKER, WINDOW)
    assert moved != keys and starts(nexudus_portal) == [later]
    blocked = START + timedelta(days=1)
    nexudus_portal.emulator.seed_booking(
        nexudus_portal.room_id, blocked, blocked + timedelta(hours=1), member=OTHER_MEMBER
    )
    with pytest.raises(Refused):
        writer.change(room, moved, request(blocked), MARKER, WINDOW)
    assert starts(nexudus_portal) == [later, blocked]
    assert len(writer.find(room, MARKER, WINDOW)) == 1


def test_cancel_and_cancel_occurrences(
    nexudus_portal: PortalWorld, writer: NexudusPortalWriter
) -> None:
    room = room_of(nexudus_portal)
    keys = writer.create(room, request(rrule="FREQ=WEEKLY;COUNT=3"), MARKER, WINDOW)
    writer.cancel_occurrences(room, keys, [START + WEEK])
    assert starts(nexudus_portal) == [START, START + 2 * WEEK]
    writer.cancel(room, keys)  # one of them is gone already: fine
    assert starts(nexudus_portal) == []


def test_a_request_wholly_in_the_past_is_refused_with_the_portals_words(
    nexudus_portal: PortalWorld, writer: NexudusPortalWriter
) -> None:
    with pytest.raises(Refused, match="cannot be made in the past"):
        writer.create(room_of(nexudus_portal), request(NEXUDUS_NOW - timedelta(days=2)),
                      MARKER, WINDOW)
    assert counts(nexudus_portal) == {"search": 1, "create": 0}
