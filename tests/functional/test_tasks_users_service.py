"""Tasks, users, service endpoints and the bearer-token rules through the api function."""

import base64
import json
import time

import pytest

from shared.db.session import transaction
from shared.services import tasks as task_service


def test_version_and_mode_need_no_token(caller):
    anon = caller(None)
    assert anon.get("/version").get_json() == {"version": __import__("shared.config").config.VERSION}
    assert anon.get("/mode").get_json() == {"mode": "DEVELOPMENT"}


def test_account_server_endpoints(alice):
    ns = alice.get("/account-server/namespace")
    assert ns.status_code == 200 and isinstance(ns.get_json()["namespace"], str)
    reg = alice.get("/account-server/registration").get_json()
    assert reg["merchant_id"] >= 1 and reg["name"] and reg["registered"]


def test_unknown_paths_and_methods_are_json_errors(alice):
    resp = alice.get("/nowhere")
    assert resp.status_code == 404 and resp.get_json()["error"]
    resp = alice.post("/version")
    assert resp.status_code == 405 and "not allowed" in resp.get_json()["error"]
    assert alice.get("/project/").status_code == 404  # no trailing-slash redirect


# --- tokens -------------------------------------------------------------------------


def _forge(claims: dict, alg: str = "none") -> str:
    enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()  # noqa: E731
    return f"{enc({'alg': alg, 'typ': 'JWT'})}.{enc(claims)}."


def _claims(identity, **over):
    now = int(time.time())
    claims = {"iss": identity.settings.issuer, "aud": ["data-manager-api"], "azp": "data-manager-api",
              "exp": now + 600, "iat": now, "typ": "Bearer", "preferred_username": "alice",
              "sub": "x", "realm_access": {"roles": []}}
    claims.update(over)
    return claims


@pytest.fixture
def bad_tokens(identity):
    from cryptography.hazmat.primitives.asymmetric import rsa
    from jose import jwt as jose_jwt
    from cryptography.hazmat.primitives import serialization

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other_pem = other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    key = identity.key
    now = int(time.time())
    return {
        "missing": None,
        "not bearer": "Basic YWxpY2U6YWxpY2U=",
        "malformed": "Bearer not.a.jwt",
        "expired": "Bearer " + key.sign(_claims(identity, exp=now - 3600, iat=now - 7200)),
        "forged": "Bearer " + jose_jwt.encode(_claims(identity), other_pem, algorithm="RS256",
                                              headers={"kid": key.kid}),
        "wrong issuer": "Bearer " + key.sign(_claims(identity, iss="https://evil.example/realms/squonk2")),
        "wrong audience": "Bearer " + key.sign(_claims(identity, aud=["other"], azp="other")),
        "alg none": "Bearer " + _forge(_claims(identity)),
    }


@pytest.mark.parametrize("kind", ["missing", "not bearer", "malformed", "expired", "forged",
                                  "wrong issuer", "wrong audience", "alg none"])
def test_bad_tokens_get_401_with_a_json_error(caller, bad_tokens, kind, api):
    anon = caller(None)
    header = bad_tokens[kind]
    headers = {"Authorization": header} if header else {}
    for method, path in (("GET", "/project"), ("GET", "/user/account"), ("GET", "/task"),
                         ("GET", "/account-server/namespace")):
        resp = anon.request(method, path, headers=headers)
        assert resp.status_code == 401, (kind, path)
        assert resp.get_json()["error"]
    resp = anon.request("POST", "/project", headers=headers, data={"name": "Sneaky", "tier_product_id": "x"})
    assert resp.status_code == 401
    with transaction(api.services.engine) as s:
        from shared.db.models import Project, User

        assert s.query(Project).count() == 0
        assert s.query(User).count() == 0  # nobody was recorded either


