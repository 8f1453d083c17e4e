"""Live URLs (API.md §5.1): generate once, then serve from cache.

One pipeline serves ``/cdn/{org}/{project}/live/{scope}`` (public, per-IP limited
misses) and ``/api/v1/live/generate`` (a project key, counted by the key's limit):

1. the query is checked and turned into a cache key (SHA-256 over project, scope,
   whitespace-normalised prompt, ratio, autoEnhance and template);
2. **HIT from memory**: the bytes and headers come from the shared image LRU; the hit
   is counted in memory only — ``HitCounter`` writes counts in the background;
3. a generation already running for the key is joined (single flight) and answered as
   a HIT when it finishes;
4. **HIT from the database**: one raw SQL query finds the entry, storage gives the
   bytes, and the memory cache is filled;
5. **MISS**: the client IP limit, then the scope rules, then one generation through
   ``GenerationService`` in a task of its own (a client that disconnects does not
   cancel it), then a cache entry.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from cachetools import LRUCache
from peewee import SqliteDatabase

from banatie_local.clock import Clock
from banatie_local.config import Settings
from banatie_local.constants import (
    ASPECT_RATIOS,
    DEFAULT_LIVE_ASPECT_RATIO,
    DEFAULT_TEMPLATE,
    MAX_LIVE_PROMPT_LENGTH,
    TEMPLATES,
)
from banatie_local.db.models import LiveCacheEntry, LiveScope
from banatie_local.errors import (
    ApiError,
    ForbiddenError,
    GenerationFailedError,
    NotFoundError,
    RateLimitError,
    StorageUnavailableError,
    ValidationError,
)
from banatie_local.services.context import Context
from banatie_local.services.generations import GenerationRequest, GenerationService
from banatie_local.services.imagecache import CachedImage, ImageCache
from banatie_local.services.projects import ProjectService
from banatie_local.services.ratelimit import Decision, SlidingWindowLimiter
from banatie_local.services.scopes import ScopeService, check_scope_slug
from banatie_local.services.validation import new_id
from banatie_local.storage import Storage, StorageError

log = logging.getLogger(__name__)

_TRUE: Final = ("true", "1", "yes")
_FALSE: Final = ("false", "0", "no")
_ENTRY_LOOKUP: Final = (
    "SELECT e.image_id, e.hit_count, i.mime_type, i.file_hash, i.storage_key, s.slug"
    " FROM live_cache_entries e"
    " JOIN images i ON i.id = e.image_id"
    " JOIN live_scopes s ON s.id = e.scope_id"
    " WHERE e.cache_key = ?"
)
_PROJECT_LOOKUP: Final = (
    "SELECT p.id FROM projects p JOIN organizations o ON o.id = p.organization_id"
    " WHERE o.slug = ? AND p.slug = ?"
)


@dataclass(frozen=True)
class LiveParams:
    prompt: str  # trimmed, runs of whitespace collapsed
    aspect_ratio: str
    auto_enhance: bool
    template: str


def parse_live_params(arg: Callable[[str], str | None]) -> LiveParams:
    """The query of a live URL, read through ``arg(name)``, checked (API.md §5.1)."""
    raw = arg("prompt")
    prompt = " ".join(raw.split()) if raw else ""
    if not prompt:
        raise ValidationError("prompt is required.", "prompt")
    if len(prompt) > MAX_LIVE_PROMPT_LENGTH:
        raise ValidationError(
            f"prompt must be at most {MAX_LIVE_PROMPT_LENGTH} characters.", "prompt"
        )
    ratio = arg("aspectRatio") or DEFAULT_LIVE_ASPECT_RATIO
    if ratio not in ASPECT_RATIOS:
        raise ValidationError(
            f"aspectRatio must be one of {', '.join(ASPECT_RATIOS)}.",
            "aspectRatio",
            "INVALID_ASPECT_RATIO",
        )
    enhance = (arg("autoEnhance") or "true").lower()
    if enhance not in _TRUE + _FALSE:
        raise ValidationError("autoEnhance must be true or false.", "autoEnhance")
    template = arg("template") or DEFAULT_TEMPLATE
    if template not in TEMPLATES:
        raise ValidationError(f"template must be one of {', '.join(TEMPLATES)}.", "template")
    return LiveParams(prompt, ratio, enhance in _TRUE, template)


def cache_key(project_id: str, scope: str, params: LiveParams) -> str:
    text = "\n".join(
        (project_id, scope, params.prompt, params.aspect_ratio,
         "1" if params.auto_enhance else "0", params.template)
    )  # fmt: skip
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class KnownQuery:
    key: str
    project_id: str
    params: LiveParams


@dataclass(frozen=True)
class LiveResult:
    entry: CachedImage
    status: str  # "HIT" or "MISS"
    hit_count: int
    generation_id: str | None = None
    rate: Decision | None = None


@dataclass
class _Outcome:
    entry: CachedImage | None
    generation_id: str | None = None
    error: ApiError | None = None


class HitCounter:
    """Hit counts kept in memory and written in batches, never on the request path."""

    def __init__(self, db: SqliteDatabase, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self.totals: dict[str, int] = {}
        self._pending: dict[str, tuple[int, int]] = {}  # key -> (hits, last hit µs)

    def known(self, key: str, stored: int) -> None:
        self.totals.setdefault(key, stored)

    def hit(self, key: str) -> int:
        total = self.totals.get(key, 0) + 1
        self.totals[key] = total
        hits, _ = self._pending.get(key, (0, 0))
        self._pending[key] = (hits + 1, time.time_ns() // 1000)
        return total

    def forget(self, keys: list[str]) -> None:
        """Drop counts of entries that are gone (a new entry for a key starts at 0)."""
        for key in keys:
            self.totals.pop(key, None)
            self._pending.pop(key, None)

    def flush(self) -> int:
        """Write the pending counts in one transaction; return how many entries.
        If the write fails, the counts are kept for the next flush."""
        pending, self._pending = self._pending, {}
        if not pending:
            return 0
        try:
            with self.db.atomic():
                for key, (hits, last) in pending.items():
                    LiveCacheEntry.update(
                        hit_count=LiveCacheEntry.hit_count + hits, last_hit_at=last
                    ).where(LiveCacheEntry.cache_key == key).execute()
        except BaseException:
            for key, (hits, last) in pending.items():
                newer_hits, newer_last = self._pending.get(key, (0, 0))
                self._pending[key] = (hits + newer_hits, max(last, newer_last))
            raise
        return len(pending)


@dataclass
class LiveService:
    db: SqliteDatabase
    clock: Clock
    settings: Settings
    storage: Storage
    cache: ImageCache
    projects: ProjectService
    scopes: ScopeService
    generations: GenerationService
    ip_limiter: SlidingWindowLimiter
    counter: HitCounter
    _project_ids: dict[tuple[str, str], str] = field(default_factory=dict)
    # (org, project, scope, raw query string) -> what validating it gave, so a repeat
    # request skips parsing, the project lookup and hashing.
    known_keys: LRUCache[tuple[str, str, str, str], KnownQuery] = field(
        default_factory=lambda: LRUCache(maxsize=50_000)
    )
    _inflight: dict[str, asyncio.Task[_Outcome]] = field(default_factory=dict)
    # Generations running per scope: they count against the scope's limit before
    # their cache entries exist.
    _running: dict[str, int] = field(default_factory=dict)
    _trusted: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._trusted = [
            ipaddress.ip_network(p, strict=False) for p in self.settings.server.trusted_proxies
        ]

    # --------------------------------------------------------------- helpers

    def project_id(self, org: str, project: str) -> str:
        """The project's id by slugs (cached: ids never change); 404 if unknown."""
        known = self._project_ids.get((org, project))
        if known is not None:
            return known
        row = self.db.execute_sql(_PROJECT_LOOKUP, (org, project)).fetchone()
        if row is None:
            raise NotFoundError(f"project {org}/{project} does not exist.", "PROJECT_NOT_FOUND")
        self._project_ids[(org, project)] = row[0]
        return str(row[0])

    def client_ip(self, peer: str, forwarded_for: str | None) -> str:
        """The socket peer, or — only behind a trusted proxy — the rightmost
        ``X-Forwarded-For`` address that is not itself a trusted proxy."""
        if not forwarded_for or not self._is_trusted(peer):
            return peer
        for candidate in reversed([part.strip() for part in forwarded_for.split(",")]):
            if not candidate:
                continue
            try:
                ipaddress.ip_address(candidate)
            except ValueError:
                return peer
            if not self._is_trusted(candidate):
                return candidate
        return peer

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._trusted)

    def known_query(
        self, org: str, project: str, scope: str, query: str, arg: Callable[[str], str | None]
    ) -> KnownQuery:
        """Validate a live request and compute its cache key, once per distinct query."""
        memo = (org, project, scope, query)
        known = self.known_keys.get(memo)
        if known is None:
            params = parse_live_params(arg)
            check_scope_slug(scope, "scope")
            project_id = self.project_id(org, project)
            known = KnownQuery(cache_key(project_id, scope, params), project_id, params)
            self.known_keys[memo] = known
        return known

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
        running = self._inflight.get(key)
        if running is not None:
            return self._as_hit(key, await asyncio.shield(running))
        stored = await self._stored_hit(key)
        if stored is not None:
            return stored
        return await self._miss(slugs, project_id, scope, params, key, client, context)

    async def _stored_hit(self, key: str) -> LiveResult | None:
        epoch = self.cache.epoch
        row = self.db.execute_sql(_ENTRY_LOOKUP, (key,)).fetchone()
        if row is None:
            return None
        image_id, hits, mime, file_hash, storage_key, scope = row
        try:
            data = await self.storage.get(storage_key)
        except FileNotFoundError:
            log.error("live image %s has no file; treating as a miss", image_id)
            return None
        entry = self._entry(image_id, data, mime, file_hash, scope)
        self.cache.put(("live", key), entry, epoch)
        self.counter.known(key, int(hits))
        return LiveResult(entry, "HIT", self.counter.hit(key))

    def _entry(
        self, image_id: str, data: bytes, mime: str, file_hash: str, scope: str
    ) -> CachedImage:
        etag = f'"{file_hash}"'
        headers = {
            "Cache-Control": f"public, max-age={self.settings.cdn.max_age}",
            "ETag": etag,
            "X-Image-Id": image_id,
            "X-Scope": scope,
        }
        return CachedImage(image_id, data, mime, etag, headers)

    def _as_hit(self, key: str, outcome: _Outcome) -> LiveResult:
        if outcome.entry is None:
            raise outcome.error or generation_failed(None)
        return LiveResult(outcome.entry, "HIT", self.counter.hit(key))

    async def _miss(
        self,
        slugs: tuple[str, str],
        project_id: str,
        scope_slug: str,
        params: LiveParams,
        key: str,
        client: str | None,
        context: Context | None,
    ) -> LiveResult:
        limiter = self.ip_limiter
        if client is not None and limiter.enabled:
            peek = limiter.check(client)
            if not peek.allowed:
                raise RateLimitError(
                    f"this address started {peek.limit} new generations in the last hour; "
                    f"retry in {peek.retry_after} seconds.",
                    headers=peek.headers(),
                )
        ctx = context or self._context(*slugs)
        scope = self._scope_for_miss(ctx, scope_slug)
        rate = limiter.hit(client) if client is not None and limiter.enabled else None
        task = asyncio.get_running_loop().create_task(self._generate(ctx, scope, params, key))
        self._inflight[key] = task
        self._running[scope.id] = self._running.get(scope.id, 0) + 1
        task.add_done_callback(lambda _: self._finished(key, scope.id))
        outcome = await asyncio.shield(task)
        if outcome.entry is None:
            raise outcome.error or generation_failed(None)
        return LiveResult(outcome.entry, "MISS", 0, outcome.generation_id, rate)

    def _finished(self, key: str, scope_id: str) -> None:
        self._inflight.pop(key, None)
        left = self._running.get(scope_id, 1) - 1
        if left > 0:
            self._running[scope_id] = left
        else:
            self._running.pop(scope_id, None)

    def _context(self, org: str, project: str) -> Context:
        ref = self.projects.get(org, project)
        return Context(ref.organization, ref.project)

    def _scope_for_miss(self, ctx: Context, slug: str) -> LiveScope:
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
        used = self.scopes.current_generations(scope) + self._running.get(scope.id, 0)
        if used >= scope.new_generations_limit:
            raise RateLimitError(
                f"scope {slug} reached its limit of {scope.new_generations_limit} generations.",
                "SCOPE_GENERATION_LIMIT_EXCEEDED",
            )
        return scope

    async def _generate(
        self, ctx: Context, scope: LiveScope, params: LiveParams, key: str
    ) -> _Outcome:
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
        try:
            generation = await self.generations.create(ctx, request, wait=True)
            if generation.status != "success" or generation.output_image_id is None:
                return _Outcome(None, generation.id, generation_failed(generation.error_message))
            image = generation.output_image_id
            row = self.db.execute_sql(
                "SELECT mime_type, file_hash, storage_key FROM images WHERE id = ?", (image,)
            ).fetchone()
            data = await self.storage.get(row[2])
            self._record(ctx, scope, params, key, image, generation.id)
        except StorageError as exc:
            return _Outcome(None, None, StorageUnavailableError(f"storage failed: {exc}"))
        except ApiError as exc:
            return _Outcome(None, None, exc)
        except Exception:
            log.exception("live generation for %s failed", key)
            return _Outcome(None, None, generation_failed(None))
        entry = self._entry(image, data, row[0], row[1], scope.slug)
        self.counter.forget([key])  # a new entry counts from zero
        self.counter.known(key, 0)
        self.cache.put(("live", key), entry)
        return _Outcome(entry, generation.id)

    def _record(
        self,
        ctx: Context,
        scope: LiveScope,
        params: LiveParams,
        key: str,
        image_id: str,
        generation_id: str,
    ) -> None:
        now = self.clock.now_us()
        LiveCacheEntry.insert(
            id=new_id(), project_id=ctx.project_id, scope_id=scope.id, cache_key=key,
            image_id=image_id, generation_id=generation_id, prompt=params.prompt,
            aspect_ratio=params.aspect_ratio, auto_enhance=params.auto_enhance,
            template=params.template, hit_count=0, created_at=now, updated_at=now,
        ).on_conflict_replace().execute()  # fmt: skip

    # ------------------------------------------------------------ scopes

    async def regenerate(
        self, ctx: Context, scope: LiveScope, image_id: str | None
    ) -> tuple[int, list[str]]:
        """Regenerate one image of the scope or all of them, in place (same ids and
        URLs). Returns how many succeeded and the image ids that were attempted."""
        entries = self.scopes.entries(scope, image_id)
        if image_id is not None and not entries:
            raise ValidationError(
                f"image {image_id} is not in scope {scope.slug}.", "imageId", "IMAGE_NOT_IN_SCOPE"
            )
        done = 0
        for entry in entries:
            generation = self.generations.find(entry.generation_id)
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
                entry.save()
            done += generation.status == "success"
        return done, [entry.image_id for entry in entries]

    async def delete_scope(self, scope: LiveScope) -> None:
        self.forget(await self.scopes.delete(scope))

    async def purge(self, entries: list[LiveCacheEntry]) -> None:
        """Drop cache entries and their unaliased images (``purge cache``)."""
        await self.scopes.cascade.delete_live_entries(entries)
        self.forget([entry.cache_key for entry in entries])

    # ------------------------------------------------------------ maintenance

    async def run_flusher(self) -> None:
        """Write hit counts every ``live.hit_flush_seconds``; when another process
        (a CLI command) has changed the database, drop the memory caches so nothing
        it deleted is served for longer than one interval."""
        version = self._data_version()
        while True:
            await asyncio.sleep(self.settings.live.hit_flush_seconds)
            try:
                self.counter.flush()
                current = self._data_version()
                if current != version:
                    version = current
                    self.cache.clear()
            except Exception:
                log.exception("flushing live hit counts failed; will retry")

    def _data_version(self) -> int:
        return int(self.db.execute_sql("PRAGMA data_version").fetchone()[0])

    def forget(self, keys: list[str]) -> None:
        """Drop cache keys whose entries were deleted (scope delete, purge)."""
        for key in keys:
            self.cache.pop(("live", key))
        self.counter.forget(keys)

    async def shutdown(self) -> None:
        for task in list(self._inflight.values()):
            task.cancel()
        await asyncio.gather(*self._inflight.values(), return_exceptions=True)
        self.counter.flush()


def generation_failed(message: str | None) -> ApiError:
    return GenerationFailedError(
        "the image could not be generated" + (f": {message}" if message else ".")
    )
