"""The shared rolling-window limiter, counted in a real SQLite file, on a fake clock."""

from __future__ import annotations

import asyncio
import contextlib
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from banatie_local.clock import Clock
from banatie_local.db import boundary
from banatie_local.db.boundary import Database
from banatie_local.db.connection import open_database
from banatie_local.errors import DatabaseBusyError
from banatie_local.services.ratelimit import Decision, SharedLimiter, decide

BUSY_MS = 1500  # longer than the 1 s a busy admission may take: admit must not wait it out


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.25

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    # QUICK_WAIT_MS also counts time queued and the thread start, so on a loaded
    # machine an unlocked database can look busy; 300 ms keeps these tests exact
    # and still well under BUSY_MS.
    monkeypatch.setattr(boundary, "QUICK_WAIT_MS", 300)
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "banatie.db"


@pytest.fixture
def open_db(db_path: Path) -> Iterator[Callable[[], Database]]:
    """Open the database file the way the container does; every one is closed after."""
    opened: list[Database] = []

    def open_() -> Database:
        db = Database(open_database(db_path, Clock(), BUSY_MS), BUSY_MS, read_threads=2)
        opened.append(db)
        return db

    yield open_
    for db in opened:
        db.close()


@pytest.fixture
def db(open_db: Callable[[], Database]) -> Database:
    return open_db()


def make(db: Database, clock: FakeClock, window: float = 60.0) -> SharedLimiter:
    return SharedLimiter(db, window=window, now=clock)


def hit(rl: SharedLimiter, bucket: str, limit: int, now: float) -> Decision:
    with rl.db.atomic():
        return rl.admit_now(bucket, limit, now)


def peek(rl: SharedLimiter, bucket: str, limit: int, now: float) -> Decision:
    with rl.db.atomic():
        return rl.count(bucket, limit, now)


def stored(db: Database, bucket: str) -> int:
    with db.atomic():
        row = db.execute_sql("SELECT COUNT(*) FROM rate_events WHERE bucket = ?", (bucket,))
        return int(row.fetchone()[0])


@contextlib.contextmanager
def write_lock(path: Path) -> Iterator[None]:
    """Another connection (a CLI command, a backup) holding the write lock."""
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        yield
        holder.execute("ROLLBACK")
    finally:
        holder.close()


def test_hits_up_to_the_limit(db: Database, clock: FakeClock) -> None:
    rl, first = make(db, clock), clock.now
    decisions = [hit(rl, "k", 3, first + 1.1 * i) for i in range(3)]
    assert [(d.allowed, d.remaining) for d in decisions] == [(True, 2), (True, 1), (True, 0)]
    assert {(d.limit, d.retry_after) for d in decisions} == {(3, 0)}
    clock.now = first + 3.3
    refused = hit(rl, "k", 3, clock.now)
    assert (refused.allowed, refused.remaining) == (False, 0)
    assert refused.retry_after == math.ceil(first + 60.0 - clock.now) >= 1
    assert refused.reset_at == math.ceil(first + 60.0)
    assert stored(db, "k") == 3


def test_async_admit_counts_in_the_database(db: Database, clock: FakeClock) -> None:
    rl = make(db, clock)

    async def run() -> list[Decision]:
        return [await rl.admit("k", 2) for _ in range(3)]

    decisions = asyncio.run(run())
    assert [(d.allowed, d.remaining) for d in decisions] == [(True, 1), (True, 0), (False, 0)]
    assert stored(db, "k") == 2
    assert peek(rl, "k", 2, clock.now).allowed is False


def test_retry_after_is_at_least_one(db: Database, clock: FakeClock) -> None:
    rl = make(db, clock, window=10.0)
    hit(rl, "k", 1, clock.now)
    refused = hit(rl, "k", 1, clock.now + 9.99)
    assert (refused.allowed, refused.retry_after) == (False, 1)


