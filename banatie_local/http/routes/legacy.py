"""The pre-v1 routes (API.md §10): old request and answer shapes over the same services.

Each route reads its old shape into the service's request, and presents the result in
the old envelope (``legacy_ok``; errors get theirs in ``http/errors.py``). The work is
``LegacyService``: ordinary uploads and generations, with a published file name.
"""

from __future__ import annotations

from typing import Any

from sanic.request import Request
from sanic.response import HTTPResponse

from banatie_local.constants import DEFAULT_API_ASPECT_RATIO, DEFAULT_TEMPLATE
from banatie_local.errors import NotFoundError, ValidationError
from banatie_local.http import shapes
from banatie_local.http.auth import context_of, services_of
from banatie_local.http.public import public_image, signed
from banatie_local.http.responses import legacy_ok
from banatie_local.http.shapes import responses as out
from banatie_local.http.validation import check_text, parse_json
from banatie_local.services.context import Context
from banatie_local.services.imagefile import invalid
from banatie_local.services.legacy import (
    GENERATE,
    TEXT_TO_IMAGE,
    LegacyGeneration,
    Published,
)
from banatie_local.services.published import CATEGORIES, is_filename
from banatie_local.text import truth

_TEMPLATE_FIELD = "enhancementOptions[template]"


def _form(request: Request) -> tuple[Any, Any]:
    """``(form, files)`` of a multipart body; anything else is the client's fault."""
    if not request.content_type.startswith("multipart/form-data"):
        raise ValidationError("send the request as multipart/form-data.", field="body")
    try:
        return request.form, request.files
    except Exception:  # a malformed multipart body is the client's fault, never a 500
        raise invalid("the multipart body could not be parsed.") from None


def _text_fields(form: Any, names: tuple[str, ...]) -> dict[str, str]:
    """The form's text fields among ``names`` that are present, each checked as text."""
    values = {}
    for name in names:
        value = check_text(form.get(name) if form else None, name)
        if value is not None:
            values[name] = value
    return values


def _form_options(fields: dict[str, str]) -> dict[str, Any] | None:
    """``enhancementOptions`` as a JSON text, or as the field ``[template]``."""
    if _TEMPLATE_FIELD in fields:
        return {"template": fields[_TEMPLATE_FIELD]}
    text = fields.get("enhancementOptions", "").strip()
    return parse_json(text, "enhancementOptions") if text else None


def _form_flag(fields: dict[str, str], name: str) -> bool | None:
    text = fields.get(name, "").strip()
    if not text:
        return None
    flag = truth(text)
    if flag is None:
        raise ValidationError(f"{name} must be true or false.", field=name)
    return flag


def _generation(
    route: str, body: shapes.LegacyTextToImage, files: list[tuple[bytes, str | None]]
) -> LegacyGeneration:
    options = body.enhancement_options
    return LegacyGeneration(
        route=route,
        prompt=body.prompt,
        filename=body.filename,
        aspect_ratio=body.aspect_ratio or DEFAULT_API_ASPECT_RATIO,
        auto_enhance=bool(body.auto_enhance),
        template=(options.template if options else None) or DEFAULT_TEMPLATE,
        files=files,
    )


def _location(request: Request, ctx: Context, category: str, filename: str) -> tuple[str, str]:
    """``(filepath, url)`` of a published name."""
    filepath = f"{ctx.organization.slug}/{ctx.project.slug}/{category}/{filename}"
    return filepath, f"{services_of(request).settings.public_base_url}/api/images/{filepath}"


def _generated(request: Request, published: Published) -> out.LegacyGenerated:
    generation, image = published.generation, published.image
    assert generation is not None
    filepath, url = _location(request, context_of(request), "generated", published.filename)
    enhancement = None
    if generation.original_prompt:
        enhancement = out.PromptEnhancement.model_construct(
            original_prompt=generation.original_prompt,
            enhanced_prompt=generation.prompt,
            template=generation.enhancement_template,
        )
    return out.LegacyGenerated.model_construct(
        filename=published.filename,
        filepath=filepath,
        url=url,
        image_id=image.id,
        generation_id=generation.id,
        aspect_ratio=generation.aspect_ratio,
        width=image.width,
        height=image.height,
        mime_type=image.mime_type,
        model=generation.meta.get("model"),
        provider=generation.meta.get("provider"),
        prompt_enhancement=enhancement,
    )


