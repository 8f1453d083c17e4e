"""Images of the key's project (API.md §3)."""

from __future__ import annotations

from typing import Any

from sanic.request import Request
from sanic.response import HTTPResponse

from banatie_local.db.models import Image
from banatie_local.errors import ValidationError
from banatie_local.http import shapes
from banatie_local.http.auth import context_of, read, services_of, write
from banatie_local.http.presenters import image_presenter
from banatie_local.http.responses import ok, page
from banatie_local.http.shapes import SetAlias, UpdateImage, decode
from banatie_local.http.validation import check_text, flow_arg, pagination, parse_json
from banatie_local.services.aliases import ALIAS_RE, check_alias
from banatie_local.services.flows import ABSENT
from banatie_local.services.imagefile import invalid
from banatie_local.services.images import SOURCES, ImageFilters, Upload
from banatie_local.services.validation import check_meta


def _read_upload(request: Request) -> Upload:
    if not request.content_type.startswith("multipart/form-data"):
        raise invalid("send the image as multipart/form-data in a field named file.")
    try:
        files = request.files
    except Exception:  # a malformed multipart body is the client's fault, never a 500
        raise invalid("the multipart body could not be parsed.") from None
    upload = files.get("file") if files else None
    if upload is None:
        raise invalid("the upload has no file field.")
    form = request.form
    names = ("alias", "flowId", "flowAlias", "meta")
    fields: dict[str, str | None] = {n: check_text(form.get(n) if form else None, n) for n in names}
    flow_raw = fields["flowId"]
    if flow_raw in ("", "null"):
        fields["flowId"] = None
    checked = shapes.validate(shapes.Upload, {"file": upload.body, **fields})
    meta = None
    if checked.meta is not None and checked.meta.strip():
        meta = check_meta(parse_json(checked.meta, "meta"))
    return Upload(
        data=upload.body,
        alias=checked.alias,
        flow_id=ABSENT if not flow_raw else checked.flow_id,
        flow_alias=checked.flow_alias,
        meta=meta,
    )


async def upload_image(request: Request) -> HTTPResponse:
    """Upload a PNG, JPEG or WebP image (multipart field ``file``)."""
    image = await services_of(request).images.upload(context_of(request), _read_upload(request))
    return ok(image_presenter(request)(image), 201)


async def list_images(request: Request) -> HTTPResponse:
    """Images newest first, filtered by ``flowId``, ``source`` and ``alias``."""
    paging = pagination(request)
    source = request.args.get("source") or None
    if source is not None and source not in SOURCES:
        raise ValidationError("source must be generated or uploaded.", field="source")
    alias = request.args.get("alias") or None
    if alias is not None and not ALIAS_RE.fullmatch(alias):
        raise ValidationError("alias must look like @name.", "INVALID_ALIAS_FORMAT", field="alias")
    filters = ImageFilters(flow_id=flow_arg(request), source=source, alias=alias)
    images, total = await read(
        request,
        services_of(request).images.list_page,
        context_of(request),
        filters,
        paging.limit,
        paging.offset,
    )
    present = image_presenter(request)
    return page([present(image) for image in images], total, paging)


async def _image(request: Request, ref: str) -> Image:
    images, flow = services_of(request).images, flow_arg(request)
    return await read(request, images.get, context_of(request), ref, flow)


async def get_image(request: Request, ref: str) -> HTTPResponse:
    """One image by id or ``@alias`` (``?flowId=`` gives the flow context)."""
    return ok(image_presenter(request)(await _image(request, ref)))


async def update_image(request: Request, ref: str) -> HTTPResponse:
    """Change ``focalPoint`` and ``meta``; an ``alias`` field is ignored."""
    body = decode(request, UpdateImage, required=False)
    images, ctx, flow = services_of(request).images, context_of(request), flow_arg(request)
    focal_point: Any = ABSENT
    if body.given("focal_point"):
        focal_point = body.focal_point.model_dump() if body.focal_point else None
    new_meta = None if not body.given("meta") else check_meta(body.meta or {})
    updated = await write(
        request, lambda: images.update(images.get(ctx, ref, flow), focal_point, new_meta)
    )
    return ok(image_presenter(request)(updated))


async def set_image_alias(request: Request, ref: str) -> HTTPResponse:
    """Assign (``{"alias": "@name"}``, moving it) or remove (``{"alias": null}``)."""
    alias = decode(request, SetAlias).alias
    if alias is not None:
        alias = check_alias(alias)  # a reserved name is refused there
    images, ctx, flow = services_of(request).images, context_of(request), flow_arg(request)
    image = await write(request, lambda: images.set_alias(images.get(ctx, ref, flow), alias))
    return ok(image_presenter(request)(image))


async def delete_image(request: Request, ref: str) -> HTTPResponse:
    """Delete the image, its file, and every reference to it."""
    image = await _image(request, ref)
    await services_of(request).images.delete(image)
    return ok({"id": image.id})
