"""Bus payloads and connection strings, without a bus."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from notifier.bus.base import MAX_INLINE_FRAME, Announcement
from notifier.bus.postgres import asyncpg_dsn
from notifier.core.notification import Notification


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


def test_a_group_travels_in_few_payloads_under_the_notify_limit_in_order() -> None:
    """1,000 small announcements share a few dozen NOTIFY payloads, none of 8000 bytes
    or more, and come out whole and in order."""
    sent = _many(1000)
    payloads = Announcement.pack("me", sent)
    assert len(payloads) <= 1000 // 15
    assert all(len(p.encode()) < 8000 for p in payloads)
    received = []
    for payload in payloads:
        origin, items = Announcement.decode_many(payload)
        assert origin == "me"
        received.extend(items)
    assert received == sent


def test_a_frame_over_the_limit_in_bytes_travels_as_a_reference() -> None:
    """Non-ASCII text is up to 4 bytes a character: the limit is in bytes. 3,000 CJK
    characters (9,000 bytes) cannot ride along, in a pack or alone."""
    [big] = _many(1, '{"text":"' + "中" * 3000 + '"}')
    [small] = _many(1)
    payloads = Announcement.pack("me", [small, big, small])
    assert all(len(p.encode()) < 8000 for p in payloads)
    received = [a for p in payloads for a in Announcement.decode_many(p)[1]]
    assert [a.frame for a in received] == [small.frame, None, small.frame]
    assert (received[1].user_id, received[1].seq) == (big.user_id, big.seq)
    single = big.encode("me")
    assert len(single.encode()) < 8000
    assert Announcement.decode(single)[1].frame is None


def test_a_single_announcement_payload_still_decodes_as_many() -> None:
    """An instance of the previous version sends one announcement per payload."""
    [sent] = _many(1)
    assert Announcement.decode_many(sent.encode("old")) == ("old", [sent])


@pytest.mark.parametrize("payload", ['{"a": [5]}', '{"o": "x", "a": [{"u": 1}]}', "[]"])
def test_foreign_packs_are_refused(payload: str) -> None:
    with pytest.raises(ValueError):
        Announcement.decode_many(payload)
