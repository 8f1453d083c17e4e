"""Test helpers: a real Sanic server on a free port, in a background thread."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from sanic import Sanic

from banatie_local.config import Settings, load_settings


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for a test: defaults plus ``section.key`` overrides, host env ignored."""
    return load_settings(
        data_dir=data_dir,
        overrides={k.replace("__", "."): v for k, v in overrides.items()},
        environ={},
    )


class LiveServer:
    """Runs ``app`` with Sanic's own server on 127.0.0.1 in a thread with its own loop."""

    def __init__(self, app: Sanic[Any, Any]) -> None:
        self.app = app
        self.port = 0
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self, attempts: int = 5) -> LiveServer:
        """Start on a free port; another process may grab the port first, so retry.

        Also retried: CPython 3.11.7's ``SystemError: AST constructor recursion depth
        mismatch`` (python/cpython#106905, fixed in later releases), which Sanic's
        router compilation can meet, rarely, when started on a thread."""
        for _ in range(attempts - 1):
            try:
                return self._start_once()
            except RuntimeError as exc:
                cause = exc.__cause__
                ast_bug = isinstance(cause, SystemError) and "recursion depth" in str(cause)
                if not (isinstance(cause, OSError) or ast_bug):
                    raise
                if ast_bug:  # the routers were marked final before their source failed
                    self.app.router.reset()
                    self.app.signal_router.reset()
        return self._start_once()

    def _start_once(self) -> LiveServer:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._error = None
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(20):
            raise RuntimeError("test server did not start in 20 s")
        if self._error:
            raise RuntimeError("test server failed to start") from self._error
        return self

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            server = loop.run_until_complete(
                self.app.create_server(host="127.0.0.1", port=self.port, return_asyncio_server=True)
            )
            assert server is not None
            loop.run_until_complete(server.startup())
            loop.run_until_complete(server.before_start())
            loop.run_until_complete(server.after_start())
        except BaseException as exc:
            self._error = exc
            loop.close()  # a retry starts on a loop of its own
            ready.set()
            return
        ready.set()
        loop.run_forever()
        loop.run_until_complete(server.before_stop())
        closing_task = server.close()
        if closing_task is not None:
            loop.run_until_complete(closing_task)
        loop.run_until_complete(server.after_stop())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    def stop(self) -> None:
        if self._loop and self._thread and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(20)


# The appliances of this process that run on PostgreSQL: data dir's SQLite path → URL.
POSTGRES_URLS: dict[Path, str] = {}


@contextmanager
def sqlite(path: Path) -> Iterator[Any]:
    """A plain driver connection, to check the database without our own code: sqlite3
    on the file, or psycopg when the appliance of that data dir runs on PostgreSQL
    (the same ``?`` SQL, rows readable by index and by name)."""
    url = POSTGRES_URLS.get(path)
    if url is not None:
        with _PostgresChecks(url) as checks:
            yield checks
        return
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        yield conn
    finally:
        conn.close()


class _Row(tuple):  # type: ignore[type-arg]
    """A row readable as ``row[0]`` and ``row["name"]``, as ``sqlite3.Row`` is."""

    names: tuple[str, ...] = ()

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self.names.index(key))
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self.names)


class _PostgresChecks:
    def __init__(self, url: str) -> None:
        import psycopg

        self.conn = psycopg.connect(url)

    def __enter__(self) -> _PostgresChecks:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.conn.close()

    def execute(self, sql: str, params: Any = ()) -> Any:
        # SQLite's own checks: PostgreSQL enforces foreign keys on every write, and
        # checks its pages itself
        if sql.strip() == "PRAGMA foreign_key_check":
            sql = "SELECT 1 WHERE false"
        elif sql.strip() == "PRAGMA integrity_check":
            sql = "SELECT 'ok'"
        cursor = self.conn.cursor(row_factory=_row_factory)
        cursor.execute(sql.replace("%", "%%").replace("?", "%s"), params)  # type: ignore[arg-type]
        return cursor

    def executemany(self, sql: str, rows: Any) -> None:
        with self.conn.cursor() as cursor:
            cursor.executemany(sql.replace("%", "%%").replace("?", "%s"), rows)

    def commit(self) -> None:
        self.conn.commit()


def _row_factory(cursor: Any) -> Any:
    names = tuple(d.name for d in cursor.description or ())

    def make(values: Any) -> _Row:
        row = _Row(values)
        row.names = names
        return row

    return make


def eventually(check: Any, timeout: float = 3.0, interval: float = 0.05) -> Any:
    """Call ``check`` until it returns a truthy value (then return it) or ``timeout``
    passes (then return its last value): for what another process changes and this
    one sees within the change feed's poll interval."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def parallel(count: int, call: Any, threads: int = 8) -> list[Any]:
    """``call(0)`` … ``call(count - 1)`` on ``threads`` threads; their results in order."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(call, range(count)))


def assert_exact_budget(responses: list[Any], limit: int) -> None:
    """Exactly ``limit`` of the answers were admitted, the rest refused with 429."""
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == limit, statuses
    assert statuses.count(429) == len(responses) - limit, statuses


def assert_one_generation(responses: list[Any], provider_calls: int) -> None:
    """Identical live misses: all answered with the same bytes, one MISS, one call."""
    assert [r.status_code for r in responses] == [200] * len(responses), [r.text for r in responses]
    assert len({r.content for r in responses}) == 1
    assert sorted(r.headers["x-cache-status"] for r in responses).count("MISS") == 1
    assert provider_calls == 1


def wait_until_serving(proc: Any, url: str, timeout: float = 60) -> None:
    """Until ``url``/health answers 200; fails at once if ``proc`` exits."""
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{url} did not start serving"
        time.sleep(0.1)


def stop_processes(procs: list[Any], timeout: float = 20) -> None:
    """SIGTERM every process, then wait for each (killing one that does not stop)."""
    import signal
    import subprocess

    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
