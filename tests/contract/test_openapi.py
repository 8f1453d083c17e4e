"""The OpenAPI document describes exactly the routes the server has, and /docs works
with nothing loaded from outside the appliance."""

from __future__ import annotations

import re

from openapi_spec_validator import validate

from banatie_local.http.app import ROUTES
from banatie_local.http.openapi import openapi_path
from tests.conftest import Running


def test_document_is_valid_openapi_31(app: Running) -> None:
    response = app.client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"] == "3.1.0"
    validate(document)


def test_document_and_routes_match_both_ways(app: Running) -> None:
    """A route the document does not describe, or the other way round, fails here."""
    document = app.client.get("/api/v1/openapi.json").json()
    described = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }
    served = set()
    for route in app.server.app.router.routes:
        path = "/" + route.path if not route.path.startswith("/") else route.path
        for method in route.methods:
            served.add((method, openapi_path(re.sub(r"<([a-z_]+)(:[a-z]+)?>", r"<\1:str>", path))))
    assert served == described
    assert {(m, openapi_path(p)) for _, m, p, _ in ROUTES} == described


def test_every_operation_documents_its_errors(app: Running) -> None:
    document = app.client.get("/api/v1/openapi.json").json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert operation["summary"], (method, path)
            assert operation["responses"], (method, path)
            keyed = path.startswith(("/api/v1/", "/api/admin/", "/v1/")) or path in LEGACY_POSTS
            if keyed and path != "/api/v1/openapi.json":
                assert "401" in operation["responses"], (method, path)
                # X-API-Key, or Authorization: Bearer (what OpenAI clients send)
                assert operation["security"] == [{"apiKey": []}, {"bearer": []}], (method, path)


LEGACY_POSTS = ("/api/generate", "/api/text-to-image", "/api/upload", "/api/enhance")


def test_docs_page_loads_nothing_from_outside(app: Running) -> None:
    page = app.client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources == ["/docs/swagger-ui.css", "/docs/swagger-ui-bundle.js"]
    assert "validatorUrl: null" in page.text
    assert not re.search(r"https?://", page.text)
    for source in sources:
        asset = app.client.get(source)
        assert asset.status_code == 200
        assert len(asset.content) > 10_000
    assert app.client.get("/docs/../banatie.db").status_code == 404
    assert app.client.get("/docs/other.js").status_code == 404
