"""``purge orphans``, ``stats`` and the help texts of the admin command line, run
in-process with Click's test runner (API.md §9).

Each test has its own data directory, no ``BANATIE_*`` or ``GEMINI_API_KEY``
variables from the host, and ``tmp_path`` as the working directory. Orphans are
made behind the appliance's back, directly on disk, in the S3 bucket or in the
database.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any, Protocol

import click
import pytest
from click.testing import Result
from minio import Minio

from banatie_local.cli import cli
from banatie_local.constants import DEFAULT_TEMPLATE
from banatie_local.services.container import Services, open_services
from banatie_local.services.context import Context
from banatie_local.services.images import Upload
from banatie_local.services.live import LiveParams, cache_key
from tests.e2e.test_cli import Run, data_dir, db_path, invoke, run, succeeded
from tests.e2e.test_s3_backend import new_bucket, s3_client, stored_object
from tests.fakes.s3 import ACCESS_KEY, SECRET_KEY, S3Server
from tests.helpers import free_port, make_settings, sqlite
from tests.imagedata import png_bytes

__all__ = ["data_dir", "db_path", "invoke", "run"]  # fixtures shared with test_cli

IMG_PREFIX = "default/default/img"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No host settings, and a working directory with no banatie.toml in it."""
    for name in list(os.environ):
        if name.startswith("BANATIE_") or name in ("GEMINI_API_KEY", "OPENAI_API_KEY"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


# --------------------------------------------------------------------- helpers


def as_json(result: Result) -> Any:
    return json.loads(succeeded(result).stdout)


def rows(db_path: Path, sql: str, *params: Any) -> list[dict[str, Any]]:
    with sqlite(db_path) as conn:
        return [dict(row) for row in conn.execute(sql, params)]


def execute(db_path: Path, sql: str, *params: Any) -> None:
    with sqlite(db_path) as conn:
        conn.execute(sql, params)
        conn.commit()


def record_orphan(db_path: Path, key: str) -> None:
    """What a delete that could not remove its file leaves in ``orphan_files``."""
    execute(
        db_path,
        "INSERT INTO orphan_files (storage_key, error, created_at) VALUES (?, ?, ?)",
        key,
        "permission denied",
        time.time_ns() // 1000,
    )


def stray_key() -> str:
    return f"{IMG_PREFIX}/{uuid.uuid4()}"


def generated(run: Run, prompt: str) -> dict[str, Any]:
    """Run ``generate --json`` and return its output image."""
    data = as_json(run("generate", prompt, "--no-enhance", "--json"))
    assert data["status"] == "success"
    image: dict[str, Any] = data["outputImage"]
    return image


class Store(Protocol):
    """Direct access to where the appliance keeps its files."""

    def put(self, key: str, data: bytes) -> None: ...

    def read(self, key: str) -> bytes | None: ...

    def remove(self, key: str) -> None: ...

    def keys(self) -> set[str]: ...


class DiskStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, key: str, data: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def read(self, key: str) -> bytes | None:
        path = self.root / key
        return path.read_bytes() if path.is_file() else None

    def remove(self, key: str) -> None:
        (self.root / key).unlink()

    def keys(self) -> set[str]:
        if not self.root.is_dir():
            return set()
        return {
            p.relative_to(self.root).as_posix()
            for p in self.root.rglob("*")
            if p.is_file() and ".tmp" not in p.relative_to(self.root).parts
        }


class BucketStore:
    def __init__(self, client: Minio, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(self.bucket, key, BytesIO(data), len(data))

    def read(self, key: str) -> bytes | None:
        found = stored_object(self.client, self.bucket, key)
        return None if found is None else found[0]

    def remove(self, key: str) -> None:
        self.client.remove_object(self.bucket, key)

    def keys(self) -> set[str]:
        objects = self.client.list_objects(self.bucket, recursive=True)
        return {o.object_name for o in objects if o.object_name}


@dataclass
class Backend:
    name: str
    store: Store


@pytest.fixture(params=["local", pytest.param("minio", marks=pytest.mark.slow)])
def backend(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> Backend:
    """The storage the CLI is configured for: the data directory, or a fresh bucket on
    the session's S3 server (set through ``BANATIE_STORAGE_*``)."""
    if request.param == "local":
        return Backend("local", DiskStore(data_dir / "storage"))
    server: S3Server = request.getfixturevalue("s3_server")
    bucket = new_bucket()
    monkeypatch.setenv("BANATIE_STORAGE_BACKEND", "minio")
    monkeypatch.setenv("BANATIE_STORAGE_MINIO_ENDPOINT", server.endpoint)
    monkeypatch.setenv("BANATIE_STORAGE_MINIO_ACCESS_KEY", ACCESS_KEY)
    monkeypatch.setenv("BANATIE_STORAGE_MINIO_SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("BANATIE_STORAGE_MINIO_BUCKET", bucket)
    return Backend("minio", BucketStore(s3_client(server), bucket))


def temp_dir(data_dir: Path) -> Path:
    """Where local writes are staged; ``purge orphans`` reports resolved paths."""
    path = (data_dir / "storage" / ".tmp").resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


EMPTY_REPORT: dict[str, list[str]] = {
    "filesWithoutRows": [],
    "rowsWithoutFiles": [],
    "recordedFiles": [],
    "tempFiles": [],
}


def report_lists(report: dict[str, Any]) -> dict[str, Any]:
    return {name: report[name] for name in EMPTY_REPORT}


# --------------------------------------------------------------- purge orphans


@dataclass
class Orphans:
    healthy: dict[str, Any]
    lost: dict[str, Any]
    stray: str
    recorded: str
    temp: Path | None
    variant: str  # a stored variant of the healthy image: not an orphan


@pytest.fixture
def orphans(run: Run, backend: Backend, data_dir: Path, db_path: Path) -> Orphans:
    """Two generations, then one leftover of every kind made behind the app's back:
    a stray file, an image whose file is gone, a stray file recorded in
    ``orphan_files`` and (local only) an old temp file."""
    succeeded(run("init"))
    lost = generated(run, "a red fox in snow")
    healthy = generated(run, "a blue whale at dusk")
    assert backend.store.keys() == {lost["storageKey"], healthy["storageKey"]}
    variant = f"default/default/var/{healthy['id']}/{uuid.uuid4().hex}"
    backend.store.put(variant, b"a smaller copy")
    now = time.time_ns() // 1000
    execute(
        db_path,
        "INSERT INTO image_variants (image_id, variant_key, storage_key, params, mime_type,"
        " file_size, created_at, used_at) VALUES (?, ?, ?, 'w=1&h=1&format=png', 'image/png',"
        " 14, ?, ?)",
        healthy["id"], variant.rsplit("/", 1)[1], variant, now, now,
    )  # fmt: skip

    stray = stray_key()
    backend.store.put(stray, b"no row points here")
    backend.store.remove(lost["storageKey"])
    recorded = stray_key()
    backend.store.put(recorded, b"a delete could not remove this")
    record_orphan(db_path, recorded)
    temp = None
    if backend.name == "local":
        temp = temp_dir(data_dir) / f"{uuid.uuid4().hex}.part"
        temp.write_bytes(b"half a write")
        age(temp, 3600)  # older than any grace period
    return Orphans(healthy, lost, stray, recorded, temp, variant)


def expected_report(orphans: Orphans) -> dict[str, Any]:
    return {
        "filesWithoutRows": sorted([orphans.stray, orphans.recorded]),
        "rowsWithoutFiles": [orphans.lost["id"]],
        "recordedFiles": [orphans.recorded],
        "tempFiles": [str(orphans.temp)] if orphans.temp else [],
    }


def test_purge_orphans_dry_run_reports_every_kind_and_removes_nothing(
    run: Run, backend: Backend, orphans: Orphans, db_path: Path
) -> None:
    """``--dry-run --grace 0`` lists each leftover once and changes nothing."""
    before_images = rows(db_path, "SELECT id FROM images ORDER BY id")
    report = as_json(run("purge", "orphans", "--dry-run", "--grace", "0", "--json"))

    assert report_lists(report) == expected_report(orphans)
    assert report["removed"] is False
    assert backend.store.read(orphans.stray) == b"no row points here"
    assert backend.store.read(orphans.recorded) == b"a delete could not remove this"
    assert rows(db_path, "SELECT id FROM images ORDER BY id") == before_images
    assert rows(db_path, "SELECT storage_key FROM orphan_files") == [
        {"storage_key": orphans.recorded}
    ]
    if orphans.temp:
        assert orphans.temp.read_bytes() == b"half a write"


def test_purge_orphans_removes_them_and_keeps_the_healthy_image(
    run: Run, backend: Backend, orphans: Orphans, db_path: Path
) -> None:
    """``--grace 0`` removes every leftover it reports, and nothing else; a second run
    finds nothing."""
    report = as_json(run("purge", "orphans", "--grace", "0", "--json"))

    assert report_lists(report) == expected_report(orphans)
    assert report["removed"] is True
    assert backend.store.read(orphans.stray) is None
    assert backend.store.read(orphans.recorded) is None
    assert rows(db_path, "SELECT id FROM images WHERE id = ?", orphans.lost["id"]) == []
    lost_generation = rows(
        db_path,
        "SELECT output_image_id FROM generations WHERE id = ?",
        orphans.lost["generationId"],
    )
    assert lost_generation == [{"output_image_id": None}]
    assert rows(db_path, "SELECT * FROM orphan_files") == []
    if orphans.temp:
        assert not orphans.temp.exists()

    healthy = orphans.healthy
    assert backend.store.keys() == {healthy["storageKey"], orphans.variant}
    data = backend.store.read(healthy["storageKey"])
    assert data is not None
    assert hashlib.sha256(data).hexdigest() == healthy["fileHash"]
    assert rows(db_path, "SELECT id, storage_key FROM images") == [
        {"id": healthy["id"], "storage_key": healthy["storageKey"]}
    ]
    assert rows(
        db_path, "SELECT output_image_id FROM generations WHERE id = ?", healthy["generationId"]
    ) == [{"output_image_id": healthy["id"]}]

    again = as_json(run("purge", "orphans", "--grace", "0", "--json"))
    assert report_lists(again) == EMPTY_REPORT


def test_purge_orphans_human_output_counts_each_kind(run: Run, orphans: Orphans) -> None:
    """Without ``--json`` each kind is a count line followed by its items."""
    out = succeeded(run("purge", "orphans", "--dry-run", "--grace", "0")).stdout
    temp_count = 1 if orphans.temp else 0
    assert "would remove 2 files without rows" in out
    assert "would remove 1 rows without files" in out
    assert "would remove 1 files recorded by failed deletes" in out
    assert f"would remove {temp_count} temp files" in out
    for item in (orphans.stray, orphans.recorded, orphans.lost["id"]):
        assert f"  {item}" in out

    out = succeeded(run("purge", "orphans", "--grace", "0")).stdout
    assert "removed 2 files without rows" in out
    assert "would remove" not in out


def test_default_grace_leaves_a_fresh_stray_file(
    run: Run, backend: Backend, data_dir: Path
) -> None:
    """A file written moments ago may belong to a write still in progress: with the
    default grace (300 s) it is neither reported nor removed."""
    succeeded(run("init"))
    generated(run, "a lighthouse")
    fresh = stray_key()
    backend.store.put(fresh, b"still being written")
    temp = None
    if backend.name == "local":
        temp = temp_dir(data_dir) / "fresh.part"
        temp.write_bytes(b"...")

    assert report_lists(as_json(run("purge", "orphans", "--dry-run", "--json"))) == EMPTY_REPORT
    report = as_json(run("purge", "orphans", "--json"))
    assert report_lists(report) == EMPTY_REPORT
    assert backend.store.read(fresh) == b"still being written"
    if temp:
        assert temp.exists()


def test_default_grace_reports_files_older_than_five_minutes(run: Run, data_dir: Path) -> None:
    """With the default grace only the old stray file and the old temp file go."""
    succeeded(run("init"))
    store = DiskStore(data_dir / "storage")
    old, fresh = stray_key(), stray_key()
    store.put(old, b"old")
    store.put(fresh, b"fresh")
    age(data_dir / "storage" / old, 301)
    tmp = temp_dir(data_dir)
    old_temp, fresh_temp = tmp / "old.part", tmp / "fresh.part"
    old_temp.write_bytes(b"old")
    fresh_temp.write_bytes(b"fresh")
    age(old_temp, 301)

    report = as_json(run("purge", "orphans", "--json"))

    assert report_lists(report) == {
        **EMPTY_REPORT,
        "filesWithoutRows": [old],
        "tempFiles": [str(old_temp)],
    }
    assert store.keys() == {fresh}
    assert not old_temp.exists()
    assert fresh_temp.exists()


def test_grace_zero_removes_the_fresh_temp_file_it_reports(run: Run, data_dir: Path) -> None:
    """A temp file reported as removed by ``--grace 0`` is gone afterwards."""
    succeeded(run("init"))
    temp = temp_dir(data_dir) / "interrupted.part"
    temp.write_bytes(b"half a write")

    report = as_json(run("purge", "orphans", "--grace", "0", "--json"))

    assert report["tempFiles"] == [str(temp)]
    assert report["removed"] is True
    assert not temp.exists()


def test_purge_orphans_rejects_a_negative_grace(run: Run) -> None:
    """``--grace`` is a number of seconds, at least 0."""
    succeeded(run("init"))
    result = run("purge", "orphans", "--grace", "-1")
    assert result.exit_code == 2
    assert "--grace" in result.stderr


# ----------------------------------------------------------------------- stats


async def _upload_and_live(services: Services, live_hits: int) -> None:
    try:
        ref = await services.db.read(services.projects.get, "default", "default")
        ctx = Context(ref.organization, ref.project)
        await services.images.upload(ctx, Upload(png_bytes(16, 16), flow_alias="@hero"))
        params = LiveParams("a quiet harbour", "1:1", False, DEFAULT_TEMPLATE)
        key = cache_key(ref.project.id, "banners", params)
        slugs = ("default", "default")
        miss = await services.live.resolve(slugs, ref.project.id, "banners", params, key, None)
        assert miss.status == "MISS"
        for _ in range(live_hits):
            hit = await services.live.resolve(slugs, ref.project.id, "banners", params, key, None)
            assert hit.status == "HIT"
        await services.live.counter.flush()
    finally:
        services.close()


def upload_and_live(data_dir: Path, live_hits: int) -> None:
    """One upload into a new flow (``@hero``), and one live-URL miss in scope
    ``banners`` followed by ``live_hits`` hits, through the services."""
    asyncio.run(_upload_and_live(open_services(make_settings(data_dir)), live_hits))


def failed_generation(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """A generation that fails: Gemini configured at a port where nothing listens."""
    with monkeypatch.context() as env:
        env.setenv("BANATIE_GENERATION_PROVIDER", "gemini")
        env.setenv("BANATIE_GENERATION_GEMINI_API_KEY", "test-key")
        env.setenv("BANATIE_GENERATION_GEMINI_BASE_URL", f"http://127.0.0.1:{free_port()}")
        env.setenv("BANATIE_GENERATION_MAX_RETRIES", "0")
        result = run("generate", "a storm", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["status"] == "failed"


@pytest.fixture
def populated(
    run: Run, data_dir: Path, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """Something of everything ``stats`` counts; returns the expected JSON."""
    succeeded(run("init"))
    generated(run, "a red fox")
    generated(run, "a blue whale")
    failed_generation(run, monkeypatch)
    created = as_json(
        run("keys", "create", "--type", "project", "--org", "acme", "--project", "site", "--json")
    )
    succeeded(run("keys", "revoke", created["id"]))
    succeeded(run("scopes", "create", "banners"))
    upload_and_live(data_dir, live_hits=2)
    record_orphan(db_path, stray_key())

    storage = data_dir / "storage"
    on_disk = sum(p.stat().st_size for p in storage.rglob("*") if p.is_file())
    return {
        "organizations": 2,
        "projects": 2,
        "apiKeys": {"active": 2, "revoked": 1},
        "images": {"generated": 3, "uploaded": 1},
        "bytesStored": on_disk,
        "generations": {
            "byStatus": {"success": 3, "failed": 1},
            "byProvider": {"offline": 3, "gemini": 1},
        },
        # the gemini generation failed; offline images cost nothing
        "estimatedSpendUsd": {"byProvider": {"offline": 0.0}, "total": 0.0},
        "flows": 1,
        "liveScopes": 1,
        "liveCacheEntries": 1,
        "liveHits": 2,
        "orphanFilesRecorded": 1,
    }


def test_stats_json_counts_everything(run: Run, populated: dict[str, Any]) -> None:
    """``stats --json`` counts keys by state, images by source, generations by status
    and provider, live scopes, entries and hits, and bytes equal to the files on disk."""
    assert as_json(run("stats", "--json")) == populated


def test_stats_human_output_has_every_label(run: Run, populated: dict[str, Any]) -> None:
    """The plain output shows the same numbers under readable labels."""
    out = succeeded(run("stats")).stdout
    lines = out.splitlines()
    for label in (
        "organizations: 2",
        "projects: 2",
        "apiKeys:",
        "  active: 2",
        "  revoked: 1",
        "images:",
        "  generated: 3",
        "  uploaded: 1",
        f"bytesStored: {populated['bytesStored']}",
        "generations:",
        "flows: 1",
        "liveScopes: 1",
        "liveCacheEntries: 1",
        "liveHits: 2",
        "orphanFilesRecorded: 1",
    ):
        assert label in lines, out
    by_status = next(line for line in lines if line.startswith("  byStatus: "))
    assert set(by_status.removeprefix("  byStatus: ").split(", ")) == {"success 3", "failed 1"}
    by_provider = next(line for line in lines if line.startswith("  byProvider: "))
    assert set(by_provider.removeprefix("  byProvider: ").split(", ")) == {"offline 3", "gemini 1"}


def test_stats_is_read_only(run: Run, populated: dict[str, Any], db_path: Path) -> None:
    """Running ``stats`` changes nothing in the database."""
    before = db_path.read_bytes()
    succeeded(run("stats"))
    succeeded(run("stats", "--json"))
    assert db_path.read_bytes() == before


def test_stats_on_a_fresh_data_directory(run: Run) -> None:
    """Right after ``init``: one project, two keys, nothing else."""
    succeeded(run("init"))
    assert as_json(run("stats", "--json")) == {
        "organizations": 1,
        "projects": 1,
        "apiKeys": {"active": 2, "revoked": 0},
        "images": {},
        "bytesStored": 0,
        "generations": {"byStatus": {}, "byProvider": {}},
        "estimatedSpendUsd": {"byProvider": {}, "total": 0},
        "flows": 0,
        "liveScopes": 0,
        "liveCacheEntries": 0,
        "liveHits": 0,
        "orphanFilesRecorded": 0,
    }
    assert "images: " not in succeeded(run("stats")).stdout.splitlines()


# ------------------------------------------------------------------- help texts


def walk(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from walk(sub, (*path, name))


def command_at(path: tuple[str, ...]) -> click.Command:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


def description(path: tuple[str, ...]) -> str:
    return " ".join((command_at(path).help or "").split())


def rendered_help(invoke: Run, path: tuple[str, ...]) -> str:
    result = succeeded(invoke(*path, "--help"))
    return " ".join(result.stdout.split())


ALL_PATHS = list(walk(cli))
path_id = " ".join


@pytest.mark.parametrize("path", ALL_PATHS, ids=lambda p: path_id(p) or "banatie-local")
def test_help_describes_the_command(invoke: Run, data_dir: Path, path: tuple[str, ...]) -> None:
    """Every ``--help`` shows a description of more than 40 characters; asking for
    help touches no data directory."""
    text = description(path)
    assert len(text) > 40, text
    shown = rendered_help(invoke, (*path, "--data-dir", str(data_dir)))
    assert text.split(". ")[0] in shown
    assert not data_dir.exists()


# What each command that changes or removes something says about what stays.
SAFETY_NOTES: dict[tuple[str, ...], list[str]] = {
    ("init",): ["Safe to run again", "left as it is", "only made while none exist"],
    ("keys", "create"): ["shown this once and never again"],
    ("keys", "revoke"): ["Cannot be undone"],
    ("projects", "create"): ["Creates no key"],
    ("projects", "update"): ["options left out keep their value"],
    ("scopes", "create"): ["Safe: creates nothing else"],
    ("scopes", "update"): ["options left out keep their value"],
    ("scopes", "delete"): ["except images with a project alias", "Cannot be undone"],
    ("purge", "cache"): [
        "except images with a project alias",
        "Scopes stay",
        "Cannot be undone",
    ],
    ("purge", "orphans"): ["Safe to run beside a server", "--dry-run changes nothing"],
    ("stats",): ["Read-only"],
    ("generate",): ["the failed record stays"],
    ("mcp",): ["may delete images of the project, and that cannot be undone"],
}


@pytest.mark.parametrize("path", list(SAFETY_NOTES), ids=path_id)
def test_help_says_what_is_safe(invoke: Run, data_dir: Path, path: tuple[str, ...]) -> None:
    """Commands that change or remove data say what stays or that it cannot be undone."""
    text = description(path)
    shown = rendered_help(invoke, (*path, "--data-dir", str(data_dir)))
    for phrase in SAFETY_NOTES[path]:
        assert phrase in text
        assert phrase in shown.replace("- ", "-")


@pytest.mark.parametrize(
    "path", [p for p in SAFETY_NOTES if "revoke" in p or "delete" in p or "purge" in p], ids=path_id
)
def test_every_removing_command_says_it_cannot_be_undone_or_is_safe(path: tuple[str, ...]) -> None:
    """Revoke, delete and purge commands carry "Cannot be undone" or "Safe"."""
    text = description(path)
    assert "Cannot be undone" in text or "Safe" in text


SAFETY_WORDS = ("cannot be undone", "except", "safe", "read-only", "stay", "keep", "no key", "once")


def test_commands_whose_help_has_no_safety_note() -> None:
    """Only the root and the command groups say nothing about what is safe; the set
    is pinned so a new command without a note is noticed."""
    silent = {
        path
        for path in ALL_PATHS
        if not any(word in description(path).lower() for word in SAFETY_WORDS)
    }
    assert silent == {(), ("keys",), ("projects",), ("scopes",), ("db",)}
