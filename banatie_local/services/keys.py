"""API keys: creation, listing, revocation, authentication and bootstrap.

A key is ``bnt_`` + 64 lowercase hex characters (32 random bytes). Only its SHA-256
is stored, so a key is shown once, when it is made, and never again. Looking a key
up by its hash means no comparison ever runs over the secret itself.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any

from cachetools import LRUCache
from peewee import JOIN

from banatie_local.clock import Clock
from banatie_local.constants import MAX_EXPIRY_DAYS, MAX_KEY_NAME_LENGTH
from banatie_local.db.boundary import Database
from banatie_local.db.models import ApiKey, Organization, Project
from banatie_local.errors import AuthError, ForbiddenError, NotFoundError, ValidationError
from banatie_local.services.projects import DEFAULT_SLUG, ProjectService
from banatie_local.services.validation import is_uuid, new_id

KEY_PREFIX = "bnt_"
KEY_RE = re.compile(r"^bnt_[0-9a-f]{64}$")
KEY_TYPES = ("master", "project")
LAST_USED_RESOLUTION_US = 60_000_000  # write lastUsedAt at most once a minute per key
DAY_US = 86_400_000_000


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class KeyOwner:
    """A key with the organization and project it belongs to."""

    key: ApiKey
    organization: Organization | None
    project: Project | None


@dataclass(frozen=True)
class CreatedKey:
    """A new key, and the plaintext that exists only in this object."""

    owner: KeyOwner
    plaintext: str


class KeyService:
    def __init__(self, db: Database, clock: Clock, projects: ProjectService) -> None:
        self.db = db
        self.clock = clock
        self.projects = projects
        # key hash -> its owner, so an authenticated request costs no query. Dropped
        # whole when any key or project changes (``forget``): the change feed brings
        # other processes' revocations here within its poll interval.
        self._owners: LRUCache[str, KeyOwner] = LRUCache(maxsize=10_000)

    def any_exist(self) -> bool:
        return ApiKey.select().exists()

    def create(
        self,
        key_type: str,
        org_slug: str | None = None,
        project_slug: str | None = None,
        name: str | None = None,
        expires_in_days: int | None = None,
    ) -> CreatedKey:
        """Make a key. Project keys default to ``default/default``; missing slugs are created.

        Master keys belong to no project, so slugs given with them are ignored.
        """
        if key_type not in KEY_TYPES:
            raise ValidationError("type must be 'master' or 'project'.", field="type")
        if name is not None and len(name) > MAX_KEY_NAME_LENGTH:
            raise ValidationError(
                f"name must be at most {MAX_KEY_NAME_LENGTH} characters.", field="name"
            )
        if expires_in_days is not None and not 1 <= expires_in_days <= MAX_EXPIRY_DAYS:
            raise ValidationError(
                f"expiresInDays must be a whole number from 1 to {MAX_EXPIRY_DAYS}.",
                field="expiresInDays",
            )
        with self.db.atomic():
            org = project = None
            if key_type == "project":
                ref = self.projects.ensure(org_slug or DEFAULT_SLUG, project_slug or DEFAULT_SLUG)
                org, project = ref.organization, ref.project
            return self._insert(key_type, org, project, name, expires_in_days)

    def _insert(
        self,
        key_type: str,
        org: Organization | None,
        project: Project | None,
        name: str | None,
        expires_in_days: int | None,
    ) -> CreatedKey:
        plaintext = KEY_PREFIX + secrets.token_hex(32)
        now = self.clock.now_us()
        record = ApiKey.create(
            id=new_id(),
            key_hash=hash_key(plaintext),
            key_prefix=plaintext[:12],
            type=key_type,
            organization=org,
            project=project,
            name=name,
            is_active=True,
            expires_at=now + expires_in_days * DAY_US if expires_in_days else None,
            created_at=now,
            updated_at=now,
        )
        return CreatedKey(KeyOwner(record, org, project), plaintext)

    def bootstrap(self) -> CreatedKey:
        """The first master key; 403 ``BOOTSTRAP_DISABLED`` once any key exists."""
        with self.db.atomic():
            if self.any_exist():
                raise ForbiddenError(
                    "bootstrap is only possible while no API key exists.", "BOOTSTRAP_DISABLED"
                )
            return self._insert("master", None, None, "bootstrap", None)

    def list(self, limit: int, offset: int) -> tuple[list[KeyOwner], int]:
        """Keys newest first, with their owners, and the total count."""
        query = _with_owners().order_by(ApiKey.created_at.desc()).limit(limit).offset(offset)
        return [_owner(row) for row in query], ApiKey.select().count()

    def get(self, key_id: str) -> KeyOwner:
        if not is_uuid(key_id):
            raise NotFoundError(f"API key {key_id} does not exist.", "API_KEY_NOT_FOUND")
        row = _with_owners().where(ApiKey.id == key_id).first()
        if row is None:
            raise NotFoundError(f"API key {key_id} does not exist.", "API_KEY_NOT_FOUND")
        return _owner(row)

    def revoke(self, key_id: str) -> ApiKey:
        """Deactivate a key; it stops working on its next request."""
        record = self.get(key_id).key
        record.is_active = False
        record.updated_at = self.clock.now_us()
        record.save()
        return record

    def forget(self) -> None:
        """Drop every remembered key owner (a key or a project changed)."""
        self._owners.clear()

    async def authenticate(self, plaintext: str | None) -> KeyOwner:
        """The owner of a presented key, or the 401 that says why not. A key seen
        before is checked from memory; a new one costs one read off the event loop."""
        if not plaintext:
            raise AuthError(
                "send your API key in the X-API-Key header (or as Authorization: Bearer).",
                "MISSING_API_KEY",
            )
        if not KEY_RE.fullmatch(plaintext):
            raise AuthError("the API key is not valid.", "INVALID_API_KEY")
        digest = hash_key(plaintext)
        owner = self._owners.get(digest)
        if owner is None:
            owner = await self.db.read(self.lookup, digest)
            if owner is not None:
                self._owners[digest] = owner
        if owner is None:
            raise AuthError("the API key is not valid.", "INVALID_API_KEY")
        return self.check(owner)

    def lookup(self, digest: str) -> KeyOwner | None:
        record = _with_owners().where(ApiKey.key_hash == digest).first()
        return _owner(record) if record is not None else None

    def check(self, owner: KeyOwner) -> KeyOwner:
        """Refuse a revoked or expired key."""
        record = owner.key
        if not record.is_active:
            raise AuthError("the API key has been revoked.", "API_KEY_REVOKED")
        if record.expires_at is not None and record.expires_at <= self.clock.now_us():
            raise AuthError("the API key has expired.", "API_KEY_EXPIRED")
        return owner

    def needs_touch(self, owner: KeyOwner, now: int) -> bool:
        """Whether ``lastUsedAt`` is due a write (at most once a minute per key)."""
        last = owner.key.last_used_at
        return last is None or now - last > LAST_USED_RESOLUTION_US

    def touch(self, key_id: str, now: int) -> None:
        """Record ``lastUsedAt`` (inside a write)."""
        stale = ApiKey.last_used_at.is_null() | (
            ApiKey.last_used_at < now - LAST_USED_RESOLUTION_US
        )
        ApiKey.update(last_used_at=now).where((ApiKey.id == key_id) & stale).execute()


def _with_owners() -> Any:
    """Keys with their organization and project, in one query."""
    return (
        ApiKey.select(ApiKey, Organization, Project)
        .join(Organization, JOIN.LEFT_OUTER, on=ApiKey.organization == Organization.id)
        .switch(ApiKey)
        .join(Project, JOIN.LEFT_OUTER, on=ApiKey.project == Project.id)
    )


def _owner(row: ApiKey) -> KeyOwner:
    # A null foreign key reads as None without a query; a set one was joined above.
    org = row.organization if row.organization_id else None
    project = row.project if row.project_id else None
    return KeyOwner(row, org, project)
