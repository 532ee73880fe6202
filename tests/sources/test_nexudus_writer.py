"""The Nexudus writer against the strict emulator: who is billed, and series booked in parts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from bridge.model import Booking, Person, Recurrence, Room, Window
from bridge.providers.nexudus import NexudusClient, parse_nexudus_time
from bridge.sources.writers import NexudusWriter, Refused, WindowedWriter, request_marker
from tests.plugins.nexudus import NexudusWorld

MakeClient = Callable[..., NexudusClient]
ROOM_MAILBOX = "callisto@rooms.example.com"
START = datetime(2025, 3, 12, 9, 0, tzinfo=UTC)
WEEK = timedelta(days=7)


def room_of(world: NexudusWorld) -> Room:
    """The emulator's room, with a mailbox as its calendar (as on Google or Microsoft 365)."""
    return Room(
        id="callisto", name="Callisto", timezone="Europe/London", provider="hq",
        resource=str(world.room_id), calendar="cal", calendar_id=ROOM_MAILBOX,
        direction="both",
    )


def request(
    organizer: str | None = "ada@example.com",
    attendees: tuple[str, ...] = (),
    *,
    rrule: str | None = None,
    start: datetime = START,
) -> Booking:
    """A booking as read from a calendar request."""
    return Booking(
        provider="hq", key="meet@client", resource="", start=start,
        end=start + timedelta(hours=1), timezone="Europe/London", title="Sync",
        organizer=Person(email=organizer, name="Organizer") if organizer else None,
        attendees=tuple(Person(email=email) for email in attendees),
        recurrence=Recurrence(rrule=rrule) if rrule else None,
    )


@pytest.fixture
def writer(make_nexudus_client: MakeClient) -> NexudusWriter:
    """A writer with no default customer."""
    return NexudusWriter(make_nexudus_client(), name="hq")


def coworker_lookups(world: NexudusWorld) -> int:
    """How many coworker listings the emulator answered."""
    return world.emulator.request_counts()["GET /api/spaces/coworkers"]


def mine(world: NexudusWorld) -> list[dict[str, object]]:
    """Live records made for the request, in start order."""
    marker = request_marker("meet@client")
    return sorted(
        (r for r in world.emulator.bookings() if r["SystemId"] == marker),
        key=lambda r: str(r["FromTime"]),
    )


# ----- who is billed ---------------------------------------------------------------------------


def test_organizer_coworker_is_billed_and_the_lookup_is_cached(
    nexudus: NexudusWorld, writer: NexudusWriter
) -> None:
    ada = nexudus.emulator.add_coworker("Ada Lovelace", "ada@example.com")
    room = room_of(nexudus)
    window = Window(START - WEEK, START + 4 * WEEK)
    writer.create(room, request(), request_marker("meet@client"), window)
    later = request(start=START + timedelta(days=1))
    writer.create(room, later, request_marker("meet@client"), window)
    assert [r["CoworkerId"] for r in mine(nexudus)] == [ada, ada]
    assert coworker_lookups(nexudus) == 1


def test_attendees_are_tried_in_order_after_the_organizer(
    nexudus: NexudusWorld, writer: NexudusWriter
) -> None:
    nexudus.emulator.add_coworker("Bob", "bob@example.com")
    cy = nexudus.emulator.add_coworker("Cy", "cy@example.com")
    booking = request("guest@elsewhere.org", ("friend@elsewhere.org", "CY@example.com",
                                              "bob@example.com"))
    assert writer.customer_for(room_of(nexudus), booking) == cy


def test_the_room_itself_is_never_billed(nexudus: NexudusWorld, writer: NexudusWriter) -> None:
    # Someone registered the room's mailbox as a customer; it still must not pay for bookings.
    nexudus.emulator.add_coworker("Callisto mailbox", ROOM_MAILBOX)
    booking = request("guest@elsewhere.org", (ROOM_MAILBOX,))
    with pytest.raises(Refused):
        writer.customer_for(room_of(nexudus), booking)
    assert coworker_lookups(nexudus) == 1  # the guest only


def test_default_customer_when_nobody_matches(
    nexudus: NexudusWorld, make_nexudus_client: MakeClient
) -> None:
    house = nexudus.emulator.add_coworker("Front Desk", "desk@acme.example")
    writer = NexudusWriter(make_nexudus_client(), name="hq", customer=str(house))
    window = Window(START - WEEK, START + WEEK)
    writer.create(room_of(nexudus), request("guest@elsewhere.org"), "m", window)
    assert [r["CoworkerId"] for r in nexudus.emulator.bookings()] == [house]


def test_nobody_to_bill_refuses_before_anything_is_created(
    nexudus: NexudusWorld, writer: NexudusWriter
) -> None:
    nexudus.emulator.add_coworker("Zed Secret", "zed@example.com")
    booking = request("guest@elsewhere.org", ("pal@elsewhere.org",), rrule="FREQ=WEEKLY")
    with pytest.raises(Refused) as refused:
        writer.create(room_of(nexudus), booking, "m", Window(START, START + 4 * WEEK))
    reason = refused.value.reason
    assert reason.startswith("no Nexudus customer for guest@elsewhere.org")
    assert "pal@" not in reason and "Zed" not in reason
    assert nexudus.emulator.bookings() == []
    assert nexudus.emulator.request_counts()["POST /api/spaces/bookings"] == 0


