"""The ``banatie-local`` command line: a thin layer over the same services as the API.

Every command accepts ``--config`` and ``--data-dir`` (before or after its name),
every command that prints data accepts ``--json``, and failures exit non-zero with
one sentence on stderr.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import signal
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import click

from banatie_local import __version__
from banatie_local.config import ConfigError, Settings, load_settings
from banatie_local.constants import (
    ASPECT_RATIOS,
    DEFAULT_API_ASPECT_RATIO,
    DEFAULT_TEMPLATE,
    TEMPLATES,
)
from banatie_local.db.migrations import MigrationError
from banatie_local.db.models import LiveCacheEntry
from banatie_local.errors import ApiError
from banatie_local.services.container import InitResult, Services, initialize, open_services
from banatie_local.services.context import Context
from banatie_local.services.generations import GenerationRequest, present_generations
from banatie_local.services.images import image_to_dict
from banatie_local.services.keys import KEY_TYPES, MAX_EXPIRY_DAYS, created_key_to_dict, key_to_dict
from banatie_local.services.maintenance import GRACE_SECONDS
from banatie_local.services.projects import (
    MAX_SCOPE_GENERATION_LIMIT,
    ProjectRef,
    parse_project_path,
    project_to_dict,
)
from banatie_local.services.scopes import MAX_SCOPE_LIMIT, scope_to_dict
from banatie_local.storage import StorageError

F = TypeVar("F", bound=Callable[..., Any])
_META = "banatie_local.cli"


class AppGroup(click.Group):
    """Turns the appliance's own errors into one clear sentence and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ApiError as exc:
            raise click.ClickException(exc.message) from exc
        except (ConfigError, MigrationError, StorageError) as exc:
            raise click.ClickException(str(exc)) from exc


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is not None:
        ctx.meta.setdefault(_META, {})[param.name] = value
    return value


def common_options(func: F) -> F:
    """``--config`` and ``--data-dir``, accepted on the group and on every command."""
    func = click.option(
        "--data-dir",
        type=click.Path(file_okay=False),
        expose_value=False,
        callback=_remember,
        help="Data directory (default: $BANATIE_DATA_DIR, else ./banatie-data).",
    )(func)
    return click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False),
        expose_value=False,
        callback=_remember,
        help="TOML config file (default: $BANATIE_CONFIG, else ./banatie.toml if present).",
    )(func)


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")(func)


def load(overrides: dict[str, Any] | None = None) -> Settings:
    """The settings for this invocation: file, environment, then flags."""
    meta = click.get_current_context().meta.get(_META, {})
    return load_settings(meta.get("config_file"), meta.get("data_dir"), overrides)


@contextmanager
def opened(overrides: dict[str, Any] | None = None) -> Iterator[Services]:
    services = open_services(load(overrides))
    try:
        yield services
    finally:
        services.close()


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def emit_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    if not rows:
        click.echo("(none)")
        return
    text = [[("-" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in text)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in text:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


# --------------------------------------------------------------------------- #


@click.group(cls=AppGroup, context_settings={"help_option_names": ["-h", "--help"]})
@common_options
@click.version_option(__version__, prog_name="banatie-local")
def cli() -> None:
    """banatie-local: the Banatie v1 image API, self-hosted on this machine."""


def _print_init(result: InitResult, settings: Settings, as_json: bool) -> None:
    if as_json:
        emit_json(
            {
                "dataDir": str(settings.data_dir),
                "createdProject": result.created_project,
                "masterKey": result.master_key,
                "projectKey": result.project_key,
            }
        )
        return
    if result.master_key and result.project_key:
        click.echo("Created project default/default. These keys are shown only this once:")
        click.echo(f"  master key  (admin, /api/admin): {result.master_key}")
        click.echo(f"  project key (API, /api/v1):      {result.project_key}")
        click.echo(
            f'Try: curl -H "X-API-Key: {result.project_key}" '
            f"{settings.public_base_url}/api/v1/project"
        )
    elif result.created_project:
        click.echo("Created project default/default (no keys; use the bootstrap route).")
    else:
        click.echo(f"Already initialised in {settings.data_dir}.")


@cli.command()
@common_options
@click.option(
    "--no-keys",
    is_flag=True,
    help="Create no keys, so the first master key comes from POST /api/bootstrap/initial-key.",
)
@json_option
def init(no_keys: bool, as_json: bool) -> None:
    """Create the data directory, database, default project and first keys.

    Safe to run again: an initialised data directory is left as it is, and keys
    are only made while none exist.
    """
    with opened() as services:
        result = initialize(services, create_keys=not no_keys)
        _print_init(result, services.settings, as_json)


@cli.command()
@common_options
@click.option("--host", help="Bind address (server.host).")
@click.option("--port", type=int, help="TCP port (server.port).")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    help="Worker processes on the one port (server.workers); they share one budget.",
)
@click.option("--no-keys", is_flag=True, help="On first run, create no keys (see init).")
def serve(host: str | None, port: int | None, workers: int | None, no_keys: bool) -> None:
    """Initialise on first run, then serve the API until Ctrl-C or SIGTERM.

    Safe to stop at any time: hit counts are written, and background generations
    still running are recorded as interrupted."""
    settings = load({"server.host": host, "server.port": port, "server.workers": workers})
    configure_logging(settings.log.level)
    # Fail before first-run initialisation, so no keys are made for a server that
    # cannot start.
    _check_can_listen(settings.server.host, settings.server.port)
    services = open_services(settings)
    _print_init(initialize(services, create_keys=not no_keys), settings, as_json=False)
    count = settings.server.workers
    click.echo(
        f"banatie-local {__version__} serving on {settings.public_base_url} "
        f"(provider: {settings.provider_name}, storage: {services.storage.name}, "
        f"data: {settings.data_dir}" + (f", workers: {count})" if count > 1 else ")")
    )
    try:
        if count == 1:
            _serve_one(settings, services)
        else:
            _serve_many(settings, services)
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {settings.server.host}:{settings.server.port}: "
            f"{exc.strerror or exc}."
        ) from exc
    finally:
        services.close()
    click.echo("banatie-local stopped.")


