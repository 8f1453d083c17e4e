"""Serving a public image (API.md §6): bytes from memory, one raw query on a miss.

The CDN route (by id or alias) and the legacy route (by published name) both serve
through ``public_image``; a size or format asked in the query (API.md §12) through
``public_variant``, which the live URL uses too."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from cachetools import LRUCache
from sanic.request import Request
from sanic.response import HTTPResponse

from banatie_local.errors import NotFoundError
from banatie_local.http.auth import services_of
from banatie_local.http.prepared import cached_response, etag_matches, prepared
from banatie_local.services.imagecache import CachedImage
from banatie_local.services.images import public_where
from banatie_local.services.signing import UNSIGNED, Verdict
from banatie_local.services.variant_store import NotModified
from banatie_local.services.variants import VariantRequest, parse_variant


async def signed(request: Request, org: str, project: str, kind: str) -> Verdict:
    """Whether ``request`` carries a valid signature of ``org/project`` (API.md §13),
    and until when; 403 when the project requires one for ``kind`` (live or image) and
    it is missing, or when a presented one does not match or has expired. Runs before
    any other work."""
    signing = services_of(request).signing
    query = request.query_string
    if signing.quick_pass(org, project, query, kind):
        return UNSIGNED
    return await signing.check(org, project, request.path, query, kind)


_VARIANTS: LRUCache[str, VariantRequest | None] = LRUCache(maxsize=10_000)


def variant_of(request: Request) -> VariantRequest | None:
    """The variant an image URL's query asks for (None: the stored image), read once
    per distinct query string; a bad parameter is a 400 naming it."""
    query = request.query_string
    if not query:
        return None
    if query in _VARIANTS:
        return _VARIANTS[query]
    want = parse_variant(request.args.get)
    _VARIANTS[query] = want
    return want


def not_modified(etag: str, image_id: str, max_age: int) -> HTTPResponse:
    """A 304 of ``/img/``: the image's ETag, Cache-Control and id."""
    return HTTPResponse(
        status=304,
        headers={
            "ETag": etag,
            "Cache-Control": f"public, max-age={max_age}",
            "X-Image-Id": image_id,
        },
    )


Fetch = Callable[..., tuple[tuple[str, str, str, str] | None, bytes | None]]


async def public_image(
    request: Request,
    verdict: Verdict,
    key: tuple[str, ...],
    missing: str,
    fetch: Fetch,
    *args: str,
) -> HTTPResponse:
    """The bytes of a public image: from memory under ``key``, else found by
    ``fetch(org, project, *args, reader)`` in one read (404 ``missing`` when not)."""
    services = services_of(request)
    cache = services.image_cache
    max_age = verdict.max_age(services.settings.cdn.max_age)
    entry = cache.get(key)
    if entry is None:
        epoch = cache.epoch
        found, data = await services.db.read(
            fetch, key[0], key[1], *args, services.storage.fast_reader()
        )
        if found is None:
            raise NotFoundError(missing, "IMAGE_NOT_FOUND")
        image_id, mime, file_hash, storage_key = found
        if etag_matches(request.headers.get("if-none-match"), f'"{file_hash}"'):
            return not_modified(f'"{file_hash}"', image_id, max_age)
        entry = await services.images.public_bytes(image_id, mime, file_hash, storage_key, data)
        cache.put(key, entry, epoch)
    ready = prepared(entry, max_age)
    if etag_matches(request.headers.get("if-none-match"), ready.etag):
        return not_modified(ready.etag, entry.image_id, max_age)
    return cached_response(entry, ready)


async def variant_entry(
    request: Request,
    want: VariantRequest,
    key: Hashable,
    where: tuple[str, tuple[Any, ...]] | None,
    slugs: tuple[str, str],
    missing: str,
    source: CachedImage | None = None,
) -> CachedImage | NotModified:
    """The variant ``want`` (resolved) of the image ``where`` selects: from memory under
    ``key``, else stored or made now (from ``source``'s bytes when given)."""
    services = services_of(request)
    cache = services.image_cache
    entry = cache.get(key)
    if entry is not None:
        return entry
    if where is None:
        raise NotFoundError(missing, "IMAGE_NOT_FOUND")
    epoch = cache.epoch
    store = services.variants
    found = await services.db.read(
        store.find, where[0], where[1], want, services.storage.fast_reader()
    )
    if found is None:
        raise NotFoundError(missing, "IMAGE_NOT_FOUND")
    header = request.headers.get("if-none-match")
    made = await store.serve(
        found,
        slugs,
        lambda etag: etag_matches(header, etag),
        source.data if source is not None else None,
        source.scope if source is not None else None,
        vary=want.auto,
    )
    if isinstance(made, CachedImage):
        cache.put(key, made, epoch)
    return made


async def public_variant(
    request: Request,
    verdict: Verdict,
    ref: tuple[str, str, str],
    want: VariantRequest,
    missing: str,
) -> HTTPResponse:
    """``/cdn/.../img/{ref}`` at the size and format the query asks."""
    org, project, name = ref
    max_age = verdict.max_age(services_of(request).settings.cdn.max_age)
    resolved = want.resolve(request.headers.get("accept"))
    key = ("var", org, project, name, resolved.memo)
    made = await variant_entry(
        request, resolved, key, public_where(org, project, name), (org, project), missing
    )
    if isinstance(made, NotModified):
        return not_modified(made.etag, made.image_id, max_age)
    ready = prepared(made, max_age)
    if etag_matches(request.headers.get("if-none-match"), ready.etag):
        return HTTPResponse(status=304, headers=ready.headers)
    return cached_response(made, ready)
