"""Filesystem storage: round trips, atomic writes, key validation, the root boundary."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from banatie_local.storage import LocalStorage, StorageError, create_storage, image_key
from banatie_local.storage.base import MAX_KEY_LENGTH, InvalidKeyError, validate_key
from tests.helpers import make_settings

T = TypeVar("T")

BAD_KEYS = [
    "../x",
    "a/../../etc/passwd",
    "..",
    "/etc/passwd",
    "a//b",
    "a/b/",
    "",
    ".hidden",
    "a/.tmp/x",
    ".tmp/x",
    "a\\b",
    "a/b\x00c",
    "a/%2e%2e/b",
    "a/b c",
    "a/b?c",
    "x" * 600,
    "a/" + "x" * 129,
]


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "root")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def tmp_files(storage: LocalStorage) -> list[Path]:
    tmp = storage.root / ".tmp"
    return sorted(tmp.iterdir()) if tmp.is_dir() else []


def all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- #
# keys
# --------------------------------------------------------------------------- #


def test_image_key_format() -> None:
    image_id = str(uuid.uuid4())
    assert image_key("org", "proj", image_id) == f"org/proj/img/{image_id}"


def test_image_key_validates() -> None:
    with pytest.raises(InvalidKeyError):
        image_key("..", "proj", "x")


@pytest.mark.parametrize(
    "key", ["a", "org/proj/img/abc-123", "a.b/c_d/e-f.png", "x" * 128, "a/" * 200 + "b"]
)
def test_valid_keys(key: str) -> None:
    assert validate_key(key) == key


def test_invalid_key_error_is_a_value_error() -> None:
    assert issubclass(InvalidKeyError, ValueError)


@pytest.mark.parametrize("key", BAD_KEYS, ids=repr)
def test_validate_key_rejects(key: str) -> None:
    with pytest.raises(InvalidKeyError):
        validate_key(key)


def test_key_length_limit() -> None:
    key = "/".join(["x" * 127] * 4)
    assert len(key) == 511
    assert validate_key(key + "y") == key + "y"
    assert len(key + "yz") > MAX_KEY_LENGTH
    with pytest.raises(InvalidKeyError):
        validate_key(key + "yz")


@pytest.mark.parametrize("key", ["a/b\n", "a\n/b", "a\n"], ids=repr)
def test_validate_key_rejects_trailing_newline(key: str) -> None:
    with pytest.raises(InvalidKeyError):
        validate_key(key)


@pytest.mark.parametrize("key", BAD_KEYS, ids=repr)
def test_every_method_rejects_bad_keys(storage: LocalStorage, tmp_path: Path, key: str) -> None:
    """No method touches the filesystem for a bad key."""
    with pytest.raises(InvalidKeyError):
        storage.path_for(key)
    with pytest.raises(InvalidKeyError):
        run(storage.put(key, b"data", "image/png"))
    with pytest.raises(InvalidKeyError):
        run(storage.get(key))
    with pytest.raises(InvalidKeyError):
        run(storage.exists(key))
    with pytest.raises(InvalidKeyError):
        run(storage.delete(key))
    assert all_files(tmp_path) == []


def test_symlink_out_of_root_is_refused(storage: LocalStorage, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    storage.root.mkdir(parents=True)
    os.symlink(outside, storage.root / "link")

    with pytest.raises(InvalidKeyError):
        storage.path_for("link/secret")
    with pytest.raises(InvalidKeyError):
        run(storage.put("link/new", b"data", "image/png"))
    with pytest.raises(InvalidKeyError):
        run(storage.get("link/secret"))
    with pytest.raises(InvalidKeyError):
        run(storage.exists("link/secret"))
    with pytest.raises(InvalidKeyError):
        run(storage.delete("link/secret"))

    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert (outside / "secret").read_bytes() == b"secret"
    assert run(storage.list_keys()) == []


def test_symlink_file_out_of_root_is_refused(storage: LocalStorage, tmp_path: Path) -> None:
    target = tmp_path / "target.bin"
    target.write_bytes(b"outside")
    (storage.root / "a").mkdir(parents=True)
    os.symlink(target, storage.root / "a" / "b")
    with pytest.raises(InvalidKeyError):
        run(storage.put("a/b", b"overwrite", "image/png"))
    assert target.read_bytes() == b"outside"


def test_symlink_inside_root_is_followed(storage: LocalStorage) -> None:
    run(storage.put("real/x", b"data", "image/png"))
    os.symlink(storage.root / "real", storage.root / "alias")
    assert storage.path_for("alias/x") == storage.root / "real" / "x"
    assert run(storage.get("alias/x")) == b"data"


# --------------------------------------------------------------------------- #
# round trips
# --------------------------------------------------------------------------- #


def test_put_get_exists_delete(storage: LocalStorage) -> None:
    key = image_key("org", "proj", str(uuid.uuid4()))
    assert run(storage.exists(key)) is False
    run(storage.put(key, b"\x89PNG bytes", "image/png"))
    assert run(storage.exists(key)) is True
    assert run(storage.get(key)) == b"\x89PNG bytes"
    assert (storage.root / key).read_bytes() == b"\x89PNG bytes"
    assert run(storage.delete(key)) is True
    assert run(storage.exists(key)) is False
    assert not (storage.root / key).exists()


def test_put_overwrites(storage: LocalStorage) -> None:
    run(storage.put("a/b", b"first", "image/png"))
    run(storage.put("a/b", b"second", "image/png"))
    assert run(storage.get("a/b")) == b"second"
    assert run(storage.list_keys()) == ["a/b"]


def test_empty_object(storage: LocalStorage) -> None:
    run(storage.put("a/empty", b"", "image/png"))
    assert run(storage.exists("a/empty")) is True
    assert run(storage.get("a/empty")) == b""


def test_delete_missing_returns_false(storage: LocalStorage) -> None:
    assert run(storage.delete("a/missing")) is False
    run(storage.put("a/b", b"x", "image/png"))
    assert run(storage.delete("a/b")) is True
    assert run(storage.delete("a/b")) is False


def test_get_missing_raises_file_not_found(storage: LocalStorage) -> None:
    with pytest.raises(FileNotFoundError):
        run(storage.get("a/missing"))


def test_get_of_a_directory_is_not_found(storage: LocalStorage) -> None:
    run(storage.put("a/b/c", b"x", "image/png"))
    with pytest.raises(FileNotFoundError):
        run(storage.get("a/b"))
    assert run(storage.exists("a/b")) is False


def test_no_temp_files_left_after_puts(storage: LocalStorage) -> None:
    for i in range(5):
        run(storage.put(f"a/{i}", bytes([i]) * 1000, "image/png"))
    assert (storage.root / ".tmp").is_dir()
    assert tmp_files(storage) == []


def test_list_keys(storage: LocalStorage) -> None:
    run(storage.put("org/p1/img/b", b"1", "image/png"))
    run(storage.put("org/p1/img/a", b"2", "image/png"))
    run(storage.put("org/p2/img/c", b"3", "image/png"))
    run(storage.put("other/x", b"4", "image/png"))
    assert run(storage.list_keys()) == [
        "org/p1/img/a",
        "org/p1/img/b",
        "org/p2/img/c",
        "other/x",
    ]
    assert run(storage.list_keys("org/p1/")) == ["org/p1/img/a", "org/p1/img/b"]
    assert run(storage.list_keys("nothing/")) == []


def test_list_keys_skips_tmp_dir(storage: LocalStorage) -> None:
    run(storage.put("a/b", b"x", "image/png"))
    (storage.root / ".tmp" / "leftover.part").write_bytes(b"partial")
    (storage.root / "a" / ".hidden").write_bytes(b"hidden")
    assert run(storage.list_keys()) == ["a/b"]


def test_list_keys_of_missing_root(tmp_path: Path) -> None:
    assert run(LocalStorage(tmp_path / "never").list_keys()) == []


def test_root_is_resolved(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    storage = LocalStorage(tmp_path / "link" / ".." / "real")
    assert storage.root == (tmp_path / "real").resolve()


# --------------------------------------------------------------------------- #
# atomicity and failures
# --------------------------------------------------------------------------- #


def test_readers_never_see_a_partial_write(storage: LocalStorage) -> None:
    """While one thread rewrites a key, every read returns one whole payload."""
    key = "org/proj/img/hot"
    first = b"A" * (2 * 1024 * 1024)
    second = bytes(range(256)) * (2 * 1024 * 1024 // 256)
    run(storage.put(key, first, "image/png"))

    done = threading.Event()
    errors: list[BaseException] = []
    reads: list[bytes] = []

    async def write_many() -> None:
        for i in range(50):
            await storage.put(key, second if i % 2 == 0 else first, "image/png")

    async def read_many() -> None:
        while not done.is_set():
            reads.append(await storage.get(key))

    def writer() -> None:
        try:
            asyncio.run(write_many())
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    def reader() -> None:
        try:
            asyncio.run(read_many())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert reads
    partial = [len(data) for data in reads if data not in (first, second)]
    assert partial == []
    assert run(storage.get(key)) == first
    assert tmp_files(storage) == []


def test_failed_write_leaves_nothing(storage: LocalStorage) -> None:
    """If the key's directory cannot be made the write fails cleanly."""
    run(storage.put("a/file", b"x", "image/png"))
    with pytest.raises(StorageError, match="a/file/child"):
        run(storage.put("a/file/child", b"data", "image/png"))
    assert (storage.root / "a" / "file").read_bytes() == b"x"
    assert tmp_files(storage) == []
    assert run(storage.list_keys()) == ["a/file"]


