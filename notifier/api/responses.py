"""Every answer of the HTTP routes, for the OpenAPI document served at /openapi.json.

The routes answer raw JSON bytes (a notification is serialized once and reused), so
FastAPI cannot infer their answers: each route declares them from here, with an example
for every status code it can give. tests/api/test_openapi.py provokes each code and
checks that the document names it.

The Notification schema is written once, here; docs/asyncapi.yaml holds the same schema
for the WebSocket frames (tests/api/test_asyncapi.py keeps the two equal).
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

from pydantic import BaseModel, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

Responses = dict[int | str, dict[str, Any]]

NOTIFICATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        "One notification, the same object in every HTTP answer and WebSocket frame. "
        "Fields may be added; these nine are always present."
    ),
    "required": [
        "id",
        "user_id",
        "seq",
        "type",
        "data",
        "created_at",
        "read_at",
        "topic",
        "archived_at",
    ],
    "properties": {
        "id": {"type": "string", "format": "uuid", "description": "Unique id."},
        "user_id": {
            "type": "string",
            "minLength": 1,
            "maxLength": 255,
            "description": "The recipient: a user token's `sub`.",
        },
        "seq": {
            "type": "integer",
            "minimum": 1,
            "description": (
                "Position in the user's stream: 1 for the user's first notification, then "
                "the next integer for each one committed, in commit order, with no gap."
            ),
        },
        "type": {
            "type": "string",
            "minLength": 1,
            "maxLength": 255,
            "description": "The publisher's event type, e.g. `comment.created`.",
        },
        "data": {
            "type": "object",
            "description": "The publisher's JSON object, returned as compact JSON.",
        },
        "created_at": {
            "type": "string",
            "format": "date-time",
            "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$",
            "description": "When it was committed: RFC 3339, UTC, `Z` suffix.",
        },
        "read_at": {
            "type": ["string", "null"],
            "format": "date-time",
            "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$",
            "description": "When the user marked it read, or null while unread.",
        },
        "topic": {
            "type": ["string", "null"],
            "maxLength": 255,
            "description": (
                "The topic it was published to, or null for a notification addressed to "
                "the user directly."
            ),
        },
        "archived_at": {
            "type": ["string", "null"],
            "format": "date-time",
            "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$",
            "description": "When the user archived it, or null.",
        },
    },
}

NOTIFICATION_EXAMPLE: dict[str, Any] = {
    "id": "0b6c1f5e-6f2a-4d8e-9a51-3f0c2b7d9e14",
    "user_id": "alice",
    "seq": 17,
    "type": "comment.created",
    "data": {"post": 42, "text": "Nice!"},
    "created_at": "2026-11-24T05:00:00.123456Z",
    "read_at": None,
    "topic": None,
    "archived_at": None,
}

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        "Every refusal. `detail` is a sentence, or for a malformed request FastAPI's list "
        "of `{loc, msg, type}` objects naming each bad field."
    ),
    "required": ["detail"],
    "properties": {
        "detail": {
            "anyOf": [
                {"type": "string"},
                {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["loc", "msg", "type"],
                        "properties": {
                            "loc": {
                                "type": "array",
                                "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                            },
                            "msg": {"type": "string"},
                            "type": {"type": "string"},
                        },
                    },
                },
            ]
        }
    },
}


class _Documented(BaseModel):
    """A schema for the document only: its JSON Schema is written by hand (`schema_`),
    and FastAPI lists it once under `components/schemas` by the class name."""

    schema_: ClassVar[dict[str, Any]] = {}

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return copy.deepcopy(cls.schema_)


class Notification(_Documented):
    schema_ = NOTIFICATION_SCHEMA


class Error(_Documented):
    schema_ = ERROR_SCHEMA


class NotificationList(BaseModel):
    notifications: list[Notification]


class UnreadCount(BaseModel):
    unread: int


class Updated(BaseModel):
    updated: int


class Archived(BaseModel):
    archived: int


class UserPresence(BaseModel):
    user_id: str
    online: bool
    connections: int


class PresenceEntry(BaseModel):
    online: bool
    connections: int


class PresenceMap(BaseModel):
    presence: dict[str, PresenceEntry]


class Revoked(BaseModel):
    user_id: str
    revoked_at: str


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    database: str
    bus: str
    bus_kind: str
    detail: str | None = None


_JSON = "application/json"
_AUTHENTICATE = {
    "WWW-Authenticate": {
        "description": "`Bearer`: the credential to send.",
        "schema": {"type": "string", "example": "Bearer"},
    }
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer", "example": 1},
    }
}


def _examples(**details: Any) -> dict[str, Any]:
    return {name: {"value": {"detail": detail}} for name, detail in details.items()}


def error(
    description: str, headers: dict[str, Any] | None = None, **details: Any
) -> dict[str, Any]:
    """A documented refusal: `{"detail": ...}` with one named example per cause."""
    response: dict[str, Any] = {
        "description": description,
        "model": Error,
        "content": {_JSON: {"examples": _examples(**details)}},
    }
    if headers:
        response["headers"] = headers
    return response


def success(
    description: str, model: type[BaseModel], example: Any, headers: dict[str, Any] | None = None
) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "model": model,
        "content": {_JSON: {"example": example}},
    }
    if headers:
        response["headers"] = headers
    return response


UNAUTHORIZED_USER = error(
    "No user token, or a token that fails a check (an API key is not a user token).",
    headers=_AUTHENTICATE,
    missing="missing user token",
    expired="token expired",
    bad_signature="invalid token signature",
)
UNAUTHORIZED_PUBLISHER = error(
    "No publisher API key, or a wrong one (a user token is not an API key).",
    headers=_AUTHENTICATE,
    missing="missing publisher API key",
    wrong="invalid API key",
)
FORBIDDEN = error(
    "A valid identity doing what it may not.",
    forbidden="not allowed",
)
CONFLICT = error(
    "The Idempotency-Key was used before by this publisher with another body.",
    conflict="Idempotency-Key 'order-42-shipped' was already used with another request",
)
TOO_LARGE_SINGLE = error(
    "The body is over 1 MiB, or `data` over NOTIFIER_MAX_PAYLOAD_BYTES. Nothing is stored.",
    body="request body larger than 1048576 bytes",
    data="data is 70000 bytes, over the 65536-byte limit",
)
TOO_LARGE_BATCH = error(
    "The body is over 16 MiB, or an item's `data` over NOTIFIER_MAX_PAYLOAD_BYTES. "
    "Nothing is stored.",
    body="request body larger than 16777216 bytes",
    data="notifications[3].data is 70000 bytes, over the 65536-byte limit",
)
TOO_LARGE_BODY = error(
    "The body is over 1 MiB.",
    body="request body larger than 1048576 bytes",
)
INVALID = error(
    "Malformed: not JSON, wrong types, unknown fields, values out of range. Nothing changes.",
    not_json="body is not valid JSON: unexpected character: line 1 column 1 (char 0)",
    fields=[
        {
            "loc": ["body", "user_id"],
            "msg": "String should have at least 1 character",
            "type": "string_too_short",
        },
    ],
)
INVALID_QUERY = error(
    "A malformed or out-of-range query value, or both `after` and `before`.",
    both="give 'after' or 'before', not both",
    out_of_range=[
        {
            "loc": ["query", "limit"],
            "msg": "Input should be less than or equal to 500",
            "type": "less_than_equal",
        },
    ],
)
UNAVAILABLE = error(
    "The database is unavailable; nothing changed. Retry (a publish with the same "
    "Idempotency-Key: it is stored once).",
    headers=_RETRY_AFTER,
    database="database unavailable; retry (with the same Idempotency-Key)",
)

RATE_LIMITED = error(
    "Over NOTIFIER_PUBLISH_RATE: this publisher published more notifications through this "
    "instance than its rate allows (a batch counts its items, a topic publish 1). Nothing "
    "is stored; retry after `Retry-After` seconds.",
    headers=_RETRY_AFTER,
    rate="publisher 'main' is over its publish rate; retry in 1 s",
)

PUBLISH_RESPONSES: Responses = {
    200: success(
        "A repeat of an earlier request (same Idempotency-Key, same body): the original "
        "notification; nothing is delivered again.",
        Notification,
        NOTIFICATION_EXAMPLE,
    ),
    201: success(
        "Stored, and pushed to the user's open sockets.", Notification, NOTIFICATION_EXAMPLE
    ),
    401: UNAUTHORIZED_PUBLISHER,
    409: CONFLICT,
    413: TOO_LARGE_SINGLE,
    422: INVALID,
    429: RATE_LIMITED,
    503: UNAVAILABLE,
}
"""For `POST /v1/notifications`: `responses=PUBLISH_RESPONSES`."""

BATCH_RESPONSES: Responses = {
    201: success(
        "Every item stored in one transaction, in request order; an item whose "
        "`idempotency_key` was used before comes back as its original, in place.",
        NotificationList,
        {"notifications": [NOTIFICATION_EXAMPLE, {**NOTIFICATION_EXAMPLE, "seq": 18}]},
    ),
    401: UNAUTHORIZED_PUBLISHER,
    409: CONFLICT,
    413: TOO_LARGE_BATCH,
    422: INVALID,
    429: RATE_LIMITED,
    503: UNAVAILABLE,
}
"""For `POST /v1/notifications/batch`: `responses=BATCH_RESPONSES`. A batch never
answers 200: a batch whose every item is a repeat is still `201`."""


# -- topics ---------------------------------------------------------------------------


class SubscribersChanged(BaseModel):
    added: int
    removed: int


class SubscriberList(BaseModel):
    user_ids: list[str]


class TopicPublished(BaseModel):
    topic: str
    type: str
    recipients: int


TOPIC_PUBLISH_EXAMPLE = {"topic": "order.42", "type": "order.shipped", "recipients": 3}

TOO_LARGE_TOPIC = error(
    "The body is over 1 MiB, `data` over NOTIFIER_MAX_PAYLOAD_BYTES, or the topic has "
    "more than 100,000 subscribers. Nothing is stored.",
    body="request body larger than 1048576 bytes",
    data="data is 70000 bytes, over the 65536-byte limit",
    subscribers="topic 'all' has 100001 subscribers or more, over the 100000 one publish may reach",
)
INVALID_TOPIC = error(
    "Malformed: a topic name outside 1..255 characters of `A-Z a-z 0-9 . _ : -`, not JSON, "
    "wrong types, unknown fields, values out of range. Nothing changes.",
    topic=[
        {
            "loc": ["path", "topic"],
            "msg": "String should match pattern '^[A-Za-z0-9._:-]{1,255}$'",
            "type": "string_pattern_mismatch",
        },
    ],
    not_json="body is not valid JSON: unexpected character: line 1 column 1 (char 0)",
)

SUBSCRIBERS_CHANGE_RESPONSES: Responses = {
    200: success(
        "`added`: ids that were not subscribed and now are; `removed`: the reverse. A "
        "repeated call changes nothing and answers zeros.",
        SubscribersChanged,
        {"added": 2, "removed": 1},
    ),
    401: UNAUTHORIZED_PUBLISHER,
    413: TOO_LARGE_BODY,
    422: INVALID_TOPIC,
    503: UNAVAILABLE,
}
SUBSCRIBERS_LIST_RESPONSES: Responses = {
    200: success(
        "A page of the topic's subscribers, ascending by user id (byte order); an unknown "
        "topic answers an empty list.",
        SubscriberList,
        {"user_ids": ["alice", "bob"]},
    ),
    401: UNAUTHORIZED_PUBLISHER,
    422: INVALID_TOPIC,
    503: UNAVAILABLE,
}
TOPIC_PUBLISH_RESPONSES: Responses = {
    200: success(
        "A repeat of an earlier topic publish (same Idempotency-Key, topic, `type` and "
        "`data`): its original answer; nothing is stored or delivered again.",
        TopicPublished,
        TOPIC_PUBLISH_EXAMPLE,
    ),
    201: success(
        "One notification stored for each user subscribed at that moment, all in one "
        "commit, then delivered to their open sockets; `recipients` may be 0.",
        TopicPublished,
        TOPIC_PUBLISH_EXAMPLE,
    ),
    401: UNAUTHORIZED_PUBLISHER,
    409: error(
        "The Idempotency-Key was used before by this publisher for another request: "
        "another topic, `type` or `data`, or a direct publish.",
        conflict="Idempotency-Key 'order-42-shipped' was already used with another request",
    ),
    413: TOO_LARGE_TOPIC,
    422: INVALID_TOPIC,
    429: RATE_LIMITED,
    503: UNAVAILABLE,
}
