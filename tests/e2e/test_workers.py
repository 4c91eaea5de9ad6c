"""`notifier serve --workers N`: several processes behind one port behave as one service."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidStatus

from tests.support import (
    Server,
    make_token,
    new_user,
    publish,
    recv_notifications,
    timeout,
    ws_connect,
)


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


def _workers(pid: int) -> list[int]:
    """The processes uvicorn's supervisor spawned for `serve` (multiprocessing spawn)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            if parent == pid and b"spawn_main" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    return inodes


def _server_side_inode(server_port: int, client_port: int) -> str | None:
    """The inode of the server's end of the TCP connection from `client_port`."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if (int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16)) == (
                server_port,
                client_port,
            ):
                return fields[9]
    return None


def worker_of(server: Server, workers: list[int], client_port: int) -> int:
    """Which worker accepted the connection from `client_port`."""
    deadline = time.monotonic() + timeout(10)
    while time.monotonic() < deadline:
        inode = _server_side_inode(server.port, client_port)
        for pid in workers:
            if inode is not None and inode in _socket_inodes(pid):
                return pid
        time.sleep(0.02)
    raise AssertionError(f"no worker holds the connection from port {client_port}")


def publish_in_a_burst(
    server: Server, workers: list[int], api_key: str, user: str, first: int, count: int = 8
) -> list[tuple[int, dict[str, Any]]]:
    """Publish over `count` connections opened at once (one by one, the worker that
    accepted the last would take them all): for each, its worker and the result."""
    conns = [
        http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout(10))
        for _ in range(count)
    ]
    try:
        for conn in conns:
            conn.connect()
        taken = [worker_of(server, workers, conn.sock.getsockname()[1]) for conn in conns]
        results = []
        for n, (conn, worker) in enumerate(zip(conns, taken, strict=True), start=first):
            body = json.dumps({"user_id": user, "type": "t", "data": {"n": n}})
            headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
            conn.request("POST", "/v1/notifications", body=body, headers=headers)
            response = conn.getresponse()
            assert response.status == 201
            results.append((worker, json.loads(response.read())))
        return results
    finally:
        for conn in conns:
            conn.close()


async def test_dev_mode_workers_share_credentials_without_the_environment(
    pg_database: str, tmp_path: Path
) -> None:
    """`serve --workers 2` on loopback with no credentials (development mode): each worker
    accepts the generated API key and user token, takes sockets and publishes, every
    socket gets every notification; the secrets never enter a worker's environment
    (only the metrics folder does), and each worker applied the gc policy."""
    dev_file = tmp_path / "dev.json"
    server = Server(
        pg_database,
        args=["--workers", "2"],
        env_extra={
            "NOTIFIER_JWT_SECRET": "",
            "NOTIFIER_API_KEYS": "",
            "NOTIFIER_DEV_CREDENTIALS_FILE": str(dev_file),
            "NOTIFIER_LOG_LEVEL": "debug",
        },
    ).start()
    assert server.process is not None
    user = new_user()
    try:
        dev = json.loads(dev_file.read_text())
        deadline = time.monotonic() + timeout(10)
        while server.logs().count("Application startup complete") < 2:
            assert time.monotonic() < deadline, server.logs()
            time.sleep(0.05)
        workers = _workers(server.process.pid)
        assert len(workers) == 2, workers
        token = make_token(user, secret=dev["jwt_secret"])
        async with contextlib.AsyncExitStack() as stack:
            sockets: list[ClientConnection] = []
            socket_workers: set[int] = set()
            # Which worker accepts is the kernel's choice: under load one may take many
            # bursts in a row.
            while len(socket_workers) < 2 and len(sockets) < 160:
                # A burst: one by one, the worker that accepted the last would take all.
                batch = await asyncio.gather(
                    *(stack.enter_async_context(ws_connect(server, token=token)) for _ in range(8))
                )
                sockets += batch
                socket_workers |= {worker_of(server, workers, ws.local_address[1]) for ws in batch}
            assert socket_workers == set(workers)
            created: list[dict[str, Any]] = []
            publish_workers: set[int] = set()
            while len(publish_workers) < 2 and len(created) < 64:
                for worker, notification in publish_in_a_burst(
                    server, workers, dev["api_key"], user, len(created)
                ):
                    publish_workers.add(worker)
                    created.append(notification)
            assert publish_workers == set(workers)
            for ws in sockets:
                assert await recv_notifications(ws, len(created)) == created
        for pid in workers:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            assert dev["jwt_secret"].encode() not in environ
            assert dev["api_key"].encode() not in environ
            assert b"PROMETHEUS_MULTIPROC_DIR=" in environ
        assert server.logs().count("gc policy applied") == 2
    finally:
        server.stop()


def _wait_started(server: Server, workers: int) -> None:
    deadline = time.monotonic() + timeout(30)
    while server.logs().count("Application startup complete") < workers:
        assert time.monotonic() < deadline, server.logs()
        time.sleep(0.05)


def _two_workers_of_four_streams(pg_database: str) -> Server:
    server = Server(
        pg_database, args=["--workers", "2"], env_extra={"NOTIFIER_MAX_STREAMS": "4"}
    ).start()
    assert server.process is not None
    return server


async def _open_until(
    stack: contextlib.AsyncExitStack,
    server: Server,
    held: dict[int, list[ClientConnection]],
    done: Callable[[], bool],
) -> ClientConnection:
    """Sockets of new users, one by one, each noted under the worker that took it (the
    keys of `held`), until `done()`; the last one opened."""
    while True:
        ws = await stack.enter_async_context(ws_connect(server, new_user()))
        held[worker_of(server, list(held), ws.local_address[1])].append(ws)
        if done():
            return ws


def _listening_closed(server: Server) -> float:
    """`notifier_listening_closed`, summed over the workers."""
    for line in httpx.get(server.url + "/metrics", timeout=timeout(10)).text.splitlines():
        if line.startswith("notifier_listening_closed "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no notifier_listening_closed in /metrics")


async def test_a_full_worker_leaves_new_connections_to_its_sibling(pg_database: str) -> None:
    """Two workers of 4 streams each. Once one holds its 4, it stops accepting: a burst
    of new connections all go to its sibling (before, the full worker kept taking its
    share and refusing streams with 503 while the sibling had room), and
    `notifier_listening_closed` says so. With both full, one stays accepting: a
    socket more is refused with 503 and /healthz is served. Once a socket of the closed
    worker ends, it accepts again and a new socket is served there."""
    server = _two_workers_of_four_streams(pg_database)
    assert server.process is not None
    try:
        _wait_started(server, 2)
        workers = _workers(server.process.pid)
        assert len(workers) == 2, workers
        async with contextlib.AsyncExitStack() as stack:
            held: dict[int, list[ClientConnection]] = {pid: [] for pid in workers}
            await _open_until(stack, server, held, lambda: max(map(len, held.values())) == 4)
            full = next(pid for pid in workers if len(held[pid]) == 4)
            (other,) = set(workers) - {full}
            assert _listening_closed(server) == 1

            conns = [
                http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout(10))
                for _ in range(16)
            ]
            for conn in conns:
                conn.connect()
            taken = {worker_of(server, workers, conn.sock.getsockname()[1]) for conn in conns}
            for conn in conns:
                conn.close()
            assert taken == {other}

            await _open_until(stack, server, held, lambda: len(held[other]) == 4)
            assert len(held[full]) == 4
            with pytest.raises(InvalidStatus) as refused:
                await stack.enter_async_context(ws_connect(server, new_user()))
            assert refused.value.response.status_code == 503
            assert httpx.get(server.url + "/healthz", timeout=timeout(10)).status_code == 200

            await held[full][0].close()
            deadline = time.monotonic() + timeout(10)
            while True:
                try:
                    ws = await stack.enter_async_context(ws_connect(server, new_user()))
                    break
                except InvalidStatus:  # the other, full, may still be the one accepting
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.1)
            assert worker_of(server, workers, ws.local_address[1]) == full
    finally:
        server.stop()


async def test_a_worker_killed_while_being_asked_is_replaced_at_once(pg_database: str) -> None:
    """A worker that dies while the supervisor waits for its health answer is replaced
    at once, not after the 30 s the supervisor gives a slow answer (before, it waited
    them out: a worker killed with 100,000 sockets open was replaced 30.4 s later).
    The worker is stopped first, so the supervisor is surely waiting on it when the
    SIGKILL lands; the service then serves as before."""
    server = Server(pg_database, args=["--workers", "2"]).start()
    assert server.process is not None
    try:
        _wait_started(server, 2)
        workers = _workers(server.process.pid)
        assert len(workers) == 2, workers
        victim = workers[0]
        os.kill(victim, signal.SIGSTOP)
        time.sleep(1.5)  # the supervisor asks every 0.5 s: now it waits on the victim
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        deadline = killed_at + 20
        while not set(_workers(server.process.pid)) - set(workers):
            assert time.monotonic() < deadline, "no replacement within 20 s"
            time.sleep(0.05)
        assert time.monotonic() - killed_at < 5
        _wait_started(server, 3)
        user = new_user()
        async with ws_connect(server, user) as ws:
            with httpx.Client() as client:
                created = publish(client, server, user).json()
            assert await recv_notifications(ws, 1) == [created]
    finally:
        server.stop()


async def test_sighup_replaces_every_worker_and_a_full_one_still_steps_aside(
    pg_database: str,
) -> None:
    """SIGHUP to `serve --workers 2` replaces both workers, each new one serving before
    its old one stops; the new workers hold their own places among those accepting, so
    a full one still stops accepting (the gauge reads 1) and its sibling takes the
    next connections."""
    server = _two_workers_of_four_streams(pg_database)
    assert server.process is not None
    try:
        _wait_started(server, 2)
        old = set(_workers(server.process.pid))
        assert len(old) == 2
        os.kill(server.process.pid, signal.SIGHUP)
        deadline = time.monotonic() + timeout(60)
        while True:
            now = set(_workers(server.process.pid))
            if len(now) == 2 and not now & old:
                break
            assert time.monotonic() < deadline, (old, now)
            time.sleep(0.1)
        _wait_started(server, 4)
        workers = sorted(now)
        async with contextlib.AsyncExitStack() as stack:
            held: dict[int, list[ClientConnection]] = {pid: [] for pid in workers}
            await _open_until(stack, server, held, lambda: max(map(len, held.values())) == 4)
            assert _listening_closed(server) == 1
            (other,) = [pid for pid in workers if len(held[pid]) < 4]
            ws = await stack.enter_async_context(ws_connect(server, new_user()))
            assert worker_of(server, workers, ws.local_address[1]) == other
    finally:
        server.stop()
