"""The state store: what the bridge knows between passes, over SQLite or PostgreSQL.

Per room it keeps the last known provider state (``provider_bookings``), the last seen
calendar state (``calendar_objects``), what the bridge itself wrote (``links``, for the
three-way comparison and echo suppression), sync cursors, per-item errors with retry counts,
the feed token, and one record per sync pass.

Durability: the sync process may be killed at any moment, so every method that writes is its
own committed transaction unless it runs inside :meth:`StateStore.transaction`, which groups
several writes into one (for example a cursor together with the state it covers). SQLite runs
in WAL mode with ``synchronous=FULL``, a busy timeout and foreign keys on; its write
transactions start with ``BEGIN IMMEDIATE`` so that two writers queue on the busy timeout
instead of failing on a lock upgrade. Upserts are single ``INSERT ... ON CONFLICT``
statements, so concurrent workers never race each other into duplicates.

No method reads the clock: every timestamp is a ``now`` parameter. The store is safe to share
between threads; a :meth:`~StateStore.transaction` belongs to the thread (or asyncio task)
that opened it.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from itertools import count
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from bridge.errors import StateError
from bridge.model import Booking
from bridge.state import schema
from bridge.state.codec import dumps_booking, loads_booking
from bridge.state.migrations import LATEST_VERSION, migrate

#: How long a SQLite writer waits for another one before giving up.
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: Longest error message kept per item (a whole HTML error page helps nobody).
MAX_ERROR_MESSAGE = 2_000
#: Execution option marking a connection that only reads (plain BEGIN on SQLite).
_READ_ONLY = "roombridge_read_only"

_transaction_ids = count()


class ObjectOrigin(StrEnum):
    """Who created a calendar object: the bridge, or someone in a calendar app."""

    BRIDGE = "bridge"
    FOREIGN = "foreign"


class LinkOrigin(StrEnum):
    """Which side a linked pair started on: a provider booking or a calendar event."""

    PROVIDER = "provider"
    CALENDAR = "calendar"


@dataclass(frozen=True, slots=True)
class ProviderBooking:
    """The last known provider state of one booking of a room."""

    room_id: str
    booking_key: str
    booking: Booking
    version: str | None
    seen_at: datetime


@dataclass(frozen=True, slots=True)
class CalendarObject:
    """The last seen state of one object in a room's calendar."""

    room_id: str
    href: str
    uid: str
    etag: str | None
    content_hash: str | None
    origin: ObjectOrigin
    booking_key: str | None = None
    ics: bytes | None = None


@dataclass(frozen=True, slots=True)
class Link:
    """What the bridge wrote: a calendar object (uid, href) standing for a booking."""

    room_id: str
    booking_key: str
    uid: str
    href: str
    etag: str | None
    content_hash: str | None
    origin: LinkOrigin
    written_at: datetime


@dataclass(frozen=True, slots=True)
class ItemError:
    """An item that failed, how often, since when; retried on every pass until cleared."""

    room_id: str
    item: str
    operation: str
    message: str
    attempts: int
    first_at: datetime
    last_at: datetime


@dataclass(frozen=True, slots=True)
class SyncRun:
    """One sync pass of a room; ``finished_at``/``ok`` stay None while it runs (or if killed)."""

    id: int
    room_id: str
    started_at: datetime
    finished_at: datetime | None
    ok: bool | None
    created: int
    updated: int
    deleted: int
    declined: int
    errors: tuple[str, ...]


def engine_url(url: str) -> URL:
    """The SQLAlchemy URL to connect with: ``postgresql://`` and ``postgres://`` use psycopg 3."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StateError("the state URL is not a database URL like sqlite:///path.db") from None
    if parsed.drivername in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg")
    return parsed


def create_state_engine(url: str) -> Engine:
    """An engine for the state store, with the SQLite pragmas and locking described above."""
    target = engine_url(url)
    if target.get_backend_name() == "sqlite":
        engine = sa.create_engine(target, hide_parameters=True)
        _configure_sqlite(engine)
        return engine
    return sa.create_engine(target, hide_parameters=True, pool_pre_ping=True)


def _configure_sqlite(engine: Engine) -> None:
    """Pragmas on every new connection; BEGIN IMMEDIATE for writes, plain BEGIN for reads."""

    @sa.event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: object) -> None:
        # Let SQLAlchemy's begin event below decide how transactions start, not pysqlite.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def on_begin(conn: Connection) -> None:
        read_only = conn.get_execution_options().get(_READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _insert_for(conn: Connection, table: sa.Table) -> Any:
    """The dialect's INSERT construct, which knows ``ON CONFLICT``."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


