"""`notifier_publish()` (migration 0003) called by a backend in its own transactions, on a
separate asyncpg connection: what it stores, numbers and announces, and when. The
announcement is read as another instance reads it (LISTEN on the postgres bus's channel)
and the frames are compared with what replay reads for the same rows."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import orjson
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier import db
from notifier.bus.postgres import CHANNEL, asyncpg_dsn
from notifier.store import NewNotification, Store, create_store, sqlpublish
from notifier.store.base import StreamBusy
from notifier.wire.announcement import MAX_PAYLOAD_BYTES, Announcement
from notifier.wire.notification import FRAME_SQL
from tests.store.test_frames import HOSTILE, TYPES
from tests.support import ROOT, new_user, timeout

PUBLISH = "SELECT id::text, seq FROM notifier_publish($1, $2, $3::jsonb, $4)"


@pytest.fixture
async def pg_store(pg_database: str) -> AsyncIterator[Store]:
    engine: AsyncEngine = db.create_engine(pg_database)
    try:
        yield create_store(engine)
    finally:
        await engine.dispose()


@pytest.fixture
async def backend(pg_database: str) -> AsyncIterator[asyncpg.Connection]:
    """A backend's own connection to the notifier database."""
    conn = await asyncpg.connect(asyncpg_dsn(pg_database))
    try:
        yield conn
    finally:
        await conn.close()


async def connect(pg_database: str) -> asyncpg.Connection:
    return await asyncpg.connect(asyncpg_dsn(pg_database))


class Announced:
    """What another instance hears on the bus channel from SQL publishes."""

    def __init__(self) -> None:
        self.items: list[Announcement] = []
        self.payloads: list[str] = []
        self.arrived = asyncio.Event()

    def on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        origin, found = Announcement.decode_many(payload)
        if origin == "sql":
            self.payloads.append(payload)
            self.items.extend(found)
            self.arrived.set()

    def of(self, user: str) -> list[Announcement]:
        return [a for a in self.items if a.user_id == user]

    async def wait(self, user: str, count: int, seconds: float = 5) -> list[Announcement]:
        async with asyncio.timeout(timeout(seconds)):
            while len(self.of(user)) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.of(user)


@pytest.fixture
async def announced(pg_database: str) -> AsyncIterator[Announced]:
    conn = await connect(pg_database)
    listener = Announced()
    await conn.add_listener(CHANNEL, listener.on_notify)
    try:
        yield listener
    finally:
        await conn.close()


async def publish(
    conn: asyncpg.Connection, user: str, data: Any, type_: str = "t", key: str | None = None
) -> tuple[str, int]:
    text = data if isinstance(data, str) else json.dumps(data)
    row = await conn.fetchrow(PUBLISH, user, type_, text, key)
    assert row is not None
    return row[0], row[1]


async def seqs(conn: asyncpg.Connection, user: str) -> list[int]:
    rows = await conn.fetch("SELECT seq FROM notifications WHERE user_id = $1 ORDER BY seq", user)
    return [r["seq"] for r in rows]


async def head(conn: asyncpg.Connection, user: str) -> int | None:
    value: int | None = await conn.fetchval("SELECT last_seq FROM streams WHERE user_id = $1", user)
    return value


async def blocked(call: asyncio.Task[Any], seconds: float = 0.3) -> bool:
    """True when `call` is still waiting after `seconds` (on a lock)."""
    done, _ = await asyncio.wait({call}, timeout=seconds)
    return not done


# -- commit and rollback ----------------------------------------------------------------


async def test_commit_stores_numbers_and_announces_only_at_commit(
    backend: asyncpg.Connection, pg_store: Store, announced: Announced, pg_database: str
) -> None:
    """Inside the transaction nothing is visible to others nor announced; at commit the
    row, its seq and its announcement appear, with the frame replay sends for it."""
    user = new_user()
    other = await connect(pg_database)
    try:
        async with backend.transaction():
            id_, seq = await publish(backend, user, {"order": 42, "text": "shipped, at: 5"})
            assert seq == 1
            assert await seqs(other, user) == []
            assert await head(other, user) is None
            await asyncio.sleep(0.2)
            assert announced.of(user) == []
        [announcement] = await announced.wait(user, 1)
        assert await seqs(other, user) == [1]
    finally:
        await other.close()
    [(replayed_seq, frame)] = await pg_store.frames_after(user, 0, 10)
    [row] = await pg_store.after(user, 0, 10)
    assert announcement.seq == replayed_seq == 1
    assert announcement.frame == frame == row.frame
    body = orjson.loads(frame)["notification"]
    assert body["id"] == id_ and body["seq"] == 1 and body["user_id"] == user
    assert body["data"] == {"order": 42, "text": "shipped, at: 5"}
    assert body["read_at"] is None and body["topic"] is None and body["archived_at"] is None
    assert row.data_json == '{"text":"shipped, at: 5","order":42}'  # compact, jsonb order
    stored = await backend.fetchrow(
        "SELECT publisher, idempotency_key FROM notifications WHERE id = $1::uuid", id_
    )
    assert stored is not None and tuple(stored) == (sqlpublish.PUBLISHER, None)


