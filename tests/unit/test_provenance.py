"""Provenance in generated files (API.md §14): the XMP and PNG text that ``mark``
splices in, read back by exiftool, with the pixels untouched; re-marking replaces;
broken files raise ``ValueError`` and nothing else."""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import statistics
import struct
import subprocess
import time
from collections.abc import Callable
from typing import Any
from xml.etree import ElementTree

import pytest
from PIL import Image, ImageCms, ImageDraw

from banatie_local.services.containers import (
    JPEG_XMP_MAX,
    jpeg_segments,
    png_chunks,
    riff_chunks,
)
from banatie_local.services.provenance import (
    ALGORITHMIC_MEDIA,
    TRAINED_ALGORITHMIC_MEDIA,
    Provenance,
    mark,
    read_xmp,
    xmp_packet,
)
from tests.imagedata import chunk, gif_bytes

PROMPT = 'Ein "Fuchs" im Schnee — <b>&amp;</b> & 日本語 🦊\nzweite Zeile'
SIZE = 1024

PROVENANCE = Provenance(
    ai_model=True,
    creator_tool="banatie-local 0.9.0",
    generation_id="0d3c6a8e-2f61-4c1e-9f0b-8a1c2b3d4e5f",
    image_id="7b1f0c2a-1111-2222-3333-444455556666",
    provider="gemini",
    model="gemini-2.5-flash-image",
    prompt=PROMPT,
)


