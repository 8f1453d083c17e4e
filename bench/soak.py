"""Soak: two instances on one PostgreSQL and one S3 bucket under mixed load, with a
PostgreSQL restart in the middle; then check that nothing was lost or made twice.

Two real ``banatie-local serve`` processes (the machinery of the tests of several
instances, ``tests/instances.py``: a PostgreSQL server started as the ``postgres``
user, SeaweedFS, the fake Gemini server that counts provider calls). Worker threads
send, to either instance at random: live-URL requests over a pool of prompts (MISSes
first, HITs after), uploads, generations and deletes of their own uploads. Halfway,
PostgreSQL is stopped for a few seconds and started again. Afterwards:

- no answer was a 500 (a 503 during the outage is expected, and counted);
- every upload answered 201 and not deleted is listed, readable and served; every
  deleted one is a 404;
- no live prompt was generated successfully twice, and every prompt answered 200 has
  exactly one cache entry;
- every image row has its object in the bucket;
- the counts kept by triggers equal the rows counted.

    python bench/soak.py [--duration 60] [--threads 6] [--outage 4]
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minio import Minio

from tests.fakes.s3 import ACCESS_KEY, SECRET_KEY, S3Server
from tests.imagedata import png_bytes
from tests.instances import Pair, new_key, running_pair

PROMPTS = [f"soak prompt {n}" for n in range(40)]


class Load:
    def __init__(self, pair: Pair, key: str, until: float) -> None:
        self.pair, self.key, self.until = pair, key, until
        self.statuses: collections.Counter[tuple[str, int]] = collections.Counter()
        self.uploads: list[str] = []
        self.deleted: list[str] = []
        self.generated: list[str] = []
        self.live_ok: set[str] = set()
        self.errors: list[str] = []
        self.lock = threading.Lock()

    def call(self, op: str, method: str, path: str, **kwargs: Any) -> httpx.Response | None:
        headers = {"X-API-Key": self.key, **kwargs.pop("headers", {})}
        try:
            response = self.pair.call(random.randrange(2), method, path, headers=headers,
                                      **kwargs)  # fmt: skip
        except httpx.TransportError as exc:
            with self.lock:
                self.statuses[op, 0] += 1
                self.errors.append(f"{op}: {exc!r}")
            return None
        with self.lock:
            self.statuses[op, response.status_code] += 1
            if response.status_code >= 500 and response.status_code != 503:
                self.errors.append(f"{op}: {response.status_code} {response.text[:200]}")
        return response

    def run(self, seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < self.until:
            op = rng.choices(["live", "upload", "generate", "delete"], [6, 2, 1, 1])[0]
            if op == "live":
                prompt = rng.choice(PROMPTS)
                found = self.call(
                    op,
                    "GET",
                    "/cdn/default/default/live/soak",
                    params={"prompt": prompt, "autoEnhance": "false"},
                )
                if found is not None and found.status_code == 200:
                    with self.lock:
                        self.live_ok.add(prompt)
            elif op == "upload":
                color = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
                files = {"file": ("s.png", png_bytes(8, 8, color), "image/png")}
                found = self.call(op, "POST", "/api/v1/images/upload", files=files)
                if found is not None and found.status_code == 201:
                    with self.lock:
                        self.uploads.append(found.json()["data"]["id"])
            elif op == "generate":
                found = self.call(
                    op,
                    "POST",
                    "/api/v1/generations",
                    json={"prompt": f"soak {rng.random()}", "autoEnhance": False},
                )
                if found is not None and found.status_code == 201:
                    with self.lock:
                        self.generated.append(found.json()["data"]["id"])
            else:
                with self.lock:
                    victim = (
                        self.uploads.pop(rng.randrange(len(self.uploads)))
                        if (self.uploads)
                        else None
                    )
                if victim is None:
                    continue
                found = self.call(op, "DELETE", f"/api/v1/images/{victim}")
                with self.lock:
                    if found is not None and found.status_code == 200:
                        self.deleted.append(victim)
                    else:
                        self.uploads.append(victim)  # still there, or unknown: check it


def check(pair: Pair, load: Load, s3: S3Server) -> list[str]:
    """What went wrong, in sentences; empty when nothing did."""
    problems = list(load.errors)
    key = {"X-API-Key": load.key}
    for image_id in load.uploads:
        got = pair.call(None, "GET", f"/api/v1/images/{image_id}", headers=key)
        served = pair.call(None, "GET", f"/cdn/default/default/img/{image_id}")
        if got.status_code != 200 or served.status_code != 200:
            problems.append(f"upload {image_id} lost: {got.status_code}/{served.status_code}")
    for image_id in load.deleted:
        if pair.call(None, "GET", f"/api/v1/images/{image_id}", headers=key).status_code != 404:
            problems.append(f"deleted image {image_id} is still there")
    twice = pair.sql(
        "SELECT user_prompt, COUNT(*) FROM generations WHERE status = 'success'"
        " AND user_prompt LIKE ? GROUP BY user_prompt HAVING COUNT(*) > 1",
        "soak prompt %",
    )
    problems += [f"live prompt {p!r} generated {n} times" for p, n in twice]
    entries = dict(pair.sql("SELECT prompt, COUNT(*) FROM live_cache_entries GROUP BY prompt"))
    problems += [f"live prompt {p!r} has {entries.get(p, 0)} cache entries"
                 for p in load.live_ok if entries.get(p) != 1]  # fmt: skip
    client = Minio(s3.endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False)
    bucket = next(b.name for b in client.list_buckets() if b.name.startswith("pair-"))
    objects = {o.object_name for o in client.list_objects(bucket, recursive=True)}
    rows = [r[0] for r in pair.sql("SELECT storage_key FROM images")]
    problems += [f"image row {k} has no object" for k in rows if k not in objects]
    counted = dict(pair.sql(
        "SELECT 'images/' || source, COUNT(*) FROM images GROUP BY source UNION ALL "
        "SELECT 'generations/' || status, COUNT(*) FROM generations GROUP BY status"
    ))  # fmt: skip
    kept = dict(
        pair.sql(
            "SELECT subject, SUM(n) FROM project_counts WHERE n <> 0"
            " AND subject NOT IN ('flows', 'scopes') GROUP BY subject"
        )
    )
    if {k: int(v) for k, v in counted.items()} != {k: int(v) for k, v in kept.items()}:
        problems.append(f"trigger-kept counts {kept} differ from the rows {counted}")
    stray = len(objects) - len(rows)
    if stray:
        print(f"note: {stray} objects without a row (for purge orphans)")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--threads", type=int, default=6)
    parser.add_argument("--outage", type=float, default=4, help="seconds PostgreSQL is down")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        s3 = S3Server(Path(root) / "s3").start()
        try:
            with running_pair(Path(root), s3, key_limit=0) as pair:
                _, key = new_key(pair)
                began = time.monotonic()
                load = Load(pair, key, began + args.duration)
                threads = [threading.Thread(target=load.run, args=(n,))
                           for n in range(args.threads)]  # fmt: skip
                for thread in threads:
                    thread.start()
                time.sleep(args.duration / 2)
                pair.pg.stop()
                down = time.monotonic()
                time.sleep(args.outage)
                pair.pg.start_again()
                print(f"PostgreSQL down {time.monotonic() - down:.1f} s at "
                      f"{down - began:.0f} s", flush=True)  # fmt: skip
                for thread in threads:
                    thread.join()
                time.sleep(1.5)  # the change feeds catch up
                problems = check(pair, load, s3)
                calls = len(pair.gemini.image_requests())
        finally:
            s3.stop()
    by_op: dict[str, dict[int, int]] = collections.defaultdict(dict)
    for (op, status), n in sorted(load.statuses.items()):
        by_op[op][status] = n
    total = sum(load.statuses.values())
    print(f"{total} requests in {args.duration:.0f} s on {args.threads} threads:")
    for op, statuses in by_op.items():
        print(f"  {op}: " + ", ".join(f"{s}×{n}" for s, n in statuses.items()))
    print(f"uploads kept {len(load.uploads)}, deleted {len(load.deleted)}, generations "
          f"{len(load.generated)}, live prompts answered {len(load.live_ok)}, "
          f"provider calls {calls}")  # fmt: skip
    if problems:
        print("FAIL:")
        for problem in problems:
            print(f"  {problem}")
        raise SystemExit(1)
    print("PASS: nothing lost, nothing made twice, no 500")


if __name__ == "__main__":
    main()
