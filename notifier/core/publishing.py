"""Planning a publish group, without I/O: what each item of each request becomes.

A group is several independent publish requests committed together. Given the originals
already stored under the group's idempotency keys, `plan_group` decides, item by item,
whether it is new, a repeat of a stored original, or a repeat of a new item earlier in
the group, and refuses a request whose key stands for something else; it gives each new
item its id and its frame, all but the seq. Once the store has allocated the seqs,
`GroupPlan.outcomes` answers each request. Tested in tests/core/test_publishing.py.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from notifier.core.idempotency import Verdict, judge
from notifier.wire.notification import Notification, frame_around_seq


class IdempotencyConflict(Exception):
    """An Idempotency-Key was reused with another request."""

    def __init__(self, key: str) -> None:
        super().__init__(f"Idempotency-Key {key!r} was already used with another request")
        self.key = key


@dataclass(slots=True)  # not frozen: see Notification (one per item of every publish)
class NewNotification:
    """A validated publish request item."""

    user_id: str
    type: str
    data_json: str
    fingerprint: str
    """What the idempotency key stands for; empty without a key (never compared)."""
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class PublishRequest:
    """One publish call (a single notification or a batch): atomic on its own."""

    publisher: str
    items: Sequence[NewNotification]


@dataclass(frozen=True, slots=True)
class Published:
    notification: Notification
    created: bool
    """False when an idempotency key answered with the original."""


Outcome = list[Published] | IdempotencyConflict

Stored = dict[tuple[str, str], tuple[str, Notification | None]]
"""(publisher, key) -> (fingerprint, original) of each stored original of the group's keys;
original None: the key belongs to a topic publish, which no direct publish repeats."""

# How one item is answered: None, stored as new; a Notification, an original already
# stored; (request index, item index), the same as an earlier new item of this group.
_Resolution = Notification | tuple[int, int] | None
# (publisher, key) -> (fingerprint, request index, item index) of the new item claiming it
_Claims = dict[tuple[str, str], tuple[str, int, int]]


@dataclass(slots=True)
class Fresh:
    """A new notification of a group, built but for its seq."""

    request: int
    item: int
    publisher: str
    new: NewNotification
    user_id: str
    id: str
    frame_before: str
    frame_after: str


def keys(requests: Sequence[PublishRequest]) -> dict[str, list[str]]:
    """The idempotency keys of `requests`, by publisher: whose originals to look up."""
    found: dict[str, set[str]] = {}
    for request in requests:
        for item in request.items:
            if item.idempotency_key is not None:
                found.setdefault(request.publisher, set()).add(item.idempotency_key)
    return {publisher: sorted(keys) for publisher, keys in found.items()}


def _plan(
    r_index: int, request: PublishRequest, stored: Stored, claimed: _Claims
) -> list[_Resolution] | IdempotencyConflict:
    """Resolve each item of one request against stored keys and keys claimed earlier in
    the group or in this request. Only a request without conflict adds its keys to
    `claimed`, so a refused request never shadows a later one."""
    plan: list[_Resolution] = []
    own: _Claims = {}
    for i_index, item in enumerate(request.items):
        key = item.idempotency_key
        if key is None:
            plan.append(None)
            continue
        scoped = (request.publisher, key)
        if scoped in stored:
            fingerprint, original = stored[scoped]
            if original is None or judge(fingerprint, item.fingerprint) is Verdict.CONFLICT:
                return IdempotencyConflict(key)
            plan.append(original)
            continue
        earlier = own.get(scoped) or claimed.get(scoped)
        if earlier is not None:
            fingerprint, e_request, e_item = earlier
            if judge(fingerprint, item.fingerprint) is Verdict.CONFLICT:
                return IdempotencyConflict(key)
            plan.append((e_request, e_item))
            continue
        own[scoped] = (item.fingerprint, r_index, i_index)
        plan.append(None)
    claimed.update(own)
    return plan


@dataclass(slots=True)
class GroupPlan:
    plans: list[list[_Resolution] | IdempotencyConflict]
    """Each request's: a resolution per item, or its conflict."""
    fresh: list[Fresh]
    """The new notifications of the group, in order: the store allocates a seq to each."""
    created_at: datetime

    def outcomes(self, seqs: Sequence[int]) -> list[Outcome]:
        """Each request's answer, given the seqs allocated to `fresh`, in order."""
        now = self.created_at
        created: dict[tuple[int, int], Notification] = {}
        for f, seq in zip(self.fresh, seqs, strict=True):
            created[(f.request, f.item)] = Notification(
                id=f.id,
                user_id=f.user_id,
                seq=seq,
                type=f.new.type,
                data_json=f.new.data_json,
                created_at=now,
                _frame=f.frame_before + str(seq) + f.frame_after,
            )
        outcomes: list[Outcome] = []
        for r_index, plan in enumerate(self.plans):
            if isinstance(plan, IdempotencyConflict):
                outcomes.append(plan)
                continue
            results: list[Published] = []
            for i_index, resolution in enumerate(plan):
                if resolution is None:
                    results.append(Published(created[(r_index, i_index)], created=True))
                elif isinstance(resolution, Notification):
                    results.append(Published(resolution, created=False))
                else:
                    results.append(Published(created[resolution], created=False))
            outcomes.append(results)
        return outcomes

    def parts(self) -> list[int]:
        """Each request's part: requests linked by a key (a later item repeating an
        earlier new item of the group) share one, so a store that commits some parts of
        a group and leaves others (`try_publish_group`) never answers a request with an
        item it did not store. Otherwise a request is its own part (its index)."""
        part = list(range(len(self.plans)))

        def root(r: int) -> int:
            while part[r] != r:
                part[r] = part[part[r]]
                r = part[r]
            return r

        for r_index, plan in enumerate(self.plans):
            if isinstance(plan, IdempotencyConflict):
                continue
            for resolution in plan:
                if isinstance(resolution, tuple):
                    part[root(r_index)] = root(resolution[0])
        return [root(r) for r in range(len(self.plans))]

    def outcomes_except(
        self, seqs: Sequence[int], parts: Sequence[int], left: set[int]
    ) -> list[Outcome | None]:
        """As `outcomes`, when the new items of the parts in `left` were not stored
        (`seqs` are those of the others, in order): None for each request of those."""
        kept = [f for f in self.fresh if parts[f.request] not in left]
        whole = GroupPlan(
            [plan if parts[r] not in left else [] for r, plan in enumerate(self.plans)],
            kept,
            self.created_at,
        )
        return [
            None if parts[r] in left else outcome for r, outcome in enumerate(whole.outcomes(seqs))
        ]


