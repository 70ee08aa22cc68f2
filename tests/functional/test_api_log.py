"""The API log: what state-changing calls leave in it, the from/until window, and its pruning.

A log row is written once its response has been sent (a close hook), so these tests read their
responses buffered: the werkzeug test client closes a response only then (or when asked)."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from shared.db.session import transaction
from tests.functional.test_openapi import _conforms

UTC = dt.timezone.utc


def call(who, method, path, **kw):
    return who.request(method, path, buffered=True, **kw)


def log_of(who, **query):
    resp = who.get("/user/api-log", query_string=query)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    _conforms(resp, "GET", "/user/api-log")
    body = resp.get_json()
    assert body["count"] == len(body["api_log"])
    return body["api_log"]


def put_entry(api, username, began, method="POST", path="/project", status_code=201, duration_ns=1234567):
    from shared.services import api_log

    api_log.record(api.services.engine, username=username, began=began, method=method, path=path,
                   status_code=status_code, duration_ns=duration_ns)


def test_state_changing_calls_are_logged_and_gets_are_not(alice, bob):
    resp = call(alice, "POST", "/project",
                data={"name": "Logged", "tier_product_id": alice.unit["project_tier_product_id"]})
    assert resp.status_code == 201
    pid = resp.get_json()["project_id"]
    call(alice, "GET", f"/project/{pid}")
    call(alice, "PUT", f"/project/{pid}/observer/bob")
    call(alice, "PATCH", f"/project/{pid}", data={"name": "x"})  # refused: still logged, with its 400
    call(alice, "PUT", "/file/move", query_string={"project_id": pid, "src_path": "/", "file": "a.txt",
                                                   "dst_file": "b.txt"})
    call(alice, "DELETE", f"/project/{pid}")
    entries = log_of(alice)
    assert [(e["method"], e["path"], e["status_code"]) for e in entries] == [
        ("POST", "/project", 201),
        ("PUT", f"/project/{pid}/observer/bob", 201),
        ("PATCH", f"/project/{pid}", 400),
        ("PUT", "/file/move", 404),
        ("DELETE", f"/project/{pid}", 200),
    ]
    first, move = entries[0], entries[3]
    assert "params" not in first  # a form body is not logged, and there was no query string
    assert json.loads(move["params"]) == {"project_id": pid, "src_path": "/", "file": "a.txt", "dst_file": "b.txt"}
    for entry in entries:
        assert re.fullmatch(r"[0-9]{1,3}(,[0-9]{3})*", entry["duration_ns"]), entry
        assert int(entry["duration_ns"].replace(",", "")) > 0
        assert entry["began"].endswith("Z") and "impersonator" not in entry
    began = [dt.datetime.fromisoformat(e["began"].replace("Z", "+00:00")) for e in entries]
    assert began == sorted(began)  # oldest first
    assert abs(dt.datetime.now(UTC) - began[0]) < dt.timedelta(minutes=1)
    assert log_of(bob) == []  # each user sees only their own


def test_calls_without_an_account_are_not_logged(caller, alice, api):
    from sqlalchemy import func, select

    from shared.db.models import ApiLogEntry

    call(caller(None), "POST", "/project", data={"name": "Anonymous", "tier_product_id": "x"})  # 401
    call(caller(None), "DELETE", "/instance/instance-1/token/" + "A" * 22)  # no bearer token at all
    call(alice, "POST", "/nowhere")  # no route: nobody to attribute it to
    with transaction(api.services.engine, readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(ApiLogEntry)) == 0


def test_repeated_query_parameters_keep_every_value(alice):
    call(alice, "DELETE", "/file?project_id=a&project_id=b&path=/")
    (entry,) = log_of(alice)
    assert json.loads(entry["params"]) == {"path": "/", "project_id": ["a", "b"]}


def test_the_row_is_written_only_once_the_response_is_closed(alice, api):
    resp = alice.post("/project", data={"name": "Streamed", "tier_product_id": alice.unit["project_tier_product_id"]})
    assert resp.status_code == 201
    assert log_of(alice) == []  # the response is still open: the caller was not kept waiting
    resp.close()
    assert [e["path"] for e in log_of(alice)] == ["/project"]


def test_a_log_that_cannot_be_written_does_not_fail_the_call(alice, api, monkeypatch):
    from shared.services import api_log

    def broken(*args, **kwargs):
        raise RuntimeError("log store down")

    monkeypatch.setattr(api_log, "record", broken)
    resp = call(alice, "POST", "/project", data={"name": "Still made",
                                                 "tier_product_id": alice.unit["project_tier_product_id"]})
    assert resp.status_code == 201
    assert alice.get("/project").get_json()["count"] == 1


def test_from_is_inclusive_and_until_exclusive(alice, api):
    alice.get("/user/account")
    t = dt.datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    for minutes in (0, 30, 60):
        put_entry(api, "alice", t + dt.timedelta(minutes=minutes), path=f"/at/{minutes}")
    paths = lambda **q: [e["path"] for e in log_of(alice, **q)]  # noqa: E731
    assert paths() == ["/at/0", "/at/30", "/at/60"]
    assert paths(**{"from": "2024-05-01T12:00:00Z"}) == ["/at/0", "/at/30", "/at/60"]
    assert paths(**{"from": "2024-05-01T12:00:00.000001Z"}) == ["/at/30", "/at/60"]
    assert paths(until="2024-05-01T12:30:00Z") == ["/at/0"]
    assert paths(**{"from": "2024-05-01T12:30:00", "until": "2024-05-01T13:00:00"}) == ["/at/30"]  # UTC assumed
    assert paths(**{"from": "2024-05-01T13:30:00+01:00"}) == ["/at/30", "/at/60"]  # 12:30 UTC
    assert paths(**{"from": "2024-05-01", "until": "2024-05-02"}) == ["/at/0", "/at/30", "/at/60"]
    assert paths(**{"from": "2024-05-02"}) == []
    assert paths(**{"from": "2024-05-01T12:00:00Z", "until": "2024-05-01T12:00:00Z"}) == []
    entry = log_of(alice)[0]
    assert entry["duration_ns"] == "1,234,567" and entry["began"] == "2024-05-01T12:00:00.000000Z"


@pytest.mark.parametrize("query, text", [
    ({"from": "yesterday"}, "'from' must be an ISO-8601"),
    ({"until": "2024-13-01"}, "'until' must be an ISO-8601"),
    ({"from": "2024-05-02", "until": "2024-05-01"}, "not be before"),
    ({"from": "0001-01-01T00:00:00+01:00"}, "'from' must be an ISO-8601"),
    ({"until": "2024\x00"}, "NUL"),
    ({"from": "9" * 5000}, "'from' must be an ISO-8601"),
])
def test_bad_windows_are_400(alice, query, text):
    resp = alice.get("/user/api-log", query_string=query)
    assert resp.status_code == 400 and text in resp.get_json()["error"]
    _conforms(resp, "GET", "/user/api-log")


def test_the_log_needs_a_token(caller):
    resp = caller(None).get("/user/api-log")
    assert resp.status_code == 401
    _conforms(resp, "GET", "/user/api-log")


# --- pruning -------------------------------------------------------------------------------------


def test_entries_older_than_the_setting_are_pruned(alice, bob, api):
    import dataclasses

    from shared.services.api_log import prune_api_log

    alice.get("/user/account")
    now = dt.datetime.now(UTC)
    for who, days in (("alice", 91), ("alice", 89), ("bob", 120), ("bob", 0.5)):
        put_entry(api, who, now - dt.timedelta(days=days), path=f"/{who}/{days}")
    assert prune_api_log(api.services.engine, api.settings) == 2  # the default keeps 90 days
    assert [e["path"] for e in log_of(alice)] == ["/alice/89"]
    assert [e["path"] for e in log_of(bob)] == ["/bob/0.5"]
    assert prune_api_log(api.services.engine, api.settings) == 0  # nothing more is due
    shorter = dataclasses.replace(api.settings, api_log_days=1)
    assert prune_api_log(api.services.engine, shorter) == 1
    assert log_of(alice) == [] and [e["path"] for e in log_of(bob)] == ["/bob/0.5"]
    assert prune_api_log(api.services.engine, shorter, now=now + dt.timedelta(days=1)) == 1
    assert log_of(bob) == []


def test_dm_api_log_days_is_read_from_the_environment():
    from shared.config import VARIABLES, ConfigError, Settings

    assert "DM_API_LOG_DAYS" in VARIABLES
    assert Settings().api_log_days == 90
    assert Settings.from_env({"DM_API_LOG_DAYS": "30"}).api_log_days == 30
    for bad in ("0", "-5", "ninety"):
        with pytest.raises(ConfigError, match="DM_API_LOG_DAYS"):
            Settings.from_env({"DM_API_LOG_DAYS": bad})
