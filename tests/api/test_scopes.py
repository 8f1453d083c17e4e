"""Live scopes /api/v1/live/scopes (API.md §5.2), the project's live settings (§5.3)
and the ``scopes`` and ``purge cache`` commands (§9)."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import Result

from banatie_local.http import create_app
from banatie_local.services.container import open_services
from tests.api.test_errors import assert_error
from tests.api.test_live import (
    LIVE,
    FakeProvider,
    assert_hit,
    assert_miss,
    count,
    live,
    rows,
    storage_path,
)
from tests.conftest import Running
from tests.helpers import LiveServer, sqlite

pytestmark = pytest.mark.both_databases

SCOPES = "/api/v1/live/scopes"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")

Start = Callable[..., Running]


@pytest.fixture
def fake() -> FakeProvider:
    return FakeProvider()


@pytest.fixture
def app(start_server: Start, fake: FakeProvider) -> Running:
    """An appliance with the fast fake provider."""
    return start_server(provider=fake)


def create(app: Running, slug: str, key: str | None = None, **fields: Any) -> dict[str, Any]:
    headers = {"X-API-Key": key} if key else {}
    response = app.project("POST", SCOPES, json={"slug": slug, **fields}, headers=headers)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def get_scope(app: Running, slug: str, **params: Any) -> httpx.Response:
    return app.project("GET", f"{SCOPES}/{slug}", params=params)


def iso_ms(micros: int) -> str:
    """Epoch microseconds as the API writes timestamps."""
    moment = datetime.fromtimestamp(micros // 1_000_000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{micros % 1_000_000 // 1000:03d}Z"


def project_id(app: Running) -> str:
    value: str = app.project("GET", "/api/v1/project").json()["data"]["id"]
    return value


# ------------------------------------------------------------------------- create


def test_create_returns_the_scope_object(app: Running) -> None:
    response = app.project("POST", SCOPES, json={"slug": "Hero_images-1", "unknown": 1})
    assert response.status_code == 201
    body = response.json()
    assert body["success"] is True
    data = body["data"]
    assert set(data) == {
        "id",
        "projectId",
        "slug",
        "allowNewGenerations",
        "newGenerationsLimit",
        "currentGenerations",
        "lastGeneratedAt",
        "meta",
        "createdAt",
        "updatedAt",
    }
    assert UUID.match(data["id"])
    assert data["projectId"] == project_id(app)
    assert data["slug"] == "Hero_images-1"
    assert data["allowNewGenerations"] is True
    assert data["newGenerationsLimit"] == 30
    assert data["currentGenerations"] == 0
    assert data["lastGeneratedAt"] is None
    assert data["meta"] == {}
    assert ISO.match(data["createdAt"])
    assert data["updatedAt"] == data["createdAt"]
    (row,) = rows(app, "SELECT * FROM live_scopes")
    assert (row["id"], row["slug"], row["new_generations_limit"]) == (data["id"], data["slug"], 30)


def test_create_with_every_field(app: Running) -> None:
    data = create(
        app, "tuned", allowNewGenerations=False, newGenerationsLimit=5, meta={"team": "web"}
    )
    assert data["allowNewGenerations"] is False
    assert data["newGenerationsLimit"] == 5
    assert data["meta"] == {"team": "web"}
    assert create(app, "open", newGenerationsLimit=0)["newGenerationsLimit"] == 0


@pytest.mark.parametrize("slug", ["bad.scope", "", "s" * 65, "with space", "ünï", "a/b"])
def test_create_rejects_bad_slugs(app: Running, slug: str) -> None:
    response = app.project("POST", SCOPES, json={"slug": slug})
    error = assert_error(response, 400, "SCOPE_INVALID_FORMAT")
    assert error["details"] == {"field": "slug"}
    assert count(app, "live_scopes") == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "slug"),
        ({"slug": 123}, "slug"),
        ({"slug": None}, "slug"),
        ({"slug": "ok", "newGenerationsLimit": -1}, "newGenerationsLimit"),
        ({"slug": "ok", "newGenerationsLimit": "3"}, "newGenerationsLimit"),
        ({"slug": "ok", "newGenerationsLimit": 1.5}, "newGenerationsLimit"),
        ({"slug": "ok", "newGenerationsLimit": True}, "newGenerationsLimit"),
        ({"slug": "ok", "newGenerationsLimit": 1_000_001}, "newGenerationsLimit"),
        ({"slug": "ok", "allowNewGenerations": "yes"}, "allowNewGenerations"),
        ({"slug": "ok", "meta": "x"}, "meta"),
    ],
)
def test_create_rejects_bad_fields(app: Running, body: dict[str, Any], field: str) -> None:
    error = assert_error(app.project("POST", SCOPES, json=body), 400, "VALIDATION_ERROR")
    assert error["details"] == {"field": field}
    assert count(app, "live_scopes") == 0


def test_create_rejects_bodies_that_are_not_objects(app: Running) -> None:
    for content in (b"", b"not json", b"[1]", b'"slug"'):
        response = app.project(
            "POST", SCOPES, content=content, headers={"Content-Type": "application/json"}
        )
        assert_error(response, 400, "VALIDATION_ERROR")
    assert count(app, "live_scopes") == 0


def test_duplicate_slug_is_409_within_a_project_only(app: Running) -> None:
    create(app, "dup")
    assert_error(app.project("POST", SCOPES, json={"slug": "dup"}), 409, "SCOPE_ALREADY_EXISTS")
    other = app.new_project_key()
    theirs = create(app, "dup", key=other)
    assert theirs["projectId"] != project_id(app)
    assert count(app, "live_scopes") == 2


# --------------------------------------------------------------------- list, get


def test_list_is_paginated_newest_first_with_live_counts(app: Running) -> None:
    create(app, "a")
    create(app, "b")
    create(app, "c")
    assert_miss(live(app, "one", scope="b"))
    assert_miss(live(app, "two", scope="b"))
    assert_hit(live(app, "two", scope="b"))
    assert_miss(live(app, "auto prompt", scope="auto"))  # created by the live URL

    response = app.project("GET", SCOPES)
    assert response.status_code == 200
    body = response.json()
    assert [s["slug"] for s in body["data"]] == ["auto", "c", "b", "a"]
    assert body["pagination"] == {"total": 4, "limit": 20, "offset": 0, "hasMore": False}
    by_slug = {s["slug"]: s for s in body["data"]}
    assert by_slug["b"]["currentGenerations"] == 2
    assert by_slug["auto"]["currentGenerations"] == 1
    assert by_slug["a"]["currentGenerations"] == 0
    assert by_slug["a"]["lastGeneratedAt"] is None
    (newest,) = rows(
        app,
        "SELECT MAX(e.created_at) AS t FROM live_cache_entries e"
        " JOIN live_scopes s ON s.id = e.scope_id WHERE s.slug = 'b'",
    )
    assert by_slug["b"]["lastGeneratedAt"] == iso_ms(newest["t"])
    assert by_slug["b"]["lastGeneratedAt"] >= by_slug["b"]["createdAt"]

    page = app.project("GET", SCOPES, params={"limit": 2, "offset": 1}).json()
    assert [s["slug"] for s in page["data"]] == ["c", "b"]
    assert page["pagination"] == {"total": 4, "limit": 2, "offset": 1, "hasMore": True}
    last = app.project("GET", SCOPES, params={"limit": 2, "offset": 2}).json()
    assert last["pagination"]["hasMore"] is False
    assert_error(app.project("GET", SCOPES, params={"limit": "x"}), 400, "VALIDATION_ERROR")
    # another project sees none of them
    other = app.new_project_key()
    theirs = app.project("GET", SCOPES, headers={"X-API-Key": other}).json()
    assert theirs["data"] == []
    assert theirs["pagination"]["total"] == 0


def test_get_pages_the_scope_images_newest_first(app: Running) -> None:
    image_ids = [live(app, f"picture {i}", scope="gallery").headers["x-image-id"] for i in range(3)]
    assert_miss(live(app, "elsewhere", scope="other"))
    response = get_scope(app, "gallery")
    assert response.status_code == 200
    body = response.json()
    data = body["data"]
    assert data["slug"] == "gallery"
    assert data["currentGenerations"] == 3
    assert [image["id"] for image in data["images"]] == image_ids[::-1]
    assert body["pagination"] == {"total": 3, "limit": 20, "offset": 0, "hasMore": False}
    for image in data["images"]:
        assert image["meta"]["scope"] == "gallery"
        assert image["meta"]["isLiveUrl"] is True
        assert image["source"] == "generated"

    paged = get_scope(app, "gallery", limit=1, offset=1).json()
    assert [image["id"] for image in paged["data"]["images"]] == [image_ids[1]]
    assert paged["pagination"] == {"total": 3, "limit": 1, "offset": 1, "hasMore": True}
    assert paged["data"]["currentGenerations"] == 3
    tail = get_scope(app, "gallery", limit=5, offset=2).json()
    assert [image["id"] for image in tail["data"]["images"]] == [image_ids[0]]
    assert tail["pagination"]["hasMore"] is False
    assert_error(get_scope(app, "gallery", offset="x"), 400, "VALIDATION_ERROR")

    empty = get_scope(app, create(app, "empty")["slug"]).json()
    assert empty["data"]["images"] == []
    assert empty["pagination"]["total"] == 0


def test_unknown_and_foreign_scopes_are_404(app: Running) -> None:
    other = app.new_project_key()
    create(app, "theirs", key=other)
    for slug in ("nope", "theirs", "bad.slug"):
        assert_error(get_scope(app, slug), 404, "SCOPE_NOT_FOUND")
        assert_error(
            app.project("PUT", f"{SCOPES}/{slug}", json={"newGenerationsLimit": 1}),
            404,
            "SCOPE_NOT_FOUND",
        )
        assert_error(
            app.project("POST", f"{SCOPES}/{slug}/regenerate", json={}), 404, "SCOPE_NOT_FOUND"
        )
        assert_error(app.project("DELETE", f"{SCOPES}/{slug}"), 404, "SCOPE_NOT_FOUND")
    (row,) = rows(app, "SELECT new_generations_limit FROM live_scopes WHERE slug = 'theirs'")
    assert row["new_generations_limit"] == 30
    assert_error(app.client.get(SCOPES), 401, "MISSING_API_KEY")


# ------------------------------------------------------------------------- update


def test_update_changes_settings_and_live_behaviour(app: Running) -> None:
    created = create(app, "tune", meta={"a": 1})
    assert_miss(live(app, "first", scope="tune"))
    time.sleep(0.002)
    response = app.project(
        "PUT",
        f"{SCOPES}/tune",
        json={"allowNewGenerations": False, "newGenerationsLimit": 7, "meta": {"b": 2}},
    )
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["allowNewGenerations"] is False
    assert data["newGenerationsLimit"] == 7
    assert data["meta"] == {"b": 2}
    assert data["currentGenerations"] == 1
    assert data["createdAt"] == created["createdAt"]
    assert data["updatedAt"] > created["updatedAt"]
    assert_error(live(app, "second", scope="tune"), 403, "SCOPE_GENERATIONS_DISABLED")

    # a partial update keeps the rest
    partial = app.project("PUT", f"{SCOPES}/tune", json={"allowNewGenerations": True}).json()
    assert partial["data"]["newGenerationsLimit"] == 7
    assert partial["data"]["meta"] == {"b": 2}
    assert_miss(live(app, "second", scope="tune"))

    # a limit at the current count stops new generations
    app.project("PUT", f"{SCOPES}/tune", json={"newGenerationsLimit": 2})
    assert_error(live(app, "third", scope="tune"), 429, "SCOPE_GENERATION_LIMIT_EXCEEDED")
    assert_hit(live(app, "first", scope="tune"))


@pytest.mark.parametrize(
    "body",
    [
        {"newGenerationsLimit": -1},
        {"newGenerationsLimit": "3"},
        {"newGenerationsLimit": 2.5},
        {"allowNewGenerations": "false"},
        {"meta": [1]},
    ],
)
def test_update_rejects_bad_values(app: Running, body: dict[str, Any]) -> None:
    create(app, "strict", newGenerationsLimit=4)
    response = app.project("PUT", f"{SCOPES}/strict", json=body)
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["details"] == {"field": next(iter(body))}
    data = get_scope(app, "strict").json()["data"]
    assert (data["newGenerationsLimit"], data["allowNewGenerations"]) == (4, True)


def test_update_without_body_is_rejected(app: Running) -> None:
    create(app, "strict")
    assert_error(app.project("PUT", f"{SCOPES}/strict"), 400, "VALIDATION_ERROR")


# --------------------------------------------------------------------- regenerate


def test_regenerate_one_image_in_place(start_server: Start) -> None:
    provider = FakeProvider(vary=True)
    app = start_server(provider=provider)
    first = live(app, "changing", scope="regen")
    image_id = first.headers["x-image-id"]
    assert_hit(live(app, "changing", scope="regen"))  # now held in memory
    before = app.project("GET", f"/api/v1/images/{image_id}").json()["data"]

    response = app.project("POST", f"{SCOPES}/regen/regenerate", json={"imageId": image_id})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["regenerated"] == 1
    (image,) = data["images"]
    assert image["id"] == image_id
    assert image["storageUrl"] == before["storageUrl"]
    assert image["storageKey"] == before["storageKey"]
    assert image["fileHash"] != before["fileHash"]
    assert len(provider.calls) == 2

    served = live(app, "changing", scope="regen")
    assert_hit(served)
    assert served.headers["x-image-id"] == image_id
    assert served.content != first.content
    assert served.headers["etag"] == f'"{image["fileHash"]}"'
    cdn = app.client.get(f"/cdn/default/default/img/{image_id}")
    assert cdn.content == served.content
    assert count(app, "images") == 1
    assert count(app, "live_cache_entries") == 1


def test_regenerate_every_image_of_the_scope(start_server: Start) -> None:
    provider = FakeProvider(vary=True)
    app = start_server(provider=provider)
    firsts = {live(app, p, scope="all").headers["x-image-id"]: p for p in ("one", "two")}
    assert_miss(live(app, "outside", scope="other"))
    hashes = {r["id"]: r["file_hash"] for r in rows(app, "SELECT id, file_hash FROM images")}
    response = app.project("POST", f"{SCOPES}/all/regenerate")
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["regenerated"] == 2
    assert {image["id"] for image in data["images"]} == set(firsts)
    for image in data["images"]:
        assert image["fileHash"] != hashes[image["id"]]
    assert len(provider.calls) == 5
    (outside,) = rows(app, "SELECT file_hash FROM images WHERE id NOT IN (?, ?)", *firsts)
    assert outside["file_hash"] in hashes.values()
    assert (
        app.project("POST", f"{SCOPES}/all/regenerate", json={}).json()["data"]["regenerated"] == 2
    )


def test_regenerate_an_image_whose_generation_was_deleted(start_server: Start) -> None:
    """An aliased live image outlives its generation; regenerating it makes a new one."""
    provider = FakeProvider(vary=True)
    app = start_server(provider=provider)
    first = live(app, "outlived", scope="keep")
    image_id = first.headers["x-image-id"]
    app.project("PUT", f"/api/v1/images/{image_id}/alias", json={"alias": "@kept"})
    deleted = app.project("DELETE", f"/api/v1/generations/{first.headers['x-generation-id']}")
    assert deleted.status_code == 200
    (entry,) = rows(app, "SELECT generation_id FROM live_cache_entries")
    assert entry["generation_id"] is None

    response = app.project("POST", f"{SCOPES}/keep/regenerate", json={"imageId": image_id})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["regenerated"] == 1
    assert data["images"][0]["id"] == image_id
    assert data["images"][0]["alias"] == "@kept"
    (entry,) = rows(app, "SELECT generation_id FROM live_cache_entries")
    assert entry["generation_id"] not in (None, first.headers["x-generation-id"])
    served = live(app, "outlived", scope="keep")
    assert_hit(served)
    assert served.content != first.content
    assert served.headers["etag"] == f'"{data["images"][0]["fileHash"]}"'


def test_regenerate_rejects_images_outside_the_scope(app: Running) -> None:
    create(app, "mine")
    assert_miss(live(app, "in mine", scope="mine"))
    other_image = live(app, "in other", scope="other").headers["x-image-id"]
    for image_id in (other_image, str(uuid.uuid4()), "not-a-uuid"):
        response = app.project("POST", f"{SCOPES}/mine/regenerate", json={"imageId": image_id})
        assert_error(response, 400, "IMAGE_NOT_IN_SCOPE")
    assert_error(
        app.project("POST", f"{SCOPES}/mine/regenerate", json={"imageId": 5}),
        400,
        "VALIDATION_ERROR",
    )


def test_regenerate_an_empty_scope(app: Running) -> None:
    create(app, "empty")
    response = app.project("POST", f"{SCOPES}/empty/regenerate", json={})
    assert response.status_code == 200
    assert response.json()["data"] == {"regenerated": 0, "images": []}


# ------------------------------------------------------------------------- delete


def test_delete_removes_entries_and_unaliased_images(app: Running, fake: FakeProvider) -> None:
    ids = [live(app, p, scope="gone").headers["x-image-id"] for p in ("p1", "p2", "p3")]
    kept_elsewhere = live(app, "p1", scope="stays").headers["x-image-id"]
    alias = app.project("PUT", f"/api/v1/images/{ids[1]}/alias", json={"alias": "@keep"})
    assert alias.status_code == 200, alias.text
    assert_hit(live(app, "p1", scope="gone"))  # in memory
    paths = {image_id: storage_path(app, image_id) for image_id in ids}
    scope_id = get_scope(app, "gone").json()["data"]["id"]

    response = app.project("DELETE", f"{SCOPES}/gone")
    assert response.status_code == 200
    assert response.json() == {"success": True, "data": {"id": scope_id}}

    assert rows(app, "SELECT * FROM live_scopes WHERE id = ?", scope_id) == []
    assert rows(app, "SELECT * FROM live_cache_entries WHERE scope_id = ?", scope_id) == []
    remaining = {r["id"] for r in rows(app, "SELECT id FROM images")}
    assert remaining == {ids[1], kept_elsewhere}
    assert not paths[ids[0]].exists()
    assert not paths[ids[2]].exists()
    assert paths[ids[1]].exists()
    aliased = app.client.get("/cdn/default/default/img/@keep")
    assert aliased.status_code == 200
    assert aliased.headers["x-image-id"] == ids[1]
    # the generations stay as history
    assert count(app, "generations") == 4
    assert_error(get_scope(app, "gone"), 404, "SCOPE_NOT_FOUND")

    calls = len(fake.calls)
    again = live(app, "p1", scope="gone")
    assert_miss(again)
    assert again.headers["x-image-id"] not in ids
    assert_miss(live(app, "p2", scope="gone"))
    assert len(fake.calls) == calls + 2
    assert_hit(live(app, "p1", scope="stays"), 1)
    recreated = get_scope(app, "gone").json()["data"]
    assert recreated["id"] != scope_id
    assert recreated["currentGenerations"] == 2


# --------------------------------------------------------------- project settings


def test_project_settings_drive_scope_auto_creation(app: Running) -> None:
    project = app.project("GET", "/api/v1/project").json()["data"]
    assert project["allowNewLiveScopes"] is True
    assert project["newLiveScopesGenerationLimit"] == 30
    assert_miss(live(app, "x", scope="defaulted"))
    assert get_scope(app, "defaulted").json()["data"]["newGenerationsLimit"] == 30

    updated = app.project("PUT", "/api/v1/project", json={"newLiveScopesGenerationLimit": 3})
    assert updated.json()["data"]["newLiveScopesGenerationLimit"] == 3
    assert_miss(live(app, "x", scope="small"))
    assert get_scope(app, "small").json()["data"]["newGenerationsLimit"] == 3
    # explicitly created scopes keep the API default
    assert create(app, "explicit")["newGenerationsLimit"] == 30

    closed = app.project("PUT", "/api/v1/project", json={"allowNewLiveScopes": False})
    assert closed.json()["data"]["allowNewLiveScopes"] is False
    assert_error(live(app, "x", scope="refused"), 403, "SCOPE_CREATION_DISABLED")
    assert_error(get_scope(app, "refused"), 404, "SCOPE_NOT_FOUND")
    assert_miss(live(app, "x", scope="explicit"))

    app.project("PUT", "/api/v1/project", json={"allowNewLiveScopes": True})
    assert_miss(live(app, "x", scope="refused"))
    assert_error(
        app.project("PUT", "/api/v1/project", json={"newLiveScopesGenerationLimit": -1}),
        400,
        "VALIDATION_ERROR",
    )


# -------------------------------------------------------------------------- CLI


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


def test_cli_scopes_commands(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    data = str(tmp_path / "cli-data")
    assert as_json(run_cli("init", "--json", "--data-dir", data))["createdProject"] is True

    created = as_json(
        run_cli("scopes", "create", "banners", "--limit", "5", "--json", "--data-dir", data)
    )
    assert created["slug"] == "banners"
    assert created["newGenerationsLimit"] == 5
    assert created["allowNewGenerations"] is True
    assert created["currentGenerations"] == 0
    closed = as_json(
        run_cli(
            "scopes", "create", "closed", "--no-allow-new-generations", "--json", "--data-dir", data
        )
    )
    assert closed["allowNewGenerations"] is False
    assert closed["newGenerationsLimit"] == 30

    duplicate = run_cli("scopes", "create", "banners", "--data-dir", data)
    assert duplicate.exit_code == 1
    assert "already exists" in duplicate.stderr
    bad = run_cli("scopes", "create", "bad.slug", "--data-dir", data)
    assert bad.exit_code == 1
    assert "Traceback" not in bad.output

    listed = as_json(run_cli("scopes", "list", "--json", "--data-dir", data))
    assert [s["slug"] for s in listed] == ["closed", "banners"]

    updated = as_json(
        run_cli(
            "scopes",
            "update",
            "banners",
            "--no-allow-new-generations",
            "--limit",
            "2",
            "--json",
            "--data-dir",
            data,
        )
    )
    assert updated["allowNewGenerations"] is False
    assert updated["newGenerationsLimit"] == 2
    kept = as_json(run_cli("scopes", "update", "banners", "--json", "--data-dir", data))
    assert (kept["allowNewGenerations"], kept["newGenerationsLimit"]) == (False, 2)

    deleted = as_json(run_cli("scopes", "delete", "banners", "--json", "--data-dir", data))
    assert deleted == {"id": created["id"]}
    missing = run_cli("scopes", "delete", "banners", "--data-dir", data)
    assert missing.exit_code == 1
    assert missing.stderr == "Error: scope banners does not exist.\n"
    unknown_project = run_cli("scopes", "list", "--project", "no/where", "--data-dir", data)
    assert unknown_project.exit_code == 1
    with sqlite(Path(data) / "banatie.db") as conn:
        assert [r[0] for r in conn.execute("SELECT slug FROM live_scopes")] == ["closed"]


def test_cli_purge_cache_and_scope_delete(
    run_cli: Callable[..., Result], start_server: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``purge cache --scope`` drops that scope's entries and unaliased images and keeps
    the scope; ``scopes delete`` does the same and removes the scope. A server started
    afterwards generates those prompts again."""
    provider = FakeProvider()
    app = start_server(provider=provider)
    if app.settings.database.url:  # the CLI opens the same database
        monkeypatch.setenv("BANATIE_DATABASE_URL", app.settings.database.url)
    data = str(app.settings.data_dir)
    purged_ids = [live(app, p, scope="s1").headers["x-image-id"] for p in ("a", "b", "c")]
    s2_ids = [live(app, p, scope="s2").headers["x-image-id"] for p in ("a", "b")]
    s3_id = live(app, "a", scope="s3").headers["x-image-id"]
    app.project("PUT", f"/api/v1/images/{purged_ids[0]}/alias", json={"alias": "@hero"})
    app.project("PUT", f"/api/v1/images/{s2_ids[0]}/alias", json={"alias": "@banner"})
    paths = {i: storage_path(app, i) for i in [*purged_ids, *s2_ids, s3_id]}
    s2 = get_scope(app, "s2").json()["data"]
    app.client.close()  # no keep-alive connection outlives the server
    app.server.stop()

    result = as_json(
        run_cli(
            "purge",
            "cache",
            "--scope",
            "s1",
            "--project",
            "default/default",
            "--json",
            "--data-dir",
            data,
        )
    )
    assert result == {"purged": 3}
    entries = rows(app, "SELECT image_id FROM live_cache_entries")
    assert {e["image_id"] for e in entries} == {*s2_ids, s3_id}
    assert {r["id"] for r in rows(app, "SELECT id FROM images")} == {purged_ids[0], *s2_ids, s3_id}
    assert paths[purged_ids[0]].exists()
    assert not paths[purged_ids[1]].exists()
    assert not paths[purged_ids[2]].exists()
    assert {r["slug"] for r in rows(app, "SELECT slug FROM live_scopes")} == {"s1", "s2", "s3"}

    deleted = as_json(run_cli("scopes", "delete", "s2", "--json", "--data-dir", data))
    assert deleted == {"id": s2["id"]}
    assert {r["slug"] for r in rows(app, "SELECT slug FROM live_scopes")} == {"s1", "s3"}
    assert [e["image_id"] for e in rows(app, "SELECT image_id FROM live_cache_entries")] == [s3_id]
    assert {r["id"] for r in rows(app, "SELECT id FROM images")} == {
        purged_ids[0],
        s2_ids[0],
        s3_id,
    }
    assert paths[s2_ids[0]].exists()
    assert not paths[s2_ids[1]].exists()
    missing = run_cli("purge", "cache", "--scope", "nope", "--data-dir", data)
    assert missing.exit_code == 1
    assert "scope nope does not exist" in missing.stderr

    server = LiveServer(create_app(app.settings, open_services(app.settings, provider=provider)))
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:

            def get(prompt: str, scope: str) -> httpx.Response:
                return client.get(f"{LIVE}/{scope}", params={"prompt": prompt})

            calls = len(provider.calls)
            assert_miss(get("b", "s1"))
            assert_miss(get("a", "s1"))
            assert_miss(get("b", "s2"))
            assert_hit(get("a", "s3"))
            assert len(provider.calls) == calls + 3
    finally:
        server.stop()
