"""The development provider's OAuth 2 / OpenID Connect protocol, built on Authlib's server parts.

Authlib checks the requests: clients and their authentication, exact redirect URIs, the
authorization code grant with PKCE, the OpenID Connect code flow (nonce, prompt, id token with
at_hash), refresh, and RP-initiated logout. This module supplies what Authlib leaves to its user:
the clients, where codes live (in memory: one minute, single use), who the users are, and tokens
shaped like Keycloak's (web-ui.md §"OpenID provider").
"""

from __future__ import annotations

import dataclasses
import hmac
import threading
import time
import uuid
from typing import Any, Iterable

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, InvalidRequestError
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant, RefreshTokenGrant
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core.grants import OpenIDCode, OpenIDToken
from authlib.oidc.rpinitiated import EndSessionEndpoint

from shared.auth.keys import SigningKey
from shared.auth.sessions import Sessions
from shared.auth.users import DevClient, DevUser
from shared.config import Settings

REALM = "squonk2"
CODE_LIFETIME_S = 60  # Keycloak's default
SCOPES = ("openid", "profile", "email", "offline_access")
CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
DEFAULT_ROLES = ("offline_access", f"default-roles-{REALM}")
# Every user may use the Data Manager and the Account Server (the web UI requires one role of each).
USER_ROLES = ("data-manager-user", "account-server-user")
AS_ADMIN_ROLE = "account-server-admin"
_SUB_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, f"urn:dm-knative:{REALM}:users")


def subject(username: str) -> str:
    """The stable `sub` claim of a user."""
    return str(uuid.uuid5(_SUB_NAMESPACE, username))


@dataclasses.dataclass(frozen=True)
class SignedIn:
    """A user in a sign-in session: the "user" Authlib passes around."""

    user: DevUser
    sid: str
    auth_time: int


