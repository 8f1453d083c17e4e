"""Live URLs (API.md §5.1): the public ``/cdn/.../live/{scope}`` and the keyed
``/api/v1/live/generate``, both through ``LiveService``."""

from __future__ import annotations

from sanic.request import Request
from sanic.response import HTTPResponse

from banatie_local.http.auth import context_of, services_of
from banatie_local.http.clientip import client_ip
from banatie_local.http.prepared import cached_response, etag_matches, prepared
from banatie_local.services.live import LiveResult


def respond(request: Request, result: LiveResult, max_age: int) -> HTTPResponse:
    """The bytes with the §5.1 headers; 304 when ``If-None-Match`` matches."""
    entry = result.entry
    request.ctx.live = "JOINED" if result.joined else result.status  # for /metrics
    ready = prepared(entry, max_age)
    headers = {"X-Cache-Status": result.status}
    if result.status == "HIT":
        headers["X-Cache-Hit-Count"] = str(result.hit_count)
    elif result.generation_id:
        headers["X-Generation-Id"] = result.generation_id
    if result.rate is not None:
        headers.update(result.rate.headers())
    if etag_matches(request.headers.get("if-none-match"), ready.etag):
        return HTTPResponse(status=304, headers={**ready.headers, **headers})
    return cached_response(entry, ready, headers)


async def live_url(request: Request, org: str, project: str, scope: str) -> HTTPResponse:
    """Generate once, then serve from cache: ``?prompt=&aspectRatio=&autoEnhance=&template=``."""
    services = services_of(request)
    live = services.live
    # the hot path: a repeat query and a cached image cost two dictionary lookups
    known = live.remembered(org, project, scope, request.query_string)
    if known is None:
        known = await live.known_query(org, project, scope, request.query_string, request.args.get)
    result = live.memory_hit(known.key)
    if result is None:
        client = client_ip(
            request.ip,
            request.headers.get("x-forwarded-for"),
            services.settings.server.trusted_networks,
        )
        result = await live.resolve(
            (org, project), known.project_id, scope, known.params, known.key, client
        )
    return respond(request, result, services.settings.cdn.max_age)


async def live_generate(request: Request) -> HTTPResponse:
    """The live pipeline for a project key (``?scope=``, default ``default``); counted by
    the key's rate limit instead of the per-IP limit."""
    services = services_of(request)
    live = services.live
    ctx = context_of(request)
    slugs = (ctx.organization.slug, ctx.project.slug)
    scope = request.args.get("scope") or "default"
    known = await live.known_query(*slugs, scope, request.query_string, request.args.get)
    result = live.memory_hit(known.key)
    if result is None:
        result = await live.resolve(
            slugs, known.project_id, scope, known.params, known.key, None, ctx
        )
    return respond(request, result, services.settings.cdn.max_age)
