"""``banatie-local db``: the database itself (its schema)."""

from __future__ import annotations

import click

from banatie_local.cli.base import (
    AppGroup,
    common_options,
    emit_json,
    json_option,
    load,
    progressbar,
)
from banatie_local.db.migrations import LATEST_VERSION
from banatie_local.services import dbcopy
from banatie_local.services.container import upgrade_schema


@click.group(cls=AppGroup)
@common_options
def db() -> None:
    """The database itself: bring its schema up to this release, or copy it whole."""


@db.command()
@common_options
@json_option
def upgrade(as_json: bool) -> None:
    """Apply the pending schema migrations (SQLite or database.url). Safe to run
    again, and beside a running server of the same release."""
    settings = load()
    applied = upgrade_schema(settings)
    kind = "postgresql" if settings.database.url else "sqlite"
    if as_json:
        emit_json({"database": kind, "applied": applied, "version": LATEST_VERSION})
    elif applied:
        numbers = ", ".join(str(n) for n in applied)
        click.echo(
            f"Applied migrations {numbers}; the {kind} database is at version {LATEST_VERSION}."
        )
    else:
        click.echo(f"The {kind} database is already at version {LATEST_VERSION}.")


@db.command()
@common_options
@json_option
@click.option(
    "--to",
    "to",
    required=True,
    metavar="URL",
    help="postgresql://user:pass@host:5432/db, or the path of a new SQLite file.",
)
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(1, 100_000))
def copy(to: str, batch_size: int, as_json: bool) -> None:
    """Copy this database, every row, into an empty one (SQLite to PostgreSQL, or to
    another SQLite file), then check row counts and a checksum per table. The target
    is filled in one transaction: if anything fails it stays empty. Files stay in the
    storage backend. Stop the server first: a change made during the copy fails the
    check."""
    settings = load()
    with dbcopy.opened(settings, to) as (source, target):
        total = dbcopy.total_rows(source)
        with progressbar(total, "Copying rows", as_json) as tick:
            report = dbcopy.copy_database(source, target, to, batch_size, tick)
    if as_json:
        emit_json(
            {"target": dbcopy.redacted(to), "rows": report.rows, "checksums": report.checksums}
        )
    else:
        copied = sum(report.rows[t] for t, _ in dbcopy.COPIED)
        click.echo(
            f"Copied {copied} rows in {len(dbcopy.COPIED)} tables to {dbcopy.redacted(to)}; "
            "row counts and checksums match."
        )
