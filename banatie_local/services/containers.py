"""Walking image containers without decoding pixels: PNG chunks, JPEG segments and
RIFF (WebP) chunks, each bounded and length-checked, a structurally broken file a
``ValueError``. ``provenance.py`` splices metadata in with them, ``cleaning.py``
drops it."""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass
from typing import Final

PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
PNG_TEXT: Final = frozenset({b"tEXt", b"zTXt", b"iTXt"})
PNG_XMP_KEYWORD: Final = b"XML:com.adobe.xmp"
_PNG_MAX_LENGTH: Final = 2**31 - 1

JPEG_XMP_PREFIX: Final = b"http://ns.adobe.com/xap/1.0/\x00"
JPEG_XMP_EXTENSION: Final = b"http://ns.adobe.com/xmp/extension/\x00"
JPEG_EXIF_PREFIX: Final = b"Exif\x00\x00"
SOI: Final = b"\xff\xd8"
EOI: Final = b"\xff\xd9"
SOS: Final = b"\xff\xda"
APP0: Final = b"\xff\xe0"
APP1: Final = b"\xff\xe1"
# Adobe's limit for the standard XMP packet in one APP1 segment (XMP part 3, 1.1.3).
JPEG_XMP_MAX: Final = 65502
# Markers without a length: TEM, RST0..7, SOI, EOI.
_JPEG_STANDALONE: Final = frozenset({0x01, 0xD8, 0xD9, *range(0xD0, 0xD8)})
# In entropy-coded data only FF00 (a stuffed byte), RSTn and fill bytes are not markers.
_JPEG_NEXT_MARKER: Final = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")

VP8X_ALPHA: Final = 0x10
VP8X_EXIF: Final = 0x08
VP8X_XMP: Final = 0x04


@dataclass(frozen=True, slots=True)
class Chunk:
    """One chunk or segment: ``data[start:end]`` is all of it (header, CRC and padding
    included), ``data[body:body + size]`` its payload. ``kind`` is the PNG chunk type,
    the RIFF FourCC, or the two JPEG marker bytes."""

    kind: bytes
    start: int
    body: int
    size: int
    end: int

    def payload(self, data: bytes) -> bytes:
        return data[self.body : self.body + self.size]

    def starts_with(self, data: bytes, prefix: bytes) -> bool:
        """Whether the payload begins with ``prefix`` (a signature), within its bounds."""
        return data.startswith(prefix, self.body, self.body + self.size)


def png_chunks(data: bytes) -> tuple[list[Chunk], int]:
    """The chunks up to and including IEND, and the offset after IEND."""
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("PNG: the signature is missing.")
    chunks: list[Chunk] = []
    pos, total = len(PNG_SIGNATURE), len(data)
    while True:
        if pos + 12 > total:
            raise ValueError(f"PNG: the file ends inside a chunk header at offset {pos}.")
        size, kind = struct.unpack_from(">I4s", data, pos)
        if size > _PNG_MAX_LENGTH:
            raise ValueError(f"PNG: chunk length {size} at offset {pos} is over 2^31-1.")
        end = pos + 12 + size
        if end > total:
            raise ValueError(f"PNG: chunk {kind!r} at offset {pos} runs past the end.")
        if not chunks and kind != b"IHDR":
            raise ValueError(f"PNG: the first chunk is {kind!r}, not IHDR.")
        chunks.append(Chunk(kind, pos, pos + 8, size, end))
        pos = end
        if kind == b"IEND":
            return chunks, pos


def png_text_keyword(data: bytes, chunk: Chunk) -> bytes:
    """The keyword of a tEXt/zTXt/iTXt chunk (at most 79 bytes, NUL-terminated)."""
    head = data[chunk.body : chunk.body + min(chunk.size, 80)]
    return head.split(b"\x00", 1)[0]


def _jpeg_marker_at(data: bytes, pos: int) -> int:
    """The offset of the next marker's FF from ``pos``, past extraneous and fill bytes
    (decoders skip both)."""
    total = len(data)
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0:
            raise ValueError("JPEG: the file ends before the next marker.")
        while pos + 1 < total and data[pos + 1] == 0xFF:
            pos += 1
        if pos + 1 >= total:
            raise ValueError("JPEG: the file ends inside a marker.")
        if data[pos + 1] != 0x00:
            return pos
        pos += 2