class Client(ClientMixin):
    """A `DevClient` as Authlib sees it."""

    def __init__(self, client: DevClient):
        self.dev = client
        self.client_metadata = {"post_logout_redirect_uris": list(client.post_logout_redirect_uris)}

    def get_client_id(self) -> str:
        return self.dev.client_id

    def get_default_redirect_uri(self) -> None:
        return None  # the request must name its redirect_uri

    def get_allowed_scope(self, scope: str | None) -> str:
        return " ".join(s for s in (scope or "").split() if s in SCOPES)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.dev.redirect_uris  # exact match, as RFC 9700 §4.1.3 asks

    def check_client_secret(self, client_secret: str) -> bool:
        secret = self.dev.secret
        return secret is not None and hmac.compare_digest(client_secret.encode(), secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.dev.public:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token")


@dataclasses.dataclass
class AuthorizationCode:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    who: SignedIn
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    expires_at: float

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.who.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


class RefreshToken:
    """The claims of a refresh token we issued, as Authlib's refresh grant asks for them."""

    def __init__(self, claims: dict[str, Any]):
        self.claims = claims

    def check_client(self, client: Client) -> bool:
        return self.claims.get("azp") == client.get_client_id()  # only the client it was issued to

    def get_scope(self) -> str:
        return self.claims.get("scope", "")

    def is_expired(self) -> bool:
        return False  # read() already refused an expired one

    def is_revoked(self) -> bool:
        return False


class S256Challenge(CodeChallenge):
    """PKCE with S256 only: `plain` (also what a challenge without a method means) is refused, and a
    public client must send a challenge."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant, redirect_uri):
        payload = grant.request.payload.data
        if payload.get("code_challenge") and payload.get("code_challenge_method") != "S256":
            raise InvalidRequestError("Invalid parameter: code_challenge_method: only S256 is supported")
        if grant.request.client.dev.public and not payload.get("code_challenge"):
            raise InvalidRequestError("Missing parameter: code_challenge_method")
        super().validate_code_challenge(grant, redirect_uri)


class Protocol:
    """The Authlib server, its grants and endpoints, and the tokens they issue."""

    def __init__(self, settings: Settings, users: Iterable[DevUser], clients: Iterable[DevClient],
                 key: SigningKey, sessions: Sessions, *, access_lifetime: int, refresh_lifetime: int):
        self.settings = settings
        self.issuer = settings.issuer
        self.key = key
        self.sessions = sessions
        self.access_lifetime = access_lifetime
        self.refresh_lifetime = refresh_lifetime
        self.users = {user.username: user for user in users}
        self.clients = {client.client_id: Client(client) for client in clients}
        self._codes: dict[str, AuthorizationCode] = {}
        self._codes_lock = threading.Lock()
        self.server = self._server()

    # --- the Authlib server --------------------------------------------------------------

    def _server(self) -> AuthorizationServer:
        protocol = self
        server = AuthorizationServer(query_client=self.clients.get, save_token=lambda token, request: None)
        server.load_config({})

        class CodeGrant(AuthorizationCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS

            def save_authorization_code(self, code: str, request) -> None:
                protocol._save_code(code, request)

            def query_authorization_code(self, code: str, client: Client) -> AuthorizationCode | None:
                return protocol._take_code(code, client)

            def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
                pass  # taken already when it was looked up

            def authenticate_user(self, authorization_code: AuthorizationCode) -> SignedIn | None:
                return protocol._still_signed_in(authorization_code.who)

            def generate_token(self, user=None, scope=None, grant_type=None, expires_in=None,
                               include_refresh_token=True):
                return protocol.tokens(user, self.request.client, scope)

        class RefreshGrant(RefreshTokenGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS
            INCLUDE_NEW_REFRESH_TOKEN = True  # as Keycloak: each refresh answers a new refresh token

            def authenticate_refresh_token(self, refresh_token: str) -> RefreshToken | None:
                claims = protocol.read(refresh_token, "Refresh")
                if claims is None or not protocol.sessions.live(claims.get("sid"), claims.get("auth_time")):
                    return None
                return RefreshToken(claims)

            def authenticate_user(self, refresh_token: RefreshToken) -> SignedIn | None:
                claims = refresh_token.claims
                user = protocol.users.get(claims.get("preferred_username"))
                return SignedIn(user, claims["sid"], claims.get("auth_time", 0)) if user else None

            def revoke_old_credential(self, refresh_token: RefreshToken) -> None:
                pass  # stateless, as Keycloak's default: the old one lives until it expires

            def generate_token(self, user=None, scope=None, grant_type=None, expires_in=None,
                               include_refresh_token=True):
                return protocol.tokens(user, self.request.client, scope, refresh=True)

        class IdTokenClaims:
            """What Authlib's id-token extensions need from us."""

            def resolve_client_private_key(self, client: Client) -> Any:
                return protocol.private_jwk()

            def get_encode_header(self, client: Client) -> dict[str, str]:
                return {"alg": "RS256", "typ": "JWT", "kid": protocol.key.kid}

            def get_client_claims(self, client: Client) -> dict[str, Any]:
                now = int(time.time())
                return {"iss": protocol.issuer, "aud": client.get_client_id(), "azp": client.get_client_id(),
                        "iat": now, "exp": now + protocol.access_lifetime, "jti": str(uuid.uuid4()),
                        "typ": "ID"}

            def get_compatible_claims(self, request) -> dict[str, Any]:
                claims = self.get_client_claims(request.client)
                who: SignedIn = request.user
                claims.update(sid=who.sid, auth_time=who.auth_time, session_state=who.sid)
                return claims

            def generate_user_info(self, who: SignedIn, scope: str) -> dict[str, Any]:
                return protocol.profile(who.user, scope)

        class OpenIDCodeFlow(IdTokenClaims, OpenIDCode):
            def exists_nonce(self, nonce: str, request) -> bool:
                return False  # the nonce protects the client, which checks it in the id token

        class OpenIDRefresh(IdTokenClaims, OpenIDToken):
            pass

        class EndSession(EndSessionEndpoint):
            def get_server_jwks(self) -> dict[str, Any]:
                return {"keys": [protocol.key.public_jwk()]}

            def get_algorithms(self) -> list[str]:
                return ["RS256"]

            def validate_request(self, request):
                validated = super().validate_request(request)
                if validated.id_token_claims and validated.id_token_claims.get("iss") != protocol.issuer:
                    raise InvalidRequestError("Invalid parameter: id_token_hint")
                return validated

            def is_post_logout_redirect_uri_legitimate(self, request, uri, client, logout_hint) -> bool:
                # Without id_token_hint the user confirms on our page first, which posts back.
                return request.method == "POST"

            def end_session(self, end_session_request) -> None:
                from flask import request

                from shared.auth.sessions import SESSION_COOKIE

                hinted = (end_session_request.id_token_claims or {}).get("sid")
                current = protocol.sessions.read(request.cookies.get(SESSION_COOKIE))
                for sid in {hinted, current and current["sid"]} - {None}:
                    protocol.sessions.end(sid)

        server.register_grant(CodeGrant, [S256Challenge(required=True), OpenIDCodeFlow(require_nonce=False)])
        server.register_grant(RefreshGrant, [OpenIDRefresh()])
        server.register_endpoint(EndSession)
        return server

    # --- codes ---------------------------------------------------------------------------

    def _save_code(self, code: str, request) -> None:
        data = request.payload.data
        entry = AuthorizationCode(
            code=code, client_id=request.client.get_client_id(), redirect_uri=request.payload.redirect_uri,
            scope=request.scope or "", who=request.user, nonce=data.get("nonce"),
            code_challenge=data.get("code_challenge"), code_challenge_method=data.get("code_challenge_method"),
            expires_at=time.time() + CODE_LIFETIME_S)
        with self._codes_lock:
            now = time.time()
            for stale in [c for c, e in self._codes.items() if e.expires_at < now]:
                del self._codes[stale]
            self._codes[code] = entry

    def _take_code(self, code: str, client: Client) -> AuthorizationCode | None:
        """The code's grant, removed so that no second request can use it; None if unknown, expired,
        used already or issued to another client."""
        with self._codes_lock:
            entry = self._codes.pop(code, None)
        if entry is None or entry.expires_at < time.time() or entry.client_id != client.get_client_id():
            return None
        return entry

    def _still_signed_in(self, who: SignedIn) -> SignedIn | None:
        live = who.user.username in self.users and self.sessions.live(who.sid, who.auth_time)
        return who if live else None

    # --- tokens --------------------------------------------------------------------------

    def private_jwk(self) -> Any:
        from joserfc.jwk import RSAKey

        if not hasattr(self, "_private_jwk"):
            self._private_jwk = RSAKey.import_key(self.key.private_pem(), {"kid": self.key.kid})
        return self._private_jwk

    def roles(self, user: DevUser) -> list[str]:
        admin = (self.settings.admin_role, AS_ADMIN_ROLE) if user.admin else ()
        return list(dict.fromkeys([*DEFAULT_ROLES, *USER_ROLES, *admin, *user.roles]))

    def profile(self, user: DevUser, scope: str) -> dict[str, Any]:
        """The user's claims for the scope (the id token's and userinfo's)."""
        scopes = set(scope.split())
        claims: dict[str, Any] = {"sub": subject(user.username), "preferred_username": user.username}
        if "email" in scopes:
            claims.update(email=user.email_address, email_verified=True)
        if "profile" in scopes:
            claims.update(name=user.full_name, given_name=user.given_name, family_name=user.family_name)
        return claims

    def tokens(self, who: SignedIn, client: Client, scope: str, *, refresh: bool | None = None) -> dict[str, Any]:
        """A Keycloak-shaped token response: an access token for the DM API (whichever client asked),
        and a refresh token when the scope has offline_access (or refresh says so)."""
        now = int(time.time())
        client_id = client.get_client_id()
        user = who.user
        common = {
            "iat": now, "iss": self.issuer, "sub": subject(user.username), "azp": client_id, "sid": who.sid,
            "session_state": who.sid, "scope": scope, "preferred_username": user.username,
        }
        # The web UI forwards its token to the DM API and the Account Server (web-ui.md §6).
        audience = list(dict.fromkeys([self.settings.oidc_audience, "account"]))
        access = {
            **common, **self.profile(user, scope), "exp": now + self.access_lifetime, "jti": str(uuid.uuid4()),
            "aud": audience, "typ": "Bearer", "auth_time": who.auth_time,
            "realm_access": {"roles": self.roles(user)},
        }
        answer = {
            "access_token": self.key.sign(access),
            "expires_in": self.access_lifetime,
            "token_type": "Bearer",
            "not-before-policy": 0,
            "session_state": who.sid,
            "scope": scope,
        }
        if refresh if refresh is not None else "offline_access" in scope.split():
            expires = min(now + self.refresh_lifetime, who.auth_time + self.sessions.lifetime) \
                if who.auth_time else now + self.refresh_lifetime
            answer["refresh_token"] = self.key.sign({
                **common, "exp": expires, "jti": str(uuid.uuid4()), "aud": self.issuer, "typ": "Refresh",
                "auth_time": who.auth_time})
            answer["refresh_expires_in"] = max(0, expires - now)
        return answer

    def read(self, token: str, typ: str) -> dict[str, Any] | None:
        """The claims of a live token of this type that we issued, else None."""
        try:
            claims = self.key.verify(token)
        except ValueError:
            return None
        exp = claims.get("exp")
        live = isinstance(exp, (int, float)) and exp > time.time()
        return claims if live and claims.get("iss") == self.issuer and claims.get("typ") == typ else None

