"""100,000 sockets: `python -m bench.scale [--sockets 100000] [--workers 6] [--loadgens 6]`.

Issue 14's measurement: N concurrent authenticated sockets on `serve --workers W`
(W processes on one port), every one receiving what is published to its user, then one
worker killed. On a PostgreSQL database made for the run (dropped at the end), one
`notifier serve --workers W` as shipped (bench.run's `ServerProcess`, unpinned: the
settings are the defaults but for the database URL, the JWT secret, the API key and no
per-address handshake rate), and `--loadgens` processes (bench.scale_clients), each
with its share of the users `u<index>` on bench.loadgen's lean `WsClient`s, from source
addresses of its own (127.0.0.2.., one per `SOCKETS_PER_ADDRESS`), under its own
raised RLIMIT_NOFILE:

1. connect: every socket opens with `after=0`, at most `--connect-concurrency` first
   attempts in flight per load generator; one refused comes back on the SDK's backoff.
   The rate is the sockets over the time from the first attempt to the last `replayed`
   frame; then the server's RSS over its baseline (before any socket) per socket, and
   each worker's descriptors (/proc/<pid>/fd);
   then a warm-up, not measured: 3 s of keyed publishes, and a wait until
   `notifications` has planner statistics (`Scale.warm_up`: where autovacuum is off,
   as on this machine's cluster, the server's upkeep ANALYZEs it within 30 s);
2. publish: this process sends `--rate` single notifications a second for `--seconds`
   to random users (open loop on `--publish-connections` keep-alive connections, each
   with an idempotency key, the same request again after a 503 or a lost connection),
   with its due time in `data`; every load generator takes each frame's latency from it.
   Then every acknowledged seq must be on its user's socket, once, in order;
3. kill (`--no-kill` leaves it out): publishing goes on and the worker holding the most
   descriptors gets SIGKILL; uvicorn's supervisor starts another in its place; its
   clients come back as bench.storm's do (`storm.Reconnects`: full-jitter backoff, a
   resume with `after=<last seq>`, an attempt without `replayed` in 10 s abandoned).
   Per user, the outage is from the kill until its stream said `replayed` again. Once
   all are back, `--tail` seconds more of publishing; then every user must hold every
   acknowledged seq of the whole run exactly once, in order.

Printed: a table per phase, the issue's targets against the figures, what the server
logged at WARNING or above, then one JSON line with every figure. Exit status 1 when a
delivery check fails. Bounded: each phase by `--timeout` (and the publisher by count);
loopback only; the server, the load generators and every socket are stopped, and the
database dropped, at the end, also on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime
import math
import multiprocessing
import os
import random
import re
import signal
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from bench import loadgen, storm
from bench.run import (
    API_KEY,
    JWT_SECRET,
    Database,
    ServerProcess,
    add_server_env,
    pytest_running,
    server_env,
)
from bench.scale_clients import Share, receive
from notifier.admission import streams_for_descriptors

monotonic = time.monotonic
IDLE_SECONDS = 5.0
"""After the connects, a window with every socket open and nothing published."""
WARMUP_SECONDS = 3.0
"""Keyed publishes before the publish phase, not measured (`Scale.warm_up`)."""
SOCKETS_PER_ADDRESS = 10_000
"""A source address has about 28,000 ports to one server port; its sockets stay well
below that, so that the ports that reconnects leave in TIME_WAIT never run out."""
TARGETS = {
    "connect_per_s": 3000.0,
    "delivered_pct": 100.0,
    "p99_ms": 50.0,
    "rss_per_socket_kib": 18.0,
    "outage_p99_s": 30.0,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--sockets", type=int, default=100_000, help="one user each")
    parser.add_argument("--workers", type=int, default=6, help="notifier serve --workers")
    parser.add_argument("--loadgens", type=int, default=6, help="load generator processes")
    parser.add_argument("--rate", type=float, default=1000.0, help="notifications a second")
    parser.add_argument("--seconds", type=float, default=30.0, help="of the publish phase")
    parser.add_argument(
        "--kill",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="SIGKILL a worker after the publish phase (default: on)",
    )
    parser.add_argument("--tail", type=float, default=3.0, help="publishing after all are back")
    parser.add_argument("--timeout", type=float, default=600.0, help="bound of each phase (s)")
    parser.add_argument("--connect-concurrency", type=int, default=100, help="per loadgen")
    parser.add_argument("--publish-connections", type=int, default=64, help="as bench.run")
    parser.add_argument("--bus", default=None, help="NOTIFIER_BUS (default: the server's own)")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument(
        "--idle", type=float, default=IDLE_SECONDS, help="seconds of the idle CPU window"
    )
    add_server_env(parser)
    args = parser.parse_args(argv)
    if args.loadgens < 1 or args.workers < 1 or args.sockets < args.loadgens:
        parser.error("--workers and --loadgens: at least 1; --sockets: at least --loadgens")
    if args.kill and args.workers < 2:
        parser.error("one worker serves in serve's own process, with no supervisor: --no-kill")
    if args.rate <= 0 or args.seconds <= 0 or args.timeout <= 0:
        parser.error("--rate, --seconds, --timeout: above 0")
    sources = sum(len(addresses) for addresses in source_addresses(args))
    if sources > 250:
        parser.error(f"{sources} source addresses: at most 250 (127.0.0.2..251)")
    args.server_cpu = sorted(os.sched_getaffinity(0))  # ServerProcess pins: here to all
    return args


def shares(sockets: int, loadgens: int) -> list[tuple[int, int]]:
    """(first user, users) of each load generator: contiguous, as even as can be."""
    base, extra = divmod(sockets, loadgens)
    found, first = [], 0
    for k in range(loadgens):
        count = base + (k < extra)
        found.append((first, count))
        first += count
    return found


def source_addresses(args: argparse.Namespace) -> list[tuple[str, ...]]:
    """Each load generator's own addresses, 127.0.0.2 on, one per `SOCKETS_PER_ADDRESS`."""
    found, next_host = [], 2
    for _first, count in shares(args.sockets, args.loadgens):
        n = max(1, math.ceil(count / SOCKETS_PER_ADDRESS))
        found.append(tuple(f"127.0.0.{next_host + i}" for i in range(n)))
        next_host += n
    return found


