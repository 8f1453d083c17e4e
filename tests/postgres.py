"""A real PostgreSQL server for the tests: Debian's ``postgresql`` package, started as
the ``postgres`` user (it refuses to run as root) in a temporary directory, listening
on a free loopback port."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from tests.helpers import free_port


def _bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def available() -> bool:
    """Whether PostgreSQL's server programs are installed here."""
    return _bin("initdb") is not None and _bin("pg_ctl") is not None


class PostgresServer:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="banatie-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.template: str | None = None  # a migrated database to copy new ones from

    def _as_postgres(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = list(args)
        if os.geteuid() == 0:  # the server will not run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)

    def start(self) -> PostgresServer:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
        assert initdb, "PostgreSQL is not installed"
        assert pg_ctl, "PostgreSQL is not installed"
        self._as_postgres(initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres",
                          "--no-sync", "-E", "UTF8")  # fmt: skip
        self._pg_ctl("start")
        return self

    def _pg_ctl(self, action: str) -> None:
        pg_ctl = _bin("pg_ctl")
        assert pg_ctl
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            " -c max_connections=400"
        )
        args = [pg_ctl, "-D", str(self.data), "-l", str(self.root / "log"), "-w"]
        if action == "start":
            args += ["-o", options]
        else:
            args += ["-m", "fast"]
        self._as_postgres(*args, action)

    def stop(self) -> None:
        self._pg_ctl("stop")

    def start_again(self) -> None:
        self._pg_ctl("start")

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self, template: str | None = None) -> str:
        """A fresh database (a copy of ``template`` when given, else empty); its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        copy = f' TEMPLATE "{template}"' if template else ""
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"{copy}')  # type: ignore[arg-type]
        return self.url(name)

    def destroy(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
