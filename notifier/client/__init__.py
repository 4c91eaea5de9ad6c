"""The Python client of notifier: publish from a backend, subscribe from anywhere.

    pip install 'notifier[client]'     # httpx (HTTP) and websockets (the live stream)

- `Publisher` / `AsyncPublisher`: publish with retries that never publish twice (one
  `Idempotency-Key` per logical publish, kept across its retries); batches of any size.
- `Subscriber`: an async iterator over one user's notifications, each exactly once, in
  seq order, across reconnects, server restarts and token renewals.

The client depends on nothing of the service: it speaks the documented HTTP and
WebSocket protocol (docs/reference.md), so it works against any notifier version that
keeps it.
"""

from notifier.client.backoff import Backoff
from notifier.client.errors import (
    ApiError,
    BatchError,
    NotifierError,
    Revoked,
    Unauthorized,
    Unreachable,
)
from notifier.client.publisher import AsyncPublisher, Publisher
from notifier.client.subscriber import (
    Archived,
    Delivered,
    Event,
    Gap,
    Read,
    State,
    StateChanged,
    Subscriber,
)

__all__ = [
    "ApiError",
    "Archived",
    "AsyncPublisher",
    "Backoff",
    "BatchError",
    "Delivered",
    "Event",
    "Gap",
    "NotifierError",
    "Publisher",
    "Read",
    "Revoked",
    "State",
    "StateChanged",
    "Subscriber",
    "Unauthorized",
    "Unreachable",
]
