"""Generation overhead, excluding the provider.

Starts the real server in a child process with a provider that returns a prebuilt
image instantly, then, over one keep-alive connection, times 200 sequential
``POST /api/v1/generations`` and 200 ``GET /health``. Prints both medians and their
difference: what a generation costs beyond a trivial request (validation, rows,
storage write with fsync, response shaping). Target: at most 5 ms on SQLite, 8 ms on
PostgreSQL (``--database-url postgresql://…``, an empty database).

    python bench/generation_overhead.py [--requests 200] [--database-url URL]
"""

from __future__ import annotations

import argparse
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import httpx

TARGET_MS = 5.0
TARGET_POSTGRES_MS = 8.0


def serve(port: int, data_dir: str, database_url: str = "") -> None:
    """Child process: the real app with an instant provider."""
    from banatie_local.config import load_settings
    from banatie_local.http import create_app
    from banatie_local.providers.base import GeneratedImage, ReferenceImage
    from banatie_local.providers.offline import render
    from banatie_local.services.container import initialize, open_services

    image = render("benchmark", 1024, 1024, [])

    class InstantProvider:
        name = "instant"

        async def generate(
            self, prompt: str, aspect_ratio: str, references: list[ReferenceImage]
        ) -> GeneratedImage:
            return GeneratedImage(image, "image/png", 1024, 1024, "instant")

        async def enhance(self, prompt: str, template: str) -> str:
            return prompt + ", enhanced"

    settings = load_settings(
        data_dir=data_dir,
        overrides={
            "server.port": port,
            "limits.requests_per_hour": 0,
            "log.level": "warning",
            "database.url": database_url,
        },
    )
    services = open_services(settings, provider=InstantProvider())
    result = initialize(services)
    print(result.project_key, flush=True)
    app = create_app(settings, services)
    app.run(host="127.0.0.1", port=port, single_process=True, access_log=False, motd=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def median_ms(client: httpx.Client, count: int, send: object) -> tuple[float, list[float]]:
    samples = []
    for i in range(count):
        started = time.perf_counter()
        response = send(i)  # type: ignore[operator]
        samples.append((time.perf_counter() - started) * 1000)
        if response.status_code >= 400:
            raise SystemExit(f"request failed: {response.status_code} {response.text[:200]}")
    return statistics.median(samples), samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--database-url", default="", help="PostgreSQL; empty: SQLite")
    parser.add_argument("--serve", nargs=2, metavar=("PORT", "DATA_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), args.serve[1], args.database_url)
        return
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        child = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--serve",
                str(port),
                data,
                "--database-url",
                args.database_url,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
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
                headers = {"X-API-Key": key}
                # warm-up: first requests pay for imports and caches
                for i in range(10):
                    client.post("/api/v1/generations", json={"prompt": f"w{i}"}, headers=headers)
                    client.get("/health")
                gen_ms, _ = median_ms(
                    client,
                    args.requests,
                    lambda i: client.post(
                        "/api/v1/generations", json={"prompt": f"bench {i}"}, headers=headers
                    ),
                )
                health_ms, _ = median_ms(client, args.requests, lambda i: client.get("/health"))
        finally:
            child.send_signal(signal.SIGTERM)
            child.wait(20)
    overhead = gen_ms - health_ms
    limit = TARGET_POSTGRES_MS if args.database_url else TARGET_MS
    verdict = "PASS" if overhead <= limit else "FAIL"
    print(f"POST /api/v1/generations median: {gen_ms:.2f} ms ({args.requests} sequential)")
    print(f"GET /health median:              {health_ms:.2f} ms ({args.requests} sequential)")
    kind = "PostgreSQL" if args.database_url else "SQLite"
    target = f"target <= {limit:.0f} ms on {kind}"
    print(f"generation overhead:             {overhead:.2f} ms ({target}) {verdict}")


if __name__ == "__main__":
    main()
