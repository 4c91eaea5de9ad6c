"""Streams' reads gathered (`notifier.reads`) against the real databases: a burst of
resumes gets each its own pages and heads while holding few pool connections, so a
reconnect storm waits its turn instead of running the pool dry."""

from __future__ import annotations

import asyncio

from sqlalchemy import event

from notifier.heads import HeadReader
from notifier.reads import StreamReads
from notifier.store import NewNotification, PublishRequest, Store
from tests.support import new_user

RESUMES = 400


async def test_a_burst_of_resumes_holds_few_connections(store: Store) -> None:
    """400 resumes at once, each at its own position: every one reads its own head and
    its own page, exactly as the store alone would, and the pool never lends more than
    two connections at a time (one query of heads, one of pages)."""
    users = [new_user() for _ in range(RESUMES)]
    items = [
        NewNotification(user_id=user, type="t", data_json=f'{{"n":{n}}}', fingerprint="")
        for user in users
        for n in range(3)
    ]
    await store.publish_group([PublishRequest("p", items)])
    reads = StreamReads(store, HeadReader(store))
    pool = store.engine.sync_engine.pool
    lent = 0
    most = 0

    def checkout(*_: object) -> None:
        nonlocal lent, most
        lent += 1
        most = max(most, lent)

    def checkin(*_: object) -> None:
        nonlocal lent
        lent -= 1

    event.listen(pool, "checkout", checkout)
    event.listen(pool, "checkin", checkin)
    try:

        async def resume(user: str, after: int) -> tuple[int, list[tuple[int, str]]]:
            return await reads.head(user), await reads.frames_after(user, after, 10)

        results = await asyncio.wait_for(
            asyncio.gather(*(resume(user, n % 3) for n, user in enumerate(users))), 30
        )
    finally:
        event.remove(pool, "checkout", checkout)
        event.remove(pool, "checkin", checkin)
    for n, (user, (head, page)) in enumerate(zip(users, results, strict=True)):
        assert head == 3
        assert page == await store.frames_after(user, n % 3, 10)
        assert [seq for seq, _ in page] == list(range(n % 3 + 1, 4))
    assert most <= 2, most
