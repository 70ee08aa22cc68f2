"""Dataset uploads through the api function and the upload function, joined by real CloudEvents."""

import gzip
import hashlib
import io

import pytest

SDF = (
    "ethanol\n  RDKit          2D\n\n  3  2  0  0  0  0  0  0  0  0999 V2000\n"
    "    0.0000    0.0000    0.0000 C   0  0\n    1.2990    0.7500    0.0000 C   0  0\n"
    "    2.5981   -0.0000    0.0000 O   0  0\n  1  2  1  0\n  2  3  1  0\nM  END\n$$$$\n"
).encode()


@pytest.fixture(params=["local", "s3"])
def settings(request, settings):
    """Every dataset test runs on the local folder and on S3 (moto over HTTP)."""
    from tests.conftest import local_or_s3

    return local_or_s3(request, settings, "datasets")


@pytest.fixture
def upload_fn(api, monkeypatch):
    """The upload function (its own functions-framework app) on the same database and store."""
    import functions_framework

    from functions.upload import handler
    from tests.conftest import ROOT

    class Same:
        settings = api.settings
        engine = api.services.engine
        storage = api.services.storage

    monkeypatch.setattr(handler, "services", Same())
    return functions_framework.create_app(target="upload", source=str(ROOT / "main.py"),
                                          signature_type="http").test_client()


def pending_events(api):
    from sqlalchemy import select

    from shared.db.models import OutboxEvent
    from shared.db.session import transaction

    with transaction(api.services.engine) as s:
        return list(s.scalars(select(OutboxEvent).where(OutboxEvent.delivered_at.is_(None))
                              .order_by(OutboxEvent.created)))


def deliver(upload_fn, event):
    """POST an outbox event to the upload function as the broker would (binary mode)."""
    from shared.events import outbox, wire

    headers, body = wire.to_http(outbox.wire_event(event))
    return upload_fn.post("/", data=body, headers=headers)


def post_dataset(who, data: bytes, name: str, mime: str, **fields):
    form = {"dataset_type": mime, "unit_id": who.unit["unit_id"], **fields,
            "dataset_file": (io.BytesIO(data), name)}
    return who.post("/dataset", data=form, content_type="multipart/form-data")


def test_upload_becomes_a_version_after_the_event(alice, api, upload_fn):
    resp = post_dataset(alice, SDF, "ethanol.sdf", "chemical/x-mdl-sdfile")
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert set(body) == {"dataset_id", "dataset_version", "task_id"} and body["dataset_version"] == 1
    # hidden until processed
    assert alice.get(f"/dataset/{body['dataset_id']}/versions").get_json()["count"] == 0
    assert alice.get("/dataset").get_json()["count"] == 0
    (event,) = pending_events(api)
    assert event.type == "dm.dataset.upload.v1"
    assert deliver(upload_fn, event).status_code == 202
    task = alice.get(f"/task/{body['task_id']}").get_json()
    assert task["done"] is True and task["exit_code"] == 0, task
    assert [s["state"] for s in task["states"]] == ["PENDING", "STARTED", "SUCCESS"]
    versions = alice.get(f"/dataset/{body['dataset_id']}/versions").get_json()
    (v,) = versions["versions"]
    assert v["size"] == len(SDF) and v["processing_stage"] == "DONE" and v["type"] == "chemical/x-mdl-sdfile"
    down = alice.get(f"/dataset/{body['dataset_id']}/1")
    assert down.status_code == 200 and down.get_data() == SDF
    digest = hashlib.sha256(SDF).hexdigest()
    assert alice.get(f"/digest/dataset/{digest}").get_json() == {"dataset_id": body["dataset_id"], "dataset_version": 1}
    # nothing staged is left behind
    assert api.services.storage.list_dir("uploads").files == []


