"""Generation overhead, excluding the provider.

Starts the real server in a child process with a provider that returns a prebuilt
image instantly, then, over one keep-alive connection, times 200 sequential
``POST /api/v1/generations`` and 200 ``GET /health``. Prints both medians and their
difference: what a generation costs beyond a trivial request (validation, rows,
provenance marking, storage write with fsync, response shaping). Target: at most 5 ms
on SQLite, 8 ms on PostgreSQL (``--database-url postgresql://…``, an empty database).

``--image photo`` makes the provider return a photo-like 1024² PNG of ~1.5 MB (the
size of a real generated photo) instead of the offline renderer's ~40 KB one.

``--compare-unmarked`` starts a second server whose outputs are not marked (a no-op
``Marker``), times both in ``--rounds`` alternating rounds and prints what the
provenance metadata (API.md §14) adds to the overhead. Target: at most 3 ms.

    python bench/generation_overhead.py [--requests 200] [--database-url URL]
        [--image art|photo] [--compare-unmarked [--rounds 3]]
"""

from __future__ import annotations

import argparse
import io
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import httpx
from live_hit import fixed_provider  # the bench folder is on sys.path when run

TARGET_MS = 5.0
TARGET_POSTGRES_MS = 8.0
TARGET_MARKING_MS = 3.0
SIDE = 1024
PROMPT = "benchmark"


def provider_image(kind: str) -> bytes:
    """The PNG the instant provider returns: the offline renderer's art (~40 KB), or
    (``photo``) the same with 6 % grain blended in (~1.5 MB, as bench/variants.py)."""
    from banatie_local.providers.offline import render

    art = render(PROMPT, SIDE, SIDE, [])
    if kind == "art":
        return art
    from PIL import Image

    picture = Image.open(io.BytesIO(art)).convert("RGB")
    grain = random.Random(7).randbytes(SIDE * SIDE)
    noise = Image.frombytes("L", (SIDE, SIDE), grain).convert("RGB")
    out = io.BytesIO()
    Image.blend(picture, noise, 0.06).save(out, format="PNG")
    return out.getvalue()


def serve(port: int, data_dir: str, database_url: str, image_kind: str, unmarked: bool) -> None:
    """Child process: the real app with an instant provider (and, ``unmarked``, a
    marker that leaves the bytes as they are)."""
    from banatie_local.config import load_settings
    from banatie_local.http import create_app
    from banatie_local.services.container import initialize, open_services
    from banatie_local.services.marking import Marker, Origin

    image = provider_image(image_kind)

    class NoMark(Marker):
        def mark(self, data: bytes, mime: str, origin: Origin, image_id: str) -> bytes:
            return data

    settings = load_settings(
        data_dir=data_dir,
        overrides={
            "server.port": port,
            "limits.requests_per_hour": 0,
            "log.level": "warning",
            "database.url": database_url,
        },
    )
    services = open_services(settings, provider=fixed_provider(image, "instant", ", enhanced"))
    if unmarked:
        services.generations.marker = services.generations.store.marker = NoMark()
    result = initialize(services)
    print(result.project_key, flush=True)
    app = create_app(settings, services)
    app.run(host="127.0.0.1", port=port, single_process=True, access_log=False, motd=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def median_ms(count: int, send: Callable[[int], httpx.Response]) -> float:
    samples = []
    for i in range(count):
        started = time.perf_counter()
        response = send(i)
        samples.append((time.perf_counter() - started) * 1000)
        if response.status_code >= 400:
            raise SystemExit(f"request failed: {response.status_code} {response.text[:200]}")
    return statistics.median(samples)


@dataclass
class Server:
    """A started child server and a keep-alive client to it."""

    client: httpx.Client
    key: str
    sent: int = 0

    def generate(self) -> httpx.Response:
        self.sent += 1
        return self.client.post(
            "/api/v1/generations",
            json={"prompt": f"bench {self.sent}"},
            headers={"X-API-Key": self.key},
        )

    def measure(self, count: int) -> tuple[float, float]:
        """Medians of ``count`` generations and ``count`` GET /health, in ms."""
        gen_ms = median_ms(count, lambda i: self.generate())
        health_ms = median_ms(count, lambda i: self.client.get("/health"))
        return gen_ms, health_ms


@contextmanager
def started(args: argparse.Namespace, unmarked: bool = False) -> Iterator[Server]:
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        command = [sys.executable, __file__, "--serve", str(port), data]
        command += ["--database-url", args.database_url, "--image", args.image]
        if unmarked:
            command.append("--unmarked")
        child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None
            key = child.stdout.readline().strip()
            url = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=url, timeout=30) as client:
                for _ in range(200):
                    try:
                        if client.get("/health").status_code == 200:
                            break
                    except httpx.TransportError:
                        time.sleep(0.05)
                server = Server(client, key)
                # warm-up: first requests pay for imports and caches
                for _ in range(10):
                    server.generate()
                    client.get("/health")
                yield server
        finally:
            child.send_signal(signal.SIGTERM)
            child.wait(20)


