"""Image variants and signed URLs (API.md §12, §13): cached variant HITs, signed live
HITs and the first render of a variant, against baselines measured in the same run.

Servers in child processes, started like ``banatie-local serve`` (as in live_hit.py):

- banatie-local, one process, memory cache on; a provider returns a prebuilt
  photo-like 1024×1024 PNG (~1.5 MB). Two projects: ``default/default``
  (``signedUrls = off``) and ``bench/signed`` (``signedUrls = live``), made and set
  through the API with the keys the child prints on its ready line; the signed URLs
  come from ``POST /api/v1/signed-urls``. The image is generated once per project
  through the live URL, then every request is a HIT;
- the baseline: live_hit.py's bare Sanic app, one process, answering from memory the
  bytes of the first ``&w=400&h=300&format=webp`` response.

wrk (``-t2 -c32 -dNs --latency``) runs against each figure in turn, in alternating
rounds; the figures are the medians of the per-round ratios. Targets: a cached variant
HIT (live URL, 400×300 WebP) ≥ 0.9× the baseline; a signed live HIT ≥ 0.9× the unsigned
live HIT of the same bytes (both the variant and the original are measured).

The first render of the 1024² PNG into a 400×300 WebP (target ≤ 60 ms) is measured
in-process with ``services.variants.render`` (the cold first call and the median of
20), on the photo-like PNG the server serves and on the offline provider's output;
and end to end: the first request for a new size of an already generated image minus
a HIT of the same URL, over 10 fresh sizes, on the live URL and on ``/img/{id}``.

    python bench/variants.py [--duration 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import io
import json
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from live_hit import Run, fixed_provider, free_port, wait_for, wrk
from live_hit import start as start_live_hit

PROMPT = "benchmark hero image"
SIDE = 1024
VARIANT = "&w=400&h=300&format=webp"
RENDER_RUNS = 20
FRESH_SIZES = 10


def photo_like() -> bytes:
    """The offline provider's 1024² picture with 6 % grain blended in: a PNG of the
    size a real generated photo has (smooth art alone compresses to ~40 KB)."""
    from PIL import Image

    from banatie_local.providers import offline

    art = Image.open(io.BytesIO(offline.render(PROMPT, SIDE, SIDE, []))).convert("RGB")
    grain = random.Random(7).randbytes(SIDE * SIDE)
    noise = Image.frombytes("L", (SIDE, SIDE), grain).convert("RGB")
    out = io.BytesIO()
    Image.blend(art, noise, 0.06).save(out, format="PNG")
    return out.getvalue()


# ------------------------------------------------------------------ the server child


def serve_app(port: int, data_dir: str, image_path: str) -> None:
    from banatie_local.config import load_settings
    from banatie_local.http import create_app
    from banatie_local.services.container import initialize, open_services

    data = Path(image_path).read_bytes()
    settings = load_settings(
        data_dir=data_dir,
        overrides={
            "server.port": port,
            "limits.requests_per_hour": 0,
            "log.level": "warning",
        },
    )
    services = open_services(settings, provider=fixed_provider(data))
    init = initialize(services)
    keys = {"master": init.master_key, "project": init.project_key}
    print("ready " + json.dumps(keys), flush=True)
    create_app(settings, services).run(
        host="127.0.0.1", port=port, single_process=True, access_log=False, motd=False
    )


def start_app(port: int, data_dir: str, image_path: str) -> tuple[subprocess.Popen[str], Any]:
    """Our server child and the keys it printed on its ready line."""
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve-app", str(port), data_dir, image_path],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdout is not None
    word, _, keys = child.stdout.readline().strip().partition(" ")
    if word != "ready":
        raise SystemExit("the banatie-local child did not start")
    return child, json.loads(keys)


# ------------------------------------------------------------------ in-process render


def render_times(data: bytes) -> list[float]:
    """Milliseconds of ``render`` for a 400×300 WebP of ``data``, the first call first."""
    from banatie_local.providers.base import measure
    from banatie_local.services.variants import Source, VariantRequest, plan, render

    width, height = measure(data)
    source = Source("bench", "image/png", "hash", "key", width, height, None, None)
    todo = plan(source, VariantRequest(400, 300, "cover", "webp", 82))
    times = []
    for _ in range(RENDER_RUNS):
        began = time.perf_counter()
        render(data, todo)
        times.append((time.perf_counter() - began) * 1000)
    return times


# ------------------------------------------------------------------ the HTTP side


def api(client: httpx.Client, method: str, path: str, key: str, body: dict[str, Any]) -> Any:
    response = client.request(method, path, json=body, headers={"X-API-Key": key})
    assert response.status_code < 300, (path, response.status_code, response.text)
    return response.json()["data"]


def signed_project(client: httpx.Client, master: str) -> str:
    """Create ``bench/signed`` with ``signedUrls = live``; its project key."""
    created = api(client, "POST", "/api/admin/keys", master, {
        "type": "project", "organizationSlug": "bench", "projectSlug": "signed",
    })  # fmt: skip
    key = str(created["key"])
    assert api(client, "PUT", "/api/v1/project", key, {"signedUrls": "live"})["signedUrls"] == (
        "live"
    )
    return key


def sign(client: httpx.Client, key: str, query: dict[str, str]) -> str:
    body = {"path": "/cdn/bench/signed/live/bench", "query": query}
    return str(api(client, "POST", "/api/v1/signed-urls", key, body)["path"])


def first_minus_hit(client: httpx.Client, url: str) -> float:
    """Milliseconds of the first request for ``url`` minus the median of three HITs."""
    began = time.perf_counter()
    first = client.get(url)
    took = time.perf_counter() - began
    assert first.status_code == 200, (url, first.status_code)
    hits = []
    for _ in range(3):
        began = time.perf_counter()
        assert client.get(url).content == first.content
        hits.append(time.perf_counter() - began)
    return (took - statistics.median(hits)) * 1000


def fresh_sizes(client: httpx.Client, url: str, first_width: int) -> list[float]:
    """``first_minus_hit`` for new sizes of an already generated image (widths from
    ``first_width``: a size made through another URL of the image would be stored)."""
    sep = "&" if "?" in url else "?"
    return [
        first_minus_hit(client, f"{url}{sep}w={first_width + i}&h=300&format=webp")
        for i in range(FRESH_SIZES)
    ]


def similar(got: bytes, want: bytes, exact: bool = False) -> bool:
    """The same bytes, or (another image of the same pixels, with its own ids in its
    provenance metadata) about the same size."""
    return got == want if exact else abs(len(got) - len(want)) < 4096


def measure_servers(duration: int, rounds: int, image_path: str) -> dict[str, Any]:
    """Start the servers, check what they answer, time fresh sizes, run wrk in rounds."""
    children: list[subprocess.Popen[str]] = []
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as data_dir, tempfile.TemporaryDirectory() as bytes_dir:
        try:
            port, base_port = free_port(), free_port()
            child, keys = start_app(port, data_dir, image_path)
            children.append(child)
            root = f"http://127.0.0.1:{port}"
            live = f"{root}/cdn/default/default/live/bench?prompt=" + PROMPT.replace(" ", "%20")
            original = wait_for(live)
            assert original.headers["x-cache-status"] == "MISS", original.headers
            out["original_size"] = len(original.content)
            client = httpx.Client(base_url=root, timeout=60)
            out["cold_variant_ms"] = first_minus_hit(client, live + VARIANT)
            variant = client.get(live + VARIANT)
            assert variant.headers["content-type"] == "image/webp", variant.headers
            out["variant_size"] = len(variant.content)
            image_id = original.headers["x-image-id"]
            cdn = f"{root}/cdn/default/default/img/{image_id}"
            out["fresh_live_ms"] = fresh_sizes(client, live, 401)
            out["fresh_img_ms"] = fresh_sizes(client, cdn, 401 + FRESH_SIZES)
            # the signed project, and its URLs (unsigned ones must be refused)
            project_key = signed_project(client, keys["master"])
            unsigned = f"{root}/cdn/bench/signed/live/bench?prompt=" + PROMPT.replace(" ", "%20")
            refused = client.get(unsigned)
            assert refused.status_code == 403, refused.status_code
            slive = root + sign(client, project_key, {"prompt": PROMPT})
            svar = root + sign(
                client, project_key, {"prompt": PROMPT, "w": "400", "h": "300", "format": "webp"}
            )
            # its own image of the same provider output: the same pixels, its own ids in
            # the provenance metadata, so about the same size
            assert similar(client.get(slive).content, original.content)
            served = Path(bytes_dir) / "variant.webp"
            served.write_bytes(variant.content)
            children.append(start_live_hit(["--serve-baseline", str(base_port), str(served), "1"]))
            urls = {
                "base": f"http://127.0.0.1:{base_port}/img",
                "var": live + VARIANT,
                "svar": svar,
                "cdnvar": cdn + "?" + VARIANT[1:],
                "live": live,
                "slive": slive,
            }
            for name, url in urls.items():
                response = wait_for(url)
                assert response.status_code == 200, (url, response.status_code)
                want = original if name in ("live", "slive") else variant
                signed_own = name.startswith("s")  # the signed project's own image
                assert similar(response.content, want.content, exact=not signed_own), name
                if name != "base":
                    assert client.get(url).headers.get("x-cache-status", "HIT") == "HIT", name
            client.close()
            results: dict[str, list[Run]] = {name: [] for name in urls}
            for _ in range(rounds):
                for name, url in urls.items():
                    results[name].append(wrk(url, duration))
            out["results"] = results
        finally:
            for child in children:
                child.send_signal(signal.SIGTERM)
            for child in children:
                child.wait(30)
    return out


# ------------------------------------------------------------------ report


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report_render(name: str, size: int, times: list[float]) -> None:
    median = statistics.median(times)
    print(
        f"render 1024² PNG ({name}, {size} bytes) -> 400×300 WebP, in-process: "
        f"first {times[0]:.1f} ms, median of {len(times)} {median:.1f} ms "
        f"(min {min(times):.1f}); target <= 60 ms {verdict(median <= 60 and times[0] <= 60)}"
    )


def report_servers(out: dict[str, Any]) -> None:
    results: dict[str, list[Run]] = out["results"]

    def ratio(name: str, against: str, attr: str) -> float:
        return statistics.median(
            float(getattr(run, attr)) / float(getattr(b, attr))
            for run, b in zip(results[name], results[against], strict=True)
        )

    def median(name: str, attr: str) -> float:
        return statistics.median(float(getattr(run, attr)) for run in results[name])

    for label, key in (("live URL", "fresh_live_ms"), ("/img/{id}", "fresh_img_ms")):
        times = out[key]
        print(
            f"first request for a new size minus a HIT, {label}, {len(times)} sizes: "
            f"median {statistics.median(times):.1f} ms (min {min(times):.1f}, "
            f"max {max(times):.1f}); target <= 60 ms "
            f"{verdict(statistics.median(times) <= 60)}"
        )
    print(f"the server's first variant (cold) minus a HIT: {out['cold_variant_ms']:.1f} ms")
    print(
        f"original {out['original_size']} bytes, variant {out['variant_size']} bytes; "
        f"wrk -t2 -c32; {len(results['base'])} alternating rounds"
    )
    print(
        f"baseline (bare Sanic, 1 process, variant bytes from memory): "
        f"{median('base', 'rps'):.0f} req/s, p99 {median('base', 'p99_ms'):.2f} ms"
    )
    for name, against, label, target in (
        ("var", "base", "variant HIT, live URL, vs bare", 0.9),
        ("cdnvar", "base", "variant HIT, /img/{id}, vs bare", None),
        ("svar", "var", "signed variant live HIT vs unsigned", 0.9),
        ("slive", "live", "signed live HIT (original PNG) vs unsigned", 0.9),
        ("live", "base", "unsigned live HIT (original PNG) vs bare variant", None),
    ):
        rps, p99 = ratio(name, against, "rps"), ratio(name, against, "p99_ms")
        judged = "" if target is None else f"; target >= {target}x {verdict(rps >= target)}"
        print(
            f"{label}: {median(name, 'rps'):.0f} req/s ({rps:.2f}x), "
            f"p99 {median(name, 'p99_ms'):.2f} ms ({p99:.2f}x){judged}"
        )
    print("per round (req/s, p99 ms):")
    for name, runs in results.items():
        print(f"  {name}: " + ", ".join(f"{r.rps:.0f}/{r.p99_ms:.2f}" for r in runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve-app", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_app:
        port, data_dir, image_path = args.serve_app
        serve_app(int(port), data_dir, image_path)
        return
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    from banatie_local.providers import offline

    photo = photo_like()
    art = offline.render(PROMPT, SIDE, SIDE, [])
    # in-process first, in this process's first render (the cold call), while idle
    report_render("photo-like", len(photo), render_times(photo))
    report_render("offline provider", len(art), render_times(art))
    with tempfile.TemporaryDirectory() as image_dir:
        image_path = Path(image_dir) / "photo.png"
        image_path.write_bytes(photo)
        out = measure_servers(args.duration, args.rounds, str(image_path))
    report_servers(out)


if __name__ == "__main__":
    main()
