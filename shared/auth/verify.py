"""Checks the API's bearer tokens against the identity provider's published keys.

Cold start matters, so python-jose is imported on the first verification, not here.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import re
import threading
import time
import urllib.request
from typing import Any, Callable

from shared.auth.jwks import REFRESH_INTERVAL_S, KeyStore
from shared.config import Settings
from shared.errors import Unauthorized

LEEWAY_S = 5  # clock skew tolerated between us and the provider
CACHE_SIZE = 1024
FETCH_TIMEOUT_S = 3.0
MAX_TOKEN_CHARS = 16 * 1024  # Keycloak's tokens are a few KiB even with many roles
LATEST_TIME = 253402300799  # 9999-12-31T23:59:59Z: a later "time" is no time at all
# Three base64url parts; the signature may be empty so that alg "none" is named when refused.
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")

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
    # The scheme is case-insensitive (RFC 7235 §2.1); one token only, so "Bearer a, Basic b" is refused.
    if scheme.lower() != "bearer" or not token or " " in token:
        raise Unauthorized("The Authorization header must be 'Bearer <token>'")
    if len(token) > MAX_TOKEN_CHARS:
        raise Unauthorized(f"The token is malformed: longer than {MAX_TOKEN_CHARS} characters")
    if not _COMPACT_JWS.fullmatch(token):
        raise Unauthorized("The token is malformed: not a signed JWT (three base64url parts)")
    return token


def _time(claims: dict[str, Any], name: str) -> float | None:
    """The claim as seconds since the epoch, None if absent; Unauthorized if it is not a time."""
    if name not in claims:
        return None
    value = claims[name]
    # bool is an int; NaN and infinities compare as no time does; huge ints do not fit a float.
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (isinstance(value, float) and not math.isfinite(value))
        or not 0 <= value <= LATEST_TIME
    ):
        raise Unauthorized(f"The token's {name!r} claim is not a time in seconds since the epoch")
    return float(value)


def create_verifier(settings: Settings) -> "TokenVerifier":
    """The verifier for settings' issuer: the keys of a provider served in this process (the local
    stack's) are read directly, any other provider's (Keycloak's) over HTTP."""
    from shared.auth.local_keys import jwks_for

    return TokenVerifier(settings, jwks=jwks_for(settings.issuer))


class TokenVerifier:
    """Verifies RS256 access tokens from `settings.issuer`; thread-safe.

    The keys come from `jwks` (a callable returning the JWKS document) when the provider is in this
    process, else from the provider's discovery document and `jwks_uri` through `fetch`.
    """

    def __init__(
        self,
        settings: Settings,
        fetch: Fetch | None = None,
        *,
        jwks: Callable[[], Any] | None = None,
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
        self._cache_size = cache_size
        self._jwks_uri: str | None = None
        source = f"{self.issuer} (in this process)" if jwks else self.issuer
        self.keys = KeyStore(jwks or self._fetch_jwks, source=source, clock=clock,
                             refresh_interval=refresh_interval)
        # token -> (principal, exp): the API verifies on every request.
        self._cache: collections.OrderedDict[str, tuple[Principal, float]] = collections.OrderedDict()
        self._cache_lock = threading.Lock()

    def verify(self, authorization_header: str | None) -> Principal:
        """The principal of a valid 'Bearer <token>' header; Unauthorized otherwise, Unavailable (503)
        when the provider's keys cannot be had."""
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
        principal, exp = self._check(token)
        with self._cache_lock:
            self._cache[token] = (principal, exp)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return principal

    def _check(self, token: str) -> tuple[Principal, float]:
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
        key = self.keys.key(kid)
        try:
            claims = json.loads(jws.verify(token, key, ["RS256"]))
        except JWSError:
            raise Unauthorized("The token's signature is not valid") from None
        except ValueError:
            raise Unauthorized("The token is malformed: its claims are not JSON") from None
        if not isinstance(claims, dict):
            raise Unauthorized("The token is malformed: its claims are not an object")
        # The clock is read after any wait for the keys.
        return self._principal(token, claims, self._clock())

    def _principal(self, token: str, claims: dict[str, Any], now: float) -> tuple[Principal, float]:
        exp, nbf = _time(claims, "exp"), _time(claims, "nbf")
        _time(claims, "iat")  # not used, but a token whose times are not numbers is not one we issued
        if exp is None:
            raise Unauthorized("The token has no expiry (exp)")
        if now > exp + self._leeway:
            raise Unauthorized("The token has expired")
        if nbf is not None and now + self._leeway < nbf:
            raise Unauthorized("The token is not valid yet")
        if claims.get("iss") != self.issuer:
            raise Unauthorized(f"The token was issued by {claims.get('iss')!r}, not by {self.issuer!r}")
        typ = claims.get("typ", "Bearer")
        if not isinstance(typ, str) or typ.lower() != "bearer":
            # Refresh and ID tokens also carry azp; only access tokens open the API.
            raise Unauthorized(f"The token is a {typ!r} token, not an access token")
        # Keycloak names the client that asked for the token in azp and puts other clients in aud
        # (web-ui.md §4, §6): either may name us.
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
        return Principal(username, roles, self.admin_role in roles, token), exp

    def _fetch_jwks(self) -> Any:
        """The provider's JWKS document over HTTP, through its discovery document the first time."""
        if self._jwks_uri is None:
            self._jwks_uri = self._fetch(f"{self.issuer}/.well-known/openid-configuration")["jwks_uri"]
        return self._fetch(self._jwks_uri)
