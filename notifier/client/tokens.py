"""User tokens as a subscriber sees them: where a fresh one comes from, and when the one
it holds runs out.

The client reads `exp` (and `iat`) from the token's payload without checking its
signature: it only decides when to ask the application for a new token, the service
checks everything.
"""

from __future__ import annotations

import base64
import binascii
import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Any

TokenSource = str | Callable[[], str | Awaitable[str]]
"""A fixed token, or a callable (plain or async) returning a fresh one on each call."""


async def fetch(source: TokenSource) -> str:
    """A token from `source`."""
    if isinstance(source, str):
        return source
    token = source()
    if inspect.isawaitable(token):
        token = await token
    if not isinstance(token, str) or not token:
        raise TypeError("the token callback must return a non-empty string")
    return token


def claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified; empty when it cannot be read."""
    try:
        payload = token.split(".")[1]
        decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return {}
    return decoded if isinstance(decoded, dict) else {}


def renew_in(token: str, now: float, *, margin: float = 60.0) -> float | None:
    """Seconds from `now` until the token should be renewed, or None when it says no
    `exp`. That is `margin` before `exp`, or a fifth of its lifetime before it for a
    short-lived token, and never less than 0."""
    body = claims(token)
    exp = body.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    iat = body.get("iat")
    lifetime = exp - iat if isinstance(iat, int | float) and not isinstance(iat, bool) else None
    early = margin if lifetime is None else min(margin, max(0.5, lifetime / 5))
    return max(0.0, exp - early - now)
