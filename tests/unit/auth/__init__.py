"""Helpers shared by the auth tests: the provider on a real local HTTP server."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import make_server
from werkzeug.wrappers import Response

from shared.auth.keys import key_path, load_or_create_signing_key
from shared.auth.provider import create_provider_app
from shared.auth.users import load_users
from shared.config import Settings


class ProviderServer:
    """The development provider served over HTTP under /auth, restartable at the same URL."""

    def __init__(self, data_dir: Path):
        self.paths: list[str] = []  # every request path, to count what clients fetched
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self.base_url = f"http://127.0.0.1:{self._server.server_port}"
        self.settings = Settings(public_url=self.base_url, data_dir=data_dir)
        self.issuer = self.settings.issuer
        self.restart()
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def restart(self) -> None:
        """Rebuilds the provider as a process restart would: key and users read again."""
        self.key = load_or_create_signing_key(key_path(self.settings))
        app = create_provider_app(self.settings, load_users(self.settings), self.key)
        self._app = DispatcherMiddleware(Response("not here", status=404), {"/auth": app})

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        self.paths.append(environ["PATH_INFO"])
        return self._app(environ, start_response)

    def count(self, suffix: str) -> int:
        """How many requests asked for a path ending with suffix."""
        return sum(path.endswith(suffix) for path in self.paths)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unverified_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, read without checking the signature."""
    segment = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def unverified_header(token: str) -> dict[str, Any]:
    """The header of a JWT, read without checking the signature."""
    segment = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def make_jwt(header: dict[str, Any], claims: dict[str, Any], sign: Any = None) -> str:
    """A compact JWS; sign(signing_input) -> signature bytes, or None for an empty signature."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    signature = sign(signing_input.encode()) if sign else b""
    return f"{signing_input}.{b64url(signature)}"


def rs256(private_key: rsa.RSAPrivateKey) -> Any:
    """A signer for make_jwt using an RSA key directly (not the code under test)."""
    return lambda data: private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def hs256(secret: bytes) -> Any:
    """A signer for make_jwt using HMAC-SHA256."""
    return lambda data: hmac.new(secret, data, hashlib.sha256).digest()
