"""The bearer-token verifier against the development provider over real HTTP."""

from __future__ import annotations

import base64
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.auth.keys import key_path
from shared.auth.verify import Principal, TokenVerifier
from shared.config import Settings
from shared.errors import DmError, Unauthorized

from . import ProviderServer, hs256, make_jwt, rs256, unverified_claims

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def provider(tmp_path):
    server = ProviderServer(tmp_path)
    yield server
    server.close()


class Clock:
    """Real time plus an offset the test can move forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def login(provider: ProviderServer, username: str = "alice") -> str:
    response = requests.post(
        f"{provider.issuer}/protocol/openid-connect/token", timeout=5,
        data={"client_id": "data-manager-api", "grant_type": "password", "username": username, "password": username})
    assert response.status_code == 200
    return response.json()["access_token"]


def claims_for(provider: ProviderServer, **changes) -> dict:
    """Claims like the provider's for alice, with changes (None removes a claim)."""
    now = int(time.time())
    claims = {"iss": provider.issuer, "sub": "s", "aud": ["data-manager-api", "account"], "azp": "data-manager-api",
              "exp": now + 300, "iat": now, "typ": "Bearer", "preferred_username": "alice",
              "realm_access": {"roles": ["offline_access"]}}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def test_importing_verify_does_not_import_jose():
    code = "import sys, shared.auth.verify; print(sorted(m for m in ('jose', 'flask', 'cryptography') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_good_token_gives_principal(provider):
    token = login(provider)
    principal = TokenVerifier(provider.settings).verify(f"Bearer {token}")
    assert principal == Principal("alice", frozenset({"offline_access", "default-roles-squonk2", "data-manager-user",
                                                      "account-server-user"}), False, token)
    assert token not in repr(principal)


def test_admin_flag(provider):
    verifier = TokenVerifier(provider.settings)
    admin = verifier.verify(f"Bearer {login(provider, 'admin')}")
    assert admin.username == "admin" and admin.is_admin and "data-manager-admin" in admin.roles
    assert not verifier.verify(f"Bearer {login(provider, 'bob')}").is_admin


def test_scheme_is_case_insensitive(provider):
    assert TokenVerifier(provider.settings).verify(f"bearer {login(provider)}").username == "alice"


@pytest.mark.parametrize("aud, azp", [("data-manager-api", None), (["account"], "data-manager-api")])
def test_audience_in_aud_or_azp(provider, aud, azp):
    token = provider.key.sign(claims_for(provider, aud=aud, azp=azp))
    assert TokenVerifier(provider.settings).verify(f"Bearer {token}").username == "alice"


@pytest.mark.parametrize("header, message", [
    (None, "Missing Authorization"),
    ("", "Missing Authorization"),
    ("Basic x", "Bearer <token>"),
    ("Bearer", "Bearer <token>"),
    ("Bearer a b", "Bearer <token>"),
    ("Bearer not-a-jwt", "malformed"),
    ("Bearer a.b.c", "malformed"),
])
def test_bad_headers(provider, header, message):
    with pytest.raises(Unauthorized, match=message) as caught:
        TokenVerifier(provider.settings).verify(header)
    assert caught.value.status == 401


def forged(provider: ProviderServer, kind: str) -> str:
    """A token that must not pass, of the given kind."""
    kid = provider.key.kid
    if kind == "expired":
        return provider.key.sign(claims_for(provider, exp=int(time.time()) - 60))
    if kind == "other key, same kid":
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return make_jwt({"alg": "RS256", "kid": kid}, claims_for(provider), rs256(other))
    if kind == "tampered claims":
        head, _, sig = provider.key.sign(claims_for(provider)).split(".")
        body = make_jwt({}, claims_for(provider, preferred_username="admin")).split(".")[1]
        return f"{head}.{body}.{sig}"
    if kind == "wrong issuer":
        return provider.key.sign(claims_for(provider, iss="http://evil.example/auth/realms/squonk2"))
    if kind == "wrong audience":
        return provider.key.sign(claims_for(provider, aud=["account"], azp="other-client"))
    if kind == "no preferred_username":
        return provider.key.sign(claims_for(provider, preferred_username=None))
    if kind == "no exp":
        return provider.key.sign(claims_for(provider, exp=None))
    if kind == "not yet valid":
        return provider.key.sign(claims_for(provider, nbf=int(time.time()) + 600))
    if kind == "refresh token":
        return requests.post(f"{provider.issuer}/protocol/openid-connect/token", timeout=5, data={
            "client_id": "data-manager-api", "grant_type": "password", "username": "alice", "password": "alice",
        }).json()["refresh_token"]
    if kind == "alg none":
        return make_jwt({"alg": "none", "kid": kid}, claims_for(provider))
    if kind == "HS256 with the public key":
        pem = serialization.load_der_public_key(base64.b64decode(provider.key.public_key_b64())).public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        return make_jwt({"alg": "HS256", "kid": kid}, claims_for(provider), hs256(pem))
    if kind == "no kid":
        return make_jwt({"alg": "RS256"}, claims_for(provider), rs256(
            serialization.load_pem_private_key(provider.key.private_pem(), None)))
    raise AssertionError(kind)


