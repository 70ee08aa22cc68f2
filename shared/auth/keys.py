"""The development provider's RSA signing key, kept on disk so tokens survive restarts."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.config import ConfigError, Settings


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_uint(value: int) -> str:
    return _b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


class SigningKey:
    """An RSA key that signs RS256 tokens, with its public forms."""

    def __init__(self, private_key: rsa.RSAPrivateKey):
        self._private = private_key
        self._public_der = private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        # Derived from the public key, so the same key file always has the same kid.
        self.kid = _b64url(hashlib.sha256(self._public_der).digest()[:16])
        self._jose_key: Any = None

    def public_jwk(self) -> dict[str, str]:
        """The public key as a JWK, for the JWKS document."""
        numbers = self._private.public_key().public_numbers()
        return {
            "kty": "RSA",
            "kid": self.kid,
            "use": "sig",
            "alg": "RS256",
            "n": _b64url_uint(numbers.n),
            "e": _b64url_uint(numbers.e),
        }

    def public_key_b64(self) -> str:
        """Base64 DER SubjectPublicKeyInfo on one line: Keycloak's realm `public_key`."""
        return base64.b64encode(self._public_der).decode("ascii")

    def private_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM."""
        return self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def _key(self) -> Any:
        if self._jose_key is None:
            from jose import jwk

            self._jose_key = jwk.construct(self.private_pem().decode("ascii"), "RS256")
        return self._jose_key

    def sign(self, claims: dict[str, Any], typ: str = "JWT") -> str:
        """A compact RS256 JWS of the claims, with this key's kid in the header."""
        from jose import jws

        payload = json.dumps(claims, separators=(",", ":"))
        return jws.sign(payload.encode(), self._key(), {"kid": self.kid, "typ": typ}, "RS256")

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a token this key signed; ValueError if it did not."""
        from jose import JWSError, jws

        try:
            if jws.get_unverified_header(token).get("kid") != self.kid:
                raise ValueError("token was signed by another key")
            claims = json.loads(jws.verify(token, self._key().public_key(), ["RS256"]))
        except (JWSError, json.JSONDecodeError) as exc:
            raise ValueError(str(exc)) from None
        if not isinstance(claims, dict):
            raise ValueError("token claims are not an object")
        return claims


def key_path(settings: Settings) -> Path:
    """Where the local stack keeps the provider's signing key."""
    return settings.data_dir / "auth" / "signing-key.pem"


def load_or_create_signing_key(path: str | os.PathLike[str]) -> SigningKey:
    """The key stored at path; a new RSA-2048 key is created there (mode 0600) if none is."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = SigningKey(rsa.generate_private_key(public_exponent=65537, key_size=2048)).private_pem()
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        try:
            # link, unlike rename, fails if the file exists: when two processes start
            # together, the first key written wins and both use it.
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    try:
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"the signing key {str(path)!r} cannot be read: {exc}") from None
    if not isinstance(private, rsa.RSAPrivateKey):
        raise ConfigError(f"the signing key {str(path)!r} is not an RSA key")
    return SigningKey(private)
