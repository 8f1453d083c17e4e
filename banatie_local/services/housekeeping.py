"""The one background task of each process: coherence and bookkeeping.

- every ``POLL_SECONDS`` (or ``live.hit_flush_seconds`` if shorter): read the
  ``change_log`` rows that triggers wrote since the last look, and drop what they
  name from this process's memory: image bytes, live entries, remembered keys. A
  delete, alias move, regeneration or key revocation made by any worker, instance or
  CLI command is therefore seen everywhere within that interval;
- every ``live.hit_flush_seconds``: write live hit counts, settle rate-limit events
  admitted while the database was locked, renew this process's generation leases,
  fail generations whose process died, and drop lapsed claims;
- every minute: prune the change log and expired rate events.

Every step goes through the database boundary; a failed step is logged and retried
on the next round, with nothing lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Final

from banatie_local.clock import Clock
from banatie_local.db.boundary import Database
from banatie_local.errors import DatabaseBusyError
from banatie_local.services.generations import GenerationService
from banatie_local.services.imagecache import ImageCache
from banatie_local.services.keys import KeyService
from banatie_local.services.live import LiveService
from banatie_local.services.ratelimit import SharedLimiter
from banatie_local.services.signing import SigningService

log = logging.getLogger(__name__)

POLL_SECONDS: Final = 0.5
PRUNE_SECONDS: Final = 60.0
CHANGE_LOG_KEEP_US: Final = 600_000_000  # ten minutes
_BATCH: Final = 1000


@dataclass
class ChangeFeed:
    """What other processes changed, read from ``change_log`` every poll.

    Triggers write the log in the writing transaction. On SQLite writes are serial,
    so ids commit in order and "every id above the last seen" is exact. On
    PostgreSQL a transaction may commit a smaller id after a larger one was read, so
    each poll also reads back the last ``LOOKBACK_US`` of the log and applies every
    row not applied yet (evictions are idempotent; the applied ids are remembered
    for as long as they can come back)."""

    db: Database
    cache: ImageCache
    keys: KeyService
    live: LiveService
    signing: SigningService
    lookback_us: int = 0  # 0 on SQLite
    last: int = 0
    _seen: dict[int, int] = field(default_factory=dict)  # id → created_at (PostgreSQL)

    async def start(self) -> None:
        self.last = await self.db.read(self._latest)

    async def poll(self) -> int:
        """Apply the changes since the last poll; return how many."""
        now = int(time.time() * 1_000_000)
        rows = await self.db.read(self._since, self.last, now - self.lookback_us)
        if len(rows) >= _BATCH:  # too many to go one by one: start afresh
            self.cache.clear()
            self.live.known_keys.clear()
            self.keys.forget()
            self.signing.forget()
            self.last = await self.db.read(self._latest)
            self._seen.clear()
            return len(rows)
        applied = 0
        for change_id, kind, ref, created_at in rows:
            if change_id in self._seen:
                continue
            self.apply(kind, ref)
            applied += 1
            self.last = max(self.last, change_id)
            if self.lookback_us:
                self._seen[change_id] = created_at
        if self._seen:
            horizon = now - 2 * self.lookback_us
            for change_id in [i for i, at in self._seen.items() if at < horizon]:
                del self._seen[change_id]
        return applied

    def _latest(self) -> int:
        row = self.db.execute_sql("SELECT COALESCE(MAX(id), 0) FROM change_log").fetchone()
        return int(row[0])

    def _since(self, last: int, recent: int) -> list[tuple[int, str, str, int]]:
        if self.lookback_us:
            query = (
                "SELECT id, kind, ref, created_at FROM change_log"
                " WHERE id > ? OR created_at > ? ORDER BY id LIMIT ?"
            )
            params: tuple[int, ...] = (last, recent, _BATCH)
        else:
            query = (
                "SELECT id, kind, ref, created_at FROM change_log WHERE id > ? ORDER BY id LIMIT ?"
            )
            params = (last, _BATCH)
        cursor = self.db.execute_sql(query, params)
        return [(int(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in cursor.fetchall()]

    def apply(self, kind: str, ref: str) -> None:
        if kind == "image":
            self.cache.evict_image(ref)
        elif kind == "live":
            self.live.forget([ref])
        elif kind == "key":
            self.keys.forget()
        elif kind == "project":
            self.keys.forget()
            self.signing.forget()


@dataclass
class Housekeeper:
    db: Database
    clock: Clock
    flush_seconds: float
    feed: ChangeFeed
    live: LiveService
    generations: GenerationService
    limiter: SharedLimiter
    _pruned_at: float = field(default=0.0, init=False)

    async def run(self) -> None:
        """Run until cancelled."""
        await self._guard(self.feed.start)
        interval = min(POLL_SECONDS, self.flush_seconds)
        next_flush = time.monotonic() + self.flush_seconds
        while True:
            await asyncio.sleep(interval)
            await self._guard(self.feed.poll)
            if time.monotonic() >= next_flush:
                next_flush = time.monotonic() + self.flush_seconds
                await self.round()

    async def round(self) -> None:
        """One round of bookkeeping (also run at a clean stop)."""
        await self._guard(self.live.counter.flush)
        await self._guard(self.limiter.settle)
        await self._guard(self.db.write, self._upkeep)
        await self._guard(self.generations.recover_interrupted)

    def _upkeep(self) -> None:
        self.generations.renew_leases()
        self.live.sweep_claims()
        now = time.monotonic()
        if now - self._pruned_at >= PRUNE_SECONDS:
            self._pruned_at = now
            self.db.execute_sql(
                "DELETE FROM change_log WHERE created_at < ?",
                (self.clock.now_us() - CHANGE_LOG_KEEP_US,),
            )
            self.limiter.prune()

    async def _guard(self, step: Any, *args: Any) -> None:
        name = getattr(step, "__name__", step)
        try:
            await step(*args)
        except DatabaseBusyError as exc:  # locked or unreachable: one line, not a trace
            log.warning("background step %s skipped: %s", name, exc.message)
        except Exception:  # cancellation is a BaseException and goes through
            log.exception("background step %s failed; will retry", name)
