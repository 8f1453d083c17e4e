"""Reading request input into plain, checked values.

Every reader names the field it complains about, so a client learns exactly what to
fix; nothing here lets a malformed value through to a service.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from sanic.request import Request

from banatie_local.errors import ValidationError

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_OFFSET = 10**9
_MISSING = object()


def _no_constants(token: str) -> Any:
    raise ValueError(f"{token} is not valid JSON")


def parse_json(raw: bytes | str, field: str) -> Any:
    """Strict JSON: no NaN/Infinity, and nesting too deep for the parser is a 400."""
    try:
        return json.loads(raw, parse_constant=_no_constants)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ValidationError(f"{field} is not valid JSON.", field) from None


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
        raise ValidationError(f"{name} must be a whole number.", name) from None


def pagination(request: Request) -> Page:
    """``limit`` (default 20, clamped to 1..100) and ``offset`` (default 0, ≥ 0)."""
    limit = _int_arg(request, "limit")
    offset = _int_arg(request, "offset")
    limit = DEFAULT_LIMIT if limit is None else min(max(limit, 1), MAX_LIMIT)
    offset = 0 if offset is None else min(max(offset, 0), MAX_OFFSET)
    return Page(limit, offset)


class Body:
    """A JSON object body with typed, field-naming accessors."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    @classmethod
    def of(cls, request: Request, required: bool = False) -> Body:
        """Parse the body; empty counts as ``{}`` unless ``required``."""
        raw = request.body
        if not raw or not raw.strip():
            if required:
                raise ValidationError("the request body must be a JSON object.", "body")
            return cls({})
        value = parse_json(raw, "body")
        if not isinstance(value, dict):
            raise ValidationError("the request body must be a JSON object.", "body")
        return cls(value)

    def has(self, name: str) -> bool:
        return name in self.data

    def _get(self, name: str, required: bool) -> Any:
        value = self.data.get(name, _MISSING)
        if value is _MISSING and required:
            raise ValidationError(f"{name} is required.", name)
        return value

    def text(
        self, name: str, required: bool = False, max_length: int = 1000, nullable: bool = True
    ) -> str | None:
        value = self._get(name, required)
        if value is _MISSING or (value is None and nullable and not required):
            return None
        if not isinstance(value, str):
            raise ValidationError(f"{name} must be a string.", name)
        if len(value) > max_length:
            raise ValidationError(f"{name} must be at most {max_length} characters.", name)
        return value

    def integer(
        self,
        name: str,
        required: bool = False,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int | None:
        value = self._get(name, required)
        if value is _MISSING or (value is None and not required):
            return None
        is_whole_float = isinstance(value, float) and math.isfinite(value) and value.is_integer()
        if isinstance(value, bool) or not (isinstance(value, int) or is_whole_float):
            raise ValidationError(f"{name} must be a whole number.", name)
        number = int(value)
        if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
            bounds = f"from {minimum} to {maximum}" if maximum is not None else f"≥ {minimum}"
            raise ValidationError(f"{name} must be a whole number {bounds}.", name)
        return number

    def boolean(self, name: str, required: bool = False) -> bool | None:
        value = self._get(name, required)
        if value is _MISSING or (value is None and not required):
            return None
        if not isinstance(value, bool):
            raise ValidationError(f"{name} must be true or false.", name)
        return value

    def mapping(self, name: str, required: bool = False) -> dict[str, Any] | None:
        value = self._get(name, required)
        if value is _MISSING or (value is None and not required):
            return None
        if not isinstance(value, dict):
            raise ValidationError(f"{name} must be a JSON object.", name)
        return value
