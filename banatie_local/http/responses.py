"""The JSON envelopes of API.md §0."""

from __future__ import annotations

import json
from typing import Any, Final

from sanic.response import HTTPResponse

from banatie_local.http.shapes.base import Shape
from banatie_local.http.validation import Page


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _json(body: Any, status: int, headers: dict[str, str] | None = None) -> HTTPResponse:
    return HTTPResponse(
        dumps(body), status=status, headers=headers, content_type="application/json"
    )


def wire(value: Any) -> Any:
    """Shapes (alone or in a list) as JSON-ready data with the wire's field names;
    anything else as it is."""
    if isinstance(value, Shape):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, list) and value and isinstance(value[0], Shape):
        return [item.model_dump(mode="json", by_alias=True) for item in value]
    return value


def ok(data: Any, status: int = 200) -> HTTPResponse:
    """``{"success": true, "data": ...}``"""
    return _json({"success": True, "data": wire(data)}, status)


def page(items: list[Any], total: int, paging: Page) -> HTTPResponse:
    """A list with its pagination block."""
    return _json(
        {
            "success": True,
            "data": wire(items),
            "pagination": {
                "total": total,
                "limit": paging.limit,
                "offset": paging.offset,
                "hasMore": paging.offset + len(items) < total,
            },
        },
        200,
    )


def error(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    style: str = "v1",
) -> HTTPResponse:
    """``{"success": false, "error": {"code", "message", "details"?}}``; a legacy
    route's error also has the flat ``message`` of API.md §10, and the OpenAI door's
    is OpenAI's ``{"error": {message, type, param, code}}`` (§11)."""
    if style == "openai":
        return _json(openai_error(status, code, message, details), status, headers)
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    if style == "legacy":
        return _json({"success": False, "message": message, "error": body}, status, headers)
    return _json({"success": False, "error": body}, status, headers)


_OPENAI_TYPES: Final = {
    401: "authentication_error", 403: "permission_error", 429: "rate_limit_error",
}  # fmt: skip
# our field names that OpenAI names otherwise (an upload's file is its image)
_OPENAI_PARAMS: Final = {"file": "image", "files": "image", "body": None}


def openai_error(
    status: int, code: str, message: str, details: dict[str, Any] | None
) -> dict[str, Any]:
    """The error body OpenAI's SDKs read: the type by status, the field as ``param``."""
    kind = _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    field = (details or {}).get("field")
    param = _OPENAI_PARAMS.get(field, field) if isinstance(field, str) else None
    if param is None and status in (413, 415):  # only a file is too large or not an image
        param = "image"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def style_of(path: str) -> str:
    """Which error envelope ``path`` answers in: ``openai``, ``legacy`` or ``v1``."""
    if path.startswith("/v1/") or path == "/v1":
        return "openai"
    return "legacy" if is_legacy(path) else "v1"


# The pre-v1 routes (API.md §10) answer in their own envelopes.
_LEGACY_POSTS: Final = frozenset(
    {"/api/generate", "/api/text-to-image", "/api/upload", "/api/enhance"}
)


def is_legacy(path: str) -> bool:
    """Whether ``path`` is one of the pre-v1 routes."""
    return path in _LEGACY_POSTS or path.startswith("/api/images/")


def legacy_ok(message: str, data: Any, status: int = 200) -> HTTPResponse:
    """``{"success": true, "message": "<sentence>", "data": {...}}``"""
    return _json({"success": True, "message": message, "data": wire(data)}, status)


def plain(body: dict[str, Any], status: int = 200) -> HTTPResponse:
    """A bare JSON object, for probes that expect one (``/health``)."""
    return _json(body, status)
