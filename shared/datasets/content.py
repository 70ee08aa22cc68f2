"""A streaming content validator for Dataset uploads.

`validator_for(mime, filename)` returns a `ContentValidator`; call `feed(chunk)` as often as
needed, then `finish()`. Either raises `shared.errors.Unprocessable` (422) with a short reason a user
can read. A file name ending in `.gz` is inflated as it streams (a corrupt or truncated gzip stream
is a 422 too). Memory is bounded: nothing keeps more than one decompressed piece (1 MiB) plus one
partial line, and a line longer than `MAX_LINE` (1 MiB) is refused.

Rules: no type accepts empty content (0 bytes, or 0 bytes once inflated). SD-files, SMILES, CSV and
TSV are text in UTF-8 or latin-1 (so only NUL bytes are refused as "binary"), text/plain must be
valid UTF-8 without NUL, and binary accepts anything. After `finish()`, `records` holds the number
of SD-file records / SMILES lines / CSV-TSV data rows / text lines (None for binary). The checks of
each format are in `shared.datasets.format_checks`; the types and their file names are in
`shared.datasets.types`.
"""

from __future__ import annotations

import zlib
from typing import Any, Iterable

from shared.datasets.format_checks import (
    BinaryChecker,
    Checker,
    DelimitedChecker,
    SdfChecker,
    SmilesChecker,
    TextChecker,
)
from shared.datasets.types import FileType, check_filename, get_type, is_gzip_name
from shared.errors import Unprocessable, Unsupported

__all__ = [
    "MAX_LINE",
    "ContentValidator",
    "validate_bytes",
    "validate_chunks",
    "validator_for",
]

MAX_LINE = 1 << 20  # the longest line (in bytes, without its newline) a line-based check accepts
_OUT_PIECE = 1 << 20  # the most decompressed bytes produced (and held) at once


def _checker(mime: str, max_line: int) -> Checker:
    """The checker for an uploadable type (attach-only types have none)."""
    if mime == "chemical/x-mdl-sdfile":
        return SdfChecker(max_line)
    if mime == "chemical/x-daylight-smiles":
        return SmilesChecker(max_line)
    if mime == "text/csv":
        return DelimitedChecker(max_line, b",", "CSV file")
    if mime == "text/tab-separated-values":
        return DelimitedChecker(max_line, b"\t", "TSV file")
    if mime == "text/plain":
        return TextChecker(max_line)
    if mime == "application/octet-stream":
        return BinaryChecker()
    raise Unsupported(f"'{mime}' can only be a file's as_type; there is no upload check for it")


class ContentValidator:
    """Validates one upload as it streams: `feed` pieces, then `finish`; both raise `Unprocessable`.

    `size` counts the bytes fed (compressed, when the name ends in .gz), `content_size` the
    bytes checked (decompressed) and, once finished, `records` the records/lines/rows found (None
    for binary). After an error every later call raises the same error."""

    def __init__(
        self,
        file_type: FileType,
        filename: str,
        *,
        max_line: int = MAX_LINE,
        max_content_size: int | None = None,
    ) -> None:
        self.file_type = file_type
        self.filename = filename
        self.compressed = is_gzip_name(filename)
        self.size = 0
        self.content_size = 0
        self.max_content_size = max_content_size
        self._checker = _checker(file_type.mime, max_line)
        self._inflater = zlib.decompressobj(47) if self.compressed else None
        self._between_members = b""  # bytes after a complete gzip member, before the next header
        self._error: Unprocessable | None = None
        self._finished = False

    @property
    def records(self) -> int | None:
        return self._checker.records

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        if self._error is not None:
            raise self._error
        if self._finished:
            raise RuntimeError("feed() after finish()")
        n = chunk.nbytes if isinstance(chunk, memoryview) else len(chunk)
        if not n:
            return
        self.size += n
        try:
            if not self.compressed:
                if n <= _OUT_PIECE or isinstance(self._checker, BinaryChecker):
                    self._content(chunk, n)
                else:  # a huge piece: checkers copy what they get, so hand it over in slices
                    view = memoryview(chunk).cast("B")
                    for i in range(0, n, _OUT_PIECE):
                        piece = view[i : i + _OUT_PIECE]
                        self._content(piece, len(piece))
            else:
                self._inflate(chunk)
        except Unprocessable as exc:
            self._error = exc
            raise

    def finish(self) -> None:
        if self._error is not None:
            raise self._error
        if self._finished:
            return
        self._finished = True
        try:
            if self.size == 0:
                raise Unprocessable("The file is empty")
            if self.compressed:
                if self._inflater is not None and not self._inflater.eof:
                    raise Unprocessable("The gzip data is truncated")
                if self._between_members:
                    raise Unprocessable("The file has unexpected data after its gzip data")
            if self.content_size == 0:
                raise Unprocessable("The file is empty (once decompressed)")
            self._checker.end()
        except Unprocessable as exc:
            self._error = exc
            raise

    def _content(self, data, n: int) -> None:  # noqa: ANN001
        self.content_size += n
        if self.max_content_size is not None and self.content_size > self.max_content_size:
            raise Unprocessable(f"The file's content is larger than {self.max_content_size} bytes")
        self._checker.consume(data)

    def _inflate(self, data) -> None:  # noqa: ANN001
        while data:
            z = self._inflater
            if z is None:  # a gzip member ended: only another member may follow
                data = self._between_members + bytes(data)
                if len(data) < 2:
                    self._between_members = data
                    return
                if data[:2] != b"\x1f\x8b":
                    raise Unprocessable("The file has unexpected data after its gzip data")
                self._between_members = b""
                z = self._inflater = zlib.decompressobj(47)
            try:
                while True:
                    out = z.decompress(data, _OUT_PIECE)
                    if out:
                        self._content(out, len(out))
                    data = z.unconsumed_tail
                    if z.eof or (not data and len(out) < _OUT_PIECE):
                        break
            except zlib.error as exc:
                reason = str(exc).rsplit(": ", 1)[-1]
                if self.content_size == 0 and "header" in reason:
                    message = f"The file name ends in .gz but the content is not gzip data ({reason})"
                    raise Unprocessable(message) from None
                raise Unprocessable(f"The gzip data is corrupt ({reason})") from None
            if not z.eof:
                return
            data = z.unused_data
            self._inflater = None


def validator_for(
    mime: str, filename: str, *, max_line: int = MAX_LINE, max_content_size: int | None = None
) -> ContentValidator:
    """A validator for an upload of type `mime` named `filename`. Raises `Unsupported` (415) for an
    unknown or attach-only type and for a name without one of the type's extensions."""
    file_type = get_type(mime, uploadable=True)
    check_filename(file_type.mime, filename)
    return ContentValidator(file_type, filename, max_line=max_line, max_content_size=max_content_size)


def validate_chunks(mime: str, filename: str, chunks: Iterable[bytes], **options: Any) -> ContentValidator:
    """Validate a whole stream of pieces; returns the finished validator (for `records`, sizes)."""
    validator = validator_for(mime, filename, **options)
    for chunk in chunks:
        validator.feed(chunk)
    validator.finish()
    return validator


def validate_bytes(
    mime: str, filename: str, data: bytes, *, chunk_size: int = 1 << 20, **options: Any
) -> ContentValidator:
    """Validate content already in memory, fed in `chunk_size` pieces."""
    view = memoryview(data)
    pieces = (view[i : i + chunk_size] for i in range(0, len(view), chunk_size))
    return validate_chunks(mime, filename, pieces, **options)
