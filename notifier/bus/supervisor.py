"""The supervised receiving side shared by the networked buses.

A bus receives on one long-lived connection. It must never die of a backend error (the
gap in encode/broadcaster): any failure closes the connection, waits with jittered
exponential backoff, connects again, and then asks the hub to resync, since whatever was
published meanwhile was lost.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import random

from notifier.bus.base import Bus, BusHandlers

log = logging.getLogger("notifier.bus")


class SupervisedBus(Bus):
    def __init__(self, *, max_backoff: float = 10.0) -> None:
        self._max_backoff = max_backoff
        self._handlers: BusHandlers | None = None
        self._task: asyncio.Task[None] | None = None
        self._connected = False

    @property
    def healthy(self) -> bool:
        return self._connected

    async def start(self, handlers: BusHandlers) -> None:
        self._handlers = handlers
        ready = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._supervise(ready), name=f"{self.name}-bus")
        # Wait briefly for the first connection so that a fresh instance misses nothing;
        # a backend that is down does not stop start-up (the bus keeps retrying).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(ready), timeout=5)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._disconnect()

    @abc.abstractmethod
    async def _connect(self) -> None:
        """Open the receiving connection and subscribe; set `_connected`."""

    @abc.abstractmethod
    async def _run_until_lost(self) -> None:
        """Receive until the connection fails (raise) or stops answering (raise)."""

    @abc.abstractmethod
    async def _disconnect(self) -> None:
        """Close the receiving connection, whatever its state; never raise."""

    async def _supervise(self, ready: asyncio.Future[None]) -> None:
        attempt = 0
        first = True
        while True:
            try:
                await self._connect()
                attempt = 0
                if not ready.done():
                    ready.set_result(None)
                if not first and self._handlers is not None:
                    self._handlers.resync()
                first = False
                log.info("bus connected", extra={"bus": self.name})
                await self._run_until_lost()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # any failure: reconnect, never die
                if self._connected or attempt == 0:
                    log.warning(
                        "bus connection lost, reconnecting",
                        extra={"bus": self.name, "error": repr(error)[:300]},
                    )
            self._connected = False
            await self._disconnect()
            attempt += 1
            delay = min(self._max_backoff, 0.2 * 2 ** min(attempt, 10))
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
