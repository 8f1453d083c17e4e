"""Prompt-enhancement templates: one instruction per template, shared by providers."""

from __future__ import annotations

from typing import Final

# What each template asks of the rewrite; the offline provider appends the phrase,
# the Gemini provider gives the instruction to its text model.
TEMPLATE_STYLES: Final[dict[str, str]] = {
    "general": "clear subject, balanced composition, natural lighting, fine detail",
    "photorealistic": "photorealistic, shot on a full-frame camera, 50mm lens, soft natural "
    "light, shallow depth of field, true-to-life colour",
    "illustration": "digital illustration, clean linework, rich flat colours, expressive shapes",
    "minimalist": "minimalist, generous negative space, limited palette, simple geometric forms",
    "sticker": "die-cut sticker, bold outline, white border, flat vector colours, plain background",
    "product": "studio product shot, seamless backdrop, three-point softbox lighting, crisp "
    "reflections",
    "comic": "comic-book panel, bold ink outlines, halftone shading, dynamic angle",
}

INSTRUCTION: Final = (
    "Rewrite the user's image prompt into one richer prompt for an image model. Keep "
    "the subject and every @reference exactly as written. Style: {style}. Answer with "
    "the rewritten prompt only, no quotes and no commentary."
)


def template_rewrite(prompt: str, template: str) -> str:
    """The deterministic offline rewrite: the prompt, then the template's style."""
    return f"{prompt.strip()}, {TEMPLATE_STYLES[template]}"
