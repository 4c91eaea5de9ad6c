"""Bus payloads, without a bus (notifier/wire/announcement.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
import pytest

from notifier.wire.announcement import (
    MAX_INLINE_FRAME,
    MAX_PAYLOAD_BYTES,
    Announcement,
    TopicAnnouncement,
    TransactionNotify,
    decode_payload,
    notify_parameters,
    origin_prefix,
    topic_notify_parameters,
)
from notifier.wire.notification import Notification, frame_around_seq


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


@pytest.mark.parametrize("origin", ["me", "a", "ab", 'host"1\\\u2028', "中文 🎉"])
def test_every_payload_of_an_origin_starts_with_its_prefix(origin: str) -> None:
    """The postgres bus drops its own payloads by `origin_prefix` without parsing them:
    every encoding of every kind of announcement, and every packed payload, starts with
    it, and none from another origin does (even one it is a prefix of)."""
    prefix = origin_prefix(origin)
    sent = [
        *_many(2),
        Announcement(user_id="bob", read_frame='{"type":"read"}'),
        _many(1, '{"a":"' + "x" * (MAX_INLINE_FRAME * 2) + '"}')[0],
    ]
    payloads = [a.encode(origin) for a in sent] + [a.encode(origin, None) for a in sent]
    packed = ",".join(orjson.dumps(a.body()).decode() for a in sent)
    payloads.append(TransactionNotify("c", origin).head + packed + "]}")
    for payload in payloads:
        assert payload.startswith(prefix)
        assert Announcement.decode_many(payload)[0] == origin
    for other in ["", origin[:-1], origin + "b", "b" + origin, origin.upper() + "x"]:
        if other != origin:
            assert not Announcement(user_id="u").encode(other).startswith(prefix)
            assert not TransactionNotify("c", other).head.startswith(prefix)


def test_notify_parameters_are_each_announcements_pieces_and_the_packing() -> None:
    """`notify_parameters` are what NOTIFY_SQL joins: each new notification's
    announcement pieces, its end without frame, the channel, the head and the room; with
    no TransactionNotify, a NULL channel (nothing announced)."""

    @dataclass
    class New:
        user_id: str
        frame_before: str
        frame_after: str

    moment = datetime(2026, 11, 24, 1, 2, 3, 456789, tzinfo=UTC)
    fresh = [New("u1", "b1", "a1"), New('u"2', "b2", "a2")]
    notify = TransactionNotify("chan", "me")
    first, middle, last, bare, channel, head, room = notify_parameters(notify, fresh, moment)
    stamp = moment.timestamp()
    pieces = [
        Announcement.around_seq(f.user_id, stamp, f.frame_before, f.frame_after) for f in fresh
    ]
    assert (first, middle, last) == tuple([p[i] for p in pieces] for i in range(3))
    without_frame = Announcement(user_id="u1", seq=5, created_at=moment.timestamp())
    assert (first[0] + "5" + str(bare)).encode() == orjson.dumps(without_frame.body())
    assert (channel, head, room) == ("chan", notify.head, notify.room)
    assert len(head.encode()) + 2 * notify.room + len("]}") <= MAX_PAYLOAD_BYTES
    silent = notify_parameters(None, fresh, moment)
    assert len(silent) == 7 and silent[4] is None


def test_a_revocation_round_trips_and_carries_nothing_else() -> None:
    """A revocation decodes to the same announcement: no seq, no frame."""
    sent = Announcement(user_id="alice", revoked_at=1_800_000_000.25)
    origin, [received] = Announcement.decode_many(sent.encode("me"))
    assert origin == "me" and received == sent
    assert received.seq is None and received.read_frame is None


def test_an_instance_without_revocations_ignores_the_field() -> None:
    """A payload of an older instance (no "v") decodes with `revoked_at` None, and a
    non-number "v" is not a revocation."""
    _, plain = Announcement.decode('{"o":"x","u":"alice","r":"{}"}')
    assert plain.revoked_at is None
    _, odd = Announcement.decode('{"o":"x","u":"alice","v":"soon"}')
    assert odd.revoked_at is None


def test_the_longest_archived_frame_fits_a_notify_payload() -> None:
    """An `archived` frame of the most ids it may name, for a user id of 255 characters
    that JSON escapes the most, still fits a PostgreSQL NOTIFY payload."""
    from notifier.wire.frames import ARCHIVED_IDS_PER_FRAME, archived_frames

    ids = ["0b6c7d1e-0000-4000-8000-000000000000"] * ARCHIVED_IDS_PER_FRAME
    [frame] = archived_frames(ids)
    user = "\x01" * 255  # written \u0001 by JSON: 6 bytes a character
    payload = Announcement(user_id=user, read_frame=frame).encode("f" * 32)
    assert len(payload.encode()) < MAX_PAYLOAD_BYTES


# -- topic announcements ------------------------------------------------------------------


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 12, 1, 3, 4, 5, 999999, tzinfo=UTC),
        datetime(2026, 12, 1, 3, 4, 5, 1, tzinfo=UTC),
        datetime(1999, 1, 1, tzinfo=UTC),
    ],
)
def test_topic_announcement_keeps_the_exact_microsecond(moment: datetime) -> None:
    """The publish is named by its created_at: carried as integer microseconds, it comes
    back equal (a float of seconds would round some)."""
    sent = TopicAnnouncement("order.42", moment)
    origin, received = decode_payload(sent.encode("me"))
    assert origin == "me" and received == sent


def test_topic_announcement_starts_with_its_origin_and_is_small() -> None:
    """Buses drop their own payloads by prefix; the longest topic still fits any bus."""
    payload = TopicAnnouncement("t" * 255, datetime(2026, 12, 1, tzinfo=UTC)).encode("me")
    assert payload.startswith(origin_prefix("me"))
    assert len(payload.encode()) < 400


def test_decode_payload_tells_every_kind_apart() -> None:
    """One announcement, a packed run, and a topic announcement."""
    one = Announcement.of(_notification('{"a":1}'))
    assert decode_payload(one.encode("x")) == ("x", [one])
    packed = '{"o":"y","a":[' + orjson.dumps(one.body()).decode() + "]}"
    assert decode_payload(packed) == ("y", [one])
    with pytest.raises(ValueError):
        decode_payload('{"o":"z","k":{"topic":7}}')
    with pytest.raises(ValueError):
        decode_payload("[1]")


def test_topic_notify_parameters() -> None:
    """The channel and payload a topic publish NOTIFYs; nothing without `notify`."""
    announcement = TopicAnnouncement("t", datetime(2026, 12, 1, tzinfo=UTC))
    assert topic_notify_parameters(None, announcement) == (None, "")
    channel, payload = topic_notify_parameters(TransactionNotify("ch", "me"), announcement)
    assert channel == "ch"
    assert decode_payload(payload + "3}}") == (
        "me",
        TopicAnnouncement("t", announcement.created_at, 3),
    )


def test_topic_announcement_carries_its_recipients_and_reads_without_them() -> None:
    """The count lets an instance pick the cheaper read; an announcement without it (an
    older instance's) still decodes, to None; a count that is not a whole number is
    ignored rather than trusted."""
    moment = datetime(2026, 12, 1, tzinfo=UTC)
    counted = TopicAnnouncement("t", moment, 100000)
    assert decode_payload(counted.encode("me")) == ("me", counted)
    assert decode_payload(TopicAnnouncement("t", moment).encode("me"))[1] == TopicAnnouncement(
        "t", moment, None
    )
    for bad in ('"x"', "-1", "1.5", "true"):
        body = '{"o":"z","k":{"topic":"t","m":0,"n":' + bad + "}}"
        assert decode_payload(body)[1] == TopicAnnouncement("t", datetime(1970, 1, 1, tzinfo=UTC))


def test_a_statement_completes_the_counted_prefix() -> None:
    """The topic publish's NOTIFY appends its count and `}}` to the prefix it is given."""
    announcement = TopicAnnouncement("t", datetime(2026, 12, 1, tzinfo=UTC), 7)
    prefix = announcement.counted_prefix("me")
    assert prefix + "7}}" == announcement.encode("me")
