"""Reconnect storm: `python -m bench.storm [--sockets 10000] [--transport ws|sse] [--kill]`.

What a restart costs when every client comes back at once. On a PostgreSQL database made
for the run (dropped at the end), one `notifier serve` as shipped (bench.run's
`ServerProcess`, pinned to `--server-cpu`) and, in this process (pinned to
`--loadgen-cpu`), N streams for N distinct users opened with bench.loadgen's lean clients
from rotating source addresses 127.0.0.2.. :

1. every user gets `--before` notifications, so each client holds a last seq;
2. a publisher starts (`--rate` notifications a second to random users, in batches, each
   item with an idempotency key and retried as it was until it is answered), and the
   server is stopped with SIGTERM (streams are closed with 1012), or SIGKILL with
   `--kill`, then started again on the same port;
3. every client reconnects as the browser client (clients/js `retryLater`) and the SDK
   (`notifier.client.Subscriber`) do: after each close or failed attempt it waits
   `Backoff().delay(attempt)` (full jitter: uniform in [0, min(30 s, 0.5 s * 2^attempt)]),
   attempt counted from 0 and set back to 0 by the `replayed` frame; it resumes with
   `after=<the last seq it received>`; an attempt that has no `replayed` frame within 10 s
   (the browser client's connect timeout) is abandoned;
4. when all N are live again, publishing goes on for `--tail` seconds, then every client
   must hold every acknowledged seq of its user exactly once, in order.

Printed: the restart's timeline (signal, old process gone, new one ready, all live
again), reconnect attempts (total, max per client), refused attempts by cause (connection
refused, HTTP status, close code before `replayed`, timeout), the handshake latency during
the storm (from the TCP connect to the `replayed` frame: what a client waits for its
stream), the delivery checks (gaps, duplicates, missing must all be 0), CPU, and what the
server logged at WARNING or above; then one JSON line with every figure. Exit status 1
when a check fails.

Bounded: one `--timeout` for the storm (default 180 s), the publisher by count and time;
loopback only; the servers and sockets it starts are stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import errno
import os
import random
import re
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from bench import loadgen
from bench.run import API_KEY, JWT_SECRET, Database, ServerProcess
from notifier.client.backoff import Backoff

monotonic = time.monotonic
CONNECT_TIMEOUT = 10.0
"""An attempt with no `replayed` frame by then is abandoned (clients/js CONNECT_TIMEOUT_MS)."""
BATCH_PATH = b"/v1/notifications/batch"


def shared_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of the runs built on `Storm` (bench.storm, bench.soak): transport,
    pinning, bus, source addresses, seed."""
    parser.add_argument("--transport", choices=["ws", "sse"], default="ws")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--loadgen-cpu", type=int, default=1)
    parser.add_argument("--bus", default=None, help="NOTIFIER_BUS (default: the server's own)")
    parser.add_argument("--source-addresses", type=int, default=16)
    parser.add_argument("--seed", type=int, default=10)


def for_the_server(args: argparse.Namespace) -> argparse.Namespace:
    """What `ServerProcess` reads: one process, on `--server-cpu`."""
    args.server_cpu = [args.server_cpu]
    args.workers = 1
    return args


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.storm", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--sockets", type=int, default=10000, help="clients, one user each")
    parser.add_argument("--kill", action="store_true", help="SIGKILL instead of SIGTERM")
    parser.add_argument("--before", type=int, default=3, help="notifications per user first")
    parser.add_argument(
        "--rate", type=float, default=200.0, help="notifications/s during the storm and after"
    )
    parser.add_argument("--tail", type=float, default=3.0, help="seconds of publishing after")
    parser.add_argument("--timeout", type=float, default=180.0, help="bound of the storm (s)")
    shared_arguments(parser)
    args = parser.parse_args(argv)
    if args.sockets < 1 or args.before < 1:
        parser.error("--sockets and --before: at least 1")
    return for_the_server(args)


# -- the clients ----------------------------------------------------------------------------


