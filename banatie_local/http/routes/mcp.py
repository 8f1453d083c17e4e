"""``POST /mcp``: the MCP door over streamable HTTP (the tools: ``mcp_door.py``).

Sanic is not an ASGI server, so each request is handed to the SDK's ASGI handler by
hand: the SDK's ``StreamableHTTPSessionManager`` runs stateless with JSON answers,
so one POST is one JSON-RPC exchange. The ASGI scope is built from the Sanic
request (its headers, less the key), ``receive`` gives the body once, and what the
handler ``send``s is collected into one Sanic response. The project key was checked
by the route's guard like any ``/api/v1`` call (and counted by its rate limit); its
project travels to the tools in the scope (``SCOPE_KEY``).

The session manager's ``run()`` must stay open while requests are served; it is
entered in a task of its own on the first ``/mcp`` request (importing the SDK costs
about 0.7 s, which a server that never sees an MCP client should not pay at start)
and left when the server stops (``install``).
"""

from __future__ import annotations

import asyncio
import importlib
from typing import TYPE_CHECKING, Any, Final

from sanic import Sanic
from sanic.request import Request
from sanic.response import HTTPResponse

from banatie_local.errors import UnsupportedMediaTypeError
from banatie_local.http.auth import context_of
from banatie_local.http.validation import parse_json
from banatie_local.services.container import Services

if TYPE_CHECKING:
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

# Where the request's project (a services Context) travels in the ASGI scope.
SCOPE_KEY: Final = "banatie.context"
# Never handed to the SDK (nor, through it, to a tool): the caller's credentials.
_WITHHELD: Final = frozenset({b"x-api-key", b"authorization", b"cookie"})


class McpHttp:
    """The SDK's session manager of one app, started on first use."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._manager: StreamableHTTPSessionManager | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()

    async def manager(self) -> StreamableHTTPSessionManager:
        if self._manager is not None:
            return self._manager
        async with self._lock:
            if self._manager is None:
                # on a thread: the loop serves other requests while the SDK loads
                door = await asyncio.to_thread(importlib.import_module, "banatie_local.mcp_door")
                manager = door.http_session_manager(self.services, SCOPE_KEY)
                started = asyncio.Event()
                task = asyncio.get_running_loop().create_task(self._run(manager, started))
                waiting = asyncio.ensure_future(started.wait())
                await asyncio.wait((task, waiting), return_when=asyncio.FIRST_COMPLETED)
                if not started.is_set():
                    waiting.cancel()
                    await task  # raises what stopped it
                self._task, self._manager = task, manager
        assert self._manager is not None
        return self._manager

    async def _run(self, manager: StreamableHTTPSessionManager, started: asyncio.Event) -> None:
        """Hold the manager's ``run()`` open (its task group serves every request)."""
        async with manager.run():
            started.set()
            await self._stop.wait()

    async def close(self) -> None:
        """End the manager (and any MCP request still in flight)."""
        self._stop.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


def install(app: Sanic[Any, Any]) -> None:
    """Give ``app`` its MCP door, closed before the server stops."""
    app.ctx.mcp = McpHttp(app.ctx.services)

    @app.before_server_stop
    async def _close_mcp(app: Sanic[Any, Any]) -> None:
        await app.ctx.mcp.close()


def _scope(request: Request) -> dict[str, Any]:
    headers = [
        (name.lower().encode("latin-1"), value.encode(errors="surrogateescape"))
        for name, value in request.headers.items()
    ]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": request.version,
        "method": request.method,
        "scheme": request.scheme,
        "path": request.path,
        "raw_path": request.path.encode(),
        "query_string": request.query_string.encode(),
        "root_path": "",
        "headers": [(name, value) for name, value in headers if name not in _WITHHELD],
        "client": (request.ip, request.port or 0),
        "server": None,
        SCOPE_KEY: context_of(request),
    }


async def mcp_endpoint(request: Request) -> HTTPResponse:
    """The MCP door for AI agents: one JSON-RPC message per POST (streamable HTTP,
    stateless, JSON answers); tools to generate, list, show, alias and delete images
    and to make live URLs, on the key's project."""
    if not request.content_type.lower().startswith("application/json"):
        raise UnsupportedMediaTypeError("send one JSON-RPC message as application/json.")
    parse_json(request.body, "body")  # our 400s: not JSON, or text that is no text
    manager = await request.app.ctx.mcp.manager()
    body: list[bytes] = [request.body]
    status = 500
    headers: dict[str, str] = {}
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        if body:
            return {"type": "http.request", "body": body.pop(), "more_body": False}
        await asyncio.Future()  # the body was all: wait to be cancelled (no disconnect)
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
            for name, value in message.get("headers", ()):
                headers[name.decode("latin-1").lower()] = value.decode("latin-1")
        elif message["type"] == "http.response.body":
            chunks.append(bytes(message.get("body", b"")))

    await manager.handle_request(_scope(request), receive, send)
    headers.pop("content-length", None)
    content_type = headers.pop("content-type", None)
    data = b"".join(chunks)
    if not data:
        return HTTPResponse(status=status, headers=headers)
    return HTTPResponse(data, status=status, headers=headers, content_type=content_type)
