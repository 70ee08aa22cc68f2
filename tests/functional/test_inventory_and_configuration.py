"""GET /inventory/user, GET /user/token, GET /input-handler and GET /job-definition-schema/version."""

from __future__ import annotations

import datetime as dt

import pytest

from shared.db.session import transaction
from tests.functional.test_datasets import SDF, finish, post_dataset, upload_fn  # noqa: F401 - a fixture
from tests.functional.test_openapi import _conforms

UUID0 = "00000000-0000-0000-0000-000000000000"


# --- token, input handlers, schema version ---------------------------------------------------


def test_user_token_is_the_callers_bearer_token(alice, caller, token_for):
    resp = alice.get("/user/token")
    assert resp.status_code == 200 and resp.get_json() == {"token": token_for("alice")}
    _conforms(resp, "GET", "/user/token")
    assert caller(None).get("/user/token").status_code == 401


def test_job_definition_schema_version_is_the_installed_decoders(alice, caller):
    from importlib.metadata import version

    resp = alice.get("/job-definition-schema/version")
    assert resp.status_code == 200
    _conforms(resp, "GET", "/job-definition-schema/version")
    assert resp.get_json() == {"version": version("im-data-manager-job-decoder")} == {"version": "2.8.0"}
    assert caller(None).get("/job-definition-schema/version").status_code == 401


def test_input_handlers_are_the_input_types_a_launch_reads(alice, caller):
    import importlib.resources

    import yaml

    resp = alice.get("/input-handler")
    assert resp.status_code == 200
    _conforms(resp, "GET", "/input-handler")
    body = resp.get_json()
    assert body["count"] == len(body["input_handlers"]) == 2
    assert [h["input_type"] for h in body["input_handlers"]] == ["file", "files"]
    assert all("Project" in h["documentation"] for h in body["input_handlers"])
    schema = yaml.safe_load((importlib.resources.files("decoder") / "job-definition-schema.yaml").read_text())
    declared = schema["definitions"]["job-input-property"]["properties"]["type"]["enum"]
    assert {"file", "files"} <= set(declared)  # every handler is of a type job definitions may declare
    assert caller(None).get("/input-handler").status_code == 401


# --- inventory -----------------------------------------------------------------------------------


def inventory(who, status=200, **query):
    resp = who.get("/inventory/user", query_string=query)
    assert resp.status_code == status, resp.get_data(as_text=True)
    _conforms(resp, "GET", "/inventory/user")
    return resp.get_json()


@pytest.fixture
def alices_unit(alice, bob, api, upload_fn):  # noqa: F811
    """alice's unit: a public and a private Project (bob observes one), a Dataset bob edits."""
    public = alice.create_project("Public")
    private = alice.create_project("Private", private=True)
    assert alice.put(f"/project/{private}/observer/bob").status_code == 201
    dataset = post_dataset(alice, SDF, "e.sdf", "chemical/x-mdl-sdfile").get_json()["dataset_id"]
    finish(api, upload_fn)
    assert alice.put(f"/dataset/{dataset}/editor/bob").status_code == 201
    bob.create_project("Elsewhere")  # bob's own unit: not in alice's inventory
    return alice.unit["unit_id"], public, private, dataset


def test_unit_inventory_lists_each_users_projects_and_datasets(alice, alices_unit):
    unit_id, public, private, dataset = alices_unit
    body = inventory(alice, unit_id=unit_id)
    assert body["today"] == dt.datetime.now(dt.timezone.utc).date().isoformat()
    assert [u["username"] for u in body["users"]] == ["alice", "bob"]
    a, b = body["users"]
    assert [p["id"] for p in a["projects"]["administrator"]] == [public, private]
    assert a["projects"]["administrator"][0] == {"id": public, "name": "Public", "unit_id": unit_id}
    assert a["projects"]["observer"] == [] and [p["id"] for p in b["projects"]["observer"]] == [private]
    assert b["projects"]["administrator"] == []  # bob's own project is in another unit
    assert a["datasets"]["owner"] == [{"id": dataset, "version": 1, "filename": "e.sdf", "unit_id": unit_id}]
    assert a["datasets"]["editor"] == [] and b["datasets"]["editor"] == a["datasets"]["owner"]
    assert a["f_uid"] and a["first_seen"].endswith("Z") and a["last_seen_date"] == body["today"]


