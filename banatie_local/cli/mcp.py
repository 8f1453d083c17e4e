"""``mcp``: the MCP door over stdio, for desktop AI clients (the tools: ``mcp_door.py``)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import click

from banatie_local.cli.base import common_options, configure_logging, opened, project_ref
from banatie_local.services.context import Context

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from banatie_local.services.container import Services


@click.command(name="mcp")
@common_options
@click.option(
    "--project", "project_path", default="default/default", metavar="ORG/PROJECT",
    help="The project the tools act on (default: default/default).",
)  # fmt: skip
def mcp_command(project_path: str) -> None:
    """Serve the image tools to an AI agent over MCP (stdin/stdout), until stdin closes.

    For desktop AI clients: configure the command "banatie-local mcp" (with
    --data-dir if needed). No server needs to run; images are recorded as over the
    API, with the same URLs. The agent may delete images of the project, and that
    cannot be undone. A running serve offers the same tools at POST /mcp.
    """
    with opened() as services:
        configure_logging(services.settings.log.level)  # stderr: stdout is the protocol's
        ref = project_ref(services, project_path)
        from banatie_local import mcp_door  # the SDK loads only for this command

        server = mcp_door.build_server(
            services, mcp_door.fixed_project(Context(ref.organization, ref.project))
        )
        asyncio.run(_serve(server, services))


async def _serve(server: MCPServer, services: Services) -> None:
    try:
        await server.run_stdio_async()
    finally:
        await services.generations.shutdown()
