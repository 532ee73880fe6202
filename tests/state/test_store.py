"""The state store on SQLite and on the real PostgreSQL: schema, migrations, durability,
uniqueness, feed tokens, errors with retry counts, runs and transactions."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from bridge.errors import StateError
from bridge.model import Booking, BookingStatus, Buffers, Override, Person, Recurrence
from bridge.state import schema
from bridge.state.migrations import LATEST_VERSION, SchemaTooNew, current_version, migrate
from bridge.state.store import (
    CalendarObject,
    LinkOrigin,
    ObjectOrigin,
    StateStore,
    create_state_engine,
)

REPO = Path(__file__).resolve().parents[2]
LONDON = ZoneInfo("Europe/London")
NOW = datetime(2024, 6, 3, 8, 0, tzinfo=UTC)


@pytest.fixture
def store(state_url: str) -> Iterator[StateStore]:
    with StateStore.open(state_url) as opened:
        yield opened


def weekly_booking(key: str = "series-1", title: str = "Board meeting") -> Booking:
    start = datetime(2024, 3, 25, 9, tzinfo=LONDON)
    return Booking(
        "hq", key, "287977693", start, start + timedelta(hours=1), "Europe/London",
        status=BookingStatus.TENTATIVE,
        title=title,
        organizer=Person("ada@example.com", "Ada"),
        attendees=(Person(name="Grace"),),
        buffers=Buffers(timedelta(minutes=15), timedelta(minutes=5)),
        recurrence=Recurrence(
            rrule="FREQ=WEEKLY;COUNT=6",
            exdates=(datetime(2024, 4, 8, 9, tzinfo=LONDON),),
            overrides=(
                Override(datetime(2024, 4, 1, 9, tzinfo=LONDON),
                         datetime(2024, 4, 1, 11, tzinfo=LONDON),
                         datetime(2024, 4, 1, 12, tzinfo=LONDON), title="Moved"),
            ),
        ),
        version="v3",
        updated=datetime(2024, 3, 1, 12, tzinfo=UTC),
        extra=(("CoworkerId", "77"),),
    )


def sql_engine(url: str) -> sa.Engine:
    return create_state_engine(url)


# --- schema and migrations -------------------------------------------------------------------


def test_open_creates_the_latest_schema_matching_schema_py(state_url: str) -> None:
    StateStore.open(state_url).close()
    engine = sql_engine(state_url)
    try:
        inspector = sa.inspect(engine)
        assert set(inspector.get_table_names()) == set(schema.metadata.tables)
        for table in schema.metadata.sorted_tables:
            columns = {c["name"]: c["nullable"] for c in inspector.get_columns(table.name)}
            assert columns == {c.name: c.nullable for c in table.columns}, table.name
            primary = inspector.get_pk_constraint(table.name)["constrained_columns"]
            assert primary == [c.name for c in table.primary_key.columns], table.name
            # PostgreSQL also lists the index behind each unique constraint; compare those below.
            indexes = {tuple(ix["column_names"]) for ix in inspector.get_indexes(table.name)
                       if not ix.get("duplicates_constraint")}
            assert indexes == {tuple(c.name for c in ix.columns) for ix in table.indexes}
            uniques = {tuple(u["column_names"])
                       for u in inspector.get_unique_constraints(table.name)}
            expected = {tuple(c.name for c in u.columns) for u in table.constraints
                        if isinstance(u, sa.UniqueConstraint)}
            assert uniques == expected, table.name
        with engine.connect() as conn:
            assert current_version(conn) == LATEST_VERSION
    finally:
        engine.dispose()


def test_reopening_does_not_migrate_again(state_url: str) -> None:
    StateStore.open(state_url).close()
    StateStore.open(state_url).close()
    engine = sql_engine(state_url)
    with engine.connect() as conn:
        versions = conn.execute(sa.select(schema.schema_version.c.version)).scalars().all()
    engine.dispose()
    assert sorted(versions) == list(range(1, LATEST_VERSION + 1))


def test_an_old_database_is_migrated_and_keeps_its_data(state_url: str) -> None:
    engine = sql_engine(state_url)
    assert migrate(engine, target=1) == 1
    with engine.begin() as conn:
        assert not sa.inspect(conn).has_table("item_errors")
        conn.execute(schema.links.insert().values(
            room_id="callisto", booking_key="b1", uid="u1", href="/rooms/callisto/u1.ics",
            etag='"e1"', content_hash="h1", origin="provider", written_at=NOW))
        conn.execute(schema.feed_tokens.insert().values(
            room_id="callisto", token="old-token", created_at=NOW))
    engine.dispose()

    with StateStore.open(state_url) as store:
        assert [link.uid for link in store.room_links("callisto")] == ["u1"]
        assert store.check_feed_token("callisto", "old-token")
        assert store.record_error("callisto", "b1", "update", "HTTP 500", NOW).attempts == 1
    engine = sql_engine(state_url)
    with engine.connect() as conn:
        assert current_version(conn) == LATEST_VERSION
    engine.dispose()


def test_a_newer_database_is_refused_with_a_clear_error(state_url: str) -> None:
    StateStore.open(state_url).close()
    engine = sql_engine(state_url)
    with engine.begin() as conn:
        conn.execute(schema.schema_version.insert().values(
            version=LATEST_VERSION + 7, description="from the future", applied_at=NOW))
    engine.dispose()
    with pytest.raises(SchemaTooNew, match=f"version {LATEST_VERSION + 7}.*upgrade roombridge"):
        StateStore.open(state_url)


def test_opening_without_upgrade_refuses_an_old_database(state_url: str) -> None:
    engine = sql_engine(state_url)
    migrate(engine, target=1)
    engine.dispose()
    with pytest.raises(StateError, match=f"schema version 1.*needs {LATEST_VERSION}"):
        StateStore.open(state_url, upgrade=False)


def test_concurrent_openers_migrate_once(state_url: str) -> None:
    failures: list[BaseException] = []

    def open_and_close() -> None:
        try:
            StateStore.open(state_url).close()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=open_and_close) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    engine = sql_engine(state_url)
    with engine.connect() as conn:
        versions = conn.execute(sa.select(schema.schema_version.c.version)).scalars().all()
    engine.dispose()
    assert sorted(versions) == list(range(1, LATEST_VERSION + 1))


# --- durability -------------------------------------------------------------------------------


def fill_every_table(store: StateStore) -> None:
    store.put_provider_booking("callisto", weekly_booking(), NOW)
    store.put_calendar_object(CalendarObject(
        "callisto", "/rooms/callisto/a.ics", "uid-a", '"etag-a"', "hash-a", ObjectOrigin.BRIDGE,
        booking_key="series-1", ics=b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n"))
    store.record_write("callisto", "series-1", uid="uid-a", href="/rooms/callisto/a.ics",
                       etag='"etag-a"', content_hash="hash-a", origin=LinkOrigin.PROVIDER, now=NOW)
    store.set_cursor("callisto", "calendar", "sync-token-1", NOW)
    store.record_error("callisto", "series-2", "create", "HTTP 503", NOW)
    run = store.begin_run("callisto", NOW)
    store.finish_run(run, NOW + timedelta(seconds=4), ok=False, created=1, errors=["series-2"])


def test_everything_written_is_there_after_reopening(state_url: str) -> None:
    with StateStore.open(state_url) as store:
        fill_every_table(store)
        token = store.feed_token("callisto", NOW)
    with StateStore.open(state_url) as store:
        stored = store.get_provider_booking("callisto", "series-1")
        assert stored is not None and stored.booking == weekly_booking()
        assert stored.booking.recurrence == weekly_booking().recurrence
        assert stored.booking.start.tzinfo == LONDON
        assert stored.version == "v3" and stored.seen_at == NOW
        calendar_object = store.get_calendar_object("callisto", "/rooms/callisto/a.ics")
        assert calendar_object is not None
        assert calendar_object.ics == b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n"
        assert calendar_object.origin is ObjectOrigin.BRIDGE
        link = store.get_link("callisto", "series-1", "uid-a")
        assert link is not None and link.content_hash == "hash-a" and link.written_at == NOW
        assert store.get_cursor("callisto", "calendar") == "sync-token-1"
        assert [(e.item, e.attempts) for e in store.errors("callisto")] == [("series-2", 1)]
        run = store.last_run("callisto")
        assert run is not None and run.ok is False and run.errors == ("series-2",)
        assert store.feed_token("callisto", NOW + timedelta(days=1)) == token


KILL_SCRIPT = textwrap.dedent("""
    import sys
    from datetime import UTC, datetime
    from bridge.state.store import LinkOrigin, StateStore
    store = StateStore.open(sys.argv[1])
    now = datetime(2024, 6, 3, tzinfo=UTC)
    for number in range(100_000):
        store.record_write("callisto", f"b{number}", uid=f"u{number}", href=f"/h/{number}",
                           etag=None, content_hash=None, origin=LinkOrigin.PROVIDER, now=now)
        print(number, flush=True)
