"""Faults a self-hosted appliance meets: SIGKILL in the middle of work, a full or
unwritable disk, a hung image provider, and a client that trickles its body.

After every crash the same invariants must hold once the server is back: the
database is intact, no generation is left pending or processing, every image row
has its file with the recorded size and hash, and ``purge orphans`` reports exactly
the leftovers on disk, removes them, and finds nothing on a second run.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import resource
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Running
from tests.e2e.test_serve_subprocess import (
    KEY_IN_TEXT,
    assert_no_traceback,
    clean_env,
    console_script,
)
from tests.fakes.gemini import Answer, FakeGemini
from tests.helpers import free_port, sqlite
from tests.imagedata import noise_png, pixels, png_bytes

pytestmark = pytest.mark.slow

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
UPLOAD = "/api/v1/images/upload"
IMAGES = "/api/v1/images"
GENERATIONS = "/api/v1/generations"
ASYNC = {"Prefer": "respond-async"}
# Big enough for the database and its WAL, too small for a 2 MB image.
FILE_SIZE_LIMIT = 1024 * 1024


# ------------------------------------------------------------------ processes


def limit_file_size(limit: int) -> None:
    """Run in the child before exec: writes past ``limit`` bytes fail with EFBIG."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


class Serve:
    """One ``python -m banatie_local serve`` process on a data directory."""

    def __init__(
        self, data: Path, root: Path, env: dict[str, str], file_size_limit: int | None
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        number = len(list(root.glob("serve-*.out")))
        self.out_path = root / f"serve-{number}.out"
        self.err_path = root / f"serve-{number}.err"
        preexec = partial(limit_file_size, file_size_limit) if file_size_limit else None
        command = [sys.executable, "-m", "banatie_local", "serve", "--port", str(self.port)]
        with self.out_path.open("w") as out, self.err_path.open("w") as err:
            self.proc = subprocess.Popen(
                [*command, "--data-dir", str(data)],
                cwd=root,
                env={**clean_env(), "PYTHONUNBUFFERED": "1", **env},
                stdout=out,
                stderr=err,
                # only setrlimit and signal run between fork and exec
                preexec_fn=preexec,  # noqa: PLW1509
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
        lines = [line for line in self.stdout.splitlines() if "project key" in line]
        assert len(lines) == 1, self.stdout
        keys: list[str] = KEY_IN_TEXT.findall(lines[0])
        assert len(keys) == 1, lines[0]
        return keys[0]

    def client(self, key: str, timeout: float = 20) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-API-Key": key}, timeout=timeout)

    def sigkill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(STOP_TIMEOUT) == -signal.SIGKILL

    def sigterm(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"serve did not stop within {STOP_TIMEOUT} s of SIGTERM")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


StartServe = Callable[..., Serve]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def serve(tmp_path: Path, data_dir: Path) -> Iterator[StartServe]:
    """Start healthy ``serve`` processes on ``data_dir``; all are killed at teardown."""
    started: list[Serve] = []

    def start(file_size_limit: int | None = None, **env: str) -> Serve:
        server = Serve(data_dir, tmp_path, env, file_size_limit)
        started.append(server)
        server.wait_healthy()
        return server

    try:
        yield start
    finally:
        for server in started:
            server.kill()


@pytest.fixture(scope="module")
def big_pngs() -> list[bytes]:
    """Noise PNGs of about 1, 2 and 3 MB (noise barely compresses)."""
    return [noise_png(side, side, seed=side) for side in (600, 820, 1000)]


def gemini_env(fake: FakeGemini) -> dict[str, str]:
    return {
        "BANATIE_GENERATION_PROVIDER": "gemini",
        "BANATIE_GENERATION_GEMINI_API_KEY": "test-key",
        "BANATIE_GENERATION_GEMINI_BASE_URL": fake.url,
        "BANATIE_GENERATION_TIMEOUT_SECONDS": "60",
        "BANATIE_GENERATION_MAX_RETRIES": "0",
    }


def gemini_overrides(fake: FakeGemini, timeout: float) -> dict[str, Any]:
    return {
        "generation__provider": "gemini",
        "generation__gemini_api_key": "test-key",
        "generation__gemini_base_url": fake.url,
        "generation__timeout_seconds": timeout,
        "generation__max_retries": 0,
    }


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(0.02)


# ------------------------------------------------------------ concurrent load


class Burst:
    """Threads sending requests until the work runs out or the server goes away.

    ``request(client, n)`` sends the n-th request (n counts over all threads) and
    returns its response, or None when there is nothing left to send."""

    def __init__(
        self,
        server: Serve,
        key: str,
        threads: int,
        request: Callable[[httpx.Client, int], httpx.Response | None],
    ) -> None:
        self.answers: list[tuple[int, httpx.Response]] = []
        self.cut_off = 0
        self._lock = threading.Lock()
        self._numbers = itertools.count()
        self._server = server
        self._key = key
        self._request = request
        self._threads = [threading.Thread(target=self._work, daemon=True) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def _work(self) -> None:
        with self._server.client(self._key) as client:
            while True:
                with self._lock:
                    number = next(self._numbers)
                try:
                    response = self._request(client, number)
                except httpx.TransportError:
                    with self._lock:
                        self.cut_off += 1
                    return
                if response is None:
                    return
                with self._lock:
                    self.answers.append((number, response))

    def answered(self) -> int:
        with self._lock:
            return len(self.answers)

    def join(self) -> None:
        for thread in self._threads:
            thread.join(20)
            assert not thread.is_alive(), "a client thread did not finish"


# ----------------------------------------------------------------- invariants


def storage_of(data: Path) -> Path:
    return data / "storage"


def stored_keys(root: Path) -> set[str]:
    """Object keys on disk (hidden files and directories such as .tmp skipped)."""
    keys = set()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith("."):
                keys.add((Path(dirpath) / name).relative_to(root).as_posix())
    return keys


def temp_files(root: Path) -> set[str]:
    tmp = root.resolve() / ".tmp"
    return {str(p) for p in tmp.iterdir() if p.is_file()} if tmp.is_dir() else set()


def image_rows(data: Path) -> list[sqlite3.Row]:
    with sqlite(data / "banatie.db") as db:
        return db.execute("SELECT id, storage_key, file_size, file_hash FROM images").fetchall()


def generation_statuses(data: Path) -> dict[str, str]:
    with sqlite(data / "banatie.db") as db:
        rows = db.execute("SELECT id, status FROM generations").fetchall()
    return {row["id"]: row["status"] for row in rows}


def assert_database_intact(data: Path) -> None:
    with sqlite(data / "banatie.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []


def assert_invariants(data: Path) -> None:
    """Intact database, no unfinished generation, every image row backed by its file."""
    assert_database_intact(data)
    unfinished = {
        gid: status
        for gid, status in generation_statuses(data).items()
        if status in ("pending", "processing")
    }
    assert unfinished == {}
    root = storage_of(data)
    for row in image_rows(data):
        path = root / row["storage_key"]
        assert path.is_file(), f"image {row['id']} has no file"
        body = path.read_bytes()
        assert len(body) == row["file_size"], row["id"]
        assert hashlib.sha256(body).hexdigest() == row["file_hash"], row["id"]


def purge_orphans(data: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [console_script(), "--data-dir", str(data), "purge", "orphans", "--grace", "0", "--json"],
        cwd=data.parent,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert_no_traceback(proc.stdout, proc.stderr)
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def assert_purge_cleans_up(data: Path) -> dict[str, Any]:
    """``purge orphans --grace 0`` names exactly the leftovers on disk and removes
    them; a second run finds nothing. Returns the first report."""
    root = storage_of(data)
    rows = {row["storage_key"] for row in image_rows(data)}
    strays = sorted(stored_keys(root) - rows)
    temps = sorted(temp_files(root))
    report = purge_orphans(data)
    assert report == {
        "filesWithoutRows": strays,
        "rowsWithoutFiles": [],
        "recordedFiles": [],
        "tempFiles": temps,
        "removed": True,
    }
    assert stored_keys(root) == rows
    assert temp_files(root) == set()
    again = purge_orphans(data)
    assert again == {
        "filesWithoutRows": [],
        "rowsWithoutFiles": [],
        "recordedFiles": [],
        "tempFiles": [],
        "removed": True,
    }
    assert_invariants(data)
    return report


def restart(serve: StartServe, data: Path) -> Serve:
    """After a SIGKILL: the database is intact as left, and a new ``serve`` starts."""
    assert_database_intact(data)
    server = serve()
    assert "Already initialised" in server.stdout
    assert not KEY_IN_TEXT.search(server.stdout)
    assert_invariants(data)
    return server


def finish(server: Serve, data: Path) -> None:
    """Stop the restarted server cleanly; the invariants still hold."""
    assert server.sigterm() == 0, server.stderr
    assert_no_traceback(server.stdout, server.stderr)
    assert_invariants(data)


def assert_listed(server: Serve, key: str, data: Path) -> None:
    """The API lists exactly the image rows, and /cdn serves each one's bytes."""
    rows = {row["id"]: row for row in image_rows(data)}
    with server.client(key) as client:
        listed = client.get(IMAGES, params={"limit": 100}).json()
        assert listed["pagination"]["total"] == len(rows)
        assert {image["id"] for image in listed["data"]} == set(rows)
        for image in listed["data"][:5]:
            served = client.get(f"/cdn/default/default/img/{image['id']}")
            assert served.status_code == 200
            assert hashlib.sha256(served.content).hexdigest() == rows[image["id"]]["file_hash"]


# -------------------------------------------------------- 1. SIGKILL mid-work


def test_sigkill_during_an_upload_burst(
    serve: StartServe, data_dir: Path, big_pngs: list[bytes]
) -> None:
    """Uploads acknowledged before a SIGKILL survive it with their bytes; whatever
    the kill interrupted is cleaned by ``purge orphans``."""
    first = serve()
    key = first.project_key()
    hashes = [hashlib.sha256(body).hexdigest() for body in big_pngs]

    def upload(client: httpx.Client, n: int) -> httpx.Response:
        body = big_pngs[n % len(big_pngs)]
        return client.post(UPLOAD, files={"file": (f"noise-{n}.png", body, "image/png")})

    burst = Burst(first, key, threads=8, request=upload)
    wait_until(lambda: burst.answered() >= 12, 30, "12 uploads answered")
    first.sigkill()
    burst.join()

    assert burst.cut_off == 8
    for n, response in burst.answers:
        assert response.status_code == 201, response.text
        assert response.json()["data"]["fileHash"] == hashes[n % len(hashes)]
    acked = {response.json()["data"]["id"] for _, response in burst.answers}

    second = restart(serve, data_dir)
    rows = {row["id"]: row for row in image_rows(data_dir)}
    assert acked <= set(rows)
    # an upload committed just before the kill may have lost only its answer
    assert len(set(rows) - acked) <= burst.cut_off
    assert_purge_cleans_up(data_dir)
    assert_listed(second, key, data_dir)
    finish(second, data_dir)


def test_sigkill_during_generations(
    serve: StartServe, data_dir: Path, fake_gemini: FakeGemini
) -> None:
    """With a slow provider, a SIGKILL leaves generations processing; the next start
    marks them failed (interrupted) and keeps the finished ones intact."""
    fast, slow = 4, 8
    fake_gemini.queue(
        *[Answer("image", delay=0.1) for _ in range(fast)],
        *[Answer("hang", delay=3) for _ in range(slow)],
    )
    first = serve(**gemini_env(fake_gemini))
    key = first.project_key()
    with first.client(key) as client:
        ids = []
        for n in range(fast + slow):
            body = {"prompt": f"a lighthouse, take {n}", "autoEnhance": False}
            response = client.post(GENERATIONS, json=body, headers=ASYNC)
            assert response.status_code == 202, response.text
            ids.append(response.json()["data"]["id"])

    def settled() -> bool:
        statuses = list(generation_statuses(data_dir).values())
        done = statuses.count("success") == fast
        return done and len(fake_gemini.image_requests()) == fast + slow

    wait_until(settled, 15, "fast generations done, slow ones at the provider")
    first.sigkill()

    before = generation_statuses(data_dir)
    assert sorted(before.values()) == ["processing"] * slow + ["success"] * fast
    succeeded = {gid for gid, status in before.items() if status == "success"}

    second = restart(serve, data_dir)
    with second.client(key) as client:
        for gid in ids:
            generation = client.get(f"{GENERATIONS}/{gid}").json()["data"]
            if gid in succeeded:
                assert generation["status"] == "success"
                assert generation["outputImage"] is not None
            else:
                assert generation["status"] == "failed"
                assert generation["errorMessage"].startswith("interrupted")
                assert generation["outputImageId"] is None
    assert_purge_cleans_up(data_dir)
    assert len(image_rows(data_dir)) == fast
    assert_listed(second, key, data_dir)
    finish(second, data_dir)


def test_sigkill_during_concurrent_deletes(serve: StartServe, data_dir: Path) -> None:
    """Deletes acknowledged before a SIGKILL stay deleted with their files gone; a
    delete cut off between its commit and its unlink leaves a file for purge."""
    first = serve()
    key = first.project_key()
    with first.client(key) as client:
        ids = []
        for n in range(60):
            body = noise_png(64, 64, seed=n)
            response = client.post(UPLOAD, files={"file": ("small.png", body, "image/png")})
            assert response.status_code == 201, response.text
            ids.append(response.json()["data"]["id"])
    keys = {row["id"]: row["storage_key"] for row in image_rows(data_dir)}

    def delete(client: httpx.Client, n: int) -> httpx.Response | None:
        return client.delete(f"{IMAGES}/{ids[n]}") if n < len(ids) else None

    burst = Burst(first, key, threads=8, request=delete)
    wait_until(lambda: burst.answered() >= 25, 30, "25 deletes answered")
    first.sigkill()
    burst.join()

    for _, response in burst.answers:
        assert response.status_code == 200, response.text
    deleted = {ids[n] for n, _ in burst.answers}
    root = storage_of(data_dir)
    for image_id in deleted:
        assert not (root / keys[image_id]).exists()

    second = restart(serve, data_dir)
    remaining = {row["id"] for row in image_rows(data_dir)}
    assert not remaining & deleted
    with second.client(key) as client:
        for image_id in sorted(deleted)[:5]:
            assert client.get(f"{IMAGES}/{image_id}").status_code == 404
    report = assert_purge_cleans_up(data_dir)
    # only images whose delete was cut off can have left a file
    cut_off = {keys[i] for i in set(ids) - deleted - remaining}
    assert set(report["filesWithoutRows"]) <= cut_off
    assert_listed(second, key, data_dir)
    finish(second, data_dir)


def test_sigkill_between_an_in_place_write_and_its_row_update(
    serve: StartServe, data_dir: Path, fake_gemini: FakeGemini
) -> None:
    """A regeneration rewrites the same image. The server is held after the new bytes
    are stored and before the row is updated (a write lock taken on the database from
    another connection) and killed there; after the restart the row still describes
    its file."""
    first_png, second_png = png_bytes(40, 40, (200, 30, 30)), png_bytes(56, 56, (30, 30, 200))
    fake_gemini.queue(Answer("image", image=first_png), Answer("image", image=second_png, delay=1))
    first = serve(**gemini_env(fake_gemini))
    key = first.project_key()
    with first.client(key) as client:
        made = client.post(GENERATIONS, json={"prompt": "a kite", "autoEnhance": False})
    assert made.status_code == 201, made.text
    generation = made.json()["data"]
    assert generation["status"] == "success"
    image = generation["outputImage"]
    path = storage_of(data_dir) / image["storageKey"]
    # the model's pixels, in a file that also says what made it (API.md §14)
    assert pixels(path.read_bytes()) == pixels(first_png)
    assert image["fileHash"] == hashlib.sha256(path.read_bytes()).hexdigest()

    def regenerate() -> None:
        with first.client(key) as client, contextlib.suppress(httpx.TransportError):
            client.post(f"{GENERATIONS}/{generation['id']}/regenerate")

    worker = threading.Thread(target=regenerate, daemon=True)
    worker.start()
    wait_until(lambda: len(fake_gemini.image_requests()) == 2, 10, "the rerun at the provider")
    lock = sqlite3.connect(data_dir / "banatie.db", isolation_level=None, timeout=5)
    try:
        lock.execute("BEGIN IMMEDIATE")
        wait_until(lambda: pixels(path.read_bytes()) == pixels(second_png), 5, "the new bytes")
        first.sigkill()
        lock.execute("ROLLBACK")
    finally:
        lock.close()
    worker.join(10)

    second = restart(serve, data_dir)
    with second.client(key) as client:
        described = client.get(f"{IMAGES}/{image['id']}").json()["data"]
        served = client.get(f"/cdn/default/default/img/{image['id']}")
    assert described["fileHash"] == hashlib.sha256(served.content).hexdigest()
    assert described["fileSize"] == len(served.content)
    finish(second, data_dir)


# ------------------------------------------------------- 2. full / unwritable disk


def assert_clean_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert body["success"] is False
    assert body["error"]["code"] == code
    assert "Traceback" not in response.text
    return body


def test_upload_past_the_file_size_limit_is_a_clean_503(
    serve: StartServe, data_dir: Path, big_pngs: list[bytes]
) -> None:
    """A write that fails with EFBIG answers 503 STORAGE_UNAVAILABLE, leaves no row
    and no partial file, and the server goes on serving."""
    server = serve(file_size_limit=FILE_SIZE_LIMIT)
    key = server.project_key()
    root = storage_of(data_dir)
    big = big_pngs[1]
    assert len(big) > 2_000_000
    with server.client(key) as client:
        for _ in range(2):
            response = client.post(UPLOAD, files={"file": ("big.png", big, "image/png")})
            assert_clean_error(response, 503, "STORAGE_UNAVAILABLE")
            assert image_rows(data_dir) == []
            assert stored_keys(root) == set()
            assert temp_files(root) == set()

        assert client.get("/health").status_code == 200
        small = png_bytes(32, 32)
        stored = client.post(UPLOAD, files={"file": ("small.png", small, "image/png")})
        assert stored.status_code == 201, stored.text
        image = stored.json()["data"]
        served = client.get(f"/cdn/default/default/img/{image['id']}")
        assert served.status_code == 200
        assert served.content == small
        assert client.get(IMAGES).json()["pagination"]["total"] == 1

    assert server.sigterm() == 0, server.stderr
    assert_no_traceback(server.stdout, server.stderr)
    assert "File too large" in server.stderr  # the write failed with EFBIG
    assert_invariants(data_dir)
    assert stored_keys(root) == {image["storageKey"]}
    assert temp_files(root) == set()


def test_unwritable_storage_fails_writes_cleanly(start_server: Callable[..., Running]) -> None:
    """With ``<storage>/.tmp`` replaced by a regular file nothing can be written:
    uploads and generations answer 503, the generation is recorded failed, and the
    images already stored are served unchanged."""
    running = start_server()
    root = running.settings.storage_root
    uploaded = running.project(
        "POST", UPLOAD, files={"file": ("a.png", png_bytes(16, 16), "image/png")}
    )
    assert uploaded.status_code == 201, uploaded.text
    made = running.project("POST", GENERATIONS, json={"prompt": "a red kite", "autoEnhance": False})
    assert made.status_code == 201, made.text
    generation = made.json()["data"]
    assert generation["status"] == "success"
    output = generation["outputImage"]
    original = running.client.get(f"/cdn/default/default/img/{output['id']}").content
    assert hashlib.sha256(original).hexdigest() == output["fileHash"]
    keys_before = stored_keys(root)

    tmp = root / ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.write_bytes(b"not a directory")

    refused = running.project(
        "POST", UPLOAD, files={"file": ("b.png", png_bytes(16, 16, (0, 0, 255)), "image/png")}
    )
    assert_clean_error(refused, 503, "STORAGE_UNAVAILABLE")

    new = running.project("POST", GENERATIONS, json={"prompt": "a blue kite", "autoEnhance": False})
    assert_clean_error(new, 503, "STORAGE_UNAVAILABLE")
    failed = running.project("GET", GENERATIONS, params={"status": "failed"}).json()["data"]
    assert len(failed) == 1
    assert failed[0]["outputImageId"] is None
    assert failed[0]["errorMessage"].startswith("storage failed")

    rerun = running.project("PUT", f"{GENERATIONS}/{generation['id']}", json={"prompt": "a kite"})
    assert_clean_error(rerun, 503, "STORAGE_UNAVAILABLE")
    after = running.project("GET", f"{GENERATIONS}/{generation['id']}").json()["data"]
    assert after["status"] == "failed"
    assert after["errorMessage"].startswith("storage failed")
    assert after["outputImageId"] == output["id"]
    assert after["outputImage"]["fileHash"] == output["fileHash"]
    served = running.client.get(f"/cdn/default/default/img/{output['id']}")
    assert served.status_code == 200
    assert served.content == original

    health = running.client.get("/health")
    assert health.status_code == 503
    assert health.json()["checks"]["storage"] == "failing"
    assert running.project("GET", IMAGES).json()["pagination"]["total"] == 2
    assert stored_keys(root) == keys_before

    tmp.unlink()
    again = running.project(
        "POST", UPLOAD, files={"file": ("b.png", png_bytes(16, 16, (0, 0, 255)), "image/png")}
    )
    assert again.status_code == 201, again.text
    assert running.client.get("/health").status_code == 200
    assert_invariants(running.settings.data_dir)


# ------------------------------------------------------------ 3. hung provider


def timed(call: Callable[[], httpx.Response]) -> tuple[float, httpx.Response]:
    started = time.monotonic()
    response = call()
    return time.monotonic() - started, response


def test_hung_generations_do_not_block_other_requests(
    start_server: Callable[..., Running], fake_gemini: FakeGemini
) -> None:
    """While five generations wait on a provider that does not answer, /health and
    the other routes still answer within a second."""
    fake_gemini.queue(*[Answer("hang", delay=5) for _ in range(5)])
    # the probes below may send more than a key's default hourly budget in 2 s
    running = start_server(**gemini_overrides(fake_gemini, timeout=30), limits__requests_per_hour=0)
    ids = []
    for n in range(5):
        body = {"prompt": f"a storm, take {n}", "autoEnhance": False}
        response = running.project("POST", GENERATIONS, json=body, headers=ASYNC)
        assert response.status_code == 202, response.text
        ids.append(response.json()["data"]["id"])
    wait_until(lambda: len(fake_gemini.image_requests()) == 5, 10, "five calls at the provider")

    probes = 0
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        one = f"{GENERATIONS}/{ids[probes % 5]}"
        for method, path in (("GET", "/health"), ("GET", IMAGES), ("GET", one)):
            elapsed, response = timed(partial(running.project, method, path))
            assert response.status_code == 200, response.text
            assert elapsed < 1.0
        probes += 1
    assert probes >= 5
    statuses = running.project("GET", GENERATIONS).json()["data"]
    assert {g["status"] for g in statuses} == {"processing"}


def test_hung_generations_time_out_as_failed(
    start_server: Callable[..., Running], fake_gemini: FakeGemini
) -> None:
    """With ``generation.timeout_seconds = 1`` five hung generations end failed with
    a timeout message, concurrently, while /health stays fast."""
    fake_gemini.queue(*[Answer("hang", delay=4) for _ in range(5)])
    running = start_server(**gemini_overrides(fake_gemini, timeout=1))
    results: list[tuple[float, httpx.Response]] = []

    def generate(n: int) -> None:
        with httpx.Client(base_url=running.url, timeout=15) as client:
            body = {"prompt": f"a storm, take {n}", "autoEnhance": False}
            headers = {"X-API-Key": running.project_key or ""}
            results.append(timed(lambda: client.post(GENERATIONS, json=body, headers=headers)))

    started = time.monotonic()
    threads = [threading.Thread(target=generate, args=(n,), daemon=True) for n in range(5)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(fake_gemini.image_requests()) == 5, 10, "five calls at the provider")
    while any(thread.is_alive() for thread in threads) and time.monotonic() - started < 10:
        elapsed, health = timed(lambda: running.client.get("/health"))
        assert health.status_code == 200
        assert elapsed < 1.0
        time.sleep(0.05)
    for thread in threads:
        thread.join(10)
    assert time.monotonic() - started < 4  # the five ran side by side

    assert len(results) == 5
    for elapsed, response in results:
        assert response.status_code == 201, response.text
        generation = response.json()["data"]
        assert generation["status"] == "failed"
        assert generation["errorMessage"] == "Gemini did not answer within 1 seconds."
        assert generation["outputImage"] is None
        assert 900 <= generation["processingTimeMs"] < 3000
        assert elapsed < 3
    listed = running.project("GET", GENERATIONS, params={"status": "failed"}).json()
    assert listed["pagination"]["total"] == 5


# -------------------------------------------------------------- 4. slow client


def content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


class Trickle:
    """A raw connection that sends request headers, then its body one byte every
    0.2 s until stopped. The bytes go out at 0.1 s, 0.3 s, ...: off the grid of a
    whole-second deadline, so none lands just as the server closes the socket."""

    def __init__(self, port: int, head: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.sendall(head.encode())
        self.started = time.monotonic()
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, daemon=True)
        self._thread.start()

    def _trickle(self) -> None:
        self._stop.wait(0.1)
        while not self._stop.is_set():
            try:
                self.sock.send(b"-")
            except OSError:
                return
            self.sent += 1
            self._stop.wait(0.2)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def readable(self, timeout: float) -> bool:
        # poll, not select: a long test session can hold descriptors above 1024
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        return bool(poller.poll(timeout * 1000))

    def read_response(self, timeout: float) -> tuple[bytes, bytes]:
        """One HTTP response (head, body), sized by its Content-Length."""
        deadline = time.monotonic() + timeout
        received = b""
        while True:
            head, found, body = received.partition(b"\r\n\r\n")
            if found and len(body) >= content_length(head):
                return head, body
            if time.monotonic() > deadline:
                pytest.fail(f"incomplete response: {received!r}")
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.sock.recv(65536)
            if not chunk:
                pytest.fail(f"connection closed mid-response: {received!r}")
            received += chunk

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)

    def close(self) -> None:
        self.stop()
        self.sock.close()


def trickle_head(method: str, path: str, key: str | None) -> str:
    return (
        f"{method} {path} HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\n"
        + (f"X-API-Key: {key}\r\n" if key else "")
        + "Content-Type: multipart/form-data; boundary=xyz\r\n"
        "Content-Length: 1000\r\n\r\n"
    )


def test_trickled_body_gets_408_and_the_connection_closes(
    start_server: Callable[..., Running],
) -> None:
    """A body sent one byte every 0.2 s is answered 408 after ``server.request_timeout``
    and the connection is closed; other clients are served throughout."""
    running = start_server(server__request_timeout=1)
    slow = Trickle(running.server.port, trickle_head("POST", UPLOAD, running.project_key))
    try:
        probes = 0
        while not slow.readable(0.05):
            if slow.elapsed() > 5:
                pytest.fail("no answer to the trickled request within 5 s")
            elapsed, health = timed(lambda: running.client.get("/health"))
            assert health.status_code == 200
            assert elapsed < 0.5
            probes += 1
        answered = slow.elapsed()
        slow.stop()
        head, body = slow.read_response(3)
        slow.sock.settimeout(2)
        waited = time.monotonic()
        assert slow.sock.recv(65536) == b""
        assert time.monotonic() - waited < 1
    finally:
        slow.close()
    assert probes >= 3
    assert 0.8 <= answered <= 2.5
    assert slow.sent < 20
    assert head.startswith(b"HTTP/1.1 408")
    assert json.loads(body)["error"]["code"] == "REQUEST_TIMEOUT"

    assert running.client.get("/health").status_code == 200
    afterwards = running.project(
        "POST", UPLOAD, files={"file": ("a.png", png_bytes(8, 8), "image/png")}
    )
    assert afterwards.status_code == 201, afterwards.text


@pytest.mark.parametrize(
    ("method", "path", "with_key", "status"),
    [("POST", "/no-such-route", False, 404), ("PATCH", IMAGES, True, 405)],
)
def test_trickled_body_after_an_early_error_is_cut_off(
    start_server: Callable[..., Running], method: str, path: str, with_key: bool, status: int
) -> None:
    """A request refused before its body is read (even one without a key) may not keep
    its connection open by trickling that body: the connection closes within about
    ``server.request_timeout``."""
    running = start_server(server__request_timeout=1)
    key = running.project_key if with_key else None
    slow = Trickle(running.server.port, trickle_head(method, path, key))
    try:
        head, _ = slow.read_response(3)
        assert head.startswith(f"HTTP/1.1 {status}".encode())
        slow.sock.settimeout(0.5)
        closed = False
        while slow.elapsed() < 3 and not closed:
            try:
                closed = slow.sock.recv(65536) == b""
            except TimeoutError:
                continue
            except ConnectionResetError:
                closed = True
    finally:
        slow.close()
    assert closed, f"still open after {slow.elapsed():.1f} s and {slow.sent} trickled bytes"
