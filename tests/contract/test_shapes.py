"""The document and the runtime agree, limit by limit.

For every request shape in the OpenAPI document, every declared limit (``maxLength``,
``maxItems``, ``maxProperties``, ``minimum``, ``maximum``) is tried with a value just
inside — accepted — and just outside — refused with the field's documented code
(``x-error-code``, else ``VALIDATION_ERROR``) and a message naming the limit. Then the
drift cases that once slipped through are pinned over HTTP.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from banatie_local.constants import MAX_PROMPT_LENGTH
from banatie_local.errors import ValidationError
from banatie_local.http import shapes
from banatie_local.http.app import ROUTES
from banatie_local.http.openapi import build_document
from tests.conftest import Running

SCHEMAS = build_document(ROUTES)["components"]["schemas"]
REQUEST_SHAPES = {m.__name__: m for m in (*shapes.REQUESTS, shapes.FocalPoint)}
LIMITS = ("maxLength", "maxItems", "maxProperties", "minimum", "maximum")


def _branch(schema: dict[str, Any]) -> dict[str, Any]:
    """The non-null branch of a nullable property."""
    for option in schema.get("anyOf", ()):
        if option.get("type") != "null":
            return option
    return schema


def _string(schema: dict[str, Any], length: int) -> str:
    pattern = schema.get("pattern", "")
    return ("@" + "a" * (length - 1)) if pattern.startswith("^@") else "a" * length


def _valid(schema: dict[str, Any]) -> Any:
    """A small value the schema accepts."""
    schema = _branch(schema)
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return {k: _valid(v) for k, v in SCHEMAS[name]["properties"].items()
                if k in SCHEMAS[name].get("required", ())}  # fmt: skip
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if schema.get("format") == "binary":
        return b"x"
    if kind == "string":
        return _string(schema, max(1, schema.get("minLength", 1)))
    if kind == "integer":
        return schema.get("minimum", 0)
    if kind == "number":
        return schema.get("minimum", 0)
    if kind == "boolean":
        return True
    if kind == "array":
        return [_valid(schema.get("items", {}))] * schema.get("minItems", 0)
    return {}


def _pair(schema: dict[str, Any], limit: str) -> tuple[Any, Any]:
    """(just inside, just outside) of one limit."""
    bound = schema[limit]
    if limit == "maxLength":
        return _string(schema, bound), _string(schema, bound + 1)
    if limit == "maxItems":
        item = _valid(schema.get("items", {}))
        return [item] * bound, [item] * (bound + 1)
    if limit == "maxProperties":
        extra = schema.get("additionalProperties")
        default = {"": extra if isinstance(extra, dict) else {}}
        pattern, value_schema = next(iter(schema.get("patternProperties", default).items()))
        keys = [_string({"pattern": pattern}, 2) + str(n) for n in range(bound + 1)]
        value = _valid(value_schema)
        return dict.fromkeys(keys[:bound], value), dict.fromkeys(keys, value)
    step = 1 if schema.get("type") == "integer" else 1e-6
    if limit == "maximum":
        return bound, bound + step
    return bound, bound - step


def _cases() -> list[Any]:
    cases = []
    for name, shape in REQUEST_SHAPES.items():
        schema = SCHEMAS[name]
        for field, prop in schema["properties"].items():
            inner = _branch(prop)
            for limit in LIMITS:
                if limit in inner:
                    cases.append(
                        pytest.param(shape, field, inner, limit, id=f"{name}.{field}.{limit}")
                    )
    return cases


CASES = _cases()


def test_every_request_limit_is_covered() -> None:
    """The walk found the limits the issue named, so it cannot pass by finding none."""
    ids = {case.id for case in CASES}
    assert {"CreateGeneration.prompt.maxLength", "CreateGeneration.alias.maxLength",
            "CreateScope.slug.maxLength", "CreateGeneration.referenceImages.maxItems",
            "CreateKey.expiresInDays.maximum", "SetFlowAliases.aliases.maxProperties",
            "FocalPoint.x.maximum"} <= ids  # fmt: skip
    assert len(ids) >= 20


@pytest.mark.parametrize(("shape", "field", "schema", "limit"), CASES)
def test_a_limit_just_inside_passes_and_just_outside_is_refused(
    shape: type[shapes.Shape], field: str, schema: dict[str, Any], limit: str
) -> None:
    document = SCHEMAS[shape.__name__]
    base = {k: _valid(v) for k, v in document["properties"].items()
            if k in document.get("required", ())}  # fmt: skip
    inside, outside = _pair(schema, limit)
    shapes.validate(shape, {**base, field: inside})
    with pytest.raises(ValidationError) as refused:
        shapes.validate(shape, {**base, field: outside})
    error = refused.value
    assert error.code == schema.get("x-error-code", "VALIDATION_ERROR")
    assert error.details == {"field": field}
    assert str(schema[limit]) in error.message


# ------------------------------------------------------------------ over HTTP


@pytest.fixture(scope="module")
def fast(module_app: Running) -> Running:
    """Every request here is refused before any write."""
    return module_app


def _refused(response: httpx.Response, code: str, field: str, words: str) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["details"]["field"]) == (code, field)
    assert words in error["message"]


@pytest.mark.parametrize("length", [MAX_PROMPT_LENGTH + 1, 6000, 200_000])
def test_a_long_prompt_is_told_the_contract_limit(fast: Running, length: int) -> None:
    response = fast.project("POST", "/api/v1/generations", json={"prompt": "a" * length})
    _refused(response, "VALIDATION_ERROR", "prompt", f"at most {MAX_PROMPT_LENGTH} characters")


@pytest.mark.parametrize("length", [51, 1001, 100_000])
def test_a_long_alias_is_an_alias_format_error(fast: Running, length: int) -> None:
    alias = "@" + "a" * (length - 1)
    response = fast.project("POST", "/api/v1/generations", json={"prompt": "p", "alias": alias})
    _refused(response, "INVALID_ALIAS_FORMAT", "alias", "at most 50 characters")
    response = fast.project("PUT", "/api/v1/images/@x/alias", json={"alias": alias})
    _refused(response, "INVALID_ALIAS_FORMAT", "alias", "at most 50 characters")


@pytest.mark.parametrize("slug", ["a" * 65, "a" * 1001, "a" * 100_000, "bad slug"])
def test_a_bad_scope_slug_of_any_length_is_a_scope_format_error(fast: Running, slug: str) -> None:
    response = fast.project("POST", "/api/v1/live/scopes", json={"slug": slug})
    _refused(response, "SCOPE_INVALID_FORMAT", "slug", "")


def test_the_document_states_the_limits_from_their_one_place(fast: Running) -> None:
    """The served document and /api/info carry the constants, not copies."""
    document = httpx.get(f"{fast.url}/api/v1/openapi.json").json()
    prompt = document["components"]["schemas"]["CreateGeneration"]["properties"]["prompt"]
    assert prompt["maxLength"] == MAX_PROMPT_LENGTH
    info = httpx.get(f"{fast.url}/api/info").json()["data"]
    assert info["limits"]["maxPromptLength"] == MAX_PROMPT_LENGTH
