"""Versioned migrations of the state database: an ordered list of steps, applied once each.

The ``schema_version`` table lists the steps a database has had. Opening a store applies the
missing ones in order, each in its own transaction together with its ``schema_version`` row,
so a crash mid-way leaves the database at a whole version. Several workers may open a
PostgreSQL store at once: an advisory lock makes one of them migrate while the others wait
(SQLite gets the same from its write lock). A database newer than this code is refused.

A step keeps its own frozen copy of the tables it creates, never the live ones in
:mod:`bridge.state.schema`: a step must build the same thing forever, whatever the current
schema has become since. Add a step at the end; never edit a released one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from bridge.errors import StateError
from bridge.state.schema import NAMING_CONVENTION, schema_version

#: Key of the PostgreSQL advisory lock that serialises migrations ("rbmg").
_MIGRATION_LOCK_KEY = 0x72626D67


class SchemaTooNew(StateError):
    """The database was migrated by a newer roombridge than this one."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One step: the version it brings the database to, and how."""

    version: int
    description: str
    apply: Callable[[Connection], None]


def _timestamp() -> sa.DateTime:
    """The column type every step uses for instants (UTC, see schema.UtcDateTime)."""
    return sa.DateTime(timezone=True)


def _v1_sync_state(conn: Connection) -> None:
    """Provider snapshots, calendar snapshots, what the bridge wrote, cursors, feed tokens."""
    meta = sa.MetaData(naming_convention=NAMING_CONVENTION)
    sa.Table(
        "provider_bookings",
        meta,
        sa.Column("room_id", sa.String, primary_key=True),
        sa.Column("booking_key", sa.String, primary_key=True),
        sa.Column("booking", sa.Text, nullable=False),
        sa.Column("version", sa.String, nullable=True),
        sa.Column("seen_at", _timestamp(), nullable=False),
    )
    sa.Table(
        "calendar_objects",
        meta,
        sa.Column("room_id", sa.String, primary_key=True),
        sa.Column("href", sa.String, primary_key=True),
        sa.Column("uid", sa.String, nullable=False),
        sa.Column("etag", sa.String, nullable=True),
        sa.Column("content_hash", sa.String, nullable=True),
        sa.Column("booking_key", sa.String, nullable=True),
        sa.Column("origin", sa.String, nullable=False),
        sa.Column("ics", sa.LargeBinary, nullable=True),
        sa.CheckConstraint("origin IN ('bridge', 'foreign')", name="origin"),
        sa.Index(None, "room_id", "uid"),
    )
    sa.Table(
        "links",
        meta,
        sa.Column("room_id", sa.String, primary_key=True),
        sa.Column("booking_key", sa.String, primary_key=True),
        sa.Column("uid", sa.String, primary_key=True),
        sa.Column("href", sa.String, nullable=False),
        sa.Column("etag", sa.String, nullable=True),
        sa.Column("content_hash", sa.String, nullable=True),
        sa.Column("origin", sa.String, nullable=False),
        sa.Column("written_at", _timestamp(), nullable=False),
        sa.CheckConstraint("origin IN ('provider', 'calendar')", name="origin"),
        sa.Index(None, "room_id", "uid"),
        sa.Index(None, "room_id", "href"),
    )
    sa.Table(
        "cursors",
        meta,
        sa.Column("room_id", sa.String, primary_key=True),
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("updated_at", _timestamp(), nullable=False),
    )
    sa.Table(
        "feed_tokens",
        meta,
        sa.Column("room_id", sa.String, primary_key=True),
        sa.Column("token", sa.String, nullable=False, unique=True),
        sa.Column("created_at", _timestamp(), nullable=False),
    )
    meta.create_all(conn, checkfirst=False)


def _v2_run_records(conn: Connection) -> None:
    """Per-item errors with retry counts, and one row per sync pass for ``status``."""
    meta = sa.MetaData(naming_convention=NAMING_CONVENTION)
    sa.Table(
        "item_errors",
        meta,
        sa.Column("room_id", sa.String, primary_key=True),
        sa.Column("item", sa.String, primary_key=True),
        sa.Column("operation", sa.String, primary_key=True),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("first_at", _timestamp(), nullable=False),
        sa.Column("last_at", _timestamp(), nullable=False),
    )
    sa.Table(
        "sync_runs",
        meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("room_id", sa.String, nullable=False),
        sa.Column("started_at", _timestamp(), nullable=False),
        sa.Column("finished_at", _timestamp(), nullable=True),
        sa.Column("ok", sa.Boolean, nullable=True),
        sa.Column("created", sa.Integer, nullable=False),
        sa.Column("updated", sa.Integer, nullable=False),
        sa.Column("deleted", sa.Integer, nullable=False),
        sa.Column("declined", sa.Integer, nullable=False),
        sa.Column("errors", sa.Text, nullable=False),
        sa.Index(None, "room_id", "started_at"),
    )
    meta.create_all(conn, checkfirst=False)


