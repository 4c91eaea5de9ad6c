"""PostgreSQL LISTEN/NOTIFY: fan-out with no component beyond the database.

NOTIFY runs inside the publishing statement (the store adds the SQL that builds the
payloads, given this bus's `TransactionNotify`), so an announcement is delivered exactly
when its rows commit and never for a rolled-back one. Payloads stay under the 8000-byte
limit: a frame too large travels as a reference (user and seq) that the receiving sockets
fetch from the database.
LISTEN runs on one dedicated asyncpg connection, supervised: it is health-checked,
reconnected with jittered backoff, and every reconnect tells the hub to catch all
sockets up, since announcements sent meanwhile are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.bus.supervisor import SupervisedBus
from notifier.wire.announcement import (
    MAX_PAYLOAD_BYTES,
    Announcement,
    TopicAnnouncement,
    TransactionNotify,
    decode_payload,
    origin_prefix,
)
from notifier.wire.notification import Notification

CHANNEL = "notifier"
log = logging.getLogger("notifier.bus")

_NOTIFY_ONE = sa.text("SELECT pg_notify(:channel, :payload)")
APPLICATION_NAME = "notifier-listen"
"""The `application_name` of the LISTEN connection."""


def asyncpg_dsn(database_url: str) -> str:
    """The SQLAlchemy URL as a libpq DSN for asyncpg.connect: the asyncpg dialect's
    `ssl=` query option is libpq's `sslmode=`."""
    url = make_url(database_url).set(drivername="postgresql")
    ssl = url.query.get("ssl")
    if isinstance(ssl, str) and "sslmode" not in url.query:
        url = url.difference_update_query(["ssl"]).update_query_dict({"sslmode": ssl})
    return url.render_as_string(hide_password=False)


class PostgresBus(SupervisedBus):
    name = "postgres"

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        origin: str,
        health_interval: float = 5.0,
        max_backoff: float = 10.0,
    ) -> None:
        super().__init__(max_backoff=max_backoff)
        self._engine = engine
        self._dsn = asyncpg_dsn(engine.url.render_as_string(hide_password=False))
        self._origin = origin
        # This instance's own payloads, delivered locally at commit, are dropped
        # without being parsed.
        self._own_prefix = origin_prefix(origin)
        self._in_transaction = TransactionNotify(CHANNEL, origin)
        self._health_interval = health_interval
        self._conn: Any = None
        self._lost = asyncio.Event()

    @property
    def in_transaction(self) -> TransactionNotify:
        return self._in_transaction

    async def announce(self, notifications: Sequence[Notification]) -> None:
        """Nothing to do: the publishing statement announced them at commit."""
        return None

    async def broadcast(self, announcement: Announcement) -> None:
        """Every instance LISTENs on the one channel. (Revocations do not come here: they
        are NOTIFYed inside their own transaction, through `in_transaction`.)"""
        async with self._engine.begin() as conn:
            await conn.execute(
                _NOTIFY_ONE, {"channel": CHANNEL, "payload": announcement.encode(self._origin)}
            )

    async def announce_read(self, user_id: str, frame: str) -> None:
        payload = Announcement(user_id=user_id, read_frame=frame).encode(self._origin)
        if len(payload.encode()) >= MAX_PAYLOAD_BYTES:
            return  # an ids list too long to carry; other devices refresh over HTTP
        try:
            async with self._engine.begin() as conn:
                await conn.execute(_NOTIFY_ONE, {"channel": CHANNEL, "payload": payload})
        except Exception as error:  # read state is in the database; other devices refresh
            log.warning("read announcement lost", extra={"error": repr(error)})

    # -- the supervised listener ----------------------------------------------------

    async def _connect(self) -> None:
        self._lost = asyncio.Event()
        # Named, so that an operator (and a test) tells it apart in pg_stat_activity,
        # whatever statement it ran last (its health check is a SELECT 1).
        conn = await asyncpg.connect(
            self._dsn, timeout=10, server_settings={"application_name": APPLICATION_NAME}
        )
        self._conn = conn
        conn.add_termination_listener(lambda _c: self._lost.set())
        await conn.add_listener(CHANNEL, self._on_notify)
        self._connected = True

    async def _run_until_lost(self) -> None:
        """Return when the LISTEN connection is lost (terminated or unresponsive)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), timeout=self._health_interval)
            if self._lost.is_set() or self._conn is None or self._conn.is_closed():
                raise ConnectionError("LISTEN connection closed")
            await asyncio.wait_for(self._conn.execute("SELECT 1"), timeout=5)

    async def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), timeout=2)
            if not conn.is_closed():
                conn.terminate()

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if payload.startswith(self._own_prefix):
            return  # our own publishes were delivered locally at commit
        if self._handlers is None:
            return
        try:
            _origin, announced = decode_payload(payload)
        except ValueError:
            log.warning("ignored a foreign payload on the bus channel")
            return
        if isinstance(announced, TopicAnnouncement):
            if self._handlers.deliver_topic is not None:
                self._handlers.deliver_topic(announced)
            return
        for announcement in announced:
            self._handlers.deliver(announcement)
