"""Generations (API.md §2): one code path for the API, live URLs, regenerate and the CLI.

``GenerationService`` is the one class other code calls. A generation row is written
``pending`` before any work starts, goes ``processing``, and ends ``success`` or
``failed``. The parts live beside it: the request and its checks
(``generation_request``), the run with its leases and the recovery of interrupted
runs (``generation_run``), where the output goes (``generation_store``) and the reads
(``generation_queries``). Regeneration rewrites the same image id, storage key and
URL with new bytes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from banatie_local.clock import Clock
from banatie_local.config import Settings
from banatie_local.db.boundary import Database
from banatie_local.db.models import Generation, GenerationReference, Image
from banatie_local.errors import ValidationError
from banatie_local.metrics import Metrics
from banatie_local.providers import ImageProvider
from banatie_local.services import generation_queries as queries
from banatie_local.services.aliases import AliasService, Reference
from banatie_local.services.cascade import Cascade
from banatie_local.services.context import Context
from banatie_local.services.flows import ABSENT, FlowService
from banatie_local.services.generation_queries import STATUSES, GenerationFilters
from banatie_local.services.generation_request import (
    MAX_EXPLICIT_REFERENCES,
    CheckedRequest,
    GenerationRequest,
    check_aspect_ratio,
    check_prompt,
    check_request,
    check_template,
)
from banatie_local.services.generation_run import (
    INTERRUPTED,
    LEASE_US,
    ORIGIN_META,
    SYSTEM_META,
    GenerationRunner,
    Started,
    started_from,
)
from banatie_local.services.generation_store import GenerationStore, Output
from banatie_local.services.marking import Marker
from banatie_local.services.owner import owner_id
from banatie_local.services.validation import is_uuid, new_id
from banatie_local.storage import Storage

__all__ = [
    "INTERRUPTED",
    "LEASE_US",
    "MAX_EXPLICIT_REFERENCES",
    "STATUSES",
    "SYSTEM_META",
    "GenerationFilters",
    "GenerationRequest",
    "GenerationService",
    "check_aspect_ratio",
    "check_prompt",
    "check_template",
]


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
    metrics: Metrics | None = None
    marker: Marker = field(default_factory=Marker)  # provenance written into outputs
    _tasks: set[asyncio.Task[Generation]] = field(default_factory=set, init=False)
    store: GenerationStore = field(init=False)
    runner: GenerationRunner = field(init=False)

    def __post_init__(self) -> None:
        self.store = GenerationStore(
            self.db, self.clock, self.storage, self.aliases, self.flows, self.cascade,
            self.marker,
        )  # fmt: skip
        self.runner = GenerationRunner(
            self.db, self.clock, self.storage, self.provider, self.store, self.owner,
            metrics=self.metrics,
        )  # fmt: skip

    # ----------------------------------------------------------------- create

    async def create(
        self, ctx: Context, request: GenerationRequest, wait: bool = True
    ) -> Generation:
        """Record a generation and run it now (``wait``) or in the background."""
        checked = check_request(request)
        if wait:  # recorded as already processing: one write fewer on the way
            begun = await self.db.write(self._record_started, ctx, request, checked)
            generation_id = str(begun[0].id)
            self._plan_output(generation_id, request)
            return await self.runner.run(ctx, generation_id, begun)
        generation_id = await self.db.write(self._record, ctx, request, checked)
        self._plan_output(generation_id, request)
        task = asyncio.get_running_loop().create_task(self.runner.run(ctx, generation_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return await self.db.read(self.get_by_id, generation_id)

    def _plan_output(self, generation_id: str, request: GenerationRequest) -> None:
        if request.image_meta or request.publish:
            self.store.outputs[generation_id] = Output(request.image_meta, request.publish)

    def _record(self, ctx: Context, request: GenerationRequest, checked: CheckedRequest) -> str:
        """The pending row with its references (inside a write)."""
        return str(self._insert(ctx, request, checked, "pending").id)

    def _record_started(
        self, ctx: Context, request: GenerationRequest, checked: CheckedRequest
    ) -> Started:
        """The row already processing, for a generation run at once (inside a write);
        what the run would start from."""
        return started_from(self._insert(ctx, request, checked, "processing"))

    def _insert(
        self, ctx: Context, request: GenerationRequest, checked: CheckedRequest, status: str
    ) -> Generation:
        references = self.aliases.references(
            ctx.project_id, request.reference_images, checked.values["prompt"], checked.context
        )
        self.flows.apply(ctx.project_id, checked.choice)
        now = self.clock.now_us()
        generation = Generation.create(
            id=request.id or new_id(),
            project_id=ctx.project_id,
            flow_id=checked.choice.flow_id,
            api_key_id=ctx.api_key.id if ctx.api_key else None,
            original_prompt=None,
            user_prompt=checked.values["prompt"],
            auto_enhance=request.auto_enhance,
            status=status,
            output_image_id=request.output_image_id,
            meta=request.meta or {},
            lease_owner=self.owner,
            lease_expires_at=now + LEASE_US,
            created_at=now,
            updated_at=now,
            **checked.values,
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

    async def run(
        self, ctx: Context, generation_id: str, begun: Started | None = None
    ) -> Generation:
        """Take a generation from pending (or ``begun``: already processing) to
        success or failed; return its final row."""
        return await self.runner.run(ctx, generation_id, begun)

    async def enhance(self, prompt: str, template: str) -> tuple[str, str | None, str | None]:
        """``prompt`` as a run would enhance it for ``template`` (nothing is stored):
        ``(prompt, original or None when unchanged, the provider's error or None)``."""
        return await self.runner.enhance(check_prompt(prompt), check_template(template))

    # ---------------------------------------------------------- regenerate etc.

    async def regenerate(self, ctx: Context, generation: Generation) -> Generation:
        """Run again with the stored parameters, in place; ``retryCount`` + 1."""
        await self.db.write(
            self.runner.set, generation, status="pending", retry_count=generation.retry_count + 1
        )
        return await self.runner.run(ctx, generation.id)

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
            await self.db.write(self.runner.set, generation, status="pending")
            await self.runner.run(ctx, generation.id)
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
            kept = (*SYSTEM_META, *ORIGIN_META)  # a client's meta cannot rewrite these
            system = {k: v for k, v in generation.meta.items() if k in kept}
            changes["meta"] = {**meta, **system}
        if changes:
            self.runner.set(generation, **changes)

    def _move_to_flow(self, ctx: Context, generation: Generation, flow_id: Any) -> str | None:
        """Detach (None) or attach (a UUID, creating the flow); the output image follows."""
        if flow_id is not None:
            if not isinstance(flow_id, str) or not is_uuid(flow_id):
                raise ValidationError("flowId must be a UUID or null.", field="flowId")
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
    # plain queries, run inside ``db.read``

    find = staticmethod(queries.find)
    get_by_id = staticmethod(queries.get_by_id)
    get = staticmethod(queries.get)
    list_page = staticmethod(queries.list_page)

    # -------------------------------------------------------------- lifecycle

    async def recover_interrupted(self) -> int:
        """Mark as failed the unfinished generations whose process is gone; how many."""
        return await self.runner.recover_interrupted()

    def renew_leases(self) -> None:
        """Extend the leases of this process's running generations (inside a write)."""
        self.runner.renew_leases()

    async def shutdown(self) -> None:
        """Cancel background generations; each records itself as interrupted."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
