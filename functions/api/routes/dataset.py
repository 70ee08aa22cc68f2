"""Datasets: uploads (handed to the upload function as events), versions, downloads, types."""

from __future__ import annotations

import uuid

from functions.api.download import stored_file_response
from functions.api.multipart import refuse_oversize, stream_form
from functions.api.router import Router
from shared.account_server.base import check_unit_id
from shared.db.session import transaction
from shared.errors import BadRequest
from shared.lazy import lazy

datasets = lazy("shared.services.datasets")
files = lazy("shared.services.files")
housekeeping = lazy("shared.services.housekeeping")
types = lazy("shared.datasets.types")
content = lazy("shared.datasets.content")
stream_checks = lazy("shared.datasets.checks")
outbox = lazy("shared.events.outbox")
projects = lazy("shared.services.projects")

router = Router("dataset")


@router.get("/type")
def get_file_types(ctx):
    """The supported dataset and file types."""
    return types.types_response()


def _check_target(ctx, fields: dict[str, str], filename: str) -> dict:
    """Everything about an upload that can be refused without its content."""
    mime = fields.get("dataset_type") or ""
    if not mime:
        raise BadRequest("The 'dataset_type' field is required")
    file_type = types.get_type(mime)
    if not file_type.uploadable:
        raise BadRequest(f"{mime} files can be attached to projects but not uploaded as datasets")
    mime = file_type.mime  # the catalogue's spelling, whatever case was sent
    name = files.check_name(fields.get("as_filename") or filename, limit=files.MAX_UPLOAD_NAME)
    types.check_filename(mime, name)
    unit_id = check_unit_id(fields.get("unit_id") or "")
    dataset_id = datasets.check_dataset_id(fields.get("dataset_id"))
    return {"mime": mime, "name": name, "unit_id": unit_id, "dataset_id": dataset_id}


@router.post("/dataset", status=201)
def upload_dataset(ctx):
    """Upload a file as a new Dataset or a new version of one; a task processes it."""
    request = ctx.request
    limit = ctx.settings.max_upload_bytes
    refuse_oversize(request, limit)
    storage = ctx.storage
    staged: list[str] = []
    checked: list[dict] = []

    def on_file(field, filename, chunks, fields):
        if field != "dataset_file":
            return None
        if staged:
            raise BadRequest("Send one 'dataset_file' part per upload")
        check = None
        if "dataset_type" in fields and "unit_id" in fields:
            target = _check_target(ctx, fields, filename)  # refuse before storing anything
            # digest and content checks run beside the receive, so the upload function
            # only has to move the staged file into place
            check = stream_checks.StreamCheck(content.validator_for(target["mime"], target["name"]))
            chunks = check.tee(chunks)
        key = f"{housekeeping.STAGING}/{uuid.uuid4()}"
        staged.append(key)
        try:
            size = storage.write(key, chunks)
        except BaseException:
            if check is not None:
                check.abandon()
            raise
        if check is not None:
            checked.append(check.finish().facts())
        return filename, size

    try:
        fields, parts = stream_form(request, on_file, limit)
        if not parts.get("dataset_file"):
            raise BadRequest("The 'dataset_file' part is required")
        filename, size = parts["dataset_file"]
        if size == 0:
            raise BadRequest("The file is empty")
        target = _check_target(ctx, fields, filename)
        code = ctx.account_server.authorise_dataset_storage(ctx.user, target["unit_id"])
        with transaction(ctx.engine) as s:
            version, task_id, event_id = datasets.begin_upload(
                s, ctx.user, dataset_id=target["dataset_id"], unit_id=target["unit_id"],
                mime_type=target["mime"], file_name=target["name"], source_ref=filename,
                staged_key=staged[0], checked=checked[0] if checked else None,
                format_extra_variables=fields.get("format_extra_variables"),
                authorisation_code=code)
        staged.clear()  # the upload function owns it now
    finally:
        for key in staged:
            try:
                storage.delete(key)
            except FileNotFoundError:
                pass
    outbox.deliver(ctx.engine, ctx.settings.broker_url, [event_id])  # after the commit; redelivered if it fails
    return {"dataset_id": version.dataset_id, "dataset_version": version.version, "task_id": task_id}


