"""Read API latency at 1,000 versus 100,000 images: does anything grow with the data?

Seeds two data directories straight through the services' database (bulk
``executemany`` in one transaction each; real files only for the images the live
HIT reads):

- small: 1,000 images and 500 generations;
- large: 100,000 images and 50,000 generations;

both across 500 flows (with flow aliases) and 50 live scopes (with cache entries
pointing at images), 90 % in the default project and 10 % in a second one; one big
flow and one big scope grow with the data, one flow has the same 30 images at both
scales (see ``Seeder``). Then starts
the real server (single process, as ``banatie-local serve``) on each in a child
process and, over one keep-alive connection per server, times N requests per figure
(image, generation, flow lists; scope get; alias resolution; a live-URL HIT),
alternating between the two servers in rounds so that load from elsewhere on the
machine hits both alike. Prints median and p99 at each scale and the ratio.
Target: no median grows by more than 2× from 1k to 100k.

Every list's ``pagination.total`` (and the flow and scope counts) is checked against
what was seeded, so a faster query that counts wrong fails the run.

    python bench/scale.py [--requests 200] [--rounds 4] [--large 100000]
        [--postgres postgresql://user@host:5432]

With ``--postgres`` both scales run on PostgreSQL: each seeded SQLite database is
moved into a new database on that server with ``db copy`` (the counts kept by
triggers are rebuilt there), and the servers run with ``database.url``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

TARGET_RATIO = 2.0
FLOWS = 500
SCOPES = 50
SECOND_SHARE = 0.1  # of every kind of row, in the second project
DAY_US = 86_400 * 1_000_000
FIXED_FLOW = 25  # successful generations in the flow of the same size at every scale


class NoProvider:
    """Nothing is generated during the benchmark; a call would be a bug."""

    name = "none"

    async def generate(self, prompt: str, aspect_ratio: str, references: list[Any]) -> Any:
        raise RuntimeError("the scale benchmark generates nothing")

    async def enhance(self, prompt: str, template: str) -> str:
        raise RuntimeError("the scale benchmark enhances nothing")


def _settings(data_dir: str, port: int = 3000, url: str = "") -> Any:
    from banatie_local.config import load_settings

    return load_settings(
        data_dir=data_dir,
        overrides={
            "server.port": port,
            "limits.requests_per_hour": 0,
            "log.level": "warning",
            "database.url": url,
        },
    )


def to_postgres(data_dir: str, server: str, label: str) -> str:
    """Move a seeded data directory's database into a new PostgreSQL database."""
    import uuid

    import psycopg

    from banatie_local.services import dbcopy

    name = f"scale_{label}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    url = f"{server}/{name}"
    with dbcopy.opened(_settings(data_dir), url) as (source, target):
        dbcopy.copy_database(source, target, url, 5000)
    return url


# --------------------------------------------------------------------------- seed


def _png(index: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 36), ((index * 37) % 256, (index * 91) % 256, 128)).save(out, "PNG")
    return out.getvalue()