""")


@pytest.mark.slow
def test_every_acknowledged_write_survives_sigkill(state_url: str) -> None:
    StateStore.open(state_url).close()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, state_url],
        stdout=subprocess.PIPE, text=True, env=env, cwd=REPO,
    )
    assert process.stdout is not None
    acknowledged = [int(process.stdout.readline()) for _ in range(40)]
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    with StateStore.open(state_url) as store:
        stored = {link.booking_key for link in store.room_links("callisto")}
    assert {f"b{number}" for number in acknowledged} <= stored


# --- uniqueness ---------------------------------------------------------------------------


def test_recording_the_same_write_twice_keeps_one_link(store: StateStore) -> None:
    for etag in ('"1"', '"2"'):
        store.record_write("callisto", "b1", uid="u1", href="/h/u1.ics", etag=etag,
                           content_hash=f"hash{etag}", origin=LinkOrigin.PROVIDER, now=NOW)
    links = store.room_links("callisto")
    assert [(link.uid, link.etag) for link in links] == [("u1", '"2"')]


def test_one_calendar_object_per_room_and_href(store: StateStore) -> None:
    for etag in ("a", "b"):
        store.put_calendar_object(CalendarObject(
            "callisto", "/h/x.ics", "x", etag, None, ObjectOrigin.FOREIGN))
    store.put_calendar_object(
        CalendarObject("io", "/h/x.ics", "x", "c", None, ObjectOrigin.FOREIGN))
    assert [o.etag for o in store.calendar_objects("callisto")] == ["b"]
    assert [o.etag for o in store.calendar_objects("io")] == ["c"]


@pytest.mark.parametrize(
    ("table", "row"),
    [
        (schema.links, {"room_id": "r", "booking_key": "b", "uid": "u", "href": "/h",
                        "origin": "provider", "written_at": NOW}),
        (schema.calendar_objects, {"room_id": "r", "href": "/h", "uid": "u", "origin": "bridge"}),
        (schema.provider_bookings, {"room_id": "r", "booking_key": "b", "booking": "{}",
                                    "seen_at": NOW}),
        (schema.cursors, {"room_id": "r", "name": "provider", "value": "c", "updated_at": NOW}),
    ],
    ids=lambda value: value.name if isinstance(value, sa.Table) else "",
)
def test_the_database_itself_refuses_duplicates(
    state_url: str, table: sa.Table, row: dict[str, object]
) -> None:
    StateStore.open(state_url).close()
    engine = sql_engine(state_url)
    try:
        with engine.begin() as conn:
            conn.execute(table.insert().values(row))
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(table.insert().values(row))
    finally:
        engine.dispose()


def test_the_database_refuses_a_bad_origin(state_url: str) -> None:
    StateStore.open(state_url).close()
    engine = sql_engine(state_url)
    try:
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(schema.calendar_objects.insert().values(
                room_id="r", href="/h", uid="u", origin="somebody"))
    finally:
        engine.dispose()


def test_two_rooms_cannot_share_a_feed_token(state_url: str) -> None:
    StateStore.open(state_url).close()
    engine = sql_engine(state_url)
    try:
        with pytest.raises(IntegrityError), engine.begin() as conn:
            for room in ("callisto", "io"):
                conn.execute(schema.feed_tokens.insert().values(
                    room_id=room, token="same", created_at=NOW))
    finally:
        engine.dispose()


def test_forget_drops_one_uid_or_the_whole_booking(store: StateStore) -> None:
    for uid in ("event", "setup", "cleanup"):
        store.record_write("callisto", "b1", uid=uid, href=f"/h/{uid}", etag=None,
                           content_hash=None, origin=LinkOrigin.PROVIDER, now=NOW)
    store.record_write("callisto", "b2", uid="other", href="/h/other", etag=None,
                       content_hash=None, origin=LinkOrigin.CALENDAR, now=NOW)
    assert store.forget("callisto", "b1", "setup") == 1
    assert [link.uid for link in store.links_for_booking("callisto", "b1")] == ["cleanup", "event"]
    assert store.forget("callisto", "b1") == 2
    assert [(link.booking_key, link.origin) for link in store.room_links("callisto")] == [
        ("b2", LinkOrigin.CALENDAR)
    ]


# --- feed tokens ----------------------------------------------------------------------------


def test_feed_token_is_created_once_and_is_128_random_bits(store: StateStore) -> None:
    token = store.feed_token("callisto", NOW)
    assert store.feed_token("callisto", NOW + timedelta(hours=1)) == token
    assert len(base64.urlsafe_b64decode(token + "==")) == 16
    assert store.feed_token("io", NOW) != token
    assert store.check_feed_token("callisto", token)
    assert not store.check_feed_token("io", token)
    assert not store.check_feed_token("unknown-room", token)


def test_rotating_a_feed_token_invalidates_the_old_one(store: StateStore) -> None:
    old = store.feed_token("callisto", NOW)
    new = store.rotate_feed_token("callisto", NOW + timedelta(days=1))
    assert new != old
    assert not store.check_feed_token("callisto", old)
    assert store.check_feed_token("callisto", new)
    assert store.feed_token("callisto", NOW + timedelta(days=2)) == new


def test_concurrent_first_use_yields_one_token(state_url: str) -> None:
    StateStore.open(state_url).close()
    stores = [StateStore.open(state_url) for _ in range(2)]
    tokens = run_in_threads(8, lambda n: stores[n % 2].feed_token("callisto", NOW))
    for opened in stores:
        opened.close()
    assert len(set(tokens)) == 1


# --- per-item errors -----------------------------------------------------------------------


def test_errors_count_attempts_and_keep_the_first_time(store: StateStore) -> None:
    for attempt in range(3):
        recorded = store.record_error("callisto", "b1", "create", f"HTTP 50{attempt}",
                                      NOW + timedelta(minutes=5 * attempt))
    assert recorded.attempts == 3
    assert recorded.first_at == NOW
    assert recorded.last_at == NOW + timedelta(minutes=10)
    assert recorded.message == "HTTP 502"
    store.record_error("callisto", "b1", "update", "412", NOW)
    store.record_error("io", "b9", "create", "boom", NOW)
    assert [(e.item, e.operation, e.attempts) for e in store.errors("callisto")] == [
        ("b1", "create", 3), ("b1", "update", 1)
    ]
    assert store.clear_error("callisto", "b1", "create") == 1
    assert [e.operation for e in store.errors("callisto")] == ["update"]
    assert store.clear_error("callisto", "b1") == 1
    assert store.errors("callisto") == []
    assert [e.item for e in store.errors("io")] == ["b9"]


def test_concurrent_failures_are_all_counted(state_url: str) -> None:
    StateStore.open(state_url).close()
    stores = [StateStore.open(state_url) for _ in range(2)]
    run_in_threads(10, lambda n: stores[n % 2].record_error("callisto", "b1", "sync", "x", NOW))
    [recorded] = stores[0].errors("callisto")
    for opened in stores:
        opened.close()
    assert recorded.attempts == 10


def test_an_enormous_error_message_is_cut(store: StateStore) -> None:
    recorded = store.record_error("callisto", "b1", "create", "<html>" + "x" * 100_000, NOW)
    assert 0 < len(recorded.message) <= 2_000


# --- cursors, runs, transactions --------------------------------------------------------


def test_cursor_set_replace_and_clear(store: StateStore) -> None:
    assert store.get_cursor("callisto", "provider") is None
    store.set_cursor("callisto", "provider", "2024-06-01T00:00:00Z", NOW)
    store.set_cursor("callisto", "provider", "2024-06-02T00:00:00Z", NOW)
    store.set_cursor("io", "provider", "other", NOW)
    assert store.get_cursor("callisto", "provider") == "2024-06-02T00:00:00Z"
    store.set_cursor("callisto", "provider", None, NOW)
    assert store.get_cursor("callisto", "provider") is None
    assert store.get_cursor("io", "provider") == "other"


def test_runs_record_outcomes_and_the_latest_is_reported(store: StateStore) -> None:
    assert store.last_run("callisto") is None
    first = store.begin_run("callisto", NOW)
    store.finish_run(first, NOW + timedelta(seconds=3), ok=True, created=2, updated=1,
                     deleted=1, declined=1)
    second = store.begin_run("callisto", NOW + timedelta(minutes=5))
    running = store.last_run("callisto")
    assert running is not None and running.id == second and running.finished_at is None
    finished = store.last_run("callisto", finished=True)
    assert finished is not None and finished.id == first
    assert (finished.ok, finished.created, finished.updated, finished.deleted,
            finished.declined, finished.errors) == (True, 2, 1, 1, 1, ())
    assert finished.finished_at == NOW + timedelta(seconds=3)
    with pytest.raises(StateError, match="no sync run"):
        store.finish_run(second + 100, NOW, ok=True)


def test_a_transaction_commits_together_or_not_at_all(state_url: str) -> None:
    with StateStore.open(state_url) as store, StateStore.open(state_url) as observer:
        with pytest.raises(RuntimeError), store.transaction():
            store.set_cursor("callisto", "calendar", "token-2", NOW)
            store.record_write("callisto", "b1", uid="u1", href="/h", etag=None,
                               content_hash=None, origin=LinkOrigin.PROVIDER, now=NOW)
            raise RuntimeError("executor crashed mid-way")
        assert store.get_cursor("callisto", "calendar") is None
        assert store.room_links("callisto") == []

        with store.transaction():
            store.set_cursor("callisto", "calendar", "token-3", NOW)
            with store.transaction():  # nested: joins the outer one
                store.put_provider_booking("callisto", weekly_booking(), NOW)
            assert store.get_cursor("callisto", "calendar") == "token-3"
            assert observer.get_cursor("callisto", "calendar") is None
        assert observer.get_cursor("callisto", "calendar") == "token-3"
        assert observer.get_provider_booking("callisto", "series-1") is not None


def test_provider_bookings_put_replace_list_delete(store: StateStore) -> None:
    store.put_provider_booking("callisto", weekly_booking("a"), NOW)
    store.put_provider_booking("callisto", weekly_booking("b"), NOW)
    store.put_provider_booking("callisto", weekly_booking("a", title="Renamed"),
                               NOW + timedelta(hours=1))
    listed = store.provider_bookings("callisto")
    assert [(p.booking_key, p.booking.title) for p in listed] == [
        ("a", "Renamed"), ("b", "Board meeting")
    ]
    assert listed[0].seen_at == NOW + timedelta(hours=1)
    assert store.delete_provider_booking("callisto", "a")
    assert not store.delete_provider_booking("callisto", "a")
    assert store.get_provider_booking("callisto", "a") is None


def test_times_come_back_as_the_same_instants_in_utc(store: StateStore) -> None:
    local = datetime(2024, 10, 27, 1, 30, fold=1, tzinfo=LONDON)
    store.set_cursor("callisto", "provider", "x", local)
    store.record_error("callisto", "b", "op", "m", local)
    [recorded] = store.errors("callisto")
    # Compare instants: PEP 495 makes == false across zones for the repeated hour.
    assert recorded.first_at.timestamp() == local.timestamp()
    assert recorded.first_at == datetime(2024, 10, 27, 1, 30, tzinfo=UTC)


def test_a_naive_time_is_refused(store: StateStore) -> None:
    with pytest.raises(StateError, match="naive"):
        store.set_cursor("callisto", "provider", "x", datetime(2024, 1, 1))


def test_purging_a_room_leaves_other_rooms_alone(store: StateStore) -> None:
    fill_every_table(store)
    store.feed_token("callisto", NOW)
    store.set_cursor("io", "provider", "keep", NOW)
    store.purge_room("callisto")
    assert store.provider_bookings("callisto") == []
    assert store.calendar_objects("callisto") == []
    assert store.room_links("callisto") == []
    assert store.errors("callisto") == []
    assert store.last_run("callisto") is None
    assert not store.check_feed_token("callisto", "anything")
    assert store.get_cursor("io", "provider") == "keep"


# --- secrets and failures -----------------------------------------------------------------


def test_passwords_never_show_in_repr_or_errors() -> None:
    url = "postgresql://bridge:hunter2-secret@127.0.0.1:1/bridge"
    with pytest.raises(StateError) as caught:
        StateStore.open(url)
    assert "hunter2-secret" not in str(caught.value)
    assert "127.0.0.1" in str(caught.value)
    engine = create_state_engine(url)
    assert "hunter2-secret" not in repr(StateStore(engine))
    engine.dispose()


def test_sqlite_runs_in_wal_mode_with_foreign_keys_and_a_busy_timeout(tmp_path: Path) -> None:
    with StateStore.open(f"sqlite:///{tmp_path / 's.db'}") as store:
        store.ping()
    engine = create_state_engine(f"sqlite:///{tmp_path / 's.db'}")
    with engine.connect() as conn:
        pragmas = {name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                   for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")}
    engine.dispose()
    assert pragmas["journal_mode"] == "wal"
    assert pragmas["foreign_keys"] == 1
    assert pragmas["busy_timeout"] >= 5_000
    assert pragmas["synchronous"] == 2  # FULL


def test_an_unopenable_sqlite_path_is_a_state_error(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="cannot open the state store"):
        StateStore.open(f"sqlite:///{tmp_path / 'missing-folder' / 's.db'}")


def run_in_threads(count: int, work: Callable[[int], str | object]) -> list[object]:
    results: list[object] = [None] * count
    failures: list[BaseException] = []
    barrier = threading.Barrier(count)

    def worker(number: int) -> None:
        barrier.wait()
        try:
            results[number] = work(number)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    return results
