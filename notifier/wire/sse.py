"""The WebSocket's server frames as Server-Sent Events (WHATWG HTML, "Server-sent events",
section 9.2: `event:`, `id:`, `data:` fields, a blank line ending each event, a line
starting with `:` a comment).

The stream over SSE is the WebSocket's, frame for frame, so nothing upstream of the
transport knows which one a client chose: a frame built once for every socket of a user
is turned into its event here, per stream, as it is written. Only `notification` events
carry an `id` (the seq), so that `EventSource` resumes from the last notification it got
by sending it back as `Last-Event-ID`. Every `data` is one line of JSON: the JSON the
service writes has no raw line breaks (JSON escapes them inside strings), and any that a
foreign writer put between tokens are turned into spaces, which JSON reads the same.
"""

from __future__ import annotations

from typing import Final

import orjson

from notifier.wire.notification import FRAME_OPEN

HEARTBEAT: Final = b": heartbeat\n\n"
"""A comment: proxies and clients see traffic on an idle stream; `EventSource` ignores it."""

_NOTIFICATION_HEAD: Final = b"event: notification\nid: "


def event(frame: str, seq: int | None = None) -> bytes:
    """The event for one server frame; `seq` is the notification's (its `id:`)."""
    if frame.startswith(FRAME_OPEN):
        if seq is None:  # not reached from `Connection`, which always knows the seq
            seq = int(orjson.loads(frame)["notification"]["seq"])
        body = _one_line(frame[len(FRAME_OPEN) : -1])
        return b"%s%d\ndata: %s\n\n" % (_NOTIFICATION_HEAD, seq, body.encode())
    parsed = orjson.loads(frame)
    kind = parsed.get("type") if isinstance(parsed, dict) else None
    if not isinstance(kind, str) or not kind.isidentifier():
        kind = "message"
    if kind == "replayed":
        # The contract's `replayed` data is the frame's object without its type.
        del parsed["type"]
        data = orjson.dumps(parsed).decode()
    else:
        # `read` and `archived` keep their `type` (the contract allows either).
        data = _one_line(frame)
    return b"event: %s\ndata: %s\n\n" % (kind.encode(), data.encode())


def close_event(code: int, detail: str) -> bytes:
    """The last event of a stream the server ends: the WebSocket's close code and reason."""
    data = orjson.dumps({"code": code, "detail": detail})
    return b"event: close\ndata: %s\n\n" % data


def _one_line(text: str) -> str:
    if "\n" in text or "\r" in text:
        return text.replace("\r", " ").replace("\n", " ")
    return text
