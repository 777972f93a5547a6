"""What a charger has to tell the central system, queued until its connection can send it.

Transaction messages wait out a disconnection, as a real charger's do; the rest describes the present
and is dropped when it could only arrive stale.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import websockets

from simulators.face import Face

log = logging.getLogger(__name__)


@dataclass
class Outgoing:
    """A message the charger has to send; ``send`` builds it at sending time (so ids known by then are used)."""

    name: str
    send: Callable[[Face], Awaitable[None]]
    #: Transaction messages survive a disconnection; others are dropped when offline.
    keep: bool = False


class Outbox:
    """The charger's queue of :class:`Outgoing` messages, oldest first."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._items: collections.deque[Outgoing] = collections.deque()
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Outgoing) -> None:
        self._items.append(item)
        self._changed.set()

    def drop_stale(self) -> None:
        """Drops what is not a transaction message: queued while offline, it would report the past."""
        self._items = collections.deque(i for i in self._items if i.keep)

    async def drain(self, face: Face) -> None:
        """Sends the queue in order, forever; an item leaves the queue only once sent (or unsendable)."""
        while True:
            while not self._items:
                self._changed.clear()
                await self._changed.wait()
            item = self._items[0]
            try:
                await item.send(face)
            except (websockets.ConnectionClosed, TimeoutError):
                raise  # the item stays queued for the next connection
            except Exception:
                # A payload the library refuses (or an answer it cannot parse) would block the outbox forever.
                log.exception("%s: could not send %s; dropped", self.owner, item.name)
            self._items.popleft()