def jpeg_segments(data: bytes, *, scans: bool) -> tuple[list[Chunk], int]:
    """The segments from SOI on. Without ``scans``, the walk stops at the first SOS and
    returns its offset. With ``scans``, each SOS chunk's ``end`` covers its entropy-coded
    data, and the walk goes on to EOI (returning the offset after it) or, for a file
    whose last scan just runs out, to the end of the data."""
    if not data.startswith(SOI):
        raise ValueError("JPEG: the start-of-image marker is missing.")
    segments = [Chunk(SOI, 0, 2, 0, 2)]
    pos, total = 2, len(data)
    while True:
        pos = _jpeg_marker_at(data, pos)
        kind = data[pos : pos + 2]
        if kind[1] in _JPEG_STANDALONE:
            if kind == SOI:
                raise ValueError(f"JPEG: a second start-of-image marker at offset {pos}.")
            segments.append(Chunk(kind, pos, pos + 2, 0, pos + 2))
            pos += 2
            if kind == EOI:
                return segments, pos
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        end = pos + 2 + length
        if pos + 4 > total or length < 2 or end > total:
            raise ValueError(f"JPEG: segment {kind.hex()} at offset {pos} runs past the end.")
        if kind == SOS:
            if not scans:
                return segments, pos
            found = _JPEG_NEXT_MARKER.search(data, end)
            scan_end = found.start() if found else total
            segments.append(Chunk(kind, pos, pos + 4, length - 2, scan_end))
            if found is None:
                return segments, total
            end = scan_end
        else:
            segments.append(Chunk(kind, pos, pos + 4, length - 2, end))
        pos = end


def riff_chunks(data: bytes) -> tuple[list[Chunk], int]:
    """The chunks of a WebP RIFF file and the end of the RIFF data (bytes after it are
    not part of the image)."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise ValueError("WebP: the RIFF/WEBP header is missing.")
    riff_end = 8 + int.from_bytes(data[4:8], "little")
    if riff_end > len(data):
        raise ValueError(f"WebP: the RIFF size says {riff_end} bytes; the file has {len(data)}.")
    chunks: list[Chunk] = []
    pos = 12
    while pos < riff_end:
        if pos + 8 > riff_end:
            raise ValueError(f"WebP: the file ends inside a chunk header at offset {pos}.")
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        body = pos + 8
        if body + size > riff_end:
            raise ValueError(f"WebP: chunk {data[pos : pos + 4]!r} at {pos} runs past the end.")
        # The pad byte of an odd-sized last chunk is sometimes missing; readers cope.
        end = min(body + size + (size & 1), riff_end)
        chunks.append(Chunk(data[pos : pos + 4], pos, body, size, end))
        pos = end
    if not chunks:
        raise ValueError("WebP: the file has no chunks.")
    return chunks, riff_end


def riff_chunk(kind: bytes, payload: bytes) -> bytes:
    """A RIFF chunk, padded to an even size."""
    pad = b"\x00" if len(payload) & 1 else b""
    return kind + len(payload).to_bytes(4, "little") + payload + pad


def riff_whole(data: bytes, chunk: Chunk) -> bytes | memoryview:
    """A chunk as it must be written: with its pad byte even if the file lacked it."""
    whole = memoryview(data)[chunk.start : chunk.end]
    if chunk.end - chunk.body < chunk.size + (chunk.size & 1):
        return bytes(whole) + b"\x00"
    return whole


def webp_canvas(data: bytes, chunk: Chunk) -> tuple[int, int, bool]:
    """Width, height and alpha read from a VP8 or VP8L bitstream header."""
    payload = data[chunk.body : chunk.body + min(chunk.size, 10)]
    if chunk.kind == b"VP8L":
        if len(payload) < 5 or payload[0] != 0x2F:
            raise ValueError("WebP: the VP8L bitstream header is broken.")
        bits = int.from_bytes(payload[1:5], "little")
        if bits >> 29:
            raise ValueError("WebP: unknown VP8L version.")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, bool(bits >> 28 & 1)
    if len(payload) < 10 or payload[0] & 1 or payload[3:6] != b"\x9d\x01\x2a":
        raise ValueError("WebP: the VP8 key frame header is broken.")
    width = int.from_bytes(payload[6:8], "little") & 0x3FFF
    height = int.from_bytes(payload[8:10], "little") & 0x3FFF
    if not width or not height:
        raise ValueError("WebP: the VP8 frame has no pixels.")
    return width, height, False


def riff_file(chunks: list[bytes | memoryview]) -> bytes:
    body = b"".join(chunks)
    return b"RIFF" + (len(body) + 4).to_bytes(4, "little") + b"WEBP" + body


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(payload, zlib.crc32(kind))
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)
