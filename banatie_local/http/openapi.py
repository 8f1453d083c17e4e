"""The OpenAPI 3.1 document, built from the route map and one table of operations.

Every route in ``http/app.py:ROUTES`` has an entry in ``OPERATIONS`` (a test fails
otherwise, and ``build_document`` refuses to build), so the document cannot drift
from what the server answers. Summaries come from the handlers' docstrings.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from banatie_local import __version__
from banatie_local.constants import (
    ASPECT_RATIOS,
    MAX_LIVE_PROMPT_LENGTH,
    MAX_PAGE_LIMIT,
    SCOPE_PATTERN,
    TEMPLATES,
)
from banatie_local.http.shapes import component_schemas
from banatie_local.services.variants import WRITABLE
from banatie_local.text import FALSE_WORDS, TRUE_WORDS

JSON = dict[str, Any]


def ref(name: str) -> JSON:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: JSON) -> JSON:
    return {"anyOf": [schema, {"type": "null"}]}


def obj(properties: JSON, required: Iterable[str] = ()) -> JSON:
    return {"type": "object", "properties": properties, "required": list(required)}


STR: Final = {"type": "string"}
INT: Final = {"type": "integer"}
BOOL: Final = {"type": "boolean"}
TIME: Final = {"type": "string", "format": "date-time"}
UUID: Final = {"type": "string", "format": "uuid"}
META: Final = {"type": "object", "additionalProperties": True}

# POST /mcp speaks JSON-RPC 2.0 (the Model Context Protocol): its bodies and answers
# are the protocol's, and what the MCP SDK refuses itself (a malformed message, an
# Accept without JSON) is a JSON-RPC error beside our envelope.
MCP_SCHEMAS: Final[JSON] = {
    "McpMessage": obj(
        {"jsonrpc": {"enum": ["2.0"]},
         "id": {"anyOf": [STR, INT], "description": "absent in a notification"},
         "method": {"type": "string", "description": "initialize, tools/list, tools/call, ..."},
         "params": META},
        ["jsonrpc", "method"],
    ) | {"title": "McpMessage", "description": "One JSON-RPC 2.0 message of the Model Context Protocol"},
    "McpAnswer": obj(
        {"jsonrpc": {"enum": ["2.0"]}, "id": {"anyOf": [STR, INT, {"type": "null"}]},
         "result": {"type": "object"},
         "error": obj({"code": INT, "message": STR, "data": {}}, ["code", "message"])},
        ["jsonrpc"],
    ) | {"title": "McpAnswer", "description": "The JSON-RPC 2.0 answer: a result or an error"},
}  # fmt: skip
SCHEMAS: Final[JSON] = component_schemas() | MCP_SCHEMAS


@dataclass(frozen=True)
class Op:
    """What the document says about one route."""

    tag: str
    ok: int = 200
    returns: str | None = None  # schema name of ``data``
    many: bool = False  # a paginated list
    raw: str | None = None  # a bare (un-enveloped) schema, e.g. /health
    image: bool = False  # answers image bytes
    body: str | None = None
    multipart: bool = False
    query: tuple[str, ...] = ()
    errors: tuple[int, ...] = ()
    extra_ok: tuple[int, ...] = ()
    page_images: bool = False  # scope get: top-level pagination describes data.images
    legacy: bool = False  # a pre-v1 route: a flat message beside data and error
    openai: bool = False  # the OpenAI door: OpenAI's error shape
    mcp: bool = False  # the MCP door: JSON-RPC; 202 without a body; SDK errors in JSON-RPC
    content: str = "application/json"
    extra: JSON = field(default_factory=dict)


PAGED = ("limit", "offset")
LEGACY_IMAGE: Final = "/api/images/<org:str>/<project:str>/<category:str>/<filename:str>"
V1 = (400, 401, 403, 429)
VARIANT = ("w", "h", "fit", "format", "q")
SIGNED = ("exp", "sig")

OPERATIONS: Final[dict[tuple[str, str], Op]] = {
    ("GET", "/health"): Op("system", raw="Health", extra_ok=(503,)),
    ("GET", "/api/info"): Op("system", returns="Info"),
    ("GET", "/metrics"): Op("system", content="text/plain", errors=(404,)),
    ("GET", "/api/v1/openapi.json"): Op("system", raw="OpenApi"),
    ("GET", "/docs"): Op("system", content="text/html"),
    ("GET", "/docs/<asset:str>"): Op("system", content="application/octet-stream", errors=(404,)),
    ("GET", "/"): Op("system", content="text/html"),
    ("GET", "/gallery/<asset:str>"): Op("system", content="application/octet-stream", errors=(404,)),
    ("POST", "/api/bootstrap/initial-key"): Op("keys", 201, "BootstrapKey", errors=(403,)),
    ("POST", "/api/admin/keys"): Op("keys", 201, "CreatedApiKey", body="CreateKey", errors=(400, 401, 403)),
    ("GET", "/api/admin/keys"): Op("keys", returns="ApiKey", many=True, query=PAGED, errors=(400, 401, 403)),
    ("DELETE", "/api/admin/keys/<key_id:str>"): Op("keys", returns="RevokedKey", errors=(401, 403, 404)),
    ("GET", "/api/v1/project"): Op("project", returns="Project", errors=V1),
    ("PUT", "/api/v1/project"): Op("project", returns="Project", body="UpdateProject", errors=V1),
    ("GET", "/api/v1/project/signing-secret"): Op("project", returns="SigningSecretOut", errors=V1),
    ("POST", "/api/v1/project/signing-secret/rotate"): Op("project", returns="SigningSecretOut", errors=V1),
    ("POST", "/api/v1/signed-urls"): Op("project", returns="SignedUrl", body="SignUrl", errors=V1),
    ("POST", "/api/v1/images/upload"): Op("images", 201, "Image", body="Upload", multipart=True, errors=(*V1, 404, 413, 415, 503)),
    ("GET", "/api/v1/images"): Op("images", returns="Image", many=True, query=(*PAGED, "flowId", "source", "alias"), errors=V1),
    ("GET", "/api/v1/images/<ref:str>"): Op("images", returns="Image", query=("flowId",), errors=(*V1, 404)),
    ("PUT", "/api/v1/images/<ref:str>"): Op("images", returns="Image", body="UpdateImage", query=("flowId",), errors=(*V1, 404)),
    ("PUT", "/api/v1/images/<ref:str>/alias"): Op("images", returns="Image", body="SetAlias", query=("flowId",), errors=(*V1, 404)),
    ("DELETE", "/api/v1/images/<ref:str>"): Op("images", returns="Id", query=("flowId",), errors=(*V1, 404)),
    ("POST", "/api/v1/generations"): Op("generations", 201, "Generation", body="CreateGeneration", extra_ok=(202,), errors=(*V1, 404, 503)),
    ("GET", "/api/v1/generations"): Op("generations", returns="Generation", many=True, query=(*PAGED, "flowId", "status", "includeDeleted"), errors=V1),
    ("GET", "/api/v1/generations/<generation_id:str>"): Op("generations", returns="Generation", errors=(*V1, 404)),
    ("PUT", "/api/v1/generations/<generation_id:str>"): Op("generations", returns="Generation", body="UpdateGeneration", errors=(*V1, 404, 503)),
    ("POST", "/api/v1/generations/<generation_id:str>/regenerate"): Op("generations", returns="Generation", errors=(*V1, 404, 503)),
    ("POST", "/api/v1/generations/<generation_id:str>/retry"): Op("generations", returns="Generation", errors=(*V1, 404, 503)),
    ("DELETE", "/api/v1/generations/<generation_id:str>"): Op("generations", returns="Id", errors=(*V1, 404)),
    ("POST", "/api/v1/flows"): Op("flows", 201, "Flow", body="CreateFlow", errors=(*V1, 404)),
    ("GET", "/api/v1/flows"): Op("flows", returns="Flow", many=True, query=PAGED, errors=V1),
    ("GET", "/api/v1/flows/<flow_id:str>"): Op("flows", returns="Flow", errors=(*V1, 404)),
    ("GET", "/api/v1/flows/<flow_id:str>/generations"): Op("flows", returns="Generation", many=True, query=PAGED, errors=(*V1, 404)),
    ("GET", "/api/v1/flows/<flow_id:str>/images"): Op("flows", returns="Image", many=True, query=PAGED, errors=(*V1, 404)),
    ("PUT", "/api/v1/flows/<flow_id:str>/aliases"): Op("flows", returns="Flow", body="SetFlowAliases", errors=(*V1, 404)),
    ("DELETE", "/api/v1/flows/<flow_id:str>/aliases/<alias:str>"): Op("flows", returns="Flow", errors=(*V1, 404)),
    ("POST", "/api/v1/flows/<flow_id:str>/regenerate"): Op("flows", returns="Generation", errors=(*V1, 404, 503)),
    ("DELETE", "/api/v1/flows/<flow_id:str>"): Op("flows", returns="Id", errors=(*V1, 404)),
    ("GET", "/api/v1/live/generate"): Op("live", image=True, query=("prompt", "scope", "aspectRatio", "autoEnhance", "template", *VARIANT), errors=(*V1, 404, 502, 503)),
    ("POST", "/api/v1/live/scopes"): Op("live", 201, "Scope", body="CreateScope", errors=(*V1, 409)),
    ("GET", "/api/v1/live/scopes"): Op("live", returns="Scope", many=True, query=PAGED, errors=V1),
    ("GET", "/api/v1/live/scopes/<slug:str>"): Op("live", returns="ScopeWithImages", page_images=True, query=PAGED, errors=(*V1, 404)),
    ("PUT", "/api/v1/live/scopes/<slug:str>"): Op("live", returns="Scope", body="UpdateScope", errors=(*V1, 404)),
    ("POST", "/api/v1/live/scopes/<slug:str>/regenerate"): Op("live", returns="ScopeRegenerated", body="RegenerateScope", errors=(*V1, 404, 503)),
    ("DELETE", "/api/v1/live/scopes/<slug:str>"): Op("live", returns="Id", errors=(*V1, 404)),
    ("GET", "/cdn/<org:str>/<project:str>/live/<scope:str>"): Op("public", image=True, query=("prompt", "aspectRatio", "autoEnhance", "template", *VARIANT, *SIGNED), errors=(400, 403, 404, 429, 502, 503)),
    ("GET", "/cdn/<org:str>/<project:str>/img/<ref:str>"): Op("public", image=True, query=(*VARIANT, *SIGNED), errors=(400, 403, 404, 503)),
    ("HEAD", "/cdn/<org:str>/<project:str>/img/<ref:str>"): Op("public", image=True, query=(*VARIANT, *SIGNED), errors=(400, 403, 404, 503)),
    ("POST", "/api/generate"): Op("legacy", returns="LegacyGenerated", body="LegacyGenerate", multipart=True, legacy=True, errors=(*V1, 404, 413, 415, 502, 503)),
    ("POST", "/api/text-to-image"): Op("legacy", returns="LegacyGenerated", body="LegacyTextToImage", legacy=True, errors=(*V1, 502, 503)),
    ("POST", "/api/upload"): Op("legacy", 201, "LegacyUploaded", body="LegacyUpload", multipart=True, legacy=True, errors=(*V1, 413, 415, 503)),
    ("POST", "/api/enhance"): Op("legacy", returns="LegacyEnhanced", body="LegacyEnhance", legacy=True, errors=(*V1, 502)),
    ("GET", LEGACY_IMAGE): Op("legacy", image=True, legacy=True, query=SIGNED, errors=(403, 404, 503)),
    ("HEAD", LEGACY_IMAGE): Op("legacy", image=True, legacy=True, query=SIGNED, errors=(403, 404, 503)),
    ("POST", "/v1/images/generations"): Op("openai", raw="OpenAiImages", body="OpenAiGenerate", openai=True, errors=(*V1, 502, 503)),
    ("POST", "/v1/images/edits"): Op("openai", raw="OpenAiImages", body="OpenAiEdit", multipart=True, openai=True, errors=(*V1, 413, 415, 502, 503)),
    ("POST", "/v1/images/variations"): Op("openai", raw="OpenAiImages", body="OpenAiVariation", multipart=True, openai=True, errors=(*V1, 413, 415, 502, 503)),
    ("GET", "/v1/models"): Op("openai", raw="OpenAiModelList", openai=True, errors=V1),
    ("GET", "/v1/models/<model_id:str>"): Op("openai", raw="OpenAiModel", openai=True, errors=(*V1, 404)),
    ("POST", "/mcp"): Op("mcp", raw="McpAnswer", body="McpMessage", mcp=True, extra_ok=(202,), errors=(*V1, 406, 415)),
}  # fmt: skip

QUERY: Final[dict[str, JSON]] = {
    "limit": {"type": "integer", "description": f"default 20; clamped to 1..{MAX_PAGE_LIMIT}"},
    "offset": {"type": "integer", "description": "default 0; a negative offset counts as 0"},
    "flowId": {"type": "string"},
    "source": {"enum": ["generated", "uploaded"]},
    "alias": {"type": "string"},
    "status": {"enum": ["pending", "processing", "success", "failed"]},
    "includeDeleted": {"type": "string", "description": "accepted and ignored: deletes are hard"},
    "prompt": {"type": "string", "minLength": 1, "maxLength": MAX_LIVE_PROMPT_LENGTH},
    "scope": {"type": "string", "pattern": SCOPE_PATTERN},
    "aspectRatio": {"enum": list(ASPECT_RATIOS)},
    "autoEnhance": {"enum": sorted(TRUE_WORDS | FALSE_WORDS)},
    "template": {"enum": list(TEMPLATES)},
    "w": {"type": "integer", "minimum": 1, "maximum": 4096, "description": "width; never above the stored image's"},
    "h": {"type": "integer", "minimum": 1, "maximum": 4096, "description": "height; never above the stored image's"},
    "fit": {"enum": ["cover", "contain", "fill"], "description": "with w and h; cover (the default) crops around the focal point"},
    "format": {"enum": [*WRITABLE, "jpg", "auto"], "description": "auto: the best the Accept header allows (answered with Vary: Accept)"},
    "q": {"type": "integer", "minimum": 1, "maximum": 100, "description": "quality of a lossy format; default 82"},
    "exp": {"type": "integer", "description": "signed URLs: Unix seconds after which the URL answers 403 URL_EXPIRED"},
    "sig": {"type": "string", "description": "signed URLs: base64url HMAC-SHA256 of the canonical URL"},
}  # fmt: skip

_PARAM = re.compile(r"<([a-z_]+):str>")


def openapi_path(path: str) -> str:
    """``/a/<id:str>`` → ``/a/{id}``."""
    return _PARAM.sub(r"{\1}", path)


def _envelope(op: Op) -> JSON:
    if op.raw:
        return {"type": "object"} if op.raw == "OpenApi" else ref(op.raw)
    assert op.returns
    data = ref(op.returns)
    if op.many:
        return obj(
            {"success": {"const": True}, "data": {"type": "array", "items": data},
             "pagination": ref("Pagination")},
            ["success", "data", "pagination"],
        )  # fmt: skip
    properties: JSON = {"success": {"const": True}, "data": data}
    if op.legacy:
        properties["message"] = STR
        return obj(properties, ["success", "message", "data"])
    if op.page_images:
        properties["pagination"] = ref("Pagination")
    return obj(properties, ["success", "data"])


def _error_schema(op: Op) -> str:
    return "LegacyError" if op.legacy else "OpenAiError" if op.openai else "Error"


def _responses(op: Op, access: str) -> JSON:
    if op.image:
        content: JSON = {
            mime: {"schema": {"type": "string", "format": "binary"}}
            for mime in ("image/png", "image/jpeg", "image/webp")
        }
        ok: JSON = {"description": "the image bytes", "content": content}
        responses: JSON = {"200": ok, "304": {"description": "not modified (If-None-Match)"}}
    elif op.content != "application/json":
        responses = {"200": {"description": "OK", "content": {op.content: {"schema": STR}}}}
    else:
        schema = _envelope(op)
        responses = {
            str(op.ok): {"description": "OK", "content": {"application/json": {"schema": schema}}}
        }
        for status in op.extra_ok:
            responses[str(status)] = {
                "description": "accepted" if status == 202 else "unhealthy",
                "content": {"application/json": {"schema": schema}},
            }
    if op.mcp:
        responses["202"] = {"description": "a notification or a response, accepted (no body)"}
    refusal = {"anyOf": [ref("Error"), ref("McpAnswer")]} if op.mcp else ref(_error_schema(op))
    error = {"content": {"application/json": {"schema": refusal}}}
    codes = set(op.errors) | ({405, 413} if access != "public" or op.body else set())
    if op.query:
        codes.add(431)  # a query string past the 16 KB the server reads (HEADERS_TOO_LARGE)
    if access != "public" or op.image or op.body:
        codes.add(503)  # the database busy past database.busy_timeout_ms (DATABASE_BUSY)
    for status in sorted(codes):
        responses[str(status)] = {"description": f"error {status}", **error}
    return responses


def _operation(method: str, path: str, access: str, handler: Callable[..., Any]) -> JSON:
    op = OPERATIONS[(method, path)]
    doc = (handler.__doc__ or "").strip()
    operation: JSON = {
        "tags": [op.tag],
        "summary": doc.split("\n")[0].rstrip("."),
        "operationId": f"{method.lower()}_{re.sub(r'[^a-z0-9]+', '_', path.lower()).strip('_')}",
        "responses": _responses(op, access),
    }
    if access in ("project", "master"):
        operation["security"] = [{"apiKey": []}, {"bearer": []}]
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": STR}
        for name in _PARAM.findall(path)
    ]
    parameters += [
        {"name": name, "in": "query", "required": name == "prompt", "schema": QUERY[name]}
        for name in op.query
    ]
    if parameters:
        operation["parameters"] = parameters
    if op.body:
        media = "multipart/form-data" if op.multipart else "application/json"
        operation["requestBody"] = {
            "required": op.body in ("Upload", "CreateGeneration", "CreateScope", "SetAlias",
                                    "SetFlowAliases", "UpdateProject", "UpdateGeneration",
                                    "UpdateScope", "CreateKey", "LegacyGenerate",
                                    "LegacyTextToImage", "LegacyUpload", "LegacyEnhance",
                                    "OpenAiGenerate", "OpenAiEdit", "OpenAiVariation",
                                    "McpMessage"),
            "content": {media: {"schema": ref(op.body)}},
        }  # fmt: skip
    return operation


TAG_NOTES: Final = {
    "legacy": "Pre-v1 routes kept so that scripts written for them work unchanged. "
    "Their answers carry a flat message beside data (or beside the v1 error object).",
    "public": "No key: image bytes for pages (live URLs and the CDN).",
    "openai": "The OpenAI Images API: point an OpenAI client's base URL at /v1 and give it "
    "a project key (Authorization: Bearer). Errors use OpenAI's shape.",
    "mcp": "The Model Context Protocol door for AI agents: point an MCP client (streamable "
    "HTTP) at /mcp with a project key. Stateless: each POST is one JSON-RPC exchange, "
    "answered as JSON; GET (an event stream) is not offered.",
}


def _tags(names: Iterable[str]) -> list[JSON]:
    """The tags in order of first use, with a note where one helps."""
    tags: list[JSON] = []
    for name in dict.fromkeys(names):
        tag: JSON = {"name": name}
        if name in TAG_NOTES:
            tag["description"] = TAG_NOTES[name]
        tags.append(tag)
    return tags


def build_document(routes: Iterable[tuple[str, str, str, Callable[..., Any]]]) -> JSON:
    """The OpenAPI 3.1 document for ``routes``; every route must be in ``OPERATIONS``."""
    routes = list(routes)
    missing = {(m, p) for _, m, p, _ in routes} ^ set(OPERATIONS)
    if missing:
        raise RuntimeError(f"routes and OpenAPI operations differ: {sorted(missing)}")
    paths: JSON = {}
    for access, method, path, handler in routes:
        paths.setdefault(openapi_path(path), {})[method.lower()] = _operation(
            method, path, access, handler
        )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "banatie-local",
            "version": __version__,
            "description": "The Banatie v1 image-generation API, self-hosted. "
            "Project keys open /api/v1, master keys /api/admin (header X-API-Key).",
        },
        "tags": _tags(op.tag for op in OPERATIONS.values()),
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
    }
