"""Generations of the key's project (API.md §2)."""

from __future__ import annotations

from sanic.request import Request
from sanic.response import HTTPResponse

from banatie_local.constants import DEFAULT_API_ASPECT_RATIO
from banatie_local.db.models import Generation
from banatie_local.errors import ValidationError
from banatie_local.http import presenters
from banatie_local.http.auth import context_of, read, services_of
from banatie_local.http.presenters import generation_for
from banatie_local.http.responses import ok, page
from banatie_local.http.shapes import CreateGeneration, UpdateGeneration, decode
from banatie_local.http.validation import flow_arg, pagination
from banatie_local.services.flows import ABSENT
from banatie_local.services.generation_queries import GenerationView, load_views
from banatie_local.services.generations import (
    STATUSES,
    GenerationFilters,
    GenerationRequest,
)
from banatie_local.services.validation import check_meta


def _generation_request(body: CreateGeneration) -> GenerationRequest:
    options = body.enhancement_options
    return GenerationRequest(
        prompt=body.prompt,
        aspect_ratio=body.aspect_ratio or DEFAULT_API_ASPECT_RATIO,
        reference_images=body.reference_images or [],
        flow_id=body.flow_id if body.given("flow_id") else ABSENT,
        alias=body.alias,
        flow_alias=body.flow_alias,
        auto_enhance=True if body.auto_enhance is None else body.auto_enhance,
        template=(options.template if options and options.template else None) or "general",
        meta=check_meta(body.meta) if body.meta is not None else None,
    )


def wants_async(request: Request) -> bool:
    prefer = request.headers.get("prefer", "")
    return any(token.strip().lower() == "respond-async" for token in prefer.split(","))


async def create_generation(request: Request) -> HTTPResponse:
    """Generate an image: 201 when done, or 202 at once with ``Prefer: respond-async``."""
    body = decode(request, CreateGeneration)
    wait = not wants_async(request)
    generation = await services_of(request).generations.create(
        context_of(request), _generation_request(body), wait=wait
    )
    return ok(await generation_for(request, generation), 201 if wait else 202)


async def list_generations(request: Request) -> HTTPResponse:
    """Generations newest first, filtered by ``flowId`` and ``status``."""
    paging = pagination(request)
    status = request.args.get("status") or None
    if status is not None and status not in STATUSES:
        raise ValidationError(f"status must be one of {', '.join(STATUSES)}.", field="status")
    filters = GenerationFilters(flow_id=flow_arg(request), status=status)
    generations, ctx = services_of(request).generations, context_of(request)

    def load() -> tuple[list[GenerationView], int]:
        rows, total = generations.list_page(ctx, filters, paging.limit, paging.offset)
        return load_views(rows), total

    views, total = await read(request, load)
    return page(presenters.generations(views, presenters.image_presenter(request)), total, paging)


async def _generation(request: Request, generation_id: str) -> Generation:
    generations = services_of(request).generations
    return await read(request, generations.get, context_of(request), generation_id)


async def get_generation(request: Request, generation_id: str) -> HTTPResponse:
    """One generation with its output and reference images."""
    return ok(await generation_for(request, await _generation(request, generation_id)))


async def update_generation(request: Request, generation_id: str) -> HTTPResponse:
    """Change ``meta``/``flowId``; a new ``prompt`` or ``aspectRatio`` regenerates in place."""
    body = decode(request, UpdateGeneration)
    generation = await _generation(request, generation_id)
    updated = await services_of(request).generations.update(
        context_of(request),
        generation,
        prompt=body.prompt,
        aspect_ratio=body.aspect_ratio,
        flow_id=body.flow_id if body.given("flow_id") else ABSENT,
        meta=check_meta(body.meta or {}) if body.given("meta") else None,
    )
    return ok(await generation_for(request, updated))


async def regenerate_generation(request: Request, generation_id: str) -> HTTPResponse:
    """Run again with the stored parameters, in place (same image id and URL)."""
    generation = await _generation(request, generation_id)
    updated = await services_of(request).generations.regenerate(context_of(request), generation)
    return ok(await generation_for(request, updated))


async def delete_generation(request: Request, generation_id: str) -> HTTPResponse:
    """Delete the generation; its image goes too unless it has a project alias."""
    generation = await _generation(request, generation_id)
    await services_of(request).generations.delete(generation)
    return ok({"id": generation.id})
