"""Cross-instance delivery: `python -m bench.cross [--sockets 10000] [--rate 2000]`.

Is a notification published to one instance and delivered by another as fast as one
delivered by the instance that committed it? For each bus (`--buses`, default postgres
and redis), on one PostgreSQL database made for the run (dropped at the end), two phases
with the same users, the same publish rate and duration, in the same sitting:

- single: one `notifier serve`, every socket on it, every publish to it;
- cross: `--instances` (default 3) `notifier serve` processes, socket i on instance
  i mod N and publish i to instance i mod N, to random users: the instance that commits
  a notification holds its user's socket only 1/N of the time.

Servers run as shipped (`bench.run`'s `ServerProcess`: defaults plus `NOTIFIER_BUS`), not
pinned unless `--server-cpu` says so (then every instance of both phases gets the same
cores). This process is the load generator (`bench.loadgen`'s lean sockets and its open
loop, so latency counts from when a publish was due: no coordinated omission), pinned to
`--loadgen-cpu`. Each socket connects with `after=0`, so it must end holding every seq
of its user exactly once, in order: the check counts gaps, duplicates and seqs still
missing against the user's head in the database once the run is over. With `--rounds`
the two phases alternate their order; the figures are medians over the rounds.

Prints per bus: delivered %, publish-to-delivery p50 / p99 / max for single and cross,
the ratio cross / single, server CPU, the delivery checks; then one JSON line with every
figure. Exit status 1 when a delivery check fails. Bounded in time, loopback only;
servers and sockets are stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from bench import loadgen
from bench.run import API_KEY, JWT_SECRET, Database, ServerProcess, pytest_running
from bench.storm import server_warnings

monotonic = time.monotonic
BUSES = ("postgres", "redis")
SETTLE = 10.0
"""Seconds allowed after a run for every socket to reach its user's head."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cross", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--sockets", type=int, default=10000, help="one user each")
    parser.add_argument("--rate", type=float, default=2000.0, help="publishes a second")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of publishing")
    parser.add_argument("--drain", type=float, default=5.0, help="seconds allowed after it")
    parser.add_argument("--buses", default=",".join(BUSES), help="comma-separated")
    parser.add_argument("--instances", type=int, default=3, help="for the cross phase")
    parser.add_argument("--rounds", type=int, default=1, help="single and cross, alternated")
    parser.add_argument(
        "--server-cpu",
        type=lambda text: [int(part) for part in text.split(",")],
        default=None,
        help="pin every server to these cores (default: not pinned, as shipped)",
    )
    parser.add_argument("--loadgen-cpu", type=int, default=1)
    parser.add_argument("--publish-connections", type=int, default=64, help="over all servers")
    parser.add_argument("--source-addresses", type=int, default=16)
    args = parser.parse_args(argv)
    args.bus_list = [bus for bus in args.buses.split(",") if bus]
    if not args.bus_list or set(args.bus_list) - set(BUSES):
        parser.error(f"--buses: among {', '.join(BUSES)}")
    if args.sockets < 1 or args.instances < 2 or args.rounds < 1 or args.rate <= 0:
        parser.error("--sockets, --rounds: at least 1; --instances: at least 2; --rate > 0")
    # What ServerProcess reads; unpinned is every core this process may use.
    args.pinned = args.server_cpu is not None
    if args.server_cpu is None:
        args.server_cpu = sorted(os.sched_getaffinity(0))
    args.workers = 1
    return args


# -- the checks -----------------------------------------------------------------------------


class CrossWs(loadgen.WsClient):
    """A socket that checks its seqs: after `after=0` its user's seqs 1, 2, 3, ..."""

    __slots__ = ("duplicates", "gaps", "last_seq", "replayed")

    def __init__(self, user: str, waiter: asyncio.Future[float]) -> None:
        super().__init__(user, waiter)
        self.last_seq = 0
        self.gaps = 0  # jumps over one seq or more
        self.duplicates = 0  # seqs at or below one already received
        self.replayed = False


def track(client: Any, frame: dict[str, Any]) -> None:
    kind = frame.get("type")
    if kind == "notification":
        loadgen.follow_seq(client, frame["notification"]["seq"])
    elif kind == "replayed":
        client.replayed = True


