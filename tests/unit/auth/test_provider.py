"""The development OpenID provider, over real HTTP, and the real Squonk2 client against it."""

from __future__ import annotations

import base64
import json
import stat
import time
import uuid

import pytest
import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from squonk2.auth import Auth

from shared.auth.keys import load_or_create_signing_key
from shared.auth.provider import create_provider_app
from shared.auth.users import DEFAULT_USERS, DevUser, load_users, valid_username
from shared.config import ConfigError, Settings

from . import ProviderServer, unverified_claims, unverified_header


@pytest.fixture
def provider(tmp_path):
    server = ProviderServer(tmp_path)
    yield server
    server.close()


def token_url(provider: ProviderServer) -> str:
    return f"{provider.base_url}/auth/realms/squonk2/protocol/openid-connect/token"


def password_grant(provider: ProviderServer, **overrides: str) -> requests.Response:
    form = {"client_id": "data-manager-api", "grant_type": "password", "username": "alice", "password": "alice"}
    form.update(overrides)
    return requests.post(token_url(provider), data={k: v for k, v in form.items() if v is not None}, timeout=5)


def rsa_verifies(public_key_b64: str, token: str) -> bool:
    """Checks an RS256 signature with cryptography alone, as a client would with public_key."""
    public = serialization.load_der_public_key(base64.b64decode(public_key_b64))
    head, body, sig = token.split(".")
    try:
        public.verify(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)), f"{head}.{body}".encode(),
                      padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def test_realm_document_public_key_verifies_issued_tokens(provider):
    doc = requests.get(f"{provider.base_url}/auth/realms/squonk2", timeout=5)
    assert doc.status_code == 200
    body = doc.json()
    assert body["realm"] == "squonk2"
    assert body["token-service"] == f"{provider.issuer}/protocol/openid-connect"
    assert body["account-service"] == f"{provider.issuer}/account"
    assert body["tokens-not-before"] == 0
    assert "\n" not in body["public_key"]
    token = password_grant(provider).json()["access_token"]
    assert rsa_verifies(body["public_key"], token)
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert not rsa_verifies(body["public_key"], tampered)


@pytest.mark.parametrize("path", ["/auth/realms/other", "/auth/realms/other/protocol/openid-connect/certs",
                                  "/auth/realms/master/.well-known/openid-configuration"])
def test_unknown_realm_is_404(provider, path):
    response = requests.get(provider.base_url + path, timeout=5)
    assert response.status_code == 404
    assert response.json() == {"error": "Realm does not exist"}


def test_unknown_path_in_realm_is_404_json(provider):
    response = requests.get(f"{provider.base_url}/auth/realms/squonk2/nothing/here", timeout=5)
    assert response.status_code == 404
    assert "error" in response.json()


def test_discovery_and_jwks(provider):
    response = requests.get(f"{provider.issuer}/.well-known/openid-configuration", timeout=5)
    assert response.status_code == 200
    doc = response.json()
    oidc = f"{provider.issuer}/protocol/openid-connect"
    assert doc["issuer"] == provider.issuer == f"{provider.base_url}/auth/realms/squonk2"
    assert doc["token_endpoint"] == f"{oidc}/token"
    assert doc["jwks_uri"] == f"{oidc}/certs"
    assert doc["authorization_endpoint"] == f"{oidc}/auth"
    assert doc["userinfo_endpoint"] == f"{oidc}/userinfo"
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert {"password", "refresh_token"} <= set(doc["grant_types_supported"])
    jwks = requests.get(doc["jwks_uri"], timeout=5).json()
    assert len(jwks["keys"]) == 1
    jwk = jwks["keys"][0]
    assert jwk | {"n": "", "e": ""} == {"kty": "RSA", "kid": provider.key.kid, "use": "sig", "alg": "RS256",
                                        "n": "", "e": ""}
    assert jwk["e"] == "AQAB"
    assert len(base64.urlsafe_b64decode(jwk["n"] + "==")) == 256  # RSA-2048


