"""The offline provider: a deterministic Pillow renderer, no network, no AI.

The same prompt, ratio and references always give the same bytes. The prompt's hash
picks the palette, the background gradient and the shapes, so every prompt gets its
own picture; reference images replace the palette with their own dominant colours,
so they visibly steer the result. Output has the exact size of API.md §1.3.
"""

from __future__ import annotations

import asyncio
import colorsys
import hashlib
import io
import random

from PIL import Image as PILImage
from PIL import ImageDraw

from banatie_local.constants import ASPECT_RATIOS
from banatie_local.providers.base import GeneratedImage, ProviderError, ReferenceImage
from banatie_local.providers.enhance import template_rewrite

MODEL_NAME = "offline-renderer-1"
_DRAW_SCALE = 2  # shapes are drawn at half size, then smoothly enlarged

Color = tuple[int, int, int]


class OfflineProvider:
    name = "offline"
    image_model = MODEL_NAME

    async def generate(
        self, prompt: str, aspect_ratio: str, references: list[ReferenceImage]
    ) -> GeneratedImage:
        """Render in a worker thread so the event loop stays free."""
        if aspect_ratio not in ASPECT_RATIOS:
            raise ProviderError(f"unsupported aspect ratio {aspect_ratio}.", "request")
        width, height = ASPECT_RATIOS[aspect_ratio]
        data = await asyncio.to_thread(render, prompt, width, height, references)
        return GeneratedImage(data, "image/png", width, height, MODEL_NAME)

    async def enhance(self, prompt: str, template: str) -> str:
        return template_rewrite(prompt, template)


def _seed(prompt: str, width: int, height: int, references: list[ReferenceImage]) -> bytes:
    digest = hashlib.sha256(f"{width}x{height}\n{prompt}".encode())
    for ref in references:
        digest.update(hashlib.sha256(ref.data).digest())
    return digest.digest()


def _prompt_palette(rng: random.Random) -> list[Color]:
    base = rng.random()
    colours = []
    for step in range(5):
        hue = (base + step * rng.uniform(0.08, 0.3)) % 1.0
        r, g, b = colorsys.hsv_to_rgb(hue, rng.uniform(0.45, 0.9), rng.uniform(0.55, 0.98))
        colours.append((int(r * 255), int(g * 255), int(b * 255)))
    return colours


def reference_palette(references: list[ReferenceImage]) -> list[Color]:
    """The dominant colours of the reference images (up to 5)."""
    colours: list[Color] = []
    for ref in references:
        # References were decoded and checked when they were stored.
        with PILImage.open(io.BytesIO(ref.data)) as img:
            small = img.convert("RGB").resize((32, 32))
        quantized = small.quantize(colors=4)
        palette: list[int] = list(quantized.getpalette() or [])
        # a "P" image reports (count, palette index) pairs
        counts = sorted(((n, int(i)) for n, i in quantized.getcolors() or []), reverse=True)  # type: ignore[arg-type]
        for _, index in counts:
            colour = (palette[index * 3], palette[index * 3 + 1], palette[index * 3 + 2])
            if colour not in colours:
                colours.append(colour)
    return colours[:5]


def render(prompt: str, width: int, height: int, references: list[ReferenceImage]) -> bytes:
    """The PNG for these inputs (pure function of its arguments)."""
    rng = random.Random(_seed(prompt, width, height, references))
    palette = reference_palette(references) or _prompt_palette(rng)
    while len(palette) < 3:
        r, g, b = palette[len(palette) - 1]
        palette.append((255 - r, 255 - g, 255 - b))
    w, h = width // _DRAW_SCALE, height // _DRAW_SCALE
    top = PILImage.new("RGB", (w, h), palette[0])
    bottom = PILImage.new("RGB", (w, h), palette[1])
    mask = PILImage.linear_gradient("L").rotate(rng.choice((0, 45, 90, 135, 180))).resize((w, h))
    canvas = PILImage.composite(top, bottom, mask).convert("RGBA")
    overlay = PILImage.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    for _ in range(rng.randint(7, 14)):
        colour = (*rng.choice(palette), rng.randint(90, 220))
        x0, y0 = rng.randint(-w // 4, w), rng.randint(-h // 4, h)
        size = rng.randint(min(w, h) // 10, min(w, h) // 2)
        box = (x0, y0, x0 + size, y0 + int(size * rng.uniform(0.5, 1.5)))
        shape = rng.randint(0, 2)
        if shape == 0:
            draw.ellipse(box, fill=colour)
        elif shape == 1:
            draw.rectangle(box, fill=colour)
        else:
            draw.polygon(
                [(box[0], box[3]), ((box[0] + box[2]) // 2, box[1]), (box[2], box[3])],
                fill=colour,
            )
    canvas = PILImage.alpha_composite(canvas, overlay).convert("RGB")
    canvas = canvas.resize((width, height), PILImage.Resampling.BICUBIC)
    out = io.BytesIO()
    canvas.save(out, format="PNG", compress_level=6)
    return out.getvalue()
