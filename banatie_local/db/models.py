"""Peewee models over the tables that ``migrations.py`` creates.

Timestamps are integer epoch microseconds (see ``clock.Clock``); JSON columns hold
objects. Columns that point at rows which may not exist yet (a lazily created flow)
or that form a cycle (generation <-> output image) are plain text ids here; the
foreign keys themselves live in the SQL schema.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from peewee import (
    BigIntegerField,
    CompositeKey,
    DatabaseProxy,
    FloatField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
    fn,
)

database = DatabaseProxy()


class FlagField(IntegerField):
    """A boolean stored as 0/1: the same column and the same raw SQL on SQLite and
    PostgreSQL."""

    def db_value(self, value: Any) -> Any:
        return None if value is None else int(bool(value))

    def python_value(self, value: Any) -> Any:
        return None if value is None else bool(value)


class JSONField(TextField):
    """A JSON object stored as text."""

    def db_value(self, value: Any) -> str:
        return json.dumps(value if value is not None else {}, separators=(",", ":"))

    def python_value(self, value: Any) -> Any:
        return json.loads(value) if value else {}


class BaseModel(Model):
    class Meta:
        database = database
        legacy_table_names = False


class Organization(BaseModel):
    id = TextField(primary_key=True)
    slug = TextField(unique=True)
    name = TextField()
    created_at = BigIntegerField()
    updated_at = BigIntegerField()

    class Meta:
        table_name = "organizations"


class Project(BaseModel):
    organization_id: str  # set by the foreign key below
    id = TextField(primary_key=True)
    organization = ForeignKeyField(Organization, column_name="organization_id", on_delete="CASCADE")
    slug = TextField()
    name = TextField()
    allow_new_live_scopes = FlagField(default=True)
    new_live_scopes_generation_limit = IntegerField(default=30)
    signed_urls = TextField(default="off")  # off | live | all (API.md §13)
    created_at = BigIntegerField()
    updated_at = BigIntegerField()

    class Meta:
        table_name = "projects"


class SigningSecret(BaseModel):
    id = TextField(primary_key=True)
    project_id = TextField()
    secret = TextField()  # 32 random bytes, hex
    created_at = BigIntegerField()
    retired_at = BigIntegerField(null=True)

    class Meta:
        table_name = "signing_secrets"


class ApiKey(BaseModel):
    organization_id: str | None  # set by the foreign keys below
    project_id: str | None
    id = TextField(primary_key=True)
    key_hash = TextField(unique=True)
    key_prefix = TextField()
    type = TextField()
    organization = ForeignKeyField(
        Organization, column_name="organization_id", null=True, on_delete="CASCADE"
    )
    project = ForeignKeyField(Project, column_name="project_id", null=True, on_delete="CASCADE")
    name = TextField(null=True)
    is_active = FlagField(default=True)
    expires_at = BigIntegerField(null=True)
    last_used_at = BigIntegerField(null=True)
    created_at = BigIntegerField()
    updated_at = BigIntegerField()

    class Meta:
        table_name = "api_keys"


class Flow(BaseModel):
    # filled by FlowService's counting query, not columns
    generation_count: int
    image_count: int

    id = TextField(primary_key=True)
    project_id = TextField()
    meta = JSONField(default=dict)
    created_at = BigIntegerField()
    updated_at = BigIntegerField()

    class Meta:
        table_name = "flows"


class Generation(BaseModel):
    id = TextField(primary_key=True)
    project_id = TextField()
    flow_id = TextField(null=True)
    api_key_id = TextField(null=True)
    prompt = TextField()
    original_prompt = TextField(null=True)
    user_prompt = TextField()
    auto_enhance = FlagField(default=True)
    enhancement_template = TextField(default="general")
    aspect_ratio = TextField()
    status = TextField()
    output_image_id = TextField(null=True)
    output_alias = TextField(null=True)
    output_flow_alias = TextField(null=True)
    processing_time_ms = IntegerField(null=True)
    retry_count = IntegerField(default=0)
    error_message = TextField(null=True)
    meta = JSONField(default=dict)
    lease_owner = TextField(null=True)  # the process running it (``owner_id``)
    lease_expires_at = BigIntegerField(null=True)  # renewed while it runs
    created_at = BigIntegerField()
    updated_at = BigIntegerField()

    class Meta:
        table_name = "generations"


class Image(BaseModel):
    id = TextField(primary_key=True)
    project_id = TextField()
    flow_id = TextField(null=True)
    generation_id = TextField(null=True)
    storage_key = TextField(unique=True)
    mime_type = TextField()
    file_size = IntegerField()
    file_hash = TextField()
    width = IntegerField()
    height = IntegerField()
    source = TextField()
    alias_name = TextField(column_name="alias", null=True)  # Model.alias() is peewee's
    focal_x = FloatField(null=True)
    focal_y = FloatField(null=True)
    meta = JSONField(default=dict)
    created_at = BigIntegerField()
    updated_at = BigIntegerField()

    class Meta:
        table_name = "images"


class ImageVariant(BaseModel):
    image_id = TextField()
    variant_key = TextField()
    storage_key = TextField()
    params = TextField()
    mime_type = TextField()
    file_size = IntegerField()
    created_at = BigIntegerField()
    used_at = BigIntegerField()

    class Meta:
        table_name = "image_variants"
        primary_key = CompositeKey("image_id", "variant_key")


class GenerationReference(BaseModel):
    generation_id = TextField()
    position = IntegerField()
    image_id = TextField()
    alias_name = TextField(column_name="alias", null=True)

    class Meta:
        table_name = "generation_references"
        primary_key = False


class FlowAlias(BaseModel):
    flow_id = TextField()
    alias_name = TextField(column_name="alias")
    image_id = TextField()
    created_at = BigIntegerField()

    class Meta:
        table_name = "flow_aliases"
        primary_key = False


class PublishedName(BaseModel):
    """A name an image is published under by the legacy routes (API.md §10)."""

    project_id = TextField()
    category = TextField()
    filename = TextField()
    image_id = TextField()
    created_at = BigIntegerField()

    class Meta:
        table_name = "published_names"
        primary_key = False


class LiveScope(BaseModel):
    id = TextField(primary_key=True)
    project_id = TextField()
    slug = TextField()
    allow_new_generations = FlagField(default=True)
    new_generations_limit = IntegerField(default=30)
    meta = JSONField(default=dict)
    created_at = BigIntegerField()
    updated_at = BigIntegerField()

    class Meta:
        table_name = "live_scopes"


class LiveCacheEntry(BaseModel):
    id = TextField(primary_key=True)
    project_id = TextField()
    scope_id = TextField()
    cache_key = TextField(unique=True)
    image_id = TextField()
    generation_id = TextField(null=True)
    prompt = TextField()
    aspect_ratio = TextField()
    auto_enhance = FlagField()
    template = TextField()
    hit_count = IntegerField(default=0)
    last_hit_at = BigIntegerField(null=True)
    created_at = BigIntegerField()
    updated_at = BigIntegerField()

    class Meta:
        table_name = "live_cache_entries"


class OrphanFile(BaseModel):
    storage_key = TextField(primary_key=True)
    error = TextField()
    created_at = BigIntegerField()

    class Meta:
        table_name = "orphan_files"


# Counts kept by triggers (migration 3): read them, never write them.


class ProjectCount(BaseModel):
    """Rows of a project per subject: ``images/<source>``, ``generations/<status>``,
    ``flows``, ``scopes``."""

    project_id = TextField()
    subject = TextField()
    n = IntegerField()

    class Meta:
        table_name = "project_counts"
        primary_key = CompositeKey("project_id", "subject")

    @classmethod
    def total(cls, project_id: str, subjects: Iterable[str]) -> int:
        """The project's rows over these subjects, by one primary-key read each."""
        value = (
            cls.select(fn.COALESCE(fn.SUM(cls.n), 0))
            .where((cls.project_id == project_id) & cls.subject.in_(list(subjects)))
            .scalar()
        )
        return int(value)