def plan_group(requests: Sequence[PublishRequest], stored: Stored, now: datetime) -> GroupPlan:
    """Each request's plan against the stored originals of its keys, and the new
    notifications of the group, in order, built but for their seqs."""
    claimed: _Claims = {}
    plans = [_plan(r, request, stored, claimed) for r, request in enumerate(requests)]
    positions = [
        (r_index, i_index)
        for r_index, plan in enumerate(plans)
        if not isinstance(plan, IdempotencyConflict)
        for i_index, resolution in enumerate(plan)
        if resolution is None
    ]
    fresh = []
    for (r_index, i_index), id_ in zip(positions, new_ids(len(positions)), strict=True):
        new = requests[r_index].items[i_index]
        before, after = frame_around_seq(id_, new.user_id, new.type, new.data_json, now)
        publisher = requests[r_index].publisher
        fresh.append(Fresh(r_index, i_index, publisher, new, new.user_id, id_, before, after))
    return GroupPlan(plans, fresh, now)


def new_ids(count: int) -> list[str]:
    """`count` random (version 4) UUIDs from one read of the OS's random source:
    `uuid.uuid4()` reads it once per id, a system call per notification."""
    digits = os.urandom(16 * count).hex()
    ids = []
    for start in range(0, 32 * count, 32):
        h = digits[start : start + 32]
        # The version nibble is 4 and the variant's top bits are 10 (RFC 9562), written
        # into the text directly: three times faster than building uuid.UUID objects.
        ids.append(f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}")
    return ids


_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}
