"""Streaming multipart/form-data reading: file parts go straight to storage, never to memory.

Uploads are the API's biggest requests, so the body is read into one reused buffer
(``readinto``; straight from gunicorn's socket when it serves us) and parts are cut
out of it with ``bytearray.find``: the bytes are copied once on their way to storage.
Text fields are held in memory, so they are bounded (`FormLimits`): each one, how many
parts, and all of them together. A body refused part way is read to its end through
the same buffer, so the framework (which reads what is left after the response) finds
nothing left to hold in memory. `bound_forms` puts the other routes' ``request.form``
under the same kind of limits, multipart and URL-encoded alike.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Callable, Iterator
from urllib.parse import parse_qsl, unquote_plus

import werkzeug.urls  # noqa: F401 - registers the "werkzeug.url_quote" decoding error handler
from werkzeug.formparser import FormDataParser
from werkzeug.http import parse_options_header

from shared.errors import BadRequest, TooLarge

BUFFER_SIZE = 4 * 1024 * 1024
MAX_HEADER_BYTES = 16 * 1024
_DISPOSITION = re.compile(rb"^content-disposition:(.*)$", re.IGNORECASE | re.MULTILINE)


@dataclasses.dataclass(frozen=True)
class FormLimits:
    """What a form's text fields may hold in memory; more answers 413 naming the field."""

    field_bytes: int  # one text field (UTF-8 bytes, as sent)
    parts: int  # parts of any kind, files included
    fields_bytes: int  # all text fields together, their names included


# The upload forms (POST /dataset, PUT /project/{id}/file) carry a few short fields:
# dataset_type, unit_id, dataset_id, as_filename, path, skip_molecule_load and
# format_extra_variables (a formatter's options, a small JSON object).
UPLOAD_FORM = FormLimits(field_bytes=64 * 1024, parts=32, fields_bytes=256 * 1024)
MULTIPART_SLACK = 64 * 1024  # room for the form fields and part headers around the file


def refuse_oversize(request, max_file_bytes: int) -> None:
    """Refuse a body whose declared length cannot hold a file within the limit, before reading it."""
    if request.content_length is not None and request.content_length > max_file_bytes + MULTIPART_SLACK:
        raise TooLarge(f"The upload is larger than the limit of {max_file_bytes} bytes")


def stream_form(
    request,
    on_file: Callable[[str, str, Iterator[memoryview], dict[str, str]], object],
    max_file_bytes: int,
    limits: FormLimits = UPLOAD_FORM,
) -> tuple[dict[str, str], dict[str, object]]:
    """Read a multipart body; each file part is handed to ``on_file(name, filename, chunks, fields)``.

    ``fields`` holds the text fields read so far, so a consumer can refuse early.

    Returns the text fields and what ``on_file`` returned per file field. A chunk is
    only valid until the next one is asked for (the buffer is reused). A file part
    larger than ``max_file_bytes`` raises TooLarge while ``on_file`` consumes it, so the
    consumer can discard what it wrote. Text fields beyond ``limits`` raise TooLarge.
    """
    mimetype, options = parse_options_header(request.content_type or "")
    if mimetype != "multipart/form-data":
        raise BadRequest("The request body must be multipart/form-data with a boundary")
    body = body_reader(request)
    try:
        parser = _Parser(body.readinto, _boundary(options), limits)
        return parser.parse_or_discard(on_file, max_file_bytes)
    finally:
        body.close()


def _boundary(options: dict[str, str]) -> bytes:
    boundary = options.get("boundary", "").encode("latin-1")
    if not boundary or len(boundary) > 200:
        raise BadRequest("The request body must be multipart/form-data with a boundary")
    return boundary


