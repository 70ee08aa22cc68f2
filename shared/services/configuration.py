"""What the service tells clients about itself: its input handlers and the job-definition schema version."""

from __future__ import annotations

import functools

DECODER_DISTRIBUTION = "im-data-manager-job-decoder"

# How a job's input variables are read when an instance is launched (`instances._check_inputs`),
# by the input `type` a job definition declares (the job decoder's schema allows file, files
# and molecules-smi). Keep these in step with that function.
INPUT_HANDLERS = (
    ("file", (
        "A single Project file.\n\n"
        "The value is the file's path relative to the Project root, without a leading `/` "
        "(e.g. `data/ligands.sdf`). The file must exist in the Project when the instance is "
        "launched, the path may not leave the Project (`..`), and a list is refused unless the "
        "input declares `multiple: true`. An input named in the job's `required` list must be given. "
        "Inputs of a type with no handler of its own (such as `molecules-smi`) are read this way too."
    )),
    ("files", (
        "One or more Project files.\n\n"
        "The value is a list of paths relative to the Project root (a single path is accepted "
        "too), each without a leading `/`. Every file must exist in the Project when the "
        "instance is launched, and no path may leave the Project (`..`). An input named in the "
        "job's `required` list must be given and not be empty."
    )),
)


def input_handlers() -> dict:
    """An ``InputHandlerGetResponse``."""
    items = [{"input_type": kind, "documentation": text} for kind, text in INPUT_HANDLERS]
    return {"count": len(items), "input_handlers": items}


@functools.lru_cache(maxsize=1)
def job_definition_schema_version() -> str:
    """The version of the installed job decoder, whose schema job definitions are checked against."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DECODER_DISTRIBUTION)
    except PackageNotFoundError:  # not installed: job definitions cannot be checked at all
        return "unknown"
