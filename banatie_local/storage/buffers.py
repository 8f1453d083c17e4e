"""Reusable read buffers for image bytes that are served once and not cached.

A HIT that the memory cache will not keep (``live.memory_cache_mb = 0``, or an image
larger than the cache) reads its file on every request. Reading into a fresh
``bytes`` costs more than the read: each new 200 KB block is fresh memory, paged in
fault by fault, and on a small virtual machine those faults were most of the cost
(a bare route reading a file per request served 0.2–0.4× of the same route from
memory). Reading into a buffer reused from this pool pays them once.

A buffer goes back to the pool when the last holder of its ``Lease`` lets go: the
cache entry and the response that sends it both hold the lease, so the bytes cannot
be overwritten while the response still refers to them (Sanic copies the body into
the bytes it hands to the transport before the response is released).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Final

_KEEP: Final = 64  # buffers kept for reuse; more in flight are simply not kept
_MAX_BUFFER: Final = 16 * 1024 * 1024  # larger files are read into plain bytes


class Lease:
    """A buffer lent for one response; ``view`` is the file's bytes within it."""

    __slots__ = ("_buffer", "_pool", "view")

    def __init__(self, pool: ReadBuffers, buffer: bytearray, size: int) -> None:
        self._pool = pool
        self._buffer = buffer
        self.view = memoryview(buffer)[:size]

    def __del__(self) -> None:
        # a stale reference to the view now fails loudly instead of reading bytes
        # that the next request overwrote
        with contextlib.suppress(BufferError):
            self.view.release()
        self._pool.give(self._buffer)


class ReadBuffers:
    """A bounded pool of ``bytearray``s, shared by the reader threads."""

    def __init__(self, keep: int = _KEEP) -> None:
        self._keep = keep
        self._free: list[bytearray] = []
        self._lock = threading.Lock()

    def accepts(self, size: int) -> bool:
        return 0 < size <= _MAX_BUFFER

    def take(self, size: int) -> bytearray:
        """A buffer of at least ``size`` bytes."""
        with self._lock:
            for i, buffer in enumerate(self._free):
                if len(buffer) >= size:
                    return self._free.pop(i)
        # round up so that files of similar sizes share buffers
        return bytearray(-(-size // 65536) * 65536)

    def give(self, buffer: bytearray) -> None:
        with self._lock:
            if len(self._free) < self._keep:
                self._free.append(buffer)
