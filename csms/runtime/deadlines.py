"""Many deadlines on one timer of the event loop: what a call's deadline costs when a thousand calls start at once.

Every call the central system makes to a station has a deadline, and a balancer decision starts one call per
charger of its group in one turn of the loop. ``loop.call_at`` makes a ``TimerHandle`` per deadline and keeps
the loop's heap ordered with a comparison written in Python (about 2 µs a deadline with its cancellation, a
twentieth of what a charger's whole send costs); almost every one is cancelled when the reply comes. Here a
deadline is a small list in one heap ordered by C comparisons, one loop timer stands for the earliest, and a
cancelled one is only marked. As the loop does, the heap is rebuilt without the cancelled ones once they are
more than half of it, so an idle server does not keep every answered call's deadline for its whole timeout.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import weakref
from collections.abc import Callable
from typing import Any

log = logging.getLogger("csms.runtime.deadlines")

#: ``[when, sequence, callback, args]``; the callback is None once it ran or was cancelled.
Deadline = list

_WHEN, _CALLBACK, _ARGS = 0, 2, 3
#: The heap is rebuilt once it holds more than this many entries and over half of them are cancelled.
_REBUILD_OVER = 100


class Deadlines:
    """The deadlines of one event loop, used from its thread (:func:`deadlines` gives the running loop's)."""

    __slots__ = ("_heap", "_timer", "_armed_for", "_cancelled", "_order", "_loop", "__weakref__")

    def __init__(self) -> None:
        self._heap: list[Deadline] = []
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for = float("inf")
        self._cancelled = 0
        self._order = itertools.count()  # equal times run in the order they were set, as the loop's own do
        # The loop it runs on, found when first armed (see :func:`bound` for why not every time); weakly, as
        # the loop keys the per-loop map, which a strong reference from here would keep alive.
        self._loop: weakref.ref[asyncio.AbstractEventLoop] | None = None

    def __len__(self) -> int:
        """Deadlines neither run nor cancelled."""
        return len(self._heap) - self._cancelled

    def at(self, when: float, callback: Callable[..., Any], *args: Any) -> Deadline:
        """Runs ``callback(*args)`` at ``when`` (the loop's clock), unless :meth:`cancel` comes first."""
        entry = [when, next(self._order), callback, args]
        heapq.heappush(self._heap, entry)
        if when < self._armed_for:
            self._arm(when)
        return entry

    def cancel(self, entry: Deadline) -> None:
        """The deadline is not needed any more (a no-op once it has run)."""
        if entry[_CALLBACK] is not None:
            entry[_CALLBACK] = entry[_ARGS] = None
            self._cancelled += 1
            heap = self._heap
            if self._cancelled == len(heap):  # nothing left to wait for: no wake-up either
                heap.clear()
                self._cancelled = 0
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer, self._armed_for = None, float("inf")
            elif len(heap) > _REBUILD_OVER and self._cancelled * 2 > len(heap):
                self._heap = [e for e in heap if e[_CALLBACK] is not None]
                heapq.heapify(self._heap)
                self._cancelled = 0

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._running().call_at(when, self._fire)
        self._armed_for = when

    def _running(self) -> asyncio.AbstractEventLoop:
        loop = self._loop() if self._loop is not None else None
        if loop is None:
            loop = asyncio.get_running_loop()
            self._loop = weakref.ref(loop)
        return loop

    def _fire(self) -> None:
        # The loop runs a timer that is due within its clock's resolution: so is every deadline up to its time.
        due = max(self._running().time(), self._armed_for)
        self._timer, self._armed_for = None, float("inf")
        # ``self._heap`` is read afresh each round: a callback may cancel deadlines, which can rebuild it.
        while self._heap and self._heap[0][_WHEN] <= due:
            entry = heapq.heappop(self._heap)
            callback = entry[_CALLBACK]
            if callback is None:
                self._cancelled -= 1
                continue
            args, entry[_CALLBACK], entry[_ARGS] = entry[_ARGS], None, None
            try:
                callback(*args)
            except Exception:  # one deadline's failure must not keep the others from running
                log.exception("deadline callback %r failed", callback)
        while self._heap and self._heap[0][_CALLBACK] is None:
            heapq.heappop(self._heap)
            self._cancelled -= 1
        if self._heap and self._heap[0][_WHEN] < self._armed_for:  # a callback may have armed it for later
            self._arm(self._heap[0][_WHEN])


_per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Deadlines] = weakref.WeakKeyDictionary()


def deadlines(loop: asyncio.AbstractEventLoop | None = None) -> Deadlines:
    """The deadlines of ``loop`` (default: the running loop)."""
    if loop is None:
        loop = asyncio.get_running_loop()
    found = _per_loop.get(loop)
    if found is None:
        found = _per_loop[loop] = Deadlines()
    return found


#: What an object that lives on one event loop keeps of it: the loop and its deadlines (see :func:`bound`).
Bound = tuple[asyncio.AbstractEventLoop, Deadlines]


def bound() -> Bound:
    """The running loop and its deadlines, for an object that runs on one loop to ask for once and keep.

    Why keep them: on CPython 3.11 every ``asyncio.get_running_loop()`` makes a ``getpid()`` system call (the
    running loop's holder checks that it was not inherited over a fork; 3.12 keeps the loop in the thread state
    and dropped the check), and so do ``asyncio.create_task``, ``asyncio.current_task()`` and ``asyncio.sleep``,
    which look the loop up the same way. A balancer decision for 1,000 chargers asked about seven times per charger
    on its way to the sockets and back, 0.3-1 µs each (``bench/RESULTS.md``, eighteenth session). The session's
    connection and the delivery's workers, which run per charger and per message, keep what this returns."""
    loop = asyncio.get_running_loop()
    return loop, deadlines(loop)
