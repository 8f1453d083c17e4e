"""Names the legacy routes publish images under (API.md §10).

``POST /api/generate`` publishes its image as ``generated/<filename>``, ``POST
/api/upload`` as ``uploads/<filename>``; ``GET /api/images/{org}/{project}/{category}/
{filename}`` serves it. A name is one row: publishing it again points it at the newer
image (the older one stays reachable by its id), and deleting the image unpublishes
it (the schema's foreign key). Publishing runs inside the write that adds the image,
so a name never points at an image that is not there.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from banatie_local.constants import FILENAME_PATTERN, MAX_FILENAME_LENGTH
from banatie_local.db.boundary import Database
from banatie_local.db.models import PublishedName
from banatie_local.services.imagecache import ImageCache
from banatie_local.storage.base import read_along

CATEGORIES: Final = ("generated", "uploads")
EXTENSIONS: Final = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}

_FILENAME_RE: Final = re.compile(FILENAME_PATTERN)
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._-]+")
_LOOKUP: Final = (
    "SELECT i.id, i.mime_type, i.file_hash, i.storage_key FROM published_names n"
    " JOIN images i ON i.id = n.image_id"
    " JOIN projects p ON p.id = n.project_id"
    " JOIN organizations o ON o.id = p.organization_id"
    " WHERE o.slug = ? AND p.slug = ? AND n.category = ? AND n.filename = ?"
)


def is_filename(name: str) -> bool:
    """Whether ``name`` may be published as it is (``^[A-Za-z0-9._-]{1,128}$``)."""
    return _FILENAME_RE.fullmatch(name) is not None


def sanitise(name: str) -> str:
    """A file's own name made publishable: its last path part, every run of other
    characters as one ``-``, at most the length limit; ``upload`` if nothing is left."""
    base = re.split(r"[\\/]", name)[-1]
    clean = _UNSAFE.sub("-", base).strip("-.")[:MAX_FILENAME_LENGTH]
    return clean or "upload"


def with_extension(name: str, mime_type: str) -> str:
    """``name`` with its extension replaced by the real one of ``mime_type``
    (``hero.jpg`` of a PNG is ``hero.png``), within the length limit."""
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    extension = "." + EXTENSIONS.get(mime_type, "bin")
    stem = stem.strip(".")[: MAX_FILENAME_LENGTH - len(extension)].rstrip(".")
    return (stem or "image") + extension


class PublishedNames:
    def __init__(self, db: Database, cache: ImageCache) -> None:
        self.db = db
        self.cache = cache

    def publish(
        self, project_id: str, category: str, filename: str, image_id: str, now_us: int
    ) -> None:
        """Point the name at ``image_id`` (inside a write); the image it named before
        is dropped from this process's cache (the change log tells the others)."""
        before = (
            PublishedName.select(PublishedName.image_id)
            .where(
                (PublishedName.project_id == project_id)
                & (PublishedName.category == category)
                & (PublishedName.filename == filename)
            )
            .scalar()
        )
        if before is None:
            PublishedName.insert(
                project_id=project_id,
                category=category,
                filename=filename,
                image_id=image_id,
                created_at=now_us,
            ).execute()
            return
        PublishedName.update(image_id=image_id, created_at=now_us).where(
            (PublishedName.project_id == project_id)
            & (PublishedName.category == category)
            & (PublishedName.filename == filename)
        ).execute()
        self.cache.evict_image(before)

    def publisher(
        self, project_id: str, category: str, filename: str, now: Callable[[], int]
    ) -> Callable[[str, str], None]:
        """A callback for the write that adds an image, ``(image_id, mime_type)``: it
        publishes ``filename`` with the image's real extension."""

        def publish(image_id: str, mime_type: str) -> None:
            self.publish(project_id, category, with_extension(filename, mime_type), image_id, now())

        return publish

    def lookup(
        self, org: str, project: str, category: str, filename: str
    ) -> tuple[str, str, str, str] | None:
        """``(id, mimeType, fileHash, storageKey)`` of the image a name points at."""
        row = self.db.execute_sql(_LOOKUP, (org, project, category, filename)).fetchone()
        return (row[0], row[1], row[2], row[3]) if row else None

    def fetch(
        self,
        org: str,
        project: str,
        category: str,
        filename: str,
        reader: Callable[[str], bytes] | None,
    ) -> tuple[tuple[str, str, str, str] | None, bytes | None]:
        """``lookup`` and, when storage reads fast, the bytes (one thread hop)."""
        found = self.lookup(org, project, category, filename)
        return read_along(found, lambda row: row[3], reader)
