"""``GET /`` on the stack's port: a page of pointers for a newcomer, in the stack's WSGI app
(`shared.stack.create_wsgi_app`); every link it gives answers. ``dm run``'s start-up text names the same
places. The page through the real server of a running stack: tests/stack/test_landing_stack.py."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest


class Page(HTMLParser):
    """The links, and anything the page would fetch besides itself."""

    def __init__(self):
        super().__init__()
        self.links: list[str] = []
        self.fetched: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a":
            self.links.append(attrs["href"])
        if tag in ("script", "img", "iframe") or (tag == "link" and attrs.get("rel") != "canonical"):
            self.fetched.append(attrs.get("src") or attrs.get("href") or tag)


def read_page(text: str) -> Page:
    page = Page()
    page.feed(text)
    return page


EXPECTED_PATHS = ["/data-manager-api/api", "/data-manager-api/openapi.yaml",
                  "/auth/realms/squonk2/.well-known/openid-configuration", "/account-server-api/version"]


@pytest.fixture
def stack_client(api, settings):
    from werkzeug.test import Client

    from shared.auth import local_keys
    from shared.stack import create_wsgi_app

    # the stack's provider publishes its keys to this process's verifiers: the ones the other
    # tests' tokens are signed with come back afterwards
    with local_keys.kept():
        yield Client(create_wsgi_app(settings))


def test_the_landing_page_links_the_api_the_provider_and_the_account_server(stack_client, settings):
    resp = stack_client.get("/")
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/html")
    text = resp.get_data(as_text=True)
    page = read_page(text)
    assert page.fetched == []  # no scripts, styles or images from anywhere: it works offline
    assert page.links == [settings.base_url + path for path in EXPECTED_PATHS]
    assert "make run" in text and "/protocol/openid-connect/token" in text and "local-stack.json" in text
    assert "Using the Squonk2 web UI" in text
    for link in page.links:  # each answers on the same app
        answer = stack_client.get(link[len(settings.base_url):])
        assert answer.status_code == 200, (link, answer.status_code)
    discovery = stack_client.get("/auth/realms/squonk2/.well-known/openid-configuration").get_json()
    assert discovery["issuer"] == settings.issuer


def test_only_get_and_head_of_the_root_are_the_landing_page(stack_client):
    head = stack_client.head("/")
    assert head.status_code == 200 and head.get_data() == b"" and int(head.headers["Content-Length"]) > 0
    assert stack_client.post("/").status_code in (404, 405)
    assert stack_client.get("/index.html").status_code == 404
    assert stack_client.get("/data-manager-api/version").status_code == 200  # the api is still the api


def test_dm_runs_start_up_text_names_the_same_places(settings):
    from shared.landing import pointers, startup_text

    text = startup_text(settings)
    assert text.splitlines()[1] == "Start here:"
    for _, url in pointers(settings):
        assert url in text
    assert f"{settings.base_url}/" in text and "make run" not in text  # it is running already
    assert re.search(r"curl -s -d grant_type=password .* -d username=alice", text)
