"""A token bucket: how many frames a client may send, decided without a clock of its own."""

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
