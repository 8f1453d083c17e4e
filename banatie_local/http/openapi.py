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
from banatie_local.constants import ASPECT_RATIOS, TEMPLATES

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

_IMAGE_FIELDS = [
    "id", "projectId", "flowId", "generationId", "storageKey", "storageUrl", "mimeType",
    "fileSize", "fileHash", "width", "height", "source", "alias", "focalPoint", "meta",
    "createdAt", "updatedAt",
]  # fmt: skip

SCHEMAS: Final[JSON] = {
    "Error": obj(
        {
            "success": {"const": False},
            "error": obj(
                {"code": STR, "message": STR, "details": {"type": "object"}},
                ["code", "message"],
            ),
        },
        ["success", "error"],
    ),
    "Pagination": obj(
        {"total": INT, "limit": INT, "offset": INT, "hasMore": BOOL},
        ["total", "limit", "offset", "hasMore"],
    ),
    "Id": obj({"id": STR}, ["id"]),
    "Health": obj(
        {
            "status": {"enum": ["healthy", "unhealthy"]},
            "version": STR,
            "uptimeSeconds": {"type": "number"},
            "provider": STR,
            "storage": STR,
            "workers": {"type": "integer", "minimum": 1},
            "checks": obj({"database": STR, "storage": STR}, ["database", "storage"]),
        },
        ["status", "version", "uptimeSeconds", "provider", "storage", "workers"],
    ),
    "Info": obj(
        {
            "name": STR,
            "version": STR,
            "provider": STR,
            "storage": STR,
            "limits": {"type": "object"},
            "formats": {"type": "array", "items": STR},
            "aspectRatios": {"type": "object"},
            "templates": {"type": "array", "items": STR},
        },
        ["name", "version", "provider", "limits", "formats", "aspectRatios", "templates"],
    ),
    "BootstrapKey": obj({"key": STR, "id": STR, "type": STR}, ["key", "id", "type"]),
    "ApiKey": obj(
        {
            "id": STR,
            "name": nullable(STR),
            "type": {"enum": ["master", "project"]},
            "organizationSlug": nullable(STR),
            "projectSlug": nullable(STR),
            "keyPrefix": STR,
            "createdAt": TIME,
            "expiresAt": nullable(TIME),
            "lastUsedAt": nullable(TIME),
            "isActive": BOOL,
        },
        ["id", "type", "keyPrefix", "createdAt", "isActive"],
    ),
    "CreatedApiKey": {"allOf": [ref("ApiKey"), obj({"key": STR}, ["key"])]},
    "RevokedKey": obj({"id": STR, "isActive": {"const": False}}, ["id", "isActive"]),
    "Project": obj(
        {
            "id": STR,
            "organizationId": STR,
            "organizationSlug": STR,
            "slug": STR,
            "name": STR,
            "allowNewLiveScopes": BOOL,
            "newLiveScopesGenerationLimit": INT,
            "createdAt": TIME,
            "updatedAt": TIME,
        },
        ["id", "slug", "allowNewLiveScopes", "newLiveScopesGenerationLimit"],
    ),
    "Image": obj(
        {
            "id": STR,
            "projectId": STR,
            "flowId": nullable(STR),
            "generationId": nullable(STR),
            "storageKey": STR,
            "storageUrl": STR,
            "mimeType": {"enum": ["image/png", "image/jpeg", "image/webp"]},
            "fileSize": INT,
            "fileHash": STR,
            "width": INT,
            "height": INT,
            "source": {"enum": ["generated", "uploaded"]},
            "alias": nullable(STR),
            "focalPoint": nullable(
                obj({"x": {"type": "number"}, "y": {"type": "number"}}, ["x", "y"])
            ),
            "meta": META,
            "createdAt": TIME,
            "updatedAt": TIME,
        },
        _IMAGE_FIELDS,
    ),
    "Generation": obj(
        {
            "id": STR,
            "projectId": STR,
            "flowId": nullable(STR),
            "prompt": STR,
            "originalPrompt": nullable(STR),
            "autoEnhance": BOOL,
            "aspectRatio": {"enum": list(ASPECT_RATIOS)},
            "status": {"enum": ["pending", "processing", "success", "failed"]},
            "outputImageId": nullable(STR),
            "outputImage": nullable(ref("Image")),
            "referencedImages": {
                "type": "array",
                "items": obj({"imageId": STR, "alias": nullable(STR)}, ["imageId", "alias"]),
            },
            "referenceImages": {"type": "array", "items": ref("Image")},
            "processingTimeMs": nullable(INT),
            "retryCount": INT,
            "errorMessage": nullable(STR),
            "meta": META,
            "createdAt": TIME,
            "updatedAt": TIME,
        },
        [
            "id",
            "projectId",
            "flowId",
            "prompt",
            "status",
            "outputImageId",
            "retryCount",
            "referencedImages",
            "referenceImages",
            "meta",
            "createdAt",
            "updatedAt",
        ],
    ),
    "Flow": obj(
        {
            "id": STR,
            "projectId": STR,
            "aliases": {"type": "object", "additionalProperties": STR},
            "generationCount": INT,
            "imageCount": INT,
            "meta": META,
            "createdAt": TIME,
            "updatedAt": TIME,
        },
        ["id", "projectId", "aliases", "generationCount", "imageCount", "meta"],
    ),
    "Scope": obj(
        {
            "id": STR,
            "projectId": STR,
            "slug": STR,
            "allowNewGenerations": BOOL,
            "newGenerationsLimit": INT,
            "currentGenerations": INT,
            "lastGeneratedAt": nullable(TIME),
            "meta": META,
            "createdAt": TIME,
            "updatedAt": TIME,
        },
        [
            "id",
            "projectId",
            "slug",
            "allowNewGenerations",
            "newGenerationsLimit",
            "currentGenerations",
            "lastGeneratedAt",
        ],
    ),
    "ScopeWithImages": {
        "allOf": [
            ref("Scope"),
            obj({"images": {"type": "array", "items": ref("Image")}}, ["images"]),
        ]
    },
    "ScopeRegenerated": obj(
        {"regenerated": INT, "images": {"type": "array", "items": ref("Image")}},
        ["regenerated", "images"],
    ),
    # request bodies
    "CreateKey": obj(
        {
            "type": {"enum": ["master", "project"]},
            "organizationSlug": STR,
            "projectSlug": STR,
            "name": STR,
            "expiresInDays": nullable(INT),
        },
        ["type"],
    ),
    "UpdateProject": obj(
        {
            "allowNewLiveScopes": BOOL,
            "newLiveScopesGenerationLimit": {"type": "integer", "minimum": 0},
        }
    ),
    "Upload": obj(
        {
            "file": {"type": "string", "format": "binary"},
            "alias": STR,
            "flowId": STR,
            "flowAlias": STR,
            "meta": {"type": "string", "description": "a JSON object as text"},
        },
        ["file"],
    ),
    "UpdateImage": obj(
        {
            "focalPoint": nullable(obj({"x": {"type": "number"}, "y": {"type": "number"}})),
            "meta": nullable(META),
        }
    ),
    "SetAlias": obj({"alias": nullable(STR)}, ["alias"]),
    "CreateGeneration": obj(
        {
            "prompt": {"type": "string", "minLength": 1, "maxLength": 5000},
            "aspectRatio": {"enum": list(ASPECT_RATIOS)},
            "referenceImages": {"type": "array", "items": STR, "maxItems": 20},
            "flowId": nullable(UUID),
            "alias": STR,
            "flowAlias": STR,
            "autoEnhance": BOOL,
            "enhancementOptions": obj({"template": {"enum": list(TEMPLATES)}}),
            "meta": META,
        },
        ["prompt"],
    ),
    "UpdateGeneration": obj(
        {
            "prompt": STR,
            "aspectRatio": {"enum": list(ASPECT_RATIOS)},
            "flowId": nullable(UUID),
            "meta": nullable(META),
        }
    ),
    "CreateFlow": obj({"meta": META, "aliases": {"type": "object", "additionalProperties": STR}}),
    "SetFlowAliases": obj(
        {"aliases": {"type": "object", "additionalProperties": STR}}, ["aliases"]
    ),
    "CreateScope": obj(
        {"slug": STR, "allowNewGenerations": BOOL, "newGenerationsLimit": INT, "meta": META},
        ["slug"],
    ),
    "UpdateScope": obj({"allowNewGenerations": BOOL, "newGenerationsLimit": INT, "meta": META}),
    "RegenerateScope": obj({"imageId": STR}),
}


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
    content: str = "application/json"
    extra: JSON = field(default_factory=dict)