def _serve_one(settings: Settings, services: Services) -> None:
    from banatie_local.http import create_app

    create_app(settings, services).run(
        host=settings.server.host,
        port=settings.server.port,
        single_process=True,
        access_log=settings.server.access_log,
        motd=False,
    )


def _serve_many(settings: Settings, services: Services) -> None:
    """N worker processes on one port, each built by the app factory in its own
    process (its own database threads and memory caches, coherent through the
    database); the main process only supervises them."""
    from sanic import Sanic
    from sanic.worker.loader import AppLoader

    from banatie_local.http import create_app

    loader = AppLoader(factory=functools.partial(create_app, settings, name="banatie_local"))
    # The supervisor's own app only has to carry the workers' name; it reuses the
    # services already open here instead of opening a second set (no server runs
    # in this process, so its database threads stay idle).
    app = create_app(settings, services, name="banatie_local")
    app.prepare(
        host=settings.server.host,
        port=settings.server.port,
        workers=settings.server.workers,
        access_log=settings.server.access_log,
        motd=False,
    )

    @app.main_process_ready
    async def _stop_through_the_monitor(app: Sanic[Any, Any]) -> None:
        # Sanic's own handler talks to the worker-state manager from inside a signal
        # handler, which can deadlock when the signal lands during a call to that same
        # manager (seen while workers start); asking the monitor loop to stop is safe.
        publisher = app.manager.monitor_publisher

        def stop(signum: int, frame: object) -> None:
            publisher.send("__TERMINATE__")

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    Sanic.serve(primary=app, app_loader=loader)


def _check_can_listen(host: str, port: int) -> None:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}."
        ) from exc


# --------------------------------------------------------------------------- keys


@cli.group(cls=AppGroup)
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
        emit_json(created_key_to_dict(created))
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
        rows = [key_to_dict(owner) for owner in owners]
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


# ----------------------------------------------------------------------- projects


@cli.group(cls=AppGroup)
@common_options
def projects() -> None:
    """List, create and configure projects and their live-URL settings."""


@projects.command("list")
@common_options
@json_option
def projects_list(as_json: bool) -> None:
    """List projects with their live settings, newest first. Read-only."""
    with opened() as services:
        rows = [project_to_dict(ref.organization, ref.project) for ref in services.projects.list()]
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
        data = project_to_dict(ref.organization, ref.project)
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
    type=click.IntRange(0, MAX_SCOPE_GENERATION_LIMIT),
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
        data = project_to_dict(ref.organization, project)
    if as_json:
        emit_json(data)
    else:
        emit_table(
            [data],
            ["organizationSlug", "slug", "allowNewLiveScopes", "newLiveScopesGenerationLimit"],
        )


# ------------------------------------------------------------------------- scopes

project_option = click.option(
    "--project", "project_path", default="default/default", metavar="ORG/PROJECT",
    help="The project (default: default/default).",
)  # fmt: skip


def _project_ref(services: Services, project_path: str) -> ProjectRef:
    return services.projects.get(*parse_project_path(project_path))


@cli.group(cls=AppGroup)
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
        ref = _project_ref(services, project_path)
        views, _ = services.scopes.list_page(ref.project.id, 1_000_000, 0)
        rows = [scope_to_dict(view) for view in views]
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
@click.option("--limit", type=click.IntRange(0, MAX_SCOPE_LIMIT), default=30,
              help="New generations allowed in the scope (default 30).")  # fmt: skip
