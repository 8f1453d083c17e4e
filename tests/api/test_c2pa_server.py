"""A server with ``metadata.c2pa_certificate`` signs a C2PA manifest into every
generated image (API.md §14); c2pa-python's own reader validates it. A bad
certificate stops startup with one sentence."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from banatie_local.config import ConfigError
from tests.conftest import Running, on_fake_gemini

c2pa = pytest.importorskip("c2pa")
ec = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ec")

from tests.unit.test_c2pa_signing import _credentials, _source_types  # noqa: E402

TRAINED = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
ALGORITHMIC = "http://cv.iptc.org/newscodes/digitalsourcetype/algorithmicMedia"


def manifest_of(data: bytes, mime: str) -> tuple[dict[str, Any], str, dict[str, Any]]:
    with c2pa.Reader(mime, io.BytesIO(data)) as reader:
        results = reader.get_validation_results()["activeManifest"]
        return reader.get_active_manifest(), reader.get_validation_state(), results


def test_generated_images_carry_a_manifest_the_reader_validates(
    start_server: Callable[..., Running], tmp_path: Path, fake_gemini: Any
) -> None:
    creds = _credentials(tmp_path / "c2pa", ec.generate_private_key(ec.SECP256R1()))
    signing = {
        "metadata__c2pa_certificate": creds.certificate,
        "metadata__c2pa_private_key": creds.private_key,
    }
    # one after the other: the database models serve one database per process
    for extra, source in (({}, ALGORITHMIC), (on_fake_gemini(fake_gemini), TRAINED)):
        app = start_server(**signing, **extra)
        made = app.project("POST", "/api/v1/generations", json={"prompt": "a harbour at dawn"})
        assert made.status_code == 201, made.text
        generation = made.json()["data"]
        image = app.project("GET", f"/api/v1/images/{generation['outputImageId']}").json()["data"]
        data = app.client.get(f"/cdn/default/default/img/{image['id']}").content
        manifest, state, results = manifest_of(data, image["mimeType"])
        # integrity holds; only the test CA's trust is unknown to the reader
        assert state == "Valid", results
        failures = {entry["code"] for entry in results.get("failure", [])}
        assert failures <= {"signingCredential.untrusted"}, failures
        assert "banatie-local" in str(manifest["claim_generator_info"])
        assert ("c2pa.created", source) in _source_types(manifest)
        assert len(data) == image["fileSize"]  # the stored bytes, manifest included
        app.stop()


def test_a_mismatched_key_stops_startup(
    start_server: Callable[..., Running], tmp_path: Path
) -> None:
    one = _credentials(tmp_path / "one", ec.generate_private_key(ec.SECP256R1()))
    other = _credentials(tmp_path / "other", ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(ConfigError, match="c2pa"):
        start_server(
            metadata__c2pa_certificate=one.certificate,
            metadata__c2pa_private_key=other.private_key,
        )
