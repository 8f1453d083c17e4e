"""The pre-v1 routes (API.md §10): /api/generate, /api/text-to-image, /api/upload,
/api/enhance and /api/images/..., answered in the old shapes by the same services."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import Running, on_fake_gemini
from tests.fakes.gemini import Answer, FakeGemini
from tests.helpers import sqlite
from tests.imagedata import gif_bytes, jpeg_bytes, png_bytes, webp_bytes

pytestmark = pytest.mark.both_databases

IMAGES = "/api/images/default/default"
RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


@pytest.fixture(scope="module")
def app(module_app: Running) -> Running:
    return module_app


def ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    """The ``data`` of a legacy success, after checking the envelope."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"success", "message", "data"}, body
    assert body["success"] is True
    assert isinstance(body["message"], str)
    assert body["message"]
    data: dict[str, Any] = body["data"]
    return data


def refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The error object of a legacy refusal, after checking the envelope."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"success", "message", "error"}, body
    assert body["success"] is False
    assert body["error"]["code"] == code, body
    assert body["message"] == body["error"]["message"]
    assert body["message"]
    error: dict[str, Any] = body["error"]
    return error


def generate(
    app: Running, files: list[tuple[str, bytes, str]] | None = None, **fields: str
) -> httpx.Response:
    form = {"prompt": "a lighthouse at dusk", "filename": "hero.png", **fields}
    parts = [("files", f) for f in files or []]
    # httpx sends multipart only with files; an empty list still needs multipart
    return app.project("POST", "/api/generate", data=form, files=parts or {"_": ("", b"")})


def count(app: Running, table: str) -> int:
    with sqlite(app.settings.database_path) as db:
        return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def get(app: Running, url: str, method: str = "GET", **kwargs: Any) -> httpx.Response:
    """A public URL from an answer, fetched from the test server."""
    return app.client.request(method, httpx.URL(url).path, **kwargs)


def v1(app: Running, path: str) -> dict[str, Any]:
    response = app.project("GET", path)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


# ------------------------------------------------------------------ /api/generate


