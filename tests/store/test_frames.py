"""`Store.frames_after` against the real databases: on PostgreSQL the frame text is built
in SQL, on SQLite by `Notification.frame`; on both it must be, byte for byte, the frame of
the notification `Store.after` reads, and parse to the object the HTTP API returns, for
hostile user ids, types and data, read and unread rows, and every page of a stream."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa

from notifier.models import notifications
from notifier.store import IdempotencyConflict, NewNotification, PublishRequest, Store
from notifier.wire.notification import Notification
from tests.support import new_user

CONTROL = "".join(chr(c) for c in range(0x01, 0x20)) + "\x7f"
HOSTILE = (
    'q"uo\'te \\back\\slash \\" \\u0041 \\n \n\t\r\b\f \x01\x1f é 中文 🎉 \u2028\u2029 '
    "</script><!-- &amp; %_"
)
STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")

DATA: list[dict[str, Any]] = [
    {"nested": {"a": [1, {"b": None, "c": [True, False]}], "empty": {}, "list": []}},
    {"text": HOSTILE, "key " + HOSTILE: CONTROL, "raw": "\\u0000 is not an escape", "e": "🎉"},
    {
        "max": 2**63 - 1,
        "u64": 2**64 - 1,
        "min": -(2**63),
        "neg": -7,
        "huge": 1.5e300,
        "tiny": 5e-324,
        "negzero": -0.0,
        "frac": 0.1,
        "exp": -1e-7,
    },
    {},
    {"deep": [[[[{"x": "</script>"}]]]], "unicode": "é中文\u2028\u2029🎉", "zero": 0},
    {"s": '"},"read_at":"2000-01-01T00:00:00.000000Z"'},
]
TYPES = [
    "plain",
    HOSTILE,
    CONTROL,
    'type"with"quotes\\',
    "é中文🎉\u2028",
    '</script>","seq":0,"x":"',
]


def json_text(value: object) -> str:
    """Compact orjson text: how the publish route stores `data`."""
    return orjson.dumps(value).decode()


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Sent:
    """One published notification and what its HTTP object must be (read_at aside)."""

    notification: Notification
    data: dict[str, Any]


def hostile_user() -> str:
    return (new_user() + " " + HOSTILE)[:255]


def neighbours(user: str) -> list[str]:
    """Users whose ids are close to `user`'s: none of their rows may show up in its frames."""
    return [user[:-1], user + " ", user.upper(), user + "x", user + "%", user[:17]]


async def publish_streams(store: Store, user: str) -> list[Sent]:
    """`user` gets one notification per (type, data) pair, interleaved in one transaction
    with rows of neighbouring users (which also get hostile types and data)."""
    items: list[NewNotification] = []
    mine: list[dict[str, Any]] = []
    for index, value in enumerate(DATA):
        kind = TYPES[index % len(TYPES)]
        for other in neighbours(user)[index % 3 :: 3]:
            items.append(NewNotification(other, kind, json_text({"other": other}), ""))
        items.append(NewNotification(user, kind, json_text(value), ""))
        mine.append(value)
    [published] = await store.publish_group([PublishRequest("p\"'\\", items)])
    assert not isinstance(published, IdempotencyConflict)
    own = [p.notification for p in published if p.notification.user_id == user]
    assert [n.seq for n in own] == list(range(1, len(DATA) + 1))
    return [Sent(n, value) for n, value in zip(own, mine, strict=True)]


async def assert_frames_match_rows(store: Store, user: str, after: int, limit: int) -> None:
    frames = await store.frames_after(user, after, limit)
    rows = await store.after(user, after, limit)
    assert frames == [(n.seq, n.frame) for n in rows]
    for (_, frame), n in zip(frames, rows, strict=True):
        assert frame.encode() == n.frame.encode()  # byte for byte, not just equal strings


