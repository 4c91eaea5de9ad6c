"""The benchmark: `python -m bench.run [--quick] [--scenarios ...] [--server ...]`.

Starts each server under test on loopback (notifier against a PostgreSQL database made
for this run and dropped at the end; the two in-memory references; with
`--server notifier,notifier-sse`, notifier again with SSE streams instead of
WebSockets), pinned to one core,
runs `bench.loadgen` in a separate process pinned to the other core, prints a table with
the ratio of notifier to each reference, and writes everything to
bench/results/<timestamp>.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import math
import os
import platform
import resource
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from bench import machine

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SERVERS = ("notifier", "tutorial", "raw")
# Run only when named: notifier again, its streams `GET /v1/sse` instead of WebSockets.
EXTRA_SERVERS = ("notifier-sse",)
# Scenarios whose streams only receive (SSE cannot send; replay is the socket's code).
SSE_SCENARIOS = {"connect", "latency", "fanout", "scale"}
SCENARIOS = ("connect", "latency", "throughput", "fanout", "replay", "scale")
# Scenarios the in-memory references take part in (they persist nothing: a throughput
# of "persisted" notifications would mean nothing). The tutorial server also replays,
# from memory (`bench/ref_tutorial.py`); raw ASGI does not.
REFERENCE_SCENARIOS = {"connect", "latency", "fanout", "scale"}
TUTORIAL_SCENARIOS = REFERENCE_SCENARIOS | {"replay"}
JWT_SECRET = "bench-secret-" + "0123456789abcdef" * 3
API_KEY = "bench-publisher-key"
PG_ADMIN_DSN = os.environ.get("BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")

PROFILES: dict[str, dict[str, Any]] = {
    "full": {
        "connect_sizes": [1000, 10000, 20000],
        "latency_users": 10000,
        "latency_rates": [200, 1000, 2000, 4000],
        "latency_duration": 10.0,
        "drain": 5.0,
        "throughput_users": 1000,
        "throughput_concurrency": [1, 8, 32],
        "throughput_duration": 10.0,
        "batch_size": 100,
        "fanout_users": 1000,
        "fanout_repeat": 3,
        "replay_count": 10000,
        "scale_sockets": [1000, 5000, 10000, 20000],
        "scale_rates": [1000, 200],
        "scale_duration": 10.0,
    },
    "quick": {
        "connect_sizes": [200, 1000],
        "latency_users": 1000,
        "latency_rates": [200, 500],
        "latency_duration": 2.0,
        "drain": 2.0,
        "throughput_users": 200,
        "throughput_concurrency": [8],
        "throughput_duration": 2.0,
        "batch_size": 100,
        "fanout_users": 500,
        "fanout_repeat": 2,
        "replay_count": 2000,
        "scale_sockets": [200, 500, 1000],
        "scale_rates": [200],
        "scale_duration": 2.0,
    },
}


def _setting(text: str) -> str:
    name, sep, _value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return text


def add_server_env(parser: argparse.ArgumentParser) -> None:
    """`--server-env NAME=VALUE` (repeatable): a notifier setting under test; the
    benchmarks run the server with its defaults otherwise."""
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        type=_setting,
        metavar="NAME=VALUE",
        help="a NOTIFIER_ setting for notifier (repeatable); its defaults otherwise",
    )


def server_env(args: argparse.Namespace) -> dict[str, str]:
    """The `--server-env` settings as environment variables."""
    return dict(item.split("=", 1) for item in args.server_env)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def _cpus(cpus: list[int]) -> str:
    return ",".join(map(str, cpus))


def _floats(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (<= 1,000 sockets)")
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help=f"comma-separated: {','.join(SCENARIOS)}"
    )
    parser.add_argument(
        "--server",
        default="all",
        help=f"comma-separated, among {', '.join((*SERVERS, *EXTRA_SERVERS))}; "
        f"'all' is {', '.join(SERVERS)}",
    )
    parser.add_argument(
        "--server-cpu",
        type=_ints,
        default=[0],
        help="core(s) for the server, comma-separated (0)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="notifier serve --workers N (default 1; pair with --server-cpu 0,1)",
    )
    parser.add_argument("--loadgen-cpu", type=int, default=1, help="core for the generator (1)")
    parser.add_argument(
        "--bus", default=None, help="NOTIFIER_BUS for notifier (default: its own, postgres)"
    )
    add_server_env(parser)
    parser.add_argument("--publish-connections", type=int, default=64)
    parser.add_argument(
        "--keyed",
        action="store_true",
        help="throughput: every publish with an idempotency key, as the Python SDK sends",
    )
    parser.add_argument("--connect-concurrency", type=int, default=200)
    parser.add_argument("--source-addresses", type=int, default=16)
    parser.add_argument("--no-json", action="store_true", help="do not write bench/results/")
    sizes = parser.add_argument_group("sizes (override the profile)")
    sizes.add_argument("--connect-sizes", type=_ints)
    sizes.add_argument("--latency-users", type=int)
    sizes.add_argument("--latency-rates", type=_floats)
    sizes.add_argument("--latency-duration", type=float)
    sizes.add_argument("--drain", type=float, help="seconds allowed after a run to finish")
    sizes.add_argument("--throughput-users", type=int)
    sizes.add_argument("--throughput-concurrency", type=_ints)
    sizes.add_argument("--throughput-duration", type=float)
    sizes.add_argument("--batch-size", type=int)
    sizes.add_argument("--fanout-users", type=int)
    sizes.add_argument("--fanout-repeat", type=int)
    sizes.add_argument("--replay-count", type=int)
    sizes.add_argument("--scale-sockets", type=_ints)
    sizes.add_argument("--scale-rates", type=_floats)
    sizes.add_argument("--scale-duration", type=float)
    args = parser.parse_args(argv)
    args.scenario_list = [s for s in args.scenarios.split(",") if s]
    unknown = set(args.scenario_list) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    profile = dict(PROFILES["quick" if args.quick else "full"])
    for key in profile:
        value = getattr(args, key)
        if value is not None:
            profile[key] = value
    if not 1 <= profile["fanout_users"] <= 1000:
        parser.error("--fanout-users: 1..1000 (one batch)")
    args.profile = profile
    args.servers = list(SERVERS) if args.server == "all" else args.server.split(",")
    strange = set(args.servers) - set(SERVERS) - set(EXTRA_SERVERS)
    if strange:
        parser.error(f"unknown servers: {', '.join(sorted(strange))}")
    return args


# -- PostgreSQL ---------------------------------------------------------------------------


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _pg_facts(dsn: str) -> dict[str, str]:
    conn = await asyncpg.connect(dsn)
    try:
        facts = {"version": await conn.fetchval("SELECT version()")}
        for name in ("synchronous_commit", "fsync", "wal_sync_method", "max_connections"):
            facts[name] = await conn.fetchval(f"SHOW {name}")
        return facts
    finally:
        await conn.close()


class Database:
    """A PostgreSQL database for this run, migrated with `notifier migrate`, dropped."""

    def __init__(self) -> None:
        self.name = f"notifier_bench_{time.strftime('%Y%m%d%H%M%S')}_{secrets.token_hex(3)}"
        base = PG_ADMIN_DSN.rsplit("/", 1)[0]
        self.dsn = f"{base}/{self.name}"
        self.url = self.dsn.replace("postgresql://", "postgresql+asyncpg://", 1)

    def create(self) -> dict[str, Any]:
        asyncio.run(_admin(f'CREATE DATABASE "{self.name}"'))
        env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
        env["NOTIFIER_DATABASE_URL"] = self.url
        subprocess.run(
            [sys.executable, "-m", "notifier", "migrate"],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        facts: dict[str, Any] = asyncio.run(_pg_facts(self.dsn))
        if facts["synchronous_commit"] != "on" or facts["fsync"] != "on":
            raise SystemExit(f"PostgreSQL is not durable here: {facts}")
        # Every benchmark makes its database first, before any server: the machine is
        # still idle, and its speed goes with the run's figures.
        facts["machine"] = machine.speed(self.dsn)
        log(machine.describe(facts["machine"]))
        return facts

    def drop(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))


# -- processes ----------------------------------------------------------------------------


def _pinned(cpus: list[int]) -> Any:
    """preexec_fn for a child: pin it to `cpus` and raise its soft RLIMIT_NOFILE to the hard
    limit (both survive the exec)."""

    def setup() -> None:
        os.sched_setaffinity(0, set(cpus))
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    return setup


class ServerProcess:
    def __init__(
        self,
        kind: str,
        args: argparse.Namespace,
        database: Database | None,
        log: Path,
        port: int | None = None,
        extra_env: dict[str, str] | None = None,
    ):
        self.kind = kind
        self.port = port or free_port()  # a port of its own; the same one for a restart
        self.log_path = log
        env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
        env.update(
            NOTIFIER_JWT_SECRET=JWT_SECRET,
            NOTIFIER_API_KEYS=f"bench:{API_KEY}",
            # Thousands of sockets from one address: the per-address limit would refuse them.
            NOTIFIER_HANDSHAKE_RATE="0",
        )
        env.update(extra_env or {})  # a setting under test, named in the bench's output
        if kind.startswith("notifier"):
            assert database is not None
            env["NOTIFIER_DATABASE_URL"] = database.url
            if args.bus:
                env["NOTIFIER_BUS"] = args.bus
            # As shipped: the default log level and access log (failed and slow requests).
            command = ["-m", "notifier", "serve", "--port", str(self.port)]
            if args.workers > 1:
                command += ["--workers", str(args.workers)]
            self.ready_path = "/readyz"
        else:
            command = ["-m", f"bench.ref_{kind}", "--port", str(self.port)]
            self.ready_path = "/healthz"
        self.command = [sys.executable, *command]
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                self.command,
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_pinned(args.server_cpu),
            )

    def wait_ready(self, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        url = f"http://127.0.0.1:{self.port}{self.ready_path}"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.kind} exited with {self.process.returncode}: {self.log_tail()}"
                )
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(url, timeout=1) as response,
            ):
                if response.status == 200:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"{self.kind} not ready: {self.log_tail()}")

    def log_tail(self, size: int = 3000) -> str:
        text = self.log_path.read_text(errors="replace")
        return text[-size:]

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode


def run_loadgen(spec: dict[str, Any], args: argparse.Namespace, timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="notifier-bench-") as folder:
        spec_path = Path(folder) / "spec.json"
        out_path = Path(folder) / "out.json"
        spec_path.write_bytes(orjson.dumps(spec))
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.loadgen", str(spec_path), str(out_path)],
            cwd=ROOT,
            preexec_fn=_pinned([args.loadgen_cpu]),
        )
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
            raise RuntimeError(
                f"the load generator did not finish within {timeout:.0f} s"
            ) from None
        if code != 0 or not out_path.exists():
            raise RuntimeError(f"the load generator failed (exit {code})")
        result: dict[str, Any] = orjson.loads(out_path.read_bytes())
        return result


# -- phases -------------------------------------------------------------------------------


def phases_for(kind: str, args: argparse.Namespace, socket_cap: int) -> list[list[dict[str, Any]]]:
    """Each phase runs against a freshly started server."""
    profile = args.profile
    only = {"notifier": None, "notifier-sse": SSE_SCENARIOS, "tutorial": TUTORIAL_SCENARIOS}.get(
        kind, REFERENCE_SCENARIOS
    )
    wanted = [s for s in args.scenario_list if only is None or s in only]
    drain = profile["drain"]
    phases: list[list[dict[str, Any]]] = []
    if "connect" in wanted:
        for n in profile["connect_sizes"]:
            phases.append([{"name": "connect", "n": n}])
    main: list[dict[str, Any]] = []
    if "latency" in wanted:
        main.append(
            {
                "name": "latency",
                "users": min(profile["latency_users"], socket_cap),
                "rates": profile["latency_rates"],
                "duration": profile["latency_duration"],
                "drain": drain,
            }
        )
    if "fanout" in wanted:
        main.append(
            {
                "name": "fanout",
                "users": profile["fanout_users"],
                "repeat": profile["fanout_repeat"],
                "timeout": 30.0,
            }
        )
    if "throughput" in wanted:
        main.append(
            {
                "name": "throughput",
                "users": profile["throughput_users"],
                "concurrency": profile["throughput_concurrency"],
                "duration": profile["throughput_duration"],
                "batch": profile["batch_size"],
                "drain": drain,
            }
        )
    if "replay" in wanted:
        main.append(
            {"name": "replay", "count": profile["replay_count"], "batch": 1000, "timeout": 120.0}
        )
    if main:
        phases.append(main)
    if "scale" in wanted:
        phases.append(
            [
                {
                    "name": "scale",
                    "levels": [min(level, socket_cap) for level in profile["scale_sockets"]],
                    "rates": profile["scale_rates"],
                    "duration": profile["scale_duration"],
                    "drain": drain,
                }
            ]
        )
    return phases


def run_server(
    kind: str,
    args: argparse.Namespace,
    database: Database | None,
    socket_cap: int,
    logs: Path,
) -> dict[str, Any]:
    outcome: dict[str, Any] = {"phases": [], "errors": []}
    extra = server_env(args) if kind.startswith("notifier") else None
    for number, phase in enumerate(phases_for(kind, args, socket_cap)):
        names = "+".join(s["name"] for s in phase)
        log(f"{kind}: phase {number} ({names}) on a fresh server")
        log_path = logs / f"{kind}-{number}-{names}.log"
        server = ServerProcess(kind, args, database, log_path, extra_env=extra)
        try:
            server.wait_ready()
            log(f"{kind}: server pid {server.process.pid} on port {server.port}")
            spec = {
                "host": "127.0.0.1",
                "port": server.port,
                "server_pid": server.process.pid,
                "server_kind": kind,
                "jwt_secret": JWT_SECRET,
                "api_key": API_KEY,
                "user_prefix": f"{kind[0]}{number}{secrets.token_hex(2)}-",
                "publish_connections": args.publish_connections,
                "keyed": args.keyed,
                "connect_concurrency": args.connect_concurrency,
                "source_addresses": args.source_addresses,
                "socket_cap": socket_cap,
                "cpu": args.loadgen_cpu,
                "pg_database": database.name
                if database is not None and kind.startswith("notifier")
                else None,
                "transport": "sse" if kind == "notifier-sse" else "ws",
                "scenarios": phase,
            }
            result = run_loadgen(spec, args, timeout=3600)
            result["pytest_running_after"] = pytest_running()
            result["server"] = {
                "command": " ".join(server.command[1:]),
                "pid": server.process.pid,
                "cpu_affinity": sorted(os.sched_getaffinity(server.process.pid)),
            }
            outcome["phases"].append(result)
        except Exception as error:
            log(f"{kind}: phase {number} failed: {error}")
            outcome["errors"].append(
                {"phase": number, "error": str(error), "server_log_tail": server.log_tail()}
            )
        finally:
            code = server.stop()
            log(f"{kind}: server stopped (exit {code})")
    return outcome


# -- the table ----------------------------------------------------------------------------


def _get(scenarios: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [s for s in scenarios if s["name"] == name]


def figures(outcome: dict[str, Any]) -> dict[str, float | str | None]:
    """Flatten one server's results into `label -> value`."""
    scenarios = [s for phase in outcome["phases"] for s in phase["scenarios"]]
    found: dict[str, float | str | None] = {}
    for s in _get(scenarios, "connect"):
        head = f"connect N={s['requested']:,}" + (
            f" (capped {s['n']:,})" if s["n"] < s["requested"] else ""
        )
        found[f"{head}: sockets/s ↑"] = s["rate_per_s"]
        found[f"{head}: handshake p99 ms ↓"] = s["handshake_ms"]["p99"]
        per = s["rss_per_socket_bytes"]
        found[f"{head}: server RSS/socket KiB ↓"] = (
            round(per / 1024, 1) if per is not None else None
        )
        found[f"{head}: open after 1 s"] = f"{s['alive_after_1s']}/{s['n']}"
    for s in _get(scenarios, "latency"):
        for r in s["runs"]:
            head = f"latency {s['users']:,} sockets R={r['rate']:g}/s"
            _latency_rows(found, head, r)
    for s in _get(scenarios, "throughput"):
        for r in s["runs"]:
            kind = "single" if r["batch"] == 1 else f"batch {r['batch']}"
            head = f"throughput {kind} C={r['concurrency']}"
            found[f"{head}: persisted/s ↑"] = r["persisted_per_s"]
            found[f"{head}: delivered/s ↑"] = r["delivered_per_s"]
            found[f"{head}: HTTP p99 ms ↓"] = r["http_ms"]["p99"]
            found[f"{head}: CPU srv/gen/pg"] = _cpu(r)
    for s in _get(scenarios, "fanout"):
        head = f"fan-out {s['users']:,} users, 1 batch"
        found[f"{head}: last delivery ms (median) ↓"] = s["last_delivery_ms_median"]
        https = sorted(r["http_ms"] for r in s["runs"])
        found[f"{head}: HTTP ms (median) ↓"] = https[len(https) // 2] if https else None
        found[f"{head}: delivered"] = "/".join(str(r["delivered"]) for r in s["runs"])
    for s in _get(scenarios, "replay"):
        head = f"replay {s['count']:,} after=0"
        found[f"{head}: seconds to all ↓"] = s["seconds_to_all"]
        found[f"{head}: notifications/s ↑"] = s["per_s"]
        found[f"{head}: seqs 1..N in order"] = "yes" if s["seqs_1_to_n_in_order"] else "NO"
    for s in _get(scenarios, "scale"):
        for r in sorted(s["points"], key=lambda point: -point["rate"]):
            head = f"scale R={r['rate']:g}/s, {r['sockets']:,} sockets"
            found[f"{head}: p99 ms ↓"] = r["latency_ms"]["p99"]
            found[f"{head}: delivered %"] = r["delivered_pct"]
            found[f"{head}: server RSS MiB"] = round(r["server_rss_bytes"] / 2**20, 1)
    return found


def _cpu(run: dict[str, Any]) -> str:
    cpu = run["cpu"]
    pg = "-" if cpu["postgres"] is None else f"{cpu['postgres'] * 100:.0f}"
    return f"{cpu['server'] * 100:.0f}/{cpu['loadgen'] * 100:.0f}/{pg}%"


def _latency_rows(found: dict[str, Any], head: str, run: dict[str, Any]) -> None:
    found[f"{head}: delivered %"] = run["delivered_pct"]
    found[f"{head}: p50 ms ↓"] = run["latency_ms"]["p50"]
    found[f"{head}: p99 ms ↓"] = run["latency_ms"]["p99"]
    found[f"{head}: max ms ↓"] = run["latency_ms"]["max"]
    found[f"{head}: HTTP p99 ms ↓"] = run["http_ms"]["p99"]
    found[f"{head}: achieved /s ↑"] = run["achieved_rate"]
    found[f"{head}: CPU srv/gen/pg"] = _cpu(run)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return (
            f"{value:,.0f}"
            if abs(value) >= 1000
            else f"{value:,.3g}"
            if abs(value) < 10
            else f"{value:,.1f}"
        )
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def build_table(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    per_server = {kind: figures(outcome) for kind, outcome in results.items()}
    labels: list[str] = []
    for values in per_server.values():
        labels.extend(label for label in values if label not in labels)
    rows = []
    for label in labels:
        row: dict[str, Any] = {"figure": label}
        for kind in results:
            row[kind] = per_server[kind].get(label)
        base = row.get("notifier")
        for ref in ("tutorial", "raw"):
            other = row.get(ref)
            if isinstance(base, int | float) and isinstance(other, int | float) and other:
                row[f"notifier/{ref}"] = round(base / other, 3)
        sse = row.get("notifier-sse")
        if isinstance(base, int | float) and isinstance(sse, int | float) and base:
            row["notifier-sse/notifier"] = round(sse / base, 3)
        rows.append(row)
    return rows


def print_table(rows: list[dict[str, Any]], servers: list[str]) -> None:
    columns = [*servers]
    if "notifier" in servers:
        columns += [f"notifier/{ref}" for ref in ("tutorial", "raw") if ref in servers]
        if "notifier-sse" in servers:
            columns.append("notifier-sse/notifier")
    width = max([len(r["figure"]) for r in rows] + [10])
    header = f"{'figure':<{width}}" + "".join(f"{c:>18}" for c in columns)
    print(header)
    print("-" * len(header))
    section = None
    for row in rows:
        this = row["figure"].split(":")[0]
        if section is not None and this != section:
            print()
        section = this
        cells = []
        for column in columns:
            value = row.get(column)
            text = f"{value:.2f}x" if "/" in column and value is not None else _fmt(value)
            cells.append(f"{text:>18}")
        print(f"{row['figure']:<{width}}" + "".join(cells))


# -- main ---------------------------------------------------------------------------------


def pytest_running() -> bool:
    """Whether a test run shares the machine (its figures would be noisy)."""
    found = subprocess.run(["pgrep", "-f", "pytest"], capture_output=True, check=False).stdout
    return bool(found.strip())


def _git() -> dict[str, Any]:
    def out(*command: str) -> str:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    return {
        "commit": out("git", "rev-parse", "HEAD"),
        "notifier_dirty": bool(out("git", "status", "--porcelain", "notifier")),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.sched_setaffinity(0, {args.loadgen_cpu})  # the orchestrator stays off the server core
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    socket_cap = hard - args.publish_connections - 200
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    logs = RESULTS / f"{stamp}-logs"
    if args.no_json:
        logs = Path(tempfile.mkdtemp(prefix="notifier-bench-logs-"))
    logs.mkdir(parents=True, exist_ok=True)
    busy = pytest_running()
    meta: dict[str, Any] = {
        "started": datetime.datetime.now().astimezone().isoformat(),
        "profile": "quick" if args.quick else "full",
        "sizes": args.profile,
        "scenarios": args.scenario_list,
        "servers": args.servers,
        "host": {
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "python": sys.version.split()[0],
            "nofile_hard": hard,
            "ephemeral_ports": Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split(),
        },
        "pinning": {
            "server_cpu": args.server_cpu,
            "notifier_workers": args.workers,
            "loadgen_cpu": args.loadgen_cpu,
            "postgres": "not pinned (shared cluster)",
        },
        "socket_cap": socket_cap,
        "publish_connections": args.publish_connections,
        "keyed": args.keyed,
        "connect_concurrency": args.connect_concurrency,
        "other_load": {"pytest_running": busy},
        "git": _git(),
        "notifier_bus": args.bus or "default (postgres with PostgreSQL)",
        "notifier_server_env": list(args.server_env),
        "notifier_access_log": "the default: failed and slow requests (NOTIFIER_ACCESS_LOG=errors)",
    }
    if busy:
        log("warning: a pytest run is in progress on this machine; figures will be noisy")
    log(
        f"profile {meta['profile']}; server on CPU {_cpus(args.server_cpu)}"
        f"{f' ({args.workers} workers)' if args.workers > 1 else ''}, load generator on CPU "
        f"{args.loadgen_cpu}; sockets capped at {socket_cap} (RLIMIT_NOFILE hard {hard})"
    )
    database = Database() if any(k.startswith("notifier") for k in args.servers) else None
    results: dict[str, dict[str, Any]] = {}
    try:
        if database is not None:
            meta["postgres"] = database.create()
            meta["postgres"]["database"] = database.name
            log(f"database {database.name}: {meta['postgres']['version'].split(',')[0]}")
        for kind in args.servers:
            results[kind] = run_server(kind, args, database, socket_cap, logs)
    finally:
        if database is not None:
            database.drop()
    meta["finished"] = datetime.datetime.now().astimezone().isoformat()
    meta["other_load"]["pytest_running_at_end"] = pytest_running()
    rows = build_table(results)
    print()
    print(
        f"notifier benchmark, {meta['profile']} profile, {meta['started']}: server on CPU "
        f"{_cpus(args.server_cpu)}"
        f"{f' ({args.workers} workers)' if args.workers > 1 else ''}, load generator on CPU "
        f"{args.loadgen_cpu}, PostgreSQL unpinned "
        f"(synchronous_commit {meta.get('postgres', {}).get('synchronous_commit', '-')})"
    )
    print("↑ higher is better, ↓ lower is better; ratio = notifier ÷ reference")
    print(
        "CPU srv/gen/pg: server, load generator, PostgreSQL backends of the bench database"
        " (% of one core)"
    )
    print()
    print_table(rows, args.servers)
    errors = {kind: r["errors"] for kind, r in results.items() if r["errors"]}
    if errors:
        print("\nerrors:")
        for kind, items in errors.items():
            for item in items:
                print(f"  {kind} phase {item['phase']}: {item['error']}")
    if not args.no_json:
        path = RESULTS / f"{stamp}.json"
        document = {"meta": meta, "table": rows, "results": results}
        path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
        print(f"\nwritten: {path.relative_to(ROOT)} (server logs in {logs.relative_to(ROOT)}/)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
