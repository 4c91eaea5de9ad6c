"""Topics without I/O (notifier/core/topics.py): names, what a topic publish's key stands
for, how a repeated key is judged, and what a subscribers call may ask."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from notifier.core.idempotency import fingerprint
from notifier.core.publishing import IdempotencyConflict
from notifier.core.topics import (
    StoredKey,
    TopicPublish,
    TopicPublished,
    judge_topic_key,
    subscriber_changes,
    topic_fingerprint,
    valid_topic,
)

NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize("name", ["a", "order.42", "team:7", "A-Z_a-z.0-9:-", "t" * 255])
def test_valid_topic_names(name: str) -> None:
    assert valid_topic(name)


@pytest.mark.parametrize("name", ["", "t" * 256, "a b", "a/b", "é", "a\n", "a\x00", "a*", "a,b"])
def test_invalid_topic_names(name: str) -> None:
    assert not valid_topic(name)


def test_topic_fingerprint_compares_data_by_meaning() -> None:
    """Key order in `data` makes no difference; topic, type and data each do."""
    base = topic_fingerprint("t", "x", {"a": 1, "b": 2})
    assert base == topic_fingerprint("t", "x", {"b": 2, "a": 1})
    assert base != topic_fingerprint("u", "x", {"a": 1, "b": 2})
    assert base != topic_fingerprint("t", "y", {"a": 1, "b": 2})
    assert base != topic_fingerprint("t", "x", {"a": 1})


def test_topic_fingerprint_never_equals_a_direct_one() -> None:
    """A direct publish to a user named like the topic still differs: the forms differ."""
    assert topic_fingerprint("t", "x", {}) != fingerprint("t", "x", {})


def request(key: str | None = "k", data: dict[str, int] | None = None) -> TopicPublish:
    body = data or {"n": 1}
    return TopicPublish("p", "t", "x", "{}", topic_fingerprint("t", "x", body), key)


ORIGINAL = TopicPublished("t", "x", 5, NOW)


def test_new_key_publishes() -> None:
    assert judge_topic_key(request(), None) is None


def test_repeat_answers_the_original_as_not_created() -> None:
    stored = StoredKey(request().fingerprint, ORIGINAL)
    repeat = judge_topic_key(request(), stored)
    assert repeat is not None and not repeat.created
    assert repeat.body() == {"topic": "t", "type": "x", "recipients": 5}


def test_other_body_with_the_key_is_a_conflict() -> None:
    stored = StoredKey(request().fingerprint, ORIGINAL)
    with pytest.raises(IdempotencyConflict):
        judge_topic_key(request(data={"n": 2}), stored)


def test_key_of_a_direct_publish_is_a_conflict() -> None:
    """Even with an equal fingerprint (which cannot happen), a direct key is no topic's."""
    with pytest.raises(IdempotencyConflict):
        judge_topic_key(request(), StoredKey(request().fingerprint, None))


@pytest.mark.parametrize(
    ("add", "remove", "refused"),
    [
        ([], [], True),
        (["a"], [], False),
        ([], ["a"], False),
        (["a", "b"], ["c"], False),
        (["a", "b"], ["b"], True),
        (["a", "a"], [], False),
    ],
)
def test_subscriber_changes(add: list[str], remove: list[str], refused: bool) -> None:
    assert (subscriber_changes(add, remove) is not None) is refused
