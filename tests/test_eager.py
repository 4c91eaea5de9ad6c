"""Eager steps (notifier/eager.py): a coroutine that never waits runs to its end in the
caller's step with no task; one that waits goes on in a task that passes it what it waits
for, exceptions and cancellation; and an owner that marks itself STEPPING starts no second
runner from inside the step."""

from __future__ import annotations

import asyncio

import pytest

from notifier import eager


async def test_a_coroutine_that_never_waits_needs_no_task() -> None:
    """It runs to its end before `step` returns, and no task is made."""
    done: list[str] = []

    async def write() -> str:
        return "written"  # the socket took the frame at once

    async def run() -> None:
        done.append(await write())

    tasks = asyncio.all_tasks()
    assert eager.step(asyncio.get_running_loop(), run()) is None
    assert done == ["written"]
    assert asyncio.all_tasks() == tasks


async def test_a_coroutine_that_waits_goes_on_in_a_task() -> None:
    """What comes before the first wait runs in the caller's step, the rest in the task,
    which hands down the awaited result."""
    steps: list[object] = []
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def run() -> None:
        steps.append("before")
        steps.append(await ready)
        await asyncio.sleep(0)  # a bare yield to the loop is passed through too
        steps.append("after")

    task = eager.step(asyncio.get_running_loop(), run())
    assert steps == ["before"]
    assert isinstance(task, asyncio.Task)
    assert task is not asyncio.current_task()
    ready.set_result(42)
    await asyncio.wait_for(task, 2)
    assert steps == ["before", 42, "after"]


async def test_an_exception_from_what_it_waits_for_is_thrown_in() -> None:
    """A failed wait raises inside the coroutine, which may handle it."""
    caught: list[BaseException] = []
    failing: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def run() -> None:
        try:
            await failing
        except OSError as error:
            caught.append(error)

    task = eager.step(asyncio.get_running_loop(), run())
    assert task is not None
    failing.set_exception(OSError("client gone"))
    await asyncio.wait_for(task, 2)
    assert [str(error) for error in caught] == ["client gone"]


async def test_the_task_is_cancelled_into_the_coroutine() -> None:
    """Cancelling the task throws CancelledError into the coroutine where it waits."""
    seen: list[str] = []

    async def run() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        finally:
            seen.append("cleaned up")

    task = eager.step(asyncio.get_running_loop(), run())
    assert task is not None
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    assert seen == ["cancelled", "cleaned up"]


async def test_an_exception_in_the_eager_step_reaches_the_caller() -> None:
    async def run() -> None:
        raise LookupError("the caller's bug")

    with pytest.raises(LookupError, match="the caller's bug"):
        eager.step(asyncio.get_running_loop(), run())


class Owner:
    """Owns one runner at a time, the way `Connection` owns its sender."""

    def __init__(self, *, wait: bool) -> None:
        self.runner: asyncio.Task[None] | eager.Stepping | None = None
        self.started = 0
        self.wait = wait
        self.gate = asyncio.Event()

    def wake(self) -> None:
        if self.runner is not None:
            return
        self.runner = eager.STEPPING
        self.runner = eager.step(asyncio.get_running_loop(), self.run())

    async def run(self) -> None:
        self.started += 1
        try:
            self.wake()  # e.g. a failed send requesting the close from inside the step
            if self.wait:
                await self.gate.wait()
                self.wake()  # from the task: this runner is still the owner's
        finally:
            self.runner = None


@pytest.mark.parametrize("wait", [False, True], ids=["finishes", "waits"])
async def test_a_wake_from_inside_the_step_starts_no_second_runner(wait: bool) -> None:
    """While STEPPING, and later while its task runs, the owner's runner is the only one."""
    owner = Owner(wait=wait)
    owner.wake()
    assert owner.started == 1
    if wait:
        assert isinstance(owner.runner, asyncio.Task)
        owner.gate.set()
        await asyncio.wait_for(owner.runner, 2)
    assert owner.runner is None
    assert owner.started == 1


def test_stepping_has_nothing_to_cancel() -> None:
    assert eager.STEPPING.cancel() is False
