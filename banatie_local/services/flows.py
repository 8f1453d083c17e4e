"""Flow rows and the flowId rules every creating route follows (API.md §2).

A flow id can be announced before its row exists: generations and images carry the
id, and the row appears later (lazily) or at once (eagerly). Because membership is
the ``flow_id`` column itself, a late row adopts everything that already carries
its id, with no data to move.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from peewee import SqliteDatabase

from banatie_local.clock import Clock
from banatie_local.db.models import Flow, Generation, Image
from banatie_local.errors import NotFoundError, ValidationError
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
            raise ValidationError("flowAlias needs a flow; flowId is null.", "flowAlias")
        return FlowChoice(None, create_now=False)
    if not isinstance(raw, str) or not is_uuid(raw):
        raise ValidationError(f"{field} must be a UUID or null.", field)
    return FlowChoice(raw.lower(), create_now=True)


def flow_not_found(flow_id: str) -> NotFoundError:
    return NotFoundError(f"flow {flow_id} does not exist.", "FLOW_NOT_FOUND")


class FlowService:
    def __init__(self, db: SqliteDatabase, clock: Clock) -> None:
        self.db = db
        self.clock = clock

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
