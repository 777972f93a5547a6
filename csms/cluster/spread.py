"""Which live controller should lead each group: rendezvous (highest-random-weight) hashing. Pure: no I/O, no clock.

With several controllers, the first to claim a free group would lead it, so the first one started led them all
and the others stood by. Instead every group has a **preferred** controller among the live ones, the one with
the highest weight ``hash(group, node)``, and :class:`~csms.cluster.leadership.LeaseManager` claims a free group
only when no live controller outranks it for that group, and hands a group it leads over to its preferred one.

Why rendezvous hashing: every controller computes the same answer from the same live set with no coordination;
each of N controllers gets about 1/N of the groups; when one joins or leaves only the groups it gains or had move
(about 1/N), no others. The weight is of the **node name** (``--node``), not of the holder (the node plus a random
suffix per process), so a restarted controller gets its groups back; two holders of one node name (a restart
before the old presence ran out) are told apart by the holder, in a fixed order. Every controller must weigh
alike: a release that changed :func:`weight` beside one that did not would hand groups back and forth.

Presence (who is live, and which groups each one wants) is a row per holder in PostgreSQL judged on the server's
clock, like the leases (:mod:`csms.storage.leases`); this module only reads what a round answered
(:class:`Member`). A controller wants only the groups of its own config, so during a rolling config change a
group is never preferred to a controller that would not claim it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

#: Why a leader gave a group up to its preferred controller (the start of the ``reason`` passed to ``on_lost``).
HANDED_OVER = "handed over to {node} (spreading groups)"


def weight(group_id: str, node: str) -> int:
    """The stable 64-bit weight of ``node`` for ``group_id``: the same in every process and release (Python's
    ``hash`` of a str is salted per process, so it is not used)."""
    digest = hashlib.blake2b(f"{group_id}\x1f{node}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


@dataclass(frozen=True, slots=True)
class Member:
    """A live controller as a round saw it: its holder id, node name, the groups it tries to lead, and when its
    presence runs out (epoch seconds of the database server's clock: only compared with its own earlier value)."""

    holder: str
    node: str
    groups: frozenset[str]
    expires_at: float = 0.0


def rank(group_id: str, member: Member) -> tuple[int, str]:
    """The order of controllers for ``group_id``: the highest leads; holders of one node by their holder id."""
    return weight(group_id, member.node), member.holder


def preferred(group_id: str, members: Iterable[Member]) -> Member | None:
    """The member that should lead ``group_id``: the highest ranked of those that want it (None: nobody does)."""
    return max((m for m in members if group_id in m.groups), key=lambda m: rank(group_id, m), default=None)


def assignment(group_ids: Iterable[str], members: Iterable[Member]) -> dict[str, str]:
    """Group → the holder that should lead it, for every group some member wants."""
    members = list(members)
    return {gid: p.holder for gid in group_ids if (p := preferred(gid, members)) is not None}


class Roster:
    """The live controllers as this one last saw them, and which of them have shown they are running.

    :meth:`saw` takes every answered round's live set (the others: this holder is added with its own groups). A
    round without an answer changes nothing: the view is only used to choose which holders the server checks.
    A member has **settled** once two consecutive rounds of ours saw it with its presence renewed in between (its
    expiry moved on): it has been live across one of its refreshes, so it runs rounds and will claim what it is
    handed. Only a settled member is handed a group: a controller that only just appeared, or one that crashes
    and restarts (a new holder each time), takes nothing from a leader that is working, so leadership does not
    flap."""

    def __init__(self, holder: str, node: str):
        self.me = Member(holder, node, frozenset())
        #: The others, live at the last answered round (None: no round answered yet).
        self.others: dict[str, Member] | None = None
        self._settled: set[str] = set()

    @property
    def known(self) -> bool:
        return self.others is not None

    def saw(self, live: Iterable[Member], mine: Iterable[str]) -> tuple[list[Member], list[Member]]:
        """Takes a round's live set (this holder's own row, if there, is ignored) and this holder's groups;
        returns the members that joined and left since the round before."""
        before = self.others or {}
        now = {m.holder: m for m in live if m.holder != self.me.holder}
        self.me = Member(self.me.holder, self.me.node, frozenset(mine))
        self._settled = {h for h in now if h in self._settled
                         or (h in before and now[h].expires_at > before[h].expires_at)}
        self.others = now
        return ([m for h, m in now.items() if h not in before], [m for h, m in before.items() if h not in now])

    def members(self) -> list[Member]:
        return [self.me, *(self.others or {}).values()]

    def outranking(self, group_id: str) -> list[str]:
        """The holders live at the last round that want ``group_id`` and rank above this one for it: a free group is
        claimed only if none of them is still live on the server (see :data:`csms.storage.leases.ROUND`)."""
        mine = rank(group_id, self.me)
        return sorted(h for h, m in (self.others or {}).items() if group_id in m.groups and rank(group_id, m) > mine)

    def hand_over_to(self, group_id: str) -> Member | None:
        """The settled member that should lead ``group_id`` instead of this one, if any (None: keep it)."""
        best = preferred(group_id, [Member(self.me.holder, self.me.node, frozenset([group_id])),
                                    *(self.others or {}).values()])
        if best is None or best.holder == self.me.holder or best.holder not in self._settled:
            return None
        return best
