"""Users, for publishers: presence (single and bulk) and revocation ("log out everywhere").

Presence is read from the per-instance counts each instance flushes once a second
(`notifier.presence`); a revocation is recorded, announced to every instance and closes
the user's streams (`Service.revoke`).
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, HTTPException, Path, Request, Response

from notifier.api import paths  # noqa: F401  (registers {name:anything})
from notifier.api import responses as doc
from notifier.api.body import parse
from notifier.api.deps import PublisherDep, ServiceDep
from notifier.api.schemas import PresenceIn, RevokeIn
from notifier.wire.notification import rfc3339

router = APIRouter(tags=["users"])


UserIdPath = Annotated[
    str,
    Path(min_length=1, max_length=255, description="The user: a user token's `sub`."),
]

INVALID_USER = doc.error(
    "A `user_id` that is empty, over 255 characters or holds a NUL character.",
    too_long=[
        {
            "loc": ["path", "user_id"],
            "msg": "String should have at most 255 characters",
            "type": "string_too_long",
        }
    ],
)


def _check(user_id: str) -> None:
    if "\x00" in user_id:
        raise HTTPException(422, detail="user_id must not contain NUL characters")


@router.get(
    "/v1/users/{user_id:anything}/presence",
    response_model=None,
    responses={
        200: doc.success(
            "The user's open WebSocket and SSE streams over every instance; `online` is "
            "`connections > 0`. A connect or disconnect shows within 2 s; the streams of an "
            "instance that died stop counting within 30 s.",
            doc.UserPresence,
            {"user_id": "alice", "online": True, "connections": 2},
        ),
        401: doc.UNAUTHORIZED_PUBLISHER,
        422: INVALID_USER,
        503: doc.UNAVAILABLE,
    },
)
async def presence(
    user_id: UserIdPath, _publisher: PublisherDep, service: ServiceDep
) -> dict[str, Any]:
    _check(user_id)
    connections = (await service.presence_of([user_id]))[user_id]
    return {"user_id": user_id, "online": connections > 0, "connections": connections}


@router.post(
    "/v1/presence",
    response_model=None,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": PresenceIn.model_json_schema(),
                    "example": {"user_ids": ["alice", "bob"]},
                }
            },
        }
    },
    responses={
        200: doc.success(
            "Every asked user, online or not.",
            doc.PresenceMap,
            {
                "presence": {
                    "alice": {"online": True, "connections": 2},
                    "bob": {"online": False, "connections": 0},
                }
            },
        ),
        401: doc.UNAUTHORIZED_PUBLISHER,
        413: doc.TOO_LARGE_BODY,
        422: doc.INVALID,
        503: doc.UNAVAILABLE,
    },
)
async def bulk_presence(
    request: Request, _publisher: PublisherDep, service: ServiceDep
) -> Response:
    """`{"user_ids": [...]}`, 1..1000 ids. Serialized here with orjson: FastAPI's
    encoder would walk the 1,000 entries again."""
    body = await parse(request, PresenceIn)
    found = await service.presence_of(list(dict.fromkeys(body.user_ids)))
    answer = {"presence": {user: {"online": n > 0, "connections": n} for user, n in found.items()}}
    return Response(orjson.dumps(answer), media_type="application/json")


@router.post(
    "/v1/users/{user_id:anything}/revoke",
    response_model=None,
    responses={
        200: doc.success(
            "Revoked: every open stream of the user, on every instance, is closed with 4403 "
            "within a second, and every token of the user with no `iat`, or an `iat` at or "
            "before `revoked_at` truncated to whole seconds, is refused from now on.",
            doc.Revoked,
            {"user_id": "alice", "revoked_at": "2026-11-24T05:00:00.123456Z"},
        ),
        401: doc.UNAUTHORIZED_PUBLISHER,
        413: doc.TOO_LARGE_BODY,
        422: doc.error(
            "A body other than none or `{}`, or a bad `user_id`.",
            fields=[
                {
                    "loc": ["body", "reason"],
                    "msg": "Extra inputs are not permitted",
                    "type": "extra_forbidden",
                }
            ],
        ),
        503: doc.UNAVAILABLE,
    },
)
async def revoke(
    request: Request, user_id: UserIdPath, _publisher: PublisherDep, service: ServiceDep
) -> dict[str, str]:
    """Log the user out everywhere. No body, or `{}`."""
    _check(user_id)
    if await request.body():
        await parse(request, RevokeIn)
    revoked_at = await service.revoke(user_id)
    return {"user_id": user_id, "revoked_at": rfc3339(revoked_at)}