def test_generate_answers_the_old_shape_and_publishes_the_name(app: Running) -> None:
    response = generate(app, filename="poster.jpg", aspectRatio="16:9")
    data = ok(response)
    assert set(data) == {
        "filename", "filepath", "url", "imageId", "generationId", "aspectRatio", "width",
        "height", "mimeType", "model", "provider", "promptEnhancement",
    }  # fmt: skip
    # the extension is the image's real one
    assert data["filename"] == "poster.png"
    assert data["filepath"] == "default/default/generated/poster.png"
    base = app.settings.public_base_url
    assert data["url"] == f"{base}/api/images/default/default/generated/poster.png"
    assert data["mimeType"] == "image/png"
    assert data["aspectRatio"] == "16:9"
    assert data["width"] > data["height"] > 0
    assert data["provider"] == "offline"
    assert isinstance(data["model"], str)
    assert data["promptEnhancement"] is None  # autoEnhance defaults to false here
    for name in RATE_HEADERS:
        assert name in response.headers

    # an ordinary generation and image, visible through /api/v1
    generation = v1(app, f"/api/v1/generations/{data['generationId']}")
    assert generation["status"] == "success"
    assert generation["outputImageId"] == data["imageId"]
    assert generation["meta"]["legacy"] == "/api/generate"
    assert generation["meta"]["filename"] == "poster.jpg"
    listed = app.project("GET", "/api/v1/generations").json()["data"]
    assert data["generationId"] in [g["id"] for g in listed]

    # the published bytes are the CDN's bytes, with the same ETag
    published = get(app, data["url"])
    cdn = get(app, generation["outputImage"]["storageUrl"])
    assert published.status_code == cdn.status_code == 200
    assert published.content == cdn.content
    assert published.headers["content-type"] == "image/png"
    assert published.headers["etag"] == cdn.headers["etag"]
    assert "X-RateLimit-Limit" not in published.headers  # public, not rate limited
    again = get(app, data["url"], headers={"If-None-Match": published.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""
    head = get(app, data["url"], "HEAD")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(published.content))


def test_generate_stores_each_reference_file_as_an_upload(app: Running) -> None:
    files = [("a.png", png_bytes(color=(9, 9, 9)), "image/png"),
             ("b.jpg", jpeg_bytes(), "image/jpeg")]  # fmt: skip
    before = count(app, "images")
    data = ok(generate(app, files=files, filename="with-refs"))
    assert data["filename"] == "with-refs.png"
    generation = v1(app, f"/api/v1/generations/{data['generationId']}")
    references = generation["referencedImages"]
    assert len(references) == 2
    for ref in references:
        image = v1(app, f"/api/v1/images/{ref['imageId']}")
        assert image["source"] == "uploaded"
        assert image["meta"]["legacy"] == "/api/generate"
    assert count(app, "images") == before + 3


@pytest.mark.parametrize(
    "fields",
    [
        {"enhancementOptions": '{"template": "photorealistic"}'},
        {"enhancementOptions[template]": "photorealistic"},
    ],
    ids=["json-text", "bracketed-field"],
)
def test_generate_takes_enhancement_options_both_ways(app: Running, fields: dict[str, str]) -> None:
    data = ok(generate(app, autoEnhance="true", filename="enhanced", **fields))
    enhancement = data["promptEnhancement"]
    assert enhancement["template"] == "photorealistic"
    assert enhancement["originalPrompt"] == "a lighthouse at dusk"
    assert enhancement["enhancedPrompt"] != enhancement["originalPrompt"]
    generation = v1(app, f"/api/v1/generations/{data['generationId']}")
    assert generation["originalPrompt"] == "a lighthouse at dusk"
    assert generation["prompt"] == enhancement["enhancedPrompt"]


def test_a_reused_name_points_at_the_newer_image(app: Running) -> None:
    first = ok(generate(app, filename="reused.png", prompt="first picture"))
    old = get(app, first["url"]).content
    second = ok(generate(app, filename="reused.png", prompt="second picture"))
    assert second["url"] == first["url"]
    assert second["imageId"] != first["imageId"]
    newer = get(app, first["url"])
    assert newer.headers["X-Image-Id"] == second["imageId"]
    assert newer.content != old
    # the older image stays reachable by its id
    older = v1(app, f"/api/v1/images/{first['imageId']}")
    assert get(app, older["storageUrl"]).content == old
    # deleting the image unpublishes its name
    assert app.project("DELETE", f"/api/v1/images/{second['imageId']}").status_code == 200
    refused(get(app, first["url"]), 404, "IMAGE_NOT_FOUND")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x" * 5001}, "prompt"),
        ({"filename": "../etc/passwd"}, "filename"),
        ({"filename": "a b.png"}, "filename"),
        ({"filename": "x" * 129}, "filename"),
        ({"filename": ""}, "filename"),
        ({"autoEnhance": "maybe"}, "autoEnhance"),
        ({"enhancementOptions": "{not json"}, "enhancementOptions"),
        ({"enhancementOptions[template]": "baroque"}, "enhancementOptions.template"),
    ],
)
def test_generate_refuses_bad_fields_and_stores_nothing(
    app: Running, fields: dict[str, str], field: str
) -> None:
    before = count(app, "generations"), count(app, "images")
    error = refused(generate(app, files=[("a.png", png_bytes(), "image/png")], **fields), 400,
                    "VALIDATION_ERROR")  # fmt: skip
    assert error["details"]["field"] == field
    assert (count(app, "generations"), count(app, "images")) == before


def test_generate_without_prompt_names_it(app: Running) -> None:
    response = app.project("POST", "/api/generate", data={"filename": "x"},
                           files={"_": ("", b"")})  # fmt: skip
    assert refused(response, 400, "VALIDATION_ERROR")["details"]["field"] == "prompt"


