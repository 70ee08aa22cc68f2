"""The HTTP server of the api (and of every function in a cluster): waitress, held to deadlines.

waitress reads each request's headers and its whole body in one asynchronous loop (a body
larger than `SPOOL_IN_MEMORY` goes to a temporary file) and hands only complete requests to its
worker threads, so a client that sends slowly, or nothing at all, holds a socket, never a thread.
On top of waitress:

- deadlines (`Limits`): a connection that sends nothing for ``idle_timeout_s`` is closed; the
  request line and headers must arrive within ``header_timeout_s`` of the request's first byte;
  the body within ``body_timeout_s`` of the end of the headers plus one second for every
  `MIN_BODY_RATE` bytes of it that arrived (a slow upload that keeps going is not cut off, a
  trickle is). A late request is answered 408 and the connection closed;
- a declared body above ``max_body_bytes`` is refused (413) as soon as the headers are read, and
  ``Expect: 100-continue`` then gets the 413 instead of ``100 Continue``; a request line longer
  than ``max_request_line`` gets 414, headers above ``max_header_bytes`` 431;
- every error the server answers itself is ``{"error": "..."}`` (application/json), and
  `json_errors` does the same for the HTML error pages of Flask and werkzeug behind it;
- after an error answer the connection is shut for writing and what the client still sends is
  read and dropped for `DRAIN_S`, so the answer is not lost to a reset while it is sending;
- a body declared larger than `STREAM_ABOVE` (not chunked) reaches the app while it arrives
  (`StreamedBody`) if a streaming slot is free (a quarter of the threads: the rest stay free for
  small requests), `STREAM_BUFFER` bytes at most in memory. Its deadline holds (not counting
  time the app kept it waiting): a late or cut off body raises in the app's reads, the
  connection closes after the answer; what an app leaves unread is read and dropped;
- a request asking for ``Upgrade: websocket`` may become a tunnel (``upgrade``, see `create_server`
  and `shared.http_tunnel`): its head goes to a backend and the bytes are then spliced both ways in
  the server's loop until either side closes, held to no idle deadline.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask, WSGITask
from waitress.utilities import BadRequest, RequestEntityTooLarge, RequestHeaderFieldsTooLarge

from shared.http_streaming import BodyCutOff, BodyTimedOut, StreamedBody
# Upgrade and Refusal, the answers of an ``upgrade`` hook, are named from here too
from shared.http_tunnel import TUNNEL_BUFFER, Refusal, TunnelChannel, Upgrade, printable as _printable  # noqa: F401

log = logging.getLogger("dm.http")
access_log = logging.getLogger("dm.access")

MIN_BODY_RATE = 64 * 1024  # bytes per second that earn a body one more second
SPOOL_IN_MEMORY = 64 * 1024  # a larger body is spooled to a temporary file: 1000 connections, 64 MiB at most
RECV_BYTES = 1024 * 1024  # large reads keep a big upload's spooling cheap
DRAIN_S = 2.0
CHECK_EVERY_S = 0.25  # how often the deadlines are looked at (the loop wakes at least every second)
STREAM_ABOVE = 1024 * 1024  # a larger declared body may reach the app while it arrives


@dataclass(frozen=True)
class Limits:
    """What one server holds: threads and connections, deadlines in seconds, sizes in bytes."""

    threads: int = 16
    connection_limit: int = 1000
    idle_timeout_s: int = 30
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_request_line: int = 8 * 1024
    max_header_bytes: int = 32 * 1024  # the request line included
    max_body_bytes: int = 1024**3


class UriTooLong(BadRequest):
    code = 414
    reason = "URI Too Long"


class RefusedEarly(BadRequest):
    """A request the app would refuse from its headers alone (``refuse_early``): answered before its body."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code, self.reason = code, HTTPStatus(code).phrase


