"""/v1/topics/{topic}/... (publishers): a topic's subscribers, and a publish to all of them.

A topic is a named set of users shared by all publishers; it exists while it has
subscribers. The name is checked against the contract's pattern here (422); the path
parameter takes any text, slashes included, so that a name with a slash is refused as
malformed rather than routed nowhere.
"""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, HTTPException, Path, Query, Request, Response

from notifier.api import paths  # noqa: F401  (registers {name:anything})
from notifier.api import responses as doc
from notifier.api.body import encode_data, parse
from notifier.api.deps import (
    IDEMPOTENCY_KEY_PARAMETER,
    IdempotencyKeyDep,
    PublisherDep,
    ServiceDep,
)
from notifier.api.limits import check_rate
from notifier.api.schemas import SubscribersIn, TopicPublishIn
from notifier.core.topics import TOPIC_PATTERN, TooManyRecipients, TopicPublish, topic_fingerprint
from notifier.store import IdempotencyConflict

router = APIRouter(prefix="/v1/topics", tags=["topics"])

_JSON = "application/json"
Topic = Annotated[
    str,
    Path(
        pattern=TOPIC_PATTERN,
        description="1..255 characters of `A-Z a-z 0-9 . _ : -`.",
        examples=["order.42"],
    ),
]


@router.post(
    "/{topic:anything}/subscribers",
    response_model=None,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                _JSON: {
                    "schema": SubscribersIn.model_json_schema(),
                    "example": {"add": ["alice", "bob"], "remove": ["carol"]},
                }
            },
        }
    },
    responses=doc.SUBSCRIBERS_CHANGE_RESPONSES,
)
async def change_subscribers(
    request: Request, topic: Topic, _publisher: PublisherDep, service: ServiceDep
) -> dict[str, int]:
    """Subscribe the users of `add` and unsubscribe those of `remove` (0..1000 each, not
    both empty, no id in both)."""
    body = await parse(request, SubscribersIn)
    added, removed = await service.store.change_subscribers(topic, body.add, body.remove)
    return {"added": added, "removed": removed}


@router.get(
    "/{topic:anything}/subscribers", response_model=None, responses=doc.SUBSCRIBERS_LIST_RESPONSES
)
async def list_subscribers(
    topic: Topic,
    _publisher: PublisherDep,
    service: ServiceDep,
    after: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, list[str]]:
    """Ascending by user id (byte order), from after `after` (exclusive)."""
    return {"user_ids": await service.store.subscribers(topic, after, limit)}


@router.post(
    "/{topic:anything}/notifications",
    status_code=201,
    response_model=None,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                _JSON: {
                    "schema": TopicPublishIn.model_json_schema(),
                    "example": {"type": "order.shipped", "data": {"order": 42}},
                }
            },
        },
        "parameters": [IDEMPOTENCY_KEY_PARAMETER],
    },
    responses=doc.TOPIC_PUBLISH_RESPONSES,
)
async def publish_topic(
    request: Request,
    topic: Topic,
    publisher: PublisherDep,
    key: IdempotencyKeyDep,
    service: ServiceDep,
) -> Response:
    """One notification for each user subscribed to the topic at that moment, each in
    that user's own stream, all committed at once; `201` `{"topic", "type",
    "recipients"}`."""
    check_rate(service, publisher.name, 1)
    body = await parse(request, TopicPublishIn)
    # The checks of every stored `data` (depth, integers, size): the fingerprint below
    # nests it two levels deeper, which orjson could not serialize past 252 levels.
    data_json = encode_data(body.data, max_bytes=service.settings.max_payload_bytes)
    publish = TopicPublish(
        publisher=publisher.name,
        topic=topic,
        type=body.type,
        data_json=data_json,
        fingerprint=topic_fingerprint(topic, body.type, body.data) if key is not None else "",
        idempotency_key=key,
    )
    try:
        result = await service.publish_topic(publish)
    except IdempotencyConflict as error:
        raise HTTPException(409, detail=str(error)) from None
    except TooManyRecipients as error:
        raise HTTPException(413, detail=str(error)) from None
    return Response(
        orjson.dumps(result.body()), status_code=201 if result.created else 200, media_type=_JSON
    )
