"""``storage.buffers``: a lent buffer comes back only when its last holder lets go."""

from __future__ import annotations

import gc

import pytest

from banatie_local.storage.buffers import Lease, ReadBuffers


def test_a_buffer_is_reused_only_after_its_lease_is_gone() -> None:
    pool = ReadBuffers(keep=4)
    first = Lease(pool, pool.take(1000), 1000)
    first.view[:3] = b"abc"
    holder = first  # a second holder, as the response holds the entry's lease
    buffer = first._buffer
    del first
    assert pool.take(1000) is not buffer  # still lent
    view = holder.view
    del holder
    gc.collect()
    with pytest.raises(ValueError, match="released"):
        bytes(view)  # a stale view fails instead of reading reused bytes
    assert pool.take(1000) is buffer


def test_the_pool_keeps_a_bounded_number_and_refuses_nothing() -> None:
    pool = ReadBuffers(keep=2)
    leases = [Lease(pool, pool.take(70_000), 70_000) for _ in range(5)]
    assert all(len(lease._buffer) >= 70_000 for lease in leases)
    del leases
    assert len(pool._free) == 2
    assert not pool.accepts(0)
    assert pool.accepts(200_000)
