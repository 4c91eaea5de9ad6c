"""The heartbeat clock (notifier/heartbeat.py): every stream added gets a comment each
tick until it is discarded, and `run` ticks on its own."""

from __future__ import annotations

import asyncio
import contextlib

from notifier.heartbeat import Heartbeats
from notifier.transport import HEARTBEAT


class FakeStream:
    def __init__(self) -> None:
        self.pushed: list[str] = []

    def push(self, frame: str) -> None:
        self.pushed.append(frame)


async def test_each_beat_reaches_every_stream_until_it_is_discarded() -> None:
    beats = Heartbeats()
    streams = [FakeStream() for _ in range(2500)]  # more than one slice
    for stream in streams:
        beats.add(stream)
    await beats.beat()
    beats.discard(streams[0])
    await beats.beat()
    assert streams[0].pushed == [HEARTBEAT]
    assert all(s.pushed == [HEARTBEAT, HEARTBEAT] for s in streams[1:])
    assert len(beats) == 2499


async def test_run_beats_at_its_interval() -> None:
    beats = Heartbeats(interval=0.01)
    stream = FakeStream()
    beats.add(stream)
    task = asyncio.create_task(beats.run())
    try:
        async with asyncio.timeout(2):
            while len(stream.pushed) < 3:
                await asyncio.sleep(0.005)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
