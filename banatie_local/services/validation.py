"""Formats that several services check (slugs, ids)."""

from __future__ import annotations

import json
import re
import uuid

from banatie_local.constants import MAX_META_BYTES, SLUG_PATTERN
from banatie_local.errors import ValidationError

SLUG_RE = re.compile(SLUG_PATTERN)


def check_slug(value: str, field: str) -> str:
    """An organization or project slug (``^[a-z0-9][a-z0-9-]{0,62}$``)."""
    if not SLUG_RE.fullmatch(value):
        raise ValidationError(
            f"{field} must be 1-63 lowercase letters, digits or hyphens, "
            "starting with a letter or digit.",
            field=field,
        )
    return value


def is_uuid(value: str) -> bool:
    """Whether ``value`` is a canonical (lowercase, hyphenated) UUID string."""
    try:
        return str(uuid.UUID(value)) == value.lower() and len(value) == 36
    except (ValueError, AttributeError, TypeError):
        return False


def new_id() -> str:
    return str(uuid.uuid4())


def check_meta(value: object, field: str = "meta") -> dict[str, object]:
    """A JSON object of at most 16 KB, as stored in ``meta`` columns."""
    if not isinstance(value, dict):
        raise ValidationError(f"{field} must be a JSON object.", field=field)
    try:
        size = len(json.dumps(value, separators=(",", ":")).encode())
    except (TypeError, ValueError, RecursionError):
        raise ValidationError(f"{field} must be a JSON object.", field=field) from None
    if size > MAX_META_BYTES:
        raise ValidationError(
            f"{field} must be at most {MAX_META_BYTES} bytes of JSON.", field=field
        )
    return value
