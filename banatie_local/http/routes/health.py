"""Probes and facts about this appliance: ``/health``, ``/api/info`` and ``/metrics``."""

from __future__ import annotations

import asyncio
import time

from sanic.request import Request
from sanic.response import HTTPResponse

from banatie_local import __version__
from banatie_local.constants import (
    ASPECT_RATIOS,
    IMAGE_FORMATS,
    MAX_ALIASES_PER_REQUEST,
    MAX_EXPLICIT_REFERENCES,
    MAX_LIVE_PROMPT_LENGTH,
    MAX_META_BYTES,
    MAX_PAGE_LIMIT,
    MAX_PROMPT_LENGTH,
    MAX_REFERENCE_IMAGES,
    MAX_SCOPE_GENERATIONS_LIMIT,
    TEMPLATES,
)
from banatie_local.errors import NotFoundError
from banatie_local.http.auth import services_of
from banatie_local.http.responses import ok, plain
from banatie_local.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from banatie_local.services.container import Services
from banatie_local.services.variants import WRITABLE


async def health(request: Request) -> HTTPResponse:
    """Liveness and readiness: 200 when the database and storage work, else 503."""
    services = services_of(request)
    try:
        await services.db.read(_probe, services)
        database_ok = True
    except Exception:
        database_ok = False
    storage_ok = await services.storage.healthy()
    healthy = database_ok and storage_ok
    body = {
        "status": "healthy" if healthy else "unhealthy",
        "version": __version__,
        "uptimeSeconds": round(time.monotonic() - services.started_at, 3),
        "provider": services.settings.provider_name,
        "storage": services.storage.name,
        "workers": services.settings.server.workers,
        "checks": {
            "database": "ok" if database_ok else "failing",
            "storage": "ok" if storage_ok else "failing",
        },
    }
    return plain(body, 200 if healthy else 503)


def _probe(services: Services) -> None:
    services.db.execute_sql("SELECT 1").fetchone()


async def info(request: Request) -> HTTPResponse:
    """Name, version, limits and the active provider."""
    settings = services_of(request).settings
    return ok(
        {
            "name": "banatie-local",
            "version": __version__,
            "provider": settings.provider_name,
            "storage": settings.storage.backend,
            "limits": {
                "maxUploadBytes": settings.max_upload_bytes,
                "maxReferenceImages": MAX_REFERENCE_IMAGES,
                "maxPromptLength": MAX_PROMPT_LENGTH,
                "maxLivePromptLength": MAX_LIVE_PROMPT_LENGTH,
                "maxReferenceImagesListed": MAX_EXPLICIT_REFERENCES,
                "maxAliasesPerRequest": MAX_ALIASES_PER_REQUEST,
                "maxMetaBytes": MAX_META_BYTES,
                "maxPageLimit": MAX_PAGE_LIMIT,
                "maxScopeGenerationsLimit": MAX_SCOPE_GENERATIONS_LIMIT,
                "requestsPerHour": settings.limits.requests_per_hour,
                "liveNewGenerationsPerIpPerHour": settings.live.new_generations_per_ip_per_hour,
            },
            "formats": list(IMAGE_FORMATS),
            "variantFormats": list(WRITABLE),
            "aspectRatios": {
                ratio: {"width": w, "height": h} for ratio, (w, h) in ASPECT_RATIOS.items()
            },
            "templates": list(TEMPLATES),
        }
    )


async def metrics(request: Request) -> HTTPResponse:
    """Prometheus metrics of the process that answers (on with ``server.metrics``)."""
    found = services_of(request).metrics
    if found is None:
        raise NotFoundError("metrics are off here: set server.metrics = true.", "NOT_FOUND")
    body = await asyncio.to_thread(found.render)
    return HTTPResponse(body, content_type=METRICS_CONTENT_TYPE)
