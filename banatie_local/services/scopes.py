"""Live scopes (API.md §5.2): named buckets of live-URL images with their own limits."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from peewee import JOIN, SQL, fn

from banatie_local.clock import Clock
from banatie_local.constants import MAX_SCOPE_GENERATIONS_LIMIT, SCOPE_PATTERN
from banatie_local.db.boundary import Database
from banatie_local.db.models import (
    Image,
    LiveCacheEntry,
    LiveScope,
    Project,
    ProjectCount,
    ScopeCount,
)
from banatie_local.errors import ConflictError, NotFoundError, ValidationError
from banatie_local.services.cascade import Cascade
from banatie_local.services.validation import new_id

SCOPE_RE: Final = re.compile(SCOPE_PATTERN)


def check_scope_slug(value: object, field: str = "slug") -> str:
    if not isinstance(value, str) or not SCOPE_RE.fullmatch(value):
        raise ValidationError(
            f"{field} must be 1-64 letters, digits, _ or -.", "SCOPE_INVALID_FORMAT", field=field
        )
    return value


def scope_not_found(slug: str) -> NotFoundError:
    return NotFoundError(f"scope {slug} does not exist.", "SCOPE_NOT_FOUND")


@dataclass(frozen=True)
class ScopeView:
    scope: LiveScope
    current_generations: int
    last_generated_at: int | None


class ScopeService:
    def __init__(self, db: Database, clock: Clock, cascade: Cascade) -> None:
        self.db = db
        self.clock = clock
        self.cascade = cascade

    def find(self, project_id: str, slug: str) -> LiveScope | None:
        scope: LiveScope | None = LiveScope.get_or_none(
            (LiveScope.project_id == project_id) & (LiveScope.slug == slug)
        )
        return scope

    def get(self, project_id: str, slug: str) -> LiveScope:
        scope = self.find(project_id, slug) if SCOPE_RE.fullmatch(slug) else None
        if scope is None:
            raise scope_not_found(slug)
        return scope

    def create(
        self,
        project_id: str,
        slug: str,
        allow_new_generations: bool = True,
        new_generations_limit: int = 30,
        meta: dict[str, Any] | None = None,
    ) -> LiveScope:
        """A new scope; 409 ``SCOPE_ALREADY_EXISTS`` if the slug is taken."""
        check_scope_slug(slug)
        check_limit(new_generations_limit)
        with self.db.atomic():
            if self.find(project_id, slug) is not None:
                raise ConflictError(f"scope {slug} already exists.", "SCOPE_ALREADY_EXISTS")
            now = self.clock.now_us()
            scope: LiveScope = LiveScope.create(
                id=new_id(),
                project_id=project_id,
                slug=slug,
                allow_new_generations=allow_new_generations,
                new_generations_limit=new_generations_limit,
                meta=meta or {},
                created_at=now,
                updated_at=now,
            )
            return scope

    def get_or_create_for_live(self, project: Project, slug: str) -> LiveScope | None:
        """The scope for a live-URL miss, created with the project's settings when the
        project allows it; None when it does not exist and may not be created."""
        scope = self.find(project.id, slug)
        if scope is not None or not project.allow_new_live_scopes:
            return scope
        with self.db.atomic():
            scope = self.find(project.id, slug)
            if scope is None:
                scope = self.create(
                    project.id, slug, True, project.new_live_scopes_generation_limit
                )
            return scope

    def update(
        self,
        scope: LiveScope,
        allow_new_generations: bool | None = None,
        new_generations_limit: int | None = None,
        meta: dict[str, Any] | None = None,
    ) -> LiveScope:
        if allow_new_generations is not None:
            scope.allow_new_generations = allow_new_generations
        if new_generations_limit is not None:
            scope.new_generations_limit = check_limit(new_generations_limit)
        if meta is not None:
            scope.meta = meta
        scope.updated_at = self.clock.now_us()
        scope.save()
        return scope

    # ---------------------------------------------------------------- reading

    def _counted(self) -> Any:
        """Scopes with their entry count, read from ``scope_counts`` (kept by triggers;
        counted over the scope's index range should a row ever lack its count), and
        their newest entry's time (the index's last entry)."""
        count = LiveCacheEntry.select(fn.COUNT(SQL("*"))).where(
            LiveCacheEntry.scope_id == LiveScope.id
        )
        last = LiveCacheEntry.select(fn.MAX(LiveCacheEntry.created_at)).where(
            LiveCacheEntry.scope_id == LiveScope.id
        )
        return (
            LiveScope.select(
                LiveScope,
                fn.COALESCE(ScopeCount.entries, count).alias("current_generations"),
                last.alias("last_generated_at"),
            )
            .join(ScopeCount, JOIN.LEFT_OUTER, on=(ScopeCount.scope_id == LiveScope.id))
            .objects()
        )

    def view(self, scope: LiveScope) -> ScopeView:
        row = self._counted().where(LiveScope.id == scope.id).get()
        return ScopeView(row, int(row.current_generations), row.last_generated_at)

    def list_page(self, project_id: str, limit: int, offset: int) -> tuple[list[ScopeView], int]:
        """Scopes newest first with their counts, in two queries."""
        base = self._counted().where(LiveScope.project_id == project_id)
        total = ProjectCount.total(project_id, ["scopes"])
        rows = base.order_by(LiveScope.created_at.desc()).limit(limit).offset(offset)
        return [ScopeView(r, int(r.current_generations), r.last_generated_at) for r in rows], total

    def current_generations(self, scope: LiveScope) -> int:
        """The scope's cache entries (``scope_counts``, kept by triggers)."""
        counted = ScopeCount.of(scope.id)
        if counted is not None:
            return counted
        count: int = LiveCacheEntry.select().where(LiveCacheEntry.scope_id == scope.id).count()
        return count

    def images(self, scope: LiveScope, limit: int, offset: int) -> tuple[list[Image], int]:
        """The scope's live images, newest first. Every entry has its image (a foreign
        key that cascades), so the total is the scope's entry count."""
        query = (
            Image.select()
            .join(LiveCacheEntry, on=LiveCacheEntry.image_id == Image.id)
            .where(LiveCacheEntry.scope_id == scope.id)
        )
        total = self.current_generations(scope)
        rows = list(query.order_by(LiveCacheEntry.created_at.desc()).limit(limit).offset(offset))
        return rows, total

    def entries(self, scope: LiveScope, image_id: str | None = None) -> list[LiveCacheEntry]:
        query = LiveCacheEntry.select().where(LiveCacheEntry.scope_id == scope.id)
        if image_id is not None:
            query = query.where(LiveCacheEntry.image_id == image_id)
        return list(query.order_by(LiveCacheEntry.created_at))

    async def delete(self, scope: LiveScope) -> list[str]:
        """Delete the scope, its cache entries and its unaliased images; return the
        cache keys that went, so the caller can drop them from memory."""
        return await self.cascade.delete_scope(scope)


def check_limit(value: int) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not 0 <= value <= MAX_SCOPE_GENERATIONS_LIMIT
    ):
        raise ValidationError(
            f"newGenerationsLimit must be a whole number from 0 to {MAX_SCOPE_GENERATIONS_LIMIT}.",
            field="newGenerationsLimit",
        )
    return value