def mark_ms(image_kind: str, runs: int = 50) -> float:
    """In-process median of ``Marker.mark`` on the provider's image."""
    from banatie_local.services.marking import Marker, Origin

    image = provider_image(image_kind)
    marker = Marker()
    origin = Origin("0d3c6a8e-2f61-4c1e-9f0b-8a1c2b3d4e5f", "instant", "instant", PROMPT * 20)
    samples = []
    for _ in range(runs):
        started_at = time.perf_counter()
        marker.mark(image, "image/png", origin, "7b1f0c2a-1111-2222-3333-444455556666")
        samples.append((time.perf_counter() - started_at) * 1000)
    return statistics.median(samples)


def overhead_only(args: argparse.Namespace) -> None:
    with started(args) as server:
        gen_ms, health_ms = server.measure(args.requests)
    overhead = gen_ms - health_ms
    limit = TARGET_POSTGRES_MS if args.database_url else TARGET_MS
    verdict = "PASS" if overhead <= limit else "FAIL"
    print(f"provider output:                 {describe(args.image)}")
    print(f"POST /api/v1/generations median: {gen_ms:.2f} ms ({args.requests} sequential)")
    print(f"GET /health median:              {health_ms:.2f} ms ({args.requests} sequential)")
    kind = "PostgreSQL" if args.database_url else "SQLite"
    target = f"target <= {limit:.0f} ms on {kind}"
    print(f"generation overhead:             {overhead:.2f} ms ({target}) {verdict}")


def compare_unmarked(args: argparse.Namespace) -> None:
    """Both servers up at once, measured in alternating rounds (ABBA order), so a
    slow spell of the machine falls on both."""
    overheads: dict[bool, list[float]] = {False: [], True: []}
    with ExitStack() as stack:
        servers = {
            unmarked: stack.enter_context(started(args, unmarked)) for unmarked in (False, True)
        }
        for round_no in range(args.rounds):
            order = (False, True) if round_no % 2 == 0 else (True, False)
            for unmarked in order:
                gen_ms, health_ms = servers[unmarked].measure(args.requests)
                overheads[unmarked].append(gen_ms - health_ms)
                name = "unmarked" if unmarked else "marked"
                print(
                    f"round {round_no + 1} {name:>8}: POST {gen_ms:.2f} ms, "
                    f"GET /health {health_ms:.2f} ms, overhead {gen_ms - health_ms:.2f} ms",
                    flush=True,
                )
    differences = [m - u for m, u in zip(overheads[False], overheads[True], strict=True)]
    with_marks, without = statistics.median(overheads[False]), statistics.median(overheads[True])
    added = statistics.median(differences)
    verdict = "PASS" if added <= TARGET_MARKING_MS else "FAIL"
    rounds = f"median of {args.rounds} rounds of {args.requests}"
    print(f"provider output:                 {describe(args.image)}")
    print(f"Marker.mark in-process median:   {mark_ms(args.image):.2f} ms")
    print(f"overhead, marked:                {with_marks:.2f} ms ({rounds})")
    print(f"overhead, unmarked (no-op):      {without:.2f} ms ({rounds})")
    target = f"target <= {TARGET_MARKING_MS:.0f} ms"
    print(
        f"added by the metadata:           {added:.2f} ms (median of the per-round "
        f"differences: {', '.join(f'{d:.2f}' for d in differences)}; {target}) {verdict}"
    )


def describe(image_kind: str) -> str:
    size = len(provider_image(image_kind))
    what = "offline renderer's art" if image_kind == "art" else "photo-like (art + 6 % grain)"
    return f"{SIDE}x{SIDE} PNG, {what}, {size / 1024:.0f} KB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--database-url", default="", help="PostgreSQL; empty: SQLite")
    parser.add_argument(
        "--image", choices=("art", "photo"), default="art", help="the provider's PNG"
    )
    parser.add_argument(
        "--compare-unmarked",
        action="store_true",
        help="also time a server whose outputs are not marked; report the difference",
    )
    parser.add_argument("--rounds", type=int, default=3, help="with --compare-unmarked")
    parser.add_argument("--serve", nargs=2, metavar=("PORT", "DATA_DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--unmarked", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), args.serve[1], args.database_url, args.image, args.unmarked)
    elif args.compare_unmarked:
        compare_unmarked(args)
    else:
        overhead_only(args)


if __name__ == "__main__":
    main()
