"""The access log an operator keeps on in production: failed and slow requests only.

A JSON line for every request (uvicorn's access log) costs more CPU than a publish's
whole HTTP layer: measured side by side, single publishes at 32 concurrent publishers
went from about 5,000 to 2,900 a second with it on. The lines an operator acts on are
the answers the service failed to give (5xx) and the requests that took long; a
refused client (4xx) is counted in the metrics, and logging each of them would let any
client flood the log. `NOTIFIER_ACCESS_LOG` chooses: `errors` (the default, this
module), `all` (uvicorn's line per request, for debugging) or `off`.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("notifier.access")
_now = time.perf_counter


class ErrorsAndSlow:
    """Logs an HTTP request answered with a 5xx, answered by no status at all because
    the app raised, or taking `slow_seconds` or more (a long-lived stream would count
    as slow: none is served over plain HTTP yet). The path is logged without its query
    string, where a token may travel."""

    def __init__(self, app: ASGIApp, slow_seconds: float) -> None:
        self.app = app
        self.slow_seconds = slow_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = _now()
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        raised = True
        try:
            await self.app(scope, receive, sending)
            raised = False
        finally:
            elapsed = _now() - started
            if status >= 500 or (raised and status == 0) or elapsed >= self.slow_seconds:
                client = scope.get("client")
                log.warning(
                    "slow request" if status and status < 500 else "failed request",
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status or None,
                        "duration_ms": round(elapsed * 1000, 1),
                        "client": f"{client[0]}:{client[1]}" if client else None,
                    },
                )
