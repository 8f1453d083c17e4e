"""X-API-Key authentication: every way a key can fail, on both key types."""

from __future__ import annotations

import time

import pytest

from tests.api.test_errors import assert_error
from tests.conftest import Running
from tests.helpers import eventually, sqlite

pytestmark = pytest.mark.both_databases


def test_project_key_opens_v1(app: Running) -> None:
    response = app.project("GET", "/api/v1/project")
    assert response.status_code == 200
    assert response.json()["data"]["slug"] == "default"


def test_master_key_is_forbidden_on_v1(app: Running) -> None:
    assert_error(app.admin("GET", "/api/v1/project"), 403, "FORBIDDEN")


def test_project_key_is_forbidden_on_admin(app: Running) -> None:
    assert_error(app.project("GET", "/api/admin/keys"), 403, "FORBIDDEN")
    assert_error(app.project("POST", "/api/admin/keys", json={"type": "master"}), 403, "FORBIDDEN")


@pytest.mark.parametrize("path", ["/api/v1/project", "/api/admin/keys"])
def test_missing_key(app: Running, path: str) -> None:
    assert_error(app.client.get(path), 401, "MISSING_API_KEY")
    assert_error(app.client.get(path, headers={"X-API-Key": ""}), 401, "MISSING_API_KEY")


@pytest.mark.parametrize(
    "key",
    [
        "nonsense",
        "bnt_" + "0" * 64,  # well formed, unknown
        "bnt_" + "A" * 64,  # uppercase hex is not a key
        "bnt_" + "0" * 63,
        "Bearer bnt_" + "0" * 64,
    ],
)
@pytest.mark.parametrize("path", ["/api/v1/project", "/api/admin/keys"])
def test_invalid_key(app: Running, key: str, path: str) -> None:
    assert_error(app.client.get(path, headers={"X-API-Key": key}), 401, "INVALID_API_KEY")


def test_revoked_key(app: Running) -> None:
    created = app.admin("POST", "/api/admin/keys", json={"type": "project"}).json()["data"]
    headers = {"X-API-Key": created["key"]}
    assert app.client.get("/api/v1/project", headers=headers).status_code == 200
    assert app.admin("DELETE", f"/api/admin/keys/{created['id']}").status_code == 200
    assert_error(app.client.get("/api/v1/project", headers=headers), 401, "API_KEY_REVOKED")


def test_revoked_master_key(app: Running) -> None:
    created = app.admin("POST", "/api/admin/keys", json={"type": "master"}).json()["data"]
    app.admin("DELETE", f"/api/admin/keys/{created['id']}")
    response = app.client.get("/api/admin/keys", headers={"X-API-Key": created["key"]})
    assert_error(response, 401, "API_KEY_REVOKED")


def test_expired_key(app: Running) -> None:
    created = app.admin(
        "POST", "/api/admin/keys", json={"type": "project", "expiresInDays": 1}
    ).json()["data"]
    headers = {"X-API-Key": created["key"]}
    assert app.client.get("/api/v1/project", headers=headers).status_code == 200
    past = int((time.time() - 1) * 1_000_000)
    with sqlite(app.settings.database_path) as db:
        db.execute("UPDATE api_keys SET expires_at = ? WHERE id = ?", (past, created["id"]))
        db.commit()
    # another connection's change reaches the server through the change feed
    eventually(lambda: app.client.get("/api/v1/project", headers=headers).status_code == 401)
    assert_error(app.client.get("/api/v1/project", headers=headers), 401, "API_KEY_EXPIRED")


def test_only_the_hash_is_stored(app: Running) -> None:
    import hashlib

    with sqlite(app.settings.database_path) as db:
        rows = db.execute("SELECT * FROM api_keys").fetchall()
    assert app.project_key
    assert app.master_key
    dump = repr([tuple(row) for row in rows])
    assert app.project_key not in dump
    assert app.master_key not in dump
    hashes = {row["key_hash"] for row in rows}
    assert hashlib.sha256(app.project_key.encode()).hexdigest() in hashes
    assert hashlib.sha256(app.master_key.encode()).hexdigest() in hashes


def test_last_used_at_is_recorded(app: Running) -> None:
    app.project("GET", "/api/v1/project")
    keys = app.admin("GET", "/api/admin/keys").json()["data"]
    by_type = {k["type"]: k for k in keys}
    assert by_type["project"]["lastUsedAt"] is not None
    assert by_type["master"]["lastUsedAt"] is not None


def test_key_of_another_project_sees_its_own_project(app: Running) -> None:
    other = app.admin(
        "POST",
        "/api/admin/keys",
        json={"type": "project", "organizationSlug": "acme", "projectSlug": "site"},
    ).json()["data"]
    response = app.client.get("/api/v1/project", headers={"X-API-Key": other["key"]})
    data = response.json()["data"]
    assert data["organizationSlug"] == "acme"
    assert data["slug"] == "site"
    assert data["id"] != app.project("GET", "/api/v1/project").json()["data"]["id"]
