"""``banatie-local`` as a real process: ``serve`` over HTTP, signals, the console script."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import free_port

pytestmark = pytest.mark.slow

KEY_IN_TEXT = re.compile(r"bnt_[0-9a-f]{64}")
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


def clean_env() -> dict[str, str]:
    """This process's environment without any appliance settings."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("BANATIE_") and name not in ("GEMINI_API_KEY", "OPENAI_API_KEY")
    }


class Server:
    """One ``python -m banatie_local serve`` process and what it printed."""

    def __init__(self, args: list[str], port: int, cwd: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "banatie_local", *args],
            cwd=cwd,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stdout = ""
        self.stderr = ""

    def wait_healthy(self) -> httpx.Response:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.collect()
                pytest.fail(f"serve exited with {self.proc.returncode}:\n{self.stderr}")
            try:
                response = httpx.get(f"{self.url}/health", timeout=2)
            except httpx.TransportError:
                time.sleep(0.05)
                continue
            if response.status_code == 200:
                return response
            time.sleep(0.05)
        pytest.fail(f"serve did not answer /health within {START_TIMEOUT} s")

    def stop(self, sig: signal.Signals) -> int:
        """Send ``sig`` and wait for the exit; returns the exit code."""
        self.proc.send_signal(sig)
        try:
            self.collect(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"serve did not stop within {STOP_TIMEOUT} s of {sig.name}")
        return self.proc.returncode

    def collect(self, timeout: float | None = None) -> None:
        self.stdout, self.stderr = self.proc.communicate(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


StartServer = Callable[[list[str], int], Server]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[StartServer]:
    """Start ``serve`` processes in ``tmp_path``; any left running are killed at teardown."""
    started: list[Server] = []

    def start(args: list[str], port: int) -> Server:
        server = Server(args, port, tmp_path)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.kill()


def assert_no_traceback(*texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text


@dataclass(frozen=True)
class FirstRun:
    """What the first ``serve`` on a fresh data directory did."""

    data: Path
    port: int
    health: dict[str, Any]
    exit_code: int
    stop_seconds: float
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FirstRun]:
    """Serve a fresh data directory, check /health, then stop it with SIGTERM."""
    root = tmp_path_factory.mktemp("first-run")
    data = root / "data"
    port = free_port()
    server = Server(["serve", "--port", str(port), "--data-dir", str(data)], port, root)
    try:
        health = server.wait_healthy().json()
        started = time.monotonic()
        code = server.stop(signal.SIGTERM)
        yield FirstRun(
            data=data,
            port=port,
            health=health,
            exit_code=code,
            stop_seconds=time.monotonic() - started,
            stdout=server.stdout,
            stderr=server.stderr,
        )
    finally:
        server.kill()


def printed_keys(stdout: str) -> tuple[str, str]:
    """The (master, project) keys from their labelled lines."""
    master_lines = [line for line in stdout.splitlines() if "master key" in line]
    project_lines = [line for line in stdout.splitlines() if "project key" in line]
    assert len(master_lines) == 1, stdout
    assert len(project_lines) == 1, stdout
    (master_key,) = KEY_IN_TEXT.findall(master_lines[0])
    (project_key,) = KEY_IN_TEXT.findall(project_lines[0])
    return master_key, project_key


def test_first_serve_is_healthy_offline_and_local(first_run: FirstRun) -> None:
    """With no settings, ``serve`` runs the offline provider on local storage."""
    assert first_run.health["status"] == "healthy"
    assert first_run.health["provider"] == "offline"
    assert first_run.health["storage"] == "local"
    assert first_run.health["checks"] == {"database": "ok", "storage": "ok"}
    assert (first_run.data / "banatie.db").is_file()


def test_first_serve_prints_both_keys_once(first_run: FirstRun) -> None:
    """The first run shows a master and a project key, and where it serves."""
    out = first_run.stdout
    master_key, project_key = printed_keys(out)
    assert master_key != project_key
    assert set(KEY_IN_TEXT.findall(out)) == {master_key, project_key}
    assert out.count(master_key) == 1
    # The project key is on its own line and, once more, in the curl hint.
    hint = [line for line in out.splitlines() if "X-API-Key" in line]
    assert len(hint) == 1
    assert project_key in hint[0]
    assert out.count(project_key) == 2
    assert sum("serving on" in line for line in out.splitlines()) == 1
    assert f"serving on http://127.0.0.1:{first_run.port}" in out
    assert f"gallery:  http://127.0.0.1:{first_run.port}/\n" in out
    assert f"API docs: http://127.0.0.1:{first_run.port}/docs\n" in out
    assert "provider: offline" in out
    assert "storage: local" in out


def test_sigterm_stops_serve_cleanly(first_run: FirstRun) -> None:
    """SIGTERM ends ``serve`` with exit 0 and a last line saying so."""
    assert first_run.exit_code == 0, first_run.stderr
    assert first_run.stop_seconds < STOP_TIMEOUT
    assert first_run.stdout.rstrip().splitlines()[-1] == "banatie-local stopped."
    assert_no_traceback(first_run.stdout, first_run.stderr)


def test_restart_accepts_the_printed_keys_and_stops_on_sigint(
    first_run: FirstRun, serve: StartServer
) -> None:
    """A second ``serve`` shows no key; the first run's keys open their own routes."""
    master_key, project_key = printed_keys(first_run.stdout)
    port = free_port()
    # --data-dir before the command this time.
    server = serve(["--data-dir", str(first_run.data), "serve", "--port", str(port)], port)
    server.wait_healthy()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        project = client.get("/api/v1/project", headers={"X-API-Key": project_key})
        assert project.status_code == 200
        assert project.json()["data"]["slug"] == "default"
        assert project.json()["data"]["organizationSlug"] == "default"

        wrong = client.get("/api/v1/project", headers={"X-API-Key": master_key})
        assert wrong.status_code == 403
        assert wrong.json()["error"]["code"] == "FORBIDDEN"

        admin = client.get("/api/admin/keys", headers={"X-API-Key": master_key})
        assert admin.status_code == 200
        listed = admin.json()["data"]
        assert {item["keyPrefix"] for item in listed} == {master_key[:12], project_key[:12]}
        assert not KEY_IN_TEXT.search(admin.text)

        refused = client.get("/api/admin/keys", headers={"X-API-Key": project_key})
        assert refused.status_code == 403
        assert client.get("/api/v1/project").status_code == 401

        started = time.monotonic()
        code = server.stop(signal.SIGINT)

    assert code == 0, server.stderr
    assert time.monotonic() - started < STOP_TIMEOUT
    assert_no_traceback(server.stdout, server.stderr)
    assert not KEY_IN_TEXT.search(server.stdout)
    assert "Already initialised" in server.stdout
    assert f"serving on http://127.0.0.1:{port}" in server.stdout
    assert server.stdout.rstrip().splitlines()[-1] == "banatie-local stopped."


def test_serve_uses_the_config_file(serve: StartServer, tmp_path: Path) -> None:
    """Port and request limit come from ``--config`` when no flag overrides them."""
    port = free_port()
    config = tmp_path / "banatie-test.toml"
    config.write_text(
        f'[server]\nport = {port}\n[limits]\nrequests_per_hour = 5\n[log]\nlevel = "warning"\n',
        encoding="utf-8",
    )
    data = tmp_path / "data"
    server = serve(["serve", "--data-dir", str(data), "--config", str(config)], port)
    server.wait_healthy()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        info = client.get("/api/info").json()["data"]
        assert info["limits"]["requestsPerHour"] == 5
    assert server.stop(signal.SIGTERM) == 0, server.stderr
    out = server.stdout
    assert f"serving on http://127.0.0.1:{port}" in out
    project_line = next(line for line in out.splitlines() if "project key" in line)
    (project_key,) = KEY_IN_TEXT.findall(project_line)
    # log.level = warning: no INFO lines from the server.
    assert " INFO " not in server.stderr

    port2 = free_port()
    again = serve(
        ["serve", "--data-dir", str(data), "--config", str(config), "--port", str(port2)], port2
    )
    again.wait_healthy()
    with httpx.Client(base_url=again.url, timeout=10) as client:
        headers = {"X-API-Key": project_key}
        codes = [client.get("/api/v1/project", headers=headers).status_code for _ in range(6)]
        assert codes == [200] * 5 + [429]
    assert again.stop(signal.SIGTERM) == 0, again.stderr


def run_command(command: list[str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a command to completion with a clean environment, capturing its output."""
    return subprocess.run(
        [*command, *args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_serve_on_a_taken_port_fails_cleanly(tmp_path: Path) -> None:
    """A port in use stops ``serve`` with one sentence naming it, and no traceback."""
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        proc = run_command(
            [sys.executable, "-m", "banatie_local", "serve", "--port", str(port)],
            "--data-dir",
            str(tmp_path / "data"),
            cwd=tmp_path,
        )
    assert proc.returncode != 0
    assert_no_traceback(proc.stdout, proc.stderr)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, proc.stderr
    assert f":{port}" in errors[0]
    assert "cannot listen" in errors[0]
    assert "banatie-local stopped." not in proc.stdout
    # nothing was initialised for a server that never started
    assert "bnt_" not in proc.stdout
    assert not (tmp_path / "data" / "banatie.db").exists()


def test_serve_with_a_bad_port_flag_is_a_clean_error(tmp_path: Path) -> None:
    """``--port 0`` fails on the setting's bounds before anything starts."""
    proc = run_command(
        [sys.executable, "-m", "banatie_local", "serve", "--port", "0"],
        "--data-dir",
        "d",
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    assert_no_traceback(proc.stdout, proc.stderr)
    assert proc.stderr.strip().startswith("Error:")
    assert "server.port" in proc.stderr
    assert not (tmp_path / "d").exists()


def console_script() -> str:
    found = Path(sys.executable).parent / "banatie-local"
    if found.exists():
        return str(found)
    on_path = shutil.which("banatie-local")
    if on_path is None:
        pytest.fail("the banatie-local console script is not installed")
    return on_path


def test_console_script_init_and_keys_list(tmp_path: Path) -> None:
    """The installed ``banatie-local`` script runs commands and prints JSON."""
    script = console_script()
    data = str(tmp_path / "data")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return run_command([script], *args, cwd=tmp_path)

    init = run("init", "--json", "--data-dir", data)
    assert init.returncode == 0, init.stderr
    created = json.loads(init.stdout)
    assert created["createdProject"] is True
    assert KEY_IN_TEXT.fullmatch(created["projectKey"])

    listed = run("--data-dir", data, "keys", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    keys = json.loads(listed.stdout)
    assert {item["keyPrefix"] for item in keys} == {
        created["masterKey"][:12],
        created["projectKey"][:12],
    }
    assert not KEY_IN_TEXT.search(listed.stdout)

    failed = run("keys", "revoke", "nope", "--data-dir", data)
    assert failed.returncode == 1
    assert failed.stdout == ""
    assert failed.stderr == "Error: API key nope does not exist.\n"
