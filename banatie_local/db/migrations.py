"""Schema migrations, recorded in ``schema_migrations``.

Each migration is a fixed list of SQL statements, never derived from the models, so
an old database is upgraded exactly as it would have been on the day it was made.
A test checks that the migrated schema has every column the models use.
"""

from __future__ import annotations

import logging
from typing import Final

from peewee import Database as PeeweeDatabase

from banatie_local.db.dialect import Dialect, postgres_migration

log = logging.getLogger(__name__)


class MigrationError(Exception):
    """The database cannot be brought to the schema this version expects."""


_INITIAL: Final = [
    """CREATE TABLE organizations (
        id TEXT PRIMARY KEY,
        slug TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL)""",
    """CREATE TABLE projects (
        id TEXT PRIMARY KEY,
        organization_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
        slug TEXT NOT NULL,
        name TEXT NOT NULL,
        allow_new_live_scopes INTEGER NOT NULL DEFAULT 1,
        new_live_scopes_generation_limit INTEGER NOT NULL DEFAULT 30,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        UNIQUE (organization_id, slug))""",
    """CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        key_hash TEXT NOT NULL UNIQUE,
        key_prefix TEXT NOT NULL,
        type TEXT NOT NULL CHECK (type IN ('master', 'project')),
        organization_id TEXT REFERENCES organizations(id) ON DELETE CASCADE,
        project_id TEXT REFERENCES projects(id) ON DELETE CASCADE,
        name TEXT,
        is_active INTEGER NOT NULL DEFAULT 1,
        expires_at INTEGER,
        last_used_at INTEGER,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        CHECK (type = 'master' OR project_id IS NOT NULL))""",
    "CREATE INDEX api_keys_created ON api_keys (created_at)",
    "CREATE INDEX api_keys_project ON api_keys (project_id)",
    """CREATE TABLE flows (
        id TEXT PRIMARY KEY,
        project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        meta TEXT NOT NULL DEFAULT '{}',
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL)""",
    "CREATE INDEX flows_project_created ON flows (project_id, created_at)",
    # generations.flow_id and images.flow_id carry no foreign key on purpose: a flow id
    # is announced before its row exists (API.md §2), and the row adopts them later.
    """CREATE TABLE generations (
        id TEXT PRIMARY KEY,
        project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        flow_id TEXT,
        api_key_id TEXT REFERENCES api_keys(id) ON DELETE SET NULL,
        prompt TEXT NOT NULL,
        original_prompt TEXT,
        user_prompt TEXT NOT NULL,
        auto_enhance INTEGER NOT NULL DEFAULT 1,
        enhancement_template TEXT NOT NULL DEFAULT 'general',
        aspect_ratio TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'processing', 'success', 'failed')),
        output_image_id TEXT REFERENCES images(id) ON DELETE SET NULL,
        output_alias TEXT,
        output_flow_alias TEXT,
        processing_time_ms INTEGER,
        retry_count INTEGER NOT NULL DEFAULT 0,
        error_message TEXT,
        meta TEXT NOT NULL DEFAULT '{}',
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL)""",
    "CREATE INDEX generations_project_created ON generations (project_id, created_at)",
    "CREATE INDEX generations_project_flow ON generations (project_id, flow_id, created_at)",
    "CREATE INDEX generations_project_status ON generations (project_id, status, created_at)",
    "CREATE INDEX generations_output_image ON generations (output_image_id)",
    """CREATE TABLE images (
        id TEXT PRIMARY KEY,
        project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        flow_id TEXT,
        generation_id TEXT REFERENCES generations(id) ON DELETE SET NULL,
        storage_key TEXT NOT NULL UNIQUE,
        mime_type TEXT NOT NULL,
        file_size INTEGER NOT NULL,
        file_hash TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        source TEXT NOT NULL CHECK (source IN ('generated', 'uploaded')),
        alias TEXT,
        focal_x REAL,
        focal_y REAL,
        meta TEXT NOT NULL DEFAULT '{}',
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        UNIQUE (project_id, alias))""",
    "CREATE INDEX images_project_created ON images (project_id, created_at)",
    "CREATE INDEX images_project_flow ON images (project_id, flow_id, source, created_at)",
    "CREATE INDEX images_project_source ON images (project_id, source, created_at)",
    "CREATE INDEX images_generation ON images (generation_id)",
    """CREATE TABLE generation_references (
        generation_id TEXT NOT NULL REFERENCES generations(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        alias TEXT,
        PRIMARY KEY (generation_id, position))""",
    "CREATE INDEX generation_references_image ON generation_references (image_id)",
    """CREATE TABLE flow_aliases (
        flow_id TEXT NOT NULL REFERENCES flows(id) ON DELETE CASCADE,
        alias TEXT NOT NULL,
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (flow_id, alias))""",
    "CREATE INDEX flow_aliases_image ON flow_aliases (image_id)",
    """CREATE TABLE live_scopes (
        id TEXT PRIMARY KEY,
        project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        slug TEXT NOT NULL,
        allow_new_generations INTEGER NOT NULL DEFAULT 1,
        new_generations_limit INTEGER NOT NULL DEFAULT 30,
        meta TEXT NOT NULL DEFAULT '{}',
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        UNIQUE (project_id, slug))""",
    "CREATE INDEX live_scopes_project_created ON live_scopes (project_id, created_at)",
    """CREATE TABLE live_cache_entries (
        id TEXT PRIMARY KEY,
        project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        scope_id TEXT NOT NULL REFERENCES live_scopes(id) ON DELETE CASCADE,
        cache_key TEXT NOT NULL UNIQUE,
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        generation_id TEXT REFERENCES generations(id) ON DELETE SET NULL,
        prompt TEXT NOT NULL,
        aspect_ratio TEXT NOT NULL,
        auto_enhance INTEGER NOT NULL,
        template TEXT NOT NULL,
        hit_count INTEGER NOT NULL DEFAULT 0,
        last_hit_at INTEGER,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL)""",
    "CREATE INDEX live_cache_scope_created ON live_cache_entries (scope_id, created_at)",
    "CREATE INDEX live_cache_image ON live_cache_entries (image_id)",
    # Files whose removal failed after their row was deleted; `purge orphans` retries.
    """CREATE TABLE orphan_files (
        storage_key TEXT PRIMARY KEY,
        error TEXT NOT NULL,
        created_at INTEGER NOT NULL)""",
]