def test_activity_counts_days_with_logged_calls(alice, api, alices_unit):
    from shared.db.base import utcnow
    from shared.db.models import User
    from shared.services import api_log

    unit_id = alices_unit[0]
    now = utcnow()
    with transaction(api.services.engine) as s:
        s.get(User, "alice").first_seen = now - dt.timedelta(days=9)
    for days in (9, 5, 5, 2):  # two calls on one day count once
        api_log.record(api.services.engine, username="alice", began=now - dt.timedelta(days=days),
                       method="PUT", path="/path", status_code=201, duration_ns=1)
    (a,) = [u for u in inventory(alice, unit_id=unit_id)["users"] if u["username"] == "alice"]
    activity = a["activity"]
    today = now.date()
    assert activity["total_days_since_first_seen"] == 10
    assert activity["total_days_active"] == 4  # first sight (also logged), 5 and 2 days ago, and today
    assert activity["total_days_inactive"] == 6 and activity["total_activity"] == "40.0%"
    period = activity["period_a"]
    assert period["monitoring_period"] == f"{(today - dt.timedelta(days=9)).isoformat()}/{today.isoformat()}"
    assert (period["active_days"], period["inactive_days"], period["activity"]) == (4, 6, "40.0%")
    assert period["active_dates"] == [(today - dt.timedelta(days=d)).isoformat() for d in (0, 2, 5, 9)]


def test_usernames_filter(alice, alices_unit):
    unit_id = alices_unit[0]
    assert [u["username"] for u in inventory(alice, unit_id=unit_id, usernames="bob")["users"]] == ["bob"]
    assert [u["username"] for u in inventory(alice, unit_id=unit_id, usernames="bob,alice,")["users"]] == [
        "alice", "bob"]
    assert inventory(alice, unit_id=unit_id, usernames="carol")["users"] == []


def test_only_members_of_the_unit_or_admins_may_look(alice, bob, admin, caller, alices_unit):
    unit_id = alices_unit[0]
    resp = bob.get("/inventory/user", query_string={"unit_id": unit_id})  # bob has things there, but is no member
    assert resp.status_code == 403 and "not a member" in resp.get_json()["error"]
    _conforms(resp, "GET", "/inventory/user")
    unknown = f"unit-{UUID0}"
    assert bob.get("/inventory/user", query_string={"unit_id": unknown}).status_code == 403  # same answer
    assert [u["username"] for u in inventory(admin, unit_id=unit_id)["users"]] == ["alice", "bob"]
    assert inventory(admin, unit_id=unknown)["users"] == []
    assert caller(None).get("/inventory/user", query_string={"unit_id": unit_id}).status_code == 401


def test_organisation_inventory_is_for_admins(alice, admin, alices_unit):
    org_id = alice.unit["organisation_id"]
    resp = alice.get("/inventory/user", query_string={"org_id": org_id})
    assert resp.status_code == 403 and "administrators" in resp.get_json()["error"]
    # the built-in ledger's default organisation holds every personal unit
    names = [u["username"] for u in inventory(admin, org_id=org_id)["users"]]
    assert names == ["admin", "alice", "bob"]  # carol has a unit there too, but no account yet
    (b,) = [u for u in inventory(admin, org_id=org_id)["users"] if u["username"] == "bob"]
    assert [p["name"] for p in b["projects"]["administrator"]] == ["Elsewhere"]


def test_with_an_external_account_server_only_admins_may_look(alice, admin, api, alices_unit, monkeypatch):
    import dataclasses

    monkeypatch.setattr(api, "settings", dataclasses.replace(api.settings, account_server_url="http://as.invalid"))
    unit_id = alices_unit[0]
    resp = alice.get("/inventory/user", query_string={"unit_id": unit_id})
    assert resp.status_code == 403 and "external Account Server" in resp.get_json()["error"]
    # the Data Manager's own records still name who holds what there
    assert [u["username"] for u in inventory(admin, unit_id=unit_id)["users"]] == ["alice", "bob"]


@pytest.mark.parametrize("query, text", [
    ({}, "exactly one"),
    ({"unit_id": f"unit-{UUID0}", "org_id": f"org-{UUID0}"}, "exactly one"),
    ({"unit_id": "unit-1"}, "not a unit id"),
    ({"org_id": "organisation"}, "not an organisation id"),
    ({"unit_id": f"unit-{UUID0}", "usernames": "a b"}, "'usernames'"),
    ({"unit_id": f"unit-{UUID0}", "usernames": ",,"}, "'usernames'"),
    ({"unit_id": f"unit-{UUID0}", "usernames": "ab"}, "'usernames'"),
    ({"unit_id": f"unit-{UUID0}\x00"}, "NUL"),
])
def test_bad_inventory_queries_are_400(alice, query, text):
    resp = alice.get("/inventory/user", query_string=query)
    assert resp.status_code == 400 and text in resp.get_json()["error"]
    _conforms(resp, "GET", "/inventory/user")
