"""Image and prompt-enhancement providers behind one small interface."""

from __future__ import annotations

from banatie_local.config import Settings
from banatie_local.providers.base import (
    GeneratedImage,
    ImageProvider,
    ProviderError,
    ReferenceImage,
)

__all__ = [
    "GeneratedImage",
    "ImageProvider",
    "ProviderError",
    "ReferenceImage",
    "create_provider",
]


def create_provider(settings: Settings) -> ImageProvider:
    """The provider ``generation.provider`` selects (``auto``: gemini with its key, else
    openai with its key, else offline)."""
    if settings.provider_name == "gemini":
        from banatie_local.providers.gemini import GeminiProvider

        return GeminiProvider(settings.generation)
    if settings.provider_name == "openai":
        from banatie_local.providers.openai import OpenAiProvider

        return OpenAiProvider(settings.generation)
    from banatie_local.providers.offline import OfflineProvider

    return OfflineProvider()
