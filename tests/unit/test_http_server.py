"""shared.http_server on a real socket: its own errors as JSON, early 413 (and no 100 for it), the
header and body deadlines, the drain after an error, and `json_errors` in front of Flask."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time

import pytest

from shared.http_server import Limits, json_errors
from tests.http_kit import echo, serving

LIMITS = Limits(threads=4, connection_limit=100, idle_timeout_s=2, header_timeout_s=1.0, body_timeout_s=1.0,
                max_request_line=1024, max_header_bytes=4096, max_body_bytes=10_000)


@pytest.fixture(scope="module")
def server():
    with serving(echo, LIMITS) as running:
        yield running


def connect(server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.effective_port), timeout=10)
    return sock


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def split(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def exchange(server, request: bytes) -> tuple[int, dict[str, str], bytes]:
    with connect(server) as sock:
        sock.sendall(request)
        return split(read_all(sock))


def assert_json_error(status, headers, body, code, words):
    assert status == code, body
    assert headers["content-type"] == "application/json"
    message = json.loads(body)["error"]
    assert words in message, message


def test_a_request_within_the_limits_is_served(server):
    request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
    status, _, body = exchange(server, request)
    assert (status, body) == (200, b"hello")


@pytest.mark.parametrize("request_bytes, code, words", [
    (b"GET / HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n", 400, "Invalid header"),
    (b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "longer than the limit of 1024 bytes"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + b"t" * 8000 + b"\r\n\r\n", 431, "limit of 4096 bytes"),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10001\r\n\r\n", 413, "larger than the limit of 10000 bytes"),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "not supported"),
])
def test_the_server_s_own_errors_are_json(server, request_bytes, code, words):
    assert_json_error(*exchange(server, request_bytes), code, words)


def test_a_too_large_body_gets_413_instead_of_100_continue(server):
    with connect(server) as sock:
        sock.sendall(b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 20000\r\nExpect: 100-continue\r\n\r\n")
        raw = read_all(sock)
    assert not raw.startswith(b"HTTP/1.1 100"), raw
    assert_json_error(*split(raw), 413, "larger than the limit")


def test_a_body_within_the_limit_gets_100_continue_first(server):
    with connect(server) as sock:
        sock.sendall(b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n"
                     b"Connection: close\r\n\r\n")
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"abc")
        status, _, body = split(read_all(sock))
    assert (status, body) == (200, b"abc")


def test_the_413_reaches_a_client_that_goes_on_sending_its_body(server):
    """The answer comes after the headers; the connection is drained, not reset under the client."""
    with connect(server) as sock:
        sock.sendall(b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n" + b"x" * 200_000)
        sent = threading.Thread(target=lambda: _send_quietly(sock, b"y" * 300_000), daemon=True)
        sent.start()
        assert_json_error(*split(read_all(sock)), 413, "larger than the limit")
        sent.join(5)


def _send_quietly(sock, data):
    try:
        sock.sendall(data)
    except OSError:
        pass


def test_headers_that_trickle_get_408_at_the_header_deadline(server):
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n")
        started = time.monotonic()
        raw = read_all(sock)
    assert_json_error(*split(raw), 408, "headers did not arrive within 1 s")
    assert time.monotonic() - started < LIMITS.header_timeout_s + 3


def test_a_body_that_trickles_gets_408_at_the_body_deadline(server):
    with connect(server) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        started = time.monotonic()
        sock.settimeout(0.3)
        raw = b""
        while time.monotonic() - started < LIMITS.body_timeout_s + 4:
            _send_quietly(sock, b"z")
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                break
            raw += chunk
    assert_json_error(*split(raw), 408, "body did not arrive in time")


def test_a_body_that_keeps_up_is_not_cut_off(server):
    """2.5 s of sending against a 1 s body deadline: each 64 KiB that arrives earns a second."""
    with serving(echo, Limits(threads=2, body_timeout_s=1.0, max_body_bytes=10**7)) as big:
        with socket.create_connection(("127.0.0.1", big.effective_port), timeout=10) as sock:
            chunk, rounds = b"k" * 40_000, 10
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
                         % (len(chunk) * rounds))
            for _ in range(rounds):
                sock.sendall(chunk)
                time.sleep(0.25)
            status, _, body = split(read_all(sock))
        assert status == 200 and len(body) == len(chunk) * rounds


def test_an_idle_connection_is_closed_after_the_idle_timeout(server):
    with connect(server) as sock:
        started = time.monotonic()
        assert read_all(sock) == b""
    assert LIMITS.idle_timeout_s - 0.5 < time.monotonic() - started < LIMITS.idle_timeout_s + 3


def test_the_access_log_escapes_control_characters(server, caplog):
    with caplog.at_level(logging.INFO, logger="dm.access"):
        exchange(server, b"GET /a%0Ab\x01 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    lines = [r.getMessage() for r in caplog.records if r.name == "dm.access"]
    assert lines and all("\n" not in line and "\x01" not in line for line in lines), lines


# --- json_errors ------------------------------------------------------------------------------


@pytest.fixture
def flask_client():
    from flask import Flask
    from werkzeug.test import Client

    app = Flask("t")

    @app.route("/items/<path:name>", methods=["GET", "DELETE"])  # as functions-framework's catch-all
    def item(name):
        return {"name": name}

    @app.route("/boom")
    def boom():
        raise RuntimeError("secret detail")

    @app.route("/teapot")
    def teapot():
        return {"error": "short and stout"}, 418

    def dispatcher_405(environ, start_response):  # a 405 of our own dispatchers: JSON, no Allow
        if environ["PATH_INFO"].startswith("/api/"):
            start_response("405 METHOD NOT ALLOWED", [("Content-Type", "application/json")])
            return [b'{"error": "no"}']
        return app(environ, start_response)

    def allowed(environ):
        return ["GET", "HEAD"] if environ["PATH_INFO"] == "/api/x" else []

    return Client(json_errors(dispatcher_405, allowed))


@pytest.mark.parametrize("method, path, code, message", [
    ("GET", "/items/a%0Ab", 404, "Not found"),  # the path converter's "." stops at a newline
    ("GET", "/nowhere", 404, "Not found"),
    ("TRACE", "/items/a", 405, "Method TRACE is not allowed here"),
    ("GET", "/boom", 500, "Internal server error"),
])
def test_html_error_pages_become_json(flask_client, method, path, code, message):
    resp = flask_client.open(path, method=method)
    assert resp.status_code == code
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.get_json() == {"error": message}
    assert "secret detail" not in resp.get_data(as_text=True)


def test_flask_s_405_keeps_its_allow_header(flask_client):
    resp = flask_client.open("/items/a", method="TRACE")
    assert set(resp.headers["Allow"].split(", ")) == {"GET", "DELETE", "HEAD", "OPTIONS"}


def test_a_405_without_allow_gets_one(flask_client):
    resp = flask_client.open("/api/x", method="TRACE")
    assert resp.status_code == 405
    assert resp.headers["Allow"] == "GET, HEAD"
    assert resp.get_json() == {"error": "no"}  # the app's own JSON body is kept


def test_json_answers_pass_untouched(flask_client):
    assert flask_client.get("/items/a").get_json() == {"name": "a"}
    resp = flask_client.get("/teapot")
    assert (resp.status_code, resp.get_json()) == (418, {"error": "short and stout"})


def test_an_app_that_starts_its_answer_late_is_converted_too():
    from werkzeug.test import Client

    def late(environ, start_response):
        start_response("404 NOT FOUND", [("Content-Type", "text/html")])
        yield b"<html>gone</html>"

    resp = Client(json_errors(late)).get("/x")
    assert resp.status_code == 404 and resp.get_json() == {"error": "Not found"}
