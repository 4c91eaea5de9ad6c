"""Which tokens a revocation refuses ("log out everywhere"), without I/O.

A revocation of a user at moment R refuses every token of that user whose `iat` is at or
before R truncated to whole seconds, and every token with no `iat` at all (nothing says
it was issued after R). Tokens issued later work. `iat` is compared as the token states
it: a token with `iat` 100.5 passes a revocation at 100.7 (truncated: 100), as the
contract words it; identity providers write whole seconds.
"""

from __future__ import annotations

import math


def cutoff(revoked_at: float) -> int:
    """The whole second a revocation at `revoked_at` (POSIX seconds) refuses up to."""
    return math.floor(revoked_at)


def refuses(cut: int | None, issued_at: float | None) -> bool:
    """Whether a token with `issued_at` (its `iat`, None without one) is refused, given
    its user's revocation `cut` (`cutoff`; None: never revoked)."""
    if cut is None:
        return False
    return issued_at is None or issued_at <= cut
