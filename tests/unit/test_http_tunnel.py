"""shared.http_server's tunnels on real sockets: an upgrade ``upgrade`` accepts is spliced both ways to a
backend (a raw TCP server here), held to no idle deadline, closed when either side closes; one it
refuses is a JSON error; a backend that does not answer is a 503 with Retry-After."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from shared.http_server import Limits, Refusal, Upgrade
from tests.http_kit import echo, serving

LIMITS = Limits(threads=4, connection_limit=50, idle_timeout_s=1, header_timeout_s=2.0, body_timeout_s=2.0)
UPGRADE = (b"GET /room HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Authorization: Bearer secret\r\n\r\n")


class Backend:
    """A TCP server that answers a request head with 101, then echoes; it records what it got."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.heads: list[bytes] = []
        self.connections: list[socket.socket] = []
        self.ended = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        self.connections.append(conn)
        head = b""
        while b"\r\n\r\n" not in head:
            head += conn.recv(4096)
        self.heads.append(head)
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        try:
            while data := conn.recv(65536):
                conn.sendall(data)
        except OSError:  # closed by the test
            return
        self.ended.set()
        conn.close()

    def close(self):
        self.listener.close()
        for conn in self.connections:
            conn.close()


@pytest.fixture
def backend():
    running = Backend()
    yield running
    running.close()


def decide_for(backend_port: int | None):
    def decide(request):
        if request.path == "/refused":
            return Refusal(403, "Not yours", (("X-Why", "test"),))
        if request.path != "/room":
            return None
        head = request.raw_head.replace(b"Authorization: Bearer secret\r\n", b"")
        return Upgrade("127.0.0.1", backend_port, head)

    return decide


def read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def read_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(min(65536, n - len(data)))
        assert chunk, f"closed after {len(data)} of {n} bytes"
        data += chunk
    return data


def test_a_tunnel_splices_both_ways_and_outlives_the_idle_deadline(backend):
    with serving(echo, LIMITS, upgrade=decide_for(backend.port)) as server:
        sock = socket.create_connection(("127.0.0.1", server.effective_port), timeout=10)
        sock.sendall(UPGRADE)
        assert read_head(sock).startswith(b"HTTP/1.1 101")
        assert backend.heads[0].startswith(b"GET /room HTTP/1.1") and b"secret" not in backend.heads[0]
        big = bytes(range(256)) * 20_000  # 5 MB: more than the buffers hold, so back-pressure works
        sender = threading.Thread(target=sock.sendall, args=(big,))
        sender.start()
        assert read_exactly(sock, len(big)) == big
        sender.join()
        time.sleep(LIMITS.idle_timeout_s * 2.5)  # quiet, yet alive
        sock.sendall(b"still there")
        assert read_exactly(sock, 11) == b"still there"
        sock.close()
        assert backend.ended.wait(5), "the backend did not see the client go"


def test_a_backend_that_goes_closes_the_client(backend):
    with serving(echo, LIMITS, upgrade=decide_for(backend.port)) as server:
        sock = socket.create_connection(("127.0.0.1", server.effective_port), timeout=10)
        sock.sendall(UPGRADE)
        assert read_head(sock).startswith(b"HTTP/1.1 101")
        backend.connections[0].shutdown(socket.SHUT_RDWR)
        backend.connections[0].close()
        assert sock.recv(10) == b""


def test_a_refused_upgrade_is_a_json_error():
    with serving(echo, LIMITS, upgrade=decide_for(None)) as server:
        sock = socket.create_connection(("127.0.0.1", server.effective_port), timeout=10)
        sock.sendall(UPGRADE.replace(b"/room", b"/refused"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 403") and b"X-Why: test" in head
        assert json.loads(body) == {"error": "Not yours"}


def test_a_backend_that_does_not_answer_is_a_503():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there
    with serving(echo, LIMITS, upgrade=decide_for(port)) as server:
        sock = socket.create_connection(("127.0.0.1", server.effective_port), timeout=10)
        sock.sendall(UPGRADE)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        assert data.startswith(b"HTTP/1.1 503") and b"Retry-After: 2" in data


def test_an_upgrade_the_hook_leaves_is_served_by_the_app():
    with serving(echo, LIMITS, upgrade=decide_for(None)) as server:
        sock = socket.create_connection(("127.0.0.1", server.effective_port), timeout=10)
        sock.sendall(UPGRADE.replace(b"/room", b"/other"))
        assert read_head(sock).startswith(b"HTTP/1.1 200")
