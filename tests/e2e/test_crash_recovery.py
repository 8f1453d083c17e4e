"""A real ``serve`` process killed or stopped while a generation is in flight: the
row is never left pending/processing after the next start, and the database stays
intact."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_serve_subprocess import KEY_IN_TEXT, assert_no_traceback, clean_env
from tests.fakes.gemini import Answer, FakeGemini
from tests.helpers import free_port, sqlite

pytestmark = pytest.mark.slow

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
GENERATIONS = "/api/v1/generations"


class Serve:
    """One ``python -m banatie_local serve`` process, its output in files."""

    def __init__(self, data: Path, root: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        number = len(list(root.glob("serve-*.out")))
        self.out_path = root / f"serve-{number}.out"
        self.err_path = root / f"serve-{number}.err"
        with self.out_path.open("w") as out, self.err_path.open("w") as err:
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
                cwd=root,
                env={**clean_env(), "PYTHONUNBUFFERED": "1", **env},
                stdout=out,
                stderr=err,
            )

    @property
    def stdout(self) -> str:
        return self.out_path.read_text()

    @property
    def stderr(self) -> str:
        return self.err_path.read_text()

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"serve exited with {self.proc.returncode}:\n{self.stderr}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        pytest.fail(f"serve did not answer /health within {START_TIMEOUT} s")

    def project_key(self) -> str:
        """The project key from its labelled line of the first-run output."""
        lines = [line for line in self.stdout.splitlines() if "project key" in line]
        assert len(lines) == 1, self.stdout
        keys: list[str] = KEY_IN_TEXT.findall(lines[0])
        assert len(keys) == 1, lines[0]
        return keys[0]

    def signal(self, sig: signal.Signals) -> int:
        """Send ``sig`` and wait for the exit; returns the exit code."""
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"serve did not stop within {STOP_TIMEOUT} s of {sig.name}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


StartServe = Callable[..., Serve]


@pytest.fixture
def fake_gemini() -> Iterator[FakeGemini]:
    """A Gemini endpoint whose next answers never come (each hangs for 30 s)."""
    fake = FakeGemini().start()
    fake.queue(*[Answer("hang", delay=30) for _ in range(5)])
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def serve(tmp_path: Path, data_dir: Path) -> Iterator[StartServe]:
    """Start ``serve`` processes on ``data_dir``; every one is killed at teardown."""
    started: list[Serve] = []

    def start(**env: str) -> Serve:
        server = Serve(data_dir, tmp_path, env)
        started.append(server)
        server.wait_healthy()
        return server

    try:
        yield start
    finally:
        for server in started:
            server.kill()


def gemini_env(fake: FakeGemini) -> dict[str, str]:
    return {
        "BANATIE_GENERATION_PROVIDER": "gemini",
        "BANATIE_GENERATION_GEMINI_API_KEY": "k",
        "BANATIE_GENERATION_GEMINI_BASE_URL": fake.url,
        "BANATIE_GENERATION_TIMEOUT_SECONDS": "60",
    }


def start_async_generation(server: Serve, key: str, fake: FakeGemini) -> str:
    """POST with ``Prefer: respond-async``, then wait until the provider call hangs."""
    headers = {"X-API-Key": key}
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
        response = client.post(
            GENERATIONS,
            json={"prompt": "a lighthouse in a storm", "autoEnhance": False},
            headers={"Prefer": "respond-async"},
        )
        assert response.status_code == 202, response.text
        generation_id: str = response.json()["data"]["id"]
        deadline = time.monotonic() + 10
        while True:
            status = client.get(f"{GENERATIONS}/{generation_id}").json()["data"]["status"]
            if status == "processing" and fake.image_requests():
                return generation_id
            assert status in {"pending", "processing"}, status
            if time.monotonic() > deadline:
                pytest.fail(f"generation still {status} after 10 s")
            time.sleep(0.05)


def stored_generation(data_dir: Path, generation_id: str) -> dict[str, Any]:
    with sqlite(data_dir / "banatie.db") as db:
        row = db.execute("SELECT * FROM generations WHERE id = ?", (generation_id,)).fetchone()
    assert row is not None
    return dict(row)


def integrity(data_dir: Path) -> str:
    with sqlite(data_dir / "banatie.db") as db:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])


def test_killed_server_marks_the_generation_failed_on_restart(
    serve: StartServe, fake_gemini: FakeGemini, data_dir: Path
) -> None:
    """SIGKILL mid-generation leaves the row processing; the next start fails it."""
    first = serve(**gemini_env(fake_gemini))
    key = first.project_key()
    generation_id = start_async_generation(first, key, fake_gemini)

    first.proc.send_signal(signal.SIGKILL)
    assert first.proc.wait(STOP_TIMEOUT) == -signal.SIGKILL
    row = stored_generation(data_dir, generation_id)
    assert row["status"] == "processing"
    assert row["output_image_id"] is None

    second = serve()  # offline this time
    assert "Already initialised" in second.stdout
    assert not KEY_IN_TEXT.search(second.stdout)
    response = httpx.get(
        f"{second.url}{GENERATIONS}/{generation_id}", headers={"X-API-Key": key}, timeout=10
    )
    assert response.status_code == 200, response.text
    generation = response.json()["data"]
    assert generation["status"] == "failed"
    assert "interrupted" in generation["errorMessage"]
    assert generation["outputImage"] is None
    assert integrity(data_dir) == "ok"
    with sqlite(data_dir / "banatie.db") as db:
        assert db.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 0

    # the interrupted record can be run again, here by the offline provider
    retried = httpx.post(
        f"{second.url}{GENERATIONS}/{generation_id}/retry", headers={"X-API-Key": key}, timeout=30
    )
    assert retried.status_code == 200, retried.text
    assert retried.json()["data"]["status"] == "success"
    assert retried.json()["data"]["meta"]["provider"] == "offline"
    assert second.signal(signal.SIGTERM) == 0, second.stderr
    assert integrity(data_dir) == "ok"


def test_sigterm_interrupts_a_running_generation_cleanly(
    serve: StartServe, fake_gemini: FakeGemini, data_dir: Path
) -> None:
    """SIGTERM cancels the background generation, records it failed, and exits 0."""
    server = serve(**gemini_env(fake_gemini))
    generation_id = start_async_generation(server, server.project_key(), fake_gemini)

    started = time.monotonic()
    assert server.signal(signal.SIGTERM) == 0, server.stderr
    assert time.monotonic() - started < STOP_TIMEOUT
    assert server.stdout.rstrip().splitlines()[-1] == "banatie-local stopped."
    assert_no_traceback(server.stdout, server.stderr)

    row = stored_generation(data_dir, generation_id)
    assert row["status"] == "failed"
    assert "interrupted" in row["error_message"]
    assert row["processing_time_ms"] is not None
    assert integrity(data_dir) == "ok"
