"""This instance's copy of the `revocations` table, so that checking a token for
revocation costs a dict look-up, not a database query per handshake.

The copy is loaded at start-up and kept current by the bus: a revocation made on any
instance is announced to every instance (inside its transaction on the postgres bus, on
the control channel on the redis bus). The copy is *complete* only while that holds:

- loaded after the bus connected, and no reconnect since (a reconnect means
  announcements may have been lost: the copy is reloaded whole before it is complete
  again);
- while the bus is down or the copy is incomplete, a token that the copy does not refuse
  is checked against the database before it is accepted (`confirm`: one primary-key
  look-up, gathered across concurrent handshakes). A database that does not answer then
  refuses the handshake (503 / 1011) rather than accept a token that might be revoked.

What remains is the time the bus takes to notice it lost its connection (the postgres bus
checks every 5 s, the redis bus every 5 s of silence); the service's reconcile rounds
also re-read the revocations of every user holding a socket here, which bounds how long
a socket of a user revoked during such a window stays open.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from notifier.core.claims import UserIdentity
from notifier.core.revocation import cutoff, refuses
from notifier.gather import Gathered
from notifier.store.users import UserStore


class Revocations:
    def __init__(self, store: UserStore) -> None:
        self._store = store
        self._cuts: dict[str, int] = {}
        """User -> the whole second up to which the user's tokens are refused."""
        self._generation = 0
        self._complete = False
        self._bus_healthy: Callable[[], bool] = lambda: False
        self._lookups = Gathered(store.revocations_of)

    def bind(self, bus_healthy: Callable[[], bool]) -> None:
        """Follow the bus's health (set once it is started)."""
        self._bus_healthy = bus_healthy

    def __len__(self) -> int:
        return len(self._cuts)

    @property
    def complete(self) -> bool:
        """Loaded since the last bus (re)connect."""
        return self._complete

    @property
    def trusted(self) -> bool:
        """The copy alone may accept a token: complete, and the bus is up."""
        return self._complete and self._bus_healthy()

    def cut(self, user_id: str) -> int | None:
        return self._cuts.get(user_id)

    def refuses(self, identity: UserIdentity) -> bool:
        """Whether the copy refuses this token (see `core.revocation`)."""
        return refuses(self._cuts.get(identity.user_id), identity.issued_at)

    def apply(self, user_id: str, revoked_at: float) -> int | None:
        """A revocation learnt from anywhere; the user's new cut if it rose, else None
        (revocations only ever move forward)."""
        cut = cutoff(revoked_at)
        known = self._cuts.get(user_id)
        if known is not None and known >= cut:
            return None
        self._cuts[user_id] = cut
        return cut

    def stale(self) -> None:
        """The bus reconnected: announcements may have been lost; reload before trusting."""
        self._generation += 1
        self._complete = False

    async def load(self) -> list[tuple[str, int]]:
        """Read the whole table; (user, cut) of every user whose cut rose. The copy is
        complete only if the bus was up before the read began and has not reconnected
        since: a revocation committed after the read's snapshot is then announced."""
        generation = self._generation
        subscribed = self._bus_healthy()
        raised = self._merge((await self._store.all_revocations()).items())
        if subscribed and generation == self._generation:
            self._complete = True
        return raised

    async def confirm(self, user_id: str) -> int | None:
        """Read `user_id`'s revocation from the database (gathered with concurrent
        handshakes); the user's new cut if it rose."""
        found = await self._lookups.get(user_id)
        return None if found is None else self.apply(user_id, found.timestamp())

    async def check_users(self, user_ids: list[str]) -> list[tuple[str, int]]:
        """Re-read the revocations of `user_ids`; (user, cut) of those whose cut rose."""
        return self._merge((await self._store.revocations_of(user_ids)).items())

    def _merge(self, found: Iterable[tuple[str, datetime]]) -> list[tuple[str, int]]:
        raised: list[tuple[str, int]] = []
        for user_id, revoked_at in found:
            cut = self.apply(user_id, revoked_at.timestamp())
            if cut is not None:
                raised.append((user_id, cut))
        return raised
