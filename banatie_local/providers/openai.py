"""The openai provider: OpenAI, or any OpenAI-compatible server (LocalAI, a proxy,
another banatie-local), through the official ``openai`` SDK.

Without references an image is ``images.generate``; with references it is
``images.edit``, the references sent as the multipart ``image[]`` files. The aspect
ratio asks for the nearest size of ``generation.openai_sizes``, and the image is
recorded at the size it really has, measured from the returned bytes (``b64_json``,
or a ``url`` that is downloaded). Prompts are enhanced by
``generation.openai_text_model`` through ``chat.completions`` with the instructions
Gemini gets, or, without a text model, by the offline rewrite.

Retries (429 and 5xx) with exponential backoff are done here, as the Gemini provider
does them, so their number is exactly ``generation.max_retries`` (the SDK's own
retries are off). Every failure becomes a ``ProviderError`` whose message is safe to
store: it never holds the key.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar
from urllib.parse import urljoin, urlsplit

import httpx2
import openai
from PIL import Image as PILImage

from banatie_local.config import GenerationSettings
from banatie_local.constants import ASPECT_RATIOS, MAX_IMAGE_PIXELS
from banatie_local.providers.base import (
    RETRY_STATUS,
    GeneratedImage,
    ProviderError,
    ReferenceImage,
    backoff,
)
from banatie_local.providers.enhance import INSTRUCTION, TEMPLATE_STYLES, template_rewrite

log = logging.getLogger(__name__)

T = TypeVar("T")

OPENAI_HOST: Final = "api.openai.com"
# OpenAI's codes for a prompt or image its moderation refused
_SAFETY_CODES: Final = {"moderation_blocked", "content_policy_violation", "content_filter"}
_FORMATS: Final = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
_EXTENSIONS: Final = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
MAX_DOWNLOAD_BYTES: Final = 64 * 1024 * 1024
_NO_KEY: Final = "no-key"  # the SDK insists on a key; keyless local servers ignore it


def nearest_size(aspect_ratio: str, sizes: tuple[tuple[int, int], ...]) -> tuple[int, int]:
    """The size of ``sizes`` whose ratio is nearest ``aspect_ratio`` (on a log scale,
    so 2:1 and 1:2 are as far from 1:1); the first listed wins a tie."""
    width, height = ASPECT_RATIOS[aspect_ratio]
    wanted = math.log(width / height)
    return min(sizes, key=lambda size: abs(math.log(size[0] / size[1]) - wanted))


def server_label(base_url: str) -> str:
    """How messages name the server: ``OpenAI``, or the host and port of another
    (never the URL's user info or path)."""
    parts = urlsplit(base_url)
    host = parts.hostname or "?"
    if host == OPENAI_HOST:
        return "OpenAI"
    if ":" in host:
        host = f"[{host}]"
    return f"the OpenAI-compatible server at {host}" + (f":{parts.port}" if parts.port else "")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname or "", parts.port


class OpenAiProvider:
    name = "openai"

    def __init__(self, settings: GenerationSettings) -> None:
        self.settings = settings
        self.image_model = settings.openai_model
        self.label = server_label(settings.openai_base_url)
        self._sizes = settings.openai_size_table
        self._client = openai.AsyncOpenAI(
            api_key=settings.openai_api_key or _NO_KEY,
            base_url=settings.openai_base_url,
            timeout=settings.timeout_seconds,
            max_retries=0,
        )

    async def generate(
        self, prompt: str, aspect_ratio: str, references: list[ReferenceImage]
    ) -> GeneratedImage:
        if aspect_ratio not in ASPECT_RATIOS:
            raise ProviderError(f"unsupported aspect ratio {aspect_ratio}.", "request")
        width, height = nearest_size(aspect_ratio, self._sizes)
        size = f"{width}x{height}"
        model = self.settings.openai_model
        images = self._client.images
        if references:
            files = [
                (f"reference-{n}.{_EXTENSIONS.get(ref.mime_type, 'png')}", ref.data, ref.mime_type)
                for n, ref in enumerate(references, 1)
            ]
            response: Any = await self._call(
                lambda: images.edit(image=files, prompt=prompt, model=model, size=size, n=1)
            )
        else:
            response = await self._call(
                lambda: images.generate(prompt=prompt, model=model, size=size, n=1)
            )
        data = await self._image_bytes(response)
        mime, real_width, real_height = self._identify(data)
        return GeneratedImage(data, mime, real_width, real_height, model)

    async def enhance(self, prompt: str, template: str) -> str:
        model = self.settings.openai_text_model
        if not model:
            return template_rewrite(prompt, template)
        instruction = INSTRUCTION.format(style=TEMPLATE_STYLES[template])
        chat = self._client.chat.completions
        response: Any = await self._call(
            lambda: chat.create(
                model=model,
                messages=[
                    {"role": "system", "content": instruction},
                    {"role": "user", "content": prompt},
                ],
            )
        )
        choices = getattr(response, "choices", None)
        first = choices[0] if isinstance(choices, list) and choices else None
        text = getattr(getattr(first, "message", None), "content", None)
        text = text.strip() if isinstance(text, str) else ""
        if not text:
            raise ProviderError(f"{self.label} returned no text from the model {model}.", "no_text")
        return text

    # ------------------------------------------------------------------ calls

    async def _call(self, request: Callable[[], Awaitable[T]]) -> T:
        """One request, retried on 429/5xx with backoff; failures become ProviderError."""
        attempt = 0
        while True:
            try:
                return await asyncio.wait_for(request(), timeout=self.settings.timeout_seconds)
            except openai.APIStatusError as exc:
                if exc.status_code in RETRY_STATUS and attempt < self.settings.max_retries:
                    await backoff(
                        log,
                        self.label,
                        self.settings.retry_backoff_seconds,
                        attempt,
                        exc.status_code,
                    )
                    attempt += 1
                    continue
                raise self._status_error(exc) from None
            except (TimeoutError, openai.APITimeoutError, httpx2.TimeoutException):
                raise self._timeout() from None
            except openai.APIConnectionError as exc:
                raise self._unreachable(exc.__cause__ or exc) from None
            except openai.APIError:  # a 2xx answer the SDK could not read
                raise ProviderError(
                    f"{self.label} answered with something that is not an API answer.", "error"
                ) from None
            except (httpx2.HTTPError, OSError) as exc:
                raise self._unreachable(exc) from None
            except Exception as exc:  # the SDK's own surprises still end as a clear failure
                log.warning("%s call failed: %s", self.label, type(exc).__name__, exc_info=True)
                raise ProviderError(
                    f"the call to {self.label} failed ({type(exc).__name__}).", "error"
                ) from None

    def _timeout(self) -> ProviderError:
        return ProviderError(
            f"{self.label} did not answer within {self.settings.timeout_seconds:g} seconds.",
            "timeout",
        )

    def _unreachable(self, exc: BaseException) -> ProviderError:
        reason = type(exc).__name__
        return ProviderError(f"{self.label} could not be reached ({reason}).", "network")

    def _status_error(self, exc: openai.APIStatusError) -> ProviderError:
        """The answer's status and the server's own message (its sentence, scrubbed of
        the key), except for a 401, whose message may echo part of the key."""
        code, label = exc.status_code, self.label
        detail = self._detail(exc.body)
        said = f": {detail}" if detail else "."
        if code == 401:
            if not self.settings.openai_api_key:
                return ProviderError(
                    f"{label} wants an API key (HTTP 401): set generation.openai_api_key "
                    "or OPENAI_API_KEY.",
                    "auth",
                )
            return ProviderError(
                f"{label} rejected the API key (HTTP 401; check generation.openai_api_key).",
                "auth",
            )
        if code == 403:
            return ProviderError(f"{label} refused the request (HTTP 403){said}"[:500], "auth")
        if code == 429:
            return ProviderError(
                f"{label} answered that the quota or rate limit is exceeded (HTTP 429; try "
                f"again later){said}"[:500],
                "quota",
            )
        if code >= 500:
            return ProviderError(
                f"{label} failed with a server error (HTTP {code}){said}"[:500], "server"
            )
        if exc.code in _SAFETY_CODES:
            return ProviderError(f"{label} blocked the request ({exc.code}){said}"[:500], "safety")
        return ProviderError(f"{label} rejected the request (HTTP {code}){said}"[:500], "request")

    def _detail(self, body: object) -> str:
        """The error's message from an answer's body (OpenAI's ``error.message``)."""
        if isinstance(body, dict):
            body = body.get("message") or ""
        text = " ".join(str(body or "").split())[:300]
        key = self.settings.openai_api_key
        return text.replace(key, "[redacted]") if key else text

    # ----------------------------------------------------------------- images

    async def _image_bytes(self, response: Any) -> bytes:
        """The first image of an Images API answer: its ``b64_json``, or its ``url``."""
        if not hasattr(response, "data"):  # the SDK hands back a body that is not JSON
            raise ProviderError(
                f"{self.label} answered with something that is not an Images API answer.",
                "no_image",
            )
        items = response.data
        first = items[0] if isinstance(items, list) and items else None
        encoded = getattr(first, "b64_json", None)
        url = getattr(first, "url", None)
        if isinstance(encoded, str) and encoded:
            try:
                return base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise ProviderError(
                    f"{self.label} answered with image data that is not valid base64.", "no_image"
                ) from None
        if isinstance(url, str) and url:
            return await self._download(url)
        raise ProviderError(f"{self.label} answered without an image.", "no_image")

    async def _download(self, url: str) -> bytes:
        """The bytes at an answer's image URL (relative to the base URL if relative);
        the key goes along only to the base URL's own origin."""
        base = self.settings.openai_base_url
        target = urljoin(base.rstrip("/") + "/", url)
        if urlsplit(target).scheme not in ("http", "https"):
            raise ProviderError(f"{self.label} answered with an image URL that is not http(s).",
                                "no_image")  # fmt: skip
        headers = {}
        if self.settings.openai_api_key and _origin(target) == _origin(base):
            headers["Authorization"] = f"Bearer {self.settings.openai_api_key}"
        try:
            return await asyncio.wait_for(
                self._fetch(target, headers), timeout=self.settings.timeout_seconds
            )
        except (TimeoutError, httpx2.TimeoutException):
            raise self._timeout() from None
        except (httpx2.HTTPError, OSError) as exc:
            raise self._unreachable(exc) from None

    async def _fetch(self, url: str, headers: dict[str, str]) -> bytes:
        chunks: list[bytes] = []
        total = 0
        timeout = self.settings.timeout_seconds
        async with (
            httpx2.AsyncClient(timeout=timeout, follow_redirects=True) as client,
            client.stream("GET", url, headers=headers) as answer,
        ):
            if answer.status_code != 200:
                raise ProviderError(
                    f"{self.label} answered with an image URL that gives HTTP "
                    f"{answer.status_code}.",
                    "no_image",
                )
            async for chunk in answer.aiter_bytes():
                total += len(chunk)
                if total > MAX_DOWNLOAD_BYTES:
                    raise ProviderError(
                        f"{self.label} answered with an image over "
                        f"{MAX_DOWNLOAD_BYTES // (1024 * 1024)} MB.",
                        "no_image",
                    )
                chunks.append(chunk)
        return b"".join(chunks)

    def _identify(self, data: bytes) -> tuple[str, int, int]:
        """The image's MIME type and real size, from its header (no full decode)."""
        try:
            with PILImage.open(io.BytesIO(data)) as img:
                kind, (width, height) = img.format or "", img.size
        except Exception:
            raise ProviderError(
                f"{self.label} answered with image data that is not a readable image.",
                "no_image",
            ) from None
        mime = _FORMATS.get(kind)
        if mime is None:
            raise ProviderError(
                f"{self.label} answered with a {kind or 'unknown'} image; PNG, JPEG or WebP "
                "is needed.",
                "no_image",
            )
        if width * height > MAX_IMAGE_PIXELS:
            raise ProviderError(
                f"{self.label} answered with an image of {width}x{height}, over the "
                f"{MAX_IMAGE_PIXELS:,} pixel limit.",
                "no_image",
            )
        return mime, int(width), int(height)
