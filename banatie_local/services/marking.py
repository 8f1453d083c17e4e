"""What a generated file says about its origin (API.md §14), written once at store time.

``Marker.mark`` splices the provenance XMP (and PNG text) into the output's bytes
(``services/provenance.py``: no pixel is re-encoded) and, when a certificate is
configured, signs a C2PA manifest into them (``services/c2pa_signing.py``, the
optional ``c2pa`` extra). It runs on a worker thread, before the bytes are hashed
and stored, so ``fileHash``/``fileSize`` describe what is served.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from banatie_local import __version__
from banatie_local.services.c2pa_signing import C2paError
from banatie_local.services.provenance import Provenance, mark

log = logging.getLogger(__name__)

CREATOR_TOOL = f"banatie-local {__version__}"
# Providers whose images are drawn by an algorithm without a trained model.
NOT_AI: frozenset[str] = frozenset({"offline"})


class ManifestSigner(Protocol):
    def sign(self, data: bytes, mime: str, *, ai_model: bool, generator: str, title: str) -> bytes:
        """``data`` with a signed C2PA manifest embedded."""
        ...


@dataclass(frozen=True)
class Origin:
    """The facts of one output, as the run knows them."""

    generation_id: str
    provider: str
    model: str
    prompt: str


@dataclass(frozen=True)
class Marker:
    embed_prompt: bool = True
    signer: ManifestSigner | None = None

    def mark(self, data: bytes, mime: str, origin: Origin, image_id: str) -> bytes:
        """``data`` marked as made by ``origin`` under ``image_id`` (CPU-bound: call it
        off the event loop). Bytes of a format we do not mark come back as they are."""
        ai_model = origin.provider not in NOT_AI
        facts = Provenance(
            ai_model=ai_model,
            creator_tool=CREATOR_TOOL,
            generation_id=origin.generation_id,
            image_id=image_id,
            provider=origin.provider,
            model=origin.model,
            prompt=origin.prompt if self.embed_prompt else None,
        )
        marked = mark(data, mime, facts)
        if self.signer is not None:  # last: the manifest covers the exact bytes
            title = f"{origin.provider}/{origin.model} image {image_id}"
            try:
                marked = self.signer.sign(
                    marked, mime, ai_model=ai_model, generator=CREATOR_TOOL, title=title
                )
            except C2paError as exc:  # e.g. the certificate expired since startup
                log.warning("image %s stored without a C2PA manifest: %s", image_id, exc)
        return marked
