"""The development provider's authorization code flow, driven as a relying party would drive it.

The relying party is Authlib's requests client (the one a Python web app would use); the browser is
a `requests.Session` that keeps cookies and fills in the sign-in form. Tokens are checked with
python-jose against the published JWKS and with the API's own verifier.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
import time
from html import unescape
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from jose import jwt as jose_jwt
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import make_server
from werkzeug.wrappers import Response

from shared.auth.keys import load_or_create_signing_key
from shared.auth.provider import create_provider_app
from shared.auth.users import UI_CLIENT_ID, UI_CLIENT_SECRET, load_users
from shared.auth.verify import TokenVerifier
from shared.config import Settings

UI_CALLBACK = "http://localhost:3000/data-manager-ui/api/auth/callback"
RP_CALLBACK = "http://rp.example/callback"
RP_HOME = "http://rp.example/"
PUBLIC_CALLBACK = "http://127.0.0.1:9/callback"
SCOPE = "openid profile email offline_access"
USERS_FILE = f"""
users:
  - {{username: alice, password: alice, email: alice@squonk.example, first_name: Alice, last_name: Liddell,
     roles: [data-manager-evaluator]}}
  - {{username: bob, password: bob}}
  - {{username: admin, password: admin, admin: true}}
clients:
  - client_id: rp-post
    secret: rp-post-secret
    redirect_uris: ["{RP_CALLBACK}"]
    post_logout_redirect_uris: ["{RP_HOME}"]
  - client_id: rp-public
    redirect_uris: ["{PUBLIC_CALLBACK}"]
"""
# client id -> (secret, token endpoint authentication, redirect URI)
CLIENTS = {
    UI_CLIENT_ID: (UI_CLIENT_SECRET, "client_secret_basic", UI_CALLBACK),
    "rp-post": ("rp-post-secret", "client_secret_post", RP_CALLBACK),
    "rp-public": (None, "none", PUBLIC_CALLBACK),
}


class Provider:
    """The provider under /auth on a real HTTP server, with a users file declaring two more clients."""

    def __init__(self, data_dir):
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self.base_url = f"http://127.0.0.1:{self._server.server_port}"
        users_file = data_dir / "users.yaml"
        users_file.write_text(USERS_FILE)
        self.settings = Settings(public_url=self.base_url, data_dir=data_dir, users_file=str(users_file))
        self.issuer = self.settings.issuer
        self.oidc = f"{self.issuer}/protocol/openid-connect"
        key = load_or_create_signing_key(data_dir / "auth" / "signing-key.pem")
        app = create_provider_app(self.settings, load_users(self.settings), key)
        self._app = DispatcherMiddleware(Response("not here", status=404), {"/auth": app})
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def _wsgi(self, environ, start_response):
        return self._app(environ, start_response)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    server = Provider(tmp_path_factory.mktemp("oidc"))
    yield server
    server.close()


def relying_party(provider: Provider, client_id: str = UI_CLIENT_ID, **more) -> OAuth2Session:
    secret, method, redirect_uri = CLIENTS[client_id]
    more.setdefault("scope", SCOPE)
    return OAuth2Session(client_id, secret, token_endpoint_auth_method=method, redirect_uri=redirect_uri,
                         code_challenge_method="S256", **more)


class Browser:
    """A browser's cookie jar and its sign-in form handling."""

    def __init__(self):
        self.http = requests.Session()

    def get(self, url: str) -> requests.Response:
        return self.http.get(url, allow_redirects=False, timeout=5)

    def sign_in(self, page: requests.Response, username: str = "alice", password: str | None = None,
                **headers: str) -> requests.Response:
        form = login_form(page)
        return self.http.post(form["action"], allow_redirects=False, timeout=5, headers=headers, data={
            "username": username, "password": username if password is None else password,
            "csrf_token": form["csrf_token"]})

    def session_cookie(self) -> str | None:
        return self.http.cookies.get("KEYCLOAK_IDENTITY")


