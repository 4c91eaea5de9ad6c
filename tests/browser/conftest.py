"""Headless Chromium (Debian's `chromium`, driven by Playwright; no browser is ever
downloaded) against a real `notifier serve` on PostgreSQL in development mode, so that
`/demo?user=NAME` works as it does for a developer. A failing test leaves a screenshot
of each of its pages in test-results/browser/."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.chromium import ARGS, CHROMIUM
from tests.support import ROOT, Server, timeout

ARTIFACTS = ROOT / "test-results" / "browser"


@dataclass
class DemoServer:
    """A development-mode server and the API key it generated."""

    server: Server
    api_key: str

    @property
    def url(self) -> str:
        return self.server.url

    def demo(self, user: str, **params: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in {"user": user, **params}.items())
        return f"{self.url}/demo?{query}"

    def publish(self, user: str, text: str) -> dict[str, Any]:
        answer = httpx.post(
            self.url + "/v1/notifications",
            json={"user_id": user, "type": "test.browser", "data": {"text": text}},
            headers={"Authorization": f"Bearer {self.api_key}"},
            timeout=10,
        )
        assert answer.status_code == 201, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def sockets(self) -> float:
        text = httpx.get(self.url + "/metrics", timeout=10).text
        found = re.search(r"^notifier_open_sockets (\S+)$", text, re.MULTILINE)
        return float(found.group(1)) if found else 0.0

    def status(self, method: str, path: str) -> int:
        headers = {"Authorization": f"Bearer {self.api_key}"}
        return httpx.request(method, self.url + path, headers=headers, timeout=10).status_code


@pytest.fixture(scope="module")
def demo_server(pg_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    credentials = tmp_path_factory.mktemp("browser") / "dev.json"
    server = Server(
        pg_database,
        env_extra={
            # Empty values count as unset: development mode generates both.
            "NOTIFIER_JWT_SECRET": "",
            "NOTIFIER_API_KEYS": "",
            "NOTIFIER_DEV_CREDENTIALS_FILE": str(credentials),
        },
        args=["--no-access-log"],
    ).start()
    try:
        yield DemoServer(server, json.loads(credentials.read_text())["api_key"])
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser(demo_server: DemoServer) -> Iterator[Any]:
    """Started after the server: Playwright's sync API runs an event loop in this thread
    while it lives, and the database fixtures use `asyncio.run`."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (`make chromium` installs Debian's package)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[FAILED] = report.failed
    return report


FAILED = pytest.StashKey[bool]()


@pytest.fixture
def context(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """One browser context (one profile: its tabs share storage, locks and channels)."""
    context = browser.new_context()
    context.set_default_timeout(timeout(10) * 1000)
    try:
        yield context
    finally:
        if request.node.stash.get(FAILED, False):
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            for index, page in enumerate(context.pages):
                path = ARTIFACTS / f"{request.node.name}-{index}.png"
                page.screenshot(path=str(path), full_page=True)
                print(f"screenshot: {path}")
        context.close()
