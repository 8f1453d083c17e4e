"""The byte-bounded LRU of image bytes behind the CDN route."""

from __future__ import annotations

import random

import pytest

from banatie_local.services.imagecache import CachedImage, ImageCache

OVERHEAD = 512  # the cache's per-entry estimate beyond the bytes themselves
PAYLOAD = 100
SLOT = PAYLOAD + OVERHEAD


def entry(image_id: str, size: int = PAYLOAD, fill: bytes = b"x") -> CachedImage:
    return CachedImage(
        image_id=image_id,
        data=(fill * size)[:size],
        content_type="image/png",
        file_hash=f"{image_id}-hash",
    )


def key(ref: str) -> tuple[str, str, str]:
    return ("default", "default", ref)


def test_get_and_put() -> None:
    cache = ImageCache(10 * SLOT)
    assert cache.get(key("a")) is None
    stored = entry("a")
    cache.put(key("a"), stored)
    assert cache.get(key("a")) is stored
    assert len(cache) == 1
    assert cache.current_bytes == SLOT
    assert cache.get(("other", "default", "a")) is None


def test_put_replaces_the_entry_of_a_key() -> None:
    cache = ImageCache(10 * SLOT)
    cache.put(key("a"), entry("a", fill=b"1"))
    newer = entry("a", size=PAYLOAD * 2, fill=b"2")
    cache.put(key("a"), newer)
    assert cache.get(key("a")) is newer
    assert len(cache) == 1
    assert cache.current_bytes == PAYLOAD * 2 + OVERHEAD


def test_byte_bound_evicts_least_recently_used() -> None:
    cache = ImageCache(3 * SLOT)
    for name in "abc":
        cache.put(key(name), entry(name))
    assert len(cache) == 3
    assert cache.current_bytes == 3 * SLOT
    assert cache.get(key("a")) is not None  # a is now the most recent; b the least
    cache.put(key("d"), entry("d"))
    assert cache.get(key("b")) is None
    assert [cache.get(key(n)) is not None for n in "acd"] == [True, True, True]
    assert cache.current_bytes <= 3 * SLOT


def test_a_large_entry_evicts_as_many_as_it_needs() -> None:
    cache = ImageCache(3 * SLOT)
    for name in "abc":
        cache.put(key(name), entry(name))
    cache.put(key("big"), entry("big", size=2 * SLOT - OVERHEAD))
    assert cache.get(key("big")) is not None
    assert cache.get(key("a")) is None
    assert cache.get(key("b")) is None
    assert cache.get(key("c")) is not None
    assert cache.current_bytes == 3 * SLOT


def test_entry_larger_than_the_cache_is_not_stored() -> None:
    cache = ImageCache(3 * SLOT)
    cache.put(key("a"), entry("a"))
    cache.put(key("huge"), entry("huge", size=3 * SLOT - OVERHEAD + 1))
    assert cache.get(key("huge")) is None
    assert cache.get(key("a")) is not None  # nothing was evicted for it
    assert len(cache) == 1


def test_entry_of_exactly_the_cache_size_is_stored() -> None:
    cache = ImageCache(3 * SLOT)
    cache.put(key("a"), entry("a"))
    cache.put(key("fits"), entry("fits", size=3 * SLOT - OVERHEAD))
    assert cache.get(key("fits")) is not None
    assert cache.get(key("a")) is None
    assert cache.current_bytes == 3 * SLOT


def test_overhead_counts_against_the_bound() -> None:
    cache = ImageCache(OVERHEAD + 10)
    cache.put(key("a"), entry("a", size=11))
    assert cache.get(key("a")) is None
    cache.put(key("a"), entry("a", size=10))
    assert cache.get(key("a")) is not None


def test_zero_bytes_disables_caching() -> None:
    cache = ImageCache(0)
    cache.put(key("a"), entry("a", size=0))
    cache.put(key("b"), entry("b"), epoch=cache.epoch)
    assert cache.get(key("a")) is None
    assert cache.get(key("b")) is None
    assert len(cache) == 0
    assert cache.current_bytes == 0
    cache.evict_image("a")  # harmless


def test_evict_image_removes_every_key_of_that_image() -> None:
    cache = ImageCache(10 * SLOT)
    hero = entry("img-1")
    cache.put(key("img-1"), hero)
    cache.put(key("IMG-1"), hero)
    cache.put(key("@hero"), hero)
    cache.put(key("img-2"), entry("img-2"))
    cache.put(key("@other"), entry("img-2"))
    before = cache.epoch
    cache.evict_image("img-1")
    assert cache.epoch == before + 1
    for ref in ("img-1", "IMG-1", "@hero"):
        assert cache.get(key(ref)) is None
    assert cache.get(key("img-2")) is not None
    assert cache.get(key("@other")) is not None
    assert len(cache) == 2
    assert cache.current_bytes == 2 * SLOT


def test_evict_image_of_unknown_image_still_bumps_epoch() -> None:
    cache = ImageCache(10 * SLOT)
    cache.put(key("a"), entry("a"))
    before = cache.epoch
    cache.evict_image("nothing")
    cache.evict_image("nothing")
    assert cache.epoch == before + 2
    assert cache.get(key("a")) is not None


