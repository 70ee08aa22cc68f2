"""Managed files: dataset versions placed in projects by the upload function."""

import gzip
import io

import pytest

from tests.functional.test_datasets import SDF, finish, pending_events, post_dataset, upload_fn  # noqa: F401


@pytest.fixture
def version(alice, api, upload_fn):  # noqa: F811
    body = post_dataset(alice, SDF, "ethanol.sdf", "chemical/x-mdl-sdfile").get_json()
    finish(api, upload_fn)
    return body["dataset_id"]


def attach(who, dataset, pid, **extra):
    return who.post("/file", data={"dataset_id": dataset, "dataset_version": "1", "project_id": pid,
                                   "as_type": "chemical/x-mdl-sdfile", **extra})


def listing(who, pid, path="/"):
    return who.get("/file", query_string={"project_id": pid, "path": path}).get_json()


def test_attach_compressed_and_read_only(alice, api, upload_fn, version):  # noqa: F811
    pid = alice.create_project("Managed")
    resp = attach(alice, version, pid, path="/data")
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["file_name"] == "ethanol.sdf.gz" and body["file_path"] == "/data"
    assert alice.get(f"/file/{body['file_id']}").status_code == 403  # not yet placed
    finish(api, upload_fn)
    task = alice.get(f"/task/{body['task_id']}").get_json()
    assert task["purpose"] == "FILE" and task["exit_code"] == 0
    (entry,) = listing(alice, pid, "/data")["files"]
    assert entry["file_id"] == body["file_id"] and entry["dataset_id"] == version and entry["immutable"] is True
    down = alice.get(f"/file/{body['file_id']}")
    assert down.status_code == 200 and gzip.decompress(down.get_data()) == SDF
    project = alice.get(f"/project/{pid}").get_json()
    assert [f["file_id"] for f in project["files"]] == [body["file_id"]]
    assert project["size"] == entry["stat"]["size"]
    # read-only in the project
    q = {"project_id": pid, "path": "/data", "file": "ethanol.sdf.gz"}
    assert alice.delete("/file", query_string=q).status_code == 405
    move = {"project_id": pid, "src_path": "/data", "file": "ethanol.sdf.gz", "dst_file": "x.gz"}
    assert alice.put("/file/move", query_string=move).status_code == 405
    over = alice.put(f"/project/{pid}/file", data={"path": "/data", "file": (io.BytesIO(b"x"), "ethanol.sdf.gz")},
                     content_type="multipart/form-data")
    assert over.status_code == 403
    assert gzip.decompress(alice.get(f"/file/{body['file_id']}").get_data()) == SDF
    # detach
    assert alice.delete(f"/file/{body['file_id']}").status_code == 204
    assert listing(alice, pid, "/data")["files"] == []
    assert alice.get(f"/file/{body['file_id']}").status_code == 404
    assert alice.get(f"/project/{pid}").get_json()["size"] == 0


def test_attach_uncompressed(alice, api, upload_fn, version):  # noqa: F811
    pid = alice.create_project("Plain")
    body = attach(alice, version, pid, compress="False", immutable="False").get_json()
    finish(api, upload_fn)
    assert body["file_name"] == "ethanol.sdf"
    assert alice.get(f"/file/{body['file_id']}").get_data() == SDF
    assert alice.get(f"/project/{pid}/file", query_string={"file": "ethanol.sdf"}).get_data() == SDF


@pytest.mark.parametrize("extra, status", [
    ({"as_type": "text/csv"}, 422),
    ({"dataset_version": "9"}, 404),
    ({"dataset_version": "x"}, 400),
    ({"path": "/../up"}, 400),
    ({"dataset_id": "dataset-nope"}, 400),
])
def test_bad_attach_requests(alice, api, version, extra, status):
    pid = alice.create_project("Bad")
    resp = attach(alice, version, pid, **extra)
    assert resp.status_code == status, resp.get_json()
    assert pending_events(api) == []
    assert listing(alice, pid)["files"] == []


def test_only_project_editors_attach_and_detach(alice, bob, api, upload_fn, version):  # noqa: F811
    pid = alice.create_project("Team")
    alice.put(f"/project/{pid}/observer/bob")
    alice.put(f"/dataset/{version}/editor/bob")  # a dataset editor is not enough
    assert attach(bob, version, pid).status_code == 403
    body = attach(alice, version, pid).get_json()
    finish(api, upload_fn)
    assert bob.get(f"/file/{body['file_id']}").status_code == 200  # observers read
    assert bob.delete(f"/file/{body['file_id']}").status_code == 403


def test_attaching_twice_to_the_same_place_is_refused(alice, api, upload_fn, version):  # noqa: F811
    pid = alice.create_project("Twice")
    assert attach(alice, version, pid).status_code == 201
    again = attach(alice, version, pid)
    assert again.status_code == 400 and "already exists" in again.get_json()["error"]


def test_managed_files_follow_their_directory(alice, api, upload_fn, version):  # noqa: F811
    pid = alice.create_project("Moves")
    body = attach(alice, version, pid, path="/a/b").get_json()
    finish(api, upload_fn)
    assert alice.put("/path/move", data={"project_id": pid, "src_path": "/a", "dst_path": "/z"}).status_code == 200
    assert alice.get(f"/project/{pid}").get_json()["files"][0]["file_path"] == "/z/b"
    assert gzip.decompress(alice.get(f"/file/{body['file_id']}").get_data()) == SDF
    assert alice.delete("/path", data={"project_id": pid, "path": "/z"}).status_code == 204
    assert alice.get(f"/file/{body['file_id']}").status_code == 404


@pytest.mark.parametrize("keep", [False, True])
def test_deleting_a_version_removes_or_keeps_its_project_files(alice, api, upload_fn, version, keep):  # noqa: F811
    pid = alice.create_project("Goes")
    body = attach(alice, version, pid).get_json()
    finish(api, upload_fn)
    q = {"keep_project_files": "True"} if keep else {}
    assert alice.delete(f"/dataset/{version}/1", query_string=q).status_code == 200
    finish(api, upload_fn)
    assert alice.get(f"/file/{body['file_id']}").status_code == 404
    names = [f["file_name"] for f in listing(alice, pid)["files"]]
    if keep:  # an unmanaged file now: deletable the ordinary way
        assert names == ["ethanol.sdf.gz"]
        assert "file_id" not in listing(alice, pid)["files"][0]
        assert alice.delete("/file", query_string={"project_id": pid, "file": "ethanol.sdf.gz"}).status_code == 204
    else:
        assert names == []
        assert alice.get(f"/project/{pid}").get_json()["size"] == 0