class Peer:
    """One user's client: its position, what it received, its reconnect state."""

    __slots__ = (
        "attempt",
        "attempts",
        "client",
        "duplicates",
        "gaps",
        "incomplete",
        "last_seq",
        "live_at",
        "lost",
        "max_seq_acked",
        "received",
        "replayed",
        "request",
        "token",
        "user",
    )

    def __init__(self, user: str, token: str) -> None:
        self.user = user
        self.token = token
        self.request = b""
        self.last_seq = 0
        self.received = 0
        self.duplicates = 0
        self.gaps = 0
        self.incomplete = 0
        self.attempt = 0  # the backoff's counter: 0 again at each `replayed`
        self.attempts = 0  # reconnect attempts since the restart
        self.live_at = 0.0
        self.max_seq_acked = 0
        self.client: Any = None
        loop = asyncio.get_running_loop()
        self.replayed: asyncio.Future[float] = loop.create_future()
        self.lost: asyncio.Future[int | None] = loop.create_future()


PEERS: dict[str, Peer] = {}


def _lost(client: Any) -> None:
    """A stream that was open (its handshake answered) ended: its peer reconnects.
    Handshakes that failed are `open_socket`'s exceptions, not this."""
    waiter = client.waiter
    if not waiter.done() or waiter.cancelled() or waiter.exception() is not None:
        return
    peer = PEERS.get(client.user)
    if peer is not None and peer.client is client and not peer.lost.done():
        peer.lost.set_result(client.close_code)


class StormWs(loadgen.WsClient):
    __slots__ = ()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        _lost(self)


class StormSse(loadgen.SseClient):
    __slots__ = ()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        _lost(self)


def sink(client: Any, payload: bytes) -> None:
    """Every frame: seqs checked against the client's position (as the SDK's dedupe
    would see them), `replayed` marks the client live."""
    peer = PEERS.get(client.user)
    if peer is None:
        return
    frame = orjson.loads(payload)
    kind = frame.get("type")
    if kind == "notification":
        if loadgen.follow_seq(peer, frame["notification"]["seq"]):
            peer.received += 1
    elif kind == "replayed":
        if frame.get("complete") is False:
            peer.incomplete += 1
        if not peer.replayed.done():
            peer.replayed.set_result(monotonic())


def refusal(error: BaseException) -> str:
    if isinstance(error, loadgen.HandshakeRefused):
        status = str(error).removeprefix("HTTP/1.1 ").removeprefix("HTTP ")
        return f"HTTP {status}"
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, OSError) and error.errno is not None:
        return f"connect: {errno.errorcode.get(error.errno, error.errno)}"
    return f"{type(error).__name__}: {str(error)[:60]}"


# -- coming back ----------------------------------------------------------------------------


