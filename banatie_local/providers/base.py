"""The provider interface: draw an image, and rewrite a prompt."""

from __future__ import annotations

import asyncio
import io
import logging
from dataclasses import dataclass
from typing import Final, Protocol

from PIL import Image as PILImage


@dataclass(frozen=True)
class ReferenceImage:
    data: bytes
    mime_type: str


@dataclass(frozen=True)
class GeneratedImage:
    data: bytes
    mime_type: str
    width: int
    height: int
    model: str


class ProviderError(Exception):
    """A generation or enhancement failed; ``message`` is safe to show and store
    (it never contains credentials)."""

    def __init__(self, message: str, kind: str = "error") -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind


class ImageProvider(Protocol):
    """A provider may also name the model it draws with as ``image_model``."""

    name: str

    async def generate(
        self, prompt: str, aspect_ratio: str, references: list[ReferenceImage]
    ) -> GeneratedImage:
        """Draw an image for ``prompt``; raise ``ProviderError`` on failure."""
        ...

    async def enhance(self, prompt: str, template: str) -> str:
        """Rewrite ``prompt`` in the style of ``template``; raise ``ProviderError``."""
        ...


def measure(data: bytes) -> tuple[int, int]:
    """Width and height from an image's header (no full decode)."""
    with PILImage.open(io.BytesIO(data)) as img:
        width, height = img.size
    return int(width), int(height)


# Answers a provider call is retried on (rate limited, or the server's own failure).
RETRY_STATUS: Final = frozenset({429, 500, 502, 503, 504})


async def backoff(
    log: logging.Logger, label: str, first_delay: float, attempt: int, status: int | None
) -> None:
    """Wait before retry ``attempt`` (0-based) of a provider call: ``first_delay``
    doubled per attempt, at most 30 s; the wait is logged once, on ``log``."""
    delay = min(first_delay * (2**attempt), 30.0)
    log.warning("%s answered %s; retrying in %.2f s", label, status, delay)
    await asyncio.sleep(delay)
