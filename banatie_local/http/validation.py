"""Reading request input into plain, checked values.

Every reader names the field it complains about, so a client learns exactly what to
fix; nothing here lets a malformed value through to a service.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final

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
    """Strict JSON: no NaN/Infinity, nesting too deep for the parser is a 400, and so
    is an unpaired UTF-16 surrogate (``"\\ud800"`` is valid JSON, but no valid text:
    it could be neither stored nor sent back)."""
    try:
        value = json.loads(raw, parse_constant=_no_constants)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ValidationError(f"{field} is not valid JSON.", field=field) from None
    # UTF-8 cannot carry a surrogate: only a \u escape can, so most bodies skip the walk
    escaped = _ESCAPED_SURROGATE.search(raw if isinstance(raw, bytes) else raw.encode())
    if escaped is not None:
        where = surrogate_at(value, "" if field == "body" else field)
        if where is not None:
            raise not_text(where or field)
    return value


_ESCAPED_SURROGATE: Final = re.compile(rb"\\u(?:[dD][89a-fA-F]|0000)")


def is_text(value: str) -> bool:
    """Whether ``value`` is text every database stores: no unpaired surrogate and no
    NUL (PostgreSQL refuses NUL in text, so it is refused on SQLite alike)."""
    if "\x00" in value:
        return False
    if value.isascii():
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def not_text(field: str) -> ValidationError:
    return ValidationError(
        f"{field} must be valid Unicode text: it holds an unpaired UTF-16 surrogate or NUL.",
        field=field,
    )


def check_text(value: str | None, field: str) -> str | None:
    """A form field or other text input, refused if it is not valid Unicode text."""
    if value is not None and not is_text(value):
        raise not_text(field)
    return value


def surrogate_at(value: Any, path: str) -> str | None:
    """The path of the first string (value or object key) in ``value`` that is not
    valid text, or None. Iterative: JSON may nest as deep as its parser allows."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if not is_text(item):
                return where
        elif isinstance(item, dict):
            for key, inner in item.items():
                inner_path = f"{where}.{key}" if where else str(key)
                if not is_text(key):
                    return where or "body"
                stack.append((inner, inner_path))
        elif isinstance(item, list):
            stack.extend((inner, where) for inner in item)
    return None


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
