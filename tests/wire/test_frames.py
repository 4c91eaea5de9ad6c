"""Client frame parsing, the `after` parameter and server frame builders
(notifier/wire/frames.py)."""

from __future__ import annotations

import json

import pytest

from notifier.wire.frames import (
    MAX_SEQ,
    PONG,
    Auth,
    FrameError,
    Ping,
    ReadUpTo,
    error_frame,
    parse_client_frame,
    parse_seq,
    read_frame_ids,
    read_frame_up_to,
    replayed_frame,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"type": "ping"}', Ping()),
        ('{"type": "read", "up_to_seq": 0}', ReadUpTo(0)),
        ('{"type": "read", "up_to_seq": 17}', ReadUpTo(17)),
        (f'{{"type": "read", "up_to_seq": {MAX_SEQ}}}', ReadUpTo(MAX_SEQ)),
        ('{"type": "auth", "access_token": "a.b.c"}', Auth("a.b.c")),
        ('{"type": "ping", "extra": [1, 2]}', Ping()),
    ],
)
def test_valid_client_frames_parse(text: str, expected: object) -> None:
    """ping, read and auth frames of the contract parse to their values."""
    assert parse_client_frame(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("{", id="truncated"),
        pytest.param("ping", id="bare-word"),
        pytest.param("{'type': 'ping'}", id="single-quotes"),
        pytest.param("[]", id="array"),
        pytest.param('"ping"', id="string"),
        pytest.param("42", id="number"),
        pytest.param("null", id="null"),
        pytest.param("{}", id="no-type"),
        pytest.param('{"type": 5}', id="type-number"),
        pytest.param('{"type": null}', id="type-null"),
        pytest.param('{"type": "subscribe"}', id="unknown-type"),
        pytest.param('{"type": "PING"}', id="type-case"),
        pytest.param('{"type": "read"}', id="read-without-seq"),
        pytest.param('{"type": "read", "up_to_seq": true}', id="seq-bool"),
        pytest.param('{"type": "read", "up_to_seq": -1}', id="seq-negative"),
        pytest.param('{"type": "read", "up_to_seq": 1.5}', id="seq-float"),
        pytest.param('{"type": "read", "up_to_seq": 2.0}', id="seq-integral-float"),
        pytest.param('{"type": "read", "up_to_seq": "3"}', id="seq-string"),
        pytest.param('{"type": "read", "up_to_seq": null}', id="seq-null"),
        pytest.param(f'{{"type": "read", "up_to_seq": {MAX_SEQ + 1}}}', id="seq-2^63"),
        pytest.param('{"type": "read", "up_to_seq": 1' + "0" * 40 + "}", id="seq-huge"),
        pytest.param('{"type": "auth"}', id="auth-without-token"),
        pytest.param('{"type": "auth", "access_token": ""}', id="auth-empty-token"),
        pytest.param('{"type": "auth", "access_token": 5}', id="auth-token-number"),
    ],
)
def test_malformed_client_frames_raise_frame_error(text: str) -> None:
    """Malformed, non-object, unknown or badly typed frames raise FrameError (an error
    frame), never another exception."""
    with pytest.raises(FrameError):
        parse_client_frame(text)


def test_unknown_type_error_is_short() -> None:
    """The error for an unknown type quotes at most a bounded part of it."""
    with pytest.raises(FrameError) as caught:
        parse_client_frame(json.dumps({"type": "x" * 10_000}))
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, None), ("0", 0), ("17", 17), (str(MAX_SEQ), MAX_SEQ)],
)
def test_parse_seq_accepts_absent_and_non_negative_integers(
    raw: str | None, expected: object
) -> None:
    """`after` absent is None; a non-negative decimal integer in range is its value."""
    assert parse_seq(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("-1", id="negative"),
        pytest.param("1.5", id="fraction"),
        pytest.param("abc", id="letters"),
        pytest.param("", id="empty"),
        pytest.param(" 1", id="space"),
        pytest.param("+1", id="plus"),
        pytest.param("1e3", id="exponent"),
        pytest.param(str(MAX_SEQ + 1), id="2^63"),
        pytest.param("9" * 30, id="huge"),
        pytest.param("\u0661", id="arabic-indic-digit"),
        pytest.param("\u00b2", id="superscript-two"),
        pytest.param("\uff11", id="fullwidth-one"),
    ],
)
def test_parse_seq_refuses_malformed(raw: str) -> None:
    """A malformed, negative, out-of-range or non-ASCII-digit `after` raises ValueError."""
    with pytest.raises(ValueError):
        parse_seq(raw)


def test_error_frame() -> None:
    """error_frame builds {"type": "error", "detail": ...}."""
    assert json.loads(error_frame('bad "thing"')) == {"type": "error", "detail": 'bad "thing"'}


def test_read_frames() -> None:
    """read frames carry either up_to_seq or ids, as in the contract."""
    assert json.loads(read_frame_up_to(9)) == {"type": "read", "up_to_seq": 9}
    assert json.loads(read_frame_ids(["a", "b"])) == {"type": "read", "ids": ["a", "b"]}


@pytest.mark.parametrize("complete", [True, False])
def test_replayed_frame(complete: bool) -> None:
    """replayed carries last_seq and a boolean complete."""
    frame = json.loads(replayed_frame(42, complete))
    assert frame == {"type": "replayed", "last_seq": 42, "complete": complete}
    assert frame["complete"] is complete


def test_pong_frame() -> None:
    """PONG is {"type": "pong"}."""
    assert json.loads(PONG) == {"type": "pong"}


def test_archived_frames_split_long_lists_in_order() -> None:
    """At most ARCHIVED_IDS_PER_FRAME ids to a frame, all of them, in order."""
    from notifier.wire.frames import ARCHIVED_IDS_PER_FRAME, archived_frames

    ids = [f"id-{n}" for n in range(2 * ARCHIVED_IDS_PER_FRAME + 1)]
    built = [json.loads(frame) for frame in archived_frames(ids)]
    assert [len(f["ids"]) for f in built] == [ARCHIVED_IDS_PER_FRAME] * 2 + [1]
    assert all(f["type"] == "archived" for f in built)
    assert [i for f in built for i in f["ids"]] == ids
    assert archived_frames([]) == []
