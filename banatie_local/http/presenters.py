"""Rows and service views as the API's response shapes (``http/shapes/responses.py``).

Services return plain rows and views; only this module knows how the API shows them,
and the JSON comes from the shapes (camelCase by their alias generator), so a field
is named in one place. The routes and the CLI's ``--json`` output both use it.
Shapes are built with ``model_construct``: the values come from our own rows, and
schemathesis checks every answer against the same shapes' schemas.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sanic.request import Request

from banatie_local.clock import iso
from banatie_local.db.models import Generation, Image, Organization, Project
from banatie_local.http.auth import context_of, read, services_of
from banatie_local.http.shapes import responses as out
from banatie_local.services.flows import FlowView
from banatie_local.services.generation_queries import GenerationView, load_views
from banatie_local.services.keys import CreatedKey, KeyOwner
from banatie_local.services.scopes import ScopeView

ImagePresenter = Callable[[Image], out.Image]


def image_url(row: Image, org_slug: str, project_slug: str, base_url: str) -> str:
    """The permanent public URL of an image (API.md §6)."""
    return f"{base_url}/cdn/{org_slug}/{project_slug}/img/{row.id}"


def image(row: Image, org_slug: str, project_slug: str, base_url: str) -> out.Image:
    """The image object of API.md §3."""
    focal = (
        out.FocalPointOut.model_construct(x=row.focal_x, y=row.focal_y)
        if row.focal_x is not None and row.focal_y is not None
        else None
    )
    return out.Image.model_construct(
        id=row.id,
        project_id=row.project_id,
        flow_id=row.flow_id,
        generation_id=row.generation_id,
        storage_key=row.storage_key,
        storage_url=image_url(row, org_slug, project_slug, base_url),
        mime_type=row.mime_type,
        file_size=row.file_size,
        file_hash=row.file_hash,
        width=row.width,
        height=row.height,
        source=row.source,
        alias=row.alias_name,
        focal_point=focal,
        meta=row.meta,
        created_at=iso(row.created_at),
        updated_at=iso(row.updated_at),
    )


def image_presenter(request: Request) -> ImagePresenter:
    """Images of the calling key's project, with URLs from ``server.public_base_url``."""
    ctx = context_of(request)
    base = services_of(request).settings.public_base_url
    org, project_slug = ctx.organization.slug, ctx.project.slug
    return lambda row: image(row, org, project_slug, base)


async def generation_for(request: Request, row: Generation) -> out.Generation:
    """One generation, its relations loaded on a reader thread."""
    views = await read(request, load_views, [row])
    return generation(views[0], image_presenter(request))


def generations(
    views: Sequence[GenerationView], present_image: ImagePresenter
) -> list[out.Generation]:
    """Generation objects of API.md §2, from views loaded with their relations."""
    return [generation(view, present_image) for view in views]


def generation(view: GenerationView, present_image: ImagePresenter) -> out.Generation:
    g, refs, images = view.generation, view.references, view.images
    output = images.get(g.output_image_id) if g.output_image_id else None
    return out.Generation.model_construct(
        id=g.id,
        project_id=g.project_id,
        flow_id=g.flow_id,
        prompt=g.prompt,
        original_prompt=g.original_prompt,
        auto_enhance=bool(g.auto_enhance),
        aspect_ratio=g.aspect_ratio,
        status=g.status,
        output_image_id=g.output_image_id,
        output_image=present_image(output) if output else None,
        referenced_images=[
            out.ReferencedImage.model_construct(image_id=r.image_id, alias=r.alias_name)
            for r in refs
        ],
        reference_images=[present_image(images[r.image_id]) for r in refs if r.image_id in images],
        processing_time_ms=g.processing_time_ms,
        retry_count=g.retry_count,
        error_message=g.error_message,
        meta=g.meta,
        created_at=iso(g.created_at),
        updated_at=iso(g.updated_at),
    )


def flow(view: FlowView) -> out.Flow:
    """The flow object of API.md §4."""
    row = view.flow
    return out.Flow.model_construct(
        id=row.id,
        project_id=row.project_id,
        aliases=view.aliases,
        generation_count=view.generation_count,
        image_count=view.image_count,
        meta=row.meta,
        created_at=iso(row.created_at),
        updated_at=iso(row.updated_at),
    )


def _scope_fields(view: ScopeView) -> dict[str, Any]:
    row = view.scope
    return {
        "id": row.id,
        "project_id": row.project_id,
        "slug": row.slug,
        "allow_new_generations": bool(row.allow_new_generations),
        "new_generations_limit": row.new_generations_limit,
        "current_generations": view.current_generations,
        "last_generated_at": iso(view.last_generated_at),
        "meta": row.meta,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


def scope(view: ScopeView) -> out.Scope:
    """The scope object of API.md §5.2."""
    return out.Scope.model_construct(**_scope_fields(view))


def scope_with_images(view: ScopeView, images: list[out.Image]) -> out.ScopeWithImages:
    return out.ScopeWithImages.model_construct(**_scope_fields(view), images=images)


def _key_fields(owner: KeyOwner) -> dict[str, Any]:
    key = owner.key
    return {
        "id": key.id,
        "name": key.name,
        "type": key.type,
        "organization_slug": owner.organization.slug if owner.organization else None,
        "project_slug": owner.project.slug if owner.project else None,
        "key_prefix": key.key_prefix,
        "created_at": iso(key.created_at),
        "expires_at": iso(key.expires_at),
        "last_used_at": iso(key.last_used_at),
        "is_active": bool(key.is_active),
    }


def key(owner: KeyOwner) -> out.ApiKey:
    """The key object of API.md §7 (never the plaintext)."""
    return out.ApiKey.model_construct(**_key_fields(owner))


def created_key(created: CreatedKey) -> out.CreatedApiKey:
    """The one answer that carries a key's plaintext."""
    return out.CreatedApiKey.model_construct(**_key_fields(created.owner), key=created.plaintext)


def project(org: Organization, row: Project) -> out.Project:
    """The project object of API.md §5.3."""
    return out.Project.model_construct(
        id=row.id,
        organization_id=org.id,
        organization_slug=org.slug,
        slug=row.slug,
        name=row.name,
        allow_new_live_scopes=bool(row.allow_new_live_scopes),
        new_live_scopes_generation_limit=row.new_live_scopes_generation_limit,
        signed_urls=row.signed_urls,
        created_at=iso(row.created_at),
        updated_at=iso(row.updated_at),
    )
