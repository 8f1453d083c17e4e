"""The public image route (API.md §6)."""

from __future__ import annotations

from sanic.request import Request
from sanic.response import HTTPResponse

from banatie_local.http.auth import services_of
from banatie_local.http.public import public_image


async def cdn_image(request: Request, org: str, project: str, ref: str) -> HTTPResponse:
    """Image bytes by id or project ``@alias``; ``If-None-Match`` answers 304."""
    images = services_of(request).images
    missing = f"image {ref} does not exist."
    return await public_image(request, (org, project, ref), missing, images.public_fetch, ref)
