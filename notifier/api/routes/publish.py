"""POST /v1/notifications and /v1/notifications/batch (publishers).

The endpoints take the bare `Request` and do their own header reading, with no FastAPI
dependencies: `app.App` serves these two paths straight from uvicorn, without FastAPI's
routing and dependency resolution, which cost more CPU than a publish itself (measured
with py-spy: `solve_dependencies` alone was 13% of the server at full load). The routes
are declared here for the OpenAPI schema, and are what serves them in any other setup;
both ways run these functions and answer the same bytes (tests/test_direct.py).
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Request, Response

from notifier.api.body import parse
from notifier.api.deps import authenticate_publisher
from notifier.api.schemas import BatchIn, PublishIn
from notifier.core.idempotency import fingerprint
from notifier.service import Service
from notifier.store import IdempotencyConflict, NewNotification
from notifier.wire.notification import list_body

router = APIRouter(prefix="/v1/notifications", tags=["publish"])

PATH = "/v1/notifications"
BATCH_PATH = "/v1/notifications/batch"
_JSON = "application/json"
_KEY_HEADER: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": "A retry with the same key and body answers 200 with the original.",
}


def _new(
    item: PublishIn, key: str | None, max_payload: int, index: int | None = None
) -> NewNotification:
    try:
        data_json = orjson.dumps(item.data)
    except TypeError as error:  # an integer beyond 64 bits
        raise HTTPException(422, detail=f"data cannot be stored: {error}") from None
    if len(data_json) > max_payload:
        where = "data" if index is None else f"notifications[{index}].data"
        raise HTTPException(
            413, detail=f"{where} is {len(data_json)} bytes, over the {max_payload}-byte limit"
        )
    return NewNotification(
        user_id=item.user_id,
        type=item.type,
        data_json=data_json.decode(),
        fingerprint=fingerprint(item.user_id, item.type, item.data) if key is not None else "",
        idempotency_key=key,
    )


def _check_key(key: str | None) -> None:
    if key is not None and not (1 <= len(key) <= 255 and "\x00" not in key):
        raise HTTPException(422, detail="Idempotency-Key must be 1..255 characters")


@router.post(
    "",
    status_code=201,
    openapi_extra={
        "requestBody": {"content": {_JSON: {"schema": PublishIn.model_json_schema()}}},
        "parameters": [_KEY_HEADER],
    },
    responses={200: {"description": "Idempotent repeat: the original notification"}},
)
async def publish(request: Request) -> Response:
    """Store one notification and push it to the user's open sockets."""
    service: Service = request.app.state.service
    publisher = authenticate_publisher(service, request)
    key = request.headers.get("idempotency-key")
    _check_key(key)
    item = await parse(request, PublishIn)
    new = _new(item, key, service.settings.max_payload_bytes)
    try:
        [result] = await service.publish(publisher.name, [new])
    except IdempotencyConflict as error:
        raise HTTPException(409, detail=str(error)) from None
    return Response(
        result.notification.json, status_code=201 if result.created else 200, media_type=_JSON
    )


@router.post(
    "/batch",
    status_code=201,
    openapi_extra={
        "requestBody": {"content": {_JSON: {"schema": BatchIn.model_json_schema()}}},
    },
)
async def publish_batch(request: Request) -> Response:
    """Store 1..1000 notifications in one transaction: all of them or none."""
    service: Service = request.app.state.service
    publisher = authenticate_publisher(service, request)
    batch = await parse(request, BatchIn)
    limit = service.settings.max_payload_bytes
    items = [
        _new(item, item.idempotency_key, limit, index)
        for index, item in enumerate(batch.notifications)
    ]
    try:
        results = await service.publish(publisher.name, items)
    except IdempotencyConflict as error:
        raise HTTPException(409, detail=str(error)) from None
    return Response(list_body([r.notification for r in results]), status_code=201, media_type=_JSON)


ENDPOINTS = {PATH: publish, BATCH_PATH: publish_batch}
"""The endpoints `app.App` serves directly, by path (POST only)."""
