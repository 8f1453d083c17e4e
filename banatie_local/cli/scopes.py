"""``scopes``: list, create, update and delete a project's live-URL scopes."""

from __future__ import annotations

import asyncio

import click

from banatie_local.cli.base import (
    AppGroup,
    common_options,
    emit_json,
    emit_table,
    json_option,
    opened,
    project_option,
    project_ref,
)
from banatie_local.constants import MAX_SCOPE_GENERATIONS_LIMIT
from banatie_local.http import presenters
from banatie_local.http.responses import wire


@click.group(cls=AppGroup)
@common_options
def scopes() -> None:
    """List, create, update and delete live-URL scopes (buckets of live images with
    their own limits)."""


@scopes.command("list")
@common_options
@project_option
@json_option
def scopes_list(project_path: str, as_json: bool) -> None:
    """List a project's scopes with their live image counts. Read-only."""
    with opened() as services:
        ref = project_ref(services, project_path)
        views, _ = services.scopes.list_page(ref.project.id, 1_000_000, 0)
        rows = [wire(presenters.scope(view)) for view in views]
    if as_json:
        emit_json(rows)
    else:
        emit_table(rows, ["slug", "allowNewGenerations", "newGenerationsLimit",
                          "currentGenerations", "lastGeneratedAt"])  # fmt: skip


@scopes.command("create")
@common_options
@click.argument("slug")
@project_option
@click.option("--allow-new-generations/--no-allow-new-generations", default=True)
@click.option("--limit", type=click.IntRange(0, MAX_SCOPE_GENERATIONS_LIMIT), default=30,
              help="New generations allowed in the scope (default 30).")  # fmt: skip
@json_option
def scopes_create(
    slug: str, project_path: str, allow_new_generations: bool, limit: int, as_json: bool
) -> None:
    """Create a scope. Safe: creates nothing else."""
    with opened() as services:
        ref = project_ref(services, project_path)
        scope = services.scopes.create(ref.project.id, slug, allow_new_generations, limit)
        data = wire(presenters.scope(services.scopes.view(scope)))
    if as_json:
        emit_json(data)
    else:
        click.echo(f"created scope {slug} in {project_path}")


@scopes.command("update")
@common_options
@click.argument("slug")
@project_option
@click.option("--allow-new-generations/--no-allow-new-generations", default=None)
@click.option("--limit", type=click.IntRange(0, MAX_SCOPE_GENERATIONS_LIMIT), default=None)
@json_option
def scopes_update(
    slug: str, project_path: str, allow_new_generations: bool | None, limit: int | None,
    as_json: bool,
) -> None:  # fmt: skip
    """Change a scope's settings; options left out keep their value."""
    with opened() as services:
        ref = project_ref(services, project_path)
        scope = services.scopes.get(ref.project.id, slug)
        services.scopes.update(scope, allow_new_generations, limit)
        data = wire(presenters.scope(services.scopes.view(scope)))
    if as_json:
        emit_json(data)
    else:
        emit_table([data], ["slug", "allowNewGenerations", "newGenerationsLimit"])


@scopes.command("delete")
@common_options
@click.argument("slug")
@project_option
@json_option
def scopes_delete(slug: str, project_path: str, as_json: bool) -> None:
    """Delete a scope, its cache entries and its images, except images with a project
    alias. Cannot be undone. A running server stops serving them within
    live.hit_flush_seconds."""
    with opened() as services:
        ref = project_ref(services, project_path)
        scope = services.scopes.get(ref.project.id, slug)
        asyncio.run(services.live.delete_scope(scope))
    if as_json:
        emit_json({"id": scope.id})
    else:
        click.echo(f"deleted scope {slug}")
