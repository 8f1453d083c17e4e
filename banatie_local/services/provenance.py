"""Provenance inside generated files (API.md §14): XMP that marks the image as made by
an algorithm, with the generator, the ids and the prompt, readable by ``exiftool``.

The metadata is spliced in at the container level (a PNG chunk, a JPEG APP1 segment,
a WebP RIFF chunk): the pixels are never decoded or re-encoded, so marking a 2 MB PNG
costs a copy of its bytes, not a compression. Re-marking replaces what an earlier
marking wrote, so a regenerated image carries one packet, not two.

The container walkers (``png_chunks``, ``jpeg_segments``, ``riff_chunks``) are shared
with the upload cleaner. They check every length against the file and raise
``ValueError`` on a structurally broken one, never an ``IndexError``.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Final

from banatie_local.services.containers import (
    APP0,
    APP1,
    JPEG_EXIF_PREFIX,
    JPEG_XMP_EXTENSION,
    JPEG_XMP_MAX,
    JPEG_XMP_PREFIX,
    PNG_TEXT,
    PNG_XMP_KEYWORD,
    VP8X_ALPHA,
    VP8X_XMP,
    Chunk,
    jpeg_segments,
    png_chunk,
    png_chunks,
    png_text_keyword,
    riff_chunk,
    riff_chunks,
    riff_file,
    riff_whole,
    webp_canvas,
)

TRAINED_ALGORITHMIC_MEDIA: Final = (
    "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
)
ALGORITHMIC_MEDIA: Final = "http://cv.iptc.org/newscodes/digitalsourcetype/algorithmicMedia"
NAMESPACE: Final = "https://banatie.app/ns/local/1.0/"
# The text keywords a marking writes; earlier ones are replaced, not duplicated.
_PNG_OURS: Final = frozenset({PNG_XMP_KEYWORD, b"Software", b"Comment", b"Description"})

# Control characters XML 1.0 forbids (and PNG text should not hold), C1 controls,
# lone surrogates (unencodable as UTF-8) and the two non-characters.
_NOT_TEXT: Final = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_XML_ESCAPES: Final = {ord("&"): "&amp;", ord("<"): "&lt;", ord(">"): "&gt;", ord('"'): "&quot;"}


@dataclass(frozen=True)
class Provenance:
    """What a generated image says about itself."""

    ai_model: bool  # False: drawn by an algorithm without a trained model (offline)
    creator_tool: str  # "banatie-local 0.9.0"
    generation_id: str
    image_id: str
    provider: str
    model: str
    prompt: str | None = None  # None: the prompt is not embedded

    @property
    def digital_source_type(self) -> str:
        return TRAINED_ALGORITHMIC_MEDIA if self.ai_model else ALGORITHMIC_MEDIA

    def statement(self) -> str:
        """One human-readable line for the tools that show PNG text, not XMP."""
        kind = "AI-generated image" if self.ai_model else "Computer-generated image (no AI)"
        return (
            f"{kind} by {self.creator_tool} ({self.provider}/{self.model}); "
            f"generation {self.generation_id}, image {self.image_id}"
        )


# ------------------------------------------------------------------------------ text


def clean_text(text: str) -> str:
    """``text`` as XML 1.0 and PNG text allow it: line breaks as LF, the characters
    neither may hold dropped (a prompt may contain anything)."""
    return _NOT_TEXT.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def _xml(text: str) -> str:
    return clean_text(text).translate(_XML_ESCAPES)


def xmp_packet(p: Provenance) -> bytes:
    """A complete XMP packet (UTF-8) with the IPTC source type, the creator tool, the
    ids, provider, model and the prompt when there is one."""
    return _packet(p, None if p.prompt is None else clean_text(p.prompt))


def _packet(p: Provenance, prompt: str | None) -> bytes:
    described = ""
    ours = ""
    if prompt is not None:
        described = (
            "   <dc:description>\n    <rdf:Alt>\n"
            f'     <rdf:li xml:lang="x-default">{_xml(prompt)}</rdf:li>\n'
            "    </rdf:Alt>\n   </dc:description>\n"
        )
        ours = f"   <banatie:Prompt>{_xml(prompt)}</banatie:Prompt>\n"
    text = (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        '  <rdf:Description rdf:about=""\n'
        '    xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"\n'
        '    xmlns:xmp="http://ns.adobe.com/xap/1.0/"\n'
        '    xmlns:dc="http://purl.org/dc/elements/1.1/"\n'
        f'    xmlns:banatie="{NAMESPACE}">\n'
        "   <Iptc4xmpExt:DigitalSourceType>"
        f"{p.digital_source_type}</Iptc4xmpExt:DigitalSourceType>\n"
        f"   <xmp:CreatorTool>{_xml(p.creator_tool)}</xmp:CreatorTool>\n"
        f"{described}"
        f"   <banatie:GenerationId>{_xml(p.generation_id)}</banatie:GenerationId>\n"
        f"   <banatie:ImageId>{_xml(p.image_id)}</banatie:ImageId>\n"
        f"   <banatie:Provider>{_xml(p.provider)}</banatie:Provider>\n"
        f"   <banatie:Model>{_xml(p.model)}</banatie:Model>\n"
        f"{ours}"
        "  </rdf:Description>\n"
        " </rdf:RDF>\n"
        "</x:xmpmeta>\n"
        '<?xpacket end="w"?>'
    )
    return text.encode("utf-8")


def packet_within(p: Provenance, limit: int) -> bytes:
    """The packet, with the prompt shortened (ending in "…") so that it is at most
    ``limit`` bytes: one JPEG segment holds 65502. The XML itself is never cut."""
    prompt = None if p.prompt is None else clean_text(p.prompt)
    packet = _packet(p, prompt)
    if len(packet) <= limit:
        return packet
    if prompt is None or len(_packet(p, "…")) > limit:
        raise ValueError(f"the XMP packet is {len(packet)} bytes, over {limit}.")
    # The longest prefix that fits, by bisection: escaping makes the bytes per
    # character vary from 1 to 6.
    low, high = 0, len(prompt) - 1  # prompt[:low] fits; prompt[:high + 1] does not
    while low < high:
        middle = (low + high + 1) // 2
        if len(_packet(p, prompt[:middle] + "…")) <= limit:
            low = middle
        else:
            high = middle - 1
    return _packet(p, prompt[:low] + "…")


# ---------------------------------------------------------------------------- marking


def mark(data: bytes, mime: str, p: Provenance) -> bytes:
    """``data`` with the provenance XMP (and, for PNG, text chunks) spliced in.

    Any other format than PNG, JPEG or WebP comes back unchanged. A structurally
    broken file raises ``ValueError``."""
    if mime == "image/png":
        return _mark_png(data, p)
    if mime == "image/jpeg":
        return _mark_jpeg(data, p)
    if mime == "image/webp":
        return _mark_webp(data, p)
    return data


def _png_text(keyword: bytes, text: str) -> bytes:
    """tEXt when the text is Latin-1, else an uncompressed iTXt in UTF-8."""
    text = clean_text(text)
    try:
        return png_chunk(b"tEXt", keyword + b"\x00" + text.encode("latin-1"))
    except UnicodeEncodeError:
        return png_chunk(b"iTXt", keyword + b"\x00\x00\x00\x00\x00" + text.encode("utf-8"))


def _mark_png(data: bytes, p: Provenance) -> bytes:
    chunks, _ = png_chunks(data)
    # Before the image data (XMP's rule), and before an APNG's first frame control.
    first_frame = next((c for c in chunks if c.kind in (b"IDAT", b"fcTL")), None)
    if first_frame is None:
        raise ValueError("PNG: there is no IDAT chunk.")
    added = [
        png_chunk(b"iTXt", PNG_XMP_KEYWORD + b"\x00\x00\x00\x00\x00" + xmp_packet(p)),
        _png_text(b"Software", p.creator_tool),
        _png_text(b"Comment", p.statement()),
    ]
    if p.prompt is not None:
        added.append(_png_text(b"Description", p.prompt))
    view = memoryview(data)
    pieces: list[bytes | memoryview] = []
    cursor = 0
    for chunk in chunks:
        if chunk is first_frame:
            pieces += [view[cursor : chunk.start], *added]
            cursor = chunk.start
        elif chunk.kind in PNG_TEXT and png_text_keyword(data, chunk) in _PNG_OURS:
            pieces.append(view[cursor : chunk.start])
            cursor = chunk.end
    pieces.append(view[cursor:])
    return b"".join(pieces)


def _is_xmp_segment(data: bytes, segment: Chunk) -> bool:
    return segment.kind == APP1 and (
        segment.starts_with(data, JPEG_XMP_PREFIX) or segment.starts_with(data, JPEG_XMP_EXTENSION)
    )


def _mark_jpeg(data: bytes, p: Provenance) -> bytes:
    segments, _ = jpeg_segments(data, scans=False)
    packet = packet_within(p, JPEG_XMP_MAX)
    body = JPEG_XMP_PREFIX + packet
    added = APP1 + (len(body) + 2).to_bytes(2, "big") + body
    # The standard place: after SOI, JFIF APP0 and Exif APP1 (Exif comes first by its spec).
    run = 1
    for segment in segments[1:]:
        is_exif = segment.kind == APP1 and segment.starts_with(data, JPEG_EXIF_PREFIX)
        if not (segment.kind == APP0 or is_exif or _is_xmp_segment(data, segment)):
            break
        run += 1
    view = memoryview(data)
    pieces: list[bytes | memoryview] = [
        view[s.start : s.end] for s in segments[:run] if not _is_xmp_segment(data, s)
    ]
    pieces.append(added)
    cursor = segments[run - 1].end
    for segment in segments[run:]:
        if _is_xmp_segment(data, segment):
            pieces.append(view[cursor : segment.start])
            cursor = segment.end
    pieces.append(view[cursor:])
    return b"".join(pieces)


def _mark_webp(data: bytes, p: Provenance) -> bytes:
    chunks, _ = riff_chunks(data)
    first = chunks[0]
    if first.kind == b"VP8X":
        if first.size < 10:
            raise ValueError("WebP: the VP8X chunk is too short.")
        payload = bytearray(first.payload(data))
        payload[0] |= VP8X_XMP
        header = riff_chunk(b"VP8X", bytes(payload))
        rest = chunks[1:]
    elif first.kind in (b"VP8 ", b"VP8L"):
        width, height, alpha = webp_canvas(data, first)
        flags = VP8X_XMP | (VP8X_ALPHA if alpha else 0)
        header = riff_chunk(
            b"VP8X",
            bytes([flags, 0, 0, 0])
            + (width - 1).to_bytes(3, "little")
            + (height - 1).to_bytes(3, "little"),
        )
        rest = chunks
    else:
        raise ValueError(f"WebP: the first chunk is {first.kind!r}, not VP8X, VP8 or VP8L.")
    kept = [riff_whole(data, c) for c in rest if c.kind != b"XMP "]
    return riff_file([header, *kept, riff_chunk(b"XMP ", xmp_packet(p))])


# ---------------------------------------------------------------------------- reading


def read_xmp(data: bytes, mime: str) -> bytes | None:
    """The file's XMP packet, if it has one: to carry it into a re-encoded variant
    (Pillow's ``save(..., xmp=packet)`` writes it for JPEG, MPO, WebP and AVIF; PNG and
    TIFF ignore ``xmp=`` without a word, so a PNG variant is marked with ``mark``)."""
    if mime == "image/png":
        chunks, _ = png_chunks(data)
        for chunk in chunks:
            if chunk.kind == b"iTXt" and png_text_keyword(data, chunk) == PNG_XMP_KEYWORD:
                return _itxt_text(chunk.payload(data))
        return None
    if mime == "image/jpeg":
        segments, _ = jpeg_segments(data, scans=False)
        for segment in segments:
            if segment.kind == APP1 and segment.starts_with(data, JPEG_XMP_PREFIX):
                return segment.payload(data)[len(JPEG_XMP_PREFIX) :]
        return None
    if mime == "image/webp":
        chunks, _ = riff_chunks(data)
        return next((c.payload(data) for c in chunks if c.kind == b"XMP "), None)
    return None


def _itxt_text(payload: bytes) -> bytes:
    """The text of an iTXt chunk, inflated (at most 16 MiB) if it is compressed."""
    parts = payload.split(b"\x00", 1)
    if len(parts) < 2 or len(parts[1]) < 2:
        raise ValueError("PNG: an iTXt chunk is broken.")
    compressed, rest = parts[1][0], parts[1][2:]
    fields = rest.split(b"\x00", 2)
    if len(fields) < 3:
        raise ValueError("PNG: an iTXt chunk is broken.")
    text = fields[2]
    if not compressed:
        return text
    inflater = zlib.decompressobj()
    try:
        return inflater.decompress(text, 16 << 20)
    except zlib.error as exc:
        raise ValueError(f"PNG: a compressed iTXt chunk is broken ({exc}).") from None
