"""How fast this machine is right now, in three numbers printed beside every run's figures.

The same virtual machine has measured up to twice as slow on one afternoon as on the
morning before (the reference raw-ASGI server's fan-out: 38 ms one day, 74 ms another),
which moves every absolute figure with it. These three take a few seconds and say
which of the machine's parts moved, so runs from different days can be read side by
side:

- `python_loop_ms`: a fixed pure-Python loop (the interpreter's speed: notifier's
  Python code, wsproto, the load generator);
- `loopback_round_trip_us`: 64 bytes there and back over a loopback TCP connection in
  one thread (the kernel's send and receive path, which every frame and request takes);
- `commit_ms`: one-row INSERT commits on PostgreSQL with the server's durability
  settings (what each publish waits for: the WAL flush).

Each is the median of several rounds (3 to 5; the first two wander by up to a third
between runs a minute apart on this machine, which is itself worth knowing).

`python -m bench.machine --disk SECONDS` also times one 8 KiB write and `fdatasync` after
another for that long, in a file beside `--disk-dir` (by default the system's temporary
directory): the tail of a durable commit's flush, which a median hides. On this machine
(2026-12-01, 40 s, idle): p50 0.12 ms, p99.9 0.91 ms, but a maximum of 430 ms and three
flushes over 200 ms, and each such stall holds every publish committing meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import tempfile
import time
from typing import Any

import asyncpg

from bench.loadgen import summary_ms

_LOOP = 2_000_000
_ROUND_TRIPS = 2_000
_COMMITS = 200


def python_loop_ms() -> float:
    def once() -> float:
        started = time.perf_counter()
        total = 0
        for i in range(_LOOP):
            total += i
        return (time.perf_counter() - started) * 1000

    return round(statistics.median(once() for _ in range(5)), 1)


def loopback_round_trip_us() -> float:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        peer, _ = server.accept()
        with client, peer:
            for sock in (client, peer):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            payload = b"x" * 64
            rounds = []
            for _ in range(3):
                started = time.perf_counter()
                for _ in range(_ROUND_TRIPS):
                    client.sendall(payload)
                    peer.recv(64)
                    peer.sendall(payload)
                    client.recv(64)
                rounds.append((time.perf_counter() - started) / _ROUND_TRIPS * 1e6)
    return round(statistics.median(rounds), 1)


async def _commit_ms(dsn: str) -> float:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS bench_calibration (x int)")
        timings = []
        for i in range(_COMMITS):
            started = time.perf_counter()
            await conn.execute("INSERT INTO bench_calibration VALUES ($1)", i)
            timings.append((time.perf_counter() - started) * 1000)
        await conn.execute("DROP TABLE bench_calibration")
    finally:
        await conn.close()
    return round(statistics.median(timings), 2)


def speed(dsn: str | None = None) -> dict[str, Any]:
    """The three numbers (`commit_ms` only with a database `dsn`); run before the servers
    start, on the otherwise idle machine the benchmark wants."""
    figures: dict[str, Any] = {
        "python_loop_ms": python_loop_ms(),
        "loopback_round_trip_us": loopback_round_trip_us(),
    }
    if dsn is not None:
        figures["commit_ms"] = asyncio.run(_commit_ms(dsn))
    return figures


def describe(figures: dict[str, Any]) -> str:
    text = (
        f"machine now: Python loop {figures['python_loop_ms']} ms, loopback round trip "
        f"{figures['loopback_round_trip_us']} µs"
    )
    if "commit_ms" in figures:
        text += f", PostgreSQL commit {figures['commit_ms']} ms"
    return text + " (bench/machine.py)"


def disk_flushes(seconds: float, directory: str) -> dict[str, Any]:
    """One 8 KiB write and `fdatasync` after another for `seconds`: the flushes' latency
    (`loadgen.summary_ms`), and how many took over 50 and 200 ms."""
    handle, path = tempfile.mkstemp(prefix="bench-fsync-", dir=directory)
    timings: list[float] = []
    try:
        block = b"x" * 8192
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            os.pwrite(handle, block, 0)
            started = time.perf_counter()
            os.fdatasync(handle)
            timings.append(time.perf_counter() - started)
    finally:
        os.close(handle)
        os.unlink(path)
    return {
        **summary_ms(timings),
        "over_50_ms": sum(1 for t in timings if t > 0.05),
        "over_200_ms": sum(1 for t in timings if t > 0.2),
    }


if __name__ == "__main__":
    # `python -m bench.machine`: the same three numbers on their own, the commit timed in
    # the benchmarks' admin database (BENCH_PG_ADMIN); `--disk 40` adds the flushes' tail.
    from bench.run import PG_ADMIN_DSN

    parser = argparse.ArgumentParser(prog="python -m bench.machine")
    parser.add_argument("--disk", type=float, default=0.0, help="seconds of fdatasync timing")
    parser.add_argument("--disk-dir", default=tempfile.gettempdir())
    args = parser.parse_args()
    print(describe(speed(PG_ADMIN_DSN)))
    if args.disk > 0:
        found = disk_flushes(args.disk, args.disk_dir)
        print(
            f"disk: {found['n']:,} flushes of 8 KiB in {args.disk:g} s, p50 {found['p50']} "
            f"ms, p99 {found['p99']} ms, p99.9 {found['p999']} ms, max {found['max']} ms; "
            f"over 50 ms: {found['over_50_ms']}, over 200 ms: {found['over_200_ms']}"
        )
