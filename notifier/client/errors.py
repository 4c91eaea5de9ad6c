"""What the client raises. Every error is a `NotifierError`."""

from __future__ import annotations

from typing import Any


class NotifierError(Exception):
    """Base of the client's errors."""


class ApiError(NotifierError):
    """The service answered with an error status (after any retries): `status`, its
    `detail`, and `retry_after` seconds when it said when to come back (429, 503)."""

    def __init__(self, status: int, detail: Any, retry_after: float | None = None) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.retry_after = retry_after


class Unreachable(NotifierError):
    """The service could not be reached within the retries (the last error is the
    `__cause__`)."""


class BatchError(NotifierError):
    """A batch failed part way: `published` holds what the chunks before the failed one
    stored (in request order); `error` says why the next chunk failed. Retrying the whole
    batch with the same items is safe: their idempotency keys are kept in the items."""

    def __init__(self, published: list[dict[str, Any]], error: NotifierError) -> None:
        super().__init__(f"batch stopped after {len(published)} notifications: {error}")
        self.published = published
        self.error = error


class Unauthorized(NotifierError):
    """The service refused the subscriber's token and no fresh one helped."""


class Revoked(NotifierError):
    """The user's tokens were revoked (close code 4403): the subscriber stops, and must
    not reconnect with the same token."""
