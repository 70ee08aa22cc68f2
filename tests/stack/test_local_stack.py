"""The local stack as a process: its facts, its pages, its configuration checks, restarts."""

from __future__ import annotations

import json
import re
import time

import pytest
import requests
import yaml
from squonk2.auth import Auth
from squonk2.dm_api import DmApi

from tests.stack.conftest import run_cli, stack_env

pytestmark = pytest.mark.stack

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
ID_FORMS = {
    "unit_id": re.compile(f"unit-{UUID}"),
    "organisation_id": re.compile(f"org-{UUID}"),
    "project_tier_product_id": re.compile(f"product-{UUID}"),
    "dataset_storage_product_id": re.compile(f"product-{UUID}"),
}
USERS = {"alice": False, "bob": False, "carol": False, "admin": True}  # name: admin


def printed_facts(stdout: str) -> dict:
    """The JSON document the stack prints after 'Local stack:'."""
    assert "Local stack:" in stdout, stdout
    after = stdout[stdout.index("Local stack:"):]
    doc, _ = json.JSONDecoder().raw_decode(after[after.index("{"):])
    return doc


# --- (a) the facts --------------------------------------------------------------------


def test_local_stack_json_has_the_documented_shape(stack):
    facts = json.loads((stack.data_dir / "local-stack.json").read_text())
    assert set(facts) == {"api_url", "keycloak_url", "keycloak_realm", "keycloak_client_id", "users",
                          "broker_url", "upload_url", "kew_url", "pbc_url", "monitor_url", "as_api_url"}
    assert facts["api_url"] == f"http://127.0.0.1:{stack.port}/data-manager-api"
    assert facts["keycloak_url"] == f"http://127.0.0.1:{stack.port}/auth"
    assert facts["keycloak_realm"] == "squonk2"
    assert facts["keycloak_client_id"] == "data-manager-api"
    assert set(facts["users"]) == set(USERS)
    seen_units, seen_products = set(), set()
    for name, user in facts["users"].items():
        assert set(user) == {"password", "admin", *ID_FORMS}, name
        assert user["password"] == name
        assert user["admin"] is USERS[name]
        for key, form in ID_FORMS.items():
            assert isinstance(user[key], str) and form.fullmatch(user[key]), (name, key, user[key])
        seen_units.add(user["unit_id"])
        seen_products.update((user["project_tier_product_id"], user["dataset_storage_product_id"]))
    assert len(seen_units) == len(USERS)  # a personal unit each
    assert len(seen_products) == 2 * len(USERS)
    assert len({u["organisation_id"] for u in facts["users"].values()}) == 1


def test_stdout_prints_the_same_facts(stack):
    assert printed_facts(stack.stdout) == stack.facts


# --- (b) API documentation -------------------------------------------------------------------


def test_swagger_ui_page(stack):
    resp = requests.get(stack.api_url + "/api", timeout=10, allow_redirects=False)
    assert resp.status_code == 200, resp.text[:500]
    assert resp.headers["Content-Type"].startswith("text/html")
    assert "swagger" in resp.text.lower()


def test_openapi_document(stack):
    resp = requests.get(stack.api_url + "/openapi.yaml", timeout=10, allow_redirects=False)
    assert resp.status_code == 200, resp.text[:500]
    doc = yaml.safe_load(resp.text)
    assert isinstance(doc, dict)
    assert str(doc.get("openapi", "")).startswith("3"), list(doc)
    assert doc.get("paths")


# --- (c) the OpenID provider ---------------------------------------------------------------


def test_openid_discovery_document(stack):
    issuer = f"http://127.0.0.1:{stack.port}/auth/realms/squonk2"
    resp = requests.get(issuer + "/.well-known/openid-configuration", timeout=10)
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    assert doc["issuer"] == issuer
    assert doc["token_endpoint"] == issuer + "/protocol/openid-connect/token"
    realm = requests.get(issuer, timeout=10)
    assert realm.status_code == 200
    assert realm.json()["public_key"]


# --- (d) bad configuration ----------------------------------------------------------------