def test_a_good_token_signed_by_the_provider_works(caller, identity):
    token = identity.key.sign(_claims(identity))
    resp = caller(None).get("/user/account", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200 and resp.get_json()["user"]["username"] == "alice"


# --- users --------------------------------------------------------------------------


def test_users_are_recorded_and_privacy_hides_them(alice, bob, admin):
    alice.get("/user/account")
    bob.get("/user/account")
    names = [u["username"] for u in alice.get("/user").get_json()["users"]]
    assert names == ["alice", "bob"]
    assert bob.patch("/user/account", data={"private": "True"}).status_code == 204
    assert [u["username"] for u in alice.get("/user").get_json()["users"]] == ["alice"]
    account = admin.get("/user/account").get_json()
    assert account["caller_has_admin_privilege"] is True
    assert "data-manager-admin" in account["data_manager_roles"]
    assert alice.get("/user/account").get_json()["caller_has_admin_privilege"] is False


def test_patch_account_rejects_bad_booleans(alice):
    assert alice.patch("/user/account", data={"private": "perhaps"}).status_code == 400
    assert alice.get("/user/account").get_json()["user"]["private"] is False


# --- tasks --------------------------------------------------------------------------


@pytest.fixture
def a_task(alice, api):
    pid = alice.create_project("Tasks")
    with transaction(api.services.engine) as s:
        task = task_service.create(s, purpose="FILE", purpose_id="file-1", owner="alice", project_id=pid,
                                   message="queued")
        for i in range(2, 8):
            task_service.add_event(s, task.id, f"step {i}", "DEBUG")
    return pid, task.id


def test_task_detail_and_event_paging(alice, a_task):
    _, task_id = a_task
    body = alice.get(f"/task/{task_id}").get_json()
    assert "id" not in body
    assert body["purpose"] == "FILE" and body["done"] is False
    assert [e["ordinal"] for e in body["events"]] == list(range(1, 8))
    assert body["events"][0]["message"] == "queued" and body["events"][0]["level"] == "INFO"
    assert [s["state"] for s in body["states"]] == ["PENDING"]
    page = alice.get(f"/task/{task_id}", query_string={"event_prior_ordinal": 3, "event_limit": 2}).get_json()
    assert [e["ordinal"] for e in page["events"]] == [4, 5]
    assert alice.get(f"/task/{task_id}", query_string={"event_limit": "x"}).status_code == 400


def test_final_states_never_move(alice, api, a_task):
    _, task_id = a_task
    with transaction(api.services.engine) as s:
        assert task_service.set_state(s, task_id, "STARTED")
        assert task_service.set_state(s, task_id, "FAILURE", "it broke", exit_code=3)
        assert not task_service.set_state(s, task_id, "SUCCESS")
        assert not task_service.set_state(s, task_id, "RETRY")
    body = alice.get(f"/task/{task_id}").get_json()
    assert body["done"] is True and body["exit_code"] == 3
    assert [s["state"] for s in body["states"]] == ["PENDING", "STARTED", "FAILURE"]
    assert body["states"][-1]["message"] == "it broke"
    assert body["events"][-1]["level"] == "ERROR"


def test_task_list_filters(alice, api, a_task):
    pid, task_id = a_task
    with transaction(api.services.engine) as s:
        done = task_service.create(s, purpose="DATASET", purpose_id="dataset-1", owner="alice")
        task_service.set_state(s, done.id, "SUCCESS")
    ids = lambda **q: [t["id"] for t in alice.get("/task", query_string=q).get_json()["tasks"]]  # noqa: E731
    assert set(ids()) == {task_id, done.id}
    assert ids(exclude_done="True") == [task_id]
    assert ids(purpose="DATASET") == [done.id]
    assert ids(exclude_purpose="FILE.PROJECT") == [done.id]
    assert ids(project_id=pid) == [task_id]
    assert alice.get("/task", query_string={"purpose": "NOPE"}).status_code == 400


def test_tasks_are_private_to_owner_and_project_members(alice, bob, a_task):
    pid, task_id = a_task
    alice.patch(f"/project/{pid}", data={"private": "True"})
    assert bob.get(f"/task/{task_id}").status_code == 404
    assert bob.get("/task").get_json()["count"] == 0
    alice.put(f"/project/{pid}/observer/bob")
    assert bob.get(f"/task/{task_id}").status_code == 200


def test_delete_task_only_when_done_and_by_owner(alice, bob, api, a_task):
    pid, task_id = a_task
    alice.put(f"/project/{pid}/editor/bob")
    assert alice.delete(f"/task/{task_id}").status_code == 403
    with transaction(api.services.engine) as s:
        task_service.set_state(s, task_id, "SUCCESS")
    assert bob.delete(f"/task/{task_id}").status_code == 403
    assert alice.delete(f"/task/{task_id}").status_code == 204
    assert alice.get(f"/task/{task_id}").status_code == 404
