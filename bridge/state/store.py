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


@dataclass(frozen=True, slots=True)
class FeedChunk:
    """One booking's cached feed text (its VEVENTs) and what it was rendered from.

    A row exists for every booking of the provider snapshot; ``chunk`` is empty when the
    booking shows nothing (cancelled, or it could not be rendered). ``first_start`` and
    ``last_end`` bound the time it blocks (``last_end`` None: an open-ended rule).
    """

    room_id: str
    booking_key: str
    fingerprint: str
    privacy: str
    buffers: str
    sequence: int
    rendered_at: datetime
    content_hash: str
    chunk_hash: str
    first_start: datetime | None
    last_end: datetime | None
    recurring: bool
    tzids: tuple[str, ...]
    first_year: int
    last_year: int
    chunk: str


@dataclass(frozen=True, slots=True)
class FeedState:
    """How current a room's feed chunks are, and the feed version (ETag) last published."""

    room_id: str
    provider_revision: int
    rendered_revision: int | None
    settings: str | None
    etag: str | None
    modified_at: datetime | None


class DeviceActionKind(StrEnum):
    """What a device action does: book the pod, switch its devices on, or off."""

    BOOKING = "booking"
    SWITCH_ON = "on"
    SWITCH_OFF = "off"


class DeviceActionState(StrEnum):
    """Progress of a device action; ``sending`` is recorded before the call goes out."""

    PENDING = "pending"
    SENDING = "sending"
    DONE = "done"
    SKIPPED = "skipped"


#: Order of kinds due at the same instant: the pod booking before its devices.
_KIND_ORDER = {DeviceActionKind.BOOKING: 0, DeviceActionKind.SWITCH_ON: 1,
               DeviceActionKind.SWITCH_OFF: 2}


@dataclass(frozen=True, slots=True)
class DeviceAction:
    """One action the arming plan wants for one occurrence; ``payload`` is JSON text.

    ``fingerprint`` identifies what is wanted: a record whose fingerprint changes starts over.
    An action with a ``skip_reason`` is recorded as skipped when due instead of being sent;
    one past ``not_after`` is skipped too.
    """

    action_id: str
    pod_booking_id: str
    occurrence: str
    booking_key: str
    kind: DeviceActionKind
    due_at: datetime
    not_after: datetime | None
    payload: str
    fingerprint: str
    skip_reason: str | None = None


