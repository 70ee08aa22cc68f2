"""Who may open an application instance: the access check an Ingress asks (``GET
/data-manager-api/instance-access/<id>``) and the proxy in front of the api, on a real notebook
stand-in process launched through the api; hostile tokens get 401 as on the API."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from werkzeug.test import Client

from functions.api import instance_proxy
from shared.db.models import Instance
from shared.db.session import transaction
from tests.functional.test_token_attacks import KINDS, forged_token

JUPYTER = "jupyternotebooks.squonk.it"


@pytest.fixture
def front(api, ff_app):
    """The api with the instance routes in front, as the local stack mounts them."""
    return Client(instance_proxy.with_instance_routes(ff_app, proxy_instances=True))


def set_phase(api, instance_id: str, phase: str) -> None:
    with transaction(api.services.engine) as s:  # what pbc records from the pod's events
        s.get(Instance, instance_id).phase = phase


@pytest.fixture
def notebook(api, alice, carol, admin):
    """A running notebook in alice's project: carol edits it, admin observes it."""
    pid = alice.create_project("Notebooks")
    assert alice.put(f"/project/{pid}/editor/carol").status_code == 201
    assert alice.put(f"/project/{pid}/observer/admin").status_code == 201
    resp = alice.post("/instance", data={"application_id": JUPYTER, "project_id": pid, "as_name": "Notebook"})
    assert resp.status_code == 201, resp.get_json()
    instance_id = resp.get_json()["instance_id"]
    assert "url" not in alice.get(f"/instance/{instance_id}").get_json()  # not before it runs
    yield {"id": instance_id, "project_id": pid}
    api.services.launcher.stop(instance_id)
    api.services.launcher.wait(instance_id, timeout=30)


def check(front, instance_id: str, headers: dict | None = None):
    """As nginx asks: the headers given, no cookie jar of its own."""
    plain = Client(front.application, use_cookies=False)
    return plain.get(f"/data-manager-api/instance-access/{instance_id}", headers=headers or {})


def test_the_access_check_lets_in_the_owner_and_editors_only(api, front, notebook, caller, token_for):
    iid = notebook["id"]
    pending = check(front, iid, caller("alice").headers)
    assert pending.status_code == 503 and pending.headers["Retry-After"]
    set_phase(api, iid, "RUNNING")
    for user in ("alice", "carol"):
        allowed = check(front, iid, caller(user).headers)
        assert allowed.status_code == 200 and allowed.headers["X-Auth-Request-User"] == user
    for user in ("bob", "admin"):  # a stranger; an admin who observes the project
        refused = check(front, iid, caller(user).headers)
        assert refused.status_code == 403 and "error" in refused.get_json()
    no_token = check(front, iid)
    assert no_token.status_code == 401 and "error" in no_token.get_json()
    unknown = check(front, "instance-00000000-0000-0000-0000-000000000000", caller("alice").headers)
    assert unknown.status_code == 404
    assert check(front, "not-an-instance", caller("alice").headers).status_code == 404


def test_admin_mode_does_not_open_someone_else_s_notebook(api, front, notebook, admin):
    set_phase(api, notebook["id"], "RUNNING")
    assert admin.patch("/user/account", data={"become_admin": "true"}).status_code in (200, 204)
    assert admin.get(f"/instance/{notebook['id']}").status_code == 200  # admin mode reads it...
    assert check(front, notebook["id"], admin.headers).status_code == 403  # ...but does not open it


def test_the_token_in_the_original_url_sets_the_cookie(api, front, notebook, token_for):
    iid = notebook["id"]
    set_phase(api, iid, "RUNNING")
    original = f"https://dm.example.org/{iid}/tree?token={token_for('carol')}"
    first = check(front, iid, {"X-Original-URL": original})
    assert first.status_code == 200
    cookie = first.headers["Set-Cookie"]
    assert cookie.startswith("dm-instance-token=") and f"Path=/{iid}/" in cookie
    assert "HttpOnly" in cookie and "Secure" in cookie
    value = cookie.split(";", 1)[0].split("=", 1)[1]
    assert check(front, iid, {"Cookie": f"other=1; dm-instance-token={value}"}).status_code == 200
    assert check(front, iid, {"Cookie": "dm-instance-token=a.b.c"}).status_code == 401


def test_ended_and_deleted_instances_and_jobs_are_not_found(api, front, notebook, alice):
    iid = notebook["id"]
    set_phase(api, iid, "FAILED")
    assert check(front, iid, alice.headers).status_code == 404
    set_phase(api, iid, "RUNNING")
    assert alice.delete(f"/instance/{iid}").status_code == 200
    assert check(front, iid, alice.headers).status_code == 404


