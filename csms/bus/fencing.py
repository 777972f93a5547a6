"""Which commands a gateway may run: fencing tokens per group, the station's group, the deadline.

Leadership of a load-balancing group is a lease with a fencing token, an integer that increases with each new
leader. A controller that lost its lease without knowing it (a long pause, a partition) keeps sending with its
old token; a gateway that has already seen a higher token for that group refuses it ("fenced"), so two leaders
never both drive a group's chargers. The gateway learns tokens from the commands it receives (the first command of a
new leader raises the mark, and from then on the old leader is refused) and, when it starts, from the groups'
leases (:meth:`FenceBook.raise_to`), so a restarted gateway does not take a deposed leader's command before it has
heard the new one's.

A command for a group its station is not in (the site config says) is refused as well: a leader's token is
good for its own group only. And one whose deadline has passed is not started: its sender has given up on it.

Pure: no I/O, no clock of its own (``now`` is an argument).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .commands import Refusal

#: The key of chargers in no group (a command for one names group None).
NO_GROUP = ""


@dataclass
class FenceBook:
    """The highest token seen per group."""

    marks: dict[str, int] = field(default_factory=dict)

    def mark(self, group: str | None) -> int | None:
        return self.marks.get(group or NO_GROUP)

    def admit(self, group: str | None, token: int) -> bool:
        """True if ``token`` is at least the highest seen for ``group``, which it then becomes; False if it is
        lower (a newer leader has spoken)."""
        key = group or NO_GROUP
        seen = self.marks.get(key)
        if seen is not None and token < seen:
            return False
        self.marks[key] = token
        return True

    def raise_to(self, group: str | None, token: int) -> None:
        """Raises ``group``'s mark to ``token`` if that is higher: a token learnt elsewhere than from a command
        (a restarted gateway reads the groups' current tokens from their leases)."""
        key = group or NO_GROUP
        if token > self.marks.get(key, token - 1):
            self.marks[key] = token

    def current(self, group: str | None, token: int) -> bool:
        """True if no higher token than ``token`` has been seen for ``group`` (checked again just before a queued
        command starts: a newer leader may have spoken while it waited)."""
        seen = self.marks.get(group or NO_GROUP)
        return seen is None or token >= seen


def check(book: FenceBook, *, group: str | None, token: int, deadline: float, station_group: str | None,
          now: float) -> tuple[Refusal, str] | None:
    """Why a command may not run, or None (and its token raised the group's mark). Order: a command for the
    wrong group says nothing about that group's leaders, so it is refused first and never moves a mark; a late
    command from a newer leader still fences the older one."""
    if group != station_group:
        return Refusal.WRONG_GROUP, f"the station is in group {station_group!r}, not {group!r}"
    if not book.admit(group, token):
        return Refusal.FENCED, f"token {token} is below {book.mark(group)} already seen for group {group!r}"
    if now > deadline:
        return Refusal.EXPIRED, f"deadline passed {now - deadline:.3f} s ago"
    return None