class _Parser:
    def __init__(self, readinto: Callable[[memoryview], int], boundary: bytes, limits: FormLimits,
                 buffer_size: int = BUFFER_SIZE):
        self.readinto = readinto
        self.buf = bytearray(buffer_size)  # holds a whole part header: more than MAX_HEADER_BYTES
        self.view = memoryview(self.buf)
        self.start = 0  # unread data is buf[start:end]
        self.end = 0
        self.eof = False
        self.delimiter = b"\r\n--" + boundary
        self.limits = limits
        self.pairs: list[tuple[str, str]] = []  # every text field, repeats too
        self.fields_bytes = 0

    def parse_or_discard(self, on_file, max_file_bytes: int):
        """`parse`; when it raises, the rest of the body is read and dropped first."""
        try:
            return self.parse(on_file, max_file_bytes)
        except BaseException:
            _discard(lambda: not self.eof and self.readinto(self.view) > 0)
            raise

    def fill(self) -> None:
        """Move unread data to the front and read more behind it."""
        if self.eof:
            raise BadRequest("Malformed multipart body: it ended early")
        if self.start:
            size = self.end - self.start
            self.buf[:size] = self.view[self.start:self.end]
            self.start, self.end = 0, size
        if self.end == len(self.buf):
            raise BadRequest("Malformed multipart body: a part header is too long")
        n = self.readinto(self.view[self.end:])
        if not n:
            self.eof = True
        self.end += n

    def find(self, needle: bytes, limit: int) -> int:
        """Index (in buf) of ``needle`` in the unread data, reading on as needed."""
        while True:
            i = self.buf.find(needle, self.start, self.end)
            if i >= 0:
                return i
            if self.end - self.start > limit:
                raise BadRequest("Malformed multipart body: a part header is too long")
            self.fill()

    def parse(self, on_file, max_file_bytes: int):
        fields: dict[str, str] = {}
        files: dict[str, object] = {}
        count = 0
        # The first delimiter has no CRLF before it when the body starts with it.
        self.fill()
        first = self.delimiter[2:]
        i = self.find(first, MAX_HEADER_BYTES)
        self.start = i + len(first)
        while True:
            while self.end - self.start < 2:
                self.fill()
            after = bytes(self.view[self.start:self.start + 2])
            if after == b"--":
                return fields, files
            if after != b"\r\n":
                raise BadRequest("Malformed multipart body: bad delimiter line")
            self.start += 2
            h = self.find(b"\r\n\r\n", MAX_HEADER_BYTES)
            name, filename = _disposition(bytes(self.view[self.start:h]))
            self.start = h + 4
            count += 1
            if count > self.limits.parts:
                raise TooLarge(f"The form has more than {self.limits.parts} parts (refused at {_shown(name)})")
            if filename is None:
                fields[name] = self._field(name)
                self.pairs.append((name, fields[name]))
            else:
                chunks = self._part(max_file_bytes)
                files[name] = on_file(name, filename, chunks, fields)
                for _ in chunks:  # a consumer that stopped early: read past the rest
                    pass

    def _part(self, limit: int, too_large: Exception | None = None) -> Iterator[memoryview]:
        """The current part's data, up to (and past) the next delimiter."""
        keep = len(self.delimiter) - 1  # a delimiter may straddle two reads
        bare = self.delimiter[2:]
        while self.end - self.start < len(bare) and not self.eof:
            self.fill()
        if self.buf.startswith(bare, self.start):
            # an empty part some encoders write without the CRLF before the delimiter
            self.start += len(bare)
            return
        size = 0
        while True:
            i = self.buf.find(self.delimiter, self.start, self.end)
            stop = i if i >= 0 else max(self.start, self.end - keep)
            if stop > self.start:
                size += stop - self.start
                if size > limit:
                    raise too_large or TooLarge(f"The file is larger than the limit of {limit} bytes")
                chunk = self.view[self.start:stop]
                self.start = stop
                yield chunk
            if i >= 0:
                self.start = i + len(self.delimiter)
                return
            self.fill()

    def _field(self, name: str) -> str:
        limits = self.limits
        room = limits.fields_bytes - self.fields_bytes - len(name)
        if room < limits.field_bytes:
            limit, too_large = room, TooLarge(
                f"The form's text fields together are larger than {limits.fields_bytes} bytes "
                f"(refused at {_shown(name)})")
            if room < 0:  # its name alone is too much
                raise too_large
        else:
            limit, too_large = limits.field_bytes, TooLarge(
                f"The form field {_shown(name)} is too long: at most {limits.field_bytes} bytes")
        data = bytearray()
        for chunk in self._part(limit, too_large):
            data += chunk
        self.fields_bytes += len(data) + len(name)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest(f"Form fields must be UTF-8 text, and {_shown(name)} is not") from None


