"""The users file's profile fields, roles and clients for the development provider."""

from __future__ import annotations

import json

import pytest

from shared.auth.users import UI_CLIENT_ID, DevClient, load_clients, load_users
from shared.config import ConfigError, Settings


def test_profile_defaults():
    alice = load_users(Settings())[0]
    assert (alice.email_address, alice.given_name, alice.family_name, alice.full_name, alice.roles) == (
        "alice@example.com", "Alice", "User", "Alice User", ())


def test_profile_and_roles_from_the_file(tmp_path):
    path = tmp_path / "users.yaml"
    path.write_text("users:\n  - {username: dave@lab.example, password: p, first_name: Dave, last_name: Jones,"
                    " roles: [data-manager-evaluator]}\n")
    dave = load_users(Settings(users_file=str(path)))[0]
    assert (dave.email_address, dave.full_name, dave.roles) == ("dave@lab.example", "Dave Jones",
                                                                ("data-manager-evaluator",))


def test_default_clients(tmp_path):
    clients = {c.client_id: c for c in load_clients(Settings(public_url="http://127.0.0.1:8080"))}
    api, ui = clients["data-manager-api"], clients[UI_CLIENT_ID]
    assert api.public and not ui.public
    assert "http://localhost:8080/data-manager-api/api/oauth2-redirect.html" in api.redirect_uris
    assert "http://localhost:3000/data-manager-ui/api/auth/callback" in ui.redirect_uris
    assert "http://localhost:3000/data-manager-ui" in ui.post_logout_redirect_uris


def test_clients_from_the_file_add_to_and_replace_the_defaults(tmp_path):
    path = tmp_path / "users.json"
    path.write_text(json.dumps({"users": [{"username": "alice", "password": "a"}], "clients": [
        {"client_id": UI_CLIENT_ID, "secret": "other", "redirect_uris": ["https://ui.example/cb"]},
        {"client_id": "tool", "redirect_uris": ["http://127.0.0.1:7000/cb"]}]}))
    clients = {c.client_id: c for c in load_clients(Settings(users_file=str(path)))}
    assert clients[UI_CLIENT_ID] == DevClient(UI_CLIENT_ID, "other", ("https://ui.example/cb",))
    assert clients["tool"].public and "data-manager-api" in clients


@pytest.mark.parametrize("clients", [
    "nope", [{"client_id": ""}], [{"client_id": "a b"}], [{"client_id": "x", "redirect_uris": "http://a/"}],
    [{"client_id": "x", "redirect_uris": ["/relative"]}], [{"client_id": "x", "redirect_uris": ["http://a/#f"]}],
    [{"client_id": "x", "secret": ""}], [{"client_id": "x"}, {"client_id": "x"}],
])
def test_bad_clients_name_the_variable(tmp_path, clients):
    path = tmp_path / "users.json"
    path.write_text(json.dumps({"users": [{"username": "alice", "password": "a"}], "clients": clients}))
    with pytest.raises(ConfigError, match="DM_USERS_FILE"):
        load_clients(Settings(users_file=str(path)))


@pytest.mark.parametrize("entry", [{"email": ""}, {"first_name": 3}, {"roles": "admin"}, {"roles": [""]}])
def test_bad_profile_fields_name_the_variable(tmp_path, entry):
    path = tmp_path / "users.json"
    path.write_text(json.dumps({"users": [{"username": "alice", "password": "a", **entry}]}))
    with pytest.raises(ConfigError, match="DM_USERS_FILE"):
        load_users(Settings(users_file=str(path)))