def test_password_grant_issues_keycloak_shaped_tokens(provider):
    before = int(time.time())
    response = password_grant(provider)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["refresh_expires_in"] > 60
    assert body["scope"]
    assert unverified_header(body["access_token"]) == {"alg": "RS256", "typ": "JWT", "kid": provider.key.kid}
    claims = unverified_claims(body["access_token"])
    assert claims["iss"] == provider.issuer
    assert claims["aud"] == ["data-manager-api", "account"]
    assert claims["azp"] == "data-manager-api"
    assert claims["typ"] == "Bearer"
    assert claims["preferred_username"] == "alice"
    assert claims["scope"] == body["scope"]
    assert uuid.UUID(claims["sub"]).version == 5
    assert uuid.UUID(claims["jti"])
    assert before <= claims["iat"] <= int(time.time())
    assert claims["exp"] - claims["iat"] == 3600
    assert set(claims["realm_access"]["roles"]) == {"offline_access", "default-roles-squonk2",
                                                    "data-manager-user", "account-server-user"}
    # The same user always gets the same subject; another user another one.
    again = unverified_claims(password_grant(provider).json()["access_token"])
    assert again["sub"] == claims["sub"] and again["jti"] != claims["jti"]
    bob = unverified_claims(password_grant(provider, username="bob", password="bob").json()["access_token"])
    assert bob["sub"] != claims["sub"]


def test_admin_user_gets_admin_role(provider):
    token = password_grant(provider, username="admin", password="admin").json()["access_token"]
    assert {"data-manager-admin", "account-server-admin"} <= set(unverified_claims(token)["realm_access"]["roles"])


@pytest.mark.parametrize(
    "overrides, status, error, description",
    [
        ({"password": "wrong"}, 401, "invalid_grant", "Invalid user credentials"),
        ({"password": None}, 401, "invalid_grant", "Invalid user credentials"),
        ({"username": "mallory", "password": "mallory"}, 401, "invalid_grant", "Invalid user credentials"),
        ({"username": None}, 400, "invalid_request", "Missing parameter: username"),
        ({"client_id": "account-server-api"}, 401, "invalid_client", None),
        ({"client_id": None}, 401, "invalid_client", None),
        ({"grant_type": "client_credentials"}, 400, "unsupported_grant_type", None),
        ({"grant_type": None}, 400, "invalid_request", None),
    ],
)
def test_token_errors_are_keycloaks(provider, overrides, status, error, description):
    response = password_grant(provider, **overrides)
    assert response.status_code == status
    body = response.json()
    assert body["error"] == error
    assert "access_token" not in body
    if description:
        assert body["error_description"] == description


