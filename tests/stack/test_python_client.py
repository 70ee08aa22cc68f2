"""The real Python client (im-squonk2-client, package ``squonk2``) against the running local stack."""

from __future__ import annotations

import os
import time
import uuid

import pytest
from squonk2.auth import Auth
from squonk2.dm_api import DmApi

pytestmark = pytest.mark.stack

BINARY_SIZE = 3 * 1024 * 1024 + 12345  # a few MiB, not a multiple of any chunk size


@pytest.fixture(scope="module")
def login(stack):
    """``login(name)`` is a fresh access token from the stack's provider, as a user gets one."""

    def get(name: str, password: str | None = None) -> str | None:
        return Auth.get_access_token(
            keycloak_url=stack.facts["keycloak_url"],
            keycloak_realm="squonk2",
            keycloak_client_id="data-manager-api",
            username=name,
            password=stack.user(name)["password"] if password is None else password,
        )

    return get


@pytest.fixture(scope="module")
def tokens(login):
    out = {name: login(name) for name in ("alice", "bob", "carol")}
    for name, token in out.items():
        assert token, f"no token for {name}"
    return out


@pytest.fixture(autouse=True)
def api_url(stack):
    """The client's base URL is class-level: point it at the stack for every test."""
    DmApi.set_api_url(stack.facts["api_url"])
    assert DmApi.get_api_url()[0] == stack.facts["api_url"]


def new_project(stack, token: str, owner: str, private: bool = False) -> str:
    rv = DmApi.create_project(token, project_name=f"stack-test-{uuid.uuid4().hex[:12]}",
                              as_tier_product_id=stack.user(owner)["project_tier_product_id"],
                              private=private)
    assert rv.success, rv.msg
    assert rv.http_status_code == 201
    project_id = rv.msg["project_id"]
    assert project_id.startswith("project-")
    return project_id


def listed_names(token: str, project_id: str, path: str) -> list[str]:
    rv = DmApi.list_project_files(token, project_id=project_id, project_path=path)
    assert rv.success, rv.msg
    assert rv.http_status_code == 200
    return [f["file_name"] for f in rv.msg["files"]]


def download(token: str, project_id: str, path: str, name: str, dest) -> bytes:
    rv = DmApi.get_unmanaged_project_file(token, project_id=project_id, project_path=path,
                                          project_file=name, local_file=str(dest))
    assert rv.success, rv.msg
    assert rv.http_status_code == 200
    return dest.read_bytes()


# --- service and sign-in -----------------------------------------------------------------


def test_version_needs_no_token():
    rv = DmApi.get_version()
    assert rv.success, rv.msg
    assert rv.http_status_code == 200
    assert rv.msg["version"]


def test_ping_with_a_token(tokens):
    rv = DmApi.ping(tokens["alice"])
    assert rv.success, rv.msg
    assert rv.http_status_code == 200


def test_wrong_password_gives_no_token(login):
    assert login("alice", password="not-alices-password") is None
    assert login("nobody-here", password="nobody") is None


def test_garbage_token_is_refused():
    rv = DmApi.ping("this.is-not.a-token")
    assert not rv.success
    assert rv.http_status_code == 401
    rv = DmApi.get_available_projects("garbage")
    assert not rv.success
    assert rv.http_status_code == 401


# --- files ----------------------------------------------------------------------------


