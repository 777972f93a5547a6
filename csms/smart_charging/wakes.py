"""Waking the increases a group holds back (break before make) when something in the group changes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from csms.runtime.aio import wait_event


class GroupWakes:
    """One wake-up per group, given at most once per turn of the event loop: a thousand acceptances in one
    turn wake the held increases once, not a thousand times each (each wake-up walks every waiter)."""

    def __init__(self, group_ids: Iterable[str]):
        self._events = {gid: asyncio.Event() for gid in group_ids}
        self._due: set[str] = set()

    def regroup(self, group_ids: Iterable[str]) -> None:
        """The groups of a reloaded config: a group that stays keeps its wake-up (and whoever waits on it)."""
        self._events = {gid: self._events.get(gid) or asyncio.Event() for gid in group_ids}

    def poke(self, group_id: str) -> None:
        """Something in the group changed: its waiters retry at the next turn of the loop."""
        ev = self._events.get(group_id)
        if ev is None or ev.is_set() or group_id in self._due:
            return
        self._due.add(group_id)
        asyncio.get_running_loop().call_soon(self._release, group_id, ev)

    def _release(self, group_id: str, ev: asyncio.Event) -> None:
        self._due.discard(group_id)
        ev.set()

    async def wait(self, group_id: str, timeout: float) -> None:
        """Until the group's next change, or ``timeout`` s."""
        ev = self._events.get(group_id)
        if ev is None:  # the group was dropped by a reload while its charger waited
            return
        ev.clear()
        await wait_event(ev, timeout)
