"""Live-URL HIT and CDN image throughput against a bare Sanic app serving the same bytes.

Five servers in child processes, started like ``banatie-local serve``:

- banatie-local, one process, memory cache on: the image is generated once through
  the live URL (a provider returns a prebuilt ~200 KB PNG), then every request is a
  live-URL HIT or a CDN image hit;
- banatie-local, one process, ``live.memory_cache_mb = 0``: HITs come from the
  database and the storage file, read on the database boundary's threads;
- the baseline: a bare Sanic app, one process, answering the bytes of that first
  MISS response from memory;
- banatie-local with ``server.workers = 2`` on the first server's data directory
  (the same code path as ``banatie-local serve --workers 2``), so its HITs are of the
  image generated there;
- the bare Sanic app with two workers on one port, serving the same bytes;
- with ``--database-url postgresql://…`` (an empty database), a sixth: banatie-local,
  one process, memory cache on, on PostgreSQL. Its HITs should match the SQLite
  server's within noise, since the memory path touches no database.

wrk (``-t2 -c32 -d10s --latency``) runs against each figure in turn, three rounds,
and the medians of the per-round ratios are the figures. Targets: live HIT ≥ 0.9×
the one-process baseline's requests/s with p99 ≤ 1.3× its p99; cache-off HIT ≥ 0.6×;
two workers ≥ 0.9× the two-worker baseline and ≥ 1.3× our one worker.

    python bench/live_hit.py [--duration 10] [--rounds 3] [--database-url URL]
"""

from __future__ import annotations

import argparse
import functools
import io
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

PROMPT = "benchmark%20hero%20image"
IMAGE_BYTES = 200 * 1024


def image() -> bytes:
    """A ~200 KB PNG of noise (noise does not compress), the same in every process."""
    from PIL import Image

    rng = random.Random(7)
    side = 8
    while True:
        pixels = bytes(rng.randrange(256) for _ in range(side * side * 3))
        out = io.BytesIO()
        Image.frombytes("RGB", (side, side), pixels).save(out, format="PNG")
        if len(out.getvalue()) >= IMAGE_BYTES:
            return out.getvalue()
        side += 8


def bare_app(path: str) -> Any:
    """The baseline: one route answering the bytes in ``path`` from memory. Module
    level, so that spawned workers can unpickle an ``AppLoader`` factory over it."""
    from sanic import Sanic
    from sanic.response import HTTPResponse

    data = Path(path).read_bytes()
    app = Sanic("baseline")

    @app.get("/img")
    async def img(request: object) -> HTTPResponse:
        return HTTPResponse(
            data,
            headers={"Cache-Control": "public, max-age=31536000", "ETag": '"x"'},
            content_type="image/png",
        )

    return app


def serve_baseline(port: int, path: str, workers: int) -> None:
    from sanic import Sanic
    from sanic.worker.loader import AppLoader

    if workers == 1:
        print("ready", flush=True)
        bare_app(path).run(
            host="127.0.0.1", port=port, single_process=True, access_log=False, motd=False
        )
        return
    loader = AppLoader(factory=functools.partial(bare_app, path))
    app = loader.load()
    app.prepare(host="127.0.0.1", port=port, workers=workers, access_log=False, motd=False)
    print("ready", flush=True)
    Sanic.serve(primary=app, app_loader=loader)


def fixed_provider(data: bytes, name: str = "fixed", suffix: str = "") -> Any:
    """A provider answering ``data`` (a PNG) at once for every prompt; its enhancement
    appends ``suffix``. Shared by the benchmarks that start banatie-local."""
    from banatie_local.providers.base import GeneratedImage, ReferenceImage, measure

    width, height = measure(data)
    label = name

    class FixedProvider:
        name = label

        async def generate(
            self, prompt: str, aspect_ratio: str, references: list[ReferenceImage]
        ) -> GeneratedImage:
            return GeneratedImage(data, "image/png", width, height, name)

        async def enhance(self, prompt: str, template: str) -> str:
            return prompt + suffix

    return FixedProvider()