PAGED = ("limit", "offset")
V1 = (400, 401, 403, 429)

OPERATIONS: Final[dict[tuple[str, str], Op]] = {
    ("GET", "/health"): Op("system", raw="Health", extra_ok=(503,)),
    ("GET", "/api/info"): Op("system", returns="Info"),
    ("GET", "/api/v1/openapi.json"): Op("system", raw="OpenApi"),
    ("GET", "/docs"): Op("system", content="text/html"),
    ("GET", "/docs/<asset:str>"): Op("system", content="application/octet-stream", errors=(404,)),
    ("POST", "/api/bootstrap/initial-key"): Op("keys", 201, "BootstrapKey", errors=(403,)),
    ("POST", "/api/admin/keys"): Op("keys", 201, "CreatedApiKey", body="CreateKey", errors=(400, 401, 403)),
    ("GET", "/api/admin/keys"): Op("keys", returns="ApiKey", many=True, query=PAGED, errors=(400, 401, 403)),
    ("DELETE", "/api/admin/keys/<key_id:str>"): Op("keys", returns="RevokedKey", errors=(401, 403, 404)),
    ("GET", "/api/v1/project"): Op("project", returns="Project", errors=V1),
    ("PUT", "/api/v1/project"): Op("project", returns="Project", body="UpdateProject", errors=V1),
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
    ("GET", "/api/v1/live/generate"): Op("live", image=True, query=("prompt", "scope", "aspectRatio", "autoEnhance", "template"), errors=(*V1, 404, 502, 503)),
    ("POST", "/api/v1/live/scopes"): Op("live", 201, "Scope", body="CreateScope", errors=(*V1, 409)),
    ("GET", "/api/v1/live/scopes"): Op("live", returns="Scope", many=True, query=PAGED, errors=V1),
    ("GET", "/api/v1/live/scopes/<slug:str>"): Op("live", returns="ScopeWithImages", page_images=True, query=PAGED, errors=(*V1, 404)),
    ("PUT", "/api/v1/live/scopes/<slug:str>"): Op("live", returns="Scope", body="UpdateScope", errors=(*V1, 404)),
    ("POST", "/api/v1/live/scopes/<slug:str>/regenerate"): Op("live", returns="ScopeRegenerated", body="RegenerateScope", errors=(*V1, 404, 503)),
    ("DELETE", "/api/v1/live/scopes/<slug:str>"): Op("live", returns="Id", errors=(*V1, 404)),
    ("GET", "/cdn/<org:str>/<project:str>/live/<scope:str>"): Op("public", image=True, query=("prompt", "aspectRatio", "autoEnhance", "template"), errors=(400, 403, 404, 429, 502, 503)),
    ("GET", "/cdn/<org:str>/<project:str>/img/<ref:str>"): Op("public", image=True, errors=(404, 503)),
    ("HEAD", "/cdn/<org:str>/<project:str>/img/<ref:str>"): Op("public", image=True, errors=(404, 503)),
}  # fmt: skip

QUERY: Final[dict[str, JSON]] = {
    "limit": {"type": "integer"},
    "offset": {"type": "integer"},
    "flowId": {"type": "string"},
    "source": {"enum": ["generated", "uploaded"]},
    "alias": {"type": "string"},
    "status": {"enum": ["pending", "processing", "success", "failed"]},
    "includeDeleted": {"type": "string"},
    "prompt": {"type": "string", "minLength": 1, "maxLength": 2000},
    "scope": {"type": "string"},
    "aspectRatio": {"enum": list(ASPECT_RATIOS)},
    "autoEnhance": {"enum": ["true", "false"]},
    "template": {"enum": list(TEMPLATES)},
}

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
    if op.page_images:
        properties["pagination"] = ref("Pagination")
    return obj(properties, ["success", "data"])


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
    error = {"content": {"application/json": {"schema": ref("Error")}}}
    codes = set(op.errors) | ({405, 413} if access != "public" or op.body else set())
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
        operation["security"] = [{"apiKey": []}]
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
                                    "UpdateScope", "CreateKey"),
            "content": {media: {"schema": ref(op.body)}},
        }  # fmt: skip
    return operation


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
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
        },
    }
