"""The Notification object and its serialization (notifier/wire/notification.py)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from notifier.wire.notification import (
    COLUMNS,
    FRAME_SQL,
    Notification,
    frame_around_seq,
    list_body,
    rfc3339,
)
from notifier.wire.notification import FIELDS as WIRE_FIELDS

RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")
FIELDS = {"id", "user_id", "seq", "type", "data", "created_at", "read_at", "topic", "archived_at"}


def make(data_json: str = '{"text":"hi"}', read_at: datetime | None = None) -> Notification:
    return Notification(
        id="0b6c7d8e-0000-4000-8000-000000000001",
        user_id="alice",
        seq=17,
        type="comment.created",
        data_json=data_json,
        created_at=datetime(2026, 11, 24, 5, 0, 0, 123456, tzinfo=UTC),
        read_at=read_at,
    )


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2026, 11, 24, 5, 0, 0, 123456, tzinfo=UTC), "2026-11-24T05:00:00.123456Z"),
        (datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "2026-01-02T03:04:05.000000Z"),
        (datetime(2026, 1, 2, 3, 4, 5, 7), "2026-01-02T03:04:05.000007Z"),
        (
            datetime(2026, 1, 1, 1, 30, 0, 500000, tzinfo=timezone(timedelta(hours=2))),
            "2025-12-31T23:30:00.500000Z",
        ),
        (
            datetime(2026, 6, 1, 12, 0, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
            "2026-06-01T17:30:00.000000Z",
        ),
    ],
)
def test_rfc3339_is_utc_with_z(moment: datetime, expected: str) -> None:
    """Timestamps are rendered in UTC (offsets converted) with a `Z` and <= 6 fraction digits."""
    text = rfc3339(moment)
    assert text == expected
    assert RFC3339_UTC.match(text)


def test_json_has_the_nine_fields_with_types() -> None:
    """The Notification JSON has the contract's nine fields (v1.1) with their types."""
    body = json.loads(make().json)
    assert set(body) >= FIELDS
    assert body == {
        "id": "0b6c7d8e-0000-4000-8000-000000000001",
        "user_id": "alice",
        "seq": 17,
        "type": "comment.created",
        "data": {"text": "hi"},
        "created_at": "2026-11-24T05:00:00.123456Z",
        "read_at": None,
        "topic": None,
        "archived_at": None,
    }


def test_stored_data_is_embedded_verbatim() -> None:
    """The stored `data` text appears byte for byte in the JSON (no re-encoding)."""
    stored = '{"z":1,"a":[1,2.5,"\\u00e9"],"n":{"deep":null}}'
    raw = make(stored).json
    assert b'"data":' + stored.encode() in raw
    assert json.loads(raw)["data"] == {"z": 1, "a": [1, 2.5, "é"], "n": {"deep": None}}


def test_read_at_is_rfc3339_when_set() -> None:
    """A read notification carries read_at in the same UTC format."""
    body = json.loads(make(read_at=datetime(2026, 11, 24, 6, 0, tzinfo=UTC)).json)
    assert body["read_at"] == "2026-11-24T06:00:00.000000Z"
    assert RFC3339_UTC.match(body["created_at"])


def test_frame_wraps_the_notification() -> None:
    """The WebSocket frame is {"type": "notification", "notification": <the same object>}."""
    notification = make('{"k":[true,false]}')
    frame = json.loads(notification.frame)
    assert frame == {"type": "notification", "notification": json.loads(notification.json)}


def test_list_body_lists_the_objects_in_order() -> None:
    """list_body is {"notifications": [...]} of the same objects in the given order."""
    first, second = make('{"i":1}'), make('{"i":2}')
    body = json.loads(list_body([first, second]))
    assert body == {"notifications": [json.loads(first.json), json.loads(second.json)]}
    assert json.loads(list_body([])) == {"notifications": []}


def test_rfc3339_answers_each_moment_when_moments_alternate() -> None:
    """rfc3339 keeps its last answer: a different moment (even an equal one in another
    zone) must never get it."""
    first = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    second = datetime(2026, 1, 2, 5, 4, 5, 6, tzinfo=timezone(timedelta(hours=2)))
    third = datetime(2027, 1, 1, tzinfo=UTC)
    for _ in range(2):
        assert rfc3339(first) == "2026-01-02T03:04:05.000006Z"
        assert rfc3339(first) == "2026-01-02T03:04:05.000006Z"
        assert rfc3339(second) == "2026-01-02T03:04:05.000006Z"
        assert rfc3339(third) == "2027-01-01T00:00:00.000000Z"


def test_python_and_postgresql_write_the_fields_of_one_list_in_its_order() -> None:
    """`FIELDS` is the one list of the object's keys: `to_dict`, the frame of a new
    notification (`frame_around_seq`) and the frame PostgreSQL writes for replay
    (`FRAME_SQL`, generated from it) all name its keys in its order, and PostgreSQL reads
    each from its column."""
    keys = [f.key for f in WIRE_FIELDS]
    assert keys == [
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
    notification = make()
    assert list(notification.to_dict()) == keys
    assert list(json.loads(notification.json)) == keys
    before, after = frame_around_seq(
        notification.id, "alice", "comment.created", "{}", notification.created_at
    )
    new = json.loads(before + "17" + after)
    assert list(new) == ["type", "notification"]
    assert list(new["notification"]) == keys
    assert re.findall(r'"(\w+)":', FRAME_SQL) == ["type", "notification", *keys]
    assert tuple(f.column for f in WIRE_FIELDS) == COLUMNS
    for f in WIRE_FIELDS:
        assert f.column in FRAME_SQL


def test_the_replay_frame_sql_writes_each_kind_as_python_does() -> None:
    """Each kind has its SQL: strings escaped by to_json, timestamps as rfc3339 (6 digits,
    UTC, Z), read_at null when unset, data embedded as stored."""
    assert FRAME_SQL == (
        '\'{"type":"notification","notification":{"id":"\' || id::text'
        ' || \'","user_id":\' || to_json(user_id)::text'
        " || ',\"seq\":' || seq::text"
        " || ',\"type\":' || to_json(type)::text"
        " || ',\"data\":' || data"
        " || ',\"created_at\":\"' || to_char(created_at AT TIME ZONE 'UTC',"
        ' \'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\')'
        " || '\",\"read_at\":' || COALESCE('\"' || to_char(read_at AT TIME ZONE 'UTC',"
        " 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') || '\"', 'null')"
        " || ',\"topic\":' || COALESCE(to_json(topic)::text, 'null')"
        " || ',\"archived_at\":' || COALESCE('\"' || to_char(archived_at AT TIME ZONE 'UTC',"
        " 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') || '\"', 'null')"
        " || '}}'"
    )


def test_topic_and_archived_at_are_written_when_set() -> None:
    """A topic notification names its topic, an archived one its archived_at (v1.1); a
    new topic notification's frame (`frame_around_seq`) carries the topic too."""
    moment = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    notification = Notification(
        id="0b6c7d8e-0000-4000-8000-000000000002",
        user_id="alice",
        seq=3,
        type="order.shipped",
        data_json="{}",
        created_at=moment,
        read_at=moment,
        topic="order:42",
        archived_at=moment,
    )
    body = json.loads(notification.json)
    assert body["topic"] == "order:42"
    assert body["archived_at"] == "2026-12-01T03:00:00.000000Z"
    before, after = frame_around_seq(
        notification.id, "alice", "order.shipped", "{}", moment, topic='a"b'
    )
    new = json.loads(before + "3" + after)["notification"]
    assert (new["topic"], new["archived_at"], new["read_at"]) == ('a"b', None, None)
