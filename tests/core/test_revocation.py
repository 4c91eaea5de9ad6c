"""The revocation rule (notifier/core/revocation.py): which tokens a revocation refuses."""

from __future__ import annotations

import pytest

from notifier.core.revocation import cutoff, refuses


def test_cutoff_truncates_to_whole_seconds() -> None:
    """A revocation at 100.7 refuses up to second 100, not 101."""
    assert cutoff(100.7) == 100
    assert cutoff(100.0) == 100


def test_a_user_never_revoked_refuses_nothing() -> None:
    """Without a revocation every token passes, with or without `iat`."""
    assert not refuses(None, None)
    assert not refuses(None, 5.0)


@pytest.mark.parametrize(
    ("issued_at", "refused"),
    [(None, True), (50.0, True), (100.0, True), (100.5, False), (101.0, False)],
)
def test_tokens_at_or_before_the_cutoff_or_without_iat_are_refused(
    issued_at: float | None, refused: bool
) -> None:
    """Cutoff 100: `iat` <= 100 or missing is refused; anything after works."""
    assert refuses(100, issued_at) is refused
