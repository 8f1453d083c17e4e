"""Upkeep for the admin CLI: choosing live cache entries to drop (``purge cache``),
finding storage leftovers (``purge orphans``) and counting what the appliance holds
(``stats``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Final

from peewee import SQL, fn

from banatie_local.db.boundary import Database
from banatie_local.db.models import (
    ApiKey,
    Flow,
    Generation,
    Image,
    ImageVariant,
    LiveCacheEntry,
    LiveScope,
    Organization,
    OrphanFile,
    Project,
)
from banatie_local.services.cascade import Cascade, Tick
from banatie_local.storage import Storage

# A file younger than this may belong to a write whose row is about to be committed.
GRACE_SECONDS: Final = 300.0


@dataclass
class OrphanReport:
    files_without_rows: list[str] = field(default_factory=list)
    rows_without_files: list[str] = field(default_factory=list)  # image ids
    recorded_files: list[str] = field(default_factory=list)  # from orphan_files
    temp_files: list[str] = field(default_factory=list)
    removed: bool = False

    @property
    def file_count(self) -> int:
        """How many stored files a purge removes (what its progress counts)."""
        return len(set(self.files_without_rows) | set(self.recorded_files))

    def to_dict(self) -> dict[str, Any]:
        return {
            "filesWithoutRows": self.files_without_rows,
            "rowsWithoutFiles": self.rows_without_files,
            "recordedFiles": self.recorded_files,
            "tempFiles": self.temp_files,
            "removed": self.removed,
        }


class Maintenance:
    def __init__(
        self,
        db: Database,
        storage: Storage,
        cascade: Cascade,
        prices: dict[str, float] | None = None,
    ) -> None:
        self.prices = prices or {}  # estimated USD per image, by provider
        self.db = db
        self.storage = storage
        self.cascade = cascade

    def cache_entries(
        self, project_id: str | None = None, scope_id: str | None = None
    ) -> list[LiveCacheEntry]:
        """Live cache entries: every one, a project's, or (with ``scope_id``) one
        scope's."""
        query = LiveCacheEntry.select()
        if project_id is not None:
            query = query.where(LiveCacheEntry.project_id == project_id)
        if scope_id is not None:
            query = query.where(LiveCacheEntry.scope_id == scope_id)
        return list(query)

    async def find_orphans(self, grace_seconds: float = GRACE_SECONDS) -> OrphanReport:
        """Files with no image row (older than the grace period), image rows with no
        file, keys recorded when a delete could not remove them, and temp leftovers."""
        report = OrphanReport()
        stored = set(await self.storage.list_keys(""))
        rows = await self.db.read(_image_keys)
        variants = await self.db.read(_variant_keys)
        cutoff = time.time() - grace_seconds
        for key in sorted(stored - rows.keys() - variants):
            try:
                if await self.storage.modified_at(key) < cutoff:
                    report.files_without_rows.append(key)
            except FileNotFoundError:
                continue
        report.rows_without_files = sorted(
            image_id for key, image_id in rows.items() if key not in stored
        )
        recorded = await self.db.read(_recorded_keys)
        report.recorded_files = sorted(k for k in recorded if k not in rows)
        report.temp_files = await self.storage.leftover_temp_files(cutoff)
        return report

    async def purge_orphans(self, report: OrphanReport, tick: Tick | None = None) -> None:
        """Remove what ``find_orphans`` found: files, rows (with their references, as
        any image delete) and temp files; clear the recorded keys that went.
        ``tick(1)`` per file removed (``report.file_count`` in all)."""
        keys = sorted(set(report.files_without_rows) | set(report.recorded_files))
        await self.db.write(self._purge_rows, report.rows_without_files, keys)
        await self.cascade.remove_files(keys, tick)  # a key that fails again is re-recorded
        await self.storage.remove_temp_files(report.temp_files)
        report.removed = True

    def _purge_rows(self, image_ids: list[str], keys: list[str]) -> None:
        self.cascade.delete_image_rows(list(Image.select().where(Image.id.in_(image_ids))))
        OrphanFile.delete().where(OrphanFile.storage_key.in_(keys)).execute()

    def _spend(self, provider: Any) -> dict[str, Any]:
        """Estimated provider spend: successful generations by provider x price per
        image (the figure /metrics adds up as images are made)."""
        made = _count_by(
            Generation.select(provider, fn.COUNT(Generation.id))
            .where(Generation.status == "success")
            .group_by(provider)
        )
        return _priced(made, self.prices)

    def stats(self) -> dict[str, Any]:
        """Counts by type, status and provider; bytes stored; cache entries and hits."""
        provider = (
            SQL("(meta::json ->> 'provider')")
            if self.db.dialect.postgres
            else fn.json_extract(Generation.meta, "$.provider")
        )
        return {
            "organizations": Organization.select().count(),
            "projects": Project.select().count(),
            "apiKeys": {
                "active": ApiKey.select().where(ApiKey.is_active == True).count(),  # noqa: E712
                "revoked": ApiKey.select().where(ApiKey.is_active == False).count(),  # noqa: E712
            },
            "images": _grouped(Image.source),
            "bytesStored": int(Image.select(fn.COALESCE(fn.SUM(Image.file_size), 0)).scalar()),
            "generations": {
                "byStatus": _grouped(Generation.status),
                "byProvider": _count_by(
                    Generation.select(provider, fn.COUNT(Generation.id)).group_by(provider)
                ),
            },
            "estimatedSpendUsd": self._spend(provider),
            "flows": Flow.select().count(),
            "liveScopes": LiveScope.select().count(),
            "liveCacheEntries": LiveCacheEntry.select().count(),
            "liveHits": int(
                LiveCacheEntry.select(fn.COALESCE(fn.SUM(LiveCacheEntry.hit_count), 0)).scalar()
            ),
            "orphanFilesRecorded": OrphanFile.select().count(),
        }


def _priced(counts: dict[str, int], prices: dict[str, float]) -> dict[str, Any]:
    by_provider = {name: round(n * prices.get(name, 0.0), 4) for name, n in counts.items()}
    return {"byProvider": by_provider, "total": round(sum(by_provider.values()), 4)}


def _image_keys() -> dict[str, str]:
    return {image.storage_key: image.id for image in Image.select(Image.id, Image.storage_key)}


def _variant_keys() -> set[str]:
    """Stored variants (API.md §12): files with a row, though not an image row."""
    return {v.storage_key for v in ImageVariant.select(ImageVariant.storage_key)}


def _recorded_keys() -> list[str]:
    return [o.storage_key for o in OrphanFile.select()]


def _grouped(column: Any) -> dict[str, int]:
    model = column.model
    return _count_by(model.select(column, fn.COUNT(model.id)).group_by(column))


def _count_by(query: Any) -> dict[str, int]:
    rows: list[tuple[Any, int]] = list(query.tuples())
    return {str(value) if value is not None else "none": int(count) for value, count in rows}
