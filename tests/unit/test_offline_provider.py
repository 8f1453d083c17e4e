"""The offline provider (API.md §1.3–§1.5): exact sizes, determinism, distinct pictures,
reference palettes, the template rewrite, and rendering off the event loop."""

from __future__ import annotations

import asyncio
import io
import itertools
import math
from typing import Any

import pytest
from PIL import Image, ImageStat

from banatie_local.constants import ASPECT_RATIOS, TEMPLATES
from banatie_local.providers.base import GeneratedImage, ProviderError, ReferenceImage
from banatie_local.providers.enhance import TEMPLATE_STYLES
from banatie_local.providers.offline import MODEL_NAME, OfflineProvider, render
from tests.imagedata import jpeg_bytes, png_bytes

Color = tuple[int, int, int]

BLUE: Color = (0, 0, 255)
PROMPTS = ("a red fox in the snow", "a lighthouse at dusk", "a bowl of ramen", "a desert road")


def generate(
    prompt: str, ratio: str = "1:1", references: list[ReferenceImage] | None = None
) -> GeneratedImage:
    return asyncio.run(OfflineProvider().generate(prompt, ratio, references or []))


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def mean_colour(data: bytes) -> tuple[float, ...]:
    return tuple(ImageStat.Stat(decode(data).convert("RGB")).mean)


def share_near(data: bytes, colour: Color, radius: float = 90.0) -> float:
    """The fraction of pixels within ``radius`` (RGB distance) of ``colour``."""
    small = decode(data).convert("RGB").resize((64, 64))
    histogram: list[Any] = small.getcolors(64 * 64) or []
    near: int = sum(n for n, pixel in histogram if math.dist(pixel, colour) <= radius)
    return near / (64 * 64)


def solid(colour: Color, size: int = 16) -> ReferenceImage:
    return ReferenceImage(png_bytes(size, size, colour), "image/png")


# ------------------------------------------------------------------------ sizes


@pytest.mark.parametrize(("ratio", "size"), list(ASPECT_RATIOS.items()))
def test_every_ratio_renders_at_its_exact_size(ratio: str, size: tuple[int, int]) -> None:
    """Each ratio of §1.3 gives a PNG of exactly that width and height."""
    result = generate("a lighthouse at dusk", ratio)
    image = decode(result.data)
    assert image.format == "PNG"
    assert image.size == size
    assert (result.width, result.height) == size
    assert result.mime_type == "image/png"
    assert result.model == MODEL_NAME == "offline-renderer-1"


def test_render_function_gives_the_requested_size() -> None:
    """``render`` is the pure function behind the provider."""
    data = render("a lighthouse at dusk", 1344, 1008, [])
    assert decode(data).size == (1344, 1008)
    assert data == generate("a lighthouse at dusk", "4:3").data


def test_provider_name_is_offline() -> None:
    assert OfflineProvider.name == "offline"


@pytest.mark.parametrize("ratio", ["5:4", "", "1:1 ", "16x9", "1024x1024"])
def test_unknown_ratio_is_a_provider_error(ratio: str) -> None:
    """A ratio outside §1.3 fails with ``ProviderError`` before any rendering."""
    with pytest.raises(ProviderError) as caught:
        generate("a cat", ratio)
    assert caught.value.kind == "request"
    assert caught.value.message


# ------------------------------------------------------------------ determinism


def test_same_inputs_give_identical_bytes_across_instances() -> None:
    """Two provider instances, two event loops: the same bytes."""
    refs = [solid((200, 40, 40))]
    first = asyncio.run(OfflineProvider().generate("a desert road", "16:9", refs))
    second = asyncio.run(OfflineProvider().generate("a desert road", "16:9", refs))
    assert first == second
    assert first.data == second.data


def test_render_is_deterministic() -> None:
    assert render("a bowl of ramen", 256, 128, []) == render("a bowl of ramen", 256, 128, [])


def test_ratio_changes_the_bytes() -> None:
    assert generate("a cat", "1:1").data != generate("a cat", "3:2").data


# ------------------------------------------------------------ distinct pictures


