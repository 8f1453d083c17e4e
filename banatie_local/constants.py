"""Fixed facts of the API contract (API.md §1.3, §1.4, §3)."""

from __future__ import annotations

from typing import Final

ASPECT_RATIOS: Final[dict[str, tuple[int, int]]] = {
    "1:1": (1024, 1024),
    "16:9": (1792, 1008),
    "9:16": (1008, 1792),
    "3:2": (1536, 1024),
    "2:3": (1024, 1536),
    "4:3": (1344, 1008),
    "3:4": (1008, 1344),
    "21:9": (2016, 864),
}
DEFAULT_API_ASPECT_RATIO: Final = "1:1"
DEFAULT_LIVE_ASPECT_RATIO: Final = "16:9"

TEMPLATES: Final = (
    "general",
    "photorealistic",
    "illustration",
    "minimalist",
    "sticker",
    "product",
    "comic",
)
DEFAULT_TEMPLATE: Final = "general"

IMAGE_FORMATS: Final = ("image/png", "image/jpeg", "image/webp")
MAX_REFERENCE_IMAGES: Final = 3
MAX_PROMPT_LENGTH: Final = 5000
MAX_LIVE_PROMPT_LENGTH: Final = 2000
MAX_IMAGE_PIXELS: Final = 40_000_000
