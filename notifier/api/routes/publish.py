"""POST /v1/notifications and /v1/notifications/batch (publishers).

Served like every route, through the app's middleware and router, but by `LeanRoute`:
the dependencies here are plain functions of the request, which it calls directly
rather than through FastAPI's generic resolution (that cost more CPU than a publish
itself). Each route declares its own body limit (`max_body_size`), which `BodyLimit`
enforces before the route sees the body.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response

from notifier.api.body import (
    BATCH_BODY_LIMIT,
    SINGLE_BODY_LIMIT,
    JSONBytes,
    encode_data,
    parse,
)
from notifier.api.deps import (
    IDEMPOTENCY_KEY_PARAMETER,
    IdempotencyKeyDep,
    PublisherDep,
    ServiceDep,
)
from notifier.api.lean import LeanRoute
from notifier.api.limits import check_rate
from notifier.api.responses import BATCH_RESPONSES, PUBLISH_RESPONSES
from notifier.api.schemas import BatchIn, PublishIn
from notifier.core.idempotency import fingerprint
from notifier.store import IdempotencyConflict, NewNotification
from notifier.wire.notification import list_body

router = APIRouter(prefix="/v1/notifications", tags=["publish"], route_class=LeanRoute)

_JSON = "application/json"


def _new(
    item: PublishIn, key: str | None, max_payload: int, index: int | None = None
) -> NewNotification:
    data_json = encode_data(item.data, max_bytes=max_payload, index=index)
    return NewNotification(
        user_id=item.user_id,
        type=item.type,
        data_json=data_json,
        # Safe to serialize once `encode_data` admitted `data`: far below orjson's depth.
        fingerprint=fingerprint(item.user_id, item.type, item.data) if key is not None else "",
        idempotency_key=key,
    )


@router.post(
    "",
    status_code=201,
    max_body_size=SINGLE_BODY_LIMIT,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {_JSON: {"schema": PublishIn.model_json_schema()}},
        },
        "parameters": [IDEMPOTENCY_KEY_PARAMETER],
    },
    responses=PUBLISH_RESPONSES,
)
async def publish(
    request: Request, publisher: PublisherDep, key: IdempotencyKeyDep, service: ServiceDep
) -> Response:
    """Store one notification and push it to the user's open sockets."""
    check_rate(service, publisher.name, 1)
    item = await parse(request, PublishIn)
    new = _new(item, key, service.settings.max_payload_bytes)
    try:
        [result] = await service.publish(publisher.name, [new])
    except IdempotencyConflict as error:
        raise HTTPException(409, detail=str(error)) from None
    return JSONBytes(result.notification.json, status_code=201 if result.created else 200)


@router.post(
    "/batch",
    status_code=201,
    max_body_size=BATCH_BODY_LIMIT,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {_JSON: {"schema": BatchIn.model_json_schema()}},
        },
    },
    responses=BATCH_RESPONSES,
)
async def publish_batch(request: Request, publisher: PublisherDep, service: ServiceDep) -> Response:
    """Store 1..1000 notifications in one transaction: all of them or none."""
    batch = await parse(request, BatchIn)
    limit = service.settings.max_payload_bytes
    items = [
        _new(item, item.idempotency_key, limit, index)
        for index, item in enumerate(batch.notifications)
    ]
    check_rate(service, publisher.name, len(items))
    try:
        results = await service.publish(publisher.name, items)
    except IdempotencyConflict as error:
        raise HTTPException(409, detail=str(error)) from None
    return JSONBytes(list_body([r.notification for r in results]), status_code=201)