async def test_rollback_leaves_nothing_and_seqs_stay_gap_free(
    backend: asyncpg.Connection, announced: Announced
) -> None:
    user = new_user()
    await publish(backend, user, {"n": 1})
    tx = backend.transaction()
    await tx.start()
    assert (await publish(backend, user, {"n": 2}))[1] == 2
    await tx.rollback()
    assert await seqs(backend, user) == [1]
    assert await head(backend, user) == 1
    assert (await publish(backend, user, {"n": 3}))[1] == 2
    got = await announced.wait(user, 2)
    await asyncio.sleep(0.2)
    assert [a.seq for a in announced.of(user)] == [a.seq for a in got] == [1, 2]
    frame = got[1].frame
    assert frame is not None and orjson.loads(frame)["notification"]["data"] == {"n": 3}


async def test_a_rollback_of_the_first_publish_of_a_user_leaves_no_stream(
    backend: asyncpg.Connection,
) -> None:
    user = new_user()
    tx = backend.transaction()
    await tx.start()
    await publish(backend, user, {})
    await tx.rollback()
    assert await head(backend, user) is None
    assert (await publish(backend, user, {}))[1] == 1


async def test_a_savepoint_rolled_back_leaves_nothing(
    backend: asyncpg.Connection, announced: Announced
) -> None:
    """A savepoint around the call undoes it alone; the transaction goes on."""
    user = new_user()
    async with backend.transaction():
        await publish(backend, user, {"n": 1})
        with pytest.raises(RuntimeError):
            async with backend.transaction():  # a savepoint
                await publish(backend, user, {"n": "undone"})
                raise RuntimeError
        assert (await publish(backend, user, {"n": 2}))[1] == 2
    got = await announced.wait(user, 2)
    await asyncio.sleep(0.2)
    assert [orjson.loads(a.frame or "")["notification"]["data"] for a in got] == [
        {"n": 1},
        {"n": 2},
    ]
    assert await seqs(backend, user) == [1, 2]


async def test_repeatable_read_fails_with_40001_after_a_concurrent_publish(
    pg_database: str,
) -> None:
    """Under REPEATABLE READ, a publish for a user whose stream moved since the
    transaction's snapshot is a serialization failure, never a reused seq."""
    user = new_user()
    a, b = await connect(pg_database), await connect(pg_database)
    try:
        await publish(b, user, {})
        await a.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        await a.fetchval("SELECT 1")  # the snapshot
        await publish(b, user, {})
        with pytest.raises(asyncpg.SerializationError):
            await publish(a, user, {})
        await a.execute("ROLLBACK")
        assert await seqs(b, user) == [1, 2]
    finally:
        await a.close()
        await b.close()


@pytest.mark.parametrize("first", ["a", "b"])
async def test_concurrent_transactions_for_one_user_number_in_commit_order(
    pg_database: str, announced: Announced, first: str
) -> None:
    """The second transaction to publish for the user waits on the user's stream until
    the first commits, then takes the next seq: seqs follow commit order, with no gap,
    whichever transaction goes first."""
    user = new_user()
    a, b = await connect(pg_database), await connect(pg_database)
    try:
        leader, follower = (a, b) if first == "a" else (b, a)
        await leader.execute("BEGIN")
        await follower.execute("BEGIN")
        lead_id, lead_seq = await publish(leader, user, {"by": "leader"})
        waiting = asyncio.create_task(publish(follower, user, {"by": "follower"}))
        assert await blocked(waiting)
        await leader.execute("COMMIT")
        follow_id, follow_seq = await asyncio.wait_for(waiting, timeout(5))
        await follower.execute("COMMIT")
        assert (lead_seq, follow_seq) == (1, 2)
        assert await seqs(a, user) == [1, 2]
        got = await announced.wait(user, 2)
        assert [(x.seq, orjson.loads(x.frame or "")["notification"]["id"]) for x in got] == [
            (1, lead_id),
            (2, follow_id),
        ]
    finally:
        await a.close()
        await b.close()