class Seeder:
    """Rows for one data directory, built in memory, then written in one transaction.

    Per project: flow rows (the newest one big: 5 % of the members, so that its pages
    are full at 1k too), scopes (``scope-0`` big: 60 % of the entries), generations
    (10 % live-URL ones with a cache entry, the rest 90 % success with an output
    image, 20 % of those with a reference), then uploads up to the image count. A
    member's flow: 70 % a flow row, 20 % an id announced but never given a row, 10 %
    none. 1 % of images have a project alias; each flow has two flow aliases. The main
    project also has a flow of the same size at every scale (25 successful generations
    and 5 uploads, spread over the whole time range)."""

    def __init__(self, services: Any, n_images: int, n_generations: int) -> None:
        self.services = services
        self.rng = random.Random(n_images)
        self.n_images = n_images
        self.n_generations = n_generations
        self.now = services.clock.now_us()
        self.t0 = self.now - 60 * DAY_US
        self.flows: list[tuple[Any, ...]] = []
        self.generations: list[tuple[Any, ...]] = []
        self.images: list[tuple[Any, ...]] = []
        self.references: list[tuple[Any, ...]] = []
        self.flow_aliases: list[tuple[Any, ...]] = []
        self.scopes: list[tuple[Any, ...]] = []
        self.entries: list[tuple[Any, ...]] = []
        self.files: list[tuple[str, bytes]] = []
        # what the answers must say
        self.counts: Counter[tuple[str, ...]] = Counter()
        self.flow_last_generated: dict[str, tuple[int, str]] = {}
        self.live_paths: dict[str, str] = {}  # scope id -> a live URL whose image has a file
        self.aliases: dict[str, str] = {}  # project alias -> image id (main project)
        self.generated_ids: list[str] = []
        self.members: dict[str, list[str]] = defaultdict(list)  # flow -> image ids
        # the project being seeded
        self.project_id = self.org_slug = self.slug = ""
        self.main = False
        self.big_flow = self.fixed_flow = ""
        self.flow_ids: list[str] = []
        self.scope_ids: list[tuple[str, str]] = []

    def when(self) -> int:
        return self.t0 + self.rng.randrange(59 * DAY_US)

    def project(self, project_id: str, org_slug: str, slug: str, share: float) -> None:
        self.project_id, self.org_slug, self.slug = project_id, org_slug, slug
        self.main = share > 0.5
        flows, scopes = round(FLOWS * share), round(SCOPES * share)
        self.flow_ids = [str(uuid.uuid4()) for _ in range(flows)]
        for i, fid in enumerate(self.flow_ids):
            at = self.t0 + i * (59 * DAY_US // flows)
            self.flows.append((fid, project_id, "{}", at, at))
        self.scope_ids = [(str(uuid.uuid4()), f"scope-{i}") for i in range(scopes)]
        for i, (sid, sslug) in enumerate(self.scope_ids):
            at = self.t0 + i * DAY_US
            self.scopes.append((sid, project_id, sslug, 1, 1_000_000, "{}", at, at))
        self.generated_ids = []
        for i in range(round(self.n_generations * share)):
            self.generation(i)
        for _ in range(round(self.n_images * share) - len(self.generated_ids)):
            self.image(str(uuid.uuid4()), self.pick_flow(), None, "uploaded", self.when())
        if self.main:
            self.big_flow = self.flow_ids[-1]
            self.fixed_flow = str(uuid.uuid4())
            self.flows.append((self.fixed_flow, project_id, "{}", self.t0, self.t0))
            for i in range(FIXED_FLOW):
                self.generation(i, self.fixed_flow)
            for _ in range(5):
                self.image(str(uuid.uuid4()), self.fixed_flow, None, "uploaded", self.when())
            self.flow_ids.append(self.fixed_flow)
        for fid in self.flow_ids:
            for name, image_id in zip(("@hero", "@background"), self.members[fid], strict=False):
                self.flow_aliases.append((fid, name, image_id, self.now))

    def pick_flow(self) -> str | None:
        roll = self.rng.random()
        if roll < 0.05:
            return self.flow_ids[-1]  # the big flow
        if roll < 0.7:
            return self.rng.choice(self.flow_ids)
        if roll < 0.9:
            return str(uuid.uuid4())  # announced, never given a row
        return None

    def generation(self, i: int, fixed_flow: str | None = None) -> None:
        from banatie_local.constants import DEFAULT_LIVE_ASPECT_RATIO

        rng, pid = self.rng, self.project_id
        gid = str(uuid.uuid4())
        live = fixed_flow is None and i % 10 == 0
        flow_id = fixed_flow or (None if live else self.pick_flow())
        status = "success" if live or fixed_flow or rng.random() < 0.9 else "failed"
        at = self.when()
        output = str(uuid.uuid4()) if status == "success" else None
        took = rng.randrange(2_000, 30_000)
        done = at + took * 1000
        prompt = f"live prompt {i}" if live else f"a scene number {i}, enhanced"
        self.generations.append((
            gid, pid, flow_id, None, prompt, None if live else f"a scene number {i}", prompt,
            0 if live else 1, "general", DEFAULT_LIVE_ASPECT_RATIO if live else "1:1", status,
            output, None, None, took, 0, None if output else "the provider refused the prompt",
            '{"provider":"bench","model":"bench-1"}', at, done,
        ))  # fmt: skip
        self.counts[pid, "generations"] += 1
        self.counts[pid, "generations", status] += 1
        if flow_id is not None:
            self.counts["flow", flow_id, "generations"] += 1
            self.counts["flow", flow_id, "generations", status] += 1
        if output is None:
            return
        if not live and self.generated_ids and rng.random() < 0.2:
            self.references.append((gid, 0, rng.choice(self.generated_ids), None))
        self.image(output, flow_id, gid, "generated", done)
        self.generated_ids.append(output)
        if live:
            self.live_entry(gid, output, prompt, done)

    def live_entry(self, gid: str, image_id: str, prompt: str, at: int) -> None:
        from banatie_local.constants import DEFAULT_LIVE_ASPECT_RATIO, DEFAULT_TEMPLATE
        from banatie_local.services.live import LiveParams, cache_key

        big = self.rng.random() < 0.6
        sid, sslug = self.scope_ids[0] if big else self.rng.choice(self.scope_ids)
        params = LiveParams(prompt, DEFAULT_LIVE_ASPECT_RATIO, True, DEFAULT_TEMPLATE)
        key = cache_key(self.project_id, sslug, params)
        self.entries.append((
            str(uuid.uuid4()), self.project_id, sid, key, image_id, gid, prompt,
            DEFAULT_LIVE_ASPECT_RATIO, 1, DEFAULT_TEMPLATE, self.rng.randrange(100), None, at, at,
        ))  # fmt: skip
        self.counts["scope", sid] += 1
        if self.main and sid not in self.live_paths:
            self._real_file(len(self.images) - 1)
            path = f"/cdn/{self.org_slug}/{self.slug}/live/{sslug}?prompt={quote(prompt)}"
            self.live_paths[sid] = path

    def image(
        self, image_id: str, flow_id: str | None, gen_id: str | None, source: str, at: int
    ) -> None:
        from banatie_local.storage import image_key

        rng, pid = self.rng, self.project_id
        alias = f"@img-{len(self.images)}" if rng.random() < 0.01 else None
        key = image_key(self.org_slug, self.slug, image_id)
        digest = hashlib.sha256(image_id.encode()).hexdigest()
        self.images.append((
            image_id, pid, flow_id, gen_id, key, "image/png", rng.randrange(200_000, 2_000_000),
            digest, 1792, 1024, source, alias, None, None, '{"tag":"bench"}', at, at,
        ))  # fmt: skip
        self.counts[pid, "images"] += 1
        self.counts[pid, "images", source] += 1
        if flow_id is not None:
            self.counts["flow", flow_id, "images"] += 1
            self.members[flow_id].append(image_id)
            last = self.flow_last_generated.get(flow_id)
            if source == "generated" and (last is None or last[0] < at):
                self.flow_last_generated[flow_id] = (at, image_id)
        if alias is not None and self.main:
            self.aliases[alias] = image_id

    def _real_file(self, row: int) -> None:
        """Give the image at ``self.images[row]`` a real file and matching facts."""
        data = _png(row)
        image = list(self.images[row])
        image[6], image[7], image[8], image[9] = (
            len(data),
            hashlib.sha256(data).hexdigest(),
            64,
            36,
        )
        self.images[row] = tuple(image)
        self.files.append((image[4], data))

    def write(self) -> None:
        db = self.services.db.raw
        conn = db.connection()
        with db.atomic():
            # generations <-> images point at each other: check the keys at commit
            conn.execute("PRAGMA defer_foreign_keys = ON")
            conn.executemany(
                "INSERT INTO flows (id, project_id, meta, created_at, updated_at)"
                " VALUES (?,?,?,?,?)",
                self.flows,
            )
            conn.executemany(
                "INSERT INTO generations (id, project_id, flow_id, api_key_id, prompt,"
                " original_prompt, user_prompt, auto_enhance, enhancement_template,"
                " aspect_ratio, status, output_image_id, output_alias, output_flow_alias,"
                " processing_time_ms, retry_count, error_message, meta, created_at, updated_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                self.generations,
            )
            conn.executemany(
                "INSERT INTO images (id, project_id, flow_id, generation_id, storage_key,"
                " mime_type, file_size, file_hash, width, height, source, alias, focal_x,"
                " focal_y, meta, created_at, updated_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                self.images,
            )
            conn.executemany(
                "INSERT INTO generation_references (generation_id, position, image_id, alias)"
                " VALUES (?,?,?,?)",
                self.references,
            )
            conn.executemany(
                "INSERT INTO flow_aliases (flow_id, alias, image_id, created_at) VALUES (?,?,?,?)",
                self.flow_aliases,
            )
            conn.executemany(
                "INSERT INTO live_scopes (id, project_id, slug, allow_new_generations,"
                " new_generations_limit, meta, created_at, updated_at)"
                " VALUES (?,?,?,?,?,?,?,?)",
                self.scopes,
            )
            conn.executemany(
                "INSERT INTO live_cache_entries (id, project_id, scope_id, cache_key, image_id,"
                " generation_id, prompt, aspect_ratio, auto_enhance, template, hit_count,"
                " last_hit_at, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                self.entries,
            )

        async def put_all() -> None:
            for key, data in self.files:
                await self.services.storage.put(key, data, "image/png")

        asyncio.run(put_all())


def seed(data_dir: str, n_images: int, n_generations: int) -> dict[str, Any]:
    """Seed one data directory; return the project key and what each figure should see."""
    from banatie_local.services.container import initialize, open_services

    services = open_services(_settings(data_dir), provider=NoProvider())  # type: ignore[arg-type]
    try:
        init = initialize(services)
        default = services.projects.get("default", "default").project
        second = services.projects.ensure("acme", "site").project
        seeder = Seeder(services, n_images, n_generations)
        seeder.project(default.id, "default", "default", 1 - SECOND_SHARE)
        seeder.project(second.id, "acme", "site", SECOND_SHARE)
        seeder.write()
    finally:
        services.close()
    pid, count = default.id, seeder.counts
    flows = [row[0] for row in seeder.flows if row[1] == pid]
    big_flow, fixed_flow = seeder.big_flow, seeder.fixed_flow
    scope_id, scope = next((row[0], row[2]) for row in seeder.scopes if row[1] == pid)
    alias = sorted(seeder.aliases)[len(seeder.aliases) // 2]
    return {
        "key": init.project_key,
        "images": count[pid, "images"],
        "generated": count[pid, "images", "generated"],
        "generations": count[pid, "generations"],
        "success": count[pid, "generations", "success"],
        "flows": len(flows),
        "flow_counts": {
            f: [count["flow", f, "generations"], count["flow", f, "images"]] for f in flows
        },
        "flow_id": big_flow,
        "flow_images": count["flow", big_flow, "images"],
        "flow_last": seeder.flow_last_generated[big_flow][1],
        "fixed_flow": fixed_flow,
        "fixed_flow_images": count["flow", fixed_flow, "images"],
        "fixed_flow_success": count["flow", fixed_flow, "generations", "success"],
        "alias": alias,
        "alias_image": seeder.aliases[alias],
        "scope": scope,
        "scope_entries": count["scope", scope_id],
        "live_path": seeder.live_paths[scope_id],
        "rows": len(seeder.images) + len(seeder.generations),
    }


# --------------------------------------------------------------------------- serve


def serve(port: int, data_dir: str, url: str = "") -> None:
    """Child process: the real app on a seeded data directory."""
    from banatie_local.http import create_app
    from banatie_local.services.container import open_services

    settings = _settings(data_dir, port, url)
    services = open_services(settings, provider=NoProvider())  # type: ignore[arg-type]
    print("ready", flush=True)
    create_app(settings, services).run(
        host="127.0.0.1", port=port, single_process=True, access_log=False, motd=False
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- measure


Check = Callable[[httpx.Response], None]


@dataclass(frozen=True)
class Figure:
    name: str
    path: str
    check: Check


def _total(expected: int) -> Check:
    def check(response: httpx.Response) -> None:
        body = response.json()
        got = body["pagination"]["total"]
        assert got == expected, f"total {got}, seeded {expected}"
        assert len(body["data"]) == min(20, expected)

    return check


def _image_id(expected: str) -> Check:
    def check(response: httpx.Response) -> None:
        got = response.json()["data"]["id"]
        assert got == expected, f"image {got}, expected {expected}"

    return check


def figures(s: dict[str, Any]) -> list[Figure]:
    def flows_check(response: httpx.Response) -> None:
        _total(s["flows"])(response)
        for flow in response.json()["data"]:
            got = [flow["generationCount"], flow["imageCount"]]
            assert got == s["flow_counts"][flow["id"]], f"flow {flow['id']}: {got}"

    def scope_check(response: httpx.Response) -> None:
        body = response.json()
        assert body["pagination"]["total"] == s["scope_entries"], body["pagination"]
        assert body["data"]["currentGenerations"] == s["scope_entries"]
        assert len(body["data"]["images"]) == min(20, s["scope_entries"])

    def live_check(response: httpx.Response) -> None:
        assert response.headers["x-cache-status"] == "HIT", response.headers
        assert response.content.startswith(b"\x89PNG")

    def health_check(response: httpx.Response) -> None:
        assert response.json()["status"] == "healthy", response.text

    flow, fixed, alias = s["flow_id"], s["fixed_flow"], quote(s["alias"])
    return [
        Figure("GET /health (control)", "/health", health_check),
        Figure("images", "/api/v1/images", _total(s["images"])),
        Figure("images ?flowId= (big flow)",
               f"/api/v1/images?flowId={flow}", _total(s["flow_images"])),
        Figure("images ?flowId= (30-image flow)",
               f"/api/v1/images?flowId={fixed}", _total(s["fixed_flow_images"])),
        Figure("images ?source=", "/api/v1/images?source=generated", _total(s["generated"])),
        Figure("images ?alias=", f"/api/v1/images?alias={alias}", _total(1)),
        Figure("generations", "/api/v1/generations", _total(s["generations"])),
        Figure("generations ?status=", "/api/v1/generations?status=success", _total(s["success"])),
        Figure("generations ?flowId=&status= (25 in flow)",
               f"/api/v1/generations?flowId={fixed}&status=success",
               _total(s["fixed_flow_success"])),
        Figure("flows (with counts)", "/api/v1/flows", flows_check),
        Figure("scope get (with images)", f"/api/v1/live/scopes/{s['scope']}", scope_check),
        Figure("image @alias", f"/api/v1/images/{alias}", _image_id(s["alias_image"])),
        Figure("image @last?flowId=",
               f"/api/v1/images/@last?flowId={flow}", _image_id(s["flow_last"])),
        Figure("live-URL HIT", s["live_path"], live_check),
    ]  # fmt: skip


def time_requests(client: httpx.Client, path: str, count: int) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        response = client.get(path)
        samples.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"GET {path}: {response.status_code} {response.text[:300]}")
    return samples


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[98]


@dataclass
class Server:
    label: str
    data_dir: str
    seeded: dict[str, Any]
    url: str = ""
    child: subprocess.Popen[str] | None = None
    client: httpx.Client | None = None

    def start(self) -> None:
        port = free_port()
        self.child = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(port), self.data_dir, self.url],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.child.stdout is not None
        if self.child.stdout.readline().strip() != "ready":
            raise SystemExit(f"the {self.label} server did not start")
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"X-API-Key": self.seeded["key"]},
            timeout=60,
        )
        for _ in range(400):
            try:
                if self.client.get("/health").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise SystemExit(f"the {self.label} server never answered")

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.child is not None:
            self.child.send_signal(signal.SIGTERM)
            self.child.wait(30)


