"""Shared route dependencies, as `Annotated` aliases.

They are `async def` although they never await: FastAPI runs plain `def` dependencies
in its thread pool, a hop per request that costs more than the work itself.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from notifier import metrics
from notifier.auth import AuthError, Publisher, bearer
from notifier.core.claims import UserIdentity
from notifier.service import Service

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


async def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]


def _unauthorized(kind: str, detail: str) -> HTTPException:
    metrics.AUTH_REFUSED.labels(kind).inc()
    return HTTPException(401, detail=detail, headers=_CHALLENGE)


def authenticate_publisher(service: Service, request: Request) -> Publisher:
    """A publisher API key. A user token is not one: it fails like any wrong key."""
    key = bearer(request.headers.get("authorization"))
    if key is None:
        raise _unauthorized("publisher", "missing publisher API key")
    try:
        return service.api_keys.check(key)
    except AuthError as error:
        raise _unauthorized("publisher", str(error)) from None


async def current_user(request: Request, service: ServiceDep) -> UserIdentity:
    """A user JWT. An API key is not one: it fails like any malformed token."""
    token = bearer(request.headers.get("authorization"))
    if token is None:
        raise _unauthorized("user", "missing user token")
    try:
        return service.verifier.verify(token)
    except AuthError as error:
        raise _unauthorized("user", str(error)) from None


UserDep = Annotated[UserIdentity, Depends(current_user)]
