"""The ``banatie-local`` command line: a thin layer over the same services as the API.

Every command accepts ``--config`` and ``--data-dir`` (before or after its name),
every command that prints data accepts ``--json``, and failures exit non-zero with
one sentence on stderr. The commands reach the database only through the services.
"""

from __future__ import annotations

import click

from banatie_local import __version__
from banatie_local.cli.base import AppGroup, common_options, emit_json, json_option
from banatie_local.cli.db import db
from banatie_local.cli.generate import generate
from banatie_local.cli.keys import keys
from banatie_local.cli.maintenance import purge, stats
from banatie_local.cli.mcp import mcp_command
from banatie_local.cli.projects import projects, sign_url
from banatie_local.cli.scopes import scopes
from banatie_local.cli.serve import init, serve

__all__ = ["cli", "main"]


@click.group(cls=AppGroup, context_settings={"help_option_names": ["-h", "--help"]})
@common_options
@click.version_option(__version__, prog_name="banatie-local")
def cli() -> None:
    """banatie-local: the Banatie v1 image API, self-hosted on this machine."""


@click.command()
@common_options
@json_option
def version(as_json: bool) -> None:
    """Print the version of this banatie-local. Read-only."""
    if as_json:
        emit_json({"name": "banatie-local", "version": __version__})
    else:
        click.echo(f"banatie-local {__version__}")


for command in (
    init, serve, keys, projects, scopes, purge, stats, generate, db, sign_url, version,
    mcp_command,
):  # fmt: skip
    cli.add_command(command)


def main() -> None:
    cli(prog_name="banatie-local")
