"""Planning a publish group without a database (notifier/core/publishing.py): which items
are new, which answer an original (stored, or earlier in the group), which requests are
refused, in what order the new ones get their seqs, and their ids."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
import pytest

from notifier.core.publishing import (
    IdempotencyConflict,
    NewNotification,
    Published,
    PublishRequest,
    Stored,
    keys,
    new_ids,
    plan_group,
)
from notifier.wire.notification import Notification

NOW = datetime(2026, 11, 30, 12, 0, 0, 250000, tzinfo=UTC)
FIRST_SEQ = 101


def item(user: str, body: str, key: str | None = None) -> NewNotification:
    """An item whose fingerprint is its body (what a key stands for)."""
    return NewNotification(user, "t", body, body if key else "", key)


def original(key: str) -> Notification:
    return Notification(
        id=f"00000000-0000-4000-8000-{len(key):012d}",
        user_id="stored-user",
        seq=7,
        type="t",
        data_json='{"stored":true}',
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


STORED_A = original("a")
STORED: Stored = {("p", "a"): ('{"x":1}', STORED_A)}


@dataclass(frozen=True)
class Case:
    name: str
    requests: list[PublishRequest]
    expected: list[list[str] | str]
    """Per request: its conflicting key, or per item "new N" (the group's Nth new
    notification), "as N" (answers the Nth new one) or "stored" (answers STORED_A)."""


CASES = [
    Case(
        "no keys: every item is new, in order",
        [PublishRequest("p", [item("u1", "{}"), item("u2", "{}"), item("u1", "{}")])],
        [["new 0", "new 1", "new 2"]],
    ),
    Case(
        "the repeat of a stored key answers the original",
        [PublishRequest("p", [item("u", '{"x":1}', "a")])],
        [["stored"]],
    ),
    Case(
        "a stored key with another body is a conflict",
        [PublishRequest("p", [item("u", "{}"), item("u", '{"x":2}', "a")])],
        ["a"],
    ),
    Case(
        "a stored key of another publisher is not ours",
        [PublishRequest("q", [item("u", '{"x":2}', "a")])],
        [["new 0"]],
    ),
    Case(
        "the same key twice in a request with the same body: one notification",
        [PublishRequest("p", [item("u", "{}", "k"), item("v", "{}"), item("u", "{}", "k")])],
        [["new 0", "new 1", "as 0"]],
    ),
    Case(
        "the same key twice in a request with another body: the request is refused",
        [PublishRequest("p", [item("u", "{}", "k"), item("u", '{"y":1}', "k")])],
        ["k"],
    ),
    Case(
        "the same key across requests of a group answers the first",
        [
            PublishRequest("p", [item("u", "{}", "k")]),
            PublishRequest("p", [item("v", "{}"), item("u", "{}", "k")]),
            PublishRequest("p", [item("u", '{"y":1}', "k")]),
        ],
        [["new 0"], ["new 1", "as 0"], "k"],
    ),
    Case(
        "a refused request does not shadow a later one",
        [
            PublishRequest("p", [item("u", "{}", "k"), item("u", '{"x":2}', "a")]),
            PublishRequest("p", [item("u", '{"z":1}', "k")]),
            PublishRequest("p", [item("u", '{"z":1}', "k")]),
        ],
        ["a", ["new 0"], ["as 0"]],
    ),
    Case(
        "a batch keeps its order, new items and repeats mixed",
        [
            PublishRequest(
                "p",
                [
                    item("u", "{}"),
                    item("u", '{"x":1}', "a"),
                    item("v", "{}", "b"),
                    item("u", "{}", "c"),
                    item("v", "{}", "b"),
                    item("w", "{}"),
                ],
            )
        ],
        [["new 0", "stored", "new 1", "new 2", "as 1", "new 3"]],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_group_is_planned_as_the_table_says(case: Case) -> None:
    """Each request gets its conflict or, item by item, a new notification (numbered in
    group order), the one an earlier item of the group created, or the stored original."""
    plan = plan_group(case.requests, STORED, NOW)
    seqs = [FIRST_SEQ + n for n in range(len(plan.fresh))]
    outcomes = plan.outcomes(seqs)
    assert len(outcomes) == len(case.requests)

    created = [
        outcome[f.item].notification
        for f in plan.fresh
        if not isinstance(outcome := outcomes[f.request], IdempotencyConflict)
    ]
    wanted_new = [
        (r, i)
        for r, expected in enumerate(case.expected)
        if not isinstance(expected, str)
        for i, what in enumerate(expected)
        if what.startswith("new")
    ]
    assert [(f.request, f.item) for f in plan.fresh] == wanted_new

    for request, expected, outcome in zip(case.requests, case.expected, outcomes, strict=True):
        if isinstance(expected, str):
            assert isinstance(outcome, IdempotencyConflict)
            assert outcome.key == expected
            continue
        assert not isinstance(outcome, IdempotencyConflict)
        assert len(outcome) == len(request.items)
        for new, what, published in zip(request.items, expected, outcome, strict=True):
            kind, _, n = what.partition(" ")
            if kind == "stored":
                assert published == Published(STORED_A, created=False)
                assert published.notification is STORED_A
            elif kind == "as":
                assert not published.created
                assert published.notification is created[int(n)]
            else:
                assert published.created
                notification = published.notification
                assert notification is created[int(n)]
                assert notification.seq == FIRST_SEQ + int(n)
                assert (notification.user_id, notification.type) == (new.user_id, new.type)
                assert notification.data_json == new.data_json
                assert notification.created_at is NOW and notification.read_at is None
                # Its frame, built before the seq was known, is the one it would write.
                assert (
                    notification.frame
                    == Notification(
                        notification.id, new.user_id, notification.seq, new.type, new.data_json, NOW
                    ).frame
                )


def test_the_keys_to_look_up_are_each_publishers_own_once_sorted() -> None:
    requests = [
        PublishRequest("p", [item("u", "{}", "b"), item("u", "{}"), item("u", "{}", "a")]),
        PublishRequest("q", [item("u", "{}", "a")]),
        PublishRequest("p", [item("u", "{}", "b")]),
        PublishRequest("r", [item("u", "{}")]),
    ]
    assert keys(requests) == {"p": ["a", "b"], "q": ["a"]}


def test_a_group_with_nothing_new_needs_no_seqs() -> None:
    plan = plan_group([PublishRequest("p", [item("u", '{"x":1}', "a")])], STORED, NOW)
    assert plan.fresh == []
    assert plan.outcomes([]) == [[Published(STORED_A, created=False)]]


def test_new_notifications_get_valid_distinct_ids() -> None:
    """Every new notification of a group has its own canonical version-4 UUID."""
    plan = plan_group([PublishRequest("p", [item("u", "{}") for _ in range(500)])], {}, NOW)
    ids = [f.id for f in plan.fresh]
    assert len(set(ids)) == 500
    assert all(str(uuid.UUID(i)) == i and uuid.UUID(i).version == 4 for i in ids)
    [outcome] = plan.outcomes(range(1, 501))
    assert not isinstance(outcome, IdempotencyConflict)
    assert [orjson.loads(p.notification.json)["id"] for p in outcome] == ids


def test_ids_are_canonical_random_version_4_uuids() -> None:
    ids = new_ids(4000)
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
    assert new_ids(0) == []


def test_requests_linked_by_a_key_share_a_part() -> None:
    """A request repeating an earlier new item's key joins that request's part (one
    store may leave the part, never half of it); unrelated requests and a conflicting
    one are parts of their own."""
    requests = [
        PublishRequest("p", [item("a", "1", key="k")]),
        PublishRequest("p", [item("b", "2")]),
        PublishRequest("p", [item("a", "1", key="k"), item("c", "3", key="j")]),
        PublishRequest("p", [item("c", "3", key="j")]),
        PublishRequest("p", [item("a", "other", key="k")]),
    ]
    plan = plan_group(requests, {}, NOW)
    parts = plan.parts()
    assert parts[0] == parts[2] == parts[3]
    assert len({parts[0], parts[1], parts[4]}) == 3


def test_outcomes_except_leave_the_parts_not_stored() -> None:
    """Given seqs for the new items of the parts kept only, the kept requests are
    answered with them and the left ones with None."""
    requests = [
        PublishRequest("p", [item("a", "1")]),
        PublishRequest("p", [item("b", "2"), item("b", "3")]),
        PublishRequest("p", [item("a", "4")]),
    ]
    plan = plan_group(requests, {}, NOW)
    parts = plan.parts()
    answers = plan.outcomes_except([7, 8], parts, {parts[1]})
    assert answers[1] is None
    assert isinstance(answers[0], list) and answers[0][0].notification.seq == 7
    assert isinstance(answers[2], list) and answers[2][0].notification.seq == 8
    assert orjson.loads(answers[2][0].notification.frame)["notification"]["seq"] == 8
