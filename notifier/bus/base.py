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
    def around_seq(
        user_id: str, created_at: float, frame_before: str, frame_after: str
    ) -> tuple[str, str, str]:
        """The JSON of a new notification's announcement (`body()`), whose seq is not
        known yet, in three pieces around the seq, which it holds twice: once as "s" and
        once inside the frame. `first + seq + middle + seq + last` is the JSON; the store
        joins the pieces in SQL once the seqs are allocated (see `TransactionNotify`).

        JSON escapes a string character by character, so the escaped frame is the
        escaped text before the seq, the seq's digits, and the escaped text after it.
        """
        first = '{"u":' + orjson.dumps(user_id).decode() + ',"s":'
        middle = (
            ',"t":'
            + orjson.dumps(created_at).decode()
            + ',"f":"'
            + orjson.dumps(frame_before).decode()[1:-1]
        )
        last = orjson.dumps(frame_after).decode()[1:-1] + '"}'
        return first, middle, last

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
class TransactionNotify:
    """How to announce new notifications inside the transaction that stores them, so
    that the announcement leaves exactly at commit (PostgreSQL NOTIFY).

    Each payload is `{"o": origin, "a": [announcement, ...]}` and stays under
    MAX_PAYLOAD_BYTES: the store packs announcements of up to `room` bytes into payloads
    of less than twice that; a longer one goes without its frame (the receiver fetches
    it). The payloads are built in SQL, inside the publishing statement (see
    `store._PUBLISH_PG`), from `Announcement.around_seq` pieces.
    """

    channel: str
    origin: str

    @property
    def head(self) -> str:
        return '{"o":' + orjson.dumps(self.origin).decode() + ',"a":['

    @property
    def room(self) -> int:
        return (MAX_PAYLOAD_BYTES - len(self.head.encode()) - len("]}")) // 2


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

    @property
    def in_transaction(self) -> TransactionNotify | None:
        """Set for engines that announce inside the publishing transaction, exactly at
        commit (PostgreSQL); None for the others, which `announce` after commit."""
        return None

    async def announce(self, notifications: Sequence[Notification]) -> None:
        """Announce after commit (engines that cannot join the transaction)."""
        return None

    async def announce_read(self, user_id: str, frame: str) -> None:
        """A read-state change of `user_id`."""
        return None
