"""The `Storage` protocol every backend implements, and the values it returns.

Keys are '/'-separated relative paths (``projects/project-<uuid>/dir/file.txt``). Callers
validate user paths; the backends check again with `check_key` / `check_prefix` and raise
`ValueError`, so a slip upstream can never reach outside the store.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Iterable, Iterator, Protocol

CHUNK_SIZE = 1 << 20  # what open() yields: 1 MiB


@dataclasses.dataclass(frozen=True)
class FileInfo:
    """One file: its base name, size in bytes and last modification (aware, UTC)."""

    name: str
    size: int
    modified: datetime


@dataclasses.dataclass(frozen=True)
class Listing:
    """The immediate children of a directory, each list sorted by name."""

    files: list[FileInfo]
    dirs: list[str]


def check_key(key: str) -> str:
    """Return `key` if it is a relative path without empty, '.' or '..' segments, else raise ValueError."""
    if not isinstance(key, str) or not key or "\x00" in key or "\\" in key:
        raise ValueError(f"bad storage key: {key!r}")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(f"bad storage key: {key!r}")
    return key


def check_prefix(prefix: str) -> str:
    """Like `check_key`, but '' (the root) is allowed too."""
    return prefix if prefix == "" else check_key(prefix)


class Storage(Protocol):
    """A tree of files and directories addressed by keys.

    Directories exist on their own (an empty directory is kept). Names starting with
    a dot are listed like any other; hiding them is the caller's business.
    """

    def write(self, key: str, chunks: Iterable[bytes]) -> int:
        """Stream `chunks` into the file at `key`, replacing any old one; return the bytes written.

        Never holds the whole content in memory. Atomic: readers see the old file or the
        complete new one; if `chunks` raises, the error propagates and nothing new is left
        behind (no partial file, temporary file or upload). Parent directories are created.
        """
        ...

    def remove_unfinished(self, older_than: datetime) -> int:
        """Remove what writes cut short by a killed process left behind (a staging file, an
        unfinished multipart upload) untouched since before ``older_than``; return how many.

        Never visible as a file; a write still running may be touched more recently than that.
        """
        ...

    def open(self, key: str) -> Iterator[bytes]:
        """Return the file's content as 1 MiB chunks; raise FileNotFoundError now if it is missing."""
        ...

    def local_path(self, key: str) -> str | None:
        """Return the file's path on disk (for sendfile), or None if the backend has no such path."""
        ...

    def stat(self, key: str) -> FileInfo | None:
        """Return the file's `FileInfo`, or None if there is no file at `key`."""
        ...

    def exists(self, key: str) -> bool:
        """Return True if a file (not a directory) is at `key`."""
        ...

    def is_dir(self, prefix: str) -> bool:
        """Return True if the directory exists ('' is the root and always exists)."""
        ...

    def list_dir(self, prefix: str) -> Listing:
        """Return the immediate children of a directory; raise FileNotFoundError if it does not exist."""
        ...

    def make_dirs(self, prefix: str) -> None:
        """Create the directory and its parents (mkdir -p); existing ones are fine."""
        ...

    def delete(self, key: str) -> None:
        """Remove the file at `key`; raise FileNotFoundError if there is none. Its directory stays."""
        ...

    def delete_tree(self, prefix: str) -> None:
        """Remove a directory and everything under it; a missing directory is not an error."""
        ...

    def move(self, src_key: str, dst_key: str) -> None:
        """Move a file, replacing any file at `dst_key`; raise FileNotFoundError if `src_key` is missing."""
        ...

    def move_tree(self, src_prefix: str, dst_prefix: str) -> None:
        """Move a directory to a new path, creating its parents.

        Raises FileNotFoundError if the source is missing, FileExistsError if anything is
        already at the destination, ValueError if the destination lies inside the source.
        """
        ...

    def usage(self, prefix: str) -> int:
        """Return the total size in bytes of the files under a directory (0 if it is missing)."""
        ...
