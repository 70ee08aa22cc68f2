"""A body sent to the API without a token is refused from its headers, before the body is read."""

from __future__ import annotations

import importlib
import json
import socket

import pytest

from shared.config import API_PREFIX
from shared.http_server import Limits
from shared.stack import refuse_without_token
from tests.http_kit import echo, serving

LIMITS = Limits(threads=2, connection_limit=20, idle_timeout_s=5, header_timeout_s=5.0, body_timeout_s=5.0)


@pytest.fixture(scope="module")
def server():
    with serving(echo, LIMITS, access=False, refuse_early=refuse_without_token) as running:
        yield running


def answer(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < _length(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def _length(data: bytes) -> int:
    for line in data.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def send(server, head: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.effective_port), timeout=5)
    sock.sendall(head)
    return sock


@pytest.mark.parametrize("authorization", [b"", b"Authorization: Basic YTpi\r\n", b"Authorization: Bearer \r\n"])
def test_a_body_without_a_bearer_token_is_refused_before_it_is_sent(server, authorization):
    # 10 MB declared, none sent: the answer must come anyway (the socket timeout is 5 s)
    with send(server, b"POST " + API_PREFIX.encode() + b"/project HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Length: 10000000\r\n" + authorization + b"\r\n") as sock:
        status, body = answer(sock)
    assert status == 401
    assert "Bearer" in json.loads(body)["error"]


def test_chunked_bodies_are_refused_too(server):
    with send(server, b"PUT " + API_PREFIX.encode() + b"/path HTTP/1.1\r\nHost: x\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n") as sock:
        assert answer(sock)[0] == 401


def test_a_body_with_a_token_is_read_and_served(server):
    with send(server, b"POST " + API_PREFIX.encode() + b"/project HTTP/1.1\r\nHost: x\r\n"
                      b"Authorization: bearer a.b.c\r\nContent-Length: 5\r\nConnection: close\r\n\r\n") as sock:
        sock.sendall(b"hello")
        assert answer(sock) == (200, b"hello")  # the token itself is the api's to judge


@pytest.mark.parametrize("method, path", [("GET", API_PREFIX + "/version"), ("DELETE", API_PREFIX + "/instance/i/token/t"),
                                          ("POST", "/auth/realms/squonk2/protocol/openid-connect/token")])
def test_what_needs_no_token_is_not_refused(server, method, path):
    with send(server, f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
              .encode()) as sock:
        assert answer(sock) == (200, b"ok")


def test_every_operation_that_takes_a_body_needs_a_token():
    """What makes the early refusal safe: no POST, PUT or PATCH of the API is answered without a token."""
    from functions.api.app import ROUTE_MODULES

    routes = [r for name in ROUTE_MODULES for r in importlib.import_module(f"functions.api.routes.{name}").router.routes]
    assert len(routes) > 80
    tokenless = sorted((m, r.path) for r in routes if not r.auth for m in r.methods)
    assert tokenless and all(method in ("GET", "DELETE") for method, _ in tokenless), tokenless
