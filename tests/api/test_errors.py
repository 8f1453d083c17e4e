"""Every error source renders the one envelope of API.md §0.1."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sanic.request import Request
from sanic.response import HTTPResponse

from banatie_local.http import create_app
from banatie_local.http.responses import is_legacy
from banatie_local.services.container import initialize, open_services
from tests.conftest import Running
from tests.helpers import LiveServer, make_settings


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["success"] is False
    sent = getattr(response, "_request", None)  # None for a response read off a socket
    if sent is not None and is_legacy(sent.url.path):  # API.md §10: a flat message beside it
        assert set(body) == {"success", "message", "error"}
        assert body["message"] == body["error"]["message"]
    else:
        assert set(body) == {"success", "error"}
    error = body["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str)
    assert error["message"]
    assert set(error) <= {"code", "message", "details"}
    return error


def test_unknown_route_is_not_found(app: Running) -> None:
    assert_error(app.client.get("/no/such/route"), 404, "NOT_FOUND")
    assert_error(app.project("GET", "/api/v1/nothing-here"), 404, "NOT_FOUND")


def test_wrong_method_is_405_with_allow_header(app: Running) -> None:
    response = app.client.delete("/health")
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert "GET" in response.headers["allow"]


def test_invalid_json_names_the_body(app: Running) -> None:
    error = assert_error(
        app.admin("POST", "/api/admin/keys", content=b"{not json"), 400, "VALIDATION_ERROR"
    )
    assert error["details"] == {"field": "body"}


@pytest.mark.parametrize("payload", [b"[1, 2]", b'"text"', b"42", b"null"])
def test_json_of_the_wrong_type_is_rejected(app: Running, payload: bytes) -> None:
    response = app.project("PUT", "/api/v1/project", content=payload)
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["details"] == {"field": "body"}


def test_field_errors_name_the_field(app: Running) -> None:
    response = app.admin("POST", "/api/admin/keys", json={"type": "project", "name": 5})
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["details"] == {"field": "name"}
    assert "name" in str(error["message"])
    missing = assert_error(app.admin("POST", "/api/admin/keys", json={}), 400, "VALIDATION_ERROR")
    assert missing["details"] == {"field": "type"}


def test_invalid_utf8_body_is_a_validation_error(app: Running) -> None:
    response = app.admin("POST", "/api/admin/keys", content=b'{"type": "\xff\xfe"}')
    assert_error(response, 400, "VALIDATION_ERROR")


def test_missing_key_is_401(app: Running) -> None:
    assert_error(app.client.get("/api/v1/project"), 401, "MISSING_API_KEY")


def test_oversized_body_is_413(start_server: Callable[..., Running]) -> None:
    running = start_server(server__max_upload_mb=0.1)
    limit = running.settings.max_upload_bytes + 1024 * 1024
    body = b"x" * (limit + 1)
    response = running.admin("POST", "/api/admin/keys", content=body)
    assert_error(response, 413, "FILE_TOO_LARGE")
    assert "up to 0.1 MB" in response.json()["error"]["message"]  # the limit, in MB


def test_oversized_chunked_body_is_413(start_server: Callable[..., Running]) -> None:
    running = start_server(server__max_upload_mb=0.1)
    limit = running.settings.max_upload_bytes + 1024 * 1024

    def chunks() -> object:
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536

    response = running.admin("POST", "/api/admin/keys", content=chunks())
    assert_error(response, 413, "FILE_TOO_LARGE")


def test_unexpected_exception_is_500_without_trace(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path / "data")
    services = open_services(settings)
    initialize(services)
    app = create_app(settings, services)

    async def explode(request: Request) -> HTTPResponse:
        raise RuntimeError("secret internal detail")

    app.add_route(explode, "/explode")
    server = LiveServer(app).start()
    try:
        with caplog.at_level(logging.ERROR, logger="banatie_local.http"):
            response = httpx.get(f"{server.url}/explode")
        error = assert_error(response, 500, "INTERNAL_ERROR")
        assert "secret internal detail" not in response.text
        assert "Traceback" not in response.text
        assert "RuntimeError" not in str(error)
        logged = "\n".join(r.getMessage() + str(r.exc_info) for r in caplog.records if r.exc_info)
        assert "secret internal detail" in logged
    finally:
        server.stop()


def test_error_responses_have_no_stack_or_html(app: Running) -> None:
    for response in (
        app.client.get("/x"),
        app.client.post("/health"),
        app.client.get("/api/v1/project", headers={"X-API-Key": "bnt_" + "0" * 64}),
    ):
        assert "<html" not in response.text.lower()
        assert "Traceback" not in response.text


def test_client_that_never_finishes_its_headers_gets_408(
    start_server: Callable[..., Running],
) -> None:
    import socket
    import time

    running = start_server(server__request_timeout=1)
    with socket.create_connection(("127.0.0.1", running.server.port), timeout=10) as sock:
        sock.sendall(b"POST /api/admin/keys HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        elapsed = time.monotonic() - started
    assert elapsed < 5
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408")
    assert b'"code":"REQUEST_TIMEOUT"' in body


def test_post_to_an_image_path_names_the_route_that_generates(app: Running) -> None:
    """An OpenAI-style path on the v1 base is a 405 with Allow, pointing the way."""
    response = app.project("POST", "/api/v1/images/generations", json={"prompt": "a"})
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["allow"] == "DELETE, GET, PUT"
    assert "POST /api/v1/generations" in response.json()["error"]["message"]


def test_a_live_prompt_at_its_limit_fits_in_the_url_in_any_script(app: Running) -> None:
    # 2,000 Cyrillic characters are 12 KB percent-encoded: within what the server reads
    prompt = "д" * 2000
    response = app.client.get("/cdn/default/default/live/scripts", params={"prompt": prompt})
    assert response.status_code == 200, response.text[:200]
    assert response.headers["content-type"].startswith("image/")


def test_a_url_past_what_the_server_reads_is_a_431_that_says_so(app: Running) -> None:
    response = app.client.get("/api/v1/images", params={"alias": "x" * 20_000})
    error = assert_error(response, 431, "HEADERS_TOO_LARGE")
    assert "16 KB" in str(error["message"])
