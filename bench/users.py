"""What presence and revocation cost a connect storm, and how fast a bulk presence read is.

    python -m bench.users                      # 10,000 sockets, 3 rounds, 200 bulk reads
    python -m bench.users --quick              # 500 sockets, 1 round, 20 bulk reads
    python -m bench.users --base <git-ref>     # "off": the tree at <ref> (default: main)

**Connect, on against off.** Presence (a set insertion per connect and disconnect, one
flush a second) and revocation checks (a dict look-up per handshake) have no switch:
"off" is the same connect run against the tree before them, checked out at `--base`
into a temporary git worktree and served from there (`python -m notifier` imports the
package of its working directory). Rounds alternate off and on, each on a freshly
started server, against one database; the table gives each side's median and range, so
the difference can be read against the spread of the runs themselves. The load is
`bench.loadgen`'s connect scenario (see bench/README.md), with the same pinning.

**Bulk presence.** One instance serves `POST /v1/presence` with 1,000 ids while the
presence tables hold 10,000 online users spread over three live instances (written
directly, as three instances' flushes would leave them); half of the asked ids are
online. Calls go one at a time over one keep-alive connection; p50 / p99 / max.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.run import (
    API_KEY,
    JWT_SECRET,
    ROOT,
    Database,
    _pinned,
    free_port,
    log,
    run_loadgen,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.users", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="500 sockets, 1 round, 20 reads")
    parser.add_argument("--sockets", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bulk-calls", type=int, default=200)
    parser.add_argument("--base", default="main", help="git ref of the tree without them")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--loadgen-cpu", type=int, default=1)
    parser.add_argument("--connect-concurrency", type=int, default=200)
    parser.add_argument("--source-addresses", type=int, default=16)
    args = parser.parse_args(argv)
    if args.quick:
        args.sockets, args.rounds, args.bulk_calls = 500, 1, 20
    return args


class Served:
    """`notifier serve` from the tree at `root`, pinned, until `stop`."""

    def __init__(self, root: Path, database: Database, args: argparse.Namespace, log_path: Path):
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
        env.update(
            NOTIFIER_DATABASE_URL=database.url,
            NOTIFIER_JWT_SECRET=JWT_SECRET,
            NOTIFIER_API_KEYS=f"bench:{API_KEY}",
            # Thousands of sockets from one address: the per-address limit would refuse them
            # (the tree before it ignores the variable).
            NOTIFIER_HANDSHAKE_RATE="0",
        )
        # As shipped, like bench.run: the default log level and access log.
        command = [sys.executable, "-m", "notifier", "serve", "--port", str(self.port)]
        with log_path.open("ab") as out:
            self.process = subprocess.Popen(
                command,
                env=env,
                cwd=root,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_pinned([args.server_cpu]),
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {log_path.read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                url = f"http://127.0.0.1:{self.port}/readyz"
                with urllib.request.urlopen(url, timeout=1) as answer:
                    if answer.status == 200:
                        return
            time.sleep(0.1)
        self.stop()
        raise TimeoutError("server not ready")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def migrate(root: Path, database: Database) -> None:
    """`notifier migrate` of the tree at `root`. The database was made (and migrated) by
    this tree: a base tree that knows only older revisions refuses to touch it, which is
    fine (it serves a newer schema with a warning); a base tree with newer ones upgrades."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env["NOTIFIER_DATABASE_URL"] = database.url
    subprocess.run(
        [sys.executable, "-m", "notifier", "migrate"],
        env=env,
        cwd=root,
        check=False,
        capture_output=True,
    )


def connect_round(
    root: Path, database: Database, args: argparse.Namespace, logs: Path, tag: str
) -> dict[str, Any]:
    server = Served(root, database, args, logs / f"{tag}.log")
    try:
        spec = {
            "host": "127.0.0.1",
            "port": server.port,
            "server_pid": server.process.pid,
            "server_kind": "notifier",
            "jwt_secret": JWT_SECRET,
            "api_key": API_KEY,
            "user_prefix": f"{tag}-",
            "publish_connections": 4,
            "connect_concurrency": args.connect_concurrency,
            "source_addresses": args.source_addresses,
            "socket_cap": args.sockets,
            "cpu": args.loadgen_cpu,
            "pg_database": database.name,
            "scenarios": [{"name": "connect", "n": args.sockets}],
        }
        result = run_loadgen(spec, argparse.Namespace(loadgen_cpu=args.loadgen_cpu), 1800)
    finally:
        server.stop()
    [connect] = [s for s in result["scenarios"] if s["name"] == "connect"]
    return {"rate": connect["rate_per_s"], "p99": connect["handshake_ms"]["p99"]}


