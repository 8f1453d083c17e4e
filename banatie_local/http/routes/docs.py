"""The API describing itself: ``/api/v1/openapi.json`` and an offline ``/docs`` page."""

from __future__ import annotations

import gzip
from functools import cache
from importlib import resources

from sanic.request import Request
from sanic.response import HTTPResponse

from banatie_local.errors import NotFoundError
from banatie_local.http.responses import dumps

_ASSETS = {
    "swagger-ui-bundle.js": "application/javascript",
    "swagger-ui.css": "text/css",
}


@cache
def _static(name: str) -> bytes:
    """A packaged file; the vendored Swagger UI assets are stored gzip-compressed."""
    folder = resources.files("banatie_local.http") / "static"
    packed = folder / f"{name}.gz"
    if packed.is_file():
        return gzip.decompress(packed.read_bytes())
    return (folder / name).read_bytes()


async def openapi_document(request: Request) -> HTTPResponse:
    """The OpenAPI 3.1 document of every route of this API."""
    body: str = request.app.ctx.openapi_text
    return HTTPResponse(body, content_type="application/json")


async def docs_page(request: Request) -> HTTPResponse:
    """Interactive API documentation, served entirely by this appliance."""
    return HTTPResponse(_static("docs.html"), content_type="text/html; charset=utf-8")


async def docs_asset(request: Request, asset: str) -> HTTPResponse:
    """The documentation page's own script and style sheet."""
    if asset not in _ASSETS:
        raise NotFoundError(f"no documentation asset {asset}.")
    return HTTPResponse(
        _static(asset),
        content_type=_ASSETS[asset],
        headers={"Cache-Control": "public, max-age=86400"},
    )


def document_text(document: dict[str, object]) -> str:
    return dumps(document)
