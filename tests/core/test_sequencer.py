"""The replay/live merge of one socket (notifier/core/sequencer.py), without I/O."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from notifier.core.sequencer import Offer, Sequencer, replay_complete

QUEUE, DROP, FETCH = Offer.QUEUE, Offer.DROP, Offer.FETCH


@dataclass
class Case:
    """A starting state, steps with their expected answers, and the final state."""

    start: int
    fetching: bool
    steps: list[tuple[object, ...]]
    queued: int
    wanted: int
    final_fetching: bool


def run_steps(sequencer: Sequencer, steps: list[tuple[object, ...]]) -> None:
    for index, step in enumerate(steps):
        kind = step[0]
        if kind == "offer":
            _, seq, has_frame, expected = step
            got: object = sequencer.offer(seq, has_frame=has_frame)
        elif kind == "fetched":
            _, seq, expected = step
            got = sequencer.take_fetched(seq)
        elif kind == "done":
            _, exhausted, expected = step
            got = sequencer.fetch_done(exhausted=exhausted)
        elif kind == "start":
            _, seq = step
            got = expected = sequencer.start_from(seq)
        elif kind == "catch_up":
            got = expected = sequencer.catch_up()
        elif kind == "give_up":
            got = expected = sequencer.give_up_on_missing()
        else:  # pragma: no cover - a typo in a case
            raise AssertionError(f"unknown step {step!r}")
        assert got == expected, f"step {index} {step!r}: got {got!r}"


CASES = {
    "contiguous live seqs are queued": Case(
        5, False, [("offer", 6, True, QUEUE), ("offer", 7, True, QUEUE)], 7, 7, False
    ),
    "a duplicate or older seq is dropped": Case(
        5,
        False,
        [
            ("offer", 5, True, DROP),
            ("offer", 3, True, DROP),
            ("offer", 6, True, QUEUE),
            ("offer", 6, True, DROP),
        ],
        6,
        6,
        False,
    ),
    "a gap switches to fetching and later seqs are not queued": Case(
        5, False, [("offer", 7, True, FETCH), ("offer", 6, True, FETCH)], 5, 7, True
    ),
    "an announcement without a frame forces a fetch": Case(
        5, False, [("offer", 6, False, FETCH)], 5, 6, True
    ),
    "fetched rows are taken once": Case(
        5,
        True,
        [
            ("fetched", 6, True),
            ("fetched", 6, False),
            ("fetched", 5, False),
            ("fetched", 7, True),
        ],
        7,
        7,
        True,
    ),
    "fetch_done goes live only when the last page is exhausted": Case(
        0,
        True,
        [
            ("offer", 3, True, FETCH),
            ("fetched", 1, True),
            ("fetched", 2, True),
            ("fetched", 3, True),
            ("done", False, False),
            ("done", True, True),
            ("offer", 4, True, QUEUE),
        ],
        4,
        4,
        False,
    ),
    "an announcement overtaking the read snapshot keeps it fetching": Case(
        0,
        True,
        [
            ("offer", 2, True, FETCH),
            ("fetched", 1, True),
            ("done", True, False),
            ("fetched", 2, True),
            ("done", True, True),
        ],
        2,
        2,
        False,
    ),
    "a live socket that catches up with nothing new goes live again": Case(
        5, False, [("catch_up",), ("done", True, True), ("offer", 6, True, QUEUE)], 6, 6, False
    ),
    "catch_up makes live seqs fetched instead of queued": Case(
        5, False, [("catch_up",), ("offer", 6, True, FETCH), ("done", True, False)], 5, 6, True
    ),
    "start_from with nothing announced goes live at the head": Case(
        0, True, [("start", 10), ("offer", 11, True, QUEUE)], 11, 11, False
    ),
    "start_from after announcements at or below the head goes live": Case(
        0,
        True,
        [
            ("offer", 7, True, FETCH),
            ("offer", 10, True, FETCH),
            ("start", 10),
            ("offer", 9, True, DROP),
            ("offer", 11, True, QUEUE),
        ],
        11,
        11,
        False,
    ),
    "start_from after an announcement beyond the head fetches it": Case(
        0,
        True,
        [
            ("offer", 9, True, FETCH),
            ("offer", 12, True, FETCH),
            ("start", 10),
            ("done", True, False),
            ("fetched", 11, True),
            ("fetched", 12, True),
            ("done", True, True),
        ],
        12,
        12,
        False,
    ),
    "a replaying socket drops announcements of replayed seqs": Case(
        5, True, [("offer", 4, True, DROP), ("offer", 5, True, DROP)], 5, 5, True
    ),
    "give_up_on_missing goes live at the highest announced seq": Case(
        5, True, [("offer", 8, True, FETCH), ("give_up",), ("offer", 9, True, QUEUE)], 9, 9, False
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_merge_step_table(case: Case) -> None:
    """Each listed sequence of announcements, fetched rows and page ends gets its answers."""
    sequencer = Sequencer(case.start, fetching=case.fetching)
    run_steps(sequencer, case.steps)
    assert (sequencer.queued, sequencer.wanted, sequencer.fetching) == (
        case.queued,
        case.wanted,
        case.final_fetching,
    )


@pytest.mark.parametrize(
    ("after", "first_replayed", "head", "complete"),
    [
        pytest.param(3, 4, 10, True, id="replay starts right after the position"),
        pytest.param(0, 1, 1, True, id="replay from the start"),
        pytest.param(3, 7, 10, False, id="seqs 4..6 are gone (retention)"),
        pytest.param(0, 2, 5, False, id="seq 1 is gone (retention)"),
        pytest.param(3, None, 10, False, id="everything after the position is gone"),
        pytest.param(0, None, 0, True, id="an empty stream"),
        pytest.param(5, None, 5, True, id="the position is the head"),
        pytest.param(9, None, 5, True, id="a position beyond the head"),
    ],
)
def test_replay_complete(after: int, first_replayed: int | None, head: int, complete: bool) -> None:
    """`complete` is false exactly when notifications after the position no longer exist."""
    assert replay_complete(after, first_replayed, head) is complete


# -- randomized property ----------------------------------------------------------------


@dataclass
class Simulation:
    """A user stream 1..n committed over time, a lossy bus, a paged database, one socket."""

    rng: random.Random
    n: int
    page: int
    resume: bool
    committed: int = 0
    pending: list[tuple[int, bool]] = field(default_factory=list)
    inflight: list[int] | None = None
    out: list[int] = field(default_factory=list)
    head_read: int | None = None
    started: bool = False

    def commit(self) -> None:
        self.committed += 1
        seq = self.committed
        copies = self.rng.choice([0, 1, 1, 1, 2, 3])
        if seq == self.n:
            copies = max(copies, 1)  # nothing after the last seq could reveal its loss
        for _ in range(copies):
            self.pending.append((seq, self.rng.random() > 0.2))

    def deliver(self, sequencer: Sequencer) -> None:
        seq, has_frame = self.pending.pop(self.rng.randrange(len(self.pending)))
        if sequencer.offer(seq, has_frame=has_frame) is Offer.QUEUE:
            self.out.append(seq)

    def snapshot(self, sequencer: Sequencer) -> None:
        first = sequencer.queued + 1
        self.inflight = list(range(first, self.committed + 1))[: self.page]

    def process(self, sequencer: Sequencer) -> None:
        assert self.inflight is not None
        rows, self.inflight = self.inflight, None
        for seq in rows:
            if sequencer.take_fetched(seq):
                self.out.append(seq)
        sequencer.fetch_done(exhausted=len(rows) < self.page)


def simulate(seed: int) -> tuple[list[int], list[int]]:
    rng = random.Random(seed)
    sim = Simulation(rng, n=rng.randint(0, 40), page=rng.choice([1, 2, 3, 5, 50]), resume=True)
    sim.resume = rng.random() < 0.6
    sim.committed = rng.randint(0, sim.n)
    # Announcements of rows committed before the handshake may still be on the bus.
    for seq in range(1, sim.committed + 1):
        if rng.random() < 0.3:
            sim.pending.append((seq, rng.random() > 0.2))
    if sim.resume:
        after = rng.randint(0, sim.committed)
        sequencer = Sequencer(after, fetching=True)
        sim.started = True
        first = after + 1
    else:
        sequencer = Sequencer(0, fetching=True)

    while True:
        moves = []
        if sim.committed < sim.n:
            moves += ["commit"] * 3
        if sim.pending:
            moves += ["deliver"] * 4
        if sim.started and sequencer.fetching and sim.inflight is None:
            moves += ["snapshot"] * 2
        if sim.inflight is not None:
            moves += ["process"] * 2
        if sim.started:
            moves.append("catch_up")
        if not sim.started:
            moves.append("read_head" if sim.head_read is None else "start")
        if sim.committed == sim.n and not sim.pending and sim.inflight is None and sim.started:
            break
        move = rng.choice(moves)
        if move == "commit":
            sim.commit()
        elif move == "deliver":
            sim.deliver(sequencer)
        elif move == "snapshot":
            sim.snapshot(sequencer)
        elif move == "process":
            sim.process(sequencer)
        elif move == "catch_up":
            if rng.random() < 0.1:
                sequencer.catch_up()
        elif move == "read_head":
            sim.head_read = sim.committed
        else:
            assert sim.head_read is not None
            sequencer.start_from(sim.head_read)
            sim.started = True
    if not sim.resume:
        assert sim.head_read is not None
        first = sim.head_read + 1
    # The sender keeps reading pages while the sequencer says it is fetching.
    for _ in range(sim.n + 5):
        if not sequencer.fetching:
            break
        sim.snapshot(sequencer)
        sim.process(sequencer)
    assert not sequencer.fetching, f"seed {seed}: still fetching at the end"
    return sim.out, list(range(first, sim.n + 1))


@pytest.mark.parametrize("block", range(4))
def test_random_streams_are_delivered_exactly_once_in_order(block: int) -> None:
    """Shuffled, duplicated, dropped and frameless announcements plus database pages hand
    out every seq after the starting position exactly once, in order."""
    for seed in range(block * 500, (block + 1) * 500):
        handed_out, expected = simulate(seed)
        assert handed_out == expected, f"seed {seed}"