@dataclass(frozen=True, slots=True)
class DeviceActionRecord:
    """A device action and how far it got."""

    room_id: str
    action: DeviceAction
    state: DeviceActionState
    attempts: int
    next_attempt_at: datetime | None
    sent_fingerprint: str | None
    outcome: str | None
    updated_at: datetime

    @property
    def ready_at(self) -> datetime:
        """When the action may next be tried: its due time, or later after a failure."""
        if self.next_attempt_at is None:
            return self.action.due_at
        return max(self.action.due_at, self.next_attempt_at)

    @property
    def open(self) -> bool:
        """Whether the action still has to be sent (or recorded as skipped)."""
        return self.state in (DeviceActionState.PENDING, DeviceActionState.SENDING)


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
        # The timeout first: switching a new file to WAL takes a lock that another opener may
        # hold, and without the timeout that opener's lock fails at once ("database is locked").
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
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
            _bump_provider_revision(conn, room_id)

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
        with self._writing() as conn:
            query = table.delete().where(
                table.c.room_id == room_id, table.c.booking_key == booking_key
            )
            deleted: int = conn.execute(query).rowcount
            if deleted:
                _bump_provider_revision(conn, room_id)
        return deleted > 0

    def provider_revision(self, room_id: str) -> int:
        """A counter that grows with every change of the room's provider snapshot (0: none)."""
        table = schema.provider_revisions
        query = sa.select(table.c.revision).where(table.c.room_id == room_id)
        with self._reading() as conn:
            revision: int | None = conn.execute(query).scalar_one_or_none()
        return revision or 0

    def provider_booking_documents(self, room_id: str) -> dict[str, str]:
        """The stored JSON text of each provider booking of a room, by key (not decoded)."""
        table = schema.provider_bookings
        query = sa.select(table.c.booking_key, table.c.booking).where(table.c.room_id == room_id)
        with self._reading() as conn:
            return {key: text for key, text in conn.execute(query)}

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

    # --- feed chunks and versions ----------------------------------------------------------

    def feed_state(self, room_id: str) -> FeedState:
        """The provider revision, the revision and settings the chunks reflect, the ETag."""
        revisions, rooms = schema.provider_revisions, schema.feed_rooms
        with self._reading() as conn:
            revision = conn.execute(
                sa.select(revisions.c.revision).where(revisions.c.room_id == room_id)
            ).scalar_one_or_none()
            row = conn.execute(rooms.select().where(rooms.c.room_id == room_id)).mappings().first()
        return FeedState(
            room_id=room_id,
            provider_revision=revision or 0,
            rendered_revision=row["revision"] if row else None,
            settings=row["settings"] if row else None,
            etag=row["etag"] if row else None,
            modified_at=row["modified_at"] if row else None,
        )

    def feed_chunks(
        self,
        room_id: str,
        *,
        with_text: bool = True,
        booking_keys: Sequence[str] | None = None,
    ) -> list[FeedChunk]:
        """A room's cached chunks (all, or those of some bookings), by booking key.

        ``chunk`` is left empty unless ``with_text``: the rest is enough to see what changed.
        """
        table = schema.feed_chunks
        columns = [c for c in table.columns if with_text or c.name != "chunk"]
        query = sa.select(*columns).where(table.c.room_id == room_id)
        if booking_keys is None:
            batches: list[Sequence[str] | None] = [None]
        else:
            # Bounded IN lists: SQLite limits the number of parameters of one statement.
            batches = [booking_keys[i : i + 500] for i in range(0, len(booking_keys), 500)]
        rows: list[sa.RowMapping] = []
        with self._reading() as conn:
            for batch in batches:
                selected = query if batch is None else query.where(
                    table.c.booking_key.in_(list(batch))
                )
                rows.extend(conn.execute(selected.order_by(table.c.booking_key)).mappings())
        return sorted((_feed_chunk(row) for row in rows), key=lambda chunk: chunk.booking_key)

    def put_feed_chunks(self, chunks: Sequence[FeedChunk]) -> None:
        """Store rendered chunks, replacing each booking's previous one."""
        if not chunks:
            return
        table = schema.feed_chunks
        rows = [_feed_chunk_values(chunk) for chunk in chunks]
        with self._writing() as conn:
            insert = _insert_for(conn, table)
            keys = ("room_id", "booking_key")
            changes = {name: insert.excluded[name] for name in rows[0] if name not in keys}
            conn.execute(insert.on_conflict_do_update(index_elements=keys, set_=changes), rows)

    def delete_feed_chunks(self, room_id: str, booking_keys: Sequence[str]) -> int:
        """Drop the chunks of bookings that left the snapshot; how many were dropped."""
        if not booking_keys:
            return 0
        table = schema.feed_chunks
        return self._delete(
            table, table.c.room_id == room_id, table.c.booking_key.in_(list(booking_keys))
        )

    def mark_feed_rendered(self, room_id: str, revision: int, settings: str, now: datetime) -> None:
        """Record that the chunks reflect provider ``revision`` under ``settings``."""
        table = schema.feed_rooms
        values = {"room_id": room_id, "revision": revision, "settings": settings}
        with self._writing() as conn:
            insert = _insert_for(conn, table).values(**values, rendered_at=now)
            conn.execute(
                insert.on_conflict_do_update(
                    index_elements=["room_id"],
                    set_={"revision": revision, "settings": settings, "rendered_at": now},
                )
            )

    def record_feed_version(self, room_id: str, etag: str, now: datetime) -> datetime:
        """Remember the feed's ETag; when it was first published is its Last-Modified."""
        table = schema.feed_rooms
        with self._writing() as conn:
            insert = _insert_for(conn, table).values(
                room_id=room_id, revision=0, settings="", rendered_at=now,
                etag=etag, modified_at=now,
            )
            changed = sa.or_(table.c.etag.is_(None), table.c.etag != etag)
            conn.execute(
                insert.on_conflict_do_update(
                    index_elements=["room_id"],
                    set_={"etag": etag, "modified_at": now},
                    where=changed,
                )
            )
            modified: datetime = conn.execute(
                sa.select(table.c.modified_at).where(table.c.room_id == room_id)
            ).scalar_one()
        return modified

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

    def run_counts(self, room_id: str) -> dict[str, int]:
        """How many of the room's recorded passes succeeded, failed or never finished."""
        table = schema.sync_runs
        outcome = sa.case(
            (table.c.finished_at.is_(None), "unfinished"),
            (table.c.ok.is_(True), "ok"),
            else_="failed",
        )
        query = (
            sa.select(outcome.label("outcome"), sa.func.count())
            .where(table.c.room_id == room_id)
            .group_by(outcome)
        )
        counts = {"ok": 0, "failed": 0, "unfinished": 0}
        with self._reading() as conn:
            for name, number in conn.execute(query):
                counts[name] = number
        return counts

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

    # --- device arming ---------------------------------------------------------------------

    def device_actions(self, room_id: str) -> list[DeviceActionRecord]:
        """Every device action recorded for a room, by due time."""
        table = schema.device_actions
        query = table.select().where(table.c.room_id == room_id)
        with self._reading() as conn:
            rows = [_device_action(row) for row in conn.execute(query).mappings()]
        return sorted(rows, key=_action_order)

    def merge_device_actions(
        self, room_id: str, actions: Sequence[DeviceAction], now: datetime
    ) -> int:
        """Record the actions a plan wants; a changed fingerprint starts that action over.

        Returns how many actions were new or changed. Unchanged ones keep their progress, so
        planning again (after a restart, every pass) never repeats a done action.
        """
        table = schema.device_actions
        changed = 0
        with self._writing() as conn:
            known = dict(
                conn.execute(
                    sa.select(table.c.action_id, table.c.fingerprint).where(
                        table.c.room_id == room_id
                    )
                ).all()
            )
            for action in actions:
                if known.get(action.action_id) == action.fingerprint:
                    continue
                values = _device_action_values(action)
                fresh = {
                    **values,
                    "state": DeviceActionState.PENDING.value,
                    "attempts": 0,
                    "next_attempt_at": None,
                    "outcome": None,
                    "updated_at": now,
                }
                if action.action_id in known:
                    conn.execute(
                        table.update()
                        .where(table.c.room_id == room_id, table.c.action_id == action.action_id)
                        .values(fresh)
                    )
                else:
                    conn.execute(table.insert().values(room_id=room_id, **fresh))
                changed += 1
        return changed

    def due_device_actions(self, room_id: str, now: datetime) -> list[DeviceActionRecord]:
        """Open actions whose time has come (due, and past any retry delay), in order."""
        table = schema.device_actions
        query = table.select().where(
            table.c.room_id == room_id,
            table.c.state.in_([DeviceActionState.PENDING.value, DeviceActionState.SENDING.value]),
            table.c.due_at <= now,
            sa.or_(table.c.next_attempt_at.is_(None), table.c.next_attempt_at <= now),
        )
        with self._reading() as conn:
            rows = [_device_action(row) for row in conn.execute(query).mappings()]
        return sorted(rows, key=_action_order)

    def next_device_action(self, room_id: str) -> DeviceActionRecord | None:
        """The open action that will be tried first, if any."""
        table = schema.device_actions
        query = table.select().where(
            table.c.room_id == room_id,
            table.c.state.in_([DeviceActionState.PENDING.value, DeviceActionState.SENDING.value]),
        )
        with self._reading() as conn:
            rows = [_device_action(row) for row in conn.execute(query).mappings()]
        if not rows:
            return None
        return min(rows, key=lambda r: (r.ready_at, _KIND_ORDER[r.action.kind]))

    def start_device_action(
        self, room_id: str, action_id: str, fingerprint: str, now: datetime
    ) -> bool:
        """Record that the action is about to be sent; False if the plan changed meanwhile."""
        table = schema.device_actions
        with self._writing() as conn:
            result = conn.execute(
                table.update()
                .where(
                    table.c.room_id == room_id,
                    table.c.action_id == action_id,
                    table.c.fingerprint == fingerprint,
                )
                .values(
                    state=DeviceActionState.SENDING.value,
                    attempts=table.c.attempts + 1,
                    updated_at=now,
                )
            )
            started: bool = result.rowcount == 1
        return started

    def finish_device_action(
        self,
        room_id: str,
        action_id: str,
        fingerprint: str,
        now: datetime,
        *,
        skipped: bool = False,
        outcome: str | None = None,
    ) -> None:
        """Record that the action was sent (or deliberately skipped) and what came back."""
        table = schema.device_actions
        values: dict[str, object] = {
            "state": (DeviceActionState.SKIPPED if skipped else DeviceActionState.DONE).value,
            "next_attempt_at": None,
            "outcome": outcome,
            "updated_at": now,
        }
        if not skipped:
            values["sent_fingerprint"] = fingerprint
        with self._writing() as conn:
            conn.execute(
                table.update()
                .where(
                    table.c.room_id == room_id,
                    table.c.action_id == action_id,
                    table.c.fingerprint == fingerprint,
                )
                .values(values)
            )

    def postpone_device_action(
        self,
        room_id: str,
        action_id: str,
        fingerprint: str,
        now: datetime,
        *,
        retry_at: datetime,
        error: str,
    ) -> None:
        """Record a failed attempt; the action is tried again at ``retry_at``."""
        table = schema.device_actions
        with self._writing() as conn:
            conn.execute(
                table.update()
                .where(
                    table.c.room_id == room_id,
                    table.c.action_id == action_id,
                    table.c.fingerprint == fingerprint,
                )
                .values(
                    state=DeviceActionState.PENDING.value,
                    next_attempt_at=retry_at,
                    outcome=error[:MAX_ERROR_MESSAGE],
                    updated_at=now,
                )
            )

    def unlock_code(
        self,
        room_id: str,
        pod_booking_id: str,
        booking_key: str,
        starts_at: datetime,
        now: datetime,
        *,
        digits: int,
    ) -> str:
        """The pod booking's door code: issued once (random), never another booking's code.

        Codes are never deleted (only with the whole room), so a code once issued for one
        occurrence can never be drawn again for another one of the same room.
        """
        table = schema.unlock_codes
        mine = sa.and_(table.c.room_id == room_id, table.c.pod_booking_id == pod_booking_id)
        with self._writing() as conn:
            for _ in range(100):
                existing: str | None = conn.execute(
                    sa.select(table.c.code).where(mine)
                ).scalar_one_or_none()
                if existing is not None:
                    conn.execute(table.update().where(mine).values(starts_at=starts_at))
                    return existing
                candidate = f"{secrets.randbelow(10**digits):0{digits}d}"
                insert = _insert_for(conn, table).values(
                    room_id=room_id,
                    pod_booking_id=pod_booking_id,
                    booking_key=booking_key,
                    code=candidate,
                    starts_at=starts_at,
                    issued_at=now,
                )
                # No conflict target: a code drawn twice in a room is skipped like a taken id.
                conn.execute(insert.on_conflict_do_nothing())
        raise StateError(f"room {room_id}: could not draw an unused unlock code")

    def unlock_codes(self, room_id: str, booking_key: str) -> list[tuple[datetime, str]]:
        """(occurrence start, door code) of a booking's pod bookings, by start."""
        table = schema.unlock_codes
        query = (
            sa.select(table.c.starts_at, table.c.code)
            .where(table.c.room_id == room_id, table.c.booking_key == booking_key)
            .order_by(table.c.starts_at)
        )
        with self._reading() as conn:
            return [(starts_at, code) for starts_at, code in conn.execute(query)]

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


