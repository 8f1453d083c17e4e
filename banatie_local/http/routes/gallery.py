"""The web gallery of API.md §15: ``GET /`` and its own script, style sheet and icon.

The files are packaged under ``http/static/gallery/`` and read once, when this module
is imported, so a request never touches the disk. The page speaks only the public
API with the project key the person pastes in; nothing here knows any key.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import Final

from sanic.request import Request
from sanic.response import HTTPResponse

from banatie_local.errors import NotFoundError

# No inline script or style anywhere: everything comes from the files below.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_COMMON: Final = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
_TYPES: Final = {
    "gallery.js": "text/javascript; charset=utf-8",
    "gallery.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
_IMMUTABLE: Final = "public, max-age=31536000, immutable"


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    version: str  # the start of the body's SHA-256: the page asks for ``?v=<version>``


def _load() -> tuple[bytes, dict[str, Asset]]:
    folder = resources.files("banatie_local.http") / "static" / "gallery"
    assets: dict[str, Asset] = {}
    for name, content_type in _TYPES.items():
        body = (folder / name).read_bytes()
        assets[name] = Asset(body, content_type, hashlib.sha256(body).hexdigest()[:12])
    page = (folder / "index.html").read_bytes().decode("utf-8")

    def versioned(match: re.Match[str]) -> str:
        name = match.group(1)
        return f"/gallery/{name}?v={assets[name].version}"

    # each asset URL in the page carries its content's version, so it can be cached
    page = re.sub(r"/gallery/([\w.-]+)(?=\")", versioned, page)
    return page.encode("utf-8"), assets


_PAGE, _ASSETS = _load()


async def gallery_page(request: Request) -> HTTPResponse:
    """The web gallery: browse, generate and manage this appliance's images."""
    headers = {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "Cache-Control": "no-cache",
        **_COMMON,
    }
    return HTTPResponse(_PAGE, content_type="text/html; charset=utf-8", headers=headers)


async def gallery_asset(request: Request, asset: str) -> HTTPResponse:
    """The gallery page's own script, style sheet and icon."""
    found = _ASSETS.get(asset)
    if found is None:
        raise NotFoundError(f"no gallery asset {asset}.")
    fresh = request.args.get("v") == found.version
    headers = {"Cache-Control": _IMMUTABLE if fresh else "no-cache", **_COMMON}
    return HTTPResponse(found.body, content_type=found.content_type, headers=headers)
