"""The load generator: one process, pinned by `bench.run` to a core of its own.

    python -m bench.loadgen SPEC.json OUT.json

SPEC names the server (host, port, pid, credentials) and the scenarios to run; OUT gets
the measurements as JSON. Progress goes to stderr. `bench.run` writes SPEC, starts this
process and reads OUT; running it by hand against a server started by hand works too.

It is built to hold 20,000 sockets on one core without being the bottleneck:

- WebSocket clients are a minimal `asyncio.Protocol` on uvloop: the HTTP upgrade is
  written by hand, server frames (unmasked) are parsed by hand, pings are answered with
  pongs (uvicorn closes sockets that do not answer), nothing else is kept per socket.
- With `"transport": "sse"` in SPEC the same scenarios run over `GET /v1/sse`: each
  stream is an `asyncio.Protocol` feeding httptools' response parser (the body is
  chunked), whose events are handed to the scenario as the socket's frames would be.
- Publishers are keep-alive HTTP/1.1 connections with httptools' C response parser, one
  request in flight per connection, callbacks instead of a task per request.
- Sockets are bound to rotating source addresses 127.0.0.2..127.0.0.N
  (IP_BIND_ADDRESS_NO_PORT), so tens of thousands of connections and their TIME_WAIT
  leftovers never exhaust the ephemeral port range of one address.

Every latency is measured on one clock (time.monotonic, CLOCK_MONOTONIC) in this one
process: the publisher writes its timestamps into `data`, the receiving socket reads
them back. Every load loop is bounded both in count and in time.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import os
import random
import resource
import socket
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httptools
import orjson
from jose import jwt

monotonic = time.monotonic
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
WS_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
CLK_TCK = os.sysconf("SC_CLK_TCK")
NOTIFICATIONS_PATH = b"/v1/notifications"
BATCH_PATH = b"/v1/notifications/batch"


def log(message: str) -> None:
    print(f"[loadgen {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def raise_nofile() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard limit; returns (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


# -- statistics ---------------------------------------------------------------------------


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, int(q * len(ordered) + 0.999999) - 1))
    return ordered[rank]


def summary_ms(values: Iterable[float]) -> dict[str, float | int | None]:
    """Seconds in, milliseconds out: count, p50, p90, p99, p99.9, max, mean."""
    ordered = sorted(values)
    if not ordered:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "p999": None, "max": None}
    return {
        "n": len(ordered),
        "p50": round(percentile(ordered, 0.50) * 1000, 3),
        "p90": round(percentile(ordered, 0.90) * 1000, 3),
        "p99": round(percentile(ordered, 0.99) * 1000, 3),
        "p999": round(percentile(ordered, 0.999) * 1000, 3),
        "max": round(ordered[-1] * 1000, 3),
        "mean": round(sum(ordered) / len(ordered) * 1000, 3),
    }


# -- /proc: memory and CPU of the server, the generator and PostgreSQL ---------------------


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as file:
        text = file.read()
    return text[text.rindex(")") + 2 :].split()


def process_tree(*roots: int) -> list[int]:
    """The `roots` and all their descendants."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                children[int(_stat_fields(int(name))[1])].append(int(name))
    found, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def rss_bytes(pids: Iterable[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as file:
            for line in file:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
    return total


def cpu_seconds(pids: Iterable[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = _stat_fields(pid)
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def postgres_backends(database: str | None) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend serving `database` (by process title)."""
    found: dict[int, float] = {}
    if not database:
        return found
    marker = f" {database} ".encode()
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{name}/cmdline", "rb") as file:
                title = file.read()
                if title.startswith(b"postgres:") and marker in title:
                    found[int(name)] = cpu_seconds([int(name)])
    return found


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


class CpuMeter:
    """CPU used over a window, as a fraction of one core: the server's process tree (summed
    over the instances when there are several, each also given apart), this generator,
    and the PostgreSQL backends serving the benchmark's database (a backend that exits
    inside the window takes its share with it: a lower bound)."""

    database: str | None = None

    def __init__(self, *server_pids: int) -> None:
        self.server_pids = server_pids
        self.start()

    def _servers(self) -> list[float]:
        return [cpu_seconds(process_tree(pid)) for pid in self.server_pids]

    def start(self) -> None:
        self._t = monotonic()
        self._server = self._servers()
        self._own = own_cpu_seconds()
        self._pg = postgres_backends(self.database)

    def stop(self) -> dict[str, Any]:
        elapsed = max(1e-9, monotonic() - self._t)
        servers = [
            (now - then) / elapsed for now, then in zip(self._servers(), self._server, strict=True)
        ]
        pg = sum(
            max(0.0, cpu - self._pg.get(pid, 0.0))
            for pid, cpu in postgres_backends(self.database).items()
        )
        result: dict[str, Any] = {
            "server": round(sum(servers), 3),
            "loadgen": round((own_cpu_seconds() - self._own) / elapsed, 3),
            "postgres": round(pg / elapsed, 3) if self.database else None,
        }
        if len(servers) > 1:
            result["servers"] = [round(share, 3) for share in servers]
        return result


# -- WebSocket client ---------------------------------------------------------------------

TextSink = Callable[["WsClient", bytes], None]


def _ignore(_client: WsClient, _payload: bytes) -> None:
    COUNTS["frames_outside_a_scenario"] += 1


SINK: list[TextSink] = [_ignore]  # the scenario's handler of text frames
COUNTS: collections.Counter[str] = collections.Counter()
CLOSE_CODES: collections.Counter[int] = collections.Counter()


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A client frame (clients must mask; a zero mask key leaves the payload as is)."""
    size = len(payload)
    if size < 126:
        head = bytes((0x80 | opcode, 0x80 | size))
    elif size < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + size.to_bytes(8, "big")
    return head + b"\x00\x00\x00\x00" + payload


class HandshakeRefused(Exception):
    pass


class WsClient(asyncio.Protocol):
    __slots__ = ("buf", "close_code", "frag", "frag_op", "open", "transport", "user", "waiter")

    def __init__(self, user: str, waiter: asyncio.Future[float]) -> None:
        self.user = user
        self.waiter = waiter
        self.transport: Any = None
        self.buf = bytearray()
        self.open = False
        self.close_code: int | None = None
        self.frag: list[bytes] | None = None
        self.frag_op = 0

    def connection_made(self, transport: Any) -> None:  # uvloop's is no asyncio.Transport
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.open and self.close_code is None and not CLOSING:
            COUNTS["sockets_dropped_without_close_frame"] += 1
        self.open = False
        if not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection lost during the handshake"))

    def data_received(self, data: bytes) -> None:
        if self.open:
            self._frames(data)
            return
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end])
        rest = bytes(self.buf[end + 4 :])
        self.buf = bytearray()
        if not head.startswith(b"HTTP/1.1 101"):
            if not self.waiter.done():
                status = head.split(b"\r\n", 1)[0].decode(errors="replace")
                self.waiter.set_exception(HandshakeRefused(status))
            assert self.transport is not None
            self.transport.close()
            return
        self.open = True
        if not self.waiter.done():
            self.waiter.set_result(monotonic())
        if rest:
            self._frames(rest)

    def _frames(self, data: bytes | bytearray) -> None:
        if self.buf:
            self.buf += data
            data = self.buf
        size = len(data)
        pos = 0
        while size - pos >= 2:
            b1 = data[pos + 1]
            length = b1 & 0x7F
            head = 2
            if length == 126:
                if size - pos < 4:
                    break
                length = (data[pos + 2] << 8) | data[pos + 3]
                head = 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                head = 10
            if b1 & 0x80:  # a masked server frame is a protocol error
                COUNTS["masked_server_frames"] += 1
                assert self.transport is not None
                self.transport.abort()
                return
            end = pos + head + length
            if end > size:
                break
            b0 = data[pos]
            payload = bytes(data[pos + head : end])
            pos = end
            self._message(b0, payload)
        self.buf = bytearray(data[pos:]) if pos < size else bytearray()

    def _message(self, b0: int, payload: bytes) -> None:
        opcode = b0 & 0x0F
        final = b0 & 0x80
        if opcode == 0:  # continuation
            if self.frag is None:
                return
            self.frag.append(payload)
            if not final:
                return
            payload, opcode, self.frag = b"".join(self.frag), self.frag_op, None
        elif opcode in (1, 2) and not final:
            self.frag, self.frag_op = [payload], opcode
            return
        transport = self.transport
        assert transport is not None
        if opcode == 1:
            SINK[0](self, payload)
        elif opcode == 9:
            transport.write(client_frame(0xA, payload))
        elif opcode == 8:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.close_code = code
            CLOSE_CODES[code] += 1
            with contextlib.suppress(Exception):
                transport.write(client_frame(0x8, payload[:2]))
            transport.close()
        elif opcode == 2:
            COUNTS["binary_frames"] += 1

    def abort(self) -> None:
        self.open = False  # closed by us: not counted as dropped
        if self.transport is not None:
            self.transport.abort()