def test_a_replacing_change_without_customer_keeps_the_old_bookings(
    nexudus: NexudusWorld, make_nexudus_client: MakeClient
) -> None:
    house = nexudus.emulator.add_coworker("Front Desk", "desk@acme.example")
    room, window = room_of(nexudus), Window(START - WEEK, START + 5 * WEEK)
    marker = request_marker("meet@client")
    made = NexudusWriter(make_nexudus_client(), name="hq", customer=str(house)).create(
        room, request("guest@elsewhere.org", rrule="FREQ=WEEKLY"), marker, window
    )
    assert len(made) == 6  # 09:00 London to 16 April (08:00 UTC once summer time starts)
    # Without the default customer, reshaping the series (cancel and re-create) is refused
    # before the old bookings are cancelled.
    strict = NexudusWriter(make_nexudus_client(), name="hq")
    moved = request("guest@elsewhere.org", rrule="FREQ=WEEKLY;BYDAY=WE,TH")
    with pytest.raises(Refused):
        strict.change(room, made, moved, marker, window)
    assert len(mine(nexudus)) == 6


def test_a_replacing_change_nexudus_refuses_puts_the_old_booking_back(
    nexudus: NexudusWorld, make_nexudus_client: MakeClient
) -> None:
    house = nexudus.emulator.add_coworker("Front Desk", "desk@acme.example")
    room, window = room_of(nexudus), Window(START - WEEK, START + 5 * WEEK)
    marker = request_marker("meet@client")
    writer = NexudusWriter(make_nexudus_client(), name="hq", customer=str(house))
    made = writer.create(room, request("guest@elsewhere.org"), marker, window)
    # Someone takes the room a week later, after the bridge last read Nexudus.
    nexudus.emulator.seed_booking(nexudus.room_id, START + WEEK, START + WEEK + timedelta(hours=1))
    weekly = request("guest@elsewhere.org", rrule="FREQ=WEEKLY;COUNT=3")
    with pytest.raises(Refused) as refused:
        writer.change(room, made, weekly, marker, window)
    # The single could not become a series in place; the series was refused, so the single
    # is back (under a new key, which the refusal reports) and nothing else was left.
    back = mine(nexudus)
    assert [(parse_nexudus_time(r["FromTime"]), parse_nexudus_time(r["ToTime"])) for r in back] == [
        (START, START + timedelta(hours=1))
    ]
    assert back[0]["CoworkerId"] == house
    assert refused.value.kept == tuple(str(r["Id"]) for r in back)
    assert refused.value.kept != tuple(made)


# ----- series Nexudus cannot hold: booked inside a window, extended later -----------------------


def test_horizon_is_the_window_end_only_for_series_made_of_singles(
    writer: NexudusWriter,
) -> None:
    window = Window(START, START + 4 * WEEK)
    assert isinstance(writer, WindowedWriter)
    assert writer.horizon(request(rrule="FREQ=WEEKLY"), window) == window.end
    assert writer.horizon(request(rrule="FREQ=WEEKLY;COUNT=3"), window) is None
    assert writer.horizon(request(), window) is None


def test_extend_books_only_the_newly_covered_occurrences_once(
    nexudus: NexudusWorld, writer: NexudusWriter
) -> None:
    nexudus.emulator.add_coworker("Ada Lovelace", "ada@example.com")
    room, marker = room_of(nexudus), request_marker("meet@client")
    booking = request(rrule="FREQ=WEEKLY")
    first = Window(START - WEEK, START + 2 * WEEK + timedelta(minutes=30))
    keys = writer.create(room, booking, marker, first)
    assert [r["FromTime"] for r in mine(nexudus)] == [
        "2025-03-12T09:00:00Z", "2025-03-19T09:00:00Z", "2025-03-26T09:00:00Z",
    ]
    # The occurrence of 26 March straddles the old window's end: it is not booked again.
    moved = Window(START, START + 4 * WEEK + timedelta(hours=1))
    extended = writer.extend(room, booking, marker, first.end, moved)
    assert [r["FromTime"] for r in mine(nexudus)][3:] == [
        "2025-04-02T08:00:00Z", "2025-04-09T08:00:00Z",  # 09:00 in London, summer time
    ]
    # Interrupted after the provider writes, the extension runs again: nothing twice.
    again = writer.extend(room, booking, marker, first.end, moved)
    assert again == extended and len(extended) == 2
    assert len(mine(nexudus)) == 5
    writer.cancel(room, [*keys, *extended])
    assert mine(nexudus) == []


def test_a_refused_extension_leaves_nothing_of_itself(
    nexudus: NexudusWorld, writer: NexudusWriter
) -> None:
    nexudus.emulator.add_coworker("Ada Lovelace", "ada@example.com")
    room, marker = room_of(nexudus), request_marker("meet@client")
    booking = request(rrule="FREQ=WEEKLY")
    taken = datetime(2025, 4, 2, 8, 0, tzinfo=UTC)  # the third week's 09:00 in London
    nexudus.emulator.seed_booking(nexudus.room_id, taken, taken + timedelta(hours=1))
    with pytest.raises(Refused, match="not available"):
        writer.extend(room, booking, marker, START + WEEK, Window(START, START + 4 * WEEK))
    assert mine(nexudus) == []
