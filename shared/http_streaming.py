"""A request body that reaches the app while it arrives: the server's loop feeds it, the app's
thread reads it (`shared.http_server` decides which bodies stream).

At most ``limit`` bytes wait between the two: the loop asks for `room` before each receive
and is woken when the app has read enough. A body that fails (late, or its connection gone)
makes every read raise, as werkzeug's own exceptions for those cases; after `close` (the
request has ended) what still arrives is dropped.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from werkzeug.exceptions import ClientDisconnected, RequestTimeout

STREAM_BUFFER = 8 * 1024 * 1024  # of a streamed body, received and not yet read by the app


class BodyTimedOut(RequestTimeout):
    """Raised by the reads of a streamed body that did not arrive in time (408)."""


class BodyCutOff(ClientDisconnected):
    """Raised by the reads of a streamed body whose connection closed before its end (400)."""


class StreamedBody:
    """``wsgi.input`` of a body the app reads while it arrives: the server's loop `feed`s it and
    asks for `room` before each receive, so at most ``limit`` bytes wait. After `fail` every read
    raises; after `close` (the request ended) what still arrives is dropped."""

    def __init__(self, length: int, wake, release, limit: int = STREAM_BUFFER):
        self.length = self.remaining = self.unread = length  # remaining: to come; unread: by the app
        self.started = time.monotonic()  # the end of the headers
        self.chunks: deque = deque()
        self.buffered, self.limit = 0, limit
        self.cond = threading.Condition()
        self.error: Exception | None = None
        self.closed = False
        self.need = 0  # > 0: the loop waits for this much room
        self.full_since = None  # while the buffer is full: since when
        self.kept_waiting = 0.0  # seconds the app left the buffer full: not the client's fault
        self._wake, self._release = wake, release

    def room(self, size: int) -> bool:
        with self.cond:
            if self.closed or self.error is not None or self.buffered + size <= self.limit:
                if self.full_since is not None:
                    self.kept_waiting += time.monotonic() - self.full_since
                    self.full_since = None
                self.need = 0
                return self.error is None
            self.need = size
            self.full_since = self.full_since or time.monotonic()
            return False

    def waited(self, now: float) -> float:
        full_since = self.full_since
        return self.kept_waiting + (now - full_since if full_since is not None else 0.0)

    def feed(self, data) -> int:
        """Take the part of ``data`` that belongs to the body; how many bytes that is."""
        n = min(len(data), self.remaining)
        with self.cond:
            self.remaining -= n
            if n and not self.closed and self.error is None:
                self.chunks.append(data if n == len(data) else memoryview(data)[:n])
                self.buffered += n
                self.cond.notify()
        if not self.remaining:
            self.release()
        return n

    def fail(self, error: Exception) -> None:
        with self.cond:
            if self.error is None and self.remaining:
                self.error = error
                self.chunks.clear()
                self.buffered = 0
                self.cond.notify_all()
        self.release()

    def release(self) -> None:
        """Give back the server's streaming slot (once)."""
        with self.cond:
            release, self._release = self._release, None
        if release is not None:
            release()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.chunks.clear()
            self.buffered = 0
            wake, self.need = self.need > 0, 0
        self.release()
        if wake:
            self._wake()

    def _next(self):
        """The first waiting chunk, None at the end; the lock held."""
        while not self.chunks:
            if self.error is not None:
                raise self.error
            if not self.unread or self.closed:
                return None
            self.cond.wait(1.0)
        return self.chunks[0]

    def _took(self, n: int) -> None:
        chunk = self.chunks[0]
        if n == len(chunk):
            self.chunks.popleft()
        else:
            self.chunks[0] = memoryview(chunk)[n:]
        self.buffered -= n
        self.unread -= n
        if self.need and self.buffered + self.need <= self.limit:
            self.need = 0
            self._wake()

    def readinto(self, target) -> int:
        """What has arrived, up to ``len(target)``: waits only while nothing has."""
        got, size = 0, len(target)
        with self.cond:
            chunk = self._next()
            while chunk is not None and got < size:
                n = min(len(chunk), size - got)
                target[got:got + n] = chunk[:n]
                got += n
                self._took(n)
                chunk = self.chunks[0] if self.chunks else None
            return got

    def read(self, size: int | None = -1) -> bytes:
        size = self.unread if size is None or size < 0 else min(size, self.unread)
        buf, got = bytearray(size), 0
        with memoryview(buf) as view:
            while got < size and (n := self.readinto(view[got:])):
                got += n
        return bytes(buf) if got == size else bytes(buf[:got])

    def readline(self, size: int | None = -1) -> bytes:
        line, size = bytearray(), self.unread if size is None or size < 0 else size
        while len(line) < size:
            with self.cond:
                chunk = self._next()
                if chunk is None:
                    break
                end = bytes(chunk[:size - len(line)]).find(b"\n")
                n = min(len(chunk), size - len(line)) if end < 0 else end + 1
                line += chunk[:n]
                self._took(n)
            if end >= 0:
                break
        return bytes(line)

    def readlines(self, hint: int = -1) -> list[bytes]:
        return list(self)

    def __iter__(self):
        return iter(self.readline, b"")