def test_generate_refuses_a_bad_ratio_with_its_code(app: Running) -> None:
    refused(generate(app, aspectRatio="5:4"), 400, "INVALID_ASPECT_RATIO")


def test_a_text_file_among_the_references_stores_nothing(app: Running) -> None:
    before = count(app, "generations"), count(app, "images")
    files = [("a.png", png_bytes(), "image/png"), ("notes.txt", b"hello there", "text/plain")]
    refused(generate(app, files=files), 415, "UNSUPPORTED_MEDIA_TYPE")
    files = [("a.png", png_bytes(), "image/png"), ("anim.gif", gif_bytes(), "image/gif")]
    refused(generate(app, files=files), 415, "UNSUPPORTED_MEDIA_TYPE")
    assert (count(app, "generations"), count(app, "images")) == before


def test_four_reference_files_are_too_many(app: Running) -> None:
    before = count(app, "images")
    files = [(f"{n}.png", png_bytes(color=(n, 0, 0)), "image/png") for n in range(4)]
    error = refused(generate(app, files=files), 400, "TOO_MANY_REFERENCES")
    assert error["details"]["field"] == "files"
    assert count(app, "images") == before


def test_generate_needs_multipart(app: Running) -> None:
    response = app.project("POST", "/api/generate", json={"prompt": "x", "filename": "y"})
    refused(response, 400, "VALIDATION_ERROR")


def test_invalid_text_in_a_legacy_form_field_is_refused(app: Running) -> None:
    before = count(app, "generations")
    for field in ("prompt", "filename", "enhancementOptions[template]"):
        body = (
            b'--B\r\nContent-Disposition: form-data; name="' + field.encode() + b'"\r\n\r\n'
            b'a\xed\xa0\x80b\r\n--B\r\nContent-Disposition: form-data; name="prompt"\r\n\r\n'
            b"ok\r\n--B--\r\n"
        )
        response = app.project(
            "POST", "/api/generate", content=body,
            headers={"content-type": "multipart/form-data; boundary=B"},
        )  # fmt: skip
        assert response.status_code == 400, (field, response.text)
        assert response.json()["success"] is False
    assert count(app, "generations") == before


# ------------------------------------------------------------- /api/text-to-image


def test_text_to_image_defaults_the_name_to_the_generation_id(app: Running) -> None:
    data = ok(app.project("POST", "/api/text-to-image", json={"prompt": "a red kite"}))
    assert data["filename"] == f"image-{data['generationId'][:8]}.png"
    assert data["filepath"] == f"default/default/generated/{data['filename']}"
    assert get(app, data["url"]).headers["X-Image-Id"] == data["imageId"]
    generation = v1(app, f"/api/v1/generations/{data['generationId']}")
    assert generation["meta"]["legacy"] == "/api/text-to-image"
    assert generation["meta"]["filename"] == f"image-{data['generationId'][:8]}"


def test_text_to_image_takes_the_options_of_generate(app: Running) -> None:
    body = {"prompt": "a red kite", "filename": "kite.webp", "aspectRatio": "9:16",
            "autoEnhance": True, "enhancementOptions": {"template": "sticker"}}  # fmt: skip
    data = ok(app.project("POST", "/api/text-to-image", json=body))
    assert data["filename"] == "kite.png"
    assert data["aspectRatio"] == "9:16"
    assert data["height"] > data["width"]
    assert data["promptEnhancement"]["template"] == "sticker"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "VALIDATION_ERROR"),
        ({"prompt": 5}, "VALIDATION_ERROR"),
        ({"prompt": "x", "filename": "no/slash"}, "VALIDATION_ERROR"),
        ({"prompt": "x", "aspectRatio": "1:2"}, "INVALID_ASPECT_RATIO"),
        ({"prompt": "x", "autoEnhance": "yes"}, "VALIDATION_ERROR"),
    ],
)
def test_text_to_image_refuses_bad_bodies(app: Running, body: dict[str, Any], code: str) -> None:
    before = count(app, "generations")
    refused(app.project("POST", "/api/text-to-image", json=body), 400, code)
    assert count(app, "generations") == before


