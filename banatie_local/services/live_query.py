"""The query of a live URL and its cache key (API.md §5.1).

The query is checked by the same rules as a generation's fields and turned into a
cache key: SHA-256 over project, scope, whitespace-normalised prompt, ratio,
autoEnhance and template. Variant parameters (size, fit, format: API.md §12) are
checked here too but are not part of the key: one generation serves every size.
``QueryMemo`` remembers what each query string gave (per org, project and scope), so
a repeat request does no parsing, project lookup or hashing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from cachetools import LRUCache

from banatie_local.constants import (
    DEFAULT_LIVE_ASPECT_RATIO,
    DEFAULT_TEMPLATE,
    MAX_LIVE_PROMPT_LENGTH,
)
from banatie_local.db.boundary import Database
from banatie_local.errors import NotFoundError, ValidationError
from banatie_local.services.generation_request import (
    check_aspect_ratio,
    check_prompt,
    check_template,
)
from banatie_local.services.scopes import check_scope_slug
from banatie_local.services.variants import VariantRequest, parse_variant
from banatie_local.text import truth

_PROJECT_LOOKUP: Final = (
    "SELECT p.id FROM projects p JOIN organizations o ON o.id = p.organization_id"
    " WHERE o.slug = ? AND p.slug = ?"
)
# (org, project, scope, raw query string)
Memo = tuple[str, str, str, str]


@dataclass(frozen=True)
class LiveParams:
    prompt: str  # trimmed, runs of whitespace collapsed
    aspect_ratio: str
    auto_enhance: bool
    template: str


def parse_live_params(arg: Callable[[str], str | None]) -> LiveParams:
    """The query of a live URL, read through ``arg(name)``, checked (API.md §5.1)."""
    raw = arg("prompt")
    prompt = " ".join(raw.split()) if raw else ""
    if not prompt:
        raise ValidationError("prompt is required.", field="prompt")
    prompt = check_prompt(prompt, MAX_LIVE_PROMPT_LENGTH)
    ratio = check_aspect_ratio(arg("aspectRatio") or DEFAULT_LIVE_ASPECT_RATIO)
    enhance = truth(arg("autoEnhance") or "true")
    if enhance is None:
        raise ValidationError("autoEnhance must be true or false.", field="autoEnhance")
    template = check_template(arg("template") or DEFAULT_TEMPLATE, "template")
    return LiveParams(prompt, ratio, enhance, template)


def cache_key(project_id: str, scope: str, params: LiveParams) -> str:
    text = "\n".join(
        (project_id, scope, params.prompt, params.aspect_ratio,
         "1" if params.auto_enhance else "0", params.template)
    )  # fmt: skip
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class KnownQuery:
    key: str
    project_id: str
    params: LiveParams
    variant: VariantRequest | None = None  # size and format: not part of the key


@dataclass
class QueryMemo:
    """Live queries validated before, and project ids by slugs (ids never change)."""

    db: Database
    known: LRUCache[Memo, KnownQuery] = field(default_factory=lambda: LRUCache(maxsize=50_000))
    _project_ids: dict[tuple[str, str], str] = field(default_factory=dict)

    async def known_query(
        self, org: str, project: str, scope: str, query: str, arg: Callable[[str], str | None]
    ) -> KnownQuery:
        """Validate a live request and compute its cache key, once per distinct query
        (a repeat costs one dictionary lookup; the first may read the project's id)."""
        memo = (org, project, scope, query)
        known = self.known.get(memo)
        if known is None:
            params = parse_live_params(arg)
            check_scope_slug(scope, "scope")
            project_id = self._project_ids.get((org, project))
            if project_id is None:
                project_id = await self.db.read(self.project_id, org, project)
            variant = parse_variant(arg)
            known = KnownQuery(cache_key(project_id, scope, params), project_id, params, variant)
            self.known[memo] = known
        return known

    def project_id(self, org: str, project: str) -> str:
        """The project's id by slugs (inside a read); 404 if unknown."""
        known = self._project_ids.get((org, project))
        if known is not None:
            return known
        row = self.db.execute_sql(_PROJECT_LOOKUP, (org, project)).fetchone()
        if row is None:
            raise NotFoundError(f"project {org}/{project} does not exist.", "PROJECT_NOT_FOUND")
        self._project_ids[(org, project)] = row[0]
        return str(row[0])
