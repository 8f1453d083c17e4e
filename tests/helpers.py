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


@contextmanager
def sqlite(path: Path) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection, to check the database without our own code."""
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        yield conn
    finally:
        conn.close()


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
