"""S3-compatible storage through the ``minio`` client (MinIO, SeaweedFS, AWS S3, ...).

Objects live in ``storage.minio_bucket`` under the same keys as on disk; the MIME
type is stored as the object's Content-Type. The bucket is created on first use if
it is missing. Every failure to reach the endpoint becomes ``StorageError`` (503
``STORAGE_UNAVAILABLE`` over HTTP), fast: connections time out in seconds and are
retried once, so a request never hangs on a dead endpoint.
"""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from collections.abc import Callable
from typing import TypeVar

import urllib3
from minio import Minio
from minio.error import MinioException, S3Error

from banatie_local.config import StorageSettings
from banatie_local.storage.base import StorageError, validate_key
from banatie_local.storage.buffers import Lease, ReadBuffers

log = logging.getLogger(__name__)
T = TypeVar("T")

_MISSING_CODES = {"NoSuchKey", "NoSuchObject", "NotFound"}
_UNREACHABLE = (MinioException, urllib3.exceptions.HTTPError, OSError, ValueError)


class MinioStorage:
    name = "minio"

    def fast_reader(self) -> Callable[[str], bytes] | None:
        return None  # a network read must not hold a database reader thread

    def __init__(self, settings: StorageSettings) -> None:
        self.bucket = settings.minio_bucket
        # A refused or failed connection is retried once; a read that times out is
        # not (a silent endpoint would otherwise cost two full timeouts).
        retries = urllib3.Retry(
            total=1, connect=1, read=0, status=1, backoff_factor=0.2,
            status_forcelist=(502, 503, 504),
        )  # fmt: skip
        self.client = self._client(settings, urllib3.Timeout(connect=3.0, read=15.0), retries)
        # /health must answer quickly even when the endpoint accepts but never replies.
        self.probe = self._client(settings, urllib3.Timeout(connect=2.0, read=2.0), 0)
        self._bucket_ready = False
        self._lock = threading.Lock()

    @staticmethod
    def _client(
        settings: StorageSettings, timeout: urllib3.Timeout, retries: urllib3.Retry | int
    ) -> Minio:
        return Minio(
            settings.minio_endpoint,
            access_key=settings.minio_access_key or None,
            secret_key=settings.minio_secret_key or None,
            secure=settings.minio_secure,
            http_client=urllib3.PoolManager(timeout=timeout, retries=retries, maxsize=16),
        )

    # The client is blocking; every call runs in a worker thread.

    def _ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        with self._lock:
            if not self._bucket_ready:
                if not self.client.bucket_exists(self.bucket):
                    try:
                        self.client.make_bucket(self.bucket)
                    except S3Error as exc:
                        if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                            raise
                    log.info("created S3 bucket %s", self.bucket)
                self._bucket_ready = True

    def _put(self, key: str, data: bytes, content_type: str) -> None:
        self._ensure_bucket()
        self.client.put_object(
            self.bucket, key, io.BytesIO(data), len(data), content_type=content_type
        )

    def _get(self, key: str) -> bytes:
        self._ensure_bucket()
        response = self.client.get_object(self.bucket, key)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def _exists(self, key: str) -> bool:
        self._ensure_bucket()
        try:
            self.client.stat_object(self.bucket, key)
        except S3Error as exc:
            if exc.code in _MISSING_CODES:
                return False
            raise
        return True

    def _delete(self, key: str) -> bool:
        if not self._exists(key):
            return False
        self.client.remove_object(self.bucket, key)
        return True

    def _list(self, prefix: str) -> list[str]:
        self._ensure_bucket()
        objects = self.client.list_objects(self.bucket, prefix=prefix or None, recursive=True)
        return sorted(o.object_name for o in objects if o.object_name)

    async def _call(self, what: str, key: str, func: Callable[..., T], *args: object) -> T:
        try:
            return await asyncio.to_thread(func, *args)
        except S3Error as exc:
            if exc.code in _MISSING_CODES:
                raise FileNotFoundError(key) from None
            if exc.code == "NoSuchBucket":
                self._bucket_ready = False  # removed behind our back: recreate next time
            raise StorageError(f"S3 {what} of {key} failed: {exc.code}") from exc
        except _UNREACHABLE as exc:
            raise StorageError(
                f"S3 endpoint unreachable during {what} of {key} ({type(exc).__name__})"
            ) from exc

    def _modified(self, key: str) -> float:
        self._ensure_bucket()
        stat = self.client.stat_object(self.bucket, key)
        return stat.last_modified.timestamp() if stat.last_modified else 0.0

    async def modified_at(self, key: str) -> float:
        return await self._call("lookup", validate_key(key), self._modified, key)

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await self._call("write", validate_key(key), self._put, key, data, content_type)

    async def get(self, key: str) -> bytes:
        return await self._call("read", validate_key(key), self._get, key)

    async def delete(self, key: str) -> bool:
        return await self._call("delete", validate_key(key), self._delete, key)

    async def exists(self, key: str) -> bool:
        return await self._call("lookup", validate_key(key), self._exists, key)

    async def list_keys(self, prefix: str = "") -> list[str]:
        return await self._call("listing", prefix or "/", self._list, prefix)

    def leased_reader(
        self, buffers: ReadBuffers, smallest: int
    ) -> Callable[[str], bytes | Lease] | None:
        return None  # network reads go through ``get``

    async def leftover_temp_files(self, older_than: float) -> list[str]:
        return []  # an S3 PUT is atomic: nothing is left half-written

    async def remove_temp_files(self, names: list[str]) -> None:
        return None

    async def healthy(self) -> bool:
        """Whether the endpoint answers and the bucket exists (creating it if missing)."""
        try:
            return await asyncio.to_thread(self._probe)
        except (*_UNREACHABLE, S3Error):
            return False

    def _probe(self) -> bool:
        if self.probe.bucket_exists(self.bucket):
            return True
        self._bucket_ready = False
        self._ensure_bucket()
        return True