def test_unmanaged_files_round_trip(stack, tokens, tmp_path):
    alice = tokens["alice"]
    project_id = new_project(stack, alice, "alice")
    src = tmp_path / "src"
    src.mkdir()
    text = src / "notes.txt"
    text.write_text("Some notes\nline two\n")
    csv = src / "table.csv"
    csv.write_text("smiles,value\nCCO,1.5\nc1ccccc1,2.25\n")
    blob = src / "blob.bin"
    blob.write_bytes(os.urandom(BINARY_SIZE))
    local = [text, csv, blob]
    names = sorted(p.name for p in local)
    path = "/data/in"

    # Into a nested path that does not exist yet: the pre-listing answers 404.
    rv = DmApi.put_unmanaged_project_files(alice, project_id=project_id,
                                           project_files=[str(p) for p in local], project_path=path)
    assert rv.success, rv.msg
    assert rv.http_status_code == 404
    assert sorted(listed_names(alice, project_id, path)) == names
    assert listed_names(alice, project_id, "/data") == []  # only the directory "in"
    for p in local:
        assert download(alice, project_id, path, p.name, tmp_path / f"got-{p.name}") == p.read_bytes()

    # Again without force: every file is there already, so nothing is sent (and nothing changes).
    original = text.read_bytes()
    text.write_text("Changed notes\n")
    rv = DmApi.put_unmanaged_project_files(alice, project_id=project_id,
                                           project_files=[str(p) for p in local], project_path=path)
    assert rv.success, rv.msg
    assert rv.http_status_code == 200
    assert download(alice, project_id, path, text.name, tmp_path / "again.txt") == original

    # With force: overwritten.
    new_blob = os.urandom(BINARY_SIZE // 2)
    blob.write_bytes(new_blob)
    rv = DmApi.put_unmanaged_project_files(alice, project_id=project_id, project_files=[str(text), str(blob)],
                                           project_path=path, force=True)
    assert rv.success, rv.msg
    assert rv.http_status_code == 0  # no pre-listing with force
    assert download(alice, project_id, path, text.name, tmp_path / "forced.txt") == b"Changed notes\n"
    assert download(alice, project_id, path, blob.name, tmp_path / "forced.bin") == new_blob
    assert sorted(listed_names(alice, project_id, path)) == names

    # Delete two of them.
    rv = DmApi.delete_unmanaged_project_files(alice, project_id=project_id,
                                              project_files=[text.name, blob.name], project_path=path)
    assert rv.success, rv.msg
    assert listed_names(alice, project_id, path) == [csv.name]
    rv = DmApi.get_unmanaged_project_file(alice, project_id=project_id, project_path=path,
                                          project_file=text.name, local_file=str(tmp_path / "gone.txt"))
    assert not rv.success
    assert rv.http_status_code == 404

    # A path that does not exist is 404 for the listing.
    rv = DmApi.list_project_files(alice, project_id=project_id, project_path="/no/such/path")
    assert not rv.success
    assert rv.http_status_code == 404


# --- membership --------------------------------------------------------------------------


def test_editors_and_observers(stack, tokens, tmp_path):
    alice, bob = tokens["alice"], tokens["bob"]
    project_id = new_project(stack, alice, "alice")
    upload = tmp_path / "from-bob.txt"
    upload.write_text("bob was here\n")

    # bob may read the (public) project but not write to it.
    rv = DmApi.put_unmanaged_project_files(bob, project_id=project_id, project_files=str(upload), force=True)
    assert not rv.success
    rv = DmApi.add_project_editor(bob, project_id=project_id, editor="bob")
    assert not rv.success
    assert rv.http_status_code == 403

    rv = DmApi.add_project_editor(alice, project_id=project_id, editor="bob")
    assert rv.success, rv.msg
    assert rv.http_status_code == 201
    rv = DmApi.add_project_observer(alice, project_id=project_id, observer="carol")
    assert rv.success, rv.msg
    assert rv.http_status_code == 201

    rv = DmApi.get_project(alice, project_id=project_id)
    assert rv.success, rv.msg
    assert rv.http_status_code == 200
    assert rv.msg["project_id"] == project_id
    assert "bob" in rv.msg["editors"] and "alice" in rv.msg["editors"]
    assert rv.msg["observers"] == ["carol"]
    assert rv.msg["administrators"] == ["alice"]

    # bob, now an editor, uploads with his own token.
    rv = DmApi.put_unmanaged_project_files(bob, project_id=project_id, project_files=str(upload),
                                           project_path="/shared")
    assert rv.success, rv.msg
    assert listed_names(alice, project_id, "/shared") == [upload.name]
    assert download(alice, project_id, "/shared", upload.name, tmp_path / "seen-by-alice.txt") == b"bob was here\n"

    rv = DmApi.remove_project_editor(alice, project_id=project_id, editor="bob")
    assert rv.success, rv.msg
    assert rv.http_status_code == 204
    rv = DmApi.remove_project_observer(alice, project_id=project_id, observer="carol")
    assert rv.success, rv.msg
    assert rv.http_status_code == 204
    rv = DmApi.get_project(alice, project_id=project_id)
    assert rv.success, rv.msg
    assert rv.msg["editors"] == ["alice"]
    assert rv.msg["observers"] == []

    # No longer an editor: bob cannot upload.
    rv = DmApi.put_unmanaged_project_files(bob, project_id=project_id, project_files=str(upload),
                                           project_path="/shared", force=True)
    assert not rv.success
    rv = DmApi.delete_unmanaged_project_files(bob, project_id=project_id, project_files=upload.name,
                                              project_path="/shared")
    assert not rv.success
    assert rv.http_status_code == 403


def test_private_project_of_another_user_is_hidden(stack, tokens):
    alice, bob = tokens["alice"], tokens["bob"]
    project_id = new_project(stack, bob, "bob", private=True)

    rv = DmApi.get_project(alice, project_id=project_id)
    assert not rv.success
    assert rv.http_status_code == 404
    rv = DmApi.list_project_files(alice, project_id=project_id)
    assert not rv.success
    assert rv.http_status_code == 404
    rv = DmApi.get_available_projects(alice)
    assert rv.success, rv.msg
    assert project_id not in [p["project_id"] for p in rv.msg["projects"]]

    rv = DmApi.get_project(bob, project_id=project_id)
    assert rv.success, rv.msg
    assert rv.msg["private"] is True
    rv = DmApi.get_available_projects(bob)
    assert rv.success, rv.msg
    assert project_id in [p["project_id"] for p in rv.msg["projects"]]


# --- projects and tasks ---------------------------------------------------------------------


def test_available_projects(stack, tokens):
    alice = tokens["alice"]
    project_id = new_project(stack, alice, "alice")
    rv = DmApi.get_available_projects(alice)
    assert rv.success, rv.msg
    assert rv.http_status_code == 200
    mine = [p for p in rv.msg["projects"] if p["project_id"] == project_id]
    assert len(mine) == 1
    assert mine[0]["product_id"] == stack.user("alice")["project_tier_product_id"]
    assert mine[0]["size"] == 0
    name = mine[0]["name"]
    rv = DmApi.get_available_projects(alice, project_name=name)
    assert rv.success, rv.msg
    assert [p["project_id"] for p in rv.msg["projects"]] == [project_id]


def test_delete_project_runs_a_task(stack, tokens, tmp_path):
    alice = tokens["alice"]
    project_id = new_project(stack, alice, "alice")
    data = tmp_path / "data.txt"
    data.write_text("to be removed\n")
    rv = DmApi.put_unmanaged_project_files(alice, project_id=project_id, project_files=str(data),
                                           project_path="/deep/er")
    assert rv.success, rv.msg
    folder = stack.data_dir / "store" / "projects" / project_id
    assert (folder / "deep" / "er" / "data.txt").is_file()

    rv = DmApi.delete_project(alice, project_id=project_id)
    assert rv.success, rv.msg
    assert rv.http_status_code == 200
    task_id = rv.msg["task_id"]
    assert task_id.startswith("task-")

    # Gone at once.
    rv = DmApi.get_available_projects(alice)
    assert rv.success, rv.msg
    assert project_id not in [p["project_id"] for p in rv.msg["projects"]]
    rv = DmApi.get_project(alice, project_id=project_id)
    assert not rv.success
    assert rv.http_status_code == 404

    # The task finishes soon, and stays readable after the project is gone.
    deadline = time.monotonic() + 10
    while True:
        rv = DmApi.get_task(alice, task_id=task_id)
        assert rv.success, rv.msg
        assert rv.http_status_code == 200
        assert isinstance(rv.msg["done"], bool)
        if rv.msg["done"]:
            break
        assert time.monotonic() < deadline, f"task {task_id} not done after 10 s: {rv.msg}"
        time.sleep(0.2)
    assert rv.msg["purpose"] == "PROJECT"
    assert rv.msg["purpose_id"] == project_id
    assert rv.msg["removal"] is True
    assert rv.msg["exit_code"] == 0
    assert rv.msg["events"], rv.msg
    for event in rv.msg["events"]:
        assert {"time", "level", "message"} <= set(event)
    assert not folder.exists()

    rv = DmApi.get_tasks(alice)
    assert rv.success, rv.msg
    assert rv.http_status_code == 200
    assert task_id in [t["id"] for t in rv.msg["tasks"]]
    rv = DmApi.get_tasks(alice, exclude_done=True)
    assert rv.success, rv.msg
    assert task_id not in [t["id"] for t in rv.msg["tasks"]]
    rv = DmApi.get_tasks(alice, exclude_removal=True)
    assert rv.success, rv.msg
    assert task_id not in [t["id"] for t in rv.msg["tasks"]]

    # Another user does not see alice's task.
    rv = DmApi.get_task(tokens["carol"], task_id=task_id)
    assert not rv.success
    assert rv.http_status_code == 404
