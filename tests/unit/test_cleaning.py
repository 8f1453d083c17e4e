"""Stripping uploads (API.md §14): GPS, EXIF, XMP, IPTC and comments go, the ICC
profile stays, the EXIF orientation is applied to the pixels, a clean file comes back
byte for byte, and broken files raise ``ValueError`` and nothing else."""

from __future__ import annotations

import random
import struct
import zlib
from typing import Any

import pytest
from PIL import Image, ImageCms, ImageDraw, ImageOps

from banatie_local.services.cleaning import exif_orientation, strip_metadata
from banatie_local.services.containers import SOS, jpeg_segments, png_chunks, riff_chunks
from tests.imagedata import chunk
from tests.unit.test_provenance import HOSTILE, decode, encode, exiftool, mutations

GREY = (128, 128, 128)
RED = (255, 0, 0)
SENSOR = (96, 64)  # width × height as the sensor stores it (landscape)
ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
XMP = (
    b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>'
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/">'
    b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"'
    b' xmlns:exif="http://ns.adobe.com/exif/1.0/">'
    b"<dc:creator><rdf:Seq><rdf:li>Jane Doe</rdf:li></rdf:Seq></dc:creator>"
    b"<exif:GPSLatitude>52,31.2N</exif:GPSLatitude>"
    b"</rdf:Description></rdf:RDF></x:xmpmeta>"
    b'<?xpacket end="w"?>'
)
# What must be gone: any tag of these groups, or with these names.
PRIVATE_GROUPS = ("GPS", "XMP", "IPTC", "Photoshop", "IFD0", "ExifIFD", "IFD1")
PRIVATE_NAMES = ("GPS", "Comment", "Orientation", "Make", "Creator", "City", "Caption")


def sensor_picture(size: tuple[int, int] = SENSOR) -> Image.Image:
    """Grey, with a red marker in the sensor's top-left corner."""
    image = Image.new("RGB", size, GREY)
    ImageDraw.Draw(image).rectangle((0, 0, 15, 15), fill=RED)
    return image


def phone_exif(orientation: int) -> bytes:
    """EXIF as a phone writes it: maker, orientation and a GPS position."""
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    exif[0x0112] = orientation
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 36.0)})
    return exif.tobytes()


def app13_iptc() -> bytes:
    """An APP13 Photoshop segment with an IPTC caption and city."""
    iptc = b"".join(
        b"\x1c\x02" + bytes([dataset]) + struct.pack(">H", len(value)) + value
        for dataset, value in ((0x78, b"a caption"), (0x5A, b"Berlin"))
    )
    resource = b"8BIM\x04\x04\x00\x00" + struct.pack(">I", len(iptc)) + iptc
    resource += b"\x00" * (len(iptc) % 2)
    body = b"Photoshop 3.0\x00" + resource
    return b"\xff\xed" + struct.pack(">H", len(body) + 2) + body


def phone_jpeg(orientation: int = 6, size: tuple[int, int] = SENSOR) -> bytes:
    """A JPEG as a phone uploads it: EXIF with GPS and orientation, XMP, IPTC, a
    comment and an ICC profile."""
    return encode(
        sensor_picture(size),
        "JPEG",
        quality=95,
        exif=phone_exif(orientation),
        xmp=XMP,
        icc_profile=ICC,
        comment=b"shot at home",
        extra=app13_iptc(),
    )


def assert_private_gone(tags: dict[str, Any]) -> None:
    left = []
    for key in tags:
        group, name = key.split(":", 1) if ":" in key else ("", key)
        if group.startswith("ICC"):  # the colour profile stays, its "ProfileCreator" too
            continue
        if group.startswith(PRIVATE_GROUPS) or any(n in name for n in PRIVATE_NAMES):
            left.append(key)
    assert not left, f"still there: {left}"
    assert "ExifTool:Warning" not in tags


def icc_of(data: bytes) -> bytes | None:
    return decode(data).info.get("icc_profile")


def red(pixel: Any) -> bool:
    r, g, b = pixel[:3]
    return bool(r > 200 and g < 60 and b < 60)


# ------------------------------------------------------------------------ JPEG


