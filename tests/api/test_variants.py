"""Image variants (API.md §12): size, crop and format in the URL of ``/cdn/.../img``
and of the live URL, made once and kept in memory and in storage, at most
``cdn.max_variants_per_image`` per image, removed with their image."""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image as PILImage

from tests.api.test_errors import assert_error
from tests.conftest import Running
from tests.helpers import sqlite

pytestmark = pytest.mark.both_databases

CDN = "/cdn/default/default/img"
LIVE = "/cdn/default/default/live"
BROWSER_ACCEPT = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"

_shades = itertools.count(1)


def picture(width: int, height: int, split: bool = False) -> bytes:
    """A PNG of ``width``×``height``: one colour, different on every call, or (with
    ``split``) red on the left half and blue on the right."""
    if split:
        image = PILImage.new("RGB", (width, height), (255, 0, 0))
        image.paste((0, 0, 255), (width // 2, 0, width, height))
    else:
        n = next(_shades)
        image = PILImage.new("RGB", (width, height), (n % 256, n // 256 % 256, 90))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def upload(app: Running, data: bytes) -> dict[str, Any]:
    response = app.project(
        "POST", "/api/v1/images/upload", files={"file": ("a.png", data, "image/png")}
    )
    assert response.status_code == 201, response.text
    image: dict[str, Any] = response.json()["data"]
    return image


def opened(response: httpx.Response) -> PILImage.Image:
    assert response.status_code == 200, response.text
    return PILImage.open(io.BytesIO(response.content))


def variant_files(app: Running, image_id: str) -> list[Path]:
    root = Path(app.settings.storage_root) / "default" / "default" / "var" / image_id
    return sorted(root.glob("*")) if root.exists() else []


@pytest.fixture(scope="module")
def photo(module_app: Running) -> dict[str, Any]:
    """An 800×600 upload shared by the read-only tests."""
    return upload(module_app, picture(800, 600))


# ------------------------------------------------------------------ sizes


@pytest.mark.parametrize(
    ("query", "size"),
    [
        ("w=400&h=300", (400, 300)),  # cover is the default with both sides
        ("w=400&h=100&fit=cover", (400, 100)),
        ("w=200&h=200&fit=contain", (200, 150)),  # inside the box, ratio kept
        ("w=300&h=50&fit=fill", (300, 50)),  # stretched
        ("w=200", (200, 150)),
        ("h=60", (80, 60)),
        ("w=4096", (800, 600)),  # never upscaled
        ("w=1600&h=600&fit=cover", (800, 300)),  # the box shrinks to fit the image
        ("w=4000&h=4000&fit=fill", (800, 600)),
    ],
)
def test_each_fit_gives_exact_sizes(
    module_app: Running, photo: dict[str, Any], query: str, size: tuple[int, int]
) -> None:
    response = module_app.client.get(f"{CDN}/{photo['id']}?{query}")
    assert opened(response).size == size
    assert response.headers["x-variant"].startswith(f"w={size[0]}&h={size[1]}")
    assert response.headers["x-image-id"] == photo["id"]
    assert response.headers["cache-control"] == "public, max-age=31536000"


def test_cover_crops_around_the_focal_point(module_app: Running) -> None:
    image = upload(module_app, picture(800, 400, split=True))  # red | blue
    url = f"{CDN}/{image['id']}?w=100&h=200"  # a tall box: a 200×400 slice is kept

    def colour() -> tuple[int, ...]:
        response = module_app.client.get(url)
        small = opened(response).convert("RGB").resize((1, 1), PILImage.Resampling.BOX)
        pixel = small.getpixel((0, 0))
        assert isinstance(pixel, tuple)
        return pixel

    centre = colour()  # no focal point: the middle, half red and half blue
    assert centre[0] > 60, centre
    assert centre[2] > 60, centre
    etags = {module_app.client.get(url).headers["etag"]}
    for x, red in ((0.1, True), (0.9, False)):
        moved = module_app.project(
            "PUT", f"/api/v1/images/{image['id']}", json={"focalPoint": {"x": x, "y": 0.5}}
        )
        assert moved.status_code == 200, moved.text
        r, _, b = colour()
        assert (r > 200 and b < 40) if red else (b > 200 and r < 40), (x, r, b)
        etags.add(module_app.client.get(url).headers["etag"])
    assert len(etags) == 3  # moving the focal point changes a cover variant's ETag
    # a contain variant does not depend on it
    contain = f"{CDN}/{image['id']}?w=100&h=100&fit=contain"
    before = module_app.client.get(contain).headers["etag"]
    module_app.project("PUT", f"/api/v1/images/{image['id']}", json={"focalPoint": None})
    assert module_app.client.get(contain).headers["etag"] == before


# ---------------------------------------------------------------- formats

MAGIC: dict[str, Callable[[bytes], bool]] = {
    "png": lambda b: b.startswith(b"\x89PNG\r\n\x1a\n"),
    "jpeg": lambda b: b.startswith(b"\xff\xd8\xff"),
    "webp": lambda b: b[:4] == b"RIFF" and b[8:12] == b"WEBP",
    "avif": lambda b: b[4:8] == b"ftyp" and b[8:12] in (b"avif", b"avis"),
}


def writable(app: Running) -> list[str]:
    formats: list[str] = app.client.get("/api/info").json()["data"]["variantFormats"]
    return formats


def test_formats_are_what_their_bytes_say(module_app: Running, photo: dict[str, Any]) -> None:
    formats = writable(module_app)
    assert {"png", "jpeg", "webp"} <= set(formats)
    for fmt in formats:
        response = module_app.client.get(f"{CDN}/{photo['id']}?w=120&format={fmt}")
        assert response.status_code == 200, response.text
        assert MAGIC[fmt](response.content), fmt
        assert response.headers["content-type"] == f"image/{fmt}"
        assert "vary" not in response.headers
    jpg = module_app.client.get(f"{CDN}/{photo['id']}?w=120&format=jpg")
    assert MAGIC["jpeg"](jpg.content)


def test_auto_follows_accept_and_varies_by_it(module_app: Running, photo: dict[str, Any]) -> None:
    url = f"{CDN}/{photo['id']}?w=100&format=auto"
    best = "avif" if "avif" in writable(module_app) else "webp"
    cases = [
        (BROWSER_ACCEPT, best),
        ("image/webp,*/*", "webp"),
        ("image/avif;q=0,image/webp", "webp"),
        ("*/*", "png"),  # the stored format
        (None, "png"),
    ]
    for accept, fmt in cases:
        headers = {"Accept": accept} if accept else {}
        response = module_app.client.get(url, headers=headers)
        assert response.status_code == 200, response.text
        assert MAGIC[fmt](response.content), (accept, fmt)
        assert response.headers["vary"] == "Accept"
        assert f"format={fmt}" in response.headers["x-variant"]


def test_quality_changes_the_bytes(module_app: Running) -> None:
    noisy = PILImage.effect_noise((300, 300), 80).convert("RGB")
    out = io.BytesIO()
    noisy.save(out, "PNG")
    image = upload(module_app, out.getvalue())
    low = module_app.client.get(f"{CDN}/{image['id']}?format=jpeg&q=10")
    high = module_app.client.get(f"{CDN}/{image['id']}?format=jpeg&q=95")
    assert MAGIC["jpeg"](low.content)
    assert MAGIC["jpeg"](high.content)
    assert len(low.content) < len(high.content) / 2
    assert low.headers["x-variant"].endswith("q=10")
    default = module_app.client.get(f"{CDN}/{image['id']}?format=webp")
    assert default.headers["x-variant"].endswith("format=webp&q=82")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("w=0", "w"), ("w=4097", "w"), ("w=abc", "w"), ("w=-5", "w"), ("w=1.5", "w"),
        ("h=99999999999999999999", "h"), ("w=%EF%BC%91", "w"), ("fit=stretch&w=1&h=1", "fit"),
        ("format=gif", "format"), ("format=%00", "format"), ("q=0", "q"), ("q=101", "q"),
        ("format=%ED%A0%80", "format"), ("w=%ED%A0%80", "w"),
    ],
)  # fmt: skip
def test_bad_parameters_are_named(
    module_app: Running, photo: dict[str, Any], query: str, field: str
) -> None:
    for base in (f"{CDN}/{photo['id']}", f"{LIVE}/variants?prompt=bad%20params"):
        response = module_app.client.get(f"{base}&{query}" if "?" in base else f"{base}?{query}")
        error = assert_error(response, 400, "VALIDATION_ERROR")
        assert error["details"] == {"field": field}, (base, error)


# ------------------------------------------------------------ conditional, HEAD


def test_each_variant_has_its_etag_and_answers_304_and_head(
    module_app: Running, photo: dict[str, Any]
) -> None:
    small = module_app.client.get(f"{CDN}/{photo['id']}?w=100")
    large = module_app.client.get(f"{CDN}/{photo['id']}?w=300")
    original = module_app.client.get(f"{CDN}/{photo['id']}")
    tags = {small.headers["etag"], large.headers["etag"], original.headers["etag"]}
    assert len(tags) == 3
    again = module_app.client.get(
        f"{CDN}/{photo['id']}?w=100", headers={"If-None-Match": small.headers["etag"]}
    )
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == small.headers["etag"]
    head = module_app.client.head(f"{CDN}/{photo['id']}?w=100")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(small.content))
    assert head.headers["x-variant"] == small.headers["x-variant"]
    # a request that changes nothing serves the stored bytes under their own ETag
    same = module_app.client.get(f"{CDN}/{photo['id']}?w=800&format=png")
    assert same.content == original.content
    assert same.headers["etag"] == original.headers["etag"]
    assert same.headers["x-variant"] == "w=800&h=600&format=png"


def test_a_variant_of_an_unknown_image_is_404(module_app: Running) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    for ref in (missing, "@nobody", "not-an-id"):
        response = module_app.client.get(f"{CDN}/{ref}?w=100")
        assert_error(response, 404, "IMAGE_NOT_FOUND")


# ------------------------------------------------------------------- stored


def test_a_variant_is_stored_once_and_removed_with_its_image(module_app: Running) -> None:
    image = upload(module_app, picture(400, 400))
    for _ in range(3):
        assert module_app.client.get(f"{CDN}/{image['id']}?w=50&format=webp").status_code == 200
    module_app.client.get(f"{CDN}/{image['id']}?w=60")
    files = variant_files(module_app, image["id"])
    assert len(files) == 2
    with sqlite(module_app.settings.database_path) as db:
        rows = db.execute(
            "SELECT storage_key FROM image_variants WHERE image_id = ?", (image["id"],)
        ).fetchall()
    assert sorted(r[0].rsplit("/", 1)[1] for r in rows) == sorted(f.name for f in files)
    deleted = module_app.project("DELETE", f"/api/v1/images/{image['id']}")
    assert deleted.status_code == 200, deleted.text
    assert variant_files(module_app, image["id"]) == []
    with sqlite(module_app.settings.database_path) as db:
        left = db.execute(
            "SELECT COUNT(*) FROM image_variants WHERE image_id = ?", (image["id"],)
        ).fetchone()
    assert left[0] == 0
    assert_error(module_app.client.get(f"{CDN}/{image['id']}?w=50"), 404, "IMAGE_NOT_FOUND")


def test_regenerating_replaces_the_variants(module_app: Running) -> None:
    made = module_app.project(
        "POST", "/api/v1/generations", json={"prompt": "a lighthouse at dusk", "autoEnhance": False}
    )
    assert made.status_code == 201, made.text
    generation = made.json()["data"]
    image_id = generation["outputImageId"]
    url = f"{CDN}/{image_id}?w=120&h=90&format=webp"
    before = module_app.client.get(url)
    assert opened(before).size == (120, 90)
    old_files = variant_files(module_app, image_id)
    assert len(old_files) == 1
    changed = module_app.project(
        "PUT", f"/api/v1/generations/{generation['id']}", json={"prompt": "a lighthouse at dawn"}
    )
    assert changed.status_code == 200, changed.text
    after = module_app.client.get(url)
    assert opened(after).size == (120, 90)
    assert after.headers["etag"] != before.headers["etag"]
    assert after.content != before.content
    assert not old_files[0].exists()  # the old variant's file went with the old bytes
    assert len(variant_files(module_app, image_id)) == 1


# ------------------------------------------------------------------- live


def test_one_generation_serves_every_size_of_a_live_prompt(module_app: Running) -> None:
    base = f"{LIVE}/sizes?prompt=a%20red%20kite%20over%20hills"
    first = module_app.client.get(f"{base}&w=320&h=180")
    assert first.headers["x-cache-status"] == "MISS"
    assert opened(first).size == (320, 180)
    assert first.headers["x-variant"] == "w=320&h=180&fit=cover&format=png"
    second = module_app.client.get(f"{base}&w=100&format=webp")
    assert second.headers["x-cache-status"] == "HIT"
    assert opened(second).size[0] == 100
    assert second.headers["content-type"] == "image/webp"
    whole = module_app.client.get(base)
    assert whole.headers["x-cache-status"] == "HIT"
    ids = {r.headers["x-image-id"] for r in (first, second, whole)}
    assert len(ids) == 1
    scope = module_app.project("GET", "/api/v1/live/scopes/sizes").json()["data"]
    assert scope["currentGenerations"] == 1
    etag = second.headers["etag"]
    again = module_app.client.get(f"{base}&w=100&format=webp", headers={"If-None-Match": etag})
    assert again.status_code == 304
    keyed = module_app.project(
        "GET", "/api/v1/live/generate?scope=sizes&prompt=a%20red%20kite%20over%20hills&w=64"
    )
    assert keyed.headers["x-cache-status"] == "HIT"
    assert opened(keyed).size[0] == 64
    assert keyed.headers["x-image-id"] == first.headers["x-image-id"]


# ----------------------------------------------------------------- the cap


def test_a_crawler_cycling_sizes_leaves_at_most_the_cap(
    start_server: Callable[..., Running],
) -> None:
    app = start_server(cdn__max_variants_per_image=5, live__memory_cache_mb=1)
    image = upload(app, picture(640, 480))
    for width in range(20, 620, 10):  # 60 sizes
        response = app.client.get(f"{CDN}/{image['id']}?w={width}")
        assert opened(response).size[0] == width
    files = variant_files(app, image["id"])
    assert len(files) == 5
    with sqlite(app.settings.database_path) as db:
        rows = db.execute(
            "SELECT params FROM image_variants WHERE image_id = ? ORDER BY used_at",
            (image["id"],),
        ).fetchall()
    kept = [r[0].split("&")[0] for r in rows]
    assert kept == [f"w={w}" for w in range(570, 620, 10)]  # the five most recently used
