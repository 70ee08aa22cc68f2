"""The local stack's front door: ``GET /`` on DM_PORT is a page of where things are and what to
run first, and ``dm run`` prints the same pointers when it starts. Server-rendered, no assets:
it must work offline and before anyone has signed in."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.config import Settings

# (what, path below the stack's base URL)
POINTERS = (
    ("Swagger UI of the Data Manager API", "/data-manager-api/api"),
    ("OpenAPI document", "/data-manager-api/openapi.yaml"),
    ("OpenID provider (Keycloak paths, realm squonk2)", "/auth/realms/squonk2/.well-known/openid-configuration"),
    ("Account Server API (built-in ledger)", "/account-server-api/version"),
)


def pointers(settings: "Settings") -> list[tuple[str, str]]:
    """(what, absolute URL) of each pointer, the page itself first."""
    base = settings.base_url
    return [("This page", base + "/"), *((what, base + path) for what, path in POINTERS)]


def first_steps(settings: "Settings") -> list[tuple[str, str]]:
    """(what, command) a newcomer runs first, as the README's local-stack section says."""
    base = settings.base_url
    token_url = f"{settings.issuer}/protocol/openid-connect/token"
    who = ("a user of DM_USERS_FILE (put its name and password for alice's)" if settings.users_file else
           "a development user (alice, bob, carol: the password is the user name; admin: admin)")
    return [
        (f"Sign in as {who} and keep the access token",
         f"TOKEN=$(curl -s -d grant_type=password -d client_id={settings.oidc_audience} "
         f"-d username=alice -d password=alice {token_url} | python3 -c "
         "'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')"),
        ("List your projects", f'curl -s -H "Authorization: Bearer $TOKEN" {base}/data-manager-api/project'),
        ("Your personal unit and its products in the Account Server",
         f'curl -s -H "Authorization: Bearer $TOKEN" {base}/account-server-api/unit'),
        ("The users' unit and product ids, for the Python client (im-squonk2-client)",
         f"cat {settings.data_dir}/local-stack.json"),
    ]


def startup_text(settings: "Settings") -> str:
    """What ``dm run`` prints after the stack's facts."""
    lines = ["", "Start here:"]
    lines += [f"  {what}: {url}" for what, url in pointers(settings)]
    lines += ["", "First steps (README.md, 'The local stack'):"]
    for what, command in first_steps(settings):
        lines += [f"  # {what}", f"  {command}"]
    return "\n".join(lines)


def page(settings: "Settings") -> bytes:
    """The landing page as HTML."""
    e = html.escape
    links = "\n".join(f'<li><a href="{e(url)}">{e(what)}</a> <code>{e(url)}</code></li>'
                      for what, url in pointers(settings)[1:])
    steps = "\n".join(f"<li>{e(what)}<pre>{e(command)}</pre></li>" for what, command in first_steps(settings))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Data Manager: local stack</title>
<style>
body {{ font-family: sans-serif; max-width: 60em; margin: 2em auto; padding: 0 1em; line-height: 1.4; }}
pre, code {{ background: #f4f4f4; }}
pre {{ padding: .5em; overflow-x: auto; }}
</style>
</head>
<body>
<h1>Data Manager: local stack</h1>
<p>The Squonk2 Data Manager API, its development OpenID provider and a built-in Account Server,
served on this port. Every API call needs a bearer token from the provider.</p>
<h2>Where things are</h2>
<ul>
{links}
</ul>
<h2>First steps</h2>
<p>From the repository, <code>make run</code> (or <code>dm run</code>) started this stack. Then:</p>
<ol>
{steps}
</ol>
<p>The README's sections "The local stack", "Using it from the Python client" and
"Using the Squonk2 web UI" say more.</p>
</body>
</html>
""".encode()


def with_landing_page(app, settings: "Settings"):
    """Wrap a WSGI app: ``GET /`` (and ``HEAD /``) answer the landing page, everything else goes to ``app``."""
    body = page(settings)

    def wrapped(environ, start_response):
        if environ.get("PATH_INFO", "") not in ("", "/") or environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return app(environ, start_response)
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body))),
                                  ("Cache-Control", "no-cache")])
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [body]

    return wrapped
