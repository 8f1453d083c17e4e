"""Generation routes (API.md §2) over real HTTP with the offline provider: create,
flowId rules, aliases, references, async work, list/get, update, regenerate, retry,
delete, and the failure path with a failing Gemini endpoint."""

from __future__ import annotations

import hashlib
import io
import re
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from PIL import Image

from banatie_local.constants import ASPECT_RATIOS, TEMPLATES
from banatie_local.providers.enhance import template_rewrite
from tests.api.test_errors import assert_error
from tests.conftest import Running
from tests.fakes.gemini import Answer, FakeGemini
from tests.helpers import sqlite
from tests.imagedata import jpeg_bytes, pixels, png_bytes

pytestmark = pytest.mark.both_databases

GENERATIONS = "/api/v1/generations"
UPLOAD = "/api/v1/images/upload"
ISO_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
GENERATION_FIELDS = {
    "id",
    "projectId",
    "flowId",
    "prompt",
    "originalPrompt",
    "autoEnhance",
    "aspectRatio",
    "status",
    "outputImageId",
    "outputImage",
    "referencedImages",
    "referenceImages",
    "processingTimeMs",
    "retryCount",
    "errorMessage",
    "meta",
    "createdAt",
    "updatedAt",
}
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
OFFLINE_MODEL = "offline-renderer-1"


# --------------------------------------------------------------------- fixtures


def _require_rate_headers(response: httpx.Response) -> None:
    """Every response of a known /api/v1 route must carry the rate-limit headers
    (unknown routes are 404 before authentication, so they are not counted)."""
    if response.request.url.path.startswith(("/api/v1/generations", "/api/v1/images")):
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


def data_of(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is True
    return body["data"]


def generate(app: Running, status: int = 201, **body: Any) -> dict[str, Any]:
    """POST a generation and return its object; it must answer ``status``."""
    body.setdefault("prompt", "a red fox in the snow")
    generation: dict[str, Any] = data_of(app.project("POST", GENERATIONS, json=body), status)
    return generation


def fetch(app: Running, generation_id: str) -> dict[str, Any]:
    generation: dict[str, Any] = data_of(app.project("GET", f"{GENERATIONS}/{generation_id}"))
    return generation


def upload(app: Running, data: bytes | None = None, **fields: str) -> dict[str, Any]:
    files = {"file": ("image.png", png_bytes() if data is None else data, "image/png")}
    image: dict[str, Any] = data_of(
        app.project("POST", UPLOAD, files=files, data=fields), status=201
    )
    return image


def cdn(app: Running, image: dict[str, Any], ref: str | None = None) -> httpx.Response:
    """The public image route for ``image`` (by id, or by ``ref`` if given)."""
    path = urlsplit(image["storageUrl"]).path
    if ref is not None:
        path = path.rsplit("/", 1)[0] + "/" + ref
    return app.client.get(path)


def cdn_bytes(app: Running, image: dict[str, Any], ref: str | None = None) -> bytes:
    response = cdn(app, image, ref)
    assert response.status_code == 200, response.text
    return response.content


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return img.size


def query(app: Running, sql: str, *params: Any) -> list[dict[str, Any]]:
    with sqlite(app.settings.database_path) as db:
        return [dict(row) for row in db.execute(sql, params)]


def count(app: Running, table: str) -> int:
    with sqlite(app.settings.database_path) as db:
        return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def flow_exists(app: Running, flow_id: str) -> bool:
    return bool(query(app, "SELECT id FROM flows WHERE id = ?", flow_id))


def generation_row(app: Running, generation_id: str) -> dict[str, Any] | None:
    rows = query(app, "SELECT * FROM generations WHERE id = ?", generation_id)
    return rows[0] if rows else None


def image_row(app: Running, image_id: str) -> dict[str, Any] | None:
    rows = query(app, "SELECT * FROM images WHERE id = ?", image_id)
    return rows[0] if rows else None


def stored(app: Running, table: str, row_id: str, column: str) -> Any:
    """One column of a row, which must exist."""
    found = query(app, f"SELECT {column} FROM {table} WHERE id = ?", row_id)
    assert len(found) == 1, f"{table} has no row {row_id}"
    return found[0][column]


def is_uuid4(value: Any) -> bool:
    return (
        isinstance(value, str) and str(uuid.UUID(value)) == value and uuid.UUID(value).version == 4
    )


def new_flow_id() -> str:
    return str(uuid.uuid4())


def ref_ids(generation: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(r["imageId"], r["alias"]) for r in generation["referencedImages"]]


# ======================================================================= create


def test_create_answers_201_with_the_full_generation(app: Running) -> None:
    """A synchronous create returns every field, with the output image expanded."""
    response = app.project("POST", GENERATIONS, json={"prompt": "a red fox in the snow"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"success", "data"}
    generation = body["data"]
    assert set(generation) == GENERATION_FIELDS

    project = data_of(app.project("GET", "/api/v1/project"))
    assert is_uuid4(generation["id"])
    assert generation["projectId"] == project["id"]
    assert is_uuid4(generation["flowId"])
    assert generation["status"] == "success"
    assert generation["aspectRatio"] == "1:1"
    assert generation["autoEnhance"] is True
    assert generation["originalPrompt"] == "a red fox in the snow"
    assert generation["prompt"] == template_rewrite("a red fox in the snow", "general")
    assert generation["referencedImages"] == []
    assert generation["referenceImages"] == []
    assert isinstance(generation["processingTimeMs"], int)
    assert generation["processingTimeMs"] >= 0
    assert generation["retryCount"] == 0
    assert generation["errorMessage"] is None
    assert generation["meta"]["provider"] == "offline"
    assert generation["meta"]["model"] == OFFLINE_MODEL
    assert ISO_RE.match(generation["createdAt"])
    assert ISO_RE.match(generation["updatedAt"])

    image = generation["outputImage"]
    assert set(image) == IMAGE_FIELDS
    assert generation["outputImageId"] == image["id"]
    assert is_uuid4(image["id"])
    assert image["projectId"] == project["id"]
    assert image["flowId"] == generation["flowId"]
    assert image["generationId"] == generation["id"]
    assert image["source"] == "generated"
    assert image["storageKey"] == f"default/default/img/{image['id']}"
    assert image["storageUrl"].endswith(f"/cdn/default/default/img/{image['id']}")
    assert image["mimeType"] == "image/png"
    assert (image["width"], image["height"]) == (1024, 1024)
    assert image["alias"] is None
    assert image["focalPoint"] is None
    assert ISO_RE.match(image["createdAt"])

    served = cdn_bytes(app, image)
    assert image["fileHash"] == sha256(served)
    assert image["fileSize"] == len(served)
    assert size_of(served) == (1024, 1024)
    assert (app.settings.storage_root / image["storageKey"]).read_bytes() == served

    row = generation_row(app, generation["id"])
    assert row is not None
    assert row["status"] == "success"
    assert row["output_image_id"] == image["id"]


@pytest.mark.parametrize("ratio", list(ASPECT_RATIOS))
def test_each_aspect_ratio_renders_its_exact_size(app: Running, ratio: str) -> None:
    """The offline provider draws the exact §1.3 size, and the row records it."""
    generation = generate(app, prompt="a quiet harbour", aspectRatio=ratio)
    image = generation["outputImage"]
    expected = ASPECT_RATIOS[ratio]
    assert generation["aspectRatio"] == ratio
    assert (image["width"], image["height"]) == expected
    served = cdn_bytes(app, image)
    assert size_of(served) == expected
    assert image["fileHash"] == sha256(served)


def test_auto_enhance_false_keeps_the_prompt(app: Running) -> None:
    generation = generate(app, prompt="a red fox", autoEnhance=False)
    assert generation["autoEnhance"] is False
    assert generation["prompt"] == "a red fox"
    assert generation["originalPrompt"] is None


def test_each_template_enhances_differently(app: Running) -> None:
    """All seven templates keep the user's text and rewrite it each its own way."""
    prompts = {}
    for template in TEMPLATES:
        generation = generate(
            app, prompt="a red fox", enhancementOptions={"template": template}, flowId=None
        )
        assert generation["originalPrompt"] == "a red fox"
        assert generation["prompt"].startswith("a red fox")
        assert generation["prompt"] != "a red fox"
        prompts[template] = generation["prompt"]
    assert len(set(prompts.values())) == len(TEMPLATES)
    default = generate(app, prompt="a red fox", flowId=None)
    assert default["prompt"] == prompts["general"]
    assert generate(app, prompt="a red fox", enhancementOptions={})["prompt"] == prompts["general"]


@pytest.mark.parametrize(
    "options",
    [{"template": "watercolour"}, {"template": 3}, {"template": ""}, "comic", ["comic"]],
)
def test_bad_enhancement_options_are_rejected(app: Running, options: Any) -> None:
    response = app.project(
        "POST", GENERATIONS, json={"prompt": "a fox", "enhancementOptions": options}
    )
    assert_error(response, 400, "VALIDATION_ERROR")
    assert count(app, "generations") == 0


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"prompt": ""},
        {"prompt": "   \n\t "},
        {"prompt": "x" * 5001},
        {"prompt": 42},
        {"prompt": None},
        {"prompt": ["a fox"]},
        {"prompt": {"text": "a fox"}},
    ],
    ids=["missing", "empty", "whitespace", "too-long", "number", "null", "array", "object"],
)
def test_invalid_prompt_is_a_validation_error(app: Running, body: dict[str, Any]) -> None:
    """The error names ``prompt``, and nothing is recorded."""
    error = assert_error(app.project("POST", GENERATIONS, json=body), 400, "VALIDATION_ERROR")
    assert error["details"] == {"field": "prompt"}
    assert "prompt" in str(error["message"])
    assert count(app, "generations") == 0
    assert count(app, "images") == 0