CLOSING = False  # set while this process closes its own sockets


class SseClient(asyncio.Protocol):
    """A `GET /v1/sse` stream with the interface of `WsClient`: each event reaches the
    scenario's sink as the socket's frame would (a notification event's data wrapped
    in a `notification` frame), and the `close` event's code is counted like a close
    frame's."""

    __slots__ = ("buf", "close_code", "open", "parser", "transport", "user", "waiter")

    def __init__(self, user: str, waiter: asyncio.Future[float]) -> None:
        self.user = user
        self.waiter = waiter
        self.transport: Any = None
        self.buf = b""
        self.open = False
        self.close_code: int | None = None
        self.parser = httptools.HttpResponseParser(self)

    def connection_made(self, transport: Any) -> None:  # uvloop's is no asyncio.Transport
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.open and self.close_code is None and not CLOSING:
            COUNTS["sockets_dropped_without_close_frame"] += 1
        self.open = False
        if not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection lost during the handshake"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            COUNTS["sse_parse_errors"] += 1
            self.abort()

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status != 200:
            if not self.waiter.done():
                self.waiter.set_exception(HandshakeRefused(f"HTTP {status}"))
            self.transport.close()
            return
        self.open = True
        if not self.waiter.done():
            self.waiter.set_result(monotonic())

    def on_body(self, body: bytes) -> None:
        data = self.buf + body if self.buf else body
        *events, self.buf = data.split(b"\n\n")
        for event in events:
            if event.startswith(b":"):
                continue  # a heartbeat
            kind, _, rest = event.partition(b"\n")
            kind = kind.removeprefix(b"event: ")
            payload = rest.partition(b"data: ")[2]  # the first: JSON has no raw newline
            if kind == b"notification":
                SINK[0](self, b'{"type":"notification","notification":' + payload + b"}")
            elif kind == b"close":
                self.close_code = int(orjson.loads(payload)["code"])
                CLOSE_CODES[self.close_code] += 1
            else:
                SINK[0](self, b'{"type":"' + kind + b'"}')

    def on_message_complete(self) -> None:
        self.open = False
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.open = False  # closed by us: not counted as dropped
        if self.transport is not None:
            self.transport.abort()


