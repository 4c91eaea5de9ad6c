"""bench.scale's arguments and how it splits the sockets (no benchmark runs here)."""

from __future__ import annotations

import pytest

from bench import scale


def test_defaults_are_the_issue_s_run() -> None:
    args = scale.parse_args([])
    assert (args.sockets, args.workers, args.loadgens) == (100_000, 6, 6)
    assert (args.rate, args.seconds, args.kill) == (1000.0, 30.0, True)
    assert scale.parse_args(["--no-kill"]).kill is False


def test_every_user_has_one_loadgen_and_each_its_own_addresses() -> None:
    args = scale.parse_args(["--sockets", "100000", "--loadgens", "6"])
    shares = scale.shares(args.sockets, args.loadgens)
    assert sum(count for _first, count in shares) == 100_000
    assert [first for first, _count in shares] == [0, 16667, 33334, 50001, 66668, 83334]
    addresses = scale.source_addresses(args)
    flat = [a for mine in addresses for a in mine]
    assert len(flat) == len(set(flat)) == 12  # two each: 16,667 > SOCKETS_PER_ADDRESS
    assert flat[0] == "127.0.0.2"


@pytest.mark.parametrize(
    "argv",
    [
        ["--loadgens", "0"],
        ["--sockets", "3", "--loadgens", "4"],
        ["--rate", "0"],
        ["--workers", "1"],  # no supervisor to restart a killed worker
    ],
)
def test_nonsense_is_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        scale.parse_args(argv)
