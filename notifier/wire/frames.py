"""WebSocket frames but the notification's (`wire.notification`): what a client may say,
parsed without I/O, and the server's read, archived, replayed, error and pong frames."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

MAX_SEQ = 2**63 - 1


class FrameError(ValueError):
    """A malformed or unknown client frame; the message goes back in an `error` frame."""


@dataclass(frozen=True, slots=True)
class Ping:
    pass


@dataclass(frozen=True, slots=True)
class ReadUpTo:
    up_to_seq: int


@dataclass(frozen=True, slots=True)
class Auth:
    access_token: str


ClientFrame = Ping | ReadUpTo | Auth


def parse_client_frame(text: str) -> ClientFrame:
    try:
        body = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise FrameError("frame is not valid JSON") from error
    if not isinstance(body, dict):
        raise FrameError("frame must be a JSON object")
    kind = body.get("type")
    if kind == "ping":
        return Ping()
    if kind == "read":
        seq = body.get("up_to_seq")
        if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= MAX_SEQ:
            raise FrameError("'up_to_seq' must be a non-negative integer")
        return ReadUpTo(seq)
    if kind == "auth":
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise FrameError("'access_token' must be a non-empty string")
        return Auth(token)
    if not isinstance(kind, str):
        raise FrameError("frame needs a string 'type'")
    raise FrameError(f"unknown frame type {kind[:64]!r}")


def parse_seq(raw: str | None) -> int | None:
    """The `after` query parameter: absent, or a non-negative integer in range."""
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19:
        raise ValueError("after must be a non-negative integer")
    value = int(raw)
    if value > MAX_SEQ:
        raise ValueError("after is out of range")
    return value


def error_frame(detail: str) -> str:
    return orjson.dumps({"type": "error", "detail": detail}).decode()


def read_frame_up_to(seq: int) -> str:
    return orjson.dumps({"type": "read", "up_to_seq": seq}).decode()


def read_frame_ids(ids: list[str]) -> str:
    return orjson.dumps({"type": "read", "ids": ids}).decode()


ARCHIVED_IDS_PER_FRAME = 100
"""An `archived` frame names at most this many ids: its announcement then stays well
under a PostgreSQL NOTIFY payload's limit, so it reaches every instance (`archived_frames`
cuts a longer list into several frames)."""


def archived_frames(ids: list[str]) -> list[str]:
    """`{"type": "archived", "ids": [...]}` frames naming `ids`, in order, at most
    ARCHIVED_IDS_PER_FRAME each."""
    step = ARCHIVED_IDS_PER_FRAME
    return [
        orjson.dumps({"type": "archived", "ids": ids[start : start + step]}).decode()
        for start in range(0, len(ids), step)
    ]


def replayed_frame(last_seq: int, complete: bool) -> str:
    return orjson.dumps({"type": "replayed", "last_seq": last_seq, "complete": complete}).decode()


PONG = '{"type":"pong"}'
