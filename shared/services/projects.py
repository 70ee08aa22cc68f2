"""Projects and their membership (dm-api §2.1, §3.12)."""

from __future__ import annotations

import re
from collections import defaultdict
from typing import TYPE_CHECKING

from sqlalchemy import delete, exists, or_, select, update

from shared.db.base import iso, new_id, utcnow
from shared.db.models import Project, ProjectMember
from shared.db.models.project import ROLES
from shared.errors import BadRequest, Forbidden, NotFound
from shared.services import counters, tasks, users
from shared.storage import paths

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.account_server.base import ProductGrant
    from shared.auth.verify import Principal

PROJECT_ID = re.compile(r"project-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# What each action needs: any of these roles.
READ, WRITE, MANAGE = ("administrator", "editor", "observer"), ("administrator", "editor"), ("administrator",)


def check_name(name: str | None) -> str:
    name = (name or "").strip()
    if not 2 <= len(name) <= 80:
        raise BadRequest("A project name must be 2 to 80 characters long")
    if paths.has_control(name):
        raise BadRequest("A project name must not contain control characters")
    return name


def create(s: "Session", principal: "Principal", *, name: str, private: bool, grant: "ProductGrant") -> Project:
    """A new Project; the creator becomes its administrator and editor."""
    if private and grant.flavour == "EVALUATION":
        raise BadRequest("Projects on an EVALUATION product are always public")
    if s.scalar(select(exists().where(Project.unit_id == grant.unit_id, Project.name_key == name))):
        raise BadRequest(f"A project named '{name}' already exists in this unit")
    project = Project(
        id=new_id("project"), name=name, name_key=name, creator=principal.username, created=utcnow(),
        private=private, product_id=grant.product_id, product_flavour=grant.flavour,
        unit_id=grant.unit_id, organisation_id=grant.organisation_id, size=0,
    )
    s.add(project)
    s.flush()
    s.add_all([ProjectMember(project_id=project.id, username=principal.username, role=r)
               for r in ("administrator", "editor")])
    counters.bump(s, counters.PROJECTS)
    return project


def _live(project_id: str):
    return select(Project).where(Project.id == project_id, Project.deleted.is_(None))


def load(s: "Session", principal: "Principal", project_id: str, need: tuple[str, ...] = READ, *,
         admin_view: bool = True) -> Project:
    """The Project if the caller may do what ``need`` says.

    A private Project the caller cannot read is reported missing, never forbidden,
    so its existence does not leak. Admin mode reads every Project (dm-api §1.2);
    ``admin_view=False`` for the calls that are not reads but use what they read.
    """
    if not PROJECT_ID.fullmatch(project_id or ""):
        raise NotFound(f"Project {project_id[:80]} does not exist" if project_id else "No project_id given")
    project = s.scalar(_live(project_id))
    if project is None:
        raise NotFound(f"Project {project_id} does not exist")
    roles = set(s.scalars(select(ProjectMember.role).where(
        ProjectMember.project_id == project_id, ProjectMember.username == principal.username)))
    readable = bool(roles) or not project.private or (admin_view and users.sees_everything(s, principal))
    if not readable:
        raise NotFound(f"Project {project_id} does not exist")
    if need is not READ and not roles.intersection(need):
        what = "an administrator" if need is MANAGE else "an editor"
        raise Forbidden(f"You must be {what} of project {project_id}")
    return project


def _members(s: "Session", project_ids) -> dict[str, dict[str, list[str]]]:
    """Members by Project and role; ``project_ids`` a list, or a query of ids (a subquery: a long
    listing sends no list of ids back to the database)."""
    out: dict[str, dict[str, list[str]]] = defaultdict(lambda: {r: [] for r in ROLES})
    if not isinstance(project_ids, list) or project_ids:
        rows = s.connection().execute(select(ProjectMember.project_id, ProjectMember.role, ProjectMember.username)
                                      .where(ProjectMember.project_id.in_(project_ids))
                                      .order_by(ProjectMember.username))
        for pid, role, username in rows:
            out[pid][role].append(username)
    return out


_DETAIL_COLUMNS = (Project.id, Project.name, Project.creator, Project.created, Project.private,
                   Project.product_id, Project.product_flavour, Project.unit_id, Project.organisation_id,
                   Project.size)


def _detail(row, members: dict[str, list[str]]) -> dict:
    """ProjectDetail from a row of _DETAIL_COLUMNS (plain rows: listing 100 Projects stays cheap)."""
    return {
        "project_id": row.id,
        "name": row.name,
        "creator": row.creator,
        "created": iso(row.created),
        "private": row.private,
        "product_id": row.product_id,
        "product_flavour": row.product_flavour,
        "unit_id": row.unit_id,
        "organisation_id": row.organisation_id,
        "administrators": members["administrator"],
        "editors": members["editor"],
        "observers": members["observer"],
        "size": row.size,
    }


def list_visible(
    s: "Session", principal: "Principal", name: str | None = None, *, sees_everything: bool | None = None
) -> list[dict]:
    query = select(*_DETAIL_COLUMNS).where(Project.deleted.is_(None))
    if sees_everything is None:
        sees_everything = users.sees_everything(s, principal)
    if not sees_everything:
        mine = select(ProjectMember.project_id).where(ProjectMember.username == principal.username)
        query = query.where(or_(Project.private.is_(False), Project.id.in_(mine)))
    if name is not None:
        query = query.where(Project.name == name)
    # plain rows through the Core connection: the ORM's row loading would cost more than the query
    rows = s.connection().execute(query.order_by(Project.created, Project.id)).all()
    members = _members(s, query.with_only_columns(Project.id).order_by(None)) if rows else {}
    return [_detail(r, members[r.id]) for r in rows]


def detail(s: "Session", project: Project) -> dict:
    """ProjectDetail without its managed files, which the caller adds (managed_files builds on this module)."""
    return _detail(project, _members(s, [project.id])[project.id])


def patch(s: "Session", principal: "Principal", project_id: str, *, name: str | None, private: bool | None) -> None:
    project = load(s, principal, project_id, MANAGE)
    if name is not None:
        name = check_name(name)
        if name != project.name and s.scalar(select(exists().where(
                Project.unit_id == project.unit_id, Project.name_key == name))):
            raise BadRequest(f"A project named '{name}' already exists in this unit")
        project.name = project.name_key = name
    if private is not None:
        if private and project.product_flavour == "EVALUATION":
            raise BadRequest("Projects on an EVALUATION product are always public")
        project.private = private
    counters.bump(s, counters.PROJECTS)


def add_member(s: "Session", principal: "Principal", project_id: str, role: str, username: str) -> None:
    load(s, principal, project_id, MANAGE)
    users.check_username(username)
    if s.get(ProjectMember, (project_id, username, role)) is None:
        s.add(ProjectMember(project_id=project_id, username=username, role=role))
        counters.bump(s, counters.PROJECTS)


def remove_member(s: "Session", principal: "Principal", project_id: str, role: str, username: str) -> None:
    load(s, principal, project_id, MANAGE)
    member = s.get(ProjectMember, (project_id, username, role))
    if member is None:
        raise NotFound(f"{username} is not a project {role}")
    if role in ("administrator", "editor"):
        # A Project always keeps someone who can manage it and someone who can write to it.
        others = s.scalar(select(exists().where(ProjectMember.project_id == project_id,
                                                ProjectMember.role == role,
                                                ProjectMember.username != username)))
        if not others:
            raise BadRequest(f"A project must keep at least one {role}")
    s.delete(member)
    counters.bump(s, counters.PROJECTS)


def mark_deleted(s: "Session", principal: "Principal", project_id: str) -> str:
    """Hide the Project at once and start the task that removes its storage."""
    project = load(s, principal, project_id, MANAGE)
    moved = s.execute(update(Project).where(Project.id == project.id, Project.deleted.is_(None))
                      .values(deleted=utcnow(), name_key=None)).rowcount
    if not moved:  # a concurrent delete won
        raise NotFound(f"Project {project_id} does not exist")
    counters.bump(s, counters.PROJECTS)
    from shared.services.workflow_host import ends

    ends.end_runs_of_project(s, project.id)  # nothing more of them can run here
    task = tasks.create(s, purpose="PROJECT", purpose_id=project.id, owner=principal.username,
                        project_id=project.id, removal=True, message=f"Deleting project {project.name}")
    return task.id


def pending_purges(s: "Session") -> list[str]:
    return list(s.scalars(select(Project.id).where(Project.deleted.is_not(None)).order_by(Project.deleted)))


def purge(s: "Session", project_id: str) -> None:
    """Forget a deleted Project once its storage is gone, and finish its removal task."""
    from shared.db.models import Task

    task_ids = s.scalars(select(Task.id).where(Task.purpose == "PROJECT", Task.purpose_id == project_id,
                                               Task.removal.is_(True), Task.done.is_(False)))
    for task_id in task_ids:
        tasks.set_state(s, task_id, "SUCCESS", "Project storage removed", exit_code=0)
    s.execute(delete(ProjectMember).where(ProjectMember.project_id == project_id))
    s.execute(delete(Project).where(Project.id == project_id, Project.deleted.is_not(None)))


def add_size(s: "Session", project_id: str, delta: int) -> None:
    if delta:
        s.execute(update(Project).where(Project.id == project_id).values(size=Project.size + delta))
        counters.bump(s, counters.PROJECTS)
