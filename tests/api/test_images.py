"""Image routes (API.md §3) over real HTTP: upload, list, get, update, alias, delete,
with the flowId rules of §2, the aliases of §1.2 and the isolation of §0."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.test_errors import assert_error
from tests.conftest import Running
from tests.helpers import sqlite
from tests.imagedata import (
    bilevel_png,
    corrupt_jpeg,
    declared_png,
    gif_bytes,
    jpeg_bytes,
    noise_png,
    padded_png,
    png_bytes,
    truncated_png,
    webp_bytes,
)

pytestmark = pytest.mark.both_databases

UPLOAD = "/api/v1/images/upload"
IMAGES = "/api/v1/images"
MB = 1024 * 1024

ISO_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
IMAGE_FIELDS = {
    "id",
    "projectId",
    "flowId",
    "generationId",
    "storageKey",
    "storageUrl",
    "mimeType",
    "fileSize",
    "fileHash",
    "width",
    "height",
    "source",
    "alias",
    "focalPoint",
    "meta",
    "createdAt",
    "updatedAt",
}
RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


# --------------------------------------------------------------------- fixtures


def _require_rate_headers(response: httpx.Response) -> None:
    """Every /api/v1 response of this module must carry the rate-limit headers."""
    if response.request.url.path.startswith("/api/v1/"):
        missing = [name for name in RATE_HEADERS if name not in response.headers]
        assert not missing, f"{response.request.url.path} answered without {missing}"


@pytest.fixture
def start_server(start_server: Callable[..., Running]) -> Callable[..., Running]:
    """The shared factory, with a client that checks the rate-limit headers."""

    def start(**kwargs: Any) -> Running:
        running = start_server(**kwargs)
        running.client.event_hooks["response"].append(_require_rate_headers)
        return running

    return start


# ---------------------------------------------------------------------- helpers


def upload(
    app: Running,
    data: bytes | None = None,
    *,
    name: str = "image.png",
    content_type: str = "image/png",
    key: str | None = None,
    **fields: str,
) -> httpx.Response:
    """POST a multipart upload with ``file`` and text ``fields``."""
    files = {"file": (name, png_bytes() if data is None else data, content_type)}
    headers = {"X-API-Key": key} if key else {}
    return app.project("POST", UPLOAD, files=files, data=fields, headers=headers)


def uploaded(app: Running, data: bytes | None = None, **fields: str) -> dict[str, Any]:
    """Upload and return the image object, which must have been created."""
    response = upload(app, data, **fields)
    assert response.status_code == 201, response.text
    image: dict[str, Any] = response.json()["data"]
    return image


def get_data(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is True
    return body["data"]


def as_key(app: Running, key: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """A request with another project's key."""
    return app.client.request(method, path, headers={"X-API-Key": key}, **kwargs)


def second_project_key(app: Running) -> str:
    return app.new_project_key("other", "site")


def project_id(app: Running) -> str:
    value: str = get_data(app.project("GET", "/api/v1/project"))["id"]
    return value


def image_row(app: Running, image_id: str) -> dict[str, Any] | None:
    with sqlite(app.settings.database_path) as db:
        row = db.execute("SELECT * FROM images WHERE id = ?", (image_id,)).fetchone()
    return dict(row) if row else None


def stored(app: Running, image_id: str, column: str) -> Any:
    """One column of an image row, which must exist."""
    row = image_row(app, image_id)
    assert row is not None, f"image {image_id} has no row"
    value = row[column]
    return json.loads(value) if column == "meta" else value


def flow_row(app: Running, flow_id: str) -> dict[str, Any] | None:
    with sqlite(app.settings.database_path) as db:
        row = db.execute("SELECT * FROM flows WHERE id = ?", (flow_id,)).fetchone()
    return dict(row) if row else None


def flow_aliases(app: Running) -> set[tuple[str, str, str]]:
    with sqlite(app.settings.database_path) as db:
        rows = db.execute("SELECT flow_id, alias, image_id FROM flow_aliases").fetchall()
    return {(r["flow_id"], r["alias"], r["image_id"]) for r in rows}


def files_under(root: Path) -> set[str]:
    """Relative paths of every file under ``root``, leaving out the ``.tmp`` dir."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".tmp"]
        for filename in filenames:
            found.add((Path(dirpath) / filename).relative_to(root).as_posix())
    return found


@dataclass(frozen=True)
class Snapshot:
    images: frozenset[str]
    flows: frozenset[str]
    flow_aliases: frozenset[tuple[str, str, str]]
    files: frozenset[str]


def snapshot(app: Running) -> Snapshot:
    with sqlite(app.settings.database_path) as db:
        images = frozenset(r[0] for r in db.execute("SELECT id FROM images"))
        flows = frozenset(r[0] for r in db.execute("SELECT id FROM flows"))
    return Snapshot(
        images,
        flows,
        frozenset(flow_aliases(app)),
        frozenset(files_under(app.settings.storage_root)),
    )


def assert_nothing_stored(app: Running, before: Snapshot) -> None:
    """No image row, flow row, flow alias or file appeared since ``before``."""
    assert snapshot(app) == before
    tmp = app.settings.storage_root / ".tmp"
    leftovers = [p for p in tmp.rglob("*") if p.is_file()] if tmp.exists() else []
    assert leftovers == []


def flow_fields() -> dict[str, str]:
    """Form fields that would create a flow row, a flow alias and a project alias
    if a rejected upload got as far as storing anything."""
    return {"flowId": str(uuid.uuid4()), "flowAlias": "@bg", "alias": "@keep"}


def insert_generated(app: Running, project: str, flow_id: str | None, created_at: int) -> str:
    """A generated image row with its file, as the generation pipeline would leave it."""
    image_id = str(uuid.uuid4())
    key = f"default/default/img/{image_id}"
    data = png_bytes(3, 2, (created_at % 256, 0, 0))
    path = app.settings.storage_root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    with sqlite(app.settings.database_path) as db:
        db.execute(
            "INSERT INTO images (id, project_id, flow_id, storage_key, mime_type, file_size,"
            " file_hash, width, height, source, meta, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, 'image/png', ?, ?, 3, 2, 'generated', '{}', ?, ?)",
            (
                image_id,
                project,
                flow_id,
                key,
                len(data),
                hashlib.sha256(data).hexdigest(),
                created_at,
                created_at,
            ),
        )
        db.commit()
    return image_id


def now_us() -> int:
    return time.time_ns() // 1000


def listed_ids(response: httpx.Response) -> list[str]:
    return [image["id"] for image in get_data(response)]


# ======================================================================= upload


def test_upload_returns_the_full_image_object(app: Running) -> None:
    """A PNG upload answers 201 with every field, and stores the file and the row."""
    data = png_bytes(30, 20, (12, 34, 56))
    response = upload(app, data, name="photo.png")
    assert response.status_code == 201, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"success", "data"}
    assert body["success"] is True
    image = body["data"]
    assert set(image) == IMAGE_FIELDS

    image_id = image["id"]
    assert str(uuid.UUID(image_id)) == image_id
    assert uuid.UUID(image_id).version == 4
    assert image["projectId"] == project_id(app)
    assert str(uuid.UUID(image["flowId"])) == image["flowId"]
    assert image["generationId"] is None
    assert image["storageKey"] == f"default/default/img/{image_id}"
    assert image["storageUrl"] == f"http://127.0.0.1:3000/cdn/default/default/img/{image_id}"
    assert image["mimeType"] == "image/png"
    assert image["fileSize"] == len(data)
    assert image["fileHash"] == hashlib.sha256(data).hexdigest()
    assert (image["width"], image["height"]) == (30, 20)
    assert image["source"] == "uploaded"
    assert image["alias"] is None
    assert image["focalPoint"] is None
    assert image["meta"] == {}
    assert ISO_RE.match(image["createdAt"])
    assert ISO_RE.match(image["updatedAt"])

    stored = app.settings.storage_root / image["storageKey"]
    assert stored.read_bytes() == data
    row = image_row(app, image_id)
    assert row is not None
    assert row["project_id"] == image["projectId"]
    assert row["flow_id"] == image["flowId"]
    assert row["generation_id"] is None
    assert row["storage_key"] == image["storageKey"]
    assert row["mime_type"] == "image/png"
    assert row["file_size"] == len(data)
    assert row["file_hash"] == image["fileHash"]
    assert (row["width"], row["height"]) == (30, 20)
    assert row["source"] == "uploaded"
    assert row["alias"] is None
    assert json.loads(row["meta"]) == {}


@pytest.mark.parametrize(
    ("data", "mime", "size"),
    [
        (png_bytes(17, 9), "image/png", (17, 9)),
        (jpeg_bytes(40, 24), "image/jpeg", (40, 24)),
        (webp_bytes(13, 31), "image/webp", (13, 31)),
    ],
    ids=["png", "jpeg", "webp"],
)
def test_upload_accepts_png_jpeg_and_webp(
    app: Running, data: bytes, mime: str, size: tuple[int, int]
) -> None:
    """Each accepted format is stored byte for byte with its real size."""
    image = uploaded(app, data)
    assert image["mimeType"] == mime
    assert (image["width"], image["height"]) == size
    assert image["fileSize"] == len(data)
    assert image["fileHash"] == hashlib.sha256(data).hexdigest()
    assert (app.settings.storage_root / image["storageKey"]).read_bytes() == data
    assert stored(app, image["id"], "mime_type") == mime


@pytest.mark.parametrize(
    ("data", "name", "content_type", "mime"),
    [
        (jpeg_bytes(), "x.png", "image/png", "image/jpeg"),
        (png_bytes(), "photo.jpg", "image/jpeg", "image/png"),
        (webp_bytes(), "file.bin", "application/octet-stream", "image/webp"),
    ],
)
def test_upload_type_comes_from_the_bytes(
    app: Running, data: bytes, name: str, content_type: str, mime: str
) -> None:
    """Neither the filename nor the part's content type decides the MIME type."""
    image = get_data(upload(app, data, name=name, content_type=content_type), 201)
    assert image["mimeType"] == mime
    assert stored(app, image["id"], "mime_type") == mime


