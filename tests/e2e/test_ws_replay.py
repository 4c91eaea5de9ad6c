"""WebSocket resume: `after=SEQ` replays every later notification in order, then a
`replayed` frame, then live with no gap or duplicate; a long replay is paced by the
socket and never trips the slow-client bound; `complete: false` after retention
(docs/reference.md, WebSocket: Resume, Lifetime)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import migrate
from tests.e2e.ws_support import (
    Stream,
    drop,
    items,
    own_server,
    pg_execute,
    recv_frame,
    unpaced_ws,
)
from tests.support import (
    Server,
    apublish,
    new_user,
    no_frame,
    publish,
    publish_batch,
    recv_until,
    ws_connect,
)

# (notifications existing before the connect, after=)
RESUME_CASES = [(5, 0), (5, 2), (5, 4), (5, 5), (1, 0), (0, 0)]


@pytest.mark.parametrize(("existing", "after"), RESUME_CASES)
async def test_resume_replays_then_goes_live(server: Server, existing: int, after: int) -> None:
    """after=k replays seq k+1..N in order, then {"type": "replayed", "last_seq": N,
    "complete": true} (last_seq k when nothing was replayed), then live from N+1 with no
    gap and no duplicate."""
    user = new_user()
    if existing:
        created = publish_batch(server, items(user, existing)).json()["notifications"]
        assert [n["seq"] for n in created] == list(range(1, existing + 1))
    else:
        created = []
    async with ws_connect(server, user, after=after) as ws:
        replayed, frame = await recv_until(ws, "replayed")
        assert replayed == created[after:]
        assert frame == {"type": "replayed", "last_seq": max(existing, after), "complete": True}
        live = [publish(None, server, user).json() for _ in range(2)]
        for expected in live:
            got = await recv_frame(ws)
            assert got == {"type": "notification", "notification": expected}
        assert [n["seq"] for n in live] == [existing + 1, existing + 2]
        assert await no_frame(ws)


async def test_resume_beyond_head_reports_the_given_seq(server: Server) -> None:
    """after=SEQ above the user's newest seq replays nothing and reports last_seq SEQ,
    complete true (nothing after SEQ ever existed)."""
    user = new_user()
    assert publish_batch(server, items(user, 3)).status_code == 201
    async with ws_connect(server, user, after=10) as ws:
        replayed, frame = await recv_until(ws, "replayed")
    assert replayed == []
    assert frame == {"type": "replayed", "last_seq": 10, "complete": True}


async def test_no_after_means_no_replay(server: Server) -> None:
    """Without `after` nothing is replayed and no `replayed` frame is sent: the first
    frame is the first notification committed after the handshake."""
    user = new_user()
    assert publish_batch(server, items(user, 3)).status_code == 201
    async with ws_connect(server, user) as ws:
        assert await no_frame(ws, 0.3)
        created = publish(None, server, user).json()
        assert created["seq"] == 4
        assert await recv_frame(ws) == {"type": "notification", "notification": created}
        assert await no_frame(ws, 0.3)


async def test_replay_racing_live_publishes_has_no_gap_or_duplicate(server: Server) -> None:
    """A resume from 0 while publishes keep committing sees every seq exactly once, in
    order, with the `replayed` frame at the point where replay ended."""
    user = new_user()
    assert publish_batch(server, items(user, 1000)).status_code == 201
    stream = Stream(user)

    async def publisher() -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            for _ in range(60):
                assert (await apublish(client, server, user)).status_code == 201

    task = asyncio.create_task(publisher())
    try:
        async with ws_connect(server, user, after=0) as ws:
            stream.connections += 1
            for _ in range(10_000):
                if task.done() and task.exception() is not None:
                    task.result()
                if stream.last == 1060 and stream.replayed:
                    break
                try:
                    stream.take(await recv_frame(ws, 10))
                except TimeoutError:
                    raise AssertionError(
                        f"stalled: no frame for 10 s; last seq seen {stream.last}, "
                        f"replayed frames {stream.replayed}, publisher done {task.done()}"
                    ) from None
            assert await no_frame(ws, 0.2)
    finally:
        await task
    assert stream.seqs == list(range(1, 1061))
    assert len(stream.replayed) == 1
    assert stream.incomplete == []


async def test_replay_racing_first_publishes_still_says_complete(server: Server) -> None:
    """Nothing deleted means complete: true, even when publishes commit while the replay
    finishes: 30 fresh users each resume from 0 while 3 publishes race the handshake;
    every `replayed` frame says complete: true, and each user sees 1..3 exactly once."""
    wrong: list[tuple[int, dict[str, object]]] = []
    async with httpx.AsyncClient(timeout=30) as client:
        for attempt in range(30):
            user = new_user()
            stream = Stream(user)

            async def resume(user: str = user, stream: Stream = stream) -> None:
                async with ws_connect(server, user, after=0) as ws:
                    stream.connections += 1
                    for _ in range(10):
                        stream.take(await recv_frame(ws))
                        if stream.last == 3 and stream.replayed:
                            break

            async def publish_three(user: str = user) -> None:
                for _ in range(3):
                    assert (await apublish(client, server, user)).status_code == 201

            await asyncio.gather(resume(), publish_three())
            assert stream.seqs == [1, 2, 3]
            assert len(stream.replayed) == 1
            wrong += [(attempt, frame) for _, frame in stream.incomplete]
    assert wrong == [], f"{len(wrong)} of 30 resumes said complete:false: {wrong[:3]}"


@pytest.fixture(scope="module")
def small_buffer_server(pg_database: str) -> Iterator[Server]:
    """PostgreSQL server whose slow-client bound is tiny (8 KiB of queued frames)."""
    server = Server(pg_database, env_extra={"NOTIFIER_WS_MAX_BUFFER_BYTES": "8192"}).start()
    yield server
    server.stop()


def publish_many(server: Server, user: str, count: int) -> None:
    for start in range(0, count, 1000):
        response = publish_batch(server, items(user, min(1000, count - start)))
        assert response.status_code == 201, response.text


async def test_long_replay_with_live_publishes_is_paced_not_dropped(
    small_buffer_server: Server,
) -> None:
    """A 20,000-notification replay, with live publishes committing during it, on a
    server whose outgoing bound is 8 KiB, arrives complete and in order with no 1013:
    every seq exactly once, then `replayed`, then live."""
    server = small_buffer_server
    user = new_user()
    publish_many(server, user, 20_000)
    live_total = 300
    total = 20_000 + live_total
    stream = Stream(user)
    started = asyncio.Event()
    posted = 0

    async def publisher() -> None:
        nonlocal posted
        await started.wait()
        async with httpx.AsyncClient(timeout=30) as client:
            for _ in range(live_total):
                assert (await apublish(client, server, user, "live")).status_code == 201
                posted += 1

    task = asyncio.create_task(publisher())
    posted_at_replayed = -1
    try:
        async with ws_connect(server, user, after=0) as ws:
            stream.connections += 1
            for _ in range(total + 10):
                if task.done() and task.exception() is not None:
                    task.result()
                if stream.last == total and stream.replayed:
                    break
                kind = stream.take(await recv_frame(ws, 20))
                if kind == "replayed":
                    posted_at_replayed = posted
                if stream.last == 1000:
                    started.set()
                if kind == "notification" and stream.last % 1000 == 0:
                    await asyncio.sleep(0.02)  # a client that is not always reading
            assert await no_frame(ws, 0.2)
    finally:
        started.set()
        await task
    assert stream.seqs == list(range(1, total + 1))
    assert len(stream.replayed) == 1
    assert stream.incomplete == []
    assert posted_at_replayed > 0, "no live publish committed during the replay"


async def test_reconnect_in_the_middle_of_a_replay(small_buffer_server: Server) -> None:
    """Leaving in the middle of a replay (a dropped connection, then a clean close) and
    resuming with after=<last seen> ends with every seq exactly once and in order."""
    server = small_buffer_server
    user = new_user()
    publish_many(server, user, 5000)
    stream = Stream(user)
    # First the connection drops (no closing handshake), then the client closes cleanly.
    async with ws_connect(server, user, after=0) as ws:
        stream.connections += 1
        while stream.last < 1234:
            assert stream.take(await recv_frame(ws)) == "notification"
        await drop(ws)
    async with unpaced_ws(server, user, after=stream.last) as ws:
        stream.connections += 1
        while stream.last < 3001:
            assert stream.take(await recv_frame(ws)) == "notification"
        await ws.close()
    async with ws_connect(server, user, after=stream.last) as ws:
        stream.connections += 1
        for _ in range(5001):
            if stream.take(await recv_frame(ws)) == "replayed":
                break
        assert await no_frame(ws, 0.2)
    assert stream.seqs == list(range(1, 5001))
    assert stream.replayed == [{"type": "replayed", "last_seq": 5000, "complete": True}]


# (after=, seqs replayed, complete) with seq 1..5 of 10 deleted by retention
RETENTION_CASES = [
    (0, range(6, 11), False),
    (3, range(6, 11), False),
    (4, range(6, 11), False),
    (5, range(6, 11), True),
    (7, range(8, 11), True),
    (10, range(0), True),
]


async def test_replay_reports_incomplete_after_retention(fresh_pg_database: str) -> None:
    """With seq 1..5 of 10 deleted (retention), after<5 replays 6..10 and says
    complete: false; after>=5 says complete: true; live continues at 11."""
    await asyncio.to_thread(migrate, fresh_pg_database)
    async with own_server(fresh_pg_database) as server:
        user, emptied = new_user(), new_user()
        assert publish_batch(server, items(user, 10)).status_code == 201
        assert publish_batch(server, items(emptied, 4)).status_code == 201
        deleted = await pg_execute(
            fresh_pg_database, "DELETE FROM notifications WHERE user_id = $1 AND seq <= 5", user
        )
        assert deleted == "DELETE 5"
        deleted = await pg_execute(
            fresh_pg_database, "DELETE FROM notifications WHERE user_id = $1", emptied
        )
        assert deleted == "DELETE 4"
        for after, seqs, complete in RETENTION_CASES:
            async with ws_connect(server, user, after=after) as ws:
                replayed, frame = await recv_until(ws, "replayed")
                assert [n["seq"] for n in replayed] == list(seqs), after
                last = max(after, 10)
                assert frame == {"type": "replayed", "last_seq": last, "complete": complete}, after
        # Everything after SEQ is gone: nothing replayed, last_seq SEQ, incomplete.
        async with ws_connect(server, emptied, after=0) as ws:
            replayed, frame = await recv_until(ws, "replayed")
            assert replayed == []
            assert frame == {"type": "replayed", "last_seq": 0, "complete": False}
        async with ws_connect(server, user, after=0) as ws:
            await recv_until(ws, "replayed")
            created = publish(None, server, user).json()
            assert created["seq"] == 11
            assert await recv_frame(ws) == {"type": "notification", "notification": created}
