"""Datasets and their versions (dm-api §2.2, §3.5)."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from sqlalchemy import func, or_, select

from shared.db.base import iso, new_id, utcnow
from shared.db.models import Dataset, DatasetEditor, DatasetVersion
from shared.db.models.dataset import HIDDEN_STAGES
from shared.errors import BadRequest, Forbidden, NotFound
from shared.events import contracts, outbox
from shared.services import tasks, users

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.auth.verify import Principal

DATASET_ID = re.compile(r"dataset-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
DIGEST = re.compile(r"[0-9a-f]{64}")


def check_dataset_id(dataset_id: str | None) -> str | None:
    """A Dataset id, or None for the empty value that means "a new Dataset"."""
    if not dataset_id:
        return None
    if not DATASET_ID.fullmatch(dataset_id):
        raise BadRequest(f"'{dataset_id[:80]}' is not a dataset id (dataset-<uuid>)")
    return dataset_id


def storage_key(dataset_id: str, version: int, file_name: str) -> str:
    return f"datasets/{dataset_id}/{version}/{file_name}"


def stored_list(text: str | None) -> list:
    """A JSON list column (a Dataset's labels, a version's annotations); anything unreadable is empty."""
    try:
        value = json.loads(text or "[]")
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def labels_map(dataset: Dataset) -> dict:
    """The Dataset's labels as the label → value map versions and schemas show."""
    return {label.get("label"): label.get("value") for label in stored_list(dataset.labels)
            if isinstance(label, dict) and label.get("active", True) is not False}


def _can_edit(s: "Session", dataset: Dataset, username: str) -> bool:
    return dataset.owner == username or s.get(DatasetEditor, (dataset.id, username)) is not None


def load(s: "Session", principal: "Principal", dataset_id: str, *, edit: bool = False,
         admin_view: bool = True) -> Dataset:
    """A Dataset the caller may read (owner or editor); others are told it does not exist.

    Admin mode reads every Dataset (dm-api §1.2); ``admin_view=False`` for the calls that are
    not reads but use what they read (copying a version into a Project).
    """
    if not DATASET_ID.fullmatch(dataset_id or ""):
        raise NotFound(f"Dataset {dataset_id[:80]} does not exist")
    dataset = s.get(Dataset, dataset_id)
    readable = dataset is not None and (_can_edit(s, dataset, principal.username) or (
        not edit and admin_view and users.sees_everything(s, principal)))
    if not readable:
        raise NotFound(f"Dataset {dataset_id} does not exist")
    return dataset


def begin_upload(
    s: "Session",
    principal: "Principal",
    *,
    dataset_id: str | None,
    unit_id: str,
    mime_type: str,
    file_name: str,
    source_ref: str,
    staged_key: str | None = None,
    source_key: str | None = None,
    checked: dict | None = None,
    format_extra_variables: str | None,
    authorisation_code: int | None,
) -> tuple[DatasetVersion, str, str]:
    """Record a new (hidden) version and queue the event that processes it.

    The content comes from ``staged_key`` (an upload, removed once stored) or from
    ``source_key`` (a project file, left in place). ``checked`` is what the api learnt of
    staged content as it arrived (size, digest, records, error), sparing a second read. Returns the version, its task id
    and the event id (to deliver after the commit).
    """
    assert (staged_key is None) != (source_key is None)
    now = utcnow()
    if dataset_id is None:
        dataset = Dataset(id=new_id("dataset"), owner=principal.username, unit_id=unit_id, created=now,
                          name=file_name, description="", labels="[]", last_updated=now)
        s.add(dataset)
        s.flush()
        number = 1
    else:
        dataset = load(s, principal, dataset_id, edit=True)
        number = (s.scalar(select(func.max(DatasetVersion.version))
                           .where(DatasetVersion.dataset_id == dataset.id)) or 0) + 1
    task = tasks.create(s, purpose="DATASET", purpose_id=dataset.id, purpose_version=number,
                        owner=principal.username, message=f"Uploading {file_name}")
    task.processing_stage = "COPYING"
    version = DatasetVersion(
        dataset_id=dataset.id, version=number, owner=principal.username, file_name=file_name,
        source_ref=source_ref, mime_type=mime_type, format_extra_variables=format_extra_variables,
        processing_stage="COPYING", storage_key=storage_key(dataset.id, number, file_name), task_id=task.id,
        authorisation_code=authorisation_code, created=now, last_updated=now,
    )
    s.add(version)
    s.flush()
    if staged_key is not None:
        event = outbox.add(s, contracts.DatasetUpload(task_id=task.id, dataset_id=dataset.id, version=number,
                                                      staged_key=staged_key, checked=checked))
    else:
        event = outbox.add(s, contracts.DatasetImport(task_id=task.id, dataset_id=dataset.id, version=number,
                                                      source_key=source_key))
    return version, task.id, event.id


