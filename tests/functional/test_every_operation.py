"""Every operation the api serves, enumerated from its route table (so a new route joins by itself):
the token rules, suspended accounts, the admin-only rule, and fuzzed path and query values that
must answer a documented 4xx with a JSON error, never a 500."""

from __future__ import annotations

import re

import pytest

from tests.functional.test_openapi import _conforms, operation, resolve, routes, template

UUID0 = "00000000-0000-0000-0000-000000000000"
# A well-formed value for each path placeholder of the API.
SAMPLE = {
    "project_id": f"project-{UUID0}", "user_id": "frank", "dataset_id": f"dataset-{UUID0}",
    "dataset_version": "1", "dataset_digest": "0" * 64, "file_id": f"file-{UUID0}",
    "task_id": f"task-{UUID0}", "instance_id": f"instance-{UUID0}", "token": "x" * 22, "job_id": "1",
    "job_manifest_id": "1", "application_id": "datamanagerjobs.squonk.it", "error_id": "1",
    "asset": "swagger-ui.css", "workflow_id": f"workflow-{UUID0}", "running_workflow_id": f"r-workflow-{UUID0}",
}
# The admin-only operations (dm-api §4: every admin operation, and setting a job's exchange rate).
ADMIN_ONLY = {
    ("GET", "/admin/service-error"), ("PATCH", "/admin/service-error/{error_id}"),
    ("DELETE", "/admin/service-error/{error_id}"), ("GET", "/admin/user"), ("PUT", "/admin/user/{user_id}"),
    ("PATCH", "/admin/user/{user_id}"), ("DELETE", "/admin/user/{user_id}"), ("GET", "/admin/job-manifest"),
    ("PUT", "/admin/job-manifest"), ("PUT", "/admin/job-manifest/load"),
    ("DELETE", "/admin/job-manifest/{job_manifest_id}"), ("PUT", "/job/{job_id}/exchange-rate"),
}
# Fields an admin-only operation reads before it checks the caller (so the check is what answers).
ADMIN_FIELDS = {("PUT", "/job/{job_id}/exchange-rate"): {"rate": "1"},
                ("PUT", "/admin/job-manifest"): {"url": "/nowhere/manifest.yaml"},
                ("PATCH", "/admin/user/{user_id}"): {"suspend_message": "x"}}
NASTY_PATH = ["0", "-1", "9223372036854775808", "1" * 40, "x" * 300, "%00", "..", "%2e%2e", "é", " 1", "1.5",
              "null"]
NASTY_QUERY = ["", "\x00", "-1", "0", "9223372036854775808", "1" * 5000, "null", "[]", "{}", "é" * 100,
               "true", "2024-13-45", "../../etc/passwd", "x" * 5000]


def _operations(auth: bool | None = None):
    out = []
    for route in routes():
        if auth is not None and route.auth != auth:
            continue
        for method in route.methods:
            out.append((method, template(route.path)))
    return sorted(out)


def fill(path: str, **values) -> str:
    return re.sub(r"{([^}]+)}", lambda m: values.get(m.group(1), SAMPLE[m.group(1)]), path)


def _error_body(resp, where) -> None:
    assert resp.mimetype == "application/json", where
    body = resp.get_json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], where


def test_every_placeholder_has_a_sample():
    names = {n for _, path in _operations() for n in re.findall(r"{([^}]+)}", path)}
    assert names <= set(SAMPLE), names - set(SAMPLE)


def test_admin_only_operations_are_the_admin_paths_and_exist():
    served = set(_operations(auth=True))
    assert ADMIN_ONLY <= served
    assert {op for op in served if op[1].startswith("/admin/")} <= ADMIN_ONLY


@pytest.mark.parametrize("method, path", _operations(auth=True))
def test_no_token_is_401_everywhere(caller, method, path):
    resp = caller(None).request(method, fill(path))
    assert resp.status_code == 401, resp.get_data(as_text=True)
    _error_body(resp, (method, path))
    _conforms(resp, method, path)


@pytest.mark.parametrize("method, path", sorted(ADMIN_ONLY))
def test_admin_only_operations_refuse_other_users(alice, method, path):
    fields = ADMIN_FIELDS.get((method, path), {})
    resp = alice.request(method, fill(path), data=fields or None)
    assert resp.status_code == 403, (method, path, resp.get_data(as_text=True))
    assert "administrators" in resp.get_json()["error"]
    _conforms(resp, method, path)


def test_a_suspended_user_is_refused_everywhere_until_restored(caller, admin, api):
    erin = caller("erin")
    assert erin.get("/user/account").status_code == 200
    resp = admin.patch("/admin/user/erin", data={"suspend_message": "Unpaid invoice #42"})
    assert resp.status_code == 204
    for method, path in _operations(auth=True):
        resp = erin.request(method, fill(path), data=ADMIN_FIELDS.get((method, path)))
        assert resp.status_code == 403, (method, path, resp.status_code)
        assert resp.get_json() == {"error": "Your account is suspended: Unpaid invoice #42"}, (method, path)
        _conforms(resp, method, path)
    # the operations without a bearer token belong to no account: they answer as before
    for method, path in _operations(auth=False):
        resp = erin.request(method, fill(path))
        assert resp.status_code < 500 and resp.status_code != 401, (method, path)
        if resp.status_code == 403:  # the callback-token download refuses a token it does not know
            assert "suspended" not in resp.get_json()["error"], (method, path)
    assert admin.patch("/admin/user/erin", data={"suspend_message": "/restore"}).status_code == 204
    assert erin.get("/user/account").get_json()["user"]["suspended"] is False
    assert erin.get("/project").status_code == 200


