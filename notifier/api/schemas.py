"""Request bodies. Strict: no type coercion, no unknown fields."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from notifier.core.topics import MAX_CHANGES, subscriber_changes
from notifier.wire.frames import MAX_SEQ


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError as error:
        raise ValueError("must be a notification id (UUID)") from error


Name = Annotated[str, StringConstraints(min_length=1, max_length=255), AfterValidator(_no_nul)]
IdempotencyKey = Annotated[
    str, StringConstraints(min_length=1, max_length=255), AfterValidator(_no_nul)
]
Seq = Annotated[int, Field(ge=0, le=MAX_SEQ)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class PublishIn(_Strict):
    user_id: Name
    type: Name
    data: dict[str, Any]


class BatchItemIn(PublishIn):
    idempotency_key: IdempotencyKey | None = None


class BatchIn(_Strict):
    notifications: Annotated[list[BatchItemIn], Field(min_length=1, max_length=1000)]


class ReadIn(_Strict):
    up_to_seq: Seq | None = None
    ids: (
        Annotated[list[Annotated[str, AfterValidator(_uuid)]], Field(min_length=1, max_length=1000)]
        | None
    ) = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ReadIn:
        if (self.up_to_seq is None) == (self.ids is None):
            raise ValueError("give exactly one of 'up_to_seq' or 'ids'")
        return self


class SubscribersIn(_Strict):
    add: Annotated[list[Name], Field(max_length=MAX_CHANGES)] = Field(default_factory=list)
    remove: Annotated[list[Name], Field(max_length=MAX_CHANGES)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _a_change(self) -> SubscribersIn:
        problem = subscriber_changes(self.add, self.remove)
        if problem is not None:
            raise ValueError(problem)
        return self


class TopicPublishIn(_Strict):
    type: Name
    data: dict[str, Any]


class ArchiveIn(_Strict):
    ids: Annotated[
        list[Annotated[str, AfterValidator(_uuid)]], Field(min_length=1, max_length=1000)
    ]


UserId = Annotated[str, StringConstraints(min_length=1, max_length=255), AfterValidator(_no_nul)]


class PresenceIn(_Strict):
    user_ids: Annotated[list[UserId], Field(min_length=1, max_length=1000)]


class RevokeIn(_Strict):
    """`POST /v1/users/{user_id}/revoke` takes no body, or `{}`."""
