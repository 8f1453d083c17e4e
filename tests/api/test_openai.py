"""The OpenAI-compatible door (API.md §11), driven by the real ``openai`` SDK:
only ``base_url`` and ``api_key`` change."""

from __future__ import annotations

import asyncio
import base64
import io
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from PIL import Image as PILImage

from tests.conftest import Running, on_fake_gemini
from tests.fakes.gemini import Answer, FakeGemini
from tests.imagedata import jpeg_bytes, png_bytes

pytestmark = pytest.mark.both_databases

SIZES = ["256x256", "512x512", "1024x1024", "1536x1024", "1024x1536", "1792x1024", "1024x1792"]
RATE = ("x-ratelimit-limit-requests", "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests")  # fmt: skip


@pytest.fixture(scope="module")
def app(module_app: Running) -> Running:
    return module_app


_clients: list[openai.OpenAI] = []


@pytest.fixture(scope="module", autouse=True)
def _close_clients(app: Running) -> Iterator[None]:
    """The SDK keeps connections open: close them before the server stops."""
    yield
    while _clients:
        _clients.pop().close()


def sdk(app: Running, key: str | None = None) -> openai.OpenAI:
    client = openai.OpenAI(
        base_url=f"{app.url}/v1", api_key=key or app.project_key or "", max_retries=0
    )
    _clients.append(client)
    return client


def picture(data: bytes) -> tuple[str, tuple[int, int]]:
    with PILImage.open(io.BytesIO(data)) as image:
        return str(image.format), image.size


def decoded(item: Any) -> bytes:
    return base64.b64decode(item.b64_json)


def v1(app: Running, path: str, key: str | None = None) -> httpx.Response:
    headers = {"X-API-Key": key} if key else {}
    return app.project("GET", path, headers=headers)


# --------------------------------------------------------------------- generate


@pytest.mark.parametrize("size", SIZES)
def test_every_listed_size_is_delivered_exactly(app: Running, size: str) -> None:
    result = sdk(app).images.generate(prompt=f"a fox at {size}", size=size)  # type: ignore[arg-type]
    width, height = (int(side) for side in size.split("x"))
    assert len(result.data) == 1
    assert picture(decoded(result.data[0])) == ("PNG", (width, height))
    assert result.size == size
    assert result.output_format == "png"
    assert result.data[0].revised_prompt == f"a fox at {size}"


@pytest.mark.parametrize(("fmt", "pil"), [("png", "PNG"), ("jpeg", "JPEG"), ("webp", "WEBP")])
def test_every_output_format(app: Running, fmt: str, pil: str) -> None:
    result = sdk(app).images.generate(
        prompt="a lighthouse", size="512x512", output_format=fmt,  # type: ignore[arg-type]
        output_compression=60,
    )  # fmt: skip
    assert picture(decoded(result.data[0])) == (pil, (512, 512))
    assert result.output_format == fmt


def test_compression_changes_the_bytes(app: Running) -> None:
    client = sdk(app)
    low = client.images.generate(prompt="a harbour", size="512x512", output_format="jpeg",
                                 output_compression=10)  # fmt: skip
    high = client.images.generate(prompt="a harbour", size="512x512", output_format="jpeg",
                                  output_compression=95)  # fmt: skip
    assert len(decoded(low.data[0])) < len(decoded(high.data[0]))


def test_n_3_makes_three_ordinary_generations(app: Running) -> None:
    result = sdk(app).images.generate(prompt="three kites", n=3, size="256x256",
                                      model="gpt-image-1", quality="high")  # fmt: skip
    assert len(result.data) == 3
    ids = {item.model_extra["generation_id"] for item in result.data}  # type: ignore[index]
    assert len(ids) == 3
    for generation_id in ids:
        response = v1(app, f"/api/v1/generations/{generation_id}")
        assert response.status_code == 200, response.text
        generation = response.json()["data"]
        assert generation["status"] == "success"
        assert generation["flowId"] is None
        assert generation["originalPrompt"] is None  # no enhancement through this door
        assert generation["meta"]["openai"]["model"] == "gpt-image-1"
        assert generation["meta"]["openai"]["quality"] == "high"
        assert generation["outputImage"]["width"] == 256
    assert result.quality == "high"


