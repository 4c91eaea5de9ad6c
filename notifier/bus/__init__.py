"""Cross-instance fan-out: one interface, one engine per kind.

The bus carries announcements (a user's new seq, with its frame when it fits, and read
state changes) between instances. It may lose messages: each socket detects a gap in
seq and fills it from the database, and after a reconnect every socket is caught up.
The bus knows nothing of sockets; it hands announcements to a callback.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.bus.base import Bus, BusHandlers
from notifier.bus.memory import MemoryBus

__all__ = ["Bus", "BusHandlers", "MemoryBus", "create_bus"]


def create_bus(kind: str, *, engine: AsyncEngine, redis_url: str, origin: str) -> Bus:
    bus = _engine_bus(kind, engine=engine, redis_url=redis_url, origin=origin)
    if kind != "postgres" and engine.dialect.name == "postgresql":
        # notifier_publish() announces on PostgreSQL whatever the bus (bus/sqlfeed.py).
        from notifier.bus.postgres import PostgresBus
        from notifier.bus.sqlfeed import SqlFeed

        return SqlFeed(bus, PostgresBus(engine, origin=origin))
    return bus


def _engine_bus(kind: str, *, engine: AsyncEngine, redis_url: str, origin: str) -> Bus:
    if kind == "memory":
        return MemoryBus()
    if kind == "postgres":
        from notifier.bus.postgres import PostgresBus

        return PostgresBus(engine, origin=origin)
    if kind == "redis":
        from notifier.bus.clusterurl import is_cluster_url

        if is_cluster_url(redis_url):
            from notifier.bus.rediscluster import RedisClusterBus

            return RedisClusterBus(redis_url, origin=origin)
        from notifier.bus.redis import RedisBus

        return RedisBus(redis_url, origin=origin)
    raise ValueError(f"unknown bus {kind!r}: choose memory, postgres or redis")