def serve_app(port: int, data_dir: str, cache_mb: int, database_url: str = "") -> None:
    from banatie_local.config import load_settings
    from banatie_local.http import create_app
    from banatie_local.services.container import initialize, open_services

    data = image()

    settings = load_settings(
        data_dir=data_dir,
        overrides={
            "server.port": port,
            "limits.requests_per_hour": 0,
            "live.memory_cache_mb": cache_mb,
            "database.url": database_url,
            "log.level": "warning",
        },
    )
    services = open_services(settings, provider=fixed_provider(data))
    initialize(services)
    print("ready", flush=True)
    create_app(settings, services).run(
        host="127.0.0.1", port=port, single_process=True, access_log=False, motd=False
    )


def serve_workers(port: int, data_dir: str, workers: int) -> None:
    """``banatie-local serve --workers N`` on a data directory whose image is already
    generated: the provider (offline, which pickles) is never called."""
    from banatie_local.cli.serve import _serve_many
    from banatie_local.config import load_settings
    from banatie_local.services.container import open_services

    settings = load_settings(
        data_dir=data_dir,
        overrides={
            "server.host": "127.0.0.1",
            "server.port": port,
            "server.workers": workers,
            "generation.provider": "offline",
            "limits.requests_per_hour": 0,
            "log.level": "warning",
        },
    )
    print("ready", flush=True)
    _serve_many(settings, open_services(settings))


@dataclass
class Run:
    rps: float
    p99_ms: float


