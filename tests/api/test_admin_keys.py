"""Bootstrap and the admin key lifecycle (API.md §7), and list pagination (§0)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from tests.api.test_errors import assert_error
from tests.conftest import Running
from tests.helpers import sqlite

pytestmark = pytest.mark.both_databases

KEY_RE = re.compile(r"^bnt_[0-9a-f]{64}$")
ISO_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_bootstrap_creates_one_master_key_then_refuses(
    start_server: Callable[..., Running],
) -> None:
    running = start_server(create_keys=False)
    response = running.client.post("/api/bootstrap/initial-key")
    assert response.status_code == 201
    data = response.json()["data"]
    assert KEY_RE.match(data["key"])
    assert data["type"] == "master"
    listed = running.client.get("/api/admin/keys", headers={"X-API-Key": data["key"]})
    assert listed.status_code == 200
    assert [k["id"] for k in listed.json()["data"]] == [data["id"]]
    assert_error(running.client.post("/api/bootstrap/initial-key"), 403, "BOOTSTRAP_DISABLED")


def test_bootstrap_is_disabled_after_init(app: Running) -> None:
    assert_error(app.client.post("/api/bootstrap/initial-key"), 403, "BOOTSTRAP_DISABLED")


def test_create_project_key_for_new_org_and_project(app: Running) -> None:
    response = app.admin(
        "POST",
        "/api/admin/keys",
        json={
            "type": "project",
            "organizationSlug": "acme",
            "projectSlug": "landing-2",
            "name": "ci",
            "unknownField": "ignored",
        },
    )
    assert response.status_code == 201
    data = response.json()["data"]
    assert KEY_RE.match(data["key"])
    assert data["keyPrefix"] == data["key"][:12]
    assert data["type"] == "project"
    assert data["organizationSlug"] == "acme"
    assert data["projectSlug"] == "landing-2"
    assert data["name"] == "ci"
    assert data["isActive"] is True
    assert data["expiresAt"] is None
    assert ISO_RE.match(data["createdAt"])
    with sqlite(app.settings.database_path) as db:
        row = db.execute(
            "SELECT p.slug FROM projects p JOIN organizations o ON o.id = p.organization_id"
            " WHERE o.slug = 'acme'"
        ).fetchone()
    assert row["slug"] == "landing-2"
    project = app.client.get("/api/v1/project", headers={"X-API-Key": data["key"]})
    assert project.json()["data"]["slug"] == "landing-2"


def test_project_key_defaults_to_the_default_project(app: Running) -> None:
    data = app.admin("POST", "/api/admin/keys", json={"type": "project"}).json()["data"]
    assert (data["organizationSlug"], data["projectSlug"]) == ("default", "default")


def test_master_key_ignores_slugs(app: Running) -> None:
    data = app.admin(
        "POST", "/api/admin/keys", json={"type": "master", "organizationSlug": "zzz"}
    ).json()["data"]
    assert data["organizationSlug"] is None
    assert data["projectSlug"] is None


def test_expiring_key(app: Running) -> None:
    data = app.admin(
        "POST", "/api/admin/keys", json={"type": "project", "expiresInDays": 30}
    ).json()["data"]
    assert ISO_RE.match(data["expiresAt"])
    assert data["expiresAt"] > data["createdAt"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "root"}, "type"),
        ({"type": 1}, "type"),
        ({}, "type"),
        ({"type": "project", "organizationSlug": "Bad_Slug"}, "organizationSlug"),
        ({"type": "project", "projectSlug": "-x"}, "projectSlug"),
        ({"type": "project", "projectSlug": "a" * 64}, "projectSlug"),
        ({"type": "project", "name": "n" * 101}, "name"),
        ({"type": "project", "expiresInDays": 0}, "expiresInDays"),
        ({"type": "project", "expiresInDays": "7"}, "expiresInDays"),
        ({"type": "project", "expiresInDays": 1.5}, "expiresInDays"),
        ({"type": "project", "expiresInDays": True}, "expiresInDays"),
        ({"type": "project", "expiresInDays": 10**30}, "expiresInDays"),
    ],
)
def test_create_rejects_bad_fields(app: Running, body: dict[str, object], field: str) -> None:
    error = assert_error(app.admin("POST", "/api/admin/keys", json=body), 400, "VALIDATION_ERROR")
    assert error["details"] == {"field": field}


def test_list_never_shows_plaintext(app: Running) -> None:
    response = app.admin("GET", "/api/admin/keys")
    assert response.status_code == 200
    body = response.json()
    assert body["pagination"] == {"total": 2, "limit": 20, "offset": 0, "hasMore": False}
    assert app.master_key
    assert app.project_key
    assert app.master_key not in response.text
    assert app.project_key not in response.text
    assert not re.search(r"bnt_[0-9a-f]{64}", response.text)
    for item in body["data"]:
        assert set(item) == {
            "id", "name", "type", "organizationSlug", "projectSlug", "keyPrefix",
            "createdAt", "expiresAt", "lastUsedAt", "isActive",
        }  # fmt: skip


def test_list_is_newest_first_and_paginated(app: Running) -> None:
    made = [
        app.admin("POST", "/api/admin/keys", json={"type": "project", "name": f"k{i}"}).json()[
            "data"
        ]["id"]
        for i in range(3)
    ]
    first = app.admin("GET", "/api/admin/keys", params={"limit": 2}).json()
    assert [k["id"] for k in first["data"]] == [made[2], made[1]]
    assert first["pagination"] == {"total": 5, "limit": 2, "offset": 0, "hasMore": True}
    second = app.admin("GET", "/api/admin/keys", params={"limit": 2, "offset": 2}).json()
    assert next(k["id"] for k in second["data"]) == made[0]
    assert second["pagination"]["hasMore"] is True
    last = app.admin("GET", "/api/admin/keys", params={"limit": 2, "offset": 4}).json()
    assert len(last["data"]) == 1
    assert last["pagination"]["hasMore"] is False


@pytest.mark.parametrize(
    ("params", "limit", "offset"),
    [
        ({"limit": "0"}, 1, 0),
        ({"limit": "-3"}, 1, 0),
        ({"limit": "1000"}, 100, 0),
        ({"offset": "-5"}, 20, 0),
        ({"limit": "", "offset": ""}, 20, 0),
        ({"offset": str(10**40)}, 20, 10**9),
    ],
)
def test_pagination_clamps(app: Running, params: dict[str, str], limit: int, offset: int) -> None:
    body = app.admin("GET", "/api/admin/keys", params=params).json()
    assert body["pagination"]["limit"] == limit
    assert body["pagination"]["offset"] == offset


@pytest.mark.parametrize("params", [{"limit": "ten"}, {"offset": "1.5"}, {"limit": "1e2"}])
def test_pagination_rejects_non_numbers(app: Running, params: dict[str, str]) -> None:
    error = assert_error(
        app.admin("GET", "/api/admin/keys", params=params), 400, "VALIDATION_ERROR"
    )
    assert error["details"] == {"field": next(iter(params))}


def test_revoke(app: Running) -> None:
    data = app.admin("POST", "/api/admin/keys", json={"type": "project"}).json()["data"]
    response = app.admin("DELETE", f"/api/admin/keys/{data['id']}")
    assert response.status_code == 200
    assert response.json()["data"] == {"id": data["id"], "isActive": False}
    listed = {k["id"]: k for k in app.admin("GET", "/api/admin/keys").json()["data"]}
    assert listed[data["id"]]["isActive"] is False
    with sqlite(app.settings.database_path) as db:
        row = db.execute("SELECT is_active FROM api_keys WHERE id = ?", (data["id"],)).fetchone()
    assert row["is_active"] == 0


@pytest.mark.parametrize(
    "key_id", ["00000000-0000-4000-8000-000000000000", "not-a-uuid", "..%2F..%2Fetc"]
)
def test_revoke_unknown_key(app: Running, key_id: str) -> None:
    assert_error(app.admin("DELETE", f"/api/admin/keys/{key_id}"), 404, "API_KEY_NOT_FOUND")
