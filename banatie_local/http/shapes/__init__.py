"""Every request and response shape of the API, declared once.

Each shape is a pydantic model. The same declaration:

- decodes a request body (``decode``): types, lengths, ranges and formats are checked
  against the limits of ``constants.py``, and a refusal names the field, the limit and
  the contract's error code for that field (``x-error-code``);
- gives the OpenAPI 3.1 schema (``component_schemas``), so the document states exactly
  what the runtime accepts (``tests/contract/test_shapes.py`` proves it limit by limit).

Response shapes are what the presenters in ``http/`` produce; schemathesis checks
every answer against their schemas.

pydantic comes with ``google-genai`` (the Gemini provider), so it adds nothing to the
single-file binary; see docs/architecture.md.
"""

from banatie_local.http.shapes.base import Shape
from banatie_local.http.shapes.decoding import (
    REQUESTS,
    RESPONSES,
    component_schemas,
    decode,
    refusal,
    validate,
)
from banatie_local.http.shapes.requests import (
    CreateFlow,
    CreateGeneration,
    CreateKey,
    CreateScope,
    EnhancementOptions,
    FocalPoint,
    LegacyEnhance,
    LegacyGenerate,
    LegacyTextToImage,
    LegacyUpload,
    RegenerateScope,
    SetAlias,
    SetFlowAliases,
    SignUrl,
    UpdateGeneration,
    UpdateImage,
    UpdateProject,
    UpdateScope,
    Upload,
)

__all__ = [
    "REQUESTS", "RESPONSES", "CreateFlow", "CreateGeneration", "CreateKey", "CreateScope",
    "EnhancementOptions", "FocalPoint", "LegacyEnhance", "LegacyGenerate", "LegacyTextToImage",
    "LegacyUpload", "RegenerateScope", "SetAlias", "SetFlowAliases", "Shape",
    "SignUrl", "UpdateGeneration", "UpdateImage", "UpdateProject", "UpdateScope", "Upload",
    "component_schemas", "decode", "refusal", "validate",
]  # fmt: skip
