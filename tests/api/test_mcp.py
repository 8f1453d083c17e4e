"""The MCP door over streamable HTTP (``POST /mcp`` on a running server), driven by
the official ``mcp`` SDK's own client with the project key in a header; checked
through the HTTP API and the public URLs. (stdio: ``tests/e2e/test_mcp_stdio.py``.)"""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, ImageContent, TextContent
from PIL import Image as PILImage

from tests.conftest import Running

T = TypeVar("T")

TOOLS = {"generate_image", "list_images", "get_image", "set_alias", "delete_image", "live_url"}


@pytest.fixture(scope="module")
def app(module_app: Running) -> Running:
    return module_app


# ------------------------------------------------------------------ helpers


@asynccontextmanager
async def connected(url: str, headers: dict[str, str], mode: str = "auto") -> AsyncIterator[Client]:
    """The SDK's client on the SDK's streamable HTTP transport, with ``headers``."""
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
        transport = streamable_http_client(f"{url}/mcp", http_client=http)
        async with Client(transport, mode=mode) as client:
            yield client


def over_http(
    app: Running,
    scenario: Callable[[Client], Awaitable[T]],
    headers: dict[str, str] | None = None,
    mode: str = "auto",
) -> T:
    """Run ``scenario`` with a client connected to ``app`` by its project key."""

    async def run() -> T:
        key = headers or {"X-API-Key": app.project_key or ""}
        async with connected(app.url, key, mode) as client:
            return await scenario(client)

    return asyncio.run(run())


def texts(result: CallToolResult) -> list[str]:
    return [block.text for block in result.content if isinstance(block, TextContent)]


def data_of(result: CallToolResult) -> dict[str, Any]:
    """The JSON the tool returned (its last text block; also its structured content)."""
    assert not result.is_error, texts(result)
    data: dict[str, Any] = json.loads(texts(result)[-1])
    assert result.structured_content == data
    return data


def pictures(result: CallToolResult) -> list[tuple[str, bytes]]:
    return [
        (block.mime_type, base64.b64decode(block.data))
        for block in result.content
        if isinstance(block, ImageContent)
    ]


def decoded(data: bytes) -> tuple[str, tuple[int, int]]:
    with PILImage.open(io.BytesIO(data)) as image:
        return str(image.format), image.size


def error_text(result: CallToolResult) -> str:
    assert result.is_error, texts(result)
    return " ".join(texts(result))


