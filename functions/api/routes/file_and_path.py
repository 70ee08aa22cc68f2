"""Unmanaged Project files and directories."""

from __future__ import annotations

import re
import uuid

from functions.api.download import stored_file_response
from functions.api.multipart import refuse_oversize, stream_form
from functions.api.router import Router
from shared.db.session import transaction
from shared.errors import BadRequest, Forbidden, NotAllowed
from shared.lazy import lazy

files = lazy("shared.services.files")
housekeeping = lazy("shared.services.housekeeping")
projects = lazy("shared.services.projects")
managed_files = lazy("shared.services.managed_files")

router = Router("file-and-path")
CALLBACK_TOKEN = re.compile(r"[A-Za-z0-9]{22}")


@router.get("/file")
def get_files(ctx):
    """List the files and sub-directories on a Project path."""
    project_id = ctx.param("project_id", required=True)
    path = files.check_path(ctx.param("path", "/"))
    include_hidden = ctx.flag("include_hidden")
    with transaction(ctx.engine, readonly=True) as s:
        project = projects.load(s, ctx.user, project_id)
        managed = managed_files.in_path(s, project.id, path)
    listing = files.list_path(ctx.storage, project.id, path, owner=project.creator, include_hidden=include_hidden)
    listing["files"] = [managed_files.enrich(f, managed[f["file_name"]]) if f["file_name"] in managed else f
                        for f in listing["files"]]
    return {"project_id": project.id, **listing}


def _refuse_managed(s, project_id: str, path: str, name: str) -> None:
    if managed_files.is_managed(s, project_id, path, name):
        raise NotAllowed(f"{name} is a managed file: use DELETE /file/{{file_id}}, or delete its dataset version")


@router.delete("/file", status=204)
def delete_unmanaged_file(ctx):
    """Delete an unmanaged Project file."""
    project_id = ctx.param("project_id", required=True)
    path = files.check_path(ctx.param("path", "/"))
    name = files.check_name(ctx.param("file", required=True))
    with transaction(ctx.engine, readonly=True) as s:
        project = projects.load(s, ctx.user, project_id, projects.WRITE)
        _refuse_managed(s, project.id, path, name)
    delta = files.delete_file(ctx.storage, project.id, path, name)
    with transaction(ctx.engine) as s:
        projects.add_size(s, project.id, delta)


@router.put("/file/move", status=200)
def move_file(ctx):
    """Move or rename an unmanaged Project file."""
    project_id = ctx.param("project_id", required=True)
    name = files.check_name(ctx.param("file", required=True))
    src_path = files.check_path(ctx.param("src_path", "/"))
    dst_path = files.check_path(ctx.param("dst_path")) if ctx.param("dst_path") else src_path
    dst_name = files.check_name(ctx.param("dst_file") or name)
    with transaction(ctx.engine, readonly=True) as s:
        project = projects.load(s, ctx.user, project_id, projects.WRITE)
        _refuse_managed(s, project.id, src_path, name)
    files.move_file(ctx.storage, project.id, src_path, name, dst_path, dst_name)


@router.put("/path", status=201)
def create_path(ctx):
    """Create a directory (and any missing parents) in a Project."""
    project_id = ctx.param("project_id", required=True)
    path = files.check_path(ctx.param("path", required=True))
    with transaction(ctx.engine, readonly=True) as s:
        project = projects.load(s, ctx.user, project_id, projects.WRITE)
    files.make_path(ctx.storage, project.id, path)


@router.delete("/path", status=204)
def delete_path(ctx):
    """Delete a directory and everything beneath it."""
    project_id = ctx.param("project_id", required=True)
    path = files.check_path(ctx.param("path", required=True))
    with transaction(ctx.engine, readonly=True) as s:
        project = projects.load(s, ctx.user, project_id, projects.WRITE)
    delta = files.delete_path(ctx.storage, project.id, path)
    with transaction(ctx.engine) as s:
        managed_files.forget_under(s, project.id, path)
        projects.add_size(s, project.id, delta)


