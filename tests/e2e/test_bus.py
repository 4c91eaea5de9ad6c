"""Cross-instance fan-out through each bus engine, against the real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import pytest

from tests.support import (
    PG_ADMIN_DSN,
    Server,
    new_user,
    publish,
    recv_notifications,
    timeout,
    ws_connect,
)


@pytest.fixture(params=["postgres", "redis"])
def two_instances(
    request: pytest.FixtureRequest, pg_database: str
) -> Iterator[tuple[Server, Server]]:
    """Two instances on one database, fanning out through the bus under test."""
    env = {"NOTIFIER_BUS": request.param}
    first = Server(pg_database, env_extra=env).start()
    second = Server(pg_database, env_extra=env).start()
    try:
        yield first, second
    finally:
        first.stop()
        second.stop()


async def test_notification_posted_to_one_instance_reaches_socket_on_another(
    two_instances: tuple[Server, Server],
) -> None:
    """A socket on instance A gets what is posted to instance B, once, in seq order."""
    a, b = two_instances
    user = new_user()
    async with ws_connect(a, user) as on_a, ws_connect(b, user) as on_b:
        created = [publish(None, b if n % 2 else a, user, data={"n": n}).json() for n in range(6)]
        got_a = await recv_notifications(on_a, 6)
        got_b = await recv_notifications(on_b, 6)
    assert [n["seq"] for n in got_a] == [1, 2, 3, 4, 5, 6]
    assert got_a == created and got_b == created


async def test_large_notification_crosses_instances(two_instances: tuple[Server, Server]) -> None:
    """A notification too large for a NOTIFY payload still arrives whole on the other instance."""
    a, b = two_instances
    user = new_user()
    big = {"text": "x" * 20000}
    async with ws_connect(a, user) as ws:
        created = publish(None, b, user, data=big).json()
        [got] = await recv_notifications(ws, 1)
    assert got == created and got["data"] == big


async def test_read_state_crosses_instances(two_instances: tuple[Server, Server]) -> None:
    """Marking read on one instance sends a read frame to the user's socket on the other."""
    a, b = two_instances
    user = new_user()
    publish(None, a, user)
    async with ws_connect(a, user) as ws, ws_connect(b, user) as reader:
        await reader.send('{"type": "read", "up_to_seq": 1}')
        frame = await asyncio.wait_for(ws.recv(), timeout(10))
    assert frame == '{"type":"read","up_to_seq":1}'


async def test_listen_connection_killed_then_caught_up(pg_database: str) -> None:
    """After its LISTEN connection is terminated, an instance reconnects and its sockets get
    what was published meanwhile, with no gap and no duplicate."""
    a = Server(pg_database, env_extra={"NOTIFIER_BUS": "postgres"}).start()
    b = Server(pg_database, env_extra={"NOTIFIER_BUS": "postgres"}).start()
    user = new_user()
    try:
        async with ws_connect(a, user) as ws:
            publish(None, b, user)
            await recv_notifications(ws, 1)
            admin = await asyncpg.connect(PG_ADMIN_DSN)
            try:
                killed = await admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE query ILIKE 'LISTEN%' AND datname = $1",
                    pg_database.rsplit("/", 1)[1],
                )
            finally:
                await admin.close()
            assert killed >= 1
            for n in range(5):
                publish(None, b, user, data={"n": n})
            got = await recv_notifications(ws, 5, seconds=30)
        assert [n["seq"] for n in got] == [2, 3, 4, 5, 6]
    finally:
        a.stop()
        b.stop()
