"""SHA-256 and content checks of a stream, run in a thread beside the code that stores it.

Hashing is the slowest step of storing a big file (about 1.7 GB/s here, against 4 GB/s for
a copy), so it overlaps the receive or the copy instead of following it. ``hashlib`` lets go
of the GIL while it hashes, so the thread runs truly in parallel.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from typing import Iterable, Iterator

from shared.datasets.content import ContentValidator
from shared.errors import Unprocessable

PIECE_SIZE = 4 * 1024 * 1024
PIECES = 4  # in flight at once: the memory used is PIECES × PIECE_SIZE


class StreamCheck:
    """``tee`` the chunks being stored through it, then ``finish`` for the verdict.

    The verdict is ``size``, ``digest`` and ``records`` (None for binary) or ``error``, the
    content problem a user can read (None for good content).
    """

    def __init__(self, validator: ContentValidator | None = None) -> None:
        self.validator = validator
        self.size = 0
        self.digest = ""
        self.error: str | None = None
        self._crash: Exception | None = None
        self._sha = hashlib.sha256()
        self._pieces: queue.Queue = queue.Queue()  # (piece, length) to check; None ends
        self._free: queue.Queue = queue.Queue()  # pieces ready for reuse
        self._made = 0
        self._thread = threading.Thread(target=self._run, name="stream-check", daemon=True)
        self._thread.start()

    @property
    def records(self) -> int | None:
        return self.validator.records if self.validator is not None and self.error is None else None

    def tee(self, chunks: Iterable) -> Iterator:
        """The same chunks, each also handed to the checking thread.

        The reader's buffer changes after each chunk, so chunks are copied into a few
        recycled pieces (fixed memory, no allocation per chunk); the thread wakes once per piece.
        """
        piece, filled = self._take(), 0
        try:
            for chunk in chunks:
                view = memoryview(chunk).cast("B")
                while view:
                    n = min(len(view), PIECE_SIZE - filled)
                    piece[filled:filled + n] = view[:n]
                    filled += n
                    view = view[n:]
                    if filled == PIECE_SIZE:
                        self._pieces.put((piece, filled))
                        piece, filled = self._take(), 0
                yield chunk
            if filled:
                self._pieces.put((piece, filled))
        except BaseException:
            self.abandon()
            raise

    def finish(self) -> "StreamCheck":
        """Wait for the thread to check the last piece; sets the verdict."""
        self._stop()
        if self._crash is not None:
            raise self._crash
        if self.validator is not None and self.error is None:
            try:
                self.validator.finish()
            except Unprocessable as exc:
                self.error = exc.message
        self.digest = self._sha.hexdigest()
        return self

    def abandon(self) -> None:
        """Stop checking (the stream failed); safe to call more than once."""
        self._stop()

    def facts(self) -> dict:
        """The verdict as plain data (for an event)."""
        return {"size": self.size, "digest": self.digest, "records": self.records, "error": self.error}

    def _take(self) -> bytearray:
        """A free piece; a new one while fewer than PIECES exist (a small file needs only one)."""
        if self._free.empty() and self._made < PIECES:
            self._made += 1
            return bytearray(PIECE_SIZE)
        return self._free.get()

    def _stop(self) -> None:
        if self._thread.is_alive():
            self._pieces.put(None)
            self._thread.join()

    def _run(self) -> None:
        while (item := self._pieces.get()) is not None:
            piece, length = item
            if self._crash is None:  # after a crash keep recycling, so the storing side never blocks
                try:
                    data = memoryview(piece)[:length]
                    self._sha.update(data)
                    self.size += length
                    if self.validator is not None and self.error is None:
                        try:
                            self.validator.feed(data)
                        except Unprocessable as exc:
                            self.error = exc.message
                except Exception as exc:  # noqa: BLE001 - re-raised by finish() in the caller's thread
                    self._crash = exc
            self._free.put(piece)