# -- the server's processes ---------------------------------------------------------------


def worker_pids(supervisor: int) -> list[int]:
    """uvicorn's workers: the supervisor's children that multiprocessing spawned (not
    its resource tracker)."""
    found = []
    for pid in loadgen.process_tree(supervisor):
        if pid == supervisor:
            continue
        with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as file:
            if b"spawn_main" in file.read():
                found.append(pid)
    return sorted(found)


def descriptors(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def scrape(port: int) -> dict[str, float]:
    """Streams shed by reason, and sockets open, from /metrics (every worker's, summed
    by prometheus_client's multiprocess mode); {} when it does not answer."""
    found: dict[str, float] = collections.defaultdict(float)
    with (
        contextlib.suppress(OSError),
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer,
    ):
        for line in answer.read().decode().splitlines():
            name, _, value = line.rpartition(" ")
            if name.startswith("notifier_streams_shed_total{"):
                reason = re.search(r'reason="([^"]*)"', name)
                found[f"shed_{reason.group(1) if reason else '?'}"] += float(value)
            elif name == "notifier_open_sockets":
                found["open_sockets"] = float(value)
    return dict(found)


def shed(after: dict[str, float], before: dict[str, float]) -> dict[str, float] | str:
    """Streams shed between two scrapes, by reason."""
    if not after or not before:
        return "/metrics did not answer"
    return {
        k: v - before.get(k, 0.0)
        for k, v in after.items()
        if k.startswith("shed_") and v != before.get(k, 0.0)
    }


class Cpu:
    """CPU over a window, as shares of one core: the server's process tree, PostgreSQL's
    backends for the bench database, the load generators, and this process (the
    publisher). Counted per process, unlike `loadgen.CpuMeter`'s sum over a tree: a
    worker killed inside the window would take all its CPU since its start out of the
    sum and leave it negative. Here a process gone by the end counts for nothing (a
    lower bound), one born inside the window for all it used."""

    def __init__(self, supervisor: int, loadgens: list[int], database: str) -> None:
        self.supervisor = supervisor
        self.loadgens = loadgens
        self.database = database
        self.started = monotonic()
        self.first = self.sample()

    def sample(self) -> dict[str, dict[int, float]]:
        def each(pids: list[int]) -> dict[int, float]:
            return {pid: loadgen.cpu_seconds([pid]) for pid in pids}

        return {
            "server": each(loadgen.process_tree(self.supervisor)),
            "postgres": loadgen.postgres_backends(self.database),
            "loadgens": each(loadgen.process_tree(*self.loadgens)),
            "publisher": {0: loadgen.own_cpu_seconds()},
        }

    def stop(self) -> dict[str, float]:
        last = self.sample()
        elapsed = max(1e-9, monotonic() - self.started)
        return {
            group: round(
                sum(max(0.0, cpu - self.first[group].get(pid, 0.0)) for pid, cpu in now.items())
                / elapsed,
                3,
            )
            for group, now in last.items()
        }


def supervisor_lines(log: Path, since: float, limit: int = 30) -> list[str]:
    """uvicorn's own records (its supervisor's: a worker died, another started; a
    worker's startup) logged after `since` (time.time()), as `<s after> <message>`."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(record, dict) or record.get("logger") != "uvicorn.error":
            continue
        at = datetime.datetime.fromisoformat(record["time"]).timestamp() - since
        if at >= 0:
            found.append(f"{at:.2f} s {record.get('message')}")
    return found[:limit]


_LOCK_WAITS = """SELECT
    count(*) FILTER (WHERE locktype = 'object' AND classid = 'pg_database'::regclass),
    count(*)
FROM pg_locks WHERE NOT granted"""


class LockWaits:
    """Lock waits in PostgreSQL, sampled every `interval` seconds over a phase: how often
    commits queued for the notification-queue lock (the one a commit that NOTIFYs takes
    and holds through its WAL flush: an object lock on pg_database), and for any other
    lock (a user's counter held by another transaction)."""

    def __init__(self, dsn: str, interval: float = 0.1) -> None:
        self.dsn = dsn
        self.interval = interval
        self.samples: list[tuple[int, int]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            while True:
                row = await conn.fetchrow(_LOCK_WAITS)
                self.samples.append((row[0], row[1] - row[0]))
                await asyncio.sleep(self.interval)
        finally:
            await conn.close()

    async def stop(self) -> dict[str, Any]:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await self._task
        n = len(self.samples) or 1
        notify = [s[0] for s in self.samples]
        other = [s[1] for s in self.samples]
        return {
            "samples": len(self.samples),
            "notify_lock_waiting_pct": round(100 * sum(1 for w in notify if w) / n, 1),
            "notify_lock_waiters_max": max(notify, default=0),
            "other_waiting_pct": round(100 * sum(1 for w in other if w) / n, 1),
            "other_waiters_max": max(other, default=0),
        }


async def analyzed_within(dsn: str, table: str, timeout: float) -> bool:
    """Whether `table` was analyzed (by anyone) before `timeout` seconds."""
    conn = await asyncpg.connect(dsn)
    try:
        deadline = monotonic() + timeout
        while True:
            if await conn.fetchval(
                "SELECT coalesce(last_analyze, last_autoanalyze) IS NOT NULL"
                " FROM pg_stat_user_tables WHERE relname = $1",
                table,
            ):
                return True
            if monotonic() > deadline:
                return False
            await asyncio.sleep(0.5)
    finally:
        await conn.close()


# -- the load generators ------------------------------------------------------------------


class Loadgens:
    """The load generator processes and their pipes: a command to all, their answers."""

    def __init__(self, shares: list[Share]) -> None:
        context = multiprocessing.get_context("spawn")
        self.shares = shares
        self.conns: list[Connection] = []
        self.processes: list[BaseProcess] = []
        from bench import scale_clients

        for share in shares:
            mine, theirs = context.Pipe()
            process = context.Process(
                target=scale_clients.main,
                args=(theirs, share),
                name=f"bench-scale-loadgen-{share.index}",
                daemon=True,
            )
            process.start()
            theirs.close()
            self.conns.append(mine)
            self.processes.append(process)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None]

    async def answer(self, k: int, timeout: float) -> dict[str, Any]:
        try:
            message: dict[str, Any] = await receive(self.conns[k], timeout)
        except (EOFError, OSError, TimeoutError) as error:
            code = self.processes[k].exitcode
            raise RuntimeError(
                f"load generator {k} gave no answer ({type(error).__name__}; exit code {code})"
            ) from None
        if "error" in message:
            raise RuntimeError(f"load generator {k} failed:\n{message['error']}")
        return message

    async def ask(
        self, command: str, arguments: list[Any] | Any = None, timeout: float = 60.0
    ) -> list[dict[str, Any]]:
        """`command` to every load generator (`arguments`: one each, when a list)."""
        for k, conn in enumerate(self.conns):
            argument = arguments[k] if isinstance(arguments, list) else arguments
            conn.send((command, argument))
        return await self.answers(timeout)

    async def answers(self, timeout: float) -> list[dict[str, Any]]:
        """One answer from each (the first: `{"ready": k}` once its tokens are minted)."""
        return list(
            await asyncio.gather(*(self.answer(k, timeout) for k in range(len(self.conns))))
        )

    def stop(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.close()
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join(timeout=10)


# -- the publisher ------------------------------------------------------------------------


class Publisher:
    """`rate` single notifications a second to random users on a clock (open loop: each
    has its due time, written into its `data` as `t`, and its latency counts from then
    even when it waited for a free connection), over `connections` keep-alive
    connections, one request in flight on each. Each carries an idempotency key; one
    answered 503 or lost with its connection goes again, the same request, until it is
    answered or the run's drain is over."""

    def __init__(
        self, generator: loadgen.Generator, users: list[str], connections: int, seed: int
    ) -> None:
        self.generator = generator
        self.users = users
        self.connections = connections
        self.rng = random.Random(seed)
        self.acked: dict[str, int] = {}
        """The highest acknowledged seq of each user, over every run."""
        self.made = 0
        """Notifications made over every run: their numbers, and so their keys, differ."""

    async def run(
        self, rate: float, seconds: float, stop: asyncio.Event | None = None, drain: float = 15.0
    ) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        conns = await self.generator.http_pool(self.connections)
        free = collections.deque(conns)
        waiting: collections.deque[list[Any]] = collections.deque()
        statuses: collections.Counter[int] = collections.Counter()
        http: list[float] = []
        lateness: list[float] = []
        refusals: list[str] = []
        state = {"outstanding": 0, "acked": 0, "retries": 0, "last_ack": 0.0}
        reopening: set[asyncio.Task[None]] = set()
        give_up = [math.inf]
        opened = list(conns)

        def pump() -> None:
            while waiting and free and monotonic() < give_up[0]:
                conn = free.popleft()
                if conn.alive:
                    fire(conn, waiting.popleft())
                else:
                    reopen()

        def again(send: list[Any]) -> None:
            waiting.append(send)
            pump()

        def fire(conn: loadgen.HttpConn, send: list[Any]) -> None:
            _index, request, intended, tries = send
            written = monotonic()
            if not tries:
                lateness.append(written - intended)
            send[3] += 1

            def done(status: int, body: bytes) -> None:
                now = monotonic()
                http.append(now - written)
                statuses[status] += 1
                if status in (200, 201):
                    answer = orjson.loads(body)
                    user, seq = answer["user_id"], answer["seq"]
                    if seq > self.acked.get(user, 0):
                        self.acked[user] = seq
                    state["acked"] += 1
                    state["outstanding"] -= 1
                    state["last_ack"] = now
                elif (status == 0 or status >= 500) and now < give_up[0]:
                    state["retries"] += 1
                    loop.call_later(0.1, again, send)
                else:
                    state["outstanding"] -= 1
                    if len(refusals) < 5:
                        refusals.append(f"{status} {body[:200]!r}")
                if conn.alive:
                    free.append(conn)
                else:
                    reopen()
                pump()

            conn.send(request, done)

        def reopen() -> None:
            async def one() -> None:
                while monotonic() < give_up[0]:
                    try:
                        [conn] = await self.generator.http_pool(1)
                    except OSError:
                        await asyncio.sleep(0.2)
                        continue
                    opened.append(conn)
                    free.append(conn)
                    pump()
                    return

            task = asyncio.ensure_future(one())
            reopening.add(task)
            task.add_done_callback(reopening.discard)

        post = self.generator.post
        path = loadgen.NOTIFICATIONS_PATH
        limit = int(rate * seconds)
        made = 0
        start = monotonic() + 0.02
        while made < limit and not (stop is not None and stop.is_set()):
            now = monotonic()
            due = min(limit, int((now - start) * rate) + 1) if now >= start else 0
            while made < due:
                intended = start + made / rate
                index = self.made
                self.made += 1
                made += 1
                data = {"i": index, "t": intended}
                body = orjson.dumps(
                    {"user_id": self.rng.choice(self.users), "type": "scale", "data": data}
                )
                waiting.append([index, post(path, body, f"scale-{index}".encode()), intended, 0])
                state["outstanding"] += 1
            pump()
            await asyncio.sleep(max(0.001, start + made / rate - monotonic()))
        sent_until = monotonic()
        give_up[0] = sent_until + drain
        while state["outstanding"] > 0 and monotonic() < give_up[0]:
            await asyncio.sleep(0.01)
        for task in list(reopening):
            task.cancel()
        for conn in opened:
            conn.close()
        span = max(1e-9, (state["last_ack"] or sent_until) - start)
        return {
            "scheduled": made,
            "acked": state["acked"],
            "unanswered": state["outstanding"] - len(waiting),
            "unsent": len(waiting),
            "retries": state["retries"],
            "http_status": {str(k): v for k, v in sorted(statuses.items())},
            "refusals": refusals,
            "achieved_per_s": round(state["acked"] / span, 1),
            "send_window_s": round(sent_until - start, 3),
            "http_ms": loadgen.summary_ms(http),
            "publisher_lateness_ms": loadgen.summary_ms(lateness),
        }


# -- the run ------------------------------------------------------------------------------


def merged(answers: list[dict[str, Any]], key: str) -> list[Any]:
    return [item for answer in answers for item in answer[key]]


def summed(answers: Iterable[dict[str, Any]], key: str) -> dict[str, int]:
    total: collections.Counter[str] = collections.Counter()
    for answer in answers:
        total.update({str(k): v for k, v in answer[key].items()})
    return dict(total.most_common())


DELIVERY = ("received", "gaps", "duplicates", "missing", "beyond_acked", "incomplete_replays")


class Scale:
    def __init__(self, args: argparse.Namespace, server: ServerProcess, database: Database):
        self.args = args
        self.server = server
        self.database = database
        self.supervisor = server.process.pid
        self.loadgens: Loadgens | None = None
        self.baseline_fds: dict[int, int] = {}
        self.ranges = shares(args.sockets, args.loadgens)
        self.missing_before = 0

    # -- around the phases ----------------------------------------------------------------

    async def workers_ready(self, timeout: float = 60.0) -> list[int]:
        """All W workers spawned, and the server quiet (their startup done): /readyz
        answered by one of them says nothing of the others."""
        deadline = monotonic() + timeout
        while len(self.worker_pids()) < self.args.workers:
            if monotonic() > deadline:
                raise TimeoutError(f"fewer than {self.args.workers} workers after {timeout} s")
            await asyncio.sleep(0.2)
        while monotonic() < deadline:
            meter = loadgen.CpuMeter(self.supervisor)
            await asyncio.sleep(1.0)
            if meter.stop()["server"] < 0.1 * self.args.workers:
                break
        return self.worker_pids()

    def worker_pids(self) -> list[int]:
        """With one worker, `serve` serves in its own process: no supervisor."""
        return worker_pids(self.supervisor) if self.args.workers > 1 else [self.supervisor]

    def workers(self) -> list[dict[str, Any]]:
        """Each worker: pid, descriptors, the sockets they stand for (less what the
        worker held before any socket; a worker born later: the least of those) and RSS."""
        base = min(self.baseline_fds.values(), default=0)
        table = []
        for pid in self.worker_pids():
            fds = descriptors(pid)
            if fds is None:
                continue
            table.append(
                {
                    "pid": pid,
                    "fds": fds,
                    "sockets": max(0, fds - self.baseline_fds.get(pid, base)),
                    "rss_mib": round(loadgen.rss_bytes([pid]) / 2**20, 1),
                }
            )
        return table

    def rss(self) -> int:
        return loadgen.rss_bytes(loadgen.process_tree(self.supervisor))

    def cpu(self) -> Cpu:
        assert self.loadgens is not None
        return Cpu(self.supervisor, self.loadgens.pids, self.database.name)

    async def settle(self, wait: float) -> list[dict[str, Any]]:
        """Each load generator is given its users' acknowledged seqs, waits (bounded)
        until its streams hold them, and answers with its delivery figures."""
        assert self.loadgens is not None
        per_share: list[dict[str, int]] = [{} for _ in self.ranges]
        firsts = [first for first, _count in self.ranges]
        for user, seq in self.publisher.acked.items():
            number = int(user[1:])
            k = next(i for i in range(len(firsts) - 1, -1, -1) if firsts[i] <= number)
            per_share[k][user] = seq
        return await self.loadgens.ask(
            "settle", [(acked, wait) for acked in per_share], timeout=wait + 60
        )

    def delivery(self, answers: list[dict[str, Any]], acked: int) -> dict[str, Any]:
        """The run's delivery checks so far (cumulative), and this phase's share:
        delivered % is of the notifications acknowledged in the phase, less those
        missing since the phase before (a notification acknowledged but never on its
        user's socket)."""
        figures: dict[str, Any] = {key: sum(a[key] for a in answers) for key in DELIVERY}
        missing = figures["missing"] - self.missing_before
        self.missing_before = figures["missing"]
        figures["acked_in_phase"] = acked
        figures["missing_in_phase"] = missing
        figures["new_in_phase"] = sum(a["new"] for a in answers)
        figures["before_replayed"] = sum(a["before_replayed"] for a in answers)
        figures["delivered_pct"] = round(100.0 * (acked - missing) / acked, 3) if acked else None
        figures["latency_ms"] = loadgen.summary_ms(merged(answers, "latency"))
        figures["close_codes"] = summed(answers, "close_codes")
        figures["counters"] = summed(answers, "counters")
        return figures

    # -- the phases -----------------------------------------------------------------------

    async def connect(self) -> dict[str, Any]:
        assert self.loadgens is not None
        shed_before = await asyncio.to_thread(scrape, self.server.port)
        meter = self.cpu()
        loadgen.log(f"connecting {self.args.sockets:,} sockets")
        answers = await self.loadgens.ask("connect", timeout=self.args.timeout + 60)
        cpu = meter.stop()
        live = sum(a["live"] for a in answers)
        first = min(a["started"] for a in answers)
        last = max((a["last_replayed"] for a in answers if a["last_replayed"]), default=first)
        wall = max(1e-9, last - first)
        loadgen.log(f"{live:,} live in {wall:.1f} s; letting the server settle")
        await asyncio.sleep(2.0)
        idle = self.cpu()  # what holding the sockets costs: pings and pongs, timers
        await asyncio.sleep(self.args.idle)
        idle_cpu = idle.stop()
        rss = self.rss()
        not_live: list[str] = merged(answers, "not_live")
        self.live_users = sorted(set(self.all_users) - set(not_live), key=lambda u: int(u[1:]))
        metrics = await asyncio.to_thread(scrape, self.server.port)
        return {
            "sockets": self.args.sockets,
            "live": live,
            "not_live": len(not_live),
            "seconds": round(wall, 3),
            "rate_per_s": round(live / wall, 1),
            "attempts": sum(a["attempts"] for a in answers),
            "refused": summed(answers, "refused"),
            "handshake_to_replayed_ms": loadgen.summary_ms(merged(answers, "handshakes")),
            "handshake_to_upgrade_ms": loadgen.summary_ms(merged(answers, "upgrades")),
            "close_codes": summed(answers, "close_codes"),
            "counters": summed(answers, "counters"),
            "rss_after_mib": round(rss / 2**20, 1),
            "rss_per_socket_kib": round((rss - self.baseline_rss) / max(1, live) / 1024, 2),
            "workers": self.workers(),
            "shed": shed(metrics, shed_before),
            "open_sockets_metric": metrics.get("open_sockets"),
            "cpu": cpu,
            "idle_cpu": idle_cpu,
            "idle_seconds": self.args.idle,
        }

    async def warm_up(self) -> dict[str, Any]:
        """Keyed publishes for `WARMUP_SECONDS` at the rate, not measured, then a wait
        (bounded) until `notifications` has planner statistics. Each keyed publish
        looks its key up with a generic plan made per pooled connection; made while
        the table had no statistics, it reads every keyed row of the publisher (see
        notifier.upkeep), so its cost grows with the table until the first ANALYZE:
        autovacuum's, or where autovacuum is off (this machine's cluster) the server's
        own upkeep, every 30 s. A server that has run for a while is past that."""
        assert self.loadgens is not None
        await self.loadgens.ask("mark", "warmup")
        loadgen.log(f"warming up: {self.args.rate:g}/s for {WARMUP_SECONDS:g} s")
        sent = await self.publisher.run(self.args.rate, WARMUP_SECONDS)
        waited = monotonic()
        analyzed = await analyzed_within(self.database.dsn, "notifications", 90.0)
        waited = monotonic() - waited
        loadgen.log(
            f"notifications analyzed {waited:.1f} s after the warm-up"
            if analyzed
            else "notifications not analyzed within 90 s: the publish phase pays for it"
        )
        answers = await self.settle(wait=15.0)
        return {
            "published": sent["acked"],
            "http_ms": sent["http_ms"],
            "analyzed": analyzed,
            "waited_for_analyze_s": round(waited, 1),
            **self.delivery(answers, sent["acked"]),
        }

    async def publish(self) -> dict[str, Any]:
        assert self.loadgens is not None
        await self.loadgens.ask("mark", "publish")
        meter = self.cpu()
        waits = LockWaits(self.database.dsn)
        waits.start()
        loadgen.log(f"publishing {self.args.rate:g}/s for {self.args.seconds:g} s")
        sent = await self.publisher.run(self.args.rate, self.args.seconds)
        cpu = meter.stop()
        lock_waits = await waits.stop()
        answers = await self.settle(wait=15.0)
        return {
            **sent,
            **self.delivery(answers, sent["acked"]),
            "cpu": cpu,
            "lock_waits": lock_waits,
        }

    async def kill(self) -> dict[str, Any]:
        assert self.loadgens is not None
        args = self.args
        await self.loadgens.ask("mark", "kill")
        stop = asyncio.Event()
        publishing = asyncio.ensure_future(
            self.publisher.run(args.rate, args.timeout + args.tail + 30, stop)
        )
        await asyncio.sleep(1.0)  # the publisher's steady state first
        before = self.workers()
        victim = max(before, key=lambda w: w["fds"])
        shed_before = await asyncio.to_thread(scrape, self.server.port)
        killed_at, killed_wall = monotonic(), time.time()
        os.kill(victim["pid"], signal.SIGKILL)
        meter = self.cpu()  # from the kill on
        loadgen.log(f"SIGKILL to worker {victim['pid']} ({victim['sockets']:,} sockets)")
        survivors = {w["pid"] for w in before} - {victim["pid"]}
        born: dict[int, float] = {}  # workers spawned after the kill: when first seen
        back_at: float | None = None
        lost = back = 0
        progress: list[list[float]] = []  # [s after the kill, lost, back]
        while monotonic() < killed_at + args.timeout:
            await asyncio.sleep(0.5)
            for pid in set(self.worker_pids()) - survivors - {victim["pid"]}:
                born.setdefault(pid, round(monotonic() - killed_at, 2))
            status = await self.loadgens.ask("status")
            lost = sum(s["lost"] for s in status)
            back = sum(s["back"] for s in status)
            progress.append([round(monotonic() - killed_at, 1), lost, back])
            if monotonic() - killed_at >= 2.0 and lost and back == lost:
                back_at = monotonic()
                break
        cpu = meter.stop()
        for pid in set(self.worker_pids()) - survivors - {victim["pid"]}:
            born.setdefault(pid, round(monotonic() - killed_at, 2))
        loadgen.log(
            f"{back:,}/{lost:,} back"
            + (f" {back_at - killed_at:.1f} s after the kill" if back_at else " (timeout)")
        )
        await asyncio.sleep(args.tail)
        stop.set()
        sent = await publishing
        answers = await self.settle(wait=20.0)
        metrics = await asyncio.to_thread(scrape, self.server.port)
        outage = [live_at - killed_at for live_at in merged(answers, "live_at")]
        attempts = merged(answers, "attempts")
        refused_when: dict[str, list[float]] = {}
        for answer in answers:
            for cause, (first, last) in answer["refused_when"].items():
                span = refused_when.setdefault(cause, [first, last])
                span[0], span[1] = min(span[0], first), max(span[1], last)
        return {
            "victim": victim,
            "workers_before": before,
            "spawned_after_kill": {str(pid): at for pid, at in sorted(born.items())},
            "supervisor": supervisor_lines(self.server.log_path, killed_wall),
            "lost": sum(a["lost"] for a in answers),
            "losses": sum(a["losses"] for a in answers),
            "never_back": sum(a["never_back"] for a in answers),
            "all_back_s": round(back_at - killed_at, 3) if back_at else None,
            "outage_ms": loadgen.summary_ms(outage),
            "attempts_total": sum(attempts),
            "attempts_max": max(attempts, default=0),
            "refused": summed(answers, "refused"),
            "refused_between_s": {
                cause: [round(first - killed_at, 2), round(last - killed_at, 2)]
                for cause, (first, last) in refused_when.items()
            },
            "handshake_to_replayed_ms": loadgen.summary_ms(merged(answers, "handshakes")),
            "progress": progress,
            "workers_after": self.workers(),
            "shed": shed(metrics, shed_before),
            **sent,
            **self.delivery(answers, sent["acked"]),
            "cpu": cpu,
        }

    async def run(self) -> dict[str, Any]:
        args = self.args
        pids = await self.workers_ready()
        self.baseline_fds = {pid: descriptors(pid) or 0 for pid in pids}
        self.baseline_rss = self.rss()
        self.all_users = [f"u{n}" for n in range(args.sockets)]
        self.live_users = self.all_users
        the_shares = [
            Share(
                index=k,
                first_user=first,
                users=count,
                sources=addresses,
                port=self.server.port,
                server_pid=self.supervisor,
                jwt_secret=JWT_SECRET,
                api_key=API_KEY,
                connect_concurrency=args.connect_concurrency,
                timeout=args.timeout,
                seed=args.seed,
            )
            for k, ((first, count), addresses) in enumerate(
                zip(self.ranges, source_addresses(args), strict=True)
            )
        ]
        self.loadgens = Loadgens(the_shares)
        await self.loadgens.answers(timeout=180)
        figures: dict[str, Any] = {
            "sockets": args.sockets,
            "rate": args.rate,
            "seconds": args.seconds,
            "workers": args.workers,
            "server_env": list(args.server_env),
            "loadgens": args.loadgens,
            "source_addresses": [list(a) for a in source_addresses(args)],
            # The server's workers run under the hard limit, as this process does (main).
            "streams_cap_per_worker": streams_for_descriptors(),
            "baseline_rss_mib": round(self.baseline_rss / 2**20, 1),
            "baseline_fds": {str(pid): fds for pid, fds in self.baseline_fds.items()},
        }
        figures["connect"] = await self.connect()
        generator = loadgen.Generator(
            {
                "host": "127.0.0.1",
                "port": self.server.port,
                "server_pid": self.supervisor,
                "jwt_secret": JWT_SECRET,
                "api_key": API_KEY,
                "user_prefix": "u",
            }
        )
        self.publisher = Publisher(generator, self.live_users, args.publish_connections, args.seed)
        figures["warmup"] = await self.warm_up()
        figures["publish"] = await self.publish()
        figures["kill"] = await self.kill() if args.kill else None
        await self.loadgens.ask("close", timeout=60)
        return figures


# -- the report ---------------------------------------------------------------------------


def _s(ms: float | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.2f} s"


def _workers(table: list[dict[str, Any]]) -> str:
    return ", ".join(f"{w['pid']}: {w['sockets']:,} ({w['rss_mib']} MiB)" for w in table)


def targets(r: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(target, figure, met) for each of the issue's targets."""
    c, p, k = r["connect"], r["publish"], r["kill"]
    found = [
        (
            f"connect all at >= {TARGETS['connect_per_s']:,.0f}/s",
            f"{c['live']:,}/{c['sockets']:,} at {c['rate_per_s']:,.0f}/s",
            c["not_live"] == 0 and c["rate_per_s"] >= TARGETS["connect_per_s"],
        ),
        (
            f"{r['rate']:,.0f}/s for {r['seconds']:g} s, 100% delivered",
            f"{p['acked']:,} of {p['scheduled']:,} acknowledged, {p['delivered_pct']}% of "
            "those delivered",
            p["acked"] == p["scheduled"] and p["missing_in_phase"] == 0,
        ),
        (
            f"publish-to-delivery p99 <= {TARGETS['p99_ms']:g} ms",
            f"{p['latency_ms']['p99']} ms",
            (p["latency_ms"]["p99"] or math.inf) <= TARGETS["p99_ms"],
        ),
        (
            f"server RSS over baseline <= {TARGETS['rss_per_socket_kib']:g} KiB/socket",
            f"{c['rss_per_socket_kib']} KiB",
            c["rss_per_socket_kib"] <= TARGETS["rss_per_socket_kib"],
        ),
        (
            "no worker refuses at its descriptor cap while others have room",
            f"shed at the cap while connecting: {c['shed']}",
            isinstance(c["shed"], dict) and not c["shed"].get("shed_streams"),
        ),
    ]
    if k is not None:
        found += [
            (
                "kill -9: every user of the worker live again, nothing missed",
                f"{k['lost'] - k['never_back']:,}/{k['lost']:,} back; missing {k['missing']}",
                k["never_back"] == 0 and k["all_back_s"] is not None and k["missing"] == 0,
            ),
            (
                f"per-user outage p99 <= {TARGETS['outage_p99_s']:g} s",
                _s(k["outage_ms"]["p99"]),
                (k["outage_ms"]["p99"] or math.inf) <= TARGETS["outage_p99_s"] * 1000,
            ),
        ]
    return found


def checks_pass(r: dict[str, Any]) -> bool:
    """Every socket connected, and every acknowledged notification on its user's
    socket once and in order (after the kill too: every user back)."""
    phases = [r["publish"]] + ([r["kill"]] if r["kill"] is not None else [])
    ok = r["connect"]["not_live"] == 0 and all(
        p["gaps"] == 0 and p["duplicates"] == 0 and p["missing"] == 0 for p in phases
    )
    if r["kill"] is not None:
        ok = ok and r["kill"]["never_back"] == 0 and r["kill"]["all_back_s"] is not None
    return ok


def _delivery(p: dict[str, Any]) -> str:
    return (
        f"{p['delivered_pct']}% of the {p['acked_in_phase']:,} acknowledged ({p['new_in_phase']:,} "
        f"new frames); over the run gaps {p['gaps']}, duplicates {p['duplicates']}, missing "
        f"{p['missing']}, beyond acked {p['beyond_acked']}"
    )


def _cpu(cpu: dict[str, Any]) -> str:
    return (
        f"server {cpu['server']}, PostgreSQL {cpu['postgres']}, load generators "
        f"{cpu['loadgens']}, publisher {cpu['publisher']} (cores)"
    )


def report(result: dict[str, Any], log: Path) -> bool:
    r = result
    c, p, k = r["connect"], r["publish"], r["kill"]
    ok = checks_pass(r)
    machine = r["machine"]
    print(
        f"\nscale: {r['sockets']:,} sockets on serve --workers {r['workers']} "
        f"{' '.join(r.get('server_env', [])) or 'with its defaults'} "
        f"({r['loadgens']} load generators; load average {machine['load_before']} before; "
        f"pytest running: {machine['pytest_running']}; server log: {log})"
    )
    print(
        f"  baseline       server RSS {r['baseline_rss_mib']} MiB; admission cap "
        f"{r['streams_cap_per_worker']:,} streams a worker"
    )
    hs, up = c["handshake_to_replayed_ms"], c["handshake_to_upgrade_ms"]
    print(
        f"  connect        {c['live']:,}/{c['sockets']:,} live in {c['seconds']} s: "
        f"{c['rate_per_s']:,.0f}/s; connect to replayed p50 {hs['p50']} ms, p99 {hs['p99']} "
        f"ms, max {hs['max']} ms; to 101 p99 {up['p99']} ms; {c['attempts']:,} attempts"
    )
    print(f"  refused        {c['refused'] or 'none'}; shed {c['shed'] or 'none'}")
    print(
        f"  memory         server RSS {c['rss_after_mib']} MiB: {c['rss_per_socket_kib']} KiB "
        f"a socket over the baseline"
    )
    print(f"  workers        sockets each: {_workers(c['workers'])}")
    print(f"  cpu            {_cpu(c['cpu'])}")
    print(f"  idle           {c['idle_seconds']:g} s with every socket open: {_cpu(c['idle_cpu'])}")
    w = r["warmup"]
    print(
        f"  warm-up        {w['published']:,} keyed publishes (HTTP p99 {w['http_ms']['p99']} "
        f"ms), then {w['waited_for_analyze_s']} s until notifications was analyzed "
        f"({'done' if w['analyzed'] else 'NOT done'}); not measured"
    )
    lat = p["latency_ms"]
    print(
        f"  publish        {p['acked']:,} of {p['scheduled']:,} acknowledged, achieved "
        f"{p['achieved_per_s']:,}/s (HTTP {p['http_status']}, {p['retries']} retries; HTTP "
        f"p99 {p['http_ms']['p99']} ms; publisher lateness p99 "
        f"{p['publisher_lateness_ms']['p99']} ms)"
    )
    print(
        f"  latency        publish to delivery p50 {lat['p50']} ms, p90 {lat['p90']} ms, "
        f"p99 {lat['p99']} ms, max {lat['max']} ms (n={lat['n']:,})"
    )
    print(f"  delivery       {_delivery(p)}")
    print(f"  cpu            {_cpu(p['cpu'])}")
    waits = p.get("lock_waits")
    if waits:
        print(
            f"  lock waits     commits queued for the notification lock in "
            f"{waits['notify_lock_waiting_pct']}% of {waits['samples']} samples (at most "
            f"{waits['notify_lock_waiters_max']}); other lock waits in "
            f"{waits['other_waiting_pct']}% (at most {waits['other_waiters_max']})"
        )
    if k is not None:
        v = k["victim"]
        print(
            f"  kill           SIGKILL to worker {v['pid']} ({v['sockets']:,} sockets) at 0 s; "
            f"{len(k['spawned_after_kill'])} worker(s) spawned after it; "
            f"{k['lost']:,} users lost their stream ({k['losses']:,} losses), all back at "
            f"{k['all_back_s']} s "
            f"({k['never_back']} never)"
        )
        out = k["outage_ms"]
        print(
            f"  outage         per user p50 {_s(out['p50'])}, p99 {_s(out['p99'])}, max "
            f"{_s(out['max'])}; {k['attempts_total']:,} attempts, max {k['attempts_max']} "
            f"a user; connect to replayed p99 {k['handshake_to_replayed_ms']['p99']} ms"
        )
        print(f"  refused        {k['refused'] or 'none'}; shed {k['shed'] or 'none'}")
        for cause, (first, last) in k["refused_between_s"].items():
            print(f"                 {cause}: from {first} s to {last} s")
        print(f"  workers after  {_workers(k['workers_after'])}")
        print("  supervisor     uvicorn's lines after the kill:")
        for line in k["supervisor"]:
            print(f"                 {line}")
        kl = k["latency_ms"]
        print(
            f"  publish        {k['acked']:,} of {k['scheduled']:,} acknowledged (HTTP "
            f"{k['http_status']}, {k['retries']} retries); live frames p50 {kl['p50']} ms, "
            f"p99 {kl['p99']} ms, max {kl['max']} ms; {k['before_replayed']:,} on resumes"
        )
        print(f"  delivery       {_delivery(k)}")
        print(f"  cpu            from the kill to all back: {_cpu(k['cpu'])}")
    print("  targets")
    for target, figure, met in targets(r):
        print(f"    {'met   ' if met else 'MISSED'} {target}: {figure}")
    print(
        f"  supervisor     {len(r['workers_died'])} worker(s) died (s from the server's start): "
        f"{r['workers_died'] or 'none'}"
    )
    print(f"  checks         {'OK' if ok else 'FAILED'}")
    storm.print_end(result, log)
    return ok


# -- main ---------------------------------------------------------------------------------


def started_at(pid: int) -> str | None:
    with contextlib.suppress(OSError, IndexError):
        return loadgen._stat_fields(pid)[19]
    return None


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    loadgen.raise_nofile()  # as the server's preexec does: the same admission cap
    machine = {"load_before": round(os.getloadavg()[0], 2), "pytest_running": pytest_running()}
    database = Database()
    database.create()
    log = Path(tempfile.mkdtemp(prefix="bench-scale-")) / "server.log"
    began = time.time()
    server = ServerProcess("notifier", args, database, log, extra_env=server_env(args))
    seen: dict[int, str | None] = {}  # every server process, to be sure none outlives us
    try:
        server.wait_ready()
        scale = Scale(args, server, database)

        async def go() -> dict[str, Any]:
            watcher = asyncio.ensure_future(watch(server.process.pid, seen))
            try:
                return await scale.run()
            finally:
                watcher.cancel()

        try:
            try:
                import uvloop
            except ImportError:
                result = asyncio.run(go())
            else:
                result = uvloop.run(go())
        finally:
            if scale.loadgens is not None:
                scale.loadgens.stop()
    finally:
        server.stop()
        for pid, started in seen.items():
            if started is not None and started_at(pid) == started:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        database.drop()
    machine["load_after"] = round(os.getloadavg()[0], 2)
    result["machine"] = machine
    result["workers_died"] = [
        line for line in supervisor_lines(log, began, limit=10_000) if "died" in line
    ]
    sys.exit(0 if report(result, log) else 1)


async def watch(supervisor: int, seen: dict[int, str | None]) -> None:
    """The server's processes as they come (a replaced worker too), so that the end can
    make sure that none is left behind if the supervisor itself had to be killed."""
    while True:
        for pid in loadgen.process_tree(supervisor):
            if pid not in seen:
                seen[pid] = started_at(pid)
        await asyncio.sleep(1.0)


if __name__ == "__main__":
    main()
