"""Fixtures for state-store tests: a fresh database per test, on SQLite and on PostgreSQL.

``state_url`` is parametrized ``["sqlite", "postgres"]``. The PostgreSQL variant creates a
uniquely named database on the local server (``$BRIDGE_TEST_POSTGRES_URL``, default
``postgresql://postgres@127.0.0.1:5432/postgres``) and drops it afterwards. When that server
cannot be reached the test is skipped locally but FAILS in CI (``CI=true``), so a broken CI
database can never turn the PostgreSQL half of the suite silently green.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def postgres_admin_url() -> str:
    """The maintenance database URL used to create and drop test databases."""
    return os.environ.get("BRIDGE_TEST_POSTGRES_URL", DEFAULT_ADMIN_URL)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _unreachable(reason: str) -> None:
    message = (
        f"PostgreSQL at {make_url(postgres_admin_url()).render_as_string(hide_password=True)} "
        f"is not reachable ({reason}); start it with "
        "`pg_ctlcluster --skip-systemctl-redirect 15 main start`"
    )
    if _in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped when the block ends; yields its URL."""
    admin_url = postgres_admin_url()
    name = f"roombridge_test_{uuid.uuid4().hex[:16]}"
    try:
        admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        _unreachable(" ".join(str(exc).split()))
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database (dropped afterwards); yields its URL."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def sqlite_database(tmp_path: Path) -> str:
    """A SQLite state URL for a file in the test's temporary folder."""
    return f"sqlite:///{tmp_path / 'state.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def state_url(request: pytest.FixtureRequest) -> str:
    """A URL of a fresh, empty state database: once on SQLite, once on PostgreSQL."""
    fixture = "postgres_database" if request.param == "postgres" else "sqlite_database"
    url: str = request.getfixturevalue(fixture)
    return url
