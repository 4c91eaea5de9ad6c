"""The Notification object and its one serialization, in Python and in PostgreSQL.

A notification is serialized once, when it is created or read from the database; every
HTTP response and every WebSocket frame reuses those bytes (`orjson.Fragment` embeds the
stored `data` text without parsing it again). Replay on PostgreSQL has the database write
the same frame text (`FRAME_SQL`), byte for byte.

`FIELDS` is the Notification object's one definition: the JSON keys in order, the column
each comes from and how its value is written. The SQL is generated from it; the Python
encoders (`Notification.to_dict`, `frame_around_seq`) are written out by hand, because a
loop over `FIELDS` per notification would cost calls on the publish path, and
tests/wire/test_notification.py fails unless they name the same keys in the same order.
Adding a field is an edit to this file (the `FIELDS` entry, the dataclass, both encoders).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson


class Kind(enum.Enum):
    """How a field's value is written as JSON."""

    UUID = "uuid"
    """A UUID's canonical text: nothing in it to escape."""
    TEXT = "text"
    """A string, JSON-escaped."""
    OPTIONAL_TEXT = "text?"
    """A string, or null."""
    INT = "int"
    JSON = "json"
    """JSON text as stored, embedded as it is."""
    TIME = "time"
    """A moment as `rfc3339` writes it."""
    OPTIONAL_TIME = "time?"
    """A moment, or null."""


@dataclass(frozen=True, slots=True)
class Field:
    key: str
    """The JSON key."""
    column: str
    """The `notifications` column it is read from."""
    kind: Kind


# The Notification object's fields, in the order its JSON lists them (the contract's).
FIELDS = (
    Field("id", "id", Kind.UUID),
    Field("user_id", "user_id", Kind.TEXT),
    Field("seq", "seq", Kind.INT),
    Field("type", "type", Kind.TEXT),
    Field("data", "data", Kind.JSON),
    Field("created_at", "created_at", Kind.TIME),
    Field("read_at", "read_at", Kind.OPTIONAL_TIME),
    Field("topic", "topic", Kind.OPTIONAL_TEXT),
    Field("archived_at", "archived_at", Kind.OPTIONAL_TIME),
)
COLUMNS = tuple(f.column for f in FIELDS)
"""The columns a notification is read from, in `FIELDS` order."""

FRAME_OPEN = '{"type":"notification","notification":'


def rfc3339(moment: datetime) -> str:
    """UTC with a `Z` suffix and 6 fraction digits, as the contract requires.

    The last answer is kept: every notification of a group commit shares one
    `created_at` object, so a batch formats its timestamp once."""
    global _last
    if moment is _last[0]:
        return _last[1]
    text = _format(moment)
    _last = (moment, text)
    return text


def _format(moment: datetime) -> str:
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    # isoformat is four times faster than strftime; timespec keeps 6 digits even at .000000
    return moment.isoformat(timespec="microseconds") + "Z"


_last: tuple[datetime | None, str] = (None, "")


# Not frozen, although never changed after it is built: a frozen dataclass's __init__
# is five times slower (1.0 against 0.2 µs here), and one is built per notification.
@dataclass(slots=True, eq=True)
class Notification:
    id: str
    user_id: str
    seq: int
    type: str
    data_json: str
    """`data` as compact JSON text, exactly as stored."""
    created_at: datetime
    read_at: datetime | None = None
    topic: str | None = None
    """The topic it was published to; None when addressed to the user directly."""
    archived_at: datetime | None = None
    _json: bytes = field(default=b"", compare=False, repr=False)
    _frame: str = field(default="", compare=False, repr=False)

    def to_dict(self) -> dict[str, object]:
        """The object of `FIELDS`, ready for orjson."""
        return {
            "id": self.id,
            "user_id": self.user_id,
            "seq": self.seq,
            "type": self.type,
            "data": orjson.Fragment(self.data_json),
            "created_at": rfc3339(self.created_at),
            "read_at": rfc3339(self.read_at) if self.read_at is not None else None,
            "topic": self.topic,
            "archived_at": rfc3339(self.archived_at) if self.archived_at is not None else None,
        }

    @property
    def json(self) -> bytes:
        """The Notification object as JSON bytes, computed once."""
        if not self._json:
            if self._frame:
                self._json = self._frame[len(FRAME_OPEN) : -1].encode()
            else:
                self._json = orjson.dumps(self.to_dict())
        return self._json

    @property
    def frame(self) -> str:
        """The WebSocket frame text for this notification, computed once and shared by
        every socket and the bus."""
        if not self._frame:
            self._frame = FRAME_OPEN + self.json.decode() + "}"
        return self._frame


def frame_around_seq(
    id: str,
    user_id: str,
    type: str,
    data_json: str,
    created_at: datetime,
    topic: str | None = None,
) -> tuple[str, str]:
    """The frame of a new (unread) notification whose seq is not known yet, as the text
    before the seq and the text after it: `before + str(seq) + after` is its `frame`.

    A publish builds everything but the seqs before the statement that takes its users'
    locks, so nothing is computed while they are held."""
    before = (
        FRAME_OPEN
        + '{"id":'
        + orjson.dumps(id).decode()
        + ',"user_id":'
        + orjson.dumps(user_id).decode()
        + ',"seq":'
    )
    after = (
        ',"type":'
        + orjson.dumps(type).decode()
        + ',"data":'
        + data_json
        + ',"created_at":"'
        + rfc3339(created_at)
        + '","read_at":null,"topic":'
        + (orjson.dumps(topic).decode() if topic is not None else "null")
        + ',"archived_at":null}}'
    )
    return before, after


def list_body(items: list[Notification]) -> bytes:
    """`{"notifications": [...]}` built from the cached per-item JSON."""
    return b'{"notifications":[' + b",".join(n.json for n in items) + b"]}"


# -- the same frame, written by PostgreSQL -------------------------------------------

_PG_TIME = "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
# Each kind as SQL: literal text around an expression of the column (which is `{}`).
_PG_VALUE: dict[Kind, tuple[str, str, str]] = {
    Kind.UUID: ('"', "{}::text", '"'),
    Kind.TEXT: ("", "to_json({})::text", ""),
    Kind.OPTIONAL_TEXT: ("", "COALESCE(to_json({})::text, 'null')", ""),
    Kind.INT: ("", "{}::text", ""),
    Kind.JSON: ("", "{}", ""),
    Kind.TIME: ('"', _PG_TIME, '"'),
    Kind.OPTIONAL_TIME: ("", "COALESCE('\"' || " + _PG_TIME + " || '\"', 'null')", ""),
}


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _frame_sql() -> str:
    """`Notification.frame` as a PostgreSQL expression over a `notifications` row.

    Its timestamps are `rfc3339`'s (microseconds, UTC, `Z`), its strings escaped by
    `to_json` as orjson escapes them, and `data` embedded as stored; the result is
    equal byte for byte (tests/store/test_frames.py)."""
    pieces: list[str] = []
    literal = FRAME_OPEN + "{"
    for index, f in enumerate(FIELDS):
        opening, expression, closing = _PG_VALUE[f.kind]
        literal += ("," if index else "") + orjson.dumps(f.key).decode() + ":" + opening
        pieces += [_sql_literal(literal), expression.format(f.column)]
        literal = closing
    pieces.append(_sql_literal(literal + "}}"))
    return " || ".join(pieces)


FRAME_SQL = _frame_sql()
"""`Notification.frame`, written by PostgreSQL for a row of `notifications`: replay
reads frames rather than rows (about three times faster than decoding rows and
serializing them here)."""
