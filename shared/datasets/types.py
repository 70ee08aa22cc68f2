"""The file-type catalogue (dm-api §1.8, §2.4 `TypeSummary`, §3.14 `GET /type`).

`TYPES` maps a MIME type to its `FileType`. It is the authority for `dataset_type` (`POST`/`PUT
/dataset`), `as_type` (`POST /file`) and for file-name checks. Every extension a type permits is
listed with and without `.gz` (a pre-compressed upload), e.g. `('.sdf', '.sdf.gz')`.

`application/octet-stream` takes a file of ANY name: its `file_extensions` lists the usual ones
(and is what `GET /type` advertises), while `FileType.any_extension = True` says the list is not a
restriction. `check_filename` then returns the name's own last suffix (plus `.gz`), or `""`.

Types with `uploadable = False` (molfile, PDB) have no formatter: they are targets for `as_type`
only, and `GET /type` omits their formatter fields. `formatter_image` only documents which
formatter a full DM would run: the local stack checks content in-process, with the validators in
`shared.datasets.content`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from shared.errors import Unsupported

__all__ = [
    "TYPES",
    "FileType",
    "check_filename",
    "get_type",
    "is_gzip_name",
    "types_response",
]


@dataclass(frozen=True)
class FileType:
    """One supported MIME type. `formatter_options` is a JSON schema for `format_extra_variables`."""

    mime: str
    file_extensions: tuple[str, ...]
    formatter_image: str | None = None
    formatter_supports_db_load: bool = False
    formatter_options: dict[str, Any] | None = field(default=None, hash=False)
    uploadable: bool = True
    any_extension: bool = False  # True: file_extensions are examples, any file name is accepted

    def summary(self) -> dict[str, Any]:
        """This type as a `TypeSummary` (formatter fields only for types that have a formatter)."""
        out: dict[str, Any] = {"mime": self.mime, "file_extensions": list(self.file_extensions)}
        if self.formatter_image is not None:
            out["formatter_image"] = self.formatter_image
            out["formatter_supports_db_load"] = self.formatter_supports_db_load
            if self.formatter_options is not None:
                out["formatter_options"] = copy.deepcopy(self.formatter_options)
        return out


def _options(title: str, properties: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"title": title, "type": "object", "required": [], "properties": properties or {}}


def _exts(*names: str) -> tuple[str, ...]:
    return tuple(e for name in names for e in (name, name + ".gz"))


_CATALOGUE = (
    FileType(
        "chemical/x-mdl-sdfile",
        _exts(".sdf"),
        "informaticsmatters/dm-format-sdf:1",
        True,
        _options(
            "SD-file formatter options",
            {
                "id_field": {
                    "title": "Identifier field",
                    "description": "The SD-file property holding each molecule's identifier"
                    " (the record's title line when not given)",
                    "type": "string",
                    "maxLength": 80,
                }
            },
        ),
    ),
    FileType(
        "chemical/x-daylight-smiles",
        _exts(".smi", ".smiles"),
        "informaticsmatters/dm-format-smiles:1",
        True,
        _options("SMILES formatter options"),
    ),
    FileType(
        "text/csv",
        _exts(".csv"),
        "informaticsmatters/dm-format-csv:1",
        False,
        _options("CSV formatter options"),
    ),
    FileType(
        "text/tab-separated-values",
        _exts(".tsv"),
        "informaticsmatters/dm-format-tsv:1",
        False,
        _options("TSV formatter options"),
    ),
    FileType(
        "text/plain",
        _exts(".txt"),
        "informaticsmatters/dm-format-text:1",
        False,
        _options("Text formatter options"),
    ),
    FileType(
        "application/octet-stream",
        _exts(".bin", ".dat"),
        "informaticsmatters/dm-format-binary:1",
        False,
        _options("Binary formatter options"),
        any_extension=True,
    ),
    FileType("chemical/x-mdl-molfile", _exts(".mol"), uploadable=False),
    FileType("chemical/x-pdb", _exts(".pdb"), uploadable=False),
)

TYPES: dict[str, FileType] = {t.mime: t for t in _CATALOGUE}


def get_type(mime: str | None, *, uploadable: bool = False) -> FileType:
    """The catalogue entry for `mime` (case-insensitive); `Unsupported` (415) when unknown, or
    when `uploadable` is asked for and Datasets cannot be made of that type."""
    key = (mime or "").strip().lower()
    found = TYPES.get(key)
    if found is None:
        shown = repr(mime[:100]) if mime else "none"
        raise Unsupported(f"Unsupported file type {shown}; supported types: {', '.join(TYPES)}")
    if uploadable and not found.uploadable:
        ok = ", ".join(t.mime for t in _CATALOGUE if t.uploadable)
        raise Unsupported(f"'{found.mime}' can only be a file's as_type; Datasets can be uploaded as: {ok}")
    return found


def is_gzip_name(filename: str) -> bool:
    """Whether a file name says its content is gzip-compressed."""
    return filename.lower().endswith(".gz")


def check_filename(mime: str, filename: str) -> str:
    """The canonical (lower-case) extension `filename` carries for type `mime`, e.g. '.sdf.gz'.

    Raises `Unsupported` (415) for an unknown type or a name without one of the type's extensions
    (the part before the extension must not be empty)."""
    ft = get_type(mime)
    low = (filename or "").lower()
    for ext in sorted(ft.file_extensions, key=len, reverse=True):
        if low.endswith(ext) and len(low) > len(ext):
            return ext
    if ft.any_extension and low:
        gz = low.endswith(".gz")
        base = low[:-3] if gz else low
        dot = base.rfind(".")
        return (base[dot:] if dot > 0 else "") + (".gz" if gz else "")
    raise Unsupported(
        f"The file name {filename[:128]!r} does not suit type '{ft.mime}':"
        f" it must end with {', '.join(ft.file_extensions)}"
    )


def types_response() -> dict[str, Any]:
    """The body of `GET /type` (`TypesGetResponse`)."""
    types = [t.summary() for t in _CATALOGUE]
    return {"count": len(types), "types": types}
