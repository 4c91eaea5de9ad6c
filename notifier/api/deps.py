"""Shared route dependencies, as `Annotated` aliases.

They are `async def` although they never await: FastAPI runs plain `def` dependencies
in its thread pool, a hop per request that costs more than the work itself. Those of the
publish routes are functions of the `Request` alone, with no dependencies of their own:
`api.lean` calls such dependencies directly instead of through FastAPI's generic
resolution.
"""

from __future__ import annotations

from typing import Annotated, Any

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


async def current_publisher(request: Request) -> Publisher:
    """A publisher API key. A user token is not one: it fails like any wrong key."""
    key = bearer(request.headers.get("authorization"))
    if key is None:
        raise _unauthorized("publisher", "missing publisher API key")
    service: Service = request.app.state.service
    try:
        return service.api_keys.check(key)
    except AuthError as error:
        raise _unauthorized("publisher", str(error)) from None


PublisherDep = Annotated[Publisher, Depends(current_publisher)]


async def idempotency_key(request: Request) -> str | None:
    """The `Idempotency-Key` header. Checked here rather than as a FastAPI `Header`
    parameter so that a bad key gets the contract's one-line 422, not a validation list;
    `IDEMPOTENCY_KEY_PARAMETER` describes the same rule in the OpenAPI schema."""
    key = request.headers.get("idempotency-key")
    if key is not None and not (1 <= len(key) <= 255 and "\x00" not in key):
        raise HTTPException(422, detail="Idempotency-Key must be 1..255 characters")
    return key


IdempotencyKeyDep = Annotated[str | None, Depends(idempotency_key)]

IDEMPOTENCY_KEY_PARAMETER: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": "A retry with the same key and body answers 200 with the original.",
}
"""The OpenAPI parameter of a route taking `IdempotencyKeyDep` (`openapi_extra`)."""


async def current_user(request: Request, service: ServiceDep) -> UserIdentity:
    """A user JWT. An API key is not one: it fails like any malformed token."""
    token = bearer(request.headers.get("authorization"))
    if token is None:
        raise _unauthorized("user", "missing user token")
    try:
        return await service.authenticate(token)  # signature, claims, revocation
    except AuthError as error:
        raise _unauthorized("user", str(error)) from None


UserDep = Annotated[UserIdentity, Depends(current_user)]
