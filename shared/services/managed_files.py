"""Managed files: dataset versions placed in projects (dm-api §2.4, POST/GET/DELETE /file)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from sqlalchemy import select

from shared.db.base import iso, new_id, utcnow
from shared.db.models import ProjectFile
from shared.errors import BadRequest, Forbidden, NotFound, Unprocessable
from shared.events import contracts, outbox
from shared.services import datasets, files, projects, tasks

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.auth.verify import Principal
    from shared.storage.base import Storage

FILE_ID = re.compile(r"file-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def key_of(f: ProjectFile) -> str:
    return files.project_key(f.project_id, f.path, f.name)


def begin_attach(s: "Session", storage: "Storage", principal: "Principal", *, dataset_id: str, number: int,
                 project_id: str, as_type: str, path: str, compress: bool, immutable: bool
                 ) -> tuple[ProjectFile, str, str]:
    """Record a (not yet usable) managed file and queue the copy; returns it, its task id and the event id."""
    project = projects.load(s, principal, project_id, projects.WRITE)
    # a copy into a Project is not a read: admin mode does not open other users' Datasets to it
    version = datasets.usable_version(s, principal, dataset_id, number, admin_view=False)
    if as_type.lower() != version.mime_type.lower():
        raise Unprocessable(f"Version {number} of {dataset_id} is {version.mime_type}; "
                            f"it cannot be converted to {as_type}")
    name = version.file_name
    if compress and not name.lower().endswith(".gz"):
        name += ".gz"
    key = files.project_key(project.id, path, name)
    if storage.exists(key) or storage.is_dir(key) or s.scalar(select(ProjectFile.id).where(
            ProjectFile.project_id == project.id, ProjectFile.path == path, ProjectFile.name == name)):
        raise BadRequest(f"/{path + '/' if path else ''}{name} already exists in the project")
    task = tasks.create(s, purpose="FILE", purpose_id="", owner=principal.username, project_id=project.id,
                        message=f"Placing {name} in the project")
    managed = ProjectFile(id=new_id("file"), project_id=project.id, path=path, name=name, dataset_id=dataset_id,
                          dataset_version=number, mime_type=version.mime_type,
                          compressed=name.lower().endswith(".gz"), immutable=immutable, owner=principal.username,
                          processing_stage="COPYING", task_id=task.id, created=utcnow())
    s.add(managed)
    task.purpose_id = managed.id
    task.processing_stage = "COPYING"
    s.flush()
    event = outbox.add(s, contracts.FileAttach(task_id=task.id, file_id=managed.id, source_key=version.storage_key))
    return managed, task.id, event.id


def load(s: "Session", principal: "Principal", file_id: str, *, write: bool = False) -> ProjectFile:
    if not FILE_ID.fullmatch(file_id or ""):
        raise NotFound(f"File {file_id[:80]} does not exist")
    managed = s.get(ProjectFile, file_id)
    if managed is None:
        raise NotFound(f"File {file_id} does not exist")
    try:
        projects.load(s, principal, managed.project_id, projects.WRITE if write else projects.READ)
    except NotFound:
        raise NotFound(f"File {file_id} does not exist") from None
    if managed.processing_stage != "DONE":
        raise Forbidden(f"File {file_id} is still being placed in its project")
    return managed


def detach(s: "Session", storage: "Storage", principal: "Principal", file_id: str) -> None:
    managed = load(s, principal, file_id, write=True)
    try:
        storage.delete(key_of(managed))
    except FileNotFoundError:
        pass
    projects.add_size(s, managed.project_id, -(managed.size or 0))
    s.delete(managed)


def in_path(s: "Session", project_id: str, path: str) -> dict[str, ProjectFile]:
    """The usable managed files on one project path, by name."""
    rows = s.scalars(select(ProjectFile).where(ProjectFile.project_id == project_id, ProjectFile.path == path,
                                               ProjectFile.processing_stage == "DONE"))
    return {f.name: f for f in rows}


def is_managed(s: "Session", project_id: str, path: str, name: str) -> bool:
    return s.scalar(select(ProjectFile.id).where(ProjectFile.project_id == project_id, ProjectFile.path == path,
                                                 ProjectFile.name == name)) is not None


def detail(f: ProjectFile) -> dict:
    """ProjectFileDetail (items of ProjectDetail.files)."""
    return {"file_id": f.id, "file_name": f.name, "file_path": "/" + f.path, "project_id": f.project_id,
            "dataset_id": f.dataset_id, "dataset_version": f.dataset_version, "mime_type": f.mime_type,
            "immutable": f.immutable, "owner": f.owner, "processing_stage": f.processing_stage}


def of_project(s: "Session", project_id: str) -> list[dict]:
    rows = s.scalars(select(ProjectFile).where(ProjectFile.project_id == project_id)
                     .order_by(ProjectFile.path, ProjectFile.name))
    return [detail(f) for f in rows]


def enrich(entry: dict, f: ProjectFile) -> dict:
    """A GET /file entry for a managed file."""
    return {**entry, "file_id": f.id, "dataset_id": f.dataset_id, "dataset_version": f.dataset_version,
            "immutable": f.immutable, "owner": f.owner, "mime_type": f.mime_type,
            "stat": {**entry["stat"], "modified": entry["stat"]["modified"] or iso(f.created)}}


def forget_under(s: "Session", project_id: str, path: str) -> None:
    """A directory was deleted: its managed files went with it."""
    from sqlalchemy import delete, or_

    s.execute(delete(ProjectFile).where(ProjectFile.project_id == project_id, or_(
        ProjectFile.path == path, ProjectFile.path.startswith(path + "/"))))


def move_under(s: "Session", project_id: str, src: str, dst: str) -> None:
    """A directory moved: its managed files moved with it."""
    from sqlalchemy import or_

    for f in s.scalars(select(ProjectFile).where(ProjectFile.project_id == project_id, or_(
            ProjectFile.path == src, ProjectFile.path.startswith(src + "/")))):
        f.path = dst + f.path[len(src):]