@pytest.mark.parametrize("kind", KINDS)
def test_a_hostile_token_is_refused(api, front, notebook, identity, foreign_key, kind):
    set_phase(api, notebook["id"], "RUNNING")
    token = forged_token(kind, identity, foreign_key)
    for headers in ({"Authorization": f"Bearer {token}"}, {"Cookie": f"dm-instance-token={token}"}):
        resp = check(front, notebook["id"], headers)
        assert resp.status_code == 401, (kind, resp.get_data(as_text=True))
        assert "error" in resp.get_json()
    resp = front.get(f"/{notebook['id']}/", query_string={"token": token})
    assert resp.status_code == 401 and "Set-Cookie" not in resp.headers


@pytest.fixture(scope="module")
def foreign_key():
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


# --- the proxy, on the stand-in process and on a backend that answers slowly ---------------------------


def test_the_proxy_reaches_the_notebook_process(api, front, notebook, alice, carol, bob):
    import io

    iid = notebook["id"]
    alice.put(f"/project/{notebook['project_id']}/file", data={"path": "/", "file": (io.BytesIO(b"data\n"), "a.txt")},
              content_type="multipart/form-data")
    set_phase(api, iid, "RUNNING")
    deadline = time.monotonic() + 20
    while True:  # the process may not listen yet
        resp = front.get(f"/{iid}/a.txt", headers=carol.headers)
        if resp.status_code != 503:
            break
        assert time.monotonic() < deadline, resp.get_data(as_text=True)
        time.sleep(0.1)
    assert resp.status_code == 200 and resp.get_data() == b"data\n"
    assert front.get(f"/{iid}/a.txt", headers=bob.headers).status_code == 403
    assert front.get(f"/{iid}/a.txt").status_code == 401
    redirect = front.get(f"/{iid}/a.txt", query_string={"token": alice.headers["Authorization"][7:]})
    assert redirect.status_code == 303 and redirect.headers["Location"] == f"/{iid}/a.txt"
    assert front.get(f"/{iid}/a.txt").status_code == 200  # the test client keeps the cookie
    assert front.get(f"/{iid}/missing.txt", headers=alice.headers).status_code == 404  # the notebook's own


class _Slow(BaseHTTPRequestHandler):
    """Sends a first part, then waits for the test before the rest; echoes what a POST sends."""

    release = threading.Event()
    got: list[bytes] = []

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", str(2 * 65536))
        self.end_headers()
        self.wfile.write(b"a" * 65536)
        self.wfile.flush()
        self.release.wait(10)
        self.wfile.write(b"b" * 65536)

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.got.append(body)
        assert "Authorization" not in self.headers and "dm-instance-token" not in self.headers.get("Cookie", "")
        self.send_response(201)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Cookie", self.headers.get("Cookie", ""))
        self.end_headers()
        self.wfile.write(body)


def test_answers_stream_through_and_credentials_stay_behind(api, front, notebook, alice, monkeypatch):
    _Slow.release, _Slow.got = threading.Event(), []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(instance_proxy, "backend_address", lambda services, iid: server.server_address[:2])
        set_phase(api, notebook["id"], "RUNNING")
        resp = front.get(f"/{notebook['id']}/big", headers=alice.headers, buffered=False)
        assert resp.status_code == 200
        parts = iter(resp.response)
        first = next(parts)
        assert not _Slow.release.is_set() and first and set(first) == {ord("a")}  # before the backend finished
        _Slow.release.set()
        rest = b"".join(parts)
        resp.close()
        assert len(first) + len(rest) == 2 * 65536
        body = json.dumps({"x": "y" * 200_000}).encode()
        posted = Client(front.application, use_cookies=False).post(f"/{notebook['id']}/api/contents", data=body, content_type="application/json",
                            headers={**alice.headers, "Cookie": "_xsrf=1; dm-instance-token=zzz"})
        assert posted.status_code == 201 and posted.get_data() == body and _Slow.got == [body]
        assert posted.headers["X-Cookie"] == "_xsrf=1"
    finally:
        server.shutdown()
        server.server_close()


def test_a_cluster_s_ingresses_ask_the_api_s_access_check():
    from shared.config import Settings
    from shared.launchers import launcher_for
    from shared.services.instance_access import instance_url

    settings = Settings(launcher="kubernetes", public_url="https://dm.example.org", ingress_host="apps.example.org",
                        project_volume="/projects")
    launcher = launcher_for(settings)
    assert launcher.access_url + "/" == "https://dm.example.org" + instance_proxy.ACCESS_PREFIX
    assert launcher.ingress_host == "apps.example.org" and launcher.ingress_class == "nginx"
    assert instance_url(settings, "instance-1") == "https://apps.example.org/instance-1/"
    assert instance_url(Settings(launcher="kubernetes"), "instance-1") is None  # no Ingress, no URL
    assert instance_url(Settings(port=8123), "instance-1") == "http://127.0.0.1:8123/instance-1/"
