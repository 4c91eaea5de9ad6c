"""tools/probe.py, the hostile client of issue 13, against a real server: every row OK."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support import API_KEY, ROOT, SECRET, Server, timeout


def test_every_row_of_the_probe_is_ok() -> None:
    """The probe's rows (deep data with a key, big integers, NUL in sub, auth before
    the body, oversized and slow heads, slow bodies, huge batches and error lists, a
    percent-encoded token name kept out of the log, absurd exp, crit, alg none, docs off,
    a handshake flood) all pass, and the server still serves."""
    with tempfile.TemporaryDirectory(prefix="notifier-probe-") as folder:
        server = Server(
            f"sqlite+aiosqlite:///{Path(folder) / 'probe.db'}",
            env_extra={
                "NOTIFIER_HEAD_TIMEOUT_SECONDS": "1",
                "NOTIFIER_BODY_TIMEOUT_SECONDS": "1",
                "NOTIFIER_HANDSHAKE_RATE": "20",
            },
        ).start()
        try:
            result = subprocess.run(
                [
                    sys.executable,
                    str(ROOT / "tools" / "probe.py"),
                    f"--url={server.url}",
                    f"--api-key={API_KEY}",
                    f"--jwt-secret={SECRET}",
                    f"--log={server.log_path}",
                    "--head-timeout=1",
                    "--body-timeout=1",
                ],
                capture_output=True,
                text=True,
                timeout=timeout(120),
                check=False,
            )
        finally:
            server.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout
    assert "16 OK, 0 failed" in result.stdout, result.stdout
