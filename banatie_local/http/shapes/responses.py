"""Response objects, as the presenters in ``http/presenters.py`` produce them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from banatie_local.http.shapes.base import (
    AspectRatio,
    Meta,
    Shape,
    Time,
)

# ----------------------------------------------------------------- responses


class Pagination(Shape):
    total: int
    limit: int
    offset: int
    has_more: bool


class ErrorBody(Shape):
    code: str
    message: str
    details: dict[str, Any] | None = None


class Error(Shape):
    success: Literal[False]
    error: ErrorBody


class IdOnly(Shape):
    id: str


class HealthChecks(Shape):
    database: str
    storage: str


class Health(Shape):
    status: Literal["healthy", "unhealthy"]
    version: str
    uptime_seconds: float
    provider: str
    storage: str
    workers: Annotated[int, Field(ge=1)]
    checks: HealthChecks | None = None


class Info(Shape):
    name: str
    version: str
    provider: str
    storage: str | None = None
    limits: dict[str, Any]
    formats: list[str]
    variant_formats: list[str] = Field(default_factory=list)
    aspect_ratios: dict[str, Any]
    templates: list[str]


class BootstrapKey(Shape):
    key: str
    id: str
    type: str


class ApiKey(Shape):
    id: str
    name: str | None = None
    type: Literal["master", "project"]
    organization_slug: str | None = None
    project_slug: str | None = None
    key_prefix: str
    created_at: Time
    expires_at: Time | None = None
    last_used_at: Time | None = None
    is_active: bool


class CreatedApiKey(ApiKey):
    key: str


class RevokedKey(Shape):
    id: str
    is_active: Literal[False]


class Project(Shape):
    id: str
    organization_id: str | None = None
    organization_slug: str | None = None
    slug: str
    name: str | None = None
    allow_new_live_scopes: bool
    new_live_scopes_generation_limit: int
    signed_urls: Literal["off", "live", "all"] = "off"
    created_at: Time | None = None
    updated_at: Time | None = None


class SigningSecretOut(Shape):
    """The project's signing secret: 64 hex digits, the HMAC key is the 32 bytes."""

    secret: str
    previous_valid_until: Time | None = None


class SignedUrl(Shape):
    url: str
    path: str
    expires_at: Time | None = None


class FocalPointOut(Shape):
    x: float
    y: float


class Image(Shape):
    id: str
    project_id: str
    flow_id: str | None
    generation_id: str | None
    storage_key: str
    storage_url: str
    mime_type: Literal["image/png", "image/jpeg", "image/webp"]
    file_size: int
    file_hash: str
    width: int
    height: int
    source: Literal["generated", "uploaded"]
    alias: str | None
    focal_point: FocalPointOut | None
    meta: Meta
    created_at: Time
    updated_at: Time


class ReferencedImage(Shape):
    image_id: str
    alias: str | None


class Generation(Shape):
    id: str
    project_id: str
    flow_id: str | None
    prompt: str
    original_prompt: str | None = None
    auto_enhance: bool | None = None
    aspect_ratio: AspectRatio | None = None
    status: Literal["pending", "processing", "success", "failed"]
    output_image_id: str | None
    output_image: Image | None = None
    referenced_images: list[ReferencedImage]
    reference_images: list[Image]
    processing_time_ms: int | None = None
    retry_count: int
    error_message: str | None = None
    meta: Meta
    created_at: Time
    updated_at: Time


class Flow(Shape):
    id: str
    project_id: str
    aliases: dict[str, str]
    generation_count: int
    image_count: int
    meta: Meta
    created_at: Time | None = None
    updated_at: Time | None = None


class Scope(Shape):
    id: str
    project_id: str
    slug: str
    allow_new_generations: bool
    new_generations_limit: int
    current_generations: int
    last_generated_at: Time | None
    meta: Meta | None = None
    created_at: Time | None = None
    updated_at: Time | None = None


class ScopeWithImages(Scope):
    images: list[Image]


class ScopeRegenerated(Shape):
    regenerated: int
    images: list[Image]


# --------------------------------------------------- legacy (pre-v1) routes, API.md §10


class LegacyError(Shape):
    """An error of a legacy route: the v1 error object with a flat ``message``."""

    success: Literal[False]
    message: str
    error: ErrorBody


class PromptEnhancement(Shape):
    original_prompt: str
    enhanced_prompt: str
    template: str


class LegacyGenerated(Shape):
    filename: str
    filepath: str
    url: str
    image_id: str
    generation_id: str
    aspect_ratio: AspectRatio
    width: int
    height: int
    mime_type: Literal["image/png", "image/jpeg", "image/webp"]
    model: str | None
    provider: str | None
    prompt_enhancement: PromptEnhancement | None


class LegacyUploaded(Shape):
    filename: str
    filepath: str
    url: str
    image_id: str
    size: int
    mime_type: Literal["image/png", "image/jpeg", "image/webp"]
    width: int
    height: int


class LegacyEnhanced(Shape):
    original_prompt: str
    enhanced_prompt: str
    template: str
    provider: str
