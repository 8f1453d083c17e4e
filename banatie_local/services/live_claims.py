"""The MISS of a live URL: single flight through ``live_claims``, across every worker
and instance.

One write transaction checks the client IP limit and the scope rules, counts the IP,
and takes the key's claim. The winner runs one generation through
``GenerationService`` in a task of its own (a client that disconnects does not cancel
it), records the cache entry and drops the claim in one write. A request that finds
the claim held elsewhere polls for the entry and is answered as a HIT; a claim whose
holder died (its process gone, or its lease lapsed) is taken over; a failure stays
on the claim for a few seconds so its waiters answer 502.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Final

from banatie_local.clock import Clock
from banatie_local.config import Settings
from banatie_local.constants import MAX_LIVE_PROMPT_LENGTH
from banatie_local.db.boundary import Database
from banatie_local.db.models import Image, LiveCacheEntry, LiveScope
from banatie_local.errors import ApiError, ForbiddenError, GenerationFailedError, RateLimitError
from banatie_local.services.context import Context
from banatie_local.services.generation_request import GenerationRequest
from banatie_local.services.generations import GenerationService
from banatie_local.services.imagecache import CachedImage, ImageCache
from banatie_local.services.live_hits import HitCounter, LiveResult, StoredHits
from banatie_local.services.live_query import LiveParams
from banatie_local.services.owner import owner_alive
from banatie_local.services.projects import ProjectService
from banatie_local.services.ratelimit import Decision, SharedLimiter
from banatie_local.services.scopes import ScopeService
from banatie_local.services.validation import new_id
from banatie_local.storage import Storage, StorageError

# one log for every part of the live pipeline
log = logging.getLogger("banatie_local.services.live")

_CLAIM_LOOKUP: Final = "SELECT holder, error, expires_at FROM live_claims WHERE cache_key = ?"
_CLAIM_POLL_SECONDS: Final = 0.1
# how long a failed claim stays visible, so the requests waiting on it see the failure
_FAILED_CLAIM_US: Final = 5_000_000


@dataclass
class Outcome:
    """How a generation for a key ended: its entry, or the error its waiters raise
    (an ``ApiError``, or a ``StorageError`` the HTTP layer answers as 503)."""

    entry: CachedImage | None
    generation_id: str | None = None
    error: Exception | None = None


@dataclass(frozen=True)
class Admission:
    """What the miss transaction decided: generate (``scope`` set), wait for another
    holder's claim (``waiting_on``), or read the entry that appeared meanwhile."""

    ctx: Context | None = None
    scope: LiveScope | None = None
    rate: Decision | None = None
    holder: str | None = None
    waiting_on: str | None = None


