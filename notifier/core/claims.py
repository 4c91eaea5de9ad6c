"""Claim checks for user tokens, separate from signature checks so they can be tested
without keys or clocks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

MAX_EXP_AHEAD_SECONDS = 366 * 86400
"""An `exp` further ahead than this is refused: no access token lives a year, and one
that claims to (`exp` in milliseconds, or 1e300) is a bug or an attack. A socket's life
is bounded separately (NOTIFIER_MAX_TOKEN_LIFETIME_SECONDS)."""


class ClaimsError(ValueError):
    """The token's claims do not admit it; the message names the claim."""


@dataclass(frozen=True, slots=True)
class UserIdentity:
    user_id: str
    expires_at: float
    """`exp` as a POSIX timestamp: the moment a socket must be closed with 4401."""
    issued_at: float | None = None
    """`iat`, when the token has one: what a revocation is compared with."""


def _number(claims: Mapping[str, object], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ClaimsError(f"'{name}' must be a number")
    return float(value)


def check_claims(
    claims: Mapping[str, object],
    *,
    now: float,
    leeway: float = 0.0,
    audience: str | None = None,
    issuer: str | None = None,
) -> UserIdentity:
    """Admit or refuse a verified token's claims.

    `exp` is required (a token without it would never expire); `nbf` and `iat` are
    honoured when present; `aud` and `iss` are checked only when configured.
    """
    sub = claims.get("sub")
    if not isinstance(sub, str) or not 1 <= len(sub) <= 255:
        raise ClaimsError("'sub' must be a string of 1..255 characters")
    if "\x00" in sub:  # a user id never holds NUL (publish refuses it; PostgreSQL cannot)
        raise ClaimsError("'sub' must not contain NUL characters")
    exp = _number(claims, "exp")
    if exp is None:
        raise ClaimsError("'exp' is required")
    if now >= exp + leeway:
        raise ClaimsError("token expired")
    if exp > now + leeway + MAX_EXP_AHEAD_SECONDS:
        raise ClaimsError("'exp' is more than 366 days ahead")
    nbf = _number(claims, "nbf")
    if nbf is not None and now + leeway < nbf:
        raise ClaimsError("token not yet valid")
    iat = _number(claims, "iat")
    if iat is not None and now + leeway < iat:
        raise ClaimsError("token issued in the future")
    if audience is not None:
        aud = claims.get("aud")
        allowed = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if audience not in allowed:
            raise ClaimsError("'aud' does not match")
    if issuer is not None and claims.get("iss") != issuer:
        raise ClaimsError("'iss' does not match")
    return UserIdentity(user_id=sub, expires_at=exp + leeway, issued_at=iat)