def test_url_format_gives_the_permanent_public_url(app: Running) -> None:
    result = sdk(app).images.generate(prompt="a tower", size="1792x1024", response_format="url")
    item = result.data[0]
    assert item.b64_json is None
    assert item.url is not None
    image_id = item.model_extra["image_id"]  # type: ignore[index]
    base = app.settings.public_base_url
    assert item.url == f"{base}/cdn/default/default/img/{image_id}"
    served = app.client.get(httpx.URL(item.url).path)
    assert served.status_code == 200
    assert picture(served.content) == ("PNG", (1792, 1024))


def test_the_async_client_works_too(app: Running) -> None:
    async def run() -> Any:
        client = openai.AsyncOpenAI(base_url=f"{app.url}/v1", api_key=app.project_key or "")
        try:
            return await client.images.generate(prompt="an owl", size="1024x1536")
        finally:
            await client.close()

    result = asyncio.run(run())
    assert picture(decoded(result.data[0])) == ("PNG", (1024, 1536))


def test_images_are_invisible_to_another_project(app: Running) -> None:
    result = sdk(app).images.generate(prompt="a secret garden", size="256x256")
    generation_id = result.data[0].model_extra["generation_id"]  # type: ignore[index]
    other = app.new_project_key("openai-org", "elsewhere")
    assert v1(app, f"/api/v1/generations/{generation_id}", key=other).status_code == 404
    listed = v1(app, "/api/v1/generations", key=other).json()["data"]
    assert generation_id not in [g["id"] for g in listed]
    # the other project's own generation through the door is its own
    mine = sdk(app, other).images.generate(prompt="mine", size="256x256")
    mine_id = mine.data[0].model_extra["generation_id"]  # type: ignore[index]
    assert v1(app, f"/api/v1/generations/{mine_id}", key=other).status_code == 200
    assert v1(app, f"/api/v1/generations/{mine_id}").status_code == 404


# -------------------------------------------------------------- edits, variations


def test_edit_with_one_file(app: Running) -> None:
    result = sdk(app).images.edit(
        image=("photo.png", png_bytes(64, 64, (200, 10, 10)), "image/png"),
        prompt="make it blue", size="1024x1024",
    )  # fmt: skip
    assert picture(decoded(result.data[0]))[1] == (1024, 1024)
    generation_id = result.data[0].model_extra["generation_id"]  # type: ignore[index]
    generation = v1(app, f"/api/v1/generations/{generation_id}").json()["data"]
    assert len(generation["referencedImages"]) == 1
    reference = generation["referenceImages"][0]
    assert reference["source"] == "uploaded"
    assert reference["meta"] == {"openai": "edits"}


def test_edit_with_a_list_of_files_and_a_mask(app: Running) -> None:
    files = [("a.png", png_bytes(32, 32, (1, 2, 3)), "image/png"),
             ("b.jpg", jpeg_bytes(40, 30), "image/jpeg")]  # fmt: skip
    result = sdk(app).images.edit(
        image=files, prompt="combine them", n=2, size="512x512",
        mask=("mask.png", png_bytes(32, 32, (0, 0, 0)), "image/png"),
        output_format="webp",
    )  # fmt: skip
    assert len(result.data) == 2
    for item in result.data:
        assert picture(decoded(item)) == ("WEBP", (512, 512))
        generation_id = item.model_extra["generation_id"]  # type: ignore[index]
        generation = v1(app, f"/api/v1/generations/{generation_id}").json()["data"]
        assert len(generation["referencedImages"]) == 2
        assert generation["meta"]["openai"]["route"] == "edits"
        mask = v1(app, f"/api/v1/images/{generation['meta']['openai']['mask']}")
        assert mask.json()["data"]["meta"] == {"openai": "mask"}


def test_a_mask_of_another_size_is_refused(app: Running) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(app).images.edit(
            image=("a.png", png_bytes(32, 32), "image/png"), prompt="x",
            mask=("m.png", png_bytes(16, 16), "image/png"),
        )  # fmt: skip
    assert caught.value.body["param"] == "mask"  # type: ignore[index]


def test_variation(app: Running) -> None:
    with warnings.catch_warnings():  # the SDK marks variations deprecated; they still work
        warnings.simplefilter("ignore", DeprecationWarning)
        result = sdk(app).images.create_variation(
            image=("cat.png", png_bytes(48, 48, (120, 60, 30)), "image/png"), size="512x512"
        )
    assert picture(decoded(result.data[0])) == ("PNG", (512, 512))
    generation_id = result.data[0].model_extra["generation_id"]  # type: ignore[index]
    generation = v1(app, f"/api/v1/generations/{generation_id}").json()["data"]
    assert len(generation["referencedImages"]) == 1
    assert generation["meta"]["openai"]["route"] == "variations"


