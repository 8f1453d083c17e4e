"""Shared fixtures: settings in a temp data dir, and a real server to talk HTTP to."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from sanic import Sanic

from banatie_local.cli import cli
from banatie_local.clock import Clock
from banatie_local.config import Settings
from banatie_local.db.connection import (
    AppPostgresqlDatabase,
    AppSqliteDatabase,
    upgrade_database,
)
from banatie_local.http import create_app
from banatie_local.providers import ImageProvider
from banatie_local.services.container import Services, initialize, open_services
from tests import chromium, postgres
from tests.fakes.gemini import FakeGemini
from tests.fakes.s3 import S3Server
from tests.helpers import POSTGRES_URLS, LiveServer, make_settings

# Sanic's own test mode: many apps per process, each optimised (TouchUp) afresh.
Sanic.test_mode = True
# Any query run on a thread that runs an event loop fails the test that caused it:
# the server must reach the database only through its boundary (db/boundary.py).
AppSqliteDatabase.guard_loop = True
AppPostgresqlDatabase.guard_loop = True


@dataclass
class Running:
    """A started appliance: its settings, services, keys and an HTTP client."""

    settings: Settings
    services: Services
    server: LiveServer
    client: httpx.Client
    master_key: str | None
    project_key: str | None

    @property
    def url(self) -> str:
        return self.server.url

    def project(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A request with the project key."""
        headers = {"X-API-Key": self.project_key or "", **kwargs.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kwargs)

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A request with the master key."""
        headers = {"X-API-Key": self.master_key or "", **kwargs.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kwargs)

    def stop(self) -> None:
        self.client.close()
        self.server.stop()
        self.services.db.raw.close()  # this thread's own connection (set-up, checks)

    def new_project_key(self, org: str = "other", project: str = "site") -> str:
        """A project key for another project (created through the admin API)."""
        response = self.admin(
            "POST",
            "/api/admin/keys",
            json={"type": "project", "organizationSlug": org, "projectSlug": project},
        )
        assert response.status_code == 201, response.text
        key: str = response.json()["data"]["key"]
        return key


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One real S3 server (SeaweedFS) for the session."""
    server = S3Server(tmp_path_factory.mktemp("s3")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[chromium.BrowserThread]:
    """One headless chromium for the session (Debian's package, through Playwright) on a
    thread of its own; skipped where it is missing, but a failure when CI is set."""
    reason = chromium.missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set, and the browser tests cannot run: {reason}")
        pytest.skip(reason)
    executable = chromium.chromium_path()
    assert executable
    thread = chromium.BrowserThread(executable).start()
    yield thread
    thread.close()


@pytest.fixture
def fake_gemini() -> Iterator[FakeGemini]:
    """A fake Gemini server that the real google-genai SDK talks to."""
    fake = FakeGemini().start()
    try:
        yield fake
    finally:
        fake.stop()


def on_fake_gemini(fake: FakeGemini, **overrides: Any) -> dict[str, Any]:
    """Settings for an appliance on the Gemini provider pointed at ``fake``, without
    retries (``overrides`` win)."""
    return {
        "generation__provider": "gemini",
        "generation__gemini_api_key": "test-key",
        "generation__gemini_base_url": fake.url,
        "generation__max_retries": 0,
        "generation__timeout_seconds": 10,
        **overrides,
    }


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")


DATABASES = ["sqlite", "postgresql"] if postgres.available() else ["sqlite"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A module marked ``both_databases`` runs its appliances on each database."""
    if metafunc.definition.get_closest_marker("both_databases") and (
        "db_kind" in metafunc.fixturenames
    ):
        metafunc.parametrize("db_kind", DATABASES, indirect=True, scope="module")


@pytest.fixture(scope="module")
def db_kind(request: pytest.FixtureRequest) -> str:
    """The database the module's appliances use: SQLite unless parametrised."""
    kind: str = getattr(request, "param", "sqlite")
    return kind


@pytest.fixture(scope="session")
def pg_server() -> Iterator[postgres.PostgresServer]:
    """One real PostgreSQL server for the session, started when a test needs it, with
    a migrated template database that each appliance's database is copied from."""
    server = postgres.PostgresServer().start()
    template = server.new_database()
    raw, _ = upgrade_database(Path("."), Clock(), 5000, template)
    raw.close()
    server.template = template.rsplit("/", 1)[-1]
    yield server
    server.destroy()


def database_url(request: pytest.FixtureRequest, kind: str) -> str:
    """A fresh database of ``kind``: "" (SQLite in the data dir) or a PostgreSQL URL."""
    if kind != "postgresql":
        return ""
    server: postgres.PostgresServer = request.getfixturevalue("pg_server")
    return server.new_database(server.template)


@pytest.fixture
def start_server(
    tmp_path: Path, db_kind: str, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Running]]:
    """Start an appliance with ``section__key=value`` setting overrides; ``provider``
    replaces the configured image provider (a provider is a seam, like storage)."""
    started: list[Running] = []

    def start(
        create_keys: bool = True, provider: ImageProvider | None = None, **overrides: Any
    ) -> Running:
        data_dir = tmp_path / f"data{len(started)}"
        if db_kind != "sqlite" and "database__url" not in overrides:
            overrides["database__url"] = database_url(request, db_kind)
        running = run_appliance(data_dir, create_keys, provider, **overrides)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


def run_appliance(
    data_dir: Path,
    create_keys: bool = True,
    provider: ImageProvider | None = None,
    **overrides: Any,
) -> Running:
    """A started appliance on ``data_dir``; ``Running.stop`` ends it."""
    settings = make_settings(data_dir, **overrides)
    if settings.database.url:  # direct checks of the database go to PostgreSQL
        POSTGRES_URLS[settings.database_path] = settings.database.url
    services = open_services(settings, provider=provider)
    result = initialize(services, create_keys=create_keys)
    server = LiveServer(create_app(settings, services)).start()
    client = httpx.Client(base_url=server.url, timeout=30)
    return Running(settings, services, server, client, result.master_key, result.project_key)


@pytest.fixture(scope="module")
def module_app(
    tmp_path_factory: pytest.TempPathFactory, db_kind: str, request: pytest.FixtureRequest
) -> Iterator[Running]:
    """One default appliance shared by a module's tests, where they do not interfere."""
    url = database_url(request, db_kind)
    running = run_appliance(tmp_path_factory.mktemp("module") / "data", database__url=url)
    yield running
    running.stop()


@pytest.fixture
def app(start_server: Callable[..., Running]) -> Running:
    """A default appliance, initialised with a master and a project key."""
    return start_server()


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., Result]:
    """Run the CLI in-process with no host settings; returns the Click result."""
    for name in list(os.environ):
        if name.startswith("BANATIE_") or name in ("GEMINI_API_KEY", "OPENAI_API_KEY"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(cli, list(args), prog_name="banatie-local")

    return run