def test_suspension_reaches_other_processes_within_the_cache_time(caller, admin, api, monkeypatch):
    """Another process's suspension is seen once this process's copy is older than the TTL."""
    from shared.db.models import User
    from shared.db.session import transaction
    from shared.services import users

    bob = caller("bob")
    assert bob.get("/project").status_code == 200
    with transaction(api.services.engine) as s:  # as if an admin of another process suspended bob
        s.get(User, "bob").suspended, s.get(User, "bob").suspension_message = True, "elsewhere"
    assert bob.get("/project").status_code == 200  # this process's copy is still fresh
    monkeypatch.setattr(users, "SUSPENSIONS_TTL_S", 0.0)
    resp = bob.get("/project")
    assert resp.status_code == 403 and resp.get_json()["error"] == "Your account is suspended: elsewhere"


# --- fuzzing ------------------------------------------------------------------------------------


def _checked(resp, method, path) -> None:
    where = (method, path, resp.status_code, resp.get_data(as_text=True)[:300])
    assert resp.status_code < 500, where
    if resp.status_code >= 400:
        _error_body(resp, where)
        if resp.status_code not in (404, 405):  # those may come from no route matching the fuzzed path
            _conforms(resp, method, path)


def _fuzz_paths(who, method, path):
    for name in re.findall(r"{([^}]+)}", path):
        for value in NASTY_PATH:
            resp = who.request(method, fill(path, **{name: value}), data=ADMIN_FIELDS.get((method, path)))
            _checked(resp, method, path)


def _query_names(method, path) -> list[str]:
    op = operation(method, path)
    return [resolve(p)["name"] for p in op.get("parameters", []) if resolve(p)["in"] == "query"]


def _fuzz_queries(who, method, path):
    for name in _query_names(method, path):
        for value in NASTY_QUERY:
            resp = who.request(method, fill(path), query_string={name: value},
                               data=ADMIN_FIELDS.get((method, path)))
            _checked(resp, method, path)


@pytest.mark.parametrize("role", ["alice", "admin"])
def test_fuzzed_path_values_never_fail_the_server(caller, role):
    who = caller(role)
    for method, path in _operations():
        if "{" in path:
            _fuzz_paths(who, method, path)


@pytest.mark.parametrize("role", ["alice", "admin"])
def test_fuzzed_query_values_never_fail_the_server(caller, role):
    who = caller(role)
    for method, path in _operations():
        _fuzz_queries(who, method, path)


@pytest.mark.parametrize("value", ["9223372036854775808", "2147483648", "0", "-1", "abc", "1e3", "١"])
def test_out_of_range_service_error_ids_are_4xx_and_change_nothing(admin, api, value):
    from shared.db.session import transaction
    from shared.services import service_errors

    with transaction(api.services.engine) as s:
        service_errors.record(s, origin="api", summary="kept")
    for method in ("PATCH", "DELETE"):
        resp = admin.request(method, f"/admin/service-error/{value}")
        assert resp.status_code in (400, 404), (method, value, resp.status_code)
        _error_body(resp, (method, value))
        _conforms(resp, method, "/admin/service-error/{error_id}")
    (kept,) = admin.get("/admin/service-error").get_json()["service_errors"]
    assert kept["summary"] == "kept" and kept["acknowledged"] is False


# --- the role matrix of the account, admin and configuration operations ----------------------------

# (method, path, form): what (no token, a user, an admin) get. The Project roles' matrix is in
# test_projects.py; these operations belong to no Project.
MATRIX = [
    ("GET", "/user/api-log", None, (401, 200, 200)),
    ("GET", "/user/token", None, (401, 200, 200)),
    ("GET", "/inventory/user?unit_id={unit}", None, (401, 200, 200)),
    ("GET", "/input-handler", None, (401, 200, 200)),
    ("GET", "/job-definition-schema/version", None, (401, 200, 200)),
    ("GET", "/admin/service-error", None, (401, 403, 200)),
    ("PATCH", "/admin/service-error/{error}", None, (401, 403, 204)),
    ("DELETE", "/admin/service-error/{error}", None, (401, 403, 204)),
    ("GET", "/admin/user", None, (401, 403, 200)),
    ("PUT", "/admin/user/frank", None, (401, 403, 201)),
    ("PATCH", "/admin/user/frank", {"suspend_message": "x"}, (401, 403, 204)),
    ("DELETE", "/admin/user/frank", None, (401, 403, 204)),
]


@pytest.mark.parametrize("who", ["anonymous", "user", "admin"])
def test_role_matrix(caller, api, who):
    from shared.db.session import transaction
    from shared.services import service_errors

    person = caller({"anonymous": None, "user": "alice", "admin": "admin"}[who])
    caller("admin").put("/admin/user/frank")
    with transaction(api.services.engine) as s:
        error = service_errors.record(s, origin="api", summary="matrix").id
    unit = api.units["alice" if who != "admin" else "admin"]["unit_id"]
    for method, path, form, expected in MATRIX:
        status = expected[("anonymous", "user", "admin").index(who)]
        resp = person.request(method, path.format(unit=unit, error=error), data=form)
        assert resp.status_code == status, (who, method, path, resp.get_data(as_text=True))
        _conforms(resp, method, re.sub(r"\?.*", "", path).replace("{error}", "{error_id}")
                  .replace("/frank", "/{user_id}"))
