"""Closing sockets whose token expires: one clock for every socket of the process.

A timer per socket would cost about 0.5 KiB each (uvloop's timer handle, its callback and
arguments), a quarter of what the socket itself costs. Sockets are filed instead by the
second their token expires, and one task closes each second's sockets once it has
passed: never before `exp` (+ leeway), at most about a second after.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Protocol

from notifier.connection import CLOSE_UNAUTHORIZED


class Expiring(Protocol):
    expires_at: float | None

    def request_close(self, code: int, reason: str) -> None: ...


class Expiries:
    def __init__(self, tick: float = 0.5) -> None:
        self._tick = tick
        self._due: dict[int, set[Expiring]] = {}
        self._swept = math.floor(time.time())
        """Every second up to this one has been closed."""

    def watch(self, socket: Expiring, expires_at: float) -> None:
        """Close `socket` once `expires_at` (epoch seconds) has passed; replaces the
        deadline of a renewed token."""
        self.forget(socket)
        socket.expires_at = expires_at
        second = max(math.ceil(expires_at), self._swept + 1)
        self._due.setdefault(second, set()).add(socket)

    def forget(self, socket: Expiring) -> None:
        if socket.expires_at is None:
            return
        second = max(math.ceil(socket.expires_at), self._swept + 1)
        sockets = self._due.get(second)
        if sockets is not None:
            sockets.discard(socket)
            if not sockets:
                del self._due[second]
        socket.expires_at = None

    def sweep(self, now: float) -> None:
        """Close every socket whose second has passed."""
        until = math.floor(now)
        for second in range(self._swept + 1, until + 1):
            for socket in self._due.pop(second, ()):
                socket.expires_at = None
                socket.request_close(CLOSE_UNAUTHORIZED, "token expired")
        self._swept = max(self._swept, until)

    async def run(self) -> None:
        """For the life of the process."""
        while True:
            await asyncio.sleep(self._tick)
            self.sweep(time.time())
