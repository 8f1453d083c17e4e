"""The pre-v1 routes' work (API.md §10), done by the ordinary services.

A legacy generation is an ordinary generation (``GenerationService.create``) whose
reference files are first stored as ordinary uploads; a legacy upload is an ordinary
upload. Each also publishes its image under a file name (``services/published.py``),
in the same write that adds the image, and records ``meta.legacy`` (the route) and
``meta.filename`` (the name asked for).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Final

from banatie_local.clock import Clock
from banatie_local.constants import MAX_LEGACY_REFERENCES
from banatie_local.db.boundary import Database
from banatie_local.db.models import Generation, Image
from banatie_local.errors import GenerationFailedError, ValidationError
from banatie_local.services.context import Context
from banatie_local.services.generations import (
    GenerationRequest,
    GenerationService,
    check_aspect_ratio,
    check_prompt,
    check_template,
)
from banatie_local.services.images import ImageService, Upload
from banatie_local.services.published import PublishedNames, sanitise, with_extension
from banatie_local.services.validation import new_id

GENERATE: Final = "/api/generate"
TEXT_TO_IMAGE: Final = "/api/text-to-image"
UPLOAD: Final = "/api/upload"


@dataclass(frozen=True)
class LegacyGeneration:
    route: str  # GENERATE or TEXT_TO_IMAGE, recorded as meta.legacy
    prompt: str
    filename: str | None  # None: image-<first 8 characters of the generation id>
    aspect_ratio: str
    auto_enhance: bool
    template: str
    files: list[tuple[bytes, str | None]] = field(default_factory=list)  # (data, own name)


@dataclass(frozen=True)
class Published:
    """An image and the name it was published under."""

    image: Image
    filename: str
    generation: Generation | None = None


@dataclass(frozen=True)
class Enhancement:
    original: str
    enhanced: str
    template: str
    provider: str


@dataclass
class LegacyService:
    db: Database
    clock: Clock
    images: ImageService
    generations: GenerationService
    names: PublishedNames

    async def generate(self, ctx: Context, request: LegacyGeneration) -> Published:
        """Store the reference files as uploads, generate, publish ``generated/<name>``.
        Every field and every file is checked before anything is stored. A failed
        generation stays recorded and raises 502 ``GENERATION_FAILED``."""
        prompt = check_prompt(request.prompt)
        ratio = check_aspect_ratio(request.aspect_ratio)
        template = check_template(request.template)
        if len(request.files) > MAX_LEGACY_REFERENCES:
            raise ValidationError(
                f"files accepts at most {MAX_LEGACY_REFERENCES} reference images.",
                "TOO_MANY_REFERENCES",
                field="files",
            )
        checked = [
            await self.images.check_upload(
                Upload(data, meta={"legacy": request.route, "filename": sanitise(name or "")})
            )
            for data, name in request.files
        ]
        references = [str((await self.images.store_upload(ctx, c)).id) for c in checked]
        generation_id = new_id()
        filename = request.filename or f"image-{generation_id[:8]}"
        generation = await self.generations.create(
            ctx,
            GenerationRequest(
                prompt=prompt,
                aspect_ratio=ratio,
                reference_images=references,
                auto_enhance=request.auto_enhance,
                template=template,
                meta={"legacy": request.route, "filename": filename},
                publish=self.names.publisher(
                    ctx.project_id, "generated", filename, self.clock.now_us
                ),
                id=generation_id,
            ),
        )
        if generation.status != "success" or not generation.output_image_id:
            raise GenerationFailedError(
                f"the generation failed: {generation.error_message or 'no image was made'}",
                details={"generationId": generation.id},
            )
        image: Image = await self.db.read(Image.get_by_id, generation.output_image_id)
        return Published(image, with_extension(filename, image.mime_type), generation)

    async def upload(
        self, ctx: Context, data: bytes, filename: str | None, own: str | None
    ) -> Published:
        """Store an upload and publish it as ``uploads/<name>``: ``filename``, else the
        file's own name made safe."""
        requested = filename or sanitise(own or "")
        checked = await self.images.check_upload(
            Upload(data, meta={"legacy": UPLOAD, "filename": requested})
        )
        name = with_extension(requested, checked.facts.mime_type)

        def publish(image: Image) -> None:
            self.names.publish(ctx.project_id, "uploads", name, image.id, self.clock.now_us())

        image = await self.images.store_upload(ctx, replace(checked, after=publish))
        return Published(image, name)

    async def enhance(self, prompt: str, template: str) -> Enhancement:
        """The prompt as a generation would enhance it; nothing is stored. A provider
        that fails answers 502 ``GENERATION_FAILED``."""
        text, template = check_prompt(prompt), check_template(template)
        enhanced, _, error = await self.generations.enhance(text, template)
        if error is not None:
            raise GenerationFailedError(f"the prompt could not be enhanced: {error}")
        return Enhancement(text, enhanced, template, self.generations.provider.name)
