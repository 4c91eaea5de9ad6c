"""A topic publish offered to the sockets one instance holds (`notifier.fanout`), on the
real databases: each held recipient is offered its own row of the publish with the frame
a replay would send, users outside the topic nothing, and a user whose sockets are far
behind is offered its head (its sockets read the rest), by either read the fan-out may
choose: the held users' next rows, or the publish's rows."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest

from notifier.core.topics import TopicPublish, topic_fingerprint
from notifier.fanout import NEXT_ROWS, TopicFanout
from notifier.hub import Hub
from notifier.store import NewNotification, Store
from notifier.wire.announcement import TopicAnnouncement


class Stream:
    def __init__(self, known_seq: int) -> None:
        self.issued_at: float | None = None
        self.known_seq = known_seq
        self.offers: list[tuple[int, str | None]] = []

    def offer(self, seq: int, frame: str | None, created_at: float | None) -> None:
        self.offers.append((seq, frame))

    def push(self, frame: str) -> None:
        pass

    def request_close(self, code: int, reason: str) -> None:
        pass


async def _direct(store: Store, user: str, count: int) -> int:
    """`count` direct publishes to `user`; its head after them."""
    published = await store.publish(
        "p", [NewNotification(user, "direct", "{}", "") for _ in range(count)]
    )
    return max(p.notification.seq for p in published)


async def _setup(store: Store) -> tuple[str, dict[str, int], datetime, int]:
    """A topic of `near`, `current` and `behind` (and 40 others), each with direct history
    before one topic publish; `outsider` holds direct rows only. Returns the topic, each
    user's head before the publish, its created_at and its recipient count."""
    tag = uuid.uuid4().hex[:10]
    topic = f"fan.{tag}"
    users = {name: f"{name}-{tag}" for name in ("near", "current", "behind", "outsider")}
    others = [f"other{i}-{tag}" for i in range(40)]
    await store.change_subscribers(
        topic, [users["near"], users["current"], users["behind"], *others], []
    )
    heads = {
        users["near"]: await _direct(store, users["near"], 3),
        users["current"]: await _direct(store, users["current"], 2),
        users["behind"]: await _direct(store, users["behind"], NEXT_ROWS + 4),
        users["outsider"]: await _direct(store, users["outsider"], 2),
    }
    result = await store.publish_topic(
        TopicPublish("p", topic, "shipped", '{"order":42}', topic_fingerprint(topic, "t", {}))
    )
    return topic, heads, result.created_at, result.recipients


@pytest.mark.parametrize("recipients_known", [True, False], ids=["held-rows", "publish-rows"])
async def test_each_held_recipient_is_offered_its_row_or_its_head(
    store: Store, recipients_known: bool
) -> None:
    topic, heads, created_at, recipients = await _setup(store)
    near, current, behind, outsider = heads
    hub = Hub()
    streams = {
        near: Stream(heads[near]),
        current: Stream(heads[current] + 1),  # already has the topic's row
        behind: Stream(0),  # e.g. a socket whose replay has not begun
        outsider: Stream(heads[outsider]),
    }
    for user, stream in streams.items():
        hub.add(user, stream)
    count = recipients if recipients_known else None
    await TopicFanout(store, hub).resolve(TopicAnnouncement(topic, created_at, count))

    [(seq, frame)] = streams[near].offers
    assert seq == heads[near] + 1
    [(replayed_seq, replayed_frame)] = await store.frames_after(near, heads[near], 10)
    assert (seq, frame) == (replayed_seq, replayed_frame)
    assert frame is not None and f'"topic":"{topic}"' in frame

    assert streams[outsider].offers == []
    # Offering the row again is harmless (its sequencer drops it); only never offering
    # a missing one would lose it.
    assert all(seq <= heads[current] + 1 for seq, _ in streams[current].offers)

    topic_seq = heads[behind] + 1
    [(offered, offered_frame)] = streams[behind].offers
    if offered_frame is None:  # its head: the socket reads every row up to it
        assert offered == topic_seq
    else:
        assert offered == topic_seq and f'"topic":"{topic}"' in offered_frame


async def test_unsure_users_are_named_only_on_a_full_page(store: Store) -> None:
    """`Store.topic_frames_after`: a user whose next rows hold the publish's is found; one
    with nothing after its position, or a few rows none of them the publish's, is
    neither found nor unsure; the PostgreSQL read names a user unsure only after a whole
    page without the publish's row (SQLite reads the publish's rows and is never unsure)."""
    topic, heads, created_at, _ = await _setup(store)
    near, current, behind, outsider = heads
    found, unsure = await store.topic_frames_after(
        topic,
        created_at,
        [
            (near, heads[near]),
            (current, heads[current] + 1),
            (behind, 0),
            (outsider, heads[outsider] - 1),
        ],
        NEXT_ROWS,
    )
    by_user = {user: seq for user, seq, _ in found}
    assert by_user.get(near) == heads[near] + 1
    assert current not in by_user and current not in unsure
    assert outsider not in by_user and outsider not in unsure
    if unsure:
        assert unsure == [behind] and behind not in by_user
    else:
        assert by_user[behind] == heads[behind] + 1
