"""Filesystem storage: atomic writes under one root that no key can escape."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from stat import S_ISREG
from typing import overload

from banatie_local.storage.base import InvalidKeyError, StorageError, validate_key
from banatie_local.storage.buffers import Lease, ReadBuffers

_TMP_DIR = ".tmp"
_ONE_READ_BYTES = 4 * 1024 * 1024
_MAX_REMEMBERED_DIRS = 10_000


class LocalStorage:
    """Objects are files at ``root/<key>``; temp files live in ``root/.tmp``."""

    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._tmp = self.root / _TMP_DIR
        self._dirs: dict[str, str] = {}

    def path_for(self, key: str) -> Path:
        """The file that holds ``key``; refuses anything that resolves outside root."""
        validate_key(key)
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise InvalidKeyError(f"storage key {key!r} escapes the storage root")
        return path

    # The blocking halves run in a worker thread so fsync never stalls the loop.

    def _put(self, key: str, data: bytes) -> None:
        target = self.path_for(key)
        try:
            self._tmp.mkdir(parents=True, exist_ok=True)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._tmp / f"{uuid.uuid4().hex}.part"
            try:
                with tmp.open("wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, target)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
            _fsync_dir(target.parent)
        except OSError as exc:
            raise StorageError(f"cannot write {key}: {exc.strerror or exc}") from exc

    def _get(self, key: str) -> bytes:
        try:
            return self.path_for(key).read_bytes()
        except FileNotFoundError:
            raise
        except IsADirectoryError:
            raise FileNotFoundError(key) from None
        except OSError as exc:
            raise StorageError(f"cannot read {key}: {exc.strerror or exc}") from exc

    def _delete(self, key: str) -> bool:
        path = self.path_for(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StorageError(f"cannot delete {key}: {exc.strerror or exc}") from exc
        return True

    async def leftover_temp_files(self, older_than: float) -> list[str]:
        return await asyncio.to_thread(self._temp_files, older_than)

    def _temp_files(self, older_than: float) -> list[str]:
        """Leftover temp files (a write interrupted by a crash) older than the cut-off."""
        if not self._tmp.is_dir():
            return []
        return sorted(
            str(p) for p in self._tmp.iterdir() if p.is_file() and p.stat().st_mtime < older_than
        )

    async def remove_temp_files(self, names: list[str]) -> None:
        await asyncio.to_thread(self._remove_temp, names)

    def _remove_temp(self, names: list[str]) -> None:
        for name in names:
            path = Path(name)
            if path.parent == self._tmp:  # only what leftover_temp_files names
                path.unlink(missing_ok=True)

    def _list(self, prefix: str) -> list[str]:
        if not self.root.is_dir():
            return []
        keys = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel_dir = Path(dirpath).relative_to(self.root)
            for filename in filenames:
                key = (rel_dir / filename).as_posix()
                if key.startswith(prefix) and not filename.startswith("."):
                    keys.append(key)
        return sorted(keys)

    def _healthy(self) -> bool:
        try:
            self._tmp.mkdir(parents=True, exist_ok=True)
            probe = self._tmp / f"health-{uuid.uuid4().hex}"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError:
            return False
        return True

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(self._put, key, data)

    def _read_path(self, key: str) -> str:
        """``path_for`` for the read hot path: the parent directory's resolution is
        remembered (keys share a few ``{org}/{project}/img`` directories), and the
        final component is opened with O_NOFOLLOW by ``get``, so a symlink there still
        goes through the full check."""
        validate_key(key)
        parent, _, name = key.rpartition("/")
        base = self._dirs.get(parent)
        if base is None:
            resolved = (self.root / parent).resolve() if parent else self.root
            if not resolved.is_relative_to(self.root):
                raise InvalidKeyError(f"storage key {key!r} escapes the storage root")
            base = str(resolved)
            if len(self._dirs) < _MAX_REMEMBERED_DIRS:
                self._dirs[parent] = base
        return f"{base}/{name}"

    def fast_reader(self) -> Callable[[str], bytes] | None:
        return self.read_now

    def leased_reader(
        self, buffers: ReadBuffers, smallest: int
    ) -> Callable[[str], bytes | Lease] | None:
        return functools.partial(self.read_now, buffers=buffers, smallest=smallest)

    async def get(self, key: str) -> bytes:
        # Never on the event loop: even a page-cache read can stall on a busy disk.
        return await asyncio.to_thread(self.read_now, key)

    @overload
    def read_now(self, key: str) -> bytes: ...

    @overload
    def read_now(self, key: str, buffers: ReadBuffers, smallest: int) -> bytes | Lease: ...

    def read_now(
        self, key: str, buffers: ReadBuffers | None = None, smallest: int = 0
    ) -> bytes | Lease:
        """Read a file on the calling thread: the directory's resolution remembered,
        the last component opened with O_NOFOLLOW and read in one call; a symlink
        there, or a file that changed while read, takes the fully checked path. With
        ``buffers``, a file of at least ``smallest`` bytes is read into a lent buffer."""
        path = self._read_path(key)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise FileNotFoundError(key) from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return self._get(key)
            raise StorageError(f"cannot read {key}: {exc.strerror or exc}") from exc
        try:
            stat = os.fstat(fd)
            if not S_ISREG(stat.st_mode):
                raise FileNotFoundError(key)
            size = stat.st_size
            if buffers is not None and size >= smallest and buffers.accepts(size):
                lease = Lease(buffers, buffers.take(size), size)
                if os.readv(fd, [lease.view]) == size:
                    return lease
            elif size <= _ONE_READ_BYTES:
                data = os.read(fd, size)
                if len(data) == size:  # else the file changed under us: reread
                    return data
        finally:
            os.close(fd)
        return self._get(key)

    async def delete(self, key: str) -> bool:
        return await asyncio.to_thread(self._delete, key)

    async def exists(self, key: str) -> bool:
        return self.path_for(key).is_file()

    async def modified_at(self, key: str) -> float:
        return self.path_for(key).stat().st_mtime

    async def list_keys(self, prefix: str = "") -> list[str]:
        return await asyncio.to_thread(self._list, prefix)

    async def healthy(self) -> bool:
        return await asyncio.to_thread(self._healthy)


def _fsync_dir(path: Path) -> None:
    """Make a rename durable; some filesystems refuse to fsync directories."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EBADF):
            raise
    finally:
        os.close(fd)
