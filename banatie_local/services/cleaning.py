"""Stripping private metadata from uploads (API.md §14): EXIF (GPS above all), XMP,
IPTC, comments and the like go; the ICC profile and everything a decoder needs stay.

The work is done at the container level: whole segments and chunks are dropped as
they are and the pixels are not touched, so a file with nothing to remove comes back
as the very same bytes. Only an EXIF orientation other than 1 costs a re-encode: the
rotation is applied to the pixels first, so the picture still stands up once the tag
that told viewers to turn it is gone.

What is kept is a list of what is known to be needed (an allowlist): an unknown chunk
or segment may hold anything, a C2PA manifest with a location for one.
"""

from __future__ import annotations

import io
import warnings
from typing import Any, Final, Literal

from PIL import Image as PILImage
from PIL import JpegImagePlugin

from banatie_local.services.containers import (
    APP1,
    JPEG_EXIF_PREFIX,
    SOS,
    VP8X_EXIF,
    VP8X_XMP,
    Chunk,
    jpeg_segments,
    png_chunks,
    riff_chunk,
    riff_chunks,
    riff_file,
    riff_whole,
)

# PNG: the critical chunks, colour and transparency, physical size, APNG's animation.
_PNG_KEEP: Final = frozenset(
    {
        *(b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"bKGD", b"hIST", b"sBIT", b"sPLT"),
        *(b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"cICP", b"mDCV", b"cLLI", b"pHYs"),
        *(b"acTL", b"fcTL", b"fdAT"),
    }
)
# JPEG: APP0 JFIF, APP2 ICC_PROFILE and APP14 Adobe (the colour transform) are the only
# application segments a decoder needs; every non-APPn segment but COM is image data.
_JPEG_KEEP_APP: Final = {
    0xE0: (b"JFIF\x00",),
    0xE2: (b"ICC_PROFILE\x00",),
    0xEE: (b"Adobe",),
}
_JPEG_COM: Final = 0xFE
# WebP: the image, its alpha, animation and the colour profile.
_WEBP_IMAGE: Final = frozenset({b"VP8 ", b"VP8L", b"ANMF"})
_WEBP_KEEP: Final = _WEBP_IMAGE | {b"VP8X", b"ALPH", b"ANIM", b"ICCP"}

_PIL_FORMATS: Final = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}
# EXIF orientation → the transpose that stands the picture up (as ImageOps.exif_transpose).
_TRANSPOSE: Final = {
    2: PILImage.Transpose.FLIP_LEFT_RIGHT,
    3: PILImage.Transpose.ROTATE_180,
    4: PILImage.Transpose.FLIP_TOP_BOTTOM,
    5: PILImage.Transpose.TRANSPOSE,
    6: PILImage.Transpose.ROTATE_270,
    7: PILImage.Transpose.TRANSVERSE,
    8: PILImage.Transpose.ROTATE_90,
}


def strip_metadata(data: bytes, mime: str) -> bytes:
    """``data`` without EXIF, XMP, IPTC and comments, upright, with its ICC profile.

    ``data`` is a PNG, JPEG or WebP (the caller has checked); ``data`` itself comes
    back when there is nothing to remove. A structurally broken file raises
    ``ValueError``. CPU-bound when it must rotate: run it off the event loop."""
    if mime not in _PIL_FORMATS:
        raise ValueError(f"cannot strip metadata from {mime}.")
    stripped, exif = _strip(data, mime)
    orientation = exif_orientation(exif) if exif is not None else 1
    if orientation == 1:
        return stripped
    upright = _upright(stripped, mime, orientation)
    return stripped if upright is None else _strip(upright, mime)[0]


def _strip(data: bytes, mime: str) -> tuple[bytes, bytes | None]:
    """The stripped bytes and the (first) EXIF payload that was removed."""
    if mime == "image/png":
        return _strip_png(data)
    if mime == "image/jpeg":
        return _strip_jpeg(data)
    return _strip_webp(data)


def _keep_only(data: bytes, parts: list[Chunk], keep: list[bool], end: int) -> bytes:
    """``data`` up to ``end`` without the parts not kept (the same object if all are)."""
    if all(keep) and end == len(data):
        return data
    view = memoryview(data)
    pieces: list[memoryview] = []
    cursor = 0
    for part, kept in zip(parts, keep, strict=True):
        if not kept:
            pieces.append(view[cursor : part.start])
            cursor = part.end
    pieces.append(view[cursor:end])
    return b"".join(pieces)


def _strip_png(data: bytes) -> tuple[bytes, bytes | None]:
    chunks, end = png_chunks(data)
    exif = next((c.payload(data) for c in chunks if c.kind == b"eXIf"), None)
    keep = [c.kind in _PNG_KEEP for c in chunks]
    return _keep_only(data, chunks, keep, end), exif