# A flow id is looked up on its own when a flow row is created late, to check that no
# other project announced it first.
_FLOW_ID_INDEXES: Final = [
    "CREATE INDEX generations_flow_id ON generations (flow_id)",
    "CREATE INDEX images_flow_id ON images (flow_id)",
]

# Counts that lists report, kept by triggers so that reading one costs an index lookup
# however many rows there are (a COUNT(*), even over an index, reads every entry):
#
# - project_counts: rows per project and subject: 'images/<source>',
#   'generations/<status>', 'flows', 'scopes';
# - flow_counts: a flow row's generations and images (those of its project that carry
#   its id); made when the flow row is, counting what it adopts;
# - scope_counts: a scope's live cache entries.
#
# Triggers see every write, the foreign keys' cascades included. INSERT OR REPLACE
# deletes the row it replaces without firing delete triggers, so none of the counted
# tables may be written that way, except live_cache_entries (the live pipeline
# replaces an entry whose file went missing): its insert trigger counts the scope's
# entries again instead of adding one.
_COUNTS: Final = [
    """CREATE TABLE project_counts (
        project_id TEXT NOT NULL,
        subject TEXT NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (project_id, subject)) WITHOUT ROWID""",
    """CREATE TABLE flow_counts (
        flow_id TEXT PRIMARY KEY,
        project_id TEXT NOT NULL,
        generations INTEGER NOT NULL,
        images INTEGER NOT NULL) WITHOUT ROWID""",
    """CREATE TABLE scope_counts (
        scope_id TEXT PRIMARY KEY,
        entries INTEGER NOT NULL) WITHOUT ROWID""",
    # what an existing database holds already
    """INSERT INTO project_counts (project_id, subject, n)
        SELECT project_id, 'images/' || source, COUNT(*) FROM images
        GROUP BY project_id, source""",
    """INSERT INTO project_counts (project_id, subject, n)
        SELECT project_id, 'generations/' || status, COUNT(*) FROM generations
        GROUP BY project_id, status""",
    """INSERT INTO project_counts (project_id, subject, n)
        SELECT project_id, 'flows', COUNT(*) FROM flows GROUP BY project_id""",
    """INSERT INTO project_counts (project_id, subject, n)
        SELECT project_id, 'scopes', COUNT(*) FROM live_scopes GROUP BY project_id""",
    """INSERT INTO flow_counts (flow_id, project_id, generations, images)
        SELECT f.id, f.project_id,
            (SELECT COUNT(*) FROM generations g
                WHERE g.project_id = f.project_id AND g.flow_id = f.id),
            (SELECT COUNT(*) FROM images i WHERE i.project_id = f.project_id AND i.flow_id = f.id)
        FROM flows f""",
    """INSERT INTO scope_counts (scope_id, entries)
        SELECT s.id, (SELECT COUNT(*) FROM live_cache_entries e WHERE e.scope_id = s.id)
        FROM live_scopes s""",
    # images
    """CREATE TRIGGER images_counts_insert AFTER INSERT ON images BEGIN
        INSERT INTO project_counts (project_id, subject, n)
            VALUES (NEW.project_id, 'images/' || NEW.source, 1)
            ON CONFLICT (project_id, subject) DO UPDATE SET n = n + 1;
        UPDATE flow_counts SET images = images + 1
            WHERE flow_id = NEW.flow_id AND project_id = NEW.project_id;
    END""",
    """CREATE TRIGGER images_counts_delete AFTER DELETE ON images BEGIN
        UPDATE project_counts SET n = n - 1
            WHERE project_id = OLD.project_id AND subject = 'images/' || OLD.source;
        UPDATE flow_counts SET images = images - 1
            WHERE flow_id = OLD.flow_id AND project_id = OLD.project_id;
    END""",
    """CREATE TRIGGER images_counts_update AFTER UPDATE OF project_id, source, flow_id ON images
    WHEN OLD.project_id IS NOT NEW.project_id OR OLD.source IS NOT NEW.source
        OR OLD.flow_id IS NOT NEW.flow_id
    BEGIN
        UPDATE project_counts SET n = n - 1
            WHERE project_id = OLD.project_id AND subject = 'images/' || OLD.source;
        UPDATE flow_counts SET images = images - 1
            WHERE flow_id = OLD.flow_id AND project_id = OLD.project_id;
        INSERT INTO project_counts (project_id, subject, n)
            VALUES (NEW.project_id, 'images/' || NEW.source, 1)
            ON CONFLICT (project_id, subject) DO UPDATE SET n = n + 1;
        UPDATE flow_counts SET images = images + 1
            WHERE flow_id = NEW.flow_id AND project_id = NEW.project_id;
    END""",
    # generations
    """CREATE TRIGGER generations_counts_insert AFTER INSERT ON generations BEGIN
        INSERT INTO project_counts (project_id, subject, n)
            VALUES (NEW.project_id, 'generations/' || NEW.status, 1)
            ON CONFLICT (project_id, subject) DO UPDATE SET n = n + 1;
        UPDATE flow_counts SET generations = generations + 1
            WHERE flow_id = NEW.flow_id AND project_id = NEW.project_id;
    END""",
    """CREATE TRIGGER generations_counts_delete AFTER DELETE ON generations BEGIN
        UPDATE project_counts SET n = n - 1
            WHERE project_id = OLD.project_id AND subject = 'generations/' || OLD.status;
        UPDATE flow_counts SET generations = generations - 1
            WHERE flow_id = OLD.flow_id AND project_id = OLD.project_id;
    END""",
    """CREATE TRIGGER generations_counts_update
    AFTER UPDATE OF project_id, status, flow_id ON generations
    WHEN OLD.project_id IS NOT NEW.project_id OR OLD.status IS NOT NEW.status
        OR OLD.flow_id IS NOT NEW.flow_id
    BEGIN
        UPDATE project_counts SET n = n - 1
            WHERE project_id = OLD.project_id AND subject = 'generations/' || OLD.status;
        UPDATE flow_counts SET generations = generations - 1
            WHERE flow_id = OLD.flow_id AND project_id = OLD.project_id;
        INSERT INTO project_counts (project_id, subject, n)
            VALUES (NEW.project_id, 'generations/' || NEW.status, 1)
            ON CONFLICT (project_id, subject) DO UPDATE SET n = n + 1;
        UPDATE flow_counts SET generations = generations + 1
            WHERE flow_id = NEW.flow_id AND project_id = NEW.project_id;
    END""",
    # flows: a new row adopts the members that already carry its id
    """CREATE TRIGGER flows_counts_insert AFTER INSERT ON flows BEGIN
        INSERT INTO project_counts (project_id, subject, n) VALUES (NEW.project_id, 'flows', 1)
            ON CONFLICT (project_id, subject) DO UPDATE SET n = n + 1;
        INSERT INTO flow_counts (flow_id, project_id, generations, images) VALUES (
            NEW.id, NEW.project_id,
            (SELECT COUNT(*) FROM generations
                WHERE project_id = NEW.project_id AND flow_id = NEW.id),
            (SELECT COUNT(*) FROM images WHERE project_id = NEW.project_id AND flow_id = NEW.id));
    END""",
    """CREATE TRIGGER flows_counts_delete AFTER DELETE ON flows BEGIN
        UPDATE project_counts SET n = n - 1
            WHERE project_id = OLD.project_id AND subject = 'flows';
        DELETE FROM flow_counts WHERE flow_id = OLD.id;
    END""",
    """CREATE TRIGGER flows_counts_update AFTER UPDATE OF id, project_id ON flows
    WHEN OLD.id IS NOT NEW.id OR OLD.project_id IS NOT NEW.project_id
    BEGIN
        UPDATE project_counts SET n = n - 1
            WHERE project_id = OLD.project_id AND subject = 'flows';
        DELETE FROM flow_counts WHERE flow_id = OLD.id;
        INSERT INTO project_counts (project_id, subject, n) VALUES (NEW.project_id, 'flows', 1)
            ON CONFLICT (project_id, subject) DO UPDATE SET n = n + 1;
        INSERT INTO flow_counts (flow_id, project_id, generations, images) VALUES (
            NEW.id, NEW.project_id,
            (SELECT COUNT(*) FROM generations
                WHERE project_id = NEW.project_id AND flow_id = NEW.id),
            (SELECT COUNT(*) FROM images WHERE project_id = NEW.project_id AND flow_id = NEW.id));
    END""",
    # live scopes and their cache entries
    """CREATE TRIGGER live_scopes_counts_insert AFTER INSERT ON live_scopes BEGIN
        INSERT INTO project_counts (project_id, subject, n) VALUES (NEW.project_id, 'scopes', 1)
            ON CONFLICT (project_id, subject) DO UPDATE SET n = n + 1;
        INSERT INTO scope_counts (scope_id, entries) VALUES (
            NEW.id, (SELECT COUNT(*) FROM live_cache_entries WHERE scope_id = NEW.id));
    END""",
    """CREATE TRIGGER live_scopes_counts_delete AFTER DELETE ON live_scopes BEGIN
        UPDATE project_counts SET n = n - 1
            WHERE project_id = OLD.project_id AND subject = 'scopes';
        DELETE FROM scope_counts WHERE scope_id = OLD.id;
    END""",
    """CREATE TRIGGER live_scopes_counts_update AFTER UPDATE OF id, project_id ON live_scopes
    WHEN OLD.id IS NOT NEW.id OR OLD.project_id IS NOT NEW.project_id
    BEGIN
        UPDATE project_counts SET n = n - 1
            WHERE project_id = OLD.project_id AND subject = 'scopes';
        DELETE FROM scope_counts WHERE scope_id = OLD.id;
        INSERT INTO project_counts (project_id, subject, n) VALUES (NEW.project_id, 'scopes', 1)
            ON CONFLICT (project_id, subject) DO UPDATE SET n = n + 1;
        INSERT INTO scope_counts (scope_id, entries) VALUES (
            NEW.id, (SELECT COUNT(*) FROM live_cache_entries WHERE scope_id = NEW.id));
    END""",
    """CREATE TRIGGER live_cache_entries_counts_insert AFTER INSERT ON live_cache_entries BEGIN
        UPDATE scope_counts
            SET entries = (SELECT COUNT(*) FROM live_cache_entries WHERE scope_id = NEW.scope_id)
            WHERE scope_id = NEW.scope_id;
    END""",
    """CREATE TRIGGER live_cache_entries_counts_delete AFTER DELETE ON live_cache_entries BEGIN
        UPDATE scope_counts SET entries = entries - 1 WHERE scope_id = OLD.scope_id;
    END""",
    """CREATE TRIGGER live_cache_entries_counts_update
    AFTER UPDATE OF scope_id ON live_cache_entries
    WHEN OLD.scope_id IS NOT NEW.scope_id
    BEGIN
        UPDATE scope_counts SET entries = entries - 1 WHERE scope_id = OLD.scope_id;
        UPDATE scope_counts SET entries = entries + 1 WHERE scope_id = NEW.scope_id;
    END""",
    # the projects' rows go with them (after their members' triggers have run)
    """CREATE TRIGGER projects_counts_delete AFTER DELETE ON projects BEGIN
        DELETE FROM project_counts WHERE project_id = OLD.id;
    END""",
    # a flow's images, and its generations of one status, newest first: without them
    # the planner walks the whole project in time order to avoid sorting the flow
    "CREATE INDEX images_project_flow_created ON images (project_id, flow_id, created_at)",
    """CREATE INDEX generations_project_flow_status
        ON generations (project_id, flow_id, status, created_at)""",
]

