"""An image delivered at an exact size and format (the OpenAI door, API.md §11).

A generation may ask for its output at exactly ``width``×``height`` in ``format``: the
provider draws at the nearest ratio of the table, and the output is scaled to cover
the size, centre-cropped (the ratios differ by at most 2 %, so the crop is a sliver)
and encoded. The request is kept in the generation's ``meta.output``, so a
regeneration delivers the same size and format. CPU-bound: run it off the loop.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Final

from PIL import Image as PILImage
from PIL import ImageOps

from banatie_local.providers.base import GeneratedImage

FORMATS: Final = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
_PIL: Final = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}


@dataclass(frozen=True)
class Delivery:
    """What the output must be: a size (None: as drawn), a format, a compression."""

    width: int | None = None
    height: int | None = None
    format: str = "png"
    compression: int = 100  # 0..100, as OpenAI's output_compression (jpeg and webp)

    def to_meta(self) -> dict[str, Any]:
        return {
            "width": self.width,
            "height": self.height,
            "format": self.format,
            "compression": self.compression,
        }

    @staticmethod
    def from_meta(meta: dict[str, Any]) -> Delivery | None:
        """The delivery a generation's meta records, or None (also for a malformed one:
        meta is the client's to edit, the system keys are kept but not trusted)."""
        value = meta.get("output")
        if not isinstance(value, dict):
            return None
        width, height = value.get("width"), value.get("height")
        fmt, compression = value.get("format"), value.get("compression", 100)
        sized = isinstance(width, int) and isinstance(height, int)
        if (width is not None or height is not None) and not sized:
            return None
        if sized and not (1 <= width <= 4096 and 1 <= height <= 4096):  # type: ignore[operator]
            return None
        if fmt not in FORMATS or not isinstance(compression, int):
            return None
        return Delivery(width, height, str(fmt), max(0, min(100, compression)))

    def needed(self, image: GeneratedImage) -> bool:
        """Whether ``image`` differs from what must be delivered."""
        sized = self.width is None or (image.width, image.height) == (self.width, self.height)
        return not sized or FORMATS[self.format] != image.mime_type


def deliver(image: GeneratedImage, delivery: Delivery) -> GeneratedImage:
    """``image`` at the delivery's size (cover, centre crop) and format."""
    if not delivery.needed(image):
        return image
    with PILImage.open(io.BytesIO(image.data)) as opened:
        picture: PILImage.Image = opened.convert(
            "RGBA" if opened.mode in ("RGBA", "LA", "P") else "RGB"
        )
    if delivery.width is not None and delivery.height is not None:
        size = (delivery.width, delivery.height)
        if picture.size != size:
            picture = ImageOps.fit(picture, size, PILImage.Resampling.LANCZOS)
    if delivery.format == "jpeg" and picture.mode != "RGB":
        picture = picture.convert("RGB")
    buffer = io.BytesIO()
    options: dict[str, Any] = {}
    if delivery.format in ("jpeg", "webp"):
        options["quality"] = max(1, delivery.compression)
    else:
        options["optimize"] = False
    picture.save(buffer, _PIL[delivery.format], **options)
    width, height = picture.size
    return GeneratedImage(buffer.getvalue(), FORMATS[delivery.format], width, height, image.model)