@dataclass
class LiveClaims:
    """The claims of live cache keys and the generations run under them."""

    db: Database
    clock: Clock
    settings: Settings
    projects: ProjectService
    scopes: ScopeService
    generations: GenerationService
    limiter: SharedLimiter
    storage: Storage
    cache: ImageCache
    counter: HitCounter
    stored: StoredHits
    owner: str
    # generations running in this process, by key: a second request joins the first
    inflight: dict[str, asyncio.Task[Outcome]] = field(default_factory=dict)

    @property
    def claim_lease_us(self) -> int:
        """A claim outlives the longest generation (enhancement and image, each with
        every retry), plus a margin; a holder that died is taken over after it."""
        g = self.settings.generation
        attempts = g.max_retries + 1
        backoff = g.retry_backoff_seconds * (2**attempts)
        return int((2 * attempts * g.timeout_seconds + backoff + 5) * 1_000_000)

    def admit_miss(
        self,
        slugs: tuple[str, str],
        context: Context | None,
        scope_slug: str,
        key: str,
        client: str | None,
        now: int,
    ) -> Admission:
        """One write transaction: wait for a live claim, or — the IP limit, the scope
        rules, then count the IP and take the claim."""
        self.db.lock(f"claim:{key}")  # one admission per key at a time, across instances
        claim = self.db.execute_sql(_CLAIM_LOOKUP, (key,)).fetchone()
        if claim is not None and claim[1] is None and _held(claim[0], claim[2], now):
            return Admission(waiting_on=claim[0])
        if self.stored.entry_row(key) is not None:
            return Admission()  # finished meanwhile: read it as a HIT
        limit = self.settings.live.new_generations_per_ip_per_hour
        if client is not None and limit > 0:
            peek = self.limiter.count(f"ip:{client}", limit, now / 1e6)
            if not peek.allowed:
                raise RateLimitError(
                    f"this address started {peek.limit} new generations in the last hour; "
                    f"retry in {peek.retry_after} seconds.",
                    headers=peek.headers(),
                )
        ctx = context or self._context(*slugs)
        scope = self._scope_for_miss(ctx, scope_slug, key, now)
        rate = None
        if client is not None and limit > 0:
            rate = self.limiter.admit_now(f"ip:{client}", limit, now / 1e6)
        holder = f"{self.owner}:{uuid.uuid4().hex[:8]}"
        self.db.execute_sql(
            "INSERT INTO live_claims (cache_key, scope_id, holder, error, expires_at)"
            " VALUES (?, ?, ?, NULL, ?) ON CONFLICT (cache_key) DO UPDATE SET"
            " scope_id = excluded.scope_id, holder = excluded.holder, error = NULL,"
            " expires_at = excluded.expires_at",
            (key, scope.id, holder, now + self.claim_lease_us),
        )
        return Admission(ctx, scope, rate, holder)

    def _context(self, org: str, project: str) -> Context:
        ref = self.projects.get(org, project)
        return Context(ref.organization, ref.project)

    def _scope_for_miss(self, ctx: Context, slug: str, key: str, now: int) -> LiveScope:
        project = ctx.project
        if (
            project.allow_new_live_scopes
            and project.new_live_scopes_generation_limit <= 0
            and self.scopes.find(project.id, slug) is None
        ):
            # A new scope could not hold a single generation: refuse without creating
            # it, so refused requests cannot add scope rows without bound.
            raise RateLimitError(
                f"scope {slug} would reach its limit of 0 generations.",
                "SCOPE_GENERATION_LIMIT_EXCEEDED",
            )
        scope = self.scopes.get_or_create_for_live(project, slug)
        if scope is None:
            raise ForbiddenError(
                f"scope {slug} does not exist and this project does not allow new scopes.",
                "SCOPE_CREATION_DISABLED",
            )
        if not scope.allow_new_generations:
            raise ForbiddenError(
                f"scope {slug} does not allow new generations.", "SCOPE_GENERATIONS_DISABLED"
            )
        # generations running anywhere count against the limit before their entries exist
        running = self.db.execute_sql(
            "SELECT COUNT(*) FROM live_claims WHERE scope_id = ? AND error IS NULL"
            " AND expires_at > ? AND cache_key <> ?",
            (scope.id, now, key),
        ).fetchone()[0]
        used = self.scopes.current_generations(scope) + int(running)
        if used >= scope.new_generations_limit:
            raise RateLimitError(
                f"scope {slug} reached its limit of {scope.new_generations_limit} generations.",
                "SCOPE_GENERATION_LIMIT_EXCEEDED",
            )
        return scope

    async def generate_once(self, admission: Admission, params: LiveParams, key: str) -> LiveResult:
        """Run the generation of a claim won, in a task that waiters in this process
        join; answer it as a MISS."""
        assert admission.ctx is not None
        assert admission.scope is not None
        assert admission.holder is not None
        task = asyncio.get_running_loop().create_task(
            self._generate(admission.ctx, admission.scope, params, key, admission.holder)
        )
        self.inflight[key] = task
        task.add_done_callback(lambda _: self.inflight.pop(key, None))
        outcome = await asyncio.shield(task)
        if outcome.entry is None:
            raise outcome.error or generation_failed(None)
        return LiveResult(outcome.entry, "MISS", 0, outcome.generation_id, admission.rate)

    async def wait_for(self, key: str, holder: str) -> LiveResult | None:
        """Another process holds the claim: poll until its entry appears (a HIT), it
        fails (its error), or its claim lapses (None: the caller tries again)."""
        while True:
            await asyncio.sleep(_CLAIM_POLL_SECONDS)
            stored = await self.stored.read(key)
            if stored is not None:
                return replace(stored, joined=True)
            claim = await self.db.read(self._claim_row, key)
            if claim is None or claim[0] != holder:
                return None
            if claim[1] is not None:
                raise generation_failed(claim[1])
            if not _held(claim[0], claim[2], self.clock.now_us()):
                return None

    def _claim_row(self, key: str) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self.db.execute_sql(_CLAIM_LOOKUP, (key,)).fetchone()
        return row

    async def _generate(
        self, ctx: Context, scope: LiveScope, params: LiveParams, key: str, holder: str
    ) -> Outcome:
        """Run one generation for a cache key; never raises (waiters read the outcome)."""
        request = GenerationRequest(
            prompt=params.prompt,
            aspect_ratio=params.aspect_ratio,
            flow_id=None,
            auto_enhance=params.auto_enhance,
            template=params.template,
            prompt_limit=MAX_LIVE_PROMPT_LENGTH,
            image_meta={"scope": scope.slug, "isLiveUrl": True, "cacheKey": key},
        )
        outcome = await self._attempt(ctx, scope, params, key, holder, request)
        if outcome.entry is None:
            try:
                await self.db.write(self._release, key, holder, _failure(outcome.error))
            except Exception:  # the claim then lapses on its own
                log.exception("could not release the live claim for %s", key)
        return outcome

    async def _attempt(
        self,
        ctx: Context,
        scope: LiveScope,
        params: LiveParams,
        key: str,
        holder: str,
        request: GenerationRequest,
    ) -> Outcome:
        try:
            generation = await self.generations.create(ctx, request, wait=True)
            if generation.status != "success" or generation.output_image_id is None:
                return Outcome(None, generation.id, generation_failed(generation.error_message))
            image = generation.output_image_id
            row = await self.db.read(_image_facts, image)
            data = await self.storage.get(row[2])
            await self.db.write(self._record, ctx, scope, params, key, image, generation.id, holder)
        except (StorageError, ApiError) as exc:
            return Outcome(None, None, exc)
        except Exception:
            log.exception("live generation for %s failed", key)
            return Outcome(None, None, generation_failed(None))
        entry = CachedImage(image, data, row[0], row[1], scope.slug)
        self.counter.forget([key])  # a new entry counts from zero
        self.counter.known(key, 0)
        self.cache.put(("live", key), entry)
        return Outcome(entry, generation.id)

    def _record(
        self,
        ctx: Context,
        scope: LiveScope,
        params: LiveParams,
        key: str,
        image_id: str,
        generation_id: str,
        holder: str,
    ) -> None:
        """The cache entry, and the claim dropped, in one transaction."""
        now = self.clock.now_us()
        LiveCacheEntry.insert(
            id=new_id(), project_id=ctx.project_id, scope_id=scope.id, cache_key=key,
            image_id=image_id, generation_id=generation_id, prompt=params.prompt,
            aspect_ratio=params.aspect_ratio, auto_enhance=params.auto_enhance,
            template=params.template, hit_count=0, created_at=now, updated_at=now,
        ).on_conflict(
            conflict_target=[LiveCacheEntry.cache_key],
            preserve=[LiveCacheEntry.project_id, LiveCacheEntry.scope_id, LiveCacheEntry.image_id,
                      LiveCacheEntry.generation_id, LiveCacheEntry.prompt,
                      LiveCacheEntry.aspect_ratio, LiveCacheEntry.auto_enhance,
                      LiveCacheEntry.template, LiveCacheEntry.hit_count,
                      LiveCacheEntry.created_at, LiveCacheEntry.updated_at],
        ).execute()  # fmt: skip
        self.db.execute_sql(
            "DELETE FROM live_claims WHERE cache_key = ? AND holder = ?", (key, holder)
        )

    def _release(self, key: str, holder: str, error: str) -> None:
        """A failed claim stays briefly, so its waiters read the failure."""
        self.db.execute_sql(
            "UPDATE live_claims SET error = ?, expires_at = ? WHERE cache_key = ? AND holder = ?",
            (error[:500], self.clock.now_us() + _FAILED_CLAIM_US, key, holder),
        )

    def sweep_claims(self) -> None:
        """Drop claims long lapsed (inside a write); a live one is never touched."""
        self.db.execute_sql(
            "DELETE FROM live_claims WHERE expires_at < ?", (self.clock.now_us() - 60_000_000,)
        )

    async def shutdown(self) -> None:
        """Cancel the generations running here; their claims lapse or are released."""
        for task in list(self.inflight.values()):
            task.cancel()
        await asyncio.gather(*self.inflight.values(), return_exceptions=True)


def generation_failed(message: str | None) -> ApiError:
    return GenerationFailedError(
        "the image could not be generated" + (f": {message}" if message else ".")
    )


def _failure(error: Exception | None) -> str:
    """What a failed claim tells the waiters of other processes."""
    if isinstance(error, ApiError):
        return error.message
    if isinstance(error, StorageError):
        return f"storage failed: {error}"
    return "failed"


def _held(holder: str, expires_at: int, now: int) -> bool:
    """A claim is held while its lease runs and its process is alive."""
    return expires_at > now and owner_alive(holder.rpartition(":")[0])


def _image_facts(image_id: str) -> tuple[Any, ...]:
    query = Image.select(Image.mime_type, Image.file_hash, Image.storage_key)
    row: tuple[Any, ...] = query.where(Image.id == image_id).tuples().get()  # type: ignore[assignment]
    return row
