"""A worker's listening socket, closed while the worker holds all the streams it may and
opened again once it has room, so that its siblings take the connections it would refuse.

With `serve --workers N` every worker accepts from one listening socket (one kernel
queue), and the kernel hands a connection to whichever worker asks first. A worker at
its streams cap (`notifier.admission`) answers a new stream `503`, quickly, so it asks
again soon and takes far more than its share of the queue. After a worker was killed
with 100,000 sockets open (`python -m bench.scale`), the five survivors filled to their
cap before the replacement was up, then kept taking five of every six attempts and
refusing them, while the replacement had room for 12,000: the refused clients backed
off for up to 30 s each time, and the last of them came back after 489 s.

Closing this process's descriptor of the socket stops it asking: the socket itself stays
open in the supervisor and the siblings, so the kernel's queue is drained by workers
with room. A duplicate of the descriptor, made before the close, is what it serves from
again. One worker always stays accepting (`Acceptors`): publishes, health checks and metrics
come through the same socket, and with every worker full they must still be served,
as must the streams' refusals, which tell clients to back off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from multiprocessing.context import SpawnContext
from typing import Any

from notifier import metrics

logger = logging.getLogger("notifier.listening")

Reopen = Callable[[socket.socket], Awaitable[Any]]
"""Serves a listening socket again, as uvicorn did: an `asyncio.Server`."""


ACCEPTING, NOT_ACCEPTING, UNUSED = 0, 1, -1


class Acceptors:
    """Which workers accept connections: a byte per worker slot, in memory the supervisor
    shares with its workers (a worker's slot is its index in the supervisor's list).

    The supervisor marks a slot not accepting when it starts a worker there or finds
    its worker dead; the worker marks it accepting once it listens, and not accepting
    when it closes its listening, which it may only while another slot accepts.
    """

    def __init__(self, size: int, context: SpawnContext) -> None:
        self.size = size
        self._slots = context.Array("b", [UNUSED] * size)

    def mark(self, slot: int, state: int) -> None:
        with self._slots.get_lock():
            self._slots[slot] = state

    def leave(self, slot: int) -> bool:
        """Mark `slot` not accepting if another slot accepts; whether it did."""
        with self._slots.get_lock():
            states: list[int] = self._slots[:]
            if not any(state == ACCEPTING for i, state in enumerate(states) if i != slot):
                return False
            self._slots[slot] = NOT_ACCEPTING
            return True


class Listening:
    """This process's listening servers, closed and reopened on demand (`want_closed`).

    The servers list is uvicorn's own, changed in place, so that its shutdown closes
    whatever is serving then. Changes are applied in order by one task (`_follow`):
    reopening awaits, and a close asked meanwhile must not overtake it.
    """

    RETRY_SECONDS = 1.0
    """How often a full worker that had to stay accepting (no sibling accepting) asks
    again."""

    def __init__(self) -> None:
        self._acceptors: Acceptors | None = None
        self._slot = 0
        self._servers: list[Any] | None = None
        self._reopen: Reopen | None = None
        self._want_closed = False
        self.closed = False
        self._spares: list[socket.socket] = []
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def attach(self, servers: list[Any], reopen: Reopen, acceptors: Acceptors, slot: int) -> None:
        """Start following `want_closed` for these (running) servers."""
        self._servers, self._reopen = servers, reopen
        self._acceptors, self._slot = acceptors, slot
        acceptors.mark(slot, ACCEPTING)
        self._changed = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._follow())
        if self._want_closed:
            self._changed.set()

    async def detach(self) -> None:
        """Stop following: the process is shutting down, and stays as it is."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._acceptors is not None:
            self._acceptors.mark(self._slot, NOT_ACCEPTING)
        for sock in self._spares:
            sock.close()
        self._spares = []
        self._servers = self._acceptors = None

    def want_closed(self, closed: bool) -> None:
        """Close (True) or reopen (False) soon; a no-op in a process not attached (one
        worker: no sibling would take what it leaves)."""
        self._want_closed = closed
        self._changed.set()

    async def _follow(self) -> None:
        while True:
            # A close refused for want of an accepting sibling is asked again.
            retry = self.RETRY_SECONDS if self._want_closed and not self.closed else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), retry)
            self._changed.clear()
            if self._want_closed != self.closed:
                try:
                    await (self._close() if self._want_closed else self._open())
                except OSError as error:  # descriptors exhausted, say: stay as it is
                    logger.warning("cannot change the listening socket: %s", error)

    async def _close(self) -> None:
        assert self._servers is not None and self._acceptors is not None
        # Duplicated first: with descriptors exhausted, nothing has changed yet.
        spares = [
            socket.socket(fileno=os.dup(sock.fileno()))
            for server in self._servers
            for sock in server.sockets
        ]
        if not self._acceptors.leave(self._slot):
            for sock in spares:
                sock.close()
            return
        for server in self._servers:
            server.close()
        self._servers[:] = []
        self._spares = spares
        self.closed = True
        metrics.LISTENING_CLOSED.set(1)
        logger.info("holding all the streams it may: stopped accepting, siblings take new ones")

    async def _open(self) -> None:
        assert self._servers is not None and self._reopen is not None
        for sock in self._spares:
            self._servers.append(await self._reopen(sock))
        self._spares = []
        assert self._acceptors is not None
        self._acceptors.mark(self._slot, ACCEPTING)
        self.closed = False
        metrics.LISTENING_CLOSED.set(0)
        logger.info("room for streams again: accepting")
