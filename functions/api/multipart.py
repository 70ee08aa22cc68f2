"""Streaming multipart/form-data reading: file parts go straight to storage, never to memory.

Uploads are the API's biggest requests, so the body is read into one reused buffer
(``readinto``; straight from gunicorn's socket when it serves us) and parts are cut
out of it with ``bytearray.find``: the bytes are copied once on their way to storage.
"""

from __future__ import annotations

import re
from typing import Callable, Iterator

from werkzeug.http import parse_options_header

from shared.errors import BadRequest, TooLarge

BUFFER_SIZE = 4 * 1024 * 1024
MAX_FIELD_BYTES = 64 * 1024
MAX_HEADER_BYTES = 16 * 1024
MULTIPART_SLACK = 64 * 1024  # room for the form fields and part headers around the file
_DISPOSITION = re.compile(rb"^content-disposition:(.*)$", re.IGNORECASE | re.MULTILINE)


def refuse_oversize(request, max_file_bytes: int) -> None:
    """Refuse a body whose declared length cannot hold a file within the limit, before reading it."""
    if request.content_length is not None and request.content_length > max_file_bytes + MULTIPART_SLACK:
        raise TooLarge(f"The upload is larger than the limit of {max_file_bytes} bytes")


def stream_form(
    request,
    on_file: Callable[[str, str, Iterator[memoryview], dict[str, str]], object],
    max_file_bytes: int,
) -> tuple[dict[str, str], dict[str, object]]:
    """Read a multipart body; each file part is handed to ``on_file(name, filename, chunks, fields)``.

    ``fields`` holds the text fields read so far, so a consumer can refuse early.

    Returns the text fields and what ``on_file`` returned per file field. A chunk is
    only valid until the next one is asked for (the buffer is reused). A file part
    larger than ``max_file_bytes`` raises TooLarge while ``on_file`` consumes it, so the
    consumer can discard what it wrote.
    """
    mimetype, options = parse_options_header(request.content_type or "")
    boundary = options.get("boundary", "").encode("latin-1")
    if mimetype != "multipart/form-data" or not boundary or len(boundary) > 200:
        raise BadRequest("The request body must be multipart/form-data with a boundary")
    body = body_reader(request)
    try:
        return _Parser(body.readinto, boundary).parse(on_file, max_file_bytes)
    finally:
        body.close()


class _Parser:
    def __init__(self, readinto: Callable[[memoryview], int], boundary: bytes):
        self.readinto = readinto
        self.buf = bytearray(BUFFER_SIZE)
        self.view = memoryview(self.buf)
        self.start = 0  # unread data is buf[start:end]
        self.end = 0
        self.eof = False
        self.delimiter = b"\r\n--" + boundary

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
            if filename is None:
                fields[name] = self._field()
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

    def _field(self) -> str:
        data = bytearray()
        for chunk in self._part(MAX_FIELD_BYTES, BadRequest("A form field is too long")):
            data += chunk
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("Form fields must be UTF-8 text") from None


def _disposition(headers: bytes) -> tuple[str, str | None]:
    match = _DISPOSITION.search(headers)
    if not match:
        raise BadRequest("Malformed multipart body: a part has no Content-Disposition")
    value, options = parse_options_header(match.group(1).strip().decode("utf-8", "replace"))
    if value.lower() != "form-data" or "name" not in options:
        raise BadRequest("Malformed multipart body: a part is not form-data with a name")
    return options["name"], options.get("filename")


class _StreamBody:
    """The portable path: the request's own (length-limited) input stream."""

    def __init__(self, stream):
        # The request's stream, not a new one: the framework reads it again after
        # the response and must find it at its end.
        self.stream = stream

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
