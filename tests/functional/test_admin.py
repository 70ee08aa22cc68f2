"""The admin operations through the api function: service errors (an api crash among them) and
user accounts: listing, preparing, suspending and restoring, deleting with their Datasets."""

from __future__ import annotations

import contextlib
import datetime as dt

import pytest

from shared.db.session import transaction
from tests.functional.test_datasets import SDF, finish, post_dataset, upload_fn  # noqa: F401 - a fixture
from tests.functional.test_openapi import _conforms


@contextlib.contextmanager
def crashing(message="the disk is on fire"):
    """GET /project (and only it) raises an unexpected exception meanwhile."""
    from functions.api.routes import project

    class Boom:
        def __getattr__(self, name):
            raise RuntimeError(message)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(project, "counters", Boom())
        yield mp


def _errors(admin, **query):
    resp = admin.get("/admin/service-error", query_string=query)
    assert resp.status_code == 200
    _conforms(resp, "GET", "/admin/service-error")
    body = resp.get_json()
    assert body["count"] == len(body["service_errors"])
    return body["service_errors"]


# --- service errors --------------------------------------------------------------------------


def test_an_api_crash_becomes_a_service_error_listed_acknowledged_and_deleted(alice, admin, api):
    assert _errors(admin) == []
    with crashing():
        resp = alice.get("/project")
    assert resp.status_code == 500 and resp.get_json() == {"error": "Internal server error"}
    (error,) = _errors(admin)
    assert error["severity"] == "ERROR" and error["error_code"] == 500
    assert error["summary"] == ("GET /data-manager-api/project failed: RuntimeError: the disk is on fire")
    assert "RuntimeError: the disk is on fire" in error["stack_trace"] and "Traceback" in error["stack_trace"]
    assert error["acknowledged"] is False and error["hostname"] and error["created"].endswith("Z")
    assert "acknowledged_at" not in error and "acknowledging_user" not in error

    resp = admin.patch(f"/admin/service-error/{error['id']}")
    assert resp.status_code == 204 and resp.get_data() == b""
    _conforms(resp, "PATCH", "/admin/service-error/{error_id}")
    assert _errors(admin) == []  # acknowledged ones are left out by default
    (acked,) = _errors(admin, include_acknowledged="true")
    assert acked["acknowledged"] is True and acked["acknowledging_user"] == "admin"
    assert acked["acknowledged_at"].endswith("Z")
    assert admin.patch(f"/admin/service-error/{error['id']}").status_code == 204  # again: nothing changes
    assert _errors(admin, include_acknowledged="true")[0]["acknowledged_at"] == acked["acknowledged_at"]

    resp = admin.delete(f"/admin/service-error/{error['id']}")
    assert resp.status_code == 204 and resp.get_data() == b""
    _conforms(resp, "DELETE", "/admin/service-error/{error_id}")
    assert _errors(admin, include_acknowledged="true") == []
    for method in ("PATCH", "DELETE"):
        resp = admin.request(method, f"/admin/service-error/{error['id']}")
        assert resp.status_code == 404 and f"no service error {error['id']}" in resp.get_json()["error"]


def test_a_failure_to_record_the_fault_does_not_change_the_500(alice, admin, api):
    from shared.services import service_errors

    def broken(*args, **kwargs):
        raise RuntimeError("no database either")

    with crashing() as mp:
        mp.setattr(service_errors, "record", broken)
        resp = alice.get("/project")
    assert resp.status_code == 500 and resp.get_json() == {"error": "Internal server error"}
    assert _errors(admin) == []


def test_expected_errors_are_not_service_errors(alice, admin):
    assert alice.get("/project/project-nope").status_code == 404
    assert alice.patch("/user/account", data={"private": "perhaps"}).status_code == 400
    assert _errors(admin) == []


def test_service_errors_of_other_roles_are_listed_oldest_first(admin, api):
    from shared.services import service_errors

    with transaction(api.services.engine) as s:
        first = service_errors.record(s, origin="monitor", summary="first", severity="WARNING").id
        second = service_errors.record(s, origin="kew", summary="second", severity="CRITICAL", error_code=7).id
    errors = _errors(admin)
    assert [e["id"] for e in errors] == [first, second]
    assert "error_code" not in errors[0] and errors[1]["error_code"] == 7
    assert [e["severity"] for e in errors] == ["WARNING", "CRITICAL"]


@pytest.mark.parametrize("query, status", [({"include_acknowledged": "maybe"}, 400),
                                           ({"include_acknowledged": "a\x00"}, 400)])
def test_bad_service_error_listing_is_400(admin, query, status):
    resp = admin.get("/admin/service-error", query_string=query)
    assert resp.status_code == status and resp.get_json()["error"]
    _conforms(resp, "GET", "/admin/service-error")


