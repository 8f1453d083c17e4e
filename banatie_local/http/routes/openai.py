"""The OpenAI-compatible door (API.md §11): ``/v1/images/*`` and ``/v1/models``.

Each route reads OpenAI's request shape into ``ImagesRequest`` and answers OpenAI's
response shape; ``OpenAiImages`` does the work on the ordinary services. Errors get
OpenAI's shape in ``http/errors.py``, and the rate-limit headers their OpenAI names
in ``http/auth.py``.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from sanic.request import Request
from sanic.response import HTTPResponse

from banatie_local.errors import NotFoundError, ValidationError
from banatie_local.http.auth import context_of, services_of
from banatie_local.http.presenters import image_url
from banatie_local.http.responses import dumps, plain
from banatie_local.http.shapes import decode, validate
from banatie_local.http.shapes import openai as shapes
from banatie_local.http.validation import check_text
from banatie_local.services.openai_door import (
    VARIATION_PROMPT,
    ImagesRequest,
    Made,
    models_of,
)

_RECORDED = ("model", "quality", "style", "background", "moderation", "user", "size",
             "response_format", "output_format")  # fmt: skip
_QUALITIES = ("low", "medium", "high", "auto", "standard", "hd")


def _recorded(body: Any) -> dict[str, Any]:
    """The request's OpenAI fields kept in ``meta.openai``."""
    return {name: getattr(body, name) for name in _RECORDED if getattr(body, name, None)}


async def _answer(
    request: Request, body: Any, made: list[Made], output_format: str
) -> HTTPResponse:
    """OpenAI's answer; the base64 and JSON of megabytes of image are made off the loop."""
    base = services_of(request).settings.public_base_url
    ctx = context_of(request)
    url_wanted = body.response_format == "url"
    quality = getattr(body, "quality", None)
    created = int(services_of(request).clock.now_us() // 1_000_000)

    def encode() -> str:
        items = []
        for item in made:
            image, generation = item.image, item.generation
            items.append(
                shapes.OpenAiImage.model_construct(
                    b64_json=base64.b64encode(item.data).decode() if item.data else None,
                    url=image_url(image, ctx.organization.slug, ctx.project.slug, base)
                    if url_wanted
                    else None,
                    revised_prompt=generation.prompt,
                    generation_id=generation.id,
                    image_id=image.id,
                )
            )
        first = made[0].image
        answer = shapes.OpenAiImages.model_construct(
            created=created,
            data=items,
            size=f"{first.width}x{first.height}",
            output_format=output_format,
            quality=quality if quality in _QUALITIES else "auto",
            background="opaque",
        )
        data = answer.model_dump(mode="json")
        for entry in data["data"]:  # one of b64_json and url, as OpenAI answers
            entry.pop("url" if entry["url"] is None else "b64_json")
        return dumps(data)

    text = await asyncio.to_thread(encode)
    return HTTPResponse(text, content_type="application/json")


async def _serve(
    request: Request,
    body: Any,
    route: str,
    prompt: str,
    files: list[bytes] | None = None,
    mask: bytes | None = None,
) -> HTTPResponse:
    """Make the images a checked ``body`` asks for and answer them; their bytes are
    read back only when the answer carries them."""
    output_format = getattr(body, "output_format", None) or "png"
    compression = getattr(body, "output_compression", None)
    images_request = ImagesRequest(
        route=route,
        prompt=prompt,
        n=body.n or 1,
        size=body.size,
        output_format=output_format,
        compression=100 if compression is None else compression,
        recorded=_recorded(body),
        files=files or [],
        mask=mask,
    )
    with_bytes = body.response_format != "url"
    made = await services_of(request).openai.create(context_of(request), images_request, with_bytes)
    return await _answer(request, body, made, output_format)


async def generate(request: Request) -> HTTPResponse:
    """Create images from a prompt (OpenAI ``images.generate``)."""
    body = decode(request, shapes.OpenAiGenerate)
    return await _serve(request, body, "generations", body.prompt)


def _form(request: Request, names: tuple[str, ...]) -> tuple[dict[str, Any], Any]:
    """The text fields among ``names`` (checked as text) and the files of a multipart body."""
    if not request.content_type.startswith("multipart/form-data"):
        raise ValidationError("send the request as multipart/form-data.", field="image")
    try:
        form, files = request.form, request.files
    except Exception:  # a malformed multipart body is the client's fault, never a 500
        raise ValidationError("the multipart body could not be parsed.", field="image") from None
    values: dict[str, Any] = {}
    for name in names:
        value = check_text(form.get(name) if form else None, name)
        if value is not None:
            values[name] = value
    return shapes.forms(values), files


def _images(files: Any) -> list[bytes]:
    """``image`` (one file, or repeated) and ``image[]``, in order."""
    if not files:
        return []
    found = [*(files.getlist("image") or []), *(files.getlist("image[]") or [])]
    return [f.body for f in found]


def _needed(images: list[bytes]) -> list[bytes]:
    if not images:
        raise ValidationError(
            "image is required: send the image file(s) in the form.", field="image"
        )
    return images


async def edit(request: Request) -> HTTPResponse:
    """Create images from a prompt and 1 to 3 reference images (OpenAI ``images.edit``)."""
    names = ("prompt", "model", "n", "size", "response_format", "output_format",
             "output_compression", "quality", "background", "user")  # fmt: skip
    values, files = _form(request, names)
    images = _needed(_images(files))
    mask = files.get("mask") if files else None
    extra = {"mask": mask.body} if mask else {}
    body = validate(shapes.OpenAiEdit, {**values, "image": images, **extra})
    return await _serve(request, body, "edits", body.prompt, images, body.mask)


async def variation(request: Request) -> HTTPResponse:
    """Create variations of one image (OpenAI ``images.create_variation``)."""
    values, files = _form(request, ("model", "n", "size", "response_format", "user"))
    images = _needed(_images(files))
    if len(images) > 1:
        raise ValidationError("image takes one file here.", field="image")
    body = validate(shapes.OpenAiVariation, {**values, "image": images[0]})
    return await _serve(request, body, "variations", VARIATION_PROMPT, [body.image])


def _models(request: Request) -> list[shapes.OpenAiModel]:
    services = services_of(request)
    created = int(services.started_wall)
    return [
        shapes.OpenAiModel.model_construct(
            id=model, object="model", created=created, owned_by="banatie-local"
        )
        for model in models_of(services.provider)
    ]


async def list_models(request: Request) -> HTTPResponse:
    """The image models of the active provider (OpenAI ``models.list``)."""
    listed = shapes.OpenAiModelList.model_construct(object="list", data=_models(request))
    return plain(listed.model_dump(mode="json"))


async def get_model(request: Request, model_id: str) -> HTTPResponse:
    """One model (OpenAI ``models.retrieve``)."""
    for model in _models(request):
        if model.id == model_id:
            return plain(model.model_dump(mode="json"))
    raise NotFoundError(f"the model {model_id} does not exist here.", "MODEL_NOT_FOUND")
