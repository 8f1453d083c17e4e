"""GET and PUT /api/v1/project (API.md §5.3)."""

from __future__ import annotations

import pytest

from tests.api.test_errors import assert_error
from tests.conftest import Running
from tests.helpers import sqlite

pytestmark = pytest.mark.both_databases


def test_get_project_defaults(app: Running) -> None:
    data = app.project("GET", "/api/v1/project").json()["data"]
    assert data["slug"] == "default"
    assert data["organizationSlug"] == "default"
    assert data["allowNewLiveScopes"] is True
    assert data["newLiveScopesGenerationLimit"] == 30


def test_put_updates_live_settings(app: Running) -> None:
    response = app.project(
        "PUT",
        "/api/v1/project",
        json={"allowNewLiveScopes": False, "newLiveScopesGenerationLimit": 5},
    )
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["allowNewLiveScopes"] is False
    assert data["newLiveScopesGenerationLimit"] == 5
    assert data["updatedAt"] >= data["createdAt"]
    with sqlite(app.settings.database_path) as db:
        row = db.execute(
            "SELECT allow_new_live_scopes, new_live_scopes_generation_limit FROM projects"
            " WHERE id = ?",
            (data["id"],),
        ).fetchone()
    assert tuple(row) == (0, 5)
    # a partial update keeps the other setting
    partial = app.project("PUT", "/api/v1/project", json={"allowNewLiveScopes": True})
    assert partial.json()["data"]["newLiveScopesGenerationLimit"] == 5
    assert app.project("GET", "/api/v1/project").json()["data"]["allowNewLiveScopes"] is True


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"allowNewLiveScopes": "yes"}, "allowNewLiveScopes"),
        ({"newLiveScopesGenerationLimit": -1}, "newLiveScopesGenerationLimit"),
        ({"newLiveScopesGenerationLimit": "3"}, "newLiveScopesGenerationLimit"),
        ({"newLiveScopesGenerationLimit": 2_000_000}, "newLiveScopesGenerationLimit"),
    ],
)
def test_put_rejects_bad_values(app: Running, body: dict[str, object], field: str) -> None:
    error = assert_error(app.project("PUT", "/api/v1/project", json=body), 400, "VALIDATION_ERROR")
    assert error["details"] == {"field": field}
    assert app.project("GET", "/api/v1/project").json()["data"]["allowNewLiveScopes"] is True


def test_put_without_body_is_rejected(app: Running) -> None:
    assert_error(app.project("PUT", "/api/v1/project"), 400, "VALIDATION_ERROR")
