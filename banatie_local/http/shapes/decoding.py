"""Decoding a body into a shape, with the contract's error for the first problem;
and the document's ``components.schemas``."""

from __future__ import annotations

import json
from typing import Any, Final

import pydantic
from pydantic.json_schema import models_json_schema
from sanic.request import Request

from banatie_local.errors import ValidationError
from banatie_local.http.shapes.base import (
    JSON,
    S,
    Shape,
)
from banatie_local.http.shapes.openai import (
    OpenAiEdit,
    OpenAiError,
    OpenAiGenerate,
    OpenAiImages,
    OpenAiModel,
    OpenAiModelList,
    OpenAiVariation,
)
from banatie_local.http.shapes.requests import (
    CreateFlow,
    CreateGeneration,
    CreateKey,
    CreateScope,
    LegacyEnhance,
    LegacyGenerate,
    LegacyTextToImage,
    LegacyUpload,
    RegenerateScope,
    SetAlias,
    SetFlowAliases,
    SignUrl,
    UpdateGeneration,
    UpdateImage,
    UpdateProject,
    UpdateScope,
    Upload,
)
from banatie_local.http.shapes.responses import (
    ApiKey,
    BootstrapKey,
    CreatedApiKey,
    Error,
    Flow,
    Generation,
    Health,
    IdOnly,
    Image,
    Info,
    LegacyEnhanced,
    LegacyError,
    LegacyGenerated,
    LegacyUploaded,
    Pagination,
    Project,
    RevokedKey,
    Scope,
    ScopeRegenerated,
    ScopeWithImages,
    SignedUrl,
    SigningSecretOut,
)
from banatie_local.http.validation import parse_json

REQUESTS: Final = (
    CreateKey, UpdateProject, UpdateImage, SetAlias, CreateGeneration, UpdateGeneration,
    CreateFlow, SetFlowAliases, CreateScope, UpdateScope, RegenerateScope, Upload,
    LegacyGenerate, LegacyTextToImage, LegacyUpload, LegacyEnhance,
    OpenAiGenerate, OpenAiEdit, OpenAiVariation, SignUrl,
)  # fmt: skip
RESPONSES: Final = (
    Pagination, Error, IdOnly, Health, Info, BootstrapKey, ApiKey, CreatedApiKey, RevokedKey,
    Project, Image, Generation, Flow, Scope, ScopeWithImages, ScopeRegenerated,
    LegacyError, LegacyGenerated, LegacyUploaded, LegacyEnhanced,
    OpenAiImages, OpenAiModel, OpenAiModelList, OpenAiError, SigningSecretOut, SignedUrl,
)  # fmt: skip
# The document's historical names for two shapes whose class names would shadow builtins.
_RENAMED: Final = {"IdOnly": "Id"}


def component_schemas() -> JSON:
    """``components.schemas`` of the OpenAPI document: requests as accepted,
    responses as produced."""
    pairs = [(m, "validation") for m in REQUESTS] + [(m, "serialization") for m in RESPONSES]
    _, document = models_json_schema(
        pairs,  # type: ignore[arg-type]
        by_alias=True,
        ref_template="#/components/schemas/{model}",
    )
    schemas: JSON = document.get("$defs", {})
    renamed = {_RENAMED.get(name, name): schema for name, schema in schemas.items()}
    text = json.dumps(renamed)
    for old, new in _RENAMED.items():
        text = text.replace(f'"#/components/schemas/{old}"', f'"#/components/schemas/{new}"')
    result: JSON = json.loads(text)
    return result


# -------------------------------------------------------------------- decode


_MISSING_BODY: Final = "the request body must be a JSON object."


def decode(request: Request, shape: type[S], required: bool = True) -> S:
    """The body as ``shape``; an empty body is ``{}`` unless ``required``."""
    raw = request.body
    if not raw or not raw.strip():
        if required:
            raise ValidationError(_MISSING_BODY, field="body")
        data: Any = {}
    else:
        data = parse_json(raw, "body")
        if not isinstance(data, dict):
            raise ValidationError(_MISSING_BODY, field="body")
    return validate(shape, data)


