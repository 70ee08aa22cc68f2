"""GET /dataset filters, and what versions show of their labels and their places in projects."""

import json

import pytest

from tests.functional.test_datasets import SDF, finish, post_dataset, upload_fn  # noqa: F401


def upload(who, api, upload_fn, name="mol.sdf", mime="chemical/x-mdl-sdfile", data=SDF, **fields):  # noqa: F811
    body = post_dataset(who, data, name, mime, **fields).get_json()
    finish(api, upload_fn)
    return body["dataset_id"]


def ids(who, **query):
    resp = who.get("/dataset", query_string=query)
    assert resp.status_code == 200, resp.get_json()
    return {d["dataset_id"] for d in resp.get_json()["datasets"]}


def label(who, dataset_id, *labels):
    resp = who.post(f"/dataset/{dataset_id}/meta", data={"labels": json.dumps(list(labels))})
    assert resp.status_code == 201, resp.get_json()


@pytest.fixture
def library(alice, bob, carol, api, upload_fn):  # noqa: F811
    """alice owns a (bob edits it) and b (labelled); bob owns c (alice edits it); carol owns d (private to her)."""
    a = upload(alice, api, upload_fn)
    b = upload(alice, api, upload_fn, "notes.txt", "text/plain", b"hello\n")
    c = upload(bob, api, upload_fn)
    d = upload(carol, api, upload_fn)
    assert alice.put(f"/dataset/{a}/editor/bob").status_code == 201
    assert bob.put(f"/dataset/{c}/editor/alice").status_code == 201
    label(alice, b, {"label": "Origin", "value": "vendor-a"}, {"label": "checked", "value": None})
    return {"a": a, "b": b, "c": c, "d": d}


def test_only_owned_and_edited_datasets_are_listed(alice, carol, library):
    assert ids(alice) == {library["a"], library["b"], library["c"]}
    assert ids(carol) == {library["d"]}


def test_owner_filters(alice, library):
    assert ids(alice, username="alice") == {library["a"], library["b"]}
    assert ids(alice, owners="bob") == {library["c"]}
    assert ids(alice, owners="bob, alice") == {library["a"], library["b"], library["c"]}
    assert ids(alice, owners="nobody") == set()


def test_editor_filters_and_how_they_combine(alice, library):
    assert ids(alice, editors="bob") == {library["a"]}
    assert ids(alice, editors="alice") == {library["c"]}
    # owners OR editors
    assert ids(alice, owners="bob", editors="bob") == {library["a"], library["c"]}
    # username AND editors
    assert ids(alice, username="alice", editors="bob") == {library["a"]}
    assert ids(alice, username="bob", editors="bob") == set()


def test_type_filter(alice, library):
    assert ids(alice, dataset_mime_type="text/plain") == {library["b"]}


def test_label_filters(alice, library):
    assert ids(alice, labels=json.dumps({"origin": "vendor-a"})) == {library["b"]}
    assert ids(alice, labels=json.dumps({"Origin": "vendor-a"})) == {library["b"]}  # names are case-blind
    assert ids(alice, labels=json.dumps({"origin": None})) == {library["b"]}  # the label alone
    assert ids(alice, labels=json.dumps({"checked": None, "origin": "vendor-a"})) == {library["b"]}
    assert ids(alice, labels=json.dumps({"origin": "vendor-b"})) == set()
    assert ids(alice, labels=json.dumps({"origin": "vendor-a", "missing": None})) == set()


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '{"a": 1}', '{"a": ["x"]}'])
def test_a_bad_label_filter_is_a_400(alice, library, text):
    resp = alice.get("/dataset", query_string={"labels": text})
    assert resp.status_code == 400 and "labels" in resp.get_json()["error"]


def test_versions_show_the_datasets_labels(alice, library):
    (listed,) = [d for d in alice.get("/dataset").get_json()["datasets"] if d["dataset_id"] == library["b"]]
    assert listed["versions"][0]["labels"] == {"origin": "vendor-a", "checked": None}
    detail = alice.get(f"/dataset/{library['b']}/versions").get_json()
    assert detail["versions"][0]["labels"] == {"origin": "vendor-a", "checked": None}
    label(alice, library["b"], {"label": "origin", "active": False})
    detail = alice.get(f"/dataset/{library['b']}/versions").get_json()
    assert detail["versions"][0]["labels"] == {"checked": None}


def test_versions_show_the_projects_they_are_placed_in(alice, api, upload_fn, library):  # noqa: F811
    dataset_id = library["a"]
    detail = alice.get(f"/dataset/{dataset_id}/versions").get_json()
    assert detail["versions"][0]["projects"] == [] and detail["versions"][0]["project_files"] == []
    pid = alice.create_project("Placed")
    placed = alice.post("/file", data={"dataset_id": dataset_id, "dataset_version": "1", "project_id": pid,
                                       "as_type": "chemical/x-mdl-sdfile"}).get_json()
    finish(api, upload_fn)
    (version,) = alice.get(f"/dataset/{dataset_id}/versions").get_json()["versions"]
    assert version["projects"] == [pid]
    assert version["project_files"] == [{"project": pid, "project_name": "Placed", "files": [placed["file_id"]]}]
    (listed,) = [d for d in alice.get("/dataset").get_json()["datasets"] if d["dataset_id"] == dataset_id]
    assert listed["versions"][0]["projects"] == [pid] and "project_files" not in listed["versions"][0]
    assert alice.delete(f"/file/{placed['file_id']}").status_code == 204
    (version,) = alice.get(f"/dataset/{dataset_id}/versions").get_json()["versions"]
    assert version["projects"] == []
