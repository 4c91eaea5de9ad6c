"""Where one socket stands in its user's stream, and what to do with the next seq.

This is the replay/live merge. Live announcements and database reads both feed one
socket; `seq` is gap-free per user, so the socket only needs the highest seq it has
queued to decide, for any incoming seq, whether to queue it (the next one), drop it
(already queued: a duplicate from the bus, or a replayed one) or fetch from the database
(a gap: the bus lost something, the announcement carried no frame, or the socket is still
replaying). While fetching, live frames are not queued at all, so a replay of any length
is paced by the socket, never by a buffer, and the database is the single source for
everything up to the highest seq announced.
"""

from __future__ import annotations

import enum


class Offer(enum.Enum):
    QUEUE = "queue"
    DROP = "drop"
    FETCH = "fetch"


class Sequencer:
    """The merge state of one socket (pure: no I/O, no clock)."""

    __slots__ = ("fetching", "queued", "wanted")

    def __init__(self, last_seq: int, *, fetching: bool) -> None:
        self.queued = last_seq
        """Highest seq handed to the socket (sent or waiting in its queue)."""
        self.wanted = last_seq
        """Highest seq known to exist for this user."""
        self.fetching = fetching
        """True while the database must be read before live frames can be queued."""

    def offer(self, seq: int, *, has_frame: bool = True, room: bool = True) -> Offer:
        """A live announcement of `seq` arrived.

        `room` is False when the socket's queue is full: the frame then waits in the
        database (a burst spills there and is paged out as the socket drains).
        """
        if seq <= self.queued:
            return Offer.DROP
        if seq > self.wanted:
            self.wanted = seq
        if not self.fetching and has_frame and room and seq == self.queued + 1:
            self.queued = seq
            return Offer.QUEUE
        self.fetching = True
        return Offer.FETCH

    def take_fetched(self, seq: int) -> bool:
        """A row read from the database: True if it is new to this socket."""
        if seq <= self.queued:
            return False
        self.queued = seq
        if seq > self.wanted:
            self.wanted = seq
        return True

    def fetch_done(self, *, exhausted: bool) -> bool:
        """A database page was handled; True once the socket has caught up and is live.

        `exhausted` says the page was the last one the database had. Caught up means
        that, and nothing announced beyond what was read (an announcement may overtake
        the snapshot of the read that was meant to include it: read again).
        """
        if exhausted and self.queued >= self.wanted:
            self.fetching = False
        return not self.fetching

    def start_from(self, seq: int) -> None:
        """The position is known only now (a socket without resume starts at the head);
        anything announced meanwhile beyond it is fetched."""
        self.queued = seq
        self.wanted = max(self.wanted, seq)
        self.fetching = self.wanted > seq

    def catch_up(self) -> None:
        """Something may have been missed (the bus reconnected): read until exhausted."""
        self.fetching = True

    def give_up_on_missing(self) -> None:
        """Announced seqs that the database never shows (cannot happen with an announce
        after commit; a safety valve so a socket is never stuck): go live at the head."""
        self.queued = max(self.queued, self.wanted)
        self.fetching = False


def replay_complete(after: int, first_replayed: int | None, head: int) -> bool:
    """False when notifications after `after` existed but are gone (retention).

    `first_replayed` is the first seq the replay found, `head` the user's newest seq read
    before the replay's first page (a head read later could include a notification that
    committed after the page was read, and make a race look like a deletion).
    """
    if first_replayed is not None:
        return first_replayed == after + 1
    return head <= after