def _bump_provider_revision(conn: Connection, room_id: str) -> None:
    """Count one more change of a room's provider snapshot (feeds notice it cheaply)."""
    table = schema.provider_revisions
    insert = _insert_for(conn, table).values(room_id=room_id, revision=1)
    conn.execute(
        insert.on_conflict_do_update(
            index_elements=["room_id"], set_={"revision": table.c.revision + 1}
        )
    )


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


def _feed_chunk(row: sa.RowMapping) -> FeedChunk:
    """A feed_chunks row as a record."""
    return FeedChunk(
        room_id=row["room_id"],
        booking_key=row["booking_key"],
        fingerprint=row["fingerprint"],
        privacy=row["privacy"],
        buffers=row["buffers"],
        sequence=row["sequence"],
        rendered_at=row["rendered_at"],
        content_hash=row["content_hash"],
        chunk_hash=row["chunk_hash"],
        first_start=row["first_start"],
        last_end=row["last_end"],
        recurring=bool(row["recurring"]),
        tzids=tuple(row["tzids"].split()),
        first_year=row["first_year"],
        last_year=row["last_year"],
        chunk=row.get("chunk") or "",
    )


def _device_action(row: sa.RowMapping) -> DeviceActionRecord:
    """A device_actions row as a record."""
    action = DeviceAction(
        action_id=row["action_id"],
        pod_booking_id=row["pod_booking_id"],
        occurrence=row["occurrence"],
        booking_key=row["booking_key"],
        kind=DeviceActionKind(row["kind"]),
        due_at=row["due_at"],
        not_after=row["not_after"],
        payload=row["payload"],
        fingerprint=row["fingerprint"],
        skip_reason=row["skip_reason"],
    )
    return DeviceActionRecord(
        room_id=row["room_id"],
        action=action,
        state=DeviceActionState(row["state"]),
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        sent_fingerprint=row["sent_fingerprint"],
        outcome=row["outcome"],
        updated_at=row["updated_at"],
    )