def validate(shape: type[S], data: Any) -> S:
    """``data`` (already parsed) as ``shape``, or the first problem as a 400."""
    try:
        return shape.model_validate(data)
    except pydantic.ValidationError as exc:
        raise refusal(shape, exc.errors(include_url=False)[0]) from None


def refusal(shape: type[Shape], error: Any) -> ValidationError:
    """One pydantic error as the API's 400: the field, a sentence naming the limit,
    and the code the field declares (``x-error-code``)."""
    field, code = _field_of(shape, error["loc"])
    if error["type"] == "literal_error" and not isinstance(error.get("input"), str):
        error = {**error, "type": "string_type"}  # every enum here is one of strings
    if error["type"].endswith("_type") or error["type"] == "missing":
        code = None  # a wrong JSON type is a plain validation error, whatever the field
    return ValidationError(_sentence(field, error), code, field=field)


def _field_of(shape: type[Shape], loc: tuple[Any, ...]) -> tuple[str, str | None]:
    """The wire name of the field at ``loc`` (list indexes, dict keys and union
    branches dropped) and the innermost error code declared along it."""
    schema = _schema(shape)
    defs = schema.get("$defs", {})
    names: list[str] = []
    code: str | None = None
    node: Any = schema
    for part in loc:
        resolved = _resolve(node, defs)
        if part == "[key]":  # a dict key (a flow alias) breaks its own format
            code = _find_code(resolved.get("propertyNames"), defs) or code
            continue
        properties = resolved.get("properties", {})
        if not isinstance(part, str) or part not in properties:
            continue  # an index, a dict key or a branch name: same field
        names.append(part)
        node = properties[part]
        code = _find_code(node, defs) or code
        if _resolve(node, defs).get("x-one-field"):
            break
    return ".".join(names) or "body", code


def _schema(shape: type[Shape]) -> JSON:
    cached = _SCHEMAS.get(shape)
    if cached is None:
        cached = _SCHEMAS[shape] = shape.model_json_schema(by_alias=True)
    return cached


_SCHEMAS: dict[type[Shape], JSON] = {}


def _resolve(node: Any, defs: JSON) -> JSON:
    """A property's object schema: through ``$ref`` and a nullable ``anyOf``."""
    if not isinstance(node, dict):
        return {}
    if "$ref" in node:
        return _resolve(defs.get(node["$ref"].rsplit("/", 1)[-1], {}), defs)
    for branch in node.get("anyOf", ()):
        found = _resolve(branch, defs)
        if found.get("type") == "object":
            return found
    return node


def _find_code(node: Any, defs: JSON) -> str | None:
    if not isinstance(node, dict):
        return None
    if "x-error-code" in node:
        return str(node["x-error-code"])
    for branch in (*node.get("anyOf", ()), *node.get("allOf", ())):
        if isinstance(branch, dict) and "$ref" not in branch:
            found = _find_code(branch, defs)
            if found:
                return found
    return None


_SENTENCES: Final = {
    "missing": "{field} is required.",
    "string_type": "{field} must be a string.",
    "string_too_long": "{field} must be at most {max_length} characters.",
    "string_too_short": "{field} must not be empty.",
    "string_pattern_mismatch": "{field} has the wrong format (it must match {pattern}).",
    "int_type": "{field} must be a whole number.",
    "int_from_float": "{field} must be a whole number.",
    "float_type": "{field} must be a number.",
    "finite_number": "{field} must be a finite number.",
    "greater_than_equal": "{field} must be at least {ge}.",
    "less_than_equal": "{field} must be at most {le}.",
    "bool_type": "{field} must be true or false.",
    "dict_type": "{field} must be a JSON object.",
    "model_type": "{field} must be a JSON object.",
    "list_type": "{field} must be an array.",
    "too_long": "{field} accepts at most {max_length} entries.",
    "literal_error": "{field} must be one of {expected}.",
    "bytes_type": "{field} must be a file.",
    "string_unicode": "{field} must be valid Unicode text: it holds an unpaired UTF-16 surrogate.",
}


def _sentence(field: str, error: Any) -> str:
    template = _SENTENCES.get(error["type"])
    if template is None:
        return f"{field} is not valid: {error['msg']}."
    return template.format(field=field, **(error.get("ctx") or {}))