def test_different_prompts_give_different_bytes() -> None:
    outputs = {render(prompt, 256, 256, []) for prompt in PROMPTS}
    assert len(outputs) == len(PROMPTS)


def test_different_prompts_give_visibly_different_pictures() -> None:
    """Not just different bytes: the average colour moves noticeably."""
    means = {prompt: mean_colour(render(prompt, 256, 256, [])) for prompt in PROMPTS}
    for a, b in itertools.combinations(PROMPTS, 2):
        assert math.dist(means[a], means[b]) > 15, (a, b, means[a], means[b])


def test_a_picture_is_not_a_flat_fill() -> None:
    """The render has structure (gradient and shapes), not one colour."""
    image = decode(render("a lighthouse at dusk", 256, 256, [])).convert("RGB")
    colours = image.getcolors(256 * 256) or []
    assert len(colours) > 50
    assert max(ImageStat.Stat(image).stddev) > 10


# ------------------------------------------------------------------- references


def test_reference_images_change_the_output() -> None:
    plain = generate("a red fox in the snow").data
    with_blue = generate("a red fox in the snow", references=[solid(BLUE)]).data
    with_red = generate("a red fox in the snow", references=[solid((220, 20, 20))]).data
    assert len({plain, with_blue, with_red}) == 3


@pytest.mark.parametrize("prompt", PROMPTS)
def test_a_blue_reference_pulls_the_palette_toward_blue(prompt: str) -> None:
    """A solid blue reference makes blue a large part of the picture."""
    plain = render(prompt, 512, 512, [])
    steered = render(prompt, 512, 512, [solid(BLUE)])
    assert share_near(plain, BLUE) < 0.02
    assert share_near(steered, BLUE) > 0.1


def test_reference_palette_uses_every_reference() -> None:
    """Two solid references: both colours show up in the output."""
    red, green = (220, 20, 20), (20, 200, 20)
    data = render("a bowl of ramen", 512, 512, [solid(red), solid(green)])
    assert share_near(data, red) > 0.05
    assert share_near(data, green) > 0.05


def test_jpeg_references_are_accepted() -> None:
    ref = ReferenceImage(jpeg_bytes(16, 16, BLUE), "image/jpeg")
    data = generate("a desert road", references=[ref]).data
    assert share_near(data, BLUE) > 0.1


def test_reference_order_and_content_are_part_of_the_seed() -> None:
    a, b = solid((200, 30, 30)), solid((30, 30, 200))
    assert render("x", 128, 128, [a, b]) != render("x", 128, 128, [b, a])
    assert render("x", 128, 128, [a]) == render("x", 128, 128, [solid((200, 30, 30))])


# ---------------------------------------------------------------------- enhance


@pytest.mark.parametrize("template", TEMPLATES)
def test_enhance_is_a_deterministic_template_rewrite(template: str) -> None:
    provider = OfflineProvider()
    prompt = "a robot watering plants"
    first = asyncio.run(provider.enhance(prompt, template))
    second = asyncio.run(OfflineProvider().enhance(prompt, template))
    assert first == second
    assert first.startswith(prompt)
    assert prompt in first
    assert first != prompt
    assert TEMPLATE_STYLES[template] in first


def test_enhance_differs_per_template() -> None:
    rewrites = {
        template: asyncio.run(OfflineProvider().enhance("a robot", template))
        for template in TEMPLATES
    }
    assert len(set(rewrites.values())) == len(TEMPLATES) == 7


def test_enhance_trims_the_prompt() -> None:
    assert asyncio.run(OfflineProvider().enhance("  a robot \n", "general")).startswith("a robot, ")


# ---------------------------------------------------------------- event loop


def test_rendering_runs_in_a_worker_thread() -> None:
    """While a large image renders, other coroutines on the loop keep running."""

    async def scenario() -> tuple[int, GeneratedImage]:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                await asyncio.sleep(0.001)
                ticks += 1

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)  # let the ticker start
        start_ticks = ticks
        result = await OfflineProvider().generate("a wide mountain range", "21:9", [])
        during = ticks - start_ticks
        done.set()
        await task
        return during, result

    during, result = asyncio.run(scenario())
    assert (result.width, result.height) == (2016, 864)
    assert during > 0
