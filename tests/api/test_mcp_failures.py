"""The MCP door when the provider fails: a tool error with the generation's message,
and the failed generation recorded as over the API. (Its own module: it starts its
own appliance, which ``test_mcp.py``'s shared one must not share a module with.)"""

from __future__ import annotations

from collections.abc import Callable

from mcp import Client
from mcp.types import CallToolResult

from banatie_local.providers import GeneratedImage, ReferenceImage
from banatie_local.providers.base import ProviderError
from tests.api.test_mcp import error_text, over_http
from tests.conftest import Running


class BrokenProvider:
    name = "broken"

    async def generate(
        self, prompt: str, aspect_ratio: str, references: list[ReferenceImage]
    ) -> GeneratedImage:
        raise ProviderError("the model refused: out of ink")

    async def enhance(self, prompt: str, template: str) -> str:
        return prompt


def test_a_failed_generation_is_a_tool_error_and_stays_recorded(
    start_server: Callable[..., Running],
) -> None:
    running = start_server(provider=BrokenProvider(), generation__max_retries=0)

    async def scenario(client: Client) -> CallToolResult:
        return await client.call_tool("generate_image", {"prompt": "a pen"})

    text = error_text(over_http(running, scenario))
    assert "failed: " in text
    assert "out of ink" in text
    listed = running.project("GET", "/api/v1/generations").json()["data"]
    assert [g["status"] for g in listed] == ["failed"]
    assert listed[0]["id"] in text
