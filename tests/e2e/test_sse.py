"""GET /v1/sse on a real `notifier serve`, read with httpx streaming (docs/reference.md,
"SSE: GET /v1/sse"): the WebSocket's stream as events (replay, `replayed`, live, `read`),
resumed by `after` or `Last-Event-ID` (which wins), heartbeat comments, the `close`
event at `exp` (4401), on shutdown (1012) and for a client that does not read (1013),
and the JSON refusals before any event (400, 401, 403)."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import httpx
import orjson

from tests.e2e.sse_support import SseStream, sse_open, sse_refused
from tests.e2e.ws_support import Stream, items, log_tail, own_server, rss_bytes
from tests.support import (
    Server,
    apublish,
    make_token,
    new_user,
    publish,
    publish_batch,
    recv_notifications,
    timeout,
    user_headers,
    ws_connect,
)


async def take_until_replayed(sse: SseStream, stream: Stream, seconds: float = 30) -> None:
    while True:
        event = await sse.event(seconds)
        if stream.take(event.frame()) == "replayed":
            return


async def test_replay_replayed_then_live_with_no_gap_or_duplicate(pg_server: Server) -> None:
    """A stream resumed with `after` gets every later notification in seq order, each an
    `event: notification` with `id: <seq>`, then `replayed`, then the live ones, with
    publishes racing the replay: nothing lost, nothing twice."""
    user = new_user()
    assert publish_batch(pg_server, items(user, 300)).status_code == 201
    stream = Stream(user)
    async with httpx.AsyncClient(timeout=10) as client, sse_open(pg_server, user, after=0) as sse:
        stream.connections = 1

        async def racing() -> None:
            for _ in range(50):
                assert (await apublish(client, pg_server, user)).status_code == 201

        racer = asyncio.create_task(racing())
        await take_until_replayed(sse, stream)
        await racer
        while stream.last < 350:
            stream.take((await sse.event()).frame())
        assert (await apublish(client, pg_server, user)).status_code == 201
        stream.take((await sse.event()).frame())
    assert stream.seqs == list(range(1, 352))
    assert len(stream.replayed) == 1 and stream.incomplete == []


async def test_event_data_is_the_notification_object(pg_server: Server) -> None:
    """A notification event's data is the Notification, as the HTTP API returns it."""
    user = new_user()
    async with sse_open(pg_server, user) as sse:
        created = publish(None, pg_server, user, "comment.created", {"text": "a\nb"}).json()
        event = await sse.event()
    assert event.event == "notification" and event.id == str(created["seq"])
    assert event.data == created


async def test_without_resume_only_new_notifications_arrive(pg_server: Server) -> None:
    """Without `after` there is no replay and no `replayed` event: the first event is the
    first notification committed after the response head."""
    user = new_user()
    assert publish(None, pg_server, user).status_code == 201
    async with sse_open(pg_server, user) as sse:
        assert publish(None, pg_server, user).status_code == 201
        event = await sse.event()
    assert (event.event, event.data["seq"]) == ("notification", 2)


async def test_last_event_id_resumes_and_wins_over_after(pg_server: Server) -> None:
    """`Last-Event-ID: 7` with `after=2` replays from 8: the header wins."""
    user = new_user()
    assert publish_batch(pg_server, items(user, 10)).status_code == 201
    headers = {"Last-Event-ID": "7"}
    async with sse_open(pg_server, user, after=2, headers=headers) as sse:
        before, replayed = await sse.until("replayed")
    assert [e.data["seq"] for e in before] == [8, 9, 10]
    assert replayed.data == {"last_seq": 10, "complete": True}


async def test_replayed_names_the_position_when_nothing_is_newer(pg_server: Server) -> None:
    """A resume at the head replays nothing and says so: `replayed` with last_seq = after."""
    user = new_user()
    assert publish_batch(pg_server, items(user, 3)).status_code == 201
    async with sse_open(pg_server, user, after=3) as sse:
        event = await sse.event()
    assert (event.event, event.data) == ("replayed", {"last_seq": 3, "complete": True})


async def test_read_state_changes_arrive_as_read_events(pg_server: Server) -> None:
    """Marking read over HTTP reaches the user's stream as `event: read` with the frame's
    object."""
    user = new_user()
    assert publish_batch(pg_server, items(user, 3)).status_code == 201
    async with sse_open(pg_server, user, after=3) as sse:
        await sse.until("replayed")
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.post(
                pg_server.url + "/v1/me/notifications/read",
                json={"up_to_seq": 2},
                headers=user_headers(user),
            )
        assert response.json() == {"updated": 2}
        event = await sse.event()
    assert event.event == "read"
    assert {k: v for k, v in event.data.items() if k != "type"} == {"up_to_seq": 2}