def sink(client: Any, payload: bytes) -> None:
    """Frames outside the open loop (the replay at connect, late ones after it)."""
    track(client, orjson.loads(payload))


class CheckedDelivery(loadgen.Delivery):
    """The open loop's latency and per-run checks, plus the socket's seq check."""

    def frame(self, client: loadgen.WsClient, frame: dict[str, Any], now: float) -> None:
        track(client, frame)
        super().frame(client, frame, now)


async def heads(dsn: str, users: list[str]) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT user_id, last_seq FROM streams WHERE user_id = ANY($1::text[])", users
        )
    finally:
        await conn.close()
    return {row["user_id"]: row["last_seq"] for row in rows}


async def settle(clients: list[CrossWs], dsn: str, users: list[str]) -> tuple[dict[str, int], int]:
    """Wait (bounded) until every socket holds its user's head, read again until it stops
    moving (a publish still in flight when the loop ended may commit late), then count.
    (checks, seqs the sockets should hold)"""
    deadline = monotonic() + SETTLE
    head: dict[str, int] = {}
    while monotonic() < deadline:
        before, head = head, await heads(dsn, users)
        behind = any(c.last_seq < head.get(c.user, 0) for c in clients)
        if not behind and head == before:
            break
        await asyncio.sleep(0.2)
    checks = {
        "gaps": sum(c.gaps for c in clients),
        "duplicates": sum(c.duplicates for c in clients),
        "missing": sum(max(0, head.get(c.user, 0) - c.last_seq) for c in clients),
        "beyond_head": sum(c.last_seq > head.get(c.user, 0) for c in clients),
        "sockets_closed": sum(not c.open for c in clients),
    }
    return checks, sum(head.get(c.user, 0) for c in clients)


def failed(checks: dict[str, int]) -> list[str]:
    """The names of the checks that did not hold (each counts what went wrong)."""
    return [name for name, value in checks.items() if value]