def test_the_same_event_twice_makes_one_version(alice, api, upload_fn):
    body = post_dataset(alice, SDF, "e.sdf", "chemical/x-mdl-sdfile").get_json()
    (event,) = pending_events(api)
    assert deliver(upload_fn, event).status_code == 202
    assert deliver(upload_fn, event).status_code == 202
    task = alice.get(f"/task/{body['task_id']}").get_json()
    assert [s["state"] for s in task["states"]] == ["PENDING", "STARTED", "SUCCESS"]
    assert alice.get(f"/dataset/{body['dataset_id']}/versions").get_json()["count"] == 1


def test_a_new_version_of_an_existing_dataset(alice, api, upload_fn):
    first = post_dataset(alice, SDF, "e.sdf", "chemical/x-mdl-sdfile").get_json()
    second = post_dataset(alice, gzip.compress(SDF * 2), "e2.sdf.gz", "chemical/x-mdl-sdfile",
                          dataset_id=first["dataset_id"]).get_json()
    assert second["dataset_id"] == first["dataset_id"] and second["dataset_version"] == 2
    for event in pending_events(api):
        assert deliver(upload_fn, event).status_code == 202
    versions = alice.get(f"/dataset/{first['dataset_id']}/versions").get_json()
    assert [v["version"] for v in versions["versions"]] == [1, 2]


def test_content_that_contradicts_its_type_fails_and_leaves_nothing(alice, api, upload_fn):
    body = post_dataset(alice, b"a,b\n1,2\n", "not-really.sdf", "chemical/x-mdl-sdfile").get_json()
    (event,) = pending_events(api)
    assert deliver(upload_fn, event).status_code == 202
    task = alice.get(f"/task/{body['task_id']}").get_json()
    assert task["done"] is True and task["exit_code"] != 0
    assert task["states"][-1]["state"] == "FAILURE" and "not a valid" in task["states"][-1]["message"]
    assert alice.get(f"/dataset/{body['dataset_id']}/versions").get_json()["count"] == 0
    assert alice.get(f"/dataset/{body['dataset_id']}/1").status_code == 404
    storage = api.services.storage
    assert storage.list_dir("uploads").files == []
    assert not storage.is_dir(f"datasets/{body['dataset_id']}/1") or storage.list_dir(f"datasets/{body['dataset_id']}/1").files == []


@pytest.mark.parametrize("fields, name, status", [
    ({"dataset_type": "chemical/x-nope"}, "a.sdf", 415),
    ({}, "a.csv", 415),  # an extension the SDF type does not allow
    ({"unit_id": "unit-nope"}, "a.sdf", 400),
    ({"unit_id": "unit-00000000-0000-0000-0000-000000000000"}, "a.sdf", 404),
    ({"dataset_id": "dataset-nope"}, "a.sdf", 400),
])
def test_bad_uploads_are_refused_and_store_nothing(alice, api, fields, name, status):
    fields = dict(fields)  # shared by the parametrised runs
    resp = post_dataset(alice, SDF, name, fields.pop("dataset_type", "chemical/x-mdl-sdfile"), **fields)
    assert resp.status_code == status, resp.get_json()
    assert resp.get_json()["error"]
    assert pending_events(api) == []
    assert api.services.storage.list_dir("uploads").files == [] if api.services.storage.is_dir("uploads") else True


def test_empty_file_is_refused(alice, api):
    resp = post_dataset(alice, b"", "a.sdf", "chemical/x-mdl-sdfile")
    assert resp.status_code == 400 and "empty" in resp.get_json()["error"]
    assert pending_events(api) == []


def test_another_users_unit_is_forbidden(alice, bob, api):
    resp = bob.post("/dataset", data={"dataset_type": "chemical/x-mdl-sdfile", "unit_id": alice.unit["unit_id"],
                                      "dataset_file": (io.BytesIO(SDF), "a.sdf")}, content_type="multipart/form-data")
    assert resp.status_code == 403
    assert pending_events(api) == []


