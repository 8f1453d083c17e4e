"""What the files themselves say (API.md §14), over real HTTP: every generated image
(offline renderer, and Gemini through the real SDK and the fake server) carries XMP
and PNG text naming what made it, its variants and the OpenAI door's JPEG and WebP
outputs too, a regeneration rewrites it, ``metadata.embed_prompt = false`` leaves the
prompt out; uploads lose their EXIF, XMP, IPTC and comments (GPS above all), stand up,
keep their ICC profile, and a clean upload is stored byte for byte. Read back with
``exiftool`` (skipped where it is missing, a failure when CI is set)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from PIL import ImageOps

from banatie_local import __version__
from banatie_local.services.provenance import (
    ALGORITHMIC_MEDIA,
    TRAINED_ALGORITHMIC_MEDIA,
    png_chunks,
    riff_chunks,
)
from tests.conftest import Running, on_fake_gemini, run_appliance
from tests.fakes.gemini import Answer, FakeGemini
from tests.unit.test_cleaning import (
    ICC,
    SENSOR,
    XMP,
    assert_private_gone,
    icc_of,
    phone_exif,
    phone_jpeg,
    png_with_metadata,
    red,
    sensor_picture,
)
from tests.unit.test_provenance import decode, encode, exiftool

GENERATIONS = "/api/v1/generations"
IMAGES = "/api/v1/images"
UPLOAD = "/api/v1/images/upload"
CDN = "/cdn/default/default/img"
CREATOR_TOOL = f"banatie-local {__version__}"
# Quotes, markup, an ampersand and non-Latin-1 text: escaped in XMP, iTXt in PNG.
PROMPT = 'Ein "Fuchs" im <Schnee> & 日本語 Zebrafink'
NEW_PROMPT = "a lighthouse at dusk, Kormoran"
SOURCE_TYPES = {"offline": ALGORITHMIC_MEDIA, "gemini": TRAINED_ALGORITHMIC_MEDIA}
VARIANT_FORMATS = {"jpeg": "JPEG", "webp": "WEBP", "png": "PNG"}


# --------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", params=["offline", "gemini"])
def maker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    """One appliance per provider, shared by the module's tests that only add images
    (the models are bound to one database per process: pytest finishes one before it
    starts the next, and the module's ``start_server`` tests come after both)."""
    data_dir = tmp_path_factory.mktemp(request.param) / "data"
    if request.param == "offline":
        running = run_appliance(data_dir)
        yield running
        running.stop()
        return
    fake = FakeGemini().start()
    running = run_appliance(data_dir, **on_fake_gemini(fake))
    yield running
    running.stop()
    fake.stop()


# ---------------------------------------------------------------------- helpers


def provider_of(running: Running) -> str:
    """The provider the appliance draws with ("auto" in the settings picks one)."""
    return str(running.services.generations.provider.name)


def generated(running: Running, prompt: str = PROMPT) -> dict[str, Any]:
    response = running.project("POST", GENERATIONS, json={"prompt": prompt})
    assert response.status_code == 201, response.text
    generation: dict[str, Any] = response.json()["data"]
    assert generation["status"] == "success", generation["errorMessage"]
    return generation


def fetched(running: Running, path: str) -> bytes:
    response = running.client.get(path)
    assert response.status_code == 200, response.text
    return response.content


def image_row(running: Running, image_id: str) -> dict[str, Any]:
    response = running.project("GET", f"{IMAGES}/{image_id}")
    assert response.status_code == 200, response.text
    image: dict[str, Any] = response.json()["data"]
    return image


def assert_describes(image: dict[str, Any], data: bytes) -> None:
    """The image object's fileHash and fileSize are those of ``data``."""
    assert image["fileSize"] == len(data)
    assert image["fileHash"] == hashlib.sha256(data).hexdigest()


def assert_marked(
    tags: dict[str, Any], generation: dict[str, Any], image_id: str, *, prompt: bool = True
) -> None:
    """The XMP names the generator, the ids, provider and model as the generation
    records them, and the prompt (or, without ``prompt``, no prompt at all)."""
    assert "ExifTool:Warning" not in tags
    provider = generation["meta"]["provider"]
    assert tags["XMP-iptcExt:DigitalSourceType"] == SOURCE_TYPES[provider]
    assert tags["XMP-xmp:CreatorTool"] == CREATOR_TOOL
    assert tags["XMP-banatie:GenerationId"] == generation["id"]
    assert tags["XMP-banatie:ImageId"] == image_id
    assert tags["XMP-banatie:Provider"] == provider
    assert tags["XMP-banatie:Model"] == generation["meta"]["model"]
    if prompt:
        assert tags["XMP-banatie:Prompt"] == generation["prompt"]
        assert tags["XMP-dc:Description"] == generation["prompt"]
    else:
        ours = [k for k in tags if k.startswith(("XMP", "PNG"))]
        said = [k for k in ours if "Prompt" in k or "Description" in k]
        assert not said, f"the prompt is still there: {said}"


def assert_png_text(tags: dict[str, Any], generation: dict[str, Any], image_id: str) -> None:
    """The PNG text chunks that tools without XMP show."""
    assert tags["PNG:Software"] == CREATOR_TOOL
    provider, model = generation["meta"]["provider"], generation["meta"]["model"]
    kind = "AI-generated image" if provider != "offline" else "Computer-generated image (no AI)"
    assert tags["PNG:Comment"] == (
        f"{kind} by {CREATOR_TOOL} ({provider}/{model}); "
        f"generation {generation['id']}, image {image_id}"
    )


def sdk(running: Running) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{running.url}/v1", api_key=running.project_key or "", max_retries=0
    )


