"""Inputs past what the database holds, non-ASCII digits and control characters: a 4xx, never a 500.

Every test runs on SQLite and PostgreSQL; the last one checks that a fault on SQLite cannot leave
the api's pooled connections unable to write.
"""

import io
import sqlite3

import pytest

from tests.functional.test_datasets import SDF, post_dataset
from tests.functional.test_jobs import TEST_MANIFEST
from tests.ledger_server import STORAGE, ledger  # noqa: F401 - fixture

TOO_LARGE = [str(2**31), str(2**63), str(2**64), "9" * 400]
NOT_ASCII = ["\u0661", "\u0967", "\uff11"]  # Arabic-Indic, Devanagari and fullwidth one: int() takes them all
NO_DATASET = "dataset-00000000-0000-0000-0000-000000000000"


@pytest.fixture
def job_id(admin):
    assert admin.put("/admin/job-manifest", data={"url": str(TEST_MANIFEST)}).status_code == 200
    return admin.get("/job").get_json()["jobs"][0]["id"]


@pytest.fixture
def upload(alice):
    """A dataset upload in progress: a dataset id, a version and a task."""
    resp = post_dataset(alice, SDF, "a.sdf", "chemical/x-mdl-sdfile")
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def not_found(resp) -> bool:
    return resp.status_code == 404 and "error" in resp.get_json()


@pytest.mark.parametrize("value", TOO_LARGE + NOT_ASCII + ["-1", "+1", "1.0"])
def test_integer_path_ids_past_32_bits_or_in_other_digits_name_nothing(admin, job_id, upload, value):
    dataset = upload["dataset_id"]
    for method, path in [("GET", "/job/{}"), ("GET", "/job/{}/exchange-rate"), ("PUT", "/job/{}/exchange-rate"),
                         ("GET", f"/dataset/{dataset}/{{}}"), ("DELETE", f"/dataset/{dataset}/{{}}"),
                         ("GET", f"/dataset/{dataset}/meta/{{}}"), ("POST", f"/dataset/{dataset}/meta/{{}}"),
                         ("GET", f"/dataset/{dataset}/schema/{{}}")]:
        resp = admin.request(method, path.format(value), data={"rate": "1"})
        assert not_found(resp), (method, path, resp.status_code, resp.get_data(as_text=True))
    # the same routes with a value that exists answer as before
    assert admin.get(f"/job/{job_id}").get_json()["id"] == job_id
    assert admin.put(f"/job/{job_id}/exchange-rate", data={"rate": "1"}).status_code == 204


@pytest.mark.parametrize("value", NOT_ASCII + ["x", "-1"])
def test_record_ids_that_are_not_whole_numbers_are_400(admin, value):
    for method, path in [("PATCH", "/admin/service-error/{}"), ("DELETE", "/admin/service-error/{}"),
                         ("DELETE", "/admin/job-manifest/{}")]:
        resp = admin.request(method, path.format(value))
        assert resp.status_code == 400 and "whole number" in resp.get_json()["error"], (method, value)


@pytest.mark.parametrize("value", TOO_LARGE)
def test_record_ids_past_32_bits_are_404(admin, value):
    for method, path in [("PATCH", "/admin/service-error/{}"), ("DELETE", "/admin/service-error/{}"),
                         ("DELETE", "/admin/job-manifest/{}")]:
        assert not_found(admin.request(method, path.format(value))), (method, value)


@pytest.mark.parametrize("value", TOO_LARGE + NOT_ASCII + ["-1", "1.5", "ten"])
def test_integer_query_parameters_are_range_checked(alice, upload, value):
    for name in ("event_limit", "event_prior_ordinal"):
        resp = alice.get(f"/task/{upload['task_id']}", query_string={name: value})
        assert resp.status_code == 400, (name, resp.status_code, resp.get_data(as_text=True))
        assert f"'{name}' parameter must be" in resp.get_json()["error"]
    ok = alice.get(f"/task/{upload['task_id']}", query_string={"event_limit": "2147483647",
                                                                "event_prior_ordinal": "2147483647"})
    assert ok.status_code == 200 and ok.get_json()["events"] == []


def test_admin_day_counts_are_range_checked(admin):
    for value in [str(2**64), "36501", "\u0661"]:
        resp = admin.get("/admin/user", query_string={"idle_days": value})
        assert resp.status_code == 400 and "'idle_days' parameter" in resp.get_json()["error"]
    assert admin.get("/admin/user", query_string={"idle_days": "36500"}).status_code == 200


@pytest.mark.parametrize("value", TOO_LARGE + NOT_ASCII + ["0"])
def test_a_dataset_version_in_a_form_body_is_range_checked(alice, upload, value):
    pid = alice.create_project()
    resp = alice.post("/file", data={"dataset_id": upload["dataset_id"], "dataset_version": value,
                                     "project_id": pid, "as_type": "chemical/x-mdl-sdfile"})
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert "'dataset_version' parameter must be" in resp.get_json()["error"]


