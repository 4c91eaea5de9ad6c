"""`Admission`: streams opening at once are bounded, a place is given back exactly once,
and the descriptor limit leaves room for everything that is not a stream."""

from __future__ import annotations

import resource

from notifier.admission import DESCRIPTORS_KEPT, Admission, streams_for_descriptors


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
