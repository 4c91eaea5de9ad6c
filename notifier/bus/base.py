"""The bus interface and the announcement it carries."""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.core.notification import Notification

# PostgreSQL refuses NOTIFY payloads of 8000 bytes or more; keep room for the envelope.
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

    def encode(self, origin: str, inline_limit: int | None = MAX_INLINE_FRAME) -> str:
        body: dict[str, object] = {"o": origin, "u": self.user_id}
        if self.seq is not None:
            body["s"] = self.seq
            body["t"] = self.created_at
            if self.frame is not None and (inline_limit is None or len(self.frame) <= inline_limit):
                body["f"] = self.frame
        if self.read_frame is not None:
            body["r"] = self.read_frame
        return orjson.dumps(body).decode()

    @staticmethod
    def decode(payload: str | bytes) -> tuple[str, Announcement]:
        """(origin, announcement); raises ValueError on a payload that is not ours."""
        body = orjson.loads(payload)
        if not isinstance(body, dict) or not isinstance(body.get("u"), str):
            raise ValueError("not a notifier announcement")
        seq = body.get("s")
        return str(body.get("o", "")), Announcement(
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

    async def announce_in_transaction(
        self, conn: AsyncConnection, notifications: Sequence[Notification]
    ) -> None:
        """Announce from inside the publishing transaction (delivered only on commit)."""
        return None

    async def announce(self, notifications: Sequence[Notification]) -> None:
        """Announce after commit (engines that cannot join the transaction)."""
        return None

    async def announce_read(self, user_id: str, frame: str) -> None:
        """A read-state change of `user_id`."""
        return None