# State that several worker processes (or instances) must agree on (SCALE.md §2).
_SHARED_STATE: Final = [
    # a sliding log per limit bucket ("key:<id>", "ip:<address>"): admitting a request
    # counts the bucket's events inside the window in the same write that adds one
    """CREATE TABLE rate_events (
        bucket TEXT NOT NULL,
        at INTEGER NOT NULL)""",
    "CREATE INDEX rate_events_bucket_at ON rate_events (bucket, at)",
    # single flight of a live-URL miss across processes: the first to insert the cache
    # key generates; a claim whose holder died expires and is taken over
    """CREATE TABLE live_claims (
        cache_key TEXT PRIMARY KEY,
        scope_id TEXT NOT NULL REFERENCES live_scopes(id) ON DELETE CASCADE,
        holder TEXT NOT NULL,
        error TEXT,
        expires_at INTEGER NOT NULL)""",
    "CREATE INDEX live_claims_scope ON live_claims (scope_id)",
    # what every process must drop from its memory caches; written by triggers, so a
    # change made by any writer (another worker, the CLI) is seen by all
    """CREATE TABLE change_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        ref TEXT NOT NULL,
        created_at INTEGER NOT NULL
            DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)))""",
    """CREATE TRIGGER images_changes_delete AFTER DELETE ON images BEGIN
        INSERT INTO change_log (kind, ref) VALUES ('image', OLD.id);
    END""",
    """CREATE TRIGGER images_changes_update
    AFTER UPDATE OF file_hash, storage_key, alias, project_id, mime_type ON images
    WHEN OLD.file_hash IS NOT NEW.file_hash OR OLD.storage_key IS NOT NEW.storage_key
        OR OLD.alias IS NOT NEW.alias OR OLD.project_id IS NOT NEW.project_id
        OR OLD.mime_type IS NOT NEW.mime_type
    BEGIN
        INSERT INTO change_log (kind, ref) VALUES ('image', OLD.id);
    END""",
    """CREATE TRIGGER live_cache_entries_changes_delete AFTER DELETE ON live_cache_entries
    BEGIN
        INSERT INTO change_log (kind, ref) VALUES ('live', OLD.cache_key);
    END""",
    """CREATE TRIGGER live_cache_entries_changes_update
    AFTER UPDATE OF image_id, cache_key ON live_cache_entries
    WHEN OLD.image_id IS NOT NEW.image_id OR OLD.cache_key IS NOT NEW.cache_key
    BEGIN
        INSERT INTO change_log (kind, ref) VALUES ('live', OLD.cache_key);
    END""",
    """CREATE TRIGGER api_keys_changes_update AFTER UPDATE OF is_active, expires_at ON api_keys
    BEGIN
        INSERT INTO change_log (kind, ref) VALUES ('key', OLD.id);
    END""",
    """CREATE TRIGGER api_keys_changes_delete AFTER DELETE ON api_keys BEGIN
        INSERT INTO change_log (kind, ref) VALUES ('key', OLD.id);
    END""",
    """CREATE TRIGGER projects_changes_update AFTER UPDATE ON projects BEGIN
        INSERT INTO change_log (kind, ref) VALUES ('project', OLD.id);
    END""",
    # async and sync generations carry a lease; an expired one is failed exactly once
    "ALTER TABLE generations ADD COLUMN lease_owner TEXT",
    "ALTER TABLE generations ADD COLUMN lease_expires_at INTEGER",
    """CREATE INDEX generations_unfinished ON generations (lease_expires_at)
        WHERE status IN ('pending', 'processing')""",
]

