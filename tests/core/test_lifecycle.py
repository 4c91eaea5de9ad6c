"""A socket's phases (notifier/core/lifecycle.py): every event in every phase moves to the
phase the table says or is refused, the first close's code and reason are kept, and the
open phases cost a socket no object of its own."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from notifier.core.lifecycle import Event, InvalidTransition, Lifecycle, State, opened

HANDSHAKE, REPLAYING, LIVE = State.HANDSHAKE, State.REPLAYING, State.LIVE
CLOSING, CLOSED = State.CLOSING, State.CLOSED
REFUSED = None
FIRST = (4401, "token expired")
LATER = (1013, "client too slow")

EVENTS: dict[Event, Callable[[Lifecycle], Lifecycle]] = {
    Event.BEGIN_LIVE: Lifecycle.begin_live,
    Event.FINISH_REPLAY: Lifecycle.finish_replay,
    Event.REQUEST_CLOSE: lambda life: life.request_close(*LATER),
    Event.CLOSED: Lifecycle.closed,
}

TABLE: dict[tuple[State, Event], State | None] = {
    (HANDSHAKE, Event.BEGIN_LIVE): LIVE,
    (HANDSHAKE, Event.FINISH_REPLAY): REFUSED,  # nothing is replayed without resume
    (HANDSHAKE, Event.REQUEST_CLOSE): CLOSING,
    (HANDSHAKE, Event.CLOSED): REFUSED,  # a socket closes through CLOSING, with a code
    (REPLAYING, Event.BEGIN_LIVE): REFUSED,  # a resume goes live by finishing its replay
    (REPLAYING, Event.FINISH_REPLAY): LIVE,
    (REPLAYING, Event.REQUEST_CLOSE): CLOSING,
    (REPLAYING, Event.CLOSED): REFUSED,
    (LIVE, Event.BEGIN_LIVE): REFUSED,  # started twice
    (LIVE, Event.FINISH_REPLAY): REFUSED,  # replayed twice
    (LIVE, Event.REQUEST_CLOSE): CLOSING,
    (LIVE, Event.CLOSED): REFUSED,
    (CLOSING, Event.BEGIN_LIVE): CLOSING,  # a token expired during the head read
    (CLOSING, Event.FINISH_REPLAY): REFUSED,  # never LIVE once closing
    (CLOSING, Event.REQUEST_CLOSE): CLOSING,
    (CLOSING, Event.CLOSED): CLOSED,
    (CLOSED, Event.BEGIN_LIVE): REFUSED,
    (CLOSED, Event.FINISH_REPLAY): REFUSED,
    (CLOSED, Event.REQUEST_CLOSE): CLOSED,  # the expiry clock after the close frame
    (CLOSED, Event.CLOSED): CLOSED,  # the endpoint discards after the close frame
}


def in_state(state: State) -> Lifecycle:
    """A lifecycle brought to `state` by allowed events only (closed with FIRST)."""
    life = {HANDSHAKE: opened(resume=False), REPLAYING: opened(resume=True)}.get(state)
    if life is not None:
        return life
    if state is LIVE:
        return opened(resume=False).begin_live()
    closing = opened(resume=True).request_close(*FIRST)
    return closing if state is CLOSING else closing.closed()


def test_the_table_names_every_state_and_event() -> None:
    """The expectations below cover each (state, event) pair exactly once."""
    assert set(TABLE) == set(itertools.product(State, Event))


@pytest.mark.parametrize(
    ("state", "event", "expected"),
    [(state, event, expected) for (state, event), expected in TABLE.items()],
    ids=[f"{state.value}-{event.value}" for state, event in TABLE],
)
def test_each_event_in_each_state(state: State, event: Event, expected: State | None) -> None:
    """An allowed event moves to the expected state; any other is refused, naming both."""
    life = in_state(state)
    assert life.state is state
    if expected is REFUSED:
        with pytest.raises(
            InvalidTransition, match=f"{event.value} is not allowed in {state.value}"
        ):
            EVENTS[event](life)
        assert life.state is state  # a refusal changes nothing
        return
    after = EVENTS[event](life)
    assert after.state is expected
    if state is expected:
        assert after is life  # an event that changes nothing returns the same value


@pytest.mark.parametrize("state", list(State), ids=lambda state: state.value)
def test_a_close_in_each_state(state: State) -> None:
    """An open socket closes with the code and reason asked for; a closing or closed one
    keeps the first close, whatever is asked later, through CLOSED."""
    life = in_state(state)
    closing = life.request_close(*LATER)
    if state in (HANDSHAKE, REPLAYING, LIVE):
        assert (closing.state, closing.close_code, closing.close_reason) == (CLOSING, *LATER)
        first = LATER
    else:
        assert closing is life
        first = FIRST
    assert (closing.close_code, closing.close_reason) == first
    again = closing.request_close(1011, "internal error, reconnect")
    assert (again.state, again.close_code, again.close_reason) == (closing.state, *first)
    done = again.closed()
    assert (done.state, done.close_code, done.close_reason) == (CLOSED, *first)
    assert done.closed() is done
    assert done.request_close(1000, "") is done


FLAGS = {
    # state: (accepting, live, ended)
    HANDSHAKE: (True, False, False),
    REPLAYING: (True, False, False),
    LIVE: (True, True, False),
    CLOSING: (False, False, False),
    CLOSED: (False, False, True),
}


@pytest.mark.parametrize("state", list(State), ids=lambda state: state.value)
def test_flags_read_on_the_fan_out_path(state: State) -> None:
    """Frames are accepted until a close is requested, go straight out only when LIVE, and
    nothing at all is sent once CLOSED; a close code exists exactly when not accepting."""
    life = in_state(state)
    assert (life.accepting, life.live, life.ended) == FLAGS[state]
    assert (life.close_code is None) == life.accepting


def test_open_values_are_shared_and_never_changed() -> None:
    """An open socket holds a value shared by every socket (no object per socket), and a
    transition makes a new value rather than changing the one it starts from."""
    assert opened(resume=False) is opened(resume=False)
    assert opened(resume=True) is opened(resume=True)
    assert opened(resume=False).begin_live() is opened(resume=True).finish_replay()
    live = in_state(LIVE)
    closing = live.request_close(*FIRST)
    assert closing is not live
    assert (live.state, live.close_code, live.accepting) == (LIVE, None, True)
    assert in_state(LIVE) is live


@pytest.mark.parametrize(
    ("state", "code"), [(LIVE, 1000), (CLOSING, None), (CLOSED, None)], ids=str
)
def test_a_value_with_a_close_code_only_when_closing(state: State, code: int | None) -> None:
    """An open state never carries a close code, and a closing one always does."""
    with pytest.raises(ValueError, match=state.value):
        Lifecycle(state, code)