# ------------------------------------------------------------------------ models


def test_models_list_and_retrieve(app: Running) -> None:
    client = sdk(app)
    models = client.models.list()
    ids = [model.id for model in models.data]
    assert ids
    assert all(model.owned_by == "banatie-local" for model in models.data)
    one = client.models.retrieve(ids[0])
    assert one.id == ids[0]
    assert one.object == "model"
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("no-such-model")
    assert caught.value.body["code"] == "MODEL_NOT_FOUND"  # type: ignore[index]


# ------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"size": "1000x300"}, "size"),
        ({"size": "100x100"}, "size"),
        ({"size": "4096x4096"}, "size"),
        ({"size": "big"}, "size"),
        ({"n": 5}, "n"),
        ({"output_format": "gif"}, "output_format"),
        ({"output_compression": 101}, "output_compression"),
        ({"response_format": "svg"}, "response_format"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x" * 5001}, "prompt"),
    ],
)
def test_bad_input_is_a_400_naming_the_param(
    app: Running, kwargs: dict[str, Any], param: str
) -> None:
    before = v1(app, "/api/v1/generations").json()["pagination"]["total"]
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(app).images.generate(**{"prompt": "a fox", **kwargs})
    assert caught.value.status_code == 400
    body = caught.value.body
    assert body["type"] == "invalid_request_error"  # type: ignore[index]
    assert body["param"] == param  # type: ignore[index]
    assert v1(app, "/api/v1/generations").json()["pagination"]["total"] == before


def test_a_wrong_key_and_a_master_key(app: Running) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        sdk(app, "bnt_" + "0" * 64).images.generate(prompt="x")
    assert caught.value.body["type"] == "authentication_error"  # type: ignore[index]
    with pytest.raises(openai.PermissionDeniedError) as denied:
        sdk(app, app.master_key).models.list()
    assert denied.value.body["type"] == "permission_error"  # type: ignore[index]


# ------------------------------------------------------------------ raw HTTP


def bearer(app: Running) -> dict[str, str]:
    return {"Authorization": f"Bearer {app.project_key}"}


def test_raw_generation_answer(app: Running) -> None:
    response = app.client.post("/v1/images/generations", headers=bearer(app),
                               json={"prompt": "a moth", "size": "256x256"})  # fmt: skip
    assert response.status_code == 200, response.text
    for name in RATE:
        assert name in response.headers
    body = response.json()
    assert set(body) == {"created", "data", "size", "output_format", "quality", "background"}
    assert body["size"] == "256x256"
    assert (body["output_format"], body["quality"], body["background"]) == ("png", "auto", "opaque")
    (item,) = body["data"]
    assert set(item) == {"b64_json", "revised_prompt", "generation_id", "image_id"}


@pytest.mark.parametrize(
    ("path", "form"),
    [("/v1/images/edits", {"prompt": "bluer", "response_format": "url", "size": "512x512"}),
     ("/v1/images/variations", {"response_format": "url", "size": "512x512"})],
)  # fmt: skip
def test_raw_multipart_answers(app: Running, path: str, form: dict[str, str]) -> None:
    files = {"image": ("a.png", png_bytes(24, 24), "image/png")}
    response = app.client.post(path, headers=bearer(app), files=files, data=form)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"created", "data", "size", "output_format", "quality", "background"}
    assert body["size"] == "512x512"
    (item,) = body["data"]
    assert set(item) == {"url", "revised_prompt", "generation_id", "image_id"}
    assert item["url"].endswith(f"/cdn/default/default/img/{item['image_id']}")
    for name in RATE:
        assert name in response.headers