def test_refresh_grant(provider):
    first = password_grant(provider).json()
    response = requests.post(token_url(provider), timeout=5, data={
        "client_id": "data-manager-api", "grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    assert response.status_code == 200
    claims = unverified_claims(response.json()["access_token"])
    assert claims["preferred_username"] == "alice"
    assert claims["jti"] != unverified_claims(first["access_token"])["jti"]
    assert unverified_claims(first["refresh_token"])["typ"] == "Refresh"


@pytest.mark.parametrize("which", ["garbage", "access token", "missing"])
def test_refresh_grant_rejects_what_is_not_our_refresh_token(provider, which):
    tokens = password_grant(provider).json()
    form = {"client_id": "data-manager-api", "grant_type": "refresh_token"}
    if which != "missing":
        form["refresh_token"] = "a.b.c" if which == "garbage" else tokens["access_token"]
    response = requests.post(token_url(provider), data=form, timeout=5)
    assert response.status_code == 400
    assert response.json()["error"] == ("invalid_request" if which == "missing" else "invalid_grant")


def test_userinfo(provider):
    token = password_grant(provider).json()["access_token"]
    url = f"{provider.issuer}/protocol/openid-connect/userinfo"
    ok = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert ok.status_code == 200 and ok.json()["preferred_username"] == "alice"
    refresh = password_grant(provider).json()["refresh_token"]
    assert requests.get(url, headers={"Authorization": f"Bearer {refresh}"}, timeout=5).status_code == 401
    assert requests.get(url, timeout=5).status_code == 401


def test_real_client_gets_token_and_reuses_prior_token(provider):
    args = dict(keycloak_url=f"{provider.base_url}/auth", keycloak_realm="squonk2",
                keycloak_client_id="data-manager-api", username="alice", password="alice")
    token = Auth.get_access_token(**args)
    assert token and unverified_claims(token)["preferred_username"] == "alice"
    posts = provider.count("/openid-connect/token")
    # The client reads the realm's public_key, verifies the prior token with it and,
    # with an hour left, returns it without asking for a new one.
    assert Auth.get_access_token(**args, prior_token=token) == token
    assert provider.count("/openid-connect/token") == posts
    assert provider.count("/realms/squonk2") == 1


def test_real_client_wrong_password_gives_none(provider):
    assert Auth.get_access_token(keycloak_url=f"{provider.base_url}/auth", keycloak_realm="squonk2",
                                 keycloak_client_id="data-manager-api", username="alice", password="nope") is None


def test_provider_app_seen_through_script_name(tmp_path):
    """Mounted under /auth, the app routes on the rest of the path (Flask test client)."""
    settings = Settings(public_url="http://dm.example", data_dir=tmp_path)
    app = create_provider_app(settings, DEFAULT_USERS, load_or_create_signing_key(tmp_path / "k.pem"))
    response = app.test_client().get("/realms/squonk2/.well-known/openid-configuration",
                                     environ_base={"SCRIPT_NAME": "/auth"})
    assert response.json["issuer"] == "http://dm.example/auth/realms/squonk2"


# --- keys -----------------------------------------------------------------------------


def test_signing_key_is_private_and_persistent(tmp_path):
    path = tmp_path / "auth" / "key.pem"
    key = load_or_create_signing_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert [p.name for p in path.parent.iterdir()] == ["key.pem"]  # no temporary file left
    again = load_or_create_signing_key(path)
    assert again.kid == key.kid and again.public_jwk() == key.public_jwk()
    other = load_or_create_signing_key(tmp_path / "other.pem")
    assert other.kid != key.kid


def test_public_key_b64_matches_jwk(tmp_path):
    key = load_or_create_signing_key(tmp_path / "key.pem")
    public = serialization.load_der_public_key(base64.b64decode(key.public_key_b64()))
    n = int.from_bytes(base64.urlsafe_b64decode(key.public_jwk()["n"] + "=="), "big")
    assert public.public_numbers().n == n


def test_unreadable_key_file_is_a_config_error(tmp_path):
    path = tmp_path / "key.pem"
    path.write_text("not a key")
    with pytest.raises(ConfigError, match="key.pem"):
        load_or_create_signing_key(path)


# --- users ----------------------------------------------------------------------------


def test_default_users():
    users = load_users(Settings())
    assert [(u.username, u.password, u.admin) for u in users] == [
        ("alice", "alice", False), ("bob", "bob", False), ("carol", "carol", False), ("admin", "admin", True)]
    assert "password" not in repr(users[0])  # so logs never show it


@pytest.mark.parametrize("suffix, text", [
    (".json", json.dumps({"users": [{"username": "dave.smith@example.com", "password": "p+w", "admin": True}]})),
    (".yaml", "users:\n  - username: dave.smith@example.com\n    password: p+w\n    admin: true\n"),
])
def test_users_file(tmp_path, suffix, text):
    path = tmp_path / f"users{suffix}"
    path.write_text(text)
    assert load_users(Settings(users_file=str(path))) == [DevUser("dave.smith@example.com", "p+w", True)]


@pytest.mark.parametrize("text", [
    "{not yaml: [",
    "[]",
    '{"users": []}',
    '{"users": [{"username": "ab", "password": "x"}]}',
    '{"users": [{"username": "a..b", "password": "x"}]}',
    '{"users": [{"username": "alice", "password": ""}]}',
    '{"users": [{"username": "alice", "password": "x", "admin": "yes"}]}',
    '{"users": [{"username": "alice", "password": "x"}, {"username": "alice", "password": "y"}]}',
])
def test_bad_users_file_names_the_variable(tmp_path, text):
    path = tmp_path / "users.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="DM_USERS_FILE"):
        load_users(Settings(users_file=str(path)))


def test_missing_users_file_names_the_variable(tmp_path):
    with pytest.raises(ConfigError, match="DM_USERS_FILE"):
        load_users(Settings(users_file=str(tmp_path / "absent.yaml")))


@pytest.mark.parametrize("name, ok", [
    ("alice", True), ("a.b-c@d_e", True), ("x" * 80, True), ("x" * 81, False), ("ab", False),
    ("-abc", False), ("abc-", False), ("a--bc", False), ("a b c", False), ("alice\n", False), (None, False),
])
def test_username_rule(name, ok):
    assert valid_username(name) is ok


def test_username_rule_does_not_backtrack():
    started = time.perf_counter()
    assert not valid_username("a" * 79 + "!")
    assert time.perf_counter() - started < 0.1
