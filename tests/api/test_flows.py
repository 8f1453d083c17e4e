"""Flow routes (API.md §4) over real HTTP: create, list and get with member counts,
lazy and eager creation, technical aliases, member lists, the alias map, regenerate,
and the delete cascade checked against the database and the storage directory."""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from banatie_local.providers import GeneratedImage
from tests.api.test_errors import assert_error
from tests.conftest import Running
from tests.helpers import sqlite
from tests.imagedata import png_bytes

pytestmark = pytest.mark.both_databases

FLOWS = "/api/v1/flows"
GENERATIONS = "/api/v1/generations"
IMAGES = "/api/v1/images"
UPLOAD = "/api/v1/images/upload"
RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
ISO_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
FLOW_FIELDS = {
    "id",
    "projectId",
    "aliases",
    "generationCount",
    "imageCount",
    "meta",
    "createdAt",
    "updatedAt",
}


# --------------------------------------------------------------------- fixtures


class TinyProvider:
    """Answers at once with a 4×4 PNG whose colour changes on every call."""

    name = "tiny"

    def __init__(self) -> None:
        self.calls = 0

    async def generate(self, prompt: str, aspect_ratio: str, references: list[Any]) -> Any:
        self.calls += 1
        color = (self.calls % 256, (self.calls // 256) % 256, 99)
        return GeneratedImage(png_bytes(4, 4, color), "image/png", 4, 4, "tiny-1")

    async def enhance(self, prompt: str, template: str) -> str:
        return prompt


def _require_rate_headers(response: httpx.Response) -> None:
    """Every answer of a flow route carries the rate-limit headers."""
    if response.request.url.path.startswith(FLOWS):
        missing = [name for name in RATE_HEADERS if name not in response.headers]
        assert not missing, f"{response.request.url.path} answered without {missing}"


@pytest.fixture
def start(start_server: Callable[..., Running]) -> Callable[..., Running]:
    """The shared factory, with a client that checks the rate-limit headers."""

    def started(**kwargs: Any) -> Running:
        running = start_server(**kwargs)
        running.client.event_hooks["response"].append(_require_rate_headers)
        return running

    return started


@pytest.fixture
def fast(start: Callable[..., Running]) -> Running:
    """An appliance whose provider answers instantly."""
    return start(provider=TinyProvider())


@pytest.fixture
def offline(start: Callable[..., Running]) -> Running:
    """An appliance with the default (offline) provider."""
    return start()


# ---------------------------------------------------------------------- helpers


def data_of(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is True
    return body["data"]


def listed(response: httpx.Response) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    return body["data"], body["pagination"]


def with_key(app: Running, key: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """A request with another project's key."""
    return app.client.request(method, path, headers={"X-API-Key": key}, **kwargs)


def create_flow(app: Running, **body: Any) -> dict[str, Any]:
    flow: dict[str, Any] = data_of(app.project("POST", FLOWS, json=body), 201)
    return flow


def get_flow(app: Running, flow_id: str) -> dict[str, Any]:
    flow: dict[str, Any] = data_of(app.project("GET", f"{FLOWS}/{flow_id}"))
    return flow


def generate(app: Running, **body: Any) -> dict[str, Any]:
    body.setdefault("prompt", "a lighthouse at dusk")
    generation: dict[str, Any] = data_of(app.project("POST", GENERATIONS, json=body), 201)
    assert generation["status"] == "success", generation
    return generation


def upload(app: Running, key: str | None = None, **fields: str) -> dict[str, Any]:
    files = {"file": ("image.png", png_bytes(), "image/png")}
    headers = {"X-API-Key": key} if key else {}
    response = app.project("POST", UPLOAD, files=files, data=fields, headers=headers)
    image: dict[str, Any] = data_of(response, 201)
    return image


def get_image(app: Running, ref: str, flow_id: str | None = None) -> httpx.Response:
    params = {"flowId": flow_id} if flow_id else None
    return app.project("GET", f"{IMAGES}/{ref}", params=params)


def resolved_id(app: Running, ref: str, flow_id: str | None = None) -> str:
    image_id: str = data_of(get_image(app, ref, flow_id))["id"]
    return image_id


def project_id(app: Running) -> str:
    value: str = data_of(app.project("GET", "/api/v1/project"))["id"]
    return value


def query(app: Running, sql: str, *params: Any) -> list[dict[str, Any]]:
    with sqlite(app.settings.database_path) as db:
        return [dict(row) for row in db.execute(sql, params)]


def count(app: Running, table: str) -> int:
    with sqlite(app.settings.database_path) as db:
        return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def row_of(app: Running, table: str, row_id: str) -> dict[str, Any] | None:
    rows = query(app, f"SELECT * FROM {table} WHERE id = ?", row_id)
    return rows[0] if rows else None


def stored(app: Running, table: str, row_id: str, column: str) -> Any:
    """One column of a row, which must exist."""
    row = row_of(app, table, row_id)
    assert row is not None, f"{table} has no row {row_id}"
    return row[column]


def flow_alias_rows(app: Running, flow_id: str) -> dict[str, str]:
    rows = query(app, "SELECT alias, image_id FROM flow_aliases WHERE flow_id = ?", flow_id)
    return {row["alias"]: row["image_id"] for row in rows}


def file_of(app: Running, image: dict[str, Any]) -> Path:
    return Path(app.settings.storage_root) / str(image["storageKey"])


def stored_files(app: Running) -> set[str]:
    """Storage keys of every file under the storage root, temp files excluded."""
    root = Path(app.settings.storage_root)
    if not root.is_dir():
        return set()
    return {
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.is_file() and path.relative_to(root).parts[0] != ".tmp"
    }


def assert_consistent(app: Running) -> None:
    """No broken foreign key, no image row without its file, no file without a row."""
    with sqlite(app.settings.database_path) as db:
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        keys = {row[0] for row in db.execute("SELECT storage_key FROM images")}
    root = Path(app.settings.storage_root)
    assert sorted(key for key in keys if not (root / key).is_file()) == []
    assert sorted(stored_files(app) - keys) == []


def cdn(app: Running, image: dict[str, Any]) -> httpx.Response:
    """The public image route for ``image``."""
    return app.client.get(urlsplit(image["storageUrl"]).path)


def new_uuid() -> str:
    return str(uuid.uuid4())


# ======================================================================= create


def test_create_answers_201_with_an_empty_flow(fast: Running) -> None:
    """A body-less create makes an empty flow with every field of §4."""
    response = fast.project("POST", FLOWS)
    flow = data_of(response, 201)
    assert set(flow) == FLOW_FIELDS
    assert str(uuid.UUID(flow["id"])) == flow["id"]
    assert uuid.UUID(flow["id"]).version == 4
    assert flow["projectId"] == project_id(fast)
    assert flow["aliases"] == {}
    assert flow["generationCount"] == 0
    assert flow["imageCount"] == 0
    assert flow["meta"] == {}
    assert ISO_RE.match(flow["createdAt"])
    assert ISO_RE.match(flow["updatedAt"])
    assert get_flow(fast, flow["id"]) == flow
    rows = query(fast, "SELECT project_id, meta FROM flows WHERE id = ?", flow["id"])
    assert rows == [{"project_id": flow["projectId"], "meta": "{}"}]


def test_create_stores_meta_and_aliases(fast: Running) -> None:
    """``meta`` and ``aliases`` given at creation are stored and shown."""
    first, second = upload(fast, flowId="null"), upload(fast, flowId="null")
    meta = {"campaign": "spring", "nested": {"n": 1}}
    flow = create_flow(fast, meta=meta, aliases={"@hero": first["id"], "@bg": second["id"]})
    assert flow["meta"] == meta
    assert flow["aliases"] == {"@bg": second["id"], "@hero": first["id"]}
    assert flow["generationCount"] == 0
    assert flow["imageCount"] == 0
    assert get_flow(fast, flow["id"]) == flow
    assert flow_alias_rows(fast, flow["id"]) == {"@hero": first["id"], "@bg": second["id"]}


@pytest.mark.parametrize(
    ("alias", "code"),
    [
        ("hero", "INVALID_ALIAS_FORMAT"),
        ("@", "INVALID_ALIAS_FORMAT"),
        ("@two words", "INVALID_ALIAS_FORMAT"),
        ("@" + "a" * 50, "INVALID_ALIAS_FORMAT"),
        ("@last", "RESERVED_ALIAS"),
        ("@first", "RESERVED_ALIAS"),
        ("@upload", "RESERVED_ALIAS"),
    ],
)
def test_create_with_a_bad_alias_leaves_no_flow(fast: Running, alias: str, code: str) -> None:
    """A bad alias, even after a good one, fails the create and writes nothing."""
    image = upload(fast, flowId="null")
    aliases = {"@good": image["id"], alias: image["id"]}
    assert_error(fast.project("POST", FLOWS, json={"aliases": aliases}), 400, code)
    assert count(fast, "flows") == 0
    assert count(fast, "flow_aliases") == 0


def test_create_with_an_unknown_or_foreign_image_leaves_no_flow(fast: Running) -> None:
    """An image id that does not exist in the project is 404 ``IMAGE_NOT_FOUND``."""
    mine = upload(fast, flowId="null")
    other_key = fast.new_project_key()
    theirs = data_of(
        with_key(
            fast,
            other_key,
            "POST",
            UPLOAD,
            files={"file": ("x.png", png_bytes(), "image/png")},
            data={"flowId": "null"},
        ),
        201,
    )
    for ref in (new_uuid(), theirs["id"], "not-an-id"):
        body = {"meta": {"a": 1}, "aliases": {"@good": mine["id"], "@bad": ref}}
        assert_error(fast.project("POST", FLOWS, json=body), 404, "IMAGE_NOT_FOUND")
    assert count(fast, "flows") == 0
    assert count(fast, "flow_aliases") == 0


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b"[1, 2]", "body"),
        (b'"text"', "body"),
        (b"42", "body"),
        (b"null", "body"),
        (b"{not json", "body"),
        (b'{"meta": 5}', "meta"),
        (b'{"meta": [1]}', "meta"),
        (b'{"aliases": ["@a"]}', "aliases"),
        (b'{"aliases": "@a"}', "aliases"),
        (b'{"aliases": {"@a": 5}}', "aliases"),
    ],
)
def test_create_with_a_malformed_body_is_rejected(
    fast: Running, payload: bytes, field: str
) -> None:
    """Bodies that are not objects, and fields of the wrong type, are 400."""
    response = fast.project(
        "POST", FLOWS, content=payload, headers={"Content-Type": "application/json"}
    )
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["details"] == {"field": field}
    assert count(fast, "flows") == 0


# ================================================================== list and get


def test_list_is_newest_first_with_pagination_and_counts(fast: Running) -> None:
    """Each flow in the list carries its own member counts."""
    first, second, third = create_flow(fast), create_flow(fast), create_flow(fast)
    generate(fast, flowId=first["id"])
    generate(fast, flowId=first["id"])
    upload(fast, flowId=second["id"])
    generate(fast, flowId=None)
    generate(fast)  # announces a flow of its own, which does not appear

    flows, paging = listed(fast.project("GET", FLOWS))
    assert [f["id"] for f in flows] == [third["id"], second["id"], first["id"]]
    assert paging == {"total": 3, "limit": 20, "offset": 0, "hasMore": False}
    counts = {f["id"]: (f["generationCount"], f["imageCount"]) for f in flows}
    assert counts == {first["id"]: (2, 2), second["id"]: (0, 1), third["id"]: (0, 0)}
    for flow in flows:
        assert set(flow) == FLOW_FIELDS
        assert get_flow(fast, flow["id"]) == flow

    page, paging = listed(fast.project("GET", FLOWS, params={"limit": 2}))
    assert [f["id"] for f in page] == [third["id"], second["id"]]
    assert paging == {"total": 3, "limit": 2, "offset": 0, "hasMore": True}
    page, paging = listed(fast.project("GET", FLOWS, params={"limit": 2, "offset": 2}))
    assert [f["id"] for f in page] == [first["id"]]
    assert paging == {"total": 3, "limit": 2, "offset": 2, "hasMore": False}
    page, paging = listed(fast.project("GET", FLOWS, params={"limit": 0, "offset": -5}))
    assert [f["id"] for f in page] == [third["id"]]
    assert paging == {"total": 3, "limit": 1, "offset": 0, "hasMore": True}
    page, paging = listed(fast.project("GET", FLOWS, params={"limit": 500}))
    assert paging["limit"] == 100
    for params in ({"limit": "x"}, {"offset": "1.5"}):
        assert_error(fast.project("GET", FLOWS, params=params), 400, "VALIDATION_ERROR")


@pytest.mark.parametrize("ref", ["not-a-uuid", "@hero", "0", str(uuid.uuid4())])
def test_unknown_flow_is_not_found(fast: Running, ref: str) -> None:
    """Garbage and unknown ids are 404 ``FLOW_NOT_FOUND`` on every flow route."""
    assert_error(fast.project("GET", f"{FLOWS}/{ref}"), 404, "FLOW_NOT_FOUND")
    assert_error(fast.project("GET", f"{FLOWS}/{ref}/generations"), 404, "FLOW_NOT_FOUND")
    assert_error(fast.project("GET", f"{FLOWS}/{ref}/images"), 404, "FLOW_NOT_FOUND")
    body = {"aliases": {"@a": new_uuid()}}
    assert_error(fast.project("PUT", f"{FLOWS}/{ref}/aliases", json=body), 404, "FLOW_NOT_FOUND")
    assert_error(fast.project("DELETE", f"{FLOWS}/{ref}/aliases/@a"), 404, "FLOW_NOT_FOUND")
    assert_error(fast.project("POST", f"{FLOWS}/{ref}/regenerate"), 404, "FLOW_NOT_FOUND")
    assert_error(fast.project("DELETE", f"{FLOWS}/{ref}"), 404, "FLOW_NOT_FOUND")


def test_another_projects_flow_is_not_found(fast: Running) -> None:
    """A flow of another project answers like an unknown one and is never listed."""
    other_key = fast.new_project_key()
    image = upload(fast, flowId="null")
    theirs = data_of(with_key(fast, other_key, "POST", FLOWS, json={"meta": {"x": 1}}), 201)
    their_generation = data_of(
        with_key(
            fast, other_key, "POST", GENERATIONS, json={"prompt": "p", "flowId": theirs["id"]}
        ),
        201,
    )
    mine = create_flow(fast)
    path = f"{FLOWS}/{theirs['id']}"

    assert_error(fast.project("GET", path), 404, "FLOW_NOT_FOUND")
    assert_error(fast.project("GET", f"{path}/generations"), 404, "FLOW_NOT_FOUND")
    assert_error(fast.project("GET", f"{path}/images"), 404, "FLOW_NOT_FOUND")
    body = {"aliases": {"@a": image["id"]}}
    assert_error(fast.project("PUT", f"{path}/aliases", json=body), 404, "FLOW_NOT_FOUND")
    assert_error(fast.project("DELETE", f"{path}/aliases/@a"), 404, "FLOW_NOT_FOUND")
    assert_error(fast.project("POST", f"{path}/regenerate"), 404, "FLOW_NOT_FOUND")
    assert_error(fast.project("DELETE", path), 404, "FLOW_NOT_FOUND")
    flows, paging = listed(fast.project("GET", FLOWS))
    assert [f["id"] for f in flows] == [mine["id"]]
    assert paging["total"] == 1
    # neither can this project put members into it
    assert_error(
        fast.project("POST", GENERATIONS, json={"prompt": "p", "flowId": theirs["id"]}),
        404,
        "FLOW_NOT_FOUND",
    )

    # nor can another project's request use this project's flow
    response = with_key(
        fast,
        other_key,
        "POST",
        UPLOAD,
        files={"file": ("x.png", png_bytes(), "image/png")},
        data={"flowId": mine["id"]},
    )
    assert_error(response, 404, "FLOW_NOT_FOUND")
    response = with_key(
        fast,
        other_key,
        "PUT",
        f"{GENERATIONS}/{their_generation['id']}",
        json={"flowId": mine["id"]},
    )
    assert_error(response, 404, "FLOW_NOT_FOUND")
    assert stored(fast, "generations", their_generation["id"], "flow_id") == theirs["id"]
    mine_after = get_flow(fast, mine["id"])
    assert (mine_after["generationCount"], mine_after["imageCount"]) == (0, 0)
    assert_consistent(fast)

    # their flow is intact and still theirs
    still = data_of(with_key(fast, other_key, "GET", path))
    assert still["meta"] == {"x": 1}
    assert (still["generationCount"], still["imageCount"], still["aliases"]) == (1, 1, {})
    assert row_of(fast, "generations", their_generation["id"]) is not None
    theirs_listed, _ = listed(with_key(fast, other_key, "GET", FLOWS))
    assert [f["id"] for f in theirs_listed] == [theirs["id"]]


# ============================================================ lazy and eager rows


def test_announced_flow_is_created_lazily_and_adopts_its_members(fast: Running) -> None:
    """Without ``flowId`` the id is announced only; a later upload with it creates
    the row, which counts the earlier generation and its image."""
    generation = generate(fast)
    flow_id = generation["flowId"]
    assert str(uuid.UUID(flow_id)) == flow_id
    assert generation["outputImage"]["flowId"] == flow_id
    assert_error(fast.project("GET", f"{FLOWS}/{flow_id}"), 404, "FLOW_NOT_FOUND")
    assert listed(fast.project("GET", FLOWS))[0] == []
    assert row_of(fast, "flows", flow_id) is None

    uploaded = upload(fast, flowId=flow_id)
    assert uploaded["flowId"] == flow_id
    flow = get_flow(fast, flow_id)
    assert (flow["generationCount"], flow["imageCount"]) == (1, 2)
    assert flow["aliases"] == {}
    assert [f["id"] for f in listed(fast.project("GET", FLOWS))[0]] == [flow_id]
    assert row_of(fast, "flows", flow_id) is not None


def test_generation_with_a_new_flow_id_creates_the_row_at_once(fast: Running) -> None:
    """A UUID ``flowId`` that no row has yet is used and its row made."""
    flow_id = new_uuid()
    generation = generate(fast, flowId=flow_id)
    assert generation["flowId"] == flow_id
    flow = get_flow(fast, flow_id)
    assert (flow["generationCount"], flow["imageCount"]) == (1, 1)


def test_null_flow_id_makes_no_flow(fast: Running) -> None:
    """``flowId: null`` records no flow at all."""
    generation = generate(fast, flowId=None)
    image = upload(fast, flowId="null")
    assert generation["flowId"] is None
    assert image["flowId"] is None
    assert count(fast, "flows") == 0


def test_flow_alias_creates_the_flow_at_once(fast: Running) -> None:
    """``flowAlias`` without ``flowId`` makes the announced flow's row immediately."""
    generation = generate(fast, flowAlias="@hero")
    flow = get_flow(fast, generation["flowId"])
    assert flow["aliases"] == {"@hero": generation["outputImageId"]}
    assert (flow["generationCount"], flow["imageCount"]) == (1, 1)

    image = upload(fast, flowAlias="@cover")
    flow = get_flow(fast, image["flowId"])
    assert flow["aliases"] == {"@cover": image["id"]}
    assert (flow["generationCount"], flow["imageCount"]) == (0, 1)


def test_moving_a_generation_creates_the_target_flow_and_moves_the_counts(
    fast: Running,
) -> None:
    """PUT with a new ``flowId`` creates that flow and moves the generation and its
    output image into it."""
    source = create_flow(fast)
    generation = generate(fast, flowId=source["id"])
    stays = generate(fast, flowId=source["id"])
    assert (
        get_flow(fast, source["id"])["generationCount"],
        get_flow(fast, source["id"])["imageCount"],
    ) == (2, 2)

    target = new_uuid()
    moved = data_of(
        fast.project("PUT", f"{GENERATIONS}/{generation['id']}", json={"flowId": target})
    )
    assert moved["flowId"] == target
    assert moved["outputImageId"] == generation["outputImageId"]
    assert moved["outputImage"]["flowId"] == target
    flow = get_flow(fast, target)
    assert (flow["generationCount"], flow["imageCount"]) == (1, 1)
    after = get_flow(fast, source["id"])
    assert (after["generationCount"], after["imageCount"]) == (1, 1)
    assert stored(fast, "images", generation["outputImageId"], "flow_id") == target
    assert stored(fast, "generations", stays["id"], "flow_id") == source["id"]
    members, _ = listed(fast.project("GET", f"{FLOWS}/{target}/images"))
    assert [m["id"] for m in members] == [generation["outputImageId"]]


# ============================================================ technical aliases


def test_technical_aliases_resolve_in_a_late_created_flow(fast: Running) -> None:
    """Once the row appears, ``@last``/``@first``/``@upload`` see the earlier members."""
    first = generate(fast, prompt="first")
    flow_id = first["flowId"]
    uploaded = upload(fast, flowId=flow_id)  # creates the row
    assert resolved_id(fast, "@last", flow_id) == first["outputImageId"]
    assert resolved_id(fast, "@first", flow_id) == first["outputImageId"]
    assert resolved_id(fast, "@upload", flow_id) == uploaded["id"]

    second = generate(fast, prompt="second", flowId=flow_id)
    third = generate(fast, prompt="third", flowId=flow_id)
    assert resolved_id(fast, "@last", flow_id) == third["outputImageId"]
    assert resolved_id(fast, "@first", flow_id) == first["outputImageId"]
    assert resolved_id(fast, "@upload", flow_id) == uploaded["id"]
    newer_upload = upload(fast, flowId=flow_id)
    assert resolved_id(fast, "@upload", flow_id) == newer_upload["id"]
    assert resolved_id(fast, "@last", flow_id) == third["outputImageId"]
    assert second["outputImageId"] not in {
        resolved_id(fast, alias, flow_id) for alias in ("@last", "@first", "@upload")
    }

    for alias in ("@last", "@first", "@upload"):
        assert_error(get_image(fast, alias), 400, "FLOW_CONTEXT_REQUIRED")
    empty = create_flow(fast)
    for alias in ("@last", "@first", "@upload"):
        assert_error(get_image(fast, alias, empty["id"]), 404, "ALIAS_NOT_FOUND")


# ================================================================= member lists


def test_flow_member_lists_are_paginated_newest_first(fast: Running) -> None:
    """``/generations`` and ``/images`` list only the flow's own members."""
    flow = create_flow(fast)
    other = create_flow(fast)
    made = [generate(fast, prompt=f"p{i}", flowId=flow["id"]) for i in range(3)]
    uploaded = upload(fast, flowId=flow["id"])
    generate(fast, flowId=other["id"])
    generate(fast, flowId=None)
    upload(fast, flowId="null")
    announced = generate(fast)

    path = f"{FLOWS}/{flow['id']}"
    generations, paging = listed(fast.project("GET", f"{path}/generations"))
    assert [g["id"] for g in generations] == [g["id"] for g in reversed(made)]
    assert paging == {"total": 3, "limit": 20, "offset": 0, "hasMore": False}
    assert all(g["flowId"] == flow["id"] for g in generations)
    assert generations[0]["outputImage"]["id"] == made[2]["outputImageId"]
    page, paging = listed(fast.project("GET", f"{path}/generations", params={"limit": 2}))
    assert [g["id"] for g in page] == [made[2]["id"], made[1]["id"]]
    assert paging == {"total": 3, "limit": 2, "offset": 0, "hasMore": True}
    page, paging = listed(
        fast.project("GET", f"{path}/generations", params={"limit": 2, "offset": 2})
    )
    assert [g["id"] for g in page] == [made[0]["id"]]
    assert paging["hasMore"] is False

    images, paging = listed(fast.project("GET", f"{path}/images"))
    expected = [uploaded["id"]] + [g["outputImageId"] for g in reversed(made)]
    assert [i["id"] for i in images] == expected
    assert paging == {"total": 4, "limit": 20, "offset": 0, "hasMore": False}
    page, paging = listed(fast.project("GET", f"{path}/images", params={"limit": 3, "offset": 1}))
    assert [i["id"] for i in page] == expected[1:]
    assert paging == {"total": 4, "limit": 3, "offset": 1, "hasMore": False}
    assert_error(
        fast.project("GET", f"{path}/images", params={"limit": "many"}), 400, "VALIDATION_ERROR"
    )

    for sub in ("generations", "images"):
        announced_path = f"{FLOWS}/{announced['flowId']}/{sub}"
        assert_error(fast.project("GET", announced_path), 404, "FLOW_NOT_FOUND")


# ==================================================================== alias map


def test_put_aliases_merges_into_the_map(fast: Running) -> None:
    """Each PUT adds to the map; a name that exists is re-pointed."""
    flow = create_flow(fast)
    first, second = upload(fast, flowId="null"), upload(fast, flowId="null")
    path = f"{FLOWS}/{flow['id']}/aliases"

    one = data_of(fast.project("PUT", path, json={"aliases": {"@a": first["id"]}}))
    assert set(one) == FLOW_FIELDS
    assert one["aliases"] == {"@a": first["id"]}
    two = data_of(fast.project("PUT", path, json={"aliases": {"@b": second["id"]}}))
    assert two["aliases"] == {"@a": first["id"], "@b": second["id"]}
    stamp = stored(fast, "flows", flow["id"], "updated_at")
    three = data_of(fast.project("PUT", path, json={"aliases": {"@a": second["id"]}}))
    assert three["aliases"] == {"@a": second["id"], "@b": second["id"]}
    assert three["updatedAt"] >= one["updatedAt"]
    assert stored(fast, "flows", flow["id"], "updated_at") > stamp
    assert get_flow(fast, flow["id"])["aliases"] == three["aliases"]
    assert flow_alias_rows(fast, flow["id"]) == {"@a": second["id"], "@b": second["id"]}
    # aliases do not make an image a member
    assert (three["generationCount"], three["imageCount"]) == (0, 0)


def test_put_aliases_rejects_bad_input_and_changes_nothing(fast: Running) -> None:
    """Bad names, foreign or unknown images and malformed bodies leave the map as is."""
    flow = create_flow(fast)
    image = upload(fast, flowId="null")
    path = f"{FLOWS}/{flow['id']}/aliases"
    data_of(fast.project("PUT", path, json={"aliases": {"@keep": image["id"]}}))
    other_key = fast.new_project_key()
    theirs = data_of(
        with_key(
            fast,
            other_key,
            "POST",
            UPLOAD,
            files={"file": ("x.png", png_bytes(), "image/png")},
            data={"flowId": "null"},
        ),
        201,
    )

    cases: list[tuple[Any, int, str]] = [
        ({"aliases": {"@new": theirs["id"]}}, 404, "IMAGE_NOT_FOUND"),
        ({"aliases": {"@new": new_uuid()}}, 404, "IMAGE_NOT_FOUND"),
        ({"aliases": {"@new": image["id"], "@x": "garbage"}}, 404, "IMAGE_NOT_FOUND"),
        ({"aliases": {"new": image["id"]}}, 400, "INVALID_ALIAS_FORMAT"),
        ({"aliases": {"@new": image["id"], "@a b": image["id"]}}, 400, "INVALID_ALIAS_FORMAT"),
        ({"aliases": {"@" + "x" * 50: image["id"]}}, 400, "INVALID_ALIAS_FORMAT"),
        ({"aliases": {"@last": image["id"]}}, 400, "RESERVED_ALIAS"),
        ({"aliases": {"@new": image["id"], "@upload": image["id"]}}, 400, "RESERVED_ALIAS"),
        ({"aliases": {"@first": image["id"]}}, 400, "RESERVED_ALIAS"),
        ({}, 400, "VALIDATION_ERROR"),
        ({"aliases": None}, 400, "VALIDATION_ERROR"),
        ({"aliases": ["@a"]}, 400, "VALIDATION_ERROR"),
        ({"aliases": "@a"}, 400, "VALIDATION_ERROR"),
        ({"aliases": {"@new": 7}}, 400, "VALIDATION_ERROR"),
    ]
    for body, status, code in cases:
        error = assert_error(fast.project("PUT", path, json=body), status, code)
        if code == "VALIDATION_ERROR":
            assert error["details"] == {"field": "aliases"}, body
    for raw in (b"", b"[]", b"null", b"{oops"):
        response = fast.project(
            "PUT", path, content=raw, headers={"Content-Type": "application/json"}
        )
        assert assert_error(response, 400, "VALIDATION_ERROR")["details"] == {"field": "body"}
    assert flow_alias_rows(fast, flow["id"]) == {"@keep": image["id"]}
    assert get_flow(fast, flow["id"])["aliases"] == {"@keep": image["id"]}


def test_flow_alias_shadows_a_project_alias_only_inside_its_flow(fast: Running) -> None:
    """``@a`` in a flow's map wins over the project alias ``@a`` in that flow only."""
    in_map, project_aliased, other = (upload(fast, flowId="null") for _ in range(3))
    data_of(fast.project("PUT", f"{IMAGES}/{project_aliased['id']}/alias", json={"alias": "@a"}))
    flow = create_flow(fast)
    elsewhere = create_flow(fast)
    data_of(
        fast.project(
            "PUT",
            f"{FLOWS}/{flow['id']}/aliases",
            json={"aliases": {"@a": in_map["id"], "@b": other["id"]}},
        )
    )
    assert resolved_id(fast, "@a", flow["id"]) == in_map["id"]
    assert resolved_id(fast, "@b", flow["id"]) == other["id"]
    assert resolved_id(fast, "@a") == project_aliased["id"]
    assert resolved_id(fast, "@a", elsewhere["id"]) == project_aliased["id"]
    assert_error(get_image(fast, "@b"), 404, "ALIAS_NOT_FOUND")
    assert_error(get_image(fast, "@b", elsewhere["id"]), 404, "ALIAS_NOT_FOUND")
    # the flow alias is not a project alias
    assert data_of(get_image(fast, in_map["id"]))["alias"] is None


# ================================================================ alias delete


def test_delete_alias_removes_one_entry(fast: Running) -> None:
    """DELETE by name drops that entry only; a second DELETE is 404."""
    flow = create_flow(fast)
    first, second = upload(fast, flowId="null"), upload(fast, flowId="null")
    path = f"{FLOWS}/{flow['id']}/aliases"
    aliases = {"@a": first["id"], "@b": second["id"], "@c": first["id"]}
    data_of(fast.project("PUT", path, json={"aliases": aliases}))

    stamp = stored(fast, "flows", flow["id"], "updated_at")
    after = data_of(fast.project("DELETE", f"{path}/@a"))
    assert set(after) == FLOW_FIELDS
    assert stored(fast, "flows", flow["id"], "updated_at") > stamp
    assert after["aliases"] == {"@b": second["id"], "@c": first["id"]}
    assert flow_alias_rows(fast, flow["id"]) == {"@b": second["id"], "@c": first["id"]}
    assert_error(get_image(fast, "@a", flow["id"]), 404, "ALIAS_NOT_FOUND")
    assert_error(fast.project("DELETE", f"{path}/@a"), 404, "ALIAS_NOT_FOUND")
    assert_error(fast.project("DELETE", f"{path}/@never"), 404, "ALIAS_NOT_FOUND")
    # the images themselves stay
    assert row_of(fast, "images", first["id"]) is not None
    assert get_flow(fast, flow["id"])["aliases"] == after["aliases"]


def test_delete_alias_accepts_a_percent_encoded_name(fast: Running) -> None:
    """``%40b`` names the alias ``@b``."""
    flow = create_flow(fast)
    image = upload(fast, flowId="null")
    path = f"{FLOWS}/{flow['id']}/aliases"
    data_of(fast.project("PUT", path, json={"aliases": {"@b": image["id"], "@c": image["id"]}}))
    after = data_of(fast.project("DELETE", f"{path}/%40b"))
    assert after["aliases"] == {"@c": image["id"]}
    assert_error(fast.project("DELETE", f"{path}/%40b"), 404, "ALIAS_NOT_FOUND")


# ==================================================================== regenerate


def test_regenerate_reruns_the_newest_generation_in_place(offline: Running) -> None:
    """The newest generation is re-run with the same output image, key and URL."""
    flow = create_flow(offline)
    older = generate(offline, prompt="an old mill", flowId=flow["id"], autoEnhance=False)
    newest = generate(offline, prompt="a new bridge", flowId=flow["id"], autoEnhance=False)
    # regenerating the older one directly does not make it the flow's newest
    data_of(offline.project("POST", f"{GENERATIONS}/{older['id']}/regenerate"))
    images_before = count(offline, "images")
    files_before = stored_files(offline)

    again = data_of(offline.project("POST", f"{FLOWS}/{flow['id']}/regenerate"))
    assert again["id"] == newest["id"]
    assert again["status"] == "success"
    assert again["retryCount"] == newest["retryCount"] + 1 == 1
    assert again["outputImageId"] == newest["outputImageId"]
    assert again["outputImage"]["storageKey"] == newest["outputImage"]["storageKey"]
    assert again["outputImage"]["storageUrl"] == newest["outputImage"]["storageUrl"]
    # the offline provider is deterministic: same inputs, same bytes
    assert again["outputImage"]["fileHash"] == newest["outputImage"]["fileHash"]
    assert again["meta"]["provider"] == "offline"
    assert data_of(offline.project("GET", f"{GENERATIONS}/{older['id']}"))["retryCount"] == 1
    assert count(offline, "images") == images_before
    assert stored_files(offline) == files_before
    flow_after = get_flow(offline, flow["id"])
    assert (flow_after["generationCount"], flow_after["imageCount"]) == (2, 2)


def test_regenerate_writes_new_bytes_over_the_same_file(fast: Running) -> None:
    """New bytes land under the same storage key, with the row's hash updated."""
    flow = create_flow(fast)
    generation = generate(fast, flowId=flow["id"])
    again = data_of(fast.project("POST", f"{FLOWS}/{flow['id']}/regenerate"))
    assert again["outputImageId"] == generation["outputImageId"]
    assert again["outputImage"]["storageKey"] == generation["outputImage"]["storageKey"]
    assert again["outputImage"]["fileHash"] != generation["outputImage"]["fileHash"]
    data = file_of(fast, again["outputImage"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == again["outputImage"]["fileHash"]
    assert_consistent(fast)


def test_regenerate_a_flow_without_generations_is_rejected(fast: Running) -> None:
    """A flow with only uploads, or nothing, has nothing to regenerate."""
    empty = create_flow(fast)
    assert_error(
        fast.project("POST", f"{FLOWS}/{empty['id']}/regenerate"), 400, "FLOW_HAS_NO_GENERATIONS"
    )
    uploaded = upload(fast, flowAlias="@only")
    assert_error(
        fast.project("POST", f"{FLOWS}/{uploaded['flowId']}/regenerate"),
        400,
        "FLOW_HAS_NO_GENERATIONS",
    )


# ======================================================================= delete


def test_delete_flow_cascades(fast: Running) -> None:
    """Generations and unaliased images go (rows and files); aliased images stay
    with ``flowId`` null; nothing outside the flow changes."""
    flow = create_flow(fast)
    fid = flow["id"]
    outside = upload(fast, flowId="null")
    kept_gen = generate(fast, flowId=fid, alias="@keep")
    plain_gen = generate(fast, flowId=fid)
    kept_upload = upload(fast, flowId=fid, alias="@upkeep")
    plain_upload = upload(fast, flowId=fid)
    referring = generate(fast, flowId=fid, referenceImages=[outside["id"], kept_upload["id"]])
    data_of(
        fast.project(
            "PUT",
            f"{FLOWS}/{fid}/aliases",
            json={"aliases": {"@x": outside["id"], "@y": plain_upload["id"]}},
        )
    )
    unflowed = generate(fast, flowId=None, referenceImages=[plain_upload["id"], outside["id"]])
    other = create_flow(fast)
    other_gen = generate(fast, flowId=other["id"])
    data_of(
        fast.project(
            "PUT",
            f"{FLOWS}/{other['id']}/aliases",
            json={
                "aliases": {"@kept": kept_gen["outputImageId"], "@gone": plain_gen["outputImageId"]}
            },
        )
    )
    assert len(query(fast, "SELECT * FROM generation_references")) == 4
    untouched = {
        image_id: row_of(fast, "images", image_id)
        for image_id in (outside["id"], unflowed["outputImageId"], other_gen["outputImageId"])
    }
    untouched_generations = {
        g["id"]: row_of(fast, "generations", g["id"]) for g in (unflowed, other_gen)
    }
    doomed_images = [plain_gen["outputImage"], plain_upload, referring["outputImage"]]
    kept_images = [kept_gen["outputImage"], kept_upload]
    assert all(file_of(fast, image).is_file() for image in doomed_images + kept_images)
    for image in doomed_images:  # warm the public byte cache
        assert cdn(fast, image).status_code == 200
    assert_consistent(fast)

    deleted = data_of(fast.project("DELETE", f"{FLOWS}/{fid}"))
    assert deleted == {"id": fid}

    assert_error(fast.project("GET", f"{FLOWS}/{fid}"), 404, "FLOW_NOT_FOUND")
    assert_error(fast.project("DELETE", f"{FLOWS}/{fid}"), 404, "FLOW_NOT_FOUND")
    assert [f["id"] for f in listed(fast.project("GET", FLOWS))[0]] == [other["id"]]
    assert row_of(fast, "flows", fid) is None
    assert flow_alias_rows(fast, fid) == {}
    for generation in (kept_gen, plain_gen, referring):
        assert row_of(fast, "generations", generation["id"]) is None
        assert_error(
            fast.project("GET", f"{GENERATIONS}/{generation['id']}"), 404, "GENERATION_NOT_FOUND"
        )
    for image in doomed_images:
        assert row_of(fast, "images", image["id"]) is None
        assert not file_of(fast, image).exists()
        assert_error(get_image(fast, image["id"]), 404, "IMAGE_NOT_FOUND")
        assert_error(cdn(fast, image), 404, "IMAGE_NOT_FOUND")
    for image in kept_images:
        row = row_of(fast, "images", image["id"])
        assert row is not None
        assert row["flow_id"] is None
        assert row["generation_id"] is None
        assert file_of(fast, image).read_bytes()
        shown = data_of(get_image(fast, image["id"]))
        assert (shown["flowId"], shown["generationId"]) == (None, None)
    assert resolved_id(fast, "@keep") == kept_gen["outputImageId"]
    assert resolved_id(fast, "@upkeep") == kept_upload["id"]

    # references of deleted generations are gone; those of others lose deleted images only
    refs = query(fast, "SELECT generation_id, image_id FROM generation_references")
    assert refs == [{"generation_id": unflowed["id"], "image_id": outside["id"]}]
    assert flow_alias_rows(fast, other["id"]) == {"@kept": kept_gen["outputImageId"]}
    for image_id, row in untouched.items():
        assert row_of(fast, "images", image_id) == row
    for generation_id, row in untouched_generations.items():
        assert row_of(fast, "generations", generation_id) == row
    other_after = get_flow(fast, other["id"])
    assert (other_after["generationCount"], other_after["imageCount"]) == (1, 1)
    assert_consistent(fast)


class GatedProvider(TinyProvider):
    """Holds every generation until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    async def generate(self, prompt: str, aspect_ratio: str, references: list[Any]) -> Any:
        self.entered.set()
        while not self.release.is_set():
            await asyncio.sleep(0.01)
        return await super().generate(prompt, aspect_ratio, references)


def test_delete_flow_while_its_generation_runs_leaves_nothing(
    start: Callable[..., Running],
) -> None:
    """A generation that finishes after its flow was deleted stores no image."""
    provider = GatedProvider()
    app = start(provider=provider)
    flow = create_flow(app)
    body = {"prompt": "slow", "flowId": flow["id"], "alias": "@late", "flowAlias": "@late"}
    response = app.project("POST", GENERATIONS, json=body, headers={"Prefer": "respond-async"})
    pending = data_of(response, 202)
    assert provider.entered.wait(10)

    assert data_of(app.project("DELETE", f"{FLOWS}/{flow['id']}")) == {"id": flow["id"]}
    assert row_of(app, "generations", pending["id"]) is None
    provider.release.set()

    running = app.services.generations._tasks  # background work in flight
    deadline = time.monotonic() + 10
    while running and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not running
    assert provider.calls == 1
    assert count(app, "images") == 0
    assert count(app, "generations") == 0
    assert count(app, "flows") == 0
    assert count(app, "flow_aliases") == 0
    assert stored_files(app) == set()
    assert_consistent(app)


def test_delete_announced_flow_is_not_found_and_touches_nothing(fast: Running) -> None:
    """An announced id without a row cannot be deleted; its members stay."""
    generation = generate(fast)
    assert_error(fast.project("DELETE", f"{FLOWS}/{generation['flowId']}"), 404, "FLOW_NOT_FOUND")
    assert row_of(fast, "generations", generation["id"]) is not None
    assert file_of(fast, generation["outputImage"]).is_file()
    assert_consistent(fast)


def test_delete_empty_flow(fast: Running) -> None:
    """A flow without members is simply removed."""
    flow = create_flow(fast, meta={"a": 1})
    assert data_of(fast.project("DELETE", f"{FLOWS}/{flow['id']}")) == {"id": flow["id"]}
    assert count(fast, "flows") == 0
    assert_consistent(fast)


def test_delete_generation_without_alias_removes_its_image(fast: Running) -> None:
    """The output image row and file go with the generation."""
    flow = create_flow(fast)
    generation = generate(fast, flowId=flow["id"])
    image = generation["outputImage"]
    response = fast.project("DELETE", f"{GENERATIONS}/{generation['id']}")
    assert data_of(response) == {"id": generation["id"]}
    assert row_of(fast, "generations", generation["id"]) is None
    assert row_of(fast, "images", image["id"]) is None
    assert not file_of(fast, image).exists()
    after = get_flow(fast, flow["id"])
    assert (after["generationCount"], after["imageCount"]) == (0, 0)
    assert_consistent(fast)


def test_delete_generation_keeps_an_aliased_image(fast: Running) -> None:
    """An output image with a project alias stays, with ``generationId`` null."""
    flow = create_flow(fast)
    generation = generate(fast, flowId=flow["id"], alias="@cover", flowAlias="@main")
    image = generation["outputImage"]
    data_of(fast.project("DELETE", f"{GENERATIONS}/{generation['id']}"))
    assert row_of(fast, "generations", generation["id"]) is None
    row = row_of(fast, "images", image["id"])
    assert row is not None
    assert (row["generation_id"], row["flow_id"], row["alias"]) == (None, flow["id"], "@cover")
    assert file_of(fast, image).is_file()
    after = get_flow(fast, flow["id"])
    assert (after["generationCount"], after["imageCount"]) == (0, 1)
    assert after["aliases"] == {"@main": image["id"]}
    assert_consistent(fast)


# ================================================================ query count


def _list_statements(app: Running, pid: str) -> tuple[list[str], int]:
    """The SELECTs one ``list_page`` call runs, traced on this thread's connection."""
    statements: list[str] = []
    if app.settings.database.url:
        pytest.skip("traces statements through sqlite3's callback")
    conn = app.services.db.raw.connection()
    conn.set_trace_callback(statements.append)
    try:
        views, total = app.services.flows.list_page(pid, 100, 0)
    finally:
        conn.set_trace_callback(None)
    assert len(views) == total
    return [s for s in statements if s.lstrip().upper().startswith("SELECT")], total


def test_list_runs_a_constant_number_of_queries(fast: Running) -> None:
    """The flow list costs the same few queries for 3 flows as for 30."""
    pid = project_id(fast)
    made = [generate(fast, prompt=f"p{i}", flowAlias="@hero") for i in range(3)]
    small, total = _list_statements(fast, pid)
    assert total == 3
    made += [generate(fast, prompt=f"p{i}", flowAlias="@hero") for i in range(3, 30)]
    large, total = _list_statements(fast, pid)
    assert total == 30
    assert len(small) == len(large) <= 4

    flows, paging = listed(fast.project("GET", FLOWS, params={"limit": 100}))
    assert paging["total"] == 30
    assert [f["id"] for f in flows] == [g["flowId"] for g in reversed(made)]
    for flow, generation in zip(flows, reversed(made), strict=True):
        assert (flow["generationCount"], flow["imageCount"]) == (1, 1)
        assert flow["aliases"] == {"@hero": generation["outputImageId"]}


# ================================================================= rate headers


def test_every_flow_route_carries_rate_limit_headers(fast: Running) -> None:
    """Successes and errors alike, with the remaining count going down."""
    flow = create_flow(fast)
    image = upload(fast, flowId=flow["id"])
    path = f"{FLOWS}/{flow['id']}"
    responses = [
        fast.project("POST", FLOWS, json={}),
        fast.project("POST", FLOWS, content=b"[]"),
        fast.project("GET", FLOWS),
        fast.project("GET", path),
        fast.project("GET", f"{FLOWS}/{new_uuid()}"),
        fast.project("GET", f"{path}/generations"),
        fast.project("GET", f"{path}/images"),
        fast.project("PUT", f"{path}/aliases", json={"aliases": {"@a": image["id"]}}),
        fast.project("PUT", f"{path}/aliases", json={}),
        fast.project("DELETE", f"{path}/aliases/@a"),
        fast.project("DELETE", f"{path}/aliases/@a"),
        fast.project("POST", f"{path}/regenerate"),
        fast.project("DELETE", path),
    ]
    remaining = []
    for response in responses:
        for name in RATE_HEADERS:
            assert name in response.headers, (response.request.url, name)
        assert response.headers["X-RateLimit-Limit"] == "1000"
        remaining.append(int(response.headers["X-RateLimit-Remaining"]))
    assert remaining == sorted(remaining, reverse=True)
    assert len(set(remaining)) == len(remaining)
