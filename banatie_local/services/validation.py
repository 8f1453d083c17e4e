"""Formats that several services check (slugs, ids)."""

from __future__ import annotations

import re
import uuid

from banatie_local.errors import ValidationError

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def check_slug(value: str, field: str) -> str:
    """An organization or project slug (``^[a-z0-9][a-z0-9-]{0,62}$``)."""
    if not SLUG_RE.match(value):
        raise ValidationError(
            f"{field} must be 1-63 lowercase letters, digits or hyphens, "
            "starting with a letter or digit.",
            field,
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
