"""PostgreSQL LISTEN/NOTIFY: fan-out with no component beyond the database.

NOTIFY runs inside the publishing transaction, so an announcement is delivered exactly
when its rows commit and never for a rolled-back one. Payloads stay under the 8000-byte
limit: a frame too large travels as a reference (user and seq) that the receiving
sockets fetch from the database. LISTEN runs on one dedicated asyncpg connection,
supervised: it is health-checked, reconnected with jittered backoff, and every reconnect
tells the hub to catch all sockets up, since announcements sent meanwhile are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Sequence
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from notifier.bus.base import Announcement, Bus, BusHandlers
from notifier.core.notification import Notification

CHANNEL = "notifier"
log = logging.getLogger("notifier.bus")

_NOTIFY_ONE = sa.text("SELECT pg_notify(:channel, :payload)")
_NOTIFY_MANY = sa.text(
    "SELECT pg_notify(:channel, payload) FROM unnest(CAST(:payloads AS text[])) AS payload"
)


def asyncpg_dsn(database_url: str) -> str:
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


class PostgresBus(Bus):
    name = "postgres"

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        origin: str,
        health_interval: float = 5.0,
        max_backoff: float = 10.0,
    ) -> None:
        self._engine = engine
        self._dsn = asyncpg_dsn(engine.url.render_as_string(hide_password=False))
        self._origin = origin
        self._health_interval = health_interval
        self._max_backoff = max_backoff
        self._handlers: BusHandlers | None = None
        self._task: asyncio.Task[None] | None = None
        self._conn: Any = None
        self._connected = False
        self._lost = asyncio.Event()

    @property
    def healthy(self) -> bool:
        return self._connected

    async def start(self, handlers: BusHandlers) -> None:
        self._handlers = handlers
        ready = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._supervise(ready), name="postgres-bus")
        # Wait briefly for the first LISTEN so that a fresh instance misses nothing;
        # a database that is down does not stop start-up (the bus keeps retrying).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(ready), timeout=5)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._close()

    async def announce_in_transaction(
        self, conn: AsyncConnection, notifications: Sequence[Notification]
    ) -> None:
        payloads = [Announcement.of(n).encode(self._origin) for n in notifications]
        await conn.execute(_NOTIFY_MANY, {"channel": CHANNEL, "payloads": payloads})

    async def announce_read(self, user_id: str, frame: str) -> None:
        payload = Announcement(user_id=user_id, read_frame=frame).encode(self._origin)
        if len(payload) >= 7900:
            return  # an ids list too long to carry; other devices refresh over HTTP
        try:
            async with self._engine.begin() as conn:
                await conn.execute(_NOTIFY_ONE, {"channel": CHANNEL, "payload": payload})
        except Exception as error:  # read state is in the database; other devices refresh
            log.warning("read announcement lost", extra={"error": repr(error)})

    # -- the supervised listener ----------------------------------------------------

    async def _supervise(self, ready: asyncio.Future[None]) -> None:
        attempt = 0
        first = True
        while True:
            try:
                await self._listen()
                attempt = 0
                if not ready.done():
                    ready.set_result(None)
                if not first and self._handlers is not None:
                    self._handlers.resync()
                first = False
                log.info("bus connected", extra={"bus": self.name})
                await self._watch()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # any failure: reconnect, never die
                log.warning(
                    "bus connection lost, reconnecting",
                    extra={"bus": self.name, "error": repr(error)},
                )
            self._connected = False
            await self._close()
            attempt += 1
            delay = min(self._max_backoff, 0.2 * 2 ** min(attempt, 10))
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    async def _listen(self) -> None:
        self._lost = asyncio.Event()
        conn = await asyncpg.connect(self._dsn, timeout=10)
        self._conn = conn
        conn.add_termination_listener(lambda _c: self._lost.set())
        await conn.add_listener(CHANNEL, self._on_notify)
        self._connected = True

    async def _watch(self) -> None:
        """Return when the LISTEN connection is lost (terminated or unresponsive)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), timeout=self._health_interval)
            if self._lost.is_set() or self._conn is None or self._conn.is_closed():
                raise ConnectionError("LISTEN connection closed")
            await asyncio.wait_for(self._conn.execute("SELECT 1"), timeout=5)

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), timeout=2)
            if not conn.is_closed():
                conn.terminate()

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            origin, announcement = Announcement.decode(payload)
        except ValueError:
            log.warning("ignored a foreign payload on the bus channel")
            return
        if origin == self._origin or self._handlers is None:
            return  # our own publishes were delivered locally at commit
        self._handlers.deliver(announcement)
