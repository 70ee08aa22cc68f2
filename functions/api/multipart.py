"""Streaming multipart/form-data reading: file parts go straight to storage, never to memory."""

from __future__ import annotations

from typing import BinaryIO, Callable, Iterator

from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from shared.errors import BadRequest, TooLarge

READ_SIZE = 1024 * 1024
MAX_FIELD_BYTES = 64 * 1024


def stream_form(
    content_type: str,
    stream: BinaryIO,
    on_file: Callable[[str, str, Iterator[bytes]], object],
    max_file_bytes: int,
) -> tuple[dict[str, str], dict[str, object]]:
    """Read a multipart body; each file part is handed to ``on_file(name, filename, chunks)``.

    Returns the text fields and what ``on_file`` returned per file field. A file part
    larger than ``max_file_bytes`` raises TooLarge while ``on_file`` is consuming it,
    so the consumer can discard what it wrote.
    """
    mimetype, options = parse_options_header(content_type)
    boundary = options.get("boundary")
    if mimetype != "multipart/form-data" or not boundary:
        raise BadRequest("The request body must be multipart/form-data")
    decoder = MultipartDecoder(boundary.encode("latin-1"), max_form_memory_size=None)
    fields: dict[str, str] = {}
    files: dict[str, object] = {}
    eof = False

    def feed() -> None:
        nonlocal eof
        if eof:
            raise BadRequest("The multipart body ended early")
        chunk = stream.read(READ_SIZE)  # a length-limited stream: b"" at the end
        if not chunk:
            eof = True
            decoder.receive_data(None)
        else:
            decoder.receive_data(chunk)

    while True:
        event = _next(decoder)
        if isinstance(event, NeedData):
            feed()
        elif isinstance(event, Field):
            fields[event.name] = _read_field(decoder, feed)
        elif isinstance(event, File):
            done: list = []

            def chunks() -> Iterator[bytes]:
                size = 0
                while True:
                    ev = _next(decoder)
                    if isinstance(ev, NeedData):
                        feed()
                        continue
                    if not isinstance(ev, Data):
                        raise BadRequest("Malformed multipart body")
                    size += len(ev.data)
                    if size > max_file_bytes:
                        raise TooLarge(f"The file is larger than the limit of {max_file_bytes} bytes")
                    if ev.data:
                        yield ev.data
                    if not ev.more_data:
                        done.append(True)
                        return

            files[event.name] = on_file(event.name, event.filename or "", chunks())
            if not done:
                # the consumer stopped early; drain the part so parsing can go on
                for _ in chunks():
                    pass
        elif isinstance(event, Epilogue):
            return fields, files
        elif isinstance(event, Data):
            raise BadRequest("Malformed multipart body")
        else:  # Preamble
            continue


def _read_field(decoder: MultipartDecoder, feed: Callable[[], None]) -> str:
    parts: list[bytes] = []
    size = 0
    while True:
        ev = _next(decoder)
        if isinstance(ev, NeedData):
            feed()
            continue
        if not isinstance(ev, Data):
            raise BadRequest("Malformed multipart body")
        size += len(ev.data)
        if size > MAX_FIELD_BYTES:
            raise BadRequest("A form field is too long")
        parts.append(ev.data)
        if not ev.more_data:
            try:
                return b"".join(parts).decode("utf-8")
            except UnicodeDecodeError:
                raise BadRequest("Form fields must be UTF-8 text") from None


def _next(decoder: MultipartDecoder):
    try:
        return decoder.next_event()
    except ValueError as exc:  # the decoder's word for a body that is not multipart
        raise BadRequest(f"Malformed multipart body: {exc}") from None