def upload(running: Running, data: bytes, name: str, mime: str) -> dict[str, Any]:
    response = running.project("POST", UPLOAD, files={"file": (name, data, mime)})
    assert response.status_code == 201, response.text
    image: dict[str, Any] = response.json()["data"]
    assert image_row(running, image["id"]) == image
    return image


# ------------------------------------------------------------- generated images


def test_generated_file_says_what_made_it(maker: Running) -> None:
    """The served bytes carry the provenance XMP and PNG text; fileHash and fileSize
    describe exactly those bytes."""
    generation = generated(maker)
    image = generation["outputImage"]
    assert image["mimeType"] == "image/png"
    assert generation["meta"]["provider"] == provider_of(maker)
    data = fetched(maker, f"{CDN}/{image['id']}")
    assert_describes(image, data)
    assert_describes(image_row(maker, image["id"]), data)
    tags = exiftool(data)
    assert_marked(tags, generation, image["id"])
    assert_png_text(tags, generation, image["id"])
    assert tags["PNG:Description"] == generation["prompt"]
    assert tags["Composite:ImageSize"] == f"{image['width']} {image['height']}"
    assert data.count(b"<?xpacket begin") == 1


def test_variants_carry_the_same_xmp(maker: Running) -> None:
    generation = generated(maker)
    image = generation["outputImage"]
    width = min(200, image["width"])
    original = exiftool(fetched(maker, f"{CDN}/{image['id']}"))
    for fmt, pil in VARIANT_FORMATS.items():
        data = fetched(maker, f"{CDN}/{image['id']}?w=200&format={fmt}")
        picture = decode(data)
        assert (picture.format, picture.width) == (pil, width)
        tags = exiftool(data)
        assert_marked(tags, generation, image["id"])
        ours = {k: v for k, v in tags.items() if k.startswith("XMP-")}
        assert ours == {k: v for k, v in original.items() if k.startswith("XMP-")}, fmt
        if fmt == "png":
            assert_png_text(tags, generation, image["id"])
            assert tags["PNG:Description"] == generation["prompt"]


def test_openai_door_jpeg_and_webp_outputs_are_marked(maker: Running) -> None:
    """Through the door with the real SDK: a JPEG answered as b64_json and a WebP
    answered as a URL, both marked, both the bytes /cdn serves."""
    with sdk(maker) as client:
        as_jpeg = client.images.generate(
            prompt="a harbour, Möwe", size="512x512", output_format="jpeg"
        )
        as_webp = client.images.generate(
            prompt="a harbour, Möwe", size="512x512", output_format="webp", response_format="url"
        )
    assert as_jpeg.data
    assert as_webp.data
    jpeg_item, webp_item = as_jpeg.data[0], as_webp.data[0]
    jpeg = base64.b64decode(jpeg_item.b64_json or "")
    assert webp_item.b64_json is None
    assert webp_item.url is not None
    webp = fetched(maker, httpx.URL(webp_item.url).path)
    for item, data, pil in ((jpeg_item, jpeg, "JPEG"), (webp_item, webp, "WEBP")):
        extra = item.model_extra or {}
        response = maker.project("GET", f"{GENERATIONS}/{extra['generation_id']}")
        assert response.status_code == 200, response.text
        generation = response.json()["data"]
        assert generation["prompt"] == "a harbour, Möwe"
        image = generation["outputImage"]
        assert image["id"] == extra["image_id"]
        assert decode(data).format == pil
        assert data == fetched(maker, f"{CDN}/{image['id']}")
        assert_describes(image, data)
        assert_marked(exiftool(data), generation, image["id"])
    webp_chunks = [c.kind for c in riff_chunks(webp)[0]]
    assert webp_chunks[0] == b"VP8X"
    assert b"XMP " in webp_chunks


