"""Notification ids: random version-4 UUIDs, written as text without uuid.UUID."""

from __future__ import annotations

import uuid

from notifier.store import _new_ids


def test_ids_are_canonical_random_version_4_uuids() -> None:
    ids = _new_ids(4000)
    assert len(set(ids)) == 4000
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text  # canonical: lower case, hyphens where they belong
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
    # every random digit takes every value: none is stuck (the variant digit has four)
    for position in (0, 9, 15, 17, 35):
        assert len({text[position] for text in ids}) == 16
    assert {text[19] for text in ids} == set("89ab")


def test_no_ids_for_nothing() -> None:
    assert _new_ids(0) == []
