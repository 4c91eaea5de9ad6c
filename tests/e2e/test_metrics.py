"""What `/metrics` says about the process itself: the asyncio task gauge follows the
streams that are open, so a scrape can tell a task leak from a busy instance."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import httpx

from tests.e2e.ws_support import own_server
from tests.support import new_user, recv_until, timeout, ws_connect

STREAMS = 20


async def task_gauge(http: httpx.AsyncClient, url: str) -> float | None:
    text = (await http.get(url + "/metrics")).text
    for line in text.splitlines():
        if line.startswith("notifier_asyncio_tasks "):
            return float(line.split()[1])
    return None


async def gauge_until(
    http: httpx.AsyncClient, url: str, reached: Callable[[float], bool], seconds: float
) -> float:
    """Poll the gauge (it is counted each reconcile round) until `reached(value)`."""
    deadline = asyncio.get_running_loop().time() + timeout(seconds)
    value = await task_gauge(http, url)
    while value is None or not reached(value):
        assert asyncio.get_running_loop().time() < deadline, f"gauge stuck at {value}"
        await asyncio.sleep(0.1)
        value = await task_gauge(http, url)
    return value


async def test_task_gauge_rises_with_streams_and_falls_when_they_close(sqlite_url: str) -> None:
    """notifier_asyncio_tasks counts at least a task per open socket while they are open
    and comes back to where it was once they close: a count that only grew would hide
    nothing and tell nothing."""
    async with (
        own_server(sqlite_url, NOTIFIER_RECONCILE_SECONDS="0.2") as server,
        httpx.AsyncClient(timeout=10) as http,
    ):
        base = await gauge_until(http, server.url, lambda v: v > 0, 10)
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(STREAMS):
                ws = await stack.enter_async_context(ws_connect(server, new_user(), after=0))
                await recv_until(ws, "replayed")
            await gauge_until(http, server.url, lambda v: v >= base + STREAMS, 10)
        after = await gauge_until(http, server.url, lambda v: v <= base + 2, 10)
        assert after >= base - 2
