"""The client-frame rate limit, with a hand-driven clock."""

from __future__ import annotations

import pytest

from notifier.core.ratelimit import PublishLimiter, TokenBucket


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


def test_take_costs_and_says_how_long_to_wait() -> None:
    """`take` spends `cost` tokens or, taking nothing, says when they would be there."""
    bucket = TokenBucket(rate=10, burst=20, now=0.0)
    assert bucket.take(15, 0.0) == 0.0
    assert bucket.take(10, 0.0) == pytest.approx(0.5)
    assert bucket.take(5, 0.0) == 0.0
    assert bucket.take(1, 0.0) == pytest.approx(0.1)
    assert bucket.take(1, 0.1) == 0.0


def test_a_cost_over_the_burst_passes_from_a_full_bucket_into_debt() -> None:
    """A batch larger than the burst goes when the bucket is full; the debt is repaid at
    the rate before anything else passes."""
    bucket = TokenBucket(rate=1, burst=2, now=0.0)
    assert bucket.take(5, 0.0) == 0.0
    assert bucket.take(1, 0.0) == pytest.approx(4.0)
    assert bucket.take(5, 3.0) == pytest.approx(2.0)  # a full bucket (2) is wanted
    assert bucket.take(1, 4.0) == 0.0


def test_publish_limiter_keeps_a_bucket_per_publisher() -> None:
    """Rate R: 2R at once, then refused; another publisher is not affected."""
    limiter = PublishLimiter(5)
    assert [limiter.admit("a", 1, 0.0) for _ in range(10)] == [0.0] * 10
    assert limiter.admit("a", 1, 0.0) == pytest.approx(0.2)
    assert limiter.admit("b", 10, 0.0) == 0.0
    assert limiter.admit("a", 1, 0.2) == 0.0


def test_publish_limiter_of_unset_or_zero_is_none() -> None:
    assert PublishLimiter.of(None) is None
    assert PublishLimiter.of(0) is None
    assert PublishLimiter.of(0.5) is not None