def test_regeneration_in_place_rewrites_the_metadata(maker: Running) -> None:
    """A new prompt: the same image id and URL, new bytes saying the new prompt (one
    packet, the old prompt gone), its variants made afresh from them."""
    generation = generated(maker)
    image_id = generation["outputImage"]["id"]
    before = fetched(maker, f"{CDN}/{image_id}")
    assert b"Zebrafink" in before
    fetched(maker, f"{CDN}/{image_id}?w=200&format=jpeg")  # a variant to replace
    response = maker.project(
        "PUT", f"{GENERATIONS}/{generation['id']}", json={"prompt": NEW_PROMPT}
    )
    assert response.status_code == 200, response.text
    again = response.json()["data"]
    assert again["id"] == generation["id"]
    assert again["status"] == "success"
    assert again["outputImage"]["id"] == image_id
    assert NEW_PROMPT in again["prompt"]
    after = fetched(maker, f"{CDN}/{image_id}")
    assert after != before
    assert_describes(again["outputImage"], after)
    assert_describes(image_row(maker, image_id), after)
    tags = exiftool(after)
    assert_marked(tags, again, image_id)
    assert tags["PNG:Description"] == again["prompt"]
    assert b"Zebrafink" not in after
    assert after.count(b"<?xpacket begin") == 1
    variant = fetched(maker, f"{CDN}/{image_id}?w=200&format=jpeg")
    assert_marked(exiftool(variant), again, image_id)
    assert b"Zebrafink" not in variant


# ---------------------------------------------------------------------- uploads
# On the offline appliance (default settings), before the module's own servers.

offline_only = pytest.mark.parametrize("maker", ["offline"], indirect=True)


@offline_only
def test_phone_jpeg_upload_is_served_clean_and_upright(maker: Running) -> None:
    """GPS, EXIF, XMP, IPTC and the comment are gone; the picture stands up (sensor
    width and height swapped, the marker where exif_transpose puts it); the ICC
    profile is intact; the image's facts are the served file's."""
    sent = phone_jpeg(6)
    assert exiftool(sent)["GPS:GPSLatitude"] == pytest.approx(52.52)
    image = upload(maker, sent, "IMG_0001.jpg", "image/jpeg")
    served = fetched(maker, f"{CDN}/{image['id']}")
    assert served != sent
    assert_describes(image, served)
    tags = exiftool(served)
    assert_private_gone(tags)
    assert tags["ICC_Profile:ProfileDescription"] == "sRGB built-in"
    assert icc_of(served) == ICC
    picture = decode(served)
    assert picture.format == "JPEG"
    assert picture.size == (SENSOR[1], SENSOR[0]) == (image["width"], image["height"])
    reference = ImageOps.exif_transpose(decode(sent))
    assert reference.size == picture.size
    for corner in ((4, 4), (picture.width - 5, 4), (4, picture.height - 5)):
        assert red(picture.getpixel(corner)) == red(reference.getpixel(corner)), corner
    assert red(picture.getpixel((picture.width - 5, 4)))
    # a variant of a cleaned upload says nothing either
    variant = fetched(maker, f"{CDN}/{image['id']}?w=32&format=jpeg")
    assert decode(variant).size == (32, 48)
    assert_private_gone(exiftool(variant))


