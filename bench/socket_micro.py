"""What one socket's `Connection` costs, without a server: memory and `offer()` CPU.

    python -m bench.socket_micro            # asyncio and uvloop
    PYTHONPATH=/path/to/other/checkout python -m bench.socket_micro   # to compare two trees

Memory: tracemalloc over 20,000 connections, each LIVE with one frame written (the
per-socket state after traffic; uvicorn's own objects are not counted). CPU: `offer()` of
the next seq to a LIVE connection whose `send` never waits, i.e. the fan-out path
`offer` -> `_enqueue` -> `_wake` -> eager write; the best of 40 rounds is the figure to
compare (the median moves with whatever else the machine runs).
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import timeit
import tracemalloc
from collections.abc import Callable, Coroutine, MutableMapping
from typing import Any

import uvloop

from notifier.connection import Connection

SOCKETS = 20_000
ROUNDS = 40
OFFERS = 20_000


async def _send(message: MutableMapping[str, Any]) -> None:
    return None


def _live() -> Connection:
    connection = Connection(
        user_id="u",
        reads=None,  # type: ignore[arg-type]  # a LIVE socket whose send never waits reads nothing
        send=_send,
        replay_after=None,
        page_size=100,
        max_buffer_bytes=1 << 20,
    )
    connection.start_at(0)
    connection.start()
    return connection


async def memory() -> None:
    print(f"sys.getsizeof(Connection): {sys.getsizeof(_live())} bytes")
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    kept = []
    for _ in range(SOCKETS):
        connection = _live()
        connection.offer(1, "frame", None)
        kept.append(connection)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    per_socket = (grown - sys.getsizeof(kept)) / SOCKETS
    print(f"tracemalloc per socket (LIVE, one frame written): {per_socket:.0f} bytes")


async def cpu() -> None:
    connection = _live()
    frame = "f" * 200
    seq = 0

    def offer() -> None:
        nonlocal seq
        seq += 1
        connection.offer(seq, frame, None)

    rounds = [timeit.timeit(offer, number=OFFERS) / OFFERS for _ in range(ROUNDS)]
    best, median = min(rounds) * 1e9, statistics.median(rounds) * 1e9
    print(f"offer() on LIVE, send never waits: best {best:.0f} ns, median {median:.0f} ns")


def main() -> None:
    asyncio.run(memory())
    runners: list[tuple[str, Callable[[Coroutine[Any, Any, None]], None]]] = [
        ("asyncio", asyncio.run),
        ("uvloop", uvloop.run),
    ]
    for name, run in runners:
        print(f"{name}: ", end="")
        run(cpu())


if __name__ == "__main__":
    main()