def test_prompt_is_trimmed_and_5000_characters_after_trim_are_allowed(app: Running) -> None:
    text = "y" * 5000
    generation = generate(app, prompt=f"  \n{text}\t  ", autoEnhance=False)
    assert generation["prompt"] == text
    enhanced = generate(app, prompt="   a lighthouse at dusk   ")
    assert enhanced["originalPrompt"] == "a lighthouse at dusk"
    assert enhanced["prompt"] == template_rewrite("a lighthouse at dusk", "general")


@pytest.mark.parametrize("ratio", ["5:4", "16:10", "1:1 ", "16/9", "1x1", "wide"])
def test_unknown_aspect_ratio_is_rejected(app: Running, ratio: str) -> None:
    response = app.project("POST", GENERATIONS, json={"prompt": "a fox", "aspectRatio": ratio})
    error = assert_error(response, 400, "INVALID_ASPECT_RATIO")
    assert error["details"] == {"field": "aspectRatio"}
    assert count(app, "generations") == 0


def test_empty_aspect_ratio_is_rejected(app: Running) -> None:
    response = app.project("POST", GENERATIONS, json={"prompt": "a fox", "aspectRatio": ""})
    assert_error(response, 400, "INVALID_ASPECT_RATIO")


def test_aspect_ratio_of_the_wrong_type_is_a_validation_error(app: Running) -> None:
    response = app.project("POST", GENERATIONS, json={"prompt": "a fox", "aspectRatio": 1.5})
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["details"] == {"field": "aspectRatio"}


@pytest.mark.parametrize(
    "payload", [b"", b"{not json", b"[1, 2]", b'["a fox"]', b'"a fox"', b"42", b"null"]
)
def test_body_that_is_not_a_json_object_is_rejected(app: Running, payload: bytes) -> None:
    response = app.project(
        "POST", GENERATIONS, content=payload, headers={"Content-Type": "application/json"}
    )
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["details"] == {"field": "body"}
    assert count(app, "generations") == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("autoEnhance", "yes"),
        ("meta", "text"),
        ("meta", [1]),
        ("referenceImages", "@hero"),
        ("referenceImages", [5]),
        ("alias", 7),
    ],
)
def test_fields_of_the_wrong_type_are_named(app: Running, field: str, value: Any) -> None:
    response = app.project("POST", GENERATIONS, json={"prompt": "a fox", field: value})
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["details"] == {"field": field}
    assert count(app, "generations") == 0


def test_unknown_fields_are_ignored(app: Running) -> None:
    generation = generate(app, prompt="a fox", colour="blue", steps=30)
    assert generation["status"] == "success"


def test_user_meta_is_kept_next_to_the_provider_facts(app: Running) -> None:
    generation = generate(app, meta={"campaign": "spring", "n": 2})
    assert generation["meta"] == {
        "campaign": "spring",
        "n": 2,
        "provider": "offline",
        "model": OFFLINE_MODEL,
    }


# ======================================================================= flowId