def login_form(page: requests.Response) -> dict[str, str]:
    """The sign-in form's action (absolute), hidden token and pre-filled username."""
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html"), page.text
    html = page.text
    action = unescape(re.search(r'<form id="kc-form-login" action="([^"]+)"', html).group(1))
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(page.url))
    return {"action": origin + action,
            "csrf_token": re.search(r'name="csrf_token" value="([^"]+)"', html).group(1),
            "username": unescape(re.search(r'id="username" name="username" type="text" value="([^"]*)"',
                                           html).group(1))}


def start(provider: Provider, rp: OAuth2Session, **params: str) -> tuple[str, str, str, str]:
    """An authorization URL as the relying party makes it: (url, state, nonce, code_verifier)."""
    verifier, nonce = generate_token(48), generate_token(20)
    url, state = rp.create_authorization_url(f"{provider.oidc}/auth", code_verifier=verifier, nonce=nonce,
                                             **params)
    return url, state, nonce, verifier


def answer(response: requests.Response, redirect_uri: str) -> dict[str, str]:
    """The query of a redirect back to redirect_uri."""
    assert response.status_code == 302, (response.status_code, response.text)
    location = response.headers["Location"]
    assert location.split("?")[0] == redirect_uri, location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def sign_in_and_get_code(provider, rp, browser, username="alice"):
    url, state, nonce, verifier = start(provider, rp)
    got = answer(browser.sign_in(browser.get(url), username), rp.redirect_uri)
    assert got["state"] == state
    return got["code"], nonce, verifier


def exchange(provider, rp, code, verifier, **more):
    return rp.fetch_token(f"{provider.oidc}/token", code=code, code_verifier=verifier, **more)


def raw_exchange(provider, client_id, code, verifier=None, redirect_uri=None, secret=None) -> requests.Response:
    """A token request made by hand, for the requests a client library would not make."""
    own_secret, method, own_redirect = CLIENTS[client_id]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri or own_redirect,
            "client_id": client_id}
    if verifier is not None:
        form["code_verifier"] = verifier
    if own_secret is not None:
        form["client_secret"] = own_secret if secret is None else secret
    return requests.post(f"{provider.oidc}/token", data=form, timeout=5)


def jwks(provider) -> dict:
    return requests.get(f"{provider.oidc}/certs", timeout=5).json()


def id_token_claims(provider, token: dict, client_id: str) -> dict:
    return jose_jwt.decode(token["id_token"], jwks(provider), algorithms=["RS256"], audience=client_id,
                           issuer=provider.issuer, access_token=token["access_token"])


# --- discovery -------------------------------------------------------------------------


def test_discovery_states_exactly_what_is_supported(provider):
    doc = requests.get(f"{provider.issuer}/.well-known/openid-configuration", timeout=5).json()
    assert doc["issuer"] == provider.issuer
    assert doc["authorization_endpoint"] == f"{provider.oidc}/auth"
    assert doc["end_session_endpoint"] == f"{provider.oidc}/logout"
    assert doc["response_types_supported"] == ["code"]
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert set(doc["grant_types_supported"]) == {"authorization_code", "refresh_token", "password"}
    assert set(doc["token_endpoint_auth_methods_supported"]) == {"client_secret_basic", "client_secret_post",
                                                                 "none"}
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert "offline_access" in doc["scopes_supported"]


# --- the flow with each client authentication --------------------------------------------


