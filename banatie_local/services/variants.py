"""Image variants (API.md §12): any size, crop and format of a stored image, by URL.

``?w=&h=&fit=&format=&q=`` on ``/cdn/.../img/{ref}`` and on the live URL ask for a
variant. The request is checked and normalised once (``VariantRequest``); the plan
(``plan``) turns it into exact pixels for one stored image: never larger than the
image, ``cover`` cropped around its focal point. A variant is rendered once, off the
event loop, and kept in the memory LRU (under the image's id, so deleting,
regenerating or re-aliasing the image drops it) and in storage under
``{org}/{project}/var/{imageId}/{variantKey}`` with a row in ``image_variants``. At
most ``cdn.max_variants_per_image`` rows are kept per image: recording one more drops
the least recently used, and its file.

The key of a variant is a hash of the image's file hash, the normalised parameters
and (for ``cover``) the focal point, so a regenerated image or a moved focal point
never serves an old variant; its ETag is the same hash.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from cachetools import LRUCache
from PIL import Image as PILImage
from PIL import features
from PIL.PngImagePlugin import PngImageFile, PngInfo

from banatie_local.errors import ValidationError
from banatie_local.services.containers import JPEG_XMP_MAX

MAX_SIDE: Final = 4096
DEFAULT_QUALITY: Final = 82
FITS: Final = ("cover", "contain", "fill")
MIME: Final = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp", "avif": "image/avif"}
FORMAT_OF_MIME: Final = {mime: name for name, mime in MIME.items()}
_PIL_FORMAT: Final = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP", "avif": "AVIF"}
_LOSSY: Final = ("jpeg", "webp", "avif")
PARAMS: Final = ("w", "h", "fit", "format", "q")


def writable_formats() -> tuple[str, ...]:
    """The formats this Pillow can write, best first among the optional ones."""
    PILImage.init()
    found = ["png", "jpeg"]
    if features.check("webp"):
        found.append("webp")
    if "AVIF" in PILImage.SAVE:
        found.append("avif")
    return tuple(found)


WRITABLE: Final = writable_formats()


@dataclass(frozen=True, slots=True)
class VariantRequest:
    """What the URL asked for, checked. ``format`` is ``auto`` until ``resolve``."""

    width: int | None
    height: int | None
    fit: str | None
    format: str | None  # None: the stored image's format
    quality: int
    auto: bool = False  # the format was chosen by Accept (the answer varies by it)
    # the request as a string (after ``resolve``): the memory cache key
    memo: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        memo = f"{self.width}|{self.height}|{self.fit}|{self.format}|{self.quality}|{self.auto}"
        object.__setattr__(self, "memo", memo)

    def resolve(self, accept: str | None) -> VariantRequest:
        """``format=auto`` made concrete by the ``Accept`` header (avif > webp >
        the stored format); the same object for the same header."""
        if self.format != "auto":
            return self
        known = _RESOLVED.get((self, accept))
        if known is None:
            chosen = auto_format(accept)
            known = VariantRequest(self.width, self.height, self.fit, chosen, self.quality, True)
            _RESOLVED[(self, accept)] = known
        return known


_RESOLVED: LRUCache[tuple[VariantRequest, str | None], VariantRequest] = LRUCache(maxsize=4096)
_ACCEPTS: LRUCache[str, str | None] = LRUCache(maxsize=256)


def auto_format(accept: str | None) -> str | None:
    """The best writable format ``accept`` allows: avif, then webp, else None (keep)."""
    if not accept:
        return None
    known = _ACCEPTS.get(accept, "")
    if known != "":
        return known
    allowed = set()
    for part in accept.split(",")[:64]:
        kind, _, params = part.strip().partition(";")
        q = params.replace(" ", "").lower()
        if "q=0" in q and not any(c in q.split("q=0", 1)[1][:1] for c in ".123456789"):
            continue  # q=0 (or q=0.000): not acceptable
        allowed.add(kind.strip().lower())
    found = next((f for f in ("avif", "webp") if f in WRITABLE and f"image/{f}" in allowed), None)
    _ACCEPTS[accept] = found
    return found


def parse_variant(arg: Callable[[str], str | None]) -> VariantRequest | None:
    """The variant parameters of a query, read through ``arg(name)``; None when the
    query asks for none (the stored image as it is)."""
    raw = {name: arg(name) for name in PARAMS}
    if all(value is None for value in raw.values()):
        return None
    width = _side(raw["w"], "w")
    height = _side(raw["h"], "h")
    fit = raw["fit"]
    if fit is not None and fit not in FITS:
        raise ValidationError("fit must be cover, contain or fill.", field="fit")
    if width is None or height is None:
        fit = None  # one side given: the ratio is kept whatever the fit
    elif fit is None:
        fit = "cover"
    fmt = raw["format"]
    if fmt is not None:
        fmt = "jpeg" if fmt == "jpg" else fmt
        if fmt != "auto" and fmt not in WRITABLE:
            choices = ", ".join((*WRITABLE, "auto"))
            raise ValidationError(f"format must be one of {choices}.", field="format")
    quality = DEFAULT_QUALITY
    if raw["q"] is not None:
        quality = _number(raw["q"], "q", 1, 100)
    return VariantRequest(width, height, fit, fmt, quality)


def _side(value: str | None, name: str) -> int | None:
    return None if value is None else _number(value, name, 1, MAX_SIDE)


def _number(value: str, name: str, low: int, high: int) -> int:
    if not (value.isascii() and value.isdigit() and len(value) <= 5) or not (
        low <= int(value) <= high
    ):
        raise ValidationError(f"{name} must be a whole number from {low} to {high}.", field=name)
    return int(value)


# ------------------------------------------------------------------ the plan


@dataclass(frozen=True, slots=True)
class Source:
    """The stored image a variant is made from."""

    image_id: str
    mime: str
    file_hash: str
    storage_key: str
    width: int
    height: int
    focal_x: float | None
    focal_y: float | None


@dataclass(frozen=True, slots=True)
class Plan:
    """Exactly what to make: the output size, the source box it comes from, the format."""

    width: int
    height: int
    box: tuple[int, int, int, int]  # left, top, right, bottom in the source
    format: str
    quality: int
    params: str  # normalised, for X-Variant
    key: str  # hash of file, params and focal point: the storage name and the ETag
    identity: bool  # the stored image as it is (no resize, same format)
    source_size: tuple[int, int]

    @property
    def mime(self) -> str:
        return MIME[self.format]

    @property
    def etag(self) -> str:
        return f'"{self.key}"'


def plan(source: Source, request: VariantRequest) -> Plan:
    """The variant of ``source`` that ``request`` asks for (after ``resolve``)."""
    sw, sh = source.width, source.height
    box = (0, 0, sw, sh)
    w, h = request.width, request.height
    if w is not None and h is not None:
        if request.fit == "fill":
            size = (min(w, sw), min(h, sh))
        elif request.fit == "contain":
            scale = min(w / sw, h / sh, 1.0)
            size = (max(1, round(sw * scale)), max(1, round(sh * scale)))
        else:  # cover: the box, never larger than the image, filled around the focal point
            shrink = min(sw / w, sh / h, 1.0)
            size = (max(1, round(w * shrink)), max(1, round(h * shrink)))
            box = _cover_box(source, size[0] / size[1])
    elif w is not None:
        width = min(w, sw)
        size = (width, max(1, round(sh * width / sw)))
    elif h is not None:
        height = min(h, sh)
        size = (max(1, round(sw * height / sh)), height)
    else:
        size = (sw, sh)
    stored = FORMAT_OF_MIME.get(source.mime, "png")
    fmt = request.format if request.format not in (None, "auto") else stored
    assert fmt is not None
    parts = [f"w={size[0]}", f"h={size[1]}"]
    if request.fit is not None:
        parts.append(f"fit={request.fit}")
    parts.append(f"format={fmt}")
    if fmt in _LOSSY:
        parts.append(f"q={request.quality}")
    params = "&".join(parts)
    focal = ""
    if request.fit == "cover":
        focal = f"|{source.focal_x}|{source.focal_y}"
    key = hashlib.sha256(f"{source.file_hash}|{params}{focal}".encode()).hexdigest()[:40]
    identity = size == (sw, sh) and box == (0, 0, sw, sh) and fmt == stored
    return Plan(size[0], size[1], box, fmt, request.quality, params, key, identity, (sw, sh))


def _cover_box(source: Source, ratio: float) -> tuple[int, int, int, int]:
    """The largest box of ``ratio`` inside the image, centred on its focal point as far
    as the edges allow."""
    sw, sh = source.width, source.height
    if sw / sh > ratio:
        cw, ch = max(1, min(sw, round(sh * ratio))), sh
    else:
        cw, ch = sw, max(1, min(sh, round(sw / ratio)))
    fx = 0.5 if source.focal_x is None else source.focal_x
    fy = 0.5 if source.focal_y is None else source.focal_y
    left = min(max(round(fx * sw - cw / 2), 0), sw - cw)
    top = min(max(round(fy * sh - ch / 2), 0), sh - ch)
    return left, top, left + cw, top + ch


def render(data: bytes, todo: Plan) -> bytes:
    """The variant's bytes (CPU-bound: run it off the event loop)."""
    with PILImage.open(io.BytesIO(data)) as opened:
        icc = opened.info.get("icc_profile")
        carried = _carried(opened)
        if opened.format == "JPEG":  # decode at a reduced scale when that is enough
            opened.draft("RGB", (todo.width, todo.height))
        picture: PILImage.Image = opened.convert("RGBA") if opened.mode == "P" else opened.copy()
    box = todo.box
    if picture.size != todo.source_size:  # the JPEG draft decoded it smaller
        fx = picture.size[0] / todo.source_size[0]
        fy = picture.size[1] / todo.source_size[1]
        box = (round(box[0] * fx), round(box[1] * fy), round(box[2] * fx), round(box[3] * fy))
    if picture.mode not in ("RGB", "RGBA", "L", "LA"):
        picture = picture.convert("RGBA" if "A" in picture.mode else "RGB")
    size = (todo.width, todo.height)
    if size != picture.size or box != (0, 0, *picture.size):
        picture = picture.resize(size, PILImage.Resampling.LANCZOS, box=box, reducing_gap=3.0)
    if todo.format == "jpeg" and picture.mode not in ("RGB", "L"):
        picture = picture.convert("RGB")
    options: dict[str, Any] = {}
    if icc:
        options["icc_profile"] = icc
    options.update(_metadata_options(todo.format, *carried))
    if todo.format in _LOSSY:
        options["quality"] = todo.quality
    if todo.format == "avif":
        options["speed"] = 8
    out = io.BytesIO()
    picture.save(out, _PIL_FORMAT[todo.format], **options)
    return out.getvalue()


