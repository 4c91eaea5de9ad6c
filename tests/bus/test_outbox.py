"""`notifier.bus.outbox.Outbox`: concurrent publishes' messages share a pipeline, leave
in the order given, and each caller returns when (and fails if) its own pipeline does."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from notifier.bus.outbox import Outbox


class Pipelines:
    def __init__(self) -> None:
        self.sent: list[list[tuple[str, str]]] = []
        self.release = asyncio.Event()
        self.fail_next = False

    async def send(self, messages: Sequence[tuple[str, str]]) -> None:
        self.sent.append(list(messages))
        await self.release.wait()
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("redis gone")


def msgs(*names: str) -> list[tuple[str, str]]:
    return [(name, f"payload-{name}") for name in names]


async def test_messages_queued_during_a_pipeline_share_the_next_one_in_order() -> None:
    pipes = Pipelines()
    outbox = Outbox(pipes.send)
    first = asyncio.create_task(outbox.send(msgs("a")))
    await asyncio.sleep(0)
    later = [asyncio.create_task(outbox.send(msgs(n, n + "2"))) for n in ("b", "c", "d")]
    await asyncio.sleep(0)
    assert pipes.sent == [msgs("a")] and not first.done()
    pipes.release.set()
    await asyncio.gather(first, *later)
    assert pipes.sent == [msgs("a"), msgs("b", "b2", "c", "c2", "d", "d2")]


async def test_a_failed_pipeline_fails_its_callers_only() -> None:
    pipes = Pipelines()
    outbox = Outbox(pipes.send)
    pipes.fail_next = True
    failing = [asyncio.create_task(outbox.send(msgs(n))) for n in ("a", "b")]
    await asyncio.sleep(0)
    pipes.release.set()
    for task in failing:
        with pytest.raises(ConnectionError):
            await task
    await outbox.send(msgs("c"))  # the next pipeline is sent as usual
    assert pipes.sent[-1] == msgs("c")


async def test_a_cancelled_caller_does_not_cancel_the_pipeline() -> None:
    pipes = Pipelines()
    outbox = Outbox(pipes.send)
    impatient = asyncio.create_task(outbox.send(msgs("a")))
    other = asyncio.create_task(outbox.send(msgs("b")))
    await asyncio.sleep(0)
    impatient.cancel()
    await asyncio.sleep(0)
    pipes.release.set()
    await other
    assert pipes.sent == [msgs("a", "b")]


async def test_nothing_to_send_sends_nothing() -> None:
    pipes = Pipelines()
    await Outbox(pipes.send).send([])
    assert pipes.sent == []
