"""Flow rows and the flowId rules every creating route follows (API.md §2).

A flow id can be announced before its row exists: generations and images carry the
id, and the row appears later (lazily) or at once (eagerly). Because membership is
the ``flow_id`` column itself, a late row adopts everything that already carries
its id, with no data to move.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from peewee import JOIN, SQL, fn

from banatie_local.clock import Clock
from banatie_local.constants import MAX_ALIASES_PER_REQUEST
from banatie_local.db.boundary import Database
from banatie_local.db.models import Flow, FlowAlias, FlowCount, Generation, Image, ProjectCount
from banatie_local.errors import NotFoundError, ValidationError
from banatie_local.services.aliases import AliasService, alias_not_found, check_alias
from banatie_local.services.cascade import Cascade
from banatie_local.services.validation import is_uuid, new_id

ABSENT: Any = object()


@dataclass(frozen=True)
class FlowChoice:
    """What a request said about its flow: the id to record, and whether its row
    must exist now."""

    flow_id: str | None
    create_now: bool


def choose_flow(raw: Any, flow_alias: str | None = None, field: str = "flowId") -> FlowChoice:
    """Apply the flowId rules: absent → a new id (row later), null → no flow,
    a UUID → that flow, row now. A ``flowAlias`` needs a flow, and makes its row now."""
    if raw is ABSENT:
        return FlowChoice(new_id(), create_now=flow_alias is not None)
    if raw is None:
        if flow_alias is not None:
            raise ValidationError("flowAlias needs a flow; flowId is null.", field="flowAlias")
        return FlowChoice(None, create_now=False)
    if not isinstance(raw, str) or not is_uuid(raw):
        raise ValidationError(f"{field} must be a UUID or null.", field=field)
    return FlowChoice(raw.lower(), create_now=True)


def flow_not_found(flow_id: str) -> NotFoundError:
    return NotFoundError(f"flow {flow_id} does not exist.", "FLOW_NOT_FOUND")


@dataclass(frozen=True)
class FlowView:
    """A flow with its alias map and SQL-counted members."""

    flow: Flow
    aliases: dict[str, str]
    generation_count: int
    image_count: int


class FlowService:
    def __init__(self, db: Database, clock: Clock, aliases: AliasService, cascade: Cascade) -> None:
        self.db = db
        self.clock = clock
        self.alias_service = aliases
        self.cascade = cascade

    def find(self, project_id: str, flow_id: str) -> Flow | None:
        """The flow row in this project, or None (another project's flow is None too)."""
        if not is_uuid(flow_id):
            return None
        return Flow.get_or_none((Flow.id == flow_id) & (Flow.project_id == project_id))

    def ensure(self, project_id: str, flow_id: str) -> Flow:
        """The flow row, created if missing. A flow id that belongs to another project
        cannot be reused here, and answers like an unknown flow."""
        with self.db.atomic():
            row = Flow.get_or_none(Flow.id == flow_id)
            if row is not None:
                if row.project_id != project_id:
                    raise flow_not_found(flow_id)
                return row
            if self._announced_elsewhere(project_id, flow_id):
                raise flow_not_found(flow_id)
            now = self.clock.now_us()
            return Flow.create(
                id=flow_id, project_id=project_id, meta={}, created_at=now, updated_at=now
            )

    @staticmethod
    def _announced_elsewhere(project_id: str, flow_id: str) -> bool:
        """Whether another project's generations or images already carry this id."""
        return bool(
            Generation.select()
            .where((Generation.flow_id == flow_id) & (Generation.project_id != project_id))
            .exists()
            or Image.select()
            .where((Image.flow_id == flow_id) & (Image.project_id != project_id))
            .exists()
        )

    def apply(self, project_id: str, choice: FlowChoice) -> None:
        """Create the flow row now when the choice says so."""
        if choice.flow_id is not None and choice.create_now:
            self.ensure(project_id, choice.flow_id)

    # ------------------------------------------------------------- the resource

    def create(
        self, project_id: str, meta: dict[str, Any] | None, aliases: dict[str, Any] | None
    ) -> FlowView:
        """A new flow, optionally with aliases (validated like ``set_aliases``)."""
        with self.db.atomic():
            flow = self.ensure(project_id, new_id())
            if meta:
                flow.meta = meta
                flow.save()
            if aliases:
                self.set_aliases(flow, aliases)
        return self.view(flow)

    def get(self, project_id: str, flow_id: str) -> Flow:
        """The flow row; 404 ``FLOW_NOT_FOUND`` (also for an id announced but not created)."""
        flow = self.find(project_id, flow_id.lower()) if is_uuid(flow_id) else None
        if flow is None:
            raise flow_not_found(flow_id)
        return flow

    def _counted(self, project_id: str) -> Any:
        """Flows with their member counts, read from ``flow_counts`` (kept by triggers;
        counted over the flow's index range should a row ever lack its counts)."""
        generations = Generation.select(fn.COUNT(SQL("*"))).where(
            (Generation.project_id == Flow.project_id) & (Generation.flow_id == Flow.id)
        )
        images = Image.select(fn.COUNT(SQL("*"))).where(
            (Image.project_id == Flow.project_id) & (Image.flow_id == Flow.id)
        )
        return (
            Flow.select(
                Flow,
                fn.COALESCE(FlowCount.generations, generations).alias("generation_count"),
                fn.COALESCE(FlowCount.images, images).alias("image_count"),
            )
            .join(FlowCount, JOIN.LEFT_OUTER, on=(FlowCount.flow_id == Flow.id))
            .where(Flow.project_id == project_id)
            .objects()
        )

    def _views(self, rows: list[Flow]) -> list[FlowView]:
        maps: dict[str, dict[str, str]] = {row.id: {} for row in rows}
        entries = FlowAlias.select().where(FlowAlias.flow_id.in_(list(maps)))
        for entry in entries.order_by(FlowAlias.alias_name):
            maps[entry.flow_id][entry.alias_name] = entry.image_id
        return [
            FlowView(row, maps[row.id], int(row.generation_count), int(row.image_count))
            for row in rows
        ]

    def view(self, flow: Flow) -> FlowView:
        row = self._counted(flow.project_id).where(Flow.id == flow.id).get()
        return self._views([row])[0]

    def list_page(self, project_id: str, limit: int, offset: int) -> tuple[list[FlowView], int]:
        """Flows newest first with counts and alias maps: three queries for any page."""
        total = ProjectCount.total(project_id, ["flows"])
        rows = list(
            self._counted(project_id).order_by(Flow.created_at.desc()).limit(limit).offset(offset)
        )
        return self._views(rows), total

    # ---------------------------------------------------------------- aliases

    def set_aliases(self, flow: Flow, aliases: dict[str, Any]) -> None:
        """Merge ``{"@name": imageIdOrProjectAlias}`` into the flow's map; each alias is
        checked and each image must exist in the project."""
        if len(aliases) > MAX_ALIASES_PER_REQUEST:
            raise ValidationError(
                f"at most {MAX_ALIASES_PER_REQUEST} aliases per request.", field="aliases"
            )
        resolved = {}
        for alias, ref in aliases.items():
            check_alias(alias, "aliases")
            if not isinstance(ref, str):
                raise ValidationError(f"aliases[{alias}] must be an image id.", field="aliases")
            resolved[alias] = self.alias_service.resolve_ref(flow.project_id, ref).id
        with self.db.atomic():
            for alias, image_id in resolved.items():
                self.alias_service.set_flow_alias(flow.id, alias, image_id)
            self._touch(flow)

    def remove_alias(self, flow: Flow, alias: str) -> None:
        """Drop one entry of the map; 404 ``ALIAS_NOT_FOUND`` if it is not there."""
        removed = (
            FlowAlias.delete()
            .where((FlowAlias.flow_id == flow.id) & (FlowAlias.alias_name == alias))
            .execute()
        )
        if not removed:
            raise alias_not_found(alias)
        self._touch(flow)

    def _touch(self, flow: Flow) -> None:
        flow.updated_at = self.clock.now_us()
        flow.save()

    # ------------------------------------------------------------ members, delete

    def newest_generation(self, flow: Flow) -> Generation:
        """The flow's newest generation; 400 ``FLOW_HAS_NO_GENERATIONS`` if none."""
        generation: Generation | None = (
            Generation.select()
            .where((Generation.project_id == flow.project_id) & (Generation.flow_id == flow.id))
            .order_by(Generation.created_at.desc())
            .first()
        )
        if generation is None:
            raise ValidationError(
                f"flow {flow.id} has no generations to regenerate.", "FLOW_HAS_NO_GENERATIONS"
            )
        return generation

    async def delete(self, flow: Flow) -> None:
        """Delete the flow with the cascade of API.md §4."""
        await self.cascade.delete_flow(flow)
