"""Soak: `python -m bench.soak [--minutes 20] [--sockets 10000] [--rate 1000] [--churn 0.01]`.

Whether one server holds steady for a long run: memory, descriptors and asyncio tasks
that keep growing, a delivery latency that creeps up, a notification lost or repeated.
On a PostgreSQL database made for the run (dropped at the end), one `notifier serve` as
shipped (postgres bus, pinned to `--server-cpu`) and, in this process (pinned to
`--loadgen-cpu`, uvloop), N streams for N users with bench.storm's clients (bench.loadgen's
lean sockets from 127.0.0.2.., the SDK's backoff, resuming with `after=<last seq>`):

- a publisher sends `--rate` notifications a second to random users, in batches on the
  clock, each item with an idempotency key, each batch retried as it was until answered;
- each second `--churn` x N random live clients close (WebSocket: alternately a close
  frame and a dropped connection; SSE: a dropped connection) and reconnect as the SDK
  does: after `Backoff().delay(0)`, with `after=<their last seq>`;
- half-way through, the shared PostgreSQL cluster is stopped (fast: every connection is
  cut) and started again, as the fault tests do; the server has to ride it out
  (publishes answer 503 meanwhile and are retried; resumes fail and back off);
- every `--sample` seconds: the server's RSS and open descriptors (/proc, its process
  tree), its asyncio tasks (`notifier_asyncio_tasks` on /metrics), the publish-to-delivery
  latency of the live frames delivered in the window (p50, p99), deliveries, reconnects.

At the end publishing and churn stop, every client is given time to come back and catch
up, and each must hold every acknowledged seq of its user exactly once, in order. Printed:
the samples, the slope of RSS, descriptors and tasks after warm-up (least squares over the
samples after the first `--warmup` of the run, per minute), the p99 per window, the
delivery checks, what the server logged at WARNING or above; then one JSON line with every
figure. Exit status 1 when a delivery check fails or the server died.

Bounded: `--minutes` of load, then at most 60 s to settle; loopback only; the server,
sockets and database it made are stopped or dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import statistics
import sys
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from bench import loadgen, storm
from bench.run import Database, ServerProcess, pytest_running
from bench.storm import PEERS, Peer, Storm

monotonic = storm.monotonic
PG_CTL = ("pg_ctlcluster", "--skip-systemctl-redirect")
CLOSE_NORMAL = (1000).to_bytes(2, "big")
SETTLE_SECONDS = 60.0
"""After the load: how long clients get to come back and hold every acknowledged seq."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--minutes", type=float, default=20.0, help="length of the load")
    parser.add_argument("--sockets", type=int, default=10000, help="clients, one user each")
    parser.add_argument("--rate", type=float, default=1000.0, help="notifications a second")
    parser.add_argument(
        "--churn", type=float, default=0.01, help="share of the clients reconnecting each second"
    )
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument(
        "--warmup", type=float, default=0.2, help="share of the run left out of the slopes"
    )
    parser.add_argument(
        "--no-db-restart", action="store_true", help="leave PostgreSQL running throughout"
    )
    storm.shared_arguments(parser)
    args = parser.parse_args(argv)
    if args.sockets < 1 or args.minutes <= 0 or args.rate <= 0 or not 0 <= args.churn <= 1:
        parser.error("--sockets, --minutes, --rate: above 0; --churn: 0..1")
    args.timeout = 120.0  # how long one batch is retried before the run gives up
    return storm.for_the_server(args)


# -- PostgreSQL restarted -----------------------------------------------------------------


async def _quietly(*command: str) -> int:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    return await process.wait()


async def restart_postgres(down: float = 1.5) -> dict[str, float]:
    """Stop the local cluster in fast mode (every connection is cut), leave it down for
    `down` seconds, start it and wait until it accepts connections: what
    tests/faults does. Returns when each happened (monotonic)."""
    version = sorted(path.name for path in Path("/etc/postgresql").iterdir())[0]
    began = monotonic()
    if await _quietly(*PG_CTL, version, "main", "stop", "-m", "fast"):
        raise RuntimeError("pg_ctlcluster stop failed")
    stopped = monotonic()
    await asyncio.sleep(down)
    if await _quietly(*PG_CTL, version, "main", "start"):
        raise RuntimeError("pg_ctlcluster start failed")
    deadline = monotonic() + 60
    while await _quietly("pg_isready", "-h", "127.0.0.1", "-p", "5432", "-q"):
        if monotonic() > deadline:
            raise TimeoutError("PostgreSQL not accepting connections 60 s after its start")
        await asyncio.sleep(0.2)
    return {"began": began, "stopped": stopped, "accepting": monotonic()}


