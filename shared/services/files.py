"""Unmanaged Project files and directories, kept in the storage under ``projects/<id>/``."""

from __future__ import annotations

import mimetypes
from typing import TYPE_CHECKING

from shared.db.base import iso
from shared.errors import BadRequest, NotFound
from shared.storage import paths

if TYPE_CHECKING:
    from shared.storage.base import Storage

MAX_PATH = 260
MAX_NAME = 260
MAX_UPLOAD_NAME = 128
EXTRA_TYPES = {".sdf": "chemical/x-mdl-sdfile", ".mol": "chemical/x-mdl-molfile", ".pdb": "chemical/x-pdb",
               ".smi": "chemical/x-daylight-smiles", ".csv": "text/csv", ".tsv": "text/tab-separated-values"}


def check_path(path: str | None) -> str:
    """A Project directory as the API takes it ('/' or '/a/b'); returns it without slashes at the ends.

    Paths stay inside the Project: no '..', no empty or '.' segments, no NUL bytes,
    no backslashes, at most 260 characters.
    """
    if path is None or path == "":
        return ""
    if len(path) > MAX_PATH:
        raise BadRequest(f"A path must be at most {MAX_PATH} characters long")
    if not path.startswith("/"):
        raise BadRequest(f"A path must start with '/': {path[:80]!r}")
    if "\x00" in path or "\\" in path:
        raise BadRequest("A path must not contain NUL bytes or backslashes")
    if paths.has_control(path):
        raise BadRequest("A path must not contain control characters")
    inner = path.strip("/")
    if not inner:
        if path != "/":
            raise BadRequest("A path must not contain empty segments")
        return ""
    if path.endswith("/"):
        inner = path[1:-1]
    for segment in inner.split("/"):
        if segment in ("", ".", ".."):
            raise BadRequest(f"A path must not contain empty, '.' or '..' segments: {path[:80]!r}")
    return inner


def check_name(name: str | None, what: str = "file", limit: int = MAX_NAME) -> str:
    """A single file name: no separators, no '.' or '..', no NUL bytes."""
    if not name:
        raise BadRequest(f"A {what} name is required")
    if len(name) > limit:
        raise BadRequest(f"A {what} name must be at most {limit} characters long")
    if "/" in name or "\\" in name or "\x00" in name or name in (".", ".."):
        raise BadRequest(f"Not a valid {what} name: {name[:80]!r}")
    if paths.has_control(name):
        raise BadRequest(f"A {what} name must not contain control characters")
    return name


def project_key(project_id: str, path: str = "", name: str | None = None) -> str:
    parts = ["projects", project_id]
    if path:
        parts.append(path)
    if name:
        parts.append(name)
    return "/".join(parts)


def mime_type(name: str) -> str:
    lower = name.lower()
    if lower.endswith(".gz"):
        lower = lower[:-3]
    for ext, mime in EXTRA_TYPES.items():
        if lower.endswith(ext):
            return mime
    return mimetypes.guess_type(lower)[0] or "application/octet-stream"


def list_path(storage: "Storage", project_id: str, path: str, *, owner: str, include_hidden: bool) -> dict:
    key = project_key(project_id, path)
    try:
        listing = storage.list_dir(key)
    except FileNotFoundError:
        if path:
            raise NotFound(f"Path /{path} does not exist") from None
        listing = None  # a Project whose root was never written to is empty
    if listing is None:
        return {"path": "/", "count": 0, "files": [], "paths": []}
    files = [
        {
            "file_name": f.name,
            "owner": owner,
            "mime_type": mime_type(f.name),
            "stat": {"size": f.size, "modified": iso(f.modified)},
        }
        for f in listing.files
        if include_hidden or not f.name.startswith(".")
    ]
    paths = [d for d in listing.dirs if include_hidden or not d.startswith(".")]
    return {"path": "/" + path, "count": len(files), "files": files, "paths": paths}


def place_upload(storage: "Storage", staged_key: str, project_id: str, path: str, name: str, size: int) -> int:
    """Move a staged upload to its place, replacing a file of the same name.

    Returns the change in the Project's size.
    """
    key = project_key(project_id, path, name)
    _no_directory_at(storage, key)
    _parents_are_directories(storage, project_id, path)
    old = storage.stat(key)
    if path:
        storage.make_dirs(project_key(project_id, path))
    storage.move(staged_key, key)
    return size - (old.size if old else 0)


def _no_directory_at(storage: "Storage", key: str) -> None:
    if storage.is_dir(key):
        raise BadRequest(f"A directory named {key.rsplit('/', 1)[-1]!r} is in the way")


def _parents_are_directories(storage: "Storage", project_id: str, path: str) -> None:
    # A file where a directory should be would make mkdir -p fail half-way.
    if not path:
        return
    segments = path.split("/")
    for i in range(1, len(segments) + 1):
        if storage.exists(project_key(project_id, "/".join(segments[:i]))):
            raise BadRequest(f"A file named {segments[i - 1]!r} is in the way of /{path}")


def stat_file(storage: "Storage", project_id: str, path: str, name: str):
    info = storage.stat(project_key(project_id, path, name))
    if info is None:
        raise NotFound(f"File /{path + '/' if path else ''}{name} does not exist")
    return info


def delete_file(storage: "Storage", project_id: str, path: str, name: str) -> int:
    info = stat_file(storage, project_id, path, name)
    storage.delete(project_key(project_id, path, name))
    return -info.size


def move_file(storage: "Storage", project_id: str, src_path: str, name: str, dst_path: str, dst_name: str) -> None:
    stat_file(storage, project_id, src_path, name)
    dst = project_key(project_id, dst_path, dst_name)
    src = project_key(project_id, src_path, name)
    if dst == src:
        return
    if storage.exists(dst) or storage.is_dir(dst):
        raise BadRequest(f"/{dst_path + '/' if dst_path else ''}{dst_name} already exists")
    _parents_are_directories(storage, project_id, dst_path)
    storage.make_dirs(project_key(project_id, dst_path))
    storage.move(src, dst)


def make_path(storage: "Storage", project_id: str, path: str) -> None:
    if not path:
        return
    _parents_are_directories(storage, project_id, path)
    storage.make_dirs(project_key(project_id, path))


def delete_path(storage: "Storage", project_id: str, path: str) -> int:
    if not path:
        raise BadRequest("The project root cannot be deleted")
    key = project_key(project_id, path)
    if not storage.is_dir(key):
        raise NotFound(f"Path /{path} does not exist")
    freed = storage.usage(key)
    storage.delete_tree(key)
    return -freed


def move_path(storage: "Storage", project_id: str, src: str, dst: str) -> None:
    if not src or not dst:
        raise BadRequest("The project root cannot be moved, nor anything moved onto it")
    if dst == src or dst.startswith(src + "/"):
        raise BadRequest("A path cannot be moved into itself")
    src_key, dst_key = project_key(project_id, src), project_key(project_id, dst)
    if not storage.is_dir(src_key):
        raise NotFound(f"Path /{src} does not exist")
    if storage.is_dir(dst_key) or storage.exists(dst_key):
        raise BadRequest(f"/{dst} already exists")
    parent = dst.rsplit("/", 1)[0] if "/" in dst else ""
    _parents_are_directories(storage, project_id, parent)
    if parent:
        storage.make_dirs(project_key(project_id, parent))
    try:
        storage.move_tree(src_key, dst_key)
    except FileExistsError:
        raise BadRequest(f"/{dst} already exists") from None