class StateStore:
    """Typed access to the state database; open with :meth:`StateStore.open`."""

    def __init__(self, engine: Engine):
        self._engine = engine
        self._active: ContextVar[Connection | None] = ContextVar(
            f"state_transaction_{next(_transaction_ids)}", default=None
        )

    # --- lifecycle -------------------------------------------------------------------------

    @classmethod
    def open(cls, url: str, *, upgrade: bool = True) -> StateStore:
        """Connect and bring the schema up to date (or only check it when ``upgrade=False``)."""
        engine = create_state_engine(url)
        masked = engine.url.render_as_string(hide_password=True)
        try:
            version = migrate(engine) if upgrade else migrate(engine, target=0)
        except StateError:
            engine.dispose()
            raise
        except SQLAlchemyError as exc:
            engine.dispose()
            raise StateError(f"cannot open the state store {masked}: {_reason(exc)}") from None
        if version != LATEST_VERSION:
            engine.dispose()
            raise StateError(
                f"the state store {masked} is at schema version {version}, "
                f"this roombridge needs {LATEST_VERSION}"
            )
        return cls(engine)

    @property
    def url(self) -> str:
        """The database URL with any password masked."""
        return self._engine.url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._engine.dialect.name

    def close(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"StateStore({self.url!r})"

    def ping(self) -> None:
        """Check the database answers (StateError otherwise); for ``/healthz``."""
        with self._reading() as conn:
            conn.execute(sa.text("SELECT 1"))

    # --- transactions ----------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group the writes inside into one committed transaction (nested calls join it)."""
        if self._active.get() is not None:
            yield
            return
        with self._guarded(), self._engine.begin() as conn:
            token = self._active.set(conn)
            try:
                yield
            finally:
                self._active.reset(token)

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        """The open transaction's connection, or a new transaction committed on exit."""
        with self._guarded():
            active = self._active.get()
            if active is not None:
                yield active
                return
            with self._engine.begin() as conn:
                yield conn

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        """The open transaction's connection, or a read-only one."""
        with self._guarded():
            active = self._active.get()
            if active is not None:
                yield active
                return
            with self._engine.connect() as conn:
                conn.execution_options(**{_READ_ONLY: True})
                yield conn

    @contextmanager
    def _guarded(self) -> Iterator[None]:
        """Database failures as StateError, without SQL parameters or passwords."""
        try:
            yield
        except SQLAlchemyError as exc:
            raise StateError(f"state store {self.url}: {_reason(exc)}") from exc

    # --- provider bookings -----------------------------------------------------------------

    def put_provider_booking(self, room_id: str, booking: Booking, now: datetime) -> None:
        """Remember the provider's current state of a booking (keyed by ``booking.key``)."""
        table = schema.provider_bookings
        values = {
            "room_id": room_id,
            "booking_key": booking.key,
            "booking": dumps_booking(booking),
            "version": booking.version,
            "seen_at": now,
        }
        with self._writing() as conn:
            _upsert(conn, table, values, ("room_id", "booking_key"))

    def get_provider_booking(self, room_id: str, booking_key: str) -> ProviderBooking | None:
        """The remembered provider state of one booking."""
        table = schema.provider_bookings
        query = table.select().where(
            table.c.room_id == room_id, table.c.booking_key == booking_key
        )
        with self._reading() as conn:
            row = conn.execute(query).mappings().first()
        return _provider_booking(row) if row else None

    def provider_bookings(self, room_id: str) -> list[ProviderBooking]:
        """Every remembered provider booking of a room, by key."""
        table = schema.provider_bookings
        query = table.select().where(table.c.room_id == room_id).order_by(table.c.booking_key)
        with self._reading() as conn:
            return [_provider_booking(row) for row in conn.execute(query).mappings()]

    def delete_provider_booking(self, room_id: str, booking_key: str) -> bool:
        """Forget the provider state of a booking; whether there was one."""
        table = schema.provider_bookings
        return self._delete(
            table, table.c.room_id == room_id, table.c.booking_key == booking_key
        ) > 0

    # --- calendar objects ------------------------------------------------------------------

    def put_calendar_object(self, obj: CalendarObject) -> None:
        """Remember the last seen state of a calendar object (one per room and href)."""
        values = {
            "room_id": obj.room_id,
            "href": obj.href,
            "uid": obj.uid,
            "etag": obj.etag,
            "content_hash": obj.content_hash,
            "booking_key": obj.booking_key,
            "origin": ObjectOrigin(obj.origin).value,
            "ics": obj.ics,
        }
        with self._writing() as conn:
            _upsert(conn, schema.calendar_objects, values, ("room_id", "href"))

    def get_calendar_object(self, room_id: str, href: str) -> CalendarObject | None:
        """The last seen state of the object at ``href``."""
        table = schema.calendar_objects
        query = table.select().where(table.c.room_id == room_id, table.c.href == href)
        with self._reading() as conn:
            row = conn.execute(query).mappings().first()
        return _calendar_object(row) if row else None

    def calendar_objects(self, room_id: str) -> list[CalendarObject]:
        """Every last seen object of a room's calendar, by href."""
        table = schema.calendar_objects
        query = table.select().where(table.c.room_id == room_id).order_by(table.c.href)
        with self._reading() as conn:
            return [_calendar_object(row) for row in conn.execute(query).mappings()]

    def delete_calendar_object(self, room_id: str, href: str) -> bool:
        """Forget a calendar object; whether there was one."""
        table = schema.calendar_objects
        return self._delete(table, table.c.room_id == room_id, table.c.href == href) > 0

    # --- links: what the bridge wrote ------------------------------------------------------

    def record_write(
        self,
        room_id: str,
        booking_key: str,
        *,
        uid: str,
        href: str,
        etag: str | None,
        content_hash: str | None,
        origin: LinkOrigin,
        now: datetime,
    ) -> Link:
        """Record that the bridge wrote ``uid`` at ``href`` for a booking (replacing the last)."""
        link = Link(room_id, booking_key, uid, href, etag, content_hash, LinkOrigin(origin), now)
        values = {
            "room_id": room_id,
            "booking_key": booking_key,
            "uid": uid,
            "href": href,
            "etag": etag,
            "content_hash": content_hash,
            "origin": link.origin.value,
            "written_at": now,
        }
        with self._writing() as conn:
            _upsert(conn, schema.links, values, ("room_id", "booking_key", "uid"))
        return link

    def get_link(self, room_id: str, booking_key: str, uid: str) -> Link | None:
        """The link of one booking and calendar uid."""
        table = schema.links
        query = table.select().where(
            table.c.room_id == room_id, table.c.booking_key == booking_key, table.c.uid == uid
        )
        with self._reading() as conn:
            row = conn.execute(query).mappings().first()
        return _link(row) if row else None

    def links_for_booking(self, room_id: str, booking_key: str) -> list[Link]:
        """Every object the bridge wrote for one booking (event, setup and cleanup blocks)."""
        table = schema.links
        return self._links(table.c.room_id == room_id, table.c.booking_key == booking_key)

    def room_links(self, room_id: str) -> list[Link]:
        """Every link of a room, by booking key and uid."""
        return self._links(schema.links.c.room_id == room_id)

    def forget(self, room_id: str, booking_key: str, uid: str | None = None) -> int:
        """Drop the link(s) of a booking (one uid, or all when None); how many were dropped."""
        table = schema.links
        conditions = [table.c.room_id == room_id, table.c.booking_key == booking_key]
        if uid is not None:
            conditions.append(table.c.uid == uid)
        return self._delete(table, *conditions)

    def _links(self, *conditions: sa.ColumnElement[bool]) -> list[Link]:
        """Links matching ``conditions``, in a stable order."""
        table = schema.links
        query = table.select().where(*conditions).order_by(table.c.booking_key, table.c.uid)
        with self._reading() as conn:
            return [_link(row) for row in conn.execute(query).mappings()]

    # --- cursors ---------------------------------------------------------------------------

    def set_cursor(self, room_id: str, name: str, value: str | None, now: datetime) -> None:
        """Store a cursor (e.g. ``provider``, ``calendar``); None removes it (full re-read)."""
        table = schema.cursors
        if value is None:
            self._delete(table, table.c.room_id == room_id, table.c.name == name)
            return
        values = {"room_id": room_id, "name": name, "value": value, "updated_at": now}
        with self._writing() as conn:
            _upsert(conn, table, values, ("room_id", "name"))

    def get_cursor(self, room_id: str, name: str) -> str | None:
        """The stored cursor, or None when there is none."""
        table = schema.cursors
        query = sa.select(table.c.value).where(table.c.room_id == room_id, table.c.name == name)
        with self._reading() as conn:
            value: str | None = conn.execute(query).scalar_one_or_none()
        return value

    # --- per-item errors -------------------------------------------------------------------

    def record_error(
        self, room_id: str, item: str, operation: str, message: str, now: datetime
    ) -> ItemError:
        """Record one more failed attempt of ``operation`` on ``item``; the updated record."""
        table = schema.item_errors
        message = message[:MAX_ERROR_MESSAGE]
        values = {
            "room_id": room_id,
            "item": item,
            "operation": operation,
            "message": message,
            "attempts": 1,
            "first_at": now,
            "last_at": now,
        }
        with self._writing() as conn:
            insert = _insert_for(conn, table).values(values)
            conn.execute(
                insert.on_conflict_do_update(
                    index_elements=["room_id", "item", "operation"],
                    set_={"message": message, "last_at": now, "attempts": table.c.attempts + 1},
                )
            )
            row = conn.execute(
                table.select().where(
                    table.c.room_id == room_id,
                    table.c.item == item,
                    table.c.operation == operation,
                )
            ).mappings().one()
        return _item_error(row)

    def clear_error(self, room_id: str, item: str, operation: str | None = None) -> int:
        """Forget the errors of an item (one operation, or all); how many were cleared."""
        table = schema.item_errors
        conditions = [table.c.room_id == room_id, table.c.item == item]
        if operation is not None:
            conditions.append(table.c.operation == operation)
        return self._delete(table, *conditions)

    def errors(self, room_id: str) -> list[ItemError]:
        """A room's pending errors, oldest first."""
        table = schema.item_errors
        query = (
            table.select()
            .where(table.c.room_id == room_id)
            .order_by(table.c.first_at, table.c.item, table.c.operation)
        )
        with self._reading() as conn:
            return [_item_error(row) for row in conn.execute(query).mappings()]

    # --- feed tokens -----------------------------------------------------------------------

    def feed_token(self, room_id: str, now: datetime) -> str:
        """The room's feed token, created (128 random bits) on first use."""
        table = schema.feed_tokens
        with self._writing() as conn:
            insert = _insert_for(conn, table).values(
                room_id=room_id, token=secrets.token_urlsafe(16), created_at=now
            )
            conn.execute(insert.on_conflict_do_nothing(index_elements=["room_id"]))
            token: str = conn.execute(
                sa.select(table.c.token).where(table.c.room_id == room_id)
            ).scalar_one()
        return token

    def rotate_feed_token(self, room_id: str, now: datetime) -> str:
        """Issue a new feed token for the room; the old one stops working at once."""
        token = secrets.token_urlsafe(16)
        values = {"room_id": room_id, "token": token, "created_at": now}
        with self._writing() as conn:
            _upsert(conn, schema.feed_tokens, values, ("room_id",))
        return token

    def check_feed_token(self, room_id: str, token: str) -> bool:
        """Whether ``token`` is the room's feed token (constant-time; False without one)."""
        table = schema.feed_tokens
        query = sa.select(table.c.token).where(table.c.room_id == room_id)
        with self._reading() as conn:
            stored: str | None = conn.execute(query).scalar_one_or_none()
        return stored is not None and secrets.compare_digest(stored.encode(), token.encode())

    # --- sync runs -------------------------------------------------------------------------

    def begin_run(self, room_id: str, now: datetime) -> int:
        """Record the start of a sync pass; the run id for :meth:`finish_run`."""
        values = {
            "room_id": room_id,
            "started_at": now,
            "created": 0,
            "updated": 0,
            "deleted": 0,
            "declined": 0,
            "errors": "[]",
        }
        with self._writing() as conn:
            insert = schema.sync_runs.insert().values(values).returning(schema.sync_runs.c.id)
            run_id: int = conn.execute(insert).scalar_one()
        return run_id

    def finish_run(
        self,
        run_id: int,
        now: datetime,
        *,
        ok: bool,
        created: int = 0,
        updated: int = 0,
        deleted: int = 0,
        declined: int = 0,
        errors: Sequence[str] = (),
    ) -> None:
        """Record the outcome of a sync pass (StateError for an unknown run id)."""
        table = schema.sync_runs
        values = {
            "finished_at": now,
            "ok": ok,
            "created": created,
            "updated": updated,
            "deleted": deleted,
            "declined": declined,
            "errors": json.dumps(list(errors), ensure_ascii=False),
        }
        with self._writing() as conn:
            result = conn.execute(table.update().where(table.c.id == run_id).values(values))
            if result.rowcount != 1:
                raise StateError(f"no sync run {run_id} to finish")

    def last_run(self, room_id: str, *, finished: bool = False) -> SyncRun | None:
        """The room's latest sync pass (only finished ones when ``finished``)."""
        table = schema.sync_runs
        query = table.select().where(table.c.room_id == room_id)
        if finished:
            query = query.where(table.c.finished_at.is_not(None))
        query = query.order_by(table.c.started_at.desc(), table.c.id.desc()).limit(1)
        with self._reading() as conn:
            row = conn.execute(query).mappings().first()
        return _sync_run(row) if row else None

    # --- whole rooms -----------------------------------------------------------------------

    def purge_room(self, room_id: str) -> None:
        """Forget everything about a room (for a room removed from the configuration)."""
        with self._writing() as conn:
            for table in schema.ROOM_TABLES:
                conn.execute(table.delete().where(table.c.room_id == room_id))

    def _delete(self, table: sa.Table, *conditions: sa.ColumnElement[bool]) -> int:
        """Delete matching rows; how many there were."""
        with self._writing() as conn:
            deleted: int = conn.execute(table.delete().where(*conditions)).rowcount
        return deleted


def _upsert(
    conn: Connection, table: sa.Table, values: Mapping[str, object], keys: Sequence[str]
) -> None:
    """Insert a row, or update every non-key column of the existing one, in one statement."""
    insert = _insert_for(conn, table).values(dict(values))
    changes = {name: insert.excluded[name] for name in values if name not in keys}
    conn.execute(insert.on_conflict_do_update(index_elements=list(keys), set_=changes))


def _reason(exc: SQLAlchemyError) -> str:
    """The driver's own message, without SQLAlchemy's SQL and parameter dump."""
    original = getattr(exc, "orig", None)
    text = str(original) if original is not None else type(exc).__name__
    return " ".join(text.split())


def _provider_booking(row: sa.RowMapping) -> ProviderBooking:
    """A provider_bookings row as a record."""
    return ProviderBooking(
        room_id=row["room_id"],
        booking_key=row["booking_key"],
        booking=loads_booking(row["booking"]),
        version=row["version"],
        seen_at=row["seen_at"],
    )


def _calendar_object(row: sa.RowMapping) -> CalendarObject:
    """A calendar_objects row as a record."""
    ics = row["ics"]
    return CalendarObject(
        room_id=row["room_id"],
        href=row["href"],
        uid=row["uid"],
        etag=row["etag"],
        content_hash=row["content_hash"],
        origin=ObjectOrigin(row["origin"]),
        booking_key=row["booking_key"],
        ics=bytes(ics) if ics is not None else None,
    )


def _link(row: sa.RowMapping) -> Link:
    """A links row as a record."""
    return Link(
        room_id=row["room_id"],
        booking_key=row["booking_key"],
        uid=row["uid"],
        href=row["href"],
        etag=row["etag"],
        content_hash=row["content_hash"],
        origin=LinkOrigin(row["origin"]),
        written_at=row["written_at"],
    )


def _item_error(row: sa.RowMapping) -> ItemError:
    """An item_errors row as a record."""
    return ItemError(
        room_id=row["room_id"],
        item=row["item"],
        operation=row["operation"],
        message=row["message"],
        attempts=row["attempts"],
        first_at=row["first_at"],
        last_at=row["last_at"],
    )


def _sync_run(row: sa.RowMapping) -> SyncRun:
    """A sync_runs row as a record."""
    return SyncRun(
        id=row["id"],
        room_id=row["room_id"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        ok=row["ok"],
        created=row["created"],
        updated=row["updated"],
        deleted=row["deleted"],
        declined=row["declined"],
        errors=tuple(json.loads(row["errors"])),
    )