@pytest.mark.parametrize("client_id", list(CLIENTS))
def test_code_flow_with_pkce(provider, client_id):
    rp = relying_party(provider, client_id)
    browser = Browser()
    url, state, nonce, verifier = start(provider, rp, state="a b/ü&=?")
    assert "code_challenge_method=S256" in url
    page = browser.get(url)
    assert 'id="kc-login"' in page.text and 'name="password"' in page.text
    got = answer(browser.sign_in(page), rp.redirect_uri)
    assert got["state"] == "a b/ü&=?"  # unchanged
    cookie = browser.session_cookie()
    assert cookie and "appSession" not in browser.http.cookies and "auth_verification" not in browser.http.cookies
    before = int(time.time())
    token = exchange(provider, rp, got["code"], verifier)
    assert token["token_type"].lower() == "bearer" and token["expires_in"] > 120
    assert token["refresh_token"] and token["refresh_expires_in"] > 120
    claims = id_token_claims(provider, token, client_id)
    assert claims["nonce"] == nonce and claims["azp"] == client_id and claims["aud"] == client_id
    assert claims["at_hash"] and claims["sid"] and claims["auth_time"] <= before + 1
    assert before - 5 <= claims["iat"] <= claims["exp"] - 60
    assert {k: claims[k] for k in ("preferred_username", "email", "email_verified", "name", "given_name",
                                   "family_name")} == {
        "preferred_username": "alice", "email": "alice@squonk.example", "email_verified": True,
        "name": "Alice Liddell", "given_name": "Alice", "family_name": "Liddell"}
    access = jose_jwt.get_unverified_claims(token["access_token"])
    assert "data-manager-api" in access["aud"] and access["azp"] == client_id
    assert {"data-manager-user", "account-server-user", "data-manager-evaluator"} <= set(
        access["realm_access"]["roles"])
    assert "data-manager-admin" not in access["realm_access"]["roles"]
    profile = requests.get(f"{provider.oidc}/userinfo", timeout=5,
                           headers={"Authorization": f"Bearer {token['access_token']}"}).json()
    assert profile["sub"] == claims["sub"] and profile["given_name"] == "Alice"


def test_the_api_accepts_tokens_from_the_code_flow_as_from_the_password_grant(provider):
    verifier = TokenVerifier(provider.settings)
    for user in ("alice", "admin"):
        rp = relying_party(provider)
        code, _, code_verifier = sign_in_and_get_code(provider, rp, Browser(), user)
        from_code = verifier.verify(f"Bearer {exchange(provider, rp, code, code_verifier)['access_token']}")
        password = requests.post(f"{provider.oidc}/token", timeout=5, data={
            "grant_type": "password", "client_id": "data-manager-api", "username": user, "password": user})
        from_password = verifier.verify(f"Bearer {password.json()['access_token']}")
        assert (from_code.username, from_code.roles, from_code.is_admin) == (
            from_password.username, from_password.roles, from_password.is_admin)
        assert from_code.is_admin is (user == "admin")
        if user == "admin":
            assert {"data-manager-admin", "account-server-admin"} <= from_code.roles


def test_without_offline_access_there_is_no_refresh_token(provider):
    rp = relying_party(provider, scope="openid profile")
    code, _, verifier = sign_in_and_get_code(provider, rp, Browser())
    token = exchange(provider, rp, code, verifier)
    assert "refresh_token" not in token and token["id_token"]
    assert "email" not in id_token_claims(provider, token, UI_CLIENT_ID)


# --- single sign-on, prompt, login_hint -----------------------------------------------------


def test_single_sign_on_answers_a_second_request_with_a_code(provider):
    browser = Browser()
    first = relying_party(provider)
    sign_in_and_get_code(provider, first, browser)
    other = relying_party(provider, "rp-post")
    url, state, nonce, verifier = start(provider, other)
    got = answer(browser.get(url), RP_CALLBACK)  # no sign-in form
    assert got["state"] == state
    token = exchange(provider, other, got["code"], verifier)
    assert id_token_claims(provider, token, "rp-post")["nonce"] == nonce


def test_prompt_login_shows_the_form_and_login_hint_fills_it(provider):
    browser = Browser()
    rp = relying_party(provider)
    sign_in_and_get_code(provider, rp, browser)
    url, state, _, verifier = start(provider, rp, prompt="login", login_hint="bob")
    page = browser.get(url)
    assert login_form(page)["username"] == "bob"
    got = answer(browser.sign_in(page, "bob"), UI_CALLBACK)
    token = exchange(provider, rp, got["code"], verifier)
    assert id_token_claims(provider, token, UI_CLIENT_ID)["preferred_username"] == "bob"


def test_prompt_none_without_a_session_redirects_login_required(provider):
    url, state, _, _ = start(provider, relying_party(provider), prompt="none")
    got = answer(Browser().get(url), UI_CALLBACK)
    assert got["error"] == "login_required" and got["state"] == state