def _device_action_values(action: DeviceAction) -> dict[str, object]:
    """The planned columns of a device_actions row."""
    return {
        "action_id": action.action_id,
        "pod_booking_id": action.pod_booking_id,
        "occurrence": action.occurrence,
        "booking_key": action.booking_key,
        "kind": DeviceActionKind(action.kind).value,
        "due_at": action.due_at,
        "not_after": action.not_after,
        "payload": action.payload,
        "fingerprint": action.fingerprint,
        "skip_reason": action.skip_reason,
    }


def _action_order(record: DeviceActionRecord) -> tuple[datetime, int, str]:
    """Due time, then booking before devices, then id: the order actions are sent in."""
    return (record.ready_at, _KIND_ORDER[record.action.kind], record.action.action_id)


def _feed_chunk_values(chunk: FeedChunk) -> dict[str, object]:
    """The feed_chunks row of a record."""
    return {
        "room_id": chunk.room_id,
        "booking_key": chunk.booking_key,
        "fingerprint": chunk.fingerprint,
        "privacy": chunk.privacy,
        "buffers": chunk.buffers,
        "sequence": chunk.sequence,
        "rendered_at": chunk.rendered_at,
        "content_hash": chunk.content_hash,
        "chunk_hash": chunk.chunk_hash,
        "first_start": chunk.first_start,
        "last_end": chunk.last_end,
        "recurring": chunk.recurring,
        "tzids": " ".join(chunk.tzids),
        "first_year": chunk.first_year,
        "last_year": chunk.last_year,
        "chunk": chunk.chunk,
    }