@offline_only
def test_png_with_text_and_webp_with_exif_are_cleaned(maker: Running) -> None:
    png = png_with_metadata()
    assert exiftool(png)["PNG:Comment"] == "shot at home"
    webp = encode(
        sensor_picture(), "WEBP", lossless=True, icc_profile=ICC, exif=phone_exif(1), xmp=XMP
    )
    assert exiftool(webp)["GPS:GPSLatitude"] == pytest.approx(52.52)
    for sent, mime in ((png, "image/png"), (webp, "image/webp")):
        image = upload(maker, sent, "upload", mime)
        assert image["mimeType"] == mime
        served = fetched(maker, f"{CDN}/{image['id']}")
        assert_describes(image, served)
        assert_private_gone(exiftool(served))
        assert icc_of(served) == ICC
        assert (image["width"], image["height"]) == SENSOR
        assert decode(served).tobytes() == decode(sent).tobytes()  # no pixel touched
        if mime == "image/png":
            kinds = {c.kind for c in png_chunks(served)[0]}
            assert kinds == {b"IHDR", b"iCCP", b"IDAT", b"IEND"}
        else:
            assert [c.kind for c in riff_chunks(served)[0]] == [b"VP8X", b"ICCP", b"VP8L"]


@offline_only
def test_an_upload_with_nothing_to_remove_is_stored_byte_for_byte(maker: Running) -> None:
    for sent, mime in (
        (encode(sensor_picture(), "PNG", icc_profile=ICC), "image/png"),
        (encode(sensor_picture(), "JPEG", quality=90, icc_profile=ICC), "image/jpeg"),
        (encode(sensor_picture(), "WEBP", lossless=True, icc_profile=ICC), "image/webp"),
    ):
        image = upload(maker, sent, "clean", mime)
        assert image["fileHash"] == hashlib.sha256(sent).hexdigest()
        assert image["fileSize"] == len(sent)
        assert fetched(maker, f"{CDN}/{image['id']}") == sent


# -------------------------------------------------- appliances of their own settings


def test_embed_prompt_false_leaves_the_prompt_out(start_server: Callable[..., Running]) -> None:
    """No prompt and no description in the XMP or the PNG text, of the file or its
    variants; every other fact is there."""
    running = start_server(metadata__embed_prompt=False)
    generation = generated(running)
    image_id = generation["outputImage"]["id"]
    data = fetched(running, f"{CDN}/{image_id}")
    assert_describes(generation["outputImage"], data)
    tags = exiftool(data)
    assert_marked(tags, generation, image_id, prompt=False)
    assert_png_text(tags, generation, image_id)
    assert b"Zebrafink" not in data
    assert "Fuchs" not in str(tags)
    for fmt in VARIANT_FORMATS:
        variant = fetched(running, f"{CDN}/{image_id}?w=200&format={fmt}")
        assert_marked(exiftool(variant), generation, image_id, prompt=False)
        assert b"Zebrafink" not in variant


def test_strip_metadata_false_stores_uploads_as_sent(start_server: Callable[..., Running]) -> None:
    running = start_server(uploads__strip_metadata=False)
    sent = phone_jpeg(6)
    image = upload(running, sent, "IMG_0002.jpg", "image/jpeg")
    served = fetched(running, f"{CDN}/{image['id']}")
    assert served == sent
    assert_describes(image, sent)
    assert (image["width"], image["height"]) == SENSOR  # the stored file's, unturned
    tags = exiftool(served)
    assert tags["GPS:GPSLatitude"] == pytest.approx(52.52)
    assert tags["IFD0:Orientation"] == 6


def test_jpeg_variant_of_an_image_with_a_long_enhanced_prompt(
    start_server: Callable[..., Running], fake_gemini: FakeGemini
) -> None:
    """Gemini's enhancement may be up to 10 000 characters; escaped in the XMP (twice:
    dc:description and banatie:Prompt) it can outgrow one JPEG segment. The PNG keeps
    it whole; a JPEG variant is still served and marked, with the prompt once."""
    running = start_server(**on_fake_gemini(fake_gemini))
    fake_gemini.queue(Answer("text", text='"<&> ' * 2000))
    generation = generated(running, "a cat")
    image_id = generation["outputImage"]["id"]
    assert len(generation["prompt"]) > 9000
    assert (
        exiftool(fetched(running, f"{CDN}/{image_id}"))["XMP-banatie:Prompt"]
        == (generation["prompt"])
    )
    response = running.client.get(f"{CDN}/{image_id}?w=32&format=jpeg")
    assert response.status_code == 200, response.text
    tags = exiftool(response.content)
    assert tags["XMP-banatie:ImageId"] == image_id
    assert tags["XMP-banatie:Prompt"] == generation["prompt"]
    assert "XMP-dc:Description" not in tags
