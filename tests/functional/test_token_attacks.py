"""Hostile and broken bearer tokens through the real api function: each is a 401 with a JSON `error`,
and the call it came with changed nothing (no project, no user record, no API-log row)."""

from __future__ import annotations

import base64
import json
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import func, select

from shared.db.models import ApiLogEntry, Project, User
from shared.db.session import transaction
from tests.unit.auth import b64url, hs256, make_jwt, rs256

AUDIENCE = "data-manager-api"


@pytest.fixture(scope="module")
def foreign_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def claims(identity, **changes) -> dict:
    """Claims like the provider's access token for alice, with changes (None removes one)."""
    now = int(time.time())
    base = {"iss": identity.settings.issuer, "sub": "s", "aud": [AUDIENCE, "account"], "azp": AUDIENCE,
            "exp": now + 300, "iat": now, "typ": "Bearer", "preferred_username": "alice",
            "realm_access": {"roles": ["offline_access"]}}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def provider_signed(identity, payload: bytes) -> str:
    """A JWS with the provider's real key over any payload, even one that is not a JSON object."""
    private = serialization.load_pem_private_key(identity.key.private_pem(), None)
    head = b64url(json.dumps({"alg": "RS256", "kid": identity.key.kid, "typ": "JWT"}).encode())
    signing_input = f"{head}.{b64url(payload)}"
    return f"{signing_input}.{b64url(rs256(private)(signing_input.encode()))}"


def public_pem(identity) -> bytes:
    der = base64.b64decode(identity.key.public_key_b64())
    return serialization.load_der_public_key(der).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def forged_token(kind: str, identity, foreign_key) -> str:
    now = int(time.time())
    sign = identity.key.sign
    kid = identity.key.kid
    tokens = {
        "expired": lambda: sign(claims(identity, exp=now - 60, iat=now - 400)),
        "not yet valid": lambda: sign(claims(identity, nbf=now + 600)),
        "string nbf": lambda: sign(claims(identity, nbf=str(now + 600))),
        "string nbf in the past": lambda: sign(claims(identity, nbf=str(now - 600))),
        "string exp": lambda: sign(claims(identity, exp=str(now + 600))),
        "string iat": lambda: sign(claims(identity, iat=str(now))),
        "boolean exp": lambda: sign(claims(identity, exp=True)),
        "boolean nbf": lambda: sign(claims(identity, nbf=False)),
        "huge exp": lambda: sign(claims(identity, exp=10**400)),
        "huge iat": lambda: sign(claims(identity, iat=10**30)),
        "infinite exp": lambda: sign(claims(identity, exp=float("inf"))),
        "NaN nbf": lambda: sign(claims(identity, nbf=float("nan"))),
        "no exp": lambda: sign(claims(identity, exp=None)),
        "wrong issuer": lambda: sign(claims(identity, iss="http://evil.example/auth/realms/squonk2")),
        "issuer with a trailing slash": lambda: sign(claims(identity, iss=identity.settings.issuer + "/")),
        "wrong audience and azp": lambda: sign(claims(identity, aud=["account"], azp="other-client")),
        "UI token without our audience": lambda: sign(claims(identity, aud="account", azp="data-manager-ui")),
        "no audience at all": lambda: sign(claims(identity, aud=None, azp=None)),
        "refresh token": lambda: sign(claims(identity, typ="Refresh", aud=identity.settings.issuer)),
        "ID token": lambda: sign(claims(identity, typ="ID", aud=AUDIENCE)),
        "alg none": lambda: make_jwt({"alg": "none", "kid": kid}, claims(identity)),
        "alg None": lambda: make_jwt({"alg": "None", "kid": kid}, claims(identity)),
        "HS256 with the public key's PEM": lambda: make_jwt(
            {"alg": "HS256", "kid": kid}, claims(identity), hs256(public_pem(identity))),
        "foreign key with the provider's kid": lambda: make_jwt(
            {"alg": "RS256", "kid": kid}, claims(identity), rs256(foreign_key)),
        "unknown kid": lambda: make_jwt({"alg": "RS256", "kid": "stranger"}, claims(identity), rs256(foreign_key)),
        "no kid": lambda: make_jwt({"alg": "RS256"}, claims(identity), rs256(foreign_key)),
        "tampered claims": lambda: ".".join([sign(claims(identity)).split(".")[0],
                                             b64url(json.dumps(claims(identity, preferred_username="admin")).encode()),
                                             sign(claims(identity)).split(".")[2]]),
        "signed claims that are not JSON": lambda: provider_signed(identity, b"not json"),
        "signed claims that are a list": lambda: provider_signed(identity, b"[1, 2]"),
        "not three parts": lambda: "abc.def",
        "four parts": lambda: sign(claims(identity)) + ".abc",
        "bad base64": lambda: "!!!." + sign(claims(identity)).split(".", 1)[1],
        "bad base64 length": lambda: "a." + sign(claims(identity)).split(".", 1)[1],
        "header not JSON": lambda: b64url(b"{not json") + "." + sign(claims(identity)).split(".", 1)[1],
        "header a JSON list": lambda: b64url(b"[]") + "." + sign(claims(identity)).split(".", 1)[1],
        "oversized (64 KiB)": lambda: sign(claims(identity, padding="x" * 64 * 1024)),
    }
    return tokens[kind]()


def assert_refused(resp, status: int = 401) -> dict:
    assert resp.status_code == status, resp.get_data(as_text=True)[:500]
    assert resp.mimetype == "application/json"
    body = resp.get_json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], body
    return body


