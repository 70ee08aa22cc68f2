"""`Storage` on a local folder: keys are paths below the root.

The first two segments of a key name its unit (``projects/<id>``, ``datasets/<id>``), or the
first one on a project volume (``<id>``: `unit_depth` 1). A symbolic link inside a unit (a job may leave one in its project) is followed only while it
stays in that unit; a key that leads out of it is refused with `PathRefused`.
"""

from __future__ import annotations

import os
import shutil
import stat as stat_mod
import uuid
from datetime import datetime, timezone
from typing import BinaryIO, Iterable, Iterator

from .base import CHUNK_SIZE, FileInfo, Listing, check_key, check_prefix
from .paths import PathRefused, inside

STAGING = ".staging"  # under the root, so os.replace stays on one filesystem
WRITE_BUFFER = 4 << 20  # gathers small upload chunks into few large writes


class LocalStorage:
    """Files and directories in a folder; writes are staged and renamed into place."""

    def __init__(self, root: str, unit_depth: int = 2) -> None:
        self.root = os.path.abspath(root)
        self._unit_depth = unit_depth
        self._staging = os.path.join(self.root, STAGING)
        os.makedirs(self._staging, exist_ok=True)

    def _path(self, key: str) -> str:
        parts = check_key(key).split("/")
        path = os.path.join(self.root, *parts)
        depth = self._unit_depth
        if len(parts) > depth and not inside(os.path.join(self.root, *parts[:depth]), path):
            raise PathRefused(f"/{'/'.join(parts[depth:])[:200]} leads outside its project (a symbolic link)")
        return path

    def _dir_path(self, prefix: str) -> str:
        return self._path(check_prefix(prefix)) if prefix else self.root

    def _file_path(self, key: str) -> str:
        """The path of an existing regular file; directories count as missing, as on S3."""
        path = self._path(key)
        if not os.path.isfile(path):
            raise FileNotFoundError(key)
        return path

    def write(self, key: str, chunks: Iterable[bytes]) -> int:
        """Stream into a staging file, then rename it over the key.

        The content is flushed to disk before the rename and the rename after it, so neither
        a killed process nor a power cut leaves a partial file under the key; a process killed
        mid-write leaves its staging file, which `remove_unfinished` clears once it is old.
        """
        path = self._path(key)
        tmp = os.path.join(self._staging, uuid.uuid4().hex)
        written = 0
        try:
            with open(tmp, "xb", buffering=WRITE_BUFFER) as f:
                for chunk in chunks:
                    f.write(chunk)
                    written += len(chunk)
                f.flush()
                os.fsync(f.fileno())
            folder = os.path.dirname(path)
            os.makedirs(folder, exist_ok=True)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        _fsync_dir(folder)
        return written

    def remove_unfinished(self, older_than: datetime) -> int:
        """Delete staging files last written before ``older_than``: their writers died."""
        cutoff = older_than.timestamp()
        removed = 0
        try:
            entries = list(os.scandir(self._staging))
        except FileNotFoundError:
            return 0
        for entry in entries:
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:  # finished or removed meanwhile
                pass
        return removed

    def open(self, key: str) -> Iterator[bytes]:
        """Open now (so a missing file raises here), read lazily."""
        return _read_chunks(open(self._file_path(key), "rb", buffering=0))

    def local_path(self, key: str) -> str | None:
        """The file's path on disk, whether or not it exists."""
        return self._path(key)

    def stat(self, key: str) -> FileInfo | None:
        """Size and mtime of a regular file."""
        try:
            st = os.stat(self._path(key))
        except (FileNotFoundError, NotADirectoryError):
            return None
        return _info(key.rsplit("/", 1)[-1], st) if stat_mod.S_ISREG(st.st_mode) else None

    def exists(self, key: str) -> bool:
        """True for a regular file."""
        return os.path.isfile(self._path(key))

    def is_dir(self, prefix: str) -> bool:
        """True for an existing folder."""
        return os.path.isdir(self._dir_path(prefix))

    def list_dir(self, prefix: str) -> Listing:
        """Immediate files and folders, without the staging folder."""
        files: list[FileInfo] = []
        dirs: list[str] = []
        try:
            entries = list(os.scandir(self._dir_path(prefix)))
        except (FileNotFoundError, NotADirectoryError):
            raise FileNotFoundError(prefix) from None
        scope = os.path.join(self.root, *prefix.split("/")[: self._unit_depth]) if prefix else None
        for entry in entries:
            if not prefix and entry.name == STAGING:
                continue
            if entry.is_symlink() and scope is not None and not inside(scope, entry.path):
                continue  # a link out of its project is not shown (nor followed)
            if entry.is_dir():
                dirs.append(entry.name)
            elif entry.is_file():
                files.append(_info(entry.name, entry.stat()))
        return Listing(sorted(files, key=lambda f: f.name), sorted(dirs))

    def make_dirs(self, prefix: str) -> None:
        """mkdir -p."""
        os.makedirs(self._path(prefix), exist_ok=True)

    def delete(self, key: str) -> None:
        """Unlink a regular file."""
        os.unlink(self._file_path(key))

    def delete_tree(self, prefix: str) -> None:
        """rm -rf of a folder."""
        path = self._path(prefix)
        if os.path.isdir(path):
            shutil.rmtree(path)

    def move(self, src_key: str, dst_key: str) -> None:
        """Rename a file, replacing the destination."""
        dst = self._path(dst_key)  # check both keys before touching anything
        src = self._file_path(src_key)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        os.replace(src, dst)
        _fsync_dir(os.path.dirname(dst))  # a stored version's move is recorded as done right after

    def move_tree(self, src_prefix: str, dst_prefix: str) -> None:
        """Rename a folder."""
        src, dst = self._path(src_prefix), self._path(dst_prefix)
        if dst_prefix == src_prefix or dst_prefix.startswith(src_prefix + "/"):
            raise ValueError(f"cannot move {src_prefix!r} into itself")
        if not os.path.isdir(src):
            raise FileNotFoundError(src_prefix)
        if os.path.lexists(dst):
            raise FileExistsError(dst_prefix)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        os.rename(src, dst)

    def usage(self, prefix: str) -> int:
        """Sum of file sizes below the folder (staged uploads are not counted)."""
        # scandir's entries know their type without a stat; read through a folder's descriptor,
        # each file's stat is relative to it (no path walked again): one system call a file.
        # Only the paths of folders still to visit are held, never their descriptors.
        total, pending = 0, [self._dir_path(prefix)]
        while pending:
            folder = pending.pop()
            try:
                fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            except (FileNotFoundError, NotADirectoryError):  # removed while we walked
                continue
            try:
                with os.scandir(fd) as entries:
                    for entry in entries:
                        try:
                            if entry.is_dir(follow_symlinks=False):
                                if not (folder == self.root and entry.name == STAGING):
                                    pending.append(os.path.join(folder, entry.name))
                            else:
                                total += entry.stat(follow_symlinks=False).st_size
                        except FileNotFoundError:
                            pass
            finally:
                os.close(fd)
        return total


def _fsync_dir(folder: str) -> None:
    """Make a rename in ``folder`` durable (where the platform can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on a folder; the rename stands regardless
        pass
    finally:
        os.close(fd)


def _read_chunks(f: BinaryIO) -> Iterator[bytes]:
    with f:
        while chunk := f.read(CHUNK_SIZE):
            yield chunk


def _info(name: str, st: os.stat_result) -> FileInfo:
    return FileInfo(name, st.st_size, datetime.fromtimestamp(st.st_mtime, timezone.utc))
