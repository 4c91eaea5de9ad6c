"""The user's inbox: /v1/me/notifications (users)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response

from notifier.api.body import parse
from notifier.api.deps import ServiceDep, UserDep
from notifier.api.schemas import ReadIn
from notifier.wire.frames import MAX_SEQ
from notifier.wire.notification import list_body

router = APIRouter(prefix="/v1/me/notifications", tags=["inbox"])


@router.get("")
async def list_notifications(
    user: UserDep,
    service: ServiceDep,
    after: Annotated[int | None, Query(ge=0, le=MAX_SEQ)] = None,
    before: Annotated[int | None, Query(ge=0, le=MAX_SEQ)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    unread: bool = False,
) -> Response:
    """`after`: ascending from after+1; `before`: descending below it; neither: newest
    first."""
    if after is not None and before is not None:
        raise HTTPException(422, detail="give 'after' or 'before', not both")
    items = await service.store.inbox(
        user.user_id, after=after, before=before, limit=limit, unread=unread
    )
    return Response(list_body(items), media_type="application/json")


@router.get("/unread-count")
async def unread_count(user: UserDep, service: ServiceDep) -> dict[str, int]:
    return {"unread": await service.store.unread_count(user.user_id)}


@router.post(
    "/read",
    openapi_extra={
        "requestBody": {"content": {"application/json": {"schema": ReadIn.model_json_schema()}}}
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
