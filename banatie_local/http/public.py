"""Serving a public image (API.md §6): bytes from memory, one raw query on a miss.

The CDN route (by id or alias) and the legacy route (by published name) both serve
through ``public_image``."""

from __future__ import annotations

from collections.abc import Callable

from sanic.request import Request
from sanic.response import HTTPResponse

from banatie_local.errors import NotFoundError
from banatie_local.http.auth import services_of
from banatie_local.http.prepared import cached_response, etag_matches, prepared


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
    request: Request, key: tuple[str, ...], missing: str, fetch: Fetch, *args: str
) -> HTTPResponse:
    """The bytes of a public image: from memory under ``key``, else found by
    ``fetch(org, project, *args, reader)`` in one read (404 ``missing`` when not)."""
    services = services_of(request)
    cache = services.image_cache
    max_age = services.settings.cdn.max_age
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
