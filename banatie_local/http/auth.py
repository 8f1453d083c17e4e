"""``X-API-Key`` authentication and the per-project-key rate limit.

Project keys open ``/api/v1``; master keys open ``/api/admin``. A project key is
rate limited over a rolling hour; the decision's headers go on every ``/api/v1``
response, errors included (``attach_rate_headers``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

from sanic.request import Request
from sanic.response import HTTPResponse

from banatie_local.errors import DatabaseBusyError, ForbiddenError, RateLimitError
from banatie_local.services.container import Services
from banatie_local.services.context import Context
from banatie_local.services.keys import KeyOwner

T = TypeVar("T")


def services_of(request: Request) -> Services:
    services: Services = request.app.ctx.services
    return services


async def _authenticate(request: Request, key_type: str) -> KeyOwner:
    owner = await services_of(request).keys.authenticate(request.headers.get("x-api-key"))
    if owner.key.type != key_type:
        where = "/api/v1" if key_type == "project" else "/api/admin"
        raise ForbiddenError(f"{where} needs a {key_type} key.")
    return owner


async def require_project_key(request: Request) -> None:
    """Blueprint middleware for ``/api/v1``: authenticate, then count the request in
    the database (one budget for every worker), recording ``lastUsedAt`` in the same
    write when it is due."""
    owner = await _authenticate(request, "project")
    if owner.organization is None or owner.project is None:  # the schema's CHECK forbids it
        raise ForbiddenError("this project key belongs to no project.")
    request.ctx.context = Context(owner.organization, owner.project, owner.key)
    services = services_of(request)
    keys, key_id = services.keys, str(owner.key.id)
    now = services.clock.now_us()
    touch = (lambda: keys.touch(key_id, now)) if keys.needs_touch(owner, now) else None
    limit = services.settings.limits.requests_per_hour
    if limit <= 0:
        if touch is not None:
            await _touch_if_free(request, touch)
            owner.key.last_used_at = now
        return
    decision = await services.key_limiter.admit(f"key:{key_id}", limit, touch)
    if touch is not None:
        owner.key.last_used_at = now
    request.ctx.rate_headers = decision.headers()
    if not decision.allowed:
        raise RateLimitError(
            f"this key made {decision.limit} requests in the last hour; "
            f"retry in {decision.retry_after} seconds.",
            headers=request.ctx.rate_headers,
        )


async def _touch_if_free(request: Request, touch: Callable[[], None]) -> None:
    """``lastUsedAt`` is best effort: skipped while the database is locked."""
    with contextlib.suppress(DatabaseBusyError):
        await services_of(request).db.quick_write(touch)


async def require_master_key(request: Request) -> None:
    """Blueprint middleware for ``/api/admin``. Master keys are never rate limited."""
    owner = await _authenticate(request, "master")
    request.ctx.master = owner
    keys, now = services_of(request).keys, services_of(request).clock.now_us()
    if keys.needs_touch(owner, now):
        key_id = str(owner.key.id)
        await _touch_if_free(request, lambda: keys.touch(key_id, now))
        owner.key.last_used_at = now


async def attach_rate_headers(request: Request, response: HTTPResponse) -> None:
    """App response middleware: copy the rate-limit headers onto any response."""
    headers = getattr(request.ctx, "rate_headers", None)
    if headers:
        for name, value in headers.items():
            response.headers.setdefault(name, value)


async def read(request: Request, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn`` on a database reader thread."""
    return await services_of(request).db.read(fn, *args, **kwargs)


async def write(request: Request, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn`` in one transaction on the database writer thread."""
    return await services_of(request).db.write(fn, *args, **kwargs)


def context_of(request: Request) -> Context:
    """The project context that ``require_project_key`` established."""
    context: Context = request.ctx.context
    return context
