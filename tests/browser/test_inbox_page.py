"""The inbox demo page (`/demo`, which uses only the served `/v1/client.js`) in headless
Chromium against a real server: live arrival, a kill -9 and restart, two tabs on one
connection, token renewal, SSE when WebSocket is blocked, revocation."""

from __future__ import annotations

import time
from typing import Any

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