@pytest.mark.parametrize("kind, message", [
    ("expired", "expired"),
    ("other key, same kid", "signature"),
    ("tampered claims", "signature"),
    ("wrong issuer", "issued by 'http://evil.example"),
    ("wrong audience", "not meant for 'data-manager-api'"),
    ("no preferred_username", "preferred_username"),
    ("no exp", "expiry"),
    ("not yet valid", "not valid yet"),
    ("refresh token", "not an access token"),
    ("alg none", "'none' is not accepted"),
    ("HS256 with the public key", "'HS256' is not accepted"),
    ("no kid", "kid"),
])
def test_bad_tokens_are_unauthorized(provider, kind, message):
    verifier = TokenVerifier(provider.settings)
    verifier.verify(f"Bearer {login(provider)}")  # keys loaded: the failure is the token's own
    with pytest.raises(Unauthorized, match=message):
        verifier.verify(f"Bearer {forged(provider, kind)}")


def test_unknown_kid_is_rejected_and_refreshes_at_most_once_per_interval(provider):
    verifier = TokenVerifier(provider.settings)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = make_jwt({"alg": "RS256", "kid": "stranger"}, claims_for(provider), rs256(stranger))
    for _ in range(5):
        with pytest.raises(Unauthorized, match="signing key 'stranger'"):
            verifier.verify(f"Bearer {token}")
    assert provider.count("/.well-known/openid-configuration") == 1
    assert provider.count("/openid-connect/certs") == 1


def test_key_rotation_is_picked_up_by_refresh(provider):
    clock = Clock()
    verifier = TokenVerifier(provider.settings, clock=clock)
    old = login(provider)
    assert verifier.verify(f"Bearer {old}").username == "alice"
    key_path(provider.settings).unlink()
    provider.restart()  # a new key, served under a new kid
    new = login(provider)
    assert unverified_claims(new)["preferred_username"] == "alice"
    # Within the refresh interval the new kid is unknown...
    with pytest.raises(Unauthorized, match="signing key"):
        verifier.verify(f"Bearer {new}")
    assert provider.count("/openid-connect/certs") == 1
    # ...after it, one refresh finds it.
    clock.offset = 11
    assert verifier.verify(f"Bearer {new}").username == "alice"
    assert provider.count("/openid-connect/certs") == 2


def test_restart_with_same_data_dir_keeps_old_tokens_valid(provider):
    token = login(provider)
    kid = provider.key.kid
    provider.restart()
    assert provider.key.kid == kid
    # A fresh verifier (a restarted API) checks the old token against the restarted provider.
    assert TokenVerifier(provider.settings).verify(f"Bearer {token}").username == "alice"


def test_verified_tokens_are_cached_until_they_expire(provider):
    clock = Clock()
    verifier = TokenVerifier(provider.settings, clock=clock)
    token = provider.key.sign(claims_for(provider, exp=int(time.time()) + 20))
    first = verifier.verify(f"Bearer {token}")
    assert verifier.verify(f"Bearer {token}") is first  # served from the cache
    clock.offset = 60
    with pytest.raises(Unauthorized, match="expired"):
        verifier.verify(f"Bearer {token}")
    with pytest.raises(Unauthorized, match="expired"):  # and not cached as valid again
        verifier.verify(f"Bearer {token}")


def test_cache_is_bounded(provider):
    verifier = TokenVerifier(provider.settings, cache_size=2)
    tokens = [provider.key.sign(claims_for(provider, jti=str(n))) for n in range(3)]
    principals = [verifier.verify(f"Bearer {t}") for t in tokens]
    assert len(verifier._cache) == 2
    assert verifier.verify(f"Bearer {tokens[0]}") is not principals[0]  # evicted, verified afresh
    assert verifier.verify(f"Bearer {tokens[2]}") is principals[2]


