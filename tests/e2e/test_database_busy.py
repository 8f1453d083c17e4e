"""Another process holds the SQLite write lock: reads and memory hits keep answering at
normal speed, writes answer 503 DATABASE_BUSY or succeed once the lock is free, and
nothing ever answers 500 or freezes."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import pytest

from tests.conftest import Running
from tests.imagedata import png_bytes

pytestmark = pytest.mark.slow

HOLD_SECONDS = 10.0
FAST = 0.2


@contextmanager
def write_lock(path: str, seconds: float) -> Iterator[threading.Event]:
    """Hold ``BEGIN IMMEDIATE`` on ``path`` from another connection for ``seconds``
    (in a thread); the event is set when the lock is taken."""
    taken = threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("BEGIN IMMEDIATE")
        taken.set()
        time.sleep(seconds)
        conn.execute("ROLLBACK")
        conn.close()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert taken.wait(5)
    try:
        yield taken
    finally:
        thread.join(seconds + 5)


def timed(call: Callable[[], httpx.Response]) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    response = call()
    return time.perf_counter() - started, response


def test_reads_and_hits_answer_while_another_process_holds_the_lock(
    start_server: Callable[..., Running],
) -> None:
    app = start_server(limits__requests_per_hour=1000)
    upload = app.project(
        "POST", "/api/v1/images/upload", files={"file": ("a.png", png_bytes(), "image/png")}
    )
    assert upload.status_code == 201, upload.text
    image = upload.json()["data"]
    cdn = f"/cdn/default/default/img/{image['id']}"
    live = "/cdn/default/default/live/busy?prompt=held%20lock"
    assert app.client.get(cdn).status_code == 200  # fills the memory cache
    assert app.client.get(live).headers["x-cache-status"] == "MISS"
    assert app.project("GET", "/api/v1/images").status_code == 200  # the key is known

    checks: dict[str, Callable[[], httpx.Response]] = {
        "health": lambda: app.client.get("/health"),
        "live hit": lambda: app.client.get(live),
        "cdn hit": lambda: app.client.get(cdn),
        "list": lambda: app.project("GET", "/api/v1/images"),
        "get": lambda: app.project("GET", f"/api/v1/images/{image['id']}"),
    }
    slowest: dict[str, float] = dict.fromkeys(checks, 0.0)
    with write_lock(str(app.settings.database_path), HOLD_SECONDS), ThreadPoolExecutor(2) as pool:
        started = time.monotonic()
        # a write asked for during the hold: refused in bounded time, or done after it
        blocked = pool.submit(
            timed, lambda: app.project("POST", "/api/v1/generations", json={"prompt": "x"})
        )
        while time.monotonic() - started < HOLD_SECONDS - 1.5:
            for name, call in checks.items():
                seconds, response = timed(call)
                assert response.status_code == 200, (name, response.text)
                slowest[name] = max(slowest[name], seconds)
            time.sleep(0.05)
        # a write asked for near the end of the hold waits for it, then succeeds
        late = pool.submit(
            timed,
            lambda: app.project(
                "POST",
                "/api/v1/images/upload",
                files={"file": ("b.png", png_bytes(color=(9, 9, 9)), "image/png")},
            ),
        )
        seconds, refused = blocked.result(30)
    assert max(slowest.values()) < FAST, slowest
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "DATABASE_BUSY"
    assert int(refused.headers["retry-after"]) >= 1
    assert seconds < app.settings.database.busy_timeout_ms / 1000 + 2
    _, succeeded = late.result(30)
    assert succeeded.status_code == 201, succeeded.text
    # nothing half-written: the refused generation left no row, the upload is listed
    listed = app.project("GET", "/api/v1/images").json()["pagination"]["total"]
    assert listed == 3  # the first upload, the live image and the late upload
    generations = app.project("GET", "/api/v1/generations").json()["data"]
    assert all(g["prompt"] != "x" for g in generations)


def test_a_short_busy_timeout_answers_503_quickly(start_server: Callable[..., Running]) -> None:
    app = start_server(database__busy_timeout_ms=300)
    with write_lock(str(app.settings.database_path), 3.0):
        seconds, response = timed(
            lambda: app.project("POST", "/api/v1/flows", json={"meta": {"a": 1}})
        )
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "DATABASE_BUSY"
        assert seconds < 1.5
        # several writes queued behind the lock each end within their own deadline
        with ThreadPoolExecutor(4) as pool:
            results = list(
                pool.map(
                    lambda _: timed(lambda: app.project("POST", "/api/v1/flows", json={})),
                    range(4),
                )
            )
        assert all(r.status_code == 503 for _, r in results)
        assert max(s for s, _ in results) < 1.5
    assert app.project("POST", "/api/v1/flows", json={}).status_code == 201
