"""``generate``: one image without a running server, recorded like any other."""

from __future__ import annotations

import asyncio
import os
from functools import partial
from pathlib import Path

import click

from banatie_local.cli.base import common_options, emit_json, json_option, opened, spinner
from banatie_local.constants import (
    ASPECT_RATIOS,
    DEFAULT_API_ASPECT_RATIO,
    DEFAULT_TEMPLATE,
    TEMPLATES,
)
from banatie_local.http import presenters
from banatie_local.http.responses import wire
from banatie_local.services.context import Context
from banatie_local.services.generation_queries import load_views
from banatie_local.services.generations import GenerationRequest
from banatie_local.services.projects import parse_project_path


@click.command()
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
    if output:
        check_writable(Path(output))  # before a generation is spent
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
        with spinner(f"generating with {services.provider.name}", as_json):
            generation = asyncio.run(services.generations.create(ctx, request, wait=True))
        base = services.settings.public_base_url
        present = partial(
            presenters.image,
            org_slug=ref.organization.slug,
            project_slug=ref.project.slug,
            base_url=base,
        )
        data = wire(presenters.generation(load_views([generation])[0], present))
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


def check_writable(path: Path) -> None:
    """Refuse an ``-o`` that cannot be written, in one sentence, before anything is spent."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        why = "it is a folder"
    elif not folder.is_dir():
        why = f"the folder {folder} does not exist"
    elif not os.access(path if path.exists() else folder, os.W_OK):
        why = "it is not writable"
    else:
        return
    raise click.ClickException(f"{path} cannot be written ({why}); nothing was generated.")