def measure(servers: list[Server], requests: int, rounds: int) -> dict[str, list[list[float]]]:
    """Per figure, the samples of each server; each round does a share at each scale."""
    plans = [figures(server.seeded) for server in servers]
    results: dict[str, list[list[float]]] = {}
    per_round = max(1, requests // rounds)
    for index, name in enumerate(f.name for f in plans[0]):
        results[name] = [[] for _ in servers]
        for server, plan in zip(servers, plans, strict=True):
            figure = plan[index]
            assert server.client is not None
            first = server.client.get(figure.path)  # the first live request fills memory
            if first.status_code != 200:
                raise SystemExit(f"GET {figure.path}: {first.status_code} {first.text[:300]}")
            try:
                figure.check(first)
            except AssertionError as exc:
                raise SystemExit(f"{server.label} {name}: wrong answer: {exc}") from None
            time_requests(server.client, figure.path, 10)  # warm-up
        for _ in range(rounds):
            for slot, (server, plan) in enumerate(zip(servers, plans, strict=True)):
                assert server.client is not None
                results[name][slot] += time_requests(server.client, plan[index].path, per_round)
    return results


def report(servers: list[Server], results: dict[str, list[list[float]]]) -> None:
    small, large = servers
    width = max(len(name) for name in results)
    print(
        f"{'figure':<{width}}  {small.label + ' median/p99':>20}  {large.label + ' median/p99':>22}"
        "  ratio (median, p99)"
    )
    for name, (at_small, at_large) in results.items():
        m_small, m_large = statistics.median(at_small), statistics.median(at_large)
        q_small, q_large = p99(at_small), p99(at_large)
        ratio, q_ratio = m_large / m_small, q_large / q_small
        verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
        print(
            f"{name:<{width}}  {m_small:7.2f} / {q_small:7.2f} ms  "
            f"{m_large:8.2f} / {q_large:8.2f} ms  {ratio:5.2f}x  {q_ratio:5.2f}x  {verdict}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="per figure and scale")
    parser.add_argument("--rounds", type=int, default=4, help="alternations between scales")
    parser.add_argument("--small", type=int, default=1_000, help="images at the small scale")
    parser.add_argument("--large", type=int, default=100_000, help="images at the large scale")
    parser.add_argument("--postgres", default="", help="run on this PostgreSQL server")
    parser.add_argument("--serve", nargs=3, metavar=("PORT", "DATA_DIR", "URL"),
                        help=argparse.SUPPRESS)  # fmt: skip
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), args.serve[1], args.serve[2])
        return
    started = time.perf_counter()
    servers: list[Server] = []
    with tempfile.TemporaryDirectory() as small_dir, tempfile.TemporaryDirectory() as large_dir:
        for label, data_dir, n_images in (
            (_label(args.small), small_dir, args.small),
            (_label(args.large), large_dir, args.large),
        ):
            began = time.perf_counter()
            seeded = seed(data_dir, n_images, n_images // 2)
            size = sum(p.stat().st_size for p in Path(data_dir).glob("*.db*"))
            print(
                f"seeded {label}: {seeded['rows']:,} image+generation rows in "
                f"{time.perf_counter() - began:.1f} s; database {size / 1e6:.1f} MB; "
                f"big flow: {seeded['flow_images']} images, big scope: "
                f"{seeded['scope_entries']} entries",
                flush=True,
            )
            url = ""
            if args.postgres:
                began = time.perf_counter()
                url = to_postgres(data_dir, args.postgres.rstrip("/"), label)
                print(f"  moved to PostgreSQL in {time.perf_counter() - began:.1f} s", flush=True)
            servers.append(Server(label, data_dir, seeded, url))
        try:
            for server in servers:
                server.start()
            results = measure(servers, args.requests, args.rounds)
        finally:
            for server in servers:
                server.stop()
    print(
        f"{args.requests} sequential requests per figure and scale over one keep-alive "
        f"connection, {args.rounds} alternating rounds; target: median ratio <= {TARGET_RATIO:g}x"
    )
    report(servers, results)
    print(f"total time {time.perf_counter() - started:.0f} s")


def _label(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 else str(n)


if __name__ == "__main__":
    main()
