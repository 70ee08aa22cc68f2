"""Managed files: dataset versions placed in projects."""

from __future__ import annotations

from functions.api.download import stored_file_response
from functions.api.router import Router
from shared.db.session import transaction
from shared.lazy import lazy

datasets = lazy("shared.services.datasets")
files = lazy("shared.services.files")
managed_files = lazy("shared.services.managed_files")
outbox = lazy("shared.events.outbox")

router = Router("file-and-path")


@router.post("/file", status=201)
def attach_file(ctx):
    """Place a dataset version in a project as a managed file; a task copies it."""
    dataset_id = datasets.check_dataset_id(ctx.param("dataset_id", required=True)) or ""
    number = ctx.integer("dataset_version", minimum=1)
    if number is None:
        from shared.errors import BadRequest

        raise BadRequest("The 'dataset_version' parameter is required")
    project_id = ctx.param("project_id", required=True)
    as_type = ctx.param("as_type", required=True)
    path = files.check_path(ctx.param("path", "/"))
    with transaction(ctx.engine) as s:
        managed, task_id, event_id = managed_files.begin_attach(
            s, ctx.storage, ctx.user, dataset_id=dataset_id, number=number, project_id=project_id,
            as_type=as_type, path=path, compress=ctx.flag("compress", True), immutable=ctx.flag("immutable", True))
    outbox.deliver(ctx.engine, ctx.settings.broker_url, [event_id])
    return {"file_id": managed.id, "file_name": managed.name, "file_path": "/" + managed.path, "task_id": task_id}


@router.get("/file/<file_id>")
def download_file(ctx, file_id):
    """Download a managed file."""
    with transaction(ctx.engine, readonly=True) as s:
        managed = managed_files.load(s, ctx.user, file_id)
    return stored_file_response(ctx, managed_files.key_of(managed), managed.name,
                                "application/gzip" if managed.compressed else managed.mime_type, managed.size)


@router.delete("/file/<file_id>", status=204)
def delete_file(ctx, file_id):
    """Remove a managed file from its project."""
    with transaction(ctx.engine) as s:
        managed_files.detach(s, ctx.storage, ctx.user, file_id)