class Reconnects:
    """The clients' way back after a stream ended, as the browser client and the SDK
    come back (module docstring, 3.): backoff, resume, the 10 s `replayed` timeout, and
    the refusals counted by cause. Apart from `Storm` so that bench.scale's load
    generator processes, which hold no server, reconnect the same way."""

    def __init__(self, generator: loadgen.Generator, rng: random.Random) -> None:
        self.generator = generator
        self.rng = rng
        self.backoff = Backoff(base=0.5, cap=30.0, uniform=rng.uniform)
        self.refused: collections.Counter[str] = collections.Counter()
        self.refused_when: dict[str, list[float]] = {}  # cause: [first, last] (monotonic)
        self.handshakes: list[float] = []  # connect to `replayed`
        self.handshakes_at: list[float] = []  # when each of them completed (monotonic)
        self.upgrades: list[float] = []  # connect to `101` / `200`
        self.stop = False
        self.sources = 0

    def refuse(self, cause: str) -> None:
        self.refused[cause] += 1
        now = monotonic()
        self.refused_when.setdefault(cause, [now, now])[1] = now

    def source(self) -> str:
        self.sources += 1
        return self.generator.sources[self.sources % len(self.generator.sources)]

    async def attempt(self, peer: Peer) -> bool:
        """One reconnect: True once the `replayed` frame arrived."""
        peer.attempts += 1
        peer.replayed = asyncio.get_running_loop().create_future()
        peer.lost = asyncio.get_running_loop().create_future()
        peer.client = None
        started = monotonic()
        request = self.generator.upgrade(peer.token, peer.last_seq)
        try:
            peer.client, upgraded = await self.generator.open_socket(
                peer.user, request, self.source()
            )
        except (OSError, TimeoutError, loadgen.HandshakeRefused, ConnectionError) as error:
            self.refuse(refusal(error))
            return False
        self.upgrades.append(upgraded)
        remaining = max(0.0, started + CONNECT_TIMEOUT - monotonic())
        waiters: set[asyncio.Future[Any]] = {peer.replayed, peer.lost}
        await asyncio.wait(waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        if peer.replayed.done():
            self.handshakes.append(peer.replayed.result() - started)
            self.handshakes_at.append(peer.replayed.result())
            return True
        if peer.lost.done():
            self.refuse(f"closed before replayed: {peer.lost.result()}")
            return False
        self.refuse("no replayed within 10 s")
        peer.client.abort()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(peer.lost, 1.0)
        return False

    async def come_back(self, peer: Peer) -> bool:
        """A client whose stream ended: back off, reconnect, until it is live again
        (True) or the run stops (False)."""
        while not self.stop:
            await asyncio.sleep(self.backoff.delay(peer.attempt))
            peer.attempt += 1
            if self.stop:
                return False
            if await self.attempt(peer):
                peer.attempt = 0
                return True
        return False


# -- the storm ------------------------------------------------------------------------------


class Storm(Reconnects):
    def __init__(self, args: argparse.Namespace, server: ServerProcess, database: Database):
        self.args = args
        self.server = server
        self.database = database
        generator = loadgen.Generator(
            {
                "host": "127.0.0.1",
                "port": server.port,
                "server_pid": server.process.pid,
                "jwt_secret": JWT_SECRET,
                "api_key": API_KEY,
                "user_prefix": "storm-",
                "connect_concurrency": 200,
                "handshake_timeout": CONNECT_TIMEOUT,
                "source_addresses": args.source_addresses,
                "transport": args.transport,
                "pg_database": database.name,
            }
        )
        generator.ws_class = StormWs
        generator.sse_class = StormSse
        super().__init__(generator, random.Random(args.seed))
        self.cpu_per_second: dict[int, tuple[float, float]] = {}  # server, postgres
        self.live_again = 0
        self.all_live = asyncio.Event()
        self.published_before = 0
        self.published_storm = 0
        self.publish_statuses: collections.Counter[str] = collections.Counter()

    # -- before the restart ---------------------------------------------------------------

    async def connect(self) -> dict[str, Any]:
        users = [f"storm-u{i}" for i in range(self.args.sockets)]
        for user in users:
            PEERS[user] = Peer(user, self.generator.token(user))
        started = monotonic()
        clients, _times, failures, _elapsed = await self.generator.open_many(users, after=0)
        if failures:
            raise RuntimeError(f"initial connections failed: {failures}")
        for client in clients:
            PEERS[client.user].client = client
        await asyncio.wait_for(
            asyncio.gather(*(peer.replayed for peer in PEERS.values())), CONNECT_TIMEOUT * 3
        )
        return {"sockets": len(clients), "seconds": round(monotonic() - started, 3)}

    async def publish(self, conn: loadgen.HttpConn | None, items: list[dict[str, Any]]) -> Any:
        """One batch until it is answered 201 (the same body, so the same idempotency
        keys, on each retry), bounded by the storm's deadline. Returns the connection."""
        body = self.generator.post(BATCH_PATH, orjson.dumps({"notifications": items}))
        deadline = monotonic() + self.args.timeout
        while monotonic() < deadline:
            if conn is None or not conn.alive:
                try:
                    [conn] = await self.generator.http_pool(1)
                except OSError:
                    self.publish_statuses["connect refused"] += 1
                    conn = None
                    await asyncio.sleep(0.2)
                    continue
            status, answer = await conn.request(body)
            self.publish_statuses[str(status)] += 1
            if status == 201:
                for notification in orjson.loads(answer)["notifications"]:
                    peer = PEERS[notification["user_id"]]
                    peer.max_seq_acked = max(peer.max_seq_acked, notification["seq"])
                return conn
            if status == 0 or status >= 500:
                conn.close()
                conn = None
                await asyncio.sleep(0.2)
                continue
            raise RuntimeError(f"publish refused: {status} {answer[:300]!r}")
        raise TimeoutError("a publish was not answered before the deadline")

    async def publish_before(self) -> None:
        users = list(PEERS)
        items = [
            {"user_id": user, "type": "storm.before", "data": {"k": k}}
            for k in range(self.args.before)
            for user in users
        ]
        conn = None
        for first in range(0, len(items), 1000):
            conn = await self.publish(conn, items[first : first + 1000])
        if conn is not None:
            conn.close()
        self.published_before = len(items)
        deadline = monotonic() + 30
        while monotonic() < deadline:
            if all(peer.last_seq >= peer.max_seq_acked for peer in PEERS.values()):
                return
            await asyncio.sleep(0.05)
        raise RuntimeError("the notifications before the restart were not all delivered")

    # -- during ---------------------------------------------------------------------------

    tick = 0.05
    """The publisher's clock: it sends what fell due each `tick` seconds, in one batch."""

    def item(self, user: str, index: int, due: float) -> dict[str, Any]:
        """The publisher's notification number `index`, due at `due` (monotonic)."""
        return {
            "user_id": user,
            "type": "storm.during",
            "data": {"i": index},
            "idempotency_key": f"storm-{index}",
        }

    async def publisher(self, done: asyncio.Event, limit: int | None = None) -> None:
        """`--rate` a second on the clock: what fell due while the server was down goes
        out (up to 1,000 a batch) as soon as it answers again."""
        users = list(PEERS)
        start = monotonic()
        rate = self.args.rate
        made = 0
        conn: loadgen.HttpConn | None = None
        if limit is None:
            limit = int(rate * (self.args.timeout + self.args.tail)) + 1
        while not done.is_set() and made < limit:
            due = min(limit, int((monotonic() - start) * rate))
            if due > made:
                count = min(1000, due - made)
                items = [
                    self.item(self.rng.choice(users), i, start + i / rate)
                    for i in range(made, made + count)
                ]
                conn = await self.publish(conn, items)
                made += count
                self.published_storm = made
            await asyncio.sleep(self.tick)
        if conn is not None:
            conn.close()

    async def keep(self, peer: Peer, restarted: asyncio.Event) -> None:
        """The client's loop after the restart: back off, reconnect, until live."""
        await restarted.wait()
        await peer.lost
        if await self.come_back(peer):
            peer.live_at = monotonic()
            self.live_again += 1
            if self.live_again == len(PEERS):
                self.all_live.set()

    async def close_clients(self, keepers: Sequence[asyncio.Future[None]]) -> None:
        """The end: the clients' loops cancelled, every stream closed by this side."""
        for task in keepers:
            task.cancel()
        await asyncio.gather(*keepers, return_exceptions=True)
        loadgen.CLOSING = True
        for peer in PEERS.values():
            if peer.client is not None:
                peer.client.abort()

    async def restart(self) -> dict[str, Any]:
        """Signal the server, wait for it to go, start it again on the same port."""
        old = self.server
        signalled = monotonic()
        old.process.send_signal(signal.SIGKILL if self.args.kill else signal.SIGTERM)
        deadline = signalled + 30
        while old.process.poll() is None and monotonic() < deadline:
            await asyncio.sleep(0.02)
        if old.process.poll() is None:
            old.process.kill()
            await asyncio.to_thread(old.process.wait, 10)
        exited = monotonic()
        closes = dict(loadgen.CLOSE_CODES)
        dropped = loadgen.COUNTS["sockets_dropped_without_close_frame"]
        loadgen.CLOSE_CODES.clear()
        self.server = ServerProcess(
            "notifier", self.args, self.database, old.log_path, port=old.port
        )
        self.generator.server_pid = self.server.process.pid
        await asyncio.to_thread(self.server.wait_ready, 60)
        return {
            "signal": "SIGKILL" if self.args.kill else "SIGTERM",
            "signalled": signalled,
            "exited": exited,
            "ready": monotonic(),
            "old_exit_code": old.process.returncode,
            "closes_at_restart": closes,
            "dropped_without_close": dropped,
        }

    async def run(self) -> dict[str, Any]:
        loadgen.SINK[0] = sink
        connected = await self.connect()
        loadgen.log(f"{connected['sockets']} clients live in {connected['seconds']} s")
        await self.publish_before()
        loadgen.log(f"{self.published_before} notifications delivered; restarting")
        restarted = asyncio.Event()
        keepers = [asyncio.ensure_future(self.keep(p, restarted)) for p in PEERS.values()]
        done_publishing = asyncio.Event()
        publisher = asyncio.ensure_future(self.publisher(done_publishing))
        await asyncio.sleep(0.5)  # the publisher's steady state first
        restarted.set()
        sampler = asyncio.ensure_future(self.sample_cpu(monotonic()))
        timeline = await self.restart()
        meter_new = loadgen.CpuMeter(self.server.process.pid)
        loadgen.log("server ready again; waiting for every client")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                self.all_live.wait(),
                max(1.0, timeline["signalled"] + self.args.timeout - monotonic()),
            )
        all_live_at = monotonic() if self.all_live.is_set() else None
        cpu = meter_new.stop()
        sampler.cancel()
        closes_storm = dict(loadgen.CLOSE_CODES)
        await asyncio.sleep(self.args.tail)
        done_publishing.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(publisher, 30)
        self.stop = True
        deadline = monotonic() + 15
        while monotonic() < deadline and any(
            p.last_seq < p.max_seq_acked for p in PEERS.values() if p.live_at
        ):
            await asyncio.sleep(0.05)
        await self.close_clients(keepers)
        return self.figures(connected, timeline, all_live_at, cpu, closes_storm)

    def figures(
        self,
        connected: dict[str, Any],
        timeline: dict[str, Any],
        all_live_at: float | None,
        cpu: dict[str, float | None],
        closes_storm: dict[int, int],
    ) -> dict[str, Any]:
        t0 = timeline["signalled"]
        peers = list(PEERS.values())
        live = [p.live_at - t0 for p in peers if p.live_at]
        attempts = [p.attempts for p in peers]
        return {
            "sockets": len(peers),
            "transport": self.args.transport,
            "signal": timeline["signal"],
            "initial_connect": connected,
            "old_exit_code": timeline["old_exit_code"],
            "closes_at_restart": {str(k): v for k, v in timeline["closes_at_restart"].items()},
            "dropped_without_close_frame": timeline["dropped_without_close"],
            "old_exited_s": round(timeline["exited"] - t0, 3),
            "ready_s": round(timeline["ready"] - t0, 3),
            "live_again": len(live),
            "all_live_s": round(all_live_at - t0, 3) if all_live_at else None,
            "all_live_after_ready_s": round(all_live_at - timeline["ready"], 3)
            if all_live_at
            else None,
            "live_at_s": loadgen.summary_ms(live),
            "attempts_total": sum(attempts),
            "attempts_max": max(attempts),
            "attempts_mean": round(sum(attempts) / len(attempts), 2),
            "refused": dict(self.refused.most_common()),
            "refused_between_s": {
                cause: [round(first - t0, 3), round(last - t0, 3)]
                for cause, (first, last) in self.refused_when.items()
            },
            "closes_during_storm": {str(k): v for k, v in closes_storm.items()},
            "handshake_to_replayed_ms": loadgen.summary_ms(self.handshakes),
            "handshake_to_upgrade_ms": loadgen.summary_ms(self.upgrades),
            "per_second": self.per_second(t0),
            "published_before": self.published_before,
            "published_during_and_after": self.published_storm,
            "publish_statuses": dict(self.publish_statuses),
            **delivery_checks(peers),
            "cpu_storm": cpu,
            "generator_counters": dict(loadgen.COUNTS),
        }

    async def sample_cpu(self, t0: float) -> None:
        """Each second after the signal: the CPU the server (whichever is running) and
        PostgreSQL's backends for this database used in it, as a share of one core."""
        last_server: tuple[int, float] = (0, 0.0)
        last_pg: dict[int, float] = {}
        for second in range(int(self.args.timeout) + 1):
            await asyncio.sleep(max(0.0, t0 + second - monotonic()))
            pid = self.server.process.pid
            server = loadgen.cpu_seconds(loadgen.process_tree(pid))
            pg = loadgen.postgres_backends(self.database.name)
            if second and last_server[0] == pid:
                used = sum(max(0.0, c - last_pg.get(b, 0.0)) for b, c in pg.items())
                self.cpu_per_second[second - 1] = (server - last_server[1], used)
            last_server, last_pg = (pid, server), pg

    def per_second(self, t0: float) -> list[list[float]]:
        """[second after the signal, streams live again in it, their handshake p99 ms,
        server CPU, PostgreSQL CPU (shares of a core)]."""
        buckets: dict[int, list[float]] = collections.defaultdict(list)
        for at, took in zip(self.handshakes_at, self.handshakes, strict=True):
            buckets[int(at - t0)].append(took)
        return [
            [
                second,
                len(took),
                round(loadgen.percentile(sorted(took), 0.99) * 1000, 1),
                *(round(c, 2) for c in self.cpu_per_second.get(second, (-1.0, -1.0))),
            ]
            for second, took in sorted(buckets.items())
        ]


