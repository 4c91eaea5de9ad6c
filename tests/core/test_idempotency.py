"""Idempotency fingerprints and verdicts (notifier/core/idempotency.py)."""

from __future__ import annotations

import pytest

from notifier.core.idempotency import Verdict, fingerprint, judge


def test_fingerprint_ignores_key_order() -> None:
    """The same data with keys in another order (nested too) has the same fingerprint."""
    a = fingerprint("alice", "t", {"x": 1, "y": {"p": [1, 2], "q": None}})
    b = fingerprint("alice", "t", {"y": {"q": None, "p": [1, 2]}, "x": 1})
    assert a == b


def test_fingerprint_is_deterministic() -> None:
    """Fingerprinting the same request twice gives the same text."""
    assert fingerprint("u", "t", {"a": "é"}) == fingerprint("u", "t", {"a": "é"})


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(("bob", "t", {"a": 1}), id="user"),
        pytest.param(("alice", "t2", {"a": 1}), id="type"),
        pytest.param(("alice", "t", {"a": 2}), id="data-value"),
        pytest.param(("alice", "t", {"b": 1}), id="data-key"),
        pytest.param(("alice", "t", {"a": "1"}), id="data-type"),
        pytest.param(("alice", "t", {"a": [1]}), id="data-shape"),
        pytest.param(("alice", "t", {}), id="data-empty"),
        pytest.param(("alicet", "", {"a": 1}), id="field-boundary"),
    ],
)
def test_fingerprint_differs_for_another_request(other: tuple[str, str, dict[str, object]]) -> None:
    """Changing user_id, type or data changes the fingerprint."""
    assert fingerprint("alice", "t", {"a": 1}) != fingerprint(*other)


def test_judge_unused_key_is_new() -> None:
    """A key with nothing stored is NEW."""
    assert judge(None, fingerprint("u", "t", {})) is Verdict.NEW


def test_judge_same_request_is_repeat() -> None:
    """The stored fingerprint equal to the request's is a REPEAT."""
    assert judge(fingerprint("u", "t", {"a": 1}), fingerprint("u", "t", {"a": 1})) is Verdict.REPEAT


def test_judge_other_request_is_conflict() -> None:
    """A stored fingerprint different from the request's is a CONFLICT."""
    stored = fingerprint("u", "t", {"a": 1})
    assert judge(stored, fingerprint("u", "t", {"a": 2})) is Verdict.CONFLICT
