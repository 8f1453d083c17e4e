"""Images: upload, list, get, update, alias and delete (API.md §3), and the public
lookup behind the CDN route (§6)."""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from banatie_local.clock import Clock
from banatie_local.config import Settings
from banatie_local.db.boundary import Database
from banatie_local.db.models import FlowCount, Image, ProjectCount
from banatie_local.errors import NotFoundError, PayloadTooLargeError, ValidationError
from banatie_local.services.aliases import ALIAS_RE, AliasService, check_alias
from banatie_local.services.cascade import Cascade
from banatie_local.services.context import Context
from banatie_local.services.flows import ABSENT, FlowChoice, FlowService, choose_flow
from banatie_local.services.imagecache import CachedImage, ImageCache
from banatie_local.services.imagefile import ImageFacts, clean_upload
from banatie_local.services.validation import is_uuid, new_id
from banatie_local.storage import Storage, image_key
from banatie_local.storage.base import read_along

SOURCES = ("generated", "uploaded")

_PUBLIC_COLUMNS = "SELECT i.id, i.mime_type, i.file_hash, i.storage_key FROM images i"
_IN_PROJECT = (
    " JOIN projects p ON p.id = i.project_id"
    " JOIN organizations o ON o.id = p.organization_id"
    " WHERE o.slug = ? AND p.slug = ? AND "
)


def public_where(org: str, project: str, ref: str) -> tuple[str, tuple[str, ...]] | None:
    """The SQL after ``FROM images i`` (and its parameters) that finds the public image
    ``ref`` (an id or a project alias) of a project by slugs; None: nothing can match."""
    if ALIAS_RE.fullmatch(ref):
        return _IN_PROJECT + "i.alias = ?", (org, project, ref)
    if is_uuid(ref):
        return _IN_PROJECT + "i.id = ?", (org, project, ref.lower())
    return None


@dataclass(frozen=True)
class Upload:
    data: bytes
    alias: str | None = None
    flow_id: Any = ABSENT  # ABSENT, None or a string
    flow_alias: str | None = None
    meta: dict[str, Any] | None = None


@dataclass(frozen=True)
class CheckedUpload:
    """An upload after every check, before anything is written; ``after`` runs in the
    write that adds the row (a legacy route publishes the image's name there)."""

    upload: Upload
    choice: FlowChoice
    facts: ImageFacts
    alias: str | None
    flow_alias: str | None
    after: Callable[[Image], None] | None = None


@dataclass(frozen=True)
class ImageFilters:
    flow_id: str | None = None
    source: str | None = None
    alias: str | None = None


