"""The JSON envelopes of API.md §0."""

from __future__ import annotations

import json
from typing import Any

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
) -> HTTPResponse:
    """``{"success": false, "error": {"code", "message", "details"?}}``"""
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return _json({"success": False, "error": body}, status, headers)


def plain(body: dict[str, Any], status: int = 200) -> HTTPResponse:
    """A bare JSON object, for probes that expect one (``/health``)."""
    return _json(body, status)
