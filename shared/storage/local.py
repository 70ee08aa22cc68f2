"""`Storage` on a local folder: keys are paths below the root.

The first two segments of a key name its unit (``projects/<id>``, ``datasets/<id>``), or the
first one on a project volume (``<id>``: `unit_depth` 1). A symbolic link inside a unit (a job may leave one in its project) is followed only while it
stays in that unit; a key that leads out of it is refused with `PathRefused`.
"""

from __future__ import annotations

import errno
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
WRITE_DIRECT = 1 << 20  # a chunk this large goes to the file as it is, never through the buffer
FLUSH_AHEAD = 8 << 20  # written bytes after which the disk is asked to start on them (sync_file_range)


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
        The disk starts on what is written while the rest still arrives (`_FileWriter`), so
        the final fsync waits only for the last few megabytes.
        """
        path = self._path(key)
        tmp = os.path.join(self._staging, uuid.uuid4().hex)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
            try:
                writer = _FileWriter(fd)
                for chunk in chunks:
                    writer.write(chunk)
                writer.flush()
                os.fsync(fd)
            finally:
                os.close(fd)
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
        return writer.written

    def adopt(self, other: "LocalStorage", src_key: str, dst_key: str) -> bool:
        """Move a file of another local store here by renaming it, when both lie on one file
        system; False (nothing done) when they do not, so the caller copies instead.

        Raises FileNotFoundError (``src_key``) when there is no such file in ``other``."""
        dst = self._path(dst_key)  # check both keys before touching anything
        try:
            src = other._file_path(src_key)
        except FileNotFoundError:
            raise FileNotFoundError(src_key) from None
        if os.stat(other.root).st_dev != os.stat(self.root).st_dev:
            return False
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        try:
            os.replace(src, dst)
        except OSError as exc:
            if exc.errno == errno.EXDEV:  # a mount point between: not one file system after all
                return False
            raise
        _fsync_dir(os.path.dirname(dst))
        return True

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


class _FileWriter:
    """Writes chunks to a file descriptor: large ones as they are (no copy), small ones gathered
    into `WRITE_BUFFER` first. Every `FLUSH_AHEAD` bytes the kernel is asked to start writing
    them to disk (Linux's sync_file_range, asynchronous), so an fsync at the end has little left."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.written = 0  # bytes handed to the file, pending ones included
        self.pending = bytearray()
        self._end = 0  # bytes in the file
        self._on_disk = 0  # offset up to which writeback was started
        self._flush_ahead = None  # resolved on the first large file only

    def write(self, chunk) -> None:
        size = len(chunk) if isinstance(chunk, (bytes, bytearray)) else memoryview(chunk).nbytes
        if not size:
            return
        if size >= WRITE_DIRECT:
            if self.pending:
                self._drain()
            self._write_all(chunk)
        else:
            if len(self.pending) + size > WRITE_BUFFER:
                self._drain()
            self.pending += chunk
        self.written += size

    def flush(self) -> None:
        if self.pending:
            self._drain()

    def _drain(self) -> None:
        self._write_all(self.pending)
        self.pending = bytearray()

    def _write_all(self, data) -> None:
        with memoryview(data) as view:
            view = view.cast("B") if view.format != "B" or view.ndim != 1 else view
            offset, size = 0, len(view)
            while offset < size:
                offset += os.write(self.fd, view[offset:])
        self._end = end = self._end + size
        if end - self._on_disk >= FLUSH_AHEAD:
            if self._flush_ahead is None:
                self._flush_ahead = _sync_file_range() or False
            if self._flush_ahead:
                self._flush_ahead(self.fd, self._on_disk, end - self._on_disk)
            self._on_disk = end


_SYNC_FILE_RANGE_WRITE = 2  # start writeback of the range's dirty pages; do not wait for it


def _sync_file_range():
    """``start(fd, offset, nbytes)``: asks Linux to begin writing a range to disk and returns at once
    (glibc's sync_file_range through ctypes, which lets go of the GIL); None where it is missing."""
    global _flush_ahead_fn
    if _flush_ahead_fn is not None:
        return _flush_ahead_fn or None
    _flush_ahead_fn = False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.sync_file_range
        call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
        call.restype = ctypes.c_int
    except (ImportError, OSError, AttributeError):
        return None

    def start(fd: int, offset: int, nbytes: int) -> None:
        call(fd, offset, nbytes, _SYNC_FILE_RANGE_WRITE)  # a hint only: the fsync at the end decides

    _flush_ahead_fn = start
    return start


_flush_ahead_fn = None


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
