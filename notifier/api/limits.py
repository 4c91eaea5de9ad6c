"""`NOTIFIER_PUBLISH_RATE` at the HTTP edge: a publish over its publisher's rate is
refused with `429` and `Retry-After` before anything is stored (a single publish and a
topic publish before their body is even parsed; a batch once its items are counted)."""

from __future__ import annotations

import math
import time

from fastapi import HTTPException

from notifier import metrics
from notifier.service import Service


def check_rate(service: Service, publisher: str, cost: int) -> None:
    """Count `cost` notifications of `publisher`, or refuse them with 429."""
    limiter = service.limiter
    if limiter is None:
        return
    wait = limiter.admit(publisher, cost, time.monotonic())
    if wait:
        metrics.PUBLISH_RATE_LIMITED.labels(publisher).inc()
        seconds = max(1, math.ceil(wait))
        raise HTTPException(
            429,
            detail=f"publisher {publisher!r} is over its publish rate; retry in {seconds} s",
            headers={"Retry-After": str(seconds)},
        )