def test_phone_jpeg_sample_carries_everything() -> None:
    """The sample is what it claims to be, so the stripping test means something."""
    tags = exiftool(phone_jpeg())
    assert tags["GPS:GPSLatitude"] == pytest.approx(52.52)
    assert tags["IFD0:Orientation"] == 6
    assert tags["XMP-dc:Creator"] == "Jane Doe"
    assert tags["IPTC:City"] == "Berlin"
    assert tags["File:Comment"] == "shot at home"
    assert tags["ICC_Profile:ProfileDescription"] == "sRGB built-in"


def test_phone_jpeg_is_stripped_and_stood_up() -> None:
    """No GPS, EXIF, XMP, IPTC or comment is left; the ICC profile is; the stored size
    is the sensor's turned, and the sensor's top-left marker is now at the top right,
    exactly where ImageOps.exif_transpose puts it."""
    data = phone_jpeg(6)
    stripped = strip_metadata(data, "image/jpeg")
    tags = exiftool(stripped)
    assert_private_gone(tags)
    assert tags["ICC_Profile:ProfileDescription"] == "sRGB built-in"
    assert icc_of(stripped) == ICC
    image = decode(stripped)
    assert image.format == "JPEG"
    assert image.size == (SENSOR[1], SENSOR[0])
    reference = ImageOps.exif_transpose(decode(data))
    assert reference.size == image.size
    for corner in ((4, 4), (image.width - 5, 4), (4, image.height - 5)):
        assert red(image.getpixel(corner)) == red(reference.getpixel(corner))
    assert red(image.getpixel((image.width - 5, 4)))
    assert not red(image.getpixel((4, 4)))
    assert strip_metadata(stripped, "image/jpeg") is stripped


@pytest.mark.parametrize(
    ("orientation", "corner"),
    [(2, "tr"), (3, "br"), (4, "bl"), (5, "tl"), (6, "tr"), (7, "br"), (8, "bl")],
)
def test_every_orientation_turns_as_exif_transpose_does(orientation: int, corner: str) -> None:
    data = phone_jpeg(orientation)
    image = decode(strip_metadata(data, "image/jpeg"))
    reference = ImageOps.exif_transpose(decode(data))
    assert image.size == reference.size
    x = image.width - 5 if corner[1] == "r" else 4
    y = image.height - 5 if corner[0] == "b" else 4
    assert red(image.getpixel((x, y)))
    assert red(reference.getpixel((x, y)))


def test_upright_jpeg_loses_metadata_without_reencoding() -> None:
    """Orientation 1: segments are dropped, the image data is kept bit for bit."""
    data = phone_jpeg(1)
    stripped = strip_metadata(data, "image/jpeg")
    assert_private_gone(exiftool(stripped))
    assert icc_of(stripped) == ICC
    scan = data[data.index(b"\xff\xda") :]
    assert stripped.endswith(scan)
    assert decode(stripped).tobytes() == decode(data).tobytes()


def test_clean_jpeg_comes_back_as_the_same_bytes() -> None:
    data = encode(sensor_picture(), "JPEG", quality=90, icc_profile=ICC)
    assert strip_metadata(data, "image/jpeg") is data


def test_jpeg_adobe_and_cmyk_survive() -> None:
    """APP14 Adobe tells the decoder how to read CMYK: it is kept."""
    cmyk = encode(sensor_picture().convert("CMYK"), "JPEG", quality=90, comment=b"hi")
    stripped = strip_metadata(cmyk, "image/jpeg")
    segments, _ = jpeg_segments(stripped, scans=False)
    assert b"\xff\xee" in [s.kind for s in segments]
    assert b"\xff\xfe" not in [s.kind for s in segments]
    assert decode(stripped).tobytes() == decode(cmyk).tobytes()


