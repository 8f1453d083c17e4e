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

# Formats and limits of the request fields (API.md §1–§5); the decoders, the error
# messages, the OpenAPI document and /api/info all read them from here.
ALIAS_PATTERN: Final = r"^@[A-Za-z0-9_-]{1,49}$"
SCOPE_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}$"
SLUG_PATTERN: Final = r"^[a-z0-9][a-z0-9-]{0,62}$"
MAX_ID_LENGTH: Final = 100  # an image id or @alias given as a reference
MAX_EXPLICIT_REFERENCES: Final = 20  # referenceImages entries (MAX_REFERENCE_IMAGES are used)
MAX_ALIASES_PER_REQUEST: Final = 100
MAX_KEY_NAME_LENGTH: Final = 100
MAX_EXPIRY_DAYS: Final = 36500
MAX_SCOPE_GENERATIONS_LIMIT: Final = 1_000_000
MAX_META_BYTES: Final = 16 * 1024
MAX_PAGE_LIMIT: Final = 100

# A name the legacy routes publish an image under (API.md §10).
MAX_FILENAME_LENGTH: Final = 128
FILENAME_PATTERN: Final = rf"^[A-Za-z0-9._-]{{1,{MAX_FILENAME_LENGTH}}}$"
# Reference files one legacy POST /api/generate accepts (API.md §10).
MAX_LEGACY_REFERENCES: Final = 3

# Signed URLs (API.md §13): the longest expiresIn a signer may ask for (ten years).
MAX_SIGNED_URL_SECONDS: Final = 10 * 365 * 86400
