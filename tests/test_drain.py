"""`serve`'s stop signals (notifier/process.py, `drain_on_stop`): SIGTERM and SIGINT
first close every stream (`Service.drain`), then reach the handler that was there before
(uvicorn's), which is put back on the way out."""

from __future__ import annotations

import asyncio
import signal
from types import FrameType
from typing import Any

import pytest

from notifier.process import drain_on_stop


class FakeService:
    def __init__(self) -> None:
        self.drains = 0

    def drain(self) -> None:
        self.drains += 1


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_a_stop_signal_drains_then_reaches_the_previous_handler(signum: int) -> None:
    seen: list[int] = []

    def previous(number: int, _frame: FrameType | None) -> None:
        seen.append(number)

    original = signal.signal(signum, previous)
    try:
        service: Any = FakeService()
        with drain_on_stop(service):
            assert signal.getsignal(signum) is not previous
            signal.raise_signal(signum)
            await asyncio.sleep(0.01)  # the drain is scheduled on the loop
            assert (service.drains, seen) == (1, [signum])
        assert signal.getsignal(signum) is previous
    finally:
        signal.signal(signum, original)