def test_absent_flow_id_announces_a_flow_without_creating_it(app: Running) -> None:
    """A new flow id is returned, remembered by generation and image, but no row yet;
    a later generation that uses the id creates the flow row."""
    first = generate(app)
    flow_id = first["flowId"]
    assert is_uuid4(flow_id)
    assert first["outputImage"]["flowId"] == flow_id
    assert app.project("GET", f"/api/v1/flows/{flow_id}").status_code == 404
    assert not flow_exists(app, flow_id)
    assert count(app, "flows") == 0
    assert stored(app, "generations", first["id"], "flow_id") == flow_id
    assert stored(app, "images", first["outputImageId"], "flow_id") == flow_id

    second = generate(app, prompt="the same fox at night", flowId=flow_id)
    assert second["flowId"] == flow_id
    assert flow_exists(app, flow_id)
    assert count(app, "flows") == 1
    listed = data_of(app.project("GET", GENERATIONS, params={"flowId": flow_id}))
    assert [g["id"] for g in listed] == [second["id"], first["id"]]


def test_each_generation_without_flow_id_gets_its_own(app: Running) -> None:
    assert generate(app)["flowId"] != generate(app)["flowId"]


def test_null_flow_id_means_no_flow(app: Running) -> None:
    generation = generate(app, flowId=None)
    assert generation["flowId"] is None
    assert generation["outputImage"]["flowId"] is None
    assert stored(app, "generations", generation["id"], "flow_id") is None
    assert stored(app, "images", generation["outputImageId"], "flow_id") is None
    assert count(app, "flows") == 0


def test_uuid_flow_id_is_used_and_its_row_created(app: Running) -> None:
    flow_id = new_flow_id()
    generation = generate(app, flowId=flow_id)
    assert generation["flowId"] == flow_id
    assert generation["outputImage"]["flowId"] == flow_id
    assert flow_exists(app, flow_id)
    again = generate(app, flowId=flow_id, prompt="another fox")
    assert again["flowId"] == flow_id
    assert count(app, "flows") == 1


@pytest.mark.parametrize("flow_id", ["flow-1", "", "1234", 17, {"id": "x"}, ["a"]])
def test_invalid_flow_id_is_rejected(app: Running, flow_id: Any) -> None:
    error = assert_error(
        app.project("POST", GENERATIONS, json={"prompt": "a fox", "flowId": flow_id}),
        400,
        "VALIDATION_ERROR",
    )
    assert error["details"] == {"field": "flowId"}
    assert count(app, "generations") == 0
    assert count(app, "flows") == 0


def test_another_projects_flow_is_not_found(app: Running) -> None:
    """A flow row of another project cannot be joined, on create or on update."""
    headers = {"X-API-Key": app.new_project_key()}
    flow_id = new_flow_id()
    theirs = app.client.post(
        GENERATIONS, json={"prompt": "their fox", "flowId": flow_id}, headers=headers
    )
    data_of(theirs, 201)
    response = app.project("POST", GENERATIONS, json={"prompt": "a fox", "flowId": flow_id})
    assert_error(response, 404, "FLOW_NOT_FOUND")
    assert data_of(app.project("GET", GENERATIONS)) == []

    mine = generate(app, flowId=None)
    response = app.project("PUT", f"{GENERATIONS}/{mine['id']}", json={"flowId": flow_id})
    assert_error(response, 404, "FLOW_NOT_FOUND")
    assert fetch(app, mine["id"]) == mine


def test_announced_flow_id_stays_with_its_project(app: Running) -> None:
    headers = {"X-API-Key": app.new_project_key()}
    theirs = data_of(app.client.post(GENERATIONS, json={"prompt": "x"}, headers=headers), 201)
    announced = theirs["flowId"]
    app.project("POST", GENERATIONS, json={"prompt": "a fox", "flowId": announced})
    again = app.client.post(GENERATIONS, json={"prompt": "y", "flowId": announced}, headers=headers)
    assert again.status_code == 201, again.text


def test_flow_alias_creates_the_flow_at_once_and_maps_the_output(app: Running) -> None:
    generation = generate(app, flowAlias="@bg")
    flow_id = generation["flowId"]
    assert is_uuid4(flow_id)
    assert flow_exists(app, flow_id)
    rows = query(app, "SELECT flow_id, alias, image_id FROM flow_aliases")
    assert rows == [{"flow_id": flow_id, "alias": "@bg", "image_id": generation["outputImageId"]}]
    # a flow alias is not a project alias
    assert generation["outputImage"]["alias"] is None
    found = data_of(app.project("GET", "/api/v1/images/@bg", params={"flowId": flow_id}))
    assert found["id"] == generation["outputImageId"]


def test_flow_alias_in_a_given_flow(app: Running) -> None:
    flow_id = new_flow_id()
    first = generate(app, flowId=flow_id, flowAlias="@hero")
    second = generate(app, flowId=flow_id, flowAlias="@hero", prompt="another fox")
    rows = query(app, "SELECT flow_id, alias, image_id FROM flow_aliases")
    assert rows == [{"flow_id": flow_id, "alias": "@hero", "image_id": second["outputImageId"]}]
    assert first["outputImageId"] != second["outputImageId"]


def test_flow_alias_with_null_flow_is_rejected(app: Running) -> None:
    response = app.project(
        "POST", GENERATIONS, json={"prompt": "a fox", "flowId": None, "flowAlias": "@bg"}
    )
    assert_error(response, 400, "VALIDATION_ERROR")
    assert count(app, "generations") == 0


# ======================================================================== alias


def test_alias_moves_to_the_newest_generation(app: Running) -> None:
    """A second generation with the same alias takes it; the first image loses it,
    and the public alias URL serves the new image at once."""
    first = generate(app, alias="@hero")
    assert first["outputImage"]["alias"] == "@hero"
    old_bytes = cdn_bytes(app, first["outputImage"], "@hero")
    assert sha256(old_bytes) == first["outputImage"]["fileHash"]

    second = generate(app, alias="@hero", prompt="a blue whale")
    assert second["outputImage"]["alias"] == "@hero"
    first_image = data_of(app.project("GET", f"/api/v1/images/{first['outputImageId']}"))
    assert first_image["alias"] is None
    assert stored(app, "images", first["outputImageId"], "alias") is None
    assert data_of(app.project("GET", "/api/v1/images/@hero"))["id"] == second["outputImageId"]
    new_bytes = cdn_bytes(app, second["outputImage"], "@hero")
    assert sha256(new_bytes) == second["outputImage"]["fileHash"]
    assert new_bytes != old_bytes


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("alias", "hero", "INVALID_ALIAS_FORMAT"),
        ("alias", "@" + "a" * 50, "INVALID_ALIAS_FORMAT"),
        ("alias", "@bad name", "INVALID_ALIAS_FORMAT"),
        ("alias", "@last", "RESERVED_ALIAS"),
        ("flowAlias", "@upload", "RESERVED_ALIAS"),
        ("flowAlias", "bg", "INVALID_ALIAS_FORMAT"),
    ],
)
def test_bad_aliases_are_rejected(app: Running, field: str, value: str, code: str) -> None:
    response = app.project("POST", GENERATIONS, json={"prompt": "a fox", field: value})
    assert_error(response, 400, code)
    assert count(app, "generations") == 0
    assert count(app, "flows") == 0


