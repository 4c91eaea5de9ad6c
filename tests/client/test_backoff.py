"""Backoff with full jitter and Retry-After parsing (notifier/client/backoff.py)."""

from __future__ import annotations

import random

import pytest

from notifier.client.backoff import MAX_RETRY_AFTER, Backoff, retry_after


def test_full_jitter_draws_between_zero_and_the_capped_exponential_bound() -> None:
    """Attempt n waits uniformly in [0, min(cap, base * 2**n)]."""
    bounds: list[tuple[float, float]] = []
    backoff = Backoff(base=0.5, cap=30.0, uniform=lambda lo, hi: bounds.append((lo, hi)) or hi)
    delays = [backoff.delay(n) for n in range(10)]
    assert delays == [0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30]
    assert all(lo == 0 for lo, _ in bounds)


def test_delays_are_random_and_never_beyond_the_cap() -> None:
    backoff = Backoff(base=1.0, cap=30.0, uniform=random.Random(7).uniform)
    delays = [backoff.delay(50) for _ in range(1000)]
    assert all(0 <= d <= 30 for d in delays)
    assert len(set(delays)) == 1000 and min(delays) < 3 and max(delays) > 27


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("1", 1.0),
        (" 3 ", 3.0),
        ("0", 0.0),
        ("2.5", 2.5),
        ("100000", MAX_RETRY_AFTER),
        (None, None),
        ("-1", None),
        ("nan", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),
    ],
)
def test_retry_after_in_seconds(header: str | None, seconds: float | None) -> None:
    assert retry_after(header) == seconds