# -- one phase --------------------------------------------------------------------------------


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent on anything but idle and I/O wait (/proc/stat)."""
    with open("/proc/stat") as file:
        fields = [int(value) for value in file.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / loadgen.CLK_TCK


async def until(condition: Callable[[], bool], seconds: float) -> None:
    deadline = monotonic() + seconds
    while not condition() and monotonic() < deadline:
        await asyncio.sleep(0.05)


async def measure(
    args: argparse.Namespace, database: Database, servers: list[ServerProcess], users: list[str]
) -> dict[str, Any]:
    generator = loadgen.Generator(
        {
            "host": "127.0.0.1",
            "port": servers[0].port,
            "server_pid": servers[0].process.pid,
            "peers": [{"port": s.port, "server_pid": s.process.pid} for s in servers[1:]],
            "jwt_secret": JWT_SECRET,
            "api_key": API_KEY,
            "user_prefix": users[0].rsplit("-", 1)[0] + "-",
            "publish_connections": args.publish_connections,
            "source_addresses": args.source_addresses,
            "pg_database": database.name,
        }
    )
    generator.ws_class = CrossWs
    generator.delivery_class = CheckedDelivery
    loadgen.SINK[0] = sink
    clients, times, failures, elapsed = await generator.open_many(users, after=0)
    # The same publish sequence in every phase: the generator's seeded choice over the
    # users in one order, whatever order the handshakes finished in.
    order = {user: index for index, user in enumerate(users)}
    clients.sort(key=lambda client: order[client.user])
    checked: list[CrossWs] = [c for c in clients if isinstance(c, CrossWs)]
    generator.clients = clients
    await until(lambda: all(c.replayed for c in checked), 30)
    await generator.warmup()
    await generator.quiesce()
    loadgen.SINK[0] = sink
    busy, started = machine_busy_seconds(), monotonic()
    run = await generator.open_loop(args.rate, args.duration, args.drain)
    loadgen.SINK[0] = sink  # no await since the loop returned: no frame was missed
    # The whole machine over about the open loop's window: what is not the servers, the
    # generator or PostgreSQL's backends is Redis, or other work sharing the machine.
    machine = (machine_busy_seconds() - busy) / (monotonic() - started)
    cpu = run["cpu"]
    cpu["machine"] = round(machine, 3)
    cpu["other"] = round(machine - cpu["server"] - cpu["loadgen"] - (cpu["postgres"] or 0), 3)
    checks, held = await settle(checked, database.dsn, users)
    checks["sockets_not_opened"] = len(users) - len(clients)
    checks["no_replayed_frame"] = sum(not c.replayed for c in checked)
    checks.update(
        (f"run_{name}", value)
        for name, value in run["checks"].items()
        if name in ("duplicates", "wrong_user")
    )
    generator.close_all()
    run["connect"] = {
        "seconds": round(elapsed, 3),
        "handshake_ms": loadgen.summary_ms(times),
        "failures": failures,
    }
    run["delivery_checks"] = checks
    run["seqs_held"] = held
    return run


def phase(
    kind: str, bus: str, args: argparse.Namespace, database: Database, users: list[str], logs: Path
) -> dict[str, Any]:
    """Start the servers of one phase, measure, stop them."""
    count = 1 if kind == "single" else args.instances
    args.bus = bus
    stamp = time.strftime("%H%M%S")
    paths = [logs / f"{bus}-{kind}-{stamp}-{i}.log" for i in range(count)]
    servers: list[ServerProcess] = []
    try:
        for path in paths:
            servers.append(ServerProcess("notifier", args, database, path))
        for server in servers:
            server.wait_ready()
        loadgen.log(
            f"{bus} bus, {kind}: {count} server(s), pids {[s.process.pid for s in servers]}"
        )
        result = asyncio.run(measure(args, database, servers, users))
    finally:
        for server in servers:
            server.stop()
    result["phase"] = kind
    result["instances"] = count
    result["server_warnings"] = [line for path in paths for line in server_warnings(path)]
    latency = result["latency_ms"]
    loadgen.log(
        f"{bus} bus, {kind}: delivered {result['delivered_pct']}%, p50 {latency['p50']} ms, "
        f"p99 {latency['p99']} ms, checks {failed(result['delivery_checks']) or 'OK'}"
    )
    return result


# -- the report -------------------------------------------------------------------------------


def median(runs: list[dict[str, Any]], pick: Callable[[dict[str, Any]], Any]) -> float | None:
    values = [pick(run) for run in runs]
    numbers = [v for v in values if isinstance(v, int | float)]
    return statistics.median(numbers) if numbers else None


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}" if value >= 10 else f"{value:,.2f}"


ROWS: list[tuple[str, Callable[[dict[str, Any]], Any], bool]] = [
    # label, figure of a run, whether the ratio cross/single is printed
    ("delivered %", lambda r: r["delivered_pct"], False),
    ("publish-to-delivery p50 ms", lambda r: r["latency_ms"]["p50"], True),
    ("publish-to-delivery p99 ms", lambda r: r["latency_ms"]["p99"], True),
    ("publish-to-delivery max ms", lambda r: r["latency_ms"]["max"], True),
    ("HTTP p99 ms", lambda r: r["http_ms"]["p99"], True),
    ("achieved publishes/s", lambda r: r["achieved_rate"], False),
    ("CPU servers, % of a core", lambda r: r["cpu"]["server"] * 100, True),
    ("CPU generator %", lambda r: r["cpu"]["loadgen"] * 100, False),
    ("CPU postgres backends %", lambda r: (r["cpu"]["postgres"] or 0) * 100, False),
    ("CPU machine, all cores %", lambda r: r["cpu"]["machine"] * 100, False),
    ("  of which other (Redis, ...)", lambda r: r["cpu"]["other"] * 100, False),
]


def summarize(
    bus: str, single: list[dict[str, Any]], cross: list[dict[str, Any]]
) -> dict[str, Any]:
    p99 = ROWS[2][1]
    s99, c99 = median(single, p99), median(cross, p99)
    return {
        "bus": bus,
        "p99_ms_single": s99,
        "p99_ms_cross": c99,
        "p99_ratio": round(c99 / s99, 3) if s99 and c99 is not None else None,
        "checks_failed": sorted(
            {
                f"{r['phase']}: {name}"
                for r in single + cross
                for name in failed(r["delivery_checks"])
            }
        ),
        "single": single,
        "cross": cross,
    }


def print_bus(args: argparse.Namespace, summary: dict[str, Any]) -> None:
    single, cross = summary["single"], summary["cross"]
    rounds = f", median of {args.rounds} rounds" if args.rounds > 1 else ""
    print(
        f"\n{summary['bus']} bus: {args.sockets:,} sockets, {args.rate:,.0f} publishes/s for "
        f"{args.duration:g} s; single = 1 instance, cross = {args.instances} instances "
        f"(sockets and publishes round-robin){rounds}"
    )
    print(f"{'':<30}{'single':>12}{'cross':>12}{'cross/single':>14}")
    for label, pick, ratio in ROWS:
        s, c = median(single, pick), median(cross, pick)
        text = f"{c / s:.2f}x" if ratio and s and c is not None else ""
        print(f"{label:<30}{_fmt(s):>12}{_fmt(c):>12}{text:>14}")
    if args.rounds > 1:
        for name, runs in (("single", single), ("cross", cross)):
            values = ", ".join(_fmt(r["latency_ms"]["p99"]) for r in runs)
            print(f"  p99 ms per round, {name}: {values}")
    for name, runs in (("single", single), ("cross", cross)):
        per = [r["cpu"].get("servers") for r in runs if r["cpu"].get("servers")]
        if per:
            shares = " / ".join(f"{share * 100:.0f}" for share in per[0])
            print(f"  CPU per instance, {name} (first round): {shares} %")
    for run in single + cross:
        checks = run["delivery_checks"]
        verdict = ", ".join(failed(checks)) or "OK"
        print(
            f"  delivery {run['phase']:<6} {run['seqs_held']:,} seqs held: gaps "
            f"{checks['gaps']}, duplicates {checks['duplicates']}, missing {checks['missing']}, "
            f"sockets closed {checks['sockets_closed']}, close codes {run['close_codes'] or '{}'}"
            f": {verdict}"
        )
        for line in run["server_warnings"]:
            print(f"    server log: {line}")
    ratio = summary["p99_ratio"]
    if ratio is not None:
        print(f"  p99 cross/single: {ratio:.2f}x (the goal: at most 1.5x)")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.sched_setaffinity(0, {args.loadgen_cpu})
    soft, _hard = loadgen.raise_nofile()
    if soft < args.sockets + args.publish_connections + 200:
        raise SystemExit(f"RLIMIT_NOFILE {soft} is too low for {args.sockets} sockets")
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    prefix = f"x{secrets.token_hex(3)}"
    users = [f"{prefix}-u{i}" for i in range(args.sockets)]
    logs = Path(tempfile.mkdtemp(prefix="bench-cross-"))
    meta = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "sockets": args.sockets,
        "rate": args.rate,
        "duration_s": args.duration,
        "instances": args.instances,
        "rounds": args.rounds,
        "server_cpu": args.server_cpu if args.pinned else "not pinned",
        "loadgen_cpu": args.loadgen_cpu,
        "publish_connections": args.publish_connections,
        "pytest_running": pytest_running(),
        "server_logs": str(logs),
    }
    database = Database()
    summaries = []
    try:
        meta["postgres"] = database.create()
        for bus in args.bus_list:
            runs: dict[str, list[dict[str, Any]]] = {"single": [], "cross": []}
            for number in range(args.rounds):
                order = ("single", "cross") if number % 2 == 0 else ("cross", "single")
                for kind in order:
                    runs[kind].append(phase(kind, bus, args, database, users, logs))
            summaries.append(summarize(bus, runs["single"], runs["cross"]))
    finally:
        database.drop()
    meta["pytest_running_at_end"] = pytest_running()
    print(
        f"\ncross-instance delivery, {meta['started']}; servers "
        f"{'on CPU ' + ','.join(map(str, args.server_cpu)) if args.pinned else 'not pinned'}, "
        f"load generator on CPU {args.loadgen_cpu}; server logs in {logs}"
    )
    for summary in summaries:
        print_bus(args, summary)
    print(orjson.dumps({"meta": meta, "buses": summaries}).decode())
    sys.stdout.flush()
    sys.exit(1 if any(s["checks_failed"] for s in summaries) else 0)


if __name__ == "__main__":
    main()
