"""``banatie-local db copy --to URL``: a workstation's SQLite database moved whole to
PostgreSQL (or to another SQLite file), then read back through the API of an
appliance on the new database."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from tests import postgres
from tests.conftest import Running, run_appliance
from tests.imagedata import png_bytes

pytestmark = pytest.mark.skipif(not postgres.available(), reason="PostgreSQL is not installed")


def populate(app: Running) -> None:
    """One of most things: uploads, generations in a flow, aliases, a live URL and its
    scope, a legacy published name, a second key."""
    up = app.project(
        "POST",
        "/api/v1/images/upload",
        data={"alias": "@hero"},
        files={"file": ("a.png", png_bytes(16, 16, (1, 2, 3)), "image/png")},
    )
    assert up.status_code == 201, up.text
    first = app.project(
        "POST",
        "/api/v1/generations",
        json={"prompt": "a fox", "referenceImages": ["@hero"], "alias": "@fox"},
    )
    flow = first.json()["data"]["flowId"]
    app.project("POST", "/api/v1/generations", json={"prompt": "a fox, again", "flowId": flow,
                                                      "flowAlias": "@again"})  # fmt: skip
    assert app.client.get("/cdn/default/default/live/pages",
                          params={"prompt": "a quiet harbour"}).status_code == 200  # fmt: skip
    legacy = app.project(
        "POST",
        "/api/upload",
        data={"filename": "logo.png"},
        files={"file": ("x.png", png_bytes(8, 8, (9, 9, 9)), "image/png")},
    )
    assert legacy.status_code == 201, legacy.text
    app.new_project_key("other", "site")


def snapshot(app: Running) -> dict[str, Any]:
    """Everything a client can read of the default project, by id."""

    def listed(path: str) -> Any:
        response = app.project("GET", path, params={"limit": 100})
        assert response.status_code == 200, response.text
        body = response.json()
        return body["data"], body.get("pagination", {}).get("total")

    images, generations = listed("/api/v1/images"), listed("/api/v1/generations")
    return {
        "images": images, "generations": generations, "flows": listed("/api/v1/flows"),
        "scopes": listed("/api/v1/live/scopes"), "project": listed("/api/v1/project"),
        "bytes": {i["id"]: app.client.get(f"/cdn/default/default/img/{i['id']}").content
                  for i in images[0]},
        "published": app.client.get("/api/images/default/default/uploads/logo.png").content,
    }  # fmt: skip


@pytest.fixture
def workstation(tmp_path: Path) -> tuple[Running, dict[str, Any]]:
    app = run_appliance(tmp_path / "data")
    populate(app)
    before = snapshot(app)
    app.stop()
    return app, before


def test_copy_to_postgres_reads_back_the_same_through_the_api(
    workstation: tuple[Running, dict[str, Any]], run_cli: Callable[..., Result],
    pg_server: postgres.PostgresServer,
) -> None:  # fmt: skip
    old, before = workstation
    target = pg_server.new_database()
    data = str(old.settings.data_dir)
    result = run_cli("db", "copy", "--to", target, "--data-dir", data, "--json")
    assert result.exit_code == 0, (result.output, result.exception)
    report = json.loads(result.stdout)
    assert report["rows"]["images"] == len(before["images"][0])
    assert report["rows"]["project_counts"] > 0  # rebuilt by the target's triggers, and equal
    assert set(report["checksums"]) >= {"generations", "images", "flow_counts"}

    # the same data dir (its files), now on PostgreSQL, with the same keys
    moved = run_appliance(old.settings.data_dir, create_keys=False, database__url=target)
    moved.project_key, moved.master_key = old.project_key, old.master_key
    try:
        after = snapshot(moved)
        assert after == before
        hit = moved.client.get("/cdn/default/default/live/pages",
                               params={"prompt": "a quiet harbour"})  # fmt: skip
        assert hit.headers["x-cache-status"] == "HIT"
        made = moved.project(
            "POST",
            "/api/v1/generations",
            json={"prompt": "after the move", "referenceImages": ["@fox"]},
        )
        assert made.status_code == 201, made.text
    finally:
        moved.stop()

    # a second copy into the same database is refused, and changes nothing
    again = run_cli("db", "copy", "--to", target, "--data-dir", data)
    assert again.exit_code == 1
    assert "is not empty" in again.output


def test_copy_to_another_sqlite_file(
    workstation: tuple[Running, dict[str, Any]], run_cli: Callable[..., Result],
    tmp_path: Path,
) -> None:  # fmt: skip
    old, _ = workstation
    target = tmp_path / "copy" / "banatie.db"
    result = run_cli("db", "copy", "--to", str(target), "--data-dir", str(old.settings.data_dir))
    assert result.exit_code == 0, (result.output, result.exception)
    assert "checksums match" in result.output
    refused = run_cli("db", "copy", "--to", str(old.settings.database_path), "--data-dir",
                      str(old.settings.data_dir))  # fmt: skip
    assert refused.exit_code == 1
    assert "already uses" in refused.output
