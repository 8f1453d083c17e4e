"""A rolling-window request counter per key, held in memory.

Each key keeps the times of its counted requests inside the window (a deque), so the
limit is exact over any rolling hour rather than per clock hour. Keys live in an LRU
so memory stays bounded however many keys or client IPs appear. Counts start over
when the process restarts.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import LRUCache


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


class SlidingWindowLimiter:
    """At most ``limit`` counted events per ``window`` seconds for each key."""

    def __init__(
        self,
        limit: int,
        window: float = 3600.0,
        max_keys: int = 100_000,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.limit = limit
        self.window = window
        self._now = now
        self._events: LRUCache[str, deque[float]] = LRUCache(maxsize=max_keys)

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    def _window(self, key: str, now: float) -> deque[float]:
        events = self._events.get(key)
        if events is None:
            events = deque()
            self._events[key] = events
        horizon = now - self.window
        while events and events[0] <= horizon:
            events.popleft()
        return events

    def check(self, key: str) -> Decision:
        """Peek: would one more event for ``key`` be allowed? Counts nothing.

        ``remaining`` is what would be left after that event."""
        now = self._now()
        return self._decide(self._window(key, now), now)

    def hit(self, key: str) -> Decision:
        """Count one event for ``key`` if allowed; refused events are not counted."""
        now = self._now()
        events = self._window(key, now)
        decision = self._decide(events, now)
        if decision.allowed:
            events.append(now)
        return decision

    def _decide(self, events: deque[float], now: float) -> Decision:
        used = len(events) + 1
        allowed = used <= self.limit
        oldest = events[0] if events else now
        reset_at = math.ceil(oldest + self.window)
        return Decision(
            allowed=allowed,
            limit=self.limit,
            remaining=max(0, self.limit - used) if allowed else 0,
            reset_at=reset_at,
            retry_after=0 if allowed else max(1, math.ceil(oldest + self.window - now)),
        )