def test_bad_credentials_do_not_say_whether_the_user_exists(provider):
    url, *_ = start(provider, relying_party(provider))
    browser = Browser()
    wrong_password = browser.sign_in(browser.get(url), "alice", "nope")
    no_such_user = browser.sign_in(browser.get(url), "mallory", "mallory")
    for page in (wrong_password, no_such_user):
        assert page.status_code == 200 and "Invalid username or password." in page.text
        assert "Location" not in page.headers and browser.session_cookie() is None
    assert re.sub(r'value="[^"]*"', "", wrong_password.text).replace("alice", "") == \
        re.sub(r'value="[^"]*"', "", no_such_user.text).replace("mallory", "")


# --- refresh and logout ------------------------------------------------------------------


def test_refresh_by_the_client_it_was_issued_to_only(provider):
    rp = relying_party(provider)
    code, _, verifier = sign_in_and_get_code(provider, rp, Browser())
    token = exchange(provider, rp, code, verifier)
    refreshed = rp.refresh_token(f"{provider.oidc}/token", refresh_token=token["refresh_token"])
    assert refreshed["access_token"] != token["access_token"] and refreshed["refresh_token"]
    assert jose_jwt.get_unverified_claims(refreshed["id_token"])["sid"] == \
        jose_jwt.get_unverified_claims(token["id_token"])["sid"]
    other = requests.post(f"{provider.oidc}/token", timeout=5, data={
        "grant_type": "refresh_token", "refresh_token": token["refresh_token"],
        "client_id": "rp-post", "client_secret": "rp-post-secret"})
    assert other.status_code == 400 and other.json()["error"] == "invalid_grant"
    public = requests.post(f"{provider.oidc}/token", timeout=5, data={
        "grant_type": "refresh_token", "refresh_token": token["refresh_token"], "client_id": "data-manager-api"})
    assert public.status_code == 400 and public.json()["error"] == "invalid_grant"


def test_logout_ends_the_session_its_cookie_and_refresh_tokens(provider):
    browser = Browser()
    rp = relying_party(provider)
    code, _, verifier = sign_in_and_get_code(provider, rp, browser)
    token = exchange(provider, rp, code, verifier)
    other = relying_party(provider, "rp-post")
    url, _, _, other_verifier = start(provider, other)
    other_token = exchange(provider, other, answer(browser.get(url), RP_CALLBACK)["code"], other_verifier)
    logout = browser.get(f"{provider.oidc}/logout?" + urlencode({
        "id_token_hint": token["id_token"], "client_id": UI_CLIENT_ID,
        "post_logout_redirect_uri": "http://localhost:3000/data-manager-ui", "state": "bye"}))
    assert answer(logout, "http://localhost:3000/data-manager-ui") == {"state": "bye"}
    for rp_, refresh in ((rp, token["refresh_token"]), (other, other_token["refresh_token"])):
        # every refresh token of the session, whichever client it went to
        with pytest.raises(Exception, match="invalid_grant"):
            rp_.refresh_token(f"{provider.oidc}/token", refresh_token=refresh)
    assert requests.get(f"{provider.oidc}/userinfo", timeout=5, headers={
        "Authorization": f"Bearer {token['access_token']}"}).status_code == 401
    # The old cookie, even when sent again, no longer signs in.
    stale = Browser()
    stale.http.cookies.set("KEYCLOAK_IDENTITY", browser.session_cookie() or "",
                           domain="127.0.0.1", path="/auth/realms/squonk2/")
    url, *_ = start(provider, rp)
    for who in (browser, stale):
        assert 'id="kc-form-login"' in who.get(url).text


def test_logout_refuses_an_unregistered_post_logout_redirect_uri(provider):
    rp = relying_party(provider)
    code, _, verifier = sign_in_and_get_code(provider, rp, Browser())
    token = exchange(provider, rp, code, verifier)
    response = requests.get(f"{provider.oidc}/logout", allow_redirects=False, timeout=5, params={
        "id_token_hint": token["id_token"], "post_logout_redirect_uri": "http://evil.example/"})
    assert response.status_code == 400 and "Location" not in response.headers


