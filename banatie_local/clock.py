"""Time for rows and responses: strictly increasing microseconds, ISO-8601 output."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime


class Clock:
    """Wall-clock microseconds that never repeat or go backwards in this process.

    Lists are ordered newest first by ``created_at``; handing out distinct values
    keeps that order total without a second tie-breaking column.
    """

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def now_us(self) -> int:
        with self._lock:
            now = time.time_ns() // 1000
            self._last = max(now, self._last + 1)
            return self._last


def iso(us: int | None) -> str | None:
    """``2026-11-21T10:30:00.123Z`` from epoch microseconds (None stays None)."""
    if us is None:
        return None
    seconds, micros = divmod(us, 1_000_000)
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{micros // 1000:03d}Z"
