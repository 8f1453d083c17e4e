"""Variants made once and kept (API.md §12): in memory, in storage, and at most
``cdn.max_variants_per_image`` per image on disk (``image_variants``).

``VariantStore.serve`` answers one variant of one stored image: from memory (the
caller looks there first, inline), else from its stored file, else rendered off the
event loop (one render per variant at a time in this process), stored, recorded, and
the least recently used variants beyond the cap dropped with their files.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from peewee import IntegrityError

from banatie_local.clock import Clock
from banatie_local.db.boundary import Database
from banatie_local.db.models import Image, ImageVariant
from banatie_local.services.cascade import Cascade
from banatie_local.services.imagecache import CachedImage, ImageCache
from banatie_local.services.variants import Plan, Source, VariantRequest, plan, render
from banatie_local.storage import Storage
from banatie_local.storage.base import validate_key

log = logging.getLogger(__name__)

_TOUCH_AFTER_US: Final = 60_000_000  # a variant's last use is written at most once a minute

_SOURCE: Final = (
    "SELECT i.id, i.mime_type, i.file_hash, i.storage_key, i.width, i.height,"
    " i.focal_x, i.focal_y FROM images i"
)
_VARIANT: Final = (
    "SELECT storage_key, used_at FROM image_variants WHERE image_id = ? AND variant_key = ?"
)


@dataclass(frozen=True, slots=True)
class Found:
    """What one read found for a variant request."""

    source: Source
    todo: Plan
    stored_key: str | None  # the variant's file, when it was made before
    used_at: int
    data: bytes | None  # the variant's bytes (or, for ``identity``, the image's), if read


@dataclass(frozen=True, slots=True)
class NotModified:
    etag: str
    image_id: str


def variant_key(org: str, project: str, image_id: str, key: str) -> str:
    """``{org}/{project}/var/{imageId}/{variantKey}`` (API.md §12)."""
    return validate_key(f"{org}/{project}/var/{image_id}/{key}")


@dataclass
class VariantStore:
    db: Database
    clock: Clock
    storage: Storage
    cache: ImageCache
    cascade: Cascade
    max_per_image: int
    _rendering: dict[tuple[str, str], asyncio.Future[bytes]] = field(default_factory=dict)
    _cpu: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(max(1, os.cpu_count() or 1))
    )

    # ------------------------------------------------------------- reads (threads)

    def find(
        self, where: str, args: tuple[Any, ...], want: VariantRequest,
        reader: Callable[[str], bytes] | None,
    ) -> Found | None:  # fmt: skip
        """The image ``where`` selects, the plan of ``want`` for it, and the stored
        variant (its bytes too when storage reads fast), in one read."""
        row = self.db.execute_sql(f"{_SOURCE} {where}", args).fetchone()
        if row is None:
            return None
        source = Source(*row)
        todo = plan(source, want)
        if todo.identity:
            return Found(source, todo, None, 0, _read(reader, source.storage_key))
        stored = self.db.execute_sql(_VARIANT, (source.image_id, todo.key)).fetchone()
        if stored is None:
            return Found(source, todo, None, 0, None)
        return Found(source, todo, stored[0], int(stored[1]), _read(reader, stored[0]))

    # --------------------------------------------------------------- serving

    async def serve(
        self,
        found: Found,
        slugs: tuple[str, str],
        if_none_match: Callable[[str], bool],
        source_bytes: bytes | memoryview | None = None,
        scope: str | None = None,
        vary: bool = False,
    ) -> CachedImage | NotModified:
        """The variant ``found`` describes: 304 when ``if_none_match(etag)``, else its
        bytes — stored, or made now from ``source_bytes`` (read when not given)."""
        source, todo = found.source, found.todo
        etag = f'"{source.file_hash}"' if todo.identity else todo.etag
        if if_none_match(etag):
            return NotModified(etag, source.image_id)
        extra = [("X-Variant", todo.params)]
        if vary:
            extra.append(("Vary", "Accept"))
        if todo.identity:
            data = found.data if found.data else source_bytes
            if not data:
                data = await self.storage.get(source.storage_key)
            return CachedImage(
                source.image_id, data, source.mime, source.file_hash, scope, extra=tuple(extra)
            )
        data = found.data
        if found.stored_key is not None and data is None:
            try:
                data = await self.storage.get(found.stored_key)
            except FileNotFoundError:
                data = None
        if data:
            if self.clock.now_us() - found.used_at > _TOUCH_AFTER_US:
                await self._touch(source.image_id, todo.key)
        else:
            data = await self._make(found, slugs, source_bytes)
        return CachedImage(source.image_id, data, todo.mime, todo.key, scope, extra=tuple(extra))

    async def _make(
        self, found: Found, slugs: tuple[str, str], source_bytes: bytes | memoryview | None
    ) -> bytes:
        """Render, store and record one variant; concurrent requests for it join."""
        flight = (found.source.image_id, found.todo.key)
        running = self._rendering.get(flight)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._rendering[flight] = future
        try:
            data = await self._render_and_keep(found, slugs, source_bytes)
            future.set_result(data)
            return data
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: a failure with nobody joined is not logged twice
            raise
        finally:
            del self._rendering[flight]

    async def _render_and_keep(
        self, found: Found, slugs: tuple[str, str], source_bytes: bytes | memoryview | None
    ) -> bytes:
        source, todo = found.source, found.todo
        original = source_bytes if source_bytes else await self.storage.get(source.storage_key)
        async with self._cpu:
            data = await asyncio.to_thread(render, bytes(original), todo)
        key = variant_key(*slugs, source.image_id, todo.key)
        await self.storage.put(key, data, todo.mime)
        try:
            doomed = await self.db.write(self._record, source, todo, key, len(data))
        except IntegrityError:  # the image went meanwhile
            doomed = [key]
        await self.cascade.remove_files(doomed)
        return data

    def _record(self, source: Source, todo: Plan, key: str, size: int) -> list[str]:
        """Record a stored variant (inside a write) and drop the least recently used
        beyond the cap; return the files to remove. A variant of bytes the image no
        longer has (regenerated meanwhile) is not recorded: its file goes."""
        image = Image.select(Image.file_hash).where(Image.id == source.image_id).first()
        if image is None or image.file_hash != source.file_hash:
            return [key]
        now = self.clock.now_us()
        ImageVariant.insert(
            image_id=source.image_id, variant_key=todo.key, storage_key=key,
            params=todo.params, mime_type=todo.mime, file_size=size, created_at=now,
            used_at=now,
        ).on_conflict(
            conflict_target=[ImageVariant.image_id, ImageVariant.variant_key],
            preserve=[ImageVariant.used_at],
        ).execute()  # fmt: skip
        beyond = list(
            ImageVariant.select(ImageVariant.variant_key, ImageVariant.storage_key)
            .where(ImageVariant.image_id == source.image_id)
            .order_by(ImageVariant.used_at.desc(), ImageVariant.created_at.desc())
            .offset(self.max_per_image)
        )
        if beyond:
            ImageVariant.delete().where(
                (ImageVariant.image_id == source.image_id)
                & ImageVariant.variant_key.in_([v.variant_key for v in beyond])
            ).execute()
        return [v.storage_key for v in beyond]

    async def _touch(self, image_id: str, key: str) -> None:
        """Mark a stored variant used now; a busy database only loses the mark."""
        try:
            await self.db.quick_write(self._mark_used, image_id, key, self.clock.now_us())
        except Exception as exc:  # the mark orders evictions only; serving goes on
            log.debug("could not mark variant %s/%s used: %s", image_id, key, exc)

    @staticmethod
    def _mark_used(image_id: str, key: str, now: int) -> None:
        ImageVariant.update(used_at=now).where(
            (ImageVariant.image_id == image_id) & (ImageVariant.variant_key == key)
        ).execute()


def _read(reader: Callable[[str], bytes] | None, key: str) -> bytes | None:
    if reader is None:
        return None
    try:
        return reader(key)
    except FileNotFoundError:
        return b""
