"""The identity provider's signing keys by kid, loaded once and shared by every request.

Only one load runs at a time: requests that need the keys meanwhile wait for it (briefly) rather
than starting their own. A failed load is a fault of ours, not of the token: it answers 503 with
Retry-After and may be tried again after a short backoff that grows while the provider stays down.
While keys are known, an unknown kid is refused (401) and refreshes at most once per interval.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from shared.errors import Unauthorized, Unavailable

REFRESH_INTERVAL_S = 10.0  # at most one refresh per interval, however many unknown kids arrive
RETRY_FIRST_S = 0.5  # after a failed load, the next may start this soon...
RETRY_MAX_S = 5.0  # ...doubling up to this while loads keep failing
WAIT_S = 3.0  # the longest a request waits for another request's load


class KeyStore:
    """Keys by kid from `load`, which returns a JWKS document; thread-safe."""

    def __init__(
        self,
        load: Callable[[], Any],
        *,
        source: str,
        clock: Callable[[], float] = time.time,
        refresh_interval: float = REFRESH_INTERVAL_S,
        retry_first: float = RETRY_FIRST_S,
        retry_max: float = RETRY_MAX_S,
        wait: float = WAIT_S,
    ):
        self._load = load
        self._source = source  # names the provider in messages
        self._clock = clock
        self._refresh_interval = refresh_interval
        self._retry_first = retry_first
        self._retry_max = retry_max
        self._wait = wait
        self._cond = threading.Condition()
        self._keys: dict[str, Any] = {}  # kid -> jose public key
        self._loading = False
        self._loaded_at: float | None = None  # of the last load that succeeded
        self._failures = 0  # loads failed in a row
        self._retry_at = 0.0  # no load before this after a failure
        self._error = ""
        self.loads = 0  # loads started, for tests and logs

    def key(self, kid: str) -> Any:
        """The public key for kid; Unauthorized if the provider has none, Unavailable if its keys cannot be had."""
        give_up = time.monotonic() + self._wait
        with self._cond:
            while True:
                key = self._keys.get(kid)
                if key is not None:
                    return key
                if self._loading:  # another request's load: wait for its outcome
                    left = give_up - time.monotonic()
                    if left <= 0:
                        raise Unavailable(f"The identity provider's keys are still being fetched from {self._source}")
                    self._cond.wait(left)
                    continue
                now = self._clock()
                if self._failures and now < self._retry_at:
                    # The last load failed: known kids are served from older keys, if any, but
                    # this one cannot be checked until the provider answers again.
                    raise Unavailable(f"The identity provider at {self._source} cannot be reached: {self._error}",
                                      retry_after=self._retry_at - now)
                fresh = self._loaded_at is not None and now - self._loaded_at < self._refresh_interval
                if fresh and not self._failures:
                    raise Unauthorized(f"The token's signing key {kid!r} is not one of the identity provider's")
                self._loading = True
                self.loads += 1
                break
        keys: dict[str, Any] = {}
        error = "the fetch was interrupted"  # kept only if something other than an Exception ends it
        try:
            keys = self._parse(self._load())
            error = "" if keys else "it publishes no RS256 signing key"
        except Exception as exc:  # noqa: BLE001 - any transport or document fault: the provider is unusable
            error = f"{type(exc).__name__}: {exc}"
        finally:  # however the load ended, the waiting requests must hear of it
            with self._cond:
                self._loading = False
                now = self._clock()
                if error:
                    self._failures += 1
                    self._retry_at = now + min(self._retry_max, self._retry_first * 2 ** (self._failures - 1))
                    self._error = error
                else:
                    self._keys, self._loaded_at, self._failures = keys, now, 0
                self._cond.notify_all()
                key = self._keys.get(kid)
        if key is not None:
            return key
        if error:
            raise Unavailable(f"The identity provider at {self._source} cannot be reached: {error}",
                              retry_after=self._retry_at - now)
        raise Unauthorized(f"The token's signing key {kid!r} is not one of the identity provider's")

    @staticmethod
    def _parse(document: Any) -> dict[str, Any]:
        """The usable RS256 signature keys of a JWKS document, by kid."""
        from jose import jwk
        from jose.exceptions import JWKError

        documents = document["keys"]
        keys = {}
        for doc in documents if isinstance(documents, list) else []:
            usable = (
                isinstance(doc, dict)
                and doc.get("kty") == "RSA"
                and doc.get("use", "sig") == "sig"
                and doc.get("alg", "RS256") == "RS256"
                and isinstance(doc.get("kid"), str)
            )
            if usable:
                try:
                    keys[doc["kid"]] = jwk.construct(doc, "RS256")
                except JWKError:
                    continue  # one bad key must not hide the good ones
        return keys