def test_metadata_between_progressive_scans_and_after_eoi_goes() -> None:
    """An APPn or COM between scans, and anything after EOI (a phone's second image
    with its own EXIF), are removed too."""
    data = encode(sensor_picture(), "JPEG", quality=90, progressive=True)
    segments, _ = jpeg_segments(data, scans=True)
    second_scan = [s for s in segments if s.kind == SOS][1]
    exif_body = b"Exif\x00\x00" + phone_exif(1)
    app1 = b"\xff\xe1" + struct.pack(">H", len(exif_body) + 2) + exif_body
    com = b"\xff\xfe\x00\x07hello"
    hidden = data[: second_scan.start] + app1 + com + data[second_scan.start :]
    hidden += phone_jpeg(1, (16, 16))  # "MPF" trailer
    stripped = strip_metadata(hidden, "image/jpeg")
    assert stripped == data
    assert decode(hidden).tobytes() == decode(stripped).tobytes()


def test_phone_mpo_keeps_only_its_first_image_stood_up() -> None:
    """A phone's MPO (a second image after EOI, described by an APP2 MPF segment):
    the first image is kept, turned; the second goes with its metadata."""
    second = sensor_picture().convert("L").convert("RGB")
    data = encode(
        sensor_picture(),
        "MPO",
        save_all=True,
        append_images=[second],
        exif=phone_exif(6),
        icc_profile=ICC,
    )
    assert getattr(decode(data), "n_frames", 1) == 2
    stripped = strip_metadata(data, "image/jpeg")
    image = decode(stripped)
    assert (image.format, image.size, getattr(image, "n_frames", 1)) == ("JPEG", (64, 96), 1)
    assert red(image.getpixel((image.width - 5, 4)))
    assert icc_of(stripped) == ICC
    tags = exiftool(stripped)
    assert_private_gone(tags)
    assert not [key for key in tags if key.startswith("MPF")]


# ------------------------------------------------------------------------- PNG


def png_with_metadata(orientation: int = 1) -> bytes:
    """A PNG with text (tEXt, zTXt, iTXt), tIME, eXIf with GPS, and an ICC profile."""
    data = encode(sensor_picture(), "PNG", icc_profile=ICC, exif=phone_exif(orientation))
    extra = (
        chunk(b"tEXt", b"Comment\x00shot at home")
        + chunk(b"iTXt", b"Author\x00\x00\x00\x00\x00J\xc3\xa4ne")
        + chunk(b"zTXt", b"Location\x00\x00" + zlib.compress(b"Berlin"))
        + chunk(b"tIME", struct.pack(">HBBBBB", 2024, 5, 1, 12, 0, 0))
    )
    iend = data.rindex(b"IEND") - 4
    return data[:iend] + extra + data[iend:]


def test_png_text_exif_and_time_go_icc_stays() -> None:
    data = png_with_metadata()
    before = exiftool(data)
    assert before["PNG:Comment"] == "shot at home"
    assert before["GPS:GPSLatitude"] == pytest.approx(52.52)
    stripped = strip_metadata(data, "image/png")
    tags = exiftool(stripped)
    assert_private_gone(tags)
    assert not [key for key in tags if key.startswith("PNG:") and "Modify" in key]
    kinds = {c.kind for c in png_chunks(stripped)[0]}
    assert kinds == {b"IHDR", b"iCCP", b"IDAT", b"IEND"}
    assert icc_of(stripped) == ICC
    assert decode(stripped).tobytes() == decode(data).tobytes()


def test_png_exif_orientation_is_applied() -> None:
    stripped = strip_metadata(png_with_metadata(6), "image/png")
    image = decode(stripped)
    assert image.format == "PNG"
    assert image.size == (SENSOR[1], SENSOR[0])
    assert image.tobytes() == sensor_picture().transpose(Image.Transpose.ROTATE_270).tobytes()
    assert icc_of(stripped) == ICC
    assert_private_gone(exiftool(stripped))


def test_clean_png_comes_back_as_the_same_bytes() -> None:
    data = encode(sensor_picture(), "PNG", icc_profile=ICC)
    assert strip_metadata(data, "image/png") is data


# ------------------------------------------------------------------------ WebP