@pytest.mark.parametrize("rate", ["1" * 41, "1E+999999", "1E-50", "\u0661", "NaN", "-0.5"])
def test_exchange_rates_must_fit_their_column(admin, job_id, rate):
    resp = admin.put(f"/job/{job_id}/exchange-rate", data={"rate": rate})
    assert resp.status_code == 400 and "'rate' must be" in resp.get_json()["error"]


def test_an_exchange_rate_is_stored_as_plain_decimal_text(admin, job_id):
    assert admin.put(f"/job/{job_id}/exchange-rate", data={"rate": "1E+2"}).status_code == 204
    assert admin.get(f"/job/{job_id}").get_json()["exchange_rate"] == "100"


def test_odd_path_text_is_not_found(admin):
    for method, path in [("DELETE", "/instance/instance-x/token/%F0%9F%98%8D"), ("GET", "/api/%00"),
                         ("GET", "/task/%00"), ("GET", "/task/%ED%A0%80"), ("GET", "/job/%00")]:
        resp = admin.request(method, path)
        assert not_found(resp), (method, path, resp.status_code)


def test_account_server_json_integers_must_fit_their_columns(ledger, token_for):
    alice, unit = token_for("alice"), ledger.unit("alice")
    for fields in ({"allowance": 2**63}, {"allowance": 2**64}, {"allowance": 5, "limit": 2**70},
                   {"allowance": 1e300}, {"allowance": "5"}, {"allowance": True}):
        resp = ledger.call("POST", f"/product/unit/{unit}", alice, json={"type": STORAGE, "name": "x", **fields})
        assert resp.status_code == 400 and "must be a whole number" in resp.json()["error"], fields
    box = ledger.call("POST", f"/product/unit/{unit}", alice,
                      json={"type": STORAGE, "name": "x", "allowance": 5, "limit": 2**63 - 1})
    assert box.status_code == 201
    assert ledger.call("GET", f"/product/{box.json()['id']}", alice).status_code == 200
    resp = ledger.call("PATCH", f"/product/{box.json()['id']}", alice, json={"limit": 2**63})
    assert resp.status_code == 400


CONTROL = ["\n", "\r", "\t", "\x1b", "\x7f", "\x85", "\u2028"]


@pytest.mark.parametrize("char", CONTROL)
def test_control_characters_are_refused_in_every_name(alice, char):
    pid = alice.create_project()
    resp = alice.put("/path", query_string={"project_id": pid, "path": f"/a{char}b"})
    assert resp.status_code == 400 and "control characters" in resp.get_json()["error"]
    resp = alice.put("/path", data={"project_id": pid, "path": f"/dir/a{char}b"})
    assert resp.status_code == 400
    assert alice.put("/path", data={"project_id": pid, "path": "/ok"}).status_code == 201
    resp = alice.put("/path/move", data={"project_id": pid, "src_path": "/ok", "dst_path": f"/x{char}"})
    assert resp.status_code == 400
    resp = alice.put(f"/project/{pid}/file", data={"path": "/", "file": (io.BytesIO(b"x"), f"a{char}b.txt")},
                     content_type="multipart/form-data")
    assert resp.status_code == 400
    resp = alice.post("/project", data={"name": f"Name{char}here", "tier_product_id":
                                        alice.unit["project_tier_product_id"]})
    assert resp.status_code == 400 and "control characters" in resp.get_json()["error"]
    listing = alice.get("/file", query_string={"project_id": pid}).get_json()
    assert listing["paths"] == ["ok"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_fault_with_a_result_left_open_does_not_stop_sqlite_writes(alice, api, upload, monkeypatch, db_url):
    """A route that fails while a query's result is still open (here: a value sqlite3 cannot bind,
    as a route without checks would send) must not leave its connection holding a snapshot."""
    from shared.services import tasks

    kept = []

    def failing_detail(s, task, **_):
        from sqlalchemy import select

        from shared.db.models import TaskState

        kept.append(s.scalars(select(TaskState)))  # a result not read to its end, kept past the request
        s.scalars(select(TaskState).where(TaskState.id > 2**64)).all()

    monkeypatch.setattr(tasks, "detail", failing_detail)
    pid = alice.create_project("Before")
    assert alice.get(f"/task/{upload['task_id']}").status_code == 500
    # another process writes (the upload function, the monitor), then the api writes again
    other = sqlite3.connect(db_url.split("///", 1)[1], timeout=1, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("UPDATE change_counters SET value = value + 1")
    other.execute("COMMIT")
    assert other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0  # no reader holds the old state
    other.close()
    for name in ("After", "Again"):
        resp = alice.patch(f"/project/{pid}", data={"name": name})
        assert resp.status_code in (200, 204), resp.get_data(as_text=True)
    assert alice.get(f"/project/{pid}").get_json()["name"] == "Again"