def _jpeg_kept(data: bytes, segment: Chunk) -> bool:
    marker = segment.kind[1]
    if marker == _JPEG_COM:
        return False
    if not 0xE0 <= marker <= 0xEF:
        return True
    signatures = _JPEG_KEEP_APP.get(marker, ())
    return any(segment.starts_with(data, s) for s in signatures)


def _strip_jpeg(data: bytes) -> tuple[bytes, bytes | None]:
    # The whole file is walked: an APPn or COM may also sit between progressive scans.
    # What follows EOI goes too: phones append further images there (MPF), with EXIF.
    segments, end = jpeg_segments(data, scans=True)
    if not any(s.kind == SOS for s in segments):
        raise ValueError("JPEG: there is no image data (SOS).")
    exif = next(
        (
            s.payload(data)
            for s in segments
            if s.kind == APP1 and s.starts_with(data, JPEG_EXIF_PREFIX)
        ),
        None,
    )
    keep = [_jpeg_kept(data, s) for s in segments]
    return _keep_only(data, segments, keep, end), exif


def _strip_webp(data: bytes) -> tuple[bytes, bytes | None]:
    chunks, end = riff_chunks(data)
    if not any(c.kind in _WEBP_IMAGE for c in chunks):
        raise ValueError("WebP: there is no image data (VP8, VP8L or ANMF).")
    exif = next((c.payload(data) for c in chunks if c.kind == b"EXIF"), None)
    pieces: list[bytes | memoryview] = []
    changed = end != len(data)
    for chunk in chunks:
        if chunk.kind not in _WEBP_KEEP:
            changed = True
            continue
        whole = riff_whole(data, chunk)
        if chunk.kind == b"VP8X" and chunk.size >= 1:
            flags = data[chunk.body]
            if flags & (VP8X_EXIF | VP8X_XMP):
                payload = bytearray(chunk.payload(data))
                payload[0] = flags & ~(VP8X_EXIF | VP8X_XMP)
                whole = riff_chunk(b"VP8X", bytes(payload))
        changed = changed or isinstance(whole, bytes)
        pieces.append(whole)
    return (riff_file(pieces) if changed else data), exif


def exif_orientation(exif: bytes) -> int:
    """The Orientation (0x0112) of IFD0 in an EXIF block, 1 when absent or unreadable
    (a broken EXIF block is being removed anyway)."""
    tiff = exif[6:] if exif.startswith(JPEG_EXIF_PREFIX) else exif
    order: Literal["little", "big"]
    if tiff[:4] == b"II*\x00":
        order = "little"
    elif tiff[:4] == b"MM\x00*":
        order = "big"
    else:
        return 1
    ifd = int.from_bytes(tiff[4:8], order)
    count = int.from_bytes(tiff[ifd : ifd + 2], order)
    for entry in range(ifd + 2, min(ifd + 2 + 12 * count, len(tiff) - 11), 12):
        tag = int.from_bytes(tiff[entry : entry + 2], order)
        kind = int.from_bytes(tiff[entry + 2 : entry + 4], order)
        if tag == 0x0112 and kind == 3:  # SHORT
            value = int.from_bytes(tiff[entry + 8 : entry + 10], order)
            return value if value in _TRANSPOSE else 1
    return 1


def _upright(data: bytes, mime: str, orientation: int) -> bytes | None:
    """The picture turned as ``orientation`` says and encoded again in its format, or
    None for an animation (turning only its first frame would lose the rest)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(data), formats=[_PIL_FORMATS[mime]]) as opened:
                if mime != "image/jpeg" and getattr(opened, "is_animated", False):
                    return None
                opened.load()
                options = _encoding(opened, mime, data)
                picture = opened.transpose(_TRANSPOSE[orientation])
        buffer = io.BytesIO()
        picture.save(buffer, _PIL_FORMATS[mime], **options)
    except Exception as exc:  # a decoder tripping over hostile bytes is still a bad file
        raise ValueError(f"the image cannot be decoded to apply its orientation ({exc}).") from exc
    return buffer.getvalue()


def _encoding(opened: PILImage.Image, mime: str, data: bytes) -> dict[str, Any]:
    """Save options close to the source: its ICC profile, JPEG quality 95 with its
    chroma subsampling, WebP lossless when the source was (VP8L) or else quality 95."""
    options: dict[str, Any] = {}
    if icc := opened.info.get("icc_profile"):
        options["icc_profile"] = icc
    if mime == "image/jpeg":
        options["quality"] = 95
        if isinstance(opened, JpegImagePlugin.JpegImageFile):
            sampling = JpegImagePlugin.get_sampling(opened)
            if sampling >= 0:
                options["subsampling"] = sampling
    elif mime == "image/webp":
        chunks, _ = riff_chunks(data)
        if any(c.kind == b"VP8L" for c in chunks):
            options["lossless"] = True
            options["exact"] = True
        else:
            options["quality"] = 95
    return options
