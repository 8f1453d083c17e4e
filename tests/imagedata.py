"""Test images made in memory: valid PNG/JPEG/WebP, and broken or hostile files."""

from __future__ import annotations

import io
import random
import struct
import zlib

from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

Color = tuple[int, int, int]


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_bytes(width: int = 8, height: int = 8, color: Color = (255, 0, 0)) -> bytes:
    """A solid-colour RGB PNG."""
    return _encode(Image.new("RGB", (width, height), color), "PNG")


def jpeg_bytes(width: int = 8, height: int = 8, color: Color = (0, 128, 255)) -> bytes:
    """A solid-colour baseline JPEG."""
    return _encode(Image.new("RGB", (width, height), color), "JPEG", quality=90)


def webp_bytes(width: int = 8, height: int = 8, color: Color = (0, 200, 0)) -> bytes:
    """A solid-colour lossless WebP."""
    return _encode(Image.new("RGB", (width, height), color), "WEBP", lossless=True)


def gif_bytes(width: int = 8, height: int = 8) -> bytes:
    """A GIF: a real image, but not an accepted format."""
    return _encode(Image.new("RGB", (width, height), (10, 20, 30)), "GIF")


def noise_png(width: int, height: int, seed: int = 1) -> bytes:
    """An RGB PNG of random pixels, which barely compresses."""
    data = random.Random(seed).randbytes(width * height * 3)
    return _encode(Image.frombytes("RGB", (width, height), data), "PNG")


def bilevel_png(width: int, height: int) -> bytes:
    """A 1-bit white PNG: many pixels in a few kilobytes."""
    return _encode(Image.new("1", (width, height), 1), "PNG")


def chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk with its length and a correct CRC."""
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def declared_png(width: int, height: int) -> bytes:
    """A tiny PNG with valid CRCs whose header declares ``width`` × ``height`` RGB
    pixels; its pixel data covers only a sliver of that (a decompression bomb when
    the declared size is huge)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 1024)
    return PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def padded_png(total_size: int) -> bytes:
    """A valid small PNG grown to exactly ``total_size`` bytes by a private ancillary
    chunk placed before IEND."""
    base = png_bytes(4, 4)
    iend = base[-12:]
    room = total_size - len(base) - 12
    if room < 0:
        raise ValueError(f"cannot pad a PNG of {len(base)} bytes to {total_size}")
    return base[:-12] + chunk(b"prVt", b"\x00" * room) + iend


def truncated_png() -> bytes:
    """A noise PNG cut in the middle of its pixel data (IDAT)."""
    data = noise_png(64, 64)
    start = data.index(b"IDAT")
    (length,) = struct.unpack(">I", data[start - 4 : start])
    return data[: start + 4 + length // 2]


def corrupt_jpeg() -> bytes:
    """A JPEG signature and header followed by bytes that are no JPEG structure."""
    return b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4


def pixels(data: bytes) -> tuple[tuple[int, int], bytes]:
    """An image's size and RGBA pixels: what two files share when only their metadata
    differs (a generated file carries its own ids, API.md §14)."""
    with Image.open(io.BytesIO(data)) as image:
        return image.size, image.convert("RGBA").tobytes()
