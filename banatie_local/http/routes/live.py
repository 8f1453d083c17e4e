"""Live URLs (API.md §5.1): the public ``/cdn/.../live/{scope}`` and the keyed
``/api/v1/live/generate``, both through ``LiveService``."""

from __future__ import annotations

from sanic.request import Request
from sanic.response import HTTPResponse

from banatie_local.http.auth import context_of, services_of
from banatie_local.http.clientip import limited_client
from banatie_local.http.prepared import cached_response, etag_matches, hit_headers, prepared
from banatie_local.http.public import not_modified, variant_entry
from banatie_local.services.imagecache import CachedImage
from banatie_local.services.live import KnownQuery, LiveResult
from banatie_local.services.signing import UNSIGNED
from banatie_local.services.variant_store import NotModified


def respond(
    request: Request, result: LiveResult, max_age: int, entry: CachedImage | None = None
) -> HTTPResponse:
    """The bytes with the §5.1 headers (of ``entry``, a variant, when given); 304 when
    ``If-None-Match`` matches."""
    entry = entry or result.entry
    request.ctx.live = "JOINED" if result.joined else result.status  # for /metrics
    ready = prepared(entry, max_age)
    if (
        result.status == "HIT" and result.rate is None and not request.headers.get("if-none-match")
    ):  # the hot path: the two per-request headers already encoded
        return cached_response(entry, ready, None, hit_headers(result.hit_count))
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
    """Generate once, then serve from cache: ``?prompt=&aspectRatio=&autoEnhance=&template=``,
    at any size and format (``w``, ``h``, ``fit``, ``format``, ``q``)."""
    services = services_of(request)
    live = services.live
    query = request.query_string
    # a required or presented signature is checked before anything else
    signing = services.signing
    verdict = UNSIGNED
    if not signing.quick_pass(org, project, query, "live"):  # inline: no coroutine on a HIT
        verdict = await signing.check(org, project, request.path, query, "live")
    # the hot path: a repeat query and a cached image cost two dictionary lookups
    known = live.remembered(org, project, scope, query)
    if known is None:
        known = await live.known_query(org, project, scope, query, request.args.get)
    result = live.memory_hit(known.key)
    if result is None:
        # a signed URL's signer authorised the spend; the workstation's own browser
        # is not a stranger (scope limits still apply to both)
        client = None if verdict.signed else limited_client(request, services.settings)
        result = await live.resolve(
            (org, project), known.project_id, scope, known.params, known.key, client
        )
    max_age = verdict.max_age(services.settings.cdn.max_age)
    if known.variant is not None:
        return await _live_variant(request, (org, project), known, result, max_age)
    return respond(request, result, max_age)


async def _live_variant(
    request: Request,
    slugs: tuple[str, str],
    known: KnownQuery,
    result: LiveResult,
    max_age: int,
) -> HTTPResponse:
    """The live image at the size and format asked: one generation serves them all."""
    assert known.variant is not None
    want = known.variant.resolve(request.headers.get("accept"))
    image_id = result.entry.image_id
    key = ("var", image_id, want.memo)
    made: CachedImage | NotModified | None = services_of(request).image_cache.get(key)
    if made is None:  # else the hot path: one more lookup
        missing = f"image {image_id} does not exist."
        where = ("WHERE i.id = ?", (image_id,))
        made = await variant_entry(request, want, key, where, slugs, missing, result.entry)
    if isinstance(made, NotModified):
        return not_modified(made.etag, made.image_id, max_age)
    return respond(request, result, max_age, made)


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
    max_age = services.settings.cdn.max_age
    if known.variant is not None:
        return await _live_variant(request, slugs, known, result, max_age)
    return respond(request, result, max_age)
