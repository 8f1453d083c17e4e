"""Reading request input into plain, checked values.

Every reader names the field it complains about, so a client learns exactly what to
fix; nothing here lets a malformed value through to a service.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sanic.request import Request

from banatie_local.constants import MAX_PAGE_LIMIT
from banatie_local.errors import ValidationError
from banatie_local.services.validation import is_uuid

DEFAULT_LIMIT = 20
MAX_OFFSET = 10**9
_MISSING = object()


def _no_constants(token: str) -> Any:
    raise ValueError(f"{token} is not valid JSON")


def parse_json(raw: bytes | str, field: str) -> Any:
    """Strict JSON: no NaN/Infinity, and nesting too deep for the parser is a 400."""
    try:
        return json.loads(raw, parse_constant=_no_constants)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ValidationError(f"{field} is not valid JSON.", field=field) from None


@dataclass(frozen=True)
class Page:
    limit: int
    offset: int


def _int_arg(request: Request, name: str) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw.strip())
    except ValueError:
        raise ValidationError(f"{name} must be a whole number.", field=name) from None


def flow_arg(request: Request) -> str | None:
    """``?flowId=``: a UUID or nothing."""
    raw = request.args.get("flowId")
    if raw is None or raw == "":
        return None
    if not is_uuid(raw):
        raise ValidationError("flowId must be a UUID.", field="flowId")
    return str(raw).lower()


def pagination(request: Request) -> Page:
    """``limit`` (default 20, clamped to 1..100) and ``offset`` (default 0, ≥ 0)."""
    limit = _int_arg(request, "limit")
    offset = _int_arg(request, "offset")
    limit = DEFAULT_LIMIT if limit is None else min(max(limit, 1), MAX_PAGE_LIMIT)
    offset = 0 if offset is None else min(max(offset, 0), MAX_OFFSET)
    return Page(limit, offset)
