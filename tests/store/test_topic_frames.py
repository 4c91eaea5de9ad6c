"""`Store.topic_frames` on PostgreSQL and SQLite: the frames one topic publish made for
the users an instance holds, each exactly the frame replay would send, and nothing for
users outside the publish (an earlier or later publish of the topic, or no topic)."""

from __future__ import annotations

import uuid

from notifier.core.topics import TopicPublish
from notifier.store import NewNotification, Store
from tests.support import new_user


async def test_a_publish_gives_the_frames_of_the_held_recipients_only(store: Store) -> None:
    topic = f"frames.{uuid.uuid4().hex[:10]}"
    recipients = sorted(new_user() for _ in range(30))
    await store.change_subscribers(topic, recipients, [])
    await store.publish("p", [NewNotification(recipients[0], "direct", "{}", "")])
    first = await store.publish_topic(TopicPublish("p", topic, "t", '{"n":1}', ""))
    second = await store.publish_topic(TopicPublish("p", topic, "t", '{"n":2}', ""))
    held = [*recipients[::3], new_user(), new_user()]  # two users outside the topic

    frames = await store.topic_frames(topic, first.created_at, held)

    expected = []
    for user in recipients[::3]:
        seq = 2 if user == recipients[0] else 1  # after the direct publish
        [(replayed_seq, replayed)] = await store.frames_after(user, seq - 1, 1)
        expected.append((user, replayed_seq, replayed))
    assert sorted(frames) == sorted(expected)
    assert all('"data":{"n":1}' in frame for _, _, frame in frames)
    later = await store.topic_frames(topic, second.created_at, held)
    assert sorted(u for u, _, _ in later) == sorted(recipients[::3])
    assert all('"data":{"n":2}' in frame for _, _, frame in later)
    assert await store.topic_frames(topic, first.created_at, [new_user()]) == []
    assert await store.topic_frames(topic, first.created_at, []) == []
