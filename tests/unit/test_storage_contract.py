"""The storage contract (``banatie_local.storage.base.Storage``), run against both
backends: the filesystem and S3 (a real SeaweedFS server)."""

from __future__ import annotations

import asyncio
import io
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from minio import Minio
from minio.error import S3Error

from banatie_local.storage import LocalStorage, Storage, create_storage, image_key
from banatie_local.storage.base import InvalidKeyError, StorageError
from banatie_local.storage.minio import MinioStorage
from tests.fakes.s3 import ACCESS_KEY, SECRET_KEY, S3Server
from tests.helpers import free_port, make_settings

T = TypeVar("T")

INVALID_KEYS = ["../x", "/abs", "a//b", ".hidden"]
MEGABYTE = random.Random(7).randbytes(1024 * 1024)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def new_bucket() -> str:
    return "t-" + uuid.uuid4().hex[:12]


def s3_client(server: S3Server) -> Minio:
    """A client of our own, to look at the bucket without the code under test."""
    return Minio(server.endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False)


def minio_storage(tmp_path: Path, server: S3Server, bucket: str) -> MinioStorage:
    storage = create_storage(make_settings(tmp_path / "data", **server.settings_overrides(bucket)))
    assert isinstance(storage, MinioStorage)
    return storage


def unreachable_storage(tmp_path: Path, endpoint: str | None = None) -> Storage:
    """An S3 storage whose endpoint has nothing listening (or ``endpoint``)."""
    settings = make_settings(
        tmp_path / "data",
        storage__backend="minio",
        storage__minio_endpoint=endpoint or f"127.0.0.1:{free_port()}",
        storage__minio_bucket="nowhere",
    )
    return create_storage(settings)


@dataclass
class Backend:
    """A storage under test and a way to tell whether it has touched anything yet."""

    storage: Storage
    untouched: Callable[[], bool]