def test_failed_write_when_target_is_a_directory(storage: LocalStorage) -> None:
    run(storage.put("a/dir/x", b"x", "image/png"))
    with pytest.raises(StorageError):
        run(storage.put("a/dir", b"data", "image/png"))
    assert (storage.root / "a" / "dir").is_dir()
    assert tmp_files(storage) == []


def test_healthy(storage: LocalStorage) -> None:
    assert run(storage.healthy()) is True
    assert tmp_files(storage) == []


def test_unhealthy_when_root_is_a_file(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.write_bytes(b"not a directory")
    storage = LocalStorage(root)
    assert run(storage.healthy()) is False
    with pytest.raises(StorageError):
        run(storage.put("a/b", b"x", "image/png"))


# --------------------------------------------------------------------------- #
# create_storage
# --------------------------------------------------------------------------- #


def test_create_storage_local(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    storage = create_storage(settings)
    assert isinstance(storage, LocalStorage)
    assert storage.name == "local"
    assert storage.root == (tmp_path / "data" / "storage").resolve()


def test_create_storage_minio_builds_the_s3_backend(tmp_path: Path) -> None:
    """Selecting minio needs no reachable endpoint at startup; the bucket comes later."""
    from banatie_local.storage.minio import MinioStorage

    settings = make_settings(
        tmp_path / "data",
        storage__backend="minio",
        storage__minio_endpoint="127.0.0.1:9",
        storage__minio_bucket="pictures",
    )
    storage = create_storage(settings)
    assert isinstance(storage, MinioStorage)
    assert storage.bucket == "pictures"
    assert storage.name == "minio"
    assert not (tmp_path / "data" / "storage").exists()
