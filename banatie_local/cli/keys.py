"""``keys``: create, list and revoke API keys."""

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
from banatie_local.constants import MAX_EXPIRY_DAYS
from banatie_local.http import presenters
from banatie_local.http.responses import wire
from banatie_local.services.keys import KEY_TYPES


@click.group(cls=AppGroup)
@common_options
def keys() -> None:
    """Create, list and revoke API keys (only their SHA-256 is stored)."""


@keys.command("create")
@common_options
@click.option("--type", "key_type", type=click.Choice(KEY_TYPES), required=True)
@click.option("--org", "org_slug", help="Organization slug (project keys; default 'default').")
@click.option("--project", "project_slug", help="Project slug (project keys; default 'default').")
@click.option("--name", help="A label to recognise the key by.")
@click.option(
    "--expires-in-days", type=click.IntRange(1, MAX_EXPIRY_DAYS), help="Expire after N days."
)
@json_option
def keys_create(
    key_type: str,
    org_slug: str | None,
    project_slug: str | None,
    name: str | None,
    expires_in_days: int | None,
    as_json: bool,
) -> None:
    """Create a key and print it. The key is shown this once and never again.

    Unknown organization or project slugs are created.
    """
    with opened() as services:
        created = services.keys.create(key_type, org_slug, project_slug, name, expires_in_days)
    if as_json:
        emit_json(wire(presenters.created_key(created)))
        return
    click.echo(created.plaintext)
    click.echo(
        f"{key_type} key {created.owner.key.id} created; store it now, it cannot be shown again.",
        err=True,
    )


@keys.command("list")
@common_options
@json_option
def keys_list(as_json: bool) -> None:
    """List keys by prefix (the keys themselves are never stored). Read-only."""
    with opened() as services:
        owners, _ = services.keys.list(limit=1_000_000, offset=0)
        rows = [wire(presenters.key(owner)) for owner in owners]
    if as_json:
        emit_json(rows)
    else:
        cols = ["id", "type", "keyPrefix", "organizationSlug", "projectSlug", "name", "isActive"]
        emit_table(rows, [*cols, "expiresAt", "lastUsedAt"])


@keys.command("revoke")
@common_options
@click.argument("key_id")
@json_option
def keys_revoke(key_id: str, as_json: bool) -> None:
    """Revoke a key by id; requests with it fail from then on. Cannot be undone."""
    with opened() as services:
        record = services.keys.revoke(key_id)
    if as_json:
        emit_json({"id": record.id, "isActive": False})
    else:
        click.echo(f"revoked {record.id}")
