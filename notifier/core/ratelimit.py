"""Token buckets, decided without a clock of their own: how many frames a client may send,
and how many notifications a publisher may publish (`PublishLimiter`)."""

from __future__ import annotations


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up."""

    __slots__ = ("_burst", "_rate", "_stamp", "_tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._stamp = now

    def allow(self, now: float) -> bool:
        """Take one token if there is one."""
        elapsed = max(0.0, now - self._stamp)
        self._stamp = now
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def take(self, cost: float, now: float) -> float:
        """Take `cost` tokens: 0.0 when taken, else the seconds until they could be (and
        nothing is taken). A cost over `burst` is taken from a full bucket, which goes
        into debt: a large batch passes when the bucket is full, and the long-run rate
        still holds."""
        elapsed = max(0.0, now - self._stamp)
        self._stamp = now
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
        need = min(cost, self._burst)
        if self._tokens >= need:
            self._tokens -= cost
            return 0.0
        return (need - self._tokens) / self._rate


class PublishLimiter:
    """`NOTIFIER_PUBLISH_RATE`: a token bucket per publisher, `rate` notifications a
    second in bursts of up to twice that. Buckets are kept per instance (no shared state
    between instances), one per publisher key name: a handful, never pruned."""

    __slots__ = ("_buckets", "_burst", "_rate")

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError("a publish rate must be positive")
        self._rate = rate
        self._burst = 2 * rate
        self._buckets: dict[str, TokenBucket] = {}

    @classmethod
    def of(cls, rate: float | None) -> PublishLimiter | None:
        """The limiter of a setting: None (no limit) when unset or 0."""
        return cls(rate) if rate else None

    def admit(self, publisher: str, cost: int, now: float) -> float:
        """0.0: `cost` notifications of `publisher` may go now (counted); else the
        seconds to wait before they could."""
        bucket = self._buckets.get(publisher)
        if bucket is None:
            bucket = self._buckets[publisher] = TokenBucket(self._rate, self._burst, now)
        return bucket.take(cost, now)


class KeyedLimiter:
    """A `TokenBucket` per key (a client address), for at most `max_keys` keys.

    The least recently seen key is forgotten first when there are more: memory stays
    bounded whatever the number of addresses, and a forgotten key only starts again
    with a full bucket.
    """

    __slots__ = ("_buckets", "_burst", "_max_keys", "_rate")

    def __init__(self, rate: float, burst: float, max_keys: int = 65536) -> None:
        self._rate = rate
        self._burst = burst
        self._max_keys = max_keys
        self._buckets: dict[str, TokenBucket] = {}

    def allow(self, key: str, now: float) -> bool:
        """Take one token from `key`'s bucket if there is one."""
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            bucket = TokenBucket(self._rate, self._burst, now)
            if len(self._buckets) >= self._max_keys:
                del self._buckets[next(iter(self._buckets))]
        self._buckets[key] = bucket  # most recently seen last
        return bucket.allow(now)

    def __len__(self) -> int:
        return len(self._buckets)