async def test_a_waiting_transaction_takes_the_seq_of_one_that_rolled_back(
    pg_database: str,
) -> None:
    user = new_user()
    a, b = await connect(pg_database), await connect(pg_database)
    try:
        await publish(a, user, {})
        await a.execute("BEGIN")
        await b.execute("BEGIN")
        assert (await publish(a, user, {"gone": True}))[1] == 2
        waiting = asyncio.create_task(publish(b, user, {"kept": True}))
        assert await blocked(waiting)
        await a.execute("ROLLBACK")
        assert (await asyncio.wait_for(waiting, timeout(5)))[1] == 2
        await b.execute("COMMIT")
        assert await seqs(a, user) == [1, 2]
    finally:
        await a.close()
        await b.close()


async def test_sql_and_store_publishes_share_one_stream(
    backend: asyncpg.Connection, pg_store: Store
) -> None:
    """An HTTP publish (the store's statement) waits for an open SQL publish of the same
    user and numbers after it."""
    user = new_user()
    await backend.execute("BEGIN")
    await publish(backend, user, {"from": "sql"})
    http = asyncio.create_task(pg_store.publish("main", [NewNotification(user, "t", "{}", "")]))
    assert await blocked(http)
    await backend.execute("COMMIT")
    [published] = await asyncio.wait_for(http, timeout(5))
    assert published.notification.seq == 2
    assert await seqs(backend, user) == [1, 2]


async def test_a_stream_held_past_the_lock_timeout_fails_that_publish_alone(
    backend: asyncpg.Connection, pg_database: str
) -> None:
    """With a lock timeout (`NOTIFIER_PUBLISH_LOCK_TIMEOUT_MS`), a publish to a user whose
    stream an open SQL transaction holds gives up with StreamBusy (a 503 over HTTP, a
    retry for the publisher) and stores nothing, while another user's publish goes
    through; once the transaction commits, the user's next publish numbers after it."""
    engine = db.create_engine(pg_database, lock_timeout_ms=200)
    store = create_store(engine)
    try:
        held, free = new_user(), new_user()
        await backend.execute("BEGIN")
        await publish(backend, held, {"from": "sql"})
        started = asyncio.get_running_loop().time()
        with pytest.raises(StreamBusy):
            await store.publish("main", [NewNotification(held, "t", "{}", "")])
        assert asyncio.get_running_loop().time() - started < timeout(5)
        [other] = await store.publish("main", [NewNotification(free, "t", "{}", "")])
        assert other.notification.seq == 1
        await backend.execute("COMMIT")
        [after] = await store.publish("main", [NewNotification(held, "t", "{}", "")])
        assert after.notification.seq == 2
        assert await seqs(backend, held) == [1, 2]
    finally:
        await engine.dispose()


# -- idempotency ----------------------------------------------------------------------


async def test_a_repeated_key_returns_the_original_and_announces_nothing(
    backend: asyncpg.Connection, announced: Announced
) -> None:
    user = new_user()
    key = "order-42-shipped " + HOSTILE[:30]
    first = await publish(backend, user, {"a": 1, "b": [1, 2]}, "shipped", key)
    # The same body, written differently: keys in another order, other spaces.
    again = await publish(backend, user, '{"b":[1,2],   "a":1}', "shipped", key)
    async with backend.transaction():
        inside = await publish(backend, user, {"b": [1, 2], "a": 1}, "shipped", key)
    assert first == again == inside == (first[0], 1)
    assert await seqs(backend, user) == [1]
    await announced.wait(user, 1)
    await asyncio.sleep(0.2)
    assert len(announced.of(user)) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"user": "other"},
        {"type": "other"},
        {"data": {"a": 2}},
        {"data": {"a": 1, "b": None}},
        {"data": {"a": 1.5}},
    ],
)
async def test_a_key_reused_with_another_body_raises_23505(
    backend: asyncpg.Connection, change: dict[str, Any]
) -> None:
    user, key = new_user(), new_user()
    await publish(backend, user, {"a": 1}, "t", key)
    other_user = new_user() if "user" in change else user
    with pytest.raises(asyncpg.UniqueViolationError) as raised:
        await publish(
            backend, other_user, change.get("data", {"a": 1}), change.get("type", "t"), key
        )
    assert raised.value.sqlstate == "23505"
    assert raised.value.constraint_name == "ix_notifications_idempotency"
    assert await seqs(backend, user) == [1]


