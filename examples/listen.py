"""Print every notification of a user, exactly once, with the Python SDK.

    pip install -e '.[client]'
    python examples/listen.py alice [--url http://127.0.0.1:8000] [--token JWT]

`notifier.client.Subscriber` keeps the position (the last seq printed), resumes with it
after any disconnect (a server restart, a network blip, a 1012/1013 close), drops
duplicates, backs off with jitter, and renews the token before it expires through the
callback below. Without --token the callback mints tokens with `notifier token`
(development mode); a backend would ask its own auth service instead.
`notifier tail alice` does the same from the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys

from notifier.client import Gap, Subscriber


def minted(user: str) -> str:
    """A fresh development token for `user` (valid one hour)."""
    command = [sys.executable, "-m", "notifier", "token", user, "--ttl", "3600"]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


def on_gap(gap: Gap) -> None:
    print(f"# notifications after seq {gap.after} expired; refresh the inbox", flush=True)


async def listen(url: str, user: str, token: str | None) -> None:
    async def fresh_token() -> str:  # called at start, before each exp and after a 4401
        return await asyncio.to_thread(minted, user)

    async with Subscriber(url, token or fresh_token, on_gap=on_gap) as subscriber:
        async for notification in subscriber:
            print(json.dumps(notification), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("user")
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--token")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(listen(args.url, args.user, args.token))


if __name__ == "__main__":
    main()