def _v3_feeds(conn: Connection) -> None:
    """Provider snapshot revisions, cached per-booking feed chunks and each feed's version."""
    meta = sa.MetaData(naming_convention=NAMING_CONVENTION)
    sa.Table(
        "provider_revisions",
        meta,
        sa.Column("room_id", sa.String, primary_key=True),
        sa.Column("revision", sa.Integer, nullable=False),
    )
    sa.Table(
        "feed_chunks",
        meta,
        sa.Column("room_id", sa.String, primary_key=True),
        sa.Column("booking_key", sa.String, primary_key=True),
        sa.Column("fingerprint", sa.String, nullable=False),
        sa.Column("privacy", sa.String, nullable=False),
        sa.Column("buffers", sa.String, nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("rendered_at", _timestamp(), nullable=False),
        sa.Column("content_hash", sa.String, nullable=False),
        sa.Column("chunk_hash", sa.String, nullable=False),
        sa.Column("first_start", _timestamp(), nullable=True),
        sa.Column("last_end", _timestamp(), nullable=True),
        sa.Column("recurring", sa.Boolean, nullable=False),
        sa.Column("tzids", sa.String, nullable=False),
        sa.Column("first_year", sa.Integer, nullable=False),
        sa.Column("last_year", sa.Integer, nullable=False),
        sa.Column("chunk", sa.Text, nullable=False),
    )
    sa.Table(
        "feed_rooms",
        meta,
        sa.Column("room_id", sa.String, primary_key=True),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("settings", sa.String, nullable=False),
        sa.Column("rendered_at", _timestamp(), nullable=False),
        sa.Column("etag", sa.String, nullable=True),
        sa.Column("modified_at", _timestamp(), nullable=True),
    )
    meta.create_all(conn, checkfirst=False)


def _v4_device_arming(conn: Connection) -> None:
    """Device arming records (each action before and after it is sent) and unlock codes."""
    meta = sa.MetaData(naming_convention=NAMING_CONVENTION)
    sa.Table(
        "device_actions",
        meta,
        sa.Column("room_id", sa.String, primary_key=True),
        sa.Column("action_id", sa.String, primary_key=True),
        sa.Column("pod_booking_id", sa.String, nullable=False),
        sa.Column("occurrence", sa.String, nullable=False),
        sa.Column("booking_key", sa.String, nullable=False),
        sa.Column("kind", sa.String, nullable=False),
        sa.Column("due_at", _timestamp(), nullable=False),
        sa.Column("not_after", _timestamp(), nullable=True),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("fingerprint", sa.String, nullable=False),
        sa.Column("skip_reason", sa.Text, nullable=True),
        sa.Column("state", sa.String, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", _timestamp(), nullable=True),
        sa.Column("sent_fingerprint", sa.String, nullable=True),
        sa.Column("outcome", sa.Text, nullable=True),
        sa.Column("updated_at", _timestamp(), nullable=False),
        sa.CheckConstraint("kind IN ('booking', 'on', 'off')", name="kind"),
        sa.CheckConstraint(
            "state IN ('pending', 'sending', 'done', 'skipped')", name="state"
        ),
        sa.Index(None, "room_id", "state", "due_at"),
    )
    sa.Table(
        "unlock_codes",
        meta,
        sa.Column("room_id", sa.String, primary_key=True),
        sa.Column("pod_booking_id", sa.String, primary_key=True),
        sa.Column("booking_key", sa.String, nullable=False),
        sa.Column("code", sa.String, nullable=False),
        sa.Column("starts_at", _timestamp(), nullable=False),
        sa.Column("issued_at", _timestamp(), nullable=False),
        sa.UniqueConstraint("room_id", "code"),
        sa.Index(None, "room_id", "booking_key"),
    )
    meta.create_all(conn, checkfirst=False)


#: Every step, in order; the last one's version is what this code expects.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "sync state: provider/calendar snapshots, links, cursors, feed tokens",
              _v1_sync_state),
    Migration(2, "run records: item errors with retry counts, sync runs", _v2_run_records),
    Migration(3, "feeds: provider snapshot revisions, cached feed chunks, feed versions",
              _v3_feeds),
    Migration(4, "devices: arming action records, unlock codes", _v4_device_arming),
)

LATEST_VERSION = MIGRATIONS[-1].version


def current_version(conn: Connection) -> int:
    """The version the database is at (0 for an empty database)."""
    if not sa.inspect(conn).has_table(schema_version.name):
        return 0
    found = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar_one()
    return int(found or 0)


def migrate(
    engine: Engine,
    target: int | None = None,
    steps: Sequence[Migration] = MIGRATIONS,
) -> int:
    """Bring the database to ``target`` (default: the latest); returns the version reached."""
    goal = steps[-1].version if target is None else target
    known = steps[-1].version
    for step in steps:
        if step.version > goal:
            break
        with engine.begin() as conn:
            _lock_migrations(conn)
            version = _checked_version(conn, known)
            if version >= step.version:
                continue
            if version != step.version - 1:
                raise StateError(
                    f"the state database is at schema version {version}; "
                    f"step {step.version} cannot follow it"
                )
            _apply(conn, step)
    with engine.connect() as conn:
        return _checked_version(conn, known)


def _checked_version(conn: Connection, known: int) -> int:
    """The database's version, refusing one newer than ``known``."""
    version = current_version(conn)
    if version > known:
        raise SchemaTooNew(
            f"the state database is at schema version {version}, but this roombridge "
            f"knows versions up to {known}: upgrade roombridge"
        )
    return version


def _apply(conn: Connection, step: Migration) -> None:
    """Run one step and record it, inside the caller's transaction."""
    # schema_version is the one table whose shape is fixed forever: every version reads it.
    schema_version.create(conn, checkfirst=True)
    step.apply(conn)
    conn.execute(
        schema_version.insert().values(
            version=step.version,
            description=step.description,
            # The migration time is only shown to people; no caller needs to control it.
            applied_at=datetime.now(UTC),
        )
    )


def _lock_migrations(conn: Connection) -> None:
    """Make concurrent migrators queue up (PostgreSQL; SQLite's write lock does it already)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK_KEY)))
