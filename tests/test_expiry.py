"""The per-second expiry clock: a socket is never closed before its token's `exp`, is
closed (4401, once) by the first sweep of the second after it, follows a renewed deadline,
is left alone once forgotten, and `run` does this on its own."""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time

from notifier.expiry import CLOSE_UNAUTHORIZED, Expiries

EXPIRED = (CLOSE_UNAUTHORIZED, "token expired")


class FakeSocket:
    """What Expiries needs of a socket; records each close it is asked for."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.expires_at: float | None = None
        self.closes: list[tuple[int, str]] = []
        self.closed_at: list[float] = []

    def request_close(self, code: int, reason: str) -> None:
        self.closes.append((code, reason))
        self.closed_at.append(time.time())

    def __repr__(self) -> str:
        return f"FakeSocket({self.name!r}, expires_at={self.expires_at}, closes={self.closes})"


def clock() -> tuple[Expiries, int]:
    """A fresh Expiries and a whole second safely after the one it starts as swept, so
    every deadline and sweep of a test can be written relative to it."""
    expiries = Expiries()
    return expiries, math.floor(time.time()) + 10


def test_never_closed_before_an_integer_deadline_and_closed_on_it() -> None:
    expiries, base = clock()
    socket = FakeSocket()
    expiries.watch(socket, base + 3)
    assert socket.expires_at == base + 3
    for now in (base, base + 1.5, base + 2, base + 2.99):
        expiries.sweep(now)
        assert socket.closes == [], now
    expiries.sweep(base + 3)
    assert socket.closes == [EXPIRED]
    assert socket.expires_at is None


def test_never_closed_before_a_fractional_deadline_and_closed_by_its_ceiling() -> None:
    expiries, base = clock()
    socket = FakeSocket()
    deadline = base + 3.25
    expiries.watch(socket, deadline)
    expiries.sweep(base + 3.0)  # the second of the deadline, before it
    expiries.sweep(deadline - 0.01)
    assert socket.closes == []
    expiries.sweep(base + 4.0)  # ceil(expires_at)
    assert socket.closes == [EXPIRED]
    assert socket.expires_at is None


def test_closed_exactly_once() -> None:
    expiries, base = clock()
    socket = FakeSocket()
    expiries.watch(socket, base + 1.5)
    expiries.sweep(base + 2.5)
    expiries.sweep(base + 2.7)
    expiries.sweep(base + 3)
    expiries.sweep(base + 60)
    assert socket.closes == [EXPIRED]
    assert expiries._due == {}


def test_a_renewed_token_moves_the_deadline_later() -> None:
    expiries, base = clock()
    socket = FakeSocket()
    expiries.watch(socket, base + 2.5)
    expiries.sweep(base + 1)
    expiries.watch(socket, base + 5.5)  # renewal
    assert socket.expires_at == base + 5.5
    for now in (base + 3, base + 4, base + 5, base + 5.49):  # past the old deadline
        expiries.sweep(now)
    assert socket.closes == []
    expiries.sweep(base + 6)
    assert socket.closes == [EXPIRED]
    assert expiries._due == {}


def test_a_renewal_to_an_earlier_deadline_closes_once_at_the_new_one() -> None:
    expiries, base = clock()
    socket = FakeSocket()
    expiries.watch(socket, base + 5.5)
    expiries.watch(socket, base + 2.5)
    expiries.sweep(base + 2.4)
    assert socket.closes == []
    expiries.sweep(base + 3)
    assert socket.closes == [EXPIRED]
    expiries.sweep(base + 10)  # nothing left filed under the old deadline
    assert socket.closes == [EXPIRED]


def test_a_forgotten_socket_is_never_closed_and_leaves_no_empty_bucket() -> None:
    expiries, base = clock()
    gone, kept = FakeSocket("gone"), FakeSocket("kept")
    expiries.watch(gone, base + 2.5)
    expiries.watch(kept, base + 2.5)  # same second: the bucket must stay for `kept`
    alone = FakeSocket("alone")
    expiries.watch(alone, base + 4.5)
    expiries.forget(gone)
    expiries.forget(alone)
    assert gone.expires_at is None and alone.expires_at is None
    assert expiries._due == {base + 3: {kept}}
    expiries.forget(alone)  # twice is harmless
    expiries.sweep(base + 100)
    assert gone.closes == [] and alone.closes == []
    assert kept.closes == [EXPIRED]
    assert expiries._due == {}


def test_forgetting_a_socket_never_watched_does_nothing() -> None:
    expiries, base = clock()
    socket = FakeSocket()
    expiries.watch(FakeSocket(), base + 1)
    expiries.forget(socket)
    assert socket.expires_at is None
    assert list(expiries._due) == [base + 1]


def test_many_sockets_close_in_the_sweep_of_their_second() -> None:
    expiries, base = clock()
    deadlines = [0.5, 1.0, 1.001, 2.999, 3.0, 3.0, 3.75, 7.25]
    sockets = [FakeSocket(str(d)) for d in deadlines]
    for socket, offset in zip(sockets, deadlines, strict=True):
        expiries.watch(socket, base + offset)
    closed_in: dict[FakeSocket, int] = {}
    for second in range(0, 10):
        expiries.sweep(base + second)
        for socket in sockets:
            if socket.closes and socket not in closed_in:
                closed_in[socket] = second
    assert [closed_in.get(s) for s in sockets] == [1, 1, 2, 3, 3, 3, 4, 8]
    assert all(s.closes == [EXPIRED] for s in sockets)


def test_random_deadlines_and_sweeps_never_early_never_late() -> None:
    """Whatever the sweep times: closed by the first sweep at or after ceil(exp), never
    by one before exp, once."""
    rng = random.Random(2024)
    expiries, base = clock()
    deadlines = [base + rng.uniform(0, 30) for _ in range(300)]
    deadlines += [base + rng.randint(1, 30) for _ in range(50)]  # whole seconds
    sockets = [FakeSocket(str(i)) for i in range(len(deadlines))]
    for socket, deadline in zip(sockets, deadlines, strict=True):
        expiries.watch(socket, deadline)
    sweeps = sorted(base + rng.uniform(0, 32) for _ in range(60))
    closed_by: dict[FakeSocket, float] = {}
    for now in sweeps:
        expiries.sweep(now)
        for socket in sockets:
            if socket.closes and socket not in closed_by:
                closed_by[socket] = now
    for socket, deadline in zip(sockets, deadlines, strict=True):
        due = [now for now in sweeps if now >= math.ceil(deadline)]
        assert closed_by.get(socket) == (due[0] if due else None), (socket, deadline)
        if socket in closed_by:
            assert closed_by[socket] >= deadline
            assert socket.closes == [EXPIRED]
        else:
            assert socket.closes == [] and socket.expires_at == deadline


def test_a_sweep_after_a_long_gap_closes_everything_due_in_between() -> None:
    expiries, base = clock()
    due = [FakeSocket(str(offset)) for offset in (0.5, 1, 17.3, 50, 99.999, 100)]
    later = [FakeSocket(str(offset)) for offset in (100.001, 100.5, 150)]
    for socket in due + later:
        expiries.watch(socket, base + float(socket.name))
    expiries.sweep(base)
    assert not any(s.closes for s in due + later)
    expiries.sweep(base + 100.2)  # the clock jumps 100 s
    assert all(s.closes == [EXPIRED] for s in due)
    assert all(s.expires_at is None for s in due)
    assert not any(s.closes for s in later)
    expiries.sweep(base + 101)
    assert [bool(s.closes) for s in later] == [True, True, False]


def test_a_deadline_in_an_already_swept_second_is_closed_at_the_next_sweep() -> None:
    """A token whose second the clock has already swept (it expired since, or the clock
    ran ahead) is not lost in a bucket that will never be swept again."""
    expiries, base = clock()
    expiries.sweep(base + 2.5)  # seconds up to base + 2 are swept
    on_the_second, earlier = FakeSocket("on"), FakeSocket("earlier")
    expiries.watch(on_the_second, base + 2)
    expiries.watch(earlier, base + 1.3)
    this_second = FakeSocket("this second")
    expiries.watch(this_second, base + 2.7)  # not yet passed
    expiries.sweep(base + 2.69)
    assert this_second.closes == []
    expiries.sweep(base + 3)
    assert on_the_second.closes == [EXPIRED]
    assert earlier.closes == [EXPIRED]
    assert this_second.closes == [EXPIRED]
    assert expiries._due == {}


def test_a_socket_in_an_already_swept_second_can_be_forgotten() -> None:
    expiries, base = clock()
    expiries.sweep(base + 2.5)
    socket = FakeSocket()
    expiries.watch(socket, base + 1.3)
    expiries.forget(socket)
    assert expiries._due == {}
    expiries.sweep(base + 5)
    assert socket.closes == []


def test_a_clock_stepping_back_neither_reopens_swept_seconds_nor_loses_sockets() -> None:
    expiries, base = clock()
    expiries.sweep(base + 5.5)
    late = FakeSocket("late")
    expiries.watch(late, base + 1)  # filed for the next second to sweep
    expiries.sweep(base + 2)  # the wall clock steps back
    expiries.forget(late)
    assert expiries._due == {}
    expiries.sweep(base + 7)
    assert late.closes == []


async def test_run_closes_a_socket_shortly_after_its_deadline() -> None:
    expiries = Expiries(tick=0.05)
    socket = FakeSocket()
    start = time.time()
    deadline = start + 0.3
    expiries.watch(socket, deadline)
    task = asyncio.create_task(expiries.run())
    try:
        while not socket.closes and time.time() - start < 1.5:
            await asyncio.sleep(0.02)
        assert socket.closes == [EXPIRED]
        assert socket.closed_at[0] >= deadline
        assert socket.expires_at is None
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
