"""`notifier_publish()` end to end: a backend's own transactions on a separate asyncpg
connection, and real `notifier serve` instances on each bus with sockets connected.
A commit reaches the sockets within a second and is replayable; a rollback never
arrives; SQL publishes keep arriving after the instance's LISTEN connection is killed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import asyncpg
import httpx
import orjson
import pytest

from notifier.bus.postgres import asyncpg_dsn
from tests.conftest import migrate
from tests.support import (
    API_KEY,
    PG_ADMIN_DSN,
    Server,
    new_user,
    no_frame,
    recv_notifications,
    recv_until,
    timeout,
    user_headers,
    ws_connect,
)

PUBLISH = "SELECT id::text, seq FROM notifier_publish($1, $2, $3::jsonb, $4)"


@pytest.fixture(scope="module", params=["postgres", "redis", "memory"])
def instance(request: pytest.FixtureRequest, pg_database: str) -> Iterator[Server]:
    """One instance on the bus under test (the memory bus: PostgreSQL, one process)."""
    server = Server(pg_database, env_extra={"NOTIFIER_BUS": request.param}).start()
    yield server
    server.stop()


@pytest.fixture
async def backend(pg_database: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(asyncpg_dsn(pg_database))
    try:
        yield conn
    finally:
        await conn.close()


async def sql_publish(
    conn: asyncpg.Connection, user: str, data: dict[str, object], key: str | None = None
) -> tuple[str, int]:
    row = await conn.fetchrow(PUBLISH, user, "order.shipped", orjson.dumps(data).decode(), key)
    assert row is not None
    return row[0], row[1]


def inbox(server: Server, user: str) -> list[dict[str, object]]:
    response = httpx.get(
        server.url + "/v1/me/notifications", params={"after": 0}, headers=user_headers(user)
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, object]] = response.json()["notifications"]
    return items


async def test_a_commit_is_delivered_within_a_second_and_replayable(
    instance: Server, backend: asyncpg.Connection
) -> None:
    user = new_user()
    async with ws_connect(instance, user) as ws:
        async with backend.transaction():
            id_, seq = await sql_publish(backend, user, {"order": 42})
            assert await no_frame(ws, 0.3)  # nothing before the commit
        committed = time.monotonic()
        [got] = await recv_notifications(ws, 1, seconds=1)
        assert time.monotonic() - committed < timeout(1)
    assert (got["id"], got["seq"], got["data"]) == (id_, seq, {"order": 42})
    assert inbox(instance, user) == [got]
    async with ws_connect(instance, user, after=0) as ws:
        replayed, done = await recv_until(ws, "replayed")
    assert replayed == [got] and done["last_seq"] == 1


async def test_a_rollback_is_never_delivered_and_leaves_no_gap(
    instance: Server, backend: asyncpg.Connection
) -> None:
    user = new_user()
    async with ws_connect(instance, user) as ws:
        tx = backend.transaction()
        await tx.start()
        await sql_publish(backend, user, {"n": "rolled back"})
        await tx.rollback()
        assert await no_frame(ws, 0.5)
        await sql_publish(backend, user, {"n": "kept"})
        [got] = await recv_notifications(ws, 1, seconds=1)
    assert (got["seq"], got["data"]) == (1, {"n": "kept"})


async def test_a_repeated_key_is_delivered_once(
    instance: Server, backend: asyncpg.Connection
) -> None:
    user, key = new_user(), new_user()
    async with ws_connect(instance, user) as ws:
        first = await sql_publish(backend, user, {"n": 1}, key)
        assert await sql_publish(backend, user, {"n": 1}, key) == first
        [got] = await recv_notifications(ws, 1, seconds=1)
        assert await no_frame(ws, 0.5)
    assert (got["id"], got["seq"]) == first


async def test_a_key_conflict_or_bad_input_raises_and_delivers_nothing(
    instance: Server, backend: asyncpg.Connection
) -> None:
    """23505 for a key reused with another body, 22023 for each invalid argument: the
    socket gets nothing and the user's next seq is the next one."""
    user, key = new_user(), new_user()
    bad: list[tuple[object, object, object, object]] = [
        (user, "t", '{"n": 2}', key),  # the key with another body
        ("", "t", "{}", None),
        ("u" * 256, "t", "{}", None),
        (user, "", "{}", None),
        (user, "t" * 256, "{}", None),
        (user, "t", "[1]", None),
        (user, "t", None, None),
        (user, "t", '{"big": "' + "x" * 70000 + '"}', None),
        (user, "t", "{}", ""),
    ]
    async with ws_connect(instance, user) as ws:
        await backend.fetchrow(PUBLISH, user, "t", '{"n": 1}', key)
        await recv_notifications(ws, 1, seconds=1)
        for arguments in bad:
            with pytest.raises(asyncpg.PostgresError) as raised:
                async with backend.transaction():
                    await backend.fetchrow(PUBLISH, *arguments)
            assert raised.value.sqlstate == ("23505" if arguments[3] == key else "22023")
        assert await no_frame(ws, 0.3)
        await sql_publish(backend, user, {"n": 3})
        [got] = await recv_notifications(ws, 1, seconds=1)
    assert (got["seq"], got["data"]) == (2, {"n": 3})
    assert [n["seq"] for n in inbox(instance, user)] == [1, 2]


