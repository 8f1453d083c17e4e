"""``banatie-local mcp``: the MCP door over stdio, as a desktop client runs it (the real
command as a process, driven by the official ``mcp`` SDK's client), on a data
directory made by ``init``. A server on the same directory shows the results over
the HTTP API and serves the live URL."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.types import CallToolResult

from tests.api.test_mcp import TOOLS, data_of, decoded, error_text, local, pictures
from tests.conftest import Running, run_appliance
from tests.e2e.test_serve_subprocess import assert_no_traceback

pytestmark = pytest.mark.slow

MODULE = [sys.executable, "-m", "banatie_local"]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def keys(data: Path) -> dict[str, Any]:
    """``init`` as a process: the data directory and its first keys."""
    proc = subprocess.run(
        [*MODULE, "init", "--json", "--data-dir", str(data)],
        capture_output=True, text=True, timeout=60, check=True, cwd=data.parent,
    )  # fmt: skip
    found: dict[str, Any] = json.loads(proc.stdout)
    return found


@pytest.fixture
def server(data: Path, keys: dict[str, Any]) -> Iterator[Running]:
    """A server on the same data directory, for checks over HTTP."""
    running = run_appliance(data, create_keys=False)
    running.client.headers["X-API-Key"] = keys["projectKey"]
    yield running
    running.stop()


def run_session(
    data: Path, server: Running, stderr: Path, calls: list[tuple[str, dict[str, Any]]],
    mode: str = "auto", *extra: str,
) -> tuple[set[str], list[CallToolResult]]:  # fmt: skip
    """One client session with ``banatie-local mcp``: the tool names, then each call's
    result in order."""
    params = StdioServerParameters(
        command=MODULE[0],
        args=[*MODULE[1:], "mcp", "--data-dir", str(data), *extra],
        # live URLs name the test server (its port is picked at start)
        env={"BANATIE_SERVER_PUBLIC_BASE_URL": server.url},
        cwd=data.parent,
    )

    async def session() -> tuple[set[str], list[CallToolResult]]:
        with stderr.open("a") as errlog:
            async with AsyncExitStack() as stack:
                transport = stdio_client(params, errlog=errlog)
                client = await stack.enter_async_context(Client(transport, mode=mode))
                names = {tool.name for tool in (await client.list_tools()).tools}
                return names, [await client.call_tool(name, args) for name, args in calls]

    return asyncio.run(session())


def test_a_desktop_session_generates_references_and_serves_live_urls(
    data: Path, server: Running, tmp_path: Path
) -> None:
    stderr = tmp_path / "stderr.txt"
    names, (first, second, live, empty, unknown) = run_session(
        data, server, stderr,
        [
            ("generate_image", {"prompt": "a red fox", "alias": "@fox"}),
            ("generate_image", {"prompt": "put @fox on a mug"}),  # the alias in the prompt
            ("live_url", {"scope": "desk", "prompt": "a calm harbour", "w": 400}),
            ("generate_image", {"prompt": "   "}),
            ("get_image", {"image": "@not-there"}),
        ],
    )  # fmt: skip
    assert names == TOOLS

    image = data_of(first)["outputImage"]
    [(mime, png)] = pictures(first)
    assert (mime, decoded(png)[0]) == ("image/png", "PNG")
    assert image["storageUrl"].startswith(f"{server.url}/cdn/default/default/img/")
    second_id = data_of(second)["id"]
    shown = server.client.get(f"/api/v1/generations/{second_id}").json()["data"]
    assert shown["referencedImages"] == [{"imageId": image["id"], "alias": "@fox"}]
    assert server.client.get("/api/v1/images/@fox").json()["data"]["id"] == image["id"]

    url = data_of(live)["url"]
    assert url.startswith(f"{server.url}/cdn/default/default/live/desk?")
    answer = server.client.get(local(url))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("image/")
    assert decoded(answer.content)[1][0] == 400

    assert "prompt is required" in error_text(empty)
    assert "@not-there" in error_text(unknown)
    assert_no_traceback("", stderr.read_text())


def test_the_initialize_handshake_and_another_project(
    data: Path, server: Running, tmp_path: Path
) -> None:
    """The 2025 handshake that desktop clients speak works too; ``--project`` picks
    the project the tools act on."""
    created = subprocess.run(
        [*MODULE, "projects", "create", "acme/site", "--data-dir", str(data)],
        capture_output=True, text=True, timeout=60, cwd=data.parent, check=False,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    stderr = tmp_path / "stderr.txt"
    names, (made,) = run_session(
        data, server, stderr, [("generate_image", {"prompt": "a kite"})], "legacy",
        "--project", "acme/site",
    )  # fmt: skip
    assert names == TOOLS
    assert "/cdn/acme/site/img/" in data_of(made)["outputImage"]["storageUrl"]
    assert server.client.get("/api/v1/images").json()["pagination"]["total"] == 0
    assert_no_traceback("", stderr.read_text())


def test_an_unknown_project_stops_the_command_with_one_sentence(data: Path, keys: Any) -> None:
    proc = subprocess.run(
        [*MODULE, "mcp", "--project", "nobody/nothing", "--data-dir", str(data)],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        cwd=data.parent, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stdout == ""  # stdout belongs to the protocol
    assert "nobody/nothing" in proc.stderr
    assert_no_traceback(proc.stdout, proc.stderr)
