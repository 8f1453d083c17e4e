"""Where image bytes live: one small interface, a filesystem and an S3 backend."""

from __future__ import annotations

from banatie_local.config import ConfigError, Settings
from banatie_local.storage.base import Storage, StorageError, image_key, validate_key
from banatie_local.storage.local import LocalStorage

__all__ = ["LocalStorage", "Storage", "StorageError", "create_storage", "image_key", "validate_key"]


def create_storage(settings: Settings) -> Storage:
    """The backend that ``storage.backend`` names."""
    if settings.storage.backend == "local":
        return LocalStorage(settings.storage_root)
    if settings.storage.backend == "minio":
        from banatie_local.storage.minio import MinioStorage

        return MinioStorage(settings.storage)
    raise ConfigError(f"setting storage.backend = {settings.storage.backend!r} is unknown.")