def test_other_users_cannot_see_or_add_versions(alice, bob, api, upload_fn):
    body = post_dataset(alice, SDF, "e.sdf", "chemical/x-mdl-sdfile").get_json()
    for event in pending_events(api):
        deliver(upload_fn, event)
    assert bob.get(f"/dataset/{body['dataset_id']}/versions").status_code == 404
    assert bob.get(f"/dataset/{body['dataset_id']}/1").status_code == 404
    assert post_dataset(bob, SDF, "e.sdf", "chemical/x-mdl-sdfile", dataset_id=body["dataset_id"]).status_code == 404


def test_types_catalogue(alice):
    body = alice.get("/type").get_json()
    mimes = {t["mime"] for t in body["types"]}
    assert body["count"] == len(body["types"])
    assert {"chemical/x-mdl-sdfile", "text/csv", "chemical/x-daylight-smiles"} <= mimes


def test_events_that_can_never_be_handled_are_4xx(upload_fn):
    from cloudevents.conversion import to_binary
    from cloudevents.http import CloudEvent

    headers, body = to_binary(CloudEvent({"type": "dm.unknown.v1", "source": "/t"}, {"x": 1}))
    assert upload_fn.post("/", data=body, headers=headers).status_code == 400
    headers, body = to_binary(CloudEvent({"type": "dm.dataset.upload.v1", "source": "/t"}, {"x": 1}))
    assert upload_fn.post("/", data=body, headers=headers).status_code == 422
    assert upload_fn.post("/", data=b"not an event").status_code == 400


def test_a_storage_fault_while_moving_an_upload_is_retried_and_loses_nothing(alice, api, upload_fn, monkeypatch):
    """A passing fault answers 500 (the broker retries); nothing half-made is visible, nothing is lost."""
    storage = api.services.storage
    real_move = type(storage).move
    calls = {"n": 0}

    def failing_move(self, src, dst):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("the disk went away")
        return real_move(self, src, dst)

    monkeypatch.setattr(type(storage), "move", failing_move)
    data = SDF * 12000  # about 3 MiB: several chunks, within the test limit
    body = post_dataset(alice, data, "big.sdf", "chemical/x-mdl-sdfile").get_json()
    (event,) = pending_events(api)
    assert deliver(upload_fn, event).status_code == 500
    assert alice.get(f"/dataset/{body['dataset_id']}/versions").get_json()["count"] == 0
    assert not storage.exists(f"datasets/{body['dataset_id']}/1/big.sdf")
    assert storage.exists(event_payload(event)["staged_key"])  # the upload is not lost
    assert alice.get(f"/task/{body['task_id']}").get_json()["done"] is False
    assert deliver(upload_fn, event).status_code == 202  # the broker's retry
    task = alice.get(f"/task/{body['task_id']}").get_json()
    assert task["exit_code"] == 0
    assert [s["state"] for s in task["states"]] == ["PENDING", "STARTED", "SUCCESS"]
    assert alice.get(f"/dataset/{body['dataset_id']}/1").get_data() == data
    assert storage.list_dir("uploads").files == []


def test_a_storage_fault_half_way_through_an_import_is_retried_and_leaves_nothing(alice, api, upload_fn,
                                                                                  monkeypatch):
    storage = api.services.storage
    pid = alice.create_project("Source")
    data = SDF * 12000
    alice.put(f"/project/{pid}/file", data={"path": "/in", "file": (io.BytesIO(data), "big.sdf")},
              content_type="multipart/form-data")
    real_open = type(storage).open
    calls = {"n": 0}

    def failing_open(self, key):
        chunks = real_open(self, key)
        if not key.endswith("/in/big.sdf") or calls["n"]:
            return chunks
        calls["n"] += 1

        def broken():
            for i, chunk in enumerate(chunks):
                if i == 1:
                    raise OSError("the disk went away")
                yield chunk
        return broken()

    monkeypatch.setattr(type(storage), "open", failing_open)
    body = alice.put("/dataset", data={"project_id": pid, "path": "/in", "file_name": "big.sdf",
                                       "dataset_type": "chemical/x-mdl-sdfile"}).get_json()
    (event,) = pending_events(api)
    assert deliver(upload_fn, event).status_code == 500
    assert calls["n"] == 1
    assert alice.get(f"/dataset/{body['dataset_id']}/versions").get_json()["count"] == 0
    assert not storage.exists(f"datasets/{body['dataset_id']}/1/big.sdf")
    assert deliver(upload_fn, event).status_code == 202
    assert alice.get(f"/task/{body['task_id']}").get_json()["exit_code"] == 0
    assert alice.get(f"/dataset/{body['dataset_id']}/1").get_data() == data


