"""Slow and idle clients against the running stack (``dm run``) hold sockets, not the API.

With 200 connections that send nothing and 200 that send a body a byte a second, GET /version and
an authenticated GET /project answer as fast as without them (p99 within 100 ms), and each such
connection is closed at its deadline (short ones here: DM_HTTP_*). Every error the HTTP server
itself answers is JSON, and a too-large declared body is refused before it is sent.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from urllib.parse import urlsplit

import pytest
import requests

from tests.stack.conftest import API_PREFIX, start

pytestmark = pytest.mark.stack

IDLE_S, HEADER_S, BODY_S = 5, 5, 6  # long enough to measure while all are open, short for a fast test
MAX_UPLOAD = 1_000_000
CONNECTIONS = 200
MARGIN_S = 3.0  # the deadlines are looked at every second or so


@pytest.fixture(scope="module")
def strict_stack(tmp_path_factory):
    base = tmp_path_factory.mktemp("stall-stack")
    running = start(base / "data", base / "logs", DM_HOUSEKEEPING_EVERY_S="3600",
                    DM_HTTP_IDLE_TIMEOUT_S=str(IDLE_S), DM_HTTP_HEADER_TIMEOUT_S=str(HEADER_S),
                    DM_HTTP_BODY_TIMEOUT_S=str(BODY_S), DM_MAX_UPLOAD_BYTES=str(MAX_UPLOAD))
    yield running
    code = running.stop()
    assert code == 0, f"the stack exited with code {code} after SIGINT\n{running.output()}"


def token(stack, user: str = "alice") -> str:
    resp = requests.post(f"{stack.facts['keycloak_url']}/realms/squonk2/protocol/openid-connect/token",
                         data={"client_id": "data-manager-api", "grant_type": "password",
                               "username": user, "password": user}, timeout=10)
    return resp.json()["access_token"]


def latencies(stack, tok: str, rounds: int = 100) -> dict[str, float]:
    """p99 in seconds of GET /version and an authenticated GET /project, on one keep-alive session."""
    seen: dict[str, list[float]] = {"version": [], "project": []}
    with requests.Session() as session:
        for _ in range(rounds):
            for name, headers in (("version", {}), ("project", {"Authorization": f"Bearer {tok}"})):
                started = time.perf_counter()
                resp = session.get(f"{stack.api_url}/{name}", headers=headers, timeout=10)
                seen[name].append(time.perf_counter() - started)
                assert resp.status_code == 200, resp.text
    return {name: sorted(values)[int(len(values) * 0.99) - 1] for name, values in seen.items()}


def is_closed(sock: socket.socket) -> bool:
    """Whether the server closed it (or answered, then closed): data or EOF is waiting."""
    sock.setblocking(False)
    try:
        sock.recv(65536, socket.MSG_PEEK)
        return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_idle_and_slow_connections_do_not_delay_the_api(strict_stack):
    stack, tok = strict_stack, token(strict_stack)
    latencies(stack, tok, 10)  # warm
    baseline = latencies(stack, tok)

    host = urlsplit(stack.base_url)
    idle = [socket.create_connection((host.hostname, host.port)) for _ in range(CONNECTIONS)]
    opened = time.monotonic()
    slow = [socket.create_connection((host.hostname, host.port)) for _ in range(CONNECTIONS)]
    for sock in slow:
        sock.sendall(f"PUT {API_PREFIX}/project/x/file HTTP/1.1\r\nHost: {host.netloc}\r\n"
                     f"Authorization: Bearer {tok}\r\nContent-Length: 100000\r\n\r\n".encode())
    headers_sent = time.monotonic()
    stop = threading.Event()

    def drip() -> None:
        while not stop.wait(1.0):
            for sock in slow:
                try:
                    sock.send(b"x")
                except OSError:
                    pass

    dripping = threading.Thread(target=drip, daemon=True)
    dripping.start()
    try:
        loaded = latencies(stack, tok)
        assert not any(map(is_closed, idle + slow)), "closed before their deadline: the measure saw no load"
        assert time.monotonic() - opened < IDLE_S
        for name in baseline:
            assert loaded[name] <= baseline[name] + 0.100, (name, baseline, loaded)

        idle_closed: dict[int, float] = {}
        slow_closed: dict[int, float] = {}
        while time.monotonic() - opened < max(IDLE_S, BODY_S) + 2 * MARGIN_S:
            for group, closed in ((idle, idle_closed), (slow, slow_closed)):
                for n, sock in enumerate(group):
                    if n not in closed and is_closed(sock):
                        closed[n] = time.monotonic()
            if len(idle_closed) == len(slow_closed) == CONNECTIONS:
                break
            time.sleep(0.2)
    finally:
        stop.set()
        dripping.join(5)
    assert len(idle_closed) == CONNECTIONS and max(idle_closed.values()) - opened < IDLE_S + MARGIN_S
    assert len(slow_closed) == CONNECTIONS and max(slow_closed.values()) - headers_sent < BODY_S + 2 + MARGIN_S
    for sock in slow[:5]:
        sock.setblocking(True)
        sock.settimeout(5)
        status, _, body = sock.recv(65536).partition(b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 408 ") and "body did not arrive" in json.loads(body)["error"]
    for sock in idle + slow:
        sock.close()


# --- the server's own answers ----------------------------------------------------------------


def exchange(stack, request: bytes, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    host = urlsplit(stack.base_url)
    with socket.create_connection((host.hostname, host.port), timeout=timeout) as sock:
        sock.sendall(request)
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def request_to(stack, method: str, path: str, *extra: str) -> bytes:
    host = urlsplit(stack.base_url).netloc
    return "\r\n".join([f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: close", *extra, "", ""]).encode()


@pytest.mark.parametrize("case, code", [
    ("malformed", 400), ("newline in a path parameter", 404), ("newline under /auth", 404),
    ("long url", 414), ("64 KiB token", 431),
])
def test_errors_of_the_http_layer_are_json(strict_stack, case, code):
    stack = strict_stack
    request = {
        "malformed": b"GET / HTTP/1.1\r\nHost: x\r\nthis is no header\r\n\r\n",
        "newline in a path parameter": request_to(stack, "GET", f"{API_PREFIX}/project/project-1%0Ax"),
        "newline under /auth": request_to(stack, "GET", "/auth/realms/squonk2%0A"),
        "long url": request_to(stack, "GET", f"{API_PREFIX}/project/{'p' * 20_000}"),
        "64 KiB token": request_to(stack, "GET", f"{API_PREFIX}/project", f"Authorization: Bearer {'t' * 65536}"),
    }[case]
    status, headers, body = exchange(stack, request)
    assert status == code, body
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["error"]


@pytest.mark.parametrize("path, allowed", [(f"{API_PREFIX}/version", {"GET", "HEAD"}),
                                           ("/account-server-api/version", {"GET", "HEAD"})])
def test_trace_gets_a_json_405_with_allow(strict_stack, path, allowed):
    status, headers, body = exchange(strict_stack, request_to(strict_stack, "TRACE", path))
    assert status == 405 and headers["content-type"] == "application/json"
    assert set(headers["allow"].split(", ")) == allowed
    assert "TRACE" in json.loads(body)["error"]


@pytest.mark.parametrize("expect", [False, True])
def test_a_too_large_upload_is_refused_before_its_body(strict_stack, expect):
    """Only the headers are sent: the 413 comes without waiting for the body, never after a 100."""
    tok = token(strict_stack)
    extra = [f"Authorization: Bearer {tok}", "Content-Type: multipart/form-data; boundary=b",
             f"Content-Length: {10 * MAX_UPLOAD}"] + (["Expect: 100-continue"] if expect else [])
    status, headers, body = exchange(strict_stack, request_to(strict_stack, "PUT", f"{API_PREFIX}/project/p/file",
                                                              *extra), timeout=5)
    assert status == 413 and headers["content-type"] == "application/json"
    assert "larger than the limit" in json.loads(body)["error"]


def test_a_body_within_the_limit_gets_100_continue(strict_stack):
    host = urlsplit(strict_stack.base_url)
    with socket.create_connection((host.hostname, host.port), timeout=5) as sock:
        sock.sendall(request_to(strict_stack, "PUT", f"{API_PREFIX}/project/p/file", "Content-Length: 10",
                                f"Authorization: Bearer {token(strict_stack)}", "Expect: 100-continue"))
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"


@pytest.mark.parametrize("expect", [False, True])
def test_a_body_without_a_token_is_refused_before_it_is_sent(strict_stack, expect):
    extra = ["Content-Type: multipart/form-data; boundary=b", "Content-Length: 1000"]
    status, headers, body = exchange(strict_stack, request_to(strict_stack, "PUT", f"{API_PREFIX}/project/p/file",
                                                              *extra, *(["Expect: 100-continue"] if expect else [])),
                                     timeout=5)
    assert status == 401 and headers["content-type"] == "application/json"
    assert "Bearer" in json.loads(body)["error"]
