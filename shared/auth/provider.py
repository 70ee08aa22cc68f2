"""A development OpenID provider on Keycloak's paths, so the Squonk2 clients can sign in.

The local stack mounts the app under ``/auth``; every URL it hands out is built from
`Settings.issuer` (``<base_url>/auth/realms/squonk2``).
"""

from __future__ import annotations

import hmac
import time
import uuid
from typing import Any, Iterable

from flask import Flask, Response, jsonify, request

from shared.auth.keys import SigningKey
from shared.auth.local_keys import publish
from shared.auth.users import DevUser
from shared.config import Settings

REALM = "squonk2"
ACCESS_LIFETIME_S = 3600
REFRESH_LIFETIME_S = 8 * 3600
SCOPE = "profile email"
DEFAULT_ROLES = ("offline_access", f"default-roles-{REALM}")
_SUB_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, f"urn:dm-knative:{REALM}:users")


def subject(username: str) -> str:
    """The stable `sub` claim of a user."""
    return str(uuid.uuid5(_SUB_NAMESPACE, username))


class _RealmNotFound(Exception):
    """A path under a realm other than ours."""


def _error(status: int, error: str, description: str | None = None) -> Response:
    body = {"error": error}
    if description:
        body["error_description"] = description
    response = jsonify(body)
    response.status_code = status
    return response


def create_provider_app(
    settings: Settings,
    users: Iterable[DevUser],
    key: SigningKey,
    *,
    access_lifetime: int = ACCESS_LIFETIME_S,
    refresh_lifetime: int = REFRESH_LIFETIME_S,
) -> Flask:
    """The provider's WSGI app for the realm `squonk2`, to be mounted under /auth."""
    issuer = settings.issuer
    client_id = settings.oidc_audience
    oidc = f"{issuer}/protocol/openid-connect"
    by_name = {user.username: user for user in users}
    app = Flask(__name__)

    def jwks() -> dict[str, Any]:
        return {"keys": [key.public_jwk()]}

    # A verifier in this process reads the keys directly (local_keys explains why).
    publish(issuer, jwks)

    @app.url_value_preprocessor
    def only_our_realm(endpoint: str | None, values: dict[str, Any] | None) -> None:
        if values and values.pop("realm", REALM) != REALM:
            # Keycloak's answer for any path under an unknown realm.
            raise _RealmNotFound()

    @app.errorhandler(_RealmNotFound)
    def realm_not_found(_: Exception) -> Response:
        return _error(404, "Realm does not exist")

    @app.get("/realms/<realm>")
    def realm_document() -> Response:
        return jsonify(
            {
                "realm": REALM,
                "public_key": key.public_key_b64(),
                "token-service": oidc,
                "account-service": f"{issuer}/account",
                "tokens-not-before": 0,
            }
        )

    @app.get("/realms/<realm>/.well-known/openid-configuration")
    def discovery() -> Response:
        return jsonify(
            {
                "issuer": issuer,
                "authorization_endpoint": f"{oidc}/auth",
                "token_endpoint": f"{oidc}/token",
                "userinfo_endpoint": f"{oidc}/userinfo",
                "jwks_uri": f"{oidc}/certs",
                "grant_types_supported": ["password", "refresh_token"],
                # No interactive login: the authorization endpoint only explains that.
                "response_types_supported": ["none"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["none"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "claims_supported": ["iss", "sub", "aud", "exp", "iat", "preferred_username"],
            }
        )

    @app.get("/realms/<realm>/protocol/openid-connect/certs")
    def certs() -> Response:
        return jsonify(jwks())

    @app.route("/realms/<realm>/protocol/openid-connect/auth", methods=["GET", "POST"])
    def authorize() -> Response:
        return _error(400, "unsupported_response_type", "Only the password and refresh_token grants are supported")

    @app.route("/realms/<realm>/protocol/openid-connect/userinfo", methods=["GET", "POST"])
    def userinfo() -> Response:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        claims = _read(token, "Bearer") if scheme.lower() == "bearer" else None
        if claims is None or claims.get("preferred_username") not in by_name:
            response = _error(401, "invalid_token", "Token verification failed")
            response.headers["WWW-Authenticate"] = 'Bearer realm="squonk2", error="invalid_token"'
            return response
        return jsonify({"sub": claims["sub"], "preferred_username": claims["preferred_username"]})

    @app.route("/realms/<realm>/<path:rest>", methods=["GET", "POST"])
    def elsewhere(rest: str) -> Response:
        return _error(404, "Unable to find matching target resource method")

    @app.post("/realms/<realm>/protocol/openid-connect/token")
    def token() -> Response:
        form = request.form
        if form.get("client_id") != client_id:
            return _error(401, "invalid_client", "Invalid client or Invalid client credentials")
        grant = form.get("grant_type")
        if not grant:
            return _error(400, "invalid_request", "Missing form parameter: grant_type")
        if grant == "password":
            username = form.get("username")
            if not username:
                return _error(400, "invalid_request", "Missing parameter: username")
            user = by_name.get(username)
            password = form.get("password", "").encode()
            # Compare even for an unknown user so timing does not reveal who exists.
            expected = (user.password if user else "\0").encode()
            if not hmac.compare_digest(password, expected) or user is None:
                return _error(401, "invalid_grant", "Invalid user credentials")
        elif grant == "refresh_token":
            if not form.get("refresh_token"):
                return _error(400, "invalid_request", "Missing parameter: refresh_token")
            claims = _read(form["refresh_token"], "Refresh")
            if claims is None or claims.get("azp") != client_id:
                return _error(400, "invalid_grant", "Invalid refresh token")
            user = by_name.get(claims.get("preferred_username"))
            if user is None:
                return _error(400, "invalid_grant", "User not found")
        else:
            return _error(400, "unsupported_grant_type", "Unsupported grant_type")
        response = jsonify(_tokens(user))
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
        return response

    def _read(token: str, typ: str) -> dict[str, Any] | None:
        """The claims of a live token of this type that we issued, else None."""
        try:
            claims = key.verify(token)
        except ValueError:
            return None
        exp = claims.get("exp")
        live = isinstance(exp, (int, float)) and exp > time.time()
        return claims if live and claims.get("iss") == issuer and claims.get("typ") == typ else None

    def _tokens(user: DevUser) -> dict[str, Any]:
        now = int(time.time())
        common = {
            "iat": now,
            "iss": issuer,
            "sub": subject(user.username),
            "azp": client_id,
            "scope": SCOPE,
            "preferred_username": user.username,
        }
        roles = [*DEFAULT_ROLES, *([settings.admin_role] if user.admin else [])]
        access = {
            **common,
            "exp": now + access_lifetime,
            "jti": str(uuid.uuid4()),
            "aud": [client_id, "account"],
            "typ": "Bearer",
            "realm_access": {"roles": roles},
        }
        refresh = {
            **common,
            "exp": now + refresh_lifetime,
            "jti": str(uuid.uuid4()),
            "aud": issuer,
            "typ": "Refresh",
        }
        return {
            "access_token": key.sign(access),
            "expires_in": access_lifetime,
            "refresh_expires_in": refresh_lifetime,
            "refresh_token": key.sign(refresh),
            "token_type": "Bearer",
            "not-before-policy": 0,
            "scope": SCOPE,
        }

    return app
