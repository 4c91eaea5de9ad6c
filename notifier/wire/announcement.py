"""What the bus carries between instances: announcements, one or packed many to a payload.

An announcement is a user's new seq (with its frame when it fits), a frame outside the
seq stream (read or archive state), or a revocation of the user's tokens.
On PostgreSQL the payloads of a publish are built in SQL inside the publishing statement
(`NOTIFY_SQL`, from `Announcement.around_seq` pieces), so that they leave exactly at
commit; the packing rules (`TransactionNotify`) and the SQL that applies them are here,
beside the encoder whose output they must equal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

import orjson

from notifier.wire.notification import Notification

# PostgreSQL refuses NOTIFY payloads of 8000 bytes or more.
MAX_PAYLOAD_BYTES = 7900
# A single announcement's frame, as JSON bytes, beyond which it travels as a reference.
MAX_INLINE_FRAME = 7000


def origin_prefix(origin: str) -> str:
    """The text every payload from `origin` starts with (`encode` and `TransactionNotify`
    write the origin first), so a bus can drop its own payloads without parsing them."""
    return '{"o":' + orjson.dumps(origin).decode() + ","


@dataclass(frozen=True, slots=True)
class Announcement:
    user_id: str
    seq: int | None = None
    """Set for a new notification."""
    frame: str | None = None
    """The frame to send; None for a notification too large to carry (fetch it)."""
    created_at: float | None = None
    read_frame: str | None = None
    """Set for a frame outside the seq stream (read or archive state)."""
    revoked_at: float | None = None
    """Set for a revocation of the user's tokens (POSIX seconds): for every instance,
    whether or not it holds a socket of the user."""

    def body(self, *, with_frame: bool = True) -> dict[str, object]:
        """The announcement without its origin (see `encode` and `TransactionNotify`)."""
        body: dict[str, object] = {"u": self.user_id}
        if self.seq is not None:
            body["s"] = self.seq
            body["t"] = self.created_at
            if self.frame is not None and with_frame:
                body["f"] = self.frame
        if self.read_frame is not None:
            body["r"] = self.read_frame
        if self.revoked_at is not None:
            body["v"] = self.revoked_at
        return body

    def encode(self, origin: str, inline_limit: int | None = MAX_INLINE_FRAME) -> str:
        """One announcement, its origin first (`origin_prefix`); a frame whose JSON is
        over `inline_limit` bytes is left out (the receiver fetches it)."""
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
        joins the pieces in SQL once the seqs are allocated (see `NOTIFY_SQL`).

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
        """(origin, announcements) of a packed (`TransactionNotify`) or an `encode`d
        payload."""
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
        revoked = body.get("v")
        return Announcement(
            user_id=body["u"],
            seq=seq if isinstance(seq, int) else None,
            frame=body.get("f"),
            created_at=body.get("t"),
            read_frame=body.get("r"),
            revoked_at=float(revoked)
            if isinstance(revoked, int | float) and not isinstance(revoked, bool)
            else None,
        )

    @staticmethod
    def of(notification: Notification) -> Announcement:
        return Announcement(
            user_id=notification.user_id,
            seq=notification.seq,
            frame=notification.frame,
            created_at=notification.created_at.timestamp(),
        )


class NewFrame(Protocol):
    """A new notification of a publish, built but for its seq (`Notification.frame` is
    `frame_before + str(seq) + frame_after`)."""

    @property
    def user_id(self) -> str: ...
    @property
    def frame_before(self) -> str: ...
    @property
    def frame_after(self) -> str: ...


# The parameters of `NOTIFY_SQL` ($9..$15) when a publish announces nothing.
_SILENT: tuple[object, ...] = ((), (), (), "", None, "", 1)


@dataclass(frozen=True, slots=True)
class TransactionNotify:
    """How to announce new notifications inside the transaction that stores them, so
    that the announcement leaves exactly at commit (PostgreSQL NOTIFY). The postgres bus
    hands it out; the store adds `NOTIFY_SQL` to its statement, with `notify_parameters`.

    Each payload is `{"o": origin, "a": [announcement, ...]}` and stays under
    MAX_PAYLOAD_BYTES: announcements of up to `room` bytes are packed into payloads of
    less than twice that; a longer one goes without its frame (the receiver fetches it).
    """

    channel: str
    origin: str
    head: str = field(init=False, compare=False)
    """What each payload starts with, before its announcements."""
    room: int = field(init=False, compare=False)

    def __post_init__(self) -> None:
        # Computed once: a publish group hands both to its statement.
        head = origin_prefix(self.origin) + '"a":['
        object.__setattr__(self, "head", head)
        object.__setattr__(self, "room", (MAX_PAYLOAD_BYTES - len(head.encode()) - len("]}")) // 2)


def notify_parameters(
    notify: TransactionNotify | None, fresh: Sequence[NewFrame], created_at: datetime
) -> Sequence[object]:
    """The parameters $9..$15 of `NOTIFY_SQL` for the new notifications `fresh` of a
    publish (all created at `created_at`); without `notify`, ones that announce nothing."""
    if notify is None:
        return _SILENT
    stamp = created_at.timestamp()
    pieces = [
        Announcement.around_seq(f.user_id, stamp, f.frame_before, f.frame_after) for f in fresh
    ]
    return [
        [p[0] for p in pieces],
        [p[1] for p in pieces],
        [p[2] for p in pieces],
        ',"t":' + orjson.dumps(stamp).decode() + "}",  # the announcement without frame
        notify.channel,
        notify.head,
        notify.room,
    ]


# The CTEs that announce a publish, to follow the publishing statement's own. They read
# its CTE `numbered` (ord: the item's position; seq: its allocated seq; first, middle,
# last: its `Announcement.around_seq` pieces, from the arrays $9..$11) and use $12, the
# announcement's end without its frame, $13 the channel (NULL: announce nothing), $14 the
# payload's head and $15 the room (`notify_parameters` gives all seven).
#
# Each announcement is joined from its pieces, or, over `room` bytes, sent without its
# frame. Announcements are cut into runs in order, a run ending with the first
# announcement whose end passes a multiple of `room`: each run is one payload of less
# than 2 * room bytes after the head, under PostgreSQL's 8000-byte limit.
NOTIFY_SQL = """announcement AS (
    SELECT ord, CASE WHEN octet_length(whole) <= $15 THEN whole ELSE bare END AS body
    FROM (
        SELECT ord, first || seq || middle || seq || last AS whole, first || seq || $12 AS bare
        FROM numbered WHERE $13::text IS NOT NULL
    ) a
), sent AS (
    SELECT pg_notify($13, $14 || payload || ']}')
    FROM (
        SELECT run, string_agg(body, ',' ORDER BY ord) AS payload
        FROM (
            SELECT ord, body, (sum(octet_length(body) + 1) OVER (ORDER BY ord) - 1) / $15 AS run
            FROM announcement
        ) r
        GROUP BY run ORDER BY run
    ) p
)"""


# -- topic publishes: one announcement per instance, not per recipient ----------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class TopicAnnouncement:
    """A topic publish committed. It names the publish (its topic and the `created_at`
    all its notifications share), not the recipients: each instance reads, for the users
    it holds sockets of, their new seqs and frames from the database, so one payload of
    a few hundred bytes stands for up to 100,000 notifications, under any bus's limit.

    `recipients` (how many notifications the publish made) lets an instance choose the
    cheaper read: its own users' next rows when it holds few next to the publish, else
    the publish's rows. An announcement without it (an older instance's) gets the latter.
    """

    topic: str
    created_at: datetime
    recipients: int | None = None

    def encode(self, origin: str) -> str:
        """`{"o": origin, "k": {"topic": ..., "m": microseconds since the epoch, "n":
        recipients}}`: exact, where a float of seconds would round the microseconds."""
        text = self._encode_head(origin)
        if self.recipients is None:
            return text + "}}"
        return f'{text},"n":{self.recipients}}}}}'

    def counted_prefix(self, origin: str) -> str:
        """The encoding up to the recipients' count, for a statement that appends the
        count it made and `}}` (a topic publish's NOTIFY, built before the count exists)."""
        return self._encode_head(origin) + ',"n":'

    def _encode_head(self, origin: str) -> str:
        micros = (self.created_at - _EPOCH) // _MICROSECOND
        body = orjson.dumps({"k": {"topic": self.topic, "m": micros}})[1:-2].decode()
        return origin_prefix(origin) + body

    @staticmethod
    def from_body(body: object) -> TopicAnnouncement:
        if not isinstance(body, dict):
            raise ValueError("not a topic announcement")
        topic, micros, count = body.get("topic"), body.get("m"), body.get("n")
        if not isinstance(topic, str) or not isinstance(micros, int):
            raise ValueError("not a topic announcement")
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            count = None
        return TopicAnnouncement(topic, _EPOCH + micros * _MICROSECOND, count)


def decode_payload(payload: str | bytes) -> tuple[str, list[Announcement] | TopicAnnouncement]:
    """(origin, what it announces) of any payload a bus carries: one announcement, a
    packed run of them (`TransactionNotify`), or a topic publish. Raises ValueError on a
    payload that is not ours."""
    body = orjson.loads(payload)
    if not isinstance(body, dict):
        raise ValueError("not a notifier announcement")
    origin = str(body.get("o", ""))
    if "k" in body:
        return origin, TopicAnnouncement.from_body(body["k"])
    items = body.get("a")
    if isinstance(items, list):
        return origin, [Announcement._from_body(item) for item in items]
    return origin, [Announcement._from_body(body)]


def topic_notify_parameters(
    notify: TransactionNotify | None, announcement: TopicAnnouncement
) -> tuple[str | None, str]:
    """(channel, payload prefix) for a topic publish's statement to NOTIFY at its commit
    (it appends the count of recipients and `}}`); the channel is None (nothing announced
    in the transaction) without `notify`."""
    if notify is None:
        return None, ""
    return notify.channel, announcement.counted_prefix(notify.origin)