def test_the_api_checks_an_upload_as_it_arrives(alice, api, upload_fn, monkeypatch):
    """Digest and content checks ride along with the receive; the upload function only moves the file."""
    data = SDF * 50
    body = post_dataset(alice, data, "e.sdf", "chemical/x-mdl-sdfile").get_json()
    (event,) = pending_events(api)
    checked = event_payload(event)["checked"]
    assert checked == {"size": len(data), "digest": hashlib.sha256(data).hexdigest(), "records": 50, "error": None}
    storage = api.services.storage
    monkeypatch.setattr(type(storage), "open", lambda self, key: pytest.fail("the staged file was read again"))
    assert deliver(upload_fn, event).status_code == 202
    (v,) = alice.get(f"/dataset/{body['dataset_id']}/versions").get_json()["versions"]
    assert v["size"] == len(data)
    assert alice.get(f"/digest/dataset/{checked['digest']}").get_json()["dataset_id"] == body["dataset_id"]


def test_a_staged_file_that_changed_since_its_check_is_checked_again(alice, api, upload_fn):
    """The verdict in the event covers what arrived; a staged file of another size is read afresh."""
    body = post_dataset(alice, SDF, "e.sdf", "chemical/x-mdl-sdfile").get_json()
    (event,) = pending_events(api)
    storage = api.services.storage
    staged = event_payload(event)["staged_key"]
    storage.write(staged, [b"a,b\n1,2\n"])  # not the file that was checked, and not an SD-file
    assert deliver(upload_fn, event).status_code == 202
    task = alice.get(f"/task/{body['task_id']}").get_json()
    assert task["exit_code"] != 0 and "not a valid" in task["states"][-1]["message"]
    assert alice.get(f"/dataset/{body['dataset_id']}/versions").get_json()["count"] == 0


def test_fields_after_the_file_are_checked_by_the_upload_function(alice, api, upload_fn):
    """Sent file-first, the api cannot check on arrival: the upload function reads the file once."""
    bad = b"a,b\n1,2\n"
    parts = [(b'name="dataset_file"; filename="bad.sdf"', bad), (b'name="dataset_type"', b"chemical/x-mdl-sdfile"),
             (b'name="unit_id"', alice.unit["unit_id"].encode())]
    raw = b"".join(b"--XyZ\r\nContent-Disposition: form-data; " + disposition + b"\r\n\r\n" + value + b"\r\n"
                   for disposition, value in parts) + b"--XyZ--\r\n"
    resp = alice.post("/dataset", data=raw, content_type="multipart/form-data; boundary=XyZ")
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    (event,) = pending_events(api)
    assert "checked" not in event_payload(event)
    assert deliver(upload_fn, event).status_code == 202
    task = alice.get(f"/task/{body['task_id']}").get_json()
    assert task["exit_code"] != 0 and "not a valid" in task["states"][-1]["message"]
    assert api.services.storage.list_dir("uploads").files == []


