"""Flows of the key's project (API.md §4)."""

from __future__ import annotations

from sanic.request import Request
from sanic.response import HTTPResponse

from banatie_local.db.models import Flow
from banatie_local.http import presenters
from banatie_local.http.auth import context_of, read, services_of, write
from banatie_local.http.presenters import generation_for
from banatie_local.http.responses import ok, page
from banatie_local.http.shapes import CreateFlow, SetFlowAliases, decode
from banatie_local.http.validation import pagination
from banatie_local.services.generation_queries import GenerationView, load_views
from banatie_local.services.generations import GenerationFilters
from banatie_local.services.images import ImageFilters
from banatie_local.services.validation import check_meta


async def _flow(request: Request, flow_id: str) -> Flow:
    flows = services_of(request).flows
    return await read(request, flows.get, context_of(request).project_id, flow_id)


async def _shown(request: Request, flow: Flow) -> HTTPResponse:
    return ok(presenters.flow(await read(request, services_of(request).flows.view, flow)))


async def create_flow(request: Request) -> HTTPResponse:
    """Create a flow, optionally with ``meta`` and ``aliases``."""
    body = decode(request, CreateFlow, required=False)
    view = await write(
        request,
        services_of(request).flows.create,
        context_of(request).project_id,
        check_meta(body.meta) if body.meta is not None else None,
        body.aliases,
    )
    return ok(presenters.flow(view), 201)


async def list_flows(request: Request) -> HTTPResponse:
    """Flows newest first, with their alias maps and member counts."""
    paging = pagination(request)
    views, total = await read(
        request,
        services_of(request).flows.list_page,
        context_of(request).project_id,
        paging.limit,
        paging.offset,
    )
    return page([presenters.flow(view) for view in views], total, paging)


async def get_flow(request: Request, flow_id: str) -> HTTPResponse:
    """One flow; 404 for a flow id that was announced but has no row yet."""
    return await _shown(request, await _flow(request, flow_id))


async def flow_generations(request: Request, flow_id: str) -> HTTPResponse:
    """The flow's generations, newest first."""
    flow = await _flow(request, flow_id)
    paging = pagination(request)
    generations, ctx = services_of(request).generations, context_of(request)

    def load() -> tuple[list[GenerationView], int]:
        filters = GenerationFilters(flow_id=flow.id)
        rows, total = generations.list_page(ctx, filters, paging.limit, paging.offset)
        return load_views(rows), total

    views, total = await read(request, load)
    return page(presenters.generations(views, presenters.image_presenter(request)), total, paging)


async def flow_images(request: Request, flow_id: str) -> HTTPResponse:
    """The flow's images, newest first."""
    flow = await _flow(request, flow_id)
    paging = pagination(request)
    rows, total = await read(
        request,
        services_of(request).images.list_page,
        context_of(request),
        ImageFilters(flow_id=flow.id),
        paging.limit,
        paging.offset,
    )
    present = presenters.image_presenter(request)
    return page([present(image) for image in rows], total, paging)


async def set_flow_aliases(request: Request, flow_id: str) -> HTTPResponse:
    """Merge ``{"aliases": {"@name": "<imageId>"}}`` into the flow's alias map."""
    flow = await _flow(request, flow_id)
    aliases = decode(request, SetFlowAliases).aliases
    await write(request, services_of(request).flows.set_aliases, flow, aliases)
    return await _shown(request, flow)


async def delete_flow_alias(request: Request, flow_id: str, alias: str) -> HTTPResponse:
    """Remove one alias from the flow's map."""
    flow = await _flow(request, flow_id)
    await write(request, services_of(request).flows.remove_alias, flow, alias)
    return await _shown(request, flow)


async def regenerate_flow(request: Request, flow_id: str) -> HTTPResponse:
    """Regenerate the flow's newest generation, in place."""
    services = services_of(request)
    flow = await _flow(request, flow_id)
    generation = await read(request, services.flows.newest_generation, flow)
    updated = await services.generations.regenerate(context_of(request), generation)
    return ok(await generation_for(request, updated))


async def delete_flow(request: Request, flow_id: str) -> HTTPResponse:
    """Delete the flow, its generations and its unaliased images."""
    flow = await _flow(request, flow_id)
    await services_of(request).flows.delete(flow)
    return ok({"id": flow.id})