async def test_a_key_used_by_an_http_publisher_is_not_the_sql_publishers(
    backend: asyncpg.Connection, pg_store: Store
) -> None:
    user, key = new_user(), new_user()
    await pg_store.publish("main", [NewNotification(user, "t", "{}", "fp", key)])
    assert (await publish(backend, user, {"other": True}, "t", key))[1] == 2


async def test_a_concurrent_call_with_the_same_key_waits_and_gets_the_original(
    pg_database: str,
) -> None:
    """Two transactions retrying the same publish: the second waits for the first and,
    once it commits, answers its original instead of a second notification."""
    user, key = new_user(), new_user()
    a, b = await connect(pg_database), await connect(pg_database)
    try:
        await a.execute("BEGIN")
        await b.execute("BEGIN")
        original = await publish(a, user, {"x": 1}, "t", key)
        waiting = asyncio.create_task(publish(b, user, {"x": 1}, "t", key))
        assert await blocked(waiting)
        await a.execute("COMMIT")
        assert await asyncio.wait_for(waiting, timeout(5)) == original
        await b.execute("COMMIT")
        assert await seqs(a, user) == [1]
    finally:
        await a.close()
        await b.close()


async def test_a_key_freed_by_a_rollback_can_be_used_again(backend: asyncpg.Connection) -> None:
    user, key = new_user(), new_user()
    tx = backend.transaction()
    await tx.start()
    await publish(backend, user, {"x": 1}, "t", key)
    await tx.rollback()
    assert (await publish(backend, user, {"x": 2}, "t", key))[1] == 1


# -- validation ---------------------------------------------------------------------------


BAD: list[tuple[str, tuple[Any, Any, Any, Any]]] = [
    ("empty user_id", ("", "t", "{}", None)),
    ("user_id over 255", ("u" * 256, "t", "{}", None)),
    ("NULL user_id", (None, "t", "{}", None)),
    ("empty type", ("@", "", "{}", None)),
    ("type over 255", ("@", "é" * 256, "{}", None)),
    ("NULL type", ("@", None, "{}", None)),
    ("data an array", ("@", "t", "[1]", None)),
    ("data a string", ("@", "t", '"x"', None)),
    ("data a number", ("@", "t", "1", None)),
    ("data JSON null", ("@", "t", "null", None)),
    ("NULL data", ("@", "t", None, None)),
    ("empty key", ("@", "t", "{}", "")),
    ("key over 255", ("@", "t", "{}", "k" * 256)),
    # HTTP's bounds on data (64 levels, data included; integers of 64 bits).
    ("data 65 levels deep", ("@", "t", '{"a":' + "[" * 63 + "{}" + "]" * 63 + "}", None)),
    ("data 65 levels of objects", ("@", "t", '{"a":' * 65 + "1" + "}" * 65, None)),
    ("integer 2^64", ("@", "t", '{"n": 18446744073709551616}', None)),
    ("integer -2^63-1", ("@", "t", '{"n": [-9223372036854775809]}', None)),
    ("number 1e300", ("@", "t", '{"n": 1e300}', None)),
]


async def test_data_at_the_bounds_is_accepted(backend: asyncpg.Connection) -> None:
    """64 levels, mixed objects and arrays, and the integers at both ends of 64 bits are
    stored, as over HTTP."""
    user = new_user()
    deep = '{"a":' + "[" * 62 + "{}" + "]" * 62 + "}"
    assert json.loads(deep)  # 64 levels: data, 62 arrays, the innermost object
    await publish(backend, user, deep)
    await publish(backend, user, '{"n": [18446744073709551615, -9223372036854775808, 1.5]}')
    assert await seqs(backend, user) == [1, 2]


@pytest.mark.parametrize(("case", "arguments"), BAD, ids=[case for case, _ in BAD])
async def test_bad_input_raises_22023_and_stores_nothing(
    backend: asyncpg.Connection, case: str, arguments: tuple[Any, Any, Any, Any]
) -> None:
    user = new_user()
    values = [user if v == "@" else v for v in arguments]
    with pytest.raises(asyncpg.PostgresError) as raised:
        await backend.fetchrow(PUBLISH, *values)
    assert raised.value.sqlstate == "22023", case
    assert "notifier_publish" in str(raised.value)
    assert await seqs(backend, user) == [] and await head(backend, user) is None