async def test_a_websocket_and_a_stream_of_one_user_both_get_everything(
    pg_server: Server,
) -> None:
    """The same notifications reach the user's WebSocket and SSE stream."""
    user = new_user()
    async with ws_connect(pg_server, user) as ws, sse_open(pg_server, user) as sse:
        batch = publish_batch(pg_server, items(user, 20)).json()["notifications"]
        over_ws = await recv_notifications(ws, 20)
        over_sse = [(await sse.event()).data for _ in range(20)]
    assert over_ws == over_sse == batch


async def test_heartbeat_comments_while_idle(tmp_path: Path) -> None:
    """An idle stream gets a comment line at the configured interval."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'beat.db'}"
    async with (
        own_server(url, NOTIFIER_SSE_HEARTBEAT_SECONDS="0.2") as server,
        sse_open(server, new_user()) as sse,
    ):
        started = time.monotonic()
        comments = [await sse.next(2) for _ in range(3)]
    assert all(c.event == ":" for c in comments), comments
    assert time.monotonic() - started < timeout(2)


async def test_the_default_heartbeat_is_at_most_20_seconds(pg_server: Server) -> None:
    """With the default settings a comment arrives within 20 seconds of silence."""
    async with sse_open(pg_server, new_user()) as sse:
        comment = await sse.next(20.5)
    assert comment.event == ":"


async def test_expired_token_gets_the_close_event_4401_and_the_end(pg_server: Server) -> None:
    """When `exp` passes the server sends `event: close` with code 4401, then ends the
    response."""
    user = new_user()
    async with sse_open(pg_server, token=make_token(user, ttl=2)) as sse:
        started = time.monotonic()
        events = await sse.rest(10)
    closes = [e for e in events if e.event == "close"]
    assert [e.data["code"] for e in closes] == [4401], events
    assert events[-1] is closes[0] and isinstance(closes[0].data["detail"], str)
    assert time.monotonic() - started < timeout(5)


async def test_sigterm_sends_close_1012_and_exits_promptly(tmp_path: Path) -> None:
    """On SIGTERM every stream (resumed or live-only) gets `event: close` with 1012 and
    ends, and the server exits with 0 without waiting out its graceful-shutdown timeout."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'sigterm.db'}"
    async with own_server(url) as server:
        first, second = new_user(), new_user()
        assert publish(None, server, first).status_code == 201
        async with sse_open(server, first, after=0) as a, sse_open(server, second) as b:
            await a.until("replayed")
            started = time.monotonic()
            exiting = asyncio.create_task(asyncio.to_thread(server.terminate))
            rest_a, rest_b = await asyncio.gather(a.rest(15), b.rest(15))
            status = await exiting
            took = time.monotonic() - started
        logs = log_tail(server)
    for rest in (rest_a, rest_b):
        events = [e for e in rest if e.event != ":"]
        assert [(e.event, e.data["code"]) for e in events] == [("close", 1012)], logs
    assert status == 0, logs
    assert took < timeout(5), f"shutdown took {took:.1f}s\n{logs}"


async def test_bad_resume_values_are_400(pg_server: Server) -> None:
    """A malformed or negative `after` or `Last-Event-ID` is 400 JSON, before any event."""
    user = new_user()
    for after, header in [("-1", None), ("abc", None), ("1.5", None), (None, "x"), ("3", "-2")]:
        headers = {"Last-Event-ID": header} if header is not None else None
        response = await sse_refused(pg_server, user, after=after, headers=headers)
        assert response.status_code == 400, (after, header, response.text)
        assert isinstance(response.json()["detail"], str)


async def test_missing_or_bad_tokens_are_401(pg_server: Server) -> None:
    """No token, a wrongly signed one, an expired one, a publisher key: 401 JSON."""
    user = new_user()
    cases: list[tuple[str | None, dict[str, str] | None]] = [
        (None, None),
        (make_token(user, secret="another-secret-that-is-long-enough-0123456789"), None),
        (make_token(user, ttl=-10), None),
        (None, {"Authorization": "Bearer test-publisher-key"}),
    ]
    for token, headers in cases:
        response = await sse_refused(pg_server, token=token, headers=headers)
        assert response.status_code == 401, (token, response.text)
        assert isinstance(response.json()["detail"], str)


async def test_the_bearer_header_authenticates_too(pg_server: Server) -> None:
    """`Authorization: Bearer <JWT>` opens the stream like `access_token`."""
    user = new_user()
    async with sse_open(pg_server, headers=user_headers(user)) as sse:
        assert publish(None, pg_server, user).status_code == 201
        assert (await sse.event()).data["user_id"] == user


