"""Topics, without I/O: what a topic name may be, what a topic publish's idempotency key
stands for, and how a repeated key is answered.

A topic publish shares its publisher's key space with direct publishes. Its fingerprint
is a digest of a 4-element canonical form (`["topic", topic, type, data]`), while a direct
publish digests a 3-element one (`[user_id, type, data]`), so a key used for one kind is
never judged a repeat by the other: it is a conflict, as the contract asks.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from notifier.core.idempotency import Verdict, judge
from notifier.core.publishing import IdempotencyConflict

MAX_RECIPIENTS = 100_000
"""Subscribers one topic publish may reach; over it the publish is refused (413)."""
MAX_CHANGES = 1000
"""Ids in each of `add` and `remove` of one subscribers call."""
TOPIC_PATTERN = r"^[A-Za-z0-9._:-]{1,255}$"
_TOPIC = re.compile(TOPIC_PATTERN)


def valid_topic(name: str) -> bool:
    """1..255 characters of `A-Z a-z 0-9 . _ : -`."""
    return _TOPIC.fullmatch(name) is not None


def topic_fingerprint(topic: str, type_: str, data: dict[str, Any]) -> str:
    """What a topic publish's idempotency key stands for (never equal to a direct one's)."""
    canonical = orjson.dumps(["topic", topic, type_, data], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


class TooManyRecipients(Exception):
    """The topic has more subscribers than one publish may reach; nothing was stored."""

    def __init__(self, topic: str, count: int) -> None:
        super().__init__(
            f"topic {topic!r} has {count} subscribers or more, over the "
            f"{MAX_RECIPIENTS} one publish may reach"
        )
        self.count = count


@dataclass(frozen=True, slots=True)
class TopicPublish:
    """A validated topic publish request."""

    publisher: str
    topic: str
    type: str
    data_json: str
    fingerprint: str
    """Empty without a key (never compared)."""
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class TopicPublished:
    """The answer to a topic publish: `201` when `created`, else `200` (a repeat)."""

    topic: str
    type: str
    recipients: int
    created_at: datetime
    created: bool = True

    def body(self) -> dict[str, object]:
        return {"topic": self.topic, "type": self.type, "recipients": self.recipients}


@dataclass(frozen=True, slots=True)
class StoredKey:
    """What a publisher's key already stands for, found before a topic publish: a topic
    publish's answer (`original`), or a direct publish (`original` None)."""

    fingerprint: str
    original: TopicPublished | None


def judge_topic_key(request: TopicPublish, stored: StoredKey | None) -> TopicPublished | None:
    """None: the key is new (publish). The original answer: a repeat. Raises
    IdempotencyConflict for any other use of the key, a direct publish's included."""
    if stored is None:
        return None
    key = request.idempotency_key or ""
    if stored.original is None or judge(stored.fingerprint, request.fingerprint) is not (
        Verdict.REPEAT
    ):
        raise IdempotencyConflict(key)
    return TopicPublished(
        topic=stored.original.topic,
        type=stored.original.type,
        recipients=stored.original.recipients,
        created_at=stored.original.created_at,
        created=False,
    )


def subscriber_changes(add: list[str], remove: list[str]) -> str | None:
    """Why an add/remove pair is refused (422), or None."""
    if not add and not remove:
        return "give at least one user id in 'add' or 'remove'"
    both = set(add) & set(remove)
    if both:
        return f"user id {sorted(both)[0]!r} is in both 'add' and 'remove'"
    return None
