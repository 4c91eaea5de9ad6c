"""Idempotency: what a repeated key means.

A key belongs to one publisher. The same key with the same (user_id, type, data) is a
repeat and answers the original; any difference is a conflict. `data` is compared by
meaning, not by bytes: key order and whitespace do not make a different request.
"""

from __future__ import annotations

import enum
import hashlib
from typing import Any

import orjson


class Verdict(enum.Enum):
    NEW = "new"
    REPEAT = "repeat"
    CONFLICT = "conflict"


def fingerprint(user_id: str, type_: str, data: dict[str, Any]) -> str:
    """A stable digest of the request that a key stands for."""
    canonical = orjson.dumps([user_id, type_, data], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def judge(stored_fingerprint: str | None, request_fingerprint: str) -> Verdict:
    """Compare a request with what its key already stands for (None: key unused)."""
    if stored_fingerprint is None:
        return Verdict.NEW
    if stored_fingerprint == request_fingerprint:
        return Verdict.REPEAT
    return Verdict.CONFLICT
