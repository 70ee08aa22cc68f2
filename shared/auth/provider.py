"""A development OpenID provider on Keycloak's paths, so the Squonk2 clients and web UI can sign in.

The local stack mounts the app under ``/auth``; every URL it hands out is built from
`Settings.issuer` (``<base_url>/auth/realms/squonk2``). It offers the password grant (the Python
client's sign-in) and, through Authlib (`shared.auth.oauth`), the authorization code flow with
PKCE behind a sign-in page, single sign-on sessions, refresh and RP-initiated logout.
"""

from __future__ import annotations

import hmac
import time
from typing import Any, Iterable
from urllib.parse import urlsplit

from flask import Flask, Response, jsonify, render_template, request

from shared.auth.keys import SigningKey
from shared.auth.local_keys import publish
from shared.auth.oauth import REALM, SCOPES, Protocol, SignedIn, subject
from shared.auth.sessions import LOGIN_COOKIE, SESSION_COOKIE, Sessions
from shared.auth.users import DevClient, DevUser, load_clients
from shared.config import Settings

__all__ = ["REALM", "create_provider_app", "subject"]

ACCESS_LIFETIME_S = 3600
REFRESH_LIFETIME_S = 8 * 3600
SCOPE = "profile email"  # what the password grant gives
BAD_CREDENTIALS = "Invalid username or password."
STALE_FORM = "The sign-in form expired or was sent from another site. Please sign in again."
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
    clients: Iterable[DevClient] | None = None,
    access_lifetime: int = ACCESS_LIFETIME_S,
    refresh_lifetime: int = REFRESH_LIFETIME_S,
) -> Flask:
    """The provider's WSGI app for the realm `squonk2`, to be mounted under /auth; clients default
    to those of `load_clients`."""
    issuer = settings.issuer
    oidc = f"{issuer}/protocol/openid-connect"
    sessions = Sessions(key, settings.data_dir / "auth" / "ended-sessions.json", refresh_lifetime)
    protocol = Protocol(settings, users, load_clients(settings) if clients is None else clients, key, sessions,
                        access_lifetime=access_lifetime, refresh_lifetime=refresh_lifetime)
    by_name = protocol.users
    server = protocol.server
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
                "end_session_endpoint": f"{oidc}/logout",
                "jwks_uri": f"{oidc}/certs",
                "grant_types_supported": ["authorization_code", "refresh_token", "password"],
                "response_types_supported": ["code"],
                "response_modes_supported": ["query"],
                "code_challenge_methods_supported": ["S256"],
                "prompt_values_supported": ["none", "login"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
                "scopes_supported": list(SCOPES),
                "claims_supported": ["iss", "sub", "aud", "azp", "exp", "iat", "auth_time", "nonce", "sid",
                                     "at_hash", "preferred_username", "email", "email_verified", "name",
                                     "given_name", "family_name"],
                "claims_parameter_supported": False,
                "request_parameter_supported": False,
                "request_uri_parameter_supported": False,
                "frontchannel_logout_supported": False,
                "backchannel_logout_supported": False,
            }
        )

    @app.get("/realms/<realm>/protocol/openid-connect/certs")
    def certs() -> Response:
        return jsonify(jwks())

    # --- sign-in -------------------------------------------------------------------------

    def cookie_path() -> str:
        return f"{request.script_root}/realms/{REALM}/"

    def secure() -> bool:
        return urlsplit(issuer).scheme == "https"

    def current_session() -> SignedIn | None:
        session = sessions.read(request.cookies.get(SESSION_COOKIE))
        user = by_name.get(session["user"]) if session else None
        return SignedIn(user, session["sid"], session["auth_time"]) if user else None

    def html(template: str, status: int = 200, **context: Any) -> Response:
        response = Response(render_template(template, **context), status=status,
                            content_type="text/html; charset=utf-8")
        response.headers["Cache-Control"] = "no-store"
        # The sign-in page must not be framed by another site (clickjacking).
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = "frame-ancestors 'none'; form-action 'self' http: https:"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    def form_page(template: str, error: str | None = None, **context: Any) -> Response:
        """A page with a form posted back here, tied to this browser by the login cookie."""
        attempt = sessions.new_login_attempt()
        response = html(template, error=error, action=request.script_root + request.full_path.rstrip("?"),
                        csrf_token=sessions.form_token(attempt), **context)
        # Strict: a form posted from another site arrives without it and is refused.
        response.set_cookie(LOGIN_COOKIE, attempt, path=cookie_path(), httponly=True, samesite="Strict",
                            secure=secure())
        return response

    def same_site_post() -> bool:
        """True for a form posted by our own page in this browser (not a cross-site form post)."""
        if request.headers.get("Sec-Fetch-Site") == "cross-site":
            return False
        origin = request.headers.get("Origin")
        if origin and origin != "null" and origin != _origin(issuer):
            return False
        return sessions.form_token_ok(request.cookies.get(LOGIN_COOKIE), request.form.get("csrf_token"))

    def check_credentials(login: str, password: str) -> DevUser | None:
        user = by_name.get(login) or next((u for u in by_name.values() if u.email_address == login), None)
        # Compare even for an unknown user so timing does not reveal who exists.
        expected = (user.password if user else "\0").encode()
        return user if hmac.compare_digest(password.encode(), expected) and user is not None else None

    def oauth_error(error: Any) -> Response:
        """An error the client should hear of by redirect; else shown here (a bad client or
        redirect_uri must never be redirected to)."""
        if getattr(error, "redirect_uri", None):
            return server.handle_error_response(None, error)
        return _error(error.status_code or 400, error.error, error.description)

    @app.route("/realms/<realm>/protocol/openid-connect/auth", methods=["GET", "POST"])
    def authorize() -> Response:
        from authlib.oauth2 import OAuth2Error

        signed_in = current_session()
        prompts = set(request.args.get("prompt", "").split())
        try:
            grant = server.get_consent_grant(end_user=None if "login" in prompts else signed_in)
        except OAuth2Error as error:
            return oauth_error(error)
        login_hint = request.args.get("login_hint", "")
        if request.method == "GET":
            if signed_in and "login" not in prompts:
                return server.create_authorization_response(grant_user=signed_in, grant=grant)  # single sign-on
            return form_page("login.html", username=login_hint)
        username = request.form.get("username", "")
        if not same_site_post():
            return form_page("login.html", error=STALE_FORM, username=login_hint)
        user = check_credentials(username, request.form.get("password", ""))
        if user is None:
            return form_page("login.html", error=BAD_CREDENTIALS, username=username)
        if signed_in:
            sessions.end(signed_in.sid)  # a new sign-in replaces this browser's session
        session, cookie = sessions.start(user.username)
        response = server.create_authorization_response(
            grant_user=SignedIn(user, session["sid"], session["auth_time"]), grant=grant)
        # Lax: the session must reach us on the top-level redirect from a client on another site.
        response.set_cookie(SESSION_COOKIE, cookie, path=cookie_path(), httponly=True, samesite="Lax",
                            secure=secure())
        response.delete_cookie(LOGIN_COOKIE, path=cookie_path(), httponly=True, samesite="Strict", secure=secure())
        return response

    @app.route("/realms/<realm>/protocol/openid-connect/logout", methods=["GET", "POST"])
    def logout() -> Response:
        from authlib.oauth2 import OAuth2Error

        try:
            ending = server.validate_endpoint_request("end_session")
        except OAuth2Error as error:
            return _error(400, error.error, error.description)
        asked = request.values.get("post_logout_redirect_uri")
        if asked and ending.redirect_uri is None and not ending.needs_confirmation:
            return _error(400, "invalid_request", "Invalid redirect uri")
        if ending.needs_confirmation:
            # Without id_token_hint anyone could link here: the user confirms with a form of ours.
            if request.method == "GET" or not same_site_post():
                return form_page("logout.html")
            if asked and ending.redirect_uri is None:
                return _error(400, "invalid_request", "Invalid redirect uri")
        response = server.create_endpoint_response("end_session", ending) or html("logged_out.html")
        response.delete_cookie(SESSION_COOKIE, path=cookie_path(), httponly=True, samesite="Lax", secure=secure())
        return response

    @app.route("/realms/<realm>/protocol/openid-connect/userinfo", methods=["GET", "POST"])
    def userinfo() -> Response:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        claims = protocol.read(token, "Bearer") if scheme.lower() == "bearer" else None
        user = by_name.get(claims.get("preferred_username")) if claims else None
        if user is None or ("sid" in claims and not sessions.live(claims["sid"], claims.get("auth_time"))):
            response = _error(401, "invalid_token", "Token verification failed")
            response.headers["WWW-Authenticate"] = 'Bearer realm="squonk2", error="invalid_token"'
            return response
        return jsonify(protocol.profile(user, claims.get("scope") or "profile email"))

    @app.route("/realms/<realm>/<path:rest>", methods=["GET", "POST"])
    def elsewhere(rest: str) -> Response:
        return _error(404, "Unable to find matching target resource method")

    @app.post("/realms/<realm>/protocol/openid-connect/token")
    def token() -> Response:
        form = request.form
        grant = form.get("grant_type")
        if grant in ("authorization_code", "refresh_token"):
            return server.create_token_response()
        if not grant:
            return _error(400, "invalid_request", "Missing form parameter: grant_type")
        client = protocol.clients.get(form.get("client_id", ""))
        # The password grant is the API client's (Keycloak's "direct access grants").
        if client is None or client.get_client_id() != settings.oidc_audience or (
                not client.dev.public and not client.check_client_secret(form.get("client_secret", ""))):
            return _error(401, "invalid_client", "Invalid client or Invalid client credentials")
        if grant != "password":
            return _error(400, "unsupported_grant_type", "Unsupported grant_type")
        username = form.get("username")
        if not username:
            return _error(400, "invalid_request", "Missing parameter: username")
        user = check_credentials(username, form.get("password", ""))
        if user is None or user.username != username:
            return _error(401, "invalid_grant", "Invalid user credentials")
        session, _ = sessions.start(user.username)
        response = jsonify(protocol.tokens(SignedIn(user, session["sid"], session["auth_time"]), client, SCOPE,
                                           refresh=True))
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
        return response

    return app


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
