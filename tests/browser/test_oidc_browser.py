"""Signing in and out in a real browser: as the web UI sends its users, and through Swagger UI."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from jose import jwt as jose_jwt

from shared.auth.users import UI_CLIENT_ID, UI_CLIENT_SECRET



def oidc(stack) -> str:
    return f"{stack.facts['keycloak_url']}/realms/squonk2/protocol/openid-connect"


def ui_client(web_ui) -> OAuth2Session:
    """The web UI's client as it is configured (client_secret_basic, PKCE, its scopes)."""
    return OAuth2Session(UI_CLIENT_ID, UI_CLIENT_SECRET, redirect_uri=web_ui.callback,
                         code_challenge_method="S256", scope="openid profile email offline_access")


def authorization(stack, rp: OAuth2Session) -> tuple[str, str, str]:
    verifier = generate_token(48)
    url, state = rp.create_authorization_url(f"{oidc(stack)}/auth", code_verifier=verifier,
                                             nonce=generate_token(16))
    return url, state, verifier


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_sign_in_single_sign_on_and_sign_out(stack, context, web_ui):
    seen = web_ui.seen
    back_to_ui = re.compile("^" + re.escape(web_ui.origin) + "/")
    page = context.new_page()
    rp = ui_client(web_ui)
    url, state, verifier = authorization(stack, rp)
    page.goto(url)
    # Found as the web UI's own tests find Keycloak's page.
    page.get_by_label("Username or email").fill("alice")
    page.get_by_label("Password").fill("not her password")
    page.get_by_role("button", name="Sign In").click()
    assert page.locator("#input-error").inner_text() == "Invalid username or password."
    assert page.locator("#username").input_value() == "alice"
    page.locator("#password").fill("alice")
    with page.expect_navigation(url=back_to_ui):
        page.locator("#kc-login").click()
    back = query(seen[-1])
    assert seen[-1].startswith(web_ui.callback + "?") and back["state"] == state
    token = rp.fetch_token(f"{oidc(stack)}/token", code=back["code"], code_verifier=verifier)
    claims = jose_jwt.get_unverified_claims(token["id_token"])
    assert claims["preferred_username"] == "alice" and claims["aud"] == UI_CLIENT_ID
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    assert requests.get(f"{stack.api_url}/project", headers=bearer, timeout=10).status_code == 200
    cookies = {c["name"] for c in context.cookies()}
    assert "KEYCLOAK_IDENTITY" in cookies and not cookies & {"appSession", "auth_verification"}

    # single sign-on: straight back with a code
    url, state, verifier = authorization(stack, rp)
    with page.expect_navigation(url=back_to_ui):
        page.goto(url)
    assert query(seen[-1])["state"] == state
    again = rp.fetch_token(f"{oidc(stack)}/token", code=query(seen[-1])["code"], code_verifier=verifier)

    # sign-out as the web UI does it
    logout = f"{oidc(stack)}/logout?" + urlencode({"post_logout_redirect_uri": web_ui.home, "client_id": UI_CLIENT_ID,
                                                    "id_token_hint": again["id_token"]})
    with page.expect_navigation(url=back_to_ui):
        page.goto(logout)
    assert seen[-1] == web_ui.home
    assert "KEYCLOAK_IDENTITY" not in {c["name"] for c in context.cookies()}
    for refresh in (token["refresh_token"], again["refresh_token"]):
        with pytest.raises(Exception, match="invalid_grant"):
            rp.refresh_token(f"{oidc(stack)}/token", refresh_token=refresh)
    url, _, _ = authorization(stack, rp)
    page.goto(url)
    assert page.locator("#kc-form-login").is_visible()


def test_swagger_ui_authorize_signs_in_on_the_login_page(stack, context):
    page = context.new_page()
    page.goto(f"{stack.api_url}/api")
    page.locator(".swagger-ui .auth-wrapper .authorize").click()
    oauth = page.locator(".auth-container").filter(has_text="authorizationCode")
    assert oauth.locator("#client_id").input_value() == "data-manager-api"
    with page.expect_popup() as popup_info:
        oauth.get_by_role("button", name="Authorize").click()
    popup = popup_info.value
    popup.get_by_label("Username or email").fill("bob")
    popup.get_by_label("Password").fill("bob")
    popup.get_by_role("button", name="Sign In").click()
    popup.wait_for_event("close")
    page.locator(".auth-container").filter(has_text="authorizationCode").get_by_role(
        "button", name="Logout").wait_for()
    page.locator(".dialog-ux .close-modal").click()

    # Try it out: the signed-in token goes with the request and the API accepts it.
    page.locator('.opblock-summary-path[data-path="/project"]').first.click()
    operation = page.locator("#operations-project-getProjects")
    operation.get_by_role("button", name="Try it out").click()
    with page.expect_response(lambda r: urlsplit(r.url).path == "/data-manager-api/project") as answer:
        operation.get_by_role("button", name="Execute").click()
    response = answer.value
    assert response.status == 200
    token = response.request.headers["authorization"].removeprefix("Bearer ")
    claims = jose_jwt.get_unverified_claims(token)
    assert claims["preferred_username"] == "bob" and claims["azp"] == "data-manager-api"
