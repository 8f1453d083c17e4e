"""Request bodies, as decoded: every limit from ``constants.py``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints

from banatie_local.constants import (
    FILENAME_PATTERN,
    MAX_ALIASES_PER_REQUEST,
    MAX_EXPIRY_DAYS,
    MAX_EXPLICIT_REFERENCES,
    MAX_FILENAME_LENGTH,
    MAX_KEY_NAME_LENGTH,
    MAX_LEGACY_REFERENCES,
    MAX_PROMPT_LENGTH,
    MAX_SIGNED_URL_SECONDS,
)
from banatie_local.http.shapes.base import (
    Alias,
    AspectRatio,
    Id,
    Limit,
    Meta,
    ScopeSlug,
    Shape,
    Slug,
    Template,
    Uuid,
    _code,
)

# ------------------------------------------------------------------ requests


class CreateKey(Shape):
    type: Literal["master", "project"]
    organization_slug: Slug | None = None
    project_slug: Slug | None = None
    name: Annotated[str, StringConstraints(max_length=MAX_KEY_NAME_LENGTH)] | None = None
    expires_in_days: Annotated[int, Field(ge=1, le=MAX_EXPIRY_DAYS)] | None = None


class UpdateProject(Shape):
    allow_new_live_scopes: bool | None = None
    new_live_scopes_generation_limit: Limit | None = None
    signed_urls: Literal["off", "live", "all"] | None = None


SignedQueryValue = Annotated[str, StringConstraints(max_length=MAX_PROMPT_LENGTH * 2)]


class SignUrl(Shape):
    """A public path of the key's project and its query, to sign (API.md §13)."""

    path: Annotated[str, StringConstraints(min_length=1, max_length=2048)]
    query: Annotated[dict[str, SignedQueryValue], Field(max_length=32)] = Field(
        default_factory=dict
    )
    expires_in: Annotated[int, Field(ge=1, le=MAX_SIGNED_URL_SECONDS)] | None = None


class FocalPoint(Shape):
    """Refused as one field: ``focalPoint``."""

    model_config = ConfigDict(json_schema_extra={"x-one-field": True})

    x: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
    y: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class UpdateImage(Shape):
    focal_point: FocalPoint | None = None
    meta: Meta | None = None


class SetAlias(Shape):
    """``alias`` is required: a string to set, or null to remove."""

    alias: Alias | None


class EnhancementOptions(Shape):
    template: Template | None = None


Prompt = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_PROMPT_LENGTH)
]


class CreateGeneration(Shape):
    prompt: Prompt
    aspect_ratio: (
        Annotated[AspectRatio, Field(json_schema_extra=_code("INVALID_ASPECT_RATIO"))] | None
    ) = None
    reference_images: (
        Annotated[
            list[Id],
            Field(
                max_length=MAX_EXPLICIT_REFERENCES,
                json_schema_extra=_code("TOO_MANY_REFERENCES"),
            ),
        ]
        | None
    ) = None
    flow_id: Uuid | None = None
    alias: Alias | None = None
    flow_alias: Alias | None = None
    auto_enhance: bool | None = None
    enhancement_options: EnhancementOptions | None = None
    meta: Meta | None = None


class UpdateGeneration(Shape):
    prompt: Prompt | None = None
    aspect_ratio: (
        Annotated[AspectRatio, Field(json_schema_extra=_code("INVALID_ASPECT_RATIO"))] | None
    ) = None
    flow_id: Uuid | None = None
    meta: Meta | None = None


FlowAliases = Annotated[dict[Alias, Id | None], Field(max_length=MAX_ALIASES_PER_REQUEST)]


class CreateFlow(Shape):
    meta: Meta | None = None
    aliases: FlowAliases | None = None


class SetFlowAliases(Shape):
    aliases: FlowAliases


class CreateScope(Shape):
    slug: ScopeSlug
    allow_new_generations: bool | None = None
    new_generations_limit: Limit | None = None
    meta: Meta | None = None


class UpdateScope(Shape):
    allow_new_generations: bool | None = None
    new_generations_limit: Limit | None = None
    meta: Meta | None = None


class RegenerateScope(Shape):
    image_id: Id | None = None


class Upload(Shape):
    """A multipart form; ``meta`` is a JSON object as text."""

    file: Annotated[bytes, Field(json_schema_extra={"format": "binary"})]
    alias: Alias | None = None
    flow_id: Uuid | None = None
    flow_alias: Alias | None = None
    meta: Annotated[str, Field(description="a JSON object as text")] | None = None


# --------------------------------------------------- legacy (pre-v1) routes, API.md §10

Filename = Annotated[
    str,
    StringConstraints(pattern=FILENAME_PATTERN, max_length=MAX_FILENAME_LENGTH),
    Field(description="published with the image's real extension"),
]


class LegacyTextToImage(Shape):
    prompt: Prompt
    filename: Filename | None = None
    aspect_ratio: (
        Annotated[AspectRatio, Field(json_schema_extra=_code("INVALID_ASPECT_RATIO"))] | None
    ) = None
    auto_enhance: bool | None = None
    enhancement_options: EnhancementOptions | None = None


class LegacyGenerate(LegacyTextToImage):
    """A multipart form: ``autoEnhance`` is the text true/false; ``enhancementOptions``
    is a JSON text, or the field ``enhancementOptions[template]``."""

    filename: Filename  # required here
    files: (
        Annotated[
            list[Annotated[bytes, Field(json_schema_extra={"format": "binary"})]],
            Field(
                max_length=MAX_LEGACY_REFERENCES,
                json_schema_extra=_code("TOO_MANY_REFERENCES"),
            ),
        ]
        | None
    ) = None


class LegacyUpload(Shape):
    """A multipart form; without ``filename`` the file's own name is published,
    made safe."""

    file: Annotated[bytes, Field(json_schema_extra={"format": "binary"})]
    filename: Filename | None = None


class LegacyEnhance(Shape):
    prompt: Prompt
    options: EnhancementOptions | None = None
    enhancement_options: EnhancementOptions | None = None
