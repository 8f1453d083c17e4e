"""The in-memory LRU of image bytes and their facts, for the hot paths.

Entries are keyed by how a client asked for them — ``(org, project, idOrAlias)`` —
so a hit costs one dictionary lookup. Every key remembers which image it holds, so
deleting, regenerating or re-aliasing an image evicts all of its keys at once.

Evictions also come from the database threads (a delete's rows and its evictions
happen in one unit of work), so every operation holds one uncontended lock.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from dataclasses import dataclass, field

from cachetools import LRUCache

from banatie_local.storage.buffers import Lease

_ENTRY_OVERHEAD = 512  # rough bytes per entry beyond the image itself


@dataclass(slots=True, eq=False)
class CachedImage:
    """The facts an image is served from. Its response headers are the HTTP layer's
    business: it builds and encodes them once, on the entry's first response, and
    keeps them in ``prepared`` so every later hit reuses them."""

    image_id: str
    data: bytes | memoryview  # a view only into a lent read buffer (``lease``)
    content_type: str
    file_hash: str
    scope: str | None = None  # the live scope, for an entry of a live URL
    extra: tuple[tuple[str, str], ...] = ()  # more headers: a variant's X-Variant, Vary
    prepared: object = field(default=None, repr=False)  # opaque here
    # the lent buffer behind ``data``: such an entry is served once, never cached
    lease: Lease | None = field(default=None, repr=False)


class _Lru(LRUCache[Hashable, CachedImage]):
    def __init__(self, maxsize: int, owner: ImageCache) -> None:
        super().__init__(maxsize=maxsize, getsizeof=lambda e: len(e.data) + _ENTRY_OVERHEAD)
        self._owner = owner

    def popitem(self) -> tuple[Hashable, CachedImage]:
        key, entry = super().popitem()
        self._owner._forget(key, entry.image_id)
        return key, entry


class ImageCache:
    """Bounded by total bytes; ``max_bytes == 0`` disables caching."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._lru = _Lru(max(max_bytes, 1), self)
        self._keys_by_image: dict[str, set[Hashable]] = {}
        # Bumped on every eviction. A reader that loaded bytes across an await passes
        # the epoch it started in; if anything was evicted meanwhile, its bytes may be
        # stale (the image deleted or replaced), so they are served but not cached.
        self.epoch = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._lru)

    @property
    def current_bytes(self) -> int:
        return int(self._lru.currsize)

    def get(self, key: Hashable) -> CachedImage | None:
        with self._lock:
            return self._lru.get(key)

    def smallest_uncached(self) -> int:
        """The size from which an image is too large to be kept here (0: none is)."""
        return max(0, self.max_bytes - _ENTRY_OVERHEAD + 1)

    def put(self, key: Hashable, entry: CachedImage, epoch: int | None = None) -> None:
        size = len(entry.data) + _ENTRY_OVERHEAD
        if self.max_bytes <= 0 or size > self.max_bytes or entry.lease is not None:
            return
        with self._lock:
            if epoch is not None and epoch != self.epoch:
                return
            old = self._lru.get(key)
            if old is not None:
                self._forget(key, old.image_id)
            self._lru[key] = entry
            self._keys_by_image.setdefault(entry.image_id, set()).add(key)

    def pop(self, key: Hashable) -> None:
        """Drop one key."""
        with self._lock:
            entry = self._lru.pop(key, None)
            if entry is not None:
                self.epoch += 1
                self._forget(key, entry.image_id)

    def clear(self) -> None:
        """Drop everything."""
        with self._lock:
            self.epoch += 1
            self._lru.clear()
            self._keys_by_image.clear()

    def evict_image(self, image_id: str) -> None:
        """Drop every key that serves ``image_id``."""
        with self._lock:
            self.epoch += 1
            for key in self._keys_by_image.pop(image_id, set()):
                self._lru.pop(key, None)

    def _forget(self, key: Hashable, image_id: str) -> None:
        keys = self._keys_by_image.get(image_id)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._keys_by_image[image_id]
