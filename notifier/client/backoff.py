"""When to try again: exponential backoff with full jitter, and `Retry-After`.

Full jitter (a uniform draw between 0 and the exponential bound, capped) spreads the
clients a restart disconnected all at once, so they do not come back in waves (AWS
Architecture Blog, "Exponential Backoff And Jitter", 2015). Pure: the random source is
a parameter, so tests draw from a seeded one.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_RETRY_AFTER = 60.0
"""A server's `Retry-After` is honoured up to this many seconds (a bigger one is not
waited out inside one call)."""


@dataclass
class Backoff:
    """The delay before attempt number `attempt` (0 for the first retry)."""

    base: float = 0.5
    cap: float = 30.0
    uniform: Callable[[float, float], float] = field(default=random.uniform, repr=False)

    def delay(self, attempt: int) -> float:
        bound = min(self.cap, self.base * 2 ** min(attempt, 32))
        return self.uniform(0.0, bound)


def retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header in its delta-seconds form (the service's), or
    None when absent or in a form not understood (an HTTP date: the backoff decides)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if seconds != seconds or seconds < 0:  # NaN or negative
        return None
    return min(seconds, MAX_RETRY_AFTER)