def local(url: str) -> str:
    """The path and query of a URL (the test server's port is not the configured one)."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


# ---------------------------------------------------------------------- tests


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_the_tools_are_listed_with_descriptions_for_a_model(app: Running, mode: str) -> None:
    """Both protocol eras (2026 discovery, and the initialize handshake desktop
    clients use) list the six tools, each described, the delete marked destructive."""

    async def scenario(client: Client) -> Any:
        return (await client.list_tools()).tools, client.server_info

    tools, info = over_http(app, scenario, mode=mode)
    assert {tool.name for tool in tools} == TOOLS
    assert info is not None
    assert info.name == "banatie-local"
    for tool in tools:
        assert len(tool.description or "") > 100, tool.name
    by_name = {tool.name: tool for tool in tools}
    assert "@alias" in (by_name["generate_image"].description or "")
    delete = by_name["delete_image"].annotations
    assert delete is not None
    assert delete.destructive_hint is True
    listing = by_name["list_images"].annotations
    assert listing is not None
    assert listing.read_only_hint is True


def test_generate_then_use_the_image_by_alias_in_a_second_generation(app: Running) -> None:
    """A generation returns the picture, its id and URL; its @alias then works as a
    reference, and the HTTP API shows the second generation referencing the first."""

    async def scenario(client: Client) -> tuple[CallToolResult, CallToolResult]:
        first = await client.call_tool(
            "generate_image", {"prompt": "a red fox in snow", "alias": "@mcp-fox"}
        )
        second = await client.call_tool(
            "generate_image",
            {"prompt": "the same fox on a mug", "reference_images": ["@mcp-fox"],
             "aspect_ratio": "16:9", "auto_enhance": False},
        )  # fmt: skip
        return first, second

    first, second = over_http(app, scenario)
    made = data_of(first)
    image = made["outputImage"]
    assert image["alias"] == "@mcp-fox"
    [(mime, data)] = pictures(first)
    assert mime == "image/png"
    assert decoded(data) == ("PNG", (image["width"], image["height"]))
    summary = texts(first)[0]
    assert image["id"] in summary
    assert image["storageUrl"] in summary
    assert made["id"] in summary

    again = data_of(second)
    listed = app.project("GET", f"/api/v1/generations/{again['id']}").json()["data"]
    assert listed["referencedImages"] == [{"imageId": image["id"], "alias": "@mcp-fox"}]
    assert listed["outputImage"]["id"] == again["outputImage"]["id"]
    assert listed["aspectRatio"] == "16:9"
    # the picture behind the URL is the one the tool showed
    cdn = app.client.get(urlsplit(image["storageUrl"]).path)
    assert cdn.status_code == 200
    assert cdn.content == data


def test_list_get_set_alias_and_delete(app: Running) -> None:
    """The image tools act on the same records as /api/v1/images."""
    made = app.project("POST", "/api/v1/generations", json={"prompt": "a teapot"}).json()
    image_id = made["data"]["outputImage"]["id"]

    async def scenario(client: Client) -> list[CallToolResult]:
        return [
            await client.call_tool("set_alias", {"image": image_id, "alias": "@mcp-teapot"}),
            await client.call_tool("get_image", {"image": "@mcp-teapot"}),
            await client.call_tool("list_images", {"limit": 100}),
            await client.call_tool("set_alias", {"image": "@mcp-teapot", "alias": None}),
            await client.call_tool("delete_image", {"image": image_id}),
            await client.call_tool("get_image", {"image": image_id}),
        ]

    aliased, shown, listed, unaliased, deleted, gone = over_http(app, scenario)
    assert data_of(aliased)["alias"] == "@mcp-teapot"
    assert data_of(shown)["id"] == image_id
    assert len(pictures(shown)) == 1
    page = data_of(listed)
    assert image_id in {image["id"] for image in page["images"]}
    assert page["total"] == app.project("GET", "/api/v1/images").json()["pagination"]["total"] + 1
    assert data_of(unaliased)["alias"] is None
    assert data_of(deleted) == {"id": image_id, "deleted": True}
    assert "IMAGE_NOT_FOUND" in error_text(gone) or "does not exist" in error_text(gone)
    assert app.project("GET", f"/api/v1/images/{image_id}").status_code == 404


def test_a_large_image_comes_back_as_a_smaller_preview(app: Running) -> None:
    """An image past 1568 px is shown as a WebP preview of 1568 px, and the text says
    so and where the full image is."""
    picture = PILImage.linear_gradient("L").resize((2400, 1600)).convert("RGB")
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    files = {"file": ("big.png", buffer.getvalue(), "image/png")}
    uploaded = app.project("POST", "/api/v1/images/upload", files=files).json()["data"]

    async def scenario(client: Client) -> CallToolResult:
        return await client.call_tool("get_image", {"image": uploaded["id"]})

    result = over_http(app, scenario)
    [(mime, data)] = pictures(result)
    assert mime == "image/webp"
    assert decoded(data) == ("WEBP", (1568, 1045))
    summary = texts(result)[0]
    assert "1568x1045 WEBP preview" in summary
    assert "2400x1600" in summary
    assert data_of(result)["storageUrl"] in summary


def test_a_live_url_serves_an_image_and_is_signed_when_the_project_requires_it(
    app: Running,
) -> None:
    """The URL answers with the picture at the asked size; once the project accepts
    only signed live URLs, the tool signs it (and the unsigned one is refused)."""
    key = app.new_project_key("mcp-live", "site")  # its own signing mode
    headers = {"X-API-Key": key}

    async def scenario(client: Client) -> CallToolResult:
        return await client.call_tool(
            "live_url", {"scope": "mcp", "prompt": "a calm   harbour", "w": 320, "h": 200}
        )

    plain = data_of(over_http(app, scenario, headers))
    assert plain["signed"] is False
    assert "/cdn/mcp-live/site/live/mcp?prompt=a%20calm%20harbour&w=320&h=200" in plain["url"]
    answer = app.client.get(local(plain["url"]))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("image/")
    assert decoded(answer.content)[1] == (320, 200)

    mode = app.project("PUT", "/api/v1/project", json={"signedUrls": "live"}, headers=headers)
    assert mode.status_code == 200
    assert app.client.get(local(plain["url"])).status_code == 403  # unsigned: refused now
    signed = data_of(over_http(app, scenario, headers))
    assert signed["signed"] is True
    assert "&sig=" in signed["url"]
    answer = app.client.get(local(signed["url"]))
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-cache-status"] == "HIT"  # the same scope and prompt


BAD_CALLS: list[tuple[str, dict[str, Any], str]] = [
    ("generate_image", {"prompt": ""}, "prompt is required"),
    ("generate_image", {"prompt": "a cat", "reference_images": ["@no-such"]}, "@no-such"),
    ("generate_image", {"prompt": "a cat", "aspect_ratio": "5:4"}, "INVALID_ASPECT_RATIO"),
    ("generate_image", {"prompt": "a cat", "alias": "hero"}, "INVALID_ALIAS_FORMAT"),
    ("generate_image", {"prompt": "a cat", "flow_id": "nope"}, "flowId must be a UUID"),
    ("get_image", {"image": "@no-such"}, "@no-such"),
    ("list_images", {"flow_id": "nope"}, "flow_id must be a UUID"),
    ("set_alias", {"image": "@no-such", "alias": "@x"}, "@no-such"),
    ("delete_image", {"image": "00000000-0000-4000-8000-000000000000"}, "does not exist"),
    ("live_url", {"scope": "no spaces", "prompt": "x"}, "SCOPE_INVALID_FORMAT"),
    ("live_url", {"scope": "ok", "prompt": "  "}, "prompt is required"),
    ("live_url", {"scope": "ok", "prompt": "x", "w": 0}, "w must be from 1"),
    ("list_images", {"limit": "many"}, "limit"),  # refused by the input schema
    ("no_such_tool", {}, "no_such_tool"),
]


def test_bad_input_is_a_tool_error_with_our_message_never_a_crash(app: Running) -> None:
    """Each bad call answers ``isError`` with the sentence the API would give; the
    connection keeps working after them."""

    async def scenario(client: Client) -> tuple[list[CallToolResult], int]:
        results = [await client.call_tool(name, args) for name, args, _ in BAD_CALLS]
        return results, len((await client.list_tools()).tools)

    results, tools = over_http(app, scenario)
    for (name, _, expected), result in zip(BAD_CALLS, results, strict=True):
        text = error_text(result)
        assert expected in text, (name, text)
        assert text != f"Error executing tool {name}"  # what a crash would say
    assert tools == len(TOOLS)


def test_the_key_decides_the_project(app: Running) -> None:
    """A key of another project sees that project's images only, and a Bearer key
    works as X-API-Key does."""
    other = app.new_project_key("mcp-org", "site")

    async def scenario(client: Client) -> tuple[CallToolResult, CallToolResult]:
        made = await client.call_tool("generate_image", {"prompt": "a kite"})
        return made, await client.call_tool("list_images", {})

    made, listed = over_http(app, scenario, headers={"Authorization": f"Bearer {other}"})
    image = data_of(made)["outputImage"]
    assert "/cdn/mcp-org/site/img/" in image["storageUrl"]
    assert [i["id"] for i in data_of(listed)["images"]] == [image["id"]]
    assert app.project("GET", f"/api/v1/images/{image['id']}").status_code == 404


INITIALIZE = {
    "jsonrpc": "2.0", "id": 1, "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {},
               "clientInfo": {"name": "curl", "version": "1"}},
}  # fmt: skip
JSON_HEADERS = {"Accept": "application/json, text/event-stream"}


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-API-Key": "bnt_" + "0" * 64}, {"Authorization": "Bearer nope"}],
    ids=["missing", "wrong", "wrong-bearer"],
)
def test_the_door_refuses_a_missing_or_wrong_key(app: Running, headers: dict[str, str]) -> None:
    response = app.client.post("/mcp", json=INITIALIZE, headers={**JSON_HEADERS, **headers})
    assert response.status_code == 401
    assert response.json()["error"]["code"] in ("MISSING_API_KEY", "INVALID_API_KEY")


def test_a_master_key_is_refused(app: Running) -> None:
    response = app.admin("POST", "/mcp", json=INITIALIZE, headers=JSON_HEADERS)
    assert response.status_code == 403


def test_plain_json_rpc_without_the_sdk(app: Running) -> None:
    """One POST, one JSON answer: what a script with curl sees. A notification is
    202 without a body; GET (an event stream) is 405."""
    init = app.project("POST", "/mcp", json=INITIALIZE, headers=JSON_HEADERS)
    assert init.status_code == 200, init.text
    assert init.headers["content-type"].startswith("application/json")
    assert init.json()["result"]["serverInfo"]["name"] == "banatie-local"
    assert "X-RateLimit-Limit" in init.headers  # counted like any /api/v1 call
    headers = {**JSON_HEADERS, "MCP-Protocol-Version": "2025-06-18"}
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    accepted = app.project("POST", "/mcp", json=note, headers=headers)
    assert accepted.status_code == 202
    assert accepted.content == b""
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    tools = app.project("POST", "/mcp", json=listing, headers=headers).json()
    assert {tool["name"] for tool in tools["result"]["tools"]} == TOOLS
    assert app.project("GET", "/mcp", headers=headers).status_code == 405
    assert app.project("DELETE", "/mcp", headers=headers).status_code == 405


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b'{"jsonrpc": "2.0", "method": "a\\ud800"}', "application/json", 400),
        (json.dumps(INITIALIZE).encode(), "text/plain", 415),
        (b'{"jsonrpc": "1.0"}', "application/json", 400),
    ],
    ids=["not-json", "surrogate", "not-json-type", "not-json-rpc"],
)
def test_a_malformed_message_is_a_4xx(
    app: Running, content: bytes, content_type: str, status: int
) -> None:
    response = app.project(
        "POST", "/mcp", content=content, headers={**JSON_HEADERS, "Content-Type": content_type}
    )
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")


def test_the_readme_client_configurations_name_this_door(app: Running) -> None:
    """The README's two client blocks parse, start the real command, and point at
    the route with the header it reads."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    blocks = [
        json.loads(block)["mcpServers"]["banatie"]
        for block in re.findall(r"```json\n(.*?)```", readme, re.DOTALL)
        if "mcpServers" in block
    ]
    stdio, http = blocks
    assert stdio["command"] == "banatie-local"
    assert stdio["args"][0] == "mcp"
    assert urlsplit(http["url"]).path == "/mcp"
    headers = {**http["headers"], "X-API-Key": app.project_key, **JSON_HEADERS}
    answer = app.client.post(urlsplit(http["url"]).path, json=INITIALIZE, headers=headers)
    assert answer.status_code == 200, answer.text
