"""deploy/nginx.conf in front of a real `notifier serve`: the SSE stream passes through
it as it is written (the replay and its `replayed` event, heartbeat comments, a live
notification within a second of its publish). Runs where an `nginx` binary is
installed (Debian's `nginx-light` is enough); skipped elsewhere.

(nginx 1.22 turned out to pass this stream on promptly even with `proxy_buffering on`,
and the service's `X-Accel-Buffering: no` turns buffering off anyway; the location's
settings are there for older proxies and for gzip, which would hold events back.)"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.sse_support import sse_open
from tests.e2e.ws_support import items, own_server
from tests.support import ROOT, Server, free_port, new_user, publish, publish_batch, timeout

NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
)
pytestmark = pytest.mark.skipif(NGINX is None, reason="no nginx binary on this machine")


def config(upstream_port: int, port: int) -> str:
    """deploy/nginx.conf with its two replicas replaced by one local server and its
    listener by a free loopback port; nothing else changed."""
    text = (ROOT / "deploy" / "nginx.conf").read_text()
    text, replicas = re.subn(
        r"server notifier-\d:8000[^;]*;", f"server 127.0.0.1:{upstream_port};", text
    )
    assert replicas == 2, "deploy/nginx.conf changed shape: update this test"
    text, listeners = re.subn(r"listen 8080;", f"listen 127.0.0.1:{port};", text)
    assert listeners == 1
    return text


@contextlib.contextmanager
def nginx(upstream: Server, folder: Path) -> Iterator[str]:
    """nginx in the foreground with the repository's config; its base URL."""
    assert NGINX is not None
    port = free_port()
    (folder / "logs").mkdir()
    conf = folder / "nginx.conf"
    conf.write_text(config(upstream.port, port))
    check = subprocess.run(
        [NGINX, "-t", "-p", str(folder), "-c", str(conf)], capture_output=True, timeout=30
    )
    assert check.returncode == 0, check.stderr.decode()
    log = folder / "logs" / "nginx.out"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                NGINX,
                "-p",
                str(folder),
                "-c",
                str(conf),
                "-g",
                f"daemon off; pid {folder}/nginx.pid;",
            ],
            stdout=out,
            stderr=out,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout(10)
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/proxy-health", timeout=1).status_code == 200:
                    break
            assert process.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextlib.asynccontextmanager
async def behind_nginx(tmp_path: Path, **env: str) -> AsyncIterator[tuple[Server, Server]]:
    """A server, and a stand-in for it whose URL is nginx's (for the SSE helpers)."""
    async with own_server(f"sqlite+aiosqlite:///{tmp_path / 'nginx.db'}", **env) as server:
        with nginx(server, tmp_path) as url:
            proxied = Server(server.database_url, port=int(url.rsplit(":", 1)[1]))
            yield server, proxied


async def test_the_stream_passes_through_nginx_unbuffered(tmp_path: Path) -> None:
    """Through nginx: the replay and `replayed` arrive, then a live notification within a
    second of its publish, and heartbeat comments in between."""
    async with behind_nginx(tmp_path, NOTIFIER_SSE_HEARTBEAT_SECONDS="0.5") as (server, proxied):
        user = new_user()
        assert publish_batch(server, items(user, 3)).status_code == 201
        async with sse_open(proxied, user, after=0) as sse:
            before, replayed = await sse.until("replayed")
            assert [e.data["seq"] for e in before] == [1, 2, 3]
            assert replayed.data == {"last_seq": 3, "complete": True}
            comment = await sse.next(3)
            assert comment.event == ":"
            published = time.monotonic()
            response = await asyncio.to_thread(publish, None, server, user)
            assert response.status_code == 201
            event = await sse.event(5)
            took = time.monotonic() - published
    assert event.data["seq"] == 4
    assert took < timeout(1), f"the live event took {took:.2f}s through nginx"
