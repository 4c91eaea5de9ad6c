"""The user's inbox: /v1/me/notifications (users)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response

from notifier.api import responses as doc
from notifier.api.body import JSONBytes, parse
from notifier.api.deps import ServiceDep, UserDep
from notifier.api.schemas import ArchiveIn, ReadIn
from notifier.wire.frames import MAX_SEQ
from notifier.wire.notification import list_body

router = APIRouter(prefix="/v1/me/notifications", tags=["inbox"])


_LIST_EXAMPLE = {
    "notifications": [
        {**doc.NOTIFICATION_EXAMPLE, "seq": 18, "id": "5d0f3c7a-1b2e-4c9d-8e6f-7a1b2c3d4e5f"},
        doc.NOTIFICATION_EXAMPLE,
    ]
}


@router.get(
    "",
    response_model=None,
    responses={
        200: doc.success(
            "The user's notifications: ascending with `after`, newest first otherwise.",
            doc.NotificationList,
            _LIST_EXAMPLE,
        ),
        401: doc.UNAUTHORIZED_USER,
        422: doc.INVALID_QUERY,
        503: doc.UNAVAILABLE,
    },
)
async def list_notifications(
    user: UserDep,
    service: ServiceDep,
    after: Annotated[int | None, Query(ge=0, le=MAX_SEQ)] = None,
    before: Annotated[int | None, Query(ge=0, le=MAX_SEQ)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    unread: bool = False,
    archived: Literal["false", "true", "any"] = "false",
) -> Response:
    """`after`: ascending from after+1; `before`: descending below it; neither: newest
    first. Archived notifications only with `archived=true` (only them) or `any`."""
    if after is not None and before is not None:
        raise HTTPException(422, detail="give 'after' or 'before', not both")
    items = await service.store.inbox(
        user.user_id,
        after=after,
        before=before,
        limit=limit,
        unread=unread,
        archived=None if archived == "any" else archived == "true",
    )
    return JSONBytes(list_body(items))


@router.get(
    "/unread-count",
    response_model=None,
    responses={
        200: doc.success(
            "Notifications of the user neither read nor archived.", doc.UnreadCount, {"unread": 3}
        ),
        401: doc.UNAUTHORIZED_USER,
        503: doc.UNAVAILABLE,
    },
)
async def unread_count(user: UserDep, service: ServiceDep) -> dict[str, int]:
    return {"unread": await service.store.unread_count(user.user_id)}


@router.post(
    "/read",
    response_model=None,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": ReadIn.model_json_schema(),
                    "examples": {
                        "up_to_seq": {"value": {"up_to_seq": 17}},
                        "ids": {"value": {"ids": [doc.NOTIFICATION_EXAMPLE["id"]]}},
                    },
                }
            },
        }
    },
    responses={
        200: doc.success(
            "`updated`: how many went from unread to read. The user's open sockets get a "
            "`read` frame when it is above 0.",
            doc.Updated,
            {"updated": 2},
        ),
        401: doc.UNAUTHORIZED_USER,
        413: doc.TOO_LARGE_BODY,
        422: doc.INVALID,
        503: doc.UNAVAILABLE,
    },
)
async def mark_read(request: Request, user: UserDep, service: ServiceDep) -> dict[str, int]:
    """Mark read by `up_to_seq` or by `ids`; the user's open sockets get a `read` frame."""
    body = await parse(request, ReadIn)
    if body.up_to_seq is not None:
        updated = await service.mark_read_up_to(user.user_id, body.up_to_seq)
    else:
        assert body.ids is not None
        updated = await service.mark_read_ids(user.user_id, body.ids)
    return {"updated": updated}


@router.post(
    "/archive",
    response_model=None,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": ArchiveIn.model_json_schema(),
                    "example": {"ids": [doc.NOTIFICATION_EXAMPLE["id"]]},
                }
            },
        }
    },
    responses={
        200: doc.success(
            "`archived`: how many went from not archived to archived (an archived "
            "notification is also read). The user's open sockets get `archived` frames "
            "naming them when it is above 0.",
            doc.Archived,
            {"archived": 1},
        ),
        401: doc.UNAUTHORIZED_USER,
        413: doc.TOO_LARGE_BODY,
        422: doc.INVALID,
        503: doc.UNAVAILABLE,
    },
)
async def archive(request: Request, user: UserDep, service: ServiceDep) -> dict[str, int]:
    """Archive the user's own notifications among `ids` (1..1000); ids of other users'
    notifications match nothing."""
    body = await parse(request, ArchiveIn)
    return {"archived": await service.archive_ids(user.user_id, body.ids)}
