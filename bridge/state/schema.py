"""The current shape of the state database, as SQLAlchemy Core tables.

This is what the store queries. The database itself is built by the ordered steps in
:mod:`bridge.state.migrations`, which keep their own frozen copies of each table as it was
when the step was written; a test checks that migrating an empty database from scratch ends
exactly at these definitions, so changing a table here needs a new migration step.

Every table is keyed by ``room_id`` first: a room is the unit of work and of locking.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

#: Names for constraints and indexes, so that every database gets the same ones.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(sa.TypeDecorator[datetime]):
    """An aware datetime stored as UTC and read back as UTC on SQLite and PostgreSQL alike.

    SQLite keeps no offset at all, so a value is converted to UTC before it is written and
    marked UTC when read; naive values are refused rather than guessed.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """The value converted to UTC (naive for SQLite, which cannot store an offset)."""
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} cannot be stored")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """The stored value as an aware UTC datetime."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("applied_at", UtcDateTime, nullable=False),
)

provider_bookings = sa.Table(
    "provider_bookings",
    metadata,
    sa.Column("room_id", sa.String, primary_key=True),
    sa.Column("booking_key", sa.String, primary_key=True),
    sa.Column("booking", sa.Text, nullable=False),
    sa.Column("version", sa.String, nullable=True),
    sa.Column("seen_at", UtcDateTime, nullable=False),
)

calendar_objects = sa.Table(
    "calendar_objects",
    metadata,
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

links = sa.Table(
    "links",
    metadata,
    sa.Column("room_id", sa.String, primary_key=True),
    sa.Column("booking_key", sa.String, primary_key=True),
    sa.Column("uid", sa.String, primary_key=True),
    sa.Column("href", sa.String, nullable=False),
    sa.Column("etag", sa.String, nullable=True),
    sa.Column("content_hash", sa.String, nullable=True),
    sa.Column("origin", sa.String, nullable=False),
    sa.Column("written_at", UtcDateTime, nullable=False),
    sa.CheckConstraint("origin IN ('provider', 'calendar')", name="origin"),
    sa.Index(None, "room_id", "uid"),
    sa.Index(None, "room_id", "href"),
)

cursors = sa.Table(
    "cursors",
    metadata,
    sa.Column("room_id", sa.String, primary_key=True),
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

feed_tokens = sa.Table(
    "feed_tokens",
    metadata,
    sa.Column("room_id", sa.String, primary_key=True),
    sa.Column("token", sa.String, nullable=False, unique=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

item_errors = sa.Table(
    "item_errors",
    metadata,
    sa.Column("room_id", sa.String, primary_key=True),
    sa.Column("item", sa.String, primary_key=True),
    sa.Column("operation", sa.String, primary_key=True),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("first_at", UtcDateTime, nullable=False),
    sa.Column("last_at", UtcDateTime, nullable=False),
)

sync_runs = sa.Table(
    "sync_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("room_id", sa.String, nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("finished_at", UtcDateTime, nullable=True),
    sa.Column("ok", sa.Boolean, nullable=True),
    sa.Column("created", sa.Integer, nullable=False),
    sa.Column("updated", sa.Integer, nullable=False),
    sa.Column("deleted", sa.Integer, nullable=False),
    sa.Column("declined", sa.Integer, nullable=False),
    sa.Column("errors", sa.Text, nullable=False),
    sa.Index(None, "room_id", "started_at"),
)

provider_revisions = sa.Table(
    "provider_revisions",
    metadata,
    sa.Column("room_id", sa.String, primary_key=True),
    sa.Column("revision", sa.Integer, nullable=False),
)

feed_chunks = sa.Table(
    "feed_chunks",
    metadata,
    sa.Column("room_id", sa.String, primary_key=True),
    sa.Column("booking_key", sa.String, primary_key=True),
    sa.Column("fingerprint", sa.String, nullable=False),
    sa.Column("privacy", sa.String, nullable=False),
    sa.Column("buffers", sa.String, nullable=False),
    sa.Column("sequence", sa.Integer, nullable=False),
    sa.Column("rendered_at", UtcDateTime, nullable=False),
    sa.Column("content_hash", sa.String, nullable=False),
    sa.Column("chunk_hash", sa.String, nullable=False),
    sa.Column("first_start", UtcDateTime, nullable=True),
    sa.Column("last_end", UtcDateTime, nullable=True),
    sa.Column("recurring", sa.Boolean, nullable=False),
    sa.Column("tzids", sa.String, nullable=False),
    sa.Column("first_year", sa.Integer, nullable=False),
    sa.Column("last_year", sa.Integer, nullable=False),
    sa.Column("chunk", sa.Text, nullable=False),
)

feed_rooms = sa.Table(
    "feed_rooms",
    metadata,
    sa.Column("room_id", sa.String, primary_key=True),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("settings", sa.String, nullable=False),
    sa.Column("rendered_at", UtcDateTime, nullable=False),
    sa.Column("etag", sa.String, nullable=True),
    sa.Column("modified_at", UtcDateTime, nullable=True),
)

device_actions = sa.Table(
    "device_actions",
    metadata,
    sa.Column("room_id", sa.String, primary_key=True),
    sa.Column("action_id", sa.String, primary_key=True),
    sa.Column("pod_booking_id", sa.String, nullable=False),
    sa.Column("occurrence", sa.String, nullable=False),
    sa.Column("booking_key", sa.String, nullable=False),
    sa.Column("kind", sa.String, nullable=False),
    sa.Column("due_at", UtcDateTime, nullable=False),
    sa.Column("not_after", UtcDateTime, nullable=True),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("fingerprint", sa.String, nullable=False),
    sa.Column("skip_reason", sa.Text, nullable=True),
    sa.Column("state", sa.String, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", UtcDateTime, nullable=True),
    sa.Column("sent_fingerprint", sa.String, nullable=True),
    sa.Column("outcome", sa.Text, nullable=True),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.CheckConstraint("kind IN ('booking', 'on', 'off')", name="kind"),
    sa.CheckConstraint("state IN ('pending', 'sending', 'done', 'skipped')", name="state"),
    sa.Index(None, "room_id", "state", "due_at"),
)

unlock_codes = sa.Table(
    "unlock_codes",
    metadata,
    sa.Column("room_id", sa.String, primary_key=True),
    sa.Column("pod_booking_id", sa.String, primary_key=True),
    sa.Column("booking_key", sa.String, nullable=False),
    sa.Column("code", sa.String, nullable=False),
    sa.Column("starts_at", UtcDateTime, nullable=False),
    sa.Column("issued_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("room_id", "code"),
    sa.Index(None, "room_id", "booking_key"),
)

#: The tables that hold per-room data (everything but the schema version).
ROOM_TABLES: tuple[sa.Table, ...] = (
    provider_bookings,
    calendar_objects,
    links,
    cursors,
    feed_tokens,
    item_errors,
    sync_runs,
    provider_revisions,
    feed_chunks,
    feed_rooms,
    device_actions,
    unlock_codes,
)
