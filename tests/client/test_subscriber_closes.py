"""What a `Subscriber` does after each close code, against a scripted WebSocket server
(the `websockets` library's, on a free loopback port): each connection plays the frames
and the close of its script, and every handshake is recorded. The service itself cannot
be made to send some of these at will (4400 needs a malformed position, 4403 a
revocation); tests/e2e/test_client.py covers the rest against a real `notifier serve`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from notifier.client import (
    Backoff,
    Delivered,
    Gap,
    Revoked,
    State,
    StateChanged,
    Subscriber,
    Unauthorized,
)

NOW = Backoff(base=0.01, cap=0.01, uniform=lambda _lo, hi: hi)
NEVER = Backoff(base=1000.0, cap=1000.0, uniform=lambda _lo, hi: hi)


def note(seq: int) -> str:
    notification = {"id": f"id-{seq}", "user_id": "u", "seq": seq, "type": "t", "data": {}}
    return json.dumps({"type": "notification", "notification": notification})


def replayed(last: int, complete: bool = True) -> str:
    return json.dumps({"type": "replayed", "last_seq": last, "complete": complete})


@dataclass
class Script:
    """Per connection, in order: the frames to send, then the close code."""

    plays: list[tuple[list[str], int]]
    head: int = 0
    handshakes: list[dict[str, Any]] = field(default_factory=list)
    heads: int = 0

    async def handler(self, ws: ServerConnection) -> None:
        number = len(self.handshakes) - 1
        frames, code = self.plays[min(number, len(self.plays) - 1)]
        for frame in frames:
            await ws.send(frame)
        await ws.close(code, "scripted")

    def process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        if request.path.startswith("/v1/me/notifications"):
            self.heads += 1
            body = {"notifications": [{"seq": self.head}] if self.head else []}
            return ws.respond(HTTPStatus.OK, json.dumps(body))
        query = parse_qs(urlsplit(request.path).query)
        self.handshakes.append(
            {
                "after": int(query["after"][0]),
                "token": request.headers.get("Authorization", "").removeprefix("Bearer "),
                "at": time.monotonic(),
            }
        )
        return None


@contextlib.asynccontextmanager
async def scripted(script: Script) -> AsyncIterator[str]:
    async with serve(script.handler, "127.0.0.1", 0, process_request=script.process_request) as s:
        port = s.sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"


async def drain(subscriber: Subscriber, seconds: float = 5) -> list[Any]:
    """Every event until the subscriber raises or is closed."""
    events: list[Any] = []
    async with asyncio.timeout(seconds):
        async for event in subscriber.events():
            events.append(event)
    return events


def states(events: list[Any]) -> list[State]:
    return [e.state for e in events if isinstance(e, StateChanged)]


async def test_4403_raises_revoked_and_never_reconnects() -> None:
    script = Script([([note(1), replayed(1)], 4403)])
    async with scripted(script) as url:
        subscriber = Subscriber(url, lambda: "token", after=0, backoff=NOW)
        with pytest.raises(Revoked):
            await drain(subscriber)
    assert len(script.handshakes) == 1
    assert subscriber.state is State.REVOKED and subscriber.last_seq == 1


async def test_4401_fetches_one_fresh_token_and_reconnects_at_once() -> None:
    """The first 4401 reconnects with a fresh token at once (the backoff is 1,000 s); a
    second one in a row is `unauthorized` and backs off."""
    tokens = iter(["first", "second", "third"])
    script = Script([([replayed(0)], 4401), ([], 4401), ([replayed(0)], 1000)])
    async with scripted(script) as url:
        subscriber = Subscriber(url, lambda: next(tokens), after=0, backoff=NEVER)
        task = asyncio.create_task(drain(subscriber))
        async with asyncio.timeout(5):
            while subscriber.state is not State.UNAUTHORIZED:
                await asyncio.sleep(0.01)
        await subscriber.close()
        events = await task
    assert [h["token"] for h in script.handshakes] == ["first", "second"]
    assert script.handshakes[1]["at"] - script.handshakes[0]["at"] < 1
    assert states(events)[-2:] == [State.UNAUTHORIZED, State.CLOSED]


async def test_a_fixed_token_refused_raises_unauthorized() -> None:
    script = Script([([], 4401)])
    async with scripted(script) as url:
        subscriber = Subscriber(url, "fixed", after=0, backoff=NOW)
        with pytest.raises(Unauthorized):
            await drain(subscriber)
    assert len(script.handshakes) == 1


async def test_4400_reports_a_gap_and_restarts_from_the_head() -> None:
    """A refused position is a gap; the next connection starts at the user's head, read
    over HTTP."""
    script = Script([([], 4400), ([replayed(9)], 4403)], head=9)
    gaps: list[Gap] = []
    async with scripted(script) as url:
        subscriber = Subscriber(url, lambda: "t", after=3, backoff=NOW, on_gap=gaps.append)
        with pytest.raises(Revoked):
            await drain(subscriber)
    assert gaps == [Gap(after=3, resumed_at=None)]
    assert [h["after"] for h in script.handshakes] == [3, 9]
    assert script.heads == 1


async def test_duplicates_are_dropped_and_a_reconnect_resumes_from_the_last_seq() -> None:
    """Seqs already delivered (a replay overlapping what was seen) are dropped; after a
    1012 the subscriber reconnects with `after` = the last seq delivered."""
    script = Script(
        [
            ([note(1), note(2), note(2), note(1), replayed(2), note(3)], 1012),
            ([note(3), note(4), replayed(4)], 4403),
        ]
    )
    async with scripted(script) as url:
        subscriber = Subscriber(url, lambda: "t", after=0, backoff=NOW)
        delivered: list[int] = []
        with pytest.raises(Revoked):
            async with asyncio.timeout(5):
                async for notification in subscriber:
                    delivered.append(notification["seq"])
    assert delivered == [1, 2, 3, 4]
    assert [h["after"] for h in script.handshakes] == [0, 3]
    assert subscriber.connections == 2


async def test_complete_false_is_a_gap_event_and_the_stream_goes_on() -> None:
    script = Script([([note(7), note(8), replayed(8, complete=False)], 4403)])
    async with scripted(script) as url:
        subscriber = Subscriber(url, lambda: "t", after=2, backoff=NOW)
        events: list[Any] = []
        with pytest.raises(Revoked):
            async with asyncio.timeout(5):
                async for event in subscriber.events():
                    events.append(event)
    found = [e for e in events if isinstance(e, Gap | Delivered)]
    assert found[-1] == Gap(after=2, resumed_at=8)
    assert [e.notification["seq"] for e in found if isinstance(e, Delivered)] == [7, 8]
