"""Rolling-window limits counted in the database, so every worker and instance
shares one budget exactly (SCALE.md §2).

Each bucket (``key:<id>`` for a project key, ``ip:<address>`` for live-URL misses)
keeps the times of its admitted events in ``rate_events``. Admitting one more runs in
one write transaction: drop the bucket's events older than the window, count the
rest, and add one if there is room. Refused events are not counted. The transaction
holds the database's write lock, so two processes can never both take the last slot.

When the database stays locked by someone else (a long CLI command, a backup), a
request is not made to wait: the process admits it from a short local allowance —
what it last saw remaining for that bucket, or a tenth of the limit for a bucket it
has not seen — and writes those events to the database once the lock is free
(``settle``). A lock can therefore let through at most that allowance per process
beyond the limit; with no allowance left the answer is 503 ``DATABASE_BUSY``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import LRUCache

from banatie_local.db.boundary import Database
from banatie_local.errors import DatabaseBusyError

log = logging.getLogger(__name__)

_US = 1_000_000


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_at: int  # epoch seconds when the oldest counted request leaves the window
    retry_after: int  # seconds to wait; 0 when allowed

    def headers(self) -> dict[str, str]:
        """The ``X-RateLimit-*`` headers (and ``Retry-After`` when refused)."""
        out = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_at),
        }
        if not self.allowed:
            out["Retry-After"] = str(self.retry_after)
        return out


def decide(used: int, oldest: float | None, limit: int, window: float, now: float) -> Decision:
    """The decision for one more event, with ``used`` events in the window already."""
    allowed = used + 1 <= limit
    first = oldest if oldest is not None else now
    return Decision(
        allowed=allowed,
        limit=limit,
        remaining=max(0, limit - used - 1) if allowed else 0,
        reset_at=math.ceil(first + window),
        retry_after=0 if allowed else max(1, math.ceil(first + window - now)),
    )


class SharedLimiter:
    """At most ``limit`` admitted events per ``window`` seconds for each bucket."""

    def __init__(
        self, db: Database, window: float = 3600.0, now: Callable[[], float] = time.time
    ) -> None:
        self.db = db
        self.window = window
        self._now = now
        self._remaining: LRUCache[str, int] = LRUCache(maxsize=100_000)
        self._pending: list[tuple[str, int]] = []

    # ------------------------------------------------- inside a transaction (sync)

    def count(self, bucket: str, limit: int, now: float) -> Decision:
        """Peek: would one more event be allowed? Counts nothing (a read)."""
        row = self.db.execute_sql(
            "SELECT COUNT(*), MIN(at) FROM rate_events WHERE bucket = ? AND at > ?",
            (bucket, int((now - self.window) * _US)),
        ).fetchone()
        oldest = row[1] / _US if row[1] is not None else None
        return decide(int(row[0]), oldest, limit, self.window, now)

    def admit_now(self, bucket: str, limit: int, now: float) -> Decision:
        """Count one event if there is room; run inside a write transaction."""
        self.db.lock(f"rate:{bucket}")  # the count and the insert are one step everywhere
        self.db.execute_sql(
            "DELETE FROM rate_events WHERE bucket = ? AND at <= ?",
            (bucket, int((now - self.window) * _US)),
        )
        decision = self.count(bucket, limit, now)
        if decision.allowed:
            self.db.execute_sql(
                "INSERT INTO rate_events (bucket, at) VALUES (?, ?)", (bucket, int(now * _US))
            )
        return decision

    def _admit_and(
        self,
        bucket: str,
        limit: int,
        now: float,
        then: Callable[[], None] | None,
        pending: list[tuple[str, int]],
    ) -> Decision:
        self._insert(pending)  # what a lock let through is counted before anything new
        decision = self.admit_now(bucket, limit, now)
        if then is not None and decision.allowed:
            then()
        return decision

    # ------------------------------------------------------------------ async edge

    async def admit(
        self, bucket: str, limit: int, then: Callable[[], None] | None = None
    ) -> Decision:
        """Admit one event for ``bucket``; ``then`` runs in the same transaction
        (``lastUsedAt``). Never waits out another process's lock (see the module)."""
        now = self._now()
        pending, self._pending = self._pending, []
        try:
            decision = await self.db.quick_write(self._admit_and, bucket, limit, now, then, pending)
        except BaseException as exc:
            self._pending = pending + self._pending
            if isinstance(exc, DatabaseBusyError):
                return self._allowance(bucket, limit, now)
            raise
        self._remaining[bucket] = decision.remaining
        return decision

    def _allowance(self, bucket: str, limit: int, now: float) -> Decision:
        left = self._remaining.get(bucket, max(1, limit // 10))
        if left <= 0:
            raise DatabaseBusyError()
        self._remaining[bucket] = left - 1
        self._pending.append((bucket, int(now * _US)))
        return Decision(True, limit, left - 1, math.ceil(now + self.window), 0)

    async def settle(self) -> int:
        """Write the events admitted from the local allowance; keep them on failure."""
        pending, self._pending = self._pending, []
        if not pending:
            return 0
        try:
            await self.db.write(self._insert, pending)
        except Exception:
            self._pending = pending + self._pending
            raise
        return len(pending)

    def _insert(self, events: list[tuple[str, int]]) -> None:
        for bucket, at in events:
            self.db.execute_sql("INSERT INTO rate_events (bucket, at) VALUES (?, ?)", (bucket, at))

    def prune(self) -> None:
        """Drop every event older than the window (inside a write)."""
        self.db.execute_sql(
            "DELETE FROM rate_events WHERE at <= ?", (int((self._now() - self.window) * _US),)
        )