def follow_seq(holder: Any, seq: int) -> bool:
    """A stream's next notification seq, checked against the last one it received
    (`holder.last_seq`, counting `holder.gaps` and `holder.duplicates`), as the SDK's
    dedupe sees it: False for a duplicate, which is dropped."""
    if seq <= holder.last_seq:
        holder.duplicates += 1
        return False
    if seq != holder.last_seq + 1:
        holder.gaps += 1
    holder.last_seq = seq
    return True


# -- HTTP/1.1 keep-alive client -----------------------------------------------------------

Done = Callable[[int, bytes], None]


class HttpConn(asyncio.Protocol):
    """One keep-alive connection, one request at a time; status 0 means the connection
    failed before a response."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: Any = None
        self.done: Done | None = None
        self.body: list[bytes] = []
        self.alive = True
        self.instance = 0  # which of the generator's servers it talks to

    def connection_made(self, transport: Any) -> None:  # uvloop's is no asyncio.Transport
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        self._finish(0, b"")

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.alive = False
            assert self.transport is not None
            self.transport.abort()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        body = b"".join(self.body)
        self.body = []
        self._finish(self.parser.get_status_code(), body)

    def _finish(self, status: int, body: bytes) -> None:
        done, self.done = self.done, None
        if done is not None:
            done(status, body)

    def send(self, request: bytes, done: Done) -> None:
        assert self.done is None
        if not self.alive or self.transport is None or self.transport.is_closing():
            self.alive = False
            done(0, b"")
            return
        self.done = done
        self.transport.write(request)

    async def request(self, request: bytes) -> tuple[int, bytes]:
        future: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()

        def done(status: int, body: bytes) -> None:
            if not future.done():
                future.set_result((status, body))

        self.send(request, done)
        return await future

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()


# -- the generator ------------------------------------------------------------------------


@dataclass
class Delivery:
    """What one scenario run saw arrive on its sockets."""

    tag: int
    latency: list[float] = field(default_factory=list)  # from the intended send time
    sent_at: list[float] = field(default_factory=list)  # the intended send times
    latency_wire: list[float] = field(default_factory=list)  # from the write to the socket
    seen: set[int] = field(default_factory=set)
    duplicates: int = 0
    wrong_user: int = 0
    stale: int = 0
    other: int = 0
    first: float = 0.0
    last: float = 0.0

    def sink(self, client: WsClient, payload: bytes) -> None:
        now = monotonic()
        self.frame(client, orjson.loads(payload), now)

    def frame(self, client: WsClient, frame: dict[str, Any], now: float) -> None:
        """One text frame, parsed, received at `now` (a subclass adds checks here)."""
        if frame.get("type") != "notification":
            self.other += 1
            return
        notification = frame["notification"]
        data = notification["data"]
        if data.get("r") != self.tag:
            self.stale += 1
            return
        index = data["i"]
        if index in self.seen:
            self.duplicates += 1
            return
        if notification["user_id"] != client.user:
            self.wrong_user += 1
        self.seen.add(index)
        if "t" in data:
            self.latency.append(now - data["t"])
            self.sent_at.append(data["t"])
            self.latency_wire.append(now - data["w"])
        if not self.first:
            self.first = now
        self.last = now

    def slowest(self, start: float, count: int = 10) -> list[list[float]]:
        """[seconds into the run, latency ms] of the slowest deliveries."""
        worst = sorted(zip(self.latency, self.sent_at, strict=True), reverse=True)[:count]
        return [[round(sent - start, 3), round(lat * 1000, 3)] for lat, sent in worst]

    @property
    def count(self) -> int:
        return len(self.seen)

    def checks(self) -> dict[str, int]:
        return {
            "duplicates": self.duplicates,
            "wrong_user": self.wrong_user,
            "stale_frames": self.stale,
            "other_frames": self.other,
        }


class Generator:
    # The stream classes; a scenario elsewhere (bench.storm) passes subclasses that hook
    # into `connection_lost`.
    ws_class: type[WsClient] = WsClient
    sse_class: type[SseClient] = SseClient
    # What each run's frames are checked by; bench.cross adds per-socket seq checks.
    delivery_class: type[Delivery] = Delivery

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.host: str = spec["host"]
        self.port: int = spec["port"]
        self.server_pid: int = spec["server_pid"]
        # More instances of the same service on one database (bench.cross): sockets and
        # publishes go round-robin over all of them, this `port` and `server_pid` first.
        self.peers: list[dict[str, int]] = spec.get("peers", [])
        self.secret: str = spec["jwt_secret"]
        self.api_key: bytes = spec["api_key"].encode()
        self.prefix: str = spec["user_prefix"]
        self.connect_concurrency: int = spec.get("connect_concurrency", 200)
        self.publish_connections: int = spec.get("publish_connections", 64)
        self.keyed: bool = spec.get("keyed", False)
        """Closed-loop publishes carry idempotency keys, as the Python SDK's do."""
        self.handshake_timeout: float = spec.get("handshake_timeout", 30.0)
        self.socket_cap: int = spec.get("socket_cap", 1_000_000)
        CpuMeter.database = spec.get("pg_database")
        count = max(1, spec.get("source_addresses", 16))
        self.sources = [f"127.0.0.{2 + i}" for i in range(count)]
        self.clients: list[WsClient] = []
        self.users_opened = 0
        self.tags = 0
        self.rng = random.Random(spec.get("seed", 4))
        self.loop = asyncio.get_running_loop()
        self.host_header = f"{self.host}:{self.port}".encode()
        self.sse = spec.get("transport", "ws") == "sse"
        """Streams are `GET /v1/sse` responses instead of WebSockets."""

    @property
    def ports(self) -> list[int]:
        return [self.port, *(peer["port"] for peer in self.peers)]

    @property
    def server_pids(self) -> list[int]:
        return [self.server_pid, *(peer["server_pid"] for peer in self.peers)]

    # -- sockets ------------------------------------------------------------------------

    def token(self, user: str) -> str:
        now = int(time.time())
        claims = {"sub": user, "iat": now, "exp": now + 6 * 3600}
        return str(jwt.encode(claims, self.secret, algorithm="HS256"))

    def upgrade(self, token: str, after: int | None) -> bytes:
        query = f"access_token={token}" + (f"&after={after}" if after is not None else "")
        if self.sse:
            return (
                f"GET /v1/sse?{query} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Accept: text/event-stream\r\n\r\n"
            ).encode()
        return (
            f"GET /v1/ws?{query} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "
            f"{WS_KEY.decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()

    async def open_socket(
        self, user: str, request: bytes, source: str, port: int | None = None
    ) -> tuple[WsClient | SseClient, float]:
        started = monotonic()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind((source, 0))
            sock.setblocking(False)
            await asyncio.wait_for(
                self.loop.sock_connect(sock, (self.host, port or self.port)),
                self.handshake_timeout,
            )
            waiter: asyncio.Future[float] = self.loop.create_future()
            kind: type[WsClient | SseClient] = self.sse_class if self.sse else self.ws_class
            transport, client = await self.loop.create_connection(
                lambda: kind(user, waiter), sock=sock
            )
        except BaseException:
            sock.close()
            raise
        if client.transport is None:  # uvloop may call connection_made a little later
            client.transport = transport
        transport.write(request)
        try:
            opened = await asyncio.wait_for(waiter, self.handshake_timeout)
        except BaseException:
            client.abort()
            raise
        return client, opened - started

    async def open_many(
        self, users: list[str], *, after: int | None = None
    ) -> tuple[list[WsClient], list[float], dict[str, int], float]:
        """Open one socket per user, `connect_concurrency` handshakes in flight, the i-th
        to the i-th server round-robin; tokens are minted before the clock starts.
        (clients, handshake seconds, failures, elapsed)"""
        requests = [self.upgrade(self.token(user), after) for user in users]
        ports = self.ports
        opened: list[WsClient] = []
        times: list[float] = []
        failures: collections.Counter[str] = collections.Counter()
        work = iter(enumerate(users))
        deadline = monotonic() + self.handshake_timeout + len(users) / 50

        async def worker() -> None:
            for index, user in work:
                if monotonic() > deadline:
                    failures["overall deadline"] += 1
                    continue
                source = self.sources[index % len(self.sources)]
                port = ports[index % len(ports)]
                try:
                    client, seconds = await self.open_socket(user, requests[index], source, port)
                except (OSError, TimeoutError, HandshakeRefused, ConnectionError) as error:
                    failures[f"{type(error).__name__}: {str(error)[:80]}"] += 1
                    continue
                opened.append(client)
                times.append(seconds)

        started = monotonic()
        workers = min(self.connect_concurrency, max(1, len(users)))
        await asyncio.gather(*(worker() for _ in range(workers)))
        return opened, times, dict(failures), monotonic() - started

    async def ensure_connected(self, count: int) -> dict[str, Any]:
        """Grow the set of live sockets (one user each) to `count`."""
        count = min(count, self.socket_cap)
        self.clients = [client for client in self.clients if client.open]
        missing = count - len(self.clients)
        if missing <= 0:
            return {"opened": 0}
        users = [f"{self.prefix}u{self.users_opened + i}" for i in range(missing)]
        self.users_opened += missing
        log(f"opening {missing} sockets (to {count})")
        clients, times, failures, elapsed = await self.open_many(users)
        self.clients.extend(clients)
        if failures:
            log(f"socket failures: {failures}")
        return {
            "opened": len(clients),
            "seconds": round(elapsed, 3),
            "handshake_ms": summary_ms(times),
            "failures": failures,
        }

    def live_users(self) -> list[str]:
        return [client.user for client in self.clients if client.open]

    def close_all(self) -> None:
        global CLOSING
        CLOSING = True
        for client in self.clients:
            client.abort()
        self.clients = []
        CLOSING = False

    # -- HTTP ---------------------------------------------------------------------------

    async def http_pool(self, size: int, first: int = 0) -> list[HttpConn]:
        """`size` connections, the k-th to server `first + k` round-robin."""
        ports = self.ports

        async def one(instance: int) -> HttpConn:
            transport, conn = await self.loop.create_connection(
                HttpConn, self.host, ports[instance]
            )
            if conn.transport is None:
                conn.transport = transport
            conn.instance = instance
            return conn

        instances = [(first + k) % len(ports) for k in range(size)]
        return list(await asyncio.gather(*(one(instance) for instance in instances)))

    def post(self, path: bytes, body: bytes, key: bytes | None = None) -> bytes:
        """The request, with an `Idempotency-Key` header when `key` is given."""
        return b"".join(
            (
                b"POST ",
                path,
                b" HTTP/1.1\r\nHost: ",
                self.host_header,
                b"\r\nAuthorization: Bearer ",
                self.api_key,
                b"\r\nIdempotency-Key: " + key if key is not None else b"",
                b"\r\nContent-Type: application/json\r\nContent-Length: ",
                str(len(body)).encode(),
                b"\r\n\r\n",
                body,
            )
        )

    def next_tag(self) -> int:
        self.tags += 1
        return self.tags

    # -- warm-up and quiet ----------------------------------------------------------------

    async def warmup(self, sockets: int = 20, publishes: int = 100) -> None:
        """First handshakes and publishes pay for imports, pools and caches: not measured."""
        users = [f"{self.prefix}warm{i}" for i in range(sockets)]
        clients, _times, _failures, _elapsed = await self.open_many(users)
        delivery = self.delivery_class(self.next_tag())
        SINK[0] = delivery.sink
        conns = await self.http_pool(len(self.ports))  # every server warms up
        for index in range(publishes):
            user = users[index % len(users)]
            now = monotonic()
            data = {"r": delivery.tag, "i": index, "t": now, "w": now}
            body = orjson.dumps({"user_id": user, "type": "bench.warmup", "data": data})
            await conns[index % len(conns)].request(self.post(NOTIFICATIONS_PATH, body))
        deadline = monotonic() + 5
        while delivery.count < publishes and monotonic() < deadline:
            await asyncio.sleep(0.02)
        for conn in conns:
            conn.close()
        for client in clients:
            client.abort()
        SINK[0] = _ignore
        await asyncio.sleep(0.3)

    async def quiesce(self, limit: float = 15.0) -> None:
        """Wait (bounded) until the server is idle again after a run that overloaded it.
        The generator's own garbage is collected here, outside any measurement."""
        gc.collect()
        gc.freeze()
        deadline = monotonic() + limit
        while monotonic() < deadline:
            meter = CpuMeter(*self.server_pids)
            await asyncio.sleep(0.5)
            if meter.stop()["server"] < 0.15:
                return

    # -- scenarios ------------------------------------------------------------------------

    async def connect(self, n: int) -> dict[str, Any]:
        requested = n
        n = min(n, self.socket_cap)
        await self.warmup()
        self.close_all()
        await asyncio.sleep(0.5)
        pids = process_tree(*self.server_pids)
        rss_before = rss_bytes(pids)
        users = [f"{self.prefix}c{i}" for i in range(n)]
        CLOSE_CODES.clear()
        meter = CpuMeter(*self.server_pids)
        clients, times, failures, elapsed = await self.open_many(users)
        cpu = meter.stop()
        self.clients = clients
        await asyncio.sleep(1.0)  # let the server finish the last accepts
        rss_after = rss_bytes(process_tree(*self.server_pids))
        alive = sum(1 for client in clients if client.open)
        opened = len(clients)
        result = {
            "requested": requested,
            "n": n,
            "opened": opened,
            "alive_after_1s": alive,
            "close_codes": dict(CLOSE_CODES),
            "failures": failures,
            "seconds": round(elapsed, 3),
            "rate_per_s": round(opened / elapsed, 1) if elapsed else None,
            "handshake_ms": summary_ms(times),
            "rss_before_bytes": rss_before,
            "rss_after_bytes": rss_after,
            "rss_per_socket_bytes": round((rss_after - rss_before) / opened) if opened else None,
            "cpu": cpu,
        }
        log(
            f"connect {opened}/{n}: {result['rate_per_s']}/s, handshake p99 "
            f"{result['handshake_ms']['p99']} ms, RSS/socket {result['rss_per_socket_bytes']} B, "
            f"cpu {cpu}"
        )
        self.close_all()
        return result

    async def open_loop(self, rate: float, duration: float, drain: float) -> dict[str, Any]:
        """Publish single notifications to random connected users on a clock (open loop),
        over `publish_connections` keep-alive connections. A send whose time has come
        while every connection is busy waits in a queue here: its latency still counts
        from when it was due (no coordinated omission). Sends not made by the end of
        `duration + drain` are abandoned and count as not delivered. With several servers
        the i-th send goes to server i mod N, over that server's share of the connections,
        and waits for one of those."""
        users = self.live_users()
        total = int(rate * duration)
        delivery = self.delivery_class(self.next_tag())
        servers = len(self.ports)
        conns = await self.http_pool(max(servers, self.publish_connections))
        # FIFO per server: every connection stays in use (keep-alive).
        free = [collections.deque(c for c in conns if c.instance == i) for i in range(servers)]
        backlog: list[collections.deque[tuple[int, float]]] = [
            collections.deque() for _ in range(servers)
        ]
        reopening: set[asyncio.Task[None]] = set()
        http_wire: list[float] = []
        statuses: collections.Counter[int] = collections.Counter()
        lateness: list[float] = []  # generator's own delay when a connection was free
        state: dict[str, Any] = {"sent": 0, "completed": 0, "in_flight": 0, "last_done": 0.0}
        rng = self.rng
        post = self.post
        tag = delivery.tag
        start = monotonic() + 0.05
        stop_sending = start + duration + drain

        def fire(conn: HttpConn, index: int, intended: float) -> None:
            written = monotonic()
            data = {"r": tag, "i": index, "t": intended, "w": written}
            body = orjson.dumps(
                {"user_id": rng.choice(users), "type": "bench.latency", "data": data}
            )
            state["sent"] += 1
            state["in_flight"] += 1

            def done(status: int, _body: bytes) -> None:
                now = monotonic()
                state["in_flight"] -= 1
                state["completed"] += 1
                state["last_done"] = now
                http_wire.append(now - written)
                statuses[status] += 1
                if conn.alive:
                    release(conn)
                else:
                    replace(conn.instance)

            conn.send(post(NOTIFICATIONS_PATH, body), done)

        def release(conn: HttpConn) -> None:
            waiting = backlog[conn.instance]
            if waiting and monotonic() < stop_sending:
                fire(conn, *waiting.popleft())
            else:
                free[conn.instance].append(conn)

        def take(instance: int) -> HttpConn | None:
            idle = free[instance]
            while idle:
                conn = idle.popleft()
                if conn.alive:
                    return conn
                replace(instance)
            return None

        def replace(instance: int) -> None:
            """A connection the server closed: open another in its place."""

            async def reopen() -> None:
                with contextlib.suppress(OSError):
                    [conn] = await self.http_pool(1, instance)
                    conns.append(conn)
                    release(conn)

            task = asyncio.ensure_future(reopen())
            reopening.add(task)
            task.add_done_callback(reopening.discard)

        SINK[0] = delivery.sink
        CLOSE_CODES.clear()
        meter = CpuMeter(*self.server_pids)
        index = 0
        while index < total and monotonic() < stop_sending:
            now = monotonic()
            due = min(total, int((now - start) * rate) + 1) if now >= start else 0
            while index < due:
                intended = start + index / rate
                conn = take(index % servers)
                if conn is not None:
                    # A connection is free: the send goes now. The generator's own delay
                    # (its 1 ms tick) is recorded apart and not charged to the server.
                    lateness.append(now - intended)
                    fire(conn, index, monotonic())
                else:
                    # Every connection busy: the server is behind; this send's latency
                    # counts from when it was due (no coordinated omission).
                    backlog[index % servers].append((index, intended))
                index += 1
            if index < total:
                # Ticks of at least 1 ms (sends that fall due meanwhile go out together,
                # each keeping its own intended time): no busy loop at high rates.
                await asyncio.sleep(max(0.001, start + index / rate - monotonic()))
        send_window_end = monotonic()
        while monotonic() < stop_sending and (
            any(backlog) or state["in_flight"] or delivery.count < statuses[201] + statuses[200]
        ):
            await asyncio.sleep(0.01)
        cpu = meter.stop()
        abandoned = sum(map(len, backlog)) + (total - index)
        last_response = state["last_done"] or monotonic()
        for conn in conns:
            conn.close()
        SINK[0] = _ignore
        ok = statuses[201] + statuses[200]
        result = {
            "rate": rate,
            "duration_s": duration,
            "sockets": len(users),
            "scheduled": total,
            "sent": state["sent"],
            "abandoned_unsent": abandoned,
            "http_ok": ok,
            "http_status": {str(k): v for k, v in statuses.items()},
            "delivered": delivery.count,
            "delivered_pct": round(100.0 * delivery.count / total, 2) if total else None,
            "achieved_rate": round(ok / max(1e-9, last_response - start), 1),
            "send_window_s": round(send_window_end - start, 3),
            "latency_ms": summary_ms(delivery.latency),
            "slowest": delivery.slowest(start),
            "latency_from_write_ms": summary_ms(delivery.latency_wire),
            "http_ms": summary_ms(http_wire),
            "generator_lateness_ms": summary_ms(lateness),
            "close_codes": dict(CLOSE_CODES),
            "checks": delivery.checks(),
            "cpu": cpu,
        }
        log(
            f"open loop {rate}/s x {duration}s on {len(users)} sockets: delivered "
            f"{result['delivered_pct']}%, p50 {result['latency_ms']['p50']} ms, p99 "
            f"{result['latency_ms']['p99']} ms, achieved {result['achieved_rate']}/s, cpu {cpu}"
        )
        return result

    async def latency(
        self, users: int, rates: list[float], duration: float, drain: float
    ) -> dict[str, Any]:
        connected = await self.ensure_connected(users)
        await self.warmup()
        runs = []
        for rate in rates:
            await self.quiesce()
            runs.append(await self.open_loop(rate, duration, drain))
        rss = rss_bytes(process_tree(*self.server_pids))
        return {"users": users, "connect": connected, "runs": runs, "server_rss_bytes": rss}

    async def scale(
        self, levels: list[int], rates: list[float], duration: float, drain: float
    ) -> dict[str, Any]:
        await self.warmup()
        points = []
        for level in levels:
            connected: dict[str, Any] | None = await self.ensure_connected(level)
            for rate in rates:
                await self.quiesce()
                run = await self.open_loop(rate, duration, drain)
                run["requested_sockets"] = level
                run["connect"] = connected
                connected = None
                run["server_rss_bytes"] = rss_bytes(process_tree(*self.server_pids))
                points.append(run)
        return {"rates": rates, "points": points}

    async def fanout(self, users: int, repeat: int, timeout: float) -> dict[str, Any]:
        await self.ensure_connected(users)
        targets = list(dict.fromkeys(self.live_users()))[:users]
        runs = []
        for _ in range(repeat):
            await self.quiesce()
            [conn] = await self.http_pool(1)  # after the quiet: no idle keep-alive timeout
            delivery = self.delivery_class(self.next_tag())
            items = [
                {"user_id": user, "type": "bench.fanout", "data": {"r": delivery.tag, "i": i}}
                for i, user in enumerate(targets)
            ]
            request = self.post(BATCH_PATH, orjson.dumps({"notifications": items}))
            SINK[0] = delivery.sink
            meter = CpuMeter(*self.server_pids)
            started = monotonic()
            status, _body = await conn.request(request)
            answered = monotonic() - started
            conn.close()
            deadline = started + timeout
            while delivery.count < len(targets) and monotonic() < deadline:
                await asyncio.sleep(0.002)
            cpu = meter.stop()
            SINK[0] = _ignore
            run = {
                "users": len(targets),
                "http_status": status,
                "http_ms": round(answered * 1000, 3),
                "delivered": delivery.count,
                "first_delivery_ms": round((delivery.first - started) * 1000, 3)
                if delivery.first
                else None,
                "last_delivery_ms": round((delivery.last - started) * 1000, 3)
                if delivery.last
                else None,
                "checks": delivery.checks(),
                "cpu": cpu,
            }
            log(
                f"fan-out {len(targets)}: HTTP {status} in {run['http_ms']} ms, "
                f"{delivery.count} delivered, last at {run['last_delivery_ms']} ms"
            )
            runs.append(run)
        complete = [r["last_delivery_ms"] for r in runs if r["delivered"] == len(targets)]
        median = sorted(complete)[len(complete) // 2] if complete else None
        return {"users": len(targets), "runs": runs, "last_delivery_ms_median": median}

    async def closed_loop(
        self, concurrency: int, duration: float, batch: int, drain: float, targets: int
    ) -> dict[str, Any]:
        users = self.live_users()[:targets]
        delivery = self.delivery_class(self.next_tag())
        conns = await self.http_pool(concurrency)
        statuses: collections.Counter[int] = collections.Counter()
        latencies: list[float] = []
        persisted = 0
        counter = 0
        max_requests = int(duration * 200_000)  # a count bound besides the time bound
        SINK[0] = delivery.sink
        meter = CpuMeter(*self.server_pids)
        started = monotonic()
        end = started + duration

        async def worker(conn: HttpConn) -> None:
            nonlocal persisted, counter
            while monotonic() < end and counter < max_requests and conn.alive:
                base = counter * batch
                counter += 1
                if batch == 1:
                    item = {"user_id": self.rng.choice(users), "type": "bench.tp"}
                    item["data"] = {"r": delivery.tag, "i": base}
                    key = f"{self.prefix}{delivery.tag}-{base}".encode() if self.keyed else None
                    request = self.post(NOTIFICATIONS_PATH, orjson.dumps(item), key)
                else:
                    items = [
                        {
                            "user_id": self.rng.choice(users),
                            "type": "bench.tp",
                            "data": {"r": delivery.tag, "i": base + k},
                        }
                        for k in range(batch)
                    ]
                    if self.keyed:
                        for k, one in enumerate(items):
                            one["idempotency_key"] = f"{self.prefix}{delivery.tag}-{base + k}"
                    body = orjson.dumps({"notifications": items})
                    request = self.post(BATCH_PATH, body)
                sent = monotonic()
                status, _body = await conn.request(request)
                latencies.append(monotonic() - sent)
                statuses[status] += 1
                if status in (200, 201):
                    persisted += batch

        await asyncio.gather(*(worker(conn) for conn in conns))
        finished = monotonic()
        deadline = finished + drain
        while delivery.count < persisted and monotonic() < deadline:
            await asyncio.sleep(0.01)
        cpu = meter.stop()
        SINK[0] = _ignore
        for conn in conns:
            conn.close()
        delivered_window = (delivery.last - started) if delivery.last else 0.0
        result = {
            "concurrency": concurrency,
            "batch": batch,
            "duration_s": duration,
            "sockets": len(users),
            "requests": sum(statuses.values()),
            "http_status": {str(k): v for k, v in statuses.items()},
            "persisted": persisted,
            "persisted_per_s": round(persisted / (finished - started), 1),
            "delivered": delivery.count,
            "delivered_per_s": round(delivery.count / delivered_window, 1)
            if delivered_window
            else 0.0,
            "http_ms": summary_ms(latencies),
            "checks": delivery.checks(),
            "cpu": cpu,
        }
        log(
            f"closed loop C={concurrency} batch={batch}: {result['persisted_per_s']} persisted/s, "
            f"{result['delivered_per_s']} delivered/s, cpu {cpu}"
        )
        return result

    async def throughput(
        self, users: int, concurrency: list[int], duration: float, batch: int, drain: float
    ) -> dict[str, Any]:
        await self.ensure_connected(users)
        runs = []
        for size in (1, batch):
            for level in concurrency:
                await self.quiesce()
                runs.append(await self.closed_loop(level, duration, size, drain, users))
        return {"users": users, "runs": runs}

    async def replay(self, count: int, batch: int, timeout: float) -> dict[str, Any]:
        user = f"{self.prefix}replay"
        [conn] = await self.http_pool(1)
        started = monotonic()
        for first in range(0, count, batch):
            items = [
                {"user_id": user, "type": "bench.replay", "data": {"i": i}}
                for i in range(first, min(count, first + batch))
            ]
            status, body = await conn.request(
                self.post(BATCH_PATH, orjson.dumps({"notifications": items}))
            )
            if status != 201:
                raise RuntimeError(f"replay batch refused: {status} {body[:200]!r}")
        published = monotonic() - started
        conn.close()
        await self.quiesce()

        seqs: list[int] = []
        finished: asyncio.Future[dict[str, Any]] = self.loop.create_future()

        def sink(client: WsClient, payload: bytes) -> None:
            if client.user != user:
                return
            frame = orjson.loads(payload)
            if frame["type"] == "notification":
                seqs.append(frame["notification"]["seq"])
            elif frame["type"] == "replayed" and not finished.done():
                finished.set_result(frame)

        SINK[0] = sink
        meter = CpuMeter(*self.server_pids)
        started = monotonic()
        client, handshake = await self.open_socket(
            user, self.upgrade(self.token(user), 0), self.sources[0]
        )
        try:
            replayed: dict[str, Any] | None = await asyncio.wait_for(finished, timeout)
        except TimeoutError:
            replayed = None
        elapsed = monotonic() - started
        cpu = meter.stop()
        SINK[0] = _ignore
        client.abort()
        in_order = seqs == list(range(1, count + 1))
        result = {
            "count": count,
            "publish_s": round(published, 3),
            "received": len(seqs),
            "seqs_1_to_n_in_order": in_order,
            "replayed_frame": replayed,
            "handshake_ms": round(handshake * 1000, 3),
            "seconds_to_all": round(elapsed, 3) if replayed is not None else None,
            "per_s": round(len(seqs) / elapsed, 1) if elapsed else None,
            "cpu": cpu,
        }
        log(f"replay {count}: {len(seqs)} received in {elapsed:.3f} s, in order: {in_order}")
        return result


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    generator = Generator(spec)
    results = []
    for scenario in spec["scenarios"]:
        name = scenario["name"]
        args = {k: v for k, v in scenario.items() if k != "name"}
        COUNTS.clear()
        started = monotonic()
        outcome = await getattr(generator, name)(**args)
        outcome["name"] = name
        outcome["wall_s"] = round(monotonic() - started, 3)
        outcome["counters"] = dict(COUNTS)
        results.append(outcome)
    generator.close_all()
    return {
        "loadgen": {
            "pid": os.getpid(),
            "cpu_affinity": sorted(os.sched_getaffinity(0)),
            "nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
            "event_loop": type(asyncio.get_running_loop()).__module__,
        },
        "scenarios": results,
    }


def main() -> None:
    spec_path, out_path = sys.argv[1], sys.argv[2]
    with open(spec_path, "rb") as file:
        spec = orjson.loads(file.read())
    if spec.get("cpu") is not None:
        os.sched_setaffinity(0, {spec["cpu"]})
    raise_nofile()
    # No collection pauses inside a measurement: the generator collects between runs
    # (`quiesce`) and freezes what survives, so 20,000 sockets are never traversed.
    gc.disable()
    try:
        import uvloop

        result = uvloop.run(run(spec))
    except ImportError:
        result = asyncio.run(run(spec))
    with open(out_path, "wb") as file:
        file.write(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))


if __name__ == "__main__":
    main()
