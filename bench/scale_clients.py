"""One load generator process of bench.scale: its share of the sockets.

bench.scale starts `--loadgens` of these (multiprocessing, spawn) because one process
cannot hold 100,000 sockets: its RLIMIT_NOFILE is 20,000, and one source address has
about 28,000 ports to one server port. Each raises its own descriptor limit, binds its
sockets to source addresses of its own (127.0.0.x), and holds its users (`u<index>`,
a contiguous range) as bench.storm's `Peer`s on bench.loadgen's lean `WsClient`s.

It does what the parent asks over a pipe, one command at a time (`Command`), and
answers each with a dict of figures. Its sockets come back after a lost stream the way
bench.storm's clients do (`storm.Reconnects`: the SDK's full-jitter backoff, a resume
with `after=<last seq>`, the 10 s `replayed` timeout). Each notification frame's
publish-to-delivery latency is taken against the publisher's `t` in `data`: both sides
read CLOCK_MONOTONIC, which is one clock for every process of the machine.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import os
import random
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import orjson

from bench import loadgen, storm
from bench.storm import PEERS, Peer

monotonic = storm.monotonic


@dataclass(frozen=True)
class Share:
    """What one load generator process is given."""

    index: int
    first_user: int
    users: int
    sources: tuple[str, ...]
    port: int
    server_pid: int
    jwt_secret: str
    api_key: str
    connect_concurrency: int
    timeout: float
    seed: int

    def user(self, number: int) -> str:
        return f"u{self.first_user + number}"


async def receive(conn: Connection, timeout: float | None = None) -> Any:
    """The next message on `conn`, waited for on the event loop (a thread per pipe
    would need as many threads as load generators), bounded by `timeout`."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not ready.done():
            ready.set_result(None)

    fd = conn.fileno()
    loop.add_reader(fd, readable)
    try:
        await asyncio.wait_for(ready, timeout)
    finally:
        loop.remove_reader(fd)
        # The loop made the descriptor non-blocking; a message larger than the pipe's
        # buffer is read (and sent, on the same socket) in several blocking parts.
        os.set_blocking(fd, True)
    return conn.recv()  # EOFError when the other end is gone


