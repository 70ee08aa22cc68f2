"""Paths users name, confined to their project: the one check every such path goes through.

Two halves. `project_relative` is lexical: it turns what a user typed (a job variable, a
working sub-path) into a clean path relative to the project root, or refuses it. `inside`
is for the host: it follows symbolic links (`os.path.realpath`) and says whether a path on
disk still lies in a folder. The local store and the local launcher use it, since both work
on the host's file system, where a link inside a project folder may point anywhere.
"""

from __future__ import annotations

import os
import re

from shared.errors import BadRequest

MAX_LENGTH = 1024
# C0, DEL and C1 controls, the Unicode line and paragraph separators, and lone surrogates (which no
# UTF-8 encoder takes): the one definition for paths and for every other name users give
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


class PathRefused(BadRequest, ValueError):
    """A path that would lead outside its project, or could not name a file in it.

    A `BadRequest` for the API (400 with the reason) and a `ValueError` for the storage
    contract, whose backends raise ValueError for keys they refuse.
    """


def has_control(value: str) -> bool:
    """Whether ``value`` holds a control character (see ``_CONTROL``)."""
    return _CONTROL.search(value) is not None


def refuse_bad_characters(value: str, what: str = "A path") -> None:
    """NUL and other control characters (a newline splits a log line or a header) and backslashes."""
    if has_control(value):
        raise PathRefused(f"{what} must not contain NUL bytes or other control characters")
    if "\\" in value:
        raise PathRefused(f"{what} must not contain backslashes")


def project_relative(value: object, what: str = "A path", *, mount: str | None = None) -> str:
    """``value`` as a clean path relative to the project root ("" is the root itself).

    Accepted: relative paths (``a/b.sdf``, ``./a``) and, when ``mount`` is given, absolute
    paths at or below it: the project as the container sees it (``/data/a/b.sdf`` for the
    mount ``/data``). Refused: any other absolute path, ``..`` segments, empty segments
    (``a//b``), backslashes, NUL and other control characters. ``what`` names the value in
    the error, e.g. "The variable 'outputFile'".
    """
    if not isinstance(value, str) or not value:
        raise PathRefused(f"{what} must be a path in the project")
    if len(value) > MAX_LENGTH:
        raise PathRefused(f"{what} must be at most {MAX_LENGTH} characters long")
    refuse_bad_characters(value, what)
    text = value
    if text.startswith("/"):
        root = mount.rstrip("/") if mount else None  # "" for a mount at "/"
        if root is None or not (text == root or text.startswith(root + "/")):
            shown = f" (the project is at {mount})" if mount else ""
            raise PathRefused(f"{what} must be a path relative to the project, not {value[:80]!r}{shown}")
        text = text[len(root):].lstrip("/")
        if not text:
            return ""
    segments = text[:-1].split("/") if text.endswith("/") else text.split("/")
    if any(s in ("", "..") for s in segments):
        raise PathRefused(f"{what} must not contain '..' or empty segments: {value[:80]!r}")
    return "/".join(s for s in segments if s != ".")


def inside(folder: str | os.PathLike, path: str | os.PathLike) -> bool:
    """Whether ``path``, its symbolic links followed, lies in ``folder`` (or is it).

    Paths that do not exist yet are resolved as far as they exist, so a file about to be
    written below a linked folder is judged by where the link leads.
    """
    real_folder = os.path.realpath(folder)
    real = os.path.realpath(path)
    return real == real_folder or real.startswith(real_folder.rstrip(os.sep) + os.sep)
