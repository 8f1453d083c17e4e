"""Deciding what uploaded bytes are, before anything is stored.

The type comes from the bytes' signature, never from a filename or header. The
dimensions are read from the header and checked against the pixel limit *before*
decoding, so a small file that declares a huge image (a decompression bomb) is
refused without allocating it; then the whole image is decoded, so truncated or
corrupt files are refused too.
"""

from __future__ import annotations

import hashlib
import io
import logging
import warnings
from dataclasses import dataclass

from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from banatie_local.constants import MAX_IMAGE_PIXELS
from banatie_local.errors import UnsupportedMediaTypeError, ValidationError
from banatie_local.services.cleaning import strip_metadata

log = logging.getLogger(__name__)

# Pillow's own guard, as a second line behind the explicit check below.
PILImage.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS

_PIL_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}


@dataclass(frozen=True)
class ImageFacts:
    mime_type: str
    width: int
    height: int
    file_size: int
    file_hash: str


def sniff(data: bytes) -> str | None:
    """The MIME type the bytes' signature shows, if it is PNG, JPEG or WebP."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def invalid(message: str) -> ValidationError:
    return ValidationError(message, "INVALID_FILE", field="file")


def inspect(data: bytes) -> ImageFacts:
    """Facts about an upload, or 400 ``INVALID_FILE`` / 415 ``UNSUPPORTED_MEDIA_TYPE``.

    CPU-bound: call it from a worker thread."""
    if not data:
        raise invalid("the uploaded file is empty.")
    mime = sniff(data)
    if mime is None:
        raise UnsupportedMediaTypeError("the file is not a PNG, JPEG or WebP image.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(data), formats=[_PIL_FORMATS[mime]]) as img:
                width, height = img.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise invalid(
                        f"the image is {width}×{height}; at most "
                        f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels are accepted."
                    )
                img.load()
    except ValidationError:
        raise
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning):
        raise invalid("the image declares more pixels than are accepted.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        raise invalid(f"the file is not a decodable {mime.split('/')[1].upper()} image.") from None
    except Exception:  # a decoder tripping over hostile bytes is still a bad file
        log.warning("image decoder failed on an upload", exc_info=True)
        raise invalid(f"the file is not a decodable {mime.split('/')[1].upper()} image.") from None
    if width <= 0 or height <= 0:
        raise invalid("the image has no pixels.")
    return ImageFacts(mime, width, height, len(data), hashlib.sha256(data).hexdigest())


def clean_upload(data: bytes, strip: bool) -> tuple[bytes, ImageFacts]:
    """An upload checked (``inspect``) and, with ``strip`` (``uploads.strip_metadata``),
    without its EXIF, XMP, IPTC and comments, turned upright (``services/cleaning.py``);
    the facts describe the bytes to store. CPU-bound: call it from a worker thread."""
    facts = inspect(data)
    if not strip:
        return data, facts
    try:
        cleaned = strip_metadata(data, facts.mime_type)
    except ValueError:
        raise invalid(
            "the file's structure could not be read to remove its metadata "
            "(or send it with uploads.strip_metadata = false)."
        ) from None
    if cleaned is data or cleaned == data:
        return data, facts
    with PILImage.open(io.BytesIO(cleaned)) as img:
        width, height = img.size
    digest = hashlib.sha256(cleaned).hexdigest()
    return cleaned, ImageFacts(facts.mime_type, width, height, len(cleaned), digest)
