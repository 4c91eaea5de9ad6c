"""A keyed publish on PostgreSQL is one statement while its keys are new: the statement
looks the keys up itself and stores nothing when one is stored, and only then does the
store read the originals. What a publisher relies on is that a repeat is still answered
with its original, and that the attempt that found it took no seq and announced nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier import db
from notifier.bus.postgres import asyncpg_dsn
from notifier.core.topics import TopicPublish, topic_fingerprint
from notifier.store import (
    IdempotencyConflict,
    NewNotification,
    PublishRequest,
    Store,
    create_store,
    postgres,
)
from notifier.wire.announcement import TransactionNotify
from tests.store.conftest import Listener
from tests.store.test_notify import ORIGIN
from tests.support import new_user


class Statements:
    """The statements the store's connections run (asyncpg's query logger)."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def __call__(self, record: object) -> None:
        self.texts.append(getattr(record, "query", ""))

    async def publishing(self) -> list[str]:
        """Those that publish or look keys up, as `keyed`, `plain` and `lookup`."""
        await asyncio.sleep(0.05)  # asyncpg calls its query loggers soon, not at once
        kinds = []
        for text in self.texts:
            if "INSERT INTO notifications" in text:
                kinds.append("keyed" if "known AS" in text else "plain")
            elif text == postgres._FIND_KEYS:
                kinds.append("lookup")
        return kinds

    async def clear(self) -> None:
        await asyncio.sleep(0.05)
        self.texts.clear()


@pytest.fixture
def statements() -> Iterator[Statements]:
    yield Statements()


@pytest.fixture
async def pg_store(pg_database: str, statements: Statements) -> AsyncIterator[Store]:
    engine: AsyncEngine = db.create_engine(pg_database)

    def observe(dbapi_connection: object, _record: object) -> None:
        dbapi_connection.driver_connection.add_query_logger(statements)  # type: ignore[attr-defined]

    event.listen(engine.sync_engine, "connect", observe)
    try:
        yield create_store(engine)
    finally:
        await engine.dispose()


def key() -> str:
    return f"k-{uuid.uuid4()}"


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "waiting-path"])
async def test_new_keys_publish_in_one_statement(
    pg_store: Store, statements: Statements, lane: bool
) -> None:
    user = new_user()
    requests = [
        PublishRequest("p", [NewNotification(user, "t", '{"i":1}', "f1", key())]),
        PublishRequest("p", [NewNotification(user, "t", '{"i":2}', "f2", key())]),
    ]
    publish = pg_store.try_publish_group if lane else pg_store.publish_group
    outcomes = await publish(requests)
    assert all(isinstance(o, list) for o in outcomes)
    assert [[p.notification.seq for p in o] for o in outcomes if isinstance(o, list)] == [[1], [2]]
    assert await statements.publishing() == ["keyed"]


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "waiting-path"])
async def test_a_repeat_is_answered_with_its_original_and_takes_no_seq(
    pg_store: Store, statements: Statements, listener: Listener, lane: bool
) -> None:
    notify = TransactionNotify(listener.channel, ORIGIN)
    user, k1 = new_user(), key()
    [first] = await pg_store.publish("p", [NewNotification(user, "t", "{}", "f", k1)], notify)
    await statements.clear()

    repeat = PublishRequest("p", [NewNotification(user, "t", "{}", "f", k1)])
    fresh = PublishRequest("p", [NewNotification(user, "t", '{"new":1}', "g", key())])
    publish = pg_store.try_publish_group if lane else pg_store.publish_group
    again, new = await publish([repeat, fresh], notify)

    assert isinstance(again, list) and isinstance(new, list)
    assert again[0].notification == first.notification and not again[0].created
    assert new[0].created and new[0].notification.seq == 2  # the first try took no seq
    # The first try found the stored key and stored nothing; then the originals were read
    # and only the new item published.
    assert await statements.publishing() == ["keyed", "lookup", "plain"]
    announced = await listener.announcements(2)
    assert [a.seq for a in announced] == [1, 2]
    await asyncio.sleep(0.2)
    assert len(await listener.announcements(2)) == 2  # nothing announced twice


async def test_a_key_of_another_request_is_a_conflict_and_changes_nothing(
    pg_store: Store,
) -> None:
    user, k1 = new_user(), key()
    await pg_store.publish("p", [NewNotification(user, "t", '{"a":1}', "f", k1)])
    outcome = await pg_store.try_publish_group(
        [PublishRequest("p", [NewNotification(user, "t", '{"a":2}', "other", k1)])]
    )
    assert isinstance(outcome[0], IdempotencyConflict)
    [after] = await pg_store.publish("p", [NewNotification(user, "t", "{}", "")])
    assert after.notification.seq == 2


async def test_a_topic_publish_key_is_found_by_a_keyed_direct_publish(pg_store: Store) -> None:
    """A topic publish to no subscriber stores its key in `topic_publishes` only: the
    statement's own lookup reads that table too."""
    topic, k1 = f"empty.{uuid.uuid4().hex[:10]}", key()
    await pg_store.publish_topic(
        TopicPublish("p", topic, "t", "{}", topic_fingerprint(topic, "t", {}), k1)
    )
    with pytest.raises(IdempotencyConflict):
        await pg_store.publish("p", [NewNotification(new_user(), "t", "{}", "f", k1)])


async def test_keys_belong_to_their_publisher(pg_store: Store, statements: Statements) -> None:
    user, k1 = new_user(), key()
    await pg_store.publish("p", [NewNotification(user, "t", "{}", "f", k1)])
    await statements.clear()
    [other] = await pg_store.publish("q", [NewNotification(user, "t", "{}", "f", k1)])
    assert other.created and other.notification.seq == 2
    assert await statements.publishing() == ["keyed"]


@pytest.mark.parametrize(
    ("statement", "parameters"),
    [
        ("_FIND_KEYS", "('p', '{k1,k2}')"),
        (
            "_LANE_PUBLISH_KEYED",
            "('{00000000-0000-0000-0000-000000000001}', '{u}', '{t}', '{\"{}\"}', '{p}',"
            " '{k1}', '{f}', now(), '{a}', '{b}', '{c}', 'd', 'channel', 'head', 3000)",
        ),
    ],
)
async def test_keys_are_probed_through_their_index_whatever_the_plan(
    pg_database: str, statement: str, parameters: str
) -> None:
    """The pool's connections force generic plans (`db.py`), made once per connection:
    one made while the tables were young must still probe each key through its index,
    not scan the table (empty copies of the tables, never analyzed, stand for a new
    deployment's)."""
    conn = await asyncpg.connect(
        asyncpg_dsn(pg_database), server_settings={"plan_cache_mode": "force_generic_plan"}
    )
    try:
        for table in ("notifications", "topic_publishes", "streams"):
            await conn.execute(f"CREATE TEMP TABLE {table} (LIKE public.{table} INCLUDING ALL)")
        await conn.execute(f"PREPARE probe AS {getattr(postgres, statement)}")
        plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN EXECUTE probe{parameters}"))
    finally:
        await conn.close()
    assert "Seq Scan on notifications" not in plan and "hashed SubPlan" not in plan, plan
    assert "Seq Scan on topic_publishes" not in plan, plan
    lines = plan.splitlines()
    # Each key is in its index's condition (not a filter over the publisher's every row),
    # for both tables.
    assert not [line for line in lines if "Filter" in line and "idempotency_key" in line], plan
    probes = [line for line in lines if "Index Cond" in line and "idempotency_key" in line]
    assert len(probes) >= 2, plan
