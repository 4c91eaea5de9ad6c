"""What opening a stream reads from its request, the same for `/v1/ws` and `/v1/sse`: a
few headers, the query, the Origin rule and the user's token.

Both endpoints are plain ASGI (`api.ws`, `api.sse`), so these read the scope directly;
what they return is small and is freed once the stream is admitted.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from notifier.auth import bearer

Scope = MutableMapping[str, Any]


def headers(scope: Scope, names: tuple[bytes, ...]) -> dict[str, str]:
    """The request headers named (lower case), the last of each winning."""
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        if name in names:
            found[name.decode("latin-1")] = value.decode("latin-1")
    return found


def query(scope: Scope) -> dict[str, str]:
    """Starlette's rules: blank values kept, the last of a repeated name wins."""
    return dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))


def origin_refused(allowed: list[str], origin: str | None) -> bool:
    """A browser's `Origin` outside NOTIFIER_ALLOWED_ORIGINS (unset: any origin). A
    request with no Origin is not a browser's cross-site request: it is let through to
    the token check."""
    return bool(allowed) and origin is not None and origin not in allowed


def user_token(params: dict[str, str], found: dict[str, str]) -> str | None:
    """`access_token=` in the query (what a browser can send), else `Authorization`."""
    return params.get("access_token") or bearer(found.get("authorization"))
