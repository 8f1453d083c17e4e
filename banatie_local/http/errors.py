"""The one place every error becomes the envelope of API.md §0.1."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from sanic import Sanic
from sanic.exceptions import (
    BadRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
    SanicException,
)
from sanic.request import Request
from sanic.response import HTTPResponse

from banatie_local.errors import ApiError
from banatie_local.http import error_image
from banatie_local.http.auth import openai_rate_headers
from banatie_local.http.responses import error, style_of
from banatie_local.storage import StorageError

log = logging.getLogger("banatie_local.http")

# Sanic's own exceptions (raised before or around our handlers), by class.
_SANIC_CODES: list[tuple[type[SanicException], str]] = [
    (NotFound, "NOT_FOUND"),
    (MethodNotAllowed, "METHOD_NOT_ALLOWED"),
    (PayloadTooLarge, "FILE_TOO_LARGE"),
    (RequestTimeout, "REQUEST_TIMEOUT"),
    (BadRequest, "VALIDATION_ERROR"),
]


def abandon_body(request: Request) -> None:
    """After an error, close the connection instead of reading the rest of a body the
    handler never read: a client trickling it must not hold the connection."""
    stream: Any = request.stream  # sanic.http.Http at run time
    if stream is not None and getattr(stream, "request_body", None):
        stream.keep_alive = False
        stream.request_body = None


def render(request: Request, exc: Exception) -> HTTPResponse:
    """Turn any exception into the error envelope; a 500 never shows its trace."""
    abandon_body(request)
    style = style_of(request.path)
    if isinstance(exc, ApiError):
        headers = exc.headers
        if style == "openai":  # OpenAI's SDKs read their own header names
            known = headers or getattr(request.ctx, "rate_headers", None) or {}
            headers = {**headers, **openai_rate_headers(known, time.time())}
        return error(exc.status, exc.code, exc.message, exc.details, headers, style)
    if isinstance(exc, StorageError):
        log.error("storage failure on %s %s: %s", request.method, request.path, exc)
        metrics = request.app.ctx.services.metrics
        if metrics is not None:
            metrics.storage_errors.inc()
        message = "the storage backend is not reachable now."
        return error(503, "STORAGE_UNAVAILABLE", message, style=style)
    if isinstance(exc, SanicException) and exc.status_code < 500:
        return _sanic_error(request, exc, style)
    log.error("unhandled error on %s %s", request.method, request.path, exc_info=exc)
    message = "an internal error occurred; it has been logged."
    return error(500, "INTERNAL_ERROR", message, style=style)


def _sanic_error(request: Request, exc: SanicException, style: str) -> HTTPResponse:
    status = exc.status_code
    code = next((c for cls, c in _SANIC_CODES if isinstance(exc, cls)), "VALIDATION_ERROR")
    headers: dict[str, str] = {}
    if isinstance(exc, NotFound):
        message = f"no route matches {request.method} {request.path}."
    elif isinstance(exc, MethodNotAllowed):
        message = f"{request.method} is not allowed on {request.path}."
        if request.path.startswith("/api/v1/images/") and request.method == "POST":
            message += " To generate an image, POST /api/v1/generations."
        allowed = getattr(exc, "allowed_methods", None) or _allowed_methods(request)
        if allowed:
            headers["Allow"] = ", ".join(sorted(allowed))
    elif isinstance(exc, PayloadTooLarge) and "header" in str(exc).lower():
        # Sanic reads at most REQUEST_MAX_HEADER_SIZE of request line and headers
        status, code = 431, "HEADERS_TOO_LARGE"
        size = request.app.config.REQUEST_MAX_HEADER_SIZE // 1024
        message = (
            f"the URL and headers are larger than this server reads ({size} KB); "
            "a live URL's prompt outside ASCII takes up to 9 bytes a character in the URL."
        )
    elif isinstance(exc, PayloadTooLarge):
        limit = request.app.ctx.services.settings.server.max_upload_mb
        message = f"the request body is larger than this server accepts (files up to {limit:g} MB)."
    else:
        message = str(exc) or "the request could not be understood."
    if status not in (400, 404, 405, 408, 413, 431):
        code = code if code != "VALIDATION_ERROR" else f"HTTP_{status}"
    return error(status, code, message, headers=headers, style=style)


def _allowed_methods(request: Request) -> list[str]:
    """The methods a path answers. Sanic names them only for static paths, so for a
    path with parameters ask the router once per method (this runs only on a 405)."""
    allowed = []
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        try:
            request.app.router.get(request.path, method, None)
        except SanicException:
            continue
        allowed.append(method)
    return allowed


def install(app: Sanic[Any, Any]) -> None:
    """Route every exception through ``render``."""

    @app.exception(Exception)
    async def _handle(request: Request, exc: Exception) -> HTTPResponse:
        response = render(request, exc)
        if (
            response.status in error_image.STATUSES
            and _is_live_url(request.path)
            and error_image.prefers_image(request.headers.get("accept"))
        ):
            return await _as_picture(request, response, exc)
        return response


def _is_live_url(path: str) -> bool:
    parts = path.split("/")
    return len(parts) == 6 and parts[1] == "cdn" and parts[4] == "live"


async def _as_picture(request: Request, response: HTTPResponse, exc: Exception) -> HTTPResponse:
    """A refused live URL for an ``<img>``: the same status and headers, a PNG body
    that says what happened (``http/error_image.py``)."""
    message = exc.message if isinstance(exc, ApiError) else "the image could not be made."
    size = error_image.size_from(request.args.get("w"), request.args.get("h"))
    retry = response.headers.get("retry-after")
    png = await asyncio.to_thread(error_image.error_png, response.status, message, retry, size)
    headers = {
        name: value
        for name, value in response.headers.items()
        if name.lower() not in ("content-type", "content-length")
    }
    headers["Cache-Control"] = "no-store"
    code = exc.code if isinstance(exc, ApiError) else "INTERNAL_ERROR"
    headers["X-Error-Code"] = code
    return HTTPResponse(png, status=response.status, headers=headers, content_type="image/png")
