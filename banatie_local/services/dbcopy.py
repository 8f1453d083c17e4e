"""``db copy``: a whole database into an empty one (SQLite → PostgreSQL, or → SQLite).

The target is migrated to this release's schema, then filled in one transaction, so a
crash or a failed check leaves it as empty as it was. Tables go parents first; the
generation ↔ output image cycle is closed by a last update. The counts kept by
triggers are rebuilt by the target's own triggers as rows arrive, and ``change_log``
is not copied (it only tells running processes what to forget). At the end every
table, the trigger-kept counts included, is compared on both sides: row count and a
SHA-256 over the rows in key order. Files stay where the storage backend keeps them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from peewee import Database as PeeweeDatabase

from banatie_local.clock import Clock
from banatie_local.config import Settings
from banatie_local.db.connection import dialect_of, redacted, upgrade_database
from banatie_local.errors import ApiError

__all__ = ["COPIED", "CopyError", "CopyReport", "copy_database", "opened", "redacted",
           "total_rows"]  # fmt: skip

# (table, key order) parents first; the cycle generations.output_image_id → images is
# filled in after both tables
COPIED: Final = [
    ("organizations", "id"), ("projects", "id"), ("api_keys", "id"), ("flows", "id"),
    ("live_scopes", "id"), ("generations", "id"), ("images", "id"),
    ("generation_references", "generation_id, position"), ("flow_aliases", "flow_id, alias"),
    ("live_cache_entries", "id"), ("orphan_files", "storage_key"),
    ("published_names", "project_id, category, filename"), ("rate_events", "bucket, at"),
    ("live_claims", "cache_key"), ("image_variants", "image_id, variant_key"),
    ("signing_secrets", "id"),
]  # fmt: skip
# a count that went up and down again stays as a zero row on the source: the same as
# no row (which the target has)
REBUILT: Final = [
    ("project_counts", "project_id, subject", "n <> 0"), ("flow_counts", "flow_id", ""),
    ("scope_counts", "scope_id", ""),
]  # fmt: skip


class CopyError(ApiError):
    status = 409
    default_code = "COPY_REFUSED"


@dataclass
class CopyReport:
    target: str
    rows: dict[str, int] = field(default_factory=dict)
    checksums: dict[str, str] = field(default_factory=dict)


def _columns(db: PeeweeDatabase, table: str) -> list[str]:
    cursor = db.execute_sql(f"SELECT * FROM {table} WHERE 1 = 0")  # noqa: S608 (fixed names)
    return [d[0] for d in cursor.description]


def _rows(
    db: PeeweeDatabase, table: str, columns: list[str], order: str, where: str = ""
) -> Iterator[tuple[Any, ...]]:
    condition = f" WHERE {where}" if where else ""
    cursor = db.execute_sql(
        f"SELECT {', '.join(columns)} FROM {table}{condition} ORDER BY {order}"  # noqa: S608
    )
    while batch := cursor.fetchmany(1000):
        yield from batch


def _checksum(
    db: PeeweeDatabase, table: str, order: str, columns: list[str], where: str = ""
) -> tuple[int, str]:
    """Row count and the sum of the rows' SHA-256 (mod 2²⁵⁶): independent of the order
    rows come back in, which the databases' collations may change."""
    total, count = 0, 0
    for row in _rows(db, table, columns, order, where):
        digest = hashlib.sha256(repr(tuple(_plain(v) for v in row)).encode()).digest()
        total = (total + int.from_bytes(digest, "big")) % (1 << 256)
        count += 1
    return count, f"{total:064x}"


def _plain(value: Any) -> Any:
    """A value as both drivers give it back alike (floats to 12 digits)."""
    if isinstance(value, float):
        return round(value, 12)
    if isinstance(value, bool):
        return int(value)
    return value


@contextmanager
def opened(settings: Settings, to: str) -> Iterator[tuple[PeeweeDatabase, PeeweeDatabase]]:
    """The configured database and the target, both migrated; closed afterwards."""
    clock, busy = Clock(), settings.database.busy_timeout_ms
    source, _ = upgrade_database(settings.database_path, clock, busy, settings.database.url)
    try:
        if _same(settings, to):
            raise CopyError("the target is the database this configuration already uses.")
        target = open_target(to, clock, busy)
        try:
            yield source, target
        finally:
            target.close()
    finally:
        source.close()


