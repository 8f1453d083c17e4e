"""The rolling-window rate limiter, driven by a fake clock."""

from __future__ import annotations

import math
import time

import pytest

from banatie_local.services.ratelimit import Decision, SlidingWindowLimiter


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = 1_700_000_000.25) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def limiter(
    clock: FakeClock, limit: int = 3, window: float = 60.0, **kwargs: int
) -> SlidingWindowLimiter:
    return SlidingWindowLimiter(limit, window=window, now=clock, **kwargs)


def test_hits_up_to_the_limit(clock: FakeClock) -> None:
    rl = limiter(clock)
    first = clock.now
    decisions = []
    for _ in range(3):
        decisions.append(rl.hit("k"))
        clock.advance(1.1)
    assert [d.allowed for d in decisions] == [True, True, True]
    assert [d.remaining for d in decisions] == [2, 1, 0]
    assert all(d.limit == 3 for d in decisions)
    assert all(d.retry_after == 0 for d in decisions)

    refused = rl.hit("k")
    assert refused.allowed is False
    assert refused.remaining == 0
    assert refused.retry_after >= 1
    assert refused.retry_after == math.ceil(first + 60.0 - clock.now)
    assert refused.reset_at == math.ceil(first + 60.0)


def test_retry_after_is_at_least_one(clock: FakeClock) -> None:
    rl = limiter(clock, limit=1, window=10.0)
    rl.hit("k")
    clock.advance(9.99)
    refused = rl.hit("k")
    assert refused.allowed is False
    assert refused.retry_after == 1


def test_headers(clock: FakeClock) -> None:
    rl = limiter(clock, limit=1)
    allowed = rl.hit("k")
    assert allowed.headers() == {
        "X-RateLimit-Limit": "1",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(math.ceil(clock.now + 60.0)),
    }
    clock.advance(20)
    refused = rl.hit("k")
    headers = refused.headers()
    assert headers["Retry-After"] == str(refused.retry_after) == "40"
    assert headers["X-RateLimit-Remaining"] == "0"
    assert headers["X-RateLimit-Reset"] == str(refused.reset_at)


def test_headers_without_retry_after_when_allowed() -> None:
    decision = Decision(allowed=True, limit=5, remaining=4, reset_at=100, retry_after=0)
    assert "Retry-After" not in decision.headers()
    refused = Decision(allowed=False, limit=5, remaining=0, reset_at=100, retry_after=7)
    assert refused.headers()["Retry-After"] == "7"


def test_refused_hits_are_not_counted(clock: FakeClock) -> None:
    """Once the first hit leaves the window exactly one slot is free."""
    rl = limiter(clock, limit=3, window=60.0)
    start = clock.now
    rl.hit("k")
    clock.advance(10)
    rl.hit("k")
    rl.hit("k")
    for _ in range(5):
        clock.advance(5)
        assert rl.hit("k").allowed is False
    clock.now = start + 60  # exactly one window after the first hit
    freed = rl.hit("k")
    assert freed.allowed is True
    assert freed.remaining == 0
    assert rl.hit("k").allowed is False


def test_window_rolls(clock: FakeClock) -> None:
    """Each hit expires a full window after it was made, not at a clock boundary."""
    rl = limiter(clock, limit=2, window=10.0)
    start = clock.now
    assert rl.hit("k").allowed
    clock.now = start + 9
    assert rl.hit("k").allowed
    clock.now = start + 10
    assert rl.hit("k").allowed
    assert rl.hit("k").allowed is False
    clock.now = start + 18.5
    refused = rl.hit("k")
    assert refused.allowed is False
    assert refused.reset_at == math.ceil(start + 19)
    clock.now = start + 19
    assert rl.hit("k").allowed
    assert rl.hit("k").allowed is False


def test_hit_just_inside_window_still_counts(clock: FakeClock) -> None:
    rl = limiter(clock, limit=1, window=10.0)
    start = clock.now
    rl.hit("k")
    clock.now = start + 9.5
    assert rl.hit("k").allowed is False
    clock.now = start + 10
    assert rl.hit("k").allowed is True


def test_keys_are_independent(clock: FakeClock) -> None:
    rl = limiter(clock, limit=2)
    assert rl.hit("a").allowed
    assert rl.hit("a").allowed
    assert rl.hit("a").allowed is False
    b = rl.hit("b")
    assert b.allowed
    assert b.remaining == 1
    assert rl.hit("a").allowed is False


def test_reset_at(clock: FakeClock) -> None:
    """``reset_at`` is the epoch second when the oldest counted hit leaves the window."""
    rl = limiter(clock, limit=3, window=3600.0)
    oldest = clock.now
    assert rl.hit("k").reset_at == math.ceil(oldest + 3600)
    clock.advance(100.5)
    assert rl.hit("k").reset_at == math.ceil(oldest + 3600)
    assert rl.check("other").reset_at == math.ceil(clock.now + 3600)


def test_check_counts_nothing(clock: FakeClock) -> None:
    rl = limiter(clock, limit=2)
    for _ in range(5):
        peek = rl.check("k")
        assert peek.allowed
        assert peek.remaining == 1
    rl.hit("k")
    peek = rl.check("k")
    assert peek.allowed
    assert peek.remaining == 0
    rl.hit("k")
    full = rl.check("k")
    assert full.allowed is False
    assert full.retry_after >= 1
    assert rl.hit("k").allowed is False


def test_enabled() -> None:
    assert SlidingWindowLimiter(0).enabled is False
    assert SlidingWindowLimiter(1).enabled is True


def test_default_clock_is_wall_time() -> None:
    before = math.ceil(time.time() + 3600)
    decision = SlidingWindowLimiter(5).hit("k")
    after = math.ceil(time.time() + 3600)
    assert before <= decision.reset_at <= after


def test_lru_evicts_least_recently_used_key(clock: FakeClock) -> None:
    rl = limiter(clock, limit=1, max_keys=2)
    assert rl.hit("a").allowed
    assert rl.hit("b").allowed
    assert rl.hit("a").allowed is False  # "a" is now the most recently used
    assert rl.hit("c").allowed  # evicts "b"
    assert rl.hit("a").allowed is False  # "a" was kept
    assert rl.hit("b").allowed  # "b" starts over