@dataclass
class ImageService:
    db: Database
    clock: Clock
    settings: Settings
    storage: Storage
    cache: ImageCache
    aliases: AliasService
    flows: FlowService
    cascade: Cascade

    # ----------------------------------------------------------------- upload

    async def upload(self, ctx: Context, upload: Upload) -> Image:
        """Store an uploaded image; every input is checked before anything is written."""
        return await self.store_upload(ctx, await self.check_upload(upload))

    async def check_upload(self, upload: Upload) -> CheckedUpload:
        """Every check of an upload, the file decoded off the event loop; nothing is
        written. A caller storing several files checks them all first."""
        if len(upload.data) > self.settings.max_upload_bytes:
            raise PayloadTooLargeError(
                f"the file is larger than {self.settings.server.max_upload_mb:g} MB."
            )
        alias = check_alias(upload.alias) if upload.alias is not None else None
        flow_alias = (
            check_alias(upload.flow_alias, "flowAlias") if upload.flow_alias is not None else None
        )
        choice = choose_flow(upload.flow_id, flow_alias)
        strip = self.settings.uploads.strip_metadata
        data, facts = await asyncio.to_thread(clean_upload, upload.data, strip)
        if data is not upload.data:
            upload = dataclasses.replace(upload, data=data)
        return CheckedUpload(upload, choice, facts, alias, flow_alias)

    async def store_upload(self, ctx: Context, checked: CheckedUpload) -> Image:
        """Write a checked upload: the file, then its row (the file goes if the row fails)."""
        image_id = new_id()
        key = image_key(ctx.organization.slug, ctx.project.slug, image_id)
        await self.storage.put(key, checked.upload.data, checked.facts.mime_type)
        try:
            return await self.db.write(self._insert_upload, ctx, checked, image_id, key)
        except BaseException:
            await self.cascade.remove_files([key])
            raise

    def _insert_upload(
        self, ctx: Context, checked: CheckedUpload, image_id: str, key: str
    ) -> Image:
        self.flows.apply(ctx.project_id, checked.choice)
        now = self.clock.now_us()
        facts = checked.facts
        image: Image = Image.create(
            id=image_id,
            project_id=ctx.project_id,
            flow_id=checked.choice.flow_id,
            generation_id=None,
            storage_key=key,
            mime_type=facts.mime_type,
            file_size=facts.file_size,
            file_hash=facts.file_hash,
            width=facts.width,
            height=facts.height,
            source="uploaded",
            meta=checked.upload.meta or {},
            created_at=now,
            updated_at=now,
        )
        self._apply_aliases(image, checked.alias, checked.flow_alias)
        if checked.after is not None:
            checked.after(image)
        return image

    def _apply_aliases(self, image: Image, alias: str | None, flow_alias: str | None) -> None:
        if alias is not None:
            self.evict(self.aliases.assign_project_alias(image, alias))
        if flow_alias is not None and image.flow_id is not None:
            self.aliases.set_flow_alias(image.flow_id, flow_alias, image.id)

    # ------------------------------------------------------------------ reads

    def get(self, ctx: Context, ref: str, flow_id: str | None = None) -> Image:
        """An image of this project by id or ``@alias`` (with an optional flow context)."""
        return self.aliases.resolve_ref(ctx.project_id, ref, flow_id)

    def get_many(self, ctx: Context, image_ids: list[str]) -> list[Image]:
        """Images of this project by id, in the order asked, in one query."""
        rows = Image.select().where((Image.project_id == ctx.project_id) & Image.id.in_(image_ids))
        found = {row.id: row for row in rows}
        return [found[i] for i in image_ids if i in found]

    def list_page(
        self, ctx: Context, filters: ImageFilters, limit: int, offset: int
    ) -> tuple[list[Image], int]:
        """Images newest first, filtered, with the total count."""
        query = Image.select().where(Image.project_id == ctx.project_id)
        if filters.flow_id is not None:
            query = query.where(Image.flow_id == filters.flow_id)
        if filters.source is not None:
            query = query.where(Image.source == filters.source)
        if filters.alias is not None:
            query = query.where(Image.alias_name == filters.alias)
        total = self._total(ctx.project_id, filters, query)
        rows = list(query.order_by(Image.created_at.desc()).limit(limit).offset(offset))
        return rows, total

    @staticmethod
    def _total(project_id: str, filters: ImageFilters, query: Any) -> int:
        """The count ``list_page`` reports, from the trigger-kept counts where one
        answers the filters; else counted over an index range that the filters bound
        (one alias: at most one row; a flow's images)."""
        if filters.alias is None:
            if filters.flow_id is None:
                sources = SOURCES if filters.source is None else (filters.source,)
                return ProjectCount.total(project_id, [f"images/{s}" for s in sources])
            if filters.source is None:
                counts = FlowCount.of(project_id, filters.flow_id)
                if counts is not None:
                    return int(counts.images)
        count: int = query.count()
        return count

    # ----------------------------------------------------------------- writes

    def update(
        self,
        image: Image,
        focal_point: Any = ABSENT,
        meta: dict[str, Any] | None = None,
    ) -> Image:
        """Change ``focalPoint`` (``{x, y}`` in 0..1, or null) and/or ``meta`` (replaced)."""
        if focal_point is not ABSENT:
            image.focal_x, image.focal_y = check_focal_point(focal_point)
            self.cache.evict_image(image.id)  # its cover variants crop elsewhere now
        if meta is not None:
            image.meta = meta
        image.updated_at = self.clock.now_us()
        image.save()
        return image

    def set_alias(self, image: Image, alias: str | None) -> Image:
        """Assign (moving it from any other image) or remove the project alias."""
        if alias is not None:
            check_alias(alias)
        self.evict(self.aliases.assign_project_alias(image, alias))
        return image

    async def delete(self, image: Image) -> None:
        """Hard delete: the row, every reference to it, then the file."""
        await self.cascade.delete_images([image])

    def evict(self, image_ids: list[str]) -> None:
        for image_id in image_ids:
            self.cache.evict_image(image_id)

    # ------------------------------------------------------------ public CDN

    def public_lookup(self, org: str, project: str, ref: str) -> tuple[str, str, str, str] | None:
        """``(id, mimeType, fileHash, storageKey)`` of a public image, by one raw query.

        ``ref`` is an image id or a project alias; anything else finds nothing."""
        where = public_where(org, project, ref)
        if where is None:
            return None
        row = self.db.execute_sql(_PUBLIC_COLUMNS + where[0], where[1]).fetchone()
        return (row[0], row[1], row[2], row[3]) if row else None

    def public_fetch(
        self, org: str, project: str, ref: str, reader: Callable[[str], bytes] | None
    ) -> tuple[tuple[str, str, str, str] | None, bytes | None]:
        """``public_lookup`` and, when storage reads fast, the bytes (one thread hop);
        a missing file reads as ``b""``."""
        return read_along(self.public_lookup(org, project, ref), lambda row: row[3], reader)

    async def public_bytes(
        self, image_id: str, mime: str, file_hash: str, key: str, data: bytes | None = None
    ) -> CachedImage:
        """The stored bytes with the facts they are served by; 404 if the file is missing."""
        try:
            if data is None:
                data = await self.storage.get(key)
        except FileNotFoundError:
            data = b""
        if not data:
            raise NotFoundError(f"image {image_id} does not exist.", "IMAGE_NOT_FOUND")
        return CachedImage(image_id, data, mime, file_hash)


def check_focal_point(value: Any) -> tuple[float | None, float | None]:
    """``{x, y}`` with both in 0..1, or None."""
    if value is None:
        return None, None
    bad = ValidationError(
        "focalPoint must be {x, y} with numbers from 0 to 1, or null.", field="focalPoint"
    )
    if not isinstance(value, dict):
        raise bad
    coords = []
    for axis in ("x", "y"):
        number = value.get(axis)
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise bad
        if not math.isfinite(number) or not 0 <= number <= 1:
            raise bad
        coords.append(float(number))
    return coords[0], coords[1]