def test_headers(db: Database, clock: FakeClock) -> None:
    rl = make(db, clock)
    assert hit(rl, "k", 1, clock.now).headers() == {
        "X-RateLimit-Limit": "1",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(math.ceil(clock.now + 60.0)),
    }
    refused = hit(rl, "k", 1, clock.now + 20)
    headers = refused.headers()
    assert headers["Retry-After"] == str(refused.retry_after) == "40"
    assert headers["X-RateLimit-Remaining"] == "0"
    assert headers["X-RateLimit-Reset"] == str(refused.reset_at)


def test_decide_and_headers_are_pure() -> None:
    assert "Retry-After" not in Decision(True, 5, 4, 100, 0).headers()
    assert Decision(False, 5, 0, 100, 7).headers()["Retry-After"] == "7"
    assert decide(0, None, 5, 60.0, 100.5) == Decision(True, 5, 4, 161, 0)
    assert decide(5, 90.0, 5, 60.0, 100.5) == Decision(False, 5, 0, 150, 50)


def test_refused_hits_are_not_counted(db: Database, clock: FakeClock) -> None:
    """Once the first hit leaves the window exactly one slot is free."""
    rl, start = make(db, clock), clock.now
    hit(rl, "k", 3, start)
    hit(rl, "k", 3, start + 10)
    hit(rl, "k", 3, start + 10)
    for i in range(1, 6):
        assert hit(rl, "k", 3, start + 10 + 5 * i).allowed is False
    assert stored(db, "k") == 3
    freed = hit(rl, "k", 3, start + 60)  # exactly one window after the first hit
    assert (freed.allowed, freed.remaining) == (True, 0)
    assert hit(rl, "k", 3, start + 60).allowed is False


def test_window_rolls(db: Database, clock: FakeClock) -> None:
    """Each hit expires a full window after it was made, not at a clock boundary."""
    rl, start = make(db, clock, window=10.0), clock.now
    assert hit(rl, "k", 2, start).allowed
    assert hit(rl, "k", 2, start + 9).allowed
    clock.now = start + 10
    assert hit(rl, "k", 2, clock.now).allowed
    assert hit(rl, "k", 2, clock.now).allowed is False
    refused = hit(rl, "k", 2, start + 18.5)
    assert (refused.allowed, refused.reset_at) == (False, math.ceil(start + 19))
    assert hit(rl, "k", 2, start + 19).allowed
    assert hit(rl, "k", 2, start + 19).allowed is False
    assert stored(db, "k") == 2  # expired events are deleted, not just skipped


def test_event_just_inside_window_still_counts(db: Database, clock: FakeClock) -> None:
    rl, start = make(db, clock, window=10.0), clock.now
    hit(rl, "k", 1, start)
    assert hit(rl, "k", 1, start + 9.5).allowed is False
    assert hit(rl, "k", 1, start + 9.999999).allowed is False
    assert hit(rl, "k", 1, start + 10).allowed is True


def test_buckets_are_independent(db: Database, clock: FakeClock) -> None:
    rl = make(db, clock)
    assert hit(rl, "key:a", 2, clock.now).allowed
    assert hit(rl, "key:a", 2, clock.now).allowed
    assert hit(rl, "key:a", 2, clock.now).allowed is False
    b = hit(rl, "ip:a", 2, clock.now)
    assert (b.allowed, b.remaining) == (True, 1)
    assert hit(rl, "key:a", 2, clock.now).allowed is False


def test_reset_at(db: Database, clock: FakeClock) -> None:
    """``reset_at`` is the epoch second when the oldest counted hit leaves the window."""
    rl, oldest = make(db, clock, window=3600.0), clock.now
    assert hit(rl, "k", 3, oldest).reset_at == math.ceil(oldest + 3600)
    clock.now += 100.5
    assert hit(rl, "k", 3, clock.now).reset_at == math.ceil(oldest + 3600)
    assert peek(rl, "other", 3, clock.now).reset_at == math.ceil(clock.now + 3600)


