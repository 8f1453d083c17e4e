"""Live URLs (API.md §5.1): the public ``/cdn/.../live/{scope}`` and the keyed
``/api/v1/live/generate``, both through ``LiveService``."""

from __future__ import annotations

from sanic.request import Request
from sanic.response import HTTPResponse

from banatie_local.http.auth import context_of, services_of
from banatie_local.http.routes.cdn import etag_matches
from banatie_local.services.live import LiveResult, cache_key, parse_live_params
from banatie_local.services.scopes import check_scope_slug


def respond(request: Request, result: LiveResult) -> HTTPResponse:
    """The bytes with the §5.1 headers; 304 when ``If-None-Match`` matches."""
    entry = result.entry
    headers = {**entry.headers, "X-Cache-Status": result.status}
    if result.status == "HIT":
        headers["X-Cache-Hit-Count"] = str(result.hit_count)
    elif result.generation_id:
        headers["X-Generation-Id"] = result.generation_id
    if result.rate is not None:
        headers.update(result.rate.headers())
    if etag_matches(request.headers.get("if-none-match"), entry.etag):
        return HTTPResponse(status=304, headers=headers)
    return HTTPResponse(entry.data, headers=headers, content_type=entry.content_type)


async def live_url(request: Request, org: str, project: str, scope: str) -> HTTPResponse:
    """Generate once, then serve from cache: ``?prompt=&aspectRatio=&autoEnhance=&template=``."""
    live = services_of(request).live
    params = parse_live_params(request.args.get)
    check_scope_slug(scope, "scope")
    project_id = live.project_id(org, project)
    key = cache_key(project_id, scope, params)
    result = live.memory_hit(key)
    if result is None:
        client = live.client_ip(request.ip, request.headers.get("x-forwarded-for"))
        result = await live.resolve((org, project), project_id, scope, params, key, client)
    return respond(request, result)


async def live_generate(request: Request) -> HTTPResponse:
    """The live pipeline for a project key (``?scope=``, default ``default``); counted by
    the key's rate limit instead of the per-IP limit."""
    live = services_of(request).live
    params = parse_live_params(request.args.get)
    scope = check_scope_slug(request.args.get("scope") or "default", "scope")
    ctx = context_of(request)
    key = cache_key(ctx.project_id, scope, params)
    result = live.memory_hit(key)
    if result is None:
        slugs = (ctx.organization.slug, ctx.project.slug)
        result = await live.resolve(slugs, ctx.project_id, scope, params, key, None, ctx)
    return respond(request, result)
