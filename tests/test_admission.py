"""`Admission`: streams opening at once are bounded, a place is given back exactly once,
the descriptor limit leaves room for everything that is not a stream, and a full
process says so; `Acceptors`: one worker of `serve --workers N` always accepts."""

from __future__ import annotations

import multiprocessing
import resource

from notifier.admission import DESCRIPTORS_KEPT, Admission, streams_for_descriptors
from notifier.listening import ACCEPTING, NOT_ACCEPTING, Acceptors


def test_opening_streams_are_bounded_and_given_back_once() -> None:
    gate = Admission(max_opening=2, max_streams=10)
    first, second = gate.admit("ws"), gate.admit("sse")
    assert first is not None and second is not None
    assert gate.admit("ws") is None  # two opening: the third is shed
    first.done()
    first.done()  # idempotent: the endpoint's finally may call it again
    assert gate.opening == 1
    third = gate.admit("ws")
    assert third is not None
    assert gate.open == 3  # live streams still count toward max_streams


def test_a_full_process_sheds_until_a_stream_ends() -> None:
    gate = Admission(max_opening=0, max_streams=2)  # 0: no bound on opening
    for _ in range(2):
        opening = gate.admit("ws")
        assert opening is not None
        opening.done()
    assert gate.admit("ws") is None
    opening.end()
    assert gate.admit("ws") is not None


def test_descriptors_leave_room_for_the_rest() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    streams = streams_for_descriptors()
    if soft != resource.RLIM_INFINITY and soft >= 1000:
        assert streams <= soft - DESCRIPTORS_KEPT
        assert streams >= 100


def test_full_is_told_once_and_cleared_with_a_margin() -> None:
    """`on_full` hears True when the last place is taken and False only once 1% of the
    places are free again, so one stream ending and the next opening do not flap the
    listening socket (`notifier.listening`)."""
    told: list[bool] = []
    gate = Admission(max_opening=0, max_streams=200)
    gate.on_full = told.append
    places = [place for _ in range(200) if (place := gate.admit("ws")) is not None]
    assert len(places) == 200 and told == [True]
    assert gate.admit("ws") is None and told == [True]
    places[0].end()
    places[0].end()  # idempotent: counted once
    assert told == [True] and gate.open == 199
    places[1].end()
    assert told == [True, False] and gate.room_at == 198
    assert gate.admit("ws") is not None and told == [True, False]


def test_acceptors_keep_one_worker_accepting() -> None:
    """A worker may stop accepting only while another accepts; a slot never used or
    given up does not count."""
    board = Acceptors(4, multiprocessing.get_context("spawn"))
    board.mark(0, ACCEPTING)
    assert not board.leave(0)  # alone: stays accepting
    board.mark(1, ACCEPTING)
    assert board.leave(0)
    assert not board.leave(1)  # 0 left: 1 is the last
    board.mark(0, ACCEPTING)
    board.mark(2, NOT_ACCEPTING)
    assert board.leave(1)