def delivery_checks(peers: list[Peer]) -> dict[str, int]:
    """What the clients hold against what was acknowledged: `gaps`, `duplicates`,
    `missing` (acknowledged seqs never received) and `beyond_acked` must all be 0."""
    return {
        "received": sum(p.received for p in peers),
        "gaps": sum(p.gaps for p in peers),
        "duplicates": sum(p.duplicates for p in peers),
        "missing": sum(max(0, p.max_seq_acked - p.last_seq) for p in peers),
        "beyond_acked": sum(max(0, p.last_seq - p.max_seq_acked) for p in peers),
        "incomplete_replays": sum(p.incomplete for p in peers),
    }


def server_warnings(log: Path, limit: int = 12) -> list[str]:
    """The server's WARNING and ERROR records (its log is JSON lines), counted by
    logger, message and the last line of their exception."""
    counts: collections.Counter[str] = collections.Counter()
    for line in log.read_text(errors="replace").splitlines():
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            if "Traceback" in line or "Error" in line:
                counts[line[:160]] += 1
            continue
        if not isinstance(record, dict) or record.get("level") in (None, "debug", "info"):
            continue
        exception = str(record.get("exception") or "").strip().splitlines()
        text = f"{record['level']} {record.get('logger')}: {record.get('message')}"
        text = re.sub(r"0x[0-9a-f]+", "0x..", text)
        if exception:
            text += f" ({exception[-1][:120]})"
        counts[text[:300]] += 1
    return [f"{n} x {text}" for text, n in counts.most_common(limit)]