async def test_any_origin_may_read_the_stream_while_the_list_is_unset(
    pg_server: Server,
) -> None:
    """Without NOTIFIER_ALLOWED_ORIGINS a cross-origin EventSource may read the stream."""
    headers = {"Origin": "https://elsewhere.example"}
    async with sse_open(pg_server, new_user(), headers=headers) as sse:
        assert sse.response.headers["access-control-allow-origin"] == "*"


async def test_origin_outside_the_allowed_list_is_403(tmp_path: Path) -> None:
    """With NOTIFIER_ALLOWED_ORIGINS set, another Origin is 403 JSON; a listed one opens
    the stream with CORS headers for it."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'origin.db'}"
    async with own_server(url, NOTIFIER_ALLOWED_ORIGINS="https://app.example") as server:
        user = new_user()
        response = await sse_refused(server, user, headers={"Origin": "https://evil.example"})
        assert response.status_code == 403
        good = {"Origin": "https://app.example"}
        async with sse_open(server, user, headers=good) as sse:
            allowed = sse.response.headers["access-control-allow-origin"]
        assert allowed == "https://app.example"


async def test_a_client_that_does_not_read_is_closed_1013_and_resumes(
    pg_database: str,
) -> None:
    """A stream whose client stops reading (tiny receive buffer) is ended with the close
    event 1013 once its outgoing buffer passes the bound, the server's memory stays
    bounded, and the client then resumes from its last id losing nothing."""
    total, per_batch = 6000, 200
    async with own_server(pg_database, NOTIFIER_WS_MAX_BUFFER_BYTES="65536") as server:
        assert server.process is not None
        user = new_user()
        received = await _not_reading(server, user, total, per_batch)
        stream, last_id, close = _parse_raw(user, received)
        assert close["event"] == "close", close
        assert orjson.loads(close["data"])["code"] == 1013, f"{close}\n{log_tail(server)}"
        assert 0 < stream.last < total, stream.last
        async with sse_open(server, user, headers={"Last-Event-ID": str(last_id)}) as sse:
            stream.connections = 1
            await take_until_replayed(sse, stream, 60)
    assert stream.seqs == list(range(1, total + 1))


async def _not_reading(server: Server, user: str, total: int, per_batch: int) -> bytes:
    """Open a stream on a socket with a tiny receive buffer, publish `total` 1 KiB
    notifications without reading it, check the server's memory, then read everything
    the server sent until the end of the response."""
    assert server.process is not None
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.connect(("127.0.0.1", server.port))
        request = (
            f"GET /v1/sse?access_token={make_token(user)} HTTP/1.1\r\n"
            f"Host: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
        )
        raw.sendall(request.encode())
        raw.settimeout(timeout(20))
        received = bytearray()
        while b"\r\n\r\n" not in received:  # the head: from now on the stream is live
            received += await asyncio.to_thread(raw.recv, 4096)
        baseline = peak = rss_bytes(server.process.pid)
        for _ in range(total // per_batch):
            batch = items(user, per_batch, {"blob": "x" * 1024})
            response = await asyncio.to_thread(publish_batch, server, batch)
            assert response.status_code == 201, response.text
            peak = max(peak, rss_bytes(server.process.pid))
        growth = peak - baseline
        assert growth < 100 * 2**20, f"server RSS grew by {growth / 2**20:.0f} MiB"
        # Still not reading for several stall periods (NOTIFIER_WS_STALL_SECONDS, 1 s):
        # under load the batches above can end before the server's stall check has run,
        # and a client that reads again in time is, rightly, not closed.
        await asyncio.sleep(timeout(3))
        raw.settimeout(timeout(40))
        deadline = time.monotonic() + timeout(60)
        while chunk := await asyncio.to_thread(raw.recv, 1 << 20):
            received += chunk
            if received.endswith(b"\r\n0\r\n\r\n"):  # the last chunk
                break
            assert time.monotonic() < deadline, "the stream was never ended"
        return bytes(received)
    finally:
        raw.close()


def _parse_raw(user: str, received: bytes) -> tuple[Stream, int, dict[str, str]]:
    """The notifications of a raw response (checked gap-free), the last id, and the
    fields of its last event."""
    head, _, body = received.partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0], head
    blocks = [b for b in _dechunk(body).decode().split("\n\n") if b and not b.startswith(":")]
    stream = Stream(user)
    last_id = 0
    for block in blocks[:-1]:
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        if fields.get("event") == "notification":
            stream.take({"type": "notification", "notification": orjson.loads(fields["data"])})
            last_id = int(fields["id"])
    return stream, last_id, dict(line.split(": ", 1) for line in blocks[-1].split("\n"))


def _dechunk(body: bytes) -> bytes:
    """The payload of an HTTP/1.1 chunked body."""
    out = bytearray()
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += body[:size]
        body = body[size + 2 :]
    return bytes(out)
