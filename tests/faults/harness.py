"""A fleet under load, for fault tests: instances, resuming clients, retrying publishers.

Clients behave like the reference client (examples/listen.py): they remember the last
seq they processed and reconnect with `after=<seq>`, moving to the next instance when
theirs goes away. Publishers give every logical notification its own Idempotency-Key and
retry it on any instance until it is accepted, as the deployment guide tells backends to.
The verdict is the one users rely on: each client saw 1..N exactly once, in order, and
each user has exactly N notifications stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tests.support import Server, make_token, publisher_headers, timeout


@dataclass
class Client:
    user: str
    instances: list[Server]
    start: int
    seqs: list[int] = field(default_factory=list)
    reconnects: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def last(self) -> int:
        return self.seqs[-1] if self.seqs else 0

    async def run(self) -> None:
        token = make_token(self.user)
        for index in itertools.count(self.start):
            if self.stop.is_set():
                return
            server = self.instances[index % len(self.instances)]
            url = f"{server.ws_url}?access_token={token}&after={self.last}"
            with contextlib.suppress(OSError, ConnectionClosed, InvalidHandshake, TimeoutError):
                async with connect(url, open_timeout=3, close_timeout=1) as ws:
                    while not self.stop.is_set():
                        with contextlib.suppress(TimeoutError):
                            raw = await asyncio.wait_for(ws.recv(), 0.5)
                            frame = orjson.loads(raw)
                            if frame["type"] == "notification":
                                self.seqs.append(frame["notification"]["seq"])
            self.reconnects += 1
            await asyncio.sleep(0.05)


@dataclass
class Fleet:
    instances: list[Server]
    users: list[str]
    per_user: int
    clients_per_user: int = 2
    clients: list[Client] = field(default_factory=list)
    accepted: int = 0
    retries: int = 0
    statuses: dict[int, int] = field(default_factory=dict)

    async def _publish_one(
        self, http: httpx.AsyncClient, user: str, n: int, rng: random.Random
    ) -> None:
        body = {"user_id": user, "type": "fault.test", "data": {"n": n}}
        headers = publisher_headers(**{"Idempotency-Key": f"{user}-{n}"})
        deadline = asyncio.get_running_loop().time() + timeout(90)
        while asyncio.get_running_loop().time() < deadline:
            server = rng.choice(self.instances)
            try:
                response = await http.post(
                    server.url + "/v1/notifications", json=body, headers=headers
                )
                self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
                if response.status_code in (200, 201):
                    self.accepted += 1
                    return
                assert response.status_code == 503, response.text
            except httpx.HTTPError:
                pass
            self.retries += 1
            await asyncio.sleep(0.1)
        raise AssertionError(f"publish {user}/{n} never accepted")

    async def _publisher(self, seed: int, jobs: list[tuple[str, int]]) -> None:
        rng = random.Random(seed)
        async with httpx.AsyncClient(timeout=5) as http:
            for user, n in jobs:
                await self._publish_one(http, user, n, rng)
                await asyncio.sleep(rng.uniform(0, 0.02))

    async def run(self, fault: Callable[[], Awaitable[None]], publishers: int = 4) -> None:
        """Publish everything while clients listen; inject `fault` after a third."""
        self.clients = [
            Client(user, self.instances, start=i * len(self.users) + u)
            for u, user in enumerate(self.users)
            for i in range(self.clients_per_user)
        ]
        listeners = [asyncio.create_task(c.run()) for c in self.clients]
        await asyncio.sleep(0.5)
        jobs = [(user, n) for n in range(self.per_user) for user in self.users]
        shares = [jobs[i::publishers] for i in range(publishers)]
        total = len(jobs)
        workers = [asyncio.create_task(self._publisher(i, share)) for i, share in enumerate(shares)]
        try:
            while self.accepted < total // 3 and not all(w.done() for w in workers):
                await asyncio.sleep(0.05)
            await fault()
            await asyncio.gather(*workers)
            deadline = asyncio.get_running_loop().time() + timeout(60)
            while any(c.last < self.per_user for c in self.clients):
                assert asyncio.get_running_loop().time() < deadline, self.describe()
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)  # anything extra (a duplicate) would arrive now
        finally:
            for client in self.clients:
                client.stop.set()
            await asyncio.gather(*listeners, return_exceptions=True)
            for worker in workers:
                worker.cancel()

    def describe(self) -> str:
        return (
            "; ".join(
                f"{c.user}: {len(c.seqs)} seqs, last {c.last}, {c.reconnects} reconnects"
                for c in self.clients
            )
            + f"; statuses {self.statuses}, retries {self.retries}"
        )

    def assert_exactly_once(self) -> None:
        expected = list(range(1, self.per_user + 1))
        for client in self.clients:
            assert client.seqs == expected, f"{client.user}: {self.describe()}"