async def test_concurrent_transactions_arrive_in_commit_order(
    instance: Server, pg_database: str
) -> None:
    """Two backend transactions publish for one user; the second waits for the first's
    commit. The socket gets seq 1 then 2, each once, in that order."""
    user = new_user()
    a = await asyncpg.connect(asyncpg_dsn(pg_database))
    b = await asyncpg.connect(asyncpg_dsn(pg_database))
    try:
        async with ws_connect(instance, user) as ws:
            await a.execute("BEGIN")
            await b.execute("BEGIN")
            await sql_publish(b, user, {"by": "b"})
            waiting = asyncio.create_task(sql_publish(a, user, {"by": "a"}))
            await asyncio.sleep(0.2)
            assert not waiting.done()
            await b.execute("COMMIT")
            await asyncio.wait_for(waiting, timeout(5))
            await a.execute("COMMIT")
            got = await recv_notifications(ws, 2, seconds=2)
            assert await no_frame(ws, 0.3)
        assert [(n["seq"], n["data"]) for n in got] == [(1, {"by": "b"}), (2, {"by": "a"})]
    finally:
        await a.close()
        await b.close()


async def test_every_instance_delivers_a_sql_publish(
    two_instances: tuple[Server, Server], backend: asyncpg.Connection
) -> None:
    user = new_user()
    first, second = two_instances
    async with ws_connect(first, user) as one, ws_connect(second, user) as two:
        await sql_publish(backend, user, {"x": 1})
        [got_one] = await recv_notifications(one, 1, seconds=1)
        [got_two] = await recv_notifications(two, 1, seconds=1)
    assert got_one == got_two and got_one["seq"] == 1


async def terminate_listeners(database_url: str) -> int:
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        killed: int = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'notifier-listen' AND datname = $1",
            database_url.rsplit("/", 1)[1],
        )
        return killed
    finally:
        await admin.close()


@pytest.mark.parametrize("bus", ["redis", "memory"])
async def test_sql_publishes_arrive_after_the_listen_connection_is_killed(
    pg_database: str, backend: asyncpg.Connection, bus: str
) -> None:
    """On a bus that is not PostgreSQL's, the instance's LISTEN for SQL publishes is
    supervised: killed, it reconnects and catches its sockets up, and what was committed
    meanwhile arrives once, in order."""
    server = Server(pg_database, env_extra={"NOTIFIER_BUS": bus}).start()
    user = new_user()
    try:
        async with ws_connect(server, user) as ws:
            await sql_publish(backend, user, {"n": 0})
            await recv_notifications(ws, 1, seconds=1)
            assert await terminate_listeners(pg_database) >= 1
            for n in range(1, 5):
                await sql_publish(backend, user, {"n": n})
            got = await recv_notifications(ws, 4, seconds=15)
            assert await no_frame(ws, 0.3)
        assert [(n["seq"], n["data"]) for n in got] == [(s, {"n": s - 1}) for s in range(2, 6)]
    finally:
        server.stop()


async def test_serve_records_its_payload_limit_for_the_function(fresh_pg_database: str) -> None:
    """The function measures `data` against the NOTIFIER_MAX_PAYLOAD_BYTES the
    instances run with, which `serve` records at start-up."""
    migrate(fresh_pg_database)
    conn = await asyncpg.connect(asyncpg_dsn(fresh_pg_database))
    try:
        user = new_user()
        await sql_publish(conn, user, {"t": "x" * 100})  # the default limit until then
        server = Server(fresh_pg_database, env_extra={"NOTIFIER_MAX_PAYLOAD_BYTES": "50"})
        server.start()
        try:
            await sql_publish(conn, user, {"t": "x" * 42})  # {"t":"…"} is 50 bytes
            with pytest.raises(asyncpg.PostgresError) as raised:
                await sql_publish(conn, user, {"t": "x" * 43})
            assert raised.value.sqlstate == "22023"
        finally:
            server.stop()
        count = await conn.fetchval("SELECT count(*) FROM notifications WHERE user_id = $1", user)
        assert count == 2
    finally:
        await conn.close()


