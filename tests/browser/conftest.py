"""A real headless Chromium (Debian's `chromium`, driven by playwright) against a real local stack."""

from __future__ import annotations

import json
import os
import shutil
import threading

import pytest

from tests.stack.conftest import start


def chromium_path() -> str | None:
    """DM_TEST_CHROMIUM, else `chromium` on PATH (playwright's own browser download is not used)."""
    return os.environ.get("DM_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


class WebUi:
    """Stands in for the web UI: a server that records the URLs the browser is sent back to."""

    def __init__(self):
        from werkzeug.serving import make_server
        from werkzeug.wrappers import Request, Response

        self.seen: list[str] = []

        @Request.application
        def app(request):
            if request.path == "/favicon.ico":  # the browser's own, after a page loads
                return Response("", status=404)
            self.seen.append(request.url)
            return Response("the web UI", content_type="text/plain")

        self._server = make_server("localhost", 0, app, threaded=True)
        self.origin = f"http://localhost:{self._server.server_port}"
        self.home = f"{self.origin}/data-manager-ui"
        self.callback = f"{self.home}/api/auth/callback"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def web_ui():
    server = WebUi()
    yield server
    server.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, web_ui):
    """A local stack whose web UI client (its documented id and secret) returns to `web_ui`."""
    from shared.auth.users import UI_CLIENT_ID, UI_CLIENT_SECRET

    base = tmp_path_factory.mktemp("browser-stack")
    users = base / "users.json"
    users.write_text(json.dumps({
        "users": [{"username": name, "password": name, "admin": name == "admin"}
                  for name in ("alice", "bob", "admin")],
        "clients": [{"client_id": UI_CLIENT_ID, "secret": UI_CLIENT_SECRET, "redirect_uris": [web_ui.callback],
                     "post_logout_redirect_uris": [web_ui.home]}],
    }))
    running = start(base / "data", base / "logs", DM_USERS_FILE=str(users))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def chromium():
    playwright_api = pytest.importorskip("playwright.sync_api")
    path = chromium_path()
    if not path:
        pytest.skip("no chromium (apt-get install -y chromium)")
    with playwright_api.sync_playwright() as playwright:
        # No sandbox: CI runs as root, where Chromium's sandbox cannot start.
        browser = playwright.chromium.launch(executable_path=path, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def context(chromium):
    context = chromium.new_context()
    context.set_default_timeout(15000)
    yield context
    context.close()