# -- figures ------------------------------------------------------------------------------


def task_gauge(port: int) -> float | None:
    """`notifier_asyncio_tasks` from the server's /metrics (None if it did not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("notifier_asyncio_tasks "):
            return float(line.split()[1])
    return None


def descriptors(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += len(os.listdir(f"/proc/{pid}/fd"))
    return total


def slope_per_minute(points: list[tuple[float, float]]) -> float | None:
    """Least squares slope of (seconds, value) points, per minute."""
    if len(points) < 3 or len({t for t, _ in points}) < 2:
        return None
    slope, _intercept = statistics.linear_regression([t for t, _ in points], [v for _, v in points])
    return round(slope * 60, 3)


class Soak(Storm):
    tick = 0.005

    def __init__(self, args: argparse.Namespace, server: ServerProcess, database: Database):
        super().__init__(args, server, database)
        self.free_at = 0.0  # when the publisher's connection was last free (monotonic)
        self.lateness: list[float] = []  # the publisher's own delay, not charged
        self.latencies: list[float] = []  # live frames in the current window
        self.all_latencies: list[float] = []
        self.before_replayed = 0  # notification frames received before `replayed`
        self.churned = 0
        self.closing: set[int] = set()  # id() of the clients sent a close frame
        self.reconnects = 0
        self.samples: list[dict[str, Any]] = []
        self.failure: str | None = None

    # -- the publisher: timestamps that do not charge its own tick -----------------------

    def item(self, user: str, index: int, due: float) -> dict[str, Any]:
        """`t` is when the notification was published: the moment of sending, less
        the time it waited while the connection was busy with an earlier batch (a
        server that falls behind is charged its wait; the publisher's tick is not)."""
        now = monotonic()
        waited = max(0.0, self.free_at - due)
        if not waited:
            self.lateness.append(now - due)
        return {
            "user_id": user,
            "type": "soak",
            "data": {"i": index, "t": now - waited},
            "idempotency_key": f"soak-{index}",
        }

    async def publish(self, conn: loadgen.HttpConn | None, items: list[dict[str, Any]]) -> Any:
        conn = await super().publish(conn, items)
        self.free_at = monotonic()
        return conn

    # -- the clients ----------------------------------------------------------------------

    def sink(self, client: Any, payload: bytes) -> None:
        """Live frames' latency (a frame before the connection's `replayed` frame was
        read from the database: counted apart), then the seq checks."""
        now = monotonic()
        peer = PEERS.get(client.user)
        if peer is not None and b'"notification"' in payload:
            frame = orjson.loads(payload)
            if frame.get("type") == "notification":
                if peer.replayed.done():
                    sent = frame["notification"]["data"].get("t")
                    if sent is not None:
                        self.latencies.append(now - sent)
                else:
                    self.before_replayed += 1
        storm.sink(client, payload)

    async def follow(self, peer: Peer) -> None:
        """One client for the whole run: each time its stream ends, come back."""
        while not self.stop:
            await peer.lost
            self.closing.discard(id(peer.client))
            if self.stop or not await self.come_back(peer):
                return
            self.reconnects += 1

    def close(self, peer: Peer) -> None:
        client = peer.client
        self.churned += 1
        if self.args.transport == "ws" and self.churned % 2:
            self.closing.add(id(client))
            client.transport.write(loadgen.client_frame(0x8, CLOSE_NORMAL))
            asyncio.get_running_loop().call_later(5.0, client.abort)  # no answer: drop it
        else:
            client.abort()

    async def churn(self, until: float) -> None:
        """Each second, `--churn` x N random clients that are live close their stream."""
        peers = list(PEERS.values())
        per_second = self.args.churn * len(peers)
        owed = 0.0
        start = monotonic()
        second = 0
        while monotonic() < until:
            second += 1
            await asyncio.sleep(max(0.0, start + second - monotonic()))
            owed += per_second
            count = min(int(owed), len(peers))
            owed -= count
            for peer in self.rng.sample(peers, count):
                client = peer.client
                live = client is not None and client.open and peer.replayed.done()
                if live and not peer.lost.done() and id(client) not in self.closing:
                    self.close(peer)

    # -- samples --------------------------------------------------------------------------

    async def sampler(self, t0: float, until: float) -> None:
        every = self.args.sample
        last = {"t": t0, "cpu": self.server_cpu(), "received": self.received(), "published": 0}
        last |= {"reconnects": 0, "refused": 0, "churned": 0}
        number = 0
        while t0 + (number + 1) * every <= until + 1e-6:
            number += 1
            await asyncio.sleep(max(0.0, t0 + number * every - monotonic()))
            last = await self.take_sample(t0, last)

    def server_cpu(self) -> float:
        return loadgen.cpu_seconds(loadgen.process_tree(self.server.process.pid))

    def received(self) -> int:
        return sum(peer.received for peer in PEERS.values())

    async def take_sample(self, t0: float, last: dict[str, Any]) -> dict[str, Any]:
        now = monotonic()
        pids = loadgen.process_tree(self.server.process.pid)
        window, self.latencies = sorted(self.latencies), []
        self.all_latencies.extend(window)
        tasks = await asyncio.to_thread(task_gauge, self.server.port)
        current = {
            "t": now,
            "cpu": loadgen.cpu_seconds(pids),
            "received": self.received(),
            "published": self.published_storm,
            "reconnects": self.reconnects,
            "refused": sum(self.refused.values()),
            "churned": self.churned,
        }
        elapsed = max(1e-9, now - last["t"])
        latency = loadgen.summary_ms(window)
        sample = {
            "t_s": round(now - t0, 1),
            "rss_mib": round(loadgen.rss_bytes(pids) / 2**20, 2),
            "fds": descriptors(pids),
            "tasks": tasks,
            "live_streams": sum(
                1 for p in PEERS.values() if p.client is not None and p.client.open
            ),
            "delivered": current["received"] - last["received"],
            "published": current["published"] - last["published"],
            "live_p50_ms": latency["p50"],
            "live_p99_ms": latency["p99"],
            "live_max_ms": latency["max"],
            "churned": current["churned"] - last["churned"],
            "reconnects": current["reconnects"] - last["reconnects"],
            "refused": current["refused"] - last["refused"],
            "cpu_server": round((current["cpu"] - last["cpu"]) / elapsed, 3),
        }
        self.samples.append(sample)
        loadgen.log(
            f"{sample['t_s']:>7} s: RSS {sample['rss_mib']} MiB, {sample['fds']} fds, "
            f"{tasks} tasks, {sample['delivered']} delivered, p99 {latency['p99']} ms"
        )
        return current

    # -- the run --------------------------------------------------------------------------

    async def restart_database(self, at: float) -> dict[str, float]:
        await asyncio.sleep(max(0.0, at - monotonic()))
        loadgen.log("restarting PostgreSQL")
        times = await restart_postgres()
        await asyncio.to_thread(self.server.wait_ready, 60)
        times["server_ready"] = monotonic()
        loadgen.log("PostgreSQL back, server ready")
        return times

    async def settle(self) -> bool:
        """Every client live again and holding every acknowledged seq (bounded)."""
        deadline = monotonic() + SETTLE_SECONDS
        while monotonic() < deadline:
            if all(
                p.client is not None
                and p.client.open
                and p.replayed.done()
                and p.last_seq >= p.max_seq_acked
                for p in PEERS.values()
            ):
                return True
            await asyncio.sleep(0.1)
        return False

    async def run(self) -> dict[str, Any]:
        loadgen.SINK[0] = self.sink
        connected = await self.connect()
        loadgen.log(f"{connected['sockets']} clients live in {connected['seconds']} s")
        gc.collect()
        gc.freeze()  # the clients live for the whole run: out of the collector's way
        duration = self.args.minutes * 60
        t0 = monotonic()
        until = t0 + duration
        self.free_at = t0
        keepers = [asyncio.ensure_future(self.follow(p)) for p in PEERS.values()]
        done = asyncio.Event()
        publisher = asyncio.ensure_future(self.publisher(done, int(self.args.rate * duration)))
        churner = asyncio.ensure_future(self.churn(until))
        sampler = asyncio.ensure_future(self.sampler(t0, until))
        restart = (
            None
            if self.args.no_db_restart
            else asyncio.ensure_future(self.restart_database(t0 + duration / 2))
        )
        while monotonic() < until and self.failure is None:
            await asyncio.sleep(min(1.0, max(0.0, until - monotonic())))
            if self.server.process.poll() is not None:
                self.failure = f"the server exited with {self.server.process.returncode}"
            elif publisher.done():
                error = publisher.exception()
                self.failure = f"the publisher stopped: {error!r}" if error else None
            elif restart is not None and restart.done() and restart.exception():
                self.failure = f"the PostgreSQL restart failed: {restart.exception()!r}"
        done.set()
        churner.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(sampler, self.args.sample + 10)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(publisher, self.args.timeout)
        timeline = None
        if restart is not None and restart.done() and not restart.exception():
            timeline = {k: round(v - t0, 3) for k, v in restart.result().items()}
        elif restart is not None:
            restart.cancel()
        loadgen.log("load stopped; waiting for every client to hold every acknowledged seq")
        settled = self.failure is None and await self.settle()
        self.stop = True
        await self.close_clients(keepers)
        return self.soak_figures(connected, timeline, settled, t0, duration)

    def soak_figures(
        self,
        connected: dict[str, Any],
        restart: dict[str, float] | None,
        settled: bool,
        t0: float,
        duration: float,
    ) -> dict[str, Any]:
        peers = list(PEERS.values())
        warm = [s for s in self.samples if s["t_s"] >= self.args.warmup * duration]
        slopes = {
            name: slope_per_minute([(s["t_s"], s[key]) for s in warm if s[key] is not None])
            for name, key in (
                ("rss_mib_per_min", "rss_mib"),
                ("fds_per_min", "fds"),
                ("tasks_per_min", "tasks"),
            )
        }
        minutes = len(warm) * self.args.sample / 60  # each sample is one window
        reconnects_per_min = sum(s["reconnects"] for s in warm) / minutes if minutes else 0.0
        rss_slope = slopes["rss_mib_per_min"]
        return {
            "sockets": len(peers),
            "transport": self.args.transport,
            "minutes": self.args.minutes,
            "rate": self.args.rate,
            "churn": self.args.churn,
            "initial_connect": connected,
            "db_restart_s": restart,
            "failure": self.failure,
            "samples": self.samples,
            "warmup_from_s": round(self.args.warmup * duration, 1),
            "slope_samples": len(warm),
            "slopes": slopes,
            "reconnects_per_min": round(reconnects_per_min, 1),
            "rss_bytes_per_reconnect": round(rss_slope * 2**20 / reconnects_per_min, 1)
            if rss_slope is not None and reconnects_per_min
            else None,
            "p99_per_window_ms": [s["live_p99_ms"] for s in self.samples],
            "live_latency_ms": loadgen.summary_ms(self.all_latencies),
            "publisher_lateness_ms": loadgen.summary_ms(self.lateness),
            "frames_before_replayed": self.before_replayed,
            "churned": self.churned,
            "reconnects": self.reconnects,
            "attempts_total": sum(p.attempts for p in peers),
            "refused": dict(self.refused.most_common()),
            "refused_between_s": {
                cause: [round(first - t0, 1), round(last - t0, 1)]
                for cause, (first, last) in self.refused_when.items()
            },
            "handshake_to_replayed_ms": loadgen.summary_ms(self.handshakes),
            "close_codes": {str(k): v for k, v in loadgen.CLOSE_CODES.items()},
            "published": self.published_storm,
            "publish_statuses": dict(self.publish_statuses),
            "settled": settled,
            **storm.delivery_checks(peers),
            "generator_counters": dict(loadgen.COUNTS),
        }


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def report(result: dict[str, Any], log: Path) -> bool:
    r = result
    ok = (
        r["failure"] is None
        and r["settled"]
        and r["gaps"] == 0
        and r["duplicates"] == 0
        and r["missing"] == 0
    )
    print(
        f"\nsoak: {r['sockets']:,} {r['transport']} clients, {r['minutes']:g} min, "
        f"{r['rate']:g} notifications/s, churn {r['churn']:g} x N a second "
        f"({r['reconnects_per_min']:,} reconnects a minute; server log: {log})"
    )
    restart = r["db_restart_s"]
    print(
        f"  PostgreSQL     stopped at {restart['stopped']} s, accepting at "
        f"{restart['accepting']} s, server ready at {restart['server_ready']} s"
        if restart
        else "  PostgreSQL     not restarted"
    )
    print(
        f"  {'t s':>7} {'RSS MiB':>9} {'fds':>6} {'tasks':>6} {'streams':>8} {'delivered':>9} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'reconn':>7} {'refused':>7} {'cpu srv':>7}"
    )
    for s in r["samples"]:
        print(
            f"  {s['t_s']:>7} {s['rss_mib']:>9} {s['fds']:>6} {_cell(s['tasks']):>6} "
            f"{s['live_streams']:>8} {s['delivered']:>9} {_cell(s['live_p50_ms']):>8} "
            f"{_cell(s['live_p99_ms']):>8} {s['reconnects']:>7} {s['refused']:>7} "
            f"{s['cpu_server']:>7}"
        )
    slopes = r["slopes"]
    print(
        f"  slopes         after warm-up ({r['slope_samples']} samples from "
        f"{r['warmup_from_s']} s), per minute: RSS {_signed(slopes['rss_mib_per_min'])} MiB "
        f"({_signed(r['rss_bytes_per_reconnect'])} B per reconnect), descriptors "
        f"{_signed(slopes['fds_per_min'])}, tasks {_signed(slopes['tasks_per_min'])}"
    )
    print(f"  p99 per window {r['p99_per_window_ms']} ms")
    live = r["live_latency_ms"]
    print(
        f"  latency        live frames over the run: p50 {live['p50']} ms, p99 {live['p99']} "
        f"ms, max {live['max']} ms (n={live['n']}); {r['frames_before_replayed']} read from "
        f"the database on resumes; publisher's own lateness p99 "
        f"{r['publisher_lateness_ms']['p99']} ms"
    )
    hs = r["handshake_to_replayed_ms"]
    print(
        f"  reconnects     {r['churned']} closed by churn, {r['reconnects']} came back, "
        f"{r['attempts_total']} attempts; connect to replayed p50 {hs['p50']} ms, "
        f"p99 {hs['p99']} ms; refused {r['refused'] or 'none'}"
    )
    for cause, (first, last) in r["refused_between_s"].items():
        print(f"                 {cause}: from {first} s to {last} s")
    print(f"  closes         {r['close_codes'] or 'none'}")
    print(f"  published      {r['published']:,} acknowledged (HTTP {r['publish_statuses']})")
    print(
        f"  delivery       {r['received']:,} received; gaps {r['gaps']}, duplicates "
        f"{r['duplicates']}, missing {r['missing']}, beyond acked {r['beyond_acked']}, "
        f"incomplete replays {r['incomplete_replays']}; all settled: {r['settled']}: "
        f"{'OK' if ok else 'FAILED'}" + (f" ({r['failure']})" if r["failure"] else "")
    )
    storm.print_end(result, log)
    return ok


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not args.no_db_restart and pytest_running():
        raise SystemExit(
            "a pytest run is going on: restarting PostgreSQL under it would fail its tests; "
            "wait for it, or pass --no-db-restart"
        )
    result, log = storm.run_on_a_server(args, Soak, prefix="bench-soak-")
    result["pytest_running_at_end"] = pytest_running()
    sys.exit(0 if report(result, log) else 1)


if __name__ == "__main__":
    main()
