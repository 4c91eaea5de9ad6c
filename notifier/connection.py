"""One stream after its handshake (a WebSocket, or an SSE response): its phase, its seqs
and its sender.

Two pure objects decide, and this class does the I/O around them: the socket's
`Lifecycle` (HANDSHAKE, REPLAYING, LIVE, CLOSING, CLOSED, and the close code once one is
requested; see `notifier.core.lifecycle`) and the `Sequencer`, which decides for each seq.

One sender at a time owns every write, so frames go out in order and each `send` waits
for the socket to drain: replay and gap fill are paced by the client. The sender exists
only while there is something to send: an idle socket costs no task (most sockets are
idle most of the time, and a task with its coroutine is a few KiB). A live frame that
the socket takes at once is written in the step that delivers it (`notifier.eager`). Live
frames wait in a byte-bounded queue; a burst beyond the bound (one large batch) spills
to the database and is paged out as the socket drains, so a reading client is never
closed for a burst. A socket whose queue is full while its last write has not completed
for `stall_seconds` is not reading: it is closed with 1013. Fan-out never blocks.

Everything above is the same for both transports: the last step, turning a frame or the
close into an ASGI message (a WebSocket message, or an event of the SSE response), is the
connection's `Transport` (`notifier.transport`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from notifier import eager, metrics
from notifier.admission import Opening
from notifier.core.lifecycle import InvalidTransition, Lifecycle, State, opened
from notifier.core.sequencer import Offer, Sequencer, replay_complete
from notifier.reads import Reads
from notifier.transport import WEBSOCKET, Message, Transport
from notifier.wire.frames import replayed_frame

log = logging.getLogger("notifier.connection")

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
"""The ASGI `send` of the socket's scope."""

CLOSE_SERVICE_RESTART = 1012
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_UNAUTHORIZED = 4401
CLOSE_REVOKED = 4403
"""The user's tokens were revoked ("log out everywhere"): do not reconnect with this one."""
CLOSE_TOO_MANY_STREAMS = 4429
CLOSE_INTERNAL_ERROR = 1011
CLOSE_GONE = 1006
# Announced seqs the database keeps not showing: retry this often before going live.
_MISSING_RETRIES = 100


class _ClientGone(Exception):
    """A write found the socket closed (told apart from a database OSError)."""


