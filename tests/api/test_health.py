"""GET /health and GET /api/info over real HTTP."""

from __future__ import annotations

import shutil
from collections.abc import Callable

from banatie_local import __version__
from banatie_local.constants import ASPECT_RATIOS, TEMPLATES
from tests.conftest import Running


def test_health_reports_version_provider_and_storage(app: Running) -> None:
    response = app.client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["version"] == __version__
    assert body["provider"] == "offline"
    assert body["storage"] == "local"
    assert body["uptimeSeconds"] >= 0
    assert body["checks"] == {"database": "ok", "storage": "ok"}


def test_health_needs_no_key_and_ignores_a_bad_one(app: Running) -> None:
    response = app.client.get("/health", headers={"X-API-Key": "nonsense"})
    assert response.status_code == 200


def test_health_is_503_when_storage_is_unusable(app: Running) -> None:
    root = app.settings.storage_root
    shutil.rmtree(root, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    root.write_bytes(b"not a directory")  # the backend can no longer write anywhere
    response = app.client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert body["checks"]["storage"] == "failing"
    assert body["checks"]["database"] == "ok"


def test_provider_is_gemini_when_a_key_is_configured(
    start_server: Callable[..., Running],
) -> None:
    running = start_server(generation__gemini_api_key="test-key")
    assert running.client.get("/health").json()["provider"] == "gemini"
    assert running.client.get("/api/info").json()["data"]["provider"] == "gemini"


def test_info_lists_limits_formats_ratios_and_templates(
    start_server: Callable[..., Running],
) -> None:
    running = start_server(server__max_upload_mb=2)
    response = running.client.get("/api/info")
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    data = body["data"]
    assert data["name"] == "banatie-local"
    assert data["version"] == __version__
    assert data["provider"] == "offline"
    assert data["limits"]["maxUploadBytes"] == 2 * 1024 * 1024
    assert data["limits"]["maxReferenceImages"] == 3
    assert data["formats"] == ["image/png", "image/jpeg", "image/webp"]
    assert data["aspectRatios"]["16:9"] == {"width": 1792, "height": 1008}
    assert set(data["aspectRatios"]) == set(ASPECT_RATIOS)
    assert data["templates"] == list(TEMPLATES)
