"""Feeds built from the state store: contents against bookings, the window, re-rendering only
what changed, DTSTAMP/SEQUENCE, ETag and Last-Modified, isolation of a bad booking."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import icalendar
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.config import Config, load_config
from bridge.feeds.publisher import FeedPublisher
from bridge.feeds.refresh import FEED_OPERATION, FeedSettings, refresh_room_feed
from bridge.feeds.render import feed_window
from bridge.model import Booking, BookingStatus, Buffers, Override, Recurrence
from bridge.state.store import StateStore
from mappings.expansion import live_instants
from tests.feeds.parsers import READERS

LONDON = ZoneInfo("Europe/London")
NOW = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
ROOM = "callisto"


class Clock:
    """A settable clock for the publisher."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def write_config(folder: Path, state_url: str, *, privacy: str = "busy",
                 buffers: str = "hidden") -> Config:
    path = folder / "bridge.toml"
    path.write_text(f"""
[state]
url = "{state_url}"

[sync]
past_days = 30
future_days = 365

[providers.hq]
kind = "nexudus"
base_url = "http://127.0.0.1:9"
username = "u"
password = "p"

[[rooms]]
id = "{ROOM}"
name = "Callisto"
provider = "hq"
resource = "r1"
timezone = "Europe/London"
buffers = "{buffers}"
feed_privacy = "{privacy}"

[[rooms]]
id = "io"
name = "Io"
provider = "hq"
resource = "r2"
timezone = "Europe/London"
""")
    return load_config(path)


@pytest.fixture
def config(tmp_path: Path, state_url: str) -> Config:
    return write_config(tmp_path, state_url)


@pytest.fixture
def store(config: Config) -> Iterator[StateStore]:
    with StateStore.open(config.state.url) as opened:
        yield opened


def single(key: str, days: float, hours: float = 1, **changes: object) -> Booking:
    start = (NOW + timedelta(days=days)).astimezone(LONDON)
    return Booking("hq", key, "r1", start, start + timedelta(hours=hours), "Europe/London",
                   title=f"title of {key}").evolve(**changes)


def weekly(key: str, first_days: float, rule: str = "FREQ=WEEKLY", **changes: object) -> Booking:
    return single(key, first_days, recurrence=Recurrence(rrule=rule)).evolve(**changes)


def feed_instants(body: bytes, window_start: datetime, window_end: datetime,
                  reader: str = "icalendar") -> Counter[tuple[datetime, datetime]]:
    return READERS[reader](body, window_start, window_end)


def uids(body: bytes) -> set[str]:
    return {str(e["UID"]) for e in icalendar.Calendar.from_ical(body).walk("VEVENT")}


def events_by_sequence(body: bytes) -> dict[str, tuple[int, datetime]]:
    return {
        str(e["UID"]): (int(e["SEQUENCE"]), e["DTSTAMP"].dt)
        for e in icalendar.Calendar.from_ical(body).walk("VEVENT")
        if "RECURRENCE-ID" not in e
    }


# --- contents ---------------------------------------------------------------------------------


def test_feed_occurrences_equal_the_bookings_in_the_window(config: Config,
                                                            store: StateStore) -> None:
    rid = (NOW + timedelta(days=14)).astimezone(LONDON)
    bookings = [
        single("past", -10),
        single("soon", 1, status=BookingStatus.TENTATIVE),
        single("far", 300),
        single("too-old", -90),                 # before the window: left out
        single("too-far", 500),                 # after the window: left out
        single("cancelled", 3, status=BookingStatus.CANCELLED),
        single("series", 0, recurrence=Recurrence(rrule="FREQ=WEEKLY;COUNT=20", overrides=(
            Override(rid, rid + timedelta(hours=2), rid + timedelta(hours=3)),
            Override(rid + timedelta(days=7), rid + timedelta(days=7),
                     rid + timedelta(days=7, hours=1), status=BookingStatus.CANCELLED),
        ))),
        weekly("ended", -200, "FREQ=WEEKLY;COUNT=3"),                   # rule over long ago
        weekly("gap", -100, "FREQ=YEARLY;COUNT=2"),                     # -100 d and +265 d
        weekly("around", -40, "FREQ=YEARLY;INTERVAL=2;COUNT=2"),        # -40 d and +690 d
    ]
    for booking in bookings:
        store.put_provider_booking(ROOM, booking, NOW)
    body = FeedPublisher(config, store, clock=Clock()).document(ROOM).body
    window = feed_window(NOW, 30, 365)
    wanted = Counter(pair for b in bookings for pair in live_instants(b, window))
    for reader in READERS:
        assert feed_instants(body, window.start, window.end, reader) == wanted, reader
    # Bookings without an occurrence in the window are not in the feed at all.
    assert len(uids(body)) == 5  # past, soon, far, series, gap