@router.get("/dataset")
def get_datasets(ctx):
    """The Datasets the caller owns or edits (uploads in progress are not shown)."""
    def users_of(name):
        return [u.strip() for u in (ctx.param(name) or "").split(",") if u.strip()]

    label_filter = datasets.parse_label_filter(ctx.param("labels"))
    with transaction(ctx.engine, readonly=True) as s:
        items = datasets.list_visible(s, ctx.user, mime_type=ctx.param("dataset_mime_type"),
                                      username=ctx.param("username"), owners=users_of("owners"),
                                      editors=users_of("editors"), labels=label_filter,
                                      include_deleted=ctx.flag("include_deleted"))
    return {"count": len(items), "datasets": items}


@router.get("/dataset/<dataset_id>/versions")
def get_versions(ctx, dataset_id):
    """All (finished) versions of one Dataset."""
    with transaction(ctx.engine, readonly=True) as s:
        return datasets.versions(s, ctx.user, dataset_id, include_deleted=ctx.flag("include_deleted"))


@router.get("/dataset/<dataset_id>/<int:dataset_version>")
def download_dataset(ctx, dataset_id, dataset_version):
    """Download one Dataset version."""
    with transaction(ctx.engine, readonly=True) as s:
        version = datasets.usable_version(s, ctx.user, dataset_id, dataset_version)
    return stored_file_response(ctx, version.storage_key, version.file_name, version.mime_type, version.size)


@router.get("/digest/dataset/<dataset_digest>")
def get_dataset_digest(ctx, dataset_digest):
    """Find a Dataset version by its SHA-256 digest."""
    with transaction(ctx.engine, readonly=True) as s:
        return datasets.by_digest(s, ctx.user, dataset_digest)


@router.put("/dataset", status=201)
def create_dataset_from_file(ctx):
    """Make a Dataset (or a new version) from a project file; a task copies it."""
    project_id = ctx.param("project_id", required=True)
    path = files.check_path(ctx.param("path", required=True))
    name = files.check_name(ctx.param("file_name", required=True), limit=files.MAX_UPLOAD_NAME)
    file_type = types.get_type(ctx.param("dataset_type", required=True))
    if not file_type.uploadable:
        raise BadRequest(f"{file_type.mime} files can be attached to projects but not made into datasets")
    types.check_filename(file_type.mime, name)
    dataset_id = datasets.check_dataset_id(ctx.param("dataset_id"))
    with transaction(ctx.engine, readonly=True) as s:
        project = projects.load(s, ctx.user, project_id, admin_view=False)  # a copy out is not a read
    unit_id = check_unit_id(ctx.param("unit_id") or project.unit_id)
    info = files.stat_file(ctx.storage, project.id, path, name)
    if info.size == 0:
        raise BadRequest("The file is empty")
    code = ctx.account_server.authorise_dataset_storage(ctx.user, unit_id)
    with transaction(ctx.engine) as s:
        version, task_id, event_id = datasets.begin_upload(
            s, ctx.user, dataset_id=dataset_id, unit_id=unit_id, mime_type=file_type.mime, file_name=name,
            source_ref=f"{project.id}:/{path + '/' if path else ''}{name}",
            source_key=files.project_key(project.id, path, name),
            format_extra_variables=ctx.param("format_extra_variables"), authorisation_code=code)
    outbox.deliver(ctx.engine, ctx.settings.broker_url, [event_id])
    return {"dataset_id": version.dataset_id, "dataset_version": version.version, "task_id": task_id}


@router.delete("/dataset/<dataset_id>/<int:dataset_version>", status=200)
def delete_dataset(ctx, dataset_id, dataset_version):
    """Delete one Dataset version: hidden at once, its content removed by a task."""
    with transaction(ctx.engine) as s:
        task_id, event_id = datasets.begin_delete(s, ctx.user, dataset_id, dataset_version,
                                                  keep_project_files=ctx.flag("keep_project_files"))
    outbox.deliver(ctx.engine, ctx.settings.broker_url, [event_id])
    return {"task_id": task_id}


@router.put("/dataset/<dataset_id>/editor/<user_id>", status=201)
def add_editor_to_dataset(ctx, dataset_id, user_id):
    """Add a Dataset editor."""
    with transaction(ctx.engine) as s:
        datasets.add_editor(s, ctx.user, dataset_id, user_id)


@router.delete("/dataset/<dataset_id>/editor/<user_id>", status=204)
def remove_editor_from_dataset(ctx, dataset_id, user_id):
    """Remove a Dataset editor."""
    with transaction(ctx.engine) as s:
        datasets.remove_editor(s, ctx.user, dataset_id, user_id)