# =================================================================== references


@pytest.fixture
def refs(app: Running) -> dict[str, dict[str, Any]]:
    """Four uploaded images of different colours; two carry project aliases."""
    return {
        "hero": upload(app, png_bytes(16, 16, (250, 20, 20)), alias="@hero"),
        "sky": upload(app, jpeg_bytes(16, 16, (20, 60, 250)), alias="@sky"),
        "grass": upload(app, png_bytes(16, 16, (20, 200, 40))),
        "sun": upload(app, png_bytes(16, 16, (250, 220, 0))),
    }


def test_explicit_references_by_id_and_alias(app: Running, refs: dict[str, Any]) -> None:
    generation = generate(app, referenceImages=[refs["grass"]["id"], "@hero"])
    assert ref_ids(generation) == [(refs["grass"]["id"], None), (refs["hero"]["id"], "@hero")]
    expanded = generation["referenceImages"]
    assert [image["id"] for image in expanded] == [refs["grass"]["id"], refs["hero"]["id"]]
    assert all(set(image) == IMAGE_FIELDS for image in expanded)
    assert expanded[1] == data_of(app.project("GET", f"/api/v1/images/{refs['hero']['id']}"))
    rows = query(
        app,
        "SELECT position, image_id, alias FROM generation_references"
        " WHERE generation_id = ? ORDER BY position",
        generation["id"],
    )
    assert rows == [
        {"position": 0, "image_id": refs["grass"]["id"], "alias": None},
        {"position": 1, "image_id": refs["hero"]["id"], "alias": "@hero"},
    ]
    assert fetch(app, generation["id"])["referenceImages"] == expanded


def test_prompt_aliases_become_references(app: Running, refs: dict[str, Any]) -> None:
    generation = generate(app, prompt="a cat like @hero")
    assert ref_ids(generation) == [(refs["hero"]["id"], "@hero")]
    assert generation["originalPrompt"] == "a cat like @hero"


def test_explicit_references_come_first_then_prompt_aliases_without_duplicates(
    app: Running, refs: dict[str, Any]
) -> None:
    generation = generate(
        app,
        prompt="@hero meets the sun under @sky, @hero again",
        referenceImages=[refs["grass"]["id"], "@sky", refs["grass"]["id"]],
    )
    assert ref_ids(generation) == [
        (refs["grass"]["id"], None),
        (refs["sky"]["id"], "@sky"),
        (refs["hero"]["id"], "@hero"),
    ]


def test_duplicates_are_removed_by_image_id_keeping_the_first(
    app: Running, refs: dict[str, Any]
) -> None:
    """An id and an alias naming one image count once, as the first mention."""
    generation = generate(app, prompt="like @hero", referenceImages=[refs["hero"]["id"]])
    assert ref_ids(generation) == [(refs["hero"]["id"], None)]


def test_many_mentions_of_three_images_are_allowed(app: Running, refs: dict[str, Any]) -> None:
    hero, grass = refs["hero"]["id"], refs["grass"]["id"]
    generation = generate(
        app, prompt="@hero and @sky and @hero", referenceImages=[hero, grass, hero, "@hero"]
    )
    assert [r[0] for r in ref_ids(generation)] == [hero, grass, refs["sky"]["id"]]


def test_more_than_three_explicit_references_are_rejected(
    app: Running, refs: dict[str, Any]
) -> None:
    ids = [image["id"] for image in refs.values()]
    response = app.project("POST", GENERATIONS, json={"prompt": "a fox", "referenceImages": ids})
    assert_error(response, 400, "TOO_MANY_REFERENCES")
    assert count(app, "generations") == 0


def test_more_than_three_after_merging_prompt_aliases_is_rejected(
    app: Running, refs: dict[str, Any]
) -> None:
    response = app.project(
        "POST",
        GENERATIONS,
        json={
            "prompt": "with @hero and @sky",
            "referenceImages": [refs["grass"]["id"], refs["sun"]["id"]],
        },
    )
    assert_error(response, 400, "TOO_MANY_REFERENCES")
    assert count(app, "generations") == 0
    assert count(app, "generation_references") == 0


@pytest.mark.parametrize(
    "ref",
    [str(uuid.uuid4()), "@nobody", "not-an-id", "@bad name"],
    ids=["unknown-id", "unknown-alias", "garbage", "malformed-alias"],
)
def test_unknown_explicit_reference_is_rejected(app: Running, ref: str) -> None:
    response = app.project("POST", GENERATIONS, json={"prompt": "a fox", "referenceImages": [ref]})
    assert_error(response, 400, "REFERENCE_NOT_FOUND")
    assert count(app, "generations") == 0
    assert count(app, "images") == 0


def test_another_projects_image_is_not_a_reference(app: Running) -> None:
    other_key = app.new_project_key()
    files = {"file": ("x.png", png_bytes(), "image/png")}
    response = app.client.post(UPLOAD, files=files, headers={"X-API-Key": other_key})
    foreign = data_of(response, 201)
    response = app.project(
        "POST", GENERATIONS, json={"prompt": "a fox", "referenceImages": [foreign["id"]]}
    )
    assert_error(response, 400, "REFERENCE_NOT_FOUND")


@pytest.mark.parametrize("alias", ["@last", "@first", "@upload"])
def test_technical_alias_without_a_flow_needs_flow_context(app: Running, alias: str) -> None:
    generate(app)
    response = app.project(
        "POST", GENERATIONS, json={"prompt": "a fox", "flowId": None, "referenceImages": [alias]}
    )
    assert_error(response, 400, "FLOW_CONTEXT_REQUIRED")
    assert count(app, "generations") == 1


def test_last_without_flow_id_needs_flow_context(app: Running) -> None:
    """No flowId sent: the client gave no flow for ``@last`` to refer to."""
    generate(app)
    response = app.project(
        "POST", GENERATIONS, json={"prompt": "a fox", "referenceImages": ["@last"]}
    )
    assert_error(response, 400, "FLOW_CONTEXT_REQUIRED")


def test_last_without_flow_id_is_rejected(app: Running) -> None:
    """Whatever the code, an absent flowId never lets ``@last`` resolve."""
    generate(app)
    response = app.project(
        "POST", GENERATIONS, json={"prompt": "a fox", "referenceImages": ["@last"]}
    )
    assert response.status_code == 400, response.text
    assert count(app, "generations") == 1


