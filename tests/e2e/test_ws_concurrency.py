"""The concurrency test: many publishers for one user while a client keeps dropping and
resuming with after=<last seen seq>, on one instance and across two instances sharing a
PostgreSQL database. The client must end with every seq 1..N exactly once, in order
(docs/reference.md: seq; WebSocket: Resume, Lifetime)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

import httpx
import orjson
import pytest

from tests.e2e.ws_support import Stream, drop, own_server, unpaced_ws
from tests.support import Server, apublish, new_user, no_frame, timeout

PUBLISHERS = 4
PER_PUBLISHER = 100


async def publish_concurrently(
    servers: Sequence[Server], user: str, seed: int, created: list[int]
) -> None:
    """PUBLISHERS concurrent loops, publisher i posting to servers[i % len(servers)]."""

    async def loop(index: int) -> None:
        server = servers[index % len(servers)]
        pace = random.Random(seed * 1000 + index)
        async with httpx.AsyncClient(timeout=30) as client:
            for n in range(PER_PUBLISHER):
                response = await apublish(client, server, user, f"pub.{index}", {"n": n})
                assert response.status_code == 201, response.text
                created.append(response.json()["seq"])
                await asyncio.sleep(pace.uniform(0, 0.012))

    await asyncio.gather(*(loop(i) for i in range(PUBLISHERS)))


async def resume_through_chaos(
    publish_servers: Sequence[Server], client_servers: Sequence[Server], seed: int
) -> tuple[Stream, list[int], int]:
    """Run the publishers and a client that leaves at random moments (random time or
    random count, closing cleanly or dropping) and resumes from its last seen seq,
    alternating `client_servers`, until the publishers are done and it has caught up."""
    user = new_user()
    rng = random.Random(seed)
    total = PUBLISHERS * PER_PUBLISHER
    created: list[int] = []
    publishers = asyncio.create_task(publish_concurrently(publish_servers, user, seed, created))
    stream = Stream(user)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout(60)
    try:
        while True:
            if publishers.done():
                publishers.result()  # raise a publisher's failure now
            server = client_servers[stream.connections % len(client_servers)]
            async with unpaced_ws(server, user, after=stream.last) as ws:
                stream.connections += 1
                leave_at = loop.time() + rng.uniform(0.005, 0.2)
                leave_after = rng.randint(1, 60)
                received = 0
                replayed_here = False
                while True:
                    assert loop.time() < deadline, (
                        f"not caught up: last seen {stream.last} of {total} "
                        f"after {stream.connections} connections"
                    )
                    finishing = publishers.done()
                    if finishing and replayed_here and stream.last == total:
                        break
                    left = 1.0 if finishing else leave_at - loop.time()
                    if left <= 0 or (not finishing and received >= leave_after):
                        break
                    try:
                        raw = await asyncio.wait_for(ws.recv(), left)
                    except TimeoutError:
                        continue
                    frame = orjson.loads(raw)
                    kind = stream.take(frame)
                    if kind == "replayed":
                        replayed_here = True
                    elif kind == "notification":
                        received += 1
                if finishing:
                    assert await no_frame(ws, 0.3), "a frame after the last seq"
                    return stream, created, total
                if rng.random() < 0.5:
                    await drop(ws)
            await asyncio.sleep(rng.uniform(0, 0.02))
    finally:
        if not publishers.done():
            publishers.cancel()
        await asyncio.gather(publishers, return_exceptions=True)


def check(stream: Stream, created: list[int], total: int) -> None:
    assert sorted(created) == list(range(1, total + 1)), "publish seqs are not 1..N"
    assert stream.seqs == list(range(1, total + 1))
    assert stream.connections >= 10, f"only {stream.connections} connections: too little chaos"
    # Nothing was deleted, so no resume may report `complete: false`.
    assert stream.incomplete == [], (
        f"{len(stream.incomplete)} of {len(stream.replayed)} resumes said complete:false "
        f"(connection #, frame): {stream.incomplete[:5]}"
    )


@pytest.mark.parametrize("seed", [20261124, 7])
async def test_resuming_client_sees_every_seq_once_under_concurrent_publishers(
    pg_server: Server, seed: int
) -> None:
    """4 concurrent publishers post 400 notifications for one user while the client
    leaves and resumes (after=<last seen>) at random moments: it ends with seq 1..400,
    each exactly once, in increasing order."""
    stream, created, total = await resume_through_chaos([pg_server], [pg_server], seed)
    check(stream, created, total)


async def test_resuming_across_two_instances_sees_every_seq_once(
    pg_server: Server, pg_database: str
) -> None:
    """Two instances on one PostgreSQL database, publishers on both, the client
    alternating instances on every resume: every seq 1..400 exactly once, in order."""
    async with own_server(pg_database) as other:
        stream, created, total = await resume_through_chaos(
            [pg_server, other], [pg_server, other], seed=99
        )
    check(stream, created, total)