def test_a_malformed_verdict_in_the_event_is_not_trusted(alice, api, upload_fn):
    from cloudevents.conversion import to_binary
    from cloudevents.http import CloudEvent

    data = SDF * 3
    body = post_dataset(alice, data, "e.sdf", "chemical/x-mdl-sdfile").get_json()
    (event,) = pending_events(api)
    payload = event_payload(event)
    payload["checked"] = {"size": "huge", "digest": "x", "error": None}
    forged = CloudEvent({"type": event.type, "source": "/t", "id": event.id,
                         "datacontenttype": "application/json"}, payload)
    headers, raw = to_binary(forged)
    assert upload_fn.post("/", data=raw, headers=headers).status_code == 202
    (v,) = alice.get(f"/dataset/{body['dataset_id']}/versions").get_json()["versions"]
    assert v["size"] == len(data)
    assert alice.get(f"/digest/dataset/{hashlib.sha256(data).hexdigest()}").status_code == 200


def finish(api, upload_fn):
    """Deliver every pending event, as the broker would, and mark it delivered."""
    from sqlalchemy import update

    from shared.db.base import utcnow
    from shared.db.models import OutboxEvent
    from shared.db.session import transaction

    for event in pending_events(api):
        assert deliver(upload_fn, event).status_code == 202
        with transaction(api.services.engine) as s:
            s.execute(update(OutboxEvent).where(OutboxEvent.id == event.id).values(delivered_at=utcnow()))


def test_a_project_file_becomes_a_dataset_and_stays_in_its_project(alice, api, upload_fn):
    pid = alice.create_project("Source")
    alice.put(f"/project/{pid}/file", data={"path": "/in", "file": (io.BytesIO(SDF), "mol.sdf")},
              content_type="multipart/form-data")
    resp = alice.put("/dataset", data={"project_id": pid, "path": "/in", "file_name": "mol.sdf",
                                       "dataset_type": "chemical/x-mdl-sdfile"})
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    (event,) = pending_events(api)
    assert event.type == "dm.dataset.import.v1"
    finish(api, upload_fn)
    assert alice.get(f"/task/{body['task_id']}").get_json()["exit_code"] == 0
    assert alice.get(f"/dataset/{body['dataset_id']}/1").get_data() == SDF
    # the project file is still there
    assert alice.get(f"/project/{pid}/file", query_string={"path": "/in", "file": "mol.sdf"}).get_data() == SDF
    # a new version from another project file
    alice.put(f"/project/{pid}/file", data={"path": "/in", "file": (io.BytesIO(SDF * 2), "mol2.sdf")},
              content_type="multipart/form-data")
    again = alice.put("/dataset", data={"project_id": pid, "path": "/in", "file_name": "mol2.sdf",
                                        "dataset_type": "chemical/x-mdl-sdfile", "dataset_id": body["dataset_id"]})
    assert again.get_json()["dataset_version"] == 2
    finish(api, upload_fn)
    versions = alice.get(f"/dataset/{body['dataset_id']}/versions").get_json()["versions"]
    assert [(v["version"], v["size"]) for v in versions] == [(1, len(SDF)), (2, 2 * len(SDF))]


@pytest.mark.parametrize("form, status", [
    ({"file_name": "missing.sdf"}, 404),
    ({"path": "/../x"}, 400),
    ({"dataset_type": "text/nope"}, 415),
    ({"file_name": "mol.csv"}, 415),
])
def test_bad_imports_are_refused(alice, api, form, status):
    pid = alice.create_project("Source")
    alice.put(f"/project/{pid}/file", data={"path": "/in", "file": (io.BytesIO(SDF), "mol.sdf")},
              content_type="multipart/form-data")
    data = {"project_id": pid, "path": "/in", "file_name": "mol.sdf", "dataset_type": "chemical/x-mdl-sdfile",
            **form}
    resp = alice.put("/dataset", data=data)
    assert resp.status_code == status, resp.get_json()
    assert pending_events(api) == []


