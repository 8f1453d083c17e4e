"""The per-project-key rate limit and its headers (API.md §8)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.api.test_errors import assert_error
from tests.conftest import Running

pytestmark = pytest.mark.both_databases


def test_every_v1_response_carries_the_headers(start_server: Callable[..., Running]) -> None:
    running = start_server(limits__requests_per_hour=3)
    before = time.time()
    remaining = []
    for _ in range(3):
        response = running.project("GET", "/api/v1/project")
        assert response.status_code == 200
        assert response.headers["X-RateLimit-Limit"] == "3"
        remaining.append(int(response.headers["X-RateLimit-Remaining"]))
        reset = int(response.headers["X-RateLimit-Reset"])
        assert before + 3600 - 1 <= reset <= time.time() + 3600 + 1
    assert remaining == [2, 1, 0]


def test_over_the_limit_is_429_with_retry_after(start_server: Callable[..., Running]) -> None:
    running = start_server(limits__requests_per_hour=2)
    for _ in range(2):
        assert running.project("GET", "/api/v1/project").status_code == 200
    response = running.project("GET", "/api/v1/project")
    assert_error(response, 429, "RATE_LIMIT_EXCEEDED")
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert 3590 <= int(response.headers["Retry-After"]) <= 3600
    # refused requests are not counted, and they stay refused
    again = running.project("GET", "/api/v1/project")
    assert again.status_code == 429


def test_error_responses_count_and_carry_headers(start_server: Callable[..., Running]) -> None:
    running = start_server(limits__requests_per_hour=5)
    response = running.project("PUT", "/api/v1/project", content=b"{bad json")
    assert_error(response, 400, "VALIDATION_ERROR")
    assert response.headers["X-RateLimit-Remaining"] == "4"


def test_keys_have_separate_budgets(start_server: Callable[..., Running]) -> None:
    running = start_server(limits__requests_per_hour=1)
    other = running.admin("POST", "/api/admin/keys", json={"type": "project"}).json()["data"]
    assert running.project("GET", "/api/v1/project").status_code == 200
    assert running.project("GET", "/api/v1/project").status_code == 429
    response = running.client.get("/api/v1/project", headers={"X-API-Key": other["key"]})
    assert response.status_code == 200


def test_master_keys_are_not_limited(start_server: Callable[..., Running]) -> None:
    running = start_server(limits__requests_per_hour=1)
    for _ in range(4):
        response = running.admin("GET", "/api/admin/keys")
        assert response.status_code == 200
        assert "X-RateLimit-Limit" not in response.headers


def test_unauthenticated_requests_are_not_counted(start_server: Callable[..., Running]) -> None:
    running = start_server(limits__requests_per_hour=1)
    for _ in range(3):
        assert running.client.get("/api/v1/project").status_code == 401
    assert running.project("GET", "/api/v1/project").status_code == 200


def test_zero_turns_the_limit_off(start_server: Callable[..., Running]) -> None:
    running = start_server(limits__requests_per_hour=0)
    for _ in range(5):
        response = running.project("GET", "/api/v1/project")
        assert response.status_code == 200
        assert "X-RateLimit-Limit" not in response.headers
