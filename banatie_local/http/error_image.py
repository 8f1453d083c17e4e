"""A refused live URL, told to a browser's ``<img>`` as a picture (API.md §5.1, §13).

A page's ``<img>`` cannot show a JSON error: it shows a broken-image icon and the
person never learns why. When a live URL is refused (429, 403, 502) and the request's
``Accept`` prefers an image, the body is a small PNG saying what happened and when to
try again; the status stays the same. Drawn with Pillow's built-in font (nothing to
ship), off the event loop, and kept by its text and size.
"""

from __future__ import annotations

import io
import textwrap
import threading
from typing import Final

from cachetools import LRUCache
from PIL import Image, ImageDraw, ImageFont

STATUSES: Final = (403, 429, 502)
_TITLES: Final = {
    429: "Too many new images",
    403: "Not allowed",
    502: "Generation failed",
}
_DEFAULT_SIZE: Final = (480, 270)
_drawn: LRUCache[tuple[str, ...], bytes] = LRUCache(maxsize=64)
_lock = threading.Lock()


def prefers_image(accept: str | None) -> bool:
    """Whether the media type ``accept`` ranks first (by q, then order) is an image,
    as for a browser's ``<img>`` (``image/avif,image/webp,…,*/*;q=0.8``), and not for a
    page navigation (``text/html,…``), curl (``*/*``) or an API client."""
    if not accept:
        return False
    best, best_q = "", -1.0
    for part in accept.split(",")[:32]:
        kind, _, params = part.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > best_q:
            best, best_q = kind.strip().lower(), q
    return best.startswith("image/") and best_q > 0


def size_from(width: str | None, height: str | None) -> tuple[int, int]:
    """The picture's size: the variant asked for (``w``/``h``), within bounds, so the
    page's layout holds; else 480×270."""
    w = int(width) if width and width.isascii() and width.isdigit() and len(width) < 6 else 0
    h = int(height) if height and height.isascii() and height.isdigit() and len(height) < 6 else 0
    if not w and not h:
        return _DEFAULT_SIZE
    w = w or round(h * 16 / 9)
    h = h or round(w * 9 / 16)
    return max(120, min(w, 1024)), max(68, min(h, 1024))


def error_png(status: int, message: str, retry_after: str | None, size: tuple[int, int]) -> bytes:
    """The PNG for a refused live URL (CPU-bound: call off the event loop)."""
    lines = [_TITLES.get(status, "Image unavailable"), message]
    if retry_after and retry_after.isdigit():
        lines.append(f"Try again in {_duration(int(retry_after))}.")
    key = (str(status), *lines, f"{size[0]}x{size[1]}")
    with _lock:
        found = _drawn.get(key)
    if found is None:
        found = _draw(lines, size)
        with _lock:
            _drawn[key] = found
    return found


def _duration(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{round(seconds / 3600)} h"


def _draw(lines: list[str], size: tuple[int, int]) -> bytes:
    width, height = size
    picture = Image.new("RGB", size, (238, 238, 238))
    draw = ImageDraw.Draw(picture)
    draw.rectangle((0, 0, width - 1, height - 1), outline=(160, 160, 160))
    big = max(10, min(28, width // 18))
    small = max(9, round(big * 0.7))
    title_font = ImageFont.load_default(size=big)
    body_font = ImageFont.load_default(size=small)
    y = max(6, height // 10)
    draw.text((10, y), lines[0], fill=(120, 20, 20), font=title_font)
    y += big + 8
    chars = max(12, int(width / (small * 0.55)))
    for line in lines[1:]:
        for piece in textwrap.wrap(line, chars)[:4]:
            if y + small > height - 4:
                break
            draw.text((10, y), piece, fill=(40, 40, 40), font=body_font)
            y += small + 4
    out = io.BytesIO()
    picture.save(out, "PNG", optimize=False)
    return out.getvalue()