async def test_the_longest_names_are_accepted(backend: asyncpg.Connection) -> None:
    user = "中" * 255
    await backend.execute("DELETE FROM notifications WHERE user_id = $1", user)
    await backend.execute("DELETE FROM streams WHERE user_id = $1", user)
    assert (await publish(backend, user, {}, "é" * 255, "k" * 255))[1] == 1


async def test_a_nul_never_reaches_the_function(backend: asyncpg.Connection) -> None:
    """PostgreSQL's text and jsonb cannot hold a NUL: it is refused before the function
    runs (22021 in text, 22P05 as a jsonb escape), and nothing is stored."""
    user = new_user()
    for values in (
        (user + "\x00", "t", "{}", None),
        (user, "t\x00", "{}", None),
        (user, "t", "{}", "k\x00"),
        (user, "t", '{"a": "\\u0000"}', None),
    ):
        with pytest.raises(asyncpg.PostgresError) as raised:
            await backend.fetchrow(PUBLISH, *values)
        assert raised.value.sqlstate in {"22021", "22P05"}, values
    assert await head(backend, user) is None


@pytest.fixture
async def payload_limit(pg_store: Store) -> AsyncIterator[int]:
    """A 100-byte limit, as `serve` records it, put back afterwards."""
    await sqlpublish.record_settings(pg_store.engine, 100)
    try:
        yield 100
    finally:
        await sqlpublish.record_settings(pg_store.engine, 65536)