def wrk(url: str, duration: int) -> Run:
    out = subprocess.run(
        ["wrk", "-t2", "-c32", f"-d{duration}s", "--latency", url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()  # type: ignore[union-attr]
    p99 = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"{url}: {errors.group(1)} error responses")
    return Run(rps, p99)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(args: list[str]) -> subprocess.Popen[str]:
    child = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    if child.stdout.readline().strip() != "ready":
        raise SystemExit(f"child {args} did not start")
    return child


def wait_for(url: str) -> httpx.Response:
    for _ in range(400):
        try:
            response = httpx.get(url, timeout=30)
            if response.status_code < 500:
                return response
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"{url} never answered")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve-baseline", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--database-url", default="", help="also measure on PostgreSQL")
    parser.add_argument("--serve-app", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--serve-workers", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_baseline:
        port, path, workers = args.serve_baseline
        serve_baseline(int(port), path, int(workers))
        return
    if args.serve_app:
        port, data_dir, cache_mb, url = args.serve_app
        serve_app(int(port), data_dir, int(cache_mb), url)
        return
    if args.serve_workers:
        port, data_dir, workers = args.serve_workers
        serve_workers(int(port), data_dir, int(workers))
        return
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    results, size = measure(args.duration, args.rounds, args.database_url)
    report(results, size)


def measure(duration: int, rounds: int, database_url: str) -> tuple[dict[str, list[Run]], int]:
    """Start the servers, check they answer the same bytes, run wrk in rounds."""
    children = []
    with (
        tempfile.TemporaryDirectory() as hot_dir,
        tempfile.TemporaryDirectory() as cold_dir,
        tempfile.TemporaryDirectory() as bytes_dir,
        tempfile.TemporaryDirectory() as pg_dir,
    ):
        try:
            ports = {name: free_port() for name in ("base", "hot", "cold", "base2", "hot2")}
            children.append(start(["--serve-app", str(ports["hot"]), hot_dir, "256", ""]))
            children.append(start(["--serve-app", str(ports["cold"]), cold_dir, "0", ""]))
            live = "/cdn/default/default/live/bench?prompt=" + PROMPT
            hot_live = f"http://127.0.0.1:{ports['hot']}{live}"
            cold_live = f"http://127.0.0.1:{ports['cold']}{live}"
            first = wait_for(hot_live)
            wait_for(cold_live)
            assert first.headers["x-cache-status"] == "MISS", first.headers
            assert len(first.content) >= IMAGE_BYTES
            # The baselines answer exactly the bytes the first MISS answered.
            served = Path(bytes_dir) / "image.png"
            served.write_bytes(first.content)
            children.append(start(["--serve-baseline", str(ports["base"]), str(served), "1"]))
            children.append(start(["--serve-baseline", str(ports["base2"]), str(served), "2"]))
            children.append(start(["--serve-workers", str(ports["hot2"]), hot_dir, "2"]))
            base = f"http://127.0.0.1:{ports['base']}/img"
            base2 = f"http://127.0.0.1:{ports['base2']}/img"
            hot2_live = f"http://127.0.0.1:{ports['hot2']}{live}"
            hot_cdn = (
                f"http://127.0.0.1:{ports['hot']}/cdn/default/default/img/"
                + first.headers["x-image-id"]
            )
            for url in (base, base2, hot_live, cold_live, hot_cdn, hot2_live):
                response = wait_for(url)
                assert response.status_code == 200, (url, response.status_code)
                assert response.content == first.content, url
            # Warm every worker's memory cache (connections spread over the workers).
            wrk(hot2_live, 1)
            urls = {
                "base": base, "live": hot_live, "cdn": hot_cdn, "cold": cold_live,
                "base2": base2, "live2": hot2_live,
            }  # fmt: skip
            if database_url:
                ports["pg"] = free_port()
                children.append(
                    start(["--serve-app", str(ports["pg"]), pg_dir, "256", database_url])
                )
                urls["pg"] = f"http://127.0.0.1:{ports['pg']}{live}"
                assert wait_for(urls["pg"]).headers["x-cache-status"] == "MISS"
                assert wait_for(urls["pg"]).content == first.content
            results: dict[str, list[Run]] = {name: [] for name in urls}
            for _ in range(rounds):
                for name, url in urls.items():
                    results[name].append(wrk(url, duration))
        finally:
            for child in children:
                child.send_signal(signal.SIGTERM)
            for child in children:
                child.wait(30)
    return results, len(first.content)


def report(results: dict[str, list[Run]], size: int) -> None:
    def ratio(name: str, against: str, attr: str) -> float:
        return statistics.median(
            getattr(run, attr) / getattr(b, attr)
            for run, b in zip(results[name], results[against], strict=True)
        )

    def median(name: str, attr: str) -> float:
        return statistics.median(getattr(run, attr) for run in results[name])

    print(f"image size: {size} bytes; wrk -t2 -c32; {len(results['base'])} alternating rounds")
    for name, label in (
        ("base", "baseline (bare Sanic, 1 process, bytes from memory)"),
        ("base2", "baseline (bare Sanic, 2 workers, bytes from memory)"),
    ):
        print(f"{label}: {median(name, 'rps'):.0f} req/s, p99 {median(name, 'p99_ms'):.2f} ms")
    for name, against, label, rps_target, p99_target in (
        ("live", "base", "live-URL HIT (memory), 1 worker vs bare 1", 0.9, 1.3),
        ("cdn", "base", "CDN image (memory), 1 worker vs bare 1", None, None),
        ("cold", "base", "live-URL HIT (memory cache off: SQL + disk) vs bare 1", 0.6, None),
        ("live2", "base2", "live-URL HIT (memory), 2 workers vs bare 2", 0.9, None),
        ("live2", "live", "live-URL HIT (memory), 2 workers vs our 1 worker", 1.3, None),
        ("base2", "base", "bare 2 workers vs bare 1 (what 2 cores allow)", None, None),
        ("pg", "live", "live-URL HIT (memory), PostgreSQL vs SQLite", 0.9, 1.3),
    ):
        if name not in results:
            continue
        rps, p99 = ratio(name, against, "rps"), ratio(name, against, "p99_ms")
        verdict = []
        if rps_target is not None:
            verdict.append(
                f"req/s target >= {rps_target}x {'PASS' if rps >= rps_target else 'FAIL'}"
            )
        if p99_target is not None:
            verdict.append(f"p99 target <= {p99_target}x {'PASS' if p99 <= p99_target else 'FAIL'}")
        print(
            f"{label}: {median(name, 'rps'):.0f} req/s ({rps:.2f}x), "
            f"p99 {median(name, 'p99_ms'):.2f} ms ({p99:.2f}x)"
            + (f"; {'; '.join(verdict)}" if verdict else "")
        )
    print("per round (req/s, p99 ms):")
    for name, runs in results.items():
        print(f"  {name}: " + ", ".join(f"{r.rps:.0f}/{r.p99_ms:.2f}" for r in runs))


if __name__ == "__main__":
    main()
