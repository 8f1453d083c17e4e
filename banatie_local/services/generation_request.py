"""What a caller asks a generation for, and the checks of its fields (API.md §2),
shared by every path that starts one: the API, the live URL, regenerate and the CLI."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from banatie_local.constants import (
    ASPECT_RATIOS,
    DEFAULT_API_ASPECT_RATIO,
    DEFAULT_TEMPLATE,
    MAX_PROMPT_LENGTH,
    TEMPLATES,
)
from banatie_local.errors import ValidationError
from banatie_local.services.aliases import check_alias
from banatie_local.services.flows import ABSENT, FlowChoice, choose_flow

MAX_EXPLICIT_REFERENCES: Final = 20


@dataclass(frozen=True)
class GenerationRequest:
    """What a caller asks for; checked by ``GenerationService.create``."""

    prompt: str
    aspect_ratio: str = DEFAULT_API_ASPECT_RATIO
    reference_images: list[str] = field(default_factory=list)
    flow_id: Any = ABSENT
    alias: str | None = None
    flow_alias: str | None = None
    auto_enhance: bool = True
    template: str = DEFAULT_TEMPLATE
    meta: dict[str, Any] | None = None
    prompt_limit: int = MAX_PROMPT_LENGTH
    image_meta: dict[str, Any] | None = None  # meta of a newly made output image
    output_image_id: str | None = None  # write over this image (regenerate in place)
    # run in the write that adds a new output image, with (image id, MIME type)
    publish: Callable[[str, str], None] | None = None
    id: str | None = None  # the new generation's id, for a caller that names it first


def check_prompt(prompt: object, limit: int = MAX_PROMPT_LENGTH) -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValidationError("prompt is required and must be non-empty text.", field="prompt")
    text = prompt.strip()
    if len(text) > limit:
        raise ValidationError(f"prompt must be at most {limit} characters.", field="prompt")
    return text


def check_aspect_ratio(value: object, field_name: str = "aspectRatio") -> str:
    if not isinstance(value, str) or value not in ASPECT_RATIOS:
        raise ValidationError(
            f"{field_name} must be one of {', '.join(ASPECT_RATIOS)}.",
            "INVALID_ASPECT_RATIO",
            field=field_name,
        )
    return value


def check_template(value: object, field_name: str = "enhancementOptions.template") -> str:
    if not isinstance(value, str) or value not in TEMPLATES:
        raise ValidationError(
            f"{field_name} must be one of {', '.join(TEMPLATES)}.", field=field_name
        )
    return value


@dataclass(frozen=True)
class CheckedRequest:
    """A request's fields after every check, before anything is written."""

    values: dict[str, Any]  # the generation row's columns taken from the request
    choice: FlowChoice
    context: str | None  # the flow a reference ``@alias`` resolves in first


def check_request(request: GenerationRequest) -> CheckedRequest:
    """Check every field of ``request``; the first bad one raises."""
    prompt = check_prompt(request.prompt, request.prompt_limit)
    ratio = check_aspect_ratio(request.aspect_ratio)
    template = check_template(request.template)
    alias = check_alias(request.alias) if request.alias is not None else None
    flow_alias = (
        check_alias(request.flow_alias, "flowAlias") if request.flow_alias is not None else None
    )
    if len(request.reference_images) > MAX_EXPLICIT_REFERENCES:
        raise ValidationError(
            f"at most {MAX_EXPLICIT_REFERENCES} referenceImages entries are accepted.",
            "TOO_MANY_REFERENCES",
            field="referenceImages",
        )
    choice = choose_flow(request.flow_id, flow_alias)
    # Only a flow the caller named is a context; a newly announced one is empty.
    context = choice.flow_id if request.flow_id is not ABSENT else None
    values = {
        "prompt": prompt, "aspect_ratio": ratio, "enhancement_template": template,
        "output_alias": alias, "output_flow_alias": flow_alias,
    }  # fmt: skip
    return CheckedRequest(values, choice, context)
