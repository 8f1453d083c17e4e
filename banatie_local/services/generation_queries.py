"""Reading generations: by id, within a project, and a filtered page with its total.
Plain synchronous queries, run inside ``db.read``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from banatie_local.db.models import FlowCount, Generation, GenerationReference, Image, ProjectCount
from banatie_local.errors import NotFoundError
from banatie_local.services.context import Context
from banatie_local.services.validation import is_uuid

STATUSES: Final = ("pending", "processing", "success", "failed")


@dataclass(frozen=True)
class GenerationView:
    """A generation with its references in order and the images it names."""

    generation: Generation
    references: list[GenerationReference]
    images: dict[str, Image]


def load_views(generations: list[Generation]) -> list[GenerationView]:
    """Views of ``generations``, their relations loaded in two more queries."""
    ids = [g.id for g in generations]
    references: dict[str, list[GenerationReference]] = {gid: [] for gid in ids}
    for ref in (
        GenerationReference.select()
        .where(GenerationReference.generation_id.in_(ids))
        .order_by(GenerationReference.position)
    ):
        references[ref.generation_id].append(ref)
    wanted = {g.output_image_id for g in generations if g.output_image_id}
    wanted |= {r.image_id for refs in references.values() for r in refs}
    images = {img.id: img for img in Image.select().where(Image.id.in_(list(wanted)))}
    return [GenerationView(g, references[g.id], images) for g in generations]


@dataclass(frozen=True)
class GenerationFilters:
    flow_id: str | None = None
    status: str | None = None


def find(generation_id: str | None) -> Generation | None:
    if generation_id is None:
        return None
    generation: Generation | None = Generation.get_or_none(Generation.id == generation_id)
    return generation


def get_by_id(generation_id: str) -> Generation:
    generation: Generation = Generation.get_by_id(generation_id)
    return generation


def get(ctx: Context, generation_id: str) -> Generation:
    """A generation of this project; 404 ``GENERATION_NOT_FOUND`` otherwise."""
    generation = None
    if is_uuid(generation_id):
        generation = Generation.get_or_none(
            (Generation.id == generation_id.lower()) & (Generation.project_id == ctx.project_id)
        )
    if generation is None:
        raise NotFoundError(f"generation {generation_id} does not exist.", "GENERATION_NOT_FOUND")
    return generation


def list_page(
    ctx: Context, filters: GenerationFilters, limit: int, offset: int
) -> tuple[list[Generation], int]:
    query = Generation.select().where(Generation.project_id == ctx.project_id)
    if filters.flow_id is not None:
        query = query.where(Generation.flow_id == filters.flow_id)
    if filters.status is not None:
        query = query.where(Generation.status == filters.status)
    total = _total(ctx.project_id, filters, query)
    rows = list(query.order_by(Generation.created_at.desc()).limit(limit).offset(offset))
    return rows, total


def _total(project_id: str, filters: GenerationFilters, query: Any) -> int:
    """The count ``list_page`` reports, from the trigger-kept counts where one answers
    the filters; else counted over the flow's index range."""
    if filters.flow_id is None:
        statuses = STATUSES if filters.status is None else (filters.status,)
        return ProjectCount.total(project_id, [f"generations/{s}" for s in statuses])
    if filters.status is None:
        counts = FlowCount.of(project_id, filters.flow_id)
        if counts is not None:
            return int(counts.generations)
    count: int = query.count()
    return count