async def test_publishes_to_free_users_go_through_while_a_stream_is_held(
    pg_database: str, backend: asyncpg.Connection
) -> None:
    """While a backend transaction holds a user's stream, 120 concurrent publishes to 30
    other users through the same instance all answer 201 promptly (not after the
    transaction); the held user's two publishes answer 201 right after its commit,
    numbered after the SQL one: every stream gap-free, nothing lost or doubled."""
    server = Server(pg_database, env_extra={"NOTIFIER_BUS": "postgres"}).start()
    try:
        held = new_user()
        others = [new_user() for _ in range(30)]
        async with httpx.AsyncClient(base_url=server.url, timeout=timeout(20)) as http:

            async def post(user: str) -> httpx.Response:
                return await http.post(
                    "/v1/notifications",
                    json={"user_id": user, "type": "t", "data": {}},
                    headers={"Authorization": f"Bearer {API_KEY}"},
                )

            assert (await post(held)).status_code == 201
            await backend.execute("BEGIN")
            await sql_publish(backend, held, {"open": True})
            waiting = [asyncio.create_task(post(held)) for _ in range(2)]
            started = time.monotonic()
            answers = await asyncio.gather(*(post(others[n % 30]) for n in range(120)))
            elapsed = time.monotonic() - started
            assert [r.status_code for r in answers] == [201] * 120
            # Publishes that waited for the held stream would wait until the commit below,
            # which comes only after them: past the 5 s lock timeout, as 503s. Well under
            # it is "promptly"; a tighter bound only measures how busy the machine is
            # (1.53 s once in CI, with the rest of the suite running beside it).
            assert elapsed < timeout(3.5), elapsed
            assert not any(task.done() for task in waiting)
            committed = time.monotonic()
            await backend.execute("COMMIT")
            late = await asyncio.gather(*waiting)
            assert time.monotonic() - committed < timeout(1)
        assert [r.status_code for r in late] == [201, 201]
        assert sorted(r.json()["seq"] for r in late) == [3, 4]
        assert [n["seq"] for n in inbox(server, held)] == [1, 2, 3, 4]
        for user in others:
            assert sorted(n["seq"] for n in inbox(server, user)) == [1, 2, 3, 4]
    finally:
        server.stop()


async def test_an_open_transaction_does_not_stall_other_publishers(
    pg_database: str, backend: asyncpg.Connection
) -> None:
    """A backend transaction that called notifier_publish() and stays open holds its
    user's stream: an HTTP publish to that user answers 503 with Retry-After after the
    lock timeout (the publisher retries), while concurrent publishes to other users
    answer 201 within about that time, not after the transaction ends."""
    server = Server(
        pg_database,
        env_extra={"NOTIFIER_BUS": "postgres", "NOTIFIER_PUBLISH_LOCK_TIMEOUT_MS": "300"},
    ).start()
    try:
        held = new_user()
        others = [new_user() for _ in range(6)]
        await backend.execute("BEGIN")
        await sql_publish(backend, held, {"open": True})
        async with httpx.AsyncClient(base_url=server.url, timeout=timeout(20)) as http:

            async def post(user: str) -> httpx.Response:
                return await http.post(
                    "/v1/notifications",
                    json={"user_id": user, "type": "t", "data": {}},
                    headers={"Authorization": f"Bearer {API_KEY}"},
                )

            started = time.monotonic()
            answers = await asyncio.gather(post(held), *(post(u) for u in others))
            elapsed = time.monotonic() - started
        await backend.execute("ROLLBACK")
        stuck, *rest = answers
        assert stuck.status_code == 503, stuck.text
        assert stuck.headers["retry-after"] == "1"
        assert [r.status_code for r in rest] == [201] * len(others)
        assert elapsed < timeout(5)  # bounded by the lock timeout, not the transaction
        retried = await asyncio.to_thread(
            httpx.post,
            server.url + "/v1/notifications",
            json={"user_id": held, "type": "t", "data": {}},
            headers={"Authorization": f"Bearer {API_KEY}"},
        )
        assert retried.status_code == 201 and retried.json()["seq"] == 1  # the SQL one rolled back
    finally:
        server.stop()