@pytest.mark.parametrize(
    ("data", "content_type", "status", "code"),
    [
        (
            b"hello, this is plain text and not an image\n",
            "image/png",
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (gif_bytes(), "image/gif", 415, "UNSUPPORTED_MEDIA_TYPE"),
        (gif_bytes(), "image/png", 415, "UNSUPPORTED_MEDIA_TYPE"),
        (b"", "image/png", 400, "INVALID_FILE"),
        (truncated_png(), "image/png", 400, "INVALID_FILE"),
        (corrupt_jpeg(), "image/jpeg", 400, "INVALID_FILE"),
        (jpeg_bytes(64, 64)[:300], "image/jpeg", 400, "INVALID_FILE"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 garbage-garbage", "image/webp", 400, "INVALID_FILE"),
        (b"\x89PNG\r\n\x1a\n", "image/png", 400, "INVALID_FILE"),
        (declared_png(40_000_001, 1), "image/png", 400, "INVALID_FILE"),
        (declared_png(6325, 6325), "image/png", 400, "INVALID_FILE"),
    ],
    ids=[
        "text-as-png",
        "gif",
        "gif-as-png",
        "empty",
        "truncated-png",
        "corrupt-jpeg",
        "truncated-jpeg",
        "corrupt-webp",
        "png-signature-only",
        "40mp-plus-one",
        "just-over-40mp",
    ],
)
def test_upload_rejects_bad_files_and_stores_nothing(
    app: Running, data: bytes, content_type: str, status: int, code: str
) -> None:
    """Undecodable, unsupported, empty and oversized-in-pixels files are refused."""
    before = snapshot(app)
    response = upload(app, data, content_type=content_type, **flow_fields())
    error = assert_error(response, status, code)
    if code == "INVALID_FILE":
        assert error["details"] == {"field": "file"}
    assert_nothing_stored(app, before)


@pytest.mark.parametrize("side", [20_000, 100_000])
def test_decompression_bomb_is_refused_quickly(app: Running, side: int) -> None:
    """A tiny PNG declaring billions of bytes of pixels is refused without decoding it."""
    before = snapshot(app)
    data = declared_png(side, side)
    assert len(data) < 200
    started = time.monotonic()
    response = upload(app, data, **flow_fields())
    elapsed = time.monotonic() - started
    assert_error(response, 400, "INVALID_FILE")
    assert elapsed < 2.0
    assert_nothing_stored(app, before)


def test_image_of_exactly_40_megapixels_is_accepted(app: Running) -> None:
    """The pixel limit is inclusive: 8000×5000 decodes and is stored."""
    image = uploaded(app, bilevel_png(8000, 5000))
    assert (image["width"], image["height"]) == (8000, 5000)


def test_upload_without_a_file_field_is_invalid(app: Running) -> None:
    """Multipart bodies with only text fields, or the image under another name, are 400."""
    before = snapshot(app)
    text_parts = {name: (None, value) for name, value in flow_fields().items()}
    only_text = app.project("POST", UPLOAD, files=text_parts)
    error = assert_error(only_text, 400, "INVALID_FILE")
    assert error["details"] == {"field": "file"}
    other_name = app.project("POST", UPLOAD, files={"image": ("a.png", png_bytes(), "image/png")})
    assert_error(other_name, 400, "INVALID_FILE")
    assert_nothing_stored(app, before)


def test_upload_that_is_not_multipart_is_invalid(app: Running) -> None:
    """JSON, raw bytes and url-encoded forms are not uploads."""
    before = snapshot(app)
    assert_error(app.project("POST", UPLOAD, json={"file": "aGVsbG8="}), 400, "INVALID_FILE")
    raw = app.project("POST", UPLOAD, content=png_bytes(), headers={"Content-Type": "image/png"})
    assert_error(raw, 400, "INVALID_FILE")
    assert_error(app.project("POST", UPLOAD, data={"alias": "@x"}), 400, "INVALID_FILE")
    assert_error(app.project("POST", UPLOAD), 400, "INVALID_FILE")
    assert_nothing_stored(app, before)


def test_upload_size_limit_is_five_megabytes(start_server: Callable[..., Running]) -> None:
    """Exactly 5 MB is accepted; one byte more is 413, as is a 6 MB file. (Stored as
    sent: cleaning would drop the padding, API.md §14.)"""
    app = start_server(uploads__strip_metadata=False)
    limit = 5 * MB
    exact = uploaded(app, padded_png(limit))
    assert exact["fileSize"] == limit
    before = snapshot(app)
    over = upload(app, padded_png(limit + 1), **flow_fields())
    assert_error(over, 413, "FILE_TOO_LARGE")
    assert_error(upload(app, padded_png(6 * MB), **flow_fields()), 413, "FILE_TOO_LARGE")
    assert_nothing_stored(app, before)


def test_configured_upload_limit_applies(start_server: Callable[..., Running]) -> None:
    """``server.max_upload_mb`` lowers the limit: a ~66 KB noise PNG is then too large."""
    running = start_server(server__max_upload_mb=0.05)
    noise = noise_png(150, 150)
    assert 0.05 * MB < len(noise) < 0.1 * MB
    small = uploaded(running, png_bytes(4, 4))
    assert small["fileSize"] < 0.05 * MB
    before = snapshot(running)
    assert_error(upload(running, noise, **flow_fields()), 413, "FILE_TOO_LARGE")
    assert_nothing_stored(running, before)


# ------------------------------------------------------------- upload: flowId


def test_absent_flow_id_announces_a_flow_without_a_row(app: Running) -> None:
    """No flowId field: a new flow id is returned and filters the list, but no row exists."""
    image = uploaded(app)
    flow_id = image["flowId"]
    assert str(uuid.UUID(flow_id)) == flow_id
    assert flow_row(app, flow_id) is None
    listed = app.project("GET", IMAGES, params={"flowId": flow_id})
    assert listed_ids(listed) == [image["id"]]
    other = uploaded(app)
    assert other["flowId"] != flow_id


def test_announced_flow_id_is_created_when_used_again(app: Running) -> None:
    """A later upload with the announced id creates the flow row, adopting both images."""
    first = uploaded(app)
    flow_id = first["flowId"]
    second = uploaded(app, flowId=flow_id)
    assert second["flowId"] == flow_id
    row = flow_row(app, flow_id)
    assert row is not None
    assert row["project_id"] == first["projectId"]
    listed = app.project("GET", IMAGES, params={"flowId": flow_id})
    assert listed_ids(listed) == [second["id"], first["id"]]


def test_null_flow_id_means_no_flow(app: Running) -> None:
    before = snapshot(app)
    image = uploaded(app, flowId="null")
    assert image["flowId"] is None
    assert stored(app, image["id"], "flow_id") is None
    assert snapshot(app).flows == before.flows


def test_uuid_flow_id_is_used_and_its_row_created(app: Running) -> None:
    flow_id = str(uuid.uuid4())
    image = uploaded(app, flowId=flow_id)
    assert image["flowId"] == flow_id
    row = flow_row(app, flow_id)
    assert row is not None
    assert row["project_id"] == image["projectId"]
    again = uploaded(app, flowId=flow_id)
    assert again["flowId"] == flow_id
    with sqlite(app.settings.database_path) as db:
        assert db.execute("SELECT COUNT(*) FROM flows").fetchone()[0] == 1


def test_uppercase_flow_id_is_normalised(app: Running) -> None:
    flow_id = str(uuid.uuid4())
    image = uploaded(app, flowId=flow_id.upper())
    assert image["flowId"] == flow_id
    assert flow_row(app, flow_id) is not None


@pytest.mark.parametrize(
    "flow_id",
    [
        "abc",
        "12345",
        "undefined",
        "00000000-0000-0000-0000-00000000000g",
        "{" + "1b4e28ba-2fa1-41d2-883f-0016d3cca427" + "}",
        "1b4e28ba2fa141d2883f0016d3cca427",
        "x" * 65,
    ],
)
def test_invalid_flow_id_is_rejected(app: Running, flow_id: str) -> None:
    before = snapshot(app)
    error = assert_error(upload(app, flowId=flow_id), 400, "VALIDATION_ERROR")
    assert error["details"] == {"field": "flowId"}
    assert "flowId" in str(error["message"])
    assert_nothing_stored(app, before)


def test_flow_alias_without_flow_id_creates_the_flow_at_once(app: Running) -> None:
    image = uploaded(app, flowAlias="@bg")
    flow_id = image["flowId"]
    assert str(uuid.UUID(flow_id)) == flow_id
    row = flow_row(app, flow_id)
    assert row is not None
    assert row["project_id"] == image["projectId"]
    assert flow_aliases(app) == {(flow_id, "@bg", image["id"])}
    assert image["alias"] is None


def test_flow_alias_with_explicit_flow_replaces_the_entry(app: Running) -> None:
    """Re-using a flow alias in the same flow points it at the newer image."""
    flow_id = str(uuid.uuid4())
    first = uploaded(app, flowId=flow_id, flowAlias="@bg")
    second = uploaded(app, flowId=flow_id, flowAlias="@bg")
    assert flow_aliases(app) == {(flow_id, "@bg", second["id"])}
    assert image_row(app, first["id"]) is not None


def test_flow_alias_with_null_flow_is_rejected(app: Running) -> None:
    before = snapshot(app)
    error = assert_error(upload(app, flowId="null", flowAlias="@bg"), 400, "VALIDATION_ERROR")
    assert error["details"] == {"field": "flowAlias"}
    assert_nothing_stored(app, before)


# -------------------------------------------------------------- upload: alias

BAD_ALIASES = ["hero", "@", "@has space", "@" + "a" * 50, "@bad!", "@héro", "@@x", ""]
BAD_ALIAS_IDS = ["no-at", "at-only", "space", "too-long", "bang", "non-ascii", "double-at", "empty"]
RESERVED = ["@last", "@first", "@upload"]


def test_upload_alias_sets_the_project_alias(app: Running) -> None:
    image = uploaded(app, alias="@hero")
    assert image["alias"] == "@hero"
    assert stored(app, image["id"], "alias") == "@hero"
    assert get_data(app.project("GET", f"{IMAGES}/@hero"))["id"] == image["id"]


def test_upload_alias_of_max_length_is_accepted(app: Running) -> None:
    alias = "@" + "a" * 49
    assert uploaded(app, alias=alias)["alias"] == alias


def test_upload_alias_moves_from_its_holder(app: Running) -> None:
    old = uploaded(app, alias="@hero")
    new = uploaded(app, alias="@hero")
    assert new["alias"] == "@hero"
    assert get_data(app.project("GET", f"{IMAGES}/{old['id']}"))["alias"] is None
    assert stored(app, old["id"], "alias") is None


@pytest.mark.parametrize("field", ["alias", "flowAlias"])
@pytest.mark.parametrize("value", [a for a in BAD_ALIASES if a], ids=BAD_ALIAS_IDS[:-1])
def test_upload_rejects_malformed_aliases(app: Running, field: str, value: str) -> None:
    before = snapshot(app)
    error = assert_error(upload(app, **{field: value}), 400, "INVALID_ALIAS_FORMAT")
    assert error["details"] == {"field": field}
    assert_nothing_stored(app, before)


@pytest.mark.parametrize("field", ["alias", "flowAlias"])
@pytest.mark.parametrize("value", RESERVED)
def test_upload_rejects_reserved_aliases(app: Running, field: str, value: str) -> None:
    before = snapshot(app)
    error = assert_error(upload(app, **{field: value}), 400, "RESERVED_ALIAS")
    assert error["details"] == {"field": field}
    assert_nothing_stored(app, before)


@pytest.mark.parametrize("field", ["alias", "flowAlias"])
def test_upload_rejects_very_long_alias_as_bad_format(app: Running, field: str) -> None:
    """An alias of 70 characters fails the alias format like one of 51."""
    before = snapshot(app)
    error = assert_error(upload(app, **{field: "@" + "a" * 69}), 400, "INVALID_ALIAS_FORMAT")
    assert error["details"] == {"field": field}
    assert_nothing_stored(app, before)


# --------------------------------------------------------------- upload: meta


def test_upload_meta_is_stored(app: Running) -> None:
    meta = {"caption": "a red square", "tags": ["a", "b"], "nested": {"n": 1.5, "ok": True}}
    image = uploaded(app, meta=json.dumps(meta))
    assert image["meta"] == meta
    assert stored(app, image["id"], "meta") == meta
    assert get_data(app.project("GET", f"{IMAGES}/{image['id']}"))["meta"] == meta


def test_upload_empty_meta_is_an_empty_object(app: Running) -> None:
    assert uploaded(app, meta="")["meta"] == {}


@pytest.mark.parametrize(
    "meta",
    ["{not json", "[1, 2]", '"text"', "42", "true", '{"a": 1', json.dumps({"x": "y" * 17000})],
    ids=["broken", "array", "string", "number", "bool", "unclosed", "over-16kb"],
)
def test_upload_rejects_bad_meta(app: Running, meta: str) -> None:
    before = snapshot(app)
    error = assert_error(upload(app, meta=meta), 400, "VALIDATION_ERROR")
    assert error["details"] == {"field": "meta"}
    assert "meta" in str(error["message"])
    assert_nothing_stored(app, before)


def test_upload_rejects_deeply_nested_meta(app: Running) -> None:
    before = snapshot(app)
    error = assert_error(upload(app, meta="[" * 15000), 400, "VALIDATION_ERROR")
    assert error["details"] == {"field": "meta"}
    assert_nothing_stored(app, before)


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_upload_rejects_non_json_numbers_in_meta(app: Running, token: str) -> None:
    """``NaN`` and ``Infinity`` are not JSON; accepting them makes responses unparseable."""
    before = snapshot(app)
    error = assert_error(upload(app, meta=f'{{"score": {token}}}'), 400, "VALIDATION_ERROR")
    assert error["details"] == {"field": "meta"}
    assert_nothing_stored(app, before)


# ========================================================================= list


def test_list_is_newest_first_with_pagination(app: Running) -> None:
    ids = [uploaded(app, png_bytes(4, 4, (i, i, i)))["id"] for i in range(3)]
    body = app.project("GET", IMAGES).json()
    assert body["success"] is True
    assert [image["id"] for image in body["data"]] == ids[::-1]
    assert all(set(image) == IMAGE_FIELDS for image in body["data"])
    assert body["pagination"] == {"total": 3, "limit": 20, "offset": 0, "hasMore": False}

    first = app.project("GET", IMAGES, params={"limit": 2}).json()
    assert [image["id"] for image in first["data"]] == [ids[2], ids[1]]
    assert first["pagination"] == {"total": 3, "limit": 2, "offset": 0, "hasMore": True}
    rest = app.project("GET", IMAGES, params={"limit": 2, "offset": 2}).json()
    assert [image["id"] for image in rest["data"]] == [ids[0]]
    assert rest["pagination"] == {"total": 3, "limit": 2, "offset": 2, "hasMore": False}
    beyond = app.project("GET", IMAGES, params={"offset": 10}).json()
    assert beyond["data"] == []
    assert beyond["pagination"] == {"total": 3, "limit": 20, "offset": 10, "hasMore": False}


def test_empty_list(app: Running) -> None:
    body = app.project("GET", IMAGES).json()
    assert body == {
        "success": True,
        "data": [],
        "pagination": {"total": 0, "limit": 20, "offset": 0, "hasMore": False},
    }


@pytest.mark.parametrize(
    ("params", "limit", "offset"),
    [
        ({"limit": "0"}, 1, 0),
        ({"limit": "-7"}, 1, 0),
        ({"limit": "101"}, 100, 0),
        ({"limit": "100000"}, 100, 0),
        ({"offset": "-5"}, 20, 0),
        ({"limit": "", "offset": ""}, 20, 0),
        ({"limit": " 7 "}, 7, 0),
    ],
)
def test_list_clamps_limit_and_offset(
    app: Running, params: dict[str, str], limit: int, offset: int
) -> None:
    uploaded(app)
    uploaded(app)
    body = app.project("GET", IMAGES, params=params).json()
    assert body["pagination"]["limit"] == limit
    assert body["pagination"]["offset"] == offset
    assert len(body["data"]) == min(limit, 2)
    assert body["pagination"]["hasMore"] is (limit < 2)


@pytest.mark.parametrize(
    ("params", "field"),
    [({"limit": "ten"}, "limit"), ({"limit": "1.5"}, "limit"), ({"offset": "x"}, "offset")],
)
def test_list_rejects_non_numeric_pagination(
    app: Running, params: dict[str, str], field: str
) -> None:
    error = assert_error(app.project("GET", IMAGES, params=params), 400, "VALIDATION_ERROR")
    assert error["details"] == {"field": field}


def test_list_filters_by_flow_id(app: Running) -> None:
    flow_a, flow_b = str(uuid.uuid4()), str(uuid.uuid4())
    a1 = uploaded(app, flowId=flow_a)
    b1 = uploaded(app, flowId=flow_b)
    a2 = uploaded(app, flowId=flow_a)
    uploaded(app, flowId="null")
    response = app.project("GET", IMAGES, params={"flowId": flow_a})
    assert listed_ids(response) == [a2["id"], a1["id"]]
    assert response.json()["pagination"]["total"] == 2
    assert listed_ids(app.project("GET", IMAGES, params={"flowId": flow_b})) == [b1["id"]]
    unknown = app.project("GET", IMAGES, params={"flowId": str(uuid.uuid4())})
    assert listed_ids(unknown) == []
    assert unknown.json()["pagination"]["total"] == 0
    assert len(listed_ids(app.project("GET", IMAGES, params={"flowId": ""}))) == 4


@pytest.mark.parametrize("flow_id", ["abc", "null", "1234-5678"])
def test_list_rejects_invalid_flow_id_filter(app: Running, flow_id: str) -> None:
    error = assert_error(
        app.project("GET", IMAGES, params={"flowId": flow_id}), 400, "VALIDATION_ERROR"
    )
    assert error["details"] == {"field": "flowId"}


def test_list_filters_by_source(app: Running) -> None:
    up = uploaded(app)
    generated = insert_generated(app, up["projectId"], None, now_us())
    assert listed_ids(app.project("GET", IMAGES)) == [generated, up["id"]]
    assert listed_ids(app.project("GET", IMAGES, params={"source": "uploaded"})) == [up["id"]]
    gen = app.project("GET", IMAGES, params={"source": "generated"})
    assert listed_ids(gen) == [generated]
    assert gen.json()["data"][0]["source"] == "generated"
    assert gen.json()["pagination"]["total"] == 1


@pytest.mark.parametrize("source", ["upload", "GENERATED", "all", "live"])
def test_list_rejects_unknown_source(app: Running, source: str) -> None:
    error = assert_error(
        app.project("GET", IMAGES, params={"source": source}), 400, "VALIDATION_ERROR"
    )
    assert error["details"] == {"field": "source"}


def test_list_filters_by_alias_exactly(app: Running) -> None:
    hero = uploaded(app, alias="@hero")
    uploaded(app, alias="@hero2")
    uploaded(app, alias="@Hero")
    uploaded(app)
    response = app.project("GET", IMAGES, params={"alias": "@hero"})
    assert listed_ids(response) == [hero["id"]]
    assert response.json()["pagination"]["total"] == 1
    assert listed_ids(app.project("GET", IMAGES, params={"alias": "@her"})) == []
    assert listed_ids(app.project("GET", IMAGES, params={"alias": "@nobody"})) == []


@pytest.mark.parametrize("alias", ["hero", "@", "@bad!", "@" + "a" * 50, "@a b"])
def test_list_rejects_malformed_alias_filter(app: Running, alias: str) -> None:
    error = assert_error(
        app.project("GET", IMAGES, params={"alias": alias}), 400, "INVALID_ALIAS_FORMAT"
    )
    assert error["details"] == {"field": "alias"}


# ========================================================================== get


def test_get_by_id_and_by_alias(app: Running) -> None:
    image = uploaded(app, alias="@hero", meta='{"k": "v"}')
    by_id = get_data(app.project("GET", f"{IMAGES}/{image['id']}"))
    assert by_id == image
    by_alias = get_data(app.project("GET", f"{IMAGES}/@hero"))
    assert by_alias == image


def test_flow_alias_shadows_project_alias_inside_its_flow(app: Running) -> None:
    flow_id = str(uuid.uuid4())
    project_hero = uploaded(app, alias="@hero")
    flow_hero = uploaded(app, flowId=flow_id, flowAlias="@hero")
    outside = get_data(app.project("GET", f"{IMAGES}/@hero"))
    assert outside["id"] == project_hero["id"]
    inside = get_data(app.project("GET", f"{IMAGES}/@hero", params={"flowId": flow_id}))
    assert inside["id"] == flow_hero["id"]
    other_flow = str(uuid.uuid4())
    elsewhere = get_data(app.project("GET", f"{IMAGES}/@hero", params={"flowId": other_flow}))
    assert elsewhere["id"] == project_hero["id"]
    only_in_flow = assert_error(app.project("GET", f"{IMAGES}/@bg"), 404, "ALIAS_NOT_FOUND")
    assert only_in_flow["message"]


def test_flow_alias_resolves_only_with_its_flow(app: Running) -> None:
    flow_id = str(uuid.uuid4())
    image = uploaded(app, flowId=flow_id, flowAlias="@bg")
    assert_error(app.project("GET", f"{IMAGES}/@bg"), 404, "ALIAS_NOT_FOUND")
    found = get_data(app.project("GET", f"{IMAGES}/@bg", params={"flowId": flow_id}))
    assert found["id"] == image["id"]


def test_technical_aliases_in_a_flow(app: Running) -> None:
    """@first/@last pick the oldest/newest generated image of the flow by creation time;
    @upload the newest uploaded one."""
    flow_id = str(uuid.uuid4())
    other_flow = str(uuid.uuid4())
    up1 = uploaded(app, flowId=flow_id)
    up2 = uploaded(app, flowId=flow_id)
    project = up1["projectId"]
    base = now_us() - 60_000_000
    # inserted out of order, so only created_at can give the right answer
    middle = insert_generated(app, project, flow_id, base + 2_000_000)
    newest = insert_generated(app, project, flow_id, base + 3_000_000)
    oldest = insert_generated(app, project, flow_id, base + 1_000_000)
    insert_generated(app, project, other_flow, base)
    insert_generated(app, project, other_flow, now_us())
    insert_generated(app, project, None, now_us())
    uploaded(app, flowId=other_flow)
    uploaded(app, flowId="null")

    def resolve(alias: str, flow: str = flow_id) -> str:
        response = app.project("GET", f"{IMAGES}/{alias}", params={"flowId": flow})
        return str(get_data(response)["id"])

    assert resolve("@first") == oldest
    assert resolve("@last") == newest
    assert resolve("@upload") == up2["id"]
    assert middle not in {resolve("@first"), resolve("@last")}
    up3 = uploaded(app, flowId=flow_id)
    assert resolve("@upload") == up3["id"]
    assert resolve("@last") == newest
    assert resolve("@upload", other_flow) != up3["id"]


def test_technical_aliases_ignore_other_projects(app: Running) -> None:
    flow_id = str(uuid.uuid4())
    mine = uploaded(app, flowId=flow_id)
    key_b = second_project_key(app)
    assert upload(app, key=key_b).status_code == 201
    resolved = app.project("GET", f"{IMAGES}/@upload", params={"flowId": flow_id})
    assert get_data(resolved)["id"] == mine["id"]
    assert_error(
        as_key(app, key_b, "GET", f"{IMAGES}/@upload", params={"flowId": flow_id}),
        404,
        "ALIAS_NOT_FOUND",
    )


@pytest.mark.parametrize("alias", RESERVED)
def test_technical_alias_needs_a_flow_context(app: Running, alias: str) -> None:
    uploaded(app)
    error = assert_error(app.project("GET", f"{IMAGES}/{alias}"), 400, "FLOW_CONTEXT_REQUIRED")
    assert error["details"] == {"field": "flowId"}


@pytest.mark.parametrize("alias", RESERVED)
def test_technical_alias_with_nothing_to_name_is_not_found(app: Running, alias: str) -> None:
    """A flow with no generated (or no uploaded) image has no such alias."""
    flow_id = str(uuid.uuid4())
    if alias == "@upload":
        insert_generated(app, project_id(app), flow_id, now_us())
    else:
        uploaded(app, flowId=flow_id)
    response = app.project("GET", f"{IMAGES}/{alias}", params={"flowId": flow_id})
    assert_error(response, 404, "ALIAS_NOT_FOUND")


def test_unknown_alias_is_not_found(app: Running) -> None:
    uploaded(app, alias="@hero")
    assert_error(app.project("GET", f"{IMAGES}/@villain"), 404, "ALIAS_NOT_FOUND")
    flow_ctx = {"flowId": str(uuid.uuid4())}
    assert_error(app.project("GET", f"{IMAGES}/@villain", params=flow_ctx), 404, "ALIAS_NOT_FOUND")


@pytest.mark.parametrize(
    "ref",
    [
        "1b4e28ba-2fa1-41d2-883f-0016d3cca427",
        "not-an-id",
        "12345",
        "1b4e28ba2fa141d2883f0016d3cca427",
        "%2e%2e",
    ],
)
def test_unknown_or_garbage_id_is_not_found(app: Running, ref: str) -> None:
    uploaded(app)
    assert_error(app.project("GET", f"{IMAGES}/{ref}"), 404, "IMAGE_NOT_FOUND")


def test_get_rejects_invalid_flow_context(app: Running) -> None:
    uploaded(app, alias="@hero")
    response = app.project("GET", f"{IMAGES}/@hero", params={"flowId": "nope"})
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["details"] == {"field": "flowId"}


# ======================================================================= update


def test_update_sets_focal_point_and_meta(app: Running) -> None:
    image = uploaded(app, meta='{"old": true}')
    before = image_row(app, image["id"])
    assert before is not None
    body = {"focalPoint": {"x": 0.25, "y": 0.75}, "meta": {"caption": "new"}}
    updated = get_data(app.project("PUT", f"{IMAGES}/{image['id']}", json=body))
    assert updated["focalPoint"] == {"x": 0.25, "y": 0.75}
    assert updated["meta"] == {"caption": "new"}
    assert updated["id"] == image["id"]
    assert updated["createdAt"] == image["createdAt"]
    assert ISO_RE.match(updated["updatedAt"])
    row = image_row(app, image["id"])
    assert row is not None
    assert (row["focal_x"], row["focal_y"]) == (0.25, 0.75)
    assert json.loads(row["meta"]) == {"caption": "new"}
    assert row["updated_at"] > before["updated_at"]
    assert get_data(app.project("GET", f"{IMAGES}/{image['id']}")) == updated


@pytest.mark.parametrize("point", [{"x": 0, "y": 1}, {"x": 1.0, "y": 0.0}, {"x": 0.5, "y": 0.5}])
def test_update_accepts_focal_point_bounds(app: Running, point: dict[str, float]) -> None:
    image = uploaded(app)
    updated = get_data(app.project("PUT", f"{IMAGES}/{image['id']}", json={"focalPoint": point}))
    assert updated["focalPoint"] == point


def test_update_null_focal_point_clears_it(app: Running) -> None:
    image = uploaded(app)
    path = f"{IMAGES}/{image['id']}"
    get_data(app.project("PUT", path, json={"focalPoint": {"x": 0.1, "y": 0.2}}))
    cleared = get_data(app.project("PUT", path, json={"focalPoint": None}))
    assert cleared["focalPoint"] is None
    row = image_row(app, image["id"])
    assert row is not None
    assert (row["focal_x"], row["focal_y"]) == (None, None)


def test_update_without_focal_point_keeps_it(app: Running) -> None:
    image = uploaded(app)
    path = f"{IMAGES}/{image['id']}"
    get_data(app.project("PUT", path, json={"focalPoint": {"x": 0.1, "y": 0.2}}))
    kept = get_data(app.project("PUT", path, json={"meta": {"a": 1}}))
    assert kept["focalPoint"] == {"x": 0.1, "y": 0.2}
    assert kept["meta"] == {"a": 1}


@pytest.mark.parametrize(
    "point",
    [
        {"x": 1.5, "y": 0.5},
        {"x": 0.5, "y": -0.01},
        {"x": -1, "y": 0},
        {"x": 0.5},
        {"y": 0.5},
        {},
        {"x": "0.5", "y": "0.5"},
        {"x": True, "y": False},
        {"x": None, "y": 0.5},
        [0.5, 0.5],
        "center",
        0.5,
        True,
    ],
    ids=[
        "x-over",
        "y-under",
        "x-negative",
        "missing-y",
        "missing-x",
        "empty",
        "strings",
        "booleans",
        "x-null",
        "list",
        "string",
        "number",
        "bool",
    ],
)
def test_update_rejects_bad_focal_points(app: Running, point: object) -> None:
    image = uploaded(app, meta='{"keep": 1}')
    before = image_row(app, image["id"])
    body = {"focalPoint": point, "meta": {"changed": True}}
    response = app.project("PUT", f"{IMAGES}/{image['id']}", json=body)
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["details"] == {"field": "focalPoint"}
    assert "focalPoint" in str(error["message"])
    assert image_row(app, image["id"]) == before


@pytest.mark.parametrize("token", ["NaN", "Infinity"])
def test_update_rejects_non_finite_focal_point(app: Running, token: str) -> None:
    image = uploaded(app)
    body = f'{{"focalPoint": {{"x": {token}, "y": 0.5}}}}'.encode()
    response = app.project("PUT", f"{IMAGES}/{image['id']}", content=body)
    error = assert_error(response, 400, "VALIDATION_ERROR")
    # NaN and Infinity are not JSON, so the body itself is what is invalid
    assert error["details"] == {"field": "body"}


def test_update_replaces_meta(app: Running) -> None:
    image = uploaded(app, meta='{"a": 1, "b": 2}')
    path = f"{IMAGES}/{image['id']}"
    replaced = get_data(app.project("PUT", path, json={"meta": {"c": 3}}))
    assert replaced["meta"] == {"c": 3}
    assert stored(app, image["id"], "meta") == {"c": 3}
    emptied = get_data(app.project("PUT", path, json={"meta": None}))
    assert emptied["meta"] == {}


@pytest.mark.parametrize("meta", [[1, 2], "text", 5, True])
def test_update_rejects_meta_that_is_not_an_object(app: Running, meta: object) -> None:
    image = uploaded(app, meta='{"a": 1}')
    response = app.project("PUT", f"{IMAGES}/{image['id']}", json={"meta": meta})
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["details"] == {"field": "meta"}
    assert stored(app, image["id"], "meta") == {"a": 1}


def test_update_ignores_alias_field(app: Running) -> None:
    image = uploaded(app, alias="@hero")
    body = {"alias": "@other", "meta": {"x": 1}}
    updated = get_data(app.project("PUT", f"{IMAGES}/{image['id']}", json=body))
    assert updated["alias"] == "@hero"
    assert updated["meta"] == {"x": 1}
    assert stored(app, image["id"], "alias") == "@hero"
    assert_error(app.project("GET", f"{IMAGES}/@other"), 404, "ALIAS_NOT_FOUND")
    cleared = get_data(app.project("PUT", f"{IMAGES}/{image['id']}", json={"alias": None}))
    assert cleared["alias"] == "@hero"


def test_update_by_alias_and_technical_alias(app: Running) -> None:
    flow_id = str(uuid.uuid4())
    hero = uploaded(app, alias="@hero")
    latest = uploaded(app, flowId=flow_id)
    by_alias = app.project("PUT", f"{IMAGES}/@hero", json={"meta": {"via": "alias"}})
    assert get_data(by_alias)["id"] == hero["id"]
    by_technical = app.project(
        "PUT", f"{IMAGES}/@upload", params={"flowId": flow_id}, json={"meta": {"via": "tech"}}
    )
    assert get_data(by_technical)["id"] == latest["id"]
    assert stored(app, latest["id"], "meta") == {"via": "tech"}


@pytest.mark.parametrize("payload", [b"{not json", b"[1, 2]", b'"text"', b"42"])
def test_update_rejects_bodies_that_are_not_objects(app: Running, payload: bytes) -> None:
    image = uploaded(app)
    response = app.project("PUT", f"{IMAGES}/{image['id']}", content=payload)
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["details"] == {"field": "body"}


def test_update_rejects_deeply_nested_body(app: Running) -> None:
    image = uploaded(app)
    payload = b'{"meta": ' + b"[" * 15000 + b"}"
    response = app.project("PUT", f"{IMAGES}/{image['id']}", content=payload)
    assert_error(response, 400, "VALIDATION_ERROR")


def test_update_rejects_non_json_numbers_in_meta(app: Running) -> None:
    image = uploaded(app)
    payload = b'{"meta": {"score": NaN}}'
    response = app.project("PUT", f"{IMAGES}/{image['id']}", content=payload)
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["details"] == {"field": "body"}


def test_update_unknown_image_is_not_found(app: Running) -> None:
    path = f"{IMAGES}/{uuid.uuid4()}"
    assert_error(app.project("PUT", path, json={"meta": {}}), 404, "IMAGE_NOT_FOUND")
    assert_error(app.project("PUT", f"{IMAGES}/@none", json={}), 404, "ALIAS_NOT_FOUND")


# ================================================================== alias route


def alias_path(image: dict[str, Any]) -> str:
    return f"{IMAGES}/{image['id']}/alias"


def test_alias_route_assigns(app: Running) -> None:
    image = uploaded(app)
    assigned = get_data(app.project("PUT", alias_path(image), json={"alias": "@hero"}))
    assert assigned["alias"] == "@hero"
    assert set(assigned) == IMAGE_FIELDS
    assert stored(app, image["id"], "alias") == "@hero"
    assert get_data(app.project("GET", f"{IMAGES}/@hero"))["id"] == image["id"]
    same = get_data(app.project("PUT", alias_path(image), json={"alias": "@hero"}))
    assert same["alias"] == "@hero"


def test_alias_route_moves_an_alias_held_by_another_image(app: Running) -> None:
    holder = uploaded(app, alias="@hero")
    taker = uploaded(app)
    moved = get_data(app.project("PUT", alias_path(taker), json={"alias": "@hero"}))
    assert moved["alias"] == "@hero"
    assert get_data(app.project("GET", f"{IMAGES}/{holder['id']}"))["alias"] is None
    assert get_data(app.project("GET", f"{IMAGES}/@hero"))["id"] == taker["id"]
    with sqlite(app.settings.database_path) as db:
        rows = dict(db.execute("SELECT id, alias FROM images").fetchall())
    assert rows == {holder["id"]: None, taker["id"]: "@hero"}


def test_alias_route_replaces_the_images_own_alias(app: Running) -> None:
    image = uploaded(app, alias="@old")
    renamed = get_data(app.project("PUT", alias_path(image), json={"alias": "@new"}))
    assert renamed["alias"] == "@new"
    assert_error(app.project("GET", f"{IMAGES}/@old"), 404, "ALIAS_NOT_FOUND")


def test_alias_route_null_removes(app: Running) -> None:
    image = uploaded(app, alias="@hero")
    removed = get_data(app.project("PUT", alias_path(image), json={"alias": None}))
    assert removed["alias"] is None
    assert stored(app, image["id"], "alias") is None
    assert_error(app.project("GET", f"{IMAGES}/@hero"), 404, "ALIAS_NOT_FOUND")


def test_alias_route_by_alias_reference(app: Running) -> None:
    image = uploaded(app, alias="@hero")
    response = app.project("PUT", f"{IMAGES}/@hero/alias", json={"alias": "@star"})
    assert get_data(response)["id"] == image["id"]
    assert get_data(app.project("GET", f"{IMAGES}/@star"))["id"] == image["id"]


def test_alias_route_requires_the_alias_key(app: Running) -> None:
    image = uploaded(app, alias="@hero")
    error = assert_error(
        app.project("PUT", alias_path(image), json={"name": "@x"}), 400, "VALIDATION_ERROR"
    )
    assert error["details"] == {"field": "alias"}
    empty = assert_error(app.project("PUT", alias_path(image)), 400, "VALIDATION_ERROR")
    assert empty["details"] == {"field": "body"}
    assert stored(app, image["id"], "alias") == "@hero"


@pytest.mark.parametrize("value", [5, True, ["@x"], {"a": "@x"}])
def test_alias_route_rejects_non_string_alias(app: Running, value: object) -> None:
    image = uploaded(app, alias="@hero")
    error = assert_error(
        app.project("PUT", alias_path(image), json={"alias": value}), 400, "VALIDATION_ERROR"
    )
    assert error["details"] == {"field": "alias"}
    assert stored(app, image["id"], "alias") == "@hero"


@pytest.mark.parametrize("value", RESERVED)
def test_alias_route_rejects_reserved(app: Running, value: str) -> None:
    image = uploaded(app, alias="@hero")
    response = app.project("PUT", alias_path(image), json={"alias": value})
    error = assert_error(response, 400, "RESERVED_ALIAS")
    assert error["details"] == {"field": "alias"}
    assert stored(app, image["id"], "alias") == "@hero"


@pytest.mark.parametrize("value", BAD_ALIASES, ids=BAD_ALIAS_IDS)
def test_alias_route_rejects_malformed(app: Running, value: str) -> None:
    image = uploaded(app, alias="@hero")
    response = app.project("PUT", alias_path(image), json={"alias": value})
    error = assert_error(response, 400, "INVALID_ALIAS_FORMAT")
    assert error["details"] == {"field": "alias"}
    assert stored(app, image["id"], "alias") == "@hero"


def test_alias_route_rejects_very_long_alias_as_bad_format(app: Running) -> None:
    image = uploaded(app)
    response = app.project("PUT", alias_path(image), json={"alias": "@" + "a" * 69})
    assert_error(response, 400, "INVALID_ALIAS_FORMAT")


def test_alias_route_unknown_image_is_not_found(app: Running) -> None:
    response = app.project("PUT", f"{IMAGES}/{uuid.uuid4()}/alias", json={"alias": "@x"})
    assert_error(response, 404, "IMAGE_NOT_FOUND")


# ======================================================================= delete


def test_delete_removes_row_and_file(app: Running) -> None:
    image = uploaded(app)
    keep = uploaded(app)
    stored = app.settings.storage_root / image["storageKey"]
    assert stored.is_file()
    response = app.project("DELETE", f"{IMAGES}/{image['id']}")
    assert response.status_code == 200
    assert response.json() == {"success": True, "data": {"id": image["id"]}}
    assert image_row(app, image["id"]) is None
    assert not stored.exists()
    assert image_row(app, keep["id"]) is not None
    assert (app.settings.storage_root / keep["storageKey"]).is_file()
    assert_error(app.project("GET", f"{IMAGES}/{image['id']}"), 404, "IMAGE_NOT_FOUND")
    assert listed_ids(app.project("GET", IMAGES)) == [keep["id"]]
    again = app.project("DELETE", f"{IMAGES}/{image['id']}")
    assert_error(again, 404, "IMAGE_NOT_FOUND")


def test_delete_by_alias(app: Running) -> None:
    image = uploaded(app, alias="@hero")
    response = app.project("DELETE", f"{IMAGES}/@hero")
    assert get_data(response) == {"id": image["id"]}
    assert image_row(app, image["id"]) is None
    assert_error(app.project("DELETE", f"{IMAGES}/@hero"), 404, "ALIAS_NOT_FOUND")
    fresh = uploaded(app, alias="@hero")
    assert fresh["alias"] == "@hero"


def test_delete_cascades_to_every_reference(app: Running) -> None:
    """Flow aliases, generation references and live cache entries go; generations that
    made the image keep their row with a null output."""
    flow_id = str(uuid.uuid4())
    image = uploaded(app, flowId=flow_id, flowAlias="@bg")
    other = uploaded(app, flowId=flow_id, flowAlias="@fg")
    project = image["projectId"]
    gen_made, gen_refs = str(uuid.uuid4()), str(uuid.uuid4())
    scope_id, entry_id = str(uuid.uuid4()), str(uuid.uuid4())
    ts = now_us()
    with sqlite(app.settings.database_path) as db:
        for gen_id, output in ((gen_made, image["id"]), (gen_refs, other["id"])):
            db.execute(
                "INSERT INTO generations (id, project_id, flow_id, prompt, user_prompt,"
                " aspect_ratio, status, output_image_id, created_at, updated_at)"
                " VALUES (?, ?, ?, 'a fox', 'a fox', '1:1', 'success', ?, ?, ?)",
                (gen_id, project, flow_id, output, ts, ts),
            )
        db.executemany(
            "INSERT INTO generation_references (generation_id, position, image_id, alias)"
            " VALUES (?, ?, ?, ?)",
            [(gen_refs, 0, image["id"], "@bg"), (gen_refs, 1, other["id"], None)],
        )
        db.execute(
            "INSERT INTO live_scopes (id, project_id, slug, created_at, updated_at)"
            " VALUES (?, ?, 'site', ?, ?)",
            (scope_id, project, ts, ts),
        )
        db.execute(
            "INSERT INTO live_cache_entries (id, project_id, scope_id, cache_key, image_id,"
            " prompt, aspect_ratio, auto_enhance, template, created_at, updated_at)"
            " VALUES (?, ?, ?, 'k1', ?, 'a fox', '16:9', 1, 'general', ?, ?)",
            (entry_id, project, scope_id, image["id"], ts, ts),
        )
        db.commit()

    assert get_data(app.project("DELETE", f"{IMAGES}/{image['id']}")) == {"id": image["id"]}

    assert flow_aliases(app) == {(flow_id, "@fg", other["id"])}
    with sqlite(app.settings.database_path) as db:
        outputs = dict(db.execute("SELECT id, output_image_id FROM generations").fetchall())
        refs = db.execute(
            "SELECT generation_id, position, image_id FROM generation_references"
        ).fetchall()
        entries = db.execute("SELECT COUNT(*) FROM live_cache_entries").fetchone()[0]
    assert outputs == {gen_made: None, gen_refs: other["id"]}
    assert [tuple(r) for r in refs] == [(gen_refs, 1, other["id"])]
    assert entries == 0
    assert flow_row(app, flow_id) is not None
    in_flow = app.project("GET", f"{IMAGES}/@bg", params={"flowId": flow_id})
    assert_error(in_flow, 404, "ALIAS_NOT_FOUND")


def test_delete_records_orphan_when_file_cannot_be_removed(app: Running) -> None:
    """If the file will not go, the row still goes and the key is kept for purge."""
    image = uploaded(app)
    stored = app.settings.storage_root / image["storageKey"]
    stored.unlink()
    stored.mkdir()
    (stored / "occupant").write_bytes(b"x")
    response = app.project("DELETE", f"{IMAGES}/{image['id']}")
    assert get_data(response) == {"id": image["id"]}
    assert image_row(app, image["id"]) is None
    with sqlite(app.settings.database_path) as db:
        orphans = db.execute("SELECT storage_key, error FROM orphan_files").fetchall()
    assert [r["storage_key"] for r in orphans] == [image["storageKey"]]
    assert orphans[0]["error"]
    assert stored.is_dir()
    assert_error(app.project("GET", f"{IMAGES}/{image['id']}"), 404, "IMAGE_NOT_FOUND")


def test_delete_unknown_is_not_found(app: Running) -> None:
    assert_error(app.project("DELETE", f"{IMAGES}/{uuid.uuid4()}"), 404, "IMAGE_NOT_FOUND")
    assert_error(app.project("DELETE", f"{IMAGES}/garbage"), 404, "IMAGE_NOT_FOUND")
    assert_error(app.project("DELETE", f"{IMAGES}/@nobody"), 404, "ALIAS_NOT_FOUND")
    assert_error(app.project("DELETE", f"{IMAGES}/@last"), 400, "FLOW_CONTEXT_REQUIRED")


# ============================================================ project isolation


@pytest.fixture
def two_projects(app: Running) -> tuple[Running, str]:
    """The default project's appliance and a project key of a second project."""
    return app, second_project_key(app)


def test_other_project_cannot_reach_an_image(two_projects: tuple[Running, str]) -> None:
    """Every image route answers B about A's image as if it did not exist."""
    app, key_b = two_projects
    image = uploaded(app, alias="@hero")
    path = f"{IMAGES}/{image['id']}"
    row_before = image_row(app, image["id"])

    assert_error(as_key(app, key_b, "GET", path), 404, "IMAGE_NOT_FOUND")
    assert_error(as_key(app, key_b, "PUT", path, json={"meta": {"x": 1}}), 404, "IMAGE_NOT_FOUND")
    assert_error(
        as_key(app, key_b, "PUT", f"{path}/alias", json={"alias": "@mine"}),
        404,
        "IMAGE_NOT_FOUND",
    )
    assert_error(as_key(app, key_b, "DELETE", path), 404, "IMAGE_NOT_FOUND")
    assert_error(as_key(app, key_b, "GET", f"{IMAGES}/@hero"), 404, "ALIAS_NOT_FOUND")
    assert_error(as_key(app, key_b, "DELETE", f"{IMAGES}/@hero"), 404, "ALIAS_NOT_FOUND")
    listed = as_key(app, key_b, "GET", IMAGES)
    assert get_data(listed) == []
    assert listed.json()["pagination"]["total"] == 0
    by_alias = as_key(app, key_b, "GET", IMAGES, params={"alias": "@hero"})
    assert get_data(by_alias) == []
    by_flow = as_key(app, key_b, "GET", IMAGES, params={"flowId": image["flowId"]})
    assert get_data(by_flow) == []

    assert image_row(app, image["id"]) == row_before
    assert (app.settings.storage_root / image["storageKey"]).is_file()


def test_projects_hold_the_same_alias_independently(two_projects: tuple[Running, str]) -> None:
    """B's uploads and alias moves never touch A's alias of the same name."""
    app, key_b = two_projects
    image_a = uploaded(app, alias="@hero")
    image_b = get_data(upload(app, png_bytes(5, 5), key=key_b, alias="@hero"), 201)
    assert image_b["alias"] == "@hero"
    assert image_b["projectId"] != image_a["projectId"]
    assert image_b["storageKey"] == f"other/site/img/{image_b['id']}"
    assert image_b["storageUrl"] == f"http://127.0.0.1:3000/cdn/other/site/img/{image_b['id']}"
    second_b = get_data(upload(app, png_bytes(6, 6), key=key_b), 201)
    moved = as_key(app, key_b, "PUT", f"{IMAGES}/{second_b['id']}/alias", json={"alias": "@hero"})
    assert get_data(moved)["alias"] == "@hero"

    assert get_data(app.project("GET", f"{IMAGES}/@hero"))["id"] == image_a["id"]
    assert get_data(as_key(app, key_b, "GET", f"{IMAGES}/@hero"))["id"] == second_b["id"]
    with sqlite(app.settings.database_path) as db:
        rows = dict(db.execute("SELECT id, alias FROM images").fetchall())
    assert rows == {image_a["id"]: "@hero", image_b["id"]: None, second_b["id"]: "@hero"}


@pytest.mark.parametrize("fields", [{}, {"flowAlias": "@bg"}, {"alias": "@steal"}])
def test_other_projects_flow_cannot_be_joined(
    two_projects: tuple[Running, str], fields: dict[str, str]
) -> None:
    """B naming A's flow gets 404 FLOW_NOT_FOUND, and nothing of B's upload remains."""
    app, key_b = two_projects
    flow_id = str(uuid.uuid4())
    image_a = uploaded(app, flowId=flow_id, flowAlias="@bg")
    before = snapshot(app)
    response = upload(app, png_bytes(5, 5), key=key_b, flowId=flow_id, **fields)
    assert_error(response, 404, "FLOW_NOT_FOUND")
    assert_nothing_stored(app, before)
    owner = flow_row(app, flow_id)
    assert owner is not None
    assert owner["project_id"] == image_a["projectId"]
    in_flow = app.project("GET", IMAGES, params={"flowId": flow_id})
    assert listed_ids(in_flow) == [image_a["id"]]


def test_flow_context_does_not_cross_projects(two_projects: tuple[Running, str]) -> None:
    """A's flow alias does not resolve for B, even with A's flow id as context."""
    app, key_b = two_projects
    flow_id = str(uuid.uuid4())
    uploaded(app, flowId=flow_id, flowAlias="@bg")
    response = as_key(app, key_b, "GET", f"{IMAGES}/@bg", params={"flowId": flow_id})
    assert_error(response, 404, "ALIAS_NOT_FOUND")


# ================================================================== rate limits


def test_every_images_response_carries_rate_limit_headers(app: Running) -> None:
    """Successes and errors of every image route count and carry the headers."""
    image = uploaded(app)
    path = f"{IMAGES}/{image['id']}"
    checks = [
        (201, upload(app)),
        (415, upload(app, b"not an image")),
        (400, upload(app, b"")),
        (400, upload(app, alias="bad")),
        (413, upload(app, padded_png(5 * MB + 1))),
        (413, upload(app, padded_png(6 * MB))),
        (400, app.project("POST", UPLOAD, json={})),
        (200, app.project("GET", IMAGES)),
        (400, app.project("GET", IMAGES, params={"source": "x"})),
        (200, app.project("GET", path)),
        (404, app.project("GET", f"{IMAGES}/{uuid.uuid4()}")),
        (400, app.project("GET", f"{IMAGES}/@last")),
        (200, app.project("PUT", path, json={"focalPoint": {"x": 0.5, "y": 0.5}})),
        (400, app.project("PUT", path, json={"focalPoint": {"x": 2, "y": 0.5}})),
        (200, app.project("PUT", f"{path}/alias", json={"alias": "@hero"})),
        (400, app.project("PUT", f"{path}/alias", json={"alias": "@last"})),
        (200, app.project("DELETE", path)),
        (404, app.project("DELETE", path)),
    ]
    assert [response.status_code for _, response in checks] == [status for status, _ in checks]
    responses = [response for _, response in checks]
    remaining = []
    for response in responses:
        assert response.headers["X-RateLimit-Limit"] == "1000"
        remaining.append(int(response.headers["X-RateLimit-Remaining"]))
        assert int(response.headers["X-RateLimit-Reset"]) > time.time() - 5
    assert remaining == list(range(remaining[0], remaining[0] - len(responses), -1))