async def generate(request: Request) -> HTTPResponse:
    """Generate an image from a multipart form, with up to 3 reference ``files``."""
    form, files = _form(request)
    names = ("prompt", "filename", "aspectRatio", "autoEnhance", "enhancementOptions")
    fields = _text_fields(form, (*names, _TEMPLATE_FIELD))
    uploads = [*(files.getlist("files") or []), *(files.getlist("files[]") or [])] if files else []
    data: dict[str, Any] = {k: v for k, v in fields.items() if k in names}
    data["autoEnhance"] = _form_flag(fields, "autoEnhance")
    data["enhancementOptions"] = _form_options(fields)
    data["files"] = [upload.body for upload in uploads]
    body = shapes.validate(shapes.LegacyGenerate, data)
    own = [check_text(upload.name, "files") for upload in uploads]
    request_ = _generation(GENERATE, body, list(zip(data["files"], own, strict=True)))
    published = await services_of(request).legacy.generate(context_of(request), request_)
    return legacy_ok("Image generated successfully", _generated(request, published))


async def text_to_image(request: Request) -> HTTPResponse:
    """Generate an image from a JSON body; ``filename`` defaults to ``image-<id>``."""
    body = shapes.decode(request, shapes.LegacyTextToImage)
    request_ = _generation(TEXT_TO_IMAGE, body, [])
    published = await services_of(request).legacy.generate(context_of(request), request_)
    return legacy_ok("Image generated successfully", _generated(request, published))


async def upload(request: Request) -> HTTPResponse:
    """Upload an image (multipart ``file``) and publish it under ``filename``."""
    form, files = _form(request)
    fields = _text_fields(form, ("filename",))
    file = files.get("file") if files else None
    if file is None:
        raise invalid("the upload has no file field.")
    body = shapes.validate(shapes.LegacyUpload, {"file": file.body, **fields})
    ctx = context_of(request)
    own = check_text(file.name, "file")
    published = await services_of(request).legacy.upload(ctx, body.file, body.filename, own)
    image = published.image
    filepath, url = _location(request, ctx, "uploads", published.filename)
    data = out.LegacyUploaded.model_construct(
        filename=published.filename,
        filepath=filepath,
        url=url,
        image_id=image.id,
        size=image.file_size,
        mime_type=image.mime_type,
        width=image.width,
        height=image.height,
    )
    return legacy_ok("File uploaded successfully", data, 201)


async def enhance(request: Request) -> HTTPResponse:
    """Enhance a prompt as a generation would; nothing is stored."""
    body = shapes.decode(request, shapes.LegacyEnhance)
    options = body.options or body.enhancement_options
    template = (options.template if options else None) or DEFAULT_TEMPLATE
    result = await services_of(request).legacy.enhance(body.prompt, template)
    data = out.LegacyEnhanced.model_construct(
        original_prompt=result.original,
        enhanced_prompt=result.enhanced,
        template=result.template,
        provider=result.provider,
    )
    return legacy_ok("Prompt enhanced successfully", data)


async def published_image(
    request: Request, org: str, project: str, category: str, filename: str
) -> HTTPResponse:
    """Image bytes by the name a legacy route published; ``If-None-Match`` answers 304."""
    verdict = await signed(request, org, project, "image")
    services = services_of(request)
    missing = f"no image is published as {category}/{filename}."
    if category not in CATEGORIES or not is_filename(filename):
        raise NotFoundError(missing, "IMAGE_NOT_FOUND")  # no such name can exist
    names = services.names
    key = (org, project, f"{category}/{filename}")
    return await public_image(request, verdict, key, missing, names.fetch, category, filename)