def test_technical_aliases_resolve_in_the_flow(app: Running) -> None:
    """``@last`` is the flow's newest generated image, ``@first`` its oldest."""
    flow_id = new_flow_id()
    first = generate(app, flowId=flow_id, prompt="one")
    second = generate(app, flowId=flow_id, prompt="two")
    generate(app, flowId=new_flow_id(), prompt="elsewhere")
    upload(app, png_bytes(), flowId=flow_id)

    with_last = generate(app, flowId=flow_id, prompt="three", referenceImages=["@last"])
    assert ref_ids(with_last) == [(second["outputImageId"], "@last")]
    with_first = generate(app, flowId=flow_id, prompt="four", referenceImages=["@first"])
    assert ref_ids(with_first) == [(first["outputImageId"], "@first")]
    in_prompt = generate(app, flowId=flow_id, prompt="like @last")
    assert ref_ids(in_prompt) == [(with_first["outputImageId"], "@last")]


def test_last_in_a_flow_without_generated_images_is_not_found(app: Running) -> None:
    flow_id = new_flow_id()
    upload(app, png_bytes(), flowId=flow_id)
    response = app.project(
        "POST",
        GENERATIONS,
        json={"prompt": "a fox", "flowId": flow_id, "referenceImages": ["@last"]},
    )
    assert_error(response, 400, "REFERENCE_NOT_FOUND")


def test_unknown_prompt_aliases_are_ignored(app: Running, refs: dict[str, Any]) -> None:
    generation = generate(
        app, prompt="a cat like @nobody, mail me@hero.com, @last and @hero", flowId=None
    )
    assert generation["status"] == "success"
    assert ref_ids(generation) == [(refs["hero"]["id"], "@hero")]


def test_references_influence_the_offline_image(app: Running, refs: dict[str, Any]) -> None:
    """Same prompt: the same picture without references, another one with one."""
    plain = generate(app, prompt="a tall tower", autoEnhance=False, flowId=None)
    again = generate(app, prompt="a tall tower", autoEnhance=False, flowId=None)
    with_ref = generate(
        app, prompt="a tall tower", autoEnhance=False, flowId=None, referenceImages=["@hero"]
    )
    other_ref = generate(
        app, prompt="a tall tower", autoEnhance=False, flowId=None, referenceImages=["@sky"]
    )
    outputs = [g["outputImage"] for g in (plain, again, with_ref, other_ref)]
    # the files differ by the ids they carry (API.md §14): compare what they show
    shown = [sha256(pixels(cdn_bytes(app, image))[1]) for image in outputs]
    assert shown[0] == shown[1]
    assert len({shown[0], shown[2], shown[3]}) == 3
    assert sha256(cdn_bytes(app, outputs[2])) == outputs[2]["fileHash"]


def test_deleting_a_reference_image_removes_it_from_the_generation(
    app: Running, refs: dict[str, Any]
) -> None:
    generation = generate(app, referenceImages=["@hero", "@sky"])
    data_of(app.project("DELETE", f"/api/v1/images/{refs['hero']['id']}"))
    after = fetch(app, generation["id"])
    assert ref_ids(after) == [(refs["sky"]["id"], "@sky")]
    assert [image["id"] for image in after["referenceImages"]] == [refs["sky"]["id"]]


# ======================================================================== async


