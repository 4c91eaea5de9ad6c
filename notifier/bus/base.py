"""The bus interface and the announcement it carries."""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson

from notifier.core.notification import Notification

# PostgreSQL refuses NOTIFY payloads of 8000 bytes or more.
MAX_PAYLOAD_BYTES = 7900
# A single announcement's frame, as JSON bytes, beyond which it travels as a reference.
MAX_INLINE_FRAME = 7000


@dataclass(frozen=True, slots=True)
class Announcement:
    user_id: str
    seq: int | None = None
    """Set for a new notification."""
    frame: str | None = None
    """The frame to send; None for a notification too large to carry (fetch it)."""
    created_at: float | None = None
    read_frame: str | None = None
    """Set for a read-state change."""

    def body(self, *, with_frame: bool = True) -> dict[str, object]:
        """The announcement without its origin (see `encode` and `pack`)."""
        body: dict[str, object] = {"u": self.user_id}
        if self.seq is not None:
            body["s"] = self.seq
            body["t"] = self.created_at
            if self.frame is not None and with_frame:
                body["f"] = self.frame
        if self.read_frame is not None:
            body["r"] = self.read_frame
        return body

    def encode(self, origin: str, inline_limit: int | None = MAX_INLINE_FRAME) -> str:
        """One announcement; a frame whose JSON is over `inline_limit` bytes is left out
        (the receiver fetches it)."""
        with_frame = self.frame is not None and (
            inline_limit is None or len(orjson.dumps(self.frame)) <= inline_limit
        )
        return orjson.dumps({"o": origin, **self.body(with_frame=with_frame)}).decode()

    @staticmethod
    def pack(
        origin: str, announcements: Sequence[Announcement], max_bytes: int = MAX_PAYLOAD_BYTES
    ) -> list[str]:
        """As few payloads as carry `announcements` in order, each under `max_bytes`
        (UTF-8): `{"o": origin, "a": [...]}`. One NOTIFY then carries dozens of
        notifications instead of one; an announcement too large to fit alone travels
        without its frame."""
        head = b'{"o":' + orjson.dumps(origin) + b',"a":['
        room = max_bytes - len(head) - 2  # the closing "]}"
        payloads: list[str] = []
        parts: list[bytes] = []
        used = 0
        for announcement in announcements:
            part = orjson.dumps(announcement.body())
            if len(part) > room:
                part = orjson.dumps(announcement.body(with_frame=False))
            if parts and used + 1 + len(part) > room:
                payloads.append((head + b",".join(parts) + b"]}").decode())
                parts, used = [], 0
            used += len(part) + (1 if parts else 0)
            parts.append(part)
        if parts:
            payloads.append((head + b",".join(parts) + b"]}").decode())
        return payloads

    @staticmethod
    def decode(payload: str | bytes) -> tuple[str, Announcement]:
        """(origin, announcement) of an `encode`d payload; raises ValueError on a
        payload that is not ours."""
        body = orjson.loads(payload)
        if not isinstance(body, dict):
            raise ValueError("not a notifier announcement")
        return str(body.get("o", "")), Announcement._from_body(body)

    @staticmethod
    def decode_many(payload: str | bytes) -> tuple[str, list[Announcement]]:
        """(origin, announcements) of a `pack`ed or an `encode`d payload."""
        body = orjson.loads(payload)
        if not isinstance(body, dict):
            raise ValueError("not a notifier announcement")
        items = body.get("a")
        if isinstance(items, list):
            found = [Announcement._from_body(item) for item in items]
        else:
            found = [Announcement._from_body(body)]
        return str(body.get("o", "")), found

    @staticmethod
    def _from_body(body: object) -> Announcement:
        if not isinstance(body, dict) or not isinstance(body.get("u"), str):
            raise ValueError("not a notifier announcement")
        seq = body.get("s")
        return Announcement(
            user_id=body["u"],
            seq=seq if isinstance(seq, int) else None,
            frame=body.get("f"),
            created_at=body.get("t"),
            read_frame=body.get("r"),
        )

    @staticmethod
    def of(notification: Notification) -> Announcement:
        return Announcement(
            user_id=notification.user_id,
            seq=notification.seq,
            frame=notification.frame,
            created_at=notification.created_at.timestamp(),
        )


@dataclass(frozen=True, slots=True)
class BusHandlers:
    deliver: Callable[[Announcement], None]
    """An announcement from another instance."""
    resync: Callable[[], None]
    """The bus (re)connected: announcements may have been lost meanwhile."""


class Bus(abc.ABC):
    name: str = "bus"

    @property
    def healthy(self) -> bool:
        return True

    @abc.abstractmethod
    async def start(self, handlers: BusHandlers) -> None: ...

    @abc.abstractmethod
    async def stop(self) -> None: ...

    async def watch(self, user_id: str) -> None:
        """This instance now holds a socket of `user_id` (returns once subscribed)."""
        return None

    def unwatch(self, user_id: str) -> None:
        """This instance no longer holds a socket of `user_id`."""
        return None

    def transaction_notify(
        self, notifications: Sequence[Notification]
    ) -> tuple[str, list[str]] | None:
        """(channel, payloads) to NOTIFY inside the publishing transaction, for engines
        that announce exactly at commit (PostgreSQL); None for the others."""
        return None

    async def announce(self, notifications: Sequence[Notification]) -> None:
        """Announce after commit (engines that cannot join the transaction)."""
        return None

    async def announce_read(self, user_id: str, frame: str) -> None:
        """A read-state change of `user_id`."""
        return None
