"""How the browser tests launch Chromium: Debian's package, never a downloaded build."""

from __future__ import annotations

import os

CHROMIUM = os.environ.get("NOTIFIER_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
