"""The base of every shape, and the field types the shapes share (limits and formats
from ``constants.py``, error codes as ``x-error-code``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

from banatie_local.constants import (
    ALIAS_PATTERN,
    ASPECT_RATIOS,
    MAX_ID_LENGTH,
    MAX_SCOPE_GENERATIONS_LIMIT,
    SCOPE_PATTERN,
    SLUG_PATTERN,
    TEMPLATES,
)

JSON = dict[str, Any]
S = TypeVar("S", bound="Shape")


def _code(code: str, **schema: Any) -> Any:
    """Schema extras for a field: the error code its refusals carry, and more."""
    return {"x-error-code": code, **schema}


Alias = Annotated[
    str,
    StringConstraints(pattern=ALIAS_PATTERN, max_length=50),
    Field(json_schema_extra=_code("INVALID_ALIAS_FORMAT")),
]
ScopeSlug = Annotated[
    str,
    StringConstraints(pattern=SCOPE_PATTERN, max_length=64),
    Field(json_schema_extra=_code("SCOPE_INVALID_FORMAT")),
]
Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN, max_length=63)]
Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH)]
Uuid = Annotated[str, StringConstraints(max_length=36), Field(json_schema_extra={"format": "uuid"})]
Meta = dict[str, Any]
Time = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
if TYPE_CHECKING:  # the values come from constants.py; to the type checker, text
    AspectRatio = str
    Template = str
else:
    AspectRatio = Literal[tuple(ASPECT_RATIOS)]
    Template = Literal[TEMPLATES]
Limit = Annotated[int, Field(ge=0, le=MAX_SCOPE_GENERATIONS_LIMIT)]


class Shape(BaseModel):
    """camelCase on the wire; JSON types exactly (no "5" for 5); unknown fields ignored."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, strict=True, frozen=True
    )

    def given(self, name: str) -> bool:
        """Whether the client sent the field ``name`` (attribute name; ``null`` counts)."""
        if name not in type(self).model_fields:
            raise KeyError(name)
        return name in self.model_fields_set