# Names the legacy routes publish images under (API.md §10): one row per name, the
# newest image wins; deleting the image unpublishes the name. A name moved to another
# image is a change every process must see (its cached bytes are the old image's).
_PUBLISHED_NAMES: Final = [
    """CREATE TABLE published_names (
        project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        category TEXT NOT NULL CHECK (category IN ('generated', 'uploads')),
        filename TEXT NOT NULL,
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (project_id, category, filename))""",
    "CREATE INDEX published_names_image ON published_names (image_id)",
    """CREATE TRIGGER published_names_changes_update AFTER UPDATE OF image_id ON published_names
    WHEN OLD.image_id IS NOT NEW.image_id
    BEGIN
        INSERT INTO change_log (kind, ref) VALUES ('image', OLD.image_id);
    END""",
]

# Image variants (API.md §12): each stored variant's file and when it was last read,
# so a project keeps at most ``cdn.max_variants_per_image`` per image (least recently
# used dropped). Signed URLs (§13): the project's mode and its signing secrets; a
# rotated secret keeps working until ``retired_at`` + the grace period. Moving a focal
# point changes every cover variant, which other processes must drop.
_VARIANTS_AND_SIGNING: Final = [
    """CREATE TABLE image_variants (
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        variant_key TEXT NOT NULL,
        storage_key TEXT NOT NULL,
        params TEXT NOT NULL,
        mime_type TEXT NOT NULL,
        file_size INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        used_at INTEGER NOT NULL,
        PRIMARY KEY (image_id, variant_key))""",
    "CREATE INDEX image_variants_used ON image_variants (image_id, used_at)",
    """ALTER TABLE projects ADD COLUMN signed_urls TEXT NOT NULL DEFAULT 'off'
        CHECK (signed_urls IN ('off', 'live', 'all'))""",
    """CREATE TABLE signing_secrets (
        id TEXT PRIMARY KEY,
        project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        secret TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        retired_at INTEGER)""",
    "CREATE INDEX signing_secrets_project ON signing_secrets (project_id, created_at)",
    """CREATE TRIGGER images_changes_focal AFTER UPDATE OF focal_x, focal_y ON images
    WHEN OLD.focal_x IS NOT NEW.focal_x OR OLD.focal_y IS NOT NEW.focal_y
    BEGIN
        INSERT INTO change_log (kind, ref) VALUES ('image', OLD.id);
    END""",
]

