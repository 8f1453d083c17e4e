"""What every command shares: the error-to-exit-code group, the ``--config`` /
``--data-dir`` / ``--json`` options, opening the services, and printing."""

from __future__ import annotations

import itertools
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from banatie_local.config import ConfigError, Settings, load_settings
from banatie_local.db.migrations import MigrationError
from banatie_local.errors import ApiError
from banatie_local.services.container import Services, open_services
from banatie_local.services.projects import ProjectRef, parse_project_path
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


project_option = click.option(
    "--project", "project_path", default="default/default", metavar="ORG/PROJECT",
    help="The project (default: default/default).",
)  # fmt: skip


def project_ref(services: Services, project_path: str) -> ProjectRef:
    return services.projects.get(*parse_project_path(project_path))


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


def shows_progress(as_json: bool) -> bool:
    """Progress goes to stderr only when a person watches it: a terminal, no --json."""
    return not as_json and sys.stderr.isatty()


@contextmanager
def progressbar(length: int, label: str, as_json: bool) -> Iterator[Callable[[int], object]]:
    """``click.progressbar`` on stderr, hidden unless ``shows_progress``; yields its
    ``update``."""
    with click.progressbar(
        length=max(length, 0), label=label, file=sys.stderr, hidden=not shows_progress(as_json)
    ) as bar:
        yield bar.update


@contextmanager
def spinner(label: str, as_json: bool) -> Iterator[None]:
    """A spinner with the seconds spent, on stderr, for one long call whose progress
    cannot be counted (a provider call); nothing unless ``shows_progress``."""
    if not shows_progress(as_json):
        yield
        return
    done = threading.Event()
    started = time.monotonic()

    def spin() -> None:
        for frame in itertools.cycle("|/-\\"):
            if done.wait(0.1):
                break
            elapsed = time.monotonic() - started
            click.echo(f"\r{frame} {label} {elapsed:4.0f} s", nl=False, err=True)

    thread = threading.Thread(target=spin, name="spinner", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        click.echo("\r\033[K", nl=False, err=True)  # the line cleared


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
