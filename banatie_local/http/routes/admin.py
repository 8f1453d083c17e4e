"""Bootstrap and master-key administration of API keys (API.md §7)."""

from __future__ import annotations

from sanic.request import Request
from sanic.response import HTTPResponse

from banatie_local.http import presenters
from banatie_local.http.auth import read, services_of, write
from banatie_local.http.responses import ok, page
from banatie_local.http.shapes import CreateKey, decode
from banatie_local.http.validation import pagination


async def initial_key(request: Request) -> HTTPResponse:
    """Create the first master key; refused once any key exists."""
    created = await write(request, services_of(request).keys.bootstrap)
    key = created.owner.key
    return ok({"key": created.plaintext, "id": key.id, "type": key.type}, 201)


async def create_key(request: Request) -> HTTPResponse:
    """Create a master or project key; unknown organization/project slugs are created."""
    body = decode(request, CreateKey, required=False)
    keys = services_of(request).keys
    created = await write(
        request,
        keys.create,
        key_type=body.type,
        org_slug=body.organization_slug,
        project_slug=body.project_slug,
        name=body.name,
        expires_in_days=body.expires_in_days,
    )
    return ok(presenters.created_key(created), 201)


async def list_keys(request: Request) -> HTTPResponse:
    """Every key without its plaintext, newest first."""
    paging = pagination(request)
    owners, total = await read(request, services_of(request).keys.list, paging.limit, paging.offset)
    return page([presenters.key(owner) for owner in owners], total, paging)


async def revoke_key(request: Request, key_id: str) -> HTTPResponse:
    """Revoke a key; it fails on its next request."""
    keys = services_of(request).keys
    record = await write(request, keys.revoke, key_id)
    keys.forget()  # at once here; other processes within the change feed's interval
    return ok({"id": record.id, "isActive": False})