class Parser(HTTPRequestParser):
    """waitress's parser, timed, with a 414, and without ``100 Continue`` for a refused request."""

    started = 0.0  # monotonic time of the request's first byte
    headers_at = None  # ... and of the end of its headers
    channel = None
    stream = None  # a StreamedBody: the body goes to the app while it arrives

    def __init__(self, adj):
        super().__init__(adj)
        self.started = time.monotonic()

    def received(self, data):
        if self.completed:
            return 0
        if self.error is None and self.body_rcv is None and not self.headers_finished:
            head = self.header_plus + data
            end = head.find(b"\n")
            limit = getattr(self.adj, "max_request_line", Limits.max_request_line)
            if len(head if end < 0 else head[:end]) > limit:
                self.parse_header(b"GET / HTTP/1.0\r\n")
                self.error = UriTooLong(f"The request line is longer than the limit of {limit} bytes")
                self.completed = self.headers_finished = True
        if self.error is None:
            consumed = super().received(data)
            if self.headers_finished and self.headers_at is None:
                self.headers_at = time.monotonic()
                self._refuse_early()
                if self.error is None:
                    consumed += self._stream(data[consumed:])
        if self.error is None:
            return consumed
        # refused: the rest of what came is never parsed as a next request, and no 100 goes out
        self.expect_continue = False
        if isinstance(self.error, RequestEntityTooLarge):
            self.error.body = (f"The request body is larger than the limit of "
                               f"{self.adj.max_request_body_size - 1} bytes")
        elif isinstance(self.error, RequestHeaderFieldsTooLarge):
            self.error.body = (f"The request headers are larger than the limit of "
                               f"{self.adj.max_request_header_size} bytes")
        return len(data)


    def _refuse_early(self) -> None:
        """Ask the server's ``refuse_early`` about a request that declares a body, before any of it is read."""
        refuse_early = getattr(self.adj, "refuse_early", None)
        if refuse_early is None or self.error is not None or not (self.content_length or self.chunked):
            return
        refused = refuse_early(self.command, self.path, self.headers)
        if refused is not None:
            self.error = RefusedEarly(*refused)
            self.completed = True


    def _stream(self, rest: bytes) -> int:
        """Hand a large body to the app while it arrives, if a streaming slot is free; how much of
        ``rest`` it took."""
        channel = self.channel
        if (channel is None or self.completed or self.chunked or self.content_length <= STREAM_ABOVE
                or channel.requests or not channel.server.stream_slots.acquire(blocking=False)):
            return 0
        if self.expect_continue and not channel.sent_continue:
            channel.send_continue()  # it marks the request incomplete: completed is set after
        server = channel.server
        self.stream = StreamedBody(self.content_length, server.pull_trigger, server.stream_slots.release)
        self.completed = True  # dispatched now, its body follows
        taken = self.stream.feed(rest)
        if self.stream.remaining:
            channel.streaming = self.stream
        return taken

    def get_body_stream(self):
        return self.stream if self.stream is not None else super().get_body_stream()

    raw_head = b""  # the request line and headers as they came (a tunnel forwards them)

    def parse_header(self, header_plus):
        self.raw_head = header_plus
        return super().parse_header(header_plus)

    def close(self):
        stream = self.stream
        if stream is not None:
            if stream.remaining and self.channel is not None:
                self.channel.linger = True  # should it close, the client is still sending
            stream.close()
        super().close()


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


class JsonErrorTask(ErrorTask):
    """waitress's own error answers (400, 413, 414, 431, 500, 501) as JSON."""

    def execute(self):
        error = self.request.error
        plain = error.code in (413, 414, 431) or isinstance(error, RefusedEarly)
        body = error_body(str(error.body) if plain else f"{error.reason}: {error.body}")
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)
        self.channel.linger = True
        access_log.info('%s "%s %s" %s %d (refused by the server)', self.channel.addr[0] if self.channel.addr else "-",
                        getattr(self.request, "command", "-"), _printable(getattr(self.request, "request_uri", "-")),
                        error.code, len(body))


class Task(WSGITask):
    """A request served by the app; the connection closes after a streamed body that broke."""

    def finish(self):
        stream = self.request.stream
        if stream is not None and stream.error is not None:
            self.channel.linger = True
            self.set_close_on_finish()
        super().finish()


class LoggedTask(Task):
    """A request served by the app, with a line in the access log."""

    def service(self):
        started = time.perf_counter()
        try:
            super().service()
        finally:
            if access_log.isEnabledFor(logging.INFO):
                access_log.info('%s "%s %s" %s %d %.3fs', self.channel.addr[0] if self.channel.addr else "-",
                                self.request.command, _printable(self.request.request_uri),
                                self.status.split(" ", 1)[0], self.content_bytes_written, time.perf_counter() - started)


