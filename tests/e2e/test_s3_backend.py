"""The whole API on the S3 backend (a real SeaweedFS server), and what it does while
that server is down and after it comes back (API.md §0.1, §1.6, §3, §6, §7)."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from minio import Minio
from minio.error import S3Error

from tests.api.test_errors import assert_error
from tests.api.test_images import upload, uploaded
from tests.api.test_live import FakeProvider, assert_hit, assert_miss, live
from tests.conftest import Running
from tests.fakes.s3 import ACCESS_KEY, SECRET_KEY, S3Server
from tests.helpers import sqlite
from tests.imagedata import jpeg_bytes, png_bytes

pytestmark = pytest.mark.slow

CDN = "/cdn/default/default/img"
GENERATIONS = "/api/v1/generations"
IMAGES = "/api/v1/images"


def new_bucket() -> str:
    return "t-" + uuid.uuid4().hex[:12]


def s3_client(server: S3Server) -> Minio:
    return Minio(server.endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False)


def stored_object(client: Minio, bucket: str, key: str) -> tuple[bytes, str] | None:
    """``(bytes, content type)`` of an object, read directly from S3; None if absent."""
    try:
        stat = client.stat_object(bucket, key)
    except S3Error as exc:
        if exc.code in ("NoSuchKey", "NotFound"):
            return None
        raise
    response = client.get_object(bucket, key)
    try:
        return response.read(), str(stat.content_type)
    finally:
        response.close()
        response.release_conn()


def local_files(app: Running) -> list[Path]:
    root = app.settings.storage_root
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def data_of(response: httpx.Response, status: int) -> Any:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is True
    return body["data"]


def generate(app: Running, prompt: str) -> httpx.Response:
    return app.project("POST", GENERATIONS, json={"prompt": prompt, "autoEnhance": False})


def refuse_server_errors(app: Running) -> None:
    """Fail the test at the first 5xx other than 503 that the appliance answers."""

    def check(response: httpx.Response) -> None:
        assert response.status_code < 500 or response.status_code == 503, (
            f"{response.request.method} {response.request.url} -> {response.status_code}"
        )

    app.client.event_hooks["response"].append(check)


def count(app: Running, sql: str, *args: object) -> int:
    with sqlite(app.settings.database_path) as db:
        return int(db.execute(sql, args).fetchone()[0])


# ------------------------------------------------------------------- happy path


def test_api_on_the_s3_backend(start_server: Callable[..., Running], s3_server: S3Server) -> None:
    """Upload, generate, serve, live URLs and deletes all go through the bucket; nothing
    is written to the local storage directory."""
    bucket = new_bucket()
    client = s3_client(s3_server)
    app = start_server(provider=FakeProvider(), **s3_server.settings_overrides(bucket))
    refuse_server_errors(app)

    health = app.client.get("/health")
    assert health.status_code == 200, health.text
    assert health.json()["status"] == "healthy"
    assert health.json()["storage"] == "minio"
    assert health.json()["checks"] == {"database": "ok", "storage": "ok"}
    assert data_of(app.client.get("/api/info"), 200)["storage"] == "minio"

    # upload: the object holds the exact bytes with the detected MIME type
    jpeg = jpeg_bytes(16, 12)
    image = uploaded(app, jpeg, name="photo.png", content_type="image/png")
    key = image["storageKey"]
    assert key == f"default/default/img/{image['id']}"
    assert image["mimeType"] == "image/jpeg"
    assert stored_object(client, bucket, key) == (jpeg, "image/jpeg")

    # generation: its output is an object in the bucket too
    generation = data_of(generate(app, "a red fox"), 201)
    assert generation["status"] == "success", generation
    output = generation["outputImage"]
    found = stored_object(client, bucket, output["storageKey"])
    assert found is not None
    assert found[1] == output["mimeType"] == "image/png"
    assert hashlib.sha256(found[0]).hexdigest() == output["fileHash"]
    assert len(found[0]) == output["fileSize"]

    # the public image route answers the stored bytes
    cdn = app.client.get(f"{CDN}/{image['id']}")
    assert cdn.status_code == 200
    assert cdn.content == jpeg
    assert cdn.headers["content-type"] == "image/jpeg"
    assert cdn.headers["etag"] == f'"{image["fileHash"]}"'
    generated = app.client.get(f"{CDN}/{output['id']}")
    assert generated.content == found[0]

    # live URL: MISS stores an object, HIT answers it, also when read back from S3
    first = live(app, "a lighthouse at dusk")
    assert_miss(first)
    live_object = stored_object(
        client, bucket, f"default/default/img/{first.headers['x-image-id']}"
    )
    assert live_object is not None
    assert live_object[0] == first.content
    assert_hit(live(app, "a lighthouse at dusk"), hits=1)
    app.services.image_cache.clear()
    again = live(app, "a lighthouse at dusk")
    assert_hit(again, hits=2)
    assert again.content == first.content

    # deleting an image removes its object
    assert data_of(app.project("DELETE", f"{IMAGES}/{image['id']}"), 200) == {"id": image["id"]}
    assert stored_object(client, bucket, key) is None
    assert_error(app.client.get(f"{CDN}/{image['id']}"), 404, "IMAGE_NOT_FOUND")

    # deleting a generation removes its output object
    gone = app.project("DELETE", f"{GENERATIONS}/{generation['id']}")
    assert data_of(gone, 200) == {"id": generation["id"]}
    assert stored_object(client, bucket, output["storageKey"]) is None
    assert_error(app.project("GET", f"{IMAGES}/{output['id']}"), 404, "IMAGE_NOT_FOUND")

    names = sorted(o.object_name for o in client.list_objects(bucket, recursive=True))
    assert names == [f"default/default/img/{first.headers['x-image-id']}"]
    assert count(app, "SELECT COUNT(*) FROM orphan_files") == 0
    assert local_files(app) == []


# ------------------------------------------------------------- outage, recovery


def test_s3_outage_and_recovery(start_server: Callable[..., Running], tmp_path: Path) -> None:
    """With the endpoint gone: /health is 503 quickly, writes and uncached reads are
    503 STORAGE_UNAVAILABLE and leave no rows behind, deletes still succeed and record
    the file as an orphan. When it comes back, everything works again."""
    s3 = S3Server(tmp_path / "s3").start()
    try:
        _outage_and_recovery(start_server, s3)
    finally:
        s3.stop()


def _outage_and_recovery(start_server: Callable[..., Running], s3: S3Server) -> None:
    bucket = new_bucket()
    client = s3_client(s3)
    app = start_server(
        provider=FakeProvider(), live__memory_cache_mb=0, **s3.settings_overrides(bucket)
    )
    refuse_server_errors(app)
    kept_bytes = png_bytes(10, 10, (1, 2, 3))
    kept = uploaded(app, kept_bytes)
    doomed = uploaded(app, png_bytes(10, 10, (4, 5, 6)))
    assert app.client.get(f"{CDN}/{kept['id']}").content == kept_bytes
    assert app.client.get("/health").status_code == 200

    s3.stop()

    # /health: unhealthy, storage failing, and it says so quickly
    started = time.monotonic()
    health = app.client.get("/health")
    assert time.monotonic() - started < 5
    assert health.status_code == 503, health.text
    body = health.json()
    assert body["status"] == "unhealthy"
    assert body["storage"] == "minio"
    assert body["checks"] == {"database": "ok", "storage": "failing"}

    # upload: 503, no row, no local file
    assert_error(upload(app, png_bytes(6, 6)), 503, "STORAGE_UNAVAILABLE")
    assert count(app, "SELECT COUNT(*) FROM images") == 2
    assert local_files(app) == []

    # synchronous generation: 503, the record failed, no output image
    assert_error(generate(app, "a storm"), 503, "STORAGE_UNAVAILABLE")
    with sqlite(app.settings.database_path) as db:
        rows = db.execute(
            "SELECT status, output_image_id, error_message FROM generations"
        ).fetchall()
    assert len(rows) == 1
    assert rows[0]["status"] == "failed"
    assert rows[0]["output_image_id"] is None
    assert "storage" in rows[0]["error_message"]
    assert count(app, "SELECT COUNT(*) FROM images") == 2

    # a live MISS: 503, nothing cached
    assert_error(live(app, "a quiet harbour"), 503, "STORAGE_UNAVAILABLE")
    assert count(app, "SELECT COUNT(*) FROM live_cache_entries") == 0

    # a public read that memory cannot answer: 503
    assert_error(app.client.get(f"{CDN}/{kept['id']}"), 503, "STORAGE_UNAVAILABLE")

    # delete: the row goes, the file is kept for purge
    response = app.project("DELETE", f"{IMAGES}/{doomed['id']}")
    assert data_of(response, 200) == {"id": doomed["id"]}
    assert count(app, "SELECT COUNT(*) FROM images WHERE id = ?", doomed["id"]) == 0
    with sqlite(app.settings.database_path) as db:
        orphans = [r[0] for r in db.execute("SELECT storage_key FROM orphan_files")]
    assert orphans == [doomed["storageKey"]]
    assert_error(app.client.get(f"{CDN}/{doomed['id']}"), 404, "IMAGE_NOT_FOUND")

    s3.start()

    health = app.client.get("/health")
    assert health.status_code == 200, health.text
    assert health.json()["status"] == "healthy"
    assert health.json()["checks"]["storage"] == "ok"

    cdn = app.client.get(f"{CDN}/{kept['id']}")
    assert cdn.status_code == 200
    assert cdn.content == kept_bytes
    fresh_bytes = png_bytes(7, 7, (9, 9, 9))
    fresh = uploaded(app, fresh_bytes)
    assert stored_object(client, bucket, fresh["storageKey"]) == (fresh_bytes, "image/png")
    assert app.client.get(f"{CDN}/{fresh['id']}").content == fresh_bytes
    assert data_of(generate(app, "a storm"), 201)["status"] == "success"
    assert_miss(live(app, "a quiet harbour"))
    # the file the failed delete left behind is still there for purge to find
    assert stored_object(client, bucket, doomed["storageKey"]) is not None
    assert local_files(app) == []


def test_health_when_the_bucket_was_removed(
    start_server: Callable[..., Running], s3_server: S3Server
) -> None:
    """A bucket removed behind the appliance's back: /health still answers its §7 body."""
    bucket = new_bucket()
    app = start_server(provider=FakeProvider(), **s3_server.settings_overrides(bucket))
    assert app.client.get("/health").status_code == 200
    s3_client(s3_server).remove_bucket(bucket)
    body = app.client.get("/health").json()
    assert body.get("status") in ("healthy", "unhealthy"), body
    assert body["storage"] == "minio"
