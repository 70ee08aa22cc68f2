"""shared.http_server on a real socket: a large body reaches the app while it arrives, with a bounded
buffer, a limited number of streaming slots, the body deadline, and keep-alive after an early answer."""

from __future__ import annotations

import hashlib
import json
import queue
import socket
import threading
import time

import pytest

from shared.http_server import STREAM_ABOVE, Limits
from shared.http_streaming import STREAM_BUFFER, StreamedBody
from tests.http_kit import serving

LIMITS = Limits(threads=4, connection_limit=50, idle_timeout_s=10, header_timeout_s=5.0, body_timeout_s=1.0,
                max_body_bytes=256 * 1024**2)
SIZE = 4 * STREAM_ABOVE
seen: queue.Queue = queue.Queue()  # what the app saw, in order
gates: dict[str, threading.Event] = {}


def app(environ, start_response):
    body, path = environ["wsgi.input"], environ["PATH_INFO"]
    status, out = "200 OK", {"streamed": isinstance(body, StreamedBody)}
    try:
        if path == "/early":
            out["read"] = 0
        elif path == "/slow":
            buf, most, total = bytearray(256 * 1024), 0, 0
            while n := body.readinto(buf):
                most, total = max(most, body.buffered), total + n
                time.sleep(0.002)
            out.update(read=total, most_buffered=most)
        else:
            first = bytearray(64 * 1024)
            n = body.readinto(first)
            seen.put(("first", path, n))
            if path in gates:
                gates[path].wait(10)
            digest = hashlib.sha256(first[:n])
            while chunk := body.read(1024 * 1024):
                digest.update(chunk)
                n += len(chunk)
            out.update(read=n, sha256=digest.hexdigest())
    except Exception as exc:  # noqa: BLE001 - the test looks at what the app saw
        seen.put(("error", path, type(exc).__name__))
        status, out = f"{getattr(exc, 'code', 500)} Broken", {"error": type(exc).__name__}
    data = json.dumps(out).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


@pytest.fixture(scope="module")
def server():
    with serving(app, LIMITS, access=False) as running:
        yield running


@pytest.fixture(autouse=True)
def clean():
    gates.clear()
    while not seen.empty():
        seen.get_nowait()
    yield
    for gate in gates.values():
        gate.set()


def slot_free(server) -> bool:
    """The server's one streaming slot (4 threads) is free: given back by every body before."""
    if not server.stream_slots.acquire(blocking=False):
        return False
    server.stream_slots.release()
    return True


def connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.effective_port), timeout=15)


def head(path: str, length: int, extra: str = "") -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n{extra}\r\n".encode()


def response(sock: socket.socket, data: bytes = b"") -> tuple[int, dict, bytes]:
    """One answer from the connection; what came after it."""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    top, _, rest = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in top.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk
        rest += chunk
    return int(top.split()[1]), json.loads(rest[:length]), rest[length:]


def send_in_background(sock: socket.socket, data: bytes) -> threading.Thread:
    def send():
        try:
            sock.sendall(data)
        except OSError:
            pass

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def test_a_large_body_reaches_the_app_before_it_is_all_sent(server):
    body = bytes(range(256)) * (SIZE // 256)
    with connect(server) as sock:
        sock.sendall(head("/echo", SIZE) + body[: 256 * 1024])
        assert seen.get(timeout=5)[:2] == ("first", "/echo")  # while the client holds the rest
        sock.sendall(body[256 * 1024:])
        status, out, _ = response(sock)
    assert status == 200
    assert out == {"streamed": True, "read": SIZE, "sha256": hashlib.sha256(body).hexdigest()}


def test_a_small_body_is_still_read_whole_first(server):
    with connect(server) as sock:
        sock.sendall(head("/echo", 1000) + b"x" * 1000)
        status, out, _ = response(sock)
    assert (status, out["streamed"], out["read"]) == (200, False, 1000)


def test_100_continue_then_a_streamed_body(server):
    with connect(server) as sock:
        sock.sendall(head("/echo", SIZE, "Expect: 100-continue\r\n"))
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"y" * SIZE)
        status, out, _ = response(sock)
    assert (status, out["streamed"], out["read"]) == (200, True, SIZE)


def test_a_slow_reader_holds_back_the_client_within_the_buffer(server):
    size = 6 * STREAM_BUFFER
    with connect(server) as sock:
        sender = send_in_background(sock, head("/slow", size) + b"z" * size)
        status, out, _ = response(sock)
        sender.join(10)
    assert (status, out["read"]) == (200, size)
    assert STREAM_BUFFER // 2 < out["most_buffered"] <= STREAM_BUFFER


def test_with_the_slots_taken_a_large_body_is_spooled_and_small_requests_are_served(server):
    gates["/hold"] = threading.Event()
    with connect(server) as holder:  # 4 threads: 1 streaming slot
        holder.sendall(head("/hold", SIZE) + b"h" * 1000)
        assert seen.get(timeout=5)[:2] == ("first", "/hold")
        with connect(server) as other:
            other.sendall(head("/echo", SIZE) + b"e" * SIZE)
            status, out, _ = response(other)
            assert (status, out["streamed"], out["read"]) == (200, False, SIZE)
            other.sendall(head("/echo", 10) + b"s" * 10)
            status, out, _ = response(other)
            assert (status, out["read"]) == (200, 10)
        gates["/hold"].set()
        holder.sendall(b"h" * (SIZE - 1000))
        status, out, _ = response(holder)
        assert (status, out["streamed"], out["read"]) == (200, True, SIZE)
    assert slot_free(server)


def test_a_streamed_body_that_stops_gets_408_at_the_body_deadline(server):
    with connect(server) as sock:
        started = time.monotonic()
        sock.sendall(head("/echo", SIZE) + b"d" * 64 * 1024)  # earns 1 s besides body_timeout_s
        status, out, rest = response(sock)
        assert (status, out) == (408, {"error": "BodyTimedOut"})
        assert 1.5 < time.monotonic() - started < 5
        sock.settimeout(5)
        assert rest == b"" and sock.recv(100) == b""  # closed after the answer
    assert slot_free(server)


def test_a_client_that_leaves_mid_body_breaks_the_app_s_read(server):
    with connect(server) as sock:
        sock.sendall(head("/echo", SIZE) + b"c" * 100_000)
        assert seen.get(timeout=5)[:2] == ("first", "/echo")
    assert seen.get(timeout=5) == ("error", "/echo", "BodyCutOff")
    deadline = time.monotonic() + 5
    while not slot_free(server) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert slot_free(server)


def test_after_an_early_answer_the_rest_is_dropped_and_the_connection_kept(server):
    with connect(server) as sock:
        sender = send_in_background(sock, head("/early", 3 * STREAM_BUFFER) + b"q" * 3 * STREAM_BUFFER)
        status, out, rest = response(sock)
        assert (status, out) == (200, {"streamed": True, "read": 0})
        sender.join(10)
        assert not sender.is_alive()
        sock.sendall(head("/echo", 5) + b"after")
        status, out, _ = response(sock, rest)
        assert (status, out["read"]) == (200, 5)
    assert slot_free(server)


def test_a_request_pipelined_behind_a_streamed_body_is_answered(server):
    with connect(server) as sock:
        sock.sendall(head("/echo", SIZE) + b"p" * SIZE + head("/echo", 4) + b"next")
        status, out, rest = response(sock)
        assert (status, out["streamed"], out["read"]) == (200, True, SIZE)
        status, out, _ = response(sock, rest)
        assert (status, out["read"]) == (200, 4)