class Channel(TunnelChannel, HTTPChannel):
    """One connection: JSON errors, the parser above, a lingering close after an error, and tunnels."""

    error_task_class = JsonErrorTask
    plain_task_class = Task
    linger = False
    tunnelling = False  # an upgrade became a tunnel: set from the worker thread, before `tunnel` is
    tunnel = None  # the backend's `_TunnelEnd`, once it is in the loop  # an error was answered: drain what the client still sends before closing
    draining_until = None
    streaming = None  # the StreamedBody still arriving on this connection

    def parser_class(self, adj):  # waitress calls self.parser_class(adj): the parser gets its channel
        parser = Parser(adj)
        parser.channel = self
        return parser

    def received(self, data):
        if self.tunnelling:
            self.tunnel.pending += data
            return True
        stream = self.streaming
        if stream is None:
            return super().received(data)
        taken = stream.feed(data)
        if stream.remaining:
            return True
        self.streaming = None
        return super().received(data[taken:]) if taken < len(data) else True

    def refuse(self, status: HTTPStatus, message: str) -> None:
        """Answer a request still arriving (no task runs for it), then close: from the main loop only."""
        body = error_body(message)
        head = (f"HTTP/1.1 {status.value} {status.phrase}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
        with self.outbuf_lock:
            self.outbufs[-1].append(head + body)
            self.total_outbufs_len += len(head) + len(body)
        self.close_when_flushed = True
        self.linger = True

    def readable(self):
        if self.draining_until is not None:
            return True
        if self.tunnelling:
            tunnel = self.tunnel
            return (tunnel is not None and tunnel.connected and not (self.will_close or self.close_when_flushed)
                    and len(tunnel.pending) < TUNNEL_BUFFER)
        stream = self.streaming
        if stream is not None:
            return not (self.will_close or self.close_when_flushed) and stream.room(self.adj.recv_bytes)
        return super().readable()

    def writable(self):
        if self.draining_until is not None:
            return self.will_close
        if self.requests and self.total_outbufs_len and not (self.will_close or self.close_when_flushed):
            # A task is writing: while it holds the buffer it sends what it wrote itself, and wakes
            # the loop if anything is left. Saying "writable" then would only spin the loop (select
            # answers at once, the flush finds the buffer locked), taking the GIL from that task.
            if not self.outbuf_lock.acquire(blocking=False):
                return False
            self.outbuf_lock.release()
        return super().writable()

    def handle_read(self):
        if self.draining_until is None:
            return super().handle_read()
        if wasyncore.dispatcher.recv(self, 65536) and time.monotonic() > self.draining_until:
            self.handle_close()

    def handle_close(self):
        tunnel = self.tunnel
        if tunnel is not None:
            self.tunnel = None
            tunnel.close()
        if self.streaming is not None:
            self.streaming.fail(BodyCutOff("The connection closed before the whole request body arrived"))
        if self.linger and self.draining_until is None and self.connected and self.socket is not None:
            try:
                self.socket.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            else:
                self.draining_until = time.monotonic() + DRAIN_S
                self.will_close = self.close_when_flushed = False
                return
        if self.request is not None:
            self.request.close()  # a spooled body's temporary file goes now
            self.request = None
        super().handle_close()


class Server(TcpWSGIServer):
    """waitress's TCP server with `Channel` and the header, body and drain deadlines."""

    channel_class = Channel
    limits = Limits()
    _next_check = 0.0
    stream_slots = threading.BoundedSemaphore(0)  # bodies that go to the app while they arrive, at once

    def readable(self):
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + CHECK_EVERY_S
            self.enforce_deadlines(now)
        return super().readable()

    def maintenance(self, now):
        """waitress's idle cut-off, for every connection but a tunnel (a quiet WebSocket is alive)."""
        cutoff = now - self.adj.channel_timeout
        for channel in self.active_channels.values():
            if not channel.requests and not channel.tunnelling and channel.last_activity < cutoff:
                channel.will_close = True

    def enforce_deadlines(self, now: float) -> None:
        limits = self.limits
        for channel in list(self.active_channels.values()):
            if channel.draining_until is not None:
                if now > channel.draining_until:
                    channel.will_close = True
                continue
            if channel.streaming is not None:
                self._stream_deadline(channel, now)
                continue
            request = channel.request
            if request is None or request.completed or channel.requests or channel.close_when_flushed:
                continue  # nothing arriving, or a request being served
            if request.headers_at is None:
                if now - request.started > limits.header_timeout_s:
                    channel.refuse(HTTPStatus.REQUEST_TIMEOUT, "The request headers did not arrive within "
                                   f"{limits.header_timeout_s:g} s")
            elif now - request.headers_at > limits.body_timeout_s + request.body_bytes_received / MIN_BODY_RATE:
                channel.refuse(HTTPStatus.REQUEST_TIMEOUT, "The request body did not arrive in time: "
                               f"{limits.body_timeout_s:g} s and one more second for every {MIN_BODY_RATE} bytes")


    def _stream_deadline(self, channel, now: float) -> None:
        """A streamed body: the reads in the app raise once it is late, and the connection closes
        when its request has ended."""
        stream, limits = channel.streaming, self.limits
        arrived = stream.length - stream.remaining
        late = now - stream.waited(now) - stream.started > limits.body_timeout_s + arrived / MIN_BODY_RATE
        if late and stream.error is None:
            stream.fail(BodyTimedOut(f"The request body did not arrive in time: {limits.body_timeout_s:g} s "
                                     f"and one more second for every {MIN_BODY_RATE} bytes"))
        if stream.error is not None and stream.closed and not channel.close_when_flushed:
            channel.linger = channel.close_when_flushed = True


def create_server(app, host: str, port: int, limits: Limits = Limits(), access: bool = True,
                  refuse_early=None, upgrade=None) -> Server:
    """A bound `Server` for a WSGI app; ``run()`` serves until SystemExit or KeyboardInterrupt.

    ``refuse_early(method, path, headers)`` (headers as waitress holds them: ``AUTHORIZATION``…)
    may answer ``(status, message)`` for a request declaring a body, which is then refused
    before its body is read; it runs in the server's loop, so it must be quick and never block.

    ``upgrade(request)`` is asked about each complete request with an ``Upgrade`` header, in a worker
    thread (``request``: waitress's parser, with ``command``, ``path``, ``query``, ``request_uri``,
    ``headers`` and ``raw_head``): None serves it through the app as any other request; `Upgrade`
    makes the connection a tunnel to a backend; `Refusal` answers it with a JSON error."""
    from waitress.adjustments import Adjustments

    raise_open_files_limit(2 * limits.connection_limit + 256)  # a socket and a spooled body each
    adj = Adjustments(
        host=host, port=port, threads=limits.threads, connection_limit=limits.connection_limit,
        channel_timeout=limits.idle_timeout_s, cleanup_interval=1,
        max_request_header_size=limits.max_header_bytes,
        max_request_body_size=limits.max_body_bytes + 1,  # waitress refuses a length equal to it
        inbuf_overflow=SPOOL_IN_MEMORY, recv_bytes=RECV_BYTES, ident="dm", expose_tracebacks=False,
        clear_untrusted_proxy_headers=False)
    adj.max_request_line = limits.max_request_line
    adj.refuse_early = refuse_early
    adj.upgrade = upgrade
    server = Server(app, adj=adj)
    server.limits = limits
    server.stream_slots = threading.BoundedSemaphore(max(1, limits.threads // 4))  # most threads: small requests
    if access:
        server.channel_class = type("LoggedChannel", (Channel,), {"plain_task_class": LoggedTask})
    return server


def raise_open_files_limit(wanted: int) -> None:
    """Raise the soft limit on open files towards ``wanted`` (never above the hard limit)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        if soft != resource.RLIM_INFINITY and soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < wanted:
            log.warning("Open files are limited to %s: fewer than the %s the connection limit needs", target, wanted)
    except (ImportError, ValueError, OSError) as exc:
        log.warning("The open files limit could not be raised: %s", exc)


# --- HTML error pages of the apps behind the server, as JSON ----------------------------------


def _message(code: int, environ) -> str:
    if code == 404:
        return "Not found"
    if code == 405:
        return f"Method {environ.get('REQUEST_METHOD', '')} is not allowed here"
    if code >= 500:
        return "Internal server error"
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return f"HTTP {code}"


def json_errors(app, allowed_methods=None):
    """Wrap a WSGI app: an error answered as an HTML page (Flask's and werkzeug's defaults) becomes
    ``{"error": ...}``; a 405 without ``Allow`` gets one from ``allowed_methods(environ)``."""

    def wrapped(environ, start_response):
        state: dict = {}
        where = {"PATH_INFO": environ.get("PATH_INFO", ""), "SCRIPT_NAME": environ.get("SCRIPT_NAME", "")}

        def capture(status, headers, exc_info=None):
            state["called"] = True
            code = int(status.split(" ", 1)[0])
            names = {name.lower(): value for name, value in headers}
            if code == 405 and "allow" not in names and allowed_methods is not None:
                methods = allowed_methods({**environ, **where})  # as it came: a mount rewrites it
                if methods:
                    headers = [*headers, ("Allow", ", ".join(methods))]
            if code < 400 or not names.get("content-type", "").startswith("text/html"):
                return start_response(status, headers, exc_info)
            body = error_body(_message(code, environ))
            kept = [(name, value) for name, value in headers if name.lower() in ("allow", "retry-after")]
            state["body"] = body
            start_response(status, [*kept, ("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
                           exc_info)
            return lambda data: None

        result = app(environ, capture)
        if "body" in state:
            _close(result)
            return [state["body"]]
        if state.get("called"):
            return result  # untouched, so a file wrapper still reaches the server
        return _replaced_when_html(result, state)

    return wrapped


def _replaced_when_html(result, state):
    """For an app that starts its answer only once iterated."""
    try:
        for chunk in result:
            if "body" in state:
                break
            yield chunk
        if "body" in state:
            yield state["body"]
    finally:
        _close(result)


def _close(result) -> None:
    close = getattr(result, "close", None)
    if close is not None:
        close()