def print_end(result: dict[str, Any], log: Path) -> None:
    """The last lines of a report: the server's warnings, then every figure as JSON."""
    warnings = server_warnings(log)
    print(f"  server log     {len(warnings)} kinds of WARNING/ERROR line")
    for line in warnings:
        print(f"    {line}")
    print(orjson.dumps(result).decode())
    sys.stdout.flush()


def report(result: dict[str, Any], log: Path) -> bool:
    r = result
    ok = (
        r["all_live_s"] is not None
        and r["gaps"] == 0
        and r["duplicates"] == 0
        and r["missing"] == 0
    )
    hs = r["handshake_to_replayed_ms"]
    up = r["handshake_to_upgrade_ms"]
    live = r["live_at_s"]
    print(
        f"\nreconnect storm: {r['sockets']} {r['transport']} clients, {r['signal']} restart "
        f"(server log: {log})"
    )
    print(
        f"  restart        signal at 0 s; old process gone at {r['old_exited_s']} s "
        f"(exit {r['old_exit_code']}; closes {r['closes_at_restart'] or '{}'}, "
        f"{r['dropped_without_close_frame']} dropped without one); new one ready at "
        f"{r['ready_s']} s"
    )
    print(
        f"  all live again {r['all_live_s']} s after the signal "
        f"({r['all_live_after_ready_s']} s after ready; {r['live_again']}/{r['sockets']}); "
        f"per client p50 {live['p50'] and live['p50'] / 1000:.3f} s, "
        f"p99 {live['p99'] and live['p99'] / 1000:.3f} s"
        if live["n"]
        else f"  all live again: none of {r['sockets']} came back"
    )
    print(
        f"  attempts       {r['attempts_total']} total, max {r['attempts_max']} per client, "
        f"mean {r['attempts_mean']}"
    )
    print(f"  refused        {r['refused'] or 'none'}")
    for cause, (first, last) in r["refused_between_s"].items():
        print(f"                 {cause}: from {first} s to {last} s")
    print(f"  closes         during the storm: {r['closes_during_storm'] or 'none'}")
    print(
        f"  handshake      connect to replayed: p50 {hs['p50']} ms, p99 {hs['p99']} ms, "
        f"max {hs['max']} ms (n={hs['n']}); connect to upgrade p99 {up['p99']} ms"
    )
    busiest = sorted(r["per_second"], key=lambda b: -b[1])[:3]
    print(
        "  busiest        "
        + "; ".join(
            f"second {s}: {n} back, p99 {p99} ms, cpu srv {srv} pg {pg}"
            for s, n, p99, srv, pg in busiest
        )
    )
    print(
        f"  published      {r['published_before']} before, {r['published_during_and_after']} "
        f"during and after (HTTP {r['publish_statuses']})"
    )
    print(
        f"  delivery       {r['received']} received; gaps {r['gaps']}, duplicates "
        f"{r['duplicates']}, missing {r['missing']}, beyond acked {r['beyond_acked']}, "
        f"incomplete replays {r['incomplete_replays']}: {'OK' if ok else 'FAILED'}"
    )
    print(f"  cpu            from ready to all live: {r['cpu_storm']}")
    print_end(result, log)
    return ok


