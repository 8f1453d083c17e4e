"""The OpenAI Images API's work (API.md §11), done by the ordinary services.

Each image is an ordinary generation (``GenerationService.create``) with ``flowId``
null, no prompt enhancement, the request's OpenAI fields in ``meta.openai`` and the
size and format to deliver in ``meta.output`` (``services/delivery.py``). Edit and
variation files are first stored as ordinary uploads and become the references.
``n`` images are ``n`` generations run side by side; if any fails, the others are
deleted and the call fails as a whole.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any, Final

from banatie_local.constants import ASPECT_RATIOS
from banatie_local.db.boundary import Database
from banatie_local.db.models import Generation, Image
from banatie_local.errors import GenerationFailedError, ValidationError
from banatie_local.providers import ImageProvider
from banatie_local.services.context import Context
from banatie_local.services.delivery import Delivery
from banatie_local.services.generations import (
    GenerationRequest,
    GenerationService,
    check_prompt,
)
from banatie_local.services.images import ImageService, Upload
from banatie_local.storage import Storage

MIN_SIDE: Final = 256
MAX_SIDE: Final = 2048
MAX_N: Final = 4
MAX_EDIT_IMAGES: Final = 3
RATIO_TOLERANCE: Final = 0.02
VARIATION_PROMPT: Final = "A variation of the reference image: the same subject, style and colours."
_SIZE: Final = re.compile(r"(\d{1,5})x(\d{1,5})")


def parse_size(size: str | None) -> tuple[str, int | None, int | None]:
    """``(aspect ratio, width, height)`` for an OpenAI ``size``: ``auto`` (or none) is
    1:1 as drawn; ``WxH`` needs each side in 256..2048 and a ratio within 2 % of one of
    the table's. Anything else is a 400 naming ``size``."""
    if size is None or size == "auto":
        return "1:1", None, None
    match = _SIZE.fullmatch(size)
    if match is None:
        raise ValidationError('size must be "auto" or WIDTHxHEIGHT, as "1024x1024".', field="size")
    width, height = int(match.group(1)), int(match.group(2))
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise ValidationError(
            f"size must have each side from {MIN_SIDE} to {MAX_SIDE} pixels.", field="size"
        )
    wanted = width / height
    ratio = min(ASPECT_RATIOS, key=lambda r: abs(_value(r) / wanted - 1))
    if abs(_value(ratio) / wanted - 1) > RATIO_TOLERANCE:
        listed = ", ".join(ASPECT_RATIOS)
        raise ValidationError(
            f"size {width}x{height} is not within 2% of a supported ratio ({listed}).",
            field="size",
        )
    return ratio, width, height


def models_of(provider: ImageProvider) -> list[str]:
    """The image models the active provider draws with (``/v1/models``)."""
    return [getattr(provider, "image_model", None) or provider.name]


def _value(ratio: str) -> float:
    w, h = ASPECT_RATIOS[ratio]
    return w / h


@dataclass(frozen=True)
class ImagesRequest:
    """One call of the door, checked."""

    route: str  # "generations", "edits" or "variations"
    prompt: str
    n: int = 1
    size: str | None = None
    output_format: str = "png"
    compression: int = 100
    recorded: dict[str, Any] = field(default_factory=dict)  # meta.openai
    files: list[bytes] = field(default_factory=list)  # edits and variations
    mask: bytes | None = None


@dataclass(frozen=True)
class Made:
    generation: Generation
    image: Image
    data: bytes | None  # None when the answer gives URLs


@dataclass
class OpenAiImages:
    db: Database
    storage: Storage
    images: ImageService
    generations: GenerationService

    async def create(
        self, ctx: Context, request: ImagesRequest, with_bytes: bool = True
    ) -> list[Made]:
        """Store the request's files as uploads, make ``n`` images, or fail whole;
        ``with_bytes`` reads each image's bytes back from storage."""
        check_prompt(request.prompt)
        ratio, width, height = parse_size(request.size)
        if not 1 <= request.n <= MAX_N:
            raise ValidationError(f"n must be from 1 to {MAX_N}.", field="n")
        if len(request.files) > MAX_EDIT_IMAGES:
            raise ValidationError(
                f"image accepts at most {MAX_EDIT_IMAGES} files.", "TOO_MANY_REFERENCES",
                field="image",
            )  # fmt: skip
        recorded = {**request.recorded, "route": request.route}
        checked = [
            await self.images.check_upload(Upload(data, meta={"openai": request.route}))
            for data in request.files
        ]
        mask = None
        if request.mask is not None:
            mask = await self.images.check_upload(Upload(request.mask, meta={"openai": "mask"}))
            self._check_mask(mask.facts, checked[0].facts if checked else None)
        references = [str((await self.images.store_upload(ctx, c)).id) for c in checked]
        if mask is not None:
            recorded["mask"] = str((await self.images.store_upload(ctx, mask)).id)
        delivery = Delivery(width, height, request.output_format, request.compression)
        generation_request = GenerationRequest(
            prompt=request.prompt,
            aspect_ratio=ratio,
            reference_images=references,
            flow_id=None,
            auto_enhance=False,
            meta={"openai": recorded, "output": delivery.to_meta()},
        )
        made = await asyncio.gather(
            *(self.generations.create(ctx, generation_request) for _ in range(request.n))
        )
        failed = [g for g in made if g.status != "success" or not g.output_image_id]
        if failed:
            for generation in made:
                if generation not in failed:
                    await self.generations.delete(generation)
            raise GenerationFailedError(
                f"the image could not be made: {failed[0].error_message or 'no image'}",
                details={"generationIds": [g.id for g in failed]},
            )
        return [await self._made(g, with_bytes) for g in made]

    async def _made(self, generation: Generation, with_bytes: bool) -> Made:
        image: Image = await self.db.read(Image.get_by_id, generation.output_image_id)
        data = await self.storage.get(image.storage_key) if with_bytes else None
        return Made(generation, image, data)

    @staticmethod
    def _check_mask(mask: Any, first: Any) -> None:
        if mask.mime_type != "image/png":
            raise ValidationError("mask must be a PNG image.", field="mask")
        if first is not None and (mask.width, mask.height) != (first.width, first.height):
            raise ValidationError("mask must be the size of the first image.", field="mask")