def test_raw_error_answer(app: Running) -> None:
    response = app.client.post("/v1/images/generations", headers=bearer(app),
                               json={"prompt": "a moth", "size": "3x1"})  # fmt: skip
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["param"] == "size"
    assert body["error"]["code"] == "VALIDATION_ERROR"
    for name in RATE:
        assert name in response.headers
    missing = app.client.get("/v1/models")
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "authentication_error"
    unknown = app.client.get("/v1/nothing", headers=bearer(app))
    assert unknown.status_code == 404
    assert unknown.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("path", "files", "data", "status", "param"),
    [
        ("/v1/images/edits", {}, {"prompt": "x"}, 400, "image"),
        ("/v1/images/edits", {"image": ("a.txt", b"text", "text/plain")}, {"prompt": "x"}, 415,
         "image"),
        ("/v1/images/edits", {"image": ("a.png", png_bytes(), "image/png")}, {}, 400, "prompt"),
        ("/v1/images/edits", {"image": ("a.png", png_bytes(), "image/png")},
         {"prompt": "x", "n": "two"}, 400, "n"),
        ("/v1/images/variations", {}, {"n": "1"}, 400, "image"),
        ("/v1/images/variations", {"image": ("a.gif", b"GIF89a", "image/gif")}, {}, 415, "image"),
    ],
)  # fmt: skip
def test_raw_multipart_errors(
    app: Running, path: str, files: dict[str, Any], data: dict[str, str], status: int,
    param: str,
) -> None:  # fmt: skip
    response = app.client.post(path, headers=bearer(app), files=files or {"_": ("", b"")},
                               data=data)  # fmt: skip
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param


def test_invalid_text_in_a_door_form_field_is_refused(app: Running) -> None:
    before = v1(app, "/api/v1/images").json()["pagination"]["total"]
    for field in ("prompt", "size", "model"):
        body = (
            b'--B\r\nContent-Disposition: form-data; name="' + field.encode() + b'"\r\n\r\n'
            b'a\xed\xa0\x80b\r\n--B\r\nContent-Disposition: form-data; name="image"; '
            b'filename="a.png"\r\nContent-Type: image/png\r\n\r\n' + png_bytes() + b"\r\n--B--\r\n"
        )
        response = app.client.post(
            "/v1/images/edits", content=body,
            headers={**bearer(app), "content-type": "multipart/form-data; boundary=B"},
        )  # fmt: skip
        assert response.status_code == 400, (field, response.text)
        assert response.json()["error"]["type"] == "invalid_request_error"
    assert v1(app, "/api/v1/images").json()["pagination"]["total"] == before


def test_raw_models_answer(app: Running) -> None:
    body = app.client.get("/v1/models", headers=bearer(app)).json()
    assert set(body) == {"object", "data"}
    assert body["object"] == "list"
    assert set(body["data"][0]) == {"id", "object", "created", "owned_by"}
    one = app.client.get(f"/v1/models/{body['data'][0]['id']}", headers=bearer(app)).json()
    assert one == body["data"][0]


def test_bearer_opens_the_v1_api_too(app: Running) -> None:
    response = app.client.get("/api/v1/project", headers=bearer(app))
    assert response.status_code == 200, response.text
    assert response.json()["data"]["slug"] == "default"


# ------------------------------------------------------------ own servers, last
# (a second server in this process rebinds the models' database: module_app's tests
# must all have run before one starts)


def test_rate_limit_is_a_429_the_sdk_understands(start_server: Callable[..., Running]) -> None:
    limited = start_server(limits__requests_per_hour=1)
    with openai.OpenAI(base_url=f"{limited.url}/v1", api_key=limited.project_key or "",
                       max_retries=0) as client:  # fmt: skip
        client.models.list()
        with pytest.raises(openai.RateLimitError) as caught:
            client.images.generate(prompt="x")
    response = caught.value.response
    assert int(response.headers["retry-after"]) > 0
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    assert response.headers["x-ratelimit-limit-requests"] == "1"
    assert caught.value.body["type"] == "rate_limit_error"  # type: ignore[index]


def test_n_images_fail_whole_and_leave_no_half_result(
    start_server: Callable[..., Running], fake_gemini: FakeGemini
) -> None:
    app = start_server(**on_fake_gemini(fake_gemini))
    fake_gemini.queue(Answer("image"), Answer("error", 500))
    with openai.OpenAI(base_url=f"{app.url}/v1", api_key=app.project_key or "",
                       max_retries=0) as client:  # fmt: skip
        with pytest.raises(openai.InternalServerError) as caught:
            client.images.generate(prompt="two owls", n=2, size="256x256")
        assert caught.value.status_code == 502
        assert caught.value.body["code"] == "GENERATION_FAILED"  # type: ignore[index]
        assert "test-key" not in caught.value.message
        generations = app.project("GET", "/api/v1/generations").json()["data"]
        assert [g["status"] for g in generations] == ["failed"]
        assert app.project("GET", "/api/v1/images").json()["pagination"]["total"] == 0
        # and with the provider well again, the same call works
        result = client.images.generate(prompt="two owls", n=2, size="256x256")
        assert len(result.data) == 2
        assert picture(decoded(result.data[0]))[1] == (256, 256)
