"""``projects``: list, create and configure projects and their live-URL settings."""

from __future__ import annotations

import click

from banatie_local.cli.base import (
    AppGroup,
    common_options,
    emit_json,
    emit_table,
    json_option,
    opened,
)
from banatie_local.constants import MAX_SCOPE_GENERATIONS_LIMIT
from banatie_local.http import presenters
from banatie_local.http.responses import wire
from banatie_local.services.projects import parse_project_path


@click.group(cls=AppGroup)
@common_options
def projects() -> None:
    """List, create and configure projects and their live-URL settings."""


@projects.command("list")
@common_options
@json_option
def projects_list(as_json: bool) -> None:
    """List projects with their live settings, newest first. Read-only."""
    with opened() as services:
        rows = [
            wire(presenters.project(ref.organization, ref.project))
            for ref in services.projects.list()
        ]
    if as_json:
        emit_json(rows)
    else:
        emit_table(
            rows,
            ["organizationSlug", "slug", "allowNewLiveScopes", "newLiveScopesGenerationLimit"],
        )


@projects.command("create")
@common_options
@click.argument("path", metavar="ORG/PROJECT")
@json_option
def projects_create(path: str, as_json: bool) -> None:
    """Create a project (and its organization if new). Creates no key."""
    with opened() as services:
        org_slug, project_slug = parse_project_path(path)
        ref = services.projects.create(org_slug, project_slug)
        data = wire(presenters.project(ref.organization, ref.project))
    if as_json:
        emit_json(data)
    else:
        click.echo(f"created project {org_slug}/{project_slug} ({data['id']})")


@projects.command("update")
@common_options
@click.argument("path", metavar="ORG/PROJECT")
@click.option(
    "--allow-new-scopes/--no-allow-new-scopes",
    default=None,
    help="Whether live URLs may create new scopes in this project.",
)
@click.option(
    "--scope-limit",
    type=click.IntRange(0, MAX_SCOPE_GENERATIONS_LIMIT),
    help="Generation limit given to newly created live scopes.",
)
@json_option
def projects_update(
    path: str, allow_new_scopes: bool | None, scope_limit: int | None, as_json: bool
) -> None:
    """Change a project's live settings; options left out keep their value."""
    with opened() as services:
        ref = services.projects.get(*parse_project_path(path))
        project = services.projects.update_settings(ref.project, allow_new_scopes, scope_limit)
        data = wire(presenters.project(ref.organization, project))
    if as_json:
        emit_json(data)
    else:
        emit_table(
            [data],
            ["organizationSlug", "slug", "allowNewLiveScopes", "newLiveScopesGenerationLimit"],
        )
