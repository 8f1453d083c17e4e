"""What a service call knows about its caller."""

from __future__ import annotations

from dataclasses import dataclass

from banatie_local.db.models import ApiKey, Organization, Project


@dataclass(frozen=True)
class Context:
    """The project a request acts on, and the key that authorised it (if any)."""

    organization: Organization
    project: Project
    api_key: ApiKey | None = None

    @property
    def project_id(self) -> str:
        return str(self.project.id)
