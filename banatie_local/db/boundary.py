"""The database boundary: async code reaches the database only through ``Database``.

Services stay plain synchronous Peewee code; the event loop hands each unit of work
to a thread and awaits it, so a slow or locked database never stalls other requests:

- ``await db.read(fn, *args)`` runs ``fn`` on a small pool of reader threads. Their
  connections are ``query_only``, so a write slipped into a read fails loudly.
- ``await db.write(fn, *args)`` runs ``fn`` on the one writer thread, inside one
  short ``BEGIN IMMEDIATE`` transaction. Writes run in the order they were asked
  for, and never contend with each other inside this process.
- ``await db.quick_write(fn, *args)`` is a write on a second, separate thread that
  waits at most ``QUICK_WAIT_MS`` for the lock once it runs: the rate-limit
  admission, which must not queue behind a long write or wait out another process's
  lock.

Each write carries a deadline of ``database.busy_timeout_ms`` from when it was asked
for. SQLite's busy handler waits only for what is left of it, and a write still
queued when its deadline passes is refused without running, so a locked database
answers 503 ``DATABASE_BUSY`` in bounded time instead of freezing or failing with 500.

Peewee keeps one connection per thread, so each thread here has its own. The CLI,
which has no event loop to protect, calls services directly.

On PostgreSQL (``database.url``) the same threads hold one connection each; a lock
waited on past the deadline (``lock_timeout``) is the same 503, and a server that
cannot be reached is a 503 ``DATABASE_UNAVAILABLE``: the thread drops its connection
and the next unit of work connects afresh, so a restarted server is used again
without restarting the appliance. Raw SQL is written with ``?`` and
``execute_sql`` gives the driver its own parameter style.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, Final, ParamSpec, TypeVar

from peewee import Database as PeeweeDatabase
from peewee import DatabaseError, InterfaceError, OperationalError

from banatie_local.db.connection import dialect_of
from banatie_local.db.lanes import Lane
from banatie_local.errors import DatabaseBusyError, DatabaseUnavailableError, ValidationError

P = ParamSpec("P")
T = TypeVar("T")

QUICK_WAIT_MS: Final = 50
_local = threading.local()  # per thread: whether its connection is read-only


class Database:
    """The one object through which async code reaches the database."""

    def __init__(self, raw: PeeweeDatabase, busy_timeout_ms: int, read_threads: int) -> None:
        self.raw = raw
        self.dialect = dialect_of(raw)
        self.busy_timeout_ms = busy_timeout_ms
        close = self.raw.close
        self._reads = Lane(read_threads, "db-read", partial(self._open, True), close)
        self._writes = Lane(1, "db-write", partial(self._open, False), close)
        self._quick = Lane(1, "db-quick", partial(self._open, False), close)
        self._busy_events = 0
        self.on_busy: Callable[[], None] | None = None  # told of each busy event
        self._quick_busy_until = 0.0
        self._lock = threading.Lock()

    # ------------------------------------------------------ synchronous pass-through

    def atomic(self) -> Any:
        """A transaction for synchronous code already inside the boundary (or the CLI)."""
        return self.raw.atomic()

    def lock(self, key: str) -> None:
        """Inside a write: hold ``key`` until the transaction ends, so a check and the
        write that follows it cannot interleave with another process doing the same.
        SQLite needs nothing (a write transaction holds the whole database);
        PostgreSQL takes a transaction-scoped advisory lock on the key's hash."""
        if self.dialect.postgres:
            self.raw.execute_sql("SELECT pg_advisory_xact_lock(hashtext(%s))", (key,))

    def execute_sql(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        """Raw SQL written with ``?`` parameters, in the driver's style."""
        return self.raw.execute_sql(self.dialect.sql(sql), params)

    # ------------------------------------------------------------------ async edge

    async def read(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` on a reader thread (no transaction, no writes)."""
        return await self._reads.run(self._run_read, fn, args, kwargs)

    async def write(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` in one transaction on the writer thread; 503 if the database
        stays locked past ``busy_timeout_ms``."""
        deadline = time.monotonic() + self.busy_timeout_ms / 1000
        return await self._writes.run(self._run_write, fn, args, kwargs, deadline)

    async def quick_write(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """A write that waits at most ``QUICK_WAIT_MS`` for the lock, on its own thread."""
        return await self._quick.run(self._run_quick, fn, args, kwargs)

    @property
    def busy_events(self) -> int:
        """How many units of work were refused because the database stayed locked."""
        return self._busy_events

    # ---------------------------------------------------------------- thread side

    def _open(self, read_only: bool) -> None:
        """A thread's connection, opened when its first unit of work runs (and again
        after a PostgreSQL connection was lost)."""
        _local.read_only = read_only

    def _connect(self) -> None:
        if not self.raw.is_closed():
            return
        self.raw.connect(reuse_if_open=True)
        read_only = getattr(_local, "read_only", False)
        if self.dialect.postgres:
            self.raw.execute_sql(
                f"SET default_transaction_read_only = {'on' if read_only else 'off'}"
            )
        elif read_only:
            self.raw.execute_sql("PRAGMA query_only = 1")

    def _run_read(self, fn: Callable[..., T], args: Any, kwargs: Any) -> T:
        with self._busy_as_503():
            try:
                self._connect()
                return fn(*args, **kwargs)
            except (OperationalError, InterfaceError) as exc:
                if not self.dialect.is_unavailable(exc):
                    raise
                # a connection the server dropped (a restart): a read runs again once
                # on a new one
                self._drop()
                self._connect()
                return fn(*args, **kwargs)

    def _drop(self) -> None:
        with contextlib.suppress(Exception):
            self.raw.close()

    def _session(self, statement: str) -> None:
        """A session setting before a write; a connection the server dropped meanwhile
        fails here, before any work, and is replaced once."""
        self._connect()
        try:
            self.raw.execute_sql(statement)
        except (OperationalError, InterfaceError) as exc:
            if not self.dialect.is_unavailable(exc):
                raise
            self._drop()
            self._connect()
            self.raw.execute_sql(statement)

    @contextmanager
    def _busy_as_503(self) -> Iterator[None]:
        try:
            yield
        except (OperationalError, InterfaceError, DatabaseError) as exc:
            if self.dialect.is_busy(exc):
                self._count_busy()
                raise DatabaseBusyError() from exc
            if self.dialect.is_refused_text(exc):
                raise ValidationError("text must not contain NUL characters.") from exc
            if self.dialect.is_unavailable(exc):
                self._count_busy()
                self._drop()
                raise DatabaseUnavailableError() from exc
            raise

    def _run_write(self, fn: Callable[..., T], args: Any, kwargs: Any, deadline: float) -> T:
        remaining_ms = int((deadline - time.monotonic()) * 1000)
        if remaining_ms <= 0:  # waited in the queue behind a locked database
            self._count_busy()
            raise DatabaseBusyError()
        with self._busy_as_503():
            if self.dialect.postgres:
                self._session(f"SET lock_timeout = {remaining_ms}")
            else:
                self._session(f"PRAGMA busy_timeout = {remaining_ms}")
            with self.raw.atomic():
                return fn(*args, **kwargs)

    def _run_quick(self, fn: Callable[..., T], args: Any, kwargs: Any) -> T:
        """The wait starts when the job runs, so time queued behind other quick writes
        is not mistaken for a lock; once a lock was met, jobs in the next
        ``QUICK_WAIT_MS`` try once without waiting rather than each waiting in turn."""
        now = time.monotonic()
        wait = 0.002 if now < self._quick_busy_until else QUICK_WAIT_MS / 1000
        try:
            return self._run_write(fn, args, kwargs, now + wait)
        except DatabaseBusyError:
            self._quick_busy_until = time.monotonic() + QUICK_WAIT_MS / 1000
            raise

    def _count_busy(self) -> None:
        with self._lock:
            self._busy_events += 1
        if self.on_busy is not None:
            self.on_busy()

    def close(self) -> None:
        """Stop the threads (their connections close with them) and this thread's own."""
        for pool in (self._reads, self._writes, self._quick):
            pool.shutdown()
        self.raw.close()
