"""Opening the SQLite database with the pragmas every connection needs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from peewee import DatabaseError, SqliteDatabase

from banatie_local.clock import Clock
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


class AppSqliteDatabase(SqliteDatabase):
    """SQLite that can refuse to run on a thread that is running an event loop.

    The server keeps every query behind ``db.boundary.Database``; the tests switch
    ``guard_loop`` on so that a query slipped onto the loop fails instead of
    silently stalling every other request."""

    guard_loop = False

    def execute_sql(self, sql: str, params: Any = None) -> Any:
        if self.guard_loop and asyncio._get_running_loop() is not None:
            raise LoopBlockedError(f"database call on the event loop: {sql[:80]}")
        return super().execute_sql(sql, params)  # type: ignore[no-untyped-call]


def open_database(path: Path, clock: Clock, busy_timeout_ms: int = 5000) -> AppSqliteDatabase:
    """Open (creating if needed) and migrate the database; bind the models to it.

    The models are bound process-wide: one appliance, one database per process.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # IMMEDIATE transactions take the write lock up front, so a CLI command writing
    # beside a running server waits on busy_timeout instead of failing mid-transaction.
    db = AppSqliteDatabase(
        str(path), pragmas={**PRAGMAS, "busy_timeout": busy_timeout_ms}, lock_type="IMMEDIATE"
    )
    try:
        db.connect(reuse_if_open=True)
        migrate(db, clock.now_us())
    except DatabaseError as exc:
        db.close()
        raise MigrationError(f"the database {path} cannot be used: {exc}.") from exc
    database.initialize(db)
    return db
