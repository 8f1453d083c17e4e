"""Live scopes of the key's project (API.md §5.2)."""

from __future__ import annotations

from sanic.request import Request
from sanic.response import HTTPResponse

from banatie_local.db.models import Image, LiveScope
from banatie_local.http import presenters
from banatie_local.http.auth import context_of, read, services_of, write
from banatie_local.http.responses import dumps, ok, page, wire
from banatie_local.http.shapes import CreateScope, RegenerateScope, UpdateScope, decode
from banatie_local.http.shapes.responses import ScopeRegenerated
from banatie_local.http.validation import pagination
from banatie_local.services.scopes import ScopeView
from banatie_local.services.validation import check_meta


async def _scope(request: Request, slug: str) -> LiveScope:
    scopes = services_of(request).scopes
    return await read(request, scopes.get, context_of(request).project_id, slug)


def _meta(body: CreateScope | UpdateScope) -> dict[str, object] | None:
    return check_meta(body.meta) if body.meta is not None else None


async def create_scope(request: Request) -> HTTPResponse:
    """Create a scope: ``{slug, allowNewGenerations?, newGenerationsLimit?, meta?}``."""
    body = decode(request, CreateScope)
    services = services_of(request)
    allow, limit = body.allow_new_generations, body.new_generations_limit
    scopes, project_id = services.scopes, context_of(request).project_id
    slug = body.slug
    meta = _meta(body)
    view = await write(
        request,
        lambda: scopes.view(
            scopes.create(
                project_id, slug, True if allow is None else allow,
                30 if limit is None else limit, meta,
            )
        ),
    )  # fmt: skip
    return ok(presenters.scope(view), 201)


async def list_scopes(request: Request) -> HTTPResponse:
    """Scopes newest first, with ``currentGenerations`` and ``lastGeneratedAt``."""
    paging = pagination(request)
    views, total = await read(
        request,
        services_of(request).scopes.list_page,
        context_of(request).project_id,
        paging.limit,
        paging.offset,
    )
    return page([presenters.scope(view) for view in views], total, paging)


async def get_scope(request: Request, slug: str) -> HTTPResponse:
    """The scope and its images, newest first (``limit``/``offset`` page the images)."""
    scopes = services_of(request).scopes
    scope = await _scope(request, slug)
    paging = pagination(request)

    def load() -> tuple[list[Image], int, ScopeView]:
        images, total = scopes.images(scope, paging.limit, paging.offset)
        return images, total, scopes.view(scope)

    images, total, view = await read(request, load)
    present = presenters.image_presenter(request)
    data = presenters.scope_with_images(view, [present(i) for i in images])
    body = {
        "success": True,
        "data": wire(data),
        "pagination": {
            "total": total,
            "limit": paging.limit,
            "offset": paging.offset,
            "hasMore": paging.offset + len(images) < total,
        },
    }
    return HTTPResponse(dumps(body), content_type="application/json")


async def update_scope(request: Request, slug: str) -> HTTPResponse:
    """Change ``allowNewGenerations``, ``newGenerationsLimit`` (≥ 0) and ``meta``."""
    body = decode(request, UpdateScope)
    scopes = services_of(request).scopes
    scope = await _scope(request, slug)
    allow, limit = body.allow_new_generations, body.new_generations_limit
    meta = _meta(body)
    view = await write(request, lambda: scopes.view(scopes.update(scope, allow, limit, meta)))
    return ok(presenters.scope(view))


async def regenerate_scope(request: Request, slug: str) -> HTTPResponse:
    """Regenerate ``{imageId}`` or every image of the scope, in place."""
    image_id = decode(request, RegenerateScope, required=False).image_id
    services = services_of(request)
    scope = await _scope(request, slug)
    ctx = context_of(request)
    done, image_ids = await services.live.regenerate(ctx, scope, image_id)
    images = await read(request, services.images.get_many, ctx, image_ids)
    present = presenters.image_presenter(request)
    regenerated = ScopeRegenerated.model_construct(
        regenerated=done, images=[present(image) for image in images]
    )
    return ok(regenerated)


async def delete_scope(request: Request, slug: str) -> HTTPResponse:
    """Delete the scope, its cache entries, and its images except aliased ones."""
    scope = await _scope(request, slug)
    await services_of(request).live.delete_scope(scope)
    return ok({"id": scope.id})
