"""A job's variables as a launch takes them: which are paths, and their values kept in the project.

A job definition types its variables in three blocks (jobs.md §1.2): every input is a file
(``file``, ``files``, ``molecules-smi``: project-relative paths), every output names a file
the job creates, and options are JSON-Schema values among which file names are strings by
convention only. So an option counts as a path when an output's ``creates`` template uses it
(``'{{ outputBaseName }}.png'``), when it shares its name with an output (``outputFile``),
when its name says so (``...File``, ``...Dir``, ``...Path``) or when its ``pattern`` lets a
'/' through (the file-name convention ``^[A-Za-z0-9_/\\.\\-]+$``). Each of their values goes
through `shared.storage.paths.project_relative`; the command then sees the clean relative form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.errors import BadRequest
from shared.storage.paths import PathRefused, project_relative

PATH_SUFFIXES = ("file", "files", "dir", "dirs", "directory", "directories", "path", "paths", "folder")
BUILT_IN = ("DM_INSTANCE_DIRECTORY",)


@dataclass
class Confined:
    """The variables with every path value made project-relative, and those paths by variable."""

    values: dict[str, Any]
    paths: dict[str, list[str]] = field(default_factory=dict)


def template_names(template: str) -> set[str]:
    """The variables a Jinja2 template refers to (an unparsable template refers to none)."""
    import jinja2
    from jinja2 import meta

    try:
        return set(meta.find_undeclared_variables(jinja2.Environment().parse(template or "")))
    except jinja2.TemplateError:
        return set()


def _blocks(declared: dict) -> tuple[dict, dict, dict]:
    def properties(name: str) -> dict:
        block = declared.get(name) or {}
        found = block.get("properties") if isinstance(block, dict) else None
        return found if isinstance(found, dict) else {}

    return properties("inputs"), properties("outputs"), properties("options")


def path_names(declared: dict) -> dict[str, str]:
    """Every variable that holds project paths, with its block: "input", "output" or "option"."""
    inputs, outputs, options = _blocks(declared)
    found = {name: "input" for name in inputs}
    created: set[str] = set()
    for name, output in outputs.items():
        found.setdefault(name, "output")
        if isinstance(output, dict):
            created |= template_names(str(output.get("creates") or ""))
    for name, option in options.items():
        option = option if isinstance(option, dict) else {}
        pattern = str(option.get("pattern") or (option.get("items") or {}).get("pattern") or "")
        if (name in created or name in outputs or name.lower().endswith(PATH_SUFFIXES)
                or ("/" in pattern and "://" not in pattern)):
            found[name] = "option"
    return found


def refuse_undeclared(declared: dict, variables: dict, command: str) -> dict:
    """Only declared variables reach the command; others it uses are refused, the rest dropped.

    A caller could otherwise give a value to a name the template uses but the job never
    declared (``CODE_DIRECTORY``, a built-in), which no check would look at.
    """
    inputs, outputs, options = _blocks(declared)
    known = set(inputs) | set(outputs) | set(options)
    used = template_names(command)
    for name in sorted(set(variables) - known):
        if name in used or name in BUILT_IN:
            raise BadRequest(f"The variable '{name}' is not one the job declares")
    return {k: v for k, v in variables.items() if k in known}


def confine(declared: dict, variables: dict, mount: str) -> Confined:
    """Check every path variable's value (or list of values) and make it project-relative.

    ``mount`` is the image's project-directory: an absolute value below it is the project as
    the container sees it, and is accepted. Raises `PathRefused` naming the variable.
    """
    values = dict(variables)
    out = Confined(values)
    for name, value in variables.items():
        if any(isinstance(v, str) and "\x00" in v for v in (value if isinstance(value, list) else [value])):
            raise PathRefused(f"The variable '{name}' must not contain NUL bytes")
    for name, block in path_names(declared).items():
        value = variables.get(name)
        if value is None or value == "" or value == []:
            continue
        what = f"The {block} '{name}'"
        items = value if isinstance(value, list) else [value]
        clean = []
        for item in items:
            if not isinstance(item, str):
                raise PathRefused(f"{what} must be a path in the project")
            relative = project_relative(item, what, mount=mount)
            clean.append(relative or ".")
        values[name] = clean if isinstance(value, list) else clean[0]
        out.paths[name] = clean
    return out
