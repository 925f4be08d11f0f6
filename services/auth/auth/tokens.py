"""A signing key: token minting and what the JWKS publishes about it.

Ed25519 (``alg: EdDSA``); the ``kid`` is the key's RFC 7638 thumbprint. Where the private key
comes from, and which public keys are published, is ``auth.keys``.
"""

import base64
import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auth.metrics import TOKENS_ISSUED
from auth.models import User

ALGORITHM = "EdDSA"


def generate_private_pem() -> str:
    key = Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def load_private_key(pem: str) -> Ed25519PrivateKey:
    # Environments often carry a PEM on one line with literal "\n" separators.
    if "\n" not in pem.strip() and "\\n" in pem:
        pem = pem.replace("\\n", "\n")
    key = serialization.load_pem_private_key(pem.strip().encode("ascii"), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the JWT private key must be an unencrypted Ed25519 key (PKCS#8 PEM)")
    return key


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class Signer:
    """The key auth signs with, and what it publishes about it."""

    private_key: Ed25519PrivateKey
    issuer: str

    @classmethod
    def from_pem(cls, pem: str, *, issuer: str) -> "Signer":
        return cls(load_private_key(pem), issuer)

    @cached_property
    def public_jwk(self) -> dict[str, str]:
        raw = self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return {"kty": "OKP", "crv": "Ed25519", "x": _b64url(raw)}

    @cached_property
    def kid(self) -> str:
        # RFC 7638: SHA-256 over the required members, sorted, without whitespace.
        canonical = json.dumps(self.public_jwk, sort_keys=True, separators=(",", ":"))
        return _b64url(hashlib.sha256(canonical.encode("ascii")).digest())

    @property
    def jwk(self) -> dict[str, str]:
        """The public key as the JWKS lists it."""
        return {**self.public_jwk, "kid": self.kid, "alg": ALGORITHM, "use": "sig"}

    def mint(self, user: User, *, token_type: str, lifetime: int) -> tuple[str, dict[str, Any]]:
        """A signed token for ``user`` and its claims."""
        assert user.id is not None
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": str(user.id),
            "user_id": user.id,
            "username": user.username,
            "tenant": user.tenant,
            "is_superuser": user.is_superuser,
            "role": user.role,
            "token_type": token_type,
            "jti": uuid.uuid4().hex,
            "iat": now,
            "exp": now + lifetime,
            "iss": self.issuer,
        }
        token = jwt.encode(claims, self.private_key, algorithm=ALGORITHM, headers={"kid": self.kid})
        TOKENS_ISSUED.labels(token_type).inc()
        return token, claims