def _version_out(v: DatasetVersion, *, detail: bool, labels: dict, placed: list[tuple]) -> dict:
    """One version as the API shows it; ``placed`` are its managed files as (project id, name, file id)."""
    projects = sorted({project_id for project_id, _, _ in placed})
    out = {
        "version": v.version,
        "owner": v.owner,
        "file_name": v.file_name,
        "source_ref": v.source_ref,
        "type": v.mime_type,
        "published": iso(v.published or v.created),
        "processing_stage": v.processing_stage,
        "projects": projects,
        "size": v.size,
        "labels": labels,
    }
    for name in ("format_extra_variables", "authorisation_code", "deleting_user"):
        if getattr(v, name) is not None:
            out[name] = getattr(v, name)
    if v.deleted is not None:
        out["deleted"] = iso(v.deleted)
    if detail:
        out["project_files"] = [
            {"project": project_id, "project_name": name,
             "files": sorted(file_id for pid, _, file_id in placed if pid == project_id)}
            for project_id, name in sorted({(pid, name) for pid, name, _ in placed})]
    return out


def _versions_out(s: "Session", dataset: Dataset, query, *, detail: bool) -> list[dict]:
    """The versions a query selects, with the Dataset's labels and where each version is placed."""
    from shared.db.models import Project, ProjectFile

    found = list(s.scalars(query.order_by(DatasetVersion.version)))
    if not found:
        return []
    placed: dict[int, list[tuple]] = {}
    rows = s.execute(select(ProjectFile.dataset_version, ProjectFile.project_id, Project.name, ProjectFile.id)
                     .join(Project, Project.id == ProjectFile.project_id)
                     .where(ProjectFile.dataset_id == dataset.id))
    for number, project_id, name, file_id in rows:
        placed.setdefault(number, []).append((project_id, name, file_id))
    labels = labels_map(dataset)
    return [_version_out(v, detail=detail, labels=labels, placed=placed.get(v.version, [])) for v in found]


def _editors(s: "Session", dataset_id: str) -> list[str]:
    return sorted(s.scalars(select(DatasetEditor.username).where(DatasetEditor.dataset_id == dataset_id)))


def versions(s: "Session", principal: "Principal", dataset_id: str, include_deleted: bool = False) -> dict:
    dataset = load(s, principal, dataset_id)
    query = select(DatasetVersion).where(DatasetVersion.dataset_id == dataset.id,
                                         DatasetVersion.processing_stage.not_in(HIDDEN_STAGES))
    if not include_deleted:
        query = query.where(DatasetVersion.deleted.is_(None))
    items = _versions_out(s, dataset, query, detail=True)
    return {"dataset_id": dataset.id, "owner": dataset.owner, "editors": _editors(s, dataset.id),
            "count": len(items), "versions": items}