def _same(settings: Settings, to: str) -> bool:
    if settings.database.url:
        return to == settings.database.url
    return _sqlite_path(to).resolve() == settings.database_path.resolve()


def _sqlite_path(to: str) -> Path:
    """A SQLite target: a file's path, with or without ``sqlite:///``."""
    return Path(to.removeprefix("sqlite:///")).expanduser()


def open_target(to: str, clock: Clock, busy_timeout_ms: int) -> PeeweeDatabase:
    """The target, migrated: a ``postgresql://`` URL, or a SQLite file's path."""
    if to.startswith(("postgresql://", "postgres://")):
        db, _ = upgrade_database(Path("."), clock, busy_timeout_ms, to)
        return db
    db, _ = upgrade_database(_sqlite_path(to), clock, busy_timeout_ms)
    return db


def copy_database(
    source: PeeweeDatabase,
    target: PeeweeDatabase,
    target_name: str,
    batch_size: int = 1000,
    progress: Callable[[int], object] | None = None,
) -> CopyReport:
    """Copy every row of ``source`` into the empty ``target``, then check both."""
    _refuse_non_empty(target, target_name)
    style = dialect_of(target)
    report = CopyReport(target_name)
    outputs: list[tuple[Any, Any]] = []  # (output image id, generation id)
    with target.atomic():
        for table, order in COPIED:
            columns = _columns(source, table)
            insert = style.sql(
                f"INSERT INTO {table} ({', '.join(columns)})"  # noqa: S608
                f" VALUES ({', '.join('?' for _ in columns)})"
            )
            cut = columns.index("output_image_id") if table == "generations" else -1
            batch: list[tuple[Any, ...]] = []
            for found in _rows(source, table, columns, order):
                row = found
                if cut >= 0 and found[cut] is not None:
                    outputs.append((found[cut], found[columns.index("id")]))
                    row = (*found[:cut], None, *found[cut + 1 :])
                batch.append(row)
                if len(batch) >= batch_size:
                    _insert(target, insert, batch, progress)
            _insert(target, insert, batch, progress)
            if table == "images":  # the cycle closed, now that both sides exist
                update = style.sql("UPDATE generations SET output_image_id = ? WHERE id = ?")
                for start in range(0, len(outputs), batch_size):
                    target.cursor().executemany(update, outputs[start : start + batch_size])
        _verify(source, target, report)
    return report


def _insert(
    target: PeeweeDatabase,
    insert: str,
    batch: list[tuple[Any, ...]],
    progress: Callable[[int], object] | None,
) -> None:
    if not batch:
        return
    target.cursor().executemany(insert, batch)
    if progress is not None:
        progress(len(batch))
    batch.clear()


def _refuse_non_empty(target: PeeweeDatabase, name: str) -> None:
    for table in [t for t, *_ in [*COPIED, *REBUILT]]:
        count = target.execute_sql(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # noqa: S608
        if count:
            raise CopyError(
                f"the target database {name} is not empty ({table} has {count} rows); "
                "copy into a new, empty database."
            )


def _verify(source: PeeweeDatabase, target: PeeweeDatabase, report: CopyReport) -> None:
    for table, order, where in [*((t, o, "") for t, o in COPIED), *REBUILT]:
        columns = _columns(source, table)
        mine = _checksum(source, table, order, columns, where)
        theirs = _checksum(target, table, order, columns, where)
        if mine != theirs:
            raise CopyError(
                f"the copy of {table} differs: {mine[0]} rows here, {theirs[0]} there "
                "(checksums differ); the target was left empty."
            )
        report.rows[table], report.checksums[table] = mine


def total_rows(source: PeeweeDatabase) -> int:
    return sum(
        int(source.execute_sql(f"SELECT COUNT(*) FROM {t}").fetchone()[0])  # noqa: S608
        for t, _ in COPIED
    )