def test_service_errors_are_for_admins_only(alice, caller, api):
    from shared.services import service_errors

    with transaction(api.services.engine) as s:
        error_id = service_errors.record(s, origin="api", summary="secret").id
    for method, path in (("GET", "/admin/service-error"), ("PATCH", f"/admin/service-error/{error_id}"),
                         ("DELETE", f"/admin/service-error/{error_id}")):
        assert caller(None).request(method, path).status_code == 401
        resp = alice.request(method, path)
        assert resp.status_code == 403 and "administrators" in resp.get_json()["error"]
    with transaction(api.services.engine, readonly=True) as s:
        (kept,) = service_errors.list_errors(s)
    assert kept["acknowledged"] is False


# --- user accounts -------------------------------------------------------------------------------


def _users(admin, **query):
    resp = admin.get("/admin/user", query_string=query)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    _conforms(resp, "GET", "/admin/user")
    body = resp.get_json()
    assert body["count"] == len(body["users"])
    return body["users"]


def _set_last_seen(api, username, days_ago):
    from shared.db.base import utcnow
    from shared.db.models import User

    with transaction(api.services.engine) as s:
        s.get(User, username).last_seen = utcnow() - dt.timedelta(days=days_ago)


def test_admin_user_list_excludes_the_caller_and_shows_private_users(alice, bob, admin):
    alice.get("/user/account")
    bob.patch("/user/account", data={"private": "true"})
    users = _users(admin)
    assert [u["username"] for u in users] == ["alice", "bob"]
    alice_detail, bob_detail = users
    assert bob_detail["private"] is True and bob_detail["suspended"] is False
    assert set(alice_detail) == {"username", "f_uid", "first_seen", "last_seen_date", "private", "become_admin",
                                 "suspended"}
    assert alice_detail["last_seen_date"] == dt.datetime.now(dt.timezone.utc).date().isoformat()


def test_idle_and_active_days(alice, bob, carol, admin, api):
    for who in (alice, bob, carol):
        who.get("/user/account")
    _set_last_seen(api, "bob", 3)
    _set_last_seen(api, "carol", 10)
    names = lambda **q: [u["username"] for u in _users(admin, **q)]  # noqa: E731
    assert names(active_days=1) == ["alice"]
    assert names(active_days=4) == ["alice", "bob"]
    assert names(idle_days=1) == ["bob", "carol"]
    assert names(idle_days=4) == ["carol"]
    assert names(idle_days=3, active_days=10) == ["bob"]  # both apply
    assert names(idle_days=36500) == []


@pytest.mark.parametrize("query", [{"idle_days": "0"}, {"active_days": "-2"}, {"idle_days": "x"},
                                   {"active_days": "36501"}, {"idle_days": "9" * 30}, {"active_days": "1.5"}])
def test_bad_day_counts_are_400(admin, query):
    resp = admin.get("/admin/user", query_string=query)
    assert resp.status_code == 400 and resp.get_json()["error"]
    _conforms(resp, "GET", "/admin/user")


def test_put_prepares_an_account_before_first_sight(admin, caller):
    resp = admin.put("/admin/user/frank")
    assert resp.status_code == 201
    _conforms(resp, "PUT", "/admin/user/{user_id}")
    body = resp.get_json()
    assert body["user"]["username"] == "frank" and body["user"]["suspended"] is False
    assert body["caller_has_admin_privilege"] is True
    again = admin.put("/admin/user/frank").get_json()
    assert again["user"]["f_uid"] == body["user"]["f_uid"]
    assert "frank" in [u["username"] for u in _users(admin)]
    resp = admin.put("/admin/user/x")
    assert resp.status_code == 400 and "valid user name" in resp.get_json()["error"]
    _conforms(resp, "PUT", "/admin/user/{user_id}")


def test_suspend_and_restore(bob, admin, alice):
    bob.get("/user/account")
    resp = admin.patch("/admin/user/bob", data={"suspend_message": "Please call the help desk"})
    assert resp.status_code == 204 and resp.get_data() == b""
    _conforms(resp, "PATCH", "/admin/user/{user_id}")
    for resp in (bob.get("/project"), bob.post("/project", data={"name": "Nope", "tier_product_id": "x"}),
                 bob.get("/user/account"), bob.get("/user/api-log")):
        assert resp.status_code == 403
        assert resp.get_json() == {"error": "Your account is suspended: Please call the help desk"}
    (detail,) = [u for u in _users(admin) if u["username"] == "bob"]
    assert detail["suspended"] is True and detail["suspension_message"] == "Please call the help desk"
    assert alice.get("/project").status_code == 200  # nobody else is touched
    assert admin.patch("/admin/user/bob", query_string={"suspend_message": "/restore"}).status_code == 204
    assert bob.get("/project").status_code == 200
    (detail,) = [u for u in _users(admin) if u["username"] == "bob"]
    assert detail["suspended"] is False and "suspension_message" not in detail