@pytest.fixture(params=["local", "minio"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "local":
        root = tmp_path / "root"
        return Backend(LocalStorage(root), lambda: not root.exists())
    server: S3Server = request.getfixturevalue("s3_server")
    bucket = new_bucket()
    client = s3_client(server)
    return Backend(
        minio_storage(tmp_path, server, bucket), lambda: not client.bucket_exists(bucket)
    )


@pytest.fixture
def storage(backend: Backend) -> Storage:
    return backend.storage


# --------------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    "data",
    [b"x", bytes(range(256)) * 4, MEGABYTE, b""],
    ids=["one-byte", "binary", "1mb", "empty"],
)
def test_put_then_get_returns_identical_bytes(storage: Storage, data: bytes) -> None:
    """Whatever goes in comes back byte for byte."""
    key = "org/proj/img/" + str(uuid.uuid4())
    run(storage.put(key, data, "application/octet-stream"))
    assert run(storage.get(key)) == data


def test_put_overwrites(storage: Storage) -> None:
    """A second put under the same key replaces the bytes; there is still one key."""
    key = "org/proj/img/same"
    run(storage.put(key, b"first version", "image/png"))
    run(storage.put(key, b"second", "image/png"))
    assert run(storage.get(key)) == b"second"
    assert run(storage.list_keys()) == [key]


def test_exists(storage: Storage) -> None:
    run(storage.put("a/b", b"data", "image/png"))
    assert run(storage.exists("a/b")) is True
    assert run(storage.exists("a/c")) is False
    assert run(storage.exists("a")) is False  # a prefix of a key is no object


def test_get_of_a_key_prefix_is_file_not_found(storage: Storage) -> None:
    """``a`` is no object when only ``a/b`` exists (a directory on disk)."""
    run(storage.put("a/b", b"data", "image/png"))
    with pytest.raises(FileNotFoundError):
        run(storage.get("a"))
    assert run(storage.exists("a")) is False
    assert run(storage.list_keys()) == ["a/b"]


def test_delete_reports_whether_something_was_removed(storage: Storage) -> None:
    run(storage.put("a/b", b"data", "image/png"))
    assert run(storage.delete("a/b")) is True
    assert run(storage.delete("a/b")) is False
    assert run(storage.exists("a/b")) is False
    assert run(storage.delete("never/there")) is False


def test_get_of_a_missing_key_is_file_not_found(storage: Storage) -> None:
    with pytest.raises(FileNotFoundError):
        run(storage.get("org/proj/img/missing"))
    run(storage.put("org/proj/img/present", b"data", "image/png"))
    run(storage.delete("org/proj/img/present"))
    with pytest.raises(FileNotFoundError):
        run(storage.get("org/proj/img/present"))


def test_list_keys_by_prefix(storage: Storage) -> None:
    """Sorted, exactly the keys that start with the prefix (a plain string prefix)."""
    keys = ["org/p1/img/b", "org/p1/img/a", "org/p2/img/c", "org/p10/img/d", "other/x"]
    for key in keys:
        run(storage.put(key, key.encode(), "image/png"))
    assert run(storage.list_keys()) == sorted(keys)
    assert run(storage.list_keys("")) == sorted(keys)
    assert run(storage.list_keys("org/p1/")) == ["org/p1/img/a", "org/p1/img/b"]
    assert run(storage.list_keys("org/p1")) == ["org/p1/img/a", "org/p1/img/b", "org/p10/img/d"]
    under_org = ["org/p1/img/a", "org/p1/img/b", "org/p10/img/d", "org/p2/img/c"]
    assert run(storage.list_keys("org/")) == under_org
    assert run(storage.list_keys("nothing")) == []
    run(storage.delete("org/p1/img/a"))
    assert run(storage.list_keys("org/p1/")) == ["org/p1/img/b"]


def test_list_keys_of_an_empty_store(storage: Storage) -> None:
    assert run(storage.list_keys()) == []


def test_image_keys_round_trip(storage: Storage) -> None:
    """Keys built by ``image_key`` are stored, listed and read back."""
    ids = sorted(str(uuid.uuid4()) for _ in range(3))
    for n, image_id in enumerate(ids):
        run(storage.put(image_key("default", "site", image_id), bytes([n]) * 10, "image/webp"))
    assert run(storage.list_keys("default/site/img/")) == [
        f"default/site/img/{image_id}" for image_id in ids
    ]
    assert run(storage.get(image_key("default", "site", ids[1]))) == b"\x01" * 10


def test_concurrent_puts_on_a_fresh_store(storage: Storage) -> None:
    """Many first writes at once (racing to create the bucket or directories) all land."""

    async def put_all() -> None:
        await asyncio.gather(
            *(storage.put(f"c/{n}/x", str(n).encode(), "image/png") for n in range(12))
        )

    run(put_all())
    assert run(storage.list_keys("c/")) == sorted(f"c/{n}/x" for n in range(12))
    assert run(storage.get("c/7/x")) == b"7"


def test_healthy(storage: Storage) -> None:
    assert run(storage.healthy()) is True


# ----------------------------------------------------------------------- bad keys


@pytest.mark.parametrize("key", INVALID_KEYS)
def test_invalid_keys_are_refused_before_any_io(backend: Backend, key: str) -> None:
    """Every keyed operation raises InvalidKeyError and touches nothing (no directory
    made, no bucket created)."""
    storage = backend.storage
    with pytest.raises(InvalidKeyError):
        run(storage.put(key, b"data", "image/png"))
    with pytest.raises(InvalidKeyError):
        run(storage.get(key))
    with pytest.raises(InvalidKeyError):
        run(storage.exists(key))
    with pytest.raises(InvalidKeyError):
        run(storage.delete(key))
    assert backend.untouched()


@pytest.mark.parametrize("key", INVALID_KEYS)
def test_invalid_keys_are_refused_even_when_s3_is_unreachable(tmp_path: Path, key: str) -> None:
    """The key check comes first: a bad key is InvalidKeyError, never StorageError."""
    storage = unreachable_storage(tmp_path)
    with pytest.raises(InvalidKeyError):
        run(storage.put(key, b"data", "image/png"))
    with pytest.raises(InvalidKeyError):
        run(storage.get(key))


# ----------------------------------------------------------------------- S3 only


def test_s3_bucket_is_created_on_first_use(s3_server: S3Server, tmp_path: Path) -> None:
    bucket = new_bucket()
    client = s3_client(s3_server)
    storage = minio_storage(tmp_path, s3_server, bucket)
    assert not client.bucket_exists(bucket)
    run(storage.put("a/b", b"payload", "image/png"))
    assert client.bucket_exists(bucket)
    assert [o.object_name for o in client.list_objects(bucket, recursive=True)] == ["a/b"]


def test_s3_bucket_is_created_by_a_read_too(s3_server: S3Server, tmp_path: Path) -> None:
    """Any first operation makes the bucket, so a fresh install answers 404s, not 503s."""
    bucket = new_bucket()
    client = s3_client(s3_server)
    storage = minio_storage(tmp_path, s3_server, bucket)
    with pytest.raises(FileNotFoundError):
        run(storage.get("a/b"))
    assert client.bucket_exists(bucket)


def test_s3_existing_bucket_is_used_as_is(s3_server: S3Server, tmp_path: Path) -> None:
    bucket = new_bucket()
    client = s3_client(s3_server)
    client.make_bucket(bucket)
    client.put_object(bucket, "pre/existing", io.BytesIO(b"old"), 3)
    storage = minio_storage(tmp_path, s3_server, bucket)
    assert run(storage.get("pre/existing")) == b"old"
    assert run(storage.list_keys()) == ["pre/existing"]


@pytest.mark.parametrize("content_type", ["image/png", "image/jpeg", "image/webp"])
def test_s3_stores_the_mime_type_as_object_metadata(
    s3_server: S3Server, tmp_path: Path, content_type: str
) -> None:
    bucket = new_bucket()
    storage = minio_storage(tmp_path, s3_server, bucket)
    run(storage.put("org/proj/img/x", b"bytes", content_type))
    stat = s3_client(s3_server).stat_object(bucket, "org/proj/img/x")
    assert stat.content_type == content_type
    assert stat.size == 5


def test_s3_delete_removes_the_object(s3_server: S3Server, tmp_path: Path) -> None:
    bucket = new_bucket()
    storage = minio_storage(tmp_path, s3_server, bucket)
    run(storage.put("a/b", b"payload", "image/png"))
    assert run(storage.delete("a/b")) is True
    with pytest.raises(S3Error) as raised:
        s3_client(s3_server).stat_object(bucket, "a/b")
    assert raised.value.code in ("NoSuchKey", "NotFound")


def test_s3_unreachable_endpoint_fails_fast(tmp_path: Path) -> None:
    """Nothing listening: every operation is StorageError within seconds; healthy() False."""
    storage = unreachable_storage(tmp_path)
    started = time.monotonic()
    assert run(storage.healthy()) is False
    for call in (
        lambda: storage.put("a/b", b"x", "image/png"),
        lambda: storage.get("a/b"),
        lambda: storage.exists("a/b"),
        lambda: storage.delete("a/b"),
        storage.list_keys,
    ):
        with pytest.raises(StorageError):
            run(call())
    assert time.monotonic() - started < 15


def test_s3_wrong_credentials_are_unhealthy(s3_server: S3Server, tmp_path: Path) -> None:
    overrides = {**s3_server.settings_overrides(new_bucket()), "storage__minio_secret_key": "nope"}
    storage = create_storage(make_settings(tmp_path / "data", **overrides))
    assert run(storage.healthy()) is False
    with pytest.raises(StorageError):
        run(storage.put("a/b", b"x", "image/png"))
    with pytest.raises(StorageError):
        run(storage.get("a/b"))


def test_s3_healthy_answers_a_bool_when_the_bucket_was_removed(
    s3_server: S3Server, tmp_path: Path
) -> None:
    bucket = new_bucket()
    storage = minio_storage(tmp_path, s3_server, bucket)
    assert run(storage.healthy()) is True
    s3_client(s3_server).remove_bucket(bucket)
    assert run(storage.healthy()) in (True, False)


def test_s3_unresponsive_endpoint_fails_fast(tmp_path: Path) -> None:
    """A frozen server (TCP accepted by the kernel, no reply) must not hold a probe long."""
    outcome: list[bool] = []
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        storage = unreachable_storage(tmp_path, f"127.0.0.1:{listener.getsockname()[1]}")
        probe = threading.Thread(target=lambda: outcome.append(run(storage.healthy())), daemon=True)
        probe.start()
        probe.join(10)
        finished = not probe.is_alive()
    probe.join(10)  # closing the listener resets the pending connections
    assert finished
    assert outcome == [False]
