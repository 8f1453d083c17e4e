"""The storage interface and the rules every object key obeys."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Protocol, TypeVar

from banatie_local.storage.buffers import Lease, ReadBuffers

R = TypeVar("R")
D = TypeVar("D")

# Keys are slash-separated segments of safe characters; no segment may be empty or
# start with a dot, so "..", hidden files and absolute paths cannot be expressed.
_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")
MAX_KEY_LENGTH = 512


class StorageError(Exception):
    """The backend failed (unreachable, full, unwritable)."""


class InvalidKeyError(ValueError):
    """A key that could name something outside the storage root."""


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe object key, else raise ``InvalidKeyError``."""
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidKeyError("storage key is empty or too long")
    for segment in key.split("/"):
        if not _SEGMENT.fullmatch(segment):
            raise InvalidKeyError(f"storage key segment {segment!r} is not allowed")
    return key


def image_key(org_slug: str, project_slug: str, image_id: str) -> str:
    """``{org}/{project}/img/{imageId}`` (API.md §1.6)."""
    return validate_key(f"{org_slug}/{project_slug}/img/{image_id}")


def read_along(
    row: R | None, key: Callable[[R], str], reader: Callable[[str], D] | None
) -> tuple[R | None, D | bytes | None]:
    """A looked-up row with its file's bytes read on the same thread when ``reader``
    (``Storage.fast_reader``) is given; a missing file reads as ``b""``."""
    if row is None or reader is None:
        return row, None
    try:
        return row, reader(key(row))
    except FileNotFoundError:
        return row, b""


class Storage(Protocol):
    """Object storage. Every method validates its key before touching anything."""

    name: str

    def leased_reader(
        self, buffers: ReadBuffers, smallest: int
    ) -> Callable[[str], bytes | Lease] | None:
        """Like ``fast_reader``, but a file of at least ``smallest`` bytes is read into
        a buffer of ``buffers`` (for bytes served once and not cached); or None."""
        ...

    def fast_reader(self) -> Callable[[str], bytes] | None:
        """A blocking read cheap enough to run on a database reader thread together
        with the row lookup (local files), or None (network storage: use ``get``)."""
        ...

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` under ``key`` atomically: readers see all or nothing."""
        ...

    async def get(self, key: str) -> bytes:
        """The bytes under ``key``; ``FileNotFoundError`` if there are none."""
        ...

    async def delete(self, key: str) -> bool:
        """Remove ``key``; True if something was removed."""
        ...

    async def exists(self, key: str) -> bool:
        """Whether ``key`` holds an object."""
        ...

    async def list_keys(self, prefix: str = "") -> list[str]:
        """Every key that starts with ``prefix`` (for purge and stats)."""
        ...

    async def modified_at(self, key: str) -> float:
        """When ``key`` was last written (epoch seconds); ``FileNotFoundError`` if absent."""
        ...

    async def healthy(self) -> bool:
        """Whether the backend can be read and written now."""
        ...

    async def leftover_temp_files(self, older_than: float) -> list[str]:
        """Temporary files a crashed write left behind, older than ``older_than`` (a
        Unix time); none for a backend whose writes are atomic on the server (S3)."""
        ...

    async def remove_temp_files(self, names: list[str]) -> None:
        """Remove files that ``leftover_temp_files`` named."""
        ...
