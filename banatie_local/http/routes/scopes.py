"""Live scopes of the key's project (API.md §5.2)."""

from __future__ import annotations

from sanic.request import Request
from sanic.response import HTTPResponse

from banatie_local.db.models import LiveScope
from banatie_local.http.auth import context_of, services_of
from banatie_local.http.responses import dumps, ok, page
from banatie_local.http.routes.images import present
from banatie_local.http.validation import Body, pagination
from banatie_local.services.scopes import MAX_SCOPE_LIMIT, scope_to_dict
from banatie_local.services.validation import check_meta


def _scope(request: Request, slug: str) -> LiveScope:
    return services_of(request).scopes.get(context_of(request).project_id, slug)


def _meta(body: Body) -> dict[str, object] | None:
    meta = body.mapping("meta")
    return check_meta(meta) if meta is not None else None


async def create_scope(request: Request) -> HTTPResponse:
    """Create a scope: ``{slug, allowNewGenerations?, newGenerationsLimit?, meta?}``."""
    body = Body.of(request, required=True)
    services = services_of(request)
    allow = body.boolean("allowNewGenerations")
    limit = body.integer("newGenerationsLimit", minimum=0, maximum=MAX_SCOPE_LIMIT)
    scope = services.scopes.create(
        context_of(request).project_id,
        body.text("slug", required=True, max_length=1000) or "",
        True if allow is None else allow,
        30 if limit is None else limit,
        _meta(body),
    )
    return ok(scope_to_dict(services.scopes.view(scope)), 201)


async def list_scopes(request: Request) -> HTTPResponse:
    """Scopes newest first, with ``currentGenerations`` and ``lastGeneratedAt``."""
    paging = pagination(request)
    views, total = services_of(request).scopes.list_page(
        context_of(request).project_id, paging.limit, paging.offset
    )
    return page([scope_to_dict(view) for view in views], total, paging)


async def get_scope(request: Request, slug: str) -> HTTPResponse:
    """The scope and its images, newest first (``limit``/``offset`` page the images)."""
    services = services_of(request)
    scope = _scope(request, slug)
    paging = pagination(request)
    images, total = services.scopes.images(scope, paging.limit, paging.offset)
    data = {
        **scope_to_dict(services.scopes.view(scope)),
        "images": [present(request, i) for i in images],
    }
    body = {
        "success": True,
        "data": data,
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
    body = Body.of(request, required=True)
    services = services_of(request)
    scope = services.scopes.update(
        _scope(request, slug),
        allow_new_generations=body.boolean("allowNewGenerations"),
        new_generations_limit=body.integer(
            "newGenerationsLimit", minimum=0, maximum=MAX_SCOPE_LIMIT
        ),
        meta=_meta(body),
    )
    return ok(scope_to_dict(services.scopes.view(scope)))


async def regenerate_scope(request: Request, slug: str) -> HTTPResponse:
    """Regenerate ``{imageId}`` or every image of the scope, in place."""
    body = Body.of(request)
    services = services_of(request)
    scope = _scope(request, slug)
    image_id = body.text("imageId", max_length=100)
    done, image_ids = await services.live.regenerate(context_of(request), scope, image_id)
    images = [services.images.get(context_of(request), image) for image in image_ids]
    return ok({"regenerated": done, "images": [present(request, image) for image in images]})


async def delete_scope(request: Request, slug: str) -> HTTPResponse:
    """Delete the scope, its cache entries, and its images except aliased ones."""
    scope = _scope(request, slug)
    await services_of(request).live.delete_scope(scope)
    return ok({"id": scope.id})
