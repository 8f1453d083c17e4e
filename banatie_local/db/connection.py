"""Opening the SQLite database with the pragmas every connection needs."""

from __future__ import annotations

from pathlib import Path

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


def open_database(path: Path, clock: Clock) -> SqliteDatabase:
    """Open (creating if needed) and migrate the database; bind the models to it.

    The models are bound process-wide: one appliance, one database per process.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # IMMEDIATE transactions take the write lock up front, so a CLI command writing
    # beside a running server waits on busy_timeout instead of failing mid-transaction.
    db = SqliteDatabase(str(path), pragmas=PRAGMAS, lock_type="IMMEDIATE")
    try:
        db.connect(reuse_if_open=True)
        migrate(db, clock.now_us())
    except DatabaseError as exc:
        db.close()
        raise MigrationError(f"the database {path} cannot be used: {exc}.") from exc
    database.initialize(db)
    return db
