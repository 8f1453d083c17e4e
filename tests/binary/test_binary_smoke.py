"""Smoke test of the single-file executable: the same checks as a source install.

Runs when ``BANATIE_BINARY`` names a built executable (``.ci/run`` builds it with
``scripts/build-binary.sh`` and sets it); without it there is nothing to test.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.helpers import free_port

BINARY = os.environ.get("BANATIE_BINARY")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not BINARY, reason="set BANATIE_BINARY to a built executable"),
]


def clean_env() -> dict[str, str]:
    keys = ("GEMINI_API_KEY", "OPENAI_API_KEY")
    return {k: v for k, v in os.environ.items()
            if not k.startswith("BANATIE_") and k not in keys}  # fmt: skip


def run(*args: str, data: Path) -> subprocess.CompletedProcess[str]:
    assert BINARY
    return subprocess.run(
        [BINARY, "--data-dir", str(data), *args],
        capture_output=True, text=True, timeout=60, env=clean_env(), check=False,
    )  # fmt: skip


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def served(data: Path) -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    """``init``, a project key from ``keys create``, then ``serve`` until /health is 200."""
    init = run("init", "--json", data=data)
    assert init.returncode == 0, init.stderr
    created = run("keys", "create", "--type", "project", "--json", data=data)
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)["key"]
    assert re.fullmatch(r"bnt_[0-9a-f]{64}", key)
    port = free_port()
    assert BINARY
    started = time.monotonic()
    proc = subprocess.Popen(
        [BINARY, "--data-dir", str(data), "serve", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            assert time.monotonic() - started < 30, "the binary did not answer /health"
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        yield proc, url, key
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_cli_commands_work(data: Path) -> None:
    assert run("version", data=data).stdout.startswith("banatie-local ")
    assert run("init", data=data).returncode == 0
    listed = run("keys", "list", "--json", data=data)
    assert listed.returncode == 0
    assert {k["type"] for k in json.loads(listed.stdout)} == {"master", "project"}
    out = data.parent / "out.png"
    generated = run("generate", "a lighthouse", "-o", str(out), "--aspect-ratio", "3:2", data=data)
    assert generated.returncode == 0, generated.stderr
    assert Image.open(out).size == (1536, 1024)
    assert json.loads(run("stats", "--json", data=data).stdout)["images"] == {"generated": 1}
    assert run("purge", "orphans", "--dry-run", data=data).returncode == 0


def test_serve_generation_live_upload_and_sigterm(
    served: tuple[subprocess.Popen[str], str, str],
) -> None:
    proc, url, key = served
    headers = {"X-API-Key": key}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        health = client.get("/health").json()
        assert health["status"] == "healthy"
        assert health["provider"] == "offline"
        generation = client.post("/api/v1/generations", json={"prompt": "a red fox"})
        assert generation.status_code == 201, generation.text
        assert generation.json()["data"]["status"] == "success"
        live = "/cdn/default/default/live/smoke?prompt=a%20lighthouse"
        first, second = client.get(live), client.get(live)
        assert first.headers["x-cache-status"] == "MISS"
        assert second.headers["x-cache-status"] == "HIT"
        assert first.content == second.content
        png = io.BytesIO()
        Image.new("RGB", (16, 16), (1, 2, 3)).save(png, format="PNG")
        upload = client.post(
            "/api/v1/images/upload", files={"file": ("a.png", png.getvalue(), "image/png")}
        )
        assert upload.status_code == 201, upload.text
        image = upload.json()["data"]
        served_bytes = client.get(f"/cdn/default/default/img/{image['id']}").content
        assert served_bytes == png.getvalue()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    assert proc.stdout is not None
    assert "banatie-local stopped." in proc.stdout.read()


def test_serve_with_two_workers_from_the_binary(data: Path) -> None:
    """``serve --workers 2``: spawned workers re-enter the frozen executable."""
    assert run("init", "--json", data=data).returncode == 0
    port = free_port()
    assert BINARY
    proc = subprocess.Popen(
        [BINARY, "--data-dir", str(data), "serve", "--port", str(port), "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(),
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        started = time.monotonic()
        while True:
            assert time.monotonic() - started < 60, "the binary's workers did not start"
            assert proc.poll() is None, proc.communicate()[1]
            try:
                health = httpx.get(f"{url}/health", timeout=2)
                if health.status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        assert health.json()["workers"] == 2
        live = httpx.get(f"{url}/cdn/default/default/live/bin?prompt=two%20workers", timeout=30)
        assert live.status_code == 200
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0
        assert "stopped" in out
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_mcp_over_stdio_and_http_from_the_binary(
    served: tuple[subprocess.Popen[str], str, str], data: Path
) -> None:
    """The MCP door from the frozen executable: ``mcp`` over stdio with the SDK's
    client (the SDK loads inside the binary), and ``POST /mcp`` on its server."""
    import asyncio

    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    _, url, key = served
    assert BINARY
    params = StdioServerParameters(command=BINARY, args=["--data-dir", str(data), "mcp"])

    async def session() -> tuple[set[str], bool]:
        async with Client(params, mode="legacy") as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            made = await client.call_tool("generate_image", {"prompt": "a lighthouse"})
            return names, bool(made.is_error)

    names, failed = asyncio.run(session())
    assert "generate_image" in names
    assert not failed
    message = {
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "smoke", "version": "1"}},
    }  # fmt: skip
    headers = {"X-API-Key": key, "Accept": "application/json, text/event-stream"}
    answer = httpx.post(f"{url}/mcp", json=message, headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"]["serverInfo"]["name"] == "banatie-local"