def test_import_from_a_private_project_of_someone_else_is_404(alice, bob, api):
    pid = alice.create_project("Mine", private=True)
    alice.put(f"/project/{pid}/file", data={"file": (io.BytesIO(SDF), "mol.sdf")}, content_type="multipart/form-data")
    resp = bob.put("/dataset", data={"project_id": pid, "path": "/", "file_name": "mol.sdf",
                                     "dataset_type": "chemical/x-mdl-sdfile"})
    assert resp.status_code == 404
    assert pending_events(api) == []


def test_delete_a_version(alice, bob, api, upload_fn):
    body = post_dataset(alice, SDF, "e.sdf", "chemical/x-mdl-sdfile").get_json()
    finish(api, upload_fn)
    key = f"datasets/{body['dataset_id']}/1/e.sdf"
    assert api.services.storage.exists(key)
    assert bob.delete(f"/dataset/{body['dataset_id']}/1").status_code == 404
    resp = alice.delete(f"/dataset/{body['dataset_id']}/1")
    assert resp.status_code == 200
    task_id = resp.get_json()["task_id"]
    assert alice.get(f"/dataset/{body['dataset_id']}/1").status_code == 404  # hidden at once
    assert alice.get(f"/dataset/{body['dataset_id']}/versions").get_json()["count"] == 0
    deleted = alice.get(f"/dataset/{body['dataset_id']}/versions", query_string={"include_deleted": "True"})
    (v,) = deleted.get_json()["versions"]
    assert v["deleting_user"] == "alice" and v["deleted"]
    finish(api, upload_fn)
    task = alice.get(f"/task/{task_id}").get_json()
    assert task["done"] and task["exit_code"] == 0 and task["removal"] is True
    assert not api.services.storage.exists(key)
    assert alice.delete(f"/dataset/{body['dataset_id']}/1").status_code == 404


def test_editors(alice, bob, carol, api, upload_fn):
    body = post_dataset(alice, SDF, "e.sdf", "chemical/x-mdl-sdfile").get_json()
    finish(api, upload_fn)
    did = body["dataset_id"]
    assert bob.put(f"/dataset/{did}/editor/bob").status_code == 404
    assert alice.put(f"/dataset/{did}/editor/bob").status_code == 201
    assert bob.get(f"/dataset/{did}/versions").get_json()["editors"] == ["bob"]
    assert bob.get(f"/dataset/{did}/1").get_data() == SDF
    assert [d["dataset_id"] for d in bob.get("/dataset").get_json()["datasets"]] == [did]
    assert bob.put(f"/dataset/{did}/editor/carol").status_code == 201  # editors may add editors
    assert alice.delete(f"/dataset/{did}/editor/alice").status_code == 400  # the owner stays
    assert bob.delete(f"/dataset/{did}/editor/bob").status_code == 204  # and leave
    assert bob.get(f"/dataset/{did}/versions").status_code == 404
    assert alice.delete(f"/dataset/{did}/editor/bob").status_code == 404
    assert alice.put(f"/dataset/{did}/editor/x").status_code == 400


def test_a_redelivery_after_the_move_but_before_the_commit_finishes_the_job(alice, api, upload_fn):
    """A crash between storing the content and recording it: the redelivered event completes it."""
    body = post_dataset(alice, SDF, "e.sdf", "chemical/x-mdl-sdfile").get_json()
    (event,) = pending_events(api)
    storage = api.services.storage
    staged = event_payload(event)["staged_key"]
    key = f"datasets/{body['dataset_id']}/1/e.sdf"
    storage.move(staged, key)  # what the first delivery did before it crashed
    assert deliver(upload_fn, event).status_code == 202
    task = alice.get(f"/task/{body['task_id']}").get_json()
    assert task["exit_code"] == 0
    assert alice.get(f"/dataset/{body['dataset_id']}/1").get_data() == SDF
    assert not storage.exists(staged)


def event_payload(event):
    import json

    return json.loads(event.data)
