"""Live URLs (API.md §5.1): generate once, then serve from cache.

One pipeline serves ``/cdn/{org}/{project}/live/{scope}`` (public, per-IP limited
misses) and ``/api/v1/live/generate`` (a project key, counted by the key's limit).
``LiveService`` is what the routes and other services call; the steps live beside it:

1. the query is checked and turned into a cache key, once per distinct query string
   (``live_query``);
2. **HIT from memory**: the bytes come from the shared image LRU; the hit is counted
   in memory only — ``HitCounter`` writes counts in the background (``live_hits``);
3. a generation already running for the key in this process is joined and answered
   as a HIT when it finishes;
4. **HIT from the database**: the stored entry and its bytes, read off the event
   loop, fill the memory cache (``live_hits``);
5. **MISS**: one write transaction takes the key's claim in ``live_claims`` — the
   single flight across every worker and instance — and the winner generates once
   (``live_claims``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from cachetools import LRUCache

from banatie_local.clock import Clock
from banatie_local.config import Settings
from banatie_local.constants import MAX_LIVE_PROMPT_LENGTH
from banatie_local.db.boundary import Database
from banatie_local.db.models import LiveCacheEntry, LiveScope
from banatie_local.errors import ValidationError
from banatie_local.services.cascade import Tick
from banatie_local.services.context import Context
from banatie_local.services.generation_request import GenerationRequest
from banatie_local.services.generations import GenerationService
from banatie_local.services.imagecache import ImageCache
from banatie_local.services.live_claims import LiveClaims, Outcome, generation_failed
from banatie_local.services.live_hits import HitCounter, LiveResult, StoredHits
from banatie_local.services.live_query import (
    KnownQuery,
    LiveParams,
    Memo,
    QueryMemo,
    cache_key,
    parse_live_params,
)
from banatie_local.services.owner import owner_id
from banatie_local.services.projects import ProjectService
from banatie_local.services.ratelimit import SharedLimiter
from banatie_local.services.scopes import ScopeService
from banatie_local.storage import Storage

__all__ = [
    "HitCounter",
    "KnownQuery",
    "LiveParams",
    "LiveResult",
    "LiveService",
    "cache_key",
    "generation_failed",
    "parse_live_params",
]


@dataclass
class LiveService:
    db: Database
    clock: Clock
    settings: Settings
    storage: Storage
    cache: ImageCache
    projects: ProjectService
    scopes: ScopeService
    generations: GenerationService
    limiter: SharedLimiter
    counter: HitCounter
    owner: str = field(default_factory=owner_id)
    # (org, project, scope, raw query string) -> what validating it gave, so a repeat
    # request skips parsing, the project lookup and hashing.
    known_keys: LRUCache[Memo, KnownQuery] = field(default_factory=lambda: LRUCache(maxsize=50_000))
    queries: QueryMemo = field(init=False)
    stored: StoredHits = field(init=False)
    claims: LiveClaims = field(init=False)

    def __post_init__(self) -> None:
        self.queries = QueryMemo(self.db, self.known_keys)
        self.stored = StoredHits(self.db, self.storage, self.cache, self.counter)
        self.claims = LiveClaims(
            self.db, self.clock, self.settings, self.projects, self.scopes, self.generations,
            self.limiter, self.storage, self.cache, self.counter, self.stored, self.owner,
        )  # fmt: skip

    # ------------------------------------------------------------- hot path

    def remembered(self, org: str, project: str, scope: str, query: str) -> KnownQuery | None:
        """The hot path's lookup: a query string validated before, or None."""
        return self.known_keys.get((org, project, scope, query))

    async def known_query(
        self, org: str, project: str, scope: str, query: str, arg: Callable[[str], str | None]
    ) -> KnownQuery:
        """Validate a live request and compute its cache key, once per distinct query
        (a repeat costs one dictionary lookup; the first may read the project's id)."""
        return await self.queries.known_query(org, project, scope, query, arg)

    def memory_hit(self, key: str) -> LiveResult | None:
        """The hot path: bytes from memory, the hit counted in memory."""
        entry = self.cache.get(("live", key))
        if entry is None:
            return None
        return LiveResult(entry, "HIT", self.counter.hit(key))

    # --------------------------------------------------------------- pipeline

    async def resolve(
        self,
        slugs: tuple[str, str],
        project_id: str,
        scope: str,
        params: LiveParams,
        key: str,
        client: str | None,
        context: Context | None = None,
    ) -> LiveResult:
        """Everything after a memory miss: join a running generation, hit the database,
        or generate. ``client`` is the IP to limit (None: limited by an API key)."""
        claims = self.claims
        for _ in range(100):  # each turn ends in an answer, or in a lapsed claim
            running = claims.inflight.get(key)
            if running is not None:
                return self._as_hit(key, await asyncio.shield(running))
            stored = await self.stored.read(key)
            if stored is not None:
                return stored
            admission = await self.db.write(
                claims.admit_miss, slugs, context, scope, key, client, self.clock.now_us()
            )
            if admission.scope is not None:
                return await claims.generate_once(admission, params, key)
            if admission.waiting_on is not None:
                waited = await claims.wait_for(key, admission.waiting_on)
                if waited is not None:
                    return waited
        raise generation_failed("the generation for this URL kept being abandoned.")

    def _as_hit(self, key: str, outcome: Outcome) -> LiveResult:
        if outcome.entry is None:
            raise outcome.error or generation_failed(None)
        return LiveResult(outcome.entry, "HIT", self.counter.hit(key), joined=True)

    @property
    def claim_lease_us(self) -> int:
        """How long a claim lasts unless its holder drops it (``LiveClaims``)."""
        return self.claims.claim_lease_us

    # ------------------------------------------------------------ scopes

    async def regenerate(
        self, ctx: Context, scope: LiveScope, image_id: str | None
    ) -> tuple[int, list[str]]:
        """Regenerate one image of the scope or all of them, in place (same ids and
        URLs). Returns how many succeeded and the image ids that were attempted."""
        entries = await self.db.read(self.scopes.entries, scope, image_id)
        if image_id is not None and not entries:
            raise ValidationError(
                f"image {image_id} is not in scope {scope.slug}.",
                "IMAGE_NOT_IN_SCOPE",
                field="imageId",
            )
        done = 0
        for entry in entries:
            generation = await self.db.read(self.generations.find, entry.generation_id)
            if generation is not None:
                generation = await self.generations.regenerate(ctx, generation)
            else:
                request = GenerationRequest(
                    prompt=entry.prompt, aspect_ratio=entry.aspect_ratio, flow_id=None,
                    auto_enhance=entry.auto_enhance, template=entry.template,
                    prompt_limit=MAX_LIVE_PROMPT_LENGTH, output_image_id=entry.image_id,
                )  # fmt: skip
                generation = await self.generations.create(ctx, request, wait=True)
                entry.generation_id = generation.id
                await self.db.write(entry.save)
            done += generation.status == "success"
        return done, [entry.image_id for entry in entries]

    async def delete_scope(self, scope: LiveScope) -> None:
        self.forget(await self.scopes.delete(scope))

    async def purge(self, entries: list[LiveCacheEntry], tick: Tick | None = None) -> None:
        """Drop cache entries and their unaliased images (``purge cache``); ``tick(1)``
        per file removed."""
        await self.scopes.cascade.delete_live_entries(entries, tick)
        self.forget([entry.cache_key for entry in entries])

    # ------------------------------------------------------------ maintenance

    def sweep_claims(self) -> None:
        """Drop claims long lapsed (inside a write); a live one is never touched."""
        self.claims.sweep_claims()

    def forget(self, keys: list[str]) -> None:
        """Drop cache keys whose entries were deleted (scope delete, purge)."""
        for key in keys:
            self.cache.pop(("live", key))
        self.counter.forget(keys)

    async def shutdown(self) -> None:
        await self.claims.shutdown()
        await self.counter.flush()
