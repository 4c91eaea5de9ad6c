"""Faults under load: 3 instances on one PostgreSQL, clients spread across them,
publishers on all of them, and in the middle of the run one thing breaks. Each test ends
with every client having every seq exactly once, in order, and nothing stored twice.

These tests restart the shared Redis and PostgreSQL servers: they run last (see
conftest's ordering) and wait for each service to come back.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.faults.harness import Fleet
from tests.support import Server, new_user, timeout

pytestmark = pytest.mark.faults

REDIS_START = [
    "redis-server",
    "--daemonize",
    "yes",
    "--bind",
    "127.0.0.1",
    "-::1",
    "--port",
    "6379",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    "/var/lib/redis",
    "--logfile",
    "/var/log/redis/ci.log",
]


def _pg_version() -> str:
    return sorted(p.name for p in Path("/etc/postgresql").iterdir())[0]


async def _wait(check: str, seconds: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout(seconds)
    while asyncio.get_running_loop().time() < deadline:
        proc = await asyncio.create_subprocess_shell(
            check, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        if await proc.wait() == 0:
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(check)


@pytest.fixture(params=["postgres", "redis"])
def fleet_of_three(request: pytest.FixtureRequest, pg_database: str) -> Iterator[list[Server]]:
    env = {"NOTIFIER_BUS": request.param, "NOTIFIER_RECONCILE_SECONDS": "2"}
    servers = [Server(pg_database, env_extra=env).start() for _ in range(3)]
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


async def _stored_counts(database_url: str, users: list[str]) -> dict[str, int]:
    conn = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        rows = await conn.fetch(
            "SELECT user_id, count(*) AS n, max(seq) AS top FROM notifications "
            "WHERE user_id = ANY($1) GROUP BY user_id",
            users,
        )
    finally:
        await conn.close()
    assert all(row["n"] == row["top"] for row in rows)
    return {row["user_id"]: row["n"] for row in rows}


def _fleet(servers: list[Server]) -> Fleet:
    return Fleet(servers, users=[new_user() for _ in range(3)], per_user=60)


async def test_instance_killed_with_sigkill(fleet_of_three: list[Server], pg_database: str) -> None:
    """An instance killed with -9 mid-run: its clients reconnect to another instance and
    resume with `after`; publishes it was handling are retried elsewhere."""
    fleet = _fleet(fleet_of_three)

    async def kill() -> None:
        fleet_of_three[0].kill()

    await fleet.run(kill)
    print(fleet.describe())
    fleet.assert_exactly_once()
    assert await _stored_counts(pg_database, fleet.users) == dict.fromkeys(fleet.users, 60)


async def test_listen_connections_terminated(pg_database: str) -> None:
    """Every LISTEN connection terminated mid-run (postgres bus): buses reconnect and
    sockets catch up from the database."""
    servers = [
        Server(pg_database, env_extra={"NOTIFIER_BUS": "postgres"}).start() for _ in range(3)
    ]
    try:
        fleet = _fleet(servers)

        async def terminate_listeners() -> None:
            admin = await asyncpg.connect(pg_database.replace("+asyncpg", ""))
            try:
                killed = await admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = 'notifier-listen' AND datname = current_database()"
                )
            finally:
                await admin.close()
            # The three servers' own, and those of other servers of the session on the
            # same database, if any: terminating those too is harmless.
            assert killed >= 3

        await fleet.run(terminate_listeners)
        fleet.assert_exactly_once()
    finally:
        for server in servers:
            server.stop()


async def test_redis_restarted(pg_database: str) -> None:
    """Redis shut down and started again mid-run (redis bus): instances keep serving,
    report the bus down, poll meanwhile, resubscribe, and every client has every seq."""
    servers = [Server(pg_database, env_extra={"NOTIFIER_BUS": "redis"}).start() for _ in range(3)]
    try:
        fleet = _fleet(servers)
        seen_down: list[bool] = []

        async def restart_redis() -> None:
            subprocess.run(["redis-cli", "-h", "127.0.0.1", "shutdown", "nosave"], check=False)
            await asyncio.sleep(0.5)
            async with httpx.AsyncClient() as http:
                ready = await http.get(servers[0].url + "/readyz")
            assert ready.status_code == 200
            seen_down.append(ready.json()["bus"] == "down")
            await asyncio.sleep(1.5)
            subprocess.run(REDIS_START, check=True)
            await _wait("redis-cli -h 127.0.0.1 ping | grep -q PONG")

        await fleet.run(restart_redis)
        fleet.assert_exactly_once()
        assert seen_down == [True]
    finally:
        for server in servers:
            server.stop()
        await _wait("redis-cli -h 127.0.0.1 ping | grep -q PONG")


async def test_postgres_restarted(pg_database: str) -> None:
    """PostgreSQL restarted mid-run: publishes during the outage get 503 and succeed when
    retried with their Idempotency-Key; the service recovers without a restart; nothing is
    stored twice and every client has every seq."""
    servers = [
        Server(pg_database, env_extra={"NOTIFIER_BUS": "postgres"}).start() for _ in range(3)
    ]
    try:
        fleet = _fleet(servers)

        async def restart_postgres() -> None:
            subprocess.run(
                [
                    "pg_ctlcluster",
                    "--skip-systemctl-redirect",
                    _pg_version(),
                    "main",
                    "stop",
                    "-m",
                    "fast",
                ],
                check=True,
            )
            await asyncio.sleep(1.5)
            subprocess.run(
                ["pg_ctlcluster", "--skip-systemctl-redirect", _pg_version(), "main", "start"],
                check=True,
            )
            await _wait("pg_isready -h 127.0.0.1 -p 5432 -q")

        await fleet.run(restart_postgres)
        print(fleet.describe())
        fleet.assert_exactly_once()
        assert fleet.statuses.get(503, 0) > 0, fleet.describe()
        assert set(fleet.statuses) <= {200, 201, 503}
        assert await _stored_counts(pg_database, fleet.users) == dict.fromkeys(fleet.users, 60)
        for server in servers:
            assert httpx.get(server.url + "/readyz").status_code == 200
    finally:
        for server in servers:
            server.stop()
        await _wait("pg_isready -h 127.0.0.1 -p 5432 -q")