def run_on_a_server(
    args: argparse.Namespace,
    make: Callable[[argparse.Namespace, ServerProcess, Database], Storm],
    prefix: str = "bench-storm-",
) -> tuple[dict[str, Any], Path]:
    """This process pinned to `--loadgen-cpu`; a database made for the run and one
    `notifier serve` on it; `make(...).run()` on uvloop; then the server (whichever is
    running by then) stopped and the database dropped. Returns the figures and the
    server's log."""
    os.sched_setaffinity(0, {args.loadgen_cpu})
    soft, _hard = loadgen.raise_nofile()
    if soft < args.sockets + 500:
        raise SystemExit(f"RLIMIT_NOFILE {soft} is too low for {args.sockets} sockets")
    database = Database()
    database.create()
    log = Path(tempfile.mkdtemp(prefix=prefix)) / "server.log"
    server = ServerProcess("notifier", args, database, log)
    bench: Storm | None = None
    try:
        server.wait_ready()
        with contextlib.suppress(ImportError):
            import uvloop

            uvloop.install()

        async def go() -> dict[str, Any]:
            nonlocal bench
            bench = make(args, server, database)
            return await bench.run()

        result = asyncio.run(go())
    finally:
        if bench is not None:
            server = bench.server
        server.stop()
        database.drop()
    return result, log


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    result, log = run_on_a_server(args, Storm)
    sys.exit(0 if report(result, log) else 1)


if __name__ == "__main__":
    main()
