"""The public image route (API.md §6), with sizes and formats (§12) and signatures
(§13)."""

from __future__ import annotations

from sanic.request import Request
from sanic.response import HTTPResponse

from banatie_local.http.auth import services_of
from banatie_local.http.public import public_image, public_variant, signed, variant_of


async def cdn_image(request: Request, org: str, project: str, ref: str) -> HTTPResponse:
    """Image bytes by id or project ``@alias``, at the size and format the query asks;
    ``If-None-Match`` answers 304."""
    verdict = await signed(request, org, project, "image")
    missing = f"image {ref} does not exist."
    want = variant_of(request)
    if want is not None:
        return await public_variant(request, verdict, (org, project, ref), want, missing)
    fetch = services_of(request).images.public_fetch
    return await public_image(request, verdict, (org, project, ref), missing, fetch, ref)