def wait_for_status(
    app: Running, generation_id: str, statuses: set[str], timeout: float = 10.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        generation = fetch(app, generation_id)
        if generation["status"] in statuses:
            return generation
        if time.monotonic() > deadline:
            pytest.fail(f"generation stayed {generation['status']} for {timeout} s")
        time.sleep(0.05)


@pytest.mark.parametrize("prefer", ["respond-async", "wait=10, Respond-Async"])
def test_prefer_respond_async_answers_202_at_once(app: Running, prefer: str) -> None:
    response = app.project(
        "POST",
        GENERATIONS,
        json={"prompt": "a slow fox", "aspectRatio": "16:9"},
        headers={"Prefer": prefer},
    )
    accepted = data_of(response, 202)
    assert set(accepted) == GENERATION_FIELDS
    assert accepted["status"] in {"pending", "processing"}
    assert accepted["outputImage"] is None
    assert accepted["outputImageId"] is None
    assert accepted["errorMessage"] is None

    done = wait_for_status(app, accepted["id"], {"success", "failed"})
    assert done["status"] == "success", done["errorMessage"]
    assert done["id"] == accepted["id"]
    image = done["outputImage"]
    assert (image["width"], image["height"]) == (1792, 1008)
    assert image["generationId"] == accepted["id"]
    assert sha256(cdn_bytes(app, image)) == image["fileHash"]
    assert done["meta"]["provider"] == "offline"


def test_async_generation_validates_before_answering(app: Running) -> None:
    response = app.project(
        "POST", GENERATIONS, json={"prompt": " "}, headers={"Prefer": "respond-async"}
    )
    assert_error(response, 400, "VALIDATION_ERROR")
    assert count(app, "generations") == 0


def test_deleting_a_running_generation_leaves_nothing_behind(app: Running) -> None:
    """Deleted while pending or processing: no row, image or file survives the run."""
    for n in range(3):
        accepted = data_of(
            app.project(
                "POST",
                GENERATIONS,
                json={"prompt": f"a fox {n}", "aspectRatio": "21:9"},
                headers={"Prefer": "respond-async"},
            ),
            202,
        )
        time.sleep(0.03 * n)
        assert data_of(app.project("DELETE", f"{GENERATIONS}/{accepted['id']}")) == {
            "id": accepted["id"]
        }
    deadline = time.monotonic() + 10
    while app.services.generations._tasks and time.monotonic() < deadline:
        time.sleep(0.05)
    assert count(app, "generations") == 0
    assert count(app, "images") == 0
    stored = [p for p in app.settings.storage_root.rglob("*") if p.is_file()]
    assert stored == []


# ===================================================================== list/get


def test_list_is_newest_first_with_pagination(app: Running) -> None:
    ids = [generate(app, prompt=f"fox number {n}", flowId=None)["id"] for n in range(5)]
    body = app.project("GET", GENERATIONS).json()
    assert body["success"] is True
    assert [g["id"] for g in body["data"]] == ids[::-1]
    assert body["pagination"] == {"total": 5, "limit": 20, "offset": 0, "hasMore": False}
    assert set(body["data"][0]) == GENERATION_FIELDS
    assert body["data"][0]["outputImage"]["id"] == body["data"][0]["outputImageId"]

    page = app.project("GET", GENERATIONS, params={"limit": 2, "offset": 1}).json()
    assert [g["id"] for g in page["data"]] == [ids[3], ids[2]]
    assert page["pagination"] == {"total": 5, "limit": 2, "offset": 1, "hasMore": True}
    last = app.project("GET", GENERATIONS, params={"limit": 2, "offset": 4}).json()
    assert last["pagination"]["hasMore"] is False
    assert [g["id"] for g in last["data"]] == [ids[0]]
    deleted = app.project("GET", GENERATIONS, params={"includeDeleted": "true"})
    assert len(data_of(deleted)) == 5
    clamped = app.project("GET", GENERATIONS, params={"limit": 0, "offset": -3}).json()
    assert clamped["pagination"] == {"total": 5, "limit": 1, "offset": 0, "hasMore": True}
    assert [g["id"] for g in clamped["data"]] == [ids[4]]


def test_list_filters_by_flow_and_status(app: Running) -> None:
    flow_id = new_flow_id()
    in_flow = [generate(app, flowId=flow_id, prompt=f"in flow {n}")["id"] for n in range(2)]
    generate(app, prompt="elsewhere")
    listed = data_of(app.project("GET", GENERATIONS, params={"flowId": flow_id}))
    assert [g["id"] for g in listed] == in_flow[::-1]
    assert data_of(app.project("GET", GENERATIONS, params={"flowId": new_flow_id()})) == []

    assert len(data_of(app.project("GET", GENERATIONS, params={"status": "success"}))) == 3
    for status in ("failed", "pending", "processing"):
        response = app.project("GET", GENERATIONS, params={"status": status})
        assert data_of(response) == []
        assert response.json()["pagination"]["total"] == 0


@pytest.mark.parametrize(
    "params",
    [{"status": "done"}, {"status": "SUCCESS"}, {"flowId": "nope"}, {"limit": "ten"}],
)
def test_bad_list_filters_are_rejected(app: Running, params: dict[str, str]) -> None:
    error = assert_error(app.project("GET", GENERATIONS, params=params), 400, "VALIDATION_ERROR")
    assert error["details"] == {"field": next(iter(params))}


def test_get_answers_the_same_object_as_create(app: Running) -> None:
    created = generate(app, alias="@fox", meta={"k": "v"})
    assert fetch(app, created["id"]) == created


@pytest.mark.parametrize("ref", [str(uuid.uuid4()), "garbage", "@fox", "12345"])
def test_unknown_generation_is_404(app: Running, ref: str) -> None:
    generate(app, alias="@fox")
    for method, suffix in [
        ("GET", ""),
        ("PUT", ""),
        ("DELETE", ""),
        ("POST", "/regenerate"),
        ("POST", "/retry"),
    ]:
        kwargs: dict[str, Any] = {"json": {"meta": {}}} if method == "PUT" else {}
        response = app.project(method, f"{GENERATIONS}/{ref}{suffix}", **kwargs)
        assert_error(response, 404, "GENERATION_NOT_FOUND")


def test_another_projects_generation_is_404(app: Running) -> None:
    mine = generate(app)
    other_key = app.new_project_key()
    headers = {"X-API-Key": other_key}
    theirs = data_of(
        app.client.post(GENERATIONS, json={"prompt": "their fox"}, headers=headers), 201
    )
    assert theirs["projectId"] != mine["projectId"]
    for method, suffix in [
        ("GET", ""),
        ("PUT", ""),
        ("DELETE", ""),
        ("POST", "/regenerate"),
        ("POST", "/retry"),
    ]:
        kwargs: dict[str, Any] = {"json": {"prompt": "stolen"}} if method == "PUT" else {}
        response = app.client.request(
            method, f"{GENERATIONS}/{mine['id']}{suffix}", headers=headers, **kwargs
        )
        assert_error(response, 404, "GENERATION_NOT_FOUND")
    assert [g["id"] for g in data_of(app.project("GET", GENERATIONS))] == [mine["id"]]
    listed = data_of(app.client.get(GENERATIONS, headers=headers))
    assert [g["id"] for g in listed] == [theirs["id"]]
    assert fetch(app, mine["id"]) == mine


# ========================================================================== PUT


def test_put_meta_replaces_user_meta_and_keeps_provider_facts(app: Running) -> None:
    created = generate(app, meta={"a": 1, "b": 2})
    updated = data_of(app.project("PUT", f"{GENERATIONS}/{created['id']}", json={"meta": {"c": 3}}))
    assert updated["meta"] == {"c": 3, "provider": "offline", "model": OFFLINE_MODEL}
    assert updated["outputImage"]["fileHash"] == created["outputImage"]["fileHash"]
    assert updated["retryCount"] == 0
    assert updated["prompt"] == created["prompt"]
    assert fetch(app, created["id"])["meta"] == updated["meta"]

    cleared = data_of(app.project("PUT", f"{GENERATIONS}/{created['id']}", json={"meta": None}))
    assert cleared["meta"] == {"provider": "offline", "model": OFFLINE_MODEL}


def test_put_cannot_overwrite_provider_facts(app: Running) -> None:
    created = generate(app)
    updated = data_of(
        app.project(
            "PUT",
            f"{GENERATIONS}/{created['id']}",
            json={"meta": {"provider": "gemini", "model": "x", "note": "n"}},
        )
    )
    assert updated["meta"] == {"provider": "offline", "model": OFFLINE_MODEL, "note": "n"}


def test_put_flow_id_null_detaches_generation_and_image(app: Running) -> None:
    flow_id = new_flow_id()
    created = generate(app, flowId=flow_id)
    updated = data_of(app.project("PUT", f"{GENERATIONS}/{created['id']}", json={"flowId": None}))
    assert updated["flowId"] is None
    assert updated["outputImage"]["flowId"] is None
    assert stored(app, "generations", created["id"], "flow_id") is None
    assert stored(app, "images", created["outputImageId"], "flow_id") is None
    assert updated["outputImage"]["fileHash"] == created["outputImage"]["fileHash"]
    assert data_of(app.project("GET", GENERATIONS, params={"flowId": flow_id})) == []


def test_put_flow_id_attaches_and_creates_the_flow(app: Running) -> None:
    created = generate(app, flowId=None)
    flow_id = new_flow_id()
    updated = data_of(
        app.project("PUT", f"{GENERATIONS}/{created['id']}", json={"flowId": flow_id})
    )
    assert updated["flowId"] == flow_id
    assert updated["outputImage"]["flowId"] == flow_id
    assert flow_exists(app, flow_id)
    assert stored(app, "images", created["outputImageId"], "flow_id") == flow_id
    last = data_of(app.project("GET", "/api/v1/images/@last", params={"flowId": flow_id}))
    assert last["id"] == created["outputImageId"]


def test_put_prompt_regenerates_in_place(app: Running) -> None:
    """Same image id, key and URL; new bytes, served at once by the public route."""
    created = generate(app, prompt="a red fox", alias="@fox")
    before = created["outputImage"]
    old_bytes = cdn_bytes(app, before)
    assert cdn_bytes(app, before, "@fox") == old_bytes  # both keys now cached

    updated = data_of(
        app.project("PUT", f"{GENERATIONS}/{created['id']}", json={"prompt": "a green owl"})
    )
    after = updated["outputImage"]
    assert updated["status"] == "success"
    assert updated["originalPrompt"] == "a green owl"
    assert updated["prompt"] == template_rewrite("a green owl", "general")
    assert updated["outputImageId"] == created["outputImageId"]
    assert after["id"] == before["id"]
    assert after["storageKey"] == before["storageKey"]
    assert after["storageUrl"] == before["storageUrl"]
    assert after["alias"] == "@fox"
    assert after["fileHash"] != before["fileHash"]

    new_bytes = cdn_bytes(app, after)
    assert new_bytes != old_bytes
    assert sha256(new_bytes) == after["fileHash"]
    assert after["fileSize"] == len(new_bytes)
    assert cdn_bytes(app, after, "@fox") == new_bytes
    assert (app.settings.storage_root / after["storageKey"]).read_bytes() == new_bytes
    assert count(app, "images") == 1
    assert fetch(app, created["id"]) == updated


def test_put_aspect_ratio_regenerates_in_place_at_the_new_size(app: Running) -> None:
    created = generate(app)
    old_bytes = cdn_bytes(app, created["outputImage"])
    updated = data_of(
        app.project("PUT", f"{GENERATIONS}/{created['id']}", json={"aspectRatio": "9:16"})
    )
    after = updated["outputImage"]
    assert updated["aspectRatio"] == "9:16"
    assert after["id"] == created["outputImageId"]
    assert after["storageUrl"] == created["outputImage"]["storageUrl"]
    assert (after["width"], after["height"]) == (1008, 1792)
    new_bytes = cdn_bytes(app, after)
    assert new_bytes != old_bytes
    assert size_of(new_bytes) == (1008, 1792)
    assert sha256(new_bytes) == after["fileHash"]
    row = image_row(app, after["id"])
    assert row is not None
    assert (row["width"], row["height"]) == (1008, 1792)


def test_put_without_a_real_change_does_not_regenerate(app: Running) -> None:
    created = generate(app, prompt="a red fox")
    updated = data_of(
        app.project(
            "PUT",
            f"{GENERATIONS}/{created['id']}",
            json={"prompt": "a red fox", "aspectRatio": "1:1"},
        )
    )
    assert updated["outputImage"]["updatedAt"] == created["outputImage"]["updatedAt"]
    assert updated["processingTimeMs"] == created["processingTimeMs"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"prompt": ""}, "VALIDATION_ERROR"),
        ({"prompt": "   "}, "VALIDATION_ERROR"),
        ({"prompt": "z" * 5001}, "VALIDATION_ERROR"),
        ({"prompt": 12}, "VALIDATION_ERROR"),
        ({"aspectRatio": "5:4"}, "INVALID_ASPECT_RATIO"),
        ({"aspectRatio": ""}, "INVALID_ASPECT_RATIO"),
        ({"prompt": "a new owl", "aspectRatio": "2:1"}, "INVALID_ASPECT_RATIO"),
        ({"prompt": "a new owl", "flowId": "nope"}, "VALIDATION_ERROR"),
        ({"prompt": "a new owl", "meta": "text"}, "VALIDATION_ERROR"),
    ],
)
def test_invalid_put_changes_nothing(app: Running, body: dict[str, Any], code: str) -> None:
    flow_id = new_flow_id()
    created = generate(app, flowId=flow_id, meta={"keep": True})
    old_bytes = cdn_bytes(app, created["outputImage"])
    assert_error(app.project("PUT", f"{GENERATIONS}/{created['id']}", json=body), 400, code)
    assert fetch(app, created["id"]) == created
    assert cdn_bytes(app, created["outputImage"]) == old_bytes
    path = app.settings.storage_root / created["outputImage"]["storageKey"]
    assert path.read_bytes() == old_bytes


