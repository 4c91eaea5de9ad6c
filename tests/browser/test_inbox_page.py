"""The inbox demo page (`/demo`, which uses only the served `/v1/client.js`) in headless
Chromium against a real server: live arrival, a kill -9 and restart, two tabs on one
connection, token renewal, SSE when WebSocket is blocked, revocation; and the client
imported by a page of another origin."""

from __future__ import annotations

import contextlib
import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import DemoServer
from tests.support import new_user, timeout

# Makes every WebSocket to /v1/ws fail before it opens, as a proxy that refuses the
# upgrade would: the page's client has to fall back to SSE.
BLOCK_WEBSOCKET = """
(() => {
  const Real = window.WebSocket;
  window.WebSocket = function (url, protocols) {
    if (String(url).includes("/v1/ws")) return new Real("ws://127.0.0.1:9/blocked");
    return new Real(url, protocols);
  };
  window.WebSocket.prototype = Real.prototype;
  Object.assign(window.WebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
})();
"""


def open_inbox(context: Any, server: DemoServer, user: str, **params: str) -> Page:
    page: Page = context.new_page()
    page.goto(server.demo(user, **params))
    expect(page.get_by_test_id("state")).to_have_text("live")
    return page


def shown(page: Page) -> list[int]:
    """The seqs the page shows, top to bottom."""
    values: list[str] = page.locator("[data-seq]").evaluate_all(
        "items => items.map(item => item.dataset.seq)"
    )
    return [int(value) for value in values]


def expect_shown(page: Page, seqs: list[int], seconds: float = 10) -> None:
    deadline = time.monotonic() + timeout(seconds)
    while shown(page) != seqs and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert shown(page) == seqs


def test_a_publish_shows_in_the_list_and_the_badge_within_a_second(
    context: Any, demo_server: DemoServer
) -> None:
    """Live arrival: the item (with `data.text`, unread) and the badge within 1 s."""
    user = new_user()
    demo_server.publish(user, "older")
    page = open_inbox(context, demo_server, user)
    expect(page.get_by_test_id("unread-count")).to_have_text("1")
    started = time.monotonic()
    demo_server.publish(user, "hello there")
    item = page.locator('[data-seq="2"]')
    expect(item).to_contain_text("hello there", timeout=timeout(1) * 1000)
    expect(page.get_by_test_id("unread-count")).to_have_text("2", timeout=timeout(1) * 1000)
    assert time.monotonic() - started < timeout(1.0)
    expect(item).to_have_class("unread")
    assert shown(page) == [2, 1]


def test_mark_read_mark_all_read_and_archive(context: Any, demo_server: DemoServer) -> None:
    """The page's buttons: one read, all read, archive (when the server has it)."""
    user = new_user()
    for text in ("a", "b", "c"):
        demo_server.publish(user, text)
    page = open_inbox(context, demo_server, user)
    expect(page.get_by_test_id("unread-count")).to_have_text("3")
    page.locator('[data-seq="2"] [data-action="read"]').click()
    expect(page.get_by_test_id("unread-count")).to_have_text("2")
    expect(page.locator('[data-seq="2"]')).not_to_have_class("unread")
    page.get_by_test_id("mark-all-read").click()
    expect(page.get_by_test_id("unread-count")).to_have_text("0")
    if demo_server.status("POST", "/v1/me/notifications/archive") == 404:
        return  # archive is v1.1; this server does not have it yet
    page.locator('[data-seq="3"] [data-action="archive"]').click()
    expect(page.locator('[data-seq="3"]')).to_have_count(0)


def test_kill_and_restart_shows_every_notification_once_in_order(
    context: Any, demo_server: DemoServer
) -> None:
    """Server killed -9 and restarted with publishes before, while the page reconnects,
    and after: every one is shown exactly once, newest first."""
    user = new_user()
    page = open_inbox(context, demo_server, user)
    for i in range(5):
        demo_server.publish(user, f"before {i}")
    expect_shown(page, [5, 4, 3, 2, 1])
    demo_server.server.kill()
    expect(page.get_by_test_id("state")).not_to_have_text("live")
    demo_server.server.start()
    for i in range(5):
        demo_server.publish(user, f"while reconnecting {i}")
    expect(page.get_by_test_id("state")).to_have_text("live", timeout=timeout(20) * 1000)
    for i in range(5):
        demo_server.publish(user, f"after {i}")
    expect_shown(page, list(range(15, 0, -1)))
    expect(page.get_by_test_id("unread-count")).to_have_text("15")


