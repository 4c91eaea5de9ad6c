"""The Notification object and its one serialization.

A notification is serialized once, when it is created or read from the database; every
HTTP response and every WebSocket frame reuses those bytes (`orjson.Fragment` embeds the
stored `data` text without parsing it again).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson


def rfc3339(moment: datetime) -> str:
    """UTC with a `Z` suffix and 6 fraction digits, as the contract requires."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    # isoformat is four times faster than strftime; timespec keeps 6 digits even at .000000
    return moment.isoformat(timespec="microseconds") + "Z"


@dataclass(frozen=True, slots=True)
class Notification:
    id: str
    user_id: str
    seq: int
    type: str
    data_json: str
    """`data` as compact JSON text, exactly as stored."""
    created_at: datetime
    read_at: datetime | None = None
    _json: bytes = field(default=b"", compare=False, repr=False)
    _frame: str = field(default="", compare=False, repr=False)

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "user_id": self.user_id,
            "seq": self.seq,
            "type": self.type,
            "data": orjson.Fragment(self.data_json),
            "created_at": rfc3339(self.created_at),
            "read_at": rfc3339(self.read_at) if self.read_at is not None else None,
        }

    @property
    def json(self) -> bytes:
        """The Notification object as JSON bytes, computed once."""
        if not self._json:
            object.__setattr__(self, "_json", orjson.dumps(self.to_dict()))
        return self._json

    @property
    def frame(self) -> str:
        """The WebSocket frame text for this notification, computed once and shared by
        every socket and the bus."""
        if not self._frame:
            text = '{"type":"notification","notification":' + self.json.decode() + "}"
            object.__setattr__(self, "_frame", text)
        return self._frame


def list_body(items: list[Notification]) -> bytes:
    """`{"notifications": [...]}` built from the cached per-item JSON."""
    return b'{"notifications":[' + b",".join(n.json for n in items) + b"]}"
