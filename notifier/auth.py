"""Who is calling: users by JWT, publishers by API key.

Signatures are checked by python-jose against an explicit algorithm allow-list (the
header's `alg` is never trusted on its own); claims by the pure `core.claims`. API keys
are compared in constant time against every configured key, so timing says nothing
about how close a guess was. The two never stand in for each other: a JWT is no API key
and an API key is no JWT.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

import orjson
from jose import jws, jwt
from jose.exceptions import JOSEError

from notifier.core.claims import ClaimsError, UserIdentity, check_claims
from notifier.keys import KeySource, StaticKey

MAX_TOKEN_LENGTH = 8192


class AuthError(Exception):
    """Refused credentials; the message is safe to show the caller."""


@dataclass(frozen=True, slots=True)
class Publisher:
    name: str


class TokenVerifier:
    """Checks user tokens; built once, so the per-token work is the signature itself.

    The header is read first (with orjson) only to apply the allow-list and pick the
    key (`keys`: one static key, or a key set looked up by the header's `kid`, see
    `notifier.keys`); python-jose then checks the signature with a key object prepared
    in advance (given a string, jose would re-parse and re-build the key for every
    token), and the payload's claims go to `core.claims`.
    """

    def __init__(
        self,
        *,
        key: str | None = None,
        keys: KeySource | None = None,
        algorithms: list[str],
        audience: str | None = None,
        issuer: str | None = None,
        leeway: float = 0.0,
    ) -> None:
        if not algorithms or any(alg.lower() == "none" for alg in algorithms):
            raise ValueError("the JWT algorithm allow-list must name real algorithms")
        if (key is None) == (keys is None):
            raise ValueError("give a static key or a key source, not both or neither")
        self._algorithms = frozenset(algorithms)
        self.keys: KeySource = keys if keys is not None else StaticKey(key or "", algorithms)
        self._audience = audience
        self._issuer = issuer
        self._leeway = leeway

    def verify(self, token: str, *, now: float | None = None) -> UserIdentity:
        if not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
            raise AuthError("malformed token")
        try:
            header = orjson.loads(_b64decode(token.partition(".")[0]))
        except (ValueError, TypeError) as error:  # base64 or JSON
            raise AuthError("malformed token") from error
        if isinstance(header, dict) and "crit" in header:
            # RFC 7515, section 4.1.11: extensions listed in `crit` must be understood,
            # and this service understands none.
            raise AuthError("token header names critical extensions ('crit') not supported")
        alg = header.get("alg") if isinstance(header, dict) else None
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise AuthError("token algorithm not allowed")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise AuthError("malformed token")
        key = self.keys.find(kid, alg)
        if key is None:  # no configured key can verify this token
            raise AuthError("invalid token" if kid is None else "unknown token key ('kid')")
        try:
            payload = jws.verify(token, key, algorithms=[alg])
        except JOSEError as error:
            raise AuthError("invalid token signature") from error
        except (ValueError, TypeError) as error:
            raise AuthError("malformed token") from error
        try:
            claims = orjson.loads(payload)
        except orjson.JSONDecodeError as error:
            raise AuthError("malformed token") from error
        if not isinstance(claims, dict):
            raise AuthError("malformed token")
        try:
            return check_claims(
                claims,
                now=time.time() if now is None else now,
                leeway=self._leeway,
                audience=self._audience,
                issuer=self._issuer,
            )
        except ClaimsError as error:
            raise AuthError(str(error)) from error


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def parse_api_keys(entries: list[str]) -> list[tuple[str, bytes]]:
    """`name:key` or a bare key (named by a short digest, never by the key itself)."""
    parsed: list[tuple[str, bytes]] = []
    for entry in entries:
        name, sep, key = entry.partition(":")
        if not sep:
            key = entry
            name = "key-" + hashlib.sha256(entry.encode()).hexdigest()[:8]
        if key:
            parsed.append((name, key.encode()))
    return parsed


class ApiKeys:
    def __init__(self, entries: list[str]) -> None:
        self._keys = parse_api_keys(entries)

    def __bool__(self) -> bool:
        return bool(self._keys)

    def check(self, presented: str) -> Publisher:
        """Compare against every key (no early exit) in constant time per key."""
        candidate = presented.encode()
        found: str | None = None
        for name, key in self._keys:
            if hmac.compare_digest(candidate, key) and found is None:
                found = name
        if found is None:
            raise AuthError("invalid API key")
        return Publisher(found)


def bearer(authorization: str | None) -> str | None:
    """The credential of an `Authorization: Bearer ...` header, if that is its form."""
    if not authorization:
        return None
    scheme, _, credential = authorization.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return None
    return credential.strip()


def mint_token(
    secret: str, user_id: str, *, ttl_seconds: int = 86400, algorithm: str = "HS256"
) -> str:
    """A user token for development and tests (production tokens come from your IdP)."""
    now = int(time.time())
    claims = {"sub": user_id, "iat": now, "exp": now + ttl_seconds}
    return str(jwt.encode(claims, secret, algorithm=algorithm))
