"""Live-URL HIT and CDN image throughput against a bare Sanic app serving the same bytes.

Three child processes, each a single-process Sanic server like ``banatie-local serve``:

- the baseline: a bare Sanic app that answers one 200 KB PNG from memory;
- banatie-local with its memory cache on (the image is generated once, then every
  request is a live-URL HIT or a CDN image hit);
- banatie-local with ``live.memory_cache_mb = 0`` (HITs come from one raw SQL query
  plus a storage read).

wrk (``-t2 -c32 -d10s --latency``) runs against each in turn, three rounds, and the
medians of the per-round ratios are the figures. Targets: live HIT ≥ 0.7× the
baseline's requests/s with p99 ≤ 2× its p99; cold-cache HIT ≥ 0.4×.

    python bench/live_hit.py [--duration 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
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


def serve_baseline(port: int) -> None:
    from sanic import Sanic
    from sanic.response import HTTPResponse

    data = image()
    app = Sanic("baseline")

    @app.get("/img")
    async def img(request: object) -> HTTPResponse:
        return HTTPResponse(
            data,
            headers={"Cache-Control": "public, max-age=31536000", "ETag": '"x"'},
            content_type="image/png",
        )

    print("ready", flush=True)
    app.run(host="127.0.0.1", port=port, single_process=True, access_log=False, motd=False)


def serve_app(port: int, data_dir: str, cache_mb: int) -> None:
    from banatie_local.config import load_settings
    from banatie_local.http import create_app
    from banatie_local.providers.base import GeneratedImage, ReferenceImage, measure
    from banatie_local.services.container import initialize, open_services

    data = image()
    width, height = measure(data)

    class FixedProvider:
        name = "fixed"

        async def generate(
            self, prompt: str, aspect_ratio: str, references: list[ReferenceImage]
        ) -> GeneratedImage:
            return GeneratedImage(data, "image/png", width, height, "fixed")

        async def enhance(self, prompt: str, template: str) -> str:
            return prompt

    settings = load_settings(
        data_dir=data_dir,
        overrides={
            "server.port": port,
            "limits.requests_per_hour": 0,
            "live.memory_cache_mb": cache_mb,
            "log.level": "warning",
        },
    )
    services = open_services(settings, provider=FixedProvider())
    initialize(services)
    print("ready", flush=True)
    create_app(settings, services).run(
        host="127.0.0.1", port=port, single_process=True, access_log=False, motd=False
    )


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
    for _ in range(200):
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
    parser.add_argument("--serve-baseline", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-app", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_baseline:
        serve_baseline(args.serve_baseline)
        return
    if args.serve_app:
        serve_app(int(args.serve_app[0]), args.serve_app[1], int(args.serve_app[2]))
        return
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")

    children = []
    with tempfile.TemporaryDirectory() as hot_dir, tempfile.TemporaryDirectory() as cold_dir:
        try:
            ports = {name: free_port() for name in ("base", "hot", "cold")}
            children.append(start(["--serve-baseline", str(ports["base"])]))
            children.append(start(["--serve-app", str(ports["hot"]), hot_dir, "256"]))
            children.append(start(["--serve-app", str(ports["cold"]), cold_dir, "0"]))
            base = f"http://127.0.0.1:{ports['base']}/img"
            live = "/cdn/default/default/live/bench?prompt=" + PROMPT
            hot_live = f"http://127.0.0.1:{ports['hot']}{live}"
            cold_live = f"http://127.0.0.1:{ports['cold']}{live}"
            wait_for(base)
            first = wait_for(hot_live)
            wait_for(cold_live)
            assert first.headers["x-cache-status"] == "MISS", first.headers
            assert len(first.content) >= IMAGE_BYTES
            hot_cdn = (
                f"http://127.0.0.1:{ports['hot']}/cdn/default/default/img/"
                + first.headers["x-image-id"]
            )
            for url in (hot_live, cold_live, hot_cdn):
                assert wait_for(url).status_code == 200
            results: dict[str, list[Run]] = {"base": [], "live": [], "cdn": [], "cold": []}
            for _ in range(args.rounds):
                for name, url in (("base", base), ("live", hot_live), ("cdn", hot_cdn),
                                  ("cold", cold_live)):  # fmt: skip
                    results[name].append(wrk(url, args.duration))
        finally:
            for child in children:
                child.send_signal(signal.SIGTERM)
            for child in children:
                child.wait(20)
    report(results, len(first.content))


def report(results: dict[str, list[Run]], size: int) -> None:
    base = results["base"]

    def ratio(name: str, attr: str) -> float:
        return statistics.median(
            getattr(run, attr) / getattr(b, attr)
            for run, b in zip(results[name], base, strict=True)
        )

    median_rps = statistics.median(r.rps for r in base)
    median_p99 = statistics.median(r.p99_ms for r in base)
    print(f"image size: {size} bytes; wrk -t2 -c32; {len(base)} alternating rounds")
    print(
        f"baseline (bare Sanic, bytes from memory): {median_rps:.0f} req/s, p99 {median_p99:.2f} ms"
    )
    for name, label, rps_target, p99_target in (
        ("live", "live-URL HIT (memory)", 0.7, 2.0),
        ("cdn", "CDN image (memory)", None, None),
        ("cold", "live-URL HIT (memory cache off: SQL + disk)", 0.4, None),
    ):
        runs = results[name]
        rps, p99 = ratio(name, "rps"), ratio(name, "p99_ms")
        verdict = []
        if rps_target is not None:
            verdict.append(
                f"req/s target >= {rps_target}x {'PASS' if rps >= rps_target else 'FAIL'}"
            )
        if p99_target is not None:
            verdict.append(f"p99 target <= {p99_target}x {'PASS' if p99 <= p99_target else 'FAIL'}")
        print(
            f"{label}: {statistics.median(r.rps for r in runs):.0f} req/s ({rps:.2f}x), "
            f"p99 {statistics.median(r.p99_ms for r in runs):.2f} ms ({p99:.2f}x)"
            + (f"; {'; '.join(verdict)}" if verdict else "")
        )


if __name__ == "__main__":
    main()
