"""SQL ingest: `python -m bench.sql_ingest [--quick] [--bus postgres|redis|memory]`.

Publishes from backends' own transactions (`notifier_publish()`, docs/sql-publish.md):
C (default 8) concurrent asyncpg connections, each a closed loop of transactions
`BEGIN; SELECT notifier_publish(random user, ...); COMMIT`, for D seconds, while every
user has a socket open on one `notifier serve` (pinned to one core, like bench.run's).
Prints publishes per second (committed transactions ÷ time) and the latency from sending
COMMIT to the frame arriving on the user's socket (p50 / p99 / max): the time a backend's
commit takes to reach the user, since nothing leaves before it. Every frame is checked:
each committed (user, seq) must arrive exactly once.

The database is made for the run (`notifier migrate`) and dropped at the end; the
command needs what `make test` needs (PostgreSQL on 127.0.0.1:5432, Redis for
`--bus redis`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from jose import jwt
from websockets.asyncio.client import ClientConnection, connect

from bench.loadgen import summary_ms
from bench.run import JWT_SECRET, Database, ServerProcess, log

PUBLISH = "SELECT seq FROM notifier_publish($1, 'bench.sql', $2::jsonb)"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sql_ingest", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="2 s, 50 users")
    parser.add_argument("--concurrency", type=int, default=8, help="backend transactions")
    parser.add_argument("--duration", type=float, default=None, help="seconds (default 10)")
    parser.add_argument("--users", type=int, default=None, help="connected users (default 1000)")
    parser.add_argument(
        "--per-transaction", type=int, default=1, help="publishes in each transaction"
    )
    parser.add_argument("--bus", choices=["postgres", "redis", "memory"], default="postgres")
    parser.add_argument("--server-cpu", type=int, default=0, help="core for the server")
    parser.add_argument("--client-cpu", type=int, default=1, help="core for this process")
    args = parser.parse_args(argv)
    args.duration = args.duration or (2.0 if args.quick else 10.0)
    args.users = args.users or (50 if args.quick else 1000)
    return args


class Receiver:
    """Every socket's frames: when each (user, seq) arrived, and anything unexpected."""

    def __init__(self) -> None:
        self.sent: dict[tuple[str, int], float] = {}
        self.latencies: list[float] = []
        self.duplicates = 0
        self.unexpected = 0
        self.seen: set[tuple[str, int]] = set()

    async def read(self, ws: ClientConnection) -> None:
        async for raw in ws:
            now = time.monotonic()
            frame = orjson.loads(raw)
            if frame.get("type") != "notification":
                continue
            body = frame["notification"]
            key = (body["user_id"], body["seq"])
            if key in self.seen:
                self.duplicates += 1
                continue
            self.seen.add(key)
            sent = self.sent.get(key)
            if sent is None:
                self.unexpected += 1
            else:
                self.latencies.append(now - sent)


async def backend(
    dsn: str,
    users: list[str],
    receiver: Receiver,
    stop_at: float,
    counts: list[int],
    per_transaction: int,
) -> None:
    """One backend connection: transactions in a closed loop until `stop_at`, each
    publishing to `per_transaction` users in ascending order (no deadlock between them)."""
    conn = await asyncpg.connect(dsn)
    try:
        n = 0
        while time.monotonic() < stop_at:
            chosen = sorted(random.sample(users, per_transaction))
            await conn.execute("BEGIN")
            keys = []
            for user in chosen:
                keys.append((user, await conn.fetchval(PUBLISH, user, f'{{"n": {n}}}')))
                n += 1
            now = time.monotonic()
            for key in keys:
                receiver.sent[key] = now
            await conn.execute("COMMIT")
            counts.append(per_transaction)
    finally:
        await conn.close()


async def measure(args: argparse.Namespace, database: Database, port: int) -> dict[str, Any]:
    users = [f"sql-bench-{i}" for i in range(args.users)]
    receiver = Receiver()
    now = int(time.time())
    sockets: list[ClientConnection] = []
    async with contextlib.AsyncExitStack() as stack:
        for user in users:
            token = jwt.encode({"sub": user, "iat": now, "exp": now + 3600}, JWT_SECRET)
            url = f"ws://127.0.0.1:{port}/v1/ws?access_token={token}"
            sockets.append(await stack.enter_async_context(connect(url, max_size=2**24)))
        readers = [asyncio.create_task(receiver.read(ws)) for ws in sockets]
        counts: list[int] = []
        started = time.monotonic()
        stop_at = started + args.duration
        await asyncio.gather(
            *(
                backend(database.dsn, users, receiver, stop_at, counts, args.per_transaction)
                for _ in range(args.concurrency)
            )
        )
        elapsed = time.monotonic() - started
        # Let the last deliveries land (bounded), then stop reading.
        deadline = time.monotonic() + 5
        while len(receiver.seen) < len(receiver.sent) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    committed = sum(counts)
    return {
        "concurrency": args.concurrency,
        "duration_s": round(elapsed, 3),
        "users": args.users,
        "bus": args.bus,
        "per_transaction": args.per_transaction,
        "committed": committed,
        "transactions_per_s": round(len(counts) / elapsed, 1),
        "publishes_per_s": round(committed / elapsed, 1),
        "delivered": len(receiver.latencies),
        "missing": len(receiver.sent) - len(receiver.seen & receiver.sent.keys()),
        "duplicates": receiver.duplicates,
        "unexpected": receiver.unexpected,
        "commit_to_delivery_ms": summary_ms(receiver.latencies),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {args.client_cpu})
    database = Database()
    facts = database.create()
    log(f"database {database.name} ({facts['version'].split(',')[0]})")
    server_args = argparse.Namespace(bus=args.bus, workers=1, server_cpu=[args.server_cpu])
    logs = Path(tempfile.mkstemp(prefix="sql-ingest-", suffix=".log")[1])
    server = ServerProcess("notifier", server_args, database, logs)
    try:
        server.wait_ready()
        log(f"notifier: server pid {server.process.pid} on port {server.port} (log {logs})")
        result = asyncio.run(measure(args, database, server.port))
    finally:
        server.stop()
        database.drop()
    latency = result["commit_to_delivery_ms"]
    print(json.dumps(result, indent=2))
    print(
        f"\nSQL ingest, {args.concurrency} backend transactions of {args.per_transaction} "
        f"publish(es), bus {args.bus}: "
        f"{result['publishes_per_s']:,} publishes/s; commit to delivery "
        f"p50 {latency['p50']} ms, p99 {latency['p99']} ms, max {latency['max']} ms "
        f"({result['delivered']:,} delivered, {result['missing']} missing, "
        f"{result['duplicates']} duplicates)"
    )
    return 0 if result["missing"] == 0 and result["duplicates"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
