"""``purge`` (live cache entries, storage leftovers) and ``stats``."""

from __future__ import annotations

import asyncio

import click

from banatie_local.cli.base import (
    AppGroup,
    common_options,
    emit_json,
    json_option,
    opened,
    progressbar,
    project_ref,
)
from banatie_local.services.maintenance import GRACE_SECONDS


@click.group(cls=AppGroup)
@common_options
def purge() -> None:
    """Remove cached live images (cache) or storage leftovers (orphans); images with
    a project alias always stay."""


@purge.command("cache")
@common_options
@click.option("--scope", "scope_slug", help="Only this scope (with --project).")
@click.option("--project", "project_path", metavar="ORG/PROJECT",
              help="Only this project (default: every project).")  # fmt: skip
@json_option
def purge_cache(scope_slug: str | None, project_path: str | None, as_json: bool) -> None:
    """Drop live cache entries and their images, except images with a project alias.

    The next live-URL request for each prompt generates again. Scopes stay. Cannot
    be undone."""
    with opened() as services:
        project_id: str | None = None
        scope_id: str | None = None
        if project_path or scope_slug:
            ref = project_ref(services, project_path or "default/default")
            project_id = ref.project.id
            if scope_slug:
                scope_id = services.scopes.get(ref.project.id, scope_slug).id
        entries = services.maintenance.cache_entries(project_id, scope_id)
        with progressbar(len(entries), "Purging", as_json) as tick:
            asyncio.run(services.live.purge(entries, tick))
    if as_json:
        emit_json({"purged": len(entries)})
    else:
        click.echo(f"purged {len(entries)} live cache entr{'y' if len(entries) == 1 else 'ies'}")


@purge.command("orphans")
@common_options
@click.option("--dry-run", is_flag=True, help="Only report; remove nothing.")
@click.option(
    "--grace", type=click.FloatRange(0), default=GRACE_SECONDS, show_default=True,
    help="Leave files younger than this many seconds (a write may be finishing).",
)  # fmt: skip
@json_option
def purge_orphans(dry_run: bool, grace: float, as_json: bool) -> None:
    """Find and remove storage leftovers: files without an image row, image rows
    whose file is gone (with their references), files a delete could not remove,
    and temp files of interrupted writes.

    Safe to run beside a server; --dry-run changes nothing."""
    with opened() as services:
        report = asyncio.run(services.maintenance.find_orphans(grace))
        if not dry_run:
            with progressbar(report.file_count, "Removing", as_json) as tick:
                asyncio.run(services.maintenance.purge_orphans(report, tick))
    if as_json:
        emit_json(report.to_dict())
        return
    verb = "would remove" if dry_run else "removed"
    for label, items in (
        ("files without rows", report.files_without_rows),
        ("rows without files", report.rows_without_files),
        ("files recorded by failed deletes", report.recorded_files),
        ("temp files", report.temp_files),
    ):
        click.echo(f"{verb} {len(items)} {label}")
        for item in items:
            click.echo(f"  {item}")


@click.command()
@common_options
@json_option
def stats(as_json: bool) -> None:
    """Counts by type, status and provider; bytes stored; live cache entries and hits.
    Read-only."""
    with opened() as services:
        data = services.maintenance.stats()
    if as_json:
        emit_json(data)
        return
    for name, value in data.items():
        if isinstance(value, dict):
            click.echo(f"{name}:")
            for sub, count in value.items():
                if isinstance(count, dict):
                    parts = ", ".join(f"{k} {v}" for k, v in count.items()) or "none"
                    click.echo(f"  {sub}: {parts}")
                else:
                    click.echo(f"  {sub}: {count}")
        else:
            click.echo(f"{name}: {value}")
