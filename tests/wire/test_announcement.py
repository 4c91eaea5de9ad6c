"""Bus payloads and connection strings, without a bus."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from notifier.bus.base import MAX_INLINE_FRAME, Announcement
from notifier.bus.postgres import asyncpg_dsn
from notifier.core.notification import Notification, frame_around_seq


def _notification(data_json: str) -> Notification:
    return Notification(
        id="0b6c7d1e-0000-4000-8000-000000000000",
        user_id="alice",
        seq=7,
        type="t",
        data_json=data_json,
        created_at=datetime(2026, 11, 24, tzinfo=UTC),
    )


def test_small_notification_travels_with_its_frame() -> None:
    """A frame that fits is carried inline, and decodes to the same announcement."""
    sent = Announcement.of(_notification('{"a":1}'))
    origin, received = Announcement.decode(sent.encode("me"))
    assert origin == "me"
    assert received == sent


def test_large_notification_travels_as_a_reference_under_the_notify_limit() -> None:
    """A frame over the inline limit is left out: the payload stays under PostgreSQL's
    8000 bytes and the receiver knows to fetch seq 7 of alice."""
    payload = Announcement.of(_notification('{"a":"' + "x" * 10000 + '"}')).encode("me")
    assert len(payload.encode()) < 8000
    _, received = Announcement.decode(payload)
    assert (received.user_id, received.seq, received.frame) == ("alice", 7, None)


def test_inline_limit_can_be_lifted_for_engines_without_one() -> None:
    """Redis carries any frame inline."""
    big = _notification('{"a":"' + "x" * (MAX_INLINE_FRAME * 2) + '"}')
    _, received = Announcement.decode(Announcement.of(big).encode("me", inline_limit=None))
    assert received.frame == big.frame


def test_read_announcement_round_trip() -> None:
    """A read-state change carries its frame and no seq."""
    _, received = Announcement.decode(
        Announcement(user_id="bob", read_frame='{"type":"read"}').encode("x")
    )
    assert (received.seq, received.read_frame) == (None, '{"type":"read"}')


@pytest.mark.parametrize("payload", ["[]", "{}", '{"u": 5}', "not json"])
def test_foreign_payloads_are_refused(payload: str) -> None:
    """Anything else on the channel is not mistaken for an announcement."""
    with pytest.raises(ValueError):
        Announcement.decode(payload)


@pytest.mark.parametrize(
    ("url", "dsn"),
    [
        ("postgresql+asyncpg://u:p@h:5/db", "postgresql://u:p@h:5/db"),
        ("postgresql+asyncpg://u@h/db?ssl=require", "postgresql://u@h/db?sslmode=require"),
    ],
)
def test_listen_connection_dsn(url: str, dsn: str) -> None:
    """The LISTEN connection gets a libpq DSN: no driver name, `ssl=` as `sslmode=`."""
    assert asyncpg_dsn(url) == dsn


def _many(count: int, data_json: str = '{"a":1}') -> list[Announcement]:
    return [
        Announcement.of(
            Notification(
                id=f"0b6c7d1e-0000-4000-8000-{i:012d}",
                user_id=f"user-{i % 7}",
                seq=i + 1,
                type="t",
                data_json=data_json,
                created_at=datetime(2026, 11, 24, tzinfo=UTC),
            )
        )
        for i in range(count)
    ]


def test_a_single_announcement_payload_still_decodes_as_many() -> None:
    """An instance of the previous version sends one announcement per payload."""
    [sent] = _many(1)
    assert Announcement.decode_many(sent.encode("old")) == ("old", [sent])


@pytest.mark.parametrize("payload", ['{"a": [5]}', '{"o": "x", "a": [{"u": 1}]}', "[]"])
def test_foreign_packs_are_refused(payload: str) -> None:
    with pytest.raises(ValueError):
        Announcement.decode_many(payload)


@pytest.mark.parametrize(
    ("user", "type_", "data_json"),
    [
        ("alice", "t", '{"a":1}'),
        ('quote"back\\slash\u2028\x1f', "中文 type", '{"text":"\u00e9\\n\\"","n":[1,2.5,null]}'),
    ],
)
def test_an_announcement_around_its_seq_is_its_json(user: str, type_: str, data_json: str) -> None:
    """The store joins `around_seq` pieces with the seq in SQL: the result must be the
    announcement's own JSON, for any text in user, type and data."""
    n = Notification(
        id="0b6c7d1e-0000-4000-8000-000000000000",
        user_id=user,
        seq=1234567,
        type=type_,
        data_json=data_json,
        created_at=datetime(2026, 11, 24, 1, 2, 3, 456789, tzinfo=UTC),
    )
    before, after = frame_around_seq(n.id, user, type_, data_json, n.created_at)
    assert before + "1234567" + after == n.frame
    first, middle, last = Announcement.around_seq(user, n.created_at.timestamp(), before, after)
    joined = first + "1234567" + middle + "1234567" + last
    assert joined.encode() == orjson.dumps(Announcement.of(n).body())
