"""When the garbage collector runs: young objects often and briefly, old ones on a clock.

Every open socket is a few dozen long-lived objects (uvicorn's protocol, wsproto's state,
this service's connection). CPython's default policy traverses the whole old generation
each time it has grown by a quarter: while sockets pile up (a deploy reconnecting every
client) that is a full pass over an ever larger heap every few seconds, and each pass
stops every socket for 100-400 ms at 10-20k sockets (`python -m bench.run --scenarios
connect`, with a gc callback timing each pass). Closed sockets leave almost no cyclic
garbage behind (under one object each, measured the same way), so the old generation
is collected on a clock instead, and young collections stay small so that each of their
pauses is a millisecond or two.

The policy is the process's, not an app's: `serve` applies it (`notifier/process.py`) to
its own process and to each worker; an app built in process (tests) leaves the
interpreter's collector as it found it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

YOUNG_THRESHOLDS = (5_000, 10)
"""A young collection every 5,000 net allocations; a middle one every 10 of those."""
OLD_EVERY_SECONDS = 600.0
_NEVER = 1 << 30

log = logging.getLogger("notifier.gcpolicy")


def start() -> None:
    """Call once start-up is done: everything allocated so far lives as long as the
    process, so it is moved out of the collector's reach for good (`gc.freeze`)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*YOUNG_THRESHOLDS, _NEVER)


async def collect_old(interval: float = OLD_EVERY_SECONDS) -> None:
    """Run for the life of the process: a full collection every `interval` seconds."""
    while True:
        await asyncio.sleep(interval)
        gc.collect()


@asynccontextmanager
async def applied() -> AsyncIterator[None]:
    """Enter once start-up is done, exit at shutdown: `start`, then `collect_old`
    running for as long as the process serves."""
    start()
    log.debug(
        "gc policy applied",
        extra={"gc_threshold": gc.get_threshold(), "gc_frozen": gc.get_freeze_count()},
    )
    collector = asyncio.create_task(collect_old(), name="gc")
    try:
        yield
    finally:
        collector.cancel()
