"""`notifier serve --workers N`: several processes behind one port behave as one service."""

from __future__ import annotations

import contextlib

import httpx

from tests.support import Server, new_user, publish, recv_notifications, ws_connect


async def test_every_socket_gets_every_notification_across_workers(pg_database: str) -> None:
    """Sockets spread over 2 workers all receive every notification, whichever worker
    took the POST, in seq order; /metrics counts the publishes of all workers."""
    server = Server(pg_database, args=["--workers", "2"]).start()
    user = new_user()
    try:
        async with contextlib.AsyncExitStack() as stack:
            sockets = [await stack.enter_async_context(ws_connect(server, user)) for _ in range(6)]
            with httpx.Client() as client:
                created = [publish(client, server, user, data={"n": n}).json() for n in range(10)]
            for ws in sockets:
                assert await recv_notifications(ws, 10) == created
        text = httpx.get(server.url + "/metrics").text
        published = [
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith('notifier_notifications_published_total{publisher="main"}')
        ]
        assert published and published[0] >= 10
    finally:
        server.stop()


def test_workers_refused_with_the_memory_bus(sqlite_url: str) -> None:
    """--workers 2 on SQLite (memory bus) refuses to start with a one-line reason."""
    server = Server(sqlite_url, args=["--workers", "2"])
    server.start(wait=False)
    assert server.process is not None
    assert server.process.wait(timeout=30) == 2
    assert "--workers > 1 needs" in server.logs()