@pytest.mark.parametrize("variable, value", [
    ("DM_PORT", "notanumber"),
    ("DM_DATABASE_URL", "mysql://x"),
    ("DM_DATASET_STORE", "ftp://x"),
    ("DM_PROJECT_VOLUME", "s3://bucket/projects"),
    ("DM_STORAGE", "s3://bucket/store"),  # replaced by the two above
])
def test_bad_configuration_stops_start_up(tmp_path, variable, value):
    env = stack_env(DM_DATA_DIR=str(tmp_path / "data"), **{variable: value})
    started = time.monotonic()
    result = run_cli(["run"], env, timeout=20)
    elapsed = time.monotonic() - started
    assert result.returncode != 0, result.stdout + result.stderr
    assert elapsed < 10, f"took {elapsed:.1f} s to refuse"
    assert variable in result.stderr, result.stderr
    assert "Local stack:" not in result.stdout


def test_a_taken_function_port_stops_start_up(tmp_path):
    """kew's port (DM_PORT + 3) is held by someone else: the stack says so and exits, rather than run half."""
    import socket

    from tests.stack.conftest import free_port

    port = free_port()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port + 3))
        squatter.listen()
        env = stack_env(DM_DATA_DIR=str(tmp_path / "data"), DM_PORT=str(port),
                        XDG_RUNTIME_DIR=str(tmp_path))
        result = run_cli(["run"], env, timeout=20)
    assert result.returncode != 0, result.stdout + result.stderr
    assert f"port {port + 3} is in use" in result.stderr.lower()
    assert "Local stack:" not in result.stdout  # refused before anything started


# --- (e) restarts -------------------------------------------------------------------------


def test_restart_keeps_state(start_stack, tmp_path):
    data_dir = tmp_path / "data"
    first = start_stack(data_dir)
    token = Auth.get_access_token(keycloak_url=first.facts["keycloak_url"], keycloak_realm="squonk2",
                                  keycloak_client_id="data-manager-api", username="alice", password="alice")
    assert token
    DmApi.set_api_url(first.api_url)
    rv = DmApi.create_project(token, project_name="Survives a restart",
                              as_tier_product_id=first.user("alice")["project_tier_product_id"])
    assert rv.success, rv.msg
    assert rv.http_status_code == 201
    project_id = rv.msg["project_id"]
    kept = tmp_path / "kept.txt"
    kept.write_text("still here\n")
    rv = DmApi.put_unmanaged_project_files(token, project_id=project_id, project_files=str(kept),
                                           project_path="/in")
    assert rv.success, rv.msg

    code = first.stop()
    assert code == 0, f"the stack exited with code {code} after SIGINT\n{first.output()}"
    with pytest.raises(requests.ConnectionError):
        requests.get(first.api_url + "/version", timeout=2)

    # Same port, as `make run` would use: the issuer in the old token stays the same.
    second = start_stack(data_dir, port=first.port)
    assert second.facts == first.facts  # the same units and products
    DmApi.set_api_url(second.api_url)
    rv = DmApi.ping(token)
    assert rv.success, rv.msg
    assert rv.http_status_code == 200
    rv = DmApi.get_available_projects(token)
    assert rv.success, rv.msg
    assert project_id in [p["project_id"] for p in rv.msg["projects"]]
    got = tmp_path / "got.txt"
    rv = DmApi.get_unmanaged_project_file(token, project_id=project_id, project_path="/in",
                                          project_file=kept.name, local_file=str(got))
    assert rv.success, rv.msg
    assert got.read_text() == "still here\n"
    code = second.stop()
    assert code == 0, f"the stack exited with code {code} after SIGINT\n{second.output()}"


# --- (f) routing ------------------------------------------------------------------------------


@pytest.mark.parametrize("method, path", [
    ("GET", "/project/"),
    ("POST", "/project/"),
    ("GET", "/version/"),
])
def test_no_trailing_slash_redirect(stack, method, path):
    resp = requests.request(method, stack.api_url + path, timeout=10, allow_redirects=False)
    assert resp.status_code == 404, (resp.status_code, resp.headers, resp.text)
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.json()["error"]
