"""The development provider's sign-in sessions: a signed cookie per browser, and the sessions ended.

A session is stateless, as the provider's tokens are: its cookie carries the session id, the user
and the time of sign-in, signed with a secret derived from the provider's signing key, so it
survives a restart. Ending a session (logout) records its id until the session could have expired
anyway; the record is kept in a file beside the key, so that neither the cookie nor the refresh
tokens issued in the session work again, after a restart too.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from shared.auth.keys import SigningKey

# Keycloak's own name; never the web UI's (appSession, auth_verification), which shares the host.
SESSION_COOKIE = "KEYCLOAK_IDENTITY"
# Ties a posted sign-in form to the browser that loaded it (SameSite keeps it off cross-site posts).
LOGIN_COOKIE = "KC_LOGIN_ATTEMPT"
LOGIN_FORM_LIFETIME_S = 30 * 60


class Sessions:
    """Signs and reads session cookies and sign-in form tokens; remembers ended sessions."""

    def __init__(self, key: SigningKey, ended_file: Path | None, lifetime: int):
        from itsdangerous import BadSignature, URLSafeTimedSerializer

        secret = hashlib.sha256(b"dm-auth-sessions\0" + key.private_pem()).digest()
        self._secret = secret
        self._cookie = URLSafeTimedSerializer(secret, salt="session")
        self._bad = BadSignature
        self.lifetime = lifetime
        self._ended_file = ended_file
        self._lock = threading.Lock()
        self._ended: dict[str, float] = self._load()

    # --- sessions ----------------------------------------------------------------------

    def start(self, username: str) -> tuple[dict[str, Any], str]:
        """A new session for username: its facts and its cookie value."""
        session = {"sid": secrets.token_urlsafe(18), "user": username, "auth_time": int(time.time())}
        return session, self._cookie.dumps(session)

    def read(self, cookie: str | None) -> dict[str, Any] | None:
        """The facts of a live session cookie, else None."""
        if not cookie:
            return None
        try:
            session = self._cookie.loads(cookie, max_age=self.lifetime)
        except self._bad:
            return None
        if not isinstance(session, dict) or not self.live(session.get("sid"), session.get("auth_time")):
            return None
        return session

    def live(self, sid: object, auth_time: object = None) -> bool:
        """False for a session that was ended or has outlived its lifetime."""
        if not isinstance(sid, str):
            return False
        if isinstance(auth_time, (int, float)) and auth_time + self.lifetime < time.time():
            return False
        with self._lock:
            return sid not in self._ended

    def end(self, sid: str) -> None:
        """Ends the session: its cookie and refresh tokens stop working."""
        now = time.time()
        with self._lock:
            self._ended = {s: until for s, until in self._ended.items() if until > now}
            self._ended[sid] = now + self.lifetime
            self._save()

    def _load(self) -> dict[str, float]:
        if self._ended_file is None:
            return {}
        try:
            data = json.loads(self._ended_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        now = time.time()
        return {s: u for s, u in data.items() if isinstance(u, (int, float)) and u > now} \
            if isinstance(data, dict) else {}

    def _save(self) -> None:
        if self._ended_file is None:
            return
        self._ended_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._ended_file.with_name(f".{self._ended_file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self._ended), encoding="utf-8")
        os.replace(tmp, self._ended_file)

    # --- sign-in forms -----------------------------------------------------------------

    def new_login_attempt(self) -> str:
        """A random value for the login cookie."""
        return secrets.token_urlsafe(18)

    def form_token(self, attempt: str) -> str:
        """The hidden form field that goes with a login cookie, valid for LOGIN_FORM_LIFETIME_S."""
        issued = str(int(time.time()))
        mac = hmac.new(self._secret, f"form\0{attempt}\0{issued}".encode(), hashlib.sha256).hexdigest()
        return f"{issued}.{mac}"

    def form_token_ok(self, attempt: str | None, token: str | None) -> bool:
        """True when token was made for this browser's login cookie and is still fresh."""
        if not attempt or not token or "." not in token:
            return False
        issued, _, mac = token.partition(".")
        if not issued.isdigit() or int(issued) + LOGIN_FORM_LIFETIME_S < time.time():
            return False
        expected = hmac.new(self._secret, f"form\0{attempt}\0{issued}".encode(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(mac, expected)