@router.put("/path/move", status=200)
def move_path(ctx):
    """Move (rename) a directory."""
    project_id = ctx.param("project_id", required=True)
    src = files.check_path(ctx.param("src_path", required=True))
    dst = files.check_path(ctx.param("dst_path", required=True))
    with transaction(ctx.engine, readonly=True) as s:
        project = projects.load(s, ctx.user, project_id, projects.WRITE)
    files.move_path(ctx.storage, project.id, src, dst)
    with transaction(ctx.engine) as s:
        managed_files.move_under(s, project.id, src, dst)


@router.put("/project/<project_id>/file", status=201)
def add_file_to_project(ctx, project_id):
    """Upload a file into a Project (unmanaged), streamed to storage."""
    request = ctx.request
    limit = ctx.settings.max_upload_bytes
    refuse_oversize(request, limit)
    with transaction(ctx.engine, readonly=True) as s:
        project = projects.load(s, ctx.user, project_id, projects.WRITE)
    ctx.account_server.check_not_at_limit(ctx.user, project.product_id)  # files cost storage
    storage = ctx.storage
    staged: list[str] = []

    def on_file(field: str, filename: str, chunks, fields) -> tuple[str, int] | None:
        if field != "file":
            for _ in chunks:  # not ours: read past it
                pass
            return None
        # Staged first: the target (path, as_filename) may arrive after the file part.
        key = f"{housekeeping.STAGING}/{uuid.uuid4()}"
        staged.append(key)
        return filename, storage.write(key, chunks)

    try:
        fields, parts = stream_form(request, on_file, limit)
        if not parts.get("file"):
            raise BadRequest("The 'file' part is required")
        filename, size = parts["file"]
        path = files.check_path(fields.get("path") or request.args.get("path") or "/")
        name = files.check_name(fields.get("as_filename") or request.args.get("as_filename") or filename,
                                limit=files.MAX_UPLOAD_NAME)
        with transaction(ctx.engine, readonly=True) as s:
            if managed_files.is_managed(s, project.id, path, name):
                raise Forbidden(f"{name} is a managed file, read-only in the project")
        delta = files.place_upload(storage, staged[0], project.id, path, name, size)
    finally:
        for key in staged:  # gone already when placed; otherwise nothing may be left
            try:
                storage.delete(key)
            except FileNotFoundError:
                pass
    with transaction(ctx.engine) as s:
        projects.add_size(s, project.id, delta)


def _download(ctx, project_id: str, path: str, name: str):
    info = files.stat_file(ctx.storage, project_id, path, name)
    key = files.project_key(project_id, path, name)
    return stored_file_response(ctx, key, name, files.mime_type(name), info.size)


@router.get("/project/<project_id>/file")
def get_project_file(ctx, project_id):
    """Download a Project file."""
    path = files.check_path(ctx.param("path", "/"))
    name = files.check_name(ctx.param("file", required=True))
    with transaction(ctx.engine, readonly=True) as s:
        project = projects.load(s, ctx.user, project_id)
    return _download(ctx, project.id, path, name)


@router.get("/project/<project_id>/file-with-token", auth=False)
def get_project_file_with_token(ctx, project_id):
    """Download a Project file with an instance callback token instead of signing in."""
    from shared.db.models import Project, ProjectToken

    token = ctx.param("token", required=True)
    path = files.check_path(ctx.param("path", "/"))
    name = files.check_name(ctx.param("file", required=True))
    if not CALLBACK_TOKEN.fullmatch(token):
        raise Forbidden("The token is not valid for this project")
    with transaction(ctx.engine, readonly=True) as s:
        grant = s.get(ProjectToken, token)
        project = s.get(Project, project_id) if grant else None
        if grant is None or grant.project_id != project_id or project is None or project.deleted:
            raise Forbidden("The token is not valid for this project")
    return _download(ctx, project_id, path, name)