@json_option
def scopes_create(
    slug: str, project_path: str, allow_new_generations: bool, limit: int, as_json: bool
) -> None:
    """Create a scope. Safe: creates nothing else."""
    with opened() as services:
        ref = _project_ref(services, project_path)
        scope = services.scopes.create(ref.project.id, slug, allow_new_generations, limit)
        data = scope_to_dict(services.scopes.view(scope))
    if as_json:
        emit_json(data)
    else:
        click.echo(f"created scope {slug} in {project_path}")


@scopes.command("update")
@common_options
@click.argument("slug")
@project_option
@click.option("--allow-new-generations/--no-allow-new-generations", default=None)
@click.option("--limit", type=click.IntRange(0, MAX_SCOPE_LIMIT), default=None)
@json_option
def scopes_update(
    slug: str, project_path: str, allow_new_generations: bool | None, limit: int | None,
    as_json: bool,
) -> None:  # fmt: skip
    """Change a scope's settings; options left out keep their value."""
    with opened() as services:
        ref = _project_ref(services, project_path)
        scope = services.scopes.get(ref.project.id, slug)
        services.scopes.update(scope, allow_new_generations, limit)
        data = scope_to_dict(services.scopes.view(scope))
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
        ref = _project_ref(services, project_path)
        scope = services.scopes.get(ref.project.id, slug)
        asyncio.run(services.live.delete_scope(scope))
    if as_json:
        emit_json({"id": scope.id})
    else:
        click.echo(f"deleted scope {slug}")


@cli.group(cls=AppGroup)
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
        query = LiveCacheEntry.select()
        if project_path or scope_slug:
            ref = _project_ref(services, project_path or "default/default")
            query = query.where(LiveCacheEntry.project_id == ref.project.id)
            if scope_slug:
                scope = services.scopes.get(ref.project.id, scope_slug)
                query = query.where(LiveCacheEntry.scope_id == scope.id)
        entries = list(query)
        asyncio.run(services.live.purge(entries))
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
            asyncio.run(services.maintenance.purge_orphans(report))
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


@cli.command()
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


# ----------------------------------------------------------------------- generate


@cli.command()
@common_options
@click.argument("prompt")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the image here.")
@click.option(
    "--aspect-ratio", type=click.Choice(list(ASPECT_RATIOS)), default=DEFAULT_API_ASPECT_RATIO
)
@click.option("--ref", "refs", multiple=True, metavar="ID_OR_ALIAS", help="Reference image.")
@click.option("--no-enhance", is_flag=True, help="Send the prompt to the model as written.")
@click.option("--template", type=click.Choice(TEMPLATES), default=DEFAULT_TEMPLATE)
@click.option("--alias", help="Project alias for the output image (@name).")
@click.option("--project", "project_path", default="default/default", metavar="ORG/PROJECT")
@json_option
def generate(
    prompt: str,
    output: str | None,
    aspect_ratio: str,
    refs: tuple[str, ...],
    no_enhance: bool,
    template: str,
    alias: str | None,
    project_path: str,
    as_json: bool,
) -> None:
    """Generate one image without a running server, recorded like any other.

    Uses the configured provider (offline unless a Gemini key is set). Exits 1 if
    the generation fails; the failed record stays, as it would over the API.
    """
    with opened() as services:
        ref = services.projects.get(*parse_project_path(project_path))
        ctx = Context(ref.organization, ref.project)
        request = GenerationRequest(
            prompt=prompt,
            aspect_ratio=aspect_ratio,
            reference_images=list(refs),
            alias=alias,
            auto_enhance=not no_enhance,
            template=template,
        )
        generation = asyncio.run(services.generations.create(ctx, request, wait=True))
        base = services.settings.public_base_url
        present = partial(
            image_to_dict,
            org_slug=ref.organization.slug,
            project_slug=ref.project.slug,
            base_url=base,
        )
        data = present_generations([generation], present)[0]
        if generation.status == "success" and output:
            image = data["outputImage"]
            data_bytes = asyncio.run(services.storage.get(image["storageKey"]))
            try:
                Path(output).write_bytes(data_bytes)
            except OSError as exc:
                raise click.ClickException(
                    f"generation {generation.id} succeeded, but {output} cannot be written: "
                    f"{exc.strerror or exc}."
                ) from exc
    if as_json:
        emit_json(data)
    if generation.status != "success":
        raise click.ClickException(f"generation {generation.id} failed: {generation.error_message}")
    if not as_json:
        image = data["outputImage"]
        click.echo(
            f"generation {generation.id}: image {image['id']} "
            f"({image['width']}x{image['height']}, {data['meta'].get('provider')})"
        )
        click.echo(output if output else image["storageUrl"])


@cli.command()
@common_options
@json_option
def version(as_json: bool) -> None:
    """Print the version of this banatie-local. Read-only."""
    if as_json:
        emit_json({"name": "banatie-local", "version": __version__})
    else:
        click.echo(f"banatie-local {__version__}")


def main() -> None:
    cli(prog_name="banatie-local")
