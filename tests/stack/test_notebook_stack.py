"""A notebook application on the running local stack: launched through the API, its process (the
notebook stand-in) reached at the instance's URL through the api's proxy, by who may open it only;
a WebSocket through the tunnel; a large file streamed; the URL gone with the instance."""

from __future__ import annotations

import hashlib
import json
import time
import uuid

import pytest
import requests
import websocket

pytestmark = pytest.mark.stack

JUPYTER = "jupyternotebooks.squonk.it"


def token(stack, user: str) -> str:
    resp = requests.post(f"{stack.facts['keycloak_url']}/realms/squonk2/protocol/openid-connect/token",
                         data={"client_id": "data-manager-api", "grant_type": "password", "username": user,
                               "password": user}, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()["access_token"]


def bearer(tok: str) -> dict:
    return {"Authorization": f"Bearer {tok}"}


@pytest.fixture(scope="module")
def tokens(stack):
    return {user: token(stack, user) for user in ("alice", "bob", "carol", "admin")}


@pytest.fixture(scope="module")
def notebook(stack, tokens):
    """alice's project (carol an editor, admin an observer) with files, and a running notebook in it."""
    api, alice = stack.api_url, bearer(tokens["alice"])
    resp = requests.post(f"{api}/project", headers=alice, timeout=10, data={
        "name": f"Notebooks {uuid.uuid4().hex[:8]}", "tier_product_id": stack.user("alice")["project_tier_product_id"]})
    assert resp.status_code == 201, resp.text
    pid = resp.json()["project_id"]
    for role, user in (("editor", "carol"), ("observer", "admin")):
        assert requests.put(f"{api}/project/{pid}/{role}/{user}", headers=alice, timeout=10).status_code == 201
    big = hashlib.sha256(b"seed").digest() * (48 * 1024 * 1024 // 32)  # 48 MiB
    for name, content in (("hello.txt", b"hello notebook\n"), ("big.bin", big)):
        resp = requests.put(f"{api}/project/{pid}/file", headers=alice, data={"path": "/"},
                            files={"file": (name, content)}, timeout=120)
        assert resp.status_code in (200, 201, 202), resp.text
    resp = requests.post(f"{api}/instance", headers=alice, timeout=10, data={
        "application_id": JUPYTER, "project_id": pid, "as_name": "Notebook",
        "specification": json.dumps({"variables": {}})})
    assert resp.status_code == 201, resp.text
    instance_id = resp.json()["instance_id"]
    deadline = time.monotonic() + 30
    while True:
        got = requests.get(f"{api}/instance/{instance_id}", headers=alice, timeout=10).json()
        if "url" in got:
            break
        assert time.monotonic() < deadline, got
        time.sleep(0.1)
    url = got["url"]
    assert url == f"{stack.base_url}/{instance_id}/"
    listed = requests.get(f"{api}/instance", headers=alice, params={"project_id": pid}, timeout=10).json()
    assert [i.get("url") for i in listed["instances"]] == [url]
    wait_answering(url + "hello.txt", alice)
    return {"project_id": pid, "instance_id": instance_id, "url": url, "big": hashlib.sha256(big).hexdigest()}


def wait_answering(url: str, headers: dict) -> None:
    """The process may not listen yet: 503 with Retry-After until it does."""
    deadline = time.monotonic() + 20
    while True:
        resp = requests.get(url, headers=headers, timeout=10)
        if resp.status_code != 503:
            return
        assert resp.headers.get("Retry-After"), resp.headers
        assert time.monotonic() < deadline, resp.text
        time.sleep(0.1)


def test_who_may_open_the_notebook(notebook, tokens):
    url = notebook["url"] + "hello.txt"
    for user in ("alice", "carol"):  # the owner, an editor
        resp = requests.get(url, headers=bearer(tokens[user]), timeout=10)
        assert resp.status_code == 200 and resp.content == b"hello notebook\n", (user, resp.text)
    for user in ("bob", "admin"):  # a stranger; an admin who only observes the project
        resp = requests.get(url, headers=bearer(tokens[user]), timeout=10)
        assert resp.status_code == 403 and "error" in resp.json(), (user, resp.text)
    resp = requests.get(url, timeout=10)
    assert resp.status_code == 401 and "error" in resp.json()
    resp = requests.get(url, headers={"Authorization": "Bearer not.a.token"}, timeout=10)
    assert resp.status_code == 401
    listing = requests.get(notebook["url"], headers=bearer(tokens["alice"]), timeout=10)
    assert listing.status_code == 200 and "hello.txt" in listing.text


def test_a_token_in_the_query_becomes_a_cookie(notebook, tokens):
    browser = requests.Session()
    first = browser.get(notebook["url"] + "hello.txt", params={"token": tokens["alice"], "x": "1"},
                        allow_redirects=False, timeout=10)
    assert first.status_code == 303
    location = first.headers["Location"]
    assert location == f"/{notebook['instance_id']}/hello.txt?x=1" and "token" not in location
    cookie = first.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and f"Path=/{notebook['instance_id']}/" in cookie
    followed = browser.get(notebook["url"] + "hello.txt?x=1", timeout=10)
    assert followed.status_code == 200 and followed.content == b"hello notebook\n"
    assert requests.get(notebook["url"] + "hello.txt", params={"token": tokens["bob"]},
                        allow_redirects=False, timeout=10).status_code == 403
    assert requests.get(notebook["url"] + "hello.txt", params={"token": "x.y.z"},
                        allow_redirects=False, timeout=10).status_code == 401


def test_a_websocket_goes_through(notebook, tokens):
    ws_url = "ws://" + notebook["url"].split("://", 1)[1] + "api/kernels/k1/channels"
    ws = websocket.create_connection(ws_url, header=[f"Authorization: Bearer {tokens['carol']}"], timeout=10)
    try:
        for message in ("hello", "ü" * 1000, "x" * 200_000):
            ws.send(message)
            assert ws.recv() == message
    finally:
        ws.close()
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(ws_url, header=[f"Authorization: Bearer {tokens['bob']}"], timeout=10)
    assert refused.value.status_code == 403
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(ws_url, timeout=10)
    assert refused.value.status_code == 401


def test_a_large_file_streams_through(notebook, tokens):
    digest = hashlib.sha256()
    with requests.get(notebook["url"] + "big.bin", headers=bearer(tokens["alice"]), stream=True, timeout=30) as resp:
        assert resp.status_code == 200 and int(resp.headers["Content-Length"]) == 48 * 1024 * 1024
        for chunk in resp.iter_content(1024 * 1024):
            digest.update(chunk)
    assert digest.hexdigest() == notebook["big"]


def test_zz_the_url_is_gone_with_the_instance(stack, notebook, tokens):
    alice = bearer(tokens["alice"])
    ws_url = "ws://" + notebook["url"].split("://", 1)[1] + "api/kernels/k2/channels"
    ws = websocket.create_connection(ws_url, header=[f"Authorization: Bearer {tokens['alice']}"], timeout=10)
    resp = requests.delete(f"{stack.api_url}/instance/{notebook['instance_id']}", headers=alice, timeout=10)
    assert resp.status_code == 200
    resp = requests.get(notebook["url"] + "hello.txt", headers=alice, timeout=10)
    assert resp.status_code == 404 and "error" in resp.json()
    # the process has gone: the open WebSocket is closed, not left hanging
    ws.settimeout(15)
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
        while True:
            if ws.recv() in ("", b""):
                raise websocket.WebSocketConnectionClosedException("closed")
