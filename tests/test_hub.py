"""The hub's per-user cap and its revocation close (notifier/hub.py), without I/O."""

from __future__ import annotations

from notifier.hub import Hub


class Stream:
    def __init__(self, issued_at: float | None) -> None:
        self.issued_at = issued_at
        self.closed: tuple[int, str] | None = None
        self.known_seq = 0

    def offer(self, seq: int, frame: str | None, created_at: float | None) -> None:
        pass

    def push(self, frame: str) -> None:
        pass

    def request_close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


def test_add_refuses_beyond_the_limit_and_holds_nothing() -> None:
    """With a limit of 2 the third stream of a user is refused; other users are not."""
    hub = Hub()
    assert hub.add("a", Stream(1), limit=2) and hub.add("a", Stream(1), limit=2)
    refused = Stream(1)
    assert not hub.add("a", refused, limit=2)
    assert hub.subscribers("a") == 2
    assert hub.add("b", Stream(1), limit=2)
    assert hub.user_count() == 2


def test_revoke_closes_streams_with_tokens_up_to_the_cut() -> None:
    """Streams whose `iat` is at or before the cut, or missing, are closed; later ones,
    and other users' streams, stay open."""
    hub = Hub()
    old, none, fresh, other = Stream(100.0), Stream(None), Stream(101.0), Stream(1.0)
    for stream in (old, none, fresh):
        hub.add("a", stream)
    hub.add("b", other)
    assert hub.revoke("a", 100, 4403, "revoked") == 2
    assert old.closed == none.closed == (4403, "revoked")
    assert fresh.closed is None and other.closed is None
