"""The calling key's project and its live settings (API.md §5.3)."""

from __future__ import annotations

from sanic.request import Request
from sanic.response import HTTPResponse

from banatie_local.http import presenters
from banatie_local.http.auth import context_of, services_of, write
from banatie_local.http.responses import ok
from banatie_local.http.shapes import UpdateProject, decode


async def get_project(request: Request) -> HTTPResponse:
    """The project this key belongs to."""
    context = context_of(request)
    return ok(presenters.project(context.organization, context.project))


async def update_project(request: Request) -> HTTPResponse:
    """Change ``allowNewLiveScopes`` and ``newLiveScopesGenerationLimit``."""
    context = context_of(request)
    body = decode(request, UpdateProject)
    project = await write(
        request,
        services_of(request).projects.update_settings,
        context.project,
        allow_new_live_scopes=body.allow_new_live_scopes,
        new_live_scopes_generation_limit=body.new_live_scopes_generation_limit,
    )
    return ok(presenters.project(context.organization, project))
