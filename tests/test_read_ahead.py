"""`notifier.fanout.read_ahead`: the reads of a large topic fan-out, in order, one ahead
of the caller (so the database works while the sockets are written), never more, and
none left running when the caller stops early."""

from __future__ import annotations

import asyncio
import contextlib

from notifier.fanout import read_ahead


async def test_results_in_order_with_one_read_ahead() -> None:
    started: list[int] = []
    running = 0
    most = 0

    async def read(part: int) -> int:
        nonlocal running, most
        started.append(part)
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01 * (3 - part % 3))  # later parts may finish first
        running -= 1
        return part * 10

    seen: list[int] = []
    async with contextlib.aclosing(read_ahead(read, [0, 1, 2, 3, 4])) as reads:
        async for result in reads:
            # The next read is on its way while the caller works on this result.
            await asyncio.sleep(0)
            assert started[-1] == min(len(seen) + 1, 4)
            seen.append(result)
    assert seen == [0, 10, 20, 30, 40]
    assert most <= 2


async def test_a_caller_that_stops_early_leaves_no_read_running() -> None:
    async def read(part: int) -> int:
        await asyncio.sleep(0 if part == 0 else 10)
        return part

    async with contextlib.aclosing(read_ahead(read, [0, 1, 2])) as reads:
        async for result in reads:
            assert result == 0
            await asyncio.sleep(0.01)  # the read of part 1 has started
            break
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


async def test_nothing_to_read() -> None:
    async def read(part: int) -> int:
        raise AssertionError("no part, no read")

    assert [r async for r in read_ahead(read, [])] == []