MIGRATIONS: Final[list[tuple[int, str, list[str]]]] = [
    (1, "initial schema", _INITIAL),
    (2, "flow id indexes", _FLOW_ID_INDEXES),
    (3, "counts kept by triggers; flow images by time", _COUNTS),
    (4, "shared state: rate events, live claims, change log, generation leases", _SHARED_STATE),
    (5, "names published by the legacy routes", _PUBLISHED_NAMES),
    (6, "image variants; signed URLs", _VARIANTS_AND_SIGNING),
]

LATEST_VERSION: Final = MIGRATIONS[-1][0]


def _dialect(db: PeeweeDatabase) -> Dialect:
    found: Dialect = getattr(db, "dialect", Dialect("sqlite"))
    return found


def current_version(db: PeeweeDatabase) -> int:
    db.execute_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)"
    )
    row = db.execute_sql("SELECT MAX(version) FROM schema_migrations").fetchone()
    return int(row[0] or 0)


def migrate(db: PeeweeDatabase, now_us: int) -> list[int]:
    """Apply every pending migration, each in its own transaction; return their versions.

    The migrations are written in SQLite's SQL; on PostgreSQL each statement is
    translated (``db/dialect.py``), so both run the same numbered steps."""
    dialect = _dialect(db)
    version = current_version(db)
    if version > LATEST_VERSION:
        raise MigrationError(
            f"the database is at schema version {version}, newer than this release "
            f"understands ({LATEST_VERSION}); upgrade banatie-local."
        )
    created: set[str] = set()
    applied = []
    for number, name, statements in MIGRATIONS:
        translated = (
            postgres_migration(statements, created) if dialect.postgres else statements
        )  # translated even when applied: a later one may refer to its tables
        if number <= version:
            continue
        with db.atomic():
            for statement in translated:
                db.execute_sql(statement)
            db.execute_sql(
                dialect.sql(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)"
                ),
                (number, name, now_us),
            )
        log.info("applied database migration %d (%s)", number, name)
        applied.append(number)
    return applied