async def seed_presence(dsn: str, users: int) -> list[str]:
    """`users` online users over three live instances, as their flushes leave them."""
    conn = await asyncpg.connect(dsn)
    try:
        expires = datetime.now(UTC) + timedelta(hours=1)
        instances = [f"bench-instance-{i}" for i in range(3)]
        await conn.executemany(
            "INSERT INTO presence_instances (instance_id, expires_at) VALUES ($1, $2)",
            [(i, expires) for i in instances],
        )
        names = [f"online-{n}" for n in range(users)]
        await conn.copy_records_to_table(
            "presence",
            records=[(instances[n % 3], name, 1 + n % 2) for n, name in enumerate(names)],
            columns=["instance_id", "user_id", "connections"],
        )
        return names
    finally:
        await conn.close()


def bulk_presence(
    database: Database, args: argparse.Namespace, logs: Path
) -> dict[str, float | int]:
    online = asyncio.run(seed_presence(database.dsn, 10_000))
    asked = online[:500] + [f"offline-{n}" for n in range(500)]
    server = Served(ROOT, database, args, logs / "presence.log")
    times: list[float] = []
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{server.port}",
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=30,
        ) as client:
            for call in range(args.bulk_calls + 5):
                started = time.perf_counter()
                answer = client.post("/v1/presence", json={"user_ids": asked})
                elapsed = time.perf_counter() - started
                answer.raise_for_status()
                found = answer.json()["presence"]
                assert len(found) == 1000 and sum(p["online"] for p in found.values()) == 500
                if call >= 5:  # the first calls warm the pool and the statement cache
                    times.append(elapsed * 1000)
    finally:
        server.stop()
    times.sort()
    return {
        "calls": len(times),
        "p50_ms": round(statistics.median(times), 2),
        "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 2),
        "max_ms": round(times[-1], 2),
    }


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):,.1f} ({min(values):,.1f}..{max(values):,.1f})"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logs = Path(tempfile.mkdtemp(prefix="notifier-bench-users-"))
    base_tree = Path(tempfile.mkdtemp(prefix="notifier-base-")) / "tree"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base_tree), args.base],
        check=True,
        capture_output=True,
    )
    database = Database()
    try:
        database.create()
        # The base tree may hold a later migration than this one (or an earlier): the
        # schema is brought to the newer of the two, which both serve (a newer schema
        # than a tree knows is served with a warning, as in a rolling upgrade).
        migrate(base_tree, database)
        log(f"database {database.name}; base tree {args.base} at {base_tree}; logs in {logs}")
        rounds: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
        for number in range(args.rounds):
            order = ("off", "on") if number % 2 == 0 else ("on", "off")
            for side in order:
                root = base_tree if side == "off" else ROOT
                result = connect_round(root, database, args, logs, f"{side}{number}")
                log(f"round {number} {side}: {result['rate']}/s, p99 {result['p99']} ms")
                rounds[side].append(result)
        presence = bulk_presence(database, args, logs)
    finally:
        database.drop()
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base_tree)],
            capture_output=True,
        )
        shutil.rmtree(base_tree.parent, ignore_errors=True)
    print(f"\nconnect {args.sockets:,} sockets, {args.rounds} round(s): median (min..max)")
    print(f"{'':32}{'off (' + args.base + ')':>26}{'on (this tree)':>26}")
    for key, label in (("rate", "sockets/s"), ("p99", "handshake p99 ms")):
        off = _spread([r[key] for r in rounds["off"]])
        on = _spread([r[key] for r in rounds["on"]])
        print(f"{label:24}{off:>30}{on:>30}")
    print(
        f"\nPOST /v1/presence, 1,000 ids (500 online of 10,000), {presence['calls']} calls: "
        f"p50 {presence['p50_ms']} ms, p99 {presence['p99_ms']} ms, max {presence['max_ms']} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