def test_count_counts_nothing(db: Database, clock: FakeClock) -> None:
    rl = make(db, clock)
    for _ in range(5):
        again = peek(rl, "k", 2, clock.now)
        assert (again.allowed, again.remaining) == (True, 1)
    assert stored(db, "k") == 0
    hit(rl, "k", 2, clock.now)
    last = peek(rl, "k", 2, clock.now)
    assert (last.allowed, last.remaining) == (True, 0)
    hit(rl, "k", 2, clock.now)
    full = peek(rl, "k", 2, clock.now)
    assert (full.allowed, full.retry_after >= 1) == (False, True)
    assert stored(db, "k") == 2


def test_prune_drops_only_expired_events(db: Database, clock: FakeClock) -> None:
    rl, start = make(db, clock), clock.now
    hit(rl, "a", 5, start)
    hit(rl, "b", 5, start + 30)
    clock.now = start + 60
    with db.atomic():
        rl.prune()
    assert (stored(db, "a"), stored(db, "b")) == (0, 1)


def test_two_processes_share_one_budget(open_db: Callable[[], Database], clock: FakeClock) -> None:
    one, two = make(open_db(), clock), make(open_db(), clock)

    async def run() -> list[Decision]:
        return [await (one if i % 2 else two).admit("k", 5) for i in range(10)]

    decisions = asyncio.run(run())
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 5
    assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
    assert peek(one, "k", 5, clock.now).allowed is False
    assert stored(two.db, "k") == 5


def test_then_runs_in_the_same_transaction(db: Database, clock: FakeClock) -> None:
    rl, seen = make(db, clock), []

    def then() -> None:
        count = db.execute_sql("SELECT COUNT(*) FROM rate_events WHERE bucket = 'k'").fetchone()[0]
        seen.append((db.raw.in_transaction(), count, threading.current_thread().name))

    def fail() -> None:
        raise RuntimeError("boom")

    assert asyncio.run(rl.admit("k", 3, then)).allowed
    assert seen[0][:2] == (True, 1)  # inside the write, seeing the event just added
    assert seen[0][2].startswith("db-quick")
    with pytest.raises(RuntimeError, match="boom"):
        asyncio.run(rl.admit("k", 3, fail))
    assert stored(db, "k") == 1  # the failed ``then`` rolled its admission back


def test_busy_admits_from_allowance_then_settles(
    db: Database, db_path: Path, clock: FakeClock
) -> None:
    rl = make(db, clock)
    with write_lock(db_path):
        decisions = []
        for _ in range(2):  # an unseen bucket gets a tenth of its limit
            began = time.monotonic()
            decisions.append(asyncio.run(rl.admit("k", 20)))
            assert time.monotonic() - began < 1.0
        assert [(d.allowed, d.remaining) for d in decisions] == [(True, 1), (True, 0)]
        with pytest.raises(DatabaseBusyError):
            asyncio.run(rl.admit("k", 20))
        with pytest.raises(DatabaseBusyError):  # still locked: the events are kept
            asyncio.run(rl.settle())
    assert db.busy_events >= 4
    assert stored(db, "k") == 0
    assert asyncio.run(rl.settle()) == 2
    assert asyncio.run(rl.settle()) == 0
    assert peek(rl, "k", 20, clock.now).remaining == 17
    assert asyncio.run(rl.admit("k", 20)).remaining == 17


def test_busy_allowance_is_last_remaining_seen(
    db: Database, db_path: Path, clock: FakeClock
) -> None:
    rl = make(db, clock)
    assert asyncio.run(rl.admit("k", 3)).remaining == 2
    with write_lock(db_path):
        assert [asyncio.run(rl.admit("k", 3)).allowed for _ in range(2)] == [True, True]
        with pytest.raises(DatabaseBusyError):
            asyncio.run(rl.admit("k", 3))
        assert asyncio.run(rl.admit("other", 3)).remaining == 0  # unseen: max(1, 3 // 10)
        with pytest.raises(DatabaseBusyError):
            asyncio.run(rl.admit("other", 3))
    assert asyncio.run(rl.settle()) == 3
    assert (stored(db, "k"), stored(db, "other")) == (3, 1)
    assert peek(rl, "k", 3, clock.now).allowed is False
    assert asyncio.run(rl.admit("k", 3)).allowed is False
