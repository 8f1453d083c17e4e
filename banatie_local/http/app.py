"""``create_app(settings)``: a fresh Sanic application with its services on ``app.ctx``.

The route map, read top to bottom:

    GET  /health                       routes/health.py   (public)
    GET  /api/info                     routes/health.py   (public)
    POST /api/bootstrap/initial-key    routes/admin.py    (public, only while keyless)
    *    /api/admin/keys[/<id>]        routes/admin.py    (master key)
    *    /api/v1/project               routes/project.py  (project key, rate limited)
"""

from __future__ import annotations

import itertools
from typing import Any

from sanic import Blueprint, Sanic

from banatie_local.config import Settings
from banatie_local.http import errors
from banatie_local.http.auth import attach_rate_headers, require_project_key
from banatie_local.http.responses import dumps
from banatie_local.http.routes import admin, health, project
from banatie_local.services.container import Services, open_services

# Sanic keeps a registry of app names; each factory call needs its own.
_app_numbers = itertools.count(1)

# Room for the multipart envelope around an upload of exactly the limit.
_BODY_OVERHEAD_BYTES = 1024 * 1024


def create_app(settings: Settings, services: Services | None = None) -> Sanic[Any, Any]:
    """Build the application. ``services`` is opened from ``settings`` if not given."""
    services = services or open_services(settings)
    name = f"banatie_local_{next(_app_numbers)}"
    app: Sanic[Any, Any] = Sanic(name, dumps=dumps, configure_logging=False)
    generation_budget = settings.generation.timeout_seconds * (settings.generation.max_retries + 1)
    app.config.update(
        {
            "MOTD": False,
            "ACCESS_LOG": settings.server.access_log,
            "FALLBACK_ERROR_FORMAT": "json",
            "REQUEST_MAX_SIZE": settings.max_upload_bytes + _BODY_OVERHEAD_BYTES,
            "REQUEST_TIMEOUT": settings.server.request_timeout,
            # A synchronous generation may use every retry of the provider.
            "RESPONSE_TIMEOUT": max(60.0, generation_budget + 60.0),
        }
    )
    app.ctx.services = services
    errors.install(app)

    v1 = Blueprint.group(project.bp, url_prefix="/api/v1")
    v1.middleware(require_project_key, "request")
    app.blueprint(health.bp)
    app.blueprint(admin.bootstrap_bp)
    app.blueprint(admin.admin_bp)
    app.blueprint(v1)
    app.on_response(attach_rate_headers)

    @app.after_server_stop
    async def _close(app: Sanic[Any, Any]) -> None:
        app.ctx.services.close()

    return app