def test_fill_started_before_an_eviction_is_not_cached() -> None:
    cache = ImageCache(10 * SLOT)
    started = cache.epoch
    cache.evict_image("a")  # e.g. the image was deleted while its bytes were read
    cache.put(key("a"), entry("a"), epoch=started)
    assert cache.get(key("a")) is None
    assert len(cache) == 0
    # a fill that starts now is cached
    cache.put(key("a"), entry("a"), epoch=cache.epoch)
    assert cache.get(key("a")) is not None


def test_fill_is_ignored_after_eviction_of_any_image() -> None:
    cache = ImageCache(10 * SLOT)
    started = cache.epoch
    cache.evict_image("unrelated")
    cache.put(key("a"), entry("a"), epoch=started)
    assert cache.get(key("a")) is None


def test_stale_fill_does_not_replace_a_fresh_entry() -> None:
    cache = ImageCache(10 * SLOT)
    started = cache.epoch
    cache.evict_image("old")
    fresh = entry("new")
    cache.put(key("@hero"), fresh, epoch=cache.epoch)
    cache.put(key("@hero"), entry("old"), epoch=started)
    assert cache.get(key("@hero")) is fresh
    cache.evict_image("old")
    assert cache.get(key("@hero")) is fresh


def test_size_eviction_cleans_the_reverse_index() -> None:
    cache = ImageCache(2 * SLOT)
    cache.put(key("@hero"), entry("a"))
    cache.put(key("b"), entry("b"))
    cache.put(key("c"), entry("c"))  # pushes out @hero -> a
    assert cache.get(key("@hero")) is None
    # the key now serves another image; evicting the old one must not touch it
    moved = entry("b")
    cache.put(key("@hero"), moved)
    cache.evict_image("a")
    assert cache.get(key("@hero")) is moved
    # and the image that was pushed out can be cached and evicted again
    cache.put(key("a"), entry("a"))
    assert cache.get(key("a")) is not None
    cache.evict_image("a")
    assert cache.get(key("a")) is None
    assert cache.get(key("@hero")) is moved


def test_reverse_index_does_not_grow_with_evicted_entries() -> None:
    cache = ImageCache(3 * SLOT)
    for n in range(200):
        cache.put(key(f"img-{n}"), entry(f"img-{n}"))
    assert len(cache) == 3
    assert len(cache._keys_by_image) == 3
    for n in range(197, 200):
        cache.evict_image(f"img-{n}")
    assert len(cache) == 0
    assert cache.current_bytes == 0
    assert cache._keys_by_image == {}


def test_replacing_a_keys_image_updates_the_reverse_index() -> None:
    cache = ImageCache(10 * SLOT)
    cache.put(key("@hero"), entry("old"))
    cache.put(key("old"), entry("old"))
    fresh = entry("new")
    cache.put(key("@hero"), fresh)
    cache.evict_image("old")
    assert cache.get(key("@hero")) is fresh
    assert cache.get(key("old")) is None
    cache.evict_image("new")
    assert cache.get(key("@hero")) is None
    assert len(cache) == 0


def test_entries_keep_their_facts() -> None:
    cache = ImageCache(10 * SLOT)
    stored = entry("a")
    cache.put(key("a"), stored)
    found = cache.get(key("a"))
    assert found is not None
    assert found.file_hash == "a-hash"
    assert found.content_type == "image/png"
    assert found.image_id == "a"
    assert found.scope is None
    assert found.prepared is None  # the HTTP layer fills it on the first response


def assert_consistent(cache: ImageCache) -> None:
    """Every cached key is indexed under its image, and nothing else is."""
    cached = dict(cache._lru.items())
    indexed = {k: image for image, keys in cache._keys_by_image.items() for k in keys}
    assert all(cache._keys_by_image.values())
    assert indexed == {k: e.image_id for k, e in cached.items()}
    assert cache.current_bytes == sum(len(e.data) + OVERHEAD for e in cached.values())
    assert cache.current_bytes <= cache.max_bytes


@pytest.mark.parametrize("seed", range(20))
def test_random_operations_keep_the_index_consistent(seed: int) -> None:
    rng = random.Random(seed)
    cache = ImageCache(rng.choice([0, 4 * SLOT, 10 * SLOT]))
    for _ in range(300):
        ref = key(rng.choice(["a", "b", "c", "d", "@x", "@y", "@z"]))
        image_id = rng.choice(["i1", "i2", "i3", "i4", "i5"])
        roll = rng.random()
        if roll < 0.6:
            epoch = rng.choice([None, cache.epoch, cache.epoch - 1])
            cache.put(ref, entry(image_id, size=rng.randint(0, 3 * SLOT)), epoch)
        elif roll < 0.8:
            cache.evict_image(image_id)
            assert all(e.image_id != image_id for _, e in cache._lru.items())
        else:
            cache.get(ref)
        assert_consistent(cache)
