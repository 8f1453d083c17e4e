"""Text that is not text: an unpaired UTF-16 surrogate (``"\\ud800"`` is valid JSON)
in any field of any JSON body, nested or as an object key, in a form field or a
query string, is refused with 400 ``VALIDATION_ERROR`` naming the field, or handled —
never a 500, and nothing is stored.

The operations and their fields come from the served OpenAPI document, so a new
route or field is covered without being listed here."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from banatie_local.http.app import ROUTES
from banatie_local.http.openapi import build_document
from tests.conftest import Running
from tests.imagedata import png_bytes

LONE = "\ud800"
DOCUMENT = build_document(ROUTES)
SCHEMAS = DOCUMENT["components"]["schemas"]


@pytest.fixture(scope="module")
def app(module_app: Running) -> Running:
    return module_app


@pytest.fixture(scope="module")
def ids(app: Running) -> dict[str, str]:
    """Existing resources for the path parameters."""
    flow = app.project("POST", "/api/v1/flows", json={}).json()["data"]
    files = {"file": ("a.png", png_bytes(), "image/png")}
    image = app.project("POST", "/api/v1/images/upload", files=files).json()["data"]
    app.project("POST", "/api/v1/live/scopes", json={"slug": "hostile"})
    generation = app.project("POST", "/api/v1/generations", json={"prompt": "a fox"}).json()
    keys = app.admin("GET", "/api/admin/keys").json()["data"]
    return {
        "flow_id": flow["id"], "ref": image["id"], "slug": "hostile",
        "generation_id": generation["data"]["id"], "key_id": keys[-1]["id"], "alias": "@x",
        "scope": "hostile",
        "org": "default", "project": "default", "category": "uploads", "filename": "a.png",
    }  # fmt: skip


def _json_operations() -> list[Any]:
    cases = []
    for path, item in DOCUMENT["paths"].items():
        for method, op in item.items():
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if body is None:
                continue
            schema = SCHEMAS[body["schema"]["$ref"].rsplit("/", 1)[-1]]
            for field, prop in schema["properties"].items():
                case = pytest.param(method.upper(), path, schema, field, prop,
                                    id=f"{method} {path} {field}")  # fmt: skip
                cases.append(case)
    return cases


def _valid(prop: dict[str, Any]) -> Any:
    for option in (prop, *prop.get("anyOf", ())):
        if "enum" in option:
            return option["enum"][0]
        if option.get("type") == "string":
            return "@ok" if option.get("pattern", "").startswith("^@") else "ok"
    return None


def _hostile(prop: dict[str, Any]) -> list[tuple[Any, str]]:
    """(value, the field the refusal must name) pairs for one property."""
    kinds = {o.get("type") for o in (prop, *prop.get("anyOf", ())) if isinstance(o, dict)}
    refs = [o for o in prop.get("anyOf", ()) if "$ref" in o] + ([prop] if "$ref" in prop else [])
    values: list[tuple[Any, str]] = []
    if "string" in kinds or "enum" in str(prop):
        values.append((f"a{LONE}b", ""))
    if "object" in kinds or refs:
        values.append(({"k": LONE}, ".k"))
        values.append(({LONE: "v"}, ""))
    if "array" in kinds:
        values.append(([LONE], ""))
    return values or [(LONE, "")]


def _send(app: Running, method: str, path: str, ids: dict[str, str], body: Any) -> httpx.Response:
    url = re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], path)
    content = json.dumps(body).encode()  # escapes the lone surrogate as \ud800
    content = content.replace(b'"__deep__"', b"[" * 5000 + b'"x"' + b"]" * 5000)
    headers = {"content-type": "application/json"}
    call = app.admin if path.startswith("/api/admin") else app.project
    return call(method, url, content=content, headers=headers)


@pytest.mark.parametrize(("method", "path", "schema", "field", "prop"), _json_operations())
def test_a_lone_surrogate_in_any_json_field_is_a_named_400(
    app: Running, ids: dict[str, str], method: str, path: str, schema: dict[str, Any],
    field: str, prop: dict[str, Any],
) -> None:  # fmt: skip
    required = {name: _valid(SCHEMAS[schema["title"]]["properties"][name])
                for name in schema.get("required", ()) if name != field}  # fmt: skip
    for value, suffix in _hostile(prop):
        response = _send(app, method, path, ids, {**required, field: value})
        assert response.status_code == 400, (value, response.text)
        error = response.json()["error"]
        assert error["code"] == "VALIDATION_ERROR", error
        # the OpenAI door names the field as OpenAI does: param
        named = error["details"]["field"] if "details" in error else error["param"]
        assert named == field + suffix, error
        assert "Unicode" in error["message"] or "string" in error["message"], error


def _get_operations() -> list[Any]:
    cases = []
    for path, item in DOCUMENT["paths"].items():
        op = item.get("get", {})
        names = [p["name"] for p in op.get("parameters", ()) if p["in"] == "query"]
        if names:
            cases.append(pytest.param(path, names, id=path))
    return cases


@pytest.mark.parametrize(("path", "names"), _get_operations())
def test_a_lone_surrogate_in_a_query_string_never_breaks_a_route(
    app: Running, ids: dict[str, str], path: str, names: list[str]
) -> None:
    url = re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], path)
    call = app.admin if path.startswith("/api/admin") else app.project
    for name in names:
        # %ED%A0%80 is U+D800 as (invalid) UTF-8
        response = call("GET", f"{url}?{name}=a%ED%A0%80b&prompt=x")
        assert response.status_code < 500, (name, response.text)


@pytest.mark.parametrize("field", ["alias", "flowId", "flowAlias", "meta"])
def test_invalid_text_in_an_upload_form_field_is_refused(app: Running, field: str) -> None:
    body = (
        b'--B\r\nContent-Disposition: form-data; name="' + field.encode() + b'"\r\n\r\n'
        b'a\xed\xa0\x80b\r\n--B\r\nContent-Disposition: form-data; name="file"; '
        b'filename="a.png"\r\nContent-Type: image/png\r\n\r\n' + png_bytes() + b"\r\n--B--\r\n"
    )
    before = app.project("GET", "/api/v1/images").json()["pagination"]["total"]
    response = app.project(
        "POST", "/api/v1/images/upload", content=body,
        headers={"content-type": "multipart/form-data; boundary=B"},
    )  # fmt: skip
    assert response.status_code == 400, response.text
    assert app.project("GET", "/api/v1/images").json()["pagination"]["total"] == before


@pytest.mark.parametrize(("method", "path", "schema", "field", "prop"), _json_operations())
def test_nul_huge_and_deeply_nested_values_never_break_a_route(
    app: Running, ids: dict[str, str], method: str, path: str, schema: dict[str, Any],
    field: str, prop: dict[str, Any],
) -> None:  # fmt: skip
    required = {name: _valid(SCHEMAS[schema["title"]]["properties"][name])
                for name in schema.get("required", ()) if name != field}  # fmt: skip
    # "__deep__" is sent as 5,000 nested arrays (more than the JSON parser will nest)
    for value in ("a\x00b", "x" * 300_000, "__deep__", {"k": "a\x00b"}, 10**400):
        response = _send(app, method, path, ids, {**required, field: value})
        assert response.status_code < 500, (field, str(value)[:40], response.text)
