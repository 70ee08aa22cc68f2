"""Checks the API's bearer tokens against the identity provider's published keys.

Cold start matters, so python-jose is imported on the first verification, not here.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import threading
import time
import urllib.request
from typing import Any, Callable

from shared.config import Settings
from shared.errors import DmError, Unauthorized

LEEWAY_S = 5  # clock skew tolerated between us and the provider
REFRESH_INTERVAL_S = 10.0  # at most one JWKS refresh per interval, however many unknown kids arrive
CACHE_SIZE = 1024
FETCH_TIMEOUT_S = 5.0

Fetch = Callable[[str], Any]


@dataclasses.dataclass(frozen=True)
class Principal:
    """The user a verified token speaks for."""

    username: str
    roles: frozenset[str]
    is_admin: bool
    token: str = dataclasses.field(repr=False)


def fetch_json(url: str) -> Any:
    """The JSON document at url, fetched with a short timeout."""
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(req, timeout=FETCH_TIMEOUT_S) as resp:
        return json.load(resp)


def _bearer(header: str | None) -> str:
    if not header:
        raise Unauthorized("Missing Authorization header: send 'Authorization: Bearer <token>'")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise Unauthorized("The Authorization header must be 'Bearer <token>'")
    return token


class TokenVerifier:
    """Verifies RS256 access tokens from `settings.issuer`; thread-safe."""

    def __init__(
        self,
        settings: Settings,
        fetch: Fetch | None = None,
        *,
        clock: Callable[[], float] = time.time,
        leeway: float = LEEWAY_S,
        refresh_interval: float = REFRESH_INTERVAL_S,
        cache_size: int = CACHE_SIZE,
    ):
        self.issuer = settings.issuer
        self.audience = settings.oidc_audience
        self.admin_role = settings.admin_role
        self._fetch = fetch or fetch_json
        self._clock = clock
        self._leeway = leeway
        self._refresh_interval = refresh_interval
        self._cache_size = cache_size
        self._keys: dict[str, Any] = {}  # kid -> jose public key
        self._jwks_uri: str | None = None
        self._fetched_at: float | None = None
        self._keys_lock = threading.Lock()
        # token -> (principal, exp): the API verifies on every request.
        self._cache: collections.OrderedDict[str, tuple[Principal, float]] = collections.OrderedDict()
        self._cache_lock = threading.Lock()

    def verify(self, authorization_header: str | None) -> Principal:
        """The principal of a valid 'Bearer <token>' header; Unauthorized otherwise."""
        token = _bearer(authorization_header)
        now = self._clock()
        with self._cache_lock:
            hit = self._cache.get(token)
            if hit is not None:
                if now > hit[1] + self._leeway:
                    del self._cache[token]
                    raise Unauthorized("The token has expired")
                self._cache.move_to_end(token)
                return hit[0]
        principal, exp = self._check(token, now)
        with self._cache_lock:
            self._cache[token] = (principal, exp)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return principal

    def _check(self, token: str, now: float) -> tuple[Principal, float]:
        from jose import JWSError, jws

        try:
            header = jws.get_unverified_header(token)
        except JWSError:
            raise Unauthorized("The token is malformed: not a signed JWT") from None
        alg = header.get("alg")
        # Only RS256: "none" carries no signature, and HS256 would let anyone who has
        # the public key (it is published) sign tokens with it as the secret.
        if alg != "RS256":
            raise Unauthorized(f"The token's algorithm {alg!r} is not accepted: RS256 is required")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("The token's header has no key id (kid)")
        key = self._key(kid, now)
        try:
            claims = json.loads(jws.verify(token, key, ["RS256"]))
        except JWSError:
            raise Unauthorized("The token's signature is not valid") from None
        except ValueError:
            raise Unauthorized("The token is malformed: its claims are not JSON") from None
        if not isinstance(claims, dict):
            raise Unauthorized("The token is malformed: its claims are not an object")
        return self._principal(token, claims, now)

    def _principal(self, token: str, claims: dict[str, Any], now: float) -> tuple[Principal, float]:
        exp, nbf = claims.get("exp"), claims.get("nbf", 0)
        if not isinstance(exp, (int, float)) or isinstance(exp, bool):
            raise Unauthorized("The token has no expiry (exp)")
        if now > exp + self._leeway:
            raise Unauthorized("The token has expired")
        if isinstance(nbf, (int, float)) and now + self._leeway < nbf:
            raise Unauthorized("The token is not valid yet")
        if claims.get("iss") != self.issuer:
            raise Unauthorized(f"The token was issued by {claims.get('iss')!r}, not by {self.issuer!r}")
        typ = claims.get("typ", "Bearer")
        if not isinstance(typ, str) or typ.lower() != "bearer":
            # Refresh and ID tokens also carry azp; only access tokens open the API.
            raise Unauthorized(f"The token is a {typ!r} token, not an access token")
        aud = claims.get("aud", [])
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if self.audience not in audiences and claims.get("azp") != self.audience:
            raise Unauthorized(f"The token is not meant for {self.audience!r}")
        username = claims.get("preferred_username")
        if not isinstance(username, str) or not username:
            raise Unauthorized("The token has no preferred_username")
        realm_access = claims.get("realm_access")
        roles = realm_access.get("roles") if isinstance(realm_access, dict) else None
        roles = frozenset(r for r in roles if isinstance(r, str)) if isinstance(roles, list) else frozenset()
        return Principal(username, roles, self.admin_role in roles, token), float(exp)

    def _key(self, kid: str, now: float) -> Any:
        with self._keys_lock:
            key = self._keys.get(kid)
            if key is None and (
                self._fetched_at is None or now - self._fetched_at >= self._refresh_interval
            ):
                self._load_keys(now)
                key = self._keys.get(kid)
        if key is None:
            raise Unauthorized(f"The token's signing key {kid!r} is not one of the identity provider's")
        return key

    def _load_keys(self, now: float) -> None:
        """Re-reads the provider's JWKS (caller holds the keys lock)."""
        from jose import jwk
        from jose.exceptions import JWKError

        self._fetched_at = now  # failures count too, so a dead provider is not hammered
        try:
            if self._jwks_uri is None:
                self._jwks_uri = self._fetch(f"{self.issuer}/.well-known/openid-configuration")["jwks_uri"]
            documents = self._fetch(self._jwks_uri)["keys"]
        except Exception as exc:  # any transport or document fault: the provider is unusable
            raise DmError(f"The identity provider at {self.issuer} cannot be reached: {exc}", status=503) from None
        keys = {}
        for doc in documents if isinstance(documents, list) else []:
            usable = (
                isinstance(doc, dict)
                and doc.get("kty") == "RSA"
                and doc.get("use", "sig") == "sig"
                and doc.get("alg", "RS256") == "RS256"
                and isinstance(doc.get("kid"), str)
            )
            if usable:
                try:
                    keys[doc["kid"]] = jwk.construct(doc, "RS256")
                except JWKError:
                    continue  # one bad key must not hide the good ones
        self._keys = keys