def test_logout_without_a_hint_asks_first(provider):
    browser = Browser()
    rp = relying_party(provider)
    code, _, verifier = sign_in_and_get_code(provider, rp, browser)
    token = exchange(provider, rp, code, verifier)
    page = browser.get(f"{provider.oidc}/logout")
    assert page.status_code == 200 and 'id="kc-logout"' in page.text
    refreshed = rp.refresh_token(f"{provider.oidc}/token", refresh_token=token["refresh_token"])  # still live
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    done = browser.http.post(f"{provider.oidc}/logout", data={"csrf_token": csrf}, allow_redirects=False,
                             timeout=5)
    assert done.status_code == 200 and "signed out" in done.text
    with pytest.raises(Exception, match="invalid_grant"):
        rp.refresh_token(f"{provider.oidc}/token", refresh_token=refreshed["refresh_token"])


# --- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize("redirect_uri", [
    "http://evil.example/callback", UI_CALLBACK + "/", UI_CALLBACK + "?x=1", UI_CALLBACK.upper(),
    UI_CALLBACK.replace("localhost", "127.0.0.2"),
])
def test_unregistered_redirect_uri_is_never_redirected_to(provider, redirect_uri):
    rp = relying_party(provider)
    rp.redirect_uri = redirect_uri
    url, *_ = start(provider, rp)
    response = Browser().get(url)
    assert response.status_code == 400 and "Location" not in response.headers
    assert response.json()["error"] == "invalid_request"


def test_unknown_client_is_refused_at_both_endpoints(provider):
    rp = relying_party(provider)
    url, *_ = start(provider, rp)
    response = Browser().get(url.replace(f"client_id={UI_CLIENT_ID}", "client_id=nobody"))
    assert response.status_code == 400 and "Location" not in response.headers
    assert response.json()["error"] == "invalid_client"
    token = requests.post(f"{provider.oidc}/token", timeout=5, auth=("nobody", "x"), data={
        "grant_type": "authorization_code", "code": "x", "redirect_uri": UI_CALLBACK})
    assert token.status_code == 401 and token.json()["error"] == "invalid_client"


def test_altered_redirect_uri_at_the_token_endpoint(provider):
    code, _, verifier = sign_in_and_get_code(provider, relying_party(provider), Browser())
    response = raw_exchange(provider, UI_CLIENT_ID, code, verifier, redirect_uri=UI_CALLBACK + "x")
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("client_id", list(CLIENTS))
def test_missing_or_wrong_verifier(provider, client_id):
    rp = relying_party(provider, client_id)
    code, _, verifier = sign_in_and_get_code(provider, rp, Browser())
    missing = raw_exchange(provider, client_id, code)
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
    code, _, verifier = sign_in_and_get_code(provider, rp, Browser())
    wrong = raw_exchange(provider, client_id, code, generate_token(48))
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    # The code was spent by the failed attempt.
    assert raw_exchange(provider, client_id, code, verifier).json()["error"] == "invalid_grant"


@pytest.mark.parametrize("method", ["plain", None, "S512"])
def test_only_s256_challenges(provider, method):
    verifier = generate_token(48)
    params = {"client_id": UI_CLIENT_ID, "response_type": "code", "redirect_uri": UI_CALLBACK, "scope": SCOPE,
              "state": "s", "code_challenge": verifier}
    if method:
        params["code_challenge_method"] = method
    got = answer(Browser().get(f"{provider.oidc}/auth?{urlencode(params)}"), UI_CALLBACK)
    assert got["error"] == "invalid_request" and got["state"] == "s" and "code" not in got


def test_a_public_client_must_send_a_challenge(provider):
    params = {"client_id": "rp-public", "response_type": "code", "redirect_uri": PUBLIC_CALLBACK,
              "scope": SCOPE, "state": "s"}
    got = answer(Browser().get(f"{provider.oidc}/auth?{urlencode(params)}"), PUBLIC_CALLBACK)
    assert got["error"] == "invalid_request"


