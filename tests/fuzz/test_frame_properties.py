"""Any client frame, whatever its bytes: an `error` frame (or the frame's own answer),
never an exception, a server error or a closed socket (hypothesis)."""

from __future__ import annotations

import json
import string
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import ClientConnection, connect

from notifier.wire.frames import Auth, FrameError, Ping, ReadUpTo, parse_client_frame
from tests.support import Server, make_token, new_user, timeout, ws_url

JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
JSON = st.recursive(
    JSON_LEAVES,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
FRAME_TYPES = st.sampled_from(["ping", "read", "auth", "pong", "", "PING", "notification"])
FRAME_LIKE = st.builds(
    lambda kind, extra: json.dumps({"type": kind, **extra}),
    FRAME_TYPES | JSON,
    st.dictionaries(st.sampled_from(["up_to_seq", "access_token", "x"]), JSON, max_size=2),
)
ANY_TEXT = st.text(max_size=200) | FRAME_LIKE | JSON.map(json.dumps)
"""Integers beyond 64 bits included: the standard library writes them, orjson would not."""


@settings(max_examples=400, deadline=None)
@given(ANY_TEXT)
def test_parse_client_frame_answers_a_frame_or_a_frame_error(text: str) -> None:
    """The parser returns one of the three client frames or raises FrameError, with a
    message short enough for an error frame; nothing else escapes."""
    try:
        frame = parse_client_frame(text)
    except FrameError as error:
        assert 0 < len(str(error)) <= 200
        return
    assert isinstance(frame, Ping | ReadUpTo | Auth)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=string.digits + "-+ .e_x", max_size=25) | st.none())
def test_parse_seq_accepts_only_in_range_digits(raw: str | None) -> None:
    """`after` is absent, or decimal digits in 0..2**63-1; anything else is ValueError."""
    from notifier.wire.frames import MAX_SEQ, parse_seq

    try:
        value = parse_seq(raw)
    except ValueError:
        assert raw is not None
        return
    assert value is None or (raw is not None and raw.isdigit() and 0 <= value <= MAX_SEQ)


@pytest.fixture(scope="module")
def fuzz_socket(sqlite_server: Server) -> Iterator[ClientConnection]:
    """One live socket for the whole property: its user has nothing to read."""
    user = new_user()
    with connect(ws_url(sqlite_server, user, after=0), open_timeout=timeout(10)) as ws:
        first = orjson.loads(ws.recv(timeout=timeout(10)))
        assert first["type"] == "replayed"
        yield ws


def _until_pong(ws: ClientConnection) -> list[dict[str, Any]]:
    """Frames up to the pong that answers the ping just sent."""
    frames = []
    while (frame := orjson.loads(ws.recv(timeout=timeout(10))))["type"] != "pong":
        frames.append(frame)
    return frames


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=300) | ANY_TEXT.filter(lambda t: '"auth"' not in t))
def test_any_frame_on_a_live_socket_gets_an_error_frame_or_nothing(
    fuzz_socket: ClientConnection, frame: str | bytes
) -> None:
    """Text or binary, JSON or not: the socket answers at most error frames and stays
    open (a ping after it is still answered). `auth` frames are left out: a bad token
    there closes the socket with 4401, as the contract says."""
    time.sleep(0.12)  # below the 20 frames a second a socket may send
    fuzz_socket.send(frame)
    fuzz_socket.send('{"type": "ping"}')
    frames = _until_pong(fuzz_socket)
    assert all(f["type"] == "error" and isinstance(f["detail"], str) for f in frames), frames


def test_a_bad_auth_frame_closes_with_4401_and_nothing_else(sqlite_server: Server) -> None:
    """The one frame that may close a socket: an `auth` frame with a bad token (4401)."""
    user = new_user()
    with connect(ws_url(sqlite_server, user, after=0), open_timeout=timeout(10)) as ws:
        ws.recv(timeout=timeout(10))
        ws.send(json.dumps({"type": "auth", "access_token": make_token(user, ttl=-5)}))
        with pytest.raises(Exception) as closed:
            ws.recv(timeout=timeout(10))
        assert getattr(getattr(closed.value, "rcvd", None), "code", None) == 4401