class FlowCount(BaseModel):
    """A flow row's generations and images (those of its project carrying its id)."""

    flow_id = TextField(primary_key=True)
    project_id = TextField()
    generations = IntegerField()
    images = IntegerField()

    class Meta:
        table_name = "flow_counts"

    @classmethod
    def of(cls, project_id: str, flow_id: str) -> FlowCount | None:
        """The counts of this project's flow row, or None when it has no row."""
        row: FlowCount | None = cls.get_or_none(
            (cls.flow_id == flow_id) & (cls.project_id == project_id)
        )
        return row


class ScopeCount(BaseModel):
    """A live scope's cache entries."""

    scope_id = TextField(primary_key=True)
    entries = IntegerField()

    class Meta:
        table_name = "scope_counts"

    @classmethod
    def of(cls, scope_id: str) -> int | None:
        """The scope's entries, or None when the scope has no row."""
        row: ScopeCount | None = cls.get_or_none(cls.scope_id == scope_id)
        return int(row.entries) if row is not None else None


ALL_MODELS: list[type[BaseModel]] = [
    Organization,
    Project,
    ApiKey,
    Flow,
    Generation,
    Image,
    GenerationReference,
    FlowAlias,
    LiveScope,
    LiveCacheEntry,
    OrphanFile,
    ProjectCount,
    FlowCount,
    ScopeCount,
]
