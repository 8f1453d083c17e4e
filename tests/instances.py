"""Two ``banatie-local serve`` instances on one PostgreSQL database and one S3 bucket,
for the tests of several instances and for the soak run (``bench/soak.py``)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg

from banatie_local.db.migrations import LATEST_VERSION
from tests import postgres
from tests.fakes.gemini import FakeGemini
from tests.fakes.s3 import S3Server
from tests.helpers import free_port, stop_processes, wait_until_serving


@dataclass
class Pair:
    urls: list[str]
    database: str
    master: str
    project: str
    gemini: FakeGemini
    pg: postgres.PostgresServer
    procs: list[subprocess.Popen[str]]
    _turn: Any = None

    def __post_init__(self) -> None:
        self._turn = itertools.cycle(range(len(self.urls)))

    def call(self, n: int | None, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request to instance ``n`` (or the next in turn), on a new connection."""
        index = next(self._turn) if n is None else n
        with httpx.Client(base_url=self.urls[index], timeout=30) as client:
            return client.request(method, path, **kwargs)

    def sql(self, query: str, *args: object) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database) as conn:
            return list(conn.execute(query.replace("?", "%s"), args))  # type: ignore[arg-type]


def _env() -> dict[str, str]:
    ours = ("BANATIE_", "GEMINI_API_KEY", "OPENAI_API_KEY")
    return {k: v for k, v in os.environ.items() if not k.startswith(ours)}


def _config(root: Path, name: str, port: int, database: str, s3: S3Server, bucket: str,
            gemini: FakeGemini, key_limit: int) -> Path:  # fmt: skip
    path = root / f"{name}.toml"
    path.write_text(
        f"""
[server]
port = {port}
trusted_proxies = ["127.0.0.1"]

[database]
url = "{database}"
busy_timeout_ms = 3000

[storage]
backend = "minio"
minio_endpoint = "{s3.endpoint}"
minio_access_key = "{s3.settings_overrides(bucket)["storage__minio_access_key"]}"
minio_secret_key = "{s3.settings_overrides(bucket)["storage__minio_secret_key"]}"
minio_bucket = "{bucket}"
minio_secure = false

[generation]
provider = "gemini"
gemini_api_key = "test-key"
gemini_base_url = "{gemini.url}"
timeout_seconds = 5
max_retries = 0

[limits]
requests_per_hour = {key_limit}

[live]
new_generations_per_ip_per_hour = 100
hit_flush_seconds = 0.5
""",
        encoding="utf-8",
    )
    return path


def _cli(config: Path, data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "banatie_local", "--config", str(config), "--data-dir",
         str(data), *args],
        capture_output=True, text=True, env=_env(), cwd=data.parent, timeout=120, check=False,
    )  # fmt: skip


@contextmanager
def running_pair(root: Path, s3: S3Server, key_limit: int) -> Iterator[Pair]:
    """Two instances (their own PostgreSQL server, a new bucket, the fake Gemini),
    migrated with ``db upgrade`` and initialised with ``init``; stopped afterwards."""
    pg = postgres.PostgresServer().start()
    gemini = FakeGemini().start()
    database = pg.new_database()
    bucket = "pair-" + uuid.uuid4().hex[:8]
    ports = [free_port(), free_port()]
    configs = [
        _config(root, f"i{n}", port, database, s3, bucket, gemini, key_limit)
        for n, port in enumerate(ports)
    ]
    upgraded = _cli(configs[0], root / "d0", "db", "upgrade", "--json")
    assert upgraded.returncode == 0, upgraded.stderr
    assert json.loads(upgraded.stdout)["applied"] == list(range(1, LATEST_VERSION + 1))
    again = _cli(configs[1], root / "d1", "db", "upgrade", "--json")
    assert json.loads(again.stdout)["applied"] == []
    init = _cli(configs[0], root / "d0", "init", "--json")
    assert init.returncode == 0, init.stderr
    keys = json.loads(init.stdout)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "banatie_local", "--config", str(config), "--data-dir",
             str(root / f"d{n}"), "serve"],
            # a log file, not a pipe: an unread pipe fills and blocks the server's logging
            cwd=root, env=_env(), stdout=subprocess.DEVNULL,
            stderr=(root / f"i{n}.log").open("w"), text=True,
        )
        for n, config in enumerate(configs)
    ]  # fmt: skip
    found = Pair([f"http://127.0.0.1:{p}" for p in ports], database, keys["masterKey"],
                 keys["projectKey"], gemini, pg, procs)  # fmt: skip
    try:
        for url, proc in zip(found.urls, procs, strict=True):
            wait_until_serving(proc, url)
        yield found
    finally:
        stop_processes(procs)
        gemini.stop()
        pg.destroy()


def new_key(pair: Pair) -> tuple[str, str]:
    """A new project key of the default project: ``(id, key)``."""
    created = pair.call(0, "POST", "/api/admin/keys", json={"type": "project"},
                        headers={"X-API-Key": pair.master})  # fmt: skip
    assert created.status_code == 201, created.text
    data = created.json()["data"]
    return data["id"], data["key"]
