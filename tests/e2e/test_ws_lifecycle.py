"""Socket lifetime: a client that does not read is closed with 1013 without slowing
others or growing the server; SIGTERM closes sockets with 1012 and exits 0; committed
notifications survive kill -9 and resume on a new process; an instance delivers what
another instance on the same database committed (docs/reference.md, WebSocket: Lifetime,
Resume)."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import httpx
import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.e2e.ws_support import (
    Stream,
    close_code,
    items,
    log_tail,
    own_server,
    ping_pong,
    recv_frame,
    rss_bytes,
)
from tests.support import (
    Server,
    apublish,
    new_user,
    no_frame,
    publish,
    publish_batch,
    recv_notifications,
    recv_until,
    timeout,
    user_headers,
    ws_connect,
    ws_url,
)

SLOW_TOTAL = 6000
PER_BATCH = 50  # 50 x 1 KiB per user per batch: each burst fits under the 64 KiB bound
KIB_DATA = {"blob": "x" * 1024}


async def test_slow_reader_is_closed_1013_without_slowing_others(pg_database: str) -> None:
    """A socket whose client never reads (tiny receive buffer) is closed with 1013 once
    its outgoing buffer passes NOTIFIER_WS_MAX_BUFFER_BYTES, while another user's socket
    getting the same volume keeps receiving every notification promptly, and the
    server's RSS stays bounded; the slow client then resumes without loss."""
    async with own_server(pg_database, NOTIFIER_WS_MAX_BUFFER_BYTES="65536") as server:
        assert server.process is not None
        slow_user, fast_user = new_user(), new_user()
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.connect(("127.0.0.1", server.port))
        raw.setblocking(False)
        slow = await connect(
            ws_url(server, slow_user),
            sock=raw,
            max_queue=1,
            max_size=2**24,
            ping_interval=None,
            open_timeout=timeout(10),
        )
        fast_stream = Stream(fast_user)
        try:
            async with ws_connect(server, fast_user) as fast:
                fast_stream.connections = 1
                baseline = peak = rss_bytes(server.process.pid)
                worst = 0.0
                for _ in range(SLOW_TOTAL // PER_BATCH):
                    batch = items(slow_user, PER_BATCH, KIB_DATA)
                    batch += items(fast_user, PER_BATCH, KIB_DATA)
                    response = await asyncio.to_thread(publish_batch, server, batch)
                    assert response.status_code == 201, response.text
                    posted = time.monotonic()
                    for notification in await recv_notifications(fast, PER_BATCH, seconds=5):
                        fast_stream.take({"type": "notification", "notification": notification})
                    worst = max(worst, time.monotonic() - posted)
                    peak = max(peak, rss_bytes(server.process.pid))
                await ping_pong(fast)
            assert fast_stream.seqs == list(range(1, SLOW_TOTAL + 1))
            assert worst < timeout(2), f"the fast socket waited {worst:.2f}s for a batch"
            # Now drain the slow socket: what it got, then the close frame.
            stream = Stream(slow_user)
            stream.connections = 1
            code, frames = await close_code(slow, 30)
            for frame in frames:
                stream.take(orjson.loads(frame))
            peak = max(peak, rss_bytes(server.process.pid))
        finally:
            await slow.close()
        assert code == 1013, f"slow socket closed with {code}\n{log_tail(server)}"
        assert stream.last < SLOW_TOTAL, "the slow socket was never cut off"
        growth = peak - baseline
        assert growth < 100 * 2**20, f"server RSS grew by {growth / 2**20:.0f} MiB"
        # The client reconnects and resumes from what it saw, losing nothing.
        async with ws_connect(server, slow_user, after=stream.last) as ws:
            stream.connections += 1
            for _ in range(SLOW_TOTAL + 1):
                if stream.take(await recv_frame(ws, 20)) == "replayed":
                    break
        assert stream.seqs == list(range(1, SLOW_TOTAL + 1))


async def test_reading_client_is_not_closed_by_a_large_batch(pg_server: Server) -> None:
    """A client that reads its socket gets every notification of one valid 1000-item
    batch (2 KiB data each) on a default server: it is not closed with 1013."""
    user = new_user()
    async with ws_connect(pg_server, user) as ws:
        response = await asyncio.to_thread(
            publish_batch, pg_server, items(user, 1000, {"blob": "y" * 2048})
        )
        assert response.status_code == 201, response.text
        try:
            received = await recv_notifications(ws, 1000)
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else None
            reason = closed.rcvd.reason if closed.rcvd else ""
            raise AssertionError(f"a reading client was closed with {code} ({reason})") from None
        assert [n["seq"] for n in received] == list(range(1, 1001))
        await ping_pong(ws)


async def sigterm_with_open_sockets(folder: Path) -> tuple[int | None, int | None, int, str]:
    """SIGTERM a server holding two sockets (one resumed, one live-only): the close codes
    the sockets got, the exit status, the server log."""
    async with own_server(f"sqlite+aiosqlite:///{folder / 'sigterm.db'}") as server:
        first, second = new_user(), new_user()
        assert publish(None, server, first).status_code == 201
        async with ws_connect(server, first, after=0) as a, ws_connect(server, second) as b:
            await recv_until(a, "replayed")
            await ping_pong(b)
            exiting = asyncio.create_task(asyncio.to_thread(server.terminate))
            (code_a, _), (code_b, _) = await asyncio.gather(close_code(a, 15), close_code(b, 15))
            status = await exiting
        return code_a, code_b, status, log_tail(server)


async def test_sigterm_closes_sockets_with_1012(tmp_path: Path) -> None:
    """On SIGTERM every open socket (resumed or live-only) is closed with code 1012."""
    code_a, code_b, _, logs = await sigterm_with_open_sockets(tmp_path)
    assert (code_a, code_b) == (1012, 1012), logs


async def test_sigterm_exits_with_status_0(tmp_path: Path) -> None:
    """After a SIGTERM with open sockets the server shuts down cleanly: exit status 0."""
    _, _, status, logs = await sigterm_with_open_sockets(tmp_path)
    assert status == 0, f"exit status {status}\n{logs}"


async def test_committed_notifications_survive_kill_9(pg_database: str) -> None:
    """Every notification acknowledged with 201 before a kill -9 is replayed by a new
    process on the same database (resume after=k gives k+1..N, gap-free), and
    publishing continues at N+1."""
    user = new_user()
    acked: list[int] = []
    enough = asyncio.Event()
    first = Server(pg_database)
    await asyncio.to_thread(first.start)
    try:
        assert publish_batch(first, items(user, 20)).status_code == 201
        acked.extend(range(1, 21))

        async def publisher() -> None:
            async with httpx.AsyncClient(timeout=10) as client:
                for _ in range(10_000):
                    try:
                        response = await apublish(client, first, user, "before.kill")
                    except httpx.HTTPError:
                        return  # the server is gone
                    if response.status_code != 201:
                        return
                    acked.append(response.json()["seq"])
                    if len(acked) >= 60:
                        enough.set()

        task = asyncio.create_task(publisher())
        await asyncio.wait_for(enough.wait(), timeout(20))
        await asyncio.to_thread(first.kill)
        await asyncio.wait_for(task, timeout(10))
    finally:
        await asyncio.to_thread(first.kill)
    assert acked == list(range(1, len(acked) + 1))
    async with own_server(pg_database) as second:
        head = httpx.get(
            second.url + "/v1/me/notifications", params={"limit": 1}, headers=user_headers(user)
        ).json()["notifications"][0]["seq"]
        assert head >= acked[-1], f"acknowledged seq {acked[-1]} lost; head is {head}"
        k = 7
        async with ws_connect(second, user, after=k) as ws:
            replayed, frame = await recv_until(ws, "replayed")
            assert [n["seq"] for n in replayed] == list(range(k + 1, head + 1))
            assert frame == {"type": "replayed", "last_seq": head, "complete": True}
            created = publish(None, second, user).json()
            assert created["seq"] == head + 1
            assert await recv_frame(ws) == {"type": "notification", "notification": created}


async def test_socket_on_one_instance_gets_what_another_instance_commits(
    pg_server: Server, pg_database: str
) -> None:
    """Two instances on one PostgreSQL database: a socket on instance A receives, in
    order, every notification posted to instance B (single and batch) and B's read
    frames."""
    user = new_user()
    async with own_server(pg_database) as b_server, ws_connect(pg_server, user) as on_a:
        created = [publish(None, b_server, user).json() for _ in range(5)]
        batch = publish_batch(b_server, items(user, 3))
        assert batch.status_code == 201
        created += batch.json()["notifications"]
        async with httpx.AsyncClient(timeout=10) as client:
            for _ in range(2):
                created.append((await apublish(client, b_server, user)).json())
        received = await recv_notifications(on_a, len(created))
        assert received == created
        assert [n["seq"] for n in received] == list(range(1, 11))
        response = httpx.post(
            b_server.url + "/v1/me/notifications/read",
            json={"up_to_seq": 4},
            headers=user_headers(user),
        )
        assert response.json() == {"updated": 4}
        assert await recv_frame(on_a) == {"type": "read", "up_to_seq": 4}
        assert await no_frame(on_a, 0.3)