def test_unrelated_rooms_and_cancelled_bookings_stay_out(config: Config,
                                                         store: StateStore) -> None:
    store.put_provider_booking("io", single("elsewhere", 1), NOW)
    store.put_provider_booking(ROOM, single("gone", 2, status=BookingStatus.CANCELLED), NOW)
    body = FeedPublisher(config, store, clock=Clock()).document(ROOM).body
    assert b"BEGIN:VEVENT" not in body
    assert body.startswith(b"BEGIN:VCALENDAR\r\n") and body.endswith(b"END:VCALENDAR\r\n")


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(-60, 420), st.integers(1, 6), st.sampled_from(
    ["", "FREQ=DAILY;COUNT=5", "FREQ=WEEKLY;INTERVAL=2;COUNT=4", "FREQ=MONTHLY"])),
    min_size=1, max_size=8))
def test_any_mix_of_bookings_reads_back_exactly(tmp_path_factory: pytest.TempPathFactory,
                                                mix: list[tuple[int, int, str]]) -> None:
    folder = tmp_path_factory.mktemp("mix")
    config = write_config(folder, f"sqlite:///{folder / 'state.db'}")
    bookings = [
        single(f"b{index}", days, hours, buffers=Buffers(timedelta(minutes=10)),
               recurrence=Recurrence(rrule=rule) if rule else None)
        for index, (days, hours, rule) in enumerate(mix)
    ]
    with StateStore.open(config.state.url) as store:
        for booking in bookings:
            store.put_provider_booking(ROOM, booking, NOW)
        body = FeedPublisher(config, store, clock=Clock()).document(ROOM).body
    window = feed_window(NOW, 30, 365)
    wanted = Counter(pair for b in bookings for pair in live_instants(b, window))
    assert feed_instants(body, window.start, window.end) == wanted


# --- caching, re-rendering, stamps ----------------------------------------------------------


def test_a_change_re_renders_only_that_booking_and_bumps_its_sequence(
    config: Config, store: StateStore
) -> None:
    clock = Clock()
    for index in range(5):
        store.put_provider_booking(ROOM, single(f"b{index}", index + 1), NOW)
    publisher = FeedPublisher(config, store, clock=clock)
    before = publisher.document(ROOM)
    first = events_by_sequence(before.body)
    assert {seq for seq, _ in first.values()} == {0}

    clock.now = NOW + timedelta(hours=2)
    store.put_provider_booking(ROOM, single("b2", 10), clock.now)   # moved
    settings_ = FeedSettings.of(config, config.room(ROOM))
    assert store.feed_state(ROOM).rendered_revision != store.provider_revision(ROOM)
    after = publisher.document(ROOM)
    second = events_by_sequence(after.body)
    changed = {uid for uid in first if first[uid] != second[uid]}
    assert len(changed) == 1
    (uid,) = changed
    assert second[uid] == (1, clock.now)
    assert after.etag != before.etag and after.last_modified == clock.now
    # Nothing is pending now: a second refresh renders nothing.
    assert refresh_room_feed(store, settings_, clock.now).rendered == 0


def test_a_change_the_feed_cannot_show_keeps_sequence_and_etag(store: StateStore,
                                                                config: Config) -> None:
    clock = Clock()
    store.put_provider_booking(ROOM, single("b1", 1), NOW)
    publisher = FeedPublisher(config, store, clock=clock)
    before = publisher.document(ROOM)
    clock.now = NOW + timedelta(hours=1)
    # A busy feed shows no title: the re-render gives the same text, stamp and sequence.
    store.put_provider_booking(ROOM, single("b1", 1, title="Renamed"), clock.now)
    after = publisher.document(ROOM)
    assert after.body == before.body and after.etag == before.etag
    assert after.last_modified == NOW