def test_concurrent_first_requests_fetch_keys_once(provider):
    verifier = TokenVerifier(provider.settings)
    tokens = [login(provider, name) for name in ("alice", "bob", "carol", "admin")] * 4
    results: list = []
    barrier = threading.Barrier(len(tokens))

    def check(token: str) -> None:
        barrier.wait()
        results.append(verifier.verify(f"Bearer {token}").username)

    threads = [threading.Thread(target=check, args=(t,)) for t in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(results) == sorted(["alice", "bob", "carol", "admin"] * 4)
    assert provider.count("/openid-connect/certs") == 1


def test_unreachable_provider_is_503_not_401(provider):
    token = login(provider)
    provider.close()
    with pytest.raises(DmError, match="cannot be reached") as caught:
        TokenVerifier(provider.settings).verify(f"Bearer {token}")
    assert caught.value.status == 503 and not isinstance(caught.value, Unauthorized)


def test_injected_fetch_is_used(provider):
    seen: list[str] = []

    def fetch(url: str) -> dict:
        seen.append(url)
        if url.endswith("/.well-known/openid-configuration"):
            return {"jwks_uri": "memory:jwks"}
        return {"keys": [{"kty": "RSA", "use": "enc", "kid": provider.key.kid, "n": "AQAB", "e": "AQAB"},
                         provider.key.public_jwk()]}

    token = provider.key.sign(claims_for(provider))
    assert TokenVerifier(provider.settings, fetch=fetch).verify(f"Bearer {token}").username == "alice"
    assert seen == [f"{provider.issuer}/.well-known/openid-configuration", "memory:jwks"]
    assert provider.count("/certs") == 0


def test_other_issuer_setting_is_honoured(provider):
    settings = Settings(oidc_issuer=provider.issuer + "-elsewhere", data_dir=provider.settings.data_dir)
    verifier = TokenVerifier(settings, fetch=lambda url: {"jwks_uri": "x"} if "well-known" in url
                             else {"keys": [provider.key.public_jwk()]})
    with pytest.raises(Unauthorized, match="issued by"):
        verifier.verify(f"Bearer {login(provider)}")


@pytest.mark.parametrize("claim, value", [
    ("nbf", "0"), ("nbf", "in 10 minutes"), ("exp", "in 10 minutes"), ("iat", "now"),
    ("exp", True), ("nbf", False), ("iat", True), ("nbf", None), ("exp", [int(time.time()) + 600]),
    ("exp", {"at": 1}), ("exp", float("inf")), ("exp", float("nan")), ("nbf", float("nan")),
    ("nbf", float("-inf")), ("exp", 10**400), ("iat", 10**400), ("exp", 10**15), ("nbf", -1),
])
def test_time_claims_must_be_numbers_of_seconds(provider, claim, value):
    claims = claims_for(provider)
    claims[claim] = str(int(time.time()) + 600) if value == "in 10 minutes" else value  # None stays, as null
    token = provider.key.sign(claims)
    verifier = TokenVerifier(provider.settings)
    verifier.verify(f"Bearer {login(provider)}")
    with pytest.raises(Unauthorized, match=f"'{claim}' claim is not a time"):
        verifier.verify(f"Bearer {token}")


def test_fractional_times_are_times(provider):
    now = time.time()
    token = provider.key.sign(claims_for(provider, exp=now + 60.5, nbf=now - 0.5, iat=now - 0.25))
    assert TokenVerifier(provider.settings).verify(f"Bearer {token}").username == "alice"


@pytest.mark.parametrize("token, message", [
    ("a" * 70_000, "longer than"),
    ("a.b", "three base64url parts"),
    ("a.b.c.d", "three base64url parts"),
    ("a+b.c/d.e", "three base64url parts"),
    ("a.b.c=", "three base64url parts"),
    ("a.b.c,Basic", "three base64url parts"),
    ("é.b.c", "three base64url parts"),
])
def test_tokens_that_are_not_compact_jws_are_refused_before_parsing(provider, token, message):
    with pytest.raises(Unauthorized, match=message):
        TokenVerifier(provider.settings).verify(f"Bearer {token}")
    assert provider.count("/certs") == 0
