"""``projects``: list, create and configure projects and their live-URL settings."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import click

from banatie_local.cli.base import (
    AppGroup,
    common_options,
    emit_json,
    emit_table,
    json_option,
    opened,
)
from banatie_local.clock import iso
from banatie_local.constants import MAX_SCOPE_GENERATIONS_LIMIT, MAX_SIGNED_URL_SECONDS
from banatie_local.http import presenters
from banatie_local.http.responses import wire
from banatie_local.services.projects import parse_project_path
from banatie_local.services.signing import MODES, check_public_path, project_of_path

_COLUMNS = ["organizationSlug", "slug", "allowNewLiveScopes", "newLiveScopesGenerationLimit"]


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
        emit_table(rows, [*_COLUMNS, "signedUrls"])


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
@click.option(
    "--signed-urls",
    type=click.Choice(MODES),
    help="Which public URLs must be signed: none, live URLs, or all image URLs too.",
)
@json_option
def projects_update(
    path: str,
    allow_new_scopes: bool | None,
    scope_limit: int | None,
    signed_urls: str | None,
    as_json: bool,
) -> None:
    """Change a project's live and signing settings; options left out keep their value."""
    with opened() as services, services.db.atomic():
        ref = services.projects.get(*parse_project_path(path))
        if signed_urls is not None:
            services.signing.set_mode(ref.project, signed_urls)
        project = services.projects.update_settings(ref.project, allow_new_scopes, scope_limit)
        data = wire(presenters.project(ref.organization, project))
    if as_json:
        emit_json(data)
    else:
        emit_table([data], [*_COLUMNS, "signedUrls"])


@projects.command("signing-secret")
@common_options
@click.argument("path", metavar="ORG/PROJECT")
@click.option(
    "--rotate",
    is_flag=True,
    help="Make a new secret; URLs signed with the old one work for cdn.signature_grace_seconds.",
)
@json_option
def projects_signing_secret(path: str, rotate: bool, as_json: bool) -> None:
    """Print the project's URL-signing secret (made once, on first use), for signing
    URLs on a web server; with --rotate, replace it (URLs signed with the old one keep
    working for cdn.signature_grace_seconds)."""
    with opened() as services, services.db.atomic():
        ref = services.projects.get(*parse_project_path(path))
        until = None
        if rotate:
            secret, until = services.signing.rotate(ref.project)
        else:
            secret = services.signing.secret(ref.project)
    data = {"secret": secret, "previousValidUntil": iso(until)}
    if as_json:
        emit_json(data)
    else:
        click.echo(secret)
        if until is not None:
            click.echo(f"the previous secret keeps working until {iso(until)}", err=True)


@click.command("sign-url")
@common_options
@click.argument("url")
@click.option(
    "--expires-in",
    type=click.IntRange(1, MAX_SIGNED_URL_SECONDS),
    help="Seconds until the URL answers 403 URL_EXPIRED (signed as exp).",
)
@click.option(
    "--project",
    "project_path",
    metavar="ORG/PROJECT",
    help="The project whose secret signs (default: the one the URL's path names).",
)
@json_option
def sign_url(url: str, expires_in: int | None, project_path: str | None, as_json: bool) -> None:
    """Sign a public URL (a live URL or an image URL) with its project's secret.
    Changes nothing except making the project's secret once, on first use.

    URL may be a path (/cdn/ORG/PROJECT/live/SCOPE?prompt=...) or a whole URL; a
    path is completed with server.public_base_url."""
    parts = urlsplit(url)
    named = project_of_path(parts.path)
    if project_path is not None:
        named = parse_project_path(project_path)
    if named is None:
        raise click.UsageError(
            "the URL's path names no project (/cdn/ORG/PROJECT/...): pass --project."
        )
    with opened() as services, services.db.atomic():
        ref = services.projects.get(*named)
        path = check_public_path(parts.path, ref.organization.slug, ref.project.slug)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        relative, expires = services.signing.signed_url(ref.project, path, pairs, expires_in)
        base = services.settings.public_base_url
    whole = f"{parts.scheme}://{parts.netloc}{relative}" if parts.netloc else base + relative
    if as_json:
        emit_json({"url": whole, "expiresAt": iso(None if expires is None else expires * 10**6)})
    else:
        click.echo(whole)