@pytest.mark.parametrize("lossless", [False, True])
def test_webp_exif_and_xmp_go_icc_stays(lossless: bool) -> None:
    data = encode(
        sensor_picture(), "WEBP", lossless=lossless, icc_profile=ICC, exif=phone_exif(1), xmp=XMP
    )
    assert exiftool(data)["GPS:GPSLatitude"] == pytest.approx(52.52)
    stripped = strip_metadata(data, "image/webp")
    assert_private_gone(exiftool(stripped))
    chunks, end = riff_chunks(stripped)
    assert end == len(stripped)
    assert [c.kind for c in chunks] == [b"VP8X", b"ICCP", b"VP8L" if lossless else b"VP8 "]
    assert chunks[0].payload(stripped)[0] == 0x20  # ICC only: EXIF and XMP flags cleared
    assert icc_of(stripped) == ICC
    assert decode(stripped).tobytes() == decode(data).tobytes()


def test_lossless_webp_orientation_stays_lossless() -> None:
    """A lossless source turned: the pixels are exactly the sensor's, rotated."""
    data = encode(sensor_picture(), "WEBP", lossless=True, icc_profile=ICC, exif=phone_exif(8))
    stripped = strip_metadata(data, "image/webp")
    assert b"VP8L" in [c.kind for c in riff_chunks(stripped)[0]]
    image = decode(stripped)
    assert image.tobytes() == sensor_picture().transpose(Image.Transpose.ROTATE_90).tobytes()
    assert icc_of(stripped) == ICC
    assert_private_gone(exiftool(stripped))


def test_clean_webp_comes_back_as_the_same_bytes() -> None:
    for data in (
        encode(sensor_picture(), "WEBP", quality=80),
        encode(sensor_picture(), "WEBP", lossless=True, icc_profile=ICC),
    ):
        assert strip_metadata(data, "image/webp") is data


# ------------------------------------------------------------------------ EXIF


def test_exif_orientation_reader_tolerates_garbage() -> None:
    assert exif_orientation(phone_exif(6)) == 6  # Pillow writes the "Exif" prefix
    assert exif_orientation(phone_exif(3)[6:]) == 3  # a WebP EXIF chunk may not
    assert exif_orientation(b"") == 1
    assert exif_orientation(b"II*\x00\xff\xff\xff\x7f") == 1
    assert exif_orientation(b"MM\x00*\x00\x00\x00\x08\xff\xff" + b"\x00" * 5) == 1
    assert exif_orientation(phone_exif(9)) == 1  # not an orientation


# --------------------------------------------------------------------- hostile


@pytest.mark.parametrize("name", [n for n in HOSTILE if n != "vp8-broken"])
def test_broken_files_raise_value_error(name: str) -> None:
    data, mime = HOSTILE[name]
    with pytest.raises(ValueError, match=r"\w") as caught:
        strip_metadata(data, mime)
    assert type(caught.value) is ValueError


def test_a_cut_scan_is_kept_as_it_is() -> None:
    """A JPEG whose last scan just runs out (no EOI) decodes in most viewers; the
    entropy-coded data is not judged here, only the segments."""
    data = phone_jpeg(1)[:-2]
    stripped = strip_metadata(data, "image/jpeg")
    assert stripped.endswith(data[data.index(b"\xff\xda") :])


FUZZ_SAMPLES: dict[str, tuple[Any, str]] = {
    "phone-jpeg": (lambda: phone_jpeg(6, (24, 16)), "image/jpeg"),
    "png": (lambda: png_with_metadata(6), "image/png"),
    "webp": (
        lambda: encode(sensor_picture((24, 16)), "WEBP", exif=phone_exif(6), xmp=XMP),
        "image/webp",
    ),
    "webp-lossless": (
        lambda: encode(sensor_picture((24, 16)), "WEBP", lossless=True, exif=phone_exif(1)),
        "image/webp",
    ),
}


@pytest.mark.parametrize("name", list(FUZZ_SAMPLES))
def test_fuzzed_uploads_raise_only_value_error(name: str) -> None:
    make, mime = FUZZ_SAMPLES[name]
    data = make()
    outcomes = {"ok": 0, "refused": 0}
    for index, bad in enumerate(mutations(data, seed=random.Random(name).randrange(1000))):
        try:
            strip_metadata(bad, mime)
            outcomes["ok"] += 1
        except ValueError:
            outcomes["refused"] += 1
        except Exception as exc:  # pragma: no cover - the failure message says which
            pytest.fail(f"mutation {index} of {name} raised {type(exc).__name__}: {exc}")
    assert outcomes["ok"]
    assert outcomes["refused"]