def test_a_code_is_single_use(provider):
    rp = relying_party(provider)
    code, _, verifier = sign_in_and_get_code(provider, rp, Browser())
    assert raw_exchange(provider, UI_CLIENT_ID, code, verifier).status_code == 200
    again = raw_exchange(provider, UI_CLIENT_ID, code, verifier)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_a_code_is_bound_to_its_client(provider):
    code, _, verifier = sign_in_and_get_code(provider, relying_party(provider), Browser())
    stolen = raw_exchange(provider, "rp-post", code, verifier, redirect_uri=UI_CALLBACK)
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"


def test_an_expired_code_is_refused(provider, monkeypatch):
    import shared.auth.oauth

    monkeypatch.setattr(shared.auth.oauth, "CODE_LIFETIME_S", -1)
    code, _, verifier = sign_in_and_get_code(provider, relying_party(provider), Browser())
    response = raw_exchange(provider, UI_CLIENT_ID, code, verifier)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("client_id", [UI_CLIENT_ID, "rp-post"])
def test_wrong_secret(provider, client_id):
    code, _, verifier = sign_in_and_get_code(provider, relying_party(provider, client_id), Browser())
    response = raw_exchange(provider, client_id, code, verifier, secret="wrong")
    assert response.status_code in (400, 401) and response.json()["error"] == "invalid_client"
    basic = base64.b64encode(f"{client_id}:wrong".encode()).decode()
    response = requests.post(f"{provider.oidc}/token", timeout=5, headers={"Authorization": f"Basic {basic}"},
                             data={"grant_type": "authorization_code", "code": code,
                                   "redirect_uri": CLIENTS[client_id][2], "code_verifier": verifier})
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"
    # A confidential client cannot pass itself off as public either.
    no_secret = requests.post(f"{provider.oidc}/token", timeout=5, data={
        "grant_type": "authorization_code", "code": code, "client_id": client_id,
        "redirect_uri": CLIENTS[client_id][2], "code_verifier": verifier})
    assert no_secret.json()["error"] == "invalid_client"


@pytest.mark.parametrize("how", ["another site's form", "no form token", "another browser's form token",
                                 "foreign origin"])
def test_cross_site_form_posts_are_refused(provider, how):
    rp = relying_party(provider)
    url, *_ = start(provider, rp)
    victim = Browser()
    page = victim.get(url)
    form = login_form(page)
    data = {"username": "alice", "password": "alice", "csrf_token": form["csrf_token"]}
    headers = {}
    if how == "another site's form":
        # The login cookie is SameSite=Strict: a cross-site post arrives without it.
        victim.http.cookies.clear()
        headers["Sec-Fetch-Site"] = "cross-site"
    elif how == "no form token":
        del data["csrf_token"]
    elif how == "another browser's form token":
        data["csrf_token"] = login_form(Browser().get(url))["csrf_token"]
    else:
        headers["Origin"] = "http://evil.example"
    response = victim.http.post(form["action"], data=data, headers=headers, allow_redirects=False, timeout=5)
    assert response.status_code == 200 and "Location" not in response.headers
    assert "expired or was sent from another site" in response.text
    assert victim.session_cookie() is None


def test_login_page_cannot_be_framed(provider):
    url, *_ = start(provider, relying_party(provider))
    page = Browser().get(url)
    assert page.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-store"


def test_s256_challenge_is_the_rfc_7636_example(provider):
    # Appendix B of RFC 7636, computed here rather than by either library.
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert challenge == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    params = {"client_id": UI_CLIENT_ID, "response_type": "code", "redirect_uri": UI_CALLBACK, "scope": SCOPE,
              "state": "s", "code_challenge": challenge, "code_challenge_method": "S256"}
    browser = Browser()
    got = answer(browser.sign_in(browser.get(f"{provider.oidc}/auth?{urlencode(params)}")), UI_CALLBACK)
    assert raw_exchange(provider, UI_CLIENT_ID, got["code"], verifier).status_code == 200
