"""The SQLite database: migrations, pragmas, schema versus models, constraints."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from peewee import IntegrityError, SqliteDatabase

from banatie_local.clock import Clock
from banatie_local.db.connection import open_database
from banatie_local.db.migrations import LATEST_VERSION, MIGRATIONS, MigrationError, migrate
from banatie_local.db.models import ALL_MODELS
from tests.helpers import sqlite

NOW = 1_700_000_000_000_000


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "banatie.db"


@pytest.fixture
def db(db_path: Path) -> Iterator[SqliteDatabase]:
    database = open_database(db_path, Clock())
    yield database
    database.close()


def scalar(db: SqliteDatabase, sql: str, params: tuple[object, ...] = ()) -> Any:
    return db.execute_sql(sql, params).fetchone()[0]


def seed_project(db: SqliteDatabase, org: str = "o1", project: str = "p1") -> None:
    db.execute_sql(
        "INSERT INTO organizations (id, slug, name, created_at, updated_at) VALUES (?,?,?,?,?)",
        (org, f"slug-{org}", "Org", NOW, NOW),
    )
    db.execute_sql(
        "INSERT INTO projects (id, organization_id, slug, name, created_at, updated_at)"
        " VALUES (?,?,?,?,?,?)",
        (project, org, f"slug-{project}", "Project", NOW, NOW),
    )


def insert_image(
    db: SqliteDatabase,
    image_id: str,
    project: str = "p1",
    alias: str | None = None,
    generation_id: str | None = None,
) -> None:
    db.execute_sql(
        "INSERT INTO images (id, project_id, generation_id, storage_key, mime_type, file_size,"
        " file_hash, width, height, source, alias, created_at, updated_at)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            image_id,
            project,
            generation_id,
            f"o/p/img/{image_id}",
            "image/png",
            10,
            "hash",
            1,
            1,
            "uploaded",
            alias,
            NOW,
            NOW,
        ),
    )


def insert_generation(
    db: SqliteDatabase, generation_id: str, output_image_id: str | None = None
) -> None:
    db.execute_sql(
        "INSERT INTO generations (id, project_id, prompt, user_prompt, aspect_ratio, status,"
        " output_image_id, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?)",
        (generation_id, "p1", "a cat", "a cat", "1:1", "success", output_image_id, NOW, NOW),
    )


def count(db: SqliteDatabase, table: str) -> int:
    return int(scalar(db, f"SELECT COUNT(*) FROM {table}"))


# --------------------------------------------------------------------------- #
# migrations
# --------------------------------------------------------------------------- #


def test_fresh_database_is_migrated_to_latest(db: SqliteDatabase, db_path: Path) -> None:
    assert db_path.is_file()
    rows = db.execute_sql("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
    assert [r[0] for r in rows] == [number for number, _, _ in MIGRATIONS]
    assert rows[-1][0] == LATEST_VERSION
    assert [r[1] for r in rows] == [name for _, name, _ in MIGRATIONS]


def test_second_migrate_applies_nothing(db: SqliteDatabase) -> None:
    assert migrate(db, NOW) == []
    assert count(db, "schema_migrations") == len(MIGRATIONS)


def test_reopening_applies_nothing(db_path: Path) -> None:
    first = open_database(db_path, Clock())
    first.close()
    second = open_database(db_path, Clock())
    try:
        assert migrate(second, NOW) == []
        assert count(second, "schema_migrations") == len(MIGRATIONS)
    finally:
        second.close()


def test_migrate_returns_applied_versions(tmp_path: Path) -> None:
    raw = SqliteDatabase(str(tmp_path / "raw.db"))
    raw.connect()
    try:
        assert migrate(raw, NOW) == [number for number, _, _ in MIGRATIONS]
        assert scalar(raw, "SELECT applied_at FROM schema_migrations WHERE version = 1") == NOW
        assert migrate(raw, NOW + 1) == []
    finally:
        raw.close()


def test_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    with sqlite(path) as conn:
        conn.execute(
            "CREATE TABLE schema_migrations ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
        )
        conn.execute(
            "INSERT INTO schema_migrations VALUES (?, 'from the future', 0)",
            (LATEST_VERSION + 1,),
        )
        conn.commit()
    raw = SqliteDatabase(str(path))
    raw.connect()
    try:
        with pytest.raises(MigrationError) as info:
            migrate(raw, NOW)
    finally:
        raw.close()
    message = str(info.value)
    assert str(LATEST_VERSION + 1) in message
    assert "upgrade banatie-local" in message
    assert message.endswith(".")
    assert "\n" not in message
    with sqlite(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"schema_migrations"}


def test_open_database_refuses_newer_database(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    with sqlite(path) as conn:
        conn.execute(
            "CREATE TABLE schema_migrations ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
        )
        conn.execute("INSERT INTO schema_migrations VALUES (?, 'x', 0)", (LATEST_VERSION + 5,))
        conn.commit()
    with pytest.raises(MigrationError, match="newer than this release"):
        open_database(path, Clock())


def test_open_database_creates_parent_dirs(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "banatie.db"
    database = open_database(path, Clock())
    database.close()
    assert path.is_file()


# --------------------------------------------------------------------------- #
# pragmas
# --------------------------------------------------------------------------- #


def test_connection_pragmas(db: SqliteDatabase) -> None:
    assert scalar(db, "PRAGMA journal_mode") == "wal"
    assert scalar(db, "PRAGMA foreign_keys") == 1
    assert scalar(db, "PRAGMA synchronous") == 1  # NORMAL
    assert scalar(db, "PRAGMA busy_timeout") == 5000


def test_file_is_in_wal_mode(db: SqliteDatabase, db_path: Path) -> None:
    """WAL is a property of the file: a plain connection sees it too."""
    with sqlite(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# --------------------------------------------------------------------------- #
# models versus the migrated schema
# --------------------------------------------------------------------------- #


def table_columns(db: SqliteDatabase, table: str) -> dict[str, sqlite3.Row]:
    cursor = db.execute_sql(f"PRAGMA table_info({table})")
    return {row[1]: row for row in cursor.fetchall()}


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda m: m.__name__)
def test_model_columns_exist(db: SqliteDatabase, model: type) -> None:
    """Every column a model reads or writes exists in the migrated table."""
    table = model._meta.table_name  # type: ignore[attr-defined]
    columns = table_columns(db, table)
    assert columns, f"table {table} is missing"
    wanted = {f.column_name for f in model._meta.sorted_fields}  # type: ignore[attr-defined]
    assert wanted - set(columns) == set()


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda m: m.__name__)
def test_model_nullability_matches_schema(db: SqliteDatabase, model: type) -> None:
    """A model field is nullable exactly when its column allows NULL."""
    table = model._meta.table_name  # type: ignore[attr-defined]
    columns = table_columns(db, table)
    for f in model._meta.sorted_fields:  # type: ignore[attr-defined]
        row = columns[f.column_name]
        not_null, primary_key = row[3], row[5]
        if primary_key:
            continue
        assert bool(not_null) == (not f.null), f"{table}.{f.column_name}"


def test_models_work_against_the_schema(db: SqliteDatabase) -> None:
    """Rows written through the models read back through them."""
    from banatie_local.db.models import Flow, Organization, Project

    Organization.create(id="o1", slug="acme", name="Acme", created_at=NOW, updated_at=NOW)
    Project.create(
        id="p1", organization="o1", slug="main", name="Main", created_at=NOW, updated_at=NOW
    )
    Flow.create(id="f1", project_id="p1", meta={"a": [1, 2]}, created_at=NOW, updated_at=NOW)
    project = Project.get_by_id("p1")
    assert project.organization_id == "o1"
    assert project.allow_new_live_scopes is True
    assert project.new_live_scopes_generation_limit == 30
    assert Flow.get_by_id("f1").meta == {"a": [1, 2]}
    assert scalar(db, "SELECT meta FROM flows WHERE id = 'f1'") == '{"a":[1,2]}'


# --------------------------------------------------------------------------- #
# foreign keys, checks and indexes
# --------------------------------------------------------------------------- #


def test_foreign_keys_are_enforced(db: SqliteDatabase) -> None:
    with pytest.raises(IntegrityError):
        db.execute_sql(
            "INSERT INTO projects (id, organization_id, slug, name, created_at, updated_at)"
            " VALUES ('p1', 'nope', 's', 'n', 0, 0)"
        )


def test_deleting_image_removes_its_flow_aliases(db: SqliteDatabase) -> None:
    seed_project(db)
    insert_image(db, "i1")
    insert_image(db, "i2")
    db.execute_sql(
        "INSERT INTO flows (id, project_id, created_at, updated_at) VALUES ('f1', 'p1', 0, 0)"
    )
    db.execute_sql(
        "INSERT INTO flow_aliases (flow_id, alias, image_id, created_at) VALUES"
        " ('f1', '@hero', 'i1', 0), ('f1', '@other', 'i2', 0)"
    )
    db.execute_sql("DELETE FROM images WHERE id = 'i1'")
    aliases = db.execute_sql("SELECT alias FROM flow_aliases").fetchall()
    assert [r[0] for r in aliases] == ["@other"]


def test_deleting_flow_removes_its_aliases(db: SqliteDatabase) -> None:
    seed_project(db)
    insert_image(db, "i1")
    db.execute_sql(
        "INSERT INTO flows (id, project_id, created_at, updated_at) VALUES ('f1', 'p1', 0, 0)"
    )
    db.execute_sql(
        "INSERT INTO flow_aliases (flow_id, alias, image_id, created_at)"
        " VALUES ('f1', '@hero', 'i1', 0)"
    )
    db.execute_sql("DELETE FROM flows WHERE id = 'f1'")
    assert count(db, "flow_aliases") == 0
    assert count(db, "images") == 1


def test_deleting_generation_nulls_its_images(db: SqliteDatabase) -> None:
    seed_project(db)
    insert_generation(db, "g1")
    insert_image(db, "i1", generation_id="g1")
    db.execute_sql("UPDATE generations SET output_image_id = 'i1' WHERE id = 'g1'")
    db.execute_sql("DELETE FROM generations WHERE id = 'g1'")
    assert scalar(db, "SELECT generation_id FROM images WHERE id = 'i1'") is None
    assert count(db, "images") == 1


def test_deleting_image_nulls_generation_output(db: SqliteDatabase) -> None:
    seed_project(db)
    insert_image(db, "i1")
    insert_generation(db, "g1", output_image_id="i1")
    db.execute_sql("DELETE FROM images WHERE id = 'i1'")
    assert scalar(db, "SELECT output_image_id FROM generations WHERE id = 'g1'") is None
    assert count(db, "generations") == 1


def test_deleting_image_removes_generation_references(db: SqliteDatabase) -> None:
    seed_project(db)
    insert_image(db, "i1")
    insert_generation(db, "g1")
    db.execute_sql(
        "INSERT INTO generation_references (generation_id, position, image_id)"
        " VALUES ('g1', 0, 'i1')"
    )
    db.execute_sql("DELETE FROM images WHERE id = 'i1'")
    assert count(db, "generation_references") == 0


def test_deleting_organization_cascades(db: SqliteDatabase) -> None:
    seed_project(db)
    insert_image(db, "i1")
    insert_generation(db, "g1", output_image_id="i1")
    db.execute_sql(
        "INSERT INTO api_keys (id, key_hash, key_prefix, type, organization_id, project_id,"
        " created_at, updated_at) VALUES ('k1', 'h', 'bnt_', 'project', 'o1', 'p1', 0, 0)"
    )
    db.execute_sql("DELETE FROM organizations WHERE id = 'o1'")
    for table in ("projects", "api_keys", "images", "generations"):
        assert count(db, table) == 0, table


def test_project_key_requires_project(db: SqliteDatabase) -> None:
    seed_project(db)
    with pytest.raises(IntegrityError, match="CHECK"):
        db.execute_sql(
            "INSERT INTO api_keys (id, key_hash, key_prefix, type, organization_id,"
            " project_id, created_at, updated_at)"
            " VALUES ('k1', 'h', 'bnt_', 'project', 'o1', NULL, 0, 0)"
        )
    db.execute_sql(
        "INSERT INTO api_keys (id, key_hash, key_prefix, type, created_at, updated_at)"
        " VALUES ('k2', 'h2', 'bnt_', 'master', 0, 0)"
    )
    assert count(db, "api_keys") == 1


def test_key_type_is_checked(db: SqliteDatabase) -> None:
    with pytest.raises(IntegrityError, match="CHECK"):
        db.execute_sql(
            "INSERT INTO api_keys (id, key_hash, key_prefix, type, created_at, updated_at)"
            " VALUES ('k1', 'h', 'bnt_', 'admin', 0, 0)"
        )


def test_generation_status_is_checked(db: SqliteDatabase) -> None:
    seed_project(db)
    with pytest.raises(IntegrityError, match="CHECK"):
        db.execute_sql(
            "INSERT INTO generations (id, project_id, prompt, user_prompt, aspect_ratio,"
            " status, created_at, updated_at) VALUES ('g1', 'p1', 'x', 'x', '1:1', 'done', 0, 0)"
        )


@pytest.mark.parametrize(
    ("name", "table", "columns"),
    [
        ("images_project_created", "images", ["project_id", "created_at"]),
        ("images_project_flow", "images", ["project_id", "flow_id", "source", "created_at"]),
        ("images_generation", "images", ["generation_id"]),
        ("generations_project_flow", "generations", ["project_id", "flow_id", "created_at"]),
        ("generations_project_created", "generations", ["project_id", "created_at"]),
        ("generations_output_image", "generations", ["output_image_id"]),
        ("flow_aliases_image", "flow_aliases", ["image_id"]),
        ("live_cache_scope_created", "live_cache_entries", ["scope_id", "created_at"]),
        ("api_keys_project", "api_keys", ["project_id"]),
    ],
)
def test_index_exists(db: SqliteDatabase, name: str, table: str, columns: list[str]) -> None:
    row = db.execute_sql(
        "SELECT tbl_name FROM sqlite_master WHERE type = 'index' AND name = ?", (name,)
    ).fetchone()
    assert row is not None, name
    assert row[0] == table
    info = db.execute_sql(f"PRAGMA index_info({name})").fetchall()
    assert [r[2] for r in info] == columns


def test_unique_project_alias_index(db: SqliteDatabase) -> None:
    uniques = [
        [r[2] for r in db.execute_sql(f"PRAGMA index_info('{idx[1]}')").fetchall()]
        for idx in db.execute_sql("PRAGMA index_list(images)").fetchall()
        if idx[2]
    ]
    assert ["project_id", "alias"] in uniques


def test_image_alias_unique_per_project(db: SqliteDatabase) -> None:
    """Many images may have no alias; one alias names one image per project."""
    seed_project(db)
    seed_project(db, org="o2", project="p2")
    insert_image(db, "i1")
    insert_image(db, "i2")
    insert_image(db, "i3", alias="@hero")
    insert_image(db, "i4", project="p2", alias="@hero")
    with pytest.raises(IntegrityError, match="UNIQUE"):
        insert_image(db, "i5", alias="@hero")
    assert count(db, "images") == 4


def test_storage_key_is_unique(db: SqliteDatabase) -> None:
    seed_project(db)
    insert_image(db, "i1")
    with pytest.raises(IntegrityError, match="UNIQUE"):
        db.execute_sql(
            "INSERT INTO images (id, project_id, storage_key, mime_type, file_size, file_hash,"
            " width, height, source, created_at, updated_at)"
            " VALUES ('i2', 'p1', 'o/p/img/i1', 'image/png', 1, 'h', 1, 1, 'uploaded', 0, 0)"
        )
