"""WebSocket upgrades as tunnels for `shared.http_server`: an upgrade its ``upgrade`` hook accepts
has its head sent to a backend, and the connection then carries bytes both ways, spliced in the
server's asyncore loop with bounded buffers (one side that is slow stops the reading of the other),
until either side closes. A tunnel is held to no idle deadline: a quiet WebSocket is still alive;
a backend that goes away closes the client.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import time
from dataclasses import dataclass
from http import HTTPStatus

from waitress import wasyncore

log = logging.getLogger("dm.http")
access_log = logging.getLogger("dm.access")

TUNNEL_BUFFER = 256 * 1024  # bytes a tunnel holds for a slow side before it stops reading the other
TUNNEL_CONNECT_S = 5.0
RECV_BYTES = 256 * 1024
_QUERY_TOKEN = re.compile(r"([?&](?:token|access_token)=)[^&#]*", re.IGNORECASE)


def printable(text: str, limit: int = 2000) -> str:
    """A request URI for the log: no control characters, no token a query carries."""
    return _QUERY_TOKEN.sub(r"\1<hidden>", text)[:limit].encode("unicode_escape").decode("ascii")


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


@dataclass(frozen=True)
class Upgrade:
    """``upgrade``'s answer for a tunnel: send ``head`` (a request head, ending in a blank line) to
    ``host``:``port``, then splice."""

    host: str
    port: int
    head: bytes


@dataclass(frozen=True)
class Refusal:
    """``upgrade``'s answer for a request it refuses: a JSON error, then the connection closes."""

    status: int
    message: str
    headers: tuple[tuple[str, str], ...] = ()



class TunnelTask:
    """An upgrade request ``upgrade`` decides on (in a worker thread: it may look things up): refused
    with a JSON error, or its head sent to the backend and the connection turned into a tunnel."""

    wrote_header = False
    close_on_finish = False

    def __init__(self, channel, request, decide):
        self.channel, self.request, self.decide = channel, request, decide

    def service(self):
        decision = self.decide(self.request)
        if decision is None:  # not one of the hook's: the app serves it
            task = self.channel.plain_task_class(self.channel, self.request)
            try:
                task.service()
            finally:
                self.wrote_header, self.close_on_finish = task.wrote_header, task.close_on_finish
            return
        if isinstance(decision, Upgrade):
            try:
                backend = socket.create_connection((decision.host, decision.port), timeout=TUNNEL_CONNECT_S)
                backend.sendall(decision.head)
            except OSError as exc:
                log.info("Tunnel to %s:%s not opened: %s", decision.host, decision.port, exc)
                decision = Refusal(503, "The instance does not answer yet", (("Retry-After", "2"),))
            else:
                self.channel.start_tunnel(backend)
                access_log.info('%s "%s %s" tunnel to %s:%s', self.channel.addr[0] if self.channel.addr else "-",
                                self.request.command, printable(self.request.request_uri), decision.host,
                                decision.port)
                return
        body = error_body(decision.message)
        head = "".join(f"{name}: {value}\r\n" for name, value in decision.headers)
        self.channel.write_soon((f"HTTP/1.1 {decision.status} {HTTPStatus(decision.status).phrase}\r\n"
                                 f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{head}"
                                 "Connection: close\r\n\r\n").encode() + body)
        self.wrote_header = self.close_on_finish = True
        access_log.info('%s "%s %s" %s %d (upgrade refused)', self.channel.addr[0] if self.channel.addr else "-",
                        self.request.command, printable(self.request.request_uri), decision.status, len(body))


class TunnelEnd(wasyncore.dispatcher):
    """The backend's socket of a tunnel, in the server's loop beside its client's channel."""

    def __init__(self, channel, sock, map):
        super().__init__(sock, map)
        self.connected = True  # waitress's dispatcher leaves that to its channels
        self.channel = channel
        self.pending = bytearray()  # from the client, not yet sent on

    def readable(self):
        channel = self.channel
        return channel.connected and channel.total_outbufs_len < TUNNEL_BUFFER

    def writable(self):
        return bool(self.pending)

    def handle_read(self):
        data = self.recv(RECV_BYTES)
        if data:
            self.channel.tunnel_out(data)

    def handle_write(self):
        sent = self.send(self.pending)
        if sent:
            del self.pending[:sent]

    def handle_close(self):
        self.close()
        channel = self.channel
        if channel.connected:  # what the backend sent last still goes out, then the client is closed
            channel.close_when_flushed = True
            channel.server.pull_trigger()

    def handle_error(self):
        log.warning("Tunnel backend failed", exc_info=True)
        self.handle_close()


class TunnelChannel:
    """What `shared.http_server.Channel` adds for tunnels: the task that decides, and the splicing."""

    plain_task_class = None  # the task for every other request
    tunnelling = False  # an upgrade became a tunnel: set from the worker thread, before `tunnel` is
    tunnel = None  # the backend's `TunnelEnd`, once it is in the loop

    def task_class(self, channel, request):  # waitress calls self.task_class(self, request)
        decide = getattr(self.adj, "upgrade", None)
        if decide is not None and request.headers.get("UPGRADE") and request.stream is None:
            return TunnelTask(self, request, decide)
        return self.plain_task_class(self, request)

    def start_tunnel(self, backend: socket.socket) -> None:
        """From the worker thread: stop reading requests, and put the backend into the loop."""
        self.tunnelling = True
        backend.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if self.socket is not None:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        backend.setblocking(False)

        def install():  # in the loop's thread: the socket map is the loop's
            if not self.connected:
                backend.close()
                return
            self.tunnel = TunnelEnd(self, backend, self._map)

        self.server.trigger.pull_trigger(install)

    def tunnel_out(self, data: bytes) -> None:
        """Bytes from the backend, for the client (in the loop's thread)."""
        with self.outbuf_lock:
            self.outbufs[-1].append(data)
            self.total_outbufs_len += len(data)
        self.last_activity = time.time()