def test_two_tabs_share_one_connection_and_hand_over(context: Any, demo_server: DemoServer) -> None:
    """Two tabs: one socket on the server; both show each notification; marking read in
    one updates the other's badge; closing the leading tab hands over, nothing lost."""
    user = new_user()
    first = open_inbox(context, demo_server, user)
    second = open_inbox(context, demo_server, user)
    assert first.evaluate("window.notifier.isLeader")
    assert not second.evaluate("window.notifier.isLeader")
    for _ in range(10):
        assert demo_server.sockets() == 1
        first.wait_for_timeout(50)
    demo_server.publish(user, "to both")
    for page in (first, second):
        expect(page.locator('[data-seq="1"]')).to_contain_text("to both")
        expect(page.get_by_test_id("unread-count")).to_have_text("1")
    second.locator('[data-seq="1"] [data-action="read"]').click()
    expect(first.get_by_test_id("unread-count")).to_have_text("0")
    expect(first.locator('[data-seq="1"]')).not_to_have_class("unread")

    first.close()
    demo_server.publish(user, "while handing over")
    expect(second.get_by_test_id("state")).to_have_text("live")
    demo_server.publish(user, "after the hand-over")
    expect_shown(second, [3, 2, 1])
    expect(second.get_by_test_id("unread-count")).to_have_text("2")
    assert second.evaluate("window.notifier.isLeader")
    deadline = time.monotonic() + timeout(5)
    while demo_server.sockets() != 1 and time.monotonic() < deadline:
        second.wait_for_timeout(50)
    assert demo_server.sockets() == 1


def test_a_short_token_is_renewed_on_the_open_connection(
    context: Any, demo_server: DemoServer
) -> None:
    """Tokens of 4 s, renewed with the `auth` frame: the page stays live on one socket
    for three lifetimes and misses nothing."""
    user = new_user()
    sockets: list[str] = []
    page = context.new_page()
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.goto(demo_server.demo(user, ttl="4"))
    expect(page.get_by_test_id("state")).to_have_text("live")
    page.evaluate("window.states = []; window.notifier.on('state', s => window.states.push(s))")
    for i in range(6):
        demo_server.publish(user, f"renewal {i}")
        page.wait_for_timeout(2000)
    expect_shown(page, [6, 5, 4, 3, 2, 1])
    assert page.evaluate("window.states") == []
    assert len(sockets) == 1, sockets


def test_websocket_blocked_the_page_works_over_sse(context: Any, demo_server: DemoServer) -> None:
    """With every WebSocket to /v1/ws failing, the client falls back to SSE."""
    if demo_server.status("GET", "/v1/sse") == 404:
        pytest.skip("this server has no /v1/sse yet")
    user = new_user()
    page = context.new_page()
    page.add_init_script(BLOCK_WEBSOCKET)
    page.goto(demo_server.demo(user))
    expect(page.get_by_test_id("state")).to_have_text("live")
    demo_server.publish(user, "over sse")
    expect(page.locator('[data-seq="1"]')).to_contain_text("over sse")
    expect(page.get_by_test_id("unread-count")).to_have_text("1")


def test_a_revoked_user_sees_revoked_and_no_reconnect(
    context: Any, demo_server: DemoServer
) -> None:
    """After `POST /v1/users/{id}/revoke` the page shows `revoked` and opens no socket."""
    if demo_server.status("POST", f"/v1/users/{new_user()}/revoke") == 404:
        pytest.skip("this server has no revocation yet")
    user = new_user()
    sockets: list[str] = []
    page = context.new_page()
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.goto(demo_server.demo(user))
    expect(page.get_by_test_id("state")).to_have_text("live")
    assert demo_server.status("POST", f"/v1/users/{user}/revoke") == 200
    expect(page.get_by_test_id("state")).to_have_text("revoked", timeout=timeout(3) * 1000)
    page.wait_for_timeout(3000)
    assert len(sockets) == 1, sockets
    expect(page.get_by_test_id("state")).to_have_text("revoked")


APP_PAGE = """<!doctype html><meta charset="utf-8"><title>app</title><ul id="list"></ul>
<p data-testid="state"></p><p data-testid="unread-count"></p><p id="inbox"></p>
<script type="module">
  import { NotifierClient } from "%(server)s/v1/client.js";
  const client = new NotifierClient({ url: "%(server)s", token: "%(token)s" });
  const show = (id, value) => (document.querySelector(`[data-testid="${id}"]`).textContent = value);
  client.on("state", (s) => show("state", s));
  client.on("unread", (n) => show("unread-count", n));
  client.on("notification", (n) => {
    const li = document.createElement("li");
    li.dataset.seq = n.seq;
    li.textContent = n.data.text;
    document.getElementById("list").prepend(li);
  });
  client.list().then((page) => (document.getElementById("inbox").textContent = page.length));
</script>
"""


@contextlib.contextmanager
def app_origin(html: str) -> Iterator[str]:
    """Another origin (a port of its own) serving one page: the application."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_a_page_of_another_origin_imports_the_served_client(
    context: Any, demo_server: DemoServer
) -> None:
    """An application's page on its own origin imports /v1/client.js from the service
    and uses it: the module (CORS), the inbox over HTTP (CORS), live notifications."""
    user = new_user()
    demo_server.publish(user, "history")
    token = httpx.get(demo_server.url + "/demo/token", params={"user": user}, timeout=10)
    html = APP_PAGE % {"server": demo_server.url, "token": token.json()["token"]}
    with app_origin(html) as url:
        page = context.new_page()
        page.goto(url)
        expect(page.get_by_test_id("state")).to_have_text("live")
        expect(page.locator("#inbox")).to_have_text("1")
        expect(page.get_by_test_id("unread-count")).to_have_text("1")
        demo_server.publish(user, "live from afar")
        expect(page.locator('[data-seq="2"]')).to_have_text("live from afar")
        expect(page.get_by_test_id("unread-count")).to_have_text("2")
