"""The public keys of an OpenID provider served in this process, by issuer.

The local stack serves its development provider in the api's own process. The api reads the
provider's keys here rather than over HTTP: at start-up a request to our own server can wait
behind the very requests that need the keys. A provider elsewhere (Keycloak) publishes nothing
here, and its keys are fetched over HTTP.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Callable, Iterator

Jwks = Callable[[], dict[str, Any]]  # returns a JWKS document: {"keys": [jwk, ...]}

_published: dict[str, Jwks] = {}
_lock = threading.Lock()


def publish(issuer: str, jwks: Jwks) -> None:
    """Makes the provider for issuer in this process answer jwks_for(issuer); the latest wins."""
    with _lock:
        _published[issuer] = jwks


def jwks_for(issuer: str) -> Jwks | None:
    """The JWKS of the provider for issuer if it is served in this process, else None."""
    with _lock:
        return _published.get(issuer)


@contextlib.contextmanager
def kept() -> Iterator[None]:
    """What is published inside lasts until the block ends; the earlier publications come back then
    (a provider made for a while, such as a second stack in one process)."""
    with _lock:
        before = dict(_published)
    try:
        yield
    finally:
        with _lock:
            _published.clear()
            _published.update(before)
