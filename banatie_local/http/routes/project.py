"""The calling key's project: its live settings (API.md §5.3) and its signed URLs
(§13)."""

from __future__ import annotations

from sanic.request import Request
from sanic.response import HTTPResponse

from banatie_local.clock import iso
from banatie_local.db.models import Project
from banatie_local.http import presenters
from banatie_local.http.auth import context_of, services_of, write
from banatie_local.http.responses import ok
from banatie_local.http.shapes import SignUrl, UpdateProject, decode
from banatie_local.http.shapes.responses import SignedUrl, SigningSecretOut
from banatie_local.services.signing import check_public_path


async def get_project(request: Request) -> HTTPResponse:
    """The project this key belongs to."""
    context = context_of(request)
    return ok(presenters.project(context.organization, context.project))


async def update_project(request: Request) -> HTTPResponse:
    """Change ``allowNewLiveScopes``, ``newLiveScopesGenerationLimit`` and ``signedUrls``."""
    context = context_of(request)
    body = decode(request, UpdateProject)
    services = services_of(request)

    def update(project: Project) -> Project:
        if body.signed_urls is not None:
            services.signing.set_mode(project, body.signed_urls)
        return services.projects.update_settings(
            project,
            allow_new_live_scopes=body.allow_new_live_scopes,
            new_live_scopes_generation_limit=body.new_live_scopes_generation_limit,
        )

    project = await write(request, update, context.project)
    return ok(presenters.project(context.organization, project))


async def get_signing_secret(request: Request) -> HTTPResponse:
    """The project's signing secret (made on first use), for signing URLs elsewhere."""
    context = context_of(request)
    secret = await write(request, services_of(request).signing.secret, context.project)
    return ok(SigningSecretOut(secret=secret))


async def rotate_signing_secret(request: Request) -> HTTPResponse:
    """A new signing secret; URLs signed with the previous one keep working for
    ``cdn.signature_grace_seconds``."""
    context = context_of(request)
    secret, until = await write(request, services_of(request).signing.rotate, context.project)
    return ok(SigningSecretOut(secret=secret, previous_valid_until=iso(until)))


async def sign_url(request: Request) -> HTTPResponse:
    """Sign a public URL of this key's project: ``{path, query, expiresIn?}``."""
    context = context_of(request)
    body = decode(request, SignUrl)
    services = services_of(request)
    path = check_public_path(body.path, context.organization.slug, context.project.slug)
    pairs = list(body.query.items())
    relative, expires = await write(
        request, services.signing.signed_url, context.project, path, pairs, body.expires_in
    )
    return ok(
        SignedUrl(
            url=services.settings.public_base_url + relative,
            path=relative,
            expires_at=None if expires is None else iso(expires * 1_000_000),
        )
    )
