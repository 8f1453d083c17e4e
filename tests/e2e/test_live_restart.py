"""Live-URL hit counts and cache state across processes: the shutdown flush of a real
``serve``, a restart that continues the count, and a CLI purge seen by a running
server (API.md §5.1, §9)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.test_live import FakeProvider, assert_hit, assert_miss, live
from tests.conftest import Running
from tests.helpers import free_port, sqlite

pytestmark = pytest.mark.slow

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
LIVE = "/cdn/default/default/live"


def clean_env(**settings: str) -> dict[str, str]:
    """This process's environment without appliance settings, plus ``settings``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("BANATIE_") and name not in ("GEMINI_API_KEY", "OPENAI_API_KEY")
    }
    env.update(settings)
    return env


class Serve:
    """One ``python -m banatie_local serve`` process on its own port."""

    def __init__(self, data: Path, cwd: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "banatie_local",
                "serve",
                "--port",
                str(self.port),
                "--data-dir",
                str(data),
            ],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stdout = ""
        self.stderr = ""

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stdout, self.stderr = self.proc.communicate()
                pytest.fail(f"serve exited with {self.proc.returncode}:\n{self.stderr}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        pytest.fail(f"serve did not answer /health within {START_TIMEOUT} s")

    def terminate(self) -> int:
        """SIGTERM, then wait for a clean exit; returns the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.stdout, self.stderr = self.proc.communicate(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"serve did not stop within {STOP_TIMEOUT} s of SIGTERM")
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Serve]]:
    """Start ``serve`` processes on ``tmp_path/data``; any still running are killed."""
    started: list[Serve] = []

    def start(**settings: str) -> Serve:
        server = Serve(tmp_path / "data", tmp_path, clean_env(**settings))
        started.append(server)
        server.wait_healthy()
        return server

    try:
        yield start
    finally:
        for server in started:
            server.kill()


def entries(data: Path) -> list[dict[str, Any]]:
    with sqlite(data / "banatie.db") as conn:
        return [dict(row) for row in conn.execute("SELECT * FROM live_cache_entries")]


def test_hit_counts_are_flushed_on_stop_and_continue_after_restart(
    serve: Callable[..., Serve], tmp_path: Path
) -> None:
    """With a long flush interval, SIGTERM writes the pending counts; the next process
    reads the count from the database and the bytes from disk."""
    data = tmp_path / "data"
    server = serve(BANATIE_LIVE_HIT_FLUSH_SECONDS="5")
    started = time.monotonic()
    params = {"prompt": "a harbour at dusk"}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        first = client.get(f"{LIVE}/harbour", params=params)
        assert_miss(first)
        for hits in (1, 2, 3):
            hit = client.get(f"{LIVE}/harbour", params=params)
            assert_hit(hit, hits)
            assert hit.content == first.content
    (entry,) = entries(data)
    if time.monotonic() - started < 4:  # before the first background flush
        assert entry["hit_count"] == 0

    assert server.terminate() == 0, server.stderr
    assert "Traceback" not in server.stderr
    (entry,) = entries(data)
    assert entry["hit_count"] == 3
    assert entry["last_hit_at"] is not None
    assert entry["image_id"] == first.headers["x-image-id"]

    again = serve(BANATIE_LIVE_HIT_FLUSH_SECONDS="5")
    with httpx.Client(base_url=again.url, timeout=30) as client:
        hit = client.get(f"{LIVE}/harbour", params=params)
        assert_hit(hit, 4)
        assert hit.content == first.content
        assert hit.headers["etag"] == first.headers["etag"]
        assert hit.headers["x-image-id"] == first.headers["x-image-id"]
    assert again.terminate() == 0, again.stderr
    (entry,) = entries(data)
    assert entry["hit_count"] == 4
    with sqlite(data / "banatie.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM generations").fetchone()[0] == 1


def test_cli_purge_is_seen_by_a_running_server(serve: Callable[..., Serve], tmp_path: Path) -> None:
    """``purge cache`` from another process: the server stops serving the purged
    entries from memory within one flush interval."""
    data = tmp_path / "data"
    server = serve(BANATIE_LIVE_HIT_FLUSH_SECONDS="0.1")
    with httpx.Client(base_url=server.url, timeout=30) as client:

        def get(prompt: str, scope: str) -> httpx.Response:
            return client.get(f"{LIVE}/{scope}", params={"prompt": prompt})

        purged = get("a quiet meadow", "s1")
        assert_miss(purged)
        assert_miss(get("a quiet meadow", "s2"))
        assert_hit(get("a quiet meadow", "s1"), 1)

        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "banatie_local",
                "purge",
                "cache",
                "--scope",
                "s1",
                "--project",
                "default/default",
                "--json",
                "--data-dir",
                str(data),
            ],
            cwd=tmp_path,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == {"purged": 1}

        time.sleep(0.5)  # several flush intervals
        again = get("a quiet meadow", "s1")
        assert_miss(again)
        assert again.headers["x-image-id"] != purged.headers["x-image-id"]
        assert_hit(get("a quiet meadow", "s2"))
    assert server.terminate() == 0, server.stderr


def test_hit_counts_survive_a_flush_that_fails(start_server: Callable[..., Running]) -> None:
    """A flush that cannot get the write lock keeps its counts for the next one."""
    app = start_server(provider=FakeProvider(), live__hit_flush_seconds=0.1)
    image_id = live(app, "locked out").headers["x-image-id"]
    blocker = sqlite3.connect(app.settings.database_path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        for hits in (1, 2, 3):
            assert_hit(live(app, "locked out"), hits)
        time.sleep(5.5)  # longer than the server's busy_timeout
        blocker.execute("ROLLBACK")
    finally:
        blocker.close()

    def hit_count() -> int:
        with sqlite(app.settings.database_path) as conn:
            row = conn.execute(
                "SELECT hit_count FROM live_cache_entries WHERE image_id = ?", (image_id,)
            ).fetchone()
        return int(row[0])

    deadline = time.monotonic() + 2
    while hit_count() != 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert hit_count() == 3
