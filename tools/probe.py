"""A hostile client against one running notifier: the rows of issue 13, each OK or not.

    python tools/probe.py --url http://127.0.0.1:8000 --api-key KEY --jwt-secret SECRET \
        [--log server.log] [--head-timeout 20] [--body-timeout 60]

Every row sends what an attacker would (deep or huge bodies, slow or oversized heads,
forged and odd tokens, handshake floods) and checks the precise refusal; the last row
checks that the server still serves. It writes notifications only for users it makes
up (`probe-...`). Loopback only: it is a test tool, not a scanner. Exit status 0 when
every row is OK.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import socket
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from jose import jwt
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus


class Probe:
    def __init__(self, options: argparse.Namespace) -> None:
        self.url = options.url.rstrip("/")
        parts = urlsplit(self.url)
        if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit("probe: loopback URLs only")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.key = options.api_key
        self.secret = options.jwt_secret
        self.log = Path(options.log) if options.log else None
        self.head_timeout = options.head_timeout
        self.body_timeout = options.body_timeout
        self.http = httpx.Client(timeout=30)

    # -- helpers ------------------------------------------------------------------------

    def token(self, user: str, headers: dict[str, object] | None = None, **claims: object) -> str:
        now = int(time.time())
        body: dict[str, object] = {"sub": user, "iat": now, "exp": now + 600, **claims}
        return str(jwt.encode(body, self.secret, algorithm="HS256", headers=headers))

    def post(self, path: str, body: bytes, **headers: str) -> httpx.Response:
        return self.http.post(
            self.url + path,
            content=body,
            headers={"Authorization": f"Bearer {self.key}", **headers},
        )

    def raw(self, data: bytes, wait: float) -> tuple[bytes, float]:
        started = time.monotonic()
        with socket.create_connection((self.host, self.port), timeout=wait) as sock:
            sock.sendall(data)
            chunks = []
            try:
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
            except TimeoutError:
                pass
        return b"".join(chunks), time.monotonic() - started

    async def handshake(self, token: str) -> str:
        url = self.url.replace("http", "ws", 1) + f"/v1/ws?after=0&access_token={token}"
        try:
            async with connect(url, open_timeout=10) as ws:
                try:
                    await asyncio.wait_for(ws.recv(), 5)
                except ConnectionClosed as closed:
                    return f"closed {closed.rcvd.code if closed.rcvd else None}"
                return "open"
        except InvalidStatus as refused:
            return f"http {refused.response.status_code}"

    # -- rows ---------------------------------------------------------------------------

    def deep_data_with_key(self) -> tuple[str, bool]:
        user = f"probe-{uuid.uuid4().hex[:8]}"
        data = b'{"a":' * 253 + b"{}" + b"}" * 253
        body = b'{"user_id":"' + user.encode() + b'","type":"t","data":' + data + b"}"
        single = self.post("/v1/notifications", body, **{"Idempotency-Key": uuid.uuid4().hex})
        item = body[:-1] + b',"idempotency_key":"k"}'
        batch = self.post("/v1/notifications/batch", b'{"notifications":[' + item + b"]}")
        statuses = (single.status_code, batch.status_code)
        return f"{statuses[0]} {statuses[1]}", statuses == (422, 422)

    def big_integer(self) -> tuple[str, bool]:
        body = b'{"user_id":"probe","type":"t","data":{"n":18446744073709551616}}'
        status = self.post("/v1/notifications", body).status_code
        return str(status), status == 422

    def nul_in_sub(self) -> tuple[str, bool]:
        token = self.token("probe\x00x")
        status = self.http.get(
            self.url + "/v1/me/notifications", headers={"Authorization": f"Bearer {token}"}
        ).status_code
        outcome = asyncio.run(self.handshake(token))
        return f"{status}, {outcome}", status == 401 and outcome in ("closed 4401", "http 403")

    def auth_before_body(self) -> tuple[str, bool]:
        head = (
            b"POST /v1/notifications/batch HTTP/1.1\r\nhost: x\r\n"
            b"authorization: Bearer wrong\r\ncontent-length: 16000000\r\n\r\n"
        )
        answer, _ = self.raw(head, wait=2)
        status = answer[9:12].decode(errors="replace")
        return f"{status} before any body byte", status == "401"

    def oversized_head(self) -> tuple[str, bool]:
        answer, _ = self.raw(b"GET /healthz HTTP/1.1\r\nx-a: " + b"a" * 40000 + b"\r\n\r\n", 10)
        status = answer[9:12].decode(errors="replace")
        return status, status == "431"

    def slow_head(self) -> tuple[str, bool]:
        answer, took = self.raw(b"GET /healthz HTTP/1.1\r\nhost: x\r\n", self.head_timeout + 10)
        status = answer[9:12].decode(errors="replace")
        return f"{status} after {took:.1f} s", status == "408" and took < self.head_timeout + 5

    def slow_body(self) -> tuple[str, bool]:
        head = (
            b"POST /v1/notifications HTTP/1.1\r\nhost: x\r\nauthorization: Bearer "
            + self.key.encode()
            + b"\r\ncontent-length: 100\r\n\r\n{"
        )
        answer, took = self.raw(head, self.body_timeout + 10)
        status = answer[9:12].decode(errors="replace")
        return f"{status} after {took:.1f} s", status == "408" and took < self.body_timeout + 5

    def batch_count_first(self) -> tuple[str, bool]:
        body = b'{"notifications":[' + b",".join([b"{}"] * 300_000) + b"]}"
        response = self.post("/v1/notifications/batch", body)
        return f"{response.status_code}, {len(response.content)} bytes", (
            response.status_code == 422 and len(response.content) < 1000
        )

    def bounded_errors(self) -> tuple[str, bool]:
        fields = {f"u{i}" + "n" * 200: 1 for i in range(3000)}
        body = json.dumps({"user_id": "probe", "type": "t", "data": {}, **fields}).encode()
        response = self.post("/v1/notifications", body)
        return f"{response.status_code}, {len(response.content)} bytes", (
            response.status_code == 422 and len(response.content) < 20_000
        )

    def encoded_token_name(self) -> tuple[str, bool]:
        token = self.token(f"probe-{uuid.uuid4().hex[:8]}")
        url = self.url.replace("http", "ws", 1) + f"/v1/ws?after=0&access_toke%6E={token}"

        async def run() -> str:
            async with connect(url, open_timeout=10) as ws:
                await asyncio.wait_for(ws.recv(), 5)
            return "open"

        outcome = asyncio.run(run())
        if self.log is None:
            return f"{outcome} (no --log: redaction not checked)", outcome == "open"
        time.sleep(0.5)
        leaked = token.rsplit(".", 1)[1] in self.log.read_text(errors="replace")
        return f"{outcome}, {'IN THE LOG' if leaked else 'not in the log'}", not leaked

    def absurd_exp(self) -> tuple[str, bool]:
        token = self.token("probe", exp=1e300)
        status = self.http.get(
            self.url + "/v1/me/notifications", headers={"Authorization": f"Bearer {token}"}
        ).status_code
        return str(status), status == 401

    def crit_header(self) -> tuple[str, bool]:
        token = self.token("probe", headers={"crit": ["exp"]})
        status = self.http.get(
            self.url + "/v1/me/notifications", headers={"Authorization": f"Bearer {token}"}
        ).status_code
        return str(status), status == 401

    def alg_none(self) -> tuple[str, bool]:
        def b64(value: object) -> str:
            return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

        token = b64({"alg": "none"}) + "." + b64({"sub": "probe", "exp": 4e9}) + "."
        status = self.http.get(
            self.url + "/v1/me/notifications", headers={"Authorization": f"Bearer {token}"}
        ).status_code
        return str(status), status == 401

    def docs_off(self) -> tuple[str, bool]:
        statuses = [self.http.get(self.url + path).status_code for path in ("/docs", "/redoc")]
        return " ".join(map(str, statuses)), statuses == [404, 404]

    def handshake_flood(self) -> tuple[str, bool]:
        token = self.token(f"probe-{uuid.uuid4().hex[:8]}")

        async def run() -> list[str]:
            return await asyncio.gather(*(self.handshake(token) for _ in range(150)))

        outcomes = asyncio.run(run())
        refused = outcomes.count("closed 4429")
        return f"{outcomes.count('open')} open, {refused} closed 4429", refused > 0

    def still_serving(self) -> tuple[str, bool]:
        status = self.http.get(self.url + "/healthz").status_code
        return str(status), status == 200

    def rows(self) -> list[tuple[str, Callable[[], tuple[str, bool]]]]:
        return [
            ("deep data with an Idempotency-Key: 422 (single, batch)", self.deep_data_with_key),
            ("integer beyond 64 bits: 422", self.big_integer),
            ("NUL in a token's sub: 401 / 4401", self.nul_in_sub),
            ("API key checked before the body is read", self.auth_before_body),
            ("head over 32 KiB: 431", self.oversized_head),
            ("slow head: 408 within the head time limit", self.slow_head),
            ("slow body: 408 within the body time limit", self.slow_body),
            ("batch of 300,000 items: a short 422", self.batch_count_first),
            ("3,000 unknown fields: a short 422", self.bounded_errors),
            ("?access_toke%6E=<JWT>: redacted from the log", self.encoded_token_name),
            ("exp of 1e300: 401", self.absurd_exp),
            ("crit header: 401", self.crit_header),
            ("alg none: 401", self.alg_none),
            ("/docs and /redoc off: 404", self.docs_off),
            ("150 handshakes at once: some closed 4429", self.handshake_flood),
            ("still serving: /healthz 200", self.still_serving),
        ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--jwt-secret", required=True)
    parser.add_argument("--log", help="the server's log file, to check redaction")
    parser.add_argument("--head-timeout", type=float, default=20.0)
    parser.add_argument("--body-timeout", type=float, default=60.0)
    probe = Probe(parser.parse_args(argv))
    failed = 0
    for name, row in probe.rows():
        try:
            detail, ok = row()
        except Exception as error:  # a row that cannot even run is a failed row
            detail, ok = f"{type(error).__name__}: {error}"[:200], False
        failed += not ok
        print(f"{'OK  ' if ok else 'FAIL'}  {name:<58} {detail}", flush=True)
    print(f"{len(probe.rows()) - failed} OK, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