# ------------------------------------------------------------------- /api/upload


def test_upload_publishes_under_the_files_own_name_made_safe(app: Running) -> None:
    files = {"file": ("my holiday photo.JPG", jpeg_bytes(), "image/jpeg")}
    response = app.project("POST", "/api/upload", files=files)
    data = ok(response, 201)
    assert set(data) == {"filename", "filepath", "url", "imageId", "size", "mimeType",
                         "width", "height"}  # fmt: skip
    assert data["filename"] == "my-holiday-photo.jpg"
    assert data["filepath"] == "default/default/uploads/my-holiday-photo.jpg"
    assert data["mimeType"] == "image/jpeg"
    assert (data["width"], data["height"]) == (8, 8)
    for name in RATE_HEADERS:
        assert name in response.headers
    image = v1(app, f"/api/v1/images/{data['imageId']}")
    assert image["source"] == "uploaded"
    assert image["fileSize"] == data["size"]
    assert image["meta"] == {"legacy": "/api/upload", "filename": "my-holiday-photo.JPG"}
    published = get(app, data["url"])
    assert published.content == get(app, image["storageUrl"]).content
    assert published.headers["content-type"] == "image/jpeg"


def test_upload_takes_a_filename_and_gives_it_the_real_extension(app: Running) -> None:
    files = {"file": ("x.png", webp_bytes(), "image/png")}
    data = ok(app.project("POST", "/api/upload", files=files, data={"filename": "logo.png"}), 201)
    assert data["filename"] == "logo.webp"
    assert data["mimeType"] == "image/webp"
    assert get(app, data["url"]).headers["content-type"] == "image/webp"


@pytest.mark.parametrize(
    ("files", "fields", "status", "code"),
    [
        ({"other": ("a.png", png_bytes(), "image/png")}, {}, 400, "INVALID_FILE"),
        ({"file": ("a.txt", b"plain text", "text/plain")}, {}, 415, "UNSUPPORTED_MEDIA_TYPE"),
        ({"file": ("a.png", b"", "image/png")}, {}, 400, "INVALID_FILE"),
        ({"file": ("a.png", png_bytes(), "image/png")}, {"filename": "a/b"}, 400,
         "VALIDATION_ERROR"),
    ],
)  # fmt: skip
def test_upload_refuses_bad_input_and_stores_nothing(
    app: Running, files: dict[str, Any], fields: dict[str, str], status: int, code: str
) -> None:
    before = count(app, "images"), count(app, "published_names")
    refused(app.project("POST", "/api/upload", files=files, data=fields), status, code)
    assert (count(app, "images"), count(app, "published_names")) == before


# ------------------------------------------------------------------ /api/enhance


@pytest.mark.parametrize("field", ["options", "enhancementOptions"])
def test_enhance_rewrites_and_stores_nothing(app: Running, field: str) -> None:
    before = count(app, "generations"), count(app, "images")
    body = {"prompt": "a cat on a sofa", field: {"template": "illustration"}}
    data = ok(app.project("POST", "/api/enhance", json=body))
    assert data["originalPrompt"] == "a cat on a sofa"
    assert data["template"] == "illustration"
    assert data["provider"] == "offline"
    assert "a cat on a sofa" in data["enhancedPrompt"]
    assert data["enhancedPrompt"] != data["originalPrompt"]
    assert (count(app, "generations"), count(app, "images")) == before


def test_enhance_defaults_to_the_general_template(app: Running) -> None:
    data = ok(app.project("POST", "/api/enhance", json={"prompt": "a cat"}))
    assert data["template"] == "general"


@pytest.mark.parametrize(
    "body",
    [{}, {"prompt": ""}, {"prompt": "x" * 5001}, {"prompt": "x", "options": {"template": "z"}}],
)
def test_enhance_refuses_bad_bodies(app: Running, body: dict[str, Any]) -> None:
    refused(app.project("POST", "/api/enhance", json=body), 400, "VALIDATION_ERROR")


