"""Cross-instance fan-out through each bus engine, against the real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio

import asyncpg

from tests.support import (
    PG_ADMIN_DSN,
    Server,
    new_user,
    publish,
    publish_batch,
    recv_notifications,
    timeout,
    ws_connect,
)


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


async def test_non_ascii_notification_under_the_char_limit_but_over_in_bytes_crosses(
    two_instances: tuple[Server, Server],
) -> None:
    """3,000 CJK characters are 9,000 bytes: too large for a NOTIFY payload although
    short in characters. The publish still succeeds and the other instance gets it whole,
    between two small ones of the same batch."""
    a, b = two_instances
    user = new_user()
    texts = ["before", "中" * 3000, "after"]
    async with ws_connect(a, user) as ws:
        response = publish_batch(
            b, [{"user_id": user, "type": "t", "data": {"text": t}} for t in texts]
        )
        assert response.status_code == 201, response.text
        got = await recv_notifications(ws, 3)
    assert [n["data"]["text"] for n in got] == texts
    assert got == response.json()["notifications"]


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
                    "WHERE application_name = 'notifier-listen' AND datname = $1",
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


async def test_notification_never_announced_still_arrives(pg_database: str) -> None:
    """A committed notification whose announcement never left its instance (killed between
    commit and PUBLISH) reaches open sockets through the periodic reconcile round."""
    server = Server(
        pg_database, env_extra={"NOTIFIER_BUS": "redis", "NOTIFIER_RECONCILE_SECONDS": "1"}
    ).start()
    user = new_user()
    try:
        async with ws_connect(server, user) as ws:
            first = publish(None, server, user).json()
            assert (await recv_notifications(ws, 1))[0] == first
            conn = await asyncpg.connect(pg_database.replace("+asyncpg", ""))
            try:
                async with conn.transaction():
                    seq = await conn.fetchval(
                        "UPDATE streams SET last_seq = last_seq + 1 WHERE user_id = $1 "
                        "RETURNING last_seq",
                        user,
                    )
                    await conn.execute(
                        "INSERT INTO notifications (user_id, seq, id, type, data, created_at) "
                        "VALUES ($1, $2, gen_random_uuid(), 'silent', '{}', now())",
                        user,
                        seq,
                    )
            finally:
                await conn.close()
            [got] = await recv_notifications(ws, 1, seconds=10)
        assert got["seq"] == 2 and got["type"] == "silent"
    finally:
        server.stop()
