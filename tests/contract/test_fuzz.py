"""Schemathesis against the running server, from its own OpenAPI document: every
operation, generated inputs, a project key (and the master key on /api/admin).
No response may be a 5xx, and every response must match its documented status,
content type and schema."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from banatie_local.providers import GeneratedImage, ReferenceImage
from banatie_local.providers.offline import render
from tests.conftest import Running

_PNG = render("fuzz", 64, 64, [])


class InstantProvider:
    """Answers at once, so the fuzzer spends its time on the API, not on drawing."""

    name = "instant"

    async def generate(
        self, prompt: str, aspect_ratio: str, references: list[ReferenceImage]
    ) -> GeneratedImage:
        return GeneratedImage(_PNG, "image/png", 64, 64, "instant")

    async def enhance(self, prompt: str, template: str) -> str:
        return prompt


FUZZ_SETTINGS = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.mark.slow
def test_api_never_fails_and_matches_its_document(
    start_server: Callable[..., Running],
) -> None:
    """Every operation of the document, each with its own generated cases."""
    running = start_server(provider=InstantProvider(), limits__requests_per_hour=0)
    schema = schemathesis.openapi.from_url(f"{running.url}/api/v1/openapi.json")
    schema.config.update(base_url=running.url)
    operations = [result.ok() for result in schema.get_all_operations()]
    document = running.client.get("/api/v1/openapi.json").json()
    # every operation, except the document's own route, which schemathesis leaves out
    expected = {
        f"{method.upper()} {path}"
        for path, ops in document["paths"].items()
        for method in ops
        if path != "/api/v1/openapi.json"
    }
    assert {f"{op.method.upper()} {op.path}" for op in operations} == expected
    failures: list[str] = []
    for operation in operations:
        key = running.master_key if operation.path.startswith("/api/admin") else running.project_key
        try:
            exercise(operation, key or "")
        except Exception as exc:  # collect every operation's failure, then report all
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert not failures, "\n\n".join(failures)


def exercise(operation: Any, key: str) -> None:
    """Run generated cases of one operation through the checks."""

    @FUZZ_SETTINGS
    @given(case=operation.as_strategy())
    def run(case: Any) -> None:
        case.call_and_validate(headers={"X-API-Key": key}, checks=CHECKS)

    run()