def _discard(read_more: Callable[[], bool]) -> None:
    """Read a refused body to its end, a buffer at a time: the framework reads what is left
    after the response (so the client sees it), and would hold all of that in memory."""
    try:
        while read_more():
            pass
    except Exception:  # noqa: BLE001 - the client went away: nothing left to read
        pass


def _shown(name: str) -> str:
    """A field name as an error message quotes it (a sender chooses its length)."""
    return repr(name if len(name) <= 80 else name[:80] + "...")


def _disposition(headers: bytes) -> tuple[str, str | None]:
    match = _DISPOSITION.search(headers)
    if not match:
        raise BadRequest("Malformed multipart body: a part has no Content-Disposition")
    value, options = parse_options_header(match.group(1).strip().decode("utf-8", "replace"))
    if value.lower() != "form-data" or "name" not in options:
        raise BadRequest("Malformed multipart body: a part is not form-data with a name")
    return options["name"], options.get("filename")


# --- form bodies read through request.form: every route but the two uploads ----------------

# The largest text fields there are metadata's JSON (meta_properties and annotations, at most
# 256 Ki characters each by shared.services.metadata.MAX_JSON_TEXT: up to 1 MiB in UTF-8) and an
# instance's specification; no operation takes more than about a dozen fields.
FORM = FormLimits(field_bytes=1024 * 1024, parts=64, fields_bytes=4 * 1024 * 1024)
FORM_BUFFER = 64 * 1024
PERCENT_ENCODING = 3  # a URL-encoded byte takes up to three on the wire ("%XX")


def bound_forms(request) -> None:
    """Have ``request.form`` parse with `FORM`'s limits, a buffer at a time; call before it is read.

    werkzeug's own parser would keep up to 1000 multipart fields of 500 kB each and read a
    URL-encoded body whole. The request's own limits say `FORM`'s too, for anything reading them.
    """
    request.form_data_parser_class = _BoundedFormParser
    request.max_form_memory_size = FORM.field_bytes
    request.max_form_parts = FORM.parts


def discard_unread(request) -> None:
    """Read what is left of the body and drop it, a buffer at a time: functions-framework reads the
    rest after every response (so a client still sending is not cut off) and would hold all of it."""
    stream = request.stream
    _discard(lambda: bool(stream.read(FORM_BUFFER)))


class _BoundedFormParser(FormDataParser):
    def _parse_multipart(self, stream, mimetype, content_length, options):
        try:
            parser = _Parser(_StreamBody(stream).readinto, _boundary(options), FORM, FORM_BUFFER)
            parser.parse_or_discard(_read_past, FORM.fields_bytes)
        except BadRequest as exc:  # as werkzeug's parser: a malformed (or absent) form reads as empty
            raise ValueError(exc.message) from None
        return stream, self.cls(parser.pairs), self.cls()

    def _parse_urlencoded(self, stream, mimetype, content_length, options):
        return stream, self.cls(parse_urlencoded(stream.read, FORM)), self.cls()


def _read_past(name: str, filename: str, chunks: Iterator[memoryview], fields: dict[str, str]) -> None:
    """No route that reads request.form takes a file: its content is read and dropped."""
    for _ in chunks:
        pass