class Clients(storm.Reconnects):
    """This process's sockets, their reconnects, and what they received per phase."""

    def __init__(self, share: Share, generator: loadgen.Generator) -> None:
        super().__init__(generator, random.Random(share.seed * 1000 + share.index))
        self.share = share
        self.peers = [
            Peer(share.user(n), generator.token(share.user(n))) for n in range(share.users)
        ]
        for peer in self.peers:
            PEERS[peer.user] = peer
        self.followers: list[asyncio.Future[None]] = []
        self.phase = "connect"
        self.new: collections.Counter[str] = collections.Counter()  # new seqs per phase
        self.before_replayed: collections.Counter[str] = collections.Counter()
        self.latency: dict[str, list[float]] = collections.defaultdict(list)
        self.lost: dict[str, Peer] = {}  # users whose stream ended since the last `mark`
        self.losses = 0  # streams ended since the last `mark` (a user may lose twice)

    # -- frames --------------------------------------------------------------------------

    def sink(self, client: Any, payload: bytes) -> None:
        """bench.storm's checks (seq order, `replayed`), then, for a notification not
        seen before, its latency when the stream was live (a frame before `replayed` is
        part of a resume's replay: counted apart)."""
        now = monotonic()
        peer = PEERS.get(client.user)
        if peer is None:
            return
        received = peer.received
        storm.sink(client, payload)
        if peer.received == received:
            return  # not a notification, or a duplicate (counted by the peer)
        self.new[self.phase] += 1
        if not peer.replayed.done():
            self.before_replayed[self.phase] += 1
            return
        sent = orjson.loads(payload)["notification"]["data"].get("t")
        if sent is not None:
            self.latency[self.phase].append(now - sent)

    # -- commands ------------------------------------------------------------------------

    async def connect(self) -> dict[str, Any]:
        """Every peer connects with `after=0` (so its stream says `replayed`), at most
        `connect_concurrency` first attempts in flight; one that fails comes back on
        the backoff, as a client would, until `timeout`."""
        gate = asyncio.Semaphore(self.share.connect_concurrency)

        async def join(peer: Peer) -> None:
            async with gate:
                if await self.attempt(peer):
                    return
            await self.come_back(peer)

        started = monotonic()
        joins = [asyncio.ensure_future(join(peer)) for peer in self.peers]
        _done, pending = await asyncio.wait(joins, timeout=self.share.timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        live = [peer for peer in self.peers if self.is_live(peer)]
        self.followers = [asyncio.ensure_future(self.follow(peer)) for peer in live]
        gc.collect()  # what the connects left, then out of every later collection's way
        gc.freeze()
        return {
            "started": started,
            "last_replayed": max(self.handshakes_at, default=None),
            "live": len(live),
            "not_live": [peer.user for peer in self.peers if not self.is_live(peer)],
            "attempts": sum(peer.attempts for peer in self.peers),
            **self.reconnect_figures(),
        }

    @staticmethod
    def is_live(peer: Peer) -> bool:
        client = peer.client
        return client is not None and client.open and peer.replayed.done()

    async def follow(self, peer: Peer) -> None:
        """A live stream for the whole run: each time it ends, come back."""
        while not self.stop:
            await peer.lost
            if self.stop:
                return
            self.lost.setdefault(peer.user, peer)
            self.losses += 1
            if not await self.come_back(peer):
                return
            if not peer.live_at:  # the first time back since the `mark`: its outage
                peer.live_at = monotonic()

    def reconnect_figures(self) -> dict[str, Any]:
        return {
            "handshakes": self.handshakes,
            "upgrades": self.upgrades,
            "refused": dict(self.refused),
            "refused_when": self.refused_when,
            "close_codes": dict(loadgen.CLOSE_CODES),
            "counters": dict(loadgen.COUNTS),
        }

    def mark(self, phase: str) -> dict[str, Any]:
        """A new phase: what is counted from here on starts from zero."""
        self.phase = phase
        self.refused.clear()
        self.refused_when.clear()
        self.handshakes = []
        self.handshakes_at = []
        self.upgrades = []
        self.lost = {}
        self.losses = 0
        for peer in self.peers:
            peer.attempts = 0
            peer.live_at = 0.0
        loadgen.CLOSE_CODES.clear()
        loadgen.COUNTS.clear()
        return {"phase": phase}

    def status(self) -> dict[str, Any]:
        return {
            "lost": len(self.lost),
            "back": sum(1 for peer in self.lost.values() if peer.live_at),
            "live": sum(1 for peer in self.peers if self.is_live(peer)),
        }

    async def settle(self, acked: dict[str, int], wait: float) -> dict[str, Any]:
        """The acknowledged seqs so far (user: the highest): wait (at most `wait` s)
        until every stream holds them, then the delivery checks and this phase's
        figures."""
        for user, seq in acked.items():
            peer = PEERS[user]
            peer.max_seq_acked = max(peer.max_seq_acked, seq)
        deadline = monotonic() + wait
        while monotonic() < deadline and any(
            peer.last_seq < peer.max_seq_acked for peer in self.peers
        ):
            await asyncio.sleep(0.05)
        phase = self.phase
        lost = list(self.lost.values())
        return {
            **storm.delivery_checks(self.peers),
            "new": self.new[phase],
            "before_replayed": self.before_replayed[phase],
            "latency": self.latency[phase],
            "live": sum(1 for peer in self.peers if self.is_live(peer)),
            "lost": len(lost),
            "losses": self.losses,
            "live_at": [peer.live_at for peer in lost if peer.live_at],
            "never_back": sum(1 for peer in lost if not peer.live_at),
            "attempts": [peer.attempts for peer in lost],
            **self.reconnect_figures(),
        }

    async def close(self) -> dict[str, Any]:
        self.stop = True
        for task in self.followers:
            task.cancel()
        await asyncio.gather(*self.followers, return_exceptions=True)
        loadgen.CLOSING = True
        closed = 0
        for peer in self.peers:
            if peer.client is not None:
                peer.client.abort()
                closed += 1
        return {"closed": closed}


async def serve(conn: Connection, share: Share) -> None:
    generator = loadgen.Generator(
        {
            "host": "127.0.0.1",
            "port": share.port,
            "server_pid": share.server_pid,
            "jwt_secret": share.jwt_secret,
            "api_key": share.api_key,
            "user_prefix": "u",
            "handshake_timeout": storm.CONNECT_TIMEOUT,
        }
    )
    generator.sources = list(share.sources)
    generator.ws_class = storm.StormWs
    clients = Clients(share, generator)  # tokens minted here, before any clock starts
    loadgen.SINK[0] = clients.sink
    conn.send({"ready": share.index})
    while True:
        command, argument = await receive(conn)
        if command == "connect":
            answer = await clients.connect()
        elif command == "mark":
            answer = clients.mark(argument)
        elif command == "status":
            answer = clients.status()
        elif command == "settle":
            answer = await clients.settle(*argument)
        elif command == "close":
            conn.send(await clients.close())
            return
        else:
            raise ValueError(f"unknown command {command!r}")
        conn.send(answer)


def main(conn: Connection, share: Share) -> None:
    """The process's entry point (multiprocessing's target)."""
    try:
        soft, _hard = loadgen.raise_nofile()
        if soft < share.users + 200:
            raise RuntimeError(f"RLIMIT_NOFILE {soft} is too low for {share.users} sockets")
        try:
            import uvloop
        except ImportError:
            asyncio.run(serve(conn, share))
        else:
            uvloop.run(serve(conn, share))
    except BaseException:
        with contextlib.suppress(OSError):
            conn.send({"error": traceback.format_exc()[-3000:]})
        raise