class Connection:
    """Implements `hub.Subscriber` for one stream (a WebSocket or an SSE response)."""

    # One of these per open socket: slots keep it small.
    __slots__ = (
        "_close_timeout",
        "_first_replayed",
        "_head_at_start",
        "_life",
        "_loop",
        "_max_buffer",
        "_missing",
        "_opening",
        "_owner",
        "_page_size",
        "_prefetched",
        "_queue",
        "_queued_bytes",
        "_reads",
        "_replay_from",
        "_send",
        "_send_started",
        "_sender",
        "_sequencer",
        "_stall_seconds",
        "_stall_timer",
        "_transport",
        "expires_at",
        "gave_up",
        "issued_at",
        "user_id",
    )

    def __init__(
        self,
        *,
        user_id: str,
        reads: Reads,
        send: Send,
        replay_after: int | None,
        page_size: int,
        max_buffer_bytes: int,
        stall_seconds: float = 1.0,
        close_timeout: float = 30.0,
        issued_at: float | None = None,
        transport: Transport = WEBSOCKET,
        opening: Opening | None = None,
    ) -> None:
        self.user_id = user_id
        self.issued_at = issued_at
        """The token's `iat` (renewed by an `auth` frame): a revocation compares it."""
        self._transport = transport
        self._life: Lifecycle = opened(resume=replay_after is not None)
        self._reads = reads
        self._send = send
        # Without resume, announcements before the position is known only raise `wanted`.
        self._sequencer = Sequencer(replay_after or 0, fetching=True)
        self._replay_from = replay_after
        self._first_replayed: int | None = None
        self._page_size = page_size
        self._max_buffer = max_buffer_bytes
        self._close_timeout = close_timeout
        self._stall_seconds = stall_seconds
        self._send_started: float | None = None
        """loop.time() when the write in flight began; None between writes."""
        self._stall_timer: asyncio.TimerHandle | None = None
        self._head_at_start: int | None = None
        self._prefetched: tuple[int, asyncio.Task[list[tuple[int, str]]]] | None = None
        self._queue: deque[tuple[str, int | None, float | None]] | None = None
        """(frame, its seq or None, created_at or None); created with the first queued
        frame and dropped when it empties."""
        self._queued_bytes = 0
        self._sender: asyncio.Task[None] | eager.Stepping | None = None
        self._owner: asyncio.Task[Any] | None = None
        """The endpoint's task, cancelled if the client never takes its close frame."""
        # Kept: in CPython 3.11 each asyncio.get_running_loop() is a getpid() system call,
        # and the sender would make one per frame.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._missing = 0
        self._opening = opening
        """A resume's place among the streams opening (`notifier.admission`), given back
        once its first page is read: the database work of a resume is behind it then."""
        self.gave_up = False
        """True once the close frame could not be written within `close_timeout`."""
        self.expires_at: float | None = None
        """When the socket's token expires (kept by `expiry.Expiries`)."""

    @property
    def state(self) -> State:
        return self._life.state

    @property
    def close_code(self) -> int | None:
        """None until a close is requested; then the code of the first one."""
        return self._life.close_code

    @property
    def close_reason(self) -> str:
        return self._life.close_reason

    def start_at(self, head: int) -> None:
        """Without resume: the user's head seq, read after subscribing, before accept."""
        self._life = self._life.begin_live()
        self._sequencer.start_from(head)

    def start(self) -> None:
        """The handshake is accepted (called from the endpoint's task): frames may flow."""
        if self._life.state is State.HANDSHAKE:
            raise InvalidTransition("start() before start_at(): the position is not known")
        self._owner = asyncio.current_task()
        self._loop = asyncio.get_running_loop()
        self._wake()

    def discard(self) -> None:
        """The endpoint is done with this socket: stop everything it still runs."""
        self._life = self._life.request_close(CLOSE_GONE, "").closed()
        self._drop_queue()
        sender = self._sender
        if sender is not None and sender is not asyncio.current_task():
            sender.cancel()
        self._discard_prefetch()

    # -- hub.Subscriber: called from the fan-out, never blocks -------------------------

    @property
    def known_seq(self) -> int:
        return self._sequencer.wanted

    def offer(self, seq: int, frame: str | None, created_at: float | None) -> None:
        if not self._life.accepting:
            return
        room = frame is None or self._queued_bytes + len(frame) <= self._max_buffer
        decision = self._sequencer.offer(seq, has_frame=frame is not None, room=room)
        if decision is Offer.QUEUE:
            assert frame is not None
            self._enqueue(frame, seq, created_at)
        elif decision is Offer.FETCH:
            if not room:
                self._watch_for_stall()
            elif self._life.live:
                metrics.GAP_FILLS.inc()
            self._wake()

    def push(self, frame: str) -> None:
        if not self._life.accepting:
            return
        if self._queued_bytes + len(frame) > self._max_buffer:
            self._watch_for_stall()
            if self._queued_bytes > 2 * self._max_buffer:
                return  # frames outside the stream (read, pong) are dropped, not hoarded
        self._enqueue(frame, None, None)

    def _enqueue(self, frame: str, seq: int | None, created_at: float | None) -> None:
        if self._queue is None:
            self._queue = deque()
        self._queue.append((frame, seq, created_at))
        self._queued_bytes += len(frame)
        self._wake()

    def _wake(self) -> None:
        """Start a sender if there is none (and the handshake is accepted).

        A live frame is written at once, in the caller's step: the sender runs eagerly
        (`eager.step`) and needs no task when the socket takes the frame (the usual
        case). All other work (replay, gap fill, the close frame) awaits the database
        and timeouts, and runs in a task from the start.
        """
        loop = self._loop
        life = self._life
        if self._sender is not None or loop is None or life.ended:
            return
        if life.live and not self._sequencer.fetching:
            # Marked running, so that a wake from inside the step (a failed send that
            # requests the close) leaves the close frame to this sender, not a second.
            self._sender = eager.STEPPING
            self._sender = eager.step(loop, self._run())  # None: done, `_run` cleared it
        else:
            self._sender = loop.create_task(self._run())

    def _watch_for_stall(self) -> None:
        """The queue is full: close with 1013 if the socket is not reading."""
        if self._stall_timer is not None or not self._life.accepting:
            return
        loop = asyncio.get_running_loop()
        started = self._send_started
        if started is not None and loop.time() - started >= self._stall_seconds:
            metrics.SLOW_CLOSES.inc()
            self.request_close(CLOSE_TRY_AGAIN_LATER, "client too slow: outgoing buffer full")
            return
        delay = self._stall_seconds - (loop.time() - started if started is not None else 0)
        self._stall_timer = loop.call_later(max(0.05, delay), self._stall_check)

    def _stall_check(self) -> None:
        self._stall_timer = None
        if self._queued_bytes >= self._max_buffer or self._sequencer.fetching:
            self._watch_for_stall()

    # -- closing ------------------------------------------------------------------------

    def request_close(self, code: int, reason: str) -> None:
        """Close after the write in flight; frames still queued are dropped (they stay
        in the database for the resume)."""
        life = self._life
        self._life = life.request_close(code, reason)
        if self._life is life:
            return  # a close was requested before: the first one wins
        self._drop_queue()
        self._wake()

    def _drop_queue(self) -> None:
        """Queued frames are not sent once the socket is closing (they stay in the
        database for the resume), and nothing is left to stall on."""
        self._queue = None
        self._queued_bytes = 0
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    # -- the sender ---------------------------------------------------------------------

    async def _run(self) -> None:
        """Send what is waiting, then end (the next frame starts another sender); once a
        close is requested, send the close frame.

        A client that never reads would hold the close frame forever behind a full
        socket buffer: after `close_timeout` the sender gives up and the endpoint drops
        the socket.
        """
        try:
            try:
                await self._send_loop()
            except _ClientGone:  # the endpoint sees the disconnect
                return
            except Exception:  # the database failed: the client resumes
                log.exception("socket sender failed", extra={"user_id": self.user_id})
                self.request_close(CLOSE_INTERNAL_ERROR, "internal error, reconnect")
            if not self._life.accepting:
                await self._send_close()
        finally:
            self._sender = None

    async def _send_close(self) -> None:
        self._discard_prefetch()
        life = self._life
        assert life.close_code is not None
        message = self._transport.close(life.close_code, life.close_reason)
        try:
            await asyncio.wait_for(self._send(message), self._close_timeout)
        except TimeoutError:
            self.gave_up = True
            if self._owner is not None and not self._owner.done():
                self._owner.cancel()
        except OSError:
            pass  # the client is already gone
        self._life = self._life.closed()

    async def _send_text(self, text: str, seq: int | None = None) -> None:
        message = self._transport.frame(text, seq)
        if message is not None:
            await self._send_message(message)

    async def _send_frames(self, frames: list[tuple[str, int]]) -> None:
        """A page's frames, in one message where the transport takes many (a replay page
        written frame by frame was mostly the socket's writes), else one by one."""
        message = self._transport.frames(frames)
        if message is not None:
            await self._send_message(message)
            metrics.REPLAYED.inc(len(frames))
            return
        sent = 0
        try:
            for frame, seq in frames:
                if not self._life.accepting:
                    return
                await self._send_text(frame, seq)
                sent += 1
        finally:
            metrics.REPLAYED.inc(sent)

    async def _send_message(self, message: Message) -> None:
        """Sends one message, timed for the stall check (`_watch_for_stall`)."""
        assert self._loop is not None, "start() first"
        self._send_started = self._loop.time()
        try:
            await self._send(message)
        except OSError as error:  # uvicorn's ClientDisconnected
            raise _ClientGone from error
        self._send_started = None

    async def _send_loop(self) -> None:
        """Until the queue is empty and nothing is to be fetched, or a close is requested."""
        while self._life.accepting:
            queue = self._queue
            if queue:
                frame, seq, created_at = queue.popleft()
                self._queued_bytes -= len(frame)
                await self._send_text(frame, seq)
                if created_at is not None:
                    metrics.DELIVERED.inc()
                    metrics.LATENCY.observe(max(0.0, time.time() - created_at))
            elif self._sequencer.fetching:
                await self._fetch_page()
            else:
                self._queue = None
                return

    async def _fetch_page(self) -> None:
        nothing_to_read = False
        if self._life.state is State.REPLAYING and self._head_at_start is None:
            # Read before the first page: a publish committing during the replay must not
            # look like a deleted notification (see replay_complete).
            self._head_at_start = await self._reads.head(self.user_id)
            # Nothing past the client's position when the head was read, and nothing
            # announced since (the socket was subscribed before): no page to read. In a
            # reconnect storm that is most resumes, and half their queries.
            position = self._sequencer.queued
            nothing_to_read = max(self._head_at_start, self._sequencer.wanted) <= position
        rows = [] if nothing_to_read else await self._next_page()
        if self._opening is not None:
            self._opening.done()
            self._opening = None
        if len(rows) == self._page_size:
            # Read the following page while this one is being sent: the database and
            # the socket work at the same time.
            task = asyncio.create_task(
                self._reads.frames_after(self.user_id, rows[-1][0], self._page_size)
            )
            task.add_done_callback(_retrieve)
            self._prefetched = (rows[-1][0], task)
        if not self._life.accepting:
            return
        fresh = [(frame, seq) for seq, frame in rows if self._sequencer.take_fetched(seq)]
        if fresh:
            if self._first_replayed is None:
                self._first_replayed = fresh[0][1]
            await self._send_frames(fresh)
        exhausted = len(rows) < self._page_size
        if self._sequencer.fetch_done(exhausted=exhausted):
            self._missing = 0
            if self._life.state is State.REPLAYING:
                await self._finish_replay()
        elif exhausted:
            await self._wait_for_missing()

    async def _next_page(self) -> list[tuple[int, str]]:
        after = self._sequencer.queued
        prefetched, self._prefetched = self._prefetched, None
        if prefetched is not None:
            base, task = prefetched
            if base == after:
                return await task
            task.cancel()
        return await self._reads.frames_after(self.user_id, after, self._page_size)

    def _discard_prefetch(self) -> None:
        if self._prefetched is not None:
            self._prefetched[1].cancel()
            self._prefetched = None

    async def _finish_replay(self) -> None:
        assert self._replay_from is not None
        last = self._sequencer.queued
        head = self._head_at_start if self._head_at_start is not None else last
        complete = replay_complete(self._replay_from, self._first_replayed, head)
        self._life = self._life.finish_replay()
        await self._send_text(replayed_frame(last, complete))

    async def _wait_for_missing(self) -> None:
        """An announced seq is not visible yet (its announcement overtook our snapshot)."""
        self._missing += 1
        if self._missing > _MISSING_RETRIES:
            log.error(
                "announced notifications never appeared; going live at the head",
                extra={"user_id": self.user_id, "seq": self._sequencer.wanted},
            )
            self._sequencer.give_up_on_missing()
            self._missing = 0
            if self._life.state is State.REPLAYING:
                await self._finish_replay()
            return
        await asyncio.sleep(min(0.5, 0.01 * self._missing))


def _retrieve(task: asyncio.Task[list[tuple[int, str]]]) -> None:
    """A prefetch that is discarded must not log "exception was never retrieved"."""
    if not task.cancelled():
        task.exception()
