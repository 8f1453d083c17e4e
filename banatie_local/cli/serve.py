"""``init`` and ``serve``: first-run setup, then the API on one process or on
several workers sharing one port."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import signal
import socket
import tempfile
from typing import TYPE_CHECKING, Any

import click

from banatie_local import __version__
from banatie_local.cli.base import (
    common_options,
    configure_logging,
    emit_json,
    json_option,
    load,
    opened,
)
from banatie_local.config import Settings
from banatie_local.services.container import InitResult, Services, initialize, open_services

if TYPE_CHECKING:
    from sanic import Sanic


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


@click.command()
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


@click.command()
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
    base = settings.public_base_url
    click.echo(f"  gallery:  {base}/\n  API docs: {base}/docs")
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
    from banatie_local.metrics import MULTIPROC_ENV

    if settings.server.metrics and not os.environ.get(MULTIPROC_ENV):
        # Workers are spawned: they import prometheus_client after this is set and
        # write their figures where any of them can sum them for a scrape.
        shared = tempfile.mkdtemp(prefix="banatie-metrics-")
        os.environ[MULTIPROC_ENV] = shared
        atexit.register(shutil.rmtree, shared, True)
    loader = AppLoader(factory=functools.partial(_worker_app, settings))
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


def _worker_app(settings: Settings) -> Sanic[Any, Any]:
    """The app of one worker process. Workers are spawned, so nothing of the main
    process's logging setup reaches them: each sets up its own before building."""
    from banatie_local.http import create_app

    configure_logging(settings.log.level)
    return create_app(settings, name="banatie_local")


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
