"""`Storage` over two backends, chosen by key: project files on a volume, datasets in a store.

The project volume is a folder that job pods mount (one project's folder each, as its subPath);
it holds each project's folder at its top, so ``projects/<id>/a.txt`` is ``<id>/a.txt`` there.
``datasets/…`` keys go unchanged to the dataset store, a folder or a bucket. Every other key
(staged uploads) lives on the volume under a hidden folder, so a staged project file is renamed
into place on the same file system. A move between the two backends is a streamed copy, then a
delete: each write is atomic, so no reader sees a partial file, and a failed copy leaves nothing.
Two folders on one file system (the local stack's store and volume) are spared the copy: the
file is renamed from one to the other.
"""

from __future__ import annotations

from datetime import datetime
from typing import Iterable, Iterator

from .base import FileInfo, Listing, Storage, check_key, check_prefix
from .local import STAGING, LocalStorage

PROJECTS = "projects"
DATASETS = "datasets"
HIDDEN = ".dm"  # other keys, beside the project folders on the volume; never a project id


class RoutedStorage:
    """Keys under ``projects/`` on `projects` (a folder), ``datasets/`` on `datasets`, the rest hidden on the volume."""

    def __init__(self, projects: LocalStorage, datasets: Storage) -> None:
        self.projects = projects
        self.datasets = datasets

    def _route(self, key: str) -> tuple[Storage, str]:
        """The backend holding `key` and its key there ("" for the volume's root, ``projects``)."""
        head, _, rest = check_key(key).partition("/")
        if head == PROJECTS:
            if rest.split("/", 1)[0] in (HIDDEN, STAGING):
                raise ValueError(f"bad storage key: {key!r}")  # the volume's own folders
            return self.projects, rest
        if head == DATASETS:
            return self.datasets, key
        return self.projects, f"{HIDDEN}/{key}"

    def _file(self, key: str) -> tuple[Storage, str]:
        """Like `_route`, but ``projects`` itself is a directory, never a file."""
        backend, inner = self._route(key)
        if not inner:
            raise FileNotFoundError(key)
        return backend, inner

    def write(self, key: str, chunks: Iterable[bytes]) -> int:
        backend, inner = self._route(key)
        if not inner:
            raise IsADirectoryError(key)
        return backend.write(inner, chunks)

    def remove_unfinished(self, older_than: datetime) -> int:
        return self.projects.remove_unfinished(older_than) + self.datasets.remove_unfinished(older_than)

    def open(self, key: str) -> Iterator[bytes]:
        backend, inner = self._file(key)
        return backend.open(inner)

    def local_path(self, key: str) -> str | None:
        backend, inner = self._route(key)
        return backend.local_path(inner) if inner else self.projects.root

    def stat(self, key: str) -> FileInfo | None:
        backend, inner = self._route(key)
        return backend.stat(inner) if inner else None

    def exists(self, key: str) -> bool:
        backend, inner = self._route(key)
        return bool(inner) and backend.exists(inner)

    def is_dir(self, prefix: str) -> bool:
        if not check_prefix(prefix):
            return True
        backend, inner = self._route(prefix)
        return not inner or backend.is_dir(inner)

    def list_dir(self, prefix: str) -> Listing:
        if not check_prefix(prefix):
            return self._list_root()
        backend, inner = self._route(prefix)
        if inner:
            return backend.list_dir(inner)
        listing = self.projects.list_dir("")
        return Listing(listing.files, [d for d in listing.dirs if d != HIDDEN])

    def _list_root(self) -> Listing:
        """The keys' root: ``projects``, ``datasets`` (once it exists) and the hidden folder's content."""
        try:
            hidden = self.projects.list_dir(HIDDEN)
        except FileNotFoundError:
            hidden = Listing([], [])
        dirs = hidden.dirs + [PROJECTS] + ([DATASETS] if self.datasets.is_dir(DATASETS) else [])
        return Listing(hidden.files, sorted(dirs))

    def make_dirs(self, prefix: str) -> None:
        backend, inner = self._route(prefix)
        if inner:
            backend.make_dirs(inner)

    def delete(self, key: str) -> None:
        backend, inner = self._file(key)
        backend.delete(inner)

    def delete_tree(self, prefix: str) -> None:
        backend, inner = self._route(prefix)
        if inner:
            backend.delete_tree(inner)
            return
        listing = self.list_dir(PROJECTS)  # every project, not the volume's own folders
        for name in listing.dirs:
            self.projects.delete_tree(name)
        for info in listing.files:
            self.projects.delete(info.name)

    def move(self, src_key: str, dst_key: str) -> None:
        src, src_inner = self._file(src_key)
        dst, dst_inner = self._route(dst_key)
        if not dst_inner:
            raise IsADirectoryError(dst_key)
        if src is dst:
            src.move(src_inner, dst_inner)
            return
        if isinstance(src, LocalStorage) and isinstance(dst, LocalStorage):
            try:
                if dst.adopt(src, src_inner, dst_inner):  # two folders on one file system: a rename
                    return
            except FileNotFoundError:
                raise FileNotFoundError(src_key) from None
        if not src.exists(src_inner):
            raise FileNotFoundError(src_key)
        dst.write(dst_inner, src.open(src_inner))  # atomic: the old file or the whole new one
        src.delete(src_inner)

    def move_tree(self, src_prefix: str, dst_prefix: str) -> None:
        src, src_inner = self._route(src_prefix)
        dst, dst_inner = self._route(dst_prefix)
        if not src_inner or not dst_inner:
            raise ValueError(f"cannot move {src_prefix!r} to {dst_prefix!r}: {PROJECTS!r} is the volume itself")
        if src is dst:
            src.move_tree(src_inner, dst_inner)
            return
        # Different backends: the keys' first segments differ, so neither lies inside the other.
        if not src.is_dir(src_inner):
            raise FileNotFoundError(src_prefix)
        if dst.is_dir(dst_inner) or dst.exists(dst_inner):
            raise FileExistsError(dst_prefix)
        try:
            _copy_tree(src, src_inner, dst, dst_inner)
        except BaseException:
            dst.delete_tree(dst_inner)  # all or nothing: the source is untouched
            raise
        src.delete_tree(src_inner)

    def usage(self, prefix: str) -> int:
        if not check_prefix(prefix):
            return self.projects.usage("") + self.datasets.usage(DATASETS)
        backend, inner = self._route(prefix)
        if inner:
            return backend.usage(inner)
        return self.projects.usage("") - self.projects.usage(HIDDEN)


def _copy_tree(src: Storage, src_prefix: str, dst: Storage, dst_prefix: str) -> None:
    """Copy a directory, empty folders too, file by file (each streamed)."""
    dst.make_dirs(dst_prefix)
    pending = [""]
    while pending:
        rel = pending.pop()
        here = f"{src_prefix}/{rel}" if rel else src_prefix
        there = f"{dst_prefix}/{rel}" if rel else dst_prefix
        listing = src.list_dir(here)
        for info in listing.files:
            dst.write(f"{there}/{info.name}", src.open(f"{here}/{info.name}"))
        for name in listing.dirs:
            dst.make_dirs(f"{there}/{name}")
            pending.append(f"{rel}/{name}" if rel else name)