async def test_frames_are_the_rows_frames_and_the_api_objects_byte_for_byte(
    store: Store,
) -> None:
    user = hostile_user()
    sent = await publish_streams(store, user)
    # seq 1 read by position, seq 3 by id, the others unread.
    before_read = datetime.now(UTC)
    assert await store.mark_read_up_to(user, 1) == 1
    assert await store.mark_read_ids(user, [sent[2].notification.id]) == [sent[2].notification.id]
    after_read = datetime.now(UTC)
    read_seqs = {1, 3}
    # seq 2 as a topic publish would write it, and archived (v1.1 fields), the topic
    # as hostile as the users.
    topic = 'topic"\\</script>\u2028é'
    archived = datetime(2026, 12, 1, 3, 4, 5, 60, tzinfo=UTC)
    async with store.engine.begin() as connection:
        await connection.execute(
            sa.update(notifications)
            .where(notifications.c.user_id == user, notifications.c.seq == 2)
            .values(topic=topic, archived_at=archived)
        )

    frames = await store.frames_after(user, 0, 100)
    rows = await store.after(user, 0, 100)
    assert frames == [(n.seq, n.frame) for n in rows]
    assert [seq for seq, _ in frames] == [s.notification.seq for s in sent]

    inbox = await store.inbox(user, after=0, before=None, limit=100, unread=False, archived=None)
    assert [n.seq for n in inbox] == [s.notification.seq for s in sent]
    for (seq, frame), row, listed, item in zip(frames, rows, inbox, sent, strict=True):
        published = item.notification
        parsed = orjson.loads(frame)
        assert list(parsed) == ["type", "notification"]
        assert parsed["type"] == "notification"
        body = parsed["notification"]
        # The very object GET /v1/notifications answers for this row.
        assert body == orjson.loads(listed.json)
        assert list(body) == [
            "id",
            "user_id",
            "seq",
            "type",
            "data",
            "created_at",
            "read_at",
            "topic",
            "archived_at",
        ]
        marked = seq == 2
        assert body["topic"] == (topic if marked else None)
        assert body["archived_at"] == ("2026-12-01T03:04:05.000060Z" if marked else None)
        read_at = body["read_at"]
        if seq in read_seqs:
            assert isinstance(read_at, str) and STAMP.fullmatch(read_at), read_at
            moment = datetime.strptime(read_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
            assert before_read <= moment <= after_read
        elif not marked:
            assert read_at is None
            # Unread, the replayed frame is the one pushed live at publish time.
            assert frame == published.frame
        # And built from what was published, not from the row it was read from.
        assert body == {
            "id": published.id,
            "user_id": user,
            "seq": seq,
            "type": published.type,
            "data": item.data,
            "created_at": rfc3339(published.created_at),
            "read_at": read_at,
            "topic": body["topic"],
            "archived_at": body["archived_at"],
        }
        if marked:
            continue
        assert frame == (
            f'{{"type":"notification","notification":{{"id":"{published.id}",'
            f'"user_id":{json_text(user)},"seq":{seq},"type":{json_text(published.type)},'
            f'"data":{json_text(item.data)},"created_at":"{rfc3339(published.created_at)}",'
            f'"read_at":{json_text(read_at)},"topic":null,"archived_at":null}}}}'
        )
        assert row.id == published.id

    # The neighbours' frames are theirs, and match their rows too.
    for other in neighbours(user):
        other_frames = await store.frames_after(other, 0, 100)
        assert other_frames, other
        assert all(orjson.loads(f)["notification"]["user_id"] == other for _, f in other_frames)
        await assert_frames_match_rows(store, other, 0, 100)


async def test_paging_respects_after_and_limit_in_ascending_seq(store: Store) -> None:
    user = hostile_user()
    sent = await publish_streams(store, user)
    await store.mark_read_ids(user, [sent[1].notification.id, sent[4].notification.id])
    count = len(sent)
    ids = {s.notification.seq: s.notification.id for s in sent}

    for after in range(count + 2):
        for limit in (1, 2, 3, count, count + 5):
            frames = await store.frames_after(user, after, limit)
            expected = list(range(after + 1, min(count, after + limit) + 1))
            assert [seq for seq, _ in frames] == expected, (after, limit)
            assert [orjson.loads(f)["notification"]["id"] for _, f in frames] == [
                ids[seq] for seq in expected
            ]
            assert all(orjson.loads(f)["notification"]["seq"] == seq for seq, f in frames)
            await assert_frames_match_rows(store, user, after, limit)

    assert await store.frames_after(user, count, 10) == []
    assert await store.frames_after(user, count + 100, 10) == []
    assert await store.frames_after(hostile_user(), 0, 10) == []


async def test_many_pages_in_one_read_are_each_pages_own(store: Store) -> None:
    """`frames_after_many` gives each (user, after) pair exactly what `frames_after`
    gives it, the same user at two positions included; pairs with nothing are left out."""
    first, second = hostile_user(), hostile_user()
    await publish_streams(store, first)
    await publish_streams(store, second)
    pairs = [(first, 0), (first, 3), (second, 1), (hostile_user(), 0), (second, 10_000)]
    pages = await store.frames_after_many(pairs, 4)
    expected = {pair: await store.frames_after(*pair, 4) for pair in pairs}
    assert pages == {pair: page for pair, page in expected.items() if page}
    assert [seq for seq, _ in pages[(first, 0)]] == [1, 2, 3, 4]
    assert [seq for seq, _ in pages[(first, 3)]] == [4, 5, 6]
