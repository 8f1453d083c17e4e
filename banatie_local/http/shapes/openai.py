"""The OpenAI Images API's shapes (API.md §11): snake_case, as OpenAI names them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StringConstraints

from banatie_local.constants import MAX_PROMPT_LENGTH
from banatie_local.http.shapes.base import Shape

Prompt = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_PROMPT_LENGTH)
]
Word = Annotated[str, StringConstraints(max_length=256)]
Binary = Annotated[bytes, Field(json_schema_extra={"format": "binary"})]
N = Annotated[int, Field(ge=1, le=4)]
Compression = Annotated[int, Field(ge=0, le=100)]
Size = Annotated[
    str,
    StringConstraints(max_length=16),
    Field(description='"auto" or WIDTHxHEIGHT: sides 256..2048, within 2% of a supported ratio'),
]


class OpenAiShape(Shape):
    """Field names as OpenAI spells them; unknown fields ignored."""

    model_config = ConfigDict(alias_generator=None, populate_by_name=True, strict=True, frozen=True)


class _Common(OpenAiShape):
    model: Word | None = None
    n: N | None = None
    size: Size | None = None
    response_format: Literal["url", "b64_json"] | None = None
    user: Word | None = None


class OpenAiGenerate(_Common):
    """``quality``, ``style``, ``background`` and ``moderation`` are recorded and
    have no effect; ``stream`` is refused."""

    prompt: Prompt
    output_format: Literal["png", "jpeg", "webp"] | None = None
    output_compression: Compression | None = None
    quality: Word | None = None
    style: Word | None = None
    background: Word | None = None
    moderation: Word | None = None
    stream: Literal[False] | None = None


class OpenAiEdit(_Common):
    """A multipart form: ``image`` is one file, or up to 3 as ``image[]``."""

    image: Annotated[
        list[Binary],
        Field(
            min_length=1, max_length=3, json_schema_extra={"x-error-code": "TOO_MANY_REFERENCES"}
        ),
    ]
    prompt: Prompt
    mask: Binary | None = None
    output_format: Literal["png", "jpeg", "webp"] | None = None
    output_compression: Compression | None = None
    quality: Word | None = None
    background: Word | None = None


class OpenAiVariation(_Common):
    """A multipart form with one ``image``."""

    image: Binary


# ------------------------------------------------------------------ responses


class OpenAiImage(OpenAiShape):
    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str
    generation_id: str
    image_id: str


class OpenAiImages(OpenAiShape):
    created: int
    data: list[OpenAiImage]
    size: str
    output_format: Literal["png", "jpeg", "webp"]
    quality: str
    background: Literal["opaque"]


class OpenAiModel(OpenAiShape):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class OpenAiModelList(OpenAiShape):
    object: Literal["list"]
    data: list[OpenAiModel]


class OpenAiErrorBody(OpenAiShape):
    message: str
    type: Literal[
        "invalid_request_error", "authentication_error", "permission_error",
        "rate_limit_error", "server_error",
    ]  # fmt: skip
    param: str | None
    code: str


class OpenAiError(OpenAiShape):
    error: OpenAiErrorBody


def forms(values: dict[str, Any]) -> dict[str, Any]:
    """Form text as the JSON types the shapes take: ``n`` and ``output_compression``
    as whole numbers when they are digits (else left as text, to be refused)."""
    out = dict(values)
    for name in ("n", "output_compression"):
        text = out.get(name)
        if isinstance(text, str) and text.strip().isdigit() and len(text.strip()) < 10:
            out[name] = int(text)
    return out
