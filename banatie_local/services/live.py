"""Live URLs (API.md §5.1): generate once, then serve from cache.

One pipeline serves ``/cdn/{org}/{project}/live/{scope}`` (public, per-IP limited
misses) and ``/api/v1/live/generate`` (a project key, counted by the key's limit):

1. the query is checked and turned into a cache key (SHA-256 over project, scope,
   whitespace-normalised prompt, ratio, autoEnhance and template);
2. **HIT from memory**: the bytes and headers come from the shared image LRU; the hit
   is counted in memory only — ``HitCounter`` writes counts in the background;
3. a generation already running for the key in this process is joined and answered
   as a HIT when it finishes;
4. **HIT from the database**: one raw SQL query finds the entry, storage gives the
   bytes (off the event loop), and the memory cache is filled;
5. **MISS**: one write transaction checks the client IP limit and the scope rules,
   counts the IP, and takes the key's claim in ``live_claims`` — the single flight
   across every worker and instance. The winner runs one generation through
   ``GenerationService`` in a task of its own (a client that disconnects does not
   cancel it), records the cache entry and drops the claim in one write. A request
   that finds the claim held elsewhere polls for the entry and is answered as a HIT;
   a claim whose holder died (its process gone, or its lease lapsed) is taken over.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from cachetools import LRUCache

from banatie_local.clock import Clock
from banatie_local.config import Settings
from banatie_local.constants import (
    ASPECT_RATIOS,
    DEFAULT_LIVE_ASPECT_RATIO,
    DEFAULT_TEMPLATE,
    MAX_LIVE_PROMPT_LENGTH,
    TEMPLATES,
)
from banatie_local.db.boundary import Database
from banatie_local.db.models import Image, LiveCacheEntry, LiveScope
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
from banatie_local.services.owner import owner_alive, owner_id
from banatie_local.services.projects import ProjectService
from banatie_local.services.ratelimit import Decision, SharedLimiter
from banatie_local.services.scopes import ScopeService, check_scope_slug
from banatie_local.services.validation import new_id
from banatie_local.storage import Storage, StorageError
from banatie_local.storage.base import read_along

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
_CLAIM_LOOKUP: Final = "SELECT holder, error, expires_at FROM live_claims WHERE cache_key = ?"
_CLAIM_POLL_SECONDS: Final = 0.1
# how long a failed claim stays visible, so the requests waiting on it see the failure
_FAILED_CLAIM_US: Final = 5_000_000
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

    def __init__(self, db: Database, clock: Clock) -> None:
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

    async def flush(self) -> int:
        """Write the pending counts in one transaction; return how many entries.
        If the write fails, the counts are kept for the next flush."""
        pending, self._pending = self._pending, {}
        if not pending:
            return 0
        try:
            await self.db.write(_write_hits, pending)
        except BaseException:
            for key, (hits, last) in pending.items():
                newer_hits, newer_last = self._pending.get(key, (0, 0))
                self._pending[key] = (hits + newer_hits, max(last, newer_last))
            raise
        return len(pending)


def _write_hits(pending: dict[str, tuple[int, int]]) -> None:
    for key, (hits, last) in pending.items():
        LiveCacheEntry.update(hit_count=LiveCacheEntry.hit_count + hits, last_hit_at=last).where(
            LiveCacheEntry.cache_key == key
        ).execute()


@dataclass(frozen=True)
class _Admission:
    """What the miss transaction decided: generate (``scope`` set), wait for another
    holder's claim (``waiting_on``), or read the entry that appeared meanwhile."""

    ctx: Context | None = None
    scope: LiveScope | None = None
    rate: Decision | None = None
    holder: str | None = None
    waiting_on: str | None = None


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
    _project_ids: dict[tuple[str, str], str] = field(default_factory=dict)
    # (org, project, scope, raw query string) -> what validating it gave, so a repeat
    # request skips parsing, the project lookup and hashing.
    known_keys: LRUCache[tuple[str, str, str, str], KnownQuery] = field(
        default_factory=lambda: LRUCache(maxsize=50_000)
    )
    _inflight: dict[str, asyncio.Task[_Outcome]] = field(default_factory=dict)
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

    def remembered(self, org: str, project: str, scope: str, query: str) -> KnownQuery | None:
        """The hot path's lookup: a query string validated before, or None."""
        return self.known_keys.get((org, project, scope, query))

    async def known_query(
        self, org: str, project: str, scope: str, query: str, arg: Callable[[str], str | None]
    ) -> KnownQuery:
        """Validate a live request and compute its cache key, once per distinct query
        (a repeat costs one dictionary lookup; the first may read the project's id)."""
        memo = (org, project, scope, query)
        known = self.known_keys.get(memo)
        if known is None:
            params = parse_live_params(arg)
            check_scope_slug(scope, "scope")
            project_id = self._project_ids.get((org, project))
            if project_id is None:
                project_id = await self.db.read(self.project_id, org, project)
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
        for _ in range(100):  # each turn ends in an answer, or in a lapsed claim
            running = self._inflight.get(key)
            if running is not None:
                return self._as_hit(key, await asyncio.shield(running))
            stored = await self._stored_hit(key)
            if stored is not None:
                return stored
            admission = await self.db.write(
                self._admit_miss, slugs, context, scope, key, client, self.clock.now_us()
            )
            if admission.scope is not None:
                return await self._generate_once(admission, params, key)
            if admission.waiting_on is not None:
                waited = await self._wait_for(key, admission.waiting_on)
                if waited is not None:
                    return waited
        raise generation_failed("the generation for this URL kept being abandoned.")

    async def _stored_hit(self, key: str) -> LiveResult | None:
        epoch = self.cache.epoch
        reader = self.storage.fast_reader()
        row, data = await self.db.read(self._entry_and_bytes, key, reader)
        if row is None:
            return None
        image_id, hits, mime, file_hash, storage_key, scope = row
        try:
            if data is None:
                data = await self.storage.get(storage_key)
        except FileNotFoundError:
            data = b""
        if not data:
            log.error("live image %s has no file; treating as a miss", image_id)
            return None
        entry = self._entry(image_id, data, mime, file_hash, scope)
        self.cache.put(("live", key), entry, epoch)
        self.counter.known(key, int(hits))
        return LiveResult(entry, "HIT", self.counter.hit(key))

    def _entry_and_bytes(
        self, key: str, reader: Callable[[str], bytes] | None
    ) -> tuple[tuple[Any, ...] | None, bytes | None]:
        """The entry's row, and its bytes when storage reads fast (one thread hop)."""
        return read_along(self._entry_row(key), lambda row: str(row[4]), reader)

    def _entry_row(self, key: str) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self.db.execute_sql(_ENTRY_LOOKUP, (key,)).fetchone()
        return row

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

    def _admit_miss(
        self,
        slugs: tuple[str, str],
        context: Context | None,
        scope_slug: str,
        key: str,
        client: str | None,
        now: int,
    ) -> _Admission:
        """One write transaction: wait for a live claim, or — the IP limit, the scope
        rules, then count the IP and take the claim."""
        claim = self.db.execute_sql(_CLAIM_LOOKUP, (key,)).fetchone()
        if claim is not None and claim[1] is None and _held(claim[0], claim[2], now):
            return _Admission(waiting_on=claim[0])
        if self._entry_row(key) is not None:
            return _Admission()  # finished meanwhile: read it as a HIT
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
            "INSERT OR REPLACE INTO live_claims (cache_key, scope_id, holder, error, expires_at)"
            " VALUES (?, ?, ?, NULL, ?)",
            (key, scope.id, holder, now + self.claim_lease_us),
        )
        return _Admission(ctx, scope, rate, holder)

    @property
    def claim_lease_us(self) -> int:
        """A claim outlives the longest generation (enhancement and image, each with
        every retry), plus a margin; a holder that died is taken over after it."""
        g = self.settings.generation
        attempts = g.max_retries + 1
        backoff = g.retry_backoff_seconds * (2**attempts)
        return int((2 * attempts * g.timeout_seconds + backoff + 5) * 1_000_000)

    async def _generate_once(
        self, admission: _Admission, params: LiveParams, key: str
    ) -> LiveResult:
        assert admission.ctx is not None
        assert admission.scope is not None
        assert admission.holder is not None
        task = asyncio.get_running_loop().create_task(
            self._generate(admission.ctx, admission.scope, params, key, admission.holder)
        )
        self._inflight[key] = task
        task.add_done_callback(lambda _: self._inflight.pop(key, None))
        outcome = await asyncio.shield(task)
        if outcome.entry is None:
            raise outcome.error or generation_failed(None)
        return LiveResult(outcome.entry, "MISS", 0, outcome.generation_id, admission.rate)

    async def _wait_for(self, key: str, holder: str) -> LiveResult | None:
        """Another process holds the claim: poll until its entry appears (a HIT), it
        fails (its error), or its claim lapses (None: the caller tries again)."""
        while True:
            await asyncio.sleep(_CLAIM_POLL_SECONDS)
            stored = await self._stored_hit(key)
            if stored is not None:
                return stored
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

    async def _generate(
        self, ctx: Context, scope: LiveScope, params: LiveParams, key: str, holder: str
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
        outcome = await self._attempt(ctx, scope, params, key, holder, request)
        if outcome.entry is None:
            message = outcome.error.message if outcome.error else "failed"
            try:
                await self.db.write(self._release, key, holder, message)
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
    ) -> _Outcome:
        try:
            generation = await self.generations.create(ctx, request, wait=True)
            if generation.status != "success" or generation.output_image_id is None:
                return _Outcome(None, generation.id, generation_failed(generation.error_message))
            image = generation.output_image_id
            row = await self.db.read(_image_facts, image)
            data = await self.storage.get(row[2])
            await self.db.write(self._record, ctx, scope, params, key, image, generation.id, holder)
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
        holder: str,
    ) -> None:
        """The cache entry, and the claim dropped, in one transaction."""
        now = self.clock.now_us()
        LiveCacheEntry.insert(
            id=new_id(), project_id=ctx.project_id, scope_id=scope.id, cache_key=key,
            image_id=image_id, generation_id=generation_id, prompt=params.prompt,
            aspect_ratio=params.aspect_ratio, auto_enhance=params.auto_enhance,
            template=params.template, hit_count=0, created_at=now, updated_at=now,
        ).on_conflict_replace().execute()  # fmt: skip
        self.db.execute_sql(
            "DELETE FROM live_claims WHERE cache_key = ? AND holder = ?", (key, holder)
        )

    def _release(self, key: str, holder: str, error: str) -> None:
        """A failed claim stays briefly, so its waiters read the failure."""
        self.db.execute_sql(
            "UPDATE live_claims SET error = ?, expires_at = ? WHERE cache_key = ? AND holder = ?",
            (error[:500], self.clock.now_us() + _FAILED_CLAIM_US, key, holder),
        )

    # ------------------------------------------------------------ scopes

    async def regenerate(
        self, ctx: Context, scope: LiveScope, image_id: str | None
    ) -> tuple[int, list[str]]:
        """Regenerate one image of the scope or all of them, in place (same ids and
        URLs). Returns how many succeeded and the image ids that were attempted."""
        entries = await self.db.read(self.scopes.entries, scope, image_id)
        if image_id is not None and not entries:
            raise ValidationError(
                f"image {image_id} is not in scope {scope.slug}.", "imageId", "IMAGE_NOT_IN_SCOPE"
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

    async def purge(self, entries: list[LiveCacheEntry]) -> None:
        """Drop cache entries and their unaliased images (``purge cache``)."""
        await self.scopes.cascade.delete_live_entries(entries)
        self.forget([entry.cache_key for entry in entries])

    # ------------------------------------------------------------ maintenance

    def sweep_claims(self) -> None:
        """Drop claims long lapsed (inside a write); a live one is never touched."""
        self.db.execute_sql(
            "DELETE FROM live_claims WHERE expires_at < ?", (self.clock.now_us() - 60_000_000,)
        )

    def forget(self, keys: list[str]) -> None:
        """Drop cache keys whose entries were deleted (scope delete, purge)."""
        for key in keys:
            self.cache.pop(("live", key))
        self.counter.forget(keys)

    async def shutdown(self) -> None:
        for task in list(self._inflight.values()):
            task.cancel()
        await asyncio.gather(*self._inflight.values(), return_exceptions=True)
        await self.counter.flush()


def generation_failed(message: str | None) -> ApiError:
    return GenerationFailedError(
        "the image could not be generated" + (f": {message}" if message else ".")
    )


def _held(holder: str, expires_at: int, now: int) -> bool:
    """A claim is held while its lease runs and its process is alive."""
    return expires_at > now and owner_alive(holder.rpartition(":")[0])


def _image_facts(image_id: str) -> tuple[Any, ...]:
    query = Image.select(Image.mime_type, Image.file_hash, Image.storage_key)
    row: tuple[Any, ...] = query.where(Image.id == image_id).tuples().get()  # type: ignore[assignment]
    return row
