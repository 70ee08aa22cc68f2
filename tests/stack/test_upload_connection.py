"""Uploads through the real server (gunicorn) leave the connection fit for the next request.

The upload route reads the body past gunicorn's own reader for speed; these tests hold
a keep-alive connection, including pipelined requests, across uploads that succeed and
uploads that are refused.
"""

import http.client
import json
import os
import socket
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.stack
BOUNDARY = "dmtestboundary"


def token(stack, user="alice"):
    import requests

    facts = stack.facts
    resp = requests.post(f"{facts['keycloak_url']}/realms/squonk2/protocol/openid-connect/token",
                         data={"client_id": "data-manager-api", "grant_type": "password",
                               "username": user, "password": user}, timeout=10)
    return resp.json()["access_token"]


def multipart(path: str, name: str, data: bytes) -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"path\"\r\n\r\n{path}\r\n"
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\r\n"
            ).encode() + data + f"\r\n--{BOUNDARY}--\r\n".encode()


@pytest.fixture(scope="module")
def project(stack):
    import requests

    tok = token(stack)
    resp = requests.post(f"{stack.api_url}/project", headers={"Authorization": f"Bearer {tok}"},
                         data={"name": "Connections", "tier_product_id": stack.user("alice")["project_tier_product_id"]},
                         timeout=10)
    assert resp.status_code == 201, resp.text
    return resp.json()["project_id"], tok


def request_bytes(stack, method, path, tok, body=b"", content_type=None) -> bytes:
    host = urlsplit(stack.api_url)
    head = [f"{method} {host.path}{path} HTTP/1.1", f"Host: {host.netloc}", f"Authorization: Bearer {tok}",
            f"Content-Length: {len(body)}"]
    if content_type:
        head.append(f"Content-Type: {content_type}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def test_keep_alive_across_good_and_refused_uploads(stack, project):
    pid, tok = project
    host = urlsplit(stack.api_url)
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=20)
    data = os.urandom(3 * 1024 * 1024 + 7)
    ctype = f"multipart/form-data; boundary={BOUNDARY}"
    headers = {"Authorization": f"Bearer {tok}", "Content-Type": ctype}
    for path, expect in (("/keep", 201), ("/../escape", 400), ("/keep", 201)):
        conn.request("PUT", f"{host.path}/project/{pid}/file", body=multipart(path, "k.bin", data), headers=headers)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == expect
        conn.request("GET", f"{host.path}/file?project_id={pid}&path=/keep", headers=headers)
        listing = conn.getresponse()
        body = json.loads(listing.read())
        assert listing.status == 200
        assert [(f["file_name"], f["stat"]["size"]) for f in body["files"]] == [("k.bin", len(data))]
    conn.request("GET", f"{host.path}/project/{pid}/file?path=/keep&file=k.bin", headers=headers)
    down = conn.getresponse()
    assert down.status == 200 and down.read() == data
    conn.close()


def test_pipelined_request_behind_an_upload_is_answered(stack, project):
    pid, tok = project
    host = urlsplit(stack.api_url)
    data = b"pipelined" * 1000
    first = request_bytes(stack, "PUT", f"/project/{pid}/file", tok, multipart("/pipe", "p.txt", data),
                          f"multipart/form-data; boundary={BOUNDARY}")
    second = request_bytes(stack, "GET", f"/file?project_id={pid}&path=/pipe", tok)
    second = second.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
    with socket.create_connection((host.hostname, host.port), timeout=20) as sock:
        sock.sendall(first + second)  # both at once: the second sits behind the first body
        received = b""
        while chunk := sock.recv(65536):  # the server closes after the second answer
            received += chunk
    statuses = [line.split(b" ")[1] for line in received.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]
    assert statuses == [b"201", b"200"]
    listing = json.loads(received.rsplit(b"\r\n\r\n", 1)[1])
    assert listing["files"][0]["stat"]["size"] == len(data)
