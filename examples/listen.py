"""A resuming WebSocket client: prints every notification of a user, exactly once.

    python examples/listen.py alice [--url ws://127.0.0.1:8000] [--token JWT]

It remembers the last `seq` it printed and reconnects with `after=<seq>` (backing off on
failures), so a restart of the server, a network blip or a 1012/1013 close loses nothing.
Without --token it mints one with `notifier token` (development mode).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import subprocess
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus


async def listen(url: str, token: str) -> None:
    last_seq = 0
    failures = 0
    while True:
        try:
            async with connect(f"{url}/v1/ws?access_token={token}&after={last_seq}") as ws:
                failures = 0
                async for raw in ws:
                    frame = json.loads(raw)
                    if frame["type"] == "notification":
                        notification = frame["notification"]
                        last_seq = notification["seq"]
                        print(json.dumps(notification), flush=True)
                    elif frame["type"] == "replayed" and not frame["complete"]:
                        print("# some notifications expired; refresh the inbox", flush=True)
                    elif frame["type"] == "read":
                        print(f"# read on another device: {raw}", flush=True)
        except ConnectionClosed as closed:
            if closed.rcvd is not None and closed.rcvd.code == 4401:
                sys.exit("token refused or expired: get a fresh one")
        except (OSError, InvalidStatus):
            pass
        failures += 1
        await asyncio.sleep(min(10.0, 0.2 * 2**failures) * random.uniform(0.5, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("user")
    parser.add_argument("--url", default="ws://127.0.0.1:8000")
    parser.add_argument("--token")
    args = parser.parse_args()
    token = (
        args.token
        or subprocess.run(
            [sys.executable, "-m", "notifier", "token", args.user],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(listen(args.url, token))


if __name__ == "__main__":
    main()