def counts(api) -> tuple[int, int, int]:
    """Projects, user records and API-log rows: what a POST /project that got through would add to."""
    with transaction(api.services.engine, readonly=True) as s:
        return tuple(s.scalar(select(func.count()).select_from(model)) for model in (Project, User, ApiLogEntry))


def try_create(caller, api, headers: dict | None = None, query: str = "") -> dict:
    """POST /project with these headers (none of alice's own); asserts a 401 that changed nothing."""
    before = counts(api)
    anonymous = caller(None)
    data = {"name": "Should not exist", "tier_product_id": api.units["alice"]["project_tier_product_id"]}
    body = assert_refused(anonymous.post("/project" + query, data=data, headers=headers or {}))
    assert counts(api) == before
    return body


KINDS = ["expired", "not yet valid", "string nbf", "string nbf in the past", "string exp", "string iat",
         "boolean exp", "boolean nbf", "huge exp", "huge iat", "infinite exp", "NaN nbf", "no exp", "wrong issuer",
         "issuer with a trailing slash", "wrong audience and azp", "UI token without our audience",
         "no audience at all", "refresh token", "ID token", "alg none", "alg None",
         "HS256 with the public key's PEM", "foreign key with the provider's kid", "unknown kid", "no kid",
         "tampered claims", "signed claims that are not JSON", "signed claims that are a list", "not three parts",
         "four parts", "bad base64", "bad base64 length", "header not JSON", "header a JSON list",
         "oversized (64 KiB)"]


@pytest.mark.parametrize("kind", KINDS)
def test_forged_or_broken_token_is_401_and_creates_nothing(caller, api, identity, foreign_key, kind):
    token = forged_token(kind, identity, foreign_key)
    try_create(caller, api, {"Authorization": f"Bearer {token}"})
    assert_refused(caller(None).get("/project", headers={"Authorization": f"Bearer {token}"}))


def test_the_forgeries_differ_from_a_good_token_only_in_what_they_break(caller, api, identity):
    # The same claims, signed properly, do open the API: the refusals above are the tokens' faults.
    good = identity.key.sign(claims(identity))
    ui = identity.key.sign(claims(identity, aud=[AUDIENCE], azp="data-manager-ui"))  # web-ui.md §6
    floats = identity.key.sign(claims(identity, exp=time.time() + 60.5, nbf=time.time() - 1.5))
    for token in (good, ui, floats):
        resp = caller(None).get("/project", headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 200, resp.get_data(as_text=True)


def test_no_token(caller, api):
    body = try_create(caller, api)
    assert "Authorization" in body["error"]


@pytest.mark.parametrize("param", ["access_token", "token", "bearer", "jwt"])
def test_a_token_in_the_query_string_does_not_authenticate(caller, api, token_for, param):
    try_create(caller, api, query=f"?{param}={token_for('alice')}")
    assert_refused(caller(None).get(f"/project?{param}={token_for('alice')}"))


def test_a_token_in_a_form_field_does_not_authenticate(caller, api, token_for):
    before = counts(api)
    data = {"name": "x", "tier_product_id": api.units["alice"]["project_tier_product_id"],
            "access_token": token_for("alice")}
    assert_refused(caller(None).post("/project", data=data))
    assert counts(api) == before


@pytest.mark.parametrize("header", [
    "{valid}",  # no scheme
    "Token {valid}",
    "Basic {valid}",
    "Bearer{valid}",
    "Bearer\t{valid}",
    "Bearer {valid} extra",
    "Bearer {half} {rest}",
    "Bearer {valid},",
    # Two schemes, as a server joins two Authorization headers or a client lists them.
    "Basic YWxpY2U6YWxpY2U=, Bearer {valid}",
    "Bearer {valid}, Basic YWxpY2U6YWxpY2U=",
    "Bearer {valid}, Bearer {valid}",
    "Bearer {valid},Bearer {valid}",
    "Bearer {forged}, Bearer {valid}",
])
def test_authorization_header_shapes_that_are_refused(caller, api, token_for, identity, foreign_key, header):
    valid = token_for("alice")
    forged = forged_token("foreign key with the provider's kid", identity, foreign_key)
    value = header.format(valid=valid, half=valid[:40], rest=valid[40:], forged=forged)
    try_create(caller, api, {"Authorization": value})


@pytest.mark.parametrize("kind", ["alg none", "foreign key with the provider's kid", "expired", "string nbf"])
@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "  Bearer "])
def test_scheme_spelling_does_not_weaken_the_checks(caller, api, identity, foreign_key, kind, scheme):
    # The scheme is case-insensitive (RFC 7235 §2.1, as Keycloak reads it), but a forged token is still refused.
    try_create(caller, api, {"Authorization": f"{scheme} {forged_token(kind, identity, foreign_key)}"})


def test_keys_unavailable_is_503_with_retry_after_never_401(caller, api, token_for, monkeypatch):
    from shared.auth.verify import TokenVerifier

    def provider_down():
        raise ConnectionRefusedError("connection refused")

    monkeypatch.setattr(api.services, "verifier", TokenVerifier(api.settings, jwks=provider_down))
    before = counts(api)
    alice = caller("alice")
    resp = alice.post("/project", data={"name": "x", "tier_product_id": alice.unit["project_tier_product_id"]})
    body = assert_refused(resp, 503)
    assert "cannot be reached" in body["error"]
    assert resp.headers["Retry-After"] == "1"
    assert counts(api) == before
    resp = alice.get("/project")  # within the backoff: still 503, not a blackout of 401s
    assert_refused(resp, 503)
    assert int(resp.headers["Retry-After"]) >= 1
