"""Take the README's screenshot of the inbox demo page (docs/img/demo.png).

A development-mode `notifier serve` on SQLite in a temporary folder, a few
notifications, one read, then headless Chromium (Debian's, via Playwright) at
/demo?user=alice. Run: `.venv/bin/python scripts/demo_screenshot.py`.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import httpx
from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser.chromium import ARGS, CHROMIUM  # noqa: E402
from tests.support import Server  # noqa: E402

MESSAGES = [
    ("comment.created", {"text": "Ana commented on “Q3 roadmap”: looks good to me"}),
    ("order.shipped", {"order": 1042, "carrier": "DHL"}),
    ("mention", {"text": "Ben mentioned you in #release"}),
    ("build.failed", {"text": "main: 2 tests failed in tests/e2e"}),
]


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        server = Server(
            f"sqlite+aiosqlite:///{folder}/demo.db",
            env_extra={
                "NOTIFIER_JWT_SECRET": "",
                "NOTIFIER_API_KEYS": "",
                "NOTIFIER_DEV_CREDENTIALS_FILE": f"{folder}/dev.json",
            },
        ).start()
        try:
            key = json.loads(Path(f"{folder}/dev.json").read_text())["api_key"]
            ids = []
            for kind, data in MESSAGES:
                answer = httpx.post(
                    server.url + "/v1/notifications",
                    json={"user_id": "alice", "type": kind, "data": data},
                    headers={"Authorization": f"Bearer {key}"},
                )
                ids.append(answer.json()["id"])
            token = httpx.get(server.url + "/demo/token", params={"user": "alice"}).json()["token"]
            httpx.post(
                server.url + "/v1/me/notifications/read",
                json={"ids": [ids[1]]},
                headers={"Authorization": f"Bearer {token}"},
            )
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                page = browser.new_page(viewport={"width": 760, "height": 420})
                page.goto(server.url + "/demo?user=alice")
                expect(page.get_by_test_id("state")).to_have_text("live")
                expect(page.get_by_test_id("unread-count")).to_have_text("3")
                target = ROOT / "docs" / "img" / "demo.png"
                target.parent.mkdir(exist_ok=True)
                page.screenshot(path=str(target))
                browser.close()
            print(f"wrote {target.relative_to(ROOT)}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
