"""Aliases: project aliases, flow aliases and the computed technical ones (API.md §1.2).

Resolution of ``@name`` with an optional flow context goes technical → flow alias →
project alias → 404 ``ALIAS_NOT_FOUND``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from banatie_local.clock import Clock
from banatie_local.constants import ALIAS_PATTERN, MAX_REFERENCE_IMAGES
from banatie_local.db.boundary import Database
from banatie_local.db.models import Flow, FlowAlias, Image
from banatie_local.errors import ApiError, NotFoundError, ValidationError
from banatie_local.services.validation import is_uuid

ALIAS_RE: Final = re.compile(ALIAS_PATTERN)
PROMPT_ALIAS_RE: Final = re.compile(r"(?:^|\s)(@[\w-]+)")
TECHNICAL: Final = ("@last", "@first", "@upload")


def check_alias(value: object, field: str = "alias") -> str:
    """A user-assignable alias, or 400 ``INVALID_ALIAS_FORMAT`` / ``RESERVED_ALIAS``."""
    if not isinstance(value, str) or not ALIAS_RE.fullmatch(value):
        raise ValidationError(
            f"{field} must look like @name: @ then 1-49 letters, digits, _ or -.",
            "INVALID_ALIAS_FORMAT",
            field=field,
        )
    if value in TECHNICAL:
        raise ValidationError(
            f"{value} is a reserved alias and cannot be assigned.", "RESERVED_ALIAS", field=field
        )
    return value


def alias_not_found(alias: str) -> NotFoundError:
    return NotFoundError(f"alias {alias} does not resolve to an image.", "ALIAS_NOT_FOUND")


def prompt_aliases(prompt: str) -> list[str]:
    """Every ``@name`` candidate in a prompt, in order (unchecked)."""
    return PROMPT_ALIAS_RE.findall(prompt)


@dataclass(frozen=True)
class Reference:
    image: Image
    alias: str | None


class AliasService:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    # ------------------------------------------------------------ resolution

    def resolve(self, project_id: str, alias: str, flow_id: str | None = None) -> Image:
        """The image ``alias`` names in this project, in the flow context if given."""
        if not ALIAS_RE.fullmatch(alias):
            raise ValidationError(
                f"{alias!r} is not an alias (@ then 1-49 letters, digits, _ or -).",
                "INVALID_ALIAS_FORMAT",
                field="alias",
            )
        if alias in TECHNICAL:
            return self._technical(project_id, alias, flow_id)
        image = None
        if flow_id is not None:
            image = (
                Image.select(Image)
                .join(FlowAlias, on=FlowAlias.image_id == Image.id)
                .join(Flow, on=Flow.id == FlowAlias.flow_id)
                .where(
                    (FlowAlias.flow_id == flow_id)
                    & (FlowAlias.alias_name == alias)
                    & (Flow.project_id == project_id)
                    & (Image.project_id == project_id)
                )
                .first()
            )
        if image is None:
            image = Image.get_or_none(
                (Image.project_id == project_id) & (Image.alias_name == alias)
            )
        if image is None:
            raise alias_not_found(alias)
        return image

    def _technical(self, project_id: str, alias: str, flow_id: str | None) -> Image:
        if flow_id is None:
            raise ValidationError(
                f"{alias} needs a flow: pass flowId.", "FLOW_CONTEXT_REQUIRED", field="flowId"
            )
        source = "uploaded" if alias == "@upload" else "generated"
        order = Image.created_at.asc() if alias == "@first" else Image.created_at.desc()
        image: Image | None = (
            Image.select()
            .where(
                (Image.project_id == project_id)
                & (Image.flow_id == flow_id)
                & (Image.source == source)
            )
            .order_by(order)
            .first()
        )
        if image is None:
            raise alias_not_found(alias)
        return image

    def resolve_ref(self, project_id: str, ref: str, flow_id: str | None = None) -> Image:
        """An image by id or ``@alias``; 404 ``IMAGE_NOT_FOUND`` for an unknown id."""
        if ref.startswith("@"):
            return self.resolve(project_id, ref, flow_id)
        image = None
        if is_uuid(ref):
            image = Image.get_or_none((Image.id == ref.lower()) & (Image.project_id == project_id))
        if image is None:
            raise NotFoundError(f"image {ref} does not exist.", "IMAGE_NOT_FOUND")
        return image

    def references(
        self, project_id: str, explicit: list[str], prompt: str, flow_id: str | None
    ) -> list[Reference]:
        """Reference images for a generation: explicit ones (each must resolve), then
        the prompt's aliases (skipped silently when they do not), de-duplicated by
        image id keeping the first; at most ``MAX_REFERENCE_IMAGES``."""
        found: list[Reference] = []
        for ref in explicit:
            try:
                image = self.resolve_ref(project_id, ref, flow_id)
            except NotFoundError as exc:
                raise ValidationError(
                    f"reference image {ref} was not found.",
                    "REFERENCE_NOT_FOUND",
                    field="referenceImages",
                ) from exc
            except ValidationError as exc:
                if exc.code == "FLOW_CONTEXT_REQUIRED":
                    raise
                raise ValidationError(
                    f"reference image {ref} was not found.",
                    "REFERENCE_NOT_FOUND",
                    field="referenceImages",
                ) from exc
            found.append(Reference(image, ref if ref.startswith("@") else None))
        for alias in prompt_aliases(prompt):
            try:
                found.append(Reference(self.resolve(project_id, alias, flow_id), alias))
            except ApiError:
                continue
        unique: list[Reference] = []
        seen: set[str] = set()
        for ref_ in found:
            if ref_.image.id not in seen:
                seen.add(ref_.image.id)
                unique.append(ref_)
        if len(unique) > MAX_REFERENCE_IMAGES:
            raise ValidationError(
                f"at most {MAX_REFERENCE_IMAGES} reference images are allowed; "
                f"{len(unique)} were given.",
                "TOO_MANY_REFERENCES",
                field="referenceImages",
            )
        return unique

    # ------------------------------------------------------------ assignment

    def assign_project_alias(self, image: Image, alias: str | None) -> list[str]:
        """Give ``image`` the project alias (moving it from any other image), or remove
        it with None. Returns the ids of every image whose alias changed."""
        changed = [image.id]
        with self.db.atomic():
            if alias is not None:
                holder = Image.get_or_none(
                    (Image.project_id == image.project_id)
                    & (Image.alias_name == alias)
                    & (Image.id != image.id)
                )
                if holder is not None:
                    Image.update(alias_name=None, updated_at=self.clock.now_us()).where(
                        Image.id == holder.id
                    ).execute()
                    changed.append(holder.id)
            image.alias_name = alias
            image.updated_at = self.clock.now_us()
            image.save()
        return changed

    def set_flow_alias(self, flow_id: str, alias: str, image_id: str) -> None:
        """Point ``alias`` in the flow's map at ``image_id`` (replacing any entry)."""
        FlowAlias.insert(
            flow_id=flow_id, alias_name=alias, image_id=image_id, created_at=self.clock.now_us()
        ).on_conflict(
            conflict_target=[FlowAlias.flow_id, FlowAlias.alias_name],
            preserve=[FlowAlias.image_id, FlowAlias.created_at],
        ).execute()
