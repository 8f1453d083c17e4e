"""Deleting images, with everything that points at them, in one consistent way.

Rows go in one database transaction; the schema's foreign keys remove the image's
flow-alias entries, generation references and live cache entries, and null the
``outputImageId`` of generations that made it. Files are removed only after the
commit: a crash in between leaves a file without a row (``purge orphans`` finds it),
never a row without a file. A file that cannot be removed is recorded in
``orphan_files`` and logged, and the delete still succeeds.
"""

from __future__ import annotations

import logging

from peewee import SqliteDatabase

from banatie_local.clock import Clock
from banatie_local.db.models import Image, OrphanFile
from banatie_local.services.imagecache import ImageCache
from banatie_local.storage import Storage

log = logging.getLogger(__name__)


class Cascade:
    def __init__(
        self, db: SqliteDatabase, clock: Clock, storage: Storage, cache: ImageCache
    ) -> None:
        self.db = db
        self.clock = clock
        self.storage = storage
        self.cache = cache

    def delete_image_rows(self, images: list[Image]) -> list[str]:
        """Delete the rows (call inside the caller's transaction); return their keys."""
        ids = [image.id for image in images]
        if ids:
            Image.delete().where(Image.id.in_(ids)).execute()
        for image_id in ids:
            self.cache.evict_image(image_id)
        return [image.storage_key for image in images]

    async def remove_files(self, keys: list[str]) -> None:
        """After the commit: remove stored files, recording any that would not go."""
        for key in keys:
            try:
                await self.storage.delete(key)
            except Exception as exc:
                log.error("could not remove %s after deleting its row: %s", key, exc)
                OrphanFile.insert(
                    storage_key=key, error=str(exc)[:500], created_at=self.clock.now_us()
                ).on_conflict_replace().execute()

    async def delete_images(self, images: list[Image]) -> None:
        """Delete images and their files."""
        with self.db.atomic():
            keys = self.delete_image_rows(images)
        await self.remove_files(keys)