@pytest.mark.parametrize("payload", [b"", b"{oops", b"[]"])
def test_put_needs_a_json_object(app: Running, payload: bytes) -> None:
    created = generate(app)
    response = app.project(
        "PUT",
        f"{GENERATIONS}/{created['id']}",
        content=payload,
        headers={"Content-Type": "application/json"},
    )
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["details"] == {"field": "body"}


# ============================================================ regenerate/retry


def test_regenerate_and_retry_count_and_keep_the_image(app: Running) -> None:
    created = generate(app)
    image = created["outputImage"]
    counts = []
    for action in ("regenerate", "retry", "regenerate"):
        response = app.project("POST", f"{GENERATIONS}/{created['id']}/{action}")
        again = data_of(response, 200)
        assert again["status"] == "success"
        assert again["outputImageId"] == image["id"]
        assert again["outputImage"]["storageUrl"] == image["storageUrl"]
        assert again["outputImage"]["storageKey"] == image["storageKey"]
        # the offline provider is deterministic: same inputs, same bytes
        assert again["outputImage"]["fileHash"] == image["fileHash"]
        counts.append(again["retryCount"])
    assert counts == [1, 2, 3]
    assert count(app, "images") == 1
    assert stored(app, "generations", created["id"], "retry_count") == 3


def test_regenerate_uses_the_stored_parameters(app: Running, refs: dict[str, Any]) -> None:
    created = generate(
        app,
        prompt="a lamp",
        aspectRatio="3:2",
        referenceImages=["@hero"],
        enhancementOptions={"template": "comic"},
    )
    again = data_of(app.project("POST", f"{GENERATIONS}/{created['id']}/regenerate"))
    assert again["prompt"] == template_rewrite("a lamp", "comic")
    assert again["aspectRatio"] == "3:2"
    assert ref_ids(again) == [(refs["hero"]["id"], "@hero")]
    assert again["outputImage"]["fileHash"] == created["outputImage"]["fileHash"]


