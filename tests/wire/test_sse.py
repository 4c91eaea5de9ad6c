"""Server frames as Server-Sent Events (notifier/wire/sse.py): a notification is its
Notification JSON with `id: <seq>`, `replayed` loses its type, `read` and `archived`
keep theirs, only notifications carry an id, every `data` is one line, and the close
event carries the code and detail."""

from __future__ import annotations

import orjson
import pytest

from notifier.wire.frames import read_frame_ids, read_frame_up_to, replayed_frame
from notifier.wire.notification import FRAME_OPEN
from notifier.wire.sse import HEARTBEAT, close_event, event

NOTIFICATION = '{"id":"x","user_id":"u","seq":17,"type":"t","data":{"a":"b\\nc"}}'


def fields(raw: bytes) -> list[tuple[str, str]]:
    """The (name, value) lines of one event, which must end with one blank line."""
    text = raw.decode()
    assert text.endswith("\n\n") and "\n\n" not in text[:-2], text
    return [tuple(line.split(": ", 1)) for line in text[:-2].split("\n")]  # type: ignore[misc]


def test_a_notification_is_its_object_with_its_seq_as_id() -> None:
    """`event: notification`, `id: <seq>`, `data:` the Notification JSON itself."""
    raw = event(FRAME_OPEN + NOTIFICATION + "}", 17)
    assert fields(raw) == [("event", "notification"), ("id", "17"), ("data", NOTIFICATION)]


def test_a_notification_without_a_given_seq_takes_it_from_the_object() -> None:
    assert fields(event(FRAME_OPEN + NOTIFICATION + "}"))[1] == ("id", "17")


def test_replayed_data_has_no_type() -> None:
    raw = event(replayed_frame(12, False))
    assert fields(raw) == [("event", "replayed"), ("data", '{"last_seq":12,"complete":false}')]


@pytest.mark.parametrize(
    ("frame", "kind"),
    [
        (read_frame_up_to(4), "read"),
        (read_frame_ids(["a", "b"]), "read"),
        ('{"type":"archived","ids":["a"]}', "archived"),
    ],
)
def test_read_and_archived_keep_the_frame_object(frame: str, kind: str) -> None:
    assert fields(event(frame)) == [("event", kind), ("data", frame)]


def test_line_breaks_between_json_tokens_never_split_data() -> None:
    """JSON with raw line breaks between tokens (a foreign writer's) stays one line and
    parses to the same object."""
    frame = '{"type": "read",\r\n "up_to_seq":\n 4}'
    found = fields(event(frame))
    assert found[0] == ("event", "read") and len(found) == 2
    assert orjson.loads(found[1][1]) == {"type": "read", "up_to_seq": 4}


def test_an_unknown_frame_type_is_its_own_event_and_an_odd_one_is_message() -> None:
    assert fields(event('{"type":"pong"}'))[0] == ("event", "pong")
    assert fields(event('{"type":"a b"}'))[0] == ("event", "message")


def test_the_close_event_carries_code_and_detail() -> None:
    found = fields(close_event(4401, "token expired"))
    assert found[0] == ("event", "close")
    assert orjson.loads(found[1][1]) == {"code": 4401, "detail": "token expired"}


def test_the_heartbeat_is_a_comment() -> None:
    assert HEARTBEAT.startswith(b":") and HEARTBEAT.endswith(b"\n\n")