async def test_data_is_measured_as_compact_utf8_json_against_the_recorded_limit(
    backend: asyncpg.Connection, payload_limit: int
) -> None:
    user = new_user()
    # {"t":"…"} is 8 bytes around the text; spaces jsonb writes do not count, bytes do.
    fits = {"t": "é" * ((payload_limit - 8) // 2)}
    over = {"t": "é" * ((payload_limit - 8) // 2) + "x"}
    assert len(orjson.dumps(fits)) == payload_limit
    assert (await publish(backend, user, fits))[1] == 1
    with pytest.raises(asyncpg.PostgresError) as raised:
        await publish(backend, user, over)
    assert raised.value.sqlstate == "22023"
    assert f"{payload_limit + 1} bytes, over the {payload_limit}-byte limit" in str(raised.value)
    assert await seqs(backend, user) == [1]


# -- what is stored and announced -------------------------------------------------------

DATA: list[dict[str, Any]] = [
    {"nested": {"a": [1, {"b": None, "c": [True, False]}], "empty": {}, "list": []}},
    {"text": HOSTILE, "key " + HOSTILE: "x", "raw": "\\u0000 is not an escape", "e": "🎉"},
    {"sep": ", ", "colon": ": ", "both": '", "x": "', "bs": "\\", "bsq": '\\"', "q": '"'},
    {"max": 2**63 - 1, "u64": 2**64 - 1, "neg": -7, "frac": 0.1, "exp": -1e-7, "big": 1.5e18},
    {},
    {"s": '"},"read_at":"2000-01-01T00:00:00.000000Z"', "deep": [[[{"x": "</script>"}]]]},
]


async def test_hostile_data_is_stored_compact_and_announced_as_replayed(
    backend: asyncpg.Connection, pg_store: Store, announced: Announced
) -> None:
    """The stored text is compact JSON equal in meaning to the call's `data`; the frame
    announced for each row is the one replay sends, byte for byte."""
    user = (new_user() + " " + HOSTILE)[:255]
    for index, value in enumerate(DATA):
        await publish(backend, user, value, TYPES[index % len(TYPES)])
    got = await announced.wait(user, len(DATA))
    frames = await pg_store.frames_after(user, 0, 100)
    rows = await pg_store.after(user, 0, 100)
    assert [(a.seq, a.frame) for a in got] == frames == [(n.seq, n.frame) for n in rows]
    for value, row in zip(DATA, rows, strict=True):
        # Numbers as exact decimals: PostgreSQL's numeric writes 1.5e18 in full.
        assert exact(row.data_json) == exact(json.dumps(value))
        same = await backend.fetchval(
            "SELECT $1::jsonb = $2::jsonb", row.data_json, json.dumps(value)
        )
        assert same, row.data_json
        # Compact: no whitespace outside strings.
        assert row.data_json == compact(row.data_json)


def exact(text: str) -> Any:
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


def compact(text: str) -> str:
    """`text` with the whitespace outside its strings removed (a JSON tokenizer)."""
    out: list[str] = []
    in_string = escaped = False
    for char in text:
        if in_string:
            out.append(char)
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
            out.append(char)
        elif char not in " \n\t\r":
            out.append(char)
    return "".join(out)


async def test_a_frame_too_large_for_notify_is_announced_without_it(
    backend: asyncpg.Connection, pg_store: Store, announced: Announced
) -> None:
    user = new_user()
    await publish(backend, user, {"t": "中" * 3000})  # 9,000 bytes
    await publish(backend, user, {"t": "small"})
    big, small = await announced.wait(user, 2)
    assert (big.seq, big.frame) == (1, None)
    assert small.frame == (await pg_store.frames_after(user, 1, 1))[0][1]
    assert all(len(p.encode()) <= MAX_PAYLOAD_BYTES for p in announced.payloads)


async def test_created_at_is_announced_and_stored_alike(
    backend: asyncpg.Connection, pg_store: Store, announced: Announced
) -> None:
    user = new_user()
    await publish(backend, user, {})
    [announcement] = await announced.wait(user, 1)
    [row] = await pg_store.after(user, 0, 1)
    assert announcement.created_at == pytest.approx(row.created_at.timestamp(), abs=1e-6)


async def test_the_sqlalchemy_example_of_the_guide(pg_store: Store) -> None:
    """docs/sql-publish.md's statement, bound by SQLAlchemy's `text()` (CAST, not `::`)."""
    import sqlalchemy as sa

    statement = sa.text(
        "SELECT id, seq FROM notifier_publish(:user_id, :type, CAST(:data AS jsonb), :key)"
    )
    user = new_user()
    values = {"user_id": user, "type": "order.shipped", "data": '{"order": 42}', "key": user}
    async with pg_store.engine.begin() as conn:
        row = (await conn.execute(statement, values)).one()
    async with pg_store.engine.begin() as conn:
        again = (await conn.execute(statement, values)).one()
    assert row.seq == 1 and (str(again.id), again.seq) == (str(row.id), 1)


# -- the function's definition ------------------------------------------------------------


def test_the_migrations_frame_expression_is_the_notifications_frame() -> None:
    """The function writes frames with the expression frozen in migration 0003: when the
    Notification's fields change, a migration must re-create the function."""
    path = ROOT / "migrations" / "versions" / "0003_sql_publish.py"
    spec = importlib.util.spec_from_file_location("migration_0003", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module._FRAME == FRAME_SQL


@pytest.fixture
async def role(backend: asyncpg.Connection) -> AsyncIterator[str]:
    """A login role of its own, with no privilege in the database."""
    name = f"notifier_test_{uuid.uuid4().hex[:10]}"
    await backend.execute(f'CREATE ROLE "{name}" LOGIN')
    try:
        yield name
    finally:
        await backend.execute(f'DROP OWNED BY "{name}"')
        await backend.execute(f'DROP ROLE "{name}"')


async def test_a_role_granted_only_execute_publishes_and_touches_nothing_else(
    backend: asyncpg.Connection, pg_database: str, role: str
) -> None:
    """EXECUTE is revoked from PUBLIC, and the function runs with its owner's rights: a
    backend role granted EXECUTE alone can publish, but not write the tables."""
    conn = await asyncpg.connect(asyncpg_dsn(pg_database), user=role)
    try:
        user = new_user()
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await publish(conn, user, {})
        await backend.execute(
            f'GRANT EXECUTE ON FUNCTION notifier_publish(text, text, jsonb, text) TO "{role}"'
        )
        assert (await publish(conn, user, {}))[1] == 1
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("UPDATE streams SET last_seq = 0")
    finally:
        await conn.close()


async def test_an_instance_that_may_not_record_its_limit_logs_and_goes_on(
    pg_database: str, role: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = make_url(pg_database).set(username=role).render_as_string(hide_password=False)
    engine = db.create_engine(url)
    try:
        with caplog.at_level(logging.WARNING, logger="notifier.store"):
            await sqlpublish.record_settings(engine, 123)
    finally:
        await engine.dispose()
    assert "could not record NOTIFIER_MAX_PAYLOAD_BYTES" in caplog.text
