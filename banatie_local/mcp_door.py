"""The MCP door: the appliance's tools for AI agents (the Model Context Protocol).

Built on the official ``mcp`` SDK's high-level server (``MCPServer``): it writes each
tool's input schema from the signature below and speaks both transports. Every tool
is a thin door onto the services the HTTP API uses (``Services``: generations,
images, signing), presented with the API's own shapes (``http/presenters.py``), so
an image made here is the same record, id and URL as one made over HTTP.

The same server serves stdio (``banatie-local mcp``: the project is fixed when the
command starts) and streamable HTTP (``POST /mcp`` on ``serve``: the request's
project key decides, see ``http/routes/mcp.py``); ``ProjectOf`` is the only
difference. Our errors (``ApiError``) become tool errors (``isError`` results)
carrying their message and code, so a model reads what went wrong and can retry.

Importing this module imports the SDK (about 0.7 s): the CLI command and the HTTP
route import it only when they are used.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Final, ParamSpec
from urllib.parse import quote, urlencode

from mcp.server.mcpserver import Context as McpContext
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import CallToolResult, ContentBlock, ImageContent, TextContent, ToolAnnotations
from pydantic import Field

from banatie_local import __version__
from banatie_local.constants import (
    ASPECT_RATIOS,
    DEFAULT_API_ASPECT_RATIO,
    DEFAULT_LIVE_ASPECT_RATIO,
    MAX_LIVE_PROMPT_LENGTH,
    MAX_PAGE_LIMIT,
)
from banatie_local.db.models import Image
from banatie_local.errors import ApiError, ValidationError
from banatie_local.http import presenters
from banatie_local.http.responses import wire
from banatie_local.services.aliases import check_alias
from banatie_local.services.container import Services
from banatie_local.services.context import Context
from banatie_local.services.flows import ABSENT
from banatie_local.services.generation_queries import load_views
from banatie_local.services.generation_request import check_aspect_ratio, check_prompt
from banatie_local.services.generations import GenerationRequest
from banatie_local.services.images import ImageFilters
from banatie_local.services.scopes import check_scope_slug
from banatie_local.services.validation import is_uuid
from banatie_local.services.variants import (
    MAX_SIDE,
    WRITABLE,
    Source,
    VariantRequest,
    plan,
    render,
)

# How a tool call finds the project it acts on (and the key that opened it).
ProjectOf = Callable[[McpContext], Context]

# An image is sent as it is up to this size; a larger one as a preview of at most
# PREVIEW_SIDE pixels on its longest side (what vision models look at anyway).
PREVIEW_SIDE: Final = 1568
PREVIEW_BYTES: Final = 1024 * 1024
PREVIEW_QUALITY: Final = 82

INSTRUCTIONS: Final = (
    "banatie-local generates images on this machine and keeps each one with a permanent "
    "URL. Images are named by id or by an @alias (@hero, @logo): give an image an alias "
    "when you generate it (alias) or later (set_alias), then use the alias wherever an "
    "image is wanted: in reference_images, in get_image, or inside a prompt ('put @logo "
    "on a mug'), where it is sent to the model as a reference picture. Every generation "
    "belongs to a flow; pass its flowId back as flow_id to continue it (then @last is "
    "the flow's latest image). Use live_url for an <img> URL that draws its picture "
    "when a browser first loads it."
)

# ---------------------------------------------------------------- the arguments

ImageRef = Annotated[
    str,
    Field(
        description="The image: its id (a UUID) or its @alias, e.g. @hero.",
        min_length=1,
        max_length=100,
    ),
]
FlowId = Annotated[
    str | None,
    Field(
        description="A flowId from an earlier result. For generate_image: continue that "
        "flow (omit it to start a new one). For image lookups: resolve flow aliases "
        "such as @last in that flow.",
    ),
]
Prompt = Annotated[
    str,
    Field(
        description="What to draw, in plain words. An @alias of a saved image inside the "
        "prompt makes that image a reference picture.",
    ),
]
AspectRatio = Annotated[
    str,
    Field(
        description="Shape of the image.",
        json_schema_extra={"enum": list(ASPECT_RATIOS)},
    ),
]
References = Annotated[
    list[str] | None,
    Field(
        description="Up to 3 saved images (ids or @aliases) the model should look at and "
        "build on: a character, a logo, a style to keep.",
    ),
]
NewAlias = Annotated[
    str | None,
    Field(
        description="An @alias to give the new image (@ then letters, digits, _ or -), so "
        "later calls can name it. An alias already in use moves to the new image.",
    ),
]
AutoEnhance = Annotated[
    bool,
    Field(description="Let the appliance improve the prompt first; false sends it as written."),
]
Limit = Annotated[int, Field(description=f"How many images, 1-{MAX_PAGE_LIMIT}.")]
Offset = Annotated[int, Field(description="How many of the newest images to skip.")]
SetTo = Annotated[
    str | None,
    Field(description="The new @alias (taken from any image that has it), or null to remove it."),
]
Scope = Annotated[
    str,
    Field(
        description="A name for the place on the page (hero, header, card-3): 1-64 letters, "
        "digits, _ or -. Images of a scope are listed and limited together.",
    ),
]
LivePrompt = Annotated[
    str,
    Field(description=f"What the image shows, at most {MAX_LIVE_PROMPT_LENGTH} characters."),
]
Width = Annotated[
    int | None,
    Field(description=f"Width in pixels to deliver (1-{MAX_SIDE}); optional."),
]
Height = Annotated[
    int | None,
    Field(
        description=f"Height in pixels to deliver (1-{MAX_SIDE}); optional. With both w and "
        "h the picture is cropped to fill that box.",
    ),
]

# ------------------------------------------------------------------ descriptions

GENERATE: Final = (
    "Generate one image from a text prompt and save it in the project. Use it whenever "
    "the user wants a new picture, or a change to one (pass the earlier image as a "
    "reference, or continue its flow with flow_id). Waits until the image is done (a "
    "few seconds to a minute) and returns the picture itself, then its id, flowId, "
    "@alias and permanent URL. Name an image with alias (e.g. @hero) to use it again "
    "later: in reference_images, or written inside another prompt."
)
LIST: Final = (
    "List the project's saved images, newest first: id, @alias, size, flowId and URL "
    "of each (no pictures; call get_image to see one). Use it to find an image to "
    "reuse or to check what exists."
)
GET: Final = (
    "Show one saved image by id or @alias: returns the picture and its details (id, "
    "@alias, size, flowId, permanent URL). Use it to look at an image before reusing "
    "or changing it."
)
SET_ALIAS: Final = (
    "Give a saved image an @alias (moving it from any image that had it), or remove "
    "its alias with null. Aliased images are kept when their flow is deleted, and "
    "can be named by the alias in any later call or prompt."
)
DELETE: Final = (
    "Delete a saved image, its file and its URL, by id or @alias. Cannot be undone: "
    "pages that show its URL break. Use only when the user asks for it."
)
LIVE: Final = (
    "Make a live image URL for a web page: an <img src> that generates its picture "
    "the first time a browser loads it and then serves the same picture from cache. "
    "Use it when writing HTML that needs an image: no waiting, nothing generated "
    "until the page is opened. Returns the URL, signed when the project requires "
    "signed URLs. The same scope and prompt always give the same picture; w and h "
    "only scale and crop it."
)

P = ParamSpec("P")


def ours(fn: Callable[P, Awaitable[CallToolResult]]) -> Callable[P, Awaitable[CallToolResult]]:
    """Our errors as tool errors: the SDK turns ``ToolError`` into an ``isError``
    result with its message (and logs it without a traceback); anything else is a
    crash it reports as ``Error executing tool …`` and logs."""

    @functools.wraps(fn)
    async def guarded(*args: P.args, **kwargs: P.kwargs) -> CallToolResult:
        try:
            return await fn(*args, **kwargs)
        except ApiError as exc:
            raise ToolError(f"{exc.message} [{exc.code}]") from exc

    return guarded


def _text(text: str) -> TextContent:
    return TextContent(type="text", text=text)


def _result(
    summary: str, data: dict[str, Any], picture: list[ContentBlock] | None = None
) -> CallToolResult:
    """The picture (if any), a sentence for the model, and the data as JSON (also as
    structured content, for clients that read it)."""
    blocks: list[ContentBlock] = [*(picture or []), _text(summary)]
    blocks.append(_text(json.dumps(data, ensure_ascii=False)))
    return CallToolResult(content=blocks, structured_content=data)


def _flow(flow_id: str | None) -> str | None:
    """A lookup's flow context, checked as the API's ``?flowId=`` is."""
    if flow_id is None or flow_id == "":
        return None
    if not is_uuid(flow_id):
        raise ValidationError("flow_id must be a UUID.", field="flow_id")
    return flow_id.lower()


def _describe(image: dict[str, Any]) -> str:
    alias = f" {image['alias']}" if image.get("alias") else ""
    return (
        f"image {image['id']}{alias}: {image['width']}x{image['height']} "
        f"{image['mimeType']}, flowId {image['flowId']}, {image['storageUrl']}"
    )


@dataclass
class Tools:
    """The tools; each finds its project through ``project_of``."""

    services: Services
    project_of: ProjectOf

    # ------------------------------------------------------------------ tools

    @ours
    async def generate_image(
        self,
        ctx: McpContext,
        prompt: Prompt,
        aspect_ratio: AspectRatio = DEFAULT_API_ASPECT_RATIO,
        reference_images: References = None,
        alias: NewAlias = None,
        flow_id: FlowId = None,
        auto_enhance: AutoEnhance = True,
    ) -> CallToolResult:
        project = self.project_of(ctx)
        request = GenerationRequest(
            prompt=prompt,
            aspect_ratio=aspect_ratio,
            reference_images=reference_images or [],
            flow_id=ABSENT if flow_id is None else flow_id,
            alias=alias,
            auto_enhance=auto_enhance,
        )
        generation = await self.services.generations.create(project, request, wait=True)
        views = await self.services.db.read(load_views, [generation])
        data = wire(presenters.generation(views[0], self._presenter(project)))
        if generation.status != "success" or data.get("outputImage") is None:
            raise ToolError(
                f"generation {generation.id} failed: {generation.error_message or 'no image'}"
            )
        output = data["outputImage"]
        picture, note = await self._picture(views[0].images[output["id"]], output)
        refs = ", ".join(r["alias"] or r["imageId"] for r in data["referencedImages"])
        summary = (
            f"Generated {_describe(output)} (generation {generation.id}"
            + (f", references: {refs}" if refs else "")
            + f"). {note}"
        )
        return _result(summary.strip(), data, picture)

    @ours
    async def list_images(
        self,
        ctx: McpContext,
        limit: Limit = 20,
        offset: Offset = 0,
        flow_id: FlowId = None,
    ) -> CallToolResult:
        project = self.project_of(ctx)
        limit, offset = min(max(limit, 1), MAX_PAGE_LIMIT), max(offset, 0)
        rows, total = await self.services.db.read(
            self.services.images.list_page, project, ImageFilters(_flow(flow_id)), limit, offset
        )
        present = self._presenter(project)
        images = [wire(present(row)) for row in rows]
        lines = [f"{len(images)} of {total} images (offset {offset}), newest first:"]
        lines += [f"- {_describe(image)}" for image in images]
        data = {"images": images, "total": total, "limit": limit, "offset": offset}
        return _result("\n".join(lines), data)

    @ours
    async def get_image(
        self, ctx: McpContext, image: ImageRef, flow_id: FlowId = None
    ) -> CallToolResult:
        project = self.project_of(ctx)
        row = await self.services.db.read(self.services.images.get, project, image, _flow(flow_id))
        data = wire(self._presenter(project)(row))
        picture, note = await self._picture(row, data)
        return _result(f"{_describe(data)}. {note}".strip(), data, picture)

    @ours
    async def set_alias(
        self, ctx: McpContext, image: ImageRef, alias: SetTo, flow_id: FlowId = None
    ) -> CallToolResult:
        project = self.project_of(ctx)
        if alias is not None:
            alias = check_alias(alias)
        images, flow = self.services.images, _flow(flow_id)
        row = await self.services.db.write(
            lambda: images.set_alias(images.get(project, image, flow), alias)
        )
        data = wire(self._presenter(project)(row))
        done = f"now {alias}" if alias else "now has no alias"
        return _result(f"Image {row.id} is {done}: {_describe(data)}", data)

    @ours
    async def delete_image(
        self, ctx: McpContext, image: ImageRef, flow_id: FlowId = None
    ) -> CallToolResult:
        project = self.project_of(ctx)
        row = await self.services.db.read(self.services.images.get, project, image, _flow(flow_id))
        await self.services.images.delete(row)
        return _result(f"Deleted image {row.id}.", {"id": row.id, "deleted": True})

    @ours
    async def live_url(
        self,
        ctx: McpContext,
        scope: Scope,
        prompt: LivePrompt,
        w: Width = None,
        h: Height = None,
        aspect_ratio: AspectRatio = DEFAULT_LIVE_ASPECT_RATIO,
    ) -> CallToolResult:
        project = self.project_of(ctx)
        scope = check_scope_slug(scope, "scope")
        text = check_prompt(" ".join(prompt.split()), MAX_LIVE_PROMPT_LENGTH)
        query = [("prompt", text)]
        if aspect_ratio != DEFAULT_LIVE_ASPECT_RATIO:
            query.append(("aspectRatio", check_aspect_ratio(aspect_ratio)))
        for name, side in (("w", w), ("h", h)):
            if side is not None:
                if not 1 <= side <= MAX_SIDE:
                    raise ValidationError(f"{name} must be from 1 to {MAX_SIDE}.", field=name)
                query.append((name, str(side)))
        org, slug = project.organization.slug, project.project.slug
        path = f"/cdn/{org}/{slug}/live/{quote(scope)}"
        signing = self.services.signing
        known = await self.services.db.read(signing.load, org, slug)
        signed = known is not None and known.requires("live")
        if signed:
            relative, _ = await self.services.db.write(
                signing.signed_url, project.project, path, query, None
            )
        else:
            relative = f"{path}?{urlencode(query, quote_via=quote)}"
        url = self.services.settings.public_base_url + relative
        how = "signed (this project accepts only signed live URLs)" if signed else "unsigned"
        summary = (
            f"Live URL ({how}): {url}\nPut it in an <img src>: the first load generates "
            "the picture (seconds), later loads are instant."
        )
        return _result(summary, {"url": url, "signed": signed, "scope": scope})

    # ---------------------------------------------------------------- helpers

    def _presenter(self, project: Context) -> presenters.ImagePresenter:
        base = self.services.settings.public_base_url
        org, slug = project.organization.slug, project.project.slug
        return lambda row: presenters.image(row, org, slug, base)

    async def _picture(self, row: Image, shown: dict[str, Any]) -> tuple[list[ContentBlock], str]:
        """The image as MCP image content, or a smaller preview of a large one; and a
        sentence saying which it is."""
        try:
            data = await self.services.storage.get(row.storage_key)
        except FileNotFoundError:
            data = b""
        if not data:
            return [], "Its file is missing from storage, so no picture is shown."
        big = max(row.width, row.height) > PREVIEW_SIDE or len(data) > PREVIEW_BYTES
        mime = row.mime_type
        note = ""
        if big:
            fmt = "webp" if "webp" in WRITABLE else "jpeg"
            wide = row.width >= row.height
            request = VariantRequest(
                PREVIEW_SIDE if wide else None, None if wide else PREVIEW_SIDE, None, fmt,
                PREVIEW_QUALITY,
            )  # fmt: skip
            source = Source(
                row.id, row.mime_type, row.file_hash, row.storage_key, row.width, row.height,
                row.focal_x, row.focal_y,
            )  # fmt: skip
            todo = plan(source, request)
            data = await asyncio.to_thread(render, data, todo)
            mime = todo.mime
            note = (
                f"The picture shown is a {todo.width}x{todo.height} {fmt.upper()} preview; "
                f"the image itself ({row.width}x{row.height}, {row.file_size} bytes) is at "
                f"{shown['storageUrl']}."
            )
        content = ImageContent(type="image", data=base64.b64encode(data).decode(), mime_type=mime)
        return [content], note


def build_server(services: Services, project_of: ProjectOf) -> MCPServer:
    """The MCP server with every tool, for either transport."""
    # the SDK says INFO for every request; our log keeps its warnings and errors
    logging.getLogger("mcp").setLevel(logging.WARNING)
    server: MCPServer = MCPServer(
        name="banatie-local",
        title="banatie-local images",
        version=__version__,
        instructions=INSTRUCTIONS,
        log_level="WARNING",
    )
    tools = Tools(services, project_of)
    reads = ToolAnnotations(read_only_hint=True, open_world_hint=False)
    table: list[tuple[Callable[..., Any], str, ToolAnnotations]] = [
        (tools.generate_image, GENERATE, ToolAnnotations(open_world_hint=False)),
        (tools.list_images, LIST, reads),
        (tools.get_image, GET, reads),
        (
            tools.set_alias,
            SET_ALIAS,
            ToolAnnotations(idempotent_hint=True, destructive_hint=False, open_world_hint=False),
        ),
        (tools.delete_image, DELETE, ToolAnnotations(destructive_hint=True, open_world_hint=False)),
        (tools.live_url, LIVE, ToolAnnotations(idempotent_hint=True, open_world_hint=False)),
    ]
    for fn, description, hints in table:
        server.add_tool(fn, description=description, annotations=hints)
    return server


def fixed_project(project: Context) -> ProjectOf:
    """stdio: every call acts on the project the command was started for."""
    return lambda _ctx: project


def project_in_scope(key: str) -> ProjectOf:
    """HTTP: the project the request's key opened, put in its ASGI scope under ``key``
    by the route (``http/routes/mcp.py``)."""

    def find(ctx: McpContext) -> Context:
        request = ctx.request_context.request
        scope = getattr(request, "scope", None)
        project = scope.get(key) if isinstance(scope, dict) else None
        if not isinstance(project, Context):  # only a request through the route has one
            raise ToolError("this call came without a project key.")
        return project

    return find


def http_session_manager(services: Services, scope_key: str) -> StreamableHTTPSessionManager:
    """The SDK's streamable HTTP handler for ``POST /mcp``: stateless (no session to
    keep between requests or share between workers) and answering with plain JSON
    (one request, one answer; no event stream). Its DNS-rebinding check is off: every
    request carries a project key, which no page in a browser can add."""
    server = build_server(services, project_in_scope(scope_key))
    server.streamable_http_app(
        stateless_http=True,
        json_response=True,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    return server.session_manager
