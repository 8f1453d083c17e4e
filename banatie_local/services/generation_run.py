"""Running a generation: ``processing`` → enhance (a failure is recorded, the prompt
kept) → provider → the output stored → ``success``, or ``failed`` with the reason.

A running generation carries a lease that its process renews every few seconds
(``renew_leases``). One whose lease lapsed, or whose process on this host is gone,
is marked failed by any process, exactly once (``recover_interrupted``), and its
output image's row is brought back in line with the stored file.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Final

from banatie_local.clock import Clock
from banatie_local.db.boundary import Database
from banatie_local.db.models import Generation, GenerationReference, Image
from banatie_local.metrics import Metrics
from banatie_local.providers import ImageProvider, ProviderError, ReferenceImage
from banatie_local.providers.base import measure
from banatie_local.services.context import Context
from banatie_local.services.delivery import Delivery, deliver
from banatie_local.services.generation_store import GenerationStore
from banatie_local.services.imagefile import sniff
from banatie_local.services.marking import Origin
from banatie_local.services.owner import owner_alive
from banatie_local.storage import Storage, StorageError

# one log for every part of a generation
log = logging.getLogger("banatie_local.services.generations")

# meta the run writes (each run afresh), and meta a door records at creation
SYSTEM_META: Final = ("provider", "model", "enhancementError")
ORIGIN_META: Final = ("legacy", "filename", "openai", "output")
MAX_ENHANCED_LENGTH: Final = 10_000
INTERRUPTED: Final = "interrupted: the server stopped before this generation finished."
# A lapsed lease means the process died (a live one renews it every few seconds).
LEASE_US: Final = 30_000_000
# what a run starts from: the processing row, its reference rows, its existing output
Started = tuple[Generation, list[Image], Image | None]


def started_from(generation: Generation) -> Started:
    """A processing row with its reference rows and its existing output (inside a
    transaction)."""
    existing = (
        Image.get_or_none(Image.id == generation.output_image_id)
        if generation.output_image_id
        else None
    )
    return generation, _reference_rows(generation.id), existing


@dataclass
class GenerationRunner:
    """Runs generations of this process and holds their leases."""

    db: Database
    clock: Clock
    storage: Storage
    provider: ImageProvider
    store: GenerationStore
    owner: str  # this process, as lease holder
    running: set[str] = field(default_factory=set)
    metrics: Metrics | None = None

    async def run(
        self, ctx: Context, generation_id: str, begun: Started | None = None
    ) -> Generation:
        """Take a generation from pending (or ``begun``: already processing) to
        success or failed; return its final row. Never raises for a provider failure;
        a storage failure is recorded and then re-raised."""
        self.running.add(generation_id)
        if self.metrics is not None:
            self.metrics.in_flight.inc()
        try:
            if begun is None:
                begun = await self.db.write(self._start, generation_id)
            return await self._run(ctx, *begun)
        finally:
            self.running.discard(generation_id)
            if self.metrics is not None:
                self.metrics.in_flight.dec()
            self.store.outputs.pop(generation_id, None)

    def _start(self, generation_id: str) -> Started:
        """Mark it processing, with a fresh lease (one write)."""
        generation: Generation = Generation.get_by_id(generation_id)
        self.set(
            generation,
            status="processing",
            error_message=None,
            lease_owner=self.owner,
            lease_expires_at=self.clock.now_us() + LEASE_US,
        )
        return started_from(generation)

    async def _run(
        self,
        ctx: Context,
        generation: Generation,
        reference_rows: list[Image],
        existing: Image | None,
    ) -> Generation:
        begun = time.perf_counter()
        meta = {k: v for k, v in generation.meta.items() if k not in SYSTEM_META}
        meta["provider"] = self.provider.name
        try:
            prompt, original, enhancement_error = await self._enhance(generation)
            if enhancement_error:
                meta["enhancementError"] = enhancement_error
            references = await self._reference_bytes(reference_rows)
            try:
                result = await self.provider.generate(prompt, generation.aspect_ratio, references)
            except ProviderError:
                self._count_call(False)
                raise
            self._count_call(True, result.model)
            delivery = Delivery.from_meta(generation.meta)
            if delivery is not None and delivery.needed(result):
                result = await asyncio.to_thread(deliver, result, delivery)
            meta["model"] = result.model

            def succeed(image_id: str) -> None:  # in the same write as the image row
                self.set(
                    generation, status="success", error_message=None, meta=meta,
                    processing_time_ms=int((time.perf_counter() - begun) * 1000),
                    prompt=prompt, original_prompt=original, output_image_id=image_id,
                )  # fmt: skip

            origin = Origin(generation.id, self.provider.name, result.model, prompt)
            await self.store.store(ctx, generation, existing, result, succeed, origin)
        except ProviderError as exc:
            await self._finish(generation, begun, meta, error=exc.message)
            return generation
        except StorageError as exc:
            await self._finish(generation, begun, meta, error=f"storage failed: {exc}")
            raise
        except asyncio.CancelledError:
            await self._finish(generation, begun, meta, error=INTERRUPTED)
            raise
        except Exception:
            log.exception("generation %s failed unexpectedly", generation.id)
            await self._finish(generation, begun, meta, error="internal error; see the log.")
            return generation
        return generation

    async def _enhance(self, generation: Generation) -> tuple[str, str | None, str | None]:
        """``(prompt for the model, original prompt or None, enhancement error or None)``."""
        if not generation.auto_enhance:
            return generation.user_prompt, None, None
        return await self.enhance(generation.user_prompt, generation.enhancement_template)

    async def enhance(self, text: str, template: str) -> tuple[str, str | None, str | None]:
        """``text`` rewritten by the provider for ``template``: ``(prompt, original or
        None when unchanged, the provider's error or None)``."""
        try:
            enhanced = (await self.provider.enhance(text, template)).strip()
        except ProviderError as exc:
            return text, None, exc.message
        enhanced = enhanced[:MAX_ENHANCED_LENGTH]
        if not enhanced or enhanced == text:
            return text, None, None
        return enhanced, text, None

    async def _reference_bytes(self, rows: list[Image]) -> list[ReferenceImage]:
        found = []
        for row in rows:
            try:
                found.append(ReferenceImage(await self.storage.get(row.storage_key), row.mime_type))
            except FileNotFoundError:
                log.warning("reference image file %s is missing; skipped", row.storage_key)
        return found

    def _count_call(self, ok: bool, model: str | None = None) -> None:
        if self.metrics is not None:
            name = self.provider.name
            model = model or getattr(self.provider, "image_model", None) or name
            self.metrics.provider_call(name, model, ok)

    def set(self, generation: Generation, **values: Any) -> None:
        """Update the row and the object (inside a write)."""
        values["updated_at"] = self.clock.now_us()
        Generation.update(**values).where(Generation.id == generation.id).execute()
        for name, value in values.items():
            setattr(generation, name, value)

    async def _finish(
        self, generation: Generation, begun: float, meta: dict[str, Any], error: str
    ) -> None:
        """Record the run as failed with ``error``."""
        await self.db.write(
            self.set,
            generation,
            status="failed",
            error_message=error,
            processing_time_ms=int((time.perf_counter() - begun) * 1000),
            meta=meta,
        )

    # ---------------------------------------------------------------- leases

    def renew_leases(self) -> None:
        """Extend the leases of this process's running generations (inside a write)."""
        if self.running:
            Generation.update(lease_expires_at=self.clock.now_us() + LEASE_US).where(
                Generation.id.in_(list(self.running))
                & Generation.status.in_(("pending", "processing"))
            ).execute()

    async def recover_interrupted(self) -> int:
        """Mark as failed, exactly once, the unfinished generations whose process is
        gone: a lapsed lease, or a holder on this host that no longer runs. Then bring
        their output images' rows back in line with the stored files (a crash between
        rewriting a file in place and updating its row)."""
        stuck = await self.db.write(self._fail_abandoned)
        if not stuck:
            return 0
        log.warning("marked %d interrupted generation(s) as failed", len(stuck))
        for _, image_id in stuck:
            if image_id:
                await self._reconcile_image(image_id)
        return len(stuck)

    def _fail_abandoned(self) -> list[tuple[str, str | None]]:
        now = self.clock.now_us()
        unfinished = Generation.status.in_(("pending", "processing"))
        owners = {
            g.lease_owner
            for g in Generation.select(Generation.lease_owner).where(unfinished).distinct()
        }
        gone = [o for o in owners if o is not None and o != self.owner and not owner_alive(o)]
        abandoned = unfinished & (
            Generation.lease_owner.is_null()
            | Generation.lease_owner.in_(gone)
            | (Generation.lease_expires_at < now)
        )
        stuck = [
            (g.id, g.output_image_id)
            for g in Generation.select(Generation.id, Generation.output_image_id).where(abandoned)
        ]
        if stuck:
            Generation.update(status="failed", error_message=INTERRUPTED, updated_at=now).where(
                Generation.id.in_([gid for gid, _ in stuck]) & unfinished
            ).execute()
        return stuck

    async def _reconcile_image(self, image_id: str) -> None:
        image = await self.db.read(Image.get_or_none, Image.id == image_id)
        if image is None:
            return
        try:
            data = await self.storage.get(image.storage_key)
            width, height = measure(data)
        except FileNotFoundError:
            return  # purge orphans reports a row without a file
        except Exception:  # unreadable bytes: leave the row, the log says why
            log.exception("could not check image %s after an interrupted rewrite", image_id)
            return
        file_hash = hashlib.sha256(data).hexdigest()
        if file_hash != image.file_hash:
            facts = {
                "file_hash": file_hash, "file_size": len(data), "width": width,
                "height": height, "mime_type": sniff(data) or image.mime_type,
            }  # fmt: skip
            stale = await self.db.write(self.store.rewrite_image, image_id, facts)
            await self.store.cascade.remove_files(stale)
            log.warning("image %s row updated to match its rewritten file", image_id)


def _reference_rows(generation_id: str) -> list[Image]:
    return list(
        Image.select(Image.storage_key, Image.mime_type)
        .join(GenerationReference, on=GenerationReference.image_id == Image.id)
        .where(GenerationReference.generation_id == generation_id)
        .order_by(GenerationReference.position)
    )