def parse_label_filter(text: str | None) -> dict[str, str | None]:
    """The ``labels`` filter of GET /dataset: a JSON object of label → value (``null``: any value)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        raise BadRequest("'labels' must be a JSON object of label to value") from None
    if not isinstance(value, dict) or not all(v is None or isinstance(v, str) for v in value.values()):
        raise BadRequest("'labels' must be a JSON object of label to value (a string, or null for any value)")
    return {label.lower(): v for label, v in value.items()}  # labels are stored in lower case


def list_visible(s: "Session", principal: "Principal", *, mime_type: str | None = None,
                 username: str | None = None, owners: list[str] | None = None,
                 editors: list[str] | None = None, labels: dict[str, str | None] | None = None,
                 include_deleted: bool = False) -> list[dict]:
    """The Datasets the caller owns or edits (in admin mode: all), filtered as GET /dataset describes.

    ``username`` (the owner) is ANDed with everything else; ``owners`` and ``editors`` are ORed
    with each other; every label in ``labels`` must match (a None value: the label alone).
    """
    query = select(Dataset)
    if not users.sees_everything(s, principal):
        editable = select(DatasetEditor.dataset_id).where(DatasetEditor.username == principal.username)
        query = query.where(or_(Dataset.owner == principal.username, Dataset.id.in_(editable)))
    if username:
        query = query.where(Dataset.owner == username)
    either = []
    if owners:
        either.append(Dataset.owner.in_(owners))
    if editors:
        either.append(Dataset.id.in_(select(DatasetEditor.dataset_id).where(DatasetEditor.username.in_(editors))))
    if either:
        query = query.where(or_(*either))
    # One query per relation for every listed Dataset (not three per Dataset): the relations are
    # selected by the same filter, as a subquery, so no list of ids is sent back to the database.
    from shared.db.models import Project, ProjectFile

    # plain rows through the Core connection: the ORM's row loading would cost more than the queries
    rows = s.connection().execute
    found = rows(query.with_only_columns(Dataset.id, Dataset.labels).order_by(Dataset.created, Dataset.id)).all()
    if labels:
        found = [d for d in found if _labels_match(labels_map(d), labels)]
    if not found:
        return []
    listed = query.with_only_columns(Dataset.id).order_by(None)
    vq = select(*_LISTED_VERSION_COLUMNS).where(DatasetVersion.dataset_id.in_(listed),
                                                DatasetVersion.processing_stage.not_in(HIDDEN_STAGES))
    if not include_deleted:
        vq = vq.where(DatasetVersion.deleted.is_(None))
    if mime_type:
        vq = vq.where(DatasetVersion.mime_type == mime_type)
    versions_of: dict[str, list] = {}
    for v in rows(vq.order_by(DatasetVersion.dataset_id, DatasetVersion.version)):
        versions_of.setdefault(v.dataset_id, []).append(v)
    placed: dict[tuple[str, int], list[tuple]] = {}
    for dataset_id, number, project_id, name, file_id in rows(
            select(ProjectFile.dataset_id, ProjectFile.dataset_version, ProjectFile.project_id, Project.name,
                   ProjectFile.id)
            .join(Project, Project.id == ProjectFile.project_id)
            .where(ProjectFile.dataset_id.in_(listed))):
        placed.setdefault((dataset_id, number), []).append((project_id, name, file_id))
    editors_of: dict[str, list[str]] = {}
    for dataset_id, username in rows(select(DatasetEditor.dataset_id, DatasetEditor.username)
                                     .where(DatasetEditor.dataset_id.in_(listed))):
        editors_of.setdefault(dataset_id, []).append(username)
    out = []
    for dataset in found:
        vs = versions_of.get(dataset.id)
        if vs:  # uploads still in progress are not shown
            shown = labels_map(dataset)
            out.append({"dataset_id": dataset.id, "editors": sorted(editors_of.get(dataset.id, ())),
                        "versions": [_version_out(v, detail=False, labels=shown,
                                                  placed=placed.get((dataset.id, v.version), [])) for v in vs]})
    return out


def _labels_match(present: dict, wanted: dict[str, str | None]) -> bool:
    return all(k in present and (v is None or present[k] == v) for k, v in wanted.items())


# What _version_out reads: plain rows, not entities, for listings of many versions.
_LISTED_VERSION_COLUMNS = (
    DatasetVersion.dataset_id, DatasetVersion.version, DatasetVersion.owner, DatasetVersion.file_name,
    DatasetVersion.source_ref, DatasetVersion.mime_type, DatasetVersion.published, DatasetVersion.created,
    DatasetVersion.processing_stage, DatasetVersion.size, DatasetVersion.format_extra_variables,
    DatasetVersion.authorisation_code, DatasetVersion.deleting_user, DatasetVersion.deleted,
)


def usable_version(s: "Session", principal: "Principal", dataset_id: str, version: int, *,
                   admin_view: bool = True) -> DatasetVersion:
    dataset = load(s, principal, dataset_id, admin_view=admin_view)
    v = s.scalar(select(DatasetVersion).where(DatasetVersion.dataset_id == dataset.id,
                                              DatasetVersion.version == version,
                                              DatasetVersion.deleted.is_(None)))
    if v is None or v.processing_stage == "FAILED":
        raise NotFound(f"Dataset {dataset_id} has no version {version}")
    if v.processing_stage in HIDDEN_STAGES:
        raise Forbidden(f"Version {version} of dataset {dataset_id} is still being uploaded")
    return v


def by_digest(s: "Session", principal: "Principal", digest: str) -> dict:
    """The first usable version with this digest among the Datasets the caller may read:
    those it owns or edits, and in admin mode every one (as ``load``)."""
    if not DIGEST.fullmatch(digest):
        raise BadRequest("A digest is 64 lower-case hexadecimal characters (SHA-256)")
    query = (select(DatasetVersion.dataset_id, DatasetVersion.version)
             .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
             .where(DatasetVersion.digest == digest, DatasetVersion.deleted.is_(None),
                    DatasetVersion.processing_stage.not_in(HIDDEN_STAGES)))
    if not users.sees_everything(s, principal):
        editable = select(DatasetEditor.dataset_id).where(DatasetEditor.username == principal.username)
        query = query.where(or_(Dataset.owner == principal.username, Dataset.id.in_(editable)))
    row = s.execute(query.order_by(DatasetVersion.created, DatasetVersion.id).limit(1)).first()
    if row is None:
        raise NotFound(f"No dataset version has the digest {digest}")
    return {"dataset_id": row.dataset_id, "dataset_version": row.version}


def add_editor(s: "Session", principal: "Principal", dataset_id: str, username: str) -> None:
    dataset = load(s, principal, dataset_id, edit=True)
    users.check_username(username)
    if username != dataset.owner and s.get(DatasetEditor, (dataset.id, username)) is None:
        s.add(DatasetEditor(dataset_id=dataset.id, username=username))


def remove_editor(s: "Session", principal: "Principal", dataset_id: str, username: str) -> None:
    dataset = load(s, principal, dataset_id, edit=True)
    if username == dataset.owner:
        raise BadRequest("The owner of a dataset always keeps access")
    editor = s.get(DatasetEditor, (dataset.id, username))
    if editor is None:
        raise NotFound(f"{username} is not an editor of dataset {dataset.id}")
    s.delete(editor)


def begin_delete(s: "Session", principal: "Principal", dataset_id: str, number: int,
                 keep_project_files: bool = False) -> tuple[str, str]:
    """Hide a version at once and queue the event that removes its content; returns task and event ids."""
    dataset = load(s, principal, dataset_id, edit=True)
    version = s.scalar(select(DatasetVersion).where(DatasetVersion.dataset_id == dataset.id,
                                                    DatasetVersion.version == number,
                                                    DatasetVersion.deleted.is_(None)))
    if version is None or version.processing_stage == "FAILED":
        raise NotFound(f"Dataset {dataset_id} has no version {number}")
    if version.processing_stage in HIDDEN_STAGES:
        raise Forbidden(f"Version {number} of dataset {dataset_id} is still being uploaded")
    found = delete_version(s, version, principal.username, keep_project_files=keep_project_files)
    if found is None:  # a concurrent delete won
        raise NotFound(f"Dataset {dataset_id} has no version {number}")
    return found


def delete_version(s: "Session", version: DatasetVersion, username: str, *,
                   keep_project_files: bool = False) -> tuple[str, str] | None:
    """Hide a usable version and queue its removal as ``username``; None if it was already deleted."""
    from sqlalchemy import update

    moved = s.execute(update(DatasetVersion).where(DatasetVersion.id == version.id, DatasetVersion.deleted.is_(None))
                      .values(deleted=utcnow(), deleting_user=username, processing_stage="DELETING")).rowcount
    if not moved:
        return None
    number = version.version
    task = tasks.create(s, purpose="DATASET", purpose_id=version.dataset_id, purpose_version=number,
                        owner=username, removal=True, message=f"Deleting version {number}")
    task.processing_stage = "DELETING"
    event = outbox.add(s, contracts.DatasetDelete(task_id=task.id, dataset_id=version.dataset_id, version=number,
                                                  keep_project_files=keep_project_files))
    return task.id, event.id
