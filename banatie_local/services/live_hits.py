"""HITs of live URLs: the answer a request gets, the stored entry read when memory
misses, and the hit counts — kept in memory and written in batches, never on the
request path."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from banatie_local.db.boundary import Database
from banatie_local.db.models import LiveCacheEntry
from banatie_local.services.imagecache import CachedImage, ImageCache
from banatie_local.services.ratelimit import Decision
from banatie_local.storage import Storage
from banatie_local.storage.base import read_along
from banatie_local.storage.buffers import Lease, ReadBuffers

# one log for every part of the live pipeline
log = logging.getLogger("banatie_local.services.live")

_ENTRY_LOOKUP: Final = (
    "SELECT e.image_id, e.hit_count, i.mime_type, i.file_hash, i.storage_key, s.slug"
    " FROM live_cache_entries e"
    " JOIN images i ON i.id = e.image_id"
    " JOIN live_scopes s ON s.id = e.scope_id"
    " WHERE e.cache_key = ?"
)


@dataclass(frozen=True)
class LiveResult:
    entry: CachedImage
    status: str  # "HIT" or "MISS"
    hit_count: int
    generation_id: str | None = None
    rate: Decision | None = None
    joined: bool = False  # answered by a generation another request started


class HitCounter:
    """Hit counts kept in memory and written in batches, never on the request path."""

    def __init__(self, db: Database) -> None:
        self.db = db
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


@dataclass
class StoredHits:
    """A HIT from the database: one raw SQL query finds the entry, storage gives the
    bytes (off the event loop), and the memory cache is filled."""

    db: Database
    storage: Storage
    cache: ImageCache
    counter: HitCounter
    buffers: ReadBuffers = field(default_factory=ReadBuffers)

    async def read(self, key: str) -> LiveResult | None:
        """The stored entry of ``key`` as a HIT, or None when there is none."""
        epoch = self.cache.epoch
        # bytes the memory cache will not keep are read into a reused buffer
        reader = self.storage.leased_reader(self.buffers, self.cache.smallest_uncached())
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
        if isinstance(data, Lease):
            entry = CachedImage(image_id, data.view, mime, file_hash, scope, lease=data)
        else:
            entry = CachedImage(image_id, data, mime, file_hash, scope)
        self.cache.put(("live", key), entry, epoch)
        self.counter.known(key, int(hits))
        return LiveResult(entry, "HIT", self.counter.hit(key))

    def _entry_and_bytes(
        self, key: str, reader: Callable[[str], bytes | Lease] | None
    ) -> tuple[tuple[Any, ...] | None, bytes | Lease | None]:
        """The entry's row, and its bytes when storage reads fast (one thread hop)."""
        return read_along(self.entry_row(key), lambda row: str(row[4]), reader)

    def entry_row(self, key: str) -> tuple[Any, ...] | None:
        """The entry's row, or None (inside a read or a write)."""
        row: tuple[Any, ...] | None = self.db.execute_sql(_ENTRY_LOOKUP, (key,)).fetchone()
        return row
