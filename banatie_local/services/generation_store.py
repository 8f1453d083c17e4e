"""Where a generation's output goes: the file first, then its image row (new, or the
same row and key rewritten in place by a regeneration) and the output aliases, in
one write with the generation's own success. A crash therefore leaves at worst a
file without a row, never a row without a file.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from banatie_local.clock import Clock
from banatie_local.db.boundary import Database
from banatie_local.db.models import Generation, Image
from banatie_local.providers.base import GeneratedImage
from banatie_local.services.aliases import AliasService
from banatie_local.services.cascade import Cascade
from banatie_local.services.context import Context
from banatie_local.services.flows import FlowService
from banatie_local.services.marking import Marker, Origin
from banatie_local.services.validation import new_id
from banatie_local.storage import Storage, image_key


@dataclass(frozen=True)
class Output:
    """What a generation's first output image gets: its ``meta``, and ``publish``,
    run in the write that adds it with ``(image_id, mime_type)`` (a legacy route
    publishes the image's name there)."""

    meta: dict[str, Any] | None = None
    publish: Callable[[str, str], None] | None = None


@dataclass
class GenerationStore:
    """Writes a run's output: the file, then its image row, aliases and success."""

    db: Database
    clock: Clock
    storage: Storage
    aliases: AliasService
    flows: FlowService
    cascade: Cascade
    marker: Marker
    # What a first output image gets, by generation, while its run is pending.
    outputs: dict[str, Output] = field(default_factory=dict)

    async def store(
        self,
        ctx: Context,
        generation: Generation,
        existing: Image | None,
        result: GeneratedImage,
        succeed: Callable[[str], None],
        origin: Origin,
    ) -> str:
        """Write the output, marked with its provenance (``services/marking.py``): over
        the existing output image (regeneration), else new; ``succeed(image_id)`` runs
        in the same write as the image row."""
        image_id = str(existing.id) if existing is not None else new_id()
        data, file_hash = await asyncio.to_thread(
            self._marked, result.data, result.mime_type, origin, image_id
        )
        facts = {
            "mime_type": result.mime_type,
            "file_size": len(data),
            "file_hash": file_hash,
            "width": result.width,
            "height": result.height,
        }
        if existing is not None:
            await self.storage.put(existing.storage_key, data, result.mime_type)
            stale = await self.db.write(self.rewrite_image, existing.id, facts, succeed)
            await self.cascade.remove_files(stale)
            return str(existing.id)
        key = image_key(ctx.organization.slug, ctx.project.slug, image_id)
        await self.storage.put(key, data, result.mime_type)
        try:
            await self.db.write(self._insert_output, generation, image_id, key, facts, succeed)
        except BaseException:
            await self.cascade.remove_files([key])
            raise
        return image_id

    def _marked(self, data: bytes, mime: str, origin: Origin, image_id: str) -> tuple[bytes, str]:
        """The bytes to store and their hash (on a worker thread)."""
        marked = self.marker.mark(data, mime, origin, image_id)
        return marked, hashlib.sha256(marked).hexdigest()

    def rewrite_image(
        self,
        image_id: str,
        facts: dict[str, Any],
        succeed: Callable[[str], None] | None = None,
    ) -> list[str]:
        """The image row brought in line with new bytes under the same key (inside a
        write); every cached copy of it is dropped, and its variants' rows. Returns
        the variants' files, to remove after the commit."""
        Image.update(**facts, updated_at=self.clock.now_us()).where(Image.id == image_id).execute()
        self.cascade.cache.evict_image(image_id)
        stale = self.cascade.variant_files([image_id], delete=True)
        if succeed is not None:
            succeed(image_id)
        return stale

    def _insert_output(
        self,
        generation: Generation,
        image_id: str,
        key: str,
        facts: dict[str, Any],
        succeed: Callable[[str], None],
    ) -> None:
        now = self.clock.now_us()
        output = self.outputs.get(generation.id, Output())
        image = Image.create(
            id=image_id,
            project_id=generation.project_id,
            flow_id=generation.flow_id,
            generation_id=generation.id,
            storage_key=key,
            source="generated",
            meta=output.meta or {},
            created_at=now,
            updated_at=now,
            **facts,
        )
        Generation.update(output_image_id=image_id).where(Generation.id == generation.id).execute()
        self._output_aliases(generation, image)
        if output.publish is not None:
            output.publish(image_id, facts["mime_type"])
        succeed(image_id)

    def _output_aliases(self, generation: Generation, image: Image) -> None:
        if generation.output_alias:
            for changed in self.aliases.assign_project_alias(image, generation.output_alias):
                self.cascade.cache.evict_image(changed)
        if generation.output_flow_alias and generation.flow_id:
            self.flows.ensure(generation.project_id, generation.flow_id)
            self.aliases.set_flow_alias(generation.flow_id, generation.output_flow_alias, image.id)
