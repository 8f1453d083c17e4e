"""Generations (API.md §2): one code path for the API, live URLs, regenerate and the CLI.

A generation row is written ``pending`` before any work starts, goes ``processing``,
and ends ``success`` or ``failed``; a row left behind by a crash is marked failed at
the next start (``recover_interrupted``). The output is stored before its image row
is committed, so a crash leaves at worst a file without a row, never a row without
a file. Regeneration rewrites the same image id, storage key and URL with new bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from banatie_local.clock import Clock, iso
from banatie_local.config import Settings
from banatie_local.constants import (
    ASPECT_RATIOS,
    DEFAULT_API_ASPECT_RATIO,
    DEFAULT_TEMPLATE,
    MAX_PROMPT_LENGTH,
    TEMPLATES,
)
from banatie_local.db.boundary import Database
from banatie_local.db.models import (
    FlowCount,
    Generation,
    GenerationReference,
    Image,
    ProjectCount,
)
from banatie_local.errors import NotFoundError, ValidationError
from banatie_local.providers import ImageProvider, ProviderError, ReferenceImage
from banatie_local.providers.base import GeneratedImage, measure
from banatie_local.services.aliases import AliasService, Reference, check_alias
from banatie_local.services.cascade import Cascade
from banatie_local.services.context import Context
from banatie_local.services.flows import ABSENT, FlowChoice, FlowService, choose_flow
from banatie_local.services.imagefile import sniff
from banatie_local.services.owner import owner_alive, owner_id
from banatie_local.services.validation import is_uuid, new_id
from banatie_local.storage import Storage, StorageError, image_key

log = logging.getLogger(__name__)

STATUSES: Final = ("pending", "processing", "success", "failed")
SYSTEM_META: Final = ("provider", "model", "enhancementError")
MAX_EXPLICIT_REFERENCES: Final = 20
MAX_ENHANCED_LENGTH: Final = 10_000
INTERRUPTED: Final = "interrupted: the server stopped before this generation finished."
# A running generation's lease is renewed by its process every few seconds
# (``renew_leases``); one that lapses means the process died, and any process then
# marks the generation failed, exactly once (``recover_interrupted``).
LEASE_US: Final = 30_000_000
# what a run starts from: the processing row, its reference rows, its existing output
_Started = tuple[Generation, list[Image], Image | None]


@dataclass(frozen=True)
class GenerationRequest:
    """What a caller asks for; checked by ``GenerationService.create``."""

    prompt: str
    aspect_ratio: str = DEFAULT_API_ASPECT_RATIO
    reference_images: list[str] = field(default_factory=list)
    flow_id: Any = ABSENT
    alias: str | None = None
    flow_alias: str | None = None
    auto_enhance: bool = True
    template: str = DEFAULT_TEMPLATE
    meta: dict[str, Any] | None = None
    prompt_limit: int = MAX_PROMPT_LENGTH
    image_meta: dict[str, Any] | None = None  # meta of a newly made output image
    output_image_id: str | None = None  # write over this image (regenerate in place)


def check_prompt(prompt: object, limit: int = MAX_PROMPT_LENGTH) -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValidationError("prompt is required and must be non-empty text.", "prompt")
    text = prompt.strip()
    if len(text) > limit:
        raise ValidationError(f"prompt must be at most {limit} characters.", "prompt")
    return text


def check_aspect_ratio(value: object, field_name: str = "aspectRatio") -> str:
    if not isinstance(value, str) or value not in ASPECT_RATIOS:
        raise ValidationError(
            f"{field_name} must be one of {', '.join(ASPECT_RATIOS)}.",
            field_name,
            "INVALID_ASPECT_RATIO",
        )
    return value


def check_template(value: object, field_name: str = "enhancementOptions.template") -> str:
    if not isinstance(value, str) or value not in TEMPLATES:
        raise ValidationError(f"{field_name} must be one of {', '.join(TEMPLATES)}.", field_name)
    return value


@dataclass(frozen=True)
class GenerationFilters:
    flow_id: str | None = None
    status: str | None = None


@dataclass
class GenerationService:
    db: Database
    clock: Clock
    settings: Settings
    storage: Storage
    aliases: AliasService
    flows: FlowService
    cascade: Cascade
    provider: ImageProvider
    owner: str = field(default_factory=owner_id)  # this process, as lease holder
    _tasks: set[asyncio.Task[Generation]] = field(default_factory=set, init=False)
    _running: set[str] = field(default_factory=set, init=False)
    # The meta a first output image gets, by generation, while its run is pending.
    _image_meta: dict[str, dict[str, Any]] = field(default_factory=dict, init=False)

    # ----------------------------------------------------------------- create

    async def create(
        self, ctx: Context, request: GenerationRequest, wait: bool = True
    ) -> Generation:
        """Record a generation and run it now (``wait``) or in the background."""
        prompt = check_prompt(request.prompt, request.prompt_limit)
        ratio = check_aspect_ratio(request.aspect_ratio)
        template = check_template(request.template)
        alias = check_alias(request.alias) if request.alias is not None else None
        flow_alias = (
            check_alias(request.flow_alias, "flowAlias") if request.flow_alias is not None else None
        )
        if len(request.reference_images) > MAX_EXPLICIT_REFERENCES:
            raise ValidationError(
                f"at most {MAX_EXPLICIT_REFERENCES} referenceImages entries are accepted.",
                "referenceImages",
                "TOO_MANY_REFERENCES",
            )
        choice = choose_flow(request.flow_id, flow_alias)
        # Only a flow the caller named is a context; a newly announced one is empty.
        context = choice.flow_id if request.flow_id is not ABSENT else None
        values = {
            "prompt": prompt, "aspect_ratio": ratio, "enhancement_template": template,
            "output_alias": alias, "output_flow_alias": flow_alias,
        }  # fmt: skip
        if wait:  # recorded as already processing: one write fewer on the way
            started = await self.db.write(
                self._record_started, ctx, request, values, choice, context
            )
            generation_id = str(started[0].id)
            if request.image_meta:
                self._image_meta[generation_id] = request.image_meta
            return await self.run(ctx, generation_id, started)
        generation_id = await self.db.write(self._record, ctx, request, values, choice, context)
        if request.image_meta:
            self._image_meta[generation_id] = request.image_meta
        task = asyncio.get_running_loop().create_task(self.run(ctx, generation_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return await self.db.read(self.get_by_id, generation_id)

    def _record(
        self,
        ctx: Context,
        request: GenerationRequest,
        values: dict[str, Any],
        choice: FlowChoice,
        context: str | None,
    ) -> str:
        """The pending row with its references (inside a write)."""
        return str(self._insert(ctx, request, values, choice, context, "pending").id)

    def _record_started(
        self,
        ctx: Context,
        request: GenerationRequest,
        values: dict[str, Any],
        choice: FlowChoice,
        context: str | None,
    ) -> _Started:
        """The row already processing, for a generation run at once (inside a write);
        what ``_start`` would return."""
        generation = self._insert(ctx, request, values, choice, context, "processing")
        existing = (
            Image.get_or_none(Image.id == generation.output_image_id)
            if generation.output_image_id
            else None
        )
        return generation, _reference_rows(generation.id), existing

    def _insert(
        self,
        ctx: Context,
        request: GenerationRequest,
        values: dict[str, Any],
        choice: FlowChoice,
        context: str | None,
        status: str,
    ) -> Generation:
        references = self.aliases.references(
            ctx.project_id, request.reference_images, values["prompt"], context
        )
        self.flows.apply(ctx.project_id, choice)
        now = self.clock.now_us()
        generation = Generation.create(
            id=new_id(),
            project_id=ctx.project_id,
            flow_id=choice.flow_id,
            api_key_id=ctx.api_key.id if ctx.api_key else None,
            original_prompt=None,
            user_prompt=values["prompt"],
            auto_enhance=request.auto_enhance,
            status=status,
            output_image_id=request.output_image_id,
            meta=request.meta or {},
            lease_owner=self.owner,
            lease_expires_at=now + LEASE_US,
            created_at=now,
            updated_at=now,
            **values,
        )
        self._save_references(generation.id, references)
        return generation

    def _save_references(self, generation_id: str, references: list[Reference]) -> None:
        for position, ref in enumerate(references):
            GenerationReference.create(
                generation_id=generation_id,
                position=position,
                image_id=ref.image.id,
                alias_name=ref.alias,
            )

    # -------------------------------------------------------------------- run

    async def run(
        self, ctx: Context, generation_id: str, started: _Started | None = None
    ) -> Generation:
        """Take a generation from pending (or ``started``: already processing) to
        success or failed; return its final row. Never raises for a provider failure;
        a storage failure is recorded and then re-raised."""
        self._running.add(generation_id)
        try:
            if started is None:
                started = await self.db.write(self._start, generation_id)
            return await self._run(ctx, *started)
        finally:
            self._running.discard(generation_id)
            self._image_meta.pop(generation_id, None)

    def _start(self, generation_id: str) -> _Started:
        """Mark it processing; with its reference rows and existing output (one write)."""
        generation: Generation = Generation.get_by_id(generation_id)
        self._set(
            generation,
            status="processing",
            error_message=None,
            lease_owner=self.owner,
            lease_expires_at=self.clock.now_us() + LEASE_US,
        )
        existing = (
            Image.get_or_none(Image.id == generation.output_image_id)
            if generation.output_image_id
            else None
        )
        return generation, _reference_rows(generation_id), existing

    async def _run(
        self,
        ctx: Context,
        generation: Generation,
        reference_rows: list[Image],
        existing: Image | None,
    ) -> Generation:
        generation_id = generation.id
        started = time.perf_counter()
        meta = {k: v for k, v in generation.meta.items() if k not in SYSTEM_META}
        meta["provider"] = self.provider.name
        try:
            prompt, original, enhancement_error = await self._enhance(generation)
            if enhancement_error:
                meta["enhancementError"] = enhancement_error
            references = await self._reference_bytes(reference_rows)
            result = await self.provider.generate(prompt, generation.aspect_ratio, references)
            meta["model"] = result.model

            def succeed(image_id: str) -> None:  # in the same write as the image row
                self._set(
                    generation, status="success", error_message=None, meta=meta,
                    processing_time_ms=int((time.perf_counter() - started) * 1000),
                    prompt=prompt, original_prompt=original, output_image_id=image_id,
                )  # fmt: skip

            await self._store(ctx, generation, existing, result, succeed)
        except ProviderError as exc:
            await self._finish(generation, started, meta, "failed", error=exc.message)
            return generation
        except StorageError as exc:
            await self._finish(generation, started, meta, "failed", error=f"storage failed: {exc}")
            raise
        except asyncio.CancelledError:
            await self._finish(generation, started, meta, "failed", error=INTERRUPTED)
            raise
        except Exception:
            log.exception("generation %s failed unexpectedly", generation_id)
            await self._finish(
                generation, started, meta, "failed", error="internal error; see the log."
            )
            return generation
        return generation

    async def _enhance(self, generation: Generation) -> tuple[str, str | None, str | None]:
        """``(prompt for the model, original prompt or None, enhancement error or None)``."""
        text = generation.user_prompt
        if not generation.auto_enhance:
            return text, None, None
        try:
            enhanced = (await self.provider.enhance(text, generation.enhancement_template)).strip()
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

    async def _store(
        self,
        ctx: Context,
        generation: Generation,
        existing: Image | None,
        result: GeneratedImage,
        succeed: Callable[[str], None],
    ) -> str:
        """Write the output: over the existing output image (regeneration), else new."""
        file_hash = hashlib.sha256(result.data).hexdigest()
        facts = {
            "mime_type": result.mime_type,
            "file_size": len(result.data),
            "file_hash": file_hash,
            "width": result.width,
            "height": result.height,
        }
        if existing is not None:
            await self.storage.put(existing.storage_key, result.data, result.mime_type)
            await self.db.write(self._rewrite_image, existing.id, facts, succeed)
            return str(existing.id)
        image_id = new_id()
        key = image_key(ctx.organization.slug, ctx.project.slug, image_id)
        await self.storage.put(key, result.data, result.mime_type)
        try:
            await self.db.write(self._insert_output, generation, image_id, key, facts, succeed)
        except BaseException:
            await self.cascade.remove_files([key])
            raise
        return image_id

    def _rewrite_image(
        self,
        image_id: str,
        facts: dict[str, Any],
        succeed: Callable[[str], None] | None = None,
    ) -> None:
        Image.update(**facts, updated_at=self.clock.now_us()).where(Image.id == image_id).execute()
        self.cascade.cache.evict_image(image_id)
        if succeed is not None:
            succeed(image_id)

    def _insert_output(
        self,
        generation: Generation,
        image_id: str,
        key: str,
        facts: dict[str, Any],
        succeed: Callable[[str], None],
    ) -> None:
        now = self.clock.now_us()
        image = Image.create(
            id=image_id,
            project_id=generation.project_id,
            flow_id=generation.flow_id,
            generation_id=generation.id,
            storage_key=key,
            source="generated",
            meta=self._image_meta.get(generation.id, {}),
            created_at=now,
            updated_at=now,
            **facts,
        )
        Generation.update(output_image_id=image_id).where(Generation.id == generation.id).execute()
        self._output_aliases(generation, image)
        succeed(image_id)

    def _output_aliases(self, generation: Generation, image: Image) -> None:
        if generation.output_alias:
            for changed in self.aliases.assign_project_alias(image, generation.output_alias):
                self.cascade.cache.evict_image(changed)
        if generation.output_flow_alias and generation.flow_id:
            self.flows.ensure(generation.project_id, generation.flow_id)
            self.aliases.set_flow_alias(generation.flow_id, generation.output_flow_alias, image.id)

    def _set(self, generation: Generation, **values: Any) -> None:
        values["updated_at"] = self.clock.now_us()
        Generation.update(**values).where(Generation.id == generation.id).execute()
        for name, value in values.items():
            setattr(generation, name, value)

    async def _finish(
        self,
        generation: Generation,
        started: float,
        meta: dict[str, Any],
        status: str,
        error: str | None = None,
        **values: Any,
    ) -> None:
        await self.db.write(
            self._set,
            generation,
            status=status,
            error_message=error,
            processing_time_ms=int((time.perf_counter() - started) * 1000),
            meta=meta,
            **values,
        )

    # ---------------------------------------------------------- regenerate etc.

    async def regenerate(self, ctx: Context, generation: Generation) -> Generation:
        """Run again with the stored parameters, in place; ``retryCount`` + 1."""
        await self.db.write(
            self._set, generation, status="pending", retry_count=generation.retry_count + 1
        )
        return await self.run(ctx, generation.id)

    async def update(
        self,
        ctx: Context,
        generation: Generation,
        prompt: str | None = None,
        aspect_ratio: str | None = None,
        flow_id: Any = ABSENT,
        meta: dict[str, Any] | None = None,
    ) -> Generation:
        """Change the row; a new ``prompt`` or ``aspectRatio`` regenerates in place."""
        changes: dict[str, Any] = {}
        if prompt is not None:
            changes["user_prompt"] = check_prompt(prompt)
        if aspect_ratio is not None:
            changes["aspect_ratio"] = check_aspect_ratio(aspect_ratio)
        rerun = any(
            changes.get(k, getattr(generation, k)) != getattr(generation, k)
            for k in ("user_prompt", "aspect_ratio")
        )
        await self.db.write(self._change, ctx, generation, changes, flow_id, meta)
        if rerun:
            await self.db.write(self._set, generation, status="pending")
            await self.run(ctx, generation.id)
        return await self.db.read(self.get_by_id, generation.id)

    def _change(
        self,
        ctx: Context,
        generation: Generation,
        changes: dict[str, Any],
        flow_id: Any,
        meta: dict[str, Any] | None,
    ) -> None:
        if flow_id is not ABSENT:
            changes["flow_id"] = self._move_to_flow(ctx, generation, flow_id)
        if meta is not None:
            system = {k: v for k, v in generation.meta.items() if k in SYSTEM_META}
            changes["meta"] = {**meta, **system}
        if changes:
            self._set(generation, **changes)

    def _move_to_flow(self, ctx: Context, generation: Generation, flow_id: Any) -> str | None:
        """Detach (None) or attach (a UUID, creating the flow); the output image follows."""
        if flow_id is not None:
            if not isinstance(flow_id, str) or not is_uuid(flow_id):
                raise ValidationError("flowId must be a UUID or null.", "flowId")
            flow_id = flow_id.lower()
            self.flows.ensure(ctx.project_id, flow_id)
        if generation.output_image_id:
            Image.update(flow_id=flow_id, updated_at=self.clock.now_us()).where(
                Image.id == generation.output_image_id
            ).execute()
        return flow_id  # type: ignore[no-any-return]

    async def delete(self, generation: Generation) -> None:
        """Delete the row; its output image goes too unless it has a project alias."""
        await self.cascade.delete_generation(generation)

    # ------------------------------------------------------------------ reads

    def find(self, generation_id: str | None) -> Generation | None:
        if generation_id is None:
            return None
        generation: Generation | None = Generation.get_or_none(Generation.id == generation_id)
        return generation

    def get_by_id(self, generation_id: str) -> Generation:
        generation: Generation = Generation.get_by_id(generation_id)
        return generation

    def get(self, ctx: Context, generation_id: str) -> Generation:
        """A generation of this project; 404 ``GENERATION_NOT_FOUND`` otherwise."""
        generation = None
        if is_uuid(generation_id):
            generation = Generation.get_or_none(
                (Generation.id == generation_id.lower()) & (Generation.project_id == ctx.project_id)
            )
        if generation is None:
            raise NotFoundError(
                f"generation {generation_id} does not exist.", "GENERATION_NOT_FOUND"
            )
        return generation

    def list_page(
        self, ctx: Context, filters: GenerationFilters, limit: int, offset: int
    ) -> tuple[list[Generation], int]:
        query = Generation.select().where(Generation.project_id == ctx.project_id)
        if filters.flow_id is not None:
            query = query.where(Generation.flow_id == filters.flow_id)
        if filters.status is not None:
            query = query.where(Generation.status == filters.status)
        total = self._total(ctx.project_id, filters, query)
        rows = list(query.order_by(Generation.created_at.desc()).limit(limit).offset(offset))
        return rows, total

    @staticmethod
    def _total(project_id: str, filters: GenerationFilters, query: Any) -> int:
        """The count ``list_page`` reports, from the trigger-kept counts where one
        answers the filters; else counted over the flow's index range."""
        if filters.flow_id is None:
            statuses = STATUSES if filters.status is None else (filters.status,)
            return ProjectCount.total(project_id, [f"generations/{s}" for s in statuses])
        if filters.status is None:
            counts = FlowCount.of(project_id, filters.flow_id)
            if counts is not None:
                return int(counts.generations)
        count: int = query.count()
        return count

    # -------------------------------------------------------------- lifecycle

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

    def renew_leases(self) -> None:
        """Extend the leases of this process's running generations (inside a write)."""
        if self._running:
            Generation.update(lease_expires_at=self.clock.now_us() + LEASE_US).where(
                Generation.id.in_(list(self._running))
                & Generation.status.in_(("pending", "processing"))
            ).execute()

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
            await self.db.write(self._rewrite_image, image_id, facts)
            log.warning("image %s row updated to match its rewritten file", image_id)

    async def shutdown(self) -> None:
        """Cancel background generations; each records itself as interrupted."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _reference_rows(generation_id: str) -> list[Image]:
    return list(
        Image.select(Image.storage_key, Image.mime_type)
        .join(GenerationReference, on=GenerationReference.image_id == Image.id)
        .where(GenerationReference.generation_id == generation_id)
        .order_by(GenerationReference.position)
    )


# --------------------------------------------------------------------- output


def present_generations(
    generations: list[Generation], present_image: Callable[[Image], dict[str, Any]]
) -> list[dict[str, Any]]:
    """Generation objects of API.md §2, with relations loaded in three queries."""
    ids = [g.id for g in generations]
    references: dict[str, list[GenerationReference]] = {gid: [] for gid in ids}
    for ref in (
        GenerationReference.select()
        .where(GenerationReference.generation_id.in_(ids))
        .order_by(GenerationReference.position)
    ):
        references[ref.generation_id].append(ref)
    wanted = {g.output_image_id for g in generations if g.output_image_id}
    wanted |= {r.image_id for refs in references.values() for r in refs}
    images = {img.id: img for img in Image.select().where(Image.id.in_(list(wanted)))}
    return [_generation_dict(g, references[g.id], images, present_image) for g in generations]


def _generation_dict(
    g: Generation,
    refs: list[GenerationReference],
    images: dict[str, Image],
    present_image: Callable[[Image], dict[str, Any]],
) -> dict[str, Any]:
    output = images.get(g.output_image_id) if g.output_image_id else None
    return {
        "id": g.id,
        "projectId": g.project_id,
        "flowId": g.flow_id,
        "prompt": g.prompt,
        "originalPrompt": g.original_prompt,
        "autoEnhance": bool(g.auto_enhance),
        "aspectRatio": g.aspect_ratio,
        "status": g.status,
        "outputImageId": g.output_image_id,
        "outputImage": present_image(output) if output else None,
        "referencedImages": [{"imageId": r.image_id, "alias": r.alias_name} for r in refs],
        "referenceImages": [
            present_image(images[r.image_id]) for r in refs if r.image_id in images
        ],
        "processingTimeMs": g.processing_time_ms,
        "retryCount": g.retry_count,
        "errorMessage": g.error_message,
        "meta": g.meta,
        "createdAt": iso(g.created_at),
        "updatedAt": iso(g.updated_at),
    }
