"""``create_app(settings)``: a fresh Sanic application with its services on ``app.ctx``.

``ROUTES`` below is the whole route map. Each route names who may call it:
``public`` (no key), ``project`` (a project key, rate limited: ``/api/v1``) or
``master`` (a master key: ``/api/admin``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final

from sanic import Blueprint, Sanic
from sanic.exceptions import RequestTimeout
from sanic.request import Request
from sanic.response import BaseHTTPResponse, HTTPResponse

from banatie_local.config import Network, Settings
from banatie_local.http import accesslog, errors
from banatie_local.http.auth import attach_rate_headers, require_master_key, require_project_key
from banatie_local.http.clientip import client_ip
from banatie_local.http.openapi import build_document
from banatie_local.http.responses import dumps
from banatie_local.http.routes import (
    admin,
    cdn,
    docs,
    flows,
    gallery,
    generations,
    health,
    images,
    legacy,
    live,
    mcp,
    openai,
    project,
    scopes,
)
from banatie_local.metrics import Metrics
from banatie_local.services.container import Services, open_services

Handler = Callable[..., Coroutine[Any, Any, HTTPResponse | None]]

LEGACY_IMAGE: Final = "/api/images/<org:str>/<project:str>/<category:str>/<filename:str>"

ROUTES: Final[list[tuple[str, str, str, Handler]]] = [
    # access,  method,  path,                          handler
    ("public", "GET", "/health", health.health),
    ("public", "GET", "/api/info", health.info),
    ("public", "GET", "/metrics", health.metrics),
    ("public", "GET", "/api/v1/openapi.json", docs.openapi_document),
    ("public", "GET", "/docs", docs.docs_page),
    ("public", "GET", "/docs/<asset:str>", docs.docs_asset),
    ("public", "GET", "/", gallery.gallery_page),
    ("public", "GET", "/gallery/<asset:str>", gallery.gallery_asset),
    ("public", "POST", "/api/bootstrap/initial-key", admin.initial_key),
    ("master", "POST", "/api/admin/keys", admin.create_key),
    ("master", "GET", "/api/admin/keys", admin.list_keys),
    ("master", "DELETE", "/api/admin/keys/<key_id:str>", admin.revoke_key),
    ("project", "GET", "/api/v1/project", project.get_project),
    ("project", "PUT", "/api/v1/project", project.update_project),
    ("project", "GET", "/api/v1/project/signing-secret", project.get_signing_secret),
    ("project", "POST", "/api/v1/project/signing-secret/rotate", project.rotate_signing_secret),
    ("project", "POST", "/api/v1/signed-urls", project.sign_url),
    ("project", "POST", "/api/v1/images/upload", images.upload_image),
    ("project", "GET", "/api/v1/images", images.list_images),
    ("project", "GET", "/api/v1/images/<ref:str>", images.get_image),
    ("project", "PUT", "/api/v1/images/<ref:str>", images.update_image),
    ("project", "PUT", "/api/v1/images/<ref:str>/alias", images.set_image_alias),
    ("project", "DELETE", "/api/v1/images/<ref:str>", images.delete_image),
    ("project", "POST", "/api/v1/generations", generations.create_generation),
    ("project", "GET", "/api/v1/generations", generations.list_generations),
    ("project", "GET", "/api/v1/generations/<generation_id:str>", generations.get_generation),
    ("project", "PUT", "/api/v1/generations/<generation_id:str>", generations.update_generation),
    (
        "project",
        "POST",
        "/api/v1/generations/<generation_id:str>/regenerate",
        generations.regenerate_generation,
    ),
    (
        "project",
        "POST",
        "/api/v1/generations/<generation_id:str>/retry",
        generations.regenerate_generation,
    ),
    ("project", "DELETE", "/api/v1/generations/<generation_id:str>", generations.delete_generation),
    ("project", "POST", "/api/v1/flows", flows.create_flow),
    ("project", "GET", "/api/v1/flows", flows.list_flows),
    ("project", "GET", "/api/v1/flows/<flow_id:str>", flows.get_flow),
    ("project", "GET", "/api/v1/flows/<flow_id:str>/generations", flows.flow_generations),
    ("project", "GET", "/api/v1/flows/<flow_id:str>/images", flows.flow_images),
    ("project", "PUT", "/api/v1/flows/<flow_id:str>/aliases", flows.set_flow_aliases),
    (
        "project",
        "DELETE",
        "/api/v1/flows/<flow_id:str>/aliases/<alias:str>",
        flows.delete_flow_alias,
    ),
    ("project", "POST", "/api/v1/flows/<flow_id:str>/regenerate", flows.regenerate_flow),
    ("project", "DELETE", "/api/v1/flows/<flow_id:str>", flows.delete_flow),
    ("project", "GET", "/api/v1/live/generate", live.live_generate),
    ("project", "POST", "/api/v1/live/scopes", scopes.create_scope),
    ("project", "GET", "/api/v1/live/scopes", scopes.list_scopes),
    ("project", "GET", "/api/v1/live/scopes/<slug:str>", scopes.get_scope),
    ("project", "PUT", "/api/v1/live/scopes/<slug:str>", scopes.update_scope),
    ("project", "POST", "/api/v1/live/scopes/<slug:str>/regenerate", scopes.regenerate_scope),
    ("project", "DELETE", "/api/v1/live/scopes/<slug:str>", scopes.delete_scope),
    ("public", "GET", "/cdn/<org:str>/<project:str>/live/<scope:str>", live.live_url),
    ("public", "GET", "/cdn/<org:str>/<project:str>/img/<ref:str>", cdn.cdn_image),
    ("public", "HEAD", "/cdn/<org:str>/<project:str>/img/<ref:str>", cdn.cdn_image),
    # the pre-v1 routes, for old clients (API.md §10)
    ("project", "POST", "/api/generate", legacy.generate),
    ("project", "POST", "/api/text-to-image", legacy.text_to_image),
    ("project", "POST", "/api/upload", legacy.upload),
    ("project", "POST", "/api/enhance", legacy.enhance),
    ("public", "GET", LEGACY_IMAGE, legacy.published_image),
    ("public", "HEAD", LEGACY_IMAGE, legacy.published_image),
    # the OpenAI Images API (API.md §11)
    ("project", "POST", "/v1/images/generations", openai.generate),
    ("project", "POST", "/v1/images/edits", openai.edit),
    ("project", "POST", "/v1/images/variations", openai.variation),
    ("project", "GET", "/v1/models", openai.list_models),
    ("project", "GET", "/v1/models/<model_id:str>", openai.get_model),
    # the MCP door for AI agents (streamable HTTP; the tools are in mcp_door.py)
    ("project", "POST", "/mcp", mcp.mcp_endpoint),
]

_GUARDS: Final[dict[str, Callable[..., Awaitable[None]] | None]] = {
    "public": None,
    "project": require_project_key,
    "master": require_master_key,
}

log = logging.getLogger("banatie_local")

# Sanic keeps a registry of app names; each factory call needs its own.
_app_numbers = itertools.count(1)

# Room for the multipart envelope around an upload of exactly the limit.
_BODY_OVERHEAD_BYTES = 1024 * 1024


def _configure(app: Sanic[Any, Any], settings: Settings) -> None:
    generation_budget = settings.generation.timeout_seconds * (settings.generation.max_retries + 1)
    app.config.update(
        {
            "MOTD": False,
            "ACCESS_LOG": settings.server.access_log,
            "FALLBACK_ERROR_FORMAT": "json",
            "REQUEST_MAX_SIZE": settings.max_upload_bytes + _BODY_OVERHEAD_BYTES,
            # the most Sanic allows: a live URL's 2,000-character prompt in a script
            # outside ASCII is up to 18 KB percent-encoded, Latin or Cyrillic 12 KB
            "REQUEST_MAX_HEADER_SIZE": 16384,
            "REQUEST_TIMEOUT": settings.server.request_timeout,
            # A synchronous generation may use every retry of the provider.
            "RESPONSE_TIMEOUT": max(60.0, generation_budget + 60.0),
        }
    )


def _add_routes(app: Sanic[Any, Any]) -> None:
    """One blueprint per access level, so each guard runs only on its own routes."""
    for access, guard in _GUARDS.items():
        bp = Blueprint(f"{access}_routes")
        if guard is not None:
            bp.on_request(guard)
        if access == "project":
            bp.on_response(attach_rate_headers)
        for route_access, method, path, handler in ROUTES:
            if route_access == access:
                # unique per route: one handler may serve two paths (regenerate, retry)
                name = re.sub(r"[^a-z0-9]+", "_", f"{method} {path}".lower()).strip("_")
                # unquote: a client may send @hero as %40hero
                bp.add_route(handler, path, methods=[method], name=name, unquote=True)
        app.blueprint(bp)


def _count_requests(app: Sanic[Any, Any], metrics: Metrics) -> None:
    """Requests by route template and status, their latency, live-URL answers."""

    async def _started(request: Request) -> None:
        request.ctx.started = time.perf_counter()

    async def _counted(request: Request, response: BaseHTTPResponse) -> None:
        route = "/" + request.route.path.lstrip("/") if request.route else "unmatched"
        metrics.requests.labels(request.method, route, str(response.status)).inc()
        started = getattr(request.ctx, "started", None)
        if started is not None:
            metrics.latency.labels(route).observe(time.perf_counter() - started)
        live = getattr(request.ctx, "live", None)
        if live is not None:
            metrics.live.labels(live).inc()

    app.register_middleware(_started, "request", priority=1000)
    app.register_middleware(_counted, "response", priority=-1000)


class TimedRequest(Request):
    """A request whose body must arrive within ``body_timeout`` seconds.

    Sanic's own request timeout covers only the headers; a client trickling its body
    byte by byte would otherwise hold a connection until the response timeout. Its
    ``client_ip`` is the address behind ``server.trusted_proxies``."""

    body_timeout: float = 60.0
    trusted_networks: tuple[Network, ...] = ()

    @property
    def client_ip(self) -> str:
        """The peer, or behind a trusted proxy the client it forwarded for; Sanic's
        access log reads this (only when ``server.access_log`` is on)."""
        return client_ip(self.ip, self.headers.get("x-forwarded-for"), self.trusted_networks)

    async def receive_body(self) -> None:
        try:
            await asyncio.wait_for(super().receive_body(), self.body_timeout)  # type: ignore[no-untyped-call]
        except TimeoutError:
            # the error handler then answers and closes (errors.abandon_body)
            raise RequestTimeout("the request body was not received in time.") from None


def create_app(
    settings: Settings, services: Services | None = None, name: str | None = None
) -> Sanic[Any, Any]:
    """Build the application. ``services`` is opened from ``settings`` if not given;
    ``name`` is fixed for worker processes (the supervisor and every worker must
    build an app of the same name), else unique per call."""
    services = services or open_services(settings)
    name = name or f"banatie_local_{next(_app_numbers)}"
    request_class = type(
        "BanatieRequest",
        (TimedRequest,),
        {
            "body_timeout": settings.server.request_timeout,
            "trusted_networks": settings.server.trusted_networks,
        },
    )
    app: Sanic[Any, Any] = Sanic(
        name, dumps=dumps, configure_logging=False, request_class=request_class
    )
    _configure(app, settings)
    if settings.server.access_log:
        # per process: every worker builds its app here
        accesslog.install()
    app.ctx.services = services
    app.ctx.openapi_text = docs.document_text(build_document(ROUTES))
    errors.install(app)
    mcp.install(app)
    _add_routes(app)
    if services.metrics is not None:
        _count_requests(app, services.metrics)

    @app.before_server_start
    async def _recover(app: Sanic[Any, Any]) -> None:
        services: Services = app.ctx.services
        log.info("image provider: %s; storage: %s", services.provider.name, services.storage.name)
        await services.generations.recover_interrupted()

    @app.after_server_start
    async def _start_housekeeping(app: Sanic[Any, Any]) -> None:
        # Our own task, not app.add_task: we stop it ourselves before the last round.
        app.ctx.housekeeper = asyncio.get_running_loop().create_task(
            app.ctx.services.housekeeper.run()
        )

    @app.before_server_stop
    async def _stop_work(app: Sanic[Any, Any]) -> None:
        services: Services = app.ctx.services
        housekeeper = getattr(app.ctx, "housekeeper", None)
        if housekeeper is not None:
            housekeeper.cancel()
            await asyncio.gather(housekeeper, return_exceptions=True)
        await services.live.shutdown()
        await services.generations.shutdown()
        await services.housekeeper.round()

    @app.after_server_stop
    async def _close(app: Sanic[Any, Any]) -> None:
        app.ctx.services.close()

    return app
