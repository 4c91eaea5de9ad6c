"""Publish from a backend with the Python SDK: one notification, then a batch.

    pip install -e '.[client]'
    NOTIFIER_API_KEY=... python examples/publish.py alice [--url http://127.0.0.1:8000]

Without NOTIFIER_API_KEY it reads the development key that `notifier serve` created.
`Publisher` retries a publish whose answer was lost (connection errors, 502/503/504,
honouring Retry-After) with the same Idempotency-Key, so a retry never notifies twice;
it never retries a 4xx. `publish_batch` cuts any number of items into requests of 1,000.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from notifier.client import Publisher


def api_key() -> str:
    key = os.environ.get("NOTIFIER_API_KEY")
    if key:
        return key
    return str(json.loads(Path(".notifier-dev.json").read_text())["api_key"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("user")
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    args = parser.parse_args()
    with Publisher(args.url, api_key()) as notifier:
        one = notifier.publish(args.user, "comment.created", {"text": "Hi!"})
        print("published seq", one["seq"])
        many = notifier.publish_batch(
            {"user_id": args.user, "type": "digest.item", "data": {"n": n}} for n in range(3)
        )
        print("published seqs", [n["seq"] for n in many])


if __name__ == "__main__":
    main()