@pytest.mark.parametrize("form, status, text", [
    ({}, 400, "required"),
    ({"suspend_message": ""}, 400, "required"),
    ({"suspend_message": "x" * 513}, 400, "at most 512"),
    ({"suspend_message": "a\x00b"}, 400, "NUL"),
])
def test_bad_suspensions_are_refused_and_change_nothing(bob, admin, form, status, text):
    bob.get("/user/account")
    resp = admin.patch("/admin/user/bob", data=form)
    assert resp.status_code == status and text in resp.get_json()["error"]
    _conforms(resp, "PATCH", "/admin/user/{user_id}")
    assert bob.get("/project").status_code == 200


def test_unknown_users_and_the_callers_own_account(admin):
    for method, form in (("PATCH", {"suspend_message": "x"}), ("DELETE", None)):
        resp = admin.request(method, "/admin/user/nobody-here", data=form)
        assert resp.status_code == 404 and "no user nobody-here" in resp.get_json()["error"]
        _conforms(resp, method, "/admin/user/{user_id}")
    admin.get("/user/account")
    resp = admin.patch("/admin/user/admin", data={"suspend_message": "oops"})
    assert resp.status_code == 400 and "own account" in resp.get_json()["error"]
    resp = admin.delete("/admin/user/admin")
    assert resp.status_code == 400 and "own account" in resp.get_json()["error"]
    assert admin.get("/user/account").status_code == 200


def test_delete_removes_the_account_and_its_datasets(alice, bob, admin, api, upload_fn):  # noqa: F811
    mine = post_dataset(alice, SDF, "e.sdf", "chemical/x-mdl-sdfile").get_json()
    finish(api, upload_fn)
    assert alice.put(f"/dataset/{mine['dataset_id']}/editor/bob").status_code == 201
    theirs = post_dataset(bob, SDF, "b.sdf", "chemical/x-mdl-sdfile").get_json()
    finish(api, upload_fn)
    assert bob.put(f"/dataset/{theirs['dataset_id']}/editor/alice").status_code == 201
    key = f"datasets/{mine['dataset_id']}/1/e.sdf"
    assert api.services.storage.exists(key)

    resp = admin.delete("/admin/user/alice")
    assert resp.status_code == 204 and resp.get_data() == b""
    _conforms(resp, "DELETE", "/admin/user/{user_id}")
    assert "alice" not in [u["username"] for u in _users(admin)]
    finish(api, upload_fn)  # the removal tasks run as the broker delivers their events
    assert not api.services.storage.exists(key)
    assert bob.get(f"/dataset/{mine['dataset_id']}/versions").status_code == 200  # bob edits it: it shows
    assert bob.get(f"/dataset/{mine['dataset_id']}/versions").get_json()["count"] == 0
    assert bob.get(f"/dataset/{theirs['dataset_id']}/versions").get_json()["editors"] == []
    assert bob.get(f"/dataset/{theirs['dataset_id']}/1").status_code == 200  # others' data stays
    # alice comes back as on first sight, with nothing of hers left
    account = alice.get("/user/account")
    assert account.status_code == 200 and account.get_json()["user"]["username"] == "alice"
    assert alice.get("/dataset").get_json()["count"] == 0


def test_delete_waits_for_uploads_in_progress(alice, admin, api, upload_fn):  # noqa: F811
    post_dataset(alice, SDF, "e.sdf", "chemical/x-mdl-sdfile")  # not finished: still copying
    resp = admin.delete("/admin/user/alice")
    assert resp.status_code == 400 and "uploads in progress" in resp.get_json()["error"]
    assert "alice" in [u["username"] for u in _users(admin)]
    finish(api, upload_fn)
    assert admin.delete("/admin/user/alice").status_code == 204


def test_user_administration_is_for_admins_only(alice, bob, caller):
    bob.get("/user/account")
    for method, path, form in (("GET", "/admin/user", None), ("PUT", "/admin/user/bob", None),
                               ("PATCH", "/admin/user/bob", {"suspend_message": "x"}),
                               ("DELETE", "/admin/user/bob", None)):
        assert caller(None).request(method, path, data=form).status_code == 401
        resp = alice.request(method, path, data=form)
        assert resp.status_code == 403 and "administrators" in resp.get_json()["error"]
        _conforms(resp, method, path.replace("/bob", "/{user_id}"))
    assert bob.get("/project").status_code == 200  # nothing happened to bob