def test_a_deletion_changes_the_etag_and_moves_last_modified(store: StateStore,
                                                             config: Config) -> None:
    clock = Clock()
    store.put_provider_booking(ROOM, single("b1", 1), NOW)
    store.put_provider_booking(ROOM, single("b2", 2), NOW)
    publisher = FeedPublisher(config, store, clock=clock)
    before = publisher.document(ROOM)
    clock.now = NOW + timedelta(minutes=30)
    assert store.delete_provider_booking(ROOM, "b2")
    after = publisher.document(ROOM)
    assert len(uids(after.body)) == 1
    assert after.etag != before.etag and after.last_modified == clock.now
    assert [c.booking_key for c in store.feed_chunks(ROOM)] == ["b1"]


def test_changing_the_room_settings_re_renders_everything(tmp_path: Path, state_url: str) -> None:
    busy = write_config(tmp_path, state_url)
    with StateStore.open(busy.state.url) as store:
        store.put_provider_booking(ROOM, single("b1", 1), NOW)
        store.put_provider_booking(ROOM, single("b2", 2), NOW)
        FeedPublisher(busy, store, clock=Clock()).document(ROOM)
        titles = write_config(tmp_path, state_url, privacy="titles")
        later = NOW + timedelta(hours=1)
        document = FeedPublisher(titles, store, clock=Clock(later)).document(ROOM)
    summaries = {str(e["SUMMARY"]) for e in icalendar.Calendar.from_ical(document.body)
                 .walk("VEVENT")}
    assert summaries == {"title of b1", "title of b2"}
    assert {seq for seq, _ in events_by_sequence(document.body).values()} == {1}


def test_the_window_moves_with_the_days(store: StateStore, config: Config) -> None:
    clock = Clock()
    store.put_provider_booking(ROOM, single("ending", -29), NOW)
    store.put_provider_booking(ROOM, single("coming", 366), NOW)
    publisher = FeedPublisher(config, store, clock=clock)
    today = publisher.document(ROOM)
    clock.now = NOW + timedelta(days=2)
    later = publisher.document(ROOM)
    assert today.etag != later.etag
    coming = events_by_sequence(later.body)
    assert len(uids(today.body)) == 1 and len(coming) == 1
    assert uids(today.body) != uids(later.body)  # one left the window, the other entered it
    assert later.last_modified == clock.now


def test_an_unrenderable_booking_is_recorded_and_the_rest_published(
    store: StateStore, config: Config
) -> None:
    store.put_provider_booking(ROOM, single("good", 1), NOW)
    store.put_provider_booking(ROOM, single("bad", 2, timezone="Mars/Olympus_Mons"), NOW)
    document = FeedPublisher(config, store, clock=Clock()).document(ROOM)
    assert len(uids(document.body)) == 1
    errors = [(e.item, e.operation) for e in store.errors(ROOM)]
    assert errors == [("bad", FEED_OPERATION)]
    # Once fixed, it renders and the error is cleared.
    store.put_provider_booking(ROOM, single("bad", 2), NOW)
    fixed = FeedPublisher(config, store, clock=Clock()).document(ROOM)
    assert len(uids(fixed.body)) == 2 and store.errors(ROOM) == []


def test_a_second_process_sees_chunks_another_one_rendered(store: StateStore,
                                                           config: Config) -> None:
    store.put_provider_booking(ROOM, single("b1", 1), NOW)
    first = FeedPublisher(config, store, clock=Clock()).document(ROOM)
    # As if `roombridge sync` refreshed the chunks after a change, in another process.
    store.put_provider_booking(ROOM, single("b2", 2), NOW)
    refresh_room_feed(store, FeedSettings.of(config, config.room(ROOM)), NOW)
    reader = FeedPublisher(config, store, clock=Clock())
    second = reader.document(ROOM)
    assert len(uids(second.body)) == 2 and second.etag != first.etag
    assert reader.document(ROOM) is second  # cached until something changes