_PNG_TEXTS: Final = ("Software", "Comment", "Description")


def _carried(opened: PILImage.Image) -> tuple[bytes | None, dict[str, str]]:
    """What a variant keeps of its image's metadata: the XMP packet and (of a PNG)
    the text that image tools show, so a variant of a generated image says what made
    it (API.md §14) and a variant of a cleaned upload says nothing."""
    xmp = opened.info.get("xmp")
    if isinstance(xmp, str):
        xmp = xmp.encode()
    texts: dict[str, str] = {}
    if isinstance(opened, PngImageFile):
        found = opened.text  # reads the text chunks, also those after the pixels
        texts = {k: str(found[k]) for k in _PNG_TEXTS if k in found}
    return (xmp if isinstance(xmp, bytes) and xmp else None), texts


def _metadata_options(fmt: str, xmp: bytes | None, texts: dict[str, str]) -> dict[str, Any]:
    """Pillow's save options that write them: ``xmp=`` for JPEG, WebP and AVIF, text
    chunks for PNG (Pillow ignores ``xmp=`` there)."""
    if fmt == "jpeg" and xmp is not None:
        xmp = _fit_one_segment(xmp)
    if fmt != "png":
        return {"xmp": xmp} if xmp else {}
    if not xmp and not texts:
        return {}
    info = PngInfo()
    if xmp:
        info.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8", "replace"))
    for key, value in texts.items():
        if value.isascii() or all(ord(c) < 256 for c in value):
            info.add_text(key, value)
        else:
            info.add_itxt(key, value)
    return {"pnginfo": info}


def _fit_one_segment(xmp: bytes) -> bytes | None:
    """A packet that fits one JPEG APP1 segment: our packets hold the prompt twice
    (``dc:description`` and ``banatie:Prompt``), so a long one loses the first copy;
    a packet still too large is not carried at all rather than cut mid-XML."""
    if len(xmp) <= JPEG_XMP_MAX:
        return xmp
    slim = _DESCRIPTION.sub(b"", xmp)
    return slim if len(slim) <= JPEG_XMP_MAX else None


_DESCRIPTION: Final = re.compile(rb"<dc:description>.*?</dc:description>", re.S)