def test_regenerate_after_the_output_was_deleted_makes_a_new_image(app: Running) -> None:
    created = generate(app)
    old_id = created["outputImageId"]
    data_of(app.project("DELETE", f"/api/v1/images/{old_id}"))
    assert fetch(app, created["id"])["outputImageId"] is None

    again = data_of(app.project("POST", f"{GENERATIONS}/{created['id']}/regenerate"))
    assert again["status"] == "success"
    assert again["retryCount"] == 1
    new_id = again["outputImageId"]
    assert new_id is not None
    assert new_id != old_id
    assert again["outputImage"]["generationId"] == created["id"]
    assert sha256(cdn_bytes(app, again["outputImage"])) == again["outputImage"]["fileHash"]
    assert image_row(app, new_id) is not None
    assert image_row(app, old_id) is None


# ======================================================================= DELETE


def test_delete_removes_the_generation_and_its_unaliased_output(app: Running) -> None:
    created = generate(app)
    image = created["outputImage"]
    path = app.settings.storage_root / image["storageKey"]
    assert cdn_bytes(app, image)  # warm the memory cache
    assert path.is_file()

    response = app.project("DELETE", f"{GENERATIONS}/{created['id']}")
    assert data_of(response) == {"id": created["id"]}
    assert generation_row(app, created["id"]) is None
    assert image_row(app, image["id"]) is None
    assert not path.exists()
    assert cdn(app, image).status_code == 404
    assert_error(app.project("GET", f"{GENERATIONS}/{created['id']}"), 404, "GENERATION_NOT_FOUND")
    assert_error(
        app.project("DELETE", f"{GENERATIONS}/{created['id']}"), 404, "GENERATION_NOT_FOUND"
    )
    assert_error(app.project("GET", f"/api/v1/images/{image['id']}"), 404, "IMAGE_NOT_FOUND")


def test_delete_keeps_an_aliased_output(app: Running) -> None:
    created = generate(app, alias="@keeper")
    image = created["outputImage"]
    path = app.settings.storage_root / image["storageKey"]
    data_of(app.project("DELETE", f"{GENERATIONS}/{created['id']}"))
    assert generation_row(app, created["id"]) is None
    kept = data_of(app.project("GET", f"/api/v1/images/{image['id']}"))
    assert kept["generationId"] is None
    assert kept["alias"] == "@keeper"
    assert kept["fileHash"] == image["fileHash"]
    assert path.read_bytes() == cdn_bytes(app, kept, "@keeper")


def test_delete_leaves_reference_images_and_other_generations(
    app: Running, refs: dict[str, Any]
) -> None:
    created = generate(app, referenceImages=["@hero"])
    other = generate(app, prompt="another")
    data_of(app.project("DELETE", f"{GENERATIONS}/{created['id']}"))
    assert image_row(app, refs["hero"]["id"]) is not None
    assert count(app, "generation_references") == 0
    assert fetch(app, other["id"]) == other


# ===================================================================== failures


@pytest.fixture
def failing(start_server: Callable[..., Running], fake_gemini: FakeGemini) -> Running:
    """An appliance on the Gemini provider, pointed at the fake, with no retries."""
    return start_server(
        generation__provider="gemini",
        generation__gemini_api_key="test-key",
        generation__gemini_base_url=fake_gemini.url,
        generation__max_retries=0,
        generation__retry_backoff_seconds=0.01,
        generation__timeout_seconds=10,
    )


def test_failed_generation_is_recorded_and_can_be_retried(
    failing: Running, fake_gemini: FakeGemini
) -> None:
    fake_gemini.queue(Answer("error", 500))
    failed = generate(failing, prompt="a fox", autoEnhance=False)
    assert failed["status"] == "failed"
    assert isinstance(failed["errorMessage"], str)
    assert failed["errorMessage"]
    assert "test-key" not in failed["errorMessage"]
    assert failed["outputImage"] is None
    assert failed["outputImageId"] is None
    assert failed["meta"]["provider"] == "gemini"
    assert failed["processingTimeMs"] >= 0
    assert count(failing, "images") == 0
    assert len(fake_gemini.image_requests()) == 1
    assert stored(failing, "generations", failed["id"], "status") == "failed"
    listed = data_of(failing.project("GET", GENERATIONS, params={"status": "failed"}))
    assert [g["id"] for g in listed] == [failed["id"]]

    # nothing scripted any more: the fake draws an image
    retried = data_of(failing.project("POST", f"{GENERATIONS}/{failed['id']}/retry"))
    assert retried["status"] == "success"
    assert retried["errorMessage"] is None
    assert retried["retryCount"] == 1
    assert retried["meta"]["provider"] == "gemini"
    assert retried["meta"]["model"] == failing.settings.generation.image_model
    image = retried["outputImage"]
    assert image["source"] == "generated"
    assert image["generationId"] == failed["id"]
    assert sha256(cdn_bytes(failing, image)) == image["fileHash"]


def test_failed_async_generation_ends_failed(failing: Running, fake_gemini: FakeGemini) -> None:
    fake_gemini.queue(Answer("error", 503))
    response = failing.project(
        "POST",
        GENERATIONS,
        json={"prompt": "a fox", "autoEnhance": False},
        headers={"Prefer": "respond-async"},
    )
    accepted = data_of(response, 202)
    done = wait_for_status(failing, accepted["id"], {"success", "failed"})
    assert done["status"] == "failed"
    assert done["errorMessage"]
    assert done["outputImage"] is None


def test_enhancement_failure_is_recorded_and_generation_goes_on(
    failing: Running, fake_gemini: FakeGemini
) -> None:
    fake_gemini.queue(Answer("error", 500))  # the text model call
    generation = generate(failing, prompt="a fox")
    assert generation["status"] == "success"
    assert generation["prompt"] == "a fox"
    assert generation["originalPrompt"] is None
    assert generation["meta"]["enhancementError"]


# =================================================================== rate limit


def test_generation_responses_carry_rate_limit_headers(app: Running) -> None:
    """Success, error and async answers of the generation routes all carry them."""
    created = generate(app)
    responses = [
        app.project("GET", GENERATIONS),
        app.project("GET", f"{GENERATIONS}/{created['id']}"),
        app.project("GET", f"{GENERATIONS}/{uuid.uuid4()}"),
        app.project("POST", GENERATIONS, json={}),
        app.project("POST", GENERATIONS, json={"prompt": "x"}, headers={"Prefer": "respond-async"}),
        app.project("PUT", f"{GENERATIONS}/{created['id']}", json={"meta": {}}),
        app.project("POST", f"{GENERATIONS}/{created['id']}/retry"),
        app.project("DELETE", f"{GENERATIONS}/{created['id']}"),
    ]
    remaining = [int(r.headers["X-RateLimit-Remaining"]) for r in responses]
    assert remaining == sorted(remaining, reverse=True)
    assert all(int(r.headers["X-RateLimit-Limit"]) == 1000 for r in responses)
