"""The API's own documentation: its OpenAPI document and a Swagger UI, all without a token.

The Swagger UI's files come from the swagger-ui-bundle package and are served from here,
so the page works with no network access beyond this service.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

from werkzeug.wrappers import Response

from functions.api.router import Router
from shared.config import API_PREFIX
from shared.errors import NotFound

router = Router("docs")

SPEC_FILE = Path(__file__).resolve().parent.parent / "openapi.yaml"
ASSET_MAX_AGE = 24 * 3600
ASSET_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".map": "application/json",
    ".html": "text/html",
    ".png": "image/png",
}
ASSETS = f"{API_PREFIX}/api"

# The document names the local stack's provider; a deployment's own is put in when it is served.
LOCAL_OIDC = "/auth/realms/squonk2/protocol/openid-connect/"
SWAGGER_SCOPES = "openid profile email"

SWAGGER_PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="UTF-8">
  <title>Data Manager API</title>
  <link rel="stylesheet" type="text/css" href="{ASSETS}/swagger-ui.css">
  <link rel="stylesheet" type="text/css" href="{ASSETS}/index.css">
  <link rel="icon" type="image/png" href="{ASSETS}/favicon-32x32.png" sizes="32x32">
  <link rel="icon" type="image/png" href="{ASSETS}/favicon-16x16.png" sizes="16x16">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{ASSETS}/swagger-ui-bundle.js" charset="UTF-8"></script>
  <script>
    window.onload = function () {{
      window.ui = SwaggerUIBundle({{
        url: "{API_PREFIX}/openapi.yaml",
        dom_id: "#swagger-ui",
        deepLinking: true,
        presets: [SwaggerUIBundle.presets.apis],
        layout: "BaseLayout",
        validatorUrl: null,
        persistAuthorization: true,
        oauth2RedirectUrl: window.location.origin + "{ASSETS}/oauth2-redirect.html",
        // A token from signing in (the oidc scheme) goes with every API request, as a pasted one does.
        requestInterceptor: function (req) {{
          var signedIn = window.ui && window.ui.authSelectors.authorized().getIn(["oidc", "token", "access_token"]);
          var path = new URL(req.url, window.location.href).pathname;
          if (signedIn && !req.headers.Authorization && path.indexOf("{API_PREFIX}/") === 0) {{
            req.headers.Authorization = "Bearer " + signedIn;
          }}
          return req;
        }}
      }});
      window.ui.initOAuth({{
        clientId: "__CLIENT_ID__",
        scopes: "{SWAGGER_SCOPES}",
        usePkceWithAuthorizationCodeGrant: true
      }});
    }};
  </script>
</body>
</html>
"""


def _cached(request, body: bytes, content_type: str, cache_control: str) -> Response:
    """``body`` with an ETag, answered 304 when the client already holds it."""
    response = Response(body, content_type=content_type)
    response.headers["Cache-Control"] = cache_control
    response.set_etag(hashlib.sha256(body).hexdigest()[:32])
    return response.make_conditional(request.environ)


def _oidc_base(settings) -> str:
    """Where the document's oidc scheme points: the local provider, or DM_OIDC_ISSUER's."""
    return f"{settings.oidc_issuer}/protocol/openid-connect/" if settings.oidc_issuer else LOCAL_OIDC


@functools.lru_cache(maxsize=4)
def _spec_yaml(oidc_base: str = LOCAL_OIDC) -> bytes:
    text = SPEC_FILE.read_bytes()
    return text if oidc_base == LOCAL_OIDC else text.replace(LOCAL_OIDC.encode(), oidc_base.encode())


@functools.lru_cache(maxsize=4)
def _spec_json(oidc_base: str = LOCAL_OIDC) -> bytes:
    import yaml

    document = yaml.safe_load(_spec_yaml(oidc_base))
    return json.dumps(document, separators=(",", ":")).encode()


@functools.lru_cache(maxsize=4)
def _swagger_page(client_id: str) -> bytes:
    return SWAGGER_PAGE.replace("__CLIENT_ID__", json.dumps(client_id)[1:-1]).encode()


@router.get("/openapi.yaml", auth=False)
def get_openapi_yaml(ctx):
    """This OpenAPI document (YAML)."""
    return _cached(ctx.request, _spec_yaml(_oidc_base(ctx.settings)), "application/yaml; charset=utf-8", "no-cache")


@router.get("/openapi.json", auth=False)
def get_openapi_json(ctx):
    """This OpenAPI document (JSON)."""
    return _cached(ctx.request, _spec_json(_oidc_base(ctx.settings)), "application/json", "no-cache")


@router.get("/api", auth=False)
def get_swagger_ui(ctx):
    """Swagger UI for this document."""
    return _cached(ctx.request, _swagger_page(ctx.settings.oidc_audience), "text/html; charset=utf-8", "no-cache")


def _asset_root() -> str:
    import swagger_ui_bundle

    return os.path.realpath(str(swagger_ui_bundle.swagger_ui_path))


@router.get("/api/<path:asset>", auth=False)
def get_swagger_ui_asset(ctx, asset):
    """A static file of the Swagger UI."""
    from werkzeug.security import safe_join
    from werkzeug.utils import send_file

    root = _asset_root()
    joined = safe_join(root, asset) if "\x00" not in asset else None  # realpath raises on a NUL
    real = os.path.realpath(joined) if joined else None
    if real is None or os.path.commonpath([root, real]) != root or not os.path.isfile(real):
        raise NotFound(f"No Swagger UI file {asset[:80]!r}")
    extension = os.path.splitext(real)[1].lower()
    mimetype = ASSET_TYPES.get(extension)
    if mimetype is None:
        import mimetypes

        mimetype = mimetypes.guess_type(real)[0] or "application/octet-stream"
    # Not send_file's conditional mode: its Range handling raises on a bad range.
    response = send_file(real, ctx.request.environ, mimetype=mimetype, conditional=False,
                         etag=True, max_age=ASSET_MAX_AGE)
    response.cache_control.public = True
    return response.make_conditional(ctx.request.environ)
