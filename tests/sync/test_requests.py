"""The pure booking-request planner: conflicts with buffers, races, series policy, edits."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.model import Booking, BookingStatus, Buffers, Recurrence, Room, Window
from bridge.sync.intake import request_of
from bridge.sync.requests import (
    Accepted,
    Book,
    CalendarRequest,
    Change,
    Decline,
    DropOccurrences,
    Extend,
    ProviderCancelled,
    Revert,
    RoomPolicy,
    Withdraw,
    plan_requests,
)

ZONE = "Europe/London"
DAY = datetime(2025, 3, 3, tzinfo=UTC)
WINDOW = Window(DAY - timedelta(days=1), DAY + timedelta(days=60))
POLICY = RoomPolicy(WINDOW, Buffers(timedelta(minutes=15), timedelta(minutes=15)), 50)


def at(hour: float, day: int = 0) -> datetime:
    return DAY + timedelta(days=day, hours=hour)


def booking(key: str, start: datetime, hours: float = 1, **fields: object) -> Booking:
    made = Booking("hq", key, "7", start, start + timedelta(hours=hours), ZONE)
    return made.evolve(**fields) if fields else made


def request(uid: str, start: datetime, hours: float = 1, *, created: int = 0,
            **fields: object) -> CalendarRequest:
    return CalendarRequest(
        uid, booking(uid, start, hours, **fields), f"hash-{uid}-{start}", at(created, -1)
    )


def test_free_request_is_booked_with_the_room_buffers():
    (decision,) = plan_requests([request("r", at(10))], {}, [], POLICY)
    assert isinstance(decision, Book)
    assert decision.booking.buffers == POLICY.default_buffers


def test_overlap_with_a_bookings_buffer_is_declined_naming_only_the_slot():
    other = booking("b1", at(9), buffers=Buffers(after=timedelta(minutes=30)), title="Zed")
    (decision,) = plan_requests([request("r", at(10, 0) + timedelta(minutes=20))], {}, [other],
                                POLICY)
    assert isinstance(decision, Decline)
    assert decision.reason == "the room is booked 2025-03-03 09:00\u201310:00 " \
        "(with its setup/cleanup time)"
    assert "Zed" not in decision.reason


def test_back_to_back_outside_all_buffers_is_free():
    other = booking("b1", at(9), buffers=Buffers(after=timedelta(minutes=15)))
    (decision,) = plan_requests([request("r", at(10, 0) + timedelta(minutes=30))], {}, [other],
                                POLICY)
    assert isinstance(decision, Book)


def test_cancelled_bookings_do_not_block():
    other = booking("b1", at(10), status=BookingStatus.CANCELLED)
    (decision,) = plan_requests([request("r", at(10))], {}, [other], POLICY)
    assert isinstance(decision, Book)


def test_race_first_created_wins_whatever_the_input_order():
    late, early = request("a-late", at(10), created=5), request("z-early", at(10), created=1)
    for order in ([late, early], [early, late]):
        decisions = plan_requests(order, {}, [], POLICY)
        booked = [d.request.uid for d in decisions if isinstance(d, Book)]
        declined = [d.request.uid for d in decisions if isinstance(d, Decline)]
        assert booked == ["z-early"] and declined == ["a-late"]


def test_recurring_request_declines_only_its_conflicting_occurrences():
    weekly = Recurrence(rrule="FREQ=WEEKLY;COUNT=5")
    taken = [booking("b1", at(10, 7)), booking("b2", at(10, 21))]
    (decision,) = plan_requests([request("r", at(10), recurrence=weekly)], {}, taken, POLICY)
    assert isinstance(decision, Book)
    assert decision.declined == (at(10, 7), at(10, 21))
    assert decision.booking.recurrence is not None
    assert {d.astimezone(UTC) for d in decision.booking.recurrence.exdates} == {
        at(10, 7), at(10, 21)
    }


def test_series_over_the_share_is_declined_whole():
    weekly = Recurrence(rrule="FREQ=WEEKLY;COUNT=3")
    taken = [booking("b1", at(10)), booking("b2", at(10, 7))]
    (decision,) = plan_requests([request("r", at(10), recurrence=weekly)], {}, taken, POLICY)
    assert isinstance(decision, Decline)
    assert decision.reason.startswith("2 of 3 occurrences conflict")


def accepted(uid: str, keys: tuple[str, ...], start: datetime, **fields: object) -> Accepted:
    return Accepted(uid, keys, "hash-accepted", booking(uid, start, **fields))


def test_unchanged_accepted_request_needs_nothing_and_does_not_clash_with_itself():
    mine = booking("k1", at(10))
    current = CalendarRequest("r", booking("r", at(10)), "hash-accepted")
    assert plan_requests([current], {"r": accepted("r", ("k1",), at(10))}, [mine], POLICY) == ()


def test_move_to_a_free_slot_is_a_change_and_to_a_taken_slot_is_reverted():
    mine, other = booking("k1", at(10)), booking("k2", at(14))
    done = {"r": accepted("r", ("k1",), at(10))}
    (free,) = plan_requests([request("r", at(10, 0) + timedelta(minutes=30))], done,
                            [mine, other], POLICY)
    assert isinstance(free, Change)
    (taken,) = plan_requests([request("r", at(14))], done, [mine, other], POLICY)
    assert isinstance(taken, Revert) and "14:00" in taken.reason


def test_removed_occurrence_is_dropped_and_deleted_event_withdrawn():
    weekly = Recurrence(rrule="FREQ=WEEKLY;COUNT=3")
    mine = booking("series", at(10), recurrence=weekly)
    done = {"r": accepted("r", ("series",), at(10), recurrence=weekly)}
    fewer = Recurrence(rrule="FREQ=WEEKLY;COUNT=3", exdates=(at(10, 7),))
    (drop,) = plan_requests([request("r", at(10), recurrence=fewer)], done, [mine], POLICY)
    assert isinstance(drop, DropOccurrences) and drop.starts == (at(10, 7),)
    (gone,) = plan_requests([], done, [mine], POLICY)
    assert isinstance(gone, Withdraw) and gone.accepted.keys == ("series",)


def test_provider_cancellation_cancels_the_event():
    done = {"r": accepted("r", ("k1",), at(10))}
    current = CalendarRequest("r", booking("r", at(10)), "hash-accepted")
    (decision,) = plan_requests([current], done, [], POLICY)
    assert isinstance(decision, ProviderCancelled)


def windowed(through: datetime | None) -> tuple[CalendarRequest, dict[str, Accepted], Booking]:
    """An endless daily request accepted as singles up to ``through``, and its first single."""
    daily = Recurrence(rrule="FREQ=DAILY")
    current = CalendarRequest("r", booking("r", at(10), recurrence=daily), "hash-accepted")
    done = Accepted("r", ("k1",), "hash-accepted", booking("r", at(10), recurrence=daily),
                    through)
    return current, {"r": done}, booking("k1", at(10))


def test_windowed_series_extends_from_its_horizon_declining_only_clashes():
    current, done, mine = windowed(WINDOW.end - timedelta(days=3))
    # 10:00 in London is 09:00 UTC by then; one of the three new days is taken.
    clash = datetime(2025, 4, 30, 9, tzinfo=UTC)
    taken = booking("b1", clash)
    (decision,) = plan_requests([current], done, [mine, taken], POLICY)
    assert isinstance(decision, Extend)
    assert decision.since == WINDOW.end - timedelta(days=3)
    assert decision.declined == (clash,)
    assert decision.reason == "occurrences declined: the room is booked 2025-04-30 10:00\u201311:00"
    excluded = decision.booking.recurrence.exdates if decision.booking.recurrence else ()
    assert [e.astimezone(UTC) for e in excluded] == [clash]


def test_series_covered_whole_or_up_to_the_window_is_not_extended():
    for through in (None, WINDOW.end, WINDOW.end + timedelta(days=1)):
        current, done, mine = windowed(through)
        assert plan_requests([current], done, [mine], POLICY) == ()


def test_an_extension_waits_for_an_edit_to_be_settled_first():
    current, done, mine = windowed(WINDOW.end - timedelta(days=3))
    moved = CalendarRequest("r", booking("r", at(11), recurrence=Recurrence(rrule="FREQ=DAILY")),
                            "hash-edited")
    (decision,) = plan_requests([moved], done, [mine], POLICY)
    assert isinstance(decision, Change)  # and no Extend of the old shape alongside it
    (unchanged,) = plan_requests([current], done, [mine], POLICY)
    assert isinstance(unchanged, Extend) and unchanged.declined == ()


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 40), st.integers(1, 8), st.integers(0, 20)),
        min_size=1,
        max_size=8,
    )
)
def test_booked_requests_never_overlap_each_other_including_buffers(
    slots: list[tuple[int, int, int]],
):
    requests = [
        request(f"r{i}", at(8) + timedelta(minutes=15 * s), d / 4, created=c)
        for i, (s, d, c) in enumerate(slots)
    ]
    decisions = plan_requests(requests, {}, [], POLICY)
    booked = [d.booking for d in decisions if isinstance(d, Book)]
    assert len(booked) + sum(isinstance(d, Decline) for d in decisions) == len(requests)
    spans = sorted(
        (b.start - b.buffers.before, b.end + b.buffers.after) for b in booked
    )
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(spans))
    assert booked, "the first request into an empty room is always booked"


def _invitation(*rooms: tuple[str, str]) -> bytes:
    """An organizer's meeting inviting ``rooms`` ((address, PARTSTAT) pairs)."""
    lines = [
        "BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//tests//EN", "BEGIN:VEVENT",
        "UID:meet@client", "DTSTAMP:20250101T000000Z", "DTSTART:20250303T100000Z",
        "DTEND:20250303T110000Z", "SUMMARY:Planning", "X-ROOMBRIDGE-PROVIDER:hq",
        "X-ROOMBRIDGE-KEY:42", "ORGANIZER:mailto:ada@example.com",
        *(f"ATTENDEE;CUTYPE=RESOURCE;PARTSTAT={answer}:mailto:{address}"
          for address, answer in rooms),
        "END:VEVENT", "END:VCALENDAR",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


def test_a_request_is_declined_only_by_its_own_room_and_read_as_foreign():
    room = Room("callisto", "Callisto", ZONE, "hq", "7", "g", "callisto@rooms.example")
    other_declined = _invitation(("callisto@rooms.example", "ACCEPTED"),
                                 ("europa@rooms.example", "DECLINED"))
    request_read = request_of(room, "meet@client", other_declined)
    assert not request_read.declined_by_room
    # The room's tags do not make the organizer's event read as one the bridge wrote.
    assert request_read.booking.key == "meet@client" and request_read.booking.title == "Planning"
    mine_declined = _invitation(("callisto@rooms.example", "DECLINED"),
                                ("europa@rooms.example", "ACCEPTED"))
    assert request_of(room, "meet@client", mine_declined).declined_by_room
    # A calendar that is not addressed like its room (a CalDAV path): any room attendee counts.
    plain = Room("callisto", "Callisto", ZONE, "hq", "7", "dav", "/rooms/callisto/")
    assert request_of(plain, "meet@client", other_declined).declined_by_room
