"""Opening the database: a SQLite file in the data dir, or PostgreSQL by
``database.url``; either is migrated to this release's schema before use."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from peewee import Database as PeeweeDatabase
from peewee import DatabaseError, PostgresqlDatabase, SqliteDatabase

from banatie_local.clock import Clock
from banatie_local.db.dialect import Dialect
from banatie_local.db.migrations import MigrationError, migrate
from banatie_local.db.models import database

# WAL lets readers run beside the writer; NORMAL is durable across application
# crashes in WAL mode; foreign keys make the cascades in the schema real.
PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": "normal",
    "foreign_keys": 1,
    "busy_timeout": 5000,
    "cache_size": -16000,
}


class LoopBlockedError(RuntimeError):
    """A query ran on the event loop's thread (``guard_loop`` is on in the tests)."""


class _LoopGuard:
    """A database that can refuse to run on a thread that is running an event loop.

    The server keeps every query behind ``db.boundary.Database``; the tests switch
    ``guard_loop`` on so that a query slipped onto the loop fails instead of
    silently stalling every other request."""

    guard_loop = False

    def execute_sql(self, sql: str, params: Any = None) -> Any:
        if self.guard_loop and asyncio._get_running_loop() is not None:
            raise LoopBlockedError(f"database call on the event loop: {sql[:80]}")
        return super().execute_sql(sql, params)  # type: ignore[misc]


class AppSqliteDatabase(_LoopGuard, SqliteDatabase):
    dialect = Dialect("sqlite")


class AppPostgresqlDatabase(_LoopGuard, PostgresqlDatabase):
    dialect = Dialect("postgresql")


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def postgres(url: str) -> AppPostgresqlDatabase:
    """A PostgreSQL database (psycopg 3) from ``postgresql://user:pass@host:port/db?...``."""
    parts = urlsplit(url)
    params: dict[str, Any] = dict(parse_qsl(parts.query))
    if parts.hostname:
        params["host"] = parts.hostname
    if parts.port:
        params["port"] = parts.port
    if parts.username:
        params["user"] = unquote(parts.username)
    if parts.password:
        params["password"] = unquote(parts.password)
    params.setdefault("connect_timeout", 5)
    name = unquote(parts.path.lstrip("/")) or "postgres"
    return AppPostgresqlDatabase(name, prefer_psycopg3=True, **params)


def open_database(
    path: Path, clock: Clock, busy_timeout_ms: int = 5000, url: str = ""
) -> AppSqliteDatabase | AppPostgresqlDatabase:
    """Open (creating if needed) and migrate the database; bind the models to it.

    ``url`` empty: the SQLite file at ``path``. The models are bound process-wide:
    one appliance, one database per process."""
    db, _ = upgrade_database(path, clock, busy_timeout_ms, url)
    database.initialize(db)
    return db


def upgrade_database(
    path: Path, clock: Clock, busy_timeout_ms: int = 5000, url: str = ""
) -> tuple[AppSqliteDatabase | AppPostgresqlDatabase, list[int]]:
    """Connect and apply the pending migrations; the database and their numbers."""
    db: AppSqliteDatabase | AppPostgresqlDatabase
    if url:
        db = postgres(url)
        where = redacted(url)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        # IMMEDIATE transactions take the write lock up front, so a CLI command writing
        # beside a running server waits on busy_timeout instead of failing mid-way.
        db = AppSqliteDatabase(
            str(path), pragmas={**PRAGMAS, "busy_timeout": busy_timeout_ms}, lock_type="IMMEDIATE"
        )
        where = str(path)
    try:
        db.connect(reuse_if_open=True)
        applied = migrate(db, clock.now_us())
    except DatabaseError as exc:
        db.close()
        raise MigrationError(f"the database {where} cannot be used: {exc}.") from exc
    return db, applied


def redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def dialect_of(db: PeeweeDatabase) -> Dialect:
    found: Dialect = getattr(db, "dialect", Dialect("sqlite"))
    return found