def parse_urlencoded(read: Callable[[int], bytes], limits: FormLimits) -> list[tuple[str, str]]:
    """The (name, value) pairs of a URL-encoded body, decoded as werkzeug does, read a buffer at a time.

    A body that is not UTF-8 raises ValueError (werkzeug's parser then gives an empty form).
    """
    pairs: list[tuple[str, str]] = []
    total = 0
    pending = bytearray()
    raw_limit = PERCENT_ENCODING * limits.field_bytes + 1  # and its "="

    def add(raw: bytes) -> None:
        nonlocal total
        for name, value in parse_qsl(raw.decode("utf-8"), keep_blank_values=True, errors="werkzeug.url_quote"):
            if len(pairs) == limits.parts:
                raise TooLarge(f"The form has more than {limits.parts} fields (refused at {_shown(name)})")
            size = len(name.encode()) + len(value.encode())
            if size > limits.field_bytes:
                raise TooLarge(f"The form field {_shown(name)} is too long: at most {limits.field_bytes} bytes")
            total += size
            if total > limits.fields_bytes:
                raise TooLarge(f"The form's fields together are larger than {limits.fields_bytes} bytes "
                               f"(refused at {_shown(name)})")
            pairs.append((name, value))

    try:
        while True:
            chunk = read(FORM_BUFFER)
            pending += chunk
            start = 0
            while (i := pending.find(b"&", start)) >= 0:
                add(bytes(pending[start:i]))
                start = i + 1
            del pending[:start]
            if len(pending) > raw_limit:  # too long already, before its end arrives
                name = unquote_plus(bytes(pending.partition(b"=")[0][:400]).decode("utf-8", "replace"))
                raise TooLarge(f"The form field {_shown(name)} is too long: at most {limits.field_bytes} bytes")
            if not chunk:
                add(bytes(pending))
                return pairs
    except BaseException:
        _discard(lambda: bool(read(FORM_BUFFER)))
        raise


class _StreamBody:
    """The portable path: the request's own (length-limited) input stream."""

    def __init__(self, stream):
        # The request's stream, not a new one: the framework reads it again after
        # the response and must find it at its end.
        self.stream = stream
        readinto = getattr(stream, "readinto", None)
        if readinto is not None:  # waitress's streamed body, a spooled file: no bytes object between
            self.readinto = readinto

    def readinto(self, target: memoryview) -> int:
        data = self.stream.read(len(target))
        target[: len(data)] = data
        return len(data)

    def close(self) -> None:
        pass


class _GunicornBody:
    """A Content-Length body read from gunicorn's socket with ``recv_into``.

    gunicorn copies a body several times on its way through its reader (about
    1.2 GB/s on a 2-core machine). This takes what gunicorn has already buffered,
    receives the rest itself, and on close gives back anything unread, so gunicorn
    still drains an unfinished body and keep-alive stays correct.
    """

    def __init__(self, sock, reader, unreader):
        self.sock, self.reader, self.unreader = sock, reader, unreader
        self.remaining = reader.length
        buffered = unreader.take_buffered()
        self.pending = memoryview(buffered[: self.remaining])
        if len(buffered) > self.remaining:  # a pipelined next request
            unreader.unread(buffered[self.remaining:])
        reader.length = 0  # from here on the body is ours

    def readinto(self, target: memoryview) -> int:
        if self.remaining <= 0:
            return 0
        if self.pending:
            n = min(len(self.pending), len(target))
            target[:n] = self.pending[:n]
            self.pending = self.pending[n:]
        else:
            n = self.sock.recv_into(target, min(len(target), self.remaining))
            if n == 0:
                raise BadRequest("The connection closed before the whole body arrived")
        self.remaining -= n
        return n

    def close(self) -> None:
        if self.pending:
            self.unreader.unread(bytes(self.pending))
            self.pending = memoryview(b"")
        self.reader.length = max(self.remaining, 0)  # gunicorn drains what is left


def body_reader(request):
    """The request body as ``readinto``/``close``: past gunicorn's copies where that is safe."""
    environ = request.environ
    sock = environ.get("gunicorn.socket")
    body = environ.get("wsgi.input")
    reader = getattr(body, "reader", None)
    unreader = getattr(reader, "unreader", None)
    if (
        sock is not None
        and type(reader).__name__ == "LengthReader"
        and isinstance(getattr(reader, "length", None), int)
        and hasattr(unreader, "take_buffered")
        and hasattr(unreader, "unread")
        and getattr(body, "buf", None) is not None
        and body.buf.tell() == 0  # nothing read through gunicorn's own reader yet
        and sock.gettimeout() is None  # a blocking socket, as gunicorn hands it to the app
    ):
        return _GunicornBody(sock, reader, unreader)
    return _StreamBody(request.stream)
