"""``X-API-Key`` authentication and the per-project-key rate limit.

Project keys open ``/api/v1``; master keys open ``/api/admin``. A project key is
rate limited over a rolling hour; the decision's headers go on every ``/api/v1``
response, errors included (``attach_rate_headers``).
"""

from __future__ import annotations

import contextlib
import time
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


def presented_key(request: Request) -> str | None:
    """``X-API-Key``, else the token of ``Authorization: Bearer`` (OpenAI clients)."""
    key = request.headers.get("x-api-key")
    if key:
        return str(key)
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def openai_rate_headers(headers: dict[str, str], now: float) -> dict[str, str]:
    """Our ``X-RateLimit-*`` headers under OpenAI's names (``reset`` as a duration)."""
    if "X-RateLimit-Limit" not in headers:
        return {}
    reset = max(0, int(headers["X-RateLimit-Reset"]) - int(now))
    return {
        "x-ratelimit-limit-requests": headers["X-RateLimit-Limit"],
        "x-ratelimit-remaining-requests": headers["X-RateLimit-Remaining"],
        "x-ratelimit-reset-requests": f"{reset}s",
    }


async def _authenticate(request: Request, key_type: str) -> KeyOwner:
    owner = await services_of(request).keys.authenticate(presented_key(request))
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
    limit = services.settings.limits.requests_per_hour
    if limit <= 0:
        await _touch_if_free(request, owner)
        return
    now = services.clock.now_us()
    touch = _touch(services, owner, now)
    decision = await services.key_limiter.admit(f"key:{owner.key.id}", limit, touch)
    request.ctx.rate_headers = decision.headers()
    if not decision.allowed:
        raise RateLimitError(
            f"this key made {decision.limit} requests in the last hour; "
            f"retry in {decision.retry_after} seconds.",
            headers=request.ctx.rate_headers,
        )


def _touch(services: Services, owner: KeyOwner, now: int) -> Callable[[], None] | None:
    """The write of ``lastUsedAt`` when it is due (at most once a minute per key); the
    remembered value changes only when the write runs, so a skipped one is retried."""
    if not services.keys.needs_touch(owner, now):
        return None
    keys, key_id = services.keys, str(owner.key.id)

    def touch() -> None:
        keys.touch(key_id, now)
        owner.key.last_used_at = now

    return touch


async def _touch_if_free(request: Request, owner: KeyOwner) -> None:
    """``lastUsedAt`` on its own write; best effort: skipped while the database is
    locked (and then remembered as not written, so the next request tries again)."""
    services = services_of(request)
    now = services.clock.now_us()
    touch = _touch(services, owner, now)
    if touch is None:
        return
    with contextlib.suppress(DatabaseBusyError):
        await services.db.quick_write(touch)


async def require_master_key(request: Request) -> None:
    """Blueprint middleware for ``/api/admin``. Master keys are never rate limited."""
    owner = await _authenticate(request, "master")
    request.ctx.master = owner
    await _touch_if_free(request, owner)


async def attach_rate_headers(request: Request, response: HTTPResponse) -> None:
    """App response middleware: copy the rate-limit headers onto any response."""
    headers = getattr(request.ctx, "rate_headers", None)
    if headers:
        if request.path.startswith("/v1/"):
            headers = {**headers, **openai_rate_headers(headers, time.time())}
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
