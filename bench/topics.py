"""Topic publishes: `python -m bench.topics [--sizes 1000,10000,100000] [--connected N]`.

For each size N, on a PostgreSQL database made for the run (dropped at the end) and
`--instances` notifier processes (default 2, postgres bus): N users subscribe to a
topic, `--connected` of them (default 10,000, at most N) hold a socket, spread evenly
over the instances, and one topic publish goes to the first instance. Measured:

- `to_201`: from sending the publish to its `201` (every recipient committed);
- `to_last_socket`: from the `201` until the last connected socket has its frame
  (every socket is checked to get exactly one, with its seq);
- for the largest size, direct publishes sent during the topic publish at
  `--direct-rate` a second (0: none), half to the topic's recipients and half to other
  users: their latency to `201` (p50, p99, max) for each half. A recipient's counter is locked
  by the topic publish until it commits, so a direct publish to a recipient waits.

Prints a table and one JSON line with every figure. Every loop is bounded in count and
time; servers and sockets are closed at the end. The smallest form, to check it works:
`python -m bench.topics --sizes 1000 --connected 200`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench import loadgen
from bench.run import API_KEY, JWT_SECRET, Database, ServerProcess

monotonic = time.monotonic


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.topics", description=__doc__)
    parser.add_argument("--sizes", type=_ints, default=[1000, 10000, 100000])
    parser.add_argument("--connected", type=int, default=10000)
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--bus", default="postgres", choices=["postgres", "redis"])
    parser.add_argument("--direct-rate", type=float, default=200.0, help="0: no direct publishes")
    args = parser.parse_args(argv)
    # What bench.run's ServerProcess reads.
    args.workers = 1
    args.server_cpu = [0, 1]
    return args


class Sink:
    """Notification frames per user, and when the expected count was reached."""

    def __init__(self) -> None:
        self.seqs: dict[str, list[int]] = {}
        self.topics: set[str] = set()
        self.count = 0
        self.expected = 0
        self.last = 0.0
        self.done = asyncio.Event()

    def reset(self, expected: int) -> None:
        self.seqs, self.topics, self.count, self.expected = {}, set(), 0, expected
        self.last = 0.0
        self.done = asyncio.Event()

    def __call__(self, client: Any, payload: bytes) -> None:
        frame = orjson.loads(payload)
        if frame.get("type") != "notification":
            return
        notification = frame["notification"]
        if notification["topic"] is None:
            return  # a direct publish of the latency probe
        self.seqs.setdefault(client.user, []).append(notification["seq"])
        self.topics.add(notification["topic"])
        self.count += 1
        self.last = monotonic()
        if self.count >= self.expected:
            self.done.set()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Bench:
    def __init__(self, args: argparse.Namespace, servers: list[ServerProcess]) -> None:
        self.args = args
        self.servers = servers
        self.sink = Sink()
        loadgen.SINK[0] = self.sink
        self.generators = [
            loadgen.Generator(
                {
                    "host": "127.0.0.1",
                    "port": server.port,
                    "server_pid": server.process.pid,
                    "jwt_secret": JWT_SECRET,
                    "api_key": API_KEY,
                    "user_prefix": "topics-",
                    "connect_concurrency": 100,
                    "handshake_timeout": 60.0,
                }
            )
            for server in servers
        ]
        self.http: list[loadgen.HttpConn] = []

    async def reopen_http(self) -> None:
        for conn in self.http:
            conn.close()
        self.http = await self.generators[0].http_pool(8 + 32)

    async def request(self, path: str, body: Any, conn: loadgen.HttpConn | None = None) -> Any:
        conn = conn or self.http[0]
        status, raw = await conn.request(self.generators[0].post(path.encode(), orjson.dumps(body)))
        if status not in (200, 201):
            raise RuntimeError(f"POST {path}: {status} {raw[:300]!r}")
        return orjson.loads(raw)

    async def subscribe(self, topic: str, users: list[str]) -> None:
        conns = self.http[:8]
        chunks = [users[i : i + 1000] for i in range(0, len(users), 1000)]

        async def worker(conn: loadgen.HttpConn, mine: list[list[str]]) -> None:
            for chunk in mine:
                await self.request(f"/v1/topics/{topic}/subscribers", {"add": chunk}, conn)

        await asyncio.gather(
            *(worker(conn, chunks[i :: len(conns)]) for i, conn in enumerate(conns))
        )

    async def connect(self, users: list[str]) -> list[Any]:
        clients: list[Any] = []
        for index, generator in enumerate(self.generators):
            mine = users[index :: len(self.generators)]
            opened, _times, failures, _elapsed = await generator.open_many(mine)
            if failures:
                raise RuntimeError(f"sockets failed: {failures}")
            clients.extend(opened)
        return clients

    async def one_size(self, size: int, with_direct: bool) -> dict[str, Any]:
        topic = f"bench.{size}.{int(time.time())}"
        users = [f"t{size}-{i:06d}" for i in range(size)]
        loadgen.log(f"size {size}: subscribing")
        await self.reopen_http()
        await self.subscribe(topic, users)
        connected = users[:: max(1, size // min(size, self.args.connected))][: self.args.connected]
        loadgen.log(f"size {size}: connecting {len(connected)} sockets")
        clients = await self.connect(connected)
        # Connecting thousands of sockets can outlast the server's keep-alive timeout
        # (uvicorn's 5 s): the idle publisher connections may be closed by now.
        await self.reopen_http()
        try:
            await asyncio.sleep(0.5)
            self.sink.reset(len(connected))
            stop = asyncio.Event()
            if with_direct:
                self.start_direct(users, stop)
                await asyncio.sleep(0.5)  # the direct publishes' steady state first
            started = monotonic()
            answer = await self.request(
                f"/v1/topics/{topic}/notifications", {"type": "bench.topic", "data": {"n": size}}
            )
            answered = monotonic()
            await asyncio.wait_for(self.sink.done.wait(), 120)
            stop.set()
            await asyncio.sleep(0.3)  # a duplicate would arrive meanwhile
            assert answer["recipients"] == size, answer
            # Exactly one frame each; without direct publishes in between, seq 1.
            wrong = [
                u
                for u in connected
                if len(self.sink.seqs.get(u, [])) != 1
                or (not with_direct and self.sink.seqs[u] != [1])
            ]
            result: dict[str, Any] = {
                "subscribers": size,
                "connected": len(connected),
                "to_201_s": round(answered - started, 3),
                "to_last_socket_s": round(self.sink.last - answered, 3),
                "wrong_or_duplicate": len(wrong),
            }
            if with_direct:
                result["direct"] = self.window(started, answered)
            return result
        finally:
            for client in clients:
                client.abort()

    def start_direct(self, recipients: list[str], stop: asyncio.Event) -> None:
        """Direct publishes at `--direct-rate`, alternately to a recipient and to a user
        outside the topic, each on a keep-alive connection of its own pool."""
        rng = random.Random(7)
        self.samples: list[tuple[float, float, bool]] = []  # (sent, latency, to a recipient)
        self.skipped: list[float] = []
        conns = self.http[8:]
        free = list(conns)
        generator = self.generators[0]
        interval = 1.0 / self.args.direct_rate
        deadline = monotonic() + 120

        async def loop() -> None:
            index = 0
            next_at = monotonic()
            while not stop.is_set() and monotonic() < deadline:
                await asyncio.sleep(max(0.0, next_at - monotonic()))
                next_at += interval
                if not free:  # every connection busy: counted, not queued
                    self.skipped.append(monotonic())
                    continue
                conn = free.pop()
                to_recipient = index % 2 == 0
                user = rng.choice(recipients) if to_recipient else f"outside-{rng.randrange(10**6)}"
                body = orjson.dumps({"user_id": user, "type": "bench.direct", "data": {}})
                sent = monotonic()

                def done(
                    status: int,
                    _body: bytes,
                    sent: float = sent,
                    to: bool = to_recipient,
                    conn: Any = conn,
                ) -> None:
                    free.append(conn)
                    if status == 201:
                        self.samples.append((sent, monotonic() - sent, to))

                conn.send(generator.post(b"/v1/notifications", body), done)
                index += 1

        self.direct_task = asyncio.get_running_loop().create_task(loop())

    def window(self, start: float, end: float) -> dict[str, Any]:
        """Latency of the direct publishes sent while the topic publish ran."""
        figures: dict[str, Any] = {
            "not_sent_all_connections_busy": sum(start <= t <= end for t in self.skipped)
        }
        for name, to in (("to_recipients", True), ("to_others", False)):
            inside = [
                lat * 1000 for sent, lat, t in self.samples if t is to and start <= sent <= end
            ]
            before = [lat * 1000 for sent, lat, t in self.samples if t is to and sent < start]
            figures[name] = {
                "during": len(inside),
                "p50_ms": round(percentile(inside, 0.5), 1),
                "p99_ms": round(percentile(inside, 0.99), 1),
                "max_ms": round(max(inside), 1) if inside else None,
                "p99_before_ms": round(percentile(before, 0.99), 1),
            }
        return figures


async def run(args: argparse.Namespace, servers: list[ServerProcess]) -> list[dict[str, Any]]:
    bench = Bench(args, servers)
    bench.http = await bench.generators[0].http_pool(8 + 32)
    results = []
    try:
        largest = max(args.sizes)
        for size in args.sizes:
            results.append(
                await bench.one_size(size, with_direct=size == largest and args.direct_rate > 0)
            )
            loadgen.log(f"size {size}: {results[-1]}")
    finally:
        for conn in bench.http:
            conn.close()
    return results


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    loadgen.raise_nofile()
    database = Database()
    database.create()
    logs = Path(tempfile.mkdtemp(prefix="bench-topics-"))
    servers: list[ServerProcess] = []
    try:
        for index in range(args.instances):
            servers.append(ServerProcess("notifier", args, database, logs / f"server{index}.log"))
        for server in servers:
            server.wait_ready()
        with contextlib.suppress(ImportError):
            import uvloop

            uvloop.install()
        results = asyncio.run(run(args, servers))
    finally:
        for server in servers:
            server.stop()
        database.drop()
    print(f"\ntopic publish, {args.instances} instances, {args.bus} bus (server logs: {logs})")
    print(f"{'subscribers':>12} {'connected':>10} {'to 201 s':>9} {'to last socket s':>17}")
    for result in results:
        print(
            f"{result['subscribers']:>12} {result['connected']:>10} {result['to_201_s']:>9} "
            f"{result['to_last_socket_s']:>17}"
        )
        if "direct" in result:
            for name in ("to_recipients", "to_others"):
                d = result["direct"][name]
                print(
                    f"  direct publishes {name.replace('_', ' ')} during it: {d['during']}, "
                    f"p50 {d['p50_ms']} ms, p99 {d['p99_ms']} ms, max {d['max_ms']} ms "
                    f"(p99 before it: {d['p99_before_ms']} ms)"
                )
    print(orjson.dumps(results).decode())
    sys.stdout.flush()


if __name__ == "__main__":
    main()
