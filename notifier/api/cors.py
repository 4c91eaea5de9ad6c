"""CORS for the routes a browser page calls with a user token: the inbox
(`/v1/me/...`) and the SSE stream (`/v1/sse`), so that the browser client served at
`/v1/client.js` works from the application's own origin.

Those routes authenticate with a bearer token the page sends on purpose, never with a
cookie, so answering any origin lends a page nothing it did not already hold; with
`NOTIFIER_ALLOWED_ORIGINS` set only those origins get CORS headers, as on the WebSocket
handshake. Every other route (publishing is for backends) is passed through untouched
after one prefix check, and no response carries `Access-Control-Allow-Credentials`.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

PREFIXES = ("/v1/me/", "/v1/sse")
ALLOW_METHODS = b"GET, POST"
ALLOW_HEADERS = b"Authorization, Content-Type, Last-Event-ID"
MAX_AGE = b"600"


class UserRoutesCors:
    """Preflights answered here (204); actual answers get `Access-Control-Allow-Origin`."""

    def __init__(self, app: ASGIApp, allowed_origins: list[str]) -> None:
        self.app = app
        self.allowed = frozenset(allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIXES):
            await self.app(scope, receive, send)
            return
        origin = preflight = None
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value
            elif name == b"access-control-request-method":
                preflight = value
        if origin is None or (self.allowed and origin.decode("latin-1") not in self.allowed):
            await self.app(scope, receive, send)  # no CORS headers: the browser blocks it
            return
        headers = [(b"access-control-allow-origin", origin if self.allowed else b"*")]
        if self.allowed:
            headers.append((b"vary", b"Origin"))
        if scope["method"] == "OPTIONS" and preflight is not None:
            headers += [
                (b"access-control-allow-methods", ALLOW_METHODS),
                (b"access-control-allow-headers", ALLOW_HEADERS),
                (b"access-control-max-age", MAX_AGE),
            ]
            await send({"type": "http.response.start", "status": 204, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *headers]
            await send(message)

        await self.app(scope, receive, send_with_cors)
