"""``serve --workers 2``: two processes on one port share one budget, one generation per
image, and one view of what was deleted or revoked — through the database alone.

One real ``banatie-local serve --workers 2`` process (with its workers) serves every test
here, with the real google-genai SDK talking to the fake Gemini server so that provider
calls can be counted across processes. Every request opens a new connection, so the
kernel spreads them over both workers. Each test uses its own key, client address or
prompt, so the tests do not share a budget.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.gemini import Answer, FakeGemini
from tests.helpers import (
    assert_exact_budget,
    assert_one_generation,
    eventually,
    free_port,
    parallel,
    stop_processes,
    wait_until_serving,
)
from tests.imagedata import png_bytes

pytestmark = pytest.mark.slow

KEY_LIMIT = 10
IP_LIMIT = 5
REQUESTS = 24


@dataclass
class Cluster:
    url: str
    data_dir: Path
    master: str
    gemini: FakeGemini
    proc: subprocess.Popen[str]

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        """One request on a new connection."""
        with httpx.Client(base_url=self.url, timeout=30) as client:
            return client.get(path, **kwargs)  # type: ignore[arg-type]

    def request(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            return client.request(method, path, **kwargs)  # type: ignore[arg-type]

    def new_key(self) -> tuple[str, str]:
        created = self.request(
            "POST", "/api/admin/keys", json={"type": "project"}, headers={"X-API-Key": self.master}
        )
        assert created.status_code == 201, created.text
        data = created.json()["data"]
        return data["id"], data["key"]

    def sql(self, query: str, *args: object) -> list[tuple[object, ...]]:
        conn = sqlite3.connect(self.data_dir / "banatie.db")
        try:
            return list(conn.execute(query, args))
        finally:
            conn.close()


def _env() -> dict[str, str]:
    ours = ("BANATIE_", "GEMINI_API_KEY", "OPENAI_API_KEY")
    return {k: v for k, v in os.environ.items() if not k.startswith(ours)}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("workers")
    gemini = FakeGemini().start()
    port = free_port()
    config = root / "banatie.toml"
    config.write_text(
        f"""
[server]
port = {port}
workers = 2
metrics = true
trusted_proxies = ["127.0.0.1"]

[generation]
provider = "gemini"
gemini_api_key = "test-key"
gemini_base_url = "{gemini.url}"
timeout_seconds = 3
max_retries = 0

[limits]
requests_per_hour = {KEY_LIMIT}

