"""``X-API-Key`` authentication and the per-project-key rate limit.

Project keys open ``/api/v1``; master keys open ``/api/admin``. A project key is
rate limited over a rolling hour; the decision's headers go on every ``/api/v1``
response, errors included (``attach_rate_headers``).
"""

from __future__ import annotations

from sanic.request import Request
from sanic.response import HTTPResponse

from banatie_local.errors import ForbiddenError, RateLimitError
from banatie_local.services.container import Services
from banatie_local.services.context import Context
from banatie_local.services.keys import KeyOwner


def services_of(request: Request) -> Services:
    services: Services = request.app.ctx.services
    return services


def _authenticate(request: Request, key_type: str) -> KeyOwner:
    owner = services_of(request).keys.authenticate(request.headers.get("x-api-key"))
    if owner.key.type != key_type:
        where = "/api/v1" if key_type == "project" else "/api/admin"
        raise ForbiddenError(f"{where} needs a {key_type} key.")
    return owner


async def require_project_key(request: Request) -> None:
    """Blueprint middleware for ``/api/v1``: authenticate, then count the request."""
    owner = _authenticate(request, "project")
    if owner.organization is None or owner.project is None:  # the schema's CHECK forbids it
        raise ForbiddenError("this project key belongs to no project.")
    request.ctx.context = Context(owner.organization, owner.project, owner.key)
    limiter = services_of(request).key_limiter
    if not limiter.enabled:
        return
    decision = limiter.hit(str(owner.key.id))
    request.ctx.rate_headers = decision.headers()
    if not decision.allowed:
        raise RateLimitError(
            f"this key made {decision.limit} requests in the last hour; "
            f"retry in {decision.retry_after} seconds.",
            headers=request.ctx.rate_headers,
        )


async def require_master_key(request: Request) -> None:
    """Blueprint middleware for ``/api/admin``. Master keys are never rate limited."""
    request.ctx.master = _authenticate(request, "master")


async def attach_rate_headers(request: Request, response: HTTPResponse) -> None:
    """App response middleware: copy the rate-limit headers onto any response."""
    headers = getattr(request.ctx, "rate_headers", None)
    if headers:
        for name, value in headers.items():
            response.headers.setdefault(name, value)


def context_of(request: Request) -> Context:
    """The project context that ``require_project_key`` established."""
    context: Context = request.ctx.context
    return context
