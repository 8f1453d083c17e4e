"""The Gemini provider, through the google-genai SDK.

Images come from ``generation.image_model`` with response modality IMAGE and the
aspect ratio in ``imageConfig``; reference images go as inline parts before the
prompt. Retries (429 and 5xx) with exponential backoff are done here, so their
number is exactly ``generation.max_retries``. Every failure becomes a
``ProviderError`` with a message that is safe to store: it never holds the key.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx2
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from banatie_local.config import GenerationSettings
from banatie_local.providers.base import (
    RETRY_STATUS,
    GeneratedImage,
    ProviderError,
    ReferenceImage,
    backoff,
    measure,
)
from banatie_local.providers.enhance import INSTRUCTION, TEMPLATE_STYLES

log = logging.getLogger(__name__)

_BLOCKED_FINISH = {
    "SAFETY",
    "IMAGE_SAFETY",
    "PROHIBITED_CONTENT",
    "BLOCKLIST",
    "SPII",
    "IMAGE_PROHIBITED_CONTENT",
    "RECITATION",
}


class GeminiProvider:
    name = "gemini"

    def __init__(self, settings: GenerationSettings) -> None:
        self.settings = settings
        self.image_model = settings.image_model
        options = types.HttpOptions(timeout=int(settings.timeout_seconds * 1000))
        if settings.gemini_base_url:
            options.base_url = settings.gemini_base_url
        self._client = genai.Client(api_key=settings.gemini_api_key, http_options=options)

    async def generate(
        self, prompt: str, aspect_ratio: str, references: list[ReferenceImage]
    ) -> GeneratedImage:
        parts: list[Any] = [
            types.Part.from_bytes(data=ref.data, mime_type=ref.mime_type) for ref in references
        ]
        parts.append(prompt)
        config = types.GenerateContentConfig(
            response_modalities=["IMAGE"],
            image_config=types.ImageConfig(aspect_ratio=aspect_ratio),
        )
        model = self.settings.image_model
        response = await self._call(model, parts, config)
        data, mime = _first_image(response)
        try:
            width, height = measure(data)
        except Exception as exc:
            raise ProviderError(
                "Gemini returned image data that is not a readable image.", "no_image"
            ) from exc
        return GeneratedImage(data, mime, width, height, model)

    async def enhance(self, prompt: str, template: str) -> str:
        config = types.GenerateContentConfig(
            system_instruction=INSTRUCTION.format(style=TEMPLATE_STYLES[template]),
            response_modalities=["TEXT"],
        )
        response = await self._call(self.settings.text_model, [prompt], config)
        text = (response.text or "").strip()
        if not text:
            raise ProviderError("the Gemini text model returned no text.", "no_text")
        return text

    async def _call(
        self, model: str, contents: list[Any], config: types.GenerateContentConfig
    ) -> types.GenerateContentResponse:
        """One request, retried on 429/5xx with backoff; failures become ProviderError."""
        attempt = 0
        while True:
            try:
                return await asyncio.wait_for(
                    self._client.aio.models.generate_content(
                        model=model, contents=contents, config=config
                    ),
                    timeout=self.settings.timeout_seconds,
                )
            except genai_errors.APIError as exc:
                if exc.code in RETRY_STATUS and attempt < self.settings.max_retries:
                    await backoff(
                        log, "Gemini", self.settings.retry_backoff_seconds, attempt, exc.code
                    )
                    attempt += 1
                    continue
                raise self._api_error(exc) from None
            except (TimeoutError, httpx2.TimeoutException):
                raise ProviderError(
                    f"Gemini did not answer within {self.settings.timeout_seconds:g} seconds.",
                    "timeout",
                ) from None
            except (httpx2.HTTPError, OSError) as exc:
                raise ProviderError(
                    f"Gemini could not be reached ({type(exc).__name__}).", "network"
                ) from None
            except Exception as exc:  # the SDK's own surprises still end as a clear failure
                log.warning("Gemini call failed: %s", type(exc).__name__, exc_info=True)
                raise ProviderError(
                    f"the Gemini call failed ({type(exc).__name__}).", "error"
                ) from None

    def _api_error(self, exc: genai_errors.APIError) -> ProviderError:
        code = exc.code or 0
        detail = self._scrub(str(exc.message or exc.status or ""))
        if code in (401, 403):
            return ProviderError(
                "Gemini rejected the API key (check generation.gemini_api_key).", "auth"
            )
        if code == 429:
            return ProviderError("Gemini quota or rate limit exceeded; try again later.", "quota")
        if code >= 500:
            return ProviderError(f"Gemini server error (HTTP {code}).", "server")
        return ProviderError(
            f"Gemini rejected the request (HTTP {code}): {detail}"[:500], "request"
        )

    def _scrub(self, text: str) -> str:
        key = self.settings.gemini_api_key
        return text.replace(key, "[redacted]") if key else text


def _first_image(response: types.GenerateContentResponse) -> tuple[bytes, str]:
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason is not None:
        raise ProviderError(
            f"Gemini blocked the prompt ({_enum_name(feedback.block_reason)}).", "safety"
        )
    for candidate in response.candidates or []:
        for part in (candidate.content.parts if candidate.content else None) or []:
            inline = part.inline_data
            if inline is not None and inline.data and (inline.mime_type or "").startswith("image/"):
                return inline.data, inline.mime_type or "image/png"
        reason = _enum_name(candidate.finish_reason)
        if reason in _BLOCKED_FINISH:
            raise ProviderError(f"Gemini blocked the image ({reason}).", "safety")
    raise ProviderError("Gemini answered without an image.", "no_image")


def _enum_name(value: Any) -> str:
    return str(getattr(value, "name", value) or "")
