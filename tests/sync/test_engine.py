"""The executor's guarantees, with an in-memory calendar that can be made to misbehave."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bridge.calendars.base import (
    AlreadyExists,
    CalendarError,
    ChangeSet,
    NotFound,
    PreconditionFailed,
    RemoteObject,
)
from bridge.model import Booking, BookingStatus, Room, Window
from bridge.sources.base import SourceRead
from bridge.state.store import StateStore
from bridge.sync.engine import PassOptions, RoomSync

NOW = datetime(2026, 6, 1, 8, tzinfo=UTC)
WINDOW = Window.around(NOW, 30, 365)
ROOM = Room("callisto", "Callisto", "Europe/London", "hq", "42", "dav", "/cal/")


def booking(key: str, day: int, title: str = "Meeting") -> Booking:
    start = NOW + timedelta(days=day)
    return Booking("hq", key, "42", start, start + timedelta(hours=1), "Europe/London", title=title)


@dataclass
class FakeSource:
    """A provider whose whole state is a dict; every read is full."""

    bookings: dict[str, Booking] = field(default_factory=dict)
    fail: bool = False

    def resource_timezone(self, resource: str) -> str:
        return "Europe/London"

    def read(self, room: Room, cursor: str | None, window: Window, *, full: bool, now: datetime):
        if self.fail:
            raise CalendarError("read", "provider", 500, "provider down")
        return SourceRead(list(self.bookings.values()), [], "c", full=True)


@dataclass
class FakeCalendar:
    """A CalDAV-like collection in memory, with switches for failures."""

    objects: dict[str, RemoteObject] = field(default_factory=dict)
    etags: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    refuse_uids: set[str] = field(default_factory=set)
    stale_etag_once: set[str] = field(default_factory=set)
    request_count: int = 0

    def _put(self, uid: str, ics: bytes, href: str) -> RemoteObject:
        obj = RemoteObject(href, f'"{next(self.etags)}"', uid, ics)
        self.objects[href] = obj
        return obj

    def read_changes(self, cursor: str | None) -> ChangeSet:
        self.request_count += 1
        return ChangeSet(list(self.objects.values()), [], "token", full=True, requests=1)

    def create(self, uid: str, ics: bytes) -> RemoteObject:
        self.request_count += 1
        if uid in self.refuse_uids:
            raise CalendarError("create", uid, 507, "insufficient storage")
        href = f"/cal/{uid}.ics"
        if href in self.objects:
            raise AlreadyExists("create", href, 412, "exists", self.objects[href])
        return self._put(uid, ics, href)

    def update(self, href: str, ics: bytes, etag: str | None) -> RemoteObject:
        self.request_count += 1
        if href not in self.objects:
            raise NotFound("update", href, 404, "gone")
        if href in self.stale_etag_once:
            self.stale_etag_once.discard(href)
            self._put(self.objects[href].uid, self.objects[href].ics, href)
            raise PreconditionFailed("update", href, 412, "changed")
        if etag is not None and self.objects[href].etag != etag:
            raise PreconditionFailed("update", href, 412, "changed")
        return self._put(self.objects[href].uid, ics, href)

    def delete(self, href: str, etag: str | None) -> None:
        self.request_count += 1
        self.objects.pop(href, None)

    def get(self, href: str) -> RemoteObject:
        self.request_count += 1
        if href not in self.objects:
            raise NotFound("get", href, 404, "gone")
        return self.objects[href]


@pytest.fixture
def store(tmp_path: Path):
    with StateStore.open(f"sqlite:///{tmp_path / 'state.db'}") as opened:
        yield opened


def sync(source, calendar, store, **options):
    engine = RoomSync(ROOM, source, calendar, store, clock=lambda: NOW)
    return engine.run(PassOptions(window=WINDOW, max_deletions=50, **options))


def test_one_failing_item_does_not_stop_the_room_and_is_retried(store):
    source = FakeSource({k: booking(k, i + 1) for i, k in enumerate("abc")})
    calendar = FakeCalendar()
    bad_uid = "roombridge-hq-b"
    calendar.refuse_uids.add(bad_uid)
    first = sync(source, calendar, store)
    assert not first.ok and first.created == 2
    assert any("insufficient storage" in e for e in first.errors)
    second = sync(source, calendar, store)
    assert [e.attempts for e in store.errors("callisto")] == [2]
    calendar.refuse_uids.clear()
    third = sync(source, calendar, store)
    assert third.ok and third.created == 1
    assert store.errors("callisto") == []
    assert not second.ok


def test_412_rereads_and_the_provider_wins(store):
    source = FakeSource({"a": booking("a", 1)})
    calendar = FakeCalendar()
    sync(source, calendar, store)
    source.bookings["a"] = booking("a", 1, title="Renamed")
    calendar.stale_etag_once.add("/cal/roombridge-hq-a.ics")
    result = sync(source, calendar, store)
    assert result.ok and result.updated == 1
    assert b"Renamed" in calendar.objects["/cal/roombridge-hq-a.ics"].ics


def test_object_created_but_not_recorded_is_adopted(store):
    source = FakeSource({"a": booking("a", 1)})
    calendar = FakeCalendar()
    sync(source, calendar, store)
    # Simulate a crash right after the PUT: the link is lost, the object is there.
    store.forget("callisto", "a")
    for obj in store.calendar_objects("callisto"):
        store.delete_calendar_object("callisto", obj.href)
    result = sync(source, calendar, store)
    assert result.ok and (result.created, result.updated) == (0, 0)
    assert len(calendar.objects) == 1
    assert [link.uid for link in store.room_links("callisto")] == ["roombridge-hq-a"]


def test_failed_provider_read_changes_nothing(store):
    source = FakeSource({"a": booking("a", 1)})
    calendar = FakeCalendar()
    sync(source, calendar, store)
    source.fail = True
    result = sync(source, calendar, store)
    assert not result.ok and "provider down" in result.errors[0]
    assert len(calendar.objects) == 1
    assert store.get_cursor("callisto", "provider") == "c"


def test_cancelled_and_out_of_window_bookings_are_not_on_the_calendar(store):
    far = booking("far", 400)
    cancelled = booking("x", 2).evolve(status=BookingStatus.CANCELLED)
    source = FakeSource({"far": far, "x": cancelled, "a": booking("a", 1)})
    calendar = FakeCalendar()
    result = sync(source, calendar, store)
    assert result.created == 1
    assert list(calendar.objects) == ["/cal/roombridge-hq-a.ics"]


def test_door_code_reaches_the_organizers_event_only_when_enabled_and_full(store):
    import dataclasses

    from bridge.model import Privacy

    source = FakeSource({"a": booking("a", 1)})
    start = source.bookings["a"].start
    code = store.unlock_code("callisto", "pod-1", "a", start, NOW, digits=6)
    shared = dataclasses.replace(
        ROOM, feed_privacy=Privacy.FULL, devices="pods", device_code_to_organizer=True
    )
    calendar = FakeCalendar()
    RoomSync(shared, source, calendar, store, clock=lambda: NOW).run(
        PassOptions(window=WINDOW, max_deletions=50)
    )
    assert code.encode() in calendar.objects["/cal/roombridge-hq-a.ics"].ics
    # Off by default: the same store and code, a room that does not opt in.
    other = FakeCalendar()
    sync(source, other, store)
    assert code.encode() not in other.objects["/cal/roombridge-hq-a.ics"].ics


@pytest.fixture
def renders(monkeypatch):
    """The bookings rendered to iCalendar during the test, by key."""
    import bridge.sync.rendering as rendering

    seen: list[str] = []
    real = rendering.booking_to_objects

    def counting(booking, **options):
        seen.append(booking.key)
        return real(booking, **options)

    monkeypatch.setattr(rendering, "booking_to_objects", counting)
    return seen


def test_quiet_pass_renders_no_booking(store, renders):
    source = FakeSource({k: booking(k, i + 1) for i, k in enumerate("abcd")})
    calendar = FakeCalendar()
    sync(source, calendar, store)
    assert sorted(renders) == ["a", "b", "c", "d"]
    renders.clear()
    quiet = sync(source, calendar, store)
    assert quiet.ok and (quiet.created, quiet.updated, quiet.deleted) == (0, 0, 0)
    assert renders == []


def test_a_changed_booking_alone_is_rendered_and_written(store, renders):
    source = FakeSource({k: booking(k, i + 1) for i, k in enumerate("abcd")})
    calendar = FakeCalendar()
    sync(source, calendar, store)
    renders.clear()
    source.bookings["c"] = booking("c", 3, title="Moved to the big room")
    result = sync(source, calendar, store)
    assert result.ok and result.updated == 1
    assert renders == ["c"]
    assert b"Moved to the big room" in calendar.objects["/cal/roombridge-hq-c.ics"].ics


def test_third_party_edit_of_an_unchanged_booking_is_reverted_from_the_memo(store, renders):
    source = FakeSource({"a": booking("a", 1, title="Board")})
    calendar = FakeCalendar()
    sync(source, calendar, store)
    href = "/cal/roombridge-hq-a.ics"
    original = calendar.objects[href].ics
    calendar._put("roombridge-hq-a", original.replace(b"Board", b"Hijacked"), href)
    renders.clear()
    result = sync(source, calendar, store)
    # The memo gave the plan its hash; the write needed the text, so only that booking renders.
    assert result.ok and result.updated == 1 and renders == ["a"]
    assert b"Board" in calendar.objects[href].ics and b"Hijacked" not in calendar.objects[href].ics


def test_full_pass_ignores_the_render_memo(store, renders):
    source = FakeSource({k: booking(k, i + 1) for i, k in enumerate("ab")})
    calendar = FakeCalendar()
    sync(source, calendar, store)
    renders.clear()
    assert sync(source, calendar, store, full=True).ok
    assert sorted(renders) == ["a", "b"]


def test_unreadable_render_memo_renders_again(store, renders):
    source = FakeSource({"a": booking("a", 1)})
    calendar = FakeCalendar()
    sync(source, calendar, store)
    store.set_cursor("callisto", "rendered", "{not json", NOW)
    renders.clear()
    result = sync(source, calendar, store)
    assert result.ok and result.updated == 0 and renders == ["a"]


def test_a_memo_naming_an_object_the_booking_no_longer_renders_fails_only_that_item(store):
    import json

    source = FakeSource({k: booking(k, i + 1) for i, k in enumerate("ab")})
    calendar = FakeCalendar()
    sync(source, calendar, store)
    # As if the mapping code had changed without a RENDERING bump: same fingerprint, other UID.
    memo = json.loads(store.get_cursor("callisto", "rendered"))
    memo["a"][1] = [["roombridge-hq-ghost", "0" * 64]]
    store.set_cursor("callisto", "rendered", json.dumps(memo), NOW)
    result = sync(source, calendar, store)
    assert not result.ok and any("run sync --full" in e for e in result.errors)
    healed = sync(source, calendar, store, full=True)
    assert healed.ok
    assert sorted(calendar.objects) == ["/cal/roombridge-hq-a.ics", "/cal/roombridge-hq-b.ics"]
