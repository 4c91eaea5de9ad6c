"""The client-frame rate limit, with a hand-driven clock."""

from __future__ import annotations

from notifier.core.ratelimit import TokenBucket


def test_burst_then_refused() -> None:
    """A full bucket lets `burst` frames through at once, then refuses."""
    bucket = TokenBucket(rate=10, burst=5, now=0.0)
    assert [bucket.allow(0.0) for _ in range(6)] == [True] * 5 + [False]


def test_refills_at_rate_up_to_burst() -> None:
    """Tokens come back at `rate` per second and never beyond `burst`."""
    bucket = TokenBucket(rate=10, burst=5, now=0.0)
    for _ in range(5):
        bucket.allow(0.0)
    assert bucket.allow(0.1) is True
    assert bucket.allow(0.1) is False
    assert sum(bucket.allow(100.0) for _ in range(10)) == 5


def test_clock_going_backwards_grants_nothing() -> None:
    """A clock step backwards does not mint tokens."""
    bucket = TokenBucket(rate=10, burst=1, now=5.0)
    assert bucket.allow(5.0) is True
    assert bucket.allow(1.0) is False
