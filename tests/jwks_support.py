"""Signing keys for key-set (JWKS) tests: a private key to sign tokens with, and its
public half as a JWK naming it by `kid`."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose import jwk, jwt


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    private_pem: str
    public_pem: str

    @classmethod
    def generate(cls, kid: str, alg: str = "ES256") -> SigningKey:
        private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
        if alg.startswith("RS"):
            private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            private = ec.generate_private_key(ec.SECP256R1())
        private_pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        public_pem = (
            private.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
        return cls(kid, alg, private_pem, public_pem)

    def jwk(self, **extra: Any) -> dict[str, Any]:
        """The public key as a JWK with this `kid` (and `use: sig`)."""
        public: dict[str, Any] = jwk.construct(self.public_pem, self.alg).to_dict()
        return {**public, "kid": self.kid, "use": "sig", **extra}

    def token(self, user: str, *, ttl: float = 3600, kid: str | None = "", **claims: Any) -> str:
        """A token for `user` signed with this key, naming it (`kid=None`: naming none)."""
        now = int(time.time())
        body = {"sub": user, "iat": now, "exp": now + ttl, **claims}
        headers = {} if kid is None else {"kid": kid or self.kid}
        return str(jwt.encode(body, self.private_pem, algorithm=self.alg, headers=headers))


def jwks(*keys: SigningKey) -> bytes:
    return orjson.dumps({"keys": [key.jwk() for key in keys]})


def write_jwks(path: Path, *keys: SigningKey) -> None:
    """Replace the file at once, as an operator (or Kubernetes) would: write, rename."""
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(jwks(*keys))
    os.replace(temporary, path)
