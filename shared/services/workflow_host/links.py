"""Hard links on the project volume: what the engine asks of a step's instance directory.

A step runs in its instance directory (``.instance-<id>`` in its Project). The engine names the
prior steps' instances whose directories it reads (linked in under their own names, so the values
it passes, ``.instance-<prior>/file``, and its combiner glob, ``.instance-*``, resolve there), the
Project files it reads (linked in at the same relative path) and the files it leaves in the Project
(linked out when the step ends well). Links, not copies: same volume, no bytes moved.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from shared.errors import PermanentFailure
from shared.services import files
from shared.storage import paths

if TYPE_CHECKING:
    from shared.storage.base import Storage

INSTANCE_PREFIX = ".instance-"


def project_folder(storage: "Storage", project_id: str) -> Path:
    """The Project's folder on the volume."""
    found = storage.local_path(files.project_key(project_id))
    if not found:
        raise PermanentFailure("Workflow steps need the project volume (a POSIX folder)")
    return Path(found)


def instance_folder(project: Path, instance_id: str) -> Path:
    return project / ("." + instance_id)


def _link_file(project: Path, source: Path, target: Path) -> None:
    """``target`` becomes a hard link to ``source``, replacing what was there (a rerun's output)."""
    _check_folders(project, source.parent, target.parent, source.name)
    _place_link(source, target)


def _check_folders(project: Path, source_folder: Path, target_folder: Path, name: str = "") -> None:
    """Both folders, their links followed, inside the Project; the target folder made. A regular
    file listed in a folder lies where the folder does, so a folder is checked once for all its files."""
    if not (paths.inside(project, source_folder) and paths.inside(project, target_folder)):
        raise PermanentFailure(f"{name or source_folder.name} leads outside its Project folder")
    target_folder.mkdir(parents=True, exist_ok=True)


def _place_link(source: Path | str, target: Path | str) -> None:
    try:
        os.link(source, target, follow_symlinks=False)  # the usual case: nothing there yet
        return
    except FileExistsError:
        pass
    target = Path(target)
    temporary = target.with_name(f".{target.name}.link-{os.getpid()}")
    try:
        os.link(source, temporary, follow_symlinks=False)
        os.replace(temporary, target)
    finally:
        if temporary.exists():
            temporary.unlink()


def link_tree(project: Path, source: Path, target: Path) -> int:
    """Every regular file below ``source`` linked at the same place below ``target``; symbolic links
    are left out (they could lead anywhere), and so are the instance directories linked into
    ``source`` itself (an earlier step's, a step further back: not what the engine asked for)."""
    count = 0
    for folder, dirs, names in os.walk(source, followlinks=False):
        dirs[:] = [d for d in dirs if not d.startswith(INSTANCE_PREFIX)]
        files = [name for name in names if _regular(os.path.join(folder, name))]
        if not files:
            continue
        destination = target / Path(folder).relative_to(source)
        # once per folder, not per file: a fan-out links a prior folder of N files into N replicas
        _check_folders(project, Path(folder), destination)
        for name in files:
            _place_link(os.path.join(folder, name), os.path.join(destination, name))
            count += 1
    return count


def _regular(path: str) -> bool:
    """A regular file, not a symbolic link (one lstat)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def link_inputs(storage: "Storage", project_id: str, instance_id: str, *, instances: Iterable[str],
                project_files: Iterable[str]) -> None:
    """Before a step's pod starts: its prior instances and Project inputs linked into its directory."""
    project = project_folder(storage, project_id)
    own = instance_folder(project, instance_id)
    own.mkdir(parents=True, exist_ok=True)
    for prior in instances:
        source = instance_folder(project, prior)
        if source.is_dir():
            link_tree(project, source, own / source.name)
    for name in project_files:
        relative = paths.project_relative(name, f"The input {name!r}")
        if not relative:
            continue
        source = project / relative
        if source.is_dir():
            link_tree(project, source, own / relative)
        elif source.is_file() and not source.is_symlink():
            _link_file(project, source, own / relative)


def link_outputs(storage: "Storage", project_id: str, instance_id: str, names: Iterable[str]) -> list[str]:
    """After a step ended well: its Project outputs linked from its directory into the Project;
    returns those found (an output the job did not write is not there to link)."""
    project = project_folder(storage, project_id)
    own = instance_folder(project, instance_id)
    linked = []
    for name in names:
        relative = paths.project_relative(name, f"The output {name!r}")
        source = own / relative if relative else own
        if not relative or source.is_symlink():
            continue
        if source.is_dir():
            link_tree(project, source, project / relative)
        elif source.is_file():
            _link_file(project, source, project / relative)
        else:
            continue
        linked.append(relative)
    return linked


def output_values(storage: "Storage", project_id: str, instance_id: str, pattern: str) -> list[str]:
    """The files a step's output pattern (its rendered ``creates``, a glob) matched in its
    directory, relative to it, in order."""
    project = project_folder(storage, project_id)
    own = instance_folder(project, instance_id)
    relative = paths.project_relative(pattern, "An output pattern")
    if not relative:
        return []
    found = []
    for match in sorted(own.glob(relative)):
        if match.is_file() and not match.is_symlink() and paths.inside(own, match):
            found.append(match.relative_to(own).as_posix())
    return found