# ------------------------------------------------------------- /api/images/...


@pytest.mark.parametrize(
    "path",
    [
        f"{IMAGES}/generated/never-published.png",
        f"{IMAGES}/thumbnails/x.png",
        "/api/images/nope/default/generated/hero.png",
        f"{IMAGES}/generated/bad%20name.png",
    ],
)
def test_an_unknown_published_name_is_a_legacy_404(app: Running, path: str) -> None:
    refused(app.client.get(path), 404, "IMAGE_NOT_FOUND")
    assert app.client.head(path).status_code == 404


def test_names_are_per_project(app: Running) -> None:
    key = app.new_project_key("legacy-org", "legacy-site")
    files = {"file": ("a.png", png_bytes(color=(1, 2, 3)), "image/png")}
    data = ok(app.project("POST", "/api/upload", files=files, headers={"X-API-Key": key}), 201)
    assert data["filepath"] == "legacy-org/legacy-site/uploads/a.png"
    assert get(app, data["url"]).status_code == 200
    refused(app.client.get(f"{IMAGES}/uploads/a.png"), 404, "IMAGE_NOT_FOUND")


# ---------------------------------------------------------------- keys, limits


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/api/generate"), ("POST", "/api/text-to-image"), ("POST", "/api/upload"),
     ("POST", "/api/enhance")],
)  # fmt: skip
def test_legacy_routes_need_a_project_key(app: Running, method: str, path: str) -> None:
    refused(app.client.request(method, path), 401, "MISSING_API_KEY")
    wrong = {"X-API-Key": "bnt_" + "0" * 64}
    refused(app.client.request(method, path, headers=wrong), 401, "INVALID_API_KEY")
    master = {"X-API-Key": app.master_key or ""}
    refused(app.client.request(method, path, headers=master), 403, "FORBIDDEN")


def test_a_wrong_method_is_a_legacy_405(app: Running) -> None:
    refused(app.project("GET", "/api/generate"), 405, "METHOD_NOT_ALLOWED")


@pytest.fixture
def limited(start_server: Callable[..., Running]) -> Running:
    return start_server(limits__requests_per_hour=2)


def test_legacy_routes_count_against_the_keys_limit(limited: Running) -> None:
    first = limited.project("POST", "/api/enhance", json={"prompt": "a"})
    assert first.headers["X-RateLimit-Remaining"] == "1"
    second = limited.project("GET", "/api/v1/project")  # one budget for both doors
    assert second.headers["X-RateLimit-Remaining"] == "0"
    third = limited.project("POST", "/api/text-to-image", json={"prompt": "a"})
    refused(third, 429, "RATE_LIMIT_EXCEEDED")
    assert int(third.headers["Retry-After"]) > 0
    assert third.headers["X-RateLimit-Remaining"] == "0"
    assert count(limited, "generations") == 0


# --------------------------------------------------------------------- failure


def test_a_failed_generation_is_a_502_and_stays_recorded(
    start_server: Callable[..., Running], fake_gemini: FakeGemini
) -> None:
    app = start_server(**on_fake_gemini(fake_gemini))
    fake_gemini.queue(Answer("error", 500))
    error = refused(generate(app, filename="fails"), 502, "GENERATION_FAILED")
    generation = v1(app, f"/api/v1/generations/{error['details']['generationId']}")
    assert generation["status"] == "failed"
    assert generation["meta"]["legacy"] == "/api/generate"
    assert "test-key" not in error["message"]
    assert count(app, "published_names") == 0
    refused(app.client.get(f"{IMAGES}/generated/fails.png"), 404, "IMAGE_NOT_FOUND")
    # enhancement through a failing provider is a 502 too
    fake_gemini.queue(Answer("error", 500))
    refused(app.project("POST", "/api/enhance", json={"prompt": "a"}), 502, "GENERATION_FAILED")