def exiftool(data: bytes) -> dict[str, Any]:
    """exiftool's tags for ``data``, grouped by location (``-G1``), duplicates kept
    (``-a``), values unconverted (``-n``: the IPTC URI as written, not its label)."""
    if shutil.which("exiftool") is None:
        reason = "exiftool is missing (Debian: libimage-exiftool-perl)"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set, and the metadata tests cannot run: {reason}")
        pytest.skip(reason)
    done = subprocess.run(
        ["exiftool", "-j", "-G1", "-a", "-n", "-"],
        input=data,
        capture_output=True,
        check=True,
        timeout=60,
    )
    (tags,) = json.loads(done.stdout)
    assert isinstance(tags, dict)
    return tags


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def picture(size: int = SIZE, mode: str = "RGB") -> Image.Image:
    """A picture with structure and noise, so the codecs have real work."""
    rng = random.Random(size)
    image = Image.frombytes(mode, (size, size), rng.randbytes(size * size * len(mode)))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y = rng.randrange(size), rng.randrange(size)
        fill = tuple(rng.randrange(256) for _ in mode)
        draw.ellipse((x, y, x + size // 4, y + size // 4), fill=fill)
    return image


def exif_block() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "Banatie Test Camera"  # Make
    exif[0x0110] = "Model T"  # Model
    return exif.tobytes()


def srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


# name → (how to make it at a size, its mime, the first RIFF chunk / None)
SAMPLES: dict[str, tuple[Callable[[int], bytes], str, bytes | None]] = {
    "png": (lambda n: encode(picture(n), "PNG"), "image/png", None),
    "png-rgba": (lambda n: encode(picture(n, "RGBA"), "PNG"), "image/png", None),
    "jpeg": (lambda n: encode(picture(n), "JPEG", quality=90), "image/jpeg", None),
    "jpeg-exif": (
        lambda n: encode(picture(n), "JPEG", quality=90, exif=exif_block()),
        "image/jpeg",
        None,
    ),
    "webp-lossy": (lambda n: encode(picture(n), "WEBP", quality=80), "image/webp", b"VP8 "),
    "webp-lossless": (
        lambda n: encode(picture(n), "WEBP", lossless=True),
        "image/webp",
        b"VP8L",
    ),
    "webp-lossless-alpha": (
        lambda n: encode(picture(n, "RGBA"), "WEBP", lossless=True),
        "image/webp",
        b"VP8L",
    ),
    "webp-alpha": (lambda n: encode(picture(n, "RGBA"), "WEBP"), "image/webp", b"VP8X"),
    "webp-extended": (
        lambda n: encode(picture(n), "WEBP", icc_profile=srgb_profile(), exif=exif_block()),
        "image/webp",
        b"VP8X",
    ),
}

_made: dict[tuple[str, int], bytes] = {}


def sample(name: str, size: int = SIZE) -> tuple[bytes, str]:
    """A sample file, made once per size."""
    make, mime, first = SAMPLES[name]
    if (name, size) not in _made:
        data = make(size)
        if first is not None:  # the sample really is of the structure it is named for
            assert riff_chunks(data)[0][0].kind == first
        _made[name, size] = data
    return _made[name, size], mime


# --------------------------------------------------------------------- read back


@pytest.mark.parametrize("name", list(SAMPLES))
def test_exiftool_reads_the_provenance(name: str) -> None:
    """Source type (the full IPTC URI), creator tool, ids, provider, model and the
    prompt (Unicode, quotes, markup, a line break) as written."""
    data, mime = sample(name)
    tags = exiftool(mark(data, mime, PROVENANCE))
    assert "ExifTool:Warning" not in tags
    assert tags["XMP-iptcExt:DigitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
    assert tags["XMP-xmp:CreatorTool"] == "banatie-local 0.9.0"
    assert tags["XMP-banatie:GenerationId"] == PROVENANCE.generation_id
    assert tags["XMP-banatie:ImageId"] == PROVENANCE.image_id
    assert tags["XMP-banatie:Provider"] == "gemini"
    assert tags["XMP-banatie:Model"] == "gemini-2.5-flash-image"
    assert tags["XMP-banatie:Prompt"] == PROMPT
    assert tags["XMP-dc:Description"] == PROMPT
    assert tags["Composite:ImageSize"] == f"{SIZE} {SIZE}"


def test_png_text_chunks_are_visible() -> None:
    """PNG also says it in text chunks that tools without XMP show."""
    data, mime = sample("png")
    tags = exiftool(mark(data, mime, PROVENANCE))
    assert tags["PNG:Software"] == "banatie-local 0.9.0"
    assert tags["PNG:Comment"] == (
        "AI-generated image by banatie-local 0.9.0 (gemini/gemini-2.5-flash-image); "
        f"generation {PROVENANCE.generation_id}, image {PROVENANCE.image_id}"
    )
    assert tags["PNG:Description"] == PROMPT  # not Latin-1: an iTXt chunk
    chunks, _ = png_chunks(mark(data, mime, PROVENANCE))
    kinds = [c.kind for c in chunks]
    assert kinds.index(b"iTXt") < kinds.index(b"IDAT")  # XMP before the image data


def test_jpeg_xmp_goes_after_exif() -> None:
    """The standard place: SOI, JFIF, Exif, then XMP; the Exif is still read."""
    data, mime = sample("jpeg-exif")
    marked = mark(data, mime, PROVENANCE)
    segments, _ = jpeg_segments(marked, scans=False)
    heads = [marked[s.body : s.body + 4] for s in segments[1:4]]
    assert heads == [b"JFIF", b"Exif", b"http"]
    tags = exiftool(marked)
    assert tags["IFD0:Make"] == "Banatie Test Camera"


@pytest.mark.parametrize("name", ["png", "jpeg", "webp-lossy", "webp-extended"])
def test_prompt_none_embeds_no_prompt(name: str) -> None:
    data, mime = sample(name, 64)
    quiet = Provenance(**{**PROVENANCE.__dict__, "prompt": None})
    marked = mark(data, mime, quiet)
    tags = exiftool(marked)
    assert tags["XMP-banatie:ImageId"] == PROVENANCE.image_id
    ours = [key for key in tags if key.startswith(("XMP", "PNG"))]
    assert not [key for key in ours if "Prompt" in key or "Description" in key]
    assert b"Fuchs" not in marked


def test_the_offline_renderer_is_algorithmic_media() -> None:
    data, mime = sample("png", 64)
    offline = Provenance(False, "banatie-local 0.9.0", "g1", "i1", "offline", "offline-1")
    tags = exiftool(mark(data, mime, offline))
    assert tags["XMP-iptcExt:DigitalSourceType"] == ALGORITHMIC_MEDIA
    assert tags["PNG:Comment"].startswith("Computer-generated image (no AI) by banatie")


# ----------------------------------------------------------------------- pixels


@pytest.mark.parametrize("name", list(SAMPLES))
def test_marked_file_decodes_to_identical_pixels(name: str) -> None:
    data, mime = sample(name)
    before, after = decode(data), decode(mark(data, mime, PROVENANCE))
    assert (after.mode, after.size) == (before.mode, before.size)
    assert after.tobytes() == before.tobytes()


@pytest.mark.parametrize("name", ["webp-lossy", "webp-lossless", "webp-lossless-alpha"])
def test_simple_webp_gets_a_right_vp8x(name: str) -> None:
    """The canvas is the bitstream's size, alpha is flagged exactly when there is alpha."""
    data, mime = sample(name, 200)
    marked = mark(data, mime, PROVENANCE)
    chunks, end = riff_chunks(marked)
    assert end == len(marked)
    vp8x = chunks[0].payload(marked)
    width = int.from_bytes(vp8x[4:7], "little") + 1
    height = int.from_bytes(vp8x[7:10], "little") + 1
    assert (width, height) == (200, 200)
    assert bool(vp8x[0] & 0x10) == name.endswith("alpha")
    assert vp8x[0] & 0x04
    assert [c.kind for c in chunks][-1] == b"XMP "


# ------------------------------------------------------------------- re-marking


@pytest.mark.parametrize("name", list(SAMPLES))
def test_marking_twice_gives_one_packet(name: str) -> None:
    """Regeneration re-marks: the same provenance gives the same bytes, a new one
    replaces the old packet and text chunks."""
    data, mime = sample(name, 64)
    once = mark(data, mime, PROVENANCE)
    assert mark(once, mime, PROVENANCE) == once
    other = Provenance(**{**PROVENANCE.__dict__, "image_id": "second", "prompt": "autre"})
    twice = mark(once, mime, other)
    assert twice.count(b"<?xpacket begin") == 1
    assert twice == mark(data, mime, other)
    tags = exiftool(twice)
    assert tags["XMP-banatie:ImageId"] == "second"
    assert tags["XMP-banatie:Prompt"] == "autre"


def test_png_text_of_our_keywords_is_replaced_wherever_it_sits() -> None:
    """Old chunks of our keywords go, also after IDAT; other text stays."""
    data, mime = sample("png", 64)
    stale = chunk(b"tEXt", b"Software\x00old tool") + chunk(b"tEXt", b"Author\x00someone")
    data = data[:-12] + stale + data[-12:]  # before IEND
    tags = exiftool(mark(data, mime, PROVENANCE))
    assert tags["PNG:Software"] == "banatie-local 0.9.0"
    assert tags["PNG:Author"] == "someone"
    assert mark(data, mime, PROVENANCE).count(b"Software\x00") == 1


# ----------------------------------------------------------------------- packet


def test_packet_is_wellformed_xml_with_hostile_text() -> None:
    """Control characters XML forbids are dropped, markup is escaped, CR LF becomes LF."""
    nasty = "a\x00b\x07c\x1bd\r\ne\x7f\ud800f ]]> <?xpacket end='w'?> \"'&"
    packet = xmp_packet(Provenance(**{**PROVENANCE.__dict__, "prompt": nasty}))
    assert packet.startswith(b'<?xpacket begin="\xef\xbb\xbf"')
    assert packet.endswith(b'<?xpacket end="w"?>')
    root = ElementTree.fromstring(packet)
    prompt = root.find(".//{https://banatie.app/ns/local/1.0/}Prompt")
    assert prompt is not None
    assert prompt.text == "abcd\nef ]]> <?xpacket end='w'?> \"'&"
    tags = exiftool(mark(sample("jpeg", 64)[0], "image/jpeg", PROVENANCE))
    assert tags["XMP-banatie:Prompt"] == PROMPT


def test_jpeg_prompt_too_long_for_a_segment_is_shortened() -> None:
    """The XML is never cut: the prompt is, so the packet fits one APP1 segment."""
    data, mime = sample("jpeg", 64)
    long = Provenance(**{**PROVENANCE.__dict__, "prompt": "&<" * 20_000})
    marked = mark(data, mime, long)
    packet = read_xmp(marked, mime)
    assert packet is not None
    assert len(packet) <= JPEG_XMP_MAX
    prompt = exiftool(marked)["XMP-banatie:Prompt"]
    assert prompt.endswith("…")
    assert prompt[:-1] == ("&<" * 20_000)[: len(prompt) - 1]
    assert len(packet) > JPEG_XMP_MAX - 10  # one more character ("&amp;" twice) is too many
    # PNG and WebP have room: the whole prompt goes in
    png = mark(sample("png", 64)[0], "image/png", long)
    assert exiftool(png)["XMP-banatie:Prompt"] == "&<" * 20_000


@pytest.mark.parametrize("name", ["png", "jpeg", "webp-lossy", "webp-extended"])
def test_read_xmp_finds_the_packet(name: str) -> None:
    data, mime = sample(name, 64)
    assert read_xmp(data, mime) is None
    assert read_xmp(mark(data, mime, PROVENANCE), mime) == xmp_packet(PROVENANCE)


def test_read_xmp_packet_carries_into_a_pillow_variant() -> None:
    """The packet read from a PNG goes into a re-encoded JPEG/WebP through Pillow."""
    marked = mark(sample("png", 64)[0], "image/png", PROVENANCE)
    packet = read_xmp(marked, "image/png")
    for fmt in ("JPEG", "WEBP"):
        variant = encode(decode(marked).convert("RGB"), fmt, xmp=packet)
        assert exiftool(variant)["XMP-banatie:Prompt"] == PROMPT


def test_other_formats_come_back_unchanged() -> None:
    data = gif_bytes()
    assert mark(data, "image/gif", PROVENANCE) is data
    assert read_xmp(data, "image/gif") is None


# ---------------------------------------------------------------------- hostile


def png_with_length(length: int) -> bytes:
    data, _ = sample("png", 16)
    return data[:33] + struct.pack(">I", length) + data[37:]


HOSTILE: dict[str, tuple[bytes, str]] = {
    "png-empty": (b"", "image/png"),
    "png-signature-only": (b"\x89PNG\r\n\x1a\n", "image/png"),
    "png-length-2^31": (png_with_length(2**31), "image/png"),
    "png-length-past-end": (png_with_length(1 << 20), "image/png"),
    "png-no-iend": (sample("png", 16)[0][:-12], "image/png"),
    "jpeg-soi-only": (b"\xff\xd8", "image/jpeg"),
    "jpeg-segment-past-end": (b"\xff\xd8\xff\xe1\xff\xf0Exif\x00\x00", "image/jpeg"),
    "jpeg-length-below-2": (b"\xff\xd8\xff\xe0\x00\x01" + b"\x00" * 20, "image/jpeg"),
    "jpeg-cut-in-header": (sample("jpeg", 16)[0][:100], "image/jpeg"),
    "jpeg-no-soi": (b"\xff\xe0\x00\x10JFIF", "image/jpeg"),
    "riff-size-lying": (
        b"RIFF\xff\xff\x00\x00WEBP" + sample("webp-lossy", 16)[0][12:],
        "image/webp",
    ),
    "riff-chunk-past-end": (
        b"RIFF\x14\x00\x00\x00WEBPVP8 \xff\x00\x00\x00" + b"\x00" * 8,
        "image/webp",
    ),
    "riff-no-chunks": (b"RIFF\x04\x00\x00\x00WEBP", "image/webp"),
    "vp8-broken": (b"RIFF\x14\x00\x00\x00WEBPVP8 \x08\x00\x00\x00" + b"\x00" * 8, "image/webp"),
    "riff-first-chunk-unknown": (b"RIFF\x10\x00\x00\x00WEBPJUNK\x00\x00\x00\x00", "image/webp"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_broken_files_raise_value_error(name: str) -> None:
    data, mime = HOSTILE[name]
    with pytest.raises(ValueError, match=r"\w") as caught:
        mark(data, mime, PROVENANCE)
    assert type(caught.value) is ValueError


def mutations(data: bytes, seed: int, count: int = 300) -> list[bytes]:
    """Seeded truncations, bit flips, and runs of 0xFF (lengths, markers, sizes)."""
    rng = random.Random(seed)
    out: list[bytes] = []
    for _ in range(count):
        buffer = bytearray(data)
        how = rng.randrange(3)
        if how == 0:
            out.append(bytes(buffer[: rng.randrange(len(buffer))]))
            continue
        for _ in range(rng.randint(1, 6)):
            at = rng.randrange(min(len(buffer), 400))  # the structure is in the head
            if how == 1:
                buffer[at] ^= 1 << rng.randrange(8)
            else:
                buffer[at : at + 4] = b"\xff" * 4
        out.append(bytes(buffer))
    return out


@pytest.mark.parametrize("name", list(SAMPLES))
def test_fuzzed_files_raise_only_value_error(name: str) -> None:
    data, mime = sample(name, 32)
    marked = mark(data, mime, PROVENANCE)
    for index, bad in enumerate(mutations(marked, seed=len(name))):
        try:
            mark(bad, mime, PROVENANCE)
            read_xmp(bad, mime)
        except ValueError:
            pass
        except Exception as exc:  # pragma: no cover - the failure message says which
            pytest.fail(f"mutation {index} of {name} raised {type(exc).__name__}: {exc}")


# ----------------------------------------------------------------------- timing


def test_marking_a_large_png_does_not_reencode() -> None:
    """A 1024×1024 PNG of megabytes is marked in well under the time of a re-encode
    (measured about 0.1 ms; the bound only catches a decode sneaking in)."""
    data, mime = sample("png")
    assert len(data) > 1_000_000
    timings = []
    for _ in range(25):
        start = time.perf_counter()
        mark(data, mime, PROVENANCE)
        timings.append(time.perf_counter() - start)
    assert statistics.median(timings) < 0.01
