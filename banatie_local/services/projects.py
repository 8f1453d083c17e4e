"""Organizations and projects, and the project's live settings."""

from __future__ import annotations

from dataclasses import dataclass

from banatie_local.clock import Clock
from banatie_local.constants import MAX_SCOPE_GENERATIONS_LIMIT
from banatie_local.db.boundary import Database
from banatie_local.db.models import Organization, Project
from banatie_local.errors import ConflictError, NotFoundError, ValidationError
from banatie_local.services.validation import check_slug, new_id

DEFAULT_SLUG = "default"


@dataclass(frozen=True)
class ProjectRef:
    organization: Organization
    project: Project


def parse_project_path(path: str) -> tuple[str, str]:
    """``ORG/PROJECT`` into two checked slugs."""
    org, sep, project = path.partition("/")
    if not sep:
        raise ValidationError("a project is named ORG/PROJECT, for example default/default.")
    return check_slug(org, "organization"), check_slug(project, "project")


class ProjectService:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    def find(self, org_slug: str, project_slug: str) -> ProjectRef | None:
        """The project with these slugs, or None."""
        row = (
            Project.select(Project, Organization)
            .join(Organization)
            .where((Organization.slug == org_slug) & (Project.slug == project_slug))
            .first()
        )
        return ProjectRef(row.organization, row) if row else None

    def get(self, org_slug: str, project_slug: str) -> ProjectRef:
        """The project with these slugs, or 404 ``PROJECT_NOT_FOUND``."""
        ref = self.find(org_slug, project_slug)
        if ref is None:
            raise NotFoundError(
                f"project {org_slug}/{project_slug} does not exist.", "PROJECT_NOT_FOUND"
            )
        return ref

    def ensure(self, org_slug: str, project_slug: str) -> ProjectRef:
        """The project with these slugs, created (with its organization) if missing."""
        check_slug(org_slug, "organizationSlug")
        check_slug(project_slug, "projectSlug")
        with self.db.atomic():
            ref = self.find(org_slug, project_slug)
            if ref:
                return ref
            now = self.clock.now_us()
            org = Organization.get_or_none(Organization.slug == org_slug)
            if org is None:
                org = Organization.create(
                    id=new_id(), slug=org_slug, name=org_slug, created_at=now, updated_at=now
                )
            project = Project.create(
                id=new_id(),
                organization=org,
                slug=project_slug,
                name=project_slug,
                created_at=now,
                updated_at=now,
            )
            return ProjectRef(org, project)

    def create(self, org_slug: str, project_slug: str) -> ProjectRef:
        """A new project; 409 if it exists already."""
        if self.find(org_slug, project_slug):
            raise ConflictError(
                f"project {org_slug}/{project_slug} already exists.", "PROJECT_ALREADY_EXISTS"
            )
        return self.ensure(org_slug, project_slug)

    def list(self) -> list[ProjectRef]:
        """Every project, newest first."""
        rows = (
            Project.select(Project, Organization)
            .join(Organization)
            .order_by(Project.created_at.desc())
        )
        return [ProjectRef(row.organization, row) for row in rows]

    def update_settings(
        self,
        project: Project,
        allow_new_live_scopes: bool | None = None,
        new_live_scopes_generation_limit: int | None = None,
    ) -> Project:
        """Change the project's live settings; None leaves a setting as it is."""
        if new_live_scopes_generation_limit is not None and not (
            0 <= new_live_scopes_generation_limit <= MAX_SCOPE_GENERATIONS_LIMIT
        ):
            raise ValidationError(
                "newLiveScopesGenerationLimit must be a whole number from 0 to "
                f"{MAX_SCOPE_GENERATIONS_LIMIT}.",
                field="newLiveScopesGenerationLimit",
            )
        if allow_new_live_scopes is not None:
            project.allow_new_live_scopes = allow_new_live_scopes
        if new_live_scopes_generation_limit is not None:
            project.new_live_scopes_generation_limit = new_live_scopes_generation_limit
        project.updated_at = self.clock.now_us()
        project.save()
        return project
