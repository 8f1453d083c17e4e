"""Every ``banatie-local`` command once as a real process (``python -m banatie_local``),
with a clean environment and its own data directory (API.md §9).

State a command needs (an initialised directory, a scope, a live cache entry) is
set up in-process through the services; the command under test then runs as a
subprocess and its exit code, output and effect on the database are checked.
``serve`` is covered in ``test_serve_subprocess.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from banatie_local import __version__
from banatie_local.services.container import initialize, open_services
from tests.e2e.test_cli_maintenance import upload_and_live
from tests.e2e.test_serve_subprocess import assert_no_traceback, run_command
from tests.helpers import make_settings, sqlite

pytestmark = pytest.mark.slow

WHOLE_KEY = re.compile(r"bnt_[0-9a-f]{64}")
MODULE = [sys.executable, "-m", "banatie_local"]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def initialized(data: Path) -> Path:
    """A data directory after ``init`` (done in-process)."""
    services = open_services(make_settings(data))
    try:
        initialize(services)
    finally:
        services.close()
    return data


def banatie(data: Path, *args: str) -> str:
    """Run one command as a process in ``data``'s parent; assert a clean exit 0 and
    return its stdout."""
    proc: subprocess.CompletedProcess[str] = run_command(
        MODULE, *args, "--data-dir", str(data), cwd=data.parent
    )
    assert proc.returncode == 0, proc.stderr
    assert_no_traceback(proc.stdout, proc.stderr)
    return proc.stdout


def banatie_json(data: Path, *args: str) -> Any:
    return json.loads(banatie(data, *args, "--json"))


def rows(data: Path, sql: str, *params: Any) -> list[dict[str, Any]]:
    with sqlite(data / "banatie.db") as conn:
        return [dict(row) for row in conn.execute(sql, params)]


def create_scope(data: Path, slug: str) -> str:
    services = open_services(make_settings(data))
    try:
        project = services.projects.get("default", "default").project
        return str(services.scopes.create(project.id, slug).id)
    finally:
        services.close()


# ------------------------------------------------------------------------ init


def test_init(data: Path) -> None:
    """``init --json`` creates the database and prints both keys once."""
    created = banatie_json(data, "init")
    assert created["dataDir"] == str(data)
    assert created["createdProject"] is True
    assert WHOLE_KEY.fullmatch(created["masterKey"])
    assert WHOLE_KEY.fullmatch(created["projectKey"])
    hashes = {row["key_hash"] for row in rows(data, "SELECT key_hash FROM api_keys")}
    assert hashes == {
        hashlib.sha256(created[name].encode()).hexdigest() for name in ("masterKey", "projectKey")
    }


# ------------------------------------------------------------------------ keys


def test_keys_create(initialized: Path) -> None:
    """``keys create`` prints the new key with its project; only its hash is stored."""
    created = banatie_json(
        initialized, "keys", "create", "--type", "project", "--org", "acme",
        "--project", "site", "--name", "ci", "--expires-in-days", "30",
    )  # fmt: skip
    assert WHOLE_KEY.fullmatch(created["key"])
    assert created["type"] == "project"
    assert created["organizationSlug"] == "acme"
    assert created["projectSlug"] == "site"
    assert created["name"] == "ci"
    assert created["isActive"] is True
    assert created["expiresAt"] is not None
    stored = rows(initialized, "SELECT key_hash FROM api_keys WHERE id = ?", created["id"])
    assert stored == [{"key_hash": hashlib.sha256(created["key"].encode()).hexdigest()}]


def test_keys_list(initialized: Path) -> None:
    """``keys list`` shows the two keys of ``init`` by prefix, never a whole key."""
    out = banatie(initialized, "keys", "list", "--json")
    listed = json.loads(out)
    assert sorted(item["type"] for item in listed) == ["master", "project"]
    prefixes = {row["key_prefix"] for row in rows(initialized, "SELECT key_prefix FROM api_keys")}
    assert {item["keyPrefix"] for item in listed} == prefixes
    assert all(item["isActive"] for item in listed)
    assert not WHOLE_KEY.search(out)


def test_keys_revoke(initialized: Path) -> None:
    """``keys revoke`` deactivates that key only."""
    (key_id,) = [
        r["id"] for r in rows(initialized, "SELECT id FROM api_keys WHERE type = 'project'")
    ]
    assert banatie_json(initialized, "keys", "revoke", key_id) == {"id": key_id, "isActive": False}
    states = {r["type"]: r["is_active"] for r in rows(initialized, "SELECT * FROM api_keys")}
    assert states == {"master": 1, "project": 0}


# -------------------------------------------------------------------- projects


def test_projects_list(initialized: Path) -> None:
    """``projects list`` shows default/default with its live settings."""
    (project,) = banatie_json(initialized, "projects", "list")
    assert project["organizationSlug"] == "default"
    assert project["slug"] == "default"
    assert isinstance(project["allowNewLiveScopes"], bool)
    assert isinstance(project["newLiveScopesGenerationLimit"], int)


def test_projects_create(initialized: Path) -> None:
    """``projects create ORG/PROJECT`` makes the organization, the project and no key."""
    project = banatie_json(initialized, "projects", "create", "acme/site")
    assert (project["organizationSlug"], project["slug"]) == ("acme", "site")
    assert rows(initialized, "SELECT slug FROM projects WHERE id = ?", project["id"]) == [
        {"slug": "site"}
    ]
    assert len(rows(initialized, "SELECT id FROM api_keys")) == 2


def test_projects_update(initialized: Path) -> None:
    """``projects update`` changes the live settings it is given."""
    project = banatie_json(
        initialized, "projects", "update", "default/default",
        "--no-allow-new-scopes", "--scope-limit", "5",
    )  # fmt: skip
    assert project["allowNewLiveScopes"] is False
    assert project["newLiveScopesGenerationLimit"] == 5
    stored = rows(
        initialized,
        "SELECT allow_new_live_scopes, new_live_scopes_generation_limit FROM projects",
    )
    assert stored == [{"allow_new_live_scopes": 0, "new_live_scopes_generation_limit": 5}]


# ---------------------------------------------------------------------- scopes


def test_scopes_create(initialized: Path) -> None:
    """``scopes create`` makes a scope with the given settings."""
    scope = banatie_json(
        initialized, "scopes", "create", "banners", "--limit", "7", "--no-allow-new-generations"
    )
    assert scope["slug"] == "banners"
    assert scope["newGenerationsLimit"] == 7
    assert scope["allowNewGenerations"] is False
    assert scope["currentGenerations"] == 0
    assert rows(initialized, "SELECT slug FROM live_scopes") == [{"slug": "banners"}]


def test_scopes_list(initialized: Path) -> None:
    """``scopes list`` shows each scope with its live image count."""
    create_scope(initialized, "banners")
    create_scope(initialized, "empty")
    upload_and_live(initialized, live_hits=0)
    listed = banatie_json(initialized, "scopes", "list", "--project", "default/default")
    counts = {scope["slug"]: scope["currentGenerations"] for scope in listed}
    assert counts == {"banners": 1, "empty": 0}


def test_scopes_update(initialized: Path) -> None:
    """``scopes update`` changes what it is given and keeps the rest."""
    create_scope(initialized, "banners")
    scope = banatie_json(initialized, "scopes", "update", "banners", "--limit", "3")
    assert scope["newGenerationsLimit"] == 3
    assert scope["allowNewGenerations"] is True
    assert rows(initialized, "SELECT new_generations_limit FROM live_scopes") == [
        {"new_generations_limit": 3}
    ]


def test_scopes_delete(initialized: Path) -> None:
    """``scopes delete`` removes the scope, its cache entries and their images."""
    scope_id = create_scope(initialized, "banners")
    upload_and_live(initialized, live_hits=0)
    assert len(rows(initialized, "SELECT id FROM images")) == 2
    assert banatie_json(initialized, "scopes", "delete", "banners") == {"id": scope_id}
    assert rows(initialized, "SELECT id FROM live_scopes") == []
    assert rows(initialized, "SELECT id FROM live_cache_entries") == []
    assert rows(initialized, "SELECT source FROM images") == [{"source": "uploaded"}]


# ----------------------------------------------------------------------- purge


def test_purge_cache(initialized: Path) -> None:
    """``purge cache`` drops the live entry and its image; the scope stays."""
    create_scope(initialized, "banners")
    upload_and_live(initialized, live_hits=1)
    (live_image,) = rows(initialized, "SELECT image_id, storage_key FROM live_cache_entries "
                         "JOIN images ON images.id = image_id")  # fmt: skip
    assert (initialized / "storage" / live_image["storage_key"]).is_file()

    assert banatie_json(initialized, "purge", "cache") == {"purged": 1}
    assert rows(initialized, "SELECT id FROM live_cache_entries") == []
    assert rows(initialized, "SELECT id FROM images WHERE id = ?", live_image["image_id"]) == []
    assert not (initialized / "storage" / live_image["storage_key"]).exists()
    assert rows(initialized, "SELECT slug FROM live_scopes") == [{"slug": "banners"}]


def test_purge_orphans(initialized: Path) -> None:
    """``purge orphans`` removes an old file that no image row points at."""
    key = f"default/default/img/{uuid.uuid4()}"
    stray = initialized / "storage" / key
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"stray")
    old = time.time() - 3600
    os.utime(stray, (old, old))

    report = banatie_json(initialized, "purge", "orphans")
    assert report["filesWithoutRows"] == [key]
    assert report["rowsWithoutFiles"] == []
    assert report["removed"] is True
    assert not stray.exists()


# ----------------------------------------------------------------------- other


def test_stats(initialized: Path) -> None:
    """``stats`` counts what ``init`` made."""
    counted = banatie_json(initialized, "stats")
    assert counted["organizations"] == 1
    assert counted["projects"] == 1
    assert counted["apiKeys"] == {"active": 2, "revoked": 0}
    assert counted["bytesStored"] == 0
    assert counted["generations"] == {"byStatus": {}, "byProvider": {}}


def test_generate(initialized: Path) -> None:
    """``generate`` records a successful offline generation and stores its image."""
    generation = banatie_json(initialized, "generate", "a lighthouse", "--aspect-ratio", "16:9")
    assert generation["status"] == "success"
    assert generation["meta"]["provider"] == "offline"
    image = generation["outputImage"]
    assert (image["width"], image["height"]) == (1792, 1008)
    stored = (initialized / "storage" / image["storageKey"]).read_bytes()
    assert hashlib.sha256(stored).hexdigest() == image["fileHash"]
    assert rows(initialized, "SELECT status, output_image_id FROM generations") == [
        {"status": "success", "output_image_id": image["id"]}
    ]


def test_version(data: Path) -> None:
    """``version`` prints the package version and needs no data directory."""
    assert banatie_json(data, "version") == {"name": "banatie-local", "version": __version__}
    assert banatie(data, "version") == f"banatie-local {__version__}\n"
    assert not data.exists()