[live]
new_generations_per_ip_per_hour = {IP_LIMIT}
hit_flush_seconds = 0.5
""",
        encoding="utf-8",
    )
    base = [sys.executable, "-m", "banatie_local", "--config", str(config)]
    init = subprocess.run(
        [*base, "--data-dir", str(root / "data"), "init", "--json"],
        capture_output=True, text=True, env=_env(), check=True, cwd=root,
    )  # fmt: skip
    master = json.loads(init.stdout)["masterKey"]
    proc = subprocess.Popen(
        [*base, "--data-dir", str(root / "data"), "serve"],
        cwd=root, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    cluster = Cluster(f"http://127.0.0.1:{port}", root / "data", master, gemini, proc)
    try:
        wait_until_serving(proc, cluster.url)
        yield cluster
    finally:
        stop_processes([proc])
        gemini.stop()


def test_health_reports_the_workers(cluster: Cluster) -> None:
    body = cluster.get("/health").json()
    assert body["workers"] == 2
    assert body["status"] == "healthy"


def _health_count(cluster: Cluster) -> float:
    scraped = cluster.get("/metrics")
    assert scraped.status_code == 200, scraped.text
    for family in text_string_to_metric_families(scraped.text):
        for sample in family.samples:
            if sample.name == "banatie_http_requests_total" and sample.labels["route"] == "/health":
                return sample.value
    return 0.0


def test_metrics_sum_over_both_workers(cluster: Cluster) -> None:
    # Every request is a new connection, so the kernel spreads requests and scrapes
    # over both workers; each scrape still sees every request.
    before = _health_count(cluster)
    for _ in range(30):
        assert cluster.get("/health").status_code == 200
    assert {_health_count(cluster) for _ in range(6)} == {before + 30}


def test_a_key_limit_admits_exactly_its_budget(cluster: Cluster) -> None:
    _, key = cluster.new_key()
    responses = parallel(
        REQUESTS, lambda _: cluster.get("/api/v1/images", headers={"X-API-Key": key})
    )
    assert_exact_budget(responses, KEY_LIMIT)
    remaining = sorted(int(r.headers["x-ratelimit-remaining"]) for r in responses)
    assert remaining[-1] == KEY_LIMIT - 1  # every slot was handed out once


def test_the_ip_limit_is_exact(cluster: Cluster) -> None:
    client = {"X-Forwarded-For": "198.51.100.7"}
    responses = parallel(
        8,
        lambda i: cluster.get(f"/cdn/default/default/live/ip?prompt=ip%20{i}", headers=client),
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == IP_LIMIT, statuses
    assert statuses.count(429) == 8 - IP_LIMIT, statuses


def test_identical_misses_on_both_workers_make_one_generation(cluster: Cluster) -> None:
    before = len(cluster.gemini.image_requests())
    cluster.gemini.queue(Answer("image", delay=1.5))
    url = "/cdn/default/default/live/flight?prompt=one%20flight&autoEnhance=false"
    responses = parallel(
        20, lambda i: cluster.get(url, headers={"X-Forwarded-For": f"203.0.113.{i + 1}"})
    )
    assert_one_generation(responses, len(cluster.gemini.image_requests()) - before)
    entries = cluster.sql("SELECT COUNT(*) FROM live_cache_entries e JOIN live_scopes s"
                          " ON s.id = e.scope_id WHERE s.slug = 'flight'")  # fmt: skip
    assert entries == [(1,)]


def test_a_revoked_key_is_refused_by_every_worker_within_a_second(cluster: Cluster) -> None:
    key_id, key = cluster.new_key()
    headers = {"X-API-Key": key}
    assert all(r.status_code == 200 for r in parallel(6, lambda _: cluster.get(
        "/api/v1/project", headers=headers)))  # fmt: skip
    revoked = cluster.request(
        "DELETE", f"/api/admin/keys/{key_id}", headers={"X-API-Key": cluster.master}
    )
    assert revoked.status_code == 200
    time.sleep(1.0)
    statuses = [r.status_code for r in parallel(
        10, lambda _: cluster.get("/api/v1/project", headers=headers))]  # fmt: skip
    assert statuses == [401] * 10


def test_a_delete_reaches_every_worker(cluster: Cluster) -> None:
    _, key = cluster.new_key()
    headers = {"X-API-Key": key}
    upload = cluster.request(
        "POST", "/api/v1/images/upload", headers=headers,
        files={"file": ("d.png", png_bytes(color=(1, 2, 3)), "image/png")},
    )  # fmt: skip
    assert upload.status_code == 201, upload.text
    image_id = upload.json()["data"]["id"]
    cdn = f"/cdn/default/default/img/{image_id}"
    assert all(r.status_code == 200 for r in parallel(8, lambda _: cluster.get(cdn)))
    deleted = cluster.request("DELETE", f"/api/v1/images/{image_id}", headers=headers)
    assert deleted.status_code == 200
    time.sleep(0.5 + 0.5)  # live.hit_flush_seconds, and a poll
    assert [r.status_code for r in parallel(8, lambda _: cluster.get(cdn))] == [404] * 8


def test_a_killed_workers_claim_is_taken_over_and_one_image_results(cluster: Cluster) -> None:
    prompt = "taken over"
    url = f"/cdn/default/default/live/killed?prompt={quote(prompt)}&autoEnhance=false"
    headers = {"X-Forwarded-For": "192.0.2.9"}
    cluster.gemini.queue(Answer("image", delay=4.0))
    first: list[BaseException | httpx.Response] = []

    def doomed() -> None:
        try:
            first.append(cluster.get(url, headers=headers))
        except httpx.HTTPError as exc:
            first.append(exc)

    asked = len(cluster.gemini.image_requests())
    thread = threading.Thread(target=doomed, daemon=True)
    thread.start()
    # kill only once the worker is inside its provider call (the delayed answer is its)
    assert eventually(lambda: len(cluster.gemini.image_requests()) > asked, timeout=10)
    claim = eventually(lambda: cluster.sql("SELECT holder FROM live_claims"), timeout=10)
    assert claim, "no claim was taken"
    pid = int(str(claim[0][0]).split(":")[1])
    assert pid != cluster.proc.pid  # a worker, not the supervising process
    os.kill(pid, signal.SIGKILL)
    thread.join(15)
    assert first
    assert not isinstance(first[0], httpx.Response)  # its connection died

    again = eventually(lambda: cluster.get(url, headers=headers), timeout=20)
    assert again.status_code == 200, again.text
    assert again.headers["x-cache-status"] == "MISS"
    assert cluster.get(url, headers=headers).headers["x-cache-status"] == "HIT"
    images = cluster.sql(
        "SELECT COUNT(*) FROM images WHERE json_extract(meta, '$.scope') = 'killed'"
    )
    assert images == [(1,)]
    # the dead worker's generation is failed as interrupted, exactly once
    failed = eventually(lambda: cluster.sql(
        "SELECT status, error_message FROM generations WHERE prompt = ? AND status = 'failed'",
        prompt), timeout=10)  # fmt: skip
    assert len(failed) == 1
    assert "interrupted" in str(failed[0][1])
    assert cluster.sql("SELECT COUNT(*) FROM live_claims") == [(0,)]
