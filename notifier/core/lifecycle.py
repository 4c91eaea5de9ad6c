"""The phases of one socket and why it closed: which phase may follow which.

A socket without resume is in HANDSHAKE until the user's head is read (BEGIN_LIVE: LIVE);
with resume it starts in REPLAYING, reading the database up to the head (FINISH_REPLAY:
LIVE). A requested close (REQUEST_CLOSE) makes any open phase CLOSING: from then on nothing
is queued, and the first close's code and reason are the ones sent, whoever asks later (the
expiry clock, a renewal refused, a slow client, the sender's own failure). CLOSED follows
once the close frame is out or the endpoint is done with the socket. A close requested
during the handshake (the token expired while the head was read) wins over BEGIN_LIVE.
Anything else is a bug in the caller: it is refused at once, rather than sending frames in
a phase that has none.

Values are immutable, and the open ones exist once for the whole process: an open socket
holds a reference to a shared value, not a state object of its own (there is a
`Connection` per open socket, and 100,000 of them is a goal). A close makes one small
value for its socket.
"""

from __future__ import annotations

import enum
from typing import Final


class State(enum.Enum):
    HANDSHAKE = "handshake"
    REPLAYING = "replaying"
    LIVE = "live"
    CLOSING = "closing"
    CLOSED = "closed"


class Event(enum.Enum):
    BEGIN_LIVE = "begin_live"
    FINISH_REPLAY = "finish_replay"
    REQUEST_CLOSE = "request_close"
    CLOSED = "closed"


class InvalidTransition(RuntimeError):
    """An event the current phase does not allow."""


_TRANSITIONS: Final[dict[tuple[State, Event], State]] = {
    (State.HANDSHAKE, Event.BEGIN_LIVE): State.LIVE,
    (State.HANDSHAKE, Event.REQUEST_CLOSE): State.CLOSING,
    (State.REPLAYING, Event.FINISH_REPLAY): State.LIVE,
    (State.REPLAYING, Event.REQUEST_CLOSE): State.CLOSING,
    (State.LIVE, Event.REQUEST_CLOSE): State.CLOSING,
    # The token expired while the head was read: the close wins, the socket never goes live.
    (State.CLOSING, Event.BEGIN_LIVE): State.CLOSING,
    (State.CLOSING, Event.REQUEST_CLOSE): State.CLOSING,  # the first close wins
    (State.CLOSING, Event.CLOSED): State.CLOSED,
    # The expiry clock may fire between the close frame and the client's disconnect.
    (State.CLOSED, Event.REQUEST_CLOSE): State.CLOSED,
    # The endpoint discards a socket whose close frame went out.
    (State.CLOSED, Event.CLOSED): State.CLOSED,
}
"""(phase, event) -> next phase; a pair that is missing is refused."""

_OPEN: Final = frozenset((State.HANDSHAKE, State.REPLAYING, State.LIVE))


class Lifecycle:
    """A socket's phase, with the close it carries once one is requested.

    The flags are read on the fan-out path for every frame: they are kept as attributes
    rather than compared against `State` members (an Enum member lookup costs about
    0.1 µs in CPython 3.11, through `EnumType.__getattr__`).
    """

    __slots__ = ("accepting", "close_code", "close_reason", "ended", "live", "state")

    def __init__(self, state: State, close_code: int | None = None, close_reason: str = "") -> None:
        if (state in _OPEN) != (close_code is None):
            raise ValueError(f"{state.value} with close code {close_code}")
        self.state: Final = state
        self.close_code: Final = close_code
        self.close_reason: Final = close_reason
        self.accepting: Final = close_code is None
        """No close is requested: frames are queued and sent."""
        self.live: Final = state is State.LIVE
        """Live frames go straight to the socket (no replay in the way)."""
        self.ended: Final = state is State.CLOSED
        """Nothing is sent any more, not even a close frame."""

    def __repr__(self) -> str:
        if self.close_code is None:
            return f"Lifecycle({self.state.value})"
        return f"Lifecycle({self.state.value}, {self.close_code}, {self.close_reason!r})"

    def begin_live(self) -> Lifecycle:
        """Without resume: the user's head is known, live frames may flow."""
        return self._after(Event.BEGIN_LIVE)

    def finish_replay(self) -> Lifecycle:
        """The replay reached the head: from now on live frames go straight out."""
        return self._after(Event.FINISH_REPLAY)

    def request_close(self, code: int, reason: str) -> Lifecycle:
        """CLOSING with this code and reason; this same value when a close was requested
        before (the first close wins)."""
        return self._after(Event.REQUEST_CLOSE, code, reason)

    def closed(self) -> Lifecycle:
        """The close frame is out, or the endpoint is done with the socket."""
        return self._after(Event.CLOSED)

    def _after(self, event: Event, code: int | None = None, reason: str = "") -> Lifecycle:
        state = self.state
        following = _TRANSITIONS.get((state, event))
        if following is None:
            raise InvalidTransition(f"{event.value} is not allowed in {state.value}")
        if following is state:
            return self
        if following in _OPEN:
            return _OPENED[following]
        if self.close_code is not None:
            code, reason = self.close_code, self.close_reason
        return Lifecycle(following, code, reason)


_OPENED: Final = {state: Lifecycle(state) for state in _OPEN}


def opened(*, resume: bool) -> Lifecycle:
    """A socket whose handshake is under way: replaying when it resumes from a seq."""
    return _OPENED[State.REPLAYING if resume else State.HANDSHAKE]
