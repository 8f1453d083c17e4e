"""Every delete, with everything that points at what it deletes (API.md §2, §3, §4).

One module decides what goes and what stays:

- an image: its row and its stored variants; the schema's foreign keys remove its
  flow-alias entries, generation references, live cache entries and variant rows,
  and null the ``outputImageId`` of the generations that made it;
- a generation: its row, and its output image unless that image has a project alias
  (then the image stays, with ``generationId`` nulled by the foreign key);
- a flow: its generations (the rule above), its images without a project alias, its
  row (its alias map goes with it); aliased images stay with ``flowId: null``;
- a live scope (or only its cache, for ``purge cache``): its cache entries and the
  images they hold, except images with a project alias; the generations that made
  them stay as history (their ``outputImageId`` is nulled).

Each delete runs in one database transaction, on the writer thread. Files are removed only after the
commit: a crash in between leaves a file without a row (``purge orphans`` finds it),
never a row without a file. A file that will not go is recorded in ``orphan_files``
and logged, and the delete still succeeds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from banatie_local.clock import Clock
from banatie_local.db.boundary import Database
from banatie_local.db.models import (
    Flow,
    Generation,
    Image,
    ImageVariant,
    LiveCacheEntry,
    LiveScope,
    OrphanFile,
)
from banatie_local.services.imagecache import ImageCache
from banatie_local.storage import Storage

log = logging.getLogger(__name__)

Tick = Callable[[int], object]  # told of each step done (a progress bar's update)


class Cascade:
    def __init__(self, db: Database, clock: Clock, storage: Storage, cache: ImageCache) -> None:
        self.db = db
        self.clock = clock
        self.storage = storage
        self.cache = cache

    # -------------------------------------------------- row halves (in a transaction)

    def delete_image_rows(self, images: Iterable[Image]) -> list[str]:
        """Delete image rows (their variants' rows go by foreign key); return their
        storage keys and their variants' for ``remove_files``."""
        doomed = {image.id: image for image in images}
        variants = self.variant_files(list(doomed))
        if doomed:
            Image.delete().where(Image.id.in_(list(doomed))).execute()
        for image_id in doomed:
            self.cache.evict_image(image_id)
        return [image.storage_key for image in doomed.values()] + variants

    @staticmethod
    def variant_files(image_ids: list[str], delete: bool = False) -> list[str]:
        """The stored variants of these images (API.md §12); with ``delete`` their rows
        go too (the image stays, with new bytes)."""
        if not image_ids:
            return []
        keys = [
            v.storage_key
            for v in ImageVariant.select(ImageVariant.storage_key).where(
                ImageVariant.image_id.in_(image_ids)
            )
        ]
        if delete and keys:
            ImageVariant.delete().where(ImageVariant.image_id.in_(image_ids)).execute()
        return keys

    def delete_generation_rows(self, generations: list[Generation]) -> list[str]:
        """Delete generation rows and their unaliased output images; return file keys."""
        # the rows as they are now: a run may have stored its output since they were read
        ids = [g.id for g in generations]
        outputs = [g.output_image_id for g in generations if g.output_image_id]
        made = Image.id.in_(outputs) | Image.generation_id.in_(ids)
        doomed = Image.select().where(made & Image.alias_name.is_null())
        keys = self.delete_image_rows(list(doomed))
        if ids:
            Generation.delete().where(Generation.id.in_(ids)).execute()
        return keys

    def delete_flow_rows(self, flow: Flow) -> list[str]:
        """Delete a flow, its generations and its unaliased images; keep aliased images
        with ``flowId`` null. Return file keys."""
        in_flow = (Image.project_id == flow.project_id) & (Image.flow_id == flow.id)
        generations = list(
            Generation.select().where(
                (Generation.project_id == flow.project_id) & (Generation.flow_id == flow.id)
            )
        )
        keys = self.delete_generation_rows(generations)
        keys += self.delete_image_rows(Image.select().where(in_flow & Image.alias_name.is_null()))
        kept = [image.id for image in Image.select(Image.id).where(in_flow)]
        if kept:
            Image.update(flow_id=None, updated_at=self.clock.now_us()).where(
                Image.id.in_(kept)
            ).execute()
        Flow.delete().where(Flow.id == flow.id).execute()
        return keys

    def delete_live_entry_rows(self, entries: list[LiveCacheEntry]) -> list[str]:
        """Delete cache entries and their unaliased images; return file keys."""
        image_ids = [e.image_id for e in entries]
        for image_id in image_ids:
            self.cache.evict_image(image_id)  # aliased images keep their row, not the entry
        ids = [e.id for e in entries]
        if ids:
            LiveCacheEntry.delete().where(LiveCacheEntry.id.in_(ids)).execute()
        doomed = Image.select().where(Image.id.in_(image_ids) & Image.alias_name.is_null())
        return self.delete_image_rows(list(doomed))

    # ------------------------------------------------------ file half (after commit)

    async def remove_files(self, keys: list[str], tick: Tick | None = None) -> None:
        """Remove stored files, recording any that would not go; ``tick(1)`` after each
        (a progress bar's ``update``)."""
        for key in keys:
            if tick is not None:
                tick(1)
            try:
                await self.storage.delete(key)
            except Exception as exc:  # the row is gone; keep the key for purge
                log.error("could not remove %s after deleting its row: %s", key, exc)
                await self.db.write(self._record_orphan, key, str(exc)[:500])

    def _record_orphan(self, key: str, error: str) -> None:
        OrphanFile.insert(storage_key=key, error=error, created_at=self.clock.now_us()).on_conflict(
            conflict_target=[OrphanFile.storage_key],
            preserve=[OrphanFile.error, OrphanFile.created_at],
        ).execute()

    # ---------------------------------------------------------------- whole deletes

    async def delete_images(self, images: list[Image]) -> None:
        await self.remove_files(await self.db.write(self.delete_image_rows, images))

    async def delete_generation(self, generation: Generation) -> None:
        await self.remove_files(await self.db.write(self.delete_generation_rows, [generation]))

    async def delete_live_entries(
        self, entries: list[LiveCacheEntry], tick: Tick | None = None
    ) -> None:
        keys = await self.db.write(self.delete_live_entry_rows, entries)
        await self.remove_files(keys, tick)

    async def delete_scope(self, scope: LiveScope) -> list[str]:
        """Delete a scope with its entries and unaliased images; return its cache keys."""
        keys, cache_keys = await self.db.write(self._delete_scope_rows, scope)
        await self.remove_files(keys)
        return cache_keys

    def _delete_scope_rows(self, scope: LiveScope) -> tuple[list[str], list[str]]:
        entries = list(LiveCacheEntry.select().where(LiveCacheEntry.scope_id == scope.id))
        keys = self.delete_live_entry_rows(entries)
        LiveScope.delete().where(LiveScope.id == scope.id).execute()
        return keys, [e.cache_key for e in entries]

    async def delete_flow(self, flow: Flow) -> None:
        await self.remove_files(await self.db.write(self.delete_flow_rows, flow))
